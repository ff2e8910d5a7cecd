"""The one policy interface the evaluator drives, for every algorithm.

Gradient-adapted policies (MACAW, meta-BC, multi-task AWR) ignore ``observe``; belief-updating ones
(BOReL, PEARL) update their task belief in it after every environment step. All methods work on a batch of
environments (one per evaluated task), numpy in and out, so one vectorised rollout serves every algorithm.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class RolloutPolicy(Protocol):
    def reset(self, num_envs: int) -> None:
        """Start a new trial in ``num_envs`` environments (clears any online belief)."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions for observations ``[num_envs, obs_dim]`` -> ``[num_envs, act_dim]``
        (or ``[num_envs]`` integer actions for discrete families)."""

    def observe(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        dones: np.ndarray,
    ) -> None:
        """Take in one step of experience from every environment (``dones`` marks episode ends)."""
