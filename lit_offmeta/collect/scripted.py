"""A scripted, learner-like behaviour agent for goal-reaching families (PointRobot, dense and sparse).

It stands in for an RL agent learning one task from scratch, cheaply. A learner's early episodes wander and
its late ones head straight for the goal; the goal seeker models this with two quantities that anneal over
its lifetime (``skill`` rises linearly from 0 to 1 over the first ``expert_at`` fraction of its episodes):

* its estimate of the goal: the true goal plus an error drawn afresh each episode, with standard deviation
  ``goal_error_start * (1 - skill)``;
* its exploration noise: Gaussian action noise with standard deviation interpolated from ``noise_start`` to
  ``noise_end``. ``noise_end > 0`` keeps a spread of actions in the late data, which advantage-weighted
  methods (MACAW's AWR) need to rank actions.

The action is the displacement towards the goal estimate, in units of the family's step size, plus the noise,
clipped to ``[-1, 1]``. Skill is a function of the episode index only, so two runs with one seed agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lit_offmeta.tasks.point_robot import ACTION_SCALE


@dataclass(frozen=True)
class GoalSeekerConfig:
    """Hyperparameters of :class:`AnnealedGoalSeeker`.

    Attributes:
        expert_at: fraction of the lifetime after which skill is 1 (the last ``1 - expert_at`` is near-expert).
        goal_error_start: standard deviation of the goal estimate's error at skill 0 (goals lie at radius 1).
        noise_start: action-noise standard deviation at skill 0 (actions live in ``[-1, 1]``).
        noise_end: action-noise standard deviation at skill 1.
    """

    expert_at: float = 0.8
    goal_error_start: float = 1.5
    noise_start: float = 1.0
    noise_end: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.expert_at <= 1.0:
            raise ValueError(f"GoalSeekerConfig: expert_at must be in (0, 1], got {self.expert_at}")
        for name in ("goal_error_start", "noise_start", "noise_end"):
            if getattr(self, name) < 0:
                raise ValueError(f"GoalSeekerConfig: {name} must be >= 0, got {getattr(self, name)}")


class AnnealedGoalSeeker:
    """Moves towards a goal estimate that sharpens, with noise that shrinks, over ``lifetime`` episodes.

    Args:
        goal: the task's goal position ``[2]``.
        lifetime: number of episodes in the agent's life (sets the annealing schedule).
        config: the schedule's hyperparameters.
        rng: the agent's random generator.
    """

    def __init__(self, goal: np.ndarray, lifetime: int, config: GoalSeekerConfig, rng: np.random.Generator):
        if lifetime < 1:
            raise ValueError(f"AnnealedGoalSeeker: lifetime must be >= 1 episode, got {lifetime}")
        self.goal = np.asarray(goal, dtype=np.float64).reshape(2)
        self.lifetime = lifetime
        self.config = config
        self.rng = rng
        self.goal_estimate = self.goal.copy()
        self.noise_std = config.noise_end

    def skill(self, episode_index: int) -> float:
        """0 at the first episode, rising linearly to 1 at ``expert_at`` of the lifetime."""
        horizon = max(1.0, self.config.expert_at * (self.lifetime - 1))
        return float(min(1.0, episode_index / horizon))

    def begin_episode(self, episode_index: int) -> None:
        skill = self.skill(episode_index)
        error = self.rng.normal(0.0, self.config.goal_error_start * (1.0 - skill), size=2)
        self.goal_estimate = self.goal + error
        self.noise_std = self.config.noise_start + skill * (self.config.noise_end - self.config.noise_start)

    def act(self, obs: np.ndarray) -> np.ndarray:
        position = np.asarray(obs, dtype=np.float64)[:2]
        towards = (self.goal_estimate - position) / ACTION_SCALE  # the step that would land on the estimate
        action = np.clip(towards, -1.0, 1.0) + self.rng.normal(0.0, self.noise_std, size=2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def learn(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminated: bool):
        """Nothing to learn: the schedule is fixed (kept for the per-task agent interface)."""
