"""GridNavi (VariBAD / BOReL): find an unknown goal cell on a 5x5 grid.

The agent starts in cell (0, 0). Actions: 0 no-op, 1 up, 2 right, 3 down, 4 left. The goal is one of the 21
cells outside the 2x2 corner at the start. Reward ``1`` when the agent is on the goal after the step, else
``-0.1``; reaching the goal does NOT end the episode (horizon 15). The observation is the cell ``(x, y)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from lit_offmeta.tasks.base import Task, TaskFamily, require_keys, require_number_array

GRID_SIZE = 5
# up, right, down, left as (dx, dy); index 0 is the no-op.
MOVES = np.array([[0, 0], [0, 1], [1, 0], [0, -1], [-1, 0]], dtype=np.int64)
GOAL_CELLS = [(x, y) for x in range(GRID_SIZE) for y in range(GRID_SIZE) if not (x < 2 and y < 2)]


class GridNaviEnv(gym.Env):
    """The grid world; the reward comes from :class:`GridNavi`."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, task: Task) -> None:
        self.family = GridNavi()
        self.task = self.family.validate_task(task)
        self.observation_space = gym.spaces.Box(0.0, GRID_SIZE - 1, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(len(MOVES))
        self._cell = np.zeros(2, dtype=np.int64)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._cell = np.zeros(2, dtype=np.int64)
        return self._cell.astype(np.float32), {"task": dict(self.task)}

    def step(self, action):
        action = int(action)
        if not 0 <= action < len(MOVES):
            raise ValueError(f"GridNavi: action must be in [0, {len(MOVES) - 1}], got {action}")
        obs = self._cell.astype(np.float32)
        self._cell = np.clip(self._cell + MOVES[action], 0, GRID_SIZE - 1)
        next_obs = self._cell.astype(np.float32)
        reward = float(self.family.reward(self.task, obs, np.asarray(action), next_obs))
        success = bool(self.family.success(self.task, obs, np.asarray(action), next_obs))
        return next_obs, reward, False, False, {"task": dict(self.task), "success": success}


class GridNavi(TaskFamily):
    """5x5 GridNavi with 21 possible goals (all of them are ``default_tasks()``)."""

    name: ClassVar[str] = "grid_navi"
    env_id: ClassVar[str] = "lit_offmeta/GridNavi-v0"
    horizon: ClassVar[int] = 15
    num_default_tasks: ClassVar[int] = len(GOAL_CELLS)
    discrete_actions: ClassVar[bool] = True
    default_split: ClassVar[str] = "random"
    episodes_per_trial: ClassVar[int] = 4

    def sample_tasks(self, n: int, seed: int) -> list[Task]:
        if n < 1:
            raise ValueError(f"{self.name}: n must be >= 1, got {n}")
        idx = np.random.default_rng(seed).integers(0, len(GOAL_CELLS), size=n)
        return [{"goal": list(GOAL_CELLS[i])} for i in idx]

    def default_tasks(self) -> list[Task]:
        return [{"goal": list(cell)} for cell in GOAL_CELLS]

    def validate_task(self, task: Task) -> Task:
        task = require_keys(self.name, task, ["goal"])
        goal = task["goal"]
        try:
            values = require_number_array(self.name, "goal", goal, (2,))
        except ValueError:
            raise ValueError(f"{self.name}: task parameter 'goal' must be two integers, got {goal!r}") from None
        cell = tuple(int(g) for g in values)
        if cell not in GOAL_CELLS or any(float(g) != int(g) for g in values):
            raise ValueError(f"{self.name}: goal {goal!r} is not one of the {len(GOAL_CELLS)} goal cells")
        task["goal"] = list(cell)
        return task

    def make_env(self, task: Task, **kwargs: Any) -> gym.Env:
        return gym.make(self.env_id, task=self.validate_task(task), **kwargs)

    def _on_goal(self, task: Task, next_obs: np.ndarray) -> np.ndarray:
        goal = np.asarray(task["goal"], dtype=np.float32)
        return np.all(np.asarray(next_obs, dtype=np.float32)[..., :2] == goal, axis=-1)

    def reward(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        return np.where(self._on_goal(task, next_obs), 1.0, -0.1).astype(np.float32)

    def success(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        return self._on_goal(task, next_obs)
