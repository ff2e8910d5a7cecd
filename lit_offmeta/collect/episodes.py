"""Recording episodes in the Minari-style layout that the storage layer writes.

One episode is a dict of numpy arrays, ``observations`` ``[T+1, obs_dim]`` float32, ``actions`` ``[T, act_dim]``
float32 (``[T]`` int64 for discrete actions), ``rewards`` ``[T]`` float32, ``terminations`` / ``truncations``
``[T]`` bool, plus per-episode metadata: ``behaviour_step`` (the behaviour agent's environment-step count when
the episode started, so that quality windows can be cut by training time) and, for multi-episode trials,
``trial_index`` and ``episode_in_trial``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Episode = dict[str, Any]


class EpisodeBuilder:
    """Accumulates one episode step by step, then packs it into arrays.

    Args:
        first_obs: the observation returned by ``env.reset``.
        behaviour_step: the agent's environment-step count at the start of the episode.
        discrete: True for integer actions (stored as ``[T]`` int64).
        trial_index: index of the multi-episode trial this episode belongs to, or ``None``.
        episode_in_trial: position of the episode inside its trial, or ``None``.
    """

    def __init__(
        self,
        first_obs: np.ndarray,
        behaviour_step: int,
        discrete: bool = False,
        trial_index: int | None = None,
        episode_in_trial: int | None = None,
    ) -> None:
        self.observations = [np.asarray(first_obs, dtype=np.float32).reshape(-1)]
        self.actions: list[Any] = []
        self.rewards: list[float] = []
        self.terminations: list[bool] = []
        self.truncations: list[bool] = []
        self.behaviour_step = int(behaviour_step)
        self.discrete = discrete
        self.trial_index = trial_index
        self.episode_in_trial = episode_in_trial

    def __len__(self) -> int:
        return len(self.rewards)

    def add(self, action: Any, reward: float, next_obs: np.ndarray, terminated: bool, truncated: bool) -> None:
        self.actions.append(int(action) if self.discrete else np.asarray(action, dtype=np.float32).reshape(-1))
        self.rewards.append(float(reward))
        self.observations.append(np.asarray(next_obs, dtype=np.float32).reshape(-1))
        self.terminations.append(bool(terminated))
        self.truncations.append(bool(truncated))

    def finish(self) -> Episode:
        """The episode as arrays plus metadata; raises ``ValueError`` if no step was recorded."""
        if not self.rewards:
            raise ValueError("EpisodeBuilder.finish: the episode has no steps")
        if self.discrete:
            actions = np.asarray(self.actions, dtype=np.int64)
        else:
            actions = np.stack(self.actions).astype(np.float32)
        episode: Episode = {
            "observations": np.stack(self.observations).astype(np.float32),
            "actions": actions,
            "rewards": np.asarray(self.rewards, dtype=np.float32),
            "terminations": np.asarray(self.terminations, dtype=bool),
            "truncations": np.asarray(self.truncations, dtype=bool),
            "behaviour_step": self.behaviour_step,
        }
        if self.trial_index is not None:
            episode["trial_index"] = int(self.trial_index)
            episode["episode_in_trial"] = int(self.episode_in_trial or 0)
        return episode


def episode_returns(episodes: list[Episode]) -> np.ndarray:
    """Undiscounted return of each episode, in recording order, ``[num_episodes]`` float64."""
    return np.asarray([float(np.sum(ep["rewards"], dtype=np.float64)) for ep in episodes])


def early_late_returns(episodes: list[Episode], fraction: float = 0.1) -> tuple[float, float]:
    """Mean return of the first and of the last ``fraction`` of episodes (at least one each).

    The standard check that a lifetime buffer shows learning: late returns above early ones.
    """
    if not episodes:
        raise ValueError("early_late_returns: no episodes")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"early_late_returns: fraction must be in (0, 1], got {fraction}")
    returns = episode_returns(episodes)
    n = max(1, int(round(fraction * len(returns))))
    return float(returns[:n].mean()), float(returns[-n:].mean())
