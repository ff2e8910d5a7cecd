"""The normalised score: where a return lies between a random policy (0) and the task's best behaviour (1)."""

from __future__ import annotations

import numpy as np


def normalised_score(
    returns: np.ndarray | float, random_returns: np.ndarray | float, best_behaviour_returns: np.ndarray | float
) -> np.ndarray:
    r"""Normalise returns per task, D4RL-style.

    .. math:: \text{score} = \frac{R - R_\text{random}}{R_\text{best} - R_\text{random}}

    ``R_random`` is the mean return of a uniformly random policy measured in the task's environment and
    ``R_best`` the best episode return in that task's offline dataset, so 1 means "as good as the best
    trajectory the adaptation data came from". Scores can exceed 1 or fall below 0.

    Args:
        returns: evaluated returns, any shape (per task).
        random_returns: the random policy's return, broadcastable to ``returns``.
        best_behaviour_returns: the best dataset return, broadcastable to ``returns``.

    Returns:
        Scores, float64, of the broadcast shape.

    Raises:
        ValueError: a task whose best behaviour return does not exceed the random return (the score would
            be undefined or flip sign): its data holds nothing better than chance.
    """
    returns, lo, hi = np.broadcast_arrays(
        np.asarray(returns, np.float64), np.asarray(random_returns, np.float64),
        np.asarray(best_behaviour_returns, np.float64),
    )
    span = hi - lo
    bad = ~(span > 0)
    if bad.any():
        idx = [int(i) for i in np.flatnonzero(bad.reshape(-1))]
        raise ValueError(
            f"normalised_score: best behaviour return must exceed the random return; at flat index/indices "
            f"{idx} got best={hi.reshape(-1)[idx].tolist()} random={lo.reshape(-1)[idx].tolist()}. "
            "Check the task's dataset (is it from a learning behaviour agent?)"
        )
    return (returns - lo) / span
