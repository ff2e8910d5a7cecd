"""Meta-World behaviour data without RL: metaworld's scripted expert policies with annealed action noise.

MACAW trained one SAC agent per Meta-World task for 5M steps (arXiv:2008.06043, App. D.2). metaworld ships a
hand-written expert for each of its environments (``metaworld.policies``), so a lifetime with a quality
gradient costs only simulation: the agent acts ``clip(expert(obs) + noise_std * N(0, I), -1, 1)`` and its noise
falls linearly from ``noise_start`` (poor, mostly noise) to ``noise_end`` at ``expert_at`` of its lifetime, then
stays there, like the annealed goal seeker of PointRobot (:mod:`lit_offmeta.data.scripted`). The experts read
the goal position from the observation, which the ML benchmarks hide; the agent puts the true goal (from the
environment's ``info["goal"]``) into its own copy, never into the recorded observation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from lit_offmeta.tasks.meta_world import GOAL, require_metaworld

POLICY_NAMES = {"peg-insert-side-v3": "SawyerPegInsertionSideV3Policy"}
"""Environments whose expert class does not follow ``Sawyer<CamelCaseName>V3Policy``."""


def expert_policy(env_name: str) -> Any:
    """metaworld's scripted expert for ``env_name`` (an object with ``get_action(obs)``)."""
    require_metaworld()
    import metaworld.policies

    stem = env_name.removesuffix("-v3")
    name = POLICY_NAMES.get(env_name, "Sawyer" + "".join(part.capitalize() for part in stem.split("-")) + "V3Policy")
    if not hasattr(metaworld.policies, name):
        raise ValueError(f"collect: metaworld has no scripted expert {name} for environment {env_name!r}")
    return getattr(metaworld.policies, name)()


@dataclass(frozen=True)
class ScriptedExpertConfig:
    """Noise schedule of :class:`NoisyScriptedExpert`: std ``noise_start`` -> ``noise_end`` at ``expert_at``."""

    noise_start: float = 1.0
    noise_end: float = 0.1
    expert_at: float = 0.8

    def __post_init__(self) -> None:
        if self.noise_start < 0 or self.noise_end < 0 or not 0 < self.expert_at <= 1:
            raise ValueError(f"ScriptedExpertConfig: need noise_start, noise_end >= 0 and 0 < expert_at <= 1, got "
                             f"{self.noise_start}, {self.noise_end}, {self.expert_at}")


class NoisyScriptedExpert:
    """A per-task lifetime agent (:class:`lit_offmeta.collect.lifetime.LifetimeAgent`) around a scripted expert."""

    def __init__(self, env_name: str, lifetime: int, config: ScriptedExpertConfig, rng: np.random.Generator):
        self.policy = expert_policy(env_name)
        self.lifetime, self.config, self.rng = lifetime, config, rng
        self.noise_std = config.noise_start
        self.goal: np.ndarray | None = None

    def noise_at(self, episode_index: int) -> float:
        """The action-noise std of episode ``episode_index``: linear from start to end, then constant."""
        horizon = max(1.0, self.config.expert_at * (self.lifetime - 1))
        skill = min(1.0, episode_index / horizon)
        return self.config.noise_start + skill * (self.config.noise_end - self.config.noise_start)

    def begin_episode(self, episode_index: int, info: dict[str, Any]) -> None:
        if "goal" not in info:
            raise ValueError("collect: the scripted expert needs the environment's info['goal'] (a Meta-World env)")
        self.goal = np.asarray(info["goal"], dtype=np.float64)
        self.noise_std = self.noise_at(episode_index)

    def act(self, obs: np.ndarray) -> np.ndarray:
        seen = np.asarray(obs, dtype=np.float64).copy()
        seen[GOAL] = self.goal
        with warnings.catch_warnings():  # metaworld warns whenever an expert's gain saturates; we clip anyway
            warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
            action = np.asarray(self.policy.get_action(seen), dtype=np.float64)
        action = action + self.noise_std * self.rng.standard_normal(action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def learn(self, obs, action, reward, next_obs, terminated) -> None:
        """Scripted: nothing to learn."""
