"""Shared machinery for the MuJoCo task families (Cheetah, Ant, Walker).

Each MuJoCo family reuses one of gymnasium's v5 environments for the model, the reset distribution and the
simulation step, and replaces two things:

* the observation, which becomes ``float32`` and carries every quantity the family's reward needs (e.g. the
  torso position), so that ``reward(task, obs, action, next_obs)`` is a pure function of the stored
  transition;
* ``step()``, which computes the reward and the termination flag by calling that one vectorised family
  function on the previous and the new observation. Reward relabelling on stored ``float32`` data therefore
  reproduces exactly what the environment returned.

Why ``float32`` observations: datasets store observations as ``float32`` (see the episode layout in the data
layer). If ``step()`` computed rewards from the simulator's ``float64`` state, relabelled rewards would differ
from the logged ones by rounding (about 1e-4 for a velocity from positions of size ~100 m divided by
dt = 0.05). Computing both from the same ``float32`` observation removes that mismatch; the tests check that
the result still matches the simulator's own ``float64`` velocity to within that rounding.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.utils import EzPickle

from lit_offmeta.tasks.base import Task, TaskFamily

ACTION_LOW = -1.0
ACTION_HIGH = 1.0
"""All MuJoCo families use gymnasium's actuators with ``ctrlrange`` [-1, 1]."""


def clip_action(action: np.ndarray) -> np.ndarray:
    """Actions as the simulator applies them: ``float64`` copies clipped to the control range.

    ``env.step()`` and ``reward()`` both go through this, so a stored action outside [-1, 1] (e.g. an
    unclipped Gaussian sample) gets the same control cost as the clipped torque the simulator applied.
    """
    return np.clip(np.asarray(action, dtype=np.float64), ACTION_LOW, ACTION_HIGH)


def finite_difference(next_obs: np.ndarray, obs: np.ndarray, index: int | slice, dt: float) -> np.ndarray:
    """``(next_obs[..., index] - obs[..., index]) / dt`` in ``float64``, as a velocity from two positions."""
    after = np.asarray(next_obs, dtype=np.float64)[..., index]
    before = np.asarray(obs, dtype=np.float64)[..., index]
    return (after - before) / dt


def check_obs_shape(family: str, name: str, array: np.ndarray, obs_dim: int) -> np.ndarray:
    """``array`` as a float array whose last axis is ``obs_dim``; a clear ``ValueError`` otherwise."""
    array = np.asarray(array)
    if array.ndim == 0 or array.shape[-1] != obs_dim:
        raise ValueError(
            f"{family}: {name} must have shape [..., {obs_dim}] (the family's observation), got {array.shape}"
        )
    return array


class MujocoTaskFamily(TaskFamily):
    """A task family whose environment is a gymnasium MuJoCo env driven by the family's reward.

    Subclasses set ``env_id``, ``observation_dim`` and ``dt`` (the simulator's time per ``step()``, checked
    against the model when an environment is built) and implement ``reward``; families that end episodes
    early override ``terminated``.
    """

    observation_dim: ClassVar[int]
    """Length of the family's observation vector."""
    dt: ClassVar[float]
    """Seconds of simulated time per ``env.step()`` (``timestep * frame_skip``)."""

    def make_env(self, task: Task, **kwargs: Any) -> gym.Env:
        """``gym.make(env_id, task=task)``: the family's env with its time limit ``horizon``."""
        return gym.make(self.env_id, task=self.validate_task(task), **kwargs)

    def terminated(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Vectorised termination flag (true end of the MDP, no bootstrapping); default: never."""
        next_obs = check_obs_shape(self.name, "next_obs", next_obs, self.observation_dim)
        return np.zeros(next_obs.shape[:-1], dtype=bool)


class TaskMujocoEnv(EzPickle):
    """Mixin placed before a gymnasium MuJoCo env class; see the module docstring.

    Subclasses implement ``_get_obs`` (returning ``float32``) and set ``family_class``. The constructor of
    the concrete class must call :meth:`_setup_task` after the gymnasium parent's ``__init__``.
    """

    family_class: ClassVar[type[MujocoTaskFamily]]

    def _setup_task(self, task: Task, **kwargs: Any) -> None:
        family = self.family_class()
        if not np.isclose(self.dt, family.dt):
            raise ValueError(f"{family.name}: simulator dt {self.dt} differs from the family's dt {family.dt}")
        self.family = family
        # Re-register the constructor arguments so that pickling (e.g. for subprocess vector envs) rebuilds
        # this env with its task, not the parent's bare defaults.
        EzPickle.__init__(self, task, **kwargs)
        dim = family.observation_dim
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
        self._last_obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        self._last_obs = obs
        info["task"] = dict(self.task)
        return obs.copy(), info

    def step(self, action):
        if self._last_obs is None:
            raise RuntimeError(f"{self.family.name}: call reset() before step()")
        action = np.asarray(action, dtype=np.float64).reshape(self.action_space.shape)
        applied = clip_action(action)
        obs = self._last_obs
        self.do_simulation(applied, self.frame_skip)
        next_obs = self._get_obs()
        reward = float(self.family.reward(self.task, obs, applied, next_obs))
        terminated = bool(self.family.terminated(self.task, obs, applied, next_obs))
        success = self.family.success(self.task, obs, applied, next_obs)
        self._last_obs = next_obs
        info: dict[str, Any] = {"task": dict(self.task), "x_position": float(self.data.qpos[0])}
        if success is not None:
            info["success"] = bool(success)
        if self.render_mode == "human":
            self.render()
        # The time limit (truncation) comes from the TimeLimit wrapper that gym.make adds.
        return next_obs.copy(), reward, terminated, False, info
