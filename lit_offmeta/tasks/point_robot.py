"""PointRobot: 2-D navigation to a goal on the upper unit semicircle (PEARL / BOReL conventions).

The agent starts at the origin; an action in ``[-1, 1]^2`` moves it by ``0.1 * action``. The observation is
the position. Two reward variants share everything else:

* dense (MACAW/PEARL): ``-||p' - g||``, horizon 20;
* sparse (BOReL): ``1`` when ``||p' - g|| <= 0.2`` else ``0``, horizon 60.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from lit_offmeta.tasks.base import (
    Task,
    TaskFamily,
    TaskSplit,
    require_finite_in_range,
    require_keys,
    require_number_array,
)

ACTION_SCALE = 0.1
GOAL_RADIUS = 0.2
POSITION_LIMIT = 10.0


class PointRobotEnv(gym.Env):
    """A point mass moved by bounded displacements; the reward comes from the owning family."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, task: Task, sparse: bool = False, random_start: bool = False) -> None:
        self.family = PointRobotSparse() if sparse else PointRobot()
        self.task = self.family.validate_task(task)
        self.random_start = random_start
        self.observation_space = gym.spaces.Box(-POSITION_LIMIT, POSITION_LIMIT, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._position = np.zeros(2, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self.random_start:
            # BOReL's data collection starts anywhere in [-1.5, 1.5] x [-0.5, 1.5]; evaluation from the origin.
            low, high = np.array([-1.5, -0.5]), np.array([1.5, 1.5])
            self._position = self.np_random.uniform(low, high).astype(np.float32)
        else:
            self._position = np.zeros(2, dtype=np.float32)
        return self._position.copy(), {"task": dict(self.task)}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(2), -1.0, 1.0)
        obs = self._position.copy()
        next_obs = np.clip(obs + ACTION_SCALE * action, -POSITION_LIMIT, POSITION_LIMIT).astype(np.float32)
        self._position = next_obs
        reward = float(self.family.reward(self.task, obs, action, next_obs))
        success = bool(self.family.success(self.task, obs, action, next_obs))
        return next_obs.copy(), reward, False, False, {"task": dict(self.task), "success": success}


class PointRobot(TaskFamily):
    """Dense PointRobot: reward ``-||p' - g||``; goals uniform on the upper unit semicircle."""

    name: ClassVar[str] = "point_robot"
    env_id: ClassVar[str] = "lit_offmeta/PointRobot-v0"
    horizon: ClassVar[int] = 20
    num_default_tasks: ClassVar[int] = 40
    default_split: ClassVar[str] = "random"
    sparse: ClassVar[bool] = False

    def sample_tasks(self, n: int, seed: int) -> list[Task]:
        if n < 1:
            raise ValueError(f"{self.name}: n must be >= 1, got {n}")
        angles = np.random.default_rng(seed).uniform(0.0, np.pi, size=n)
        return [{"goal": [float(np.cos(a)), float(np.sin(a))]} for a in angles]

    def validate_task(self, task: Task) -> Task:
        task = require_keys(self.name, task, ["goal"])
        goal = require_number_array(self.name, "goal", task["goal"], (2,))
        for i, g in enumerate(goal):
            require_finite_in_range(self.name, f"goal[{i}]", g, -POSITION_LIMIT, POSITION_LIMIT)
        task["goal"] = [float(g) for g in goal]
        return task

    def make_env(self, task: Task, **kwargs: Any) -> gym.Env:
        return gym.make(self.env_id, task=self.validate_task(task), **kwargs)

    def _distance(self, task: Task, next_obs: np.ndarray) -> np.ndarray:
        goal = np.asarray(task["goal"], dtype=np.float32)
        return np.linalg.norm(np.asarray(next_obs, dtype=np.float32)[..., :2] - goal, axis=-1)

    def reward(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        return -self._distance(task, next_obs)

    def success(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        return self._distance(task, next_obs) <= GOAL_RADIUS


class PointRobotSparse(PointRobot):
    """Sparse PointRobot (BOReL): reward ``1`` within radius 0.2 of the goal, else 0; 80/20 task split."""

    name: ClassVar[str] = "point_robot_sparse"
    env_id: ClassVar[str] = "lit_offmeta/PointRobotSparse-v0"
    horizon: ClassVar[int] = 60
    num_default_tasks: ClassVar[int] = 100
    default_split: ClassVar[str] = "paper"
    sparse: ClassVar[bool] = True

    def reward(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        return (self._distance(task, next_obs) <= GOAL_RADIUS).astype(np.float32)

    def splits(self) -> dict[str, TaskSplit]:
        splits = super().splits()
        splits["paper"] = TaskSplit("paper", tuple(range(80)), tuple(range(80, 100)), "BOReL: 80 train / 20 eval")
        return splits
