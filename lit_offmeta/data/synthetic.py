"""Synthetic episodes whose observations name their own transition, for tests, benchmarks and examples.

Observation column 0 holds ``task_index * 1_000 + episode`` and column 1 the step ``t`` inside the episode, so a
sampled transition says exactly where in which buffer it came from; disjointness, contiguity and window
choice can then be checked on values. Remaining columns (if ``obs_dim > 2``) and the actions are seeded noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPISODE_STRIDE = 1_000
"""Column 0 of an observation is ``task_index * EPISODE_STRIDE + episode``."""


def synthetic_episodes(
    task_index: int,
    num_episodes: int,
    horizon: int,
    obs_dim: int = 2,
    action_dim: int = 2,
    discrete_actions: int | None = None,
    seed: int = 0,
    terminate_every: int | None = None,
) -> list[dict[str, Any]]:
    """Minari-style episodes (see :func:`lit_offmeta.data.storage.write_task_dataset`) with id-coded observations.

    Args:
        task_index: coded into observation column 0.
        num_episodes: episodes to make (must stay below ``EPISODE_STRIDE``).
        horizon: steps per episode (time-limit truncation at the last step).
        obs_dim: observation size (>= 2).
        action_dim: continuous action size (ignored when ``discrete_actions`` is set).
        discrete_actions: number of discrete actions: actions become ``[T]`` int64.
        seed: seed of the noise columns, actions and rewards.
        terminate_every: if set, every such episode (1-based) ends by a true termination one step early.

    Returns:
        Episodes with ``behaviour_step`` = the cumulative step count before each episode.
    """
    if obs_dim < 2 or num_episodes >= EPISODE_STRIDE or horizon < 1:
        raise ValueError("need obs_dim >= 2, 1 <= horizon and num_episodes < EPISODE_STRIDE")
    rng = np.random.default_rng([seed, task_index])
    episodes, steps = [], 0
    for e in range(num_episodes):
        terminated = terminate_every is not None and (e + 1) % terminate_every == 0
        length = max(1, horizon - 1) if terminated else horizon
        obs = rng.normal(size=(length + 1, obs_dim)).astype(np.float32)
        obs[:, 0] = task_index * EPISODE_STRIDE + e
        obs[:, 1] = np.arange(length + 1)
        if discrete_actions is not None:
            actions: np.ndarray = rng.integers(0, discrete_actions, size=length).astype(np.int64)
        else:
            actions = rng.uniform(-1, 1, size=(length, action_dim)).astype(np.float32)
        ends = np.zeros(length, dtype=bool)
        ends[-1] = True
        episodes.append(
            {
                "observations": obs,
                "actions": actions,
                "rewards": rng.normal(size=length).astype(np.float32),
                "terminations": ends.copy() if terminated else np.zeros(length, dtype=bool),
                "truncations": np.zeros(length, dtype=bool) if terminated else ends.copy(),
                "behaviour_step": steps,
            }
        )
        steps += length
    return episodes
