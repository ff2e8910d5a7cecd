"""Fakes shared by the callback tests: a 1-D task family whose returns are known in closed form."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from lit_offmeta.tasks.base import Task, TaskFamily, require_keys


class LineEnv(gym.Env):
    """1-D position starting at 0; ``x' = x + a`` with ``a`` in [-1, 1]; reward ``-|x' - goal|``.

    With ``terminate_at`` set, the episode terminates once ``x' >= terminate_at``.
    """

    def __init__(self, task: Task, horizon: int) -> None:
        self.task = task
        self.horizon = horizon
        self.observation_space = gym.spaces.Box(-100.0, 100.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.x = 0.0
        self.t = 0
        self.reset_seeds: list[int | None] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.reset_seeds.append(seed)
        self.x, self.t = 0.0, 0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        a = float(np.asarray(action).reshape(-1)[0])
        self.x += a
        self.t += 1
        reward = -abs(self.x - self.task["goal"])
        terminated = self.task.get("terminate_at") is not None and self.x >= self.task["terminate_at"]
        return np.array([self.x], np.float32), reward, bool(terminated), self.t >= self.horizon, {}


class LineFamily(TaskFamily):
    """Tasks ``{"goal": g}``; success when within 0.5 of the goal."""

    name: ClassVar[str] = "line"
    env_id: ClassVar[str] = "none"
    horizon: ClassVar[int] = 4
    num_default_tasks: ClassVar[int] = 5

    def __init__(self, with_success: bool = True) -> None:
        self.with_success = with_success

    def sample_tasks(self, n: int, seed: int) -> list[Task]:
        return [{"goal": float(g)} for g in np.linspace(4.0, 6.0, n)]

    def validate_task(self, task: Task) -> Task:
        return require_keys(self.name, task, ["goal"])

    def make_env(self, task: Task, **kwargs: Any) -> gym.Env:
        return LineEnv(task, self.horizon)

    def reward(self, task, obs, action, next_obs):
        return -np.abs(np.asarray(next_obs)[..., 0] - task["goal"])

    def success(self, task, obs, action, next_obs):
        if not self.with_success:
            return None
        return np.abs(np.asarray(next_obs)[..., 0] - task["goal"]) <= 0.5


class ConstantModule(nn.Module):
    """A mean-action policy that always outputs ``value`` (one action dimension)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor([value]))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value.expand(obs.shape[0], 1)


def line_return(step: float, goal: float, horizon: int) -> float:
    """Return of moving by ``step`` (clipped to [-1, 1]) every step for ``horizon`` steps from 0."""
    a = float(np.clip(step, -1, 1))
    return float(sum(-abs(a * (t + 1) - goal) for t in range(horizon)))
