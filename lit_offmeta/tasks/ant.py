"""Ant task families: goal direction (Ant-Dir, MACAW/PEARL) and goal position on a semicircle (BOReL).

All run on gymnasium's ``Ant-v5`` model (dt = 5 x 0.01 s = 0.05 s, actions in [-1, 1]^8), horizon 200.

Ant-Dir (MACAW; Mitchell et al. 2021, arXiv:2008.06043, following PEARL): 50 goal angles U(0, 2 pi), held-out
ids {6, 17, 23, 30, 41} (split ``"paper"``). Reward

    ``r = v_xy . (cos theta, sin theta) - 0.5 |a|^2 - 5e-4 |clip(cfrc_ext, -1, 1)|^2 + 1``

with ``v_xy`` the torso's planar velocity over the step; the episode terminates when the torso height leaves
[0.2, 1.0] (or the state stops being finite). Observation (107-d, ``float32``):

=======  =====================================================================================
index    content
=======  =====================================================================================
0-14     ``qpos``: torso x, y, z, torso orientation quaternion (4), 8 hip/ankle angles
15-28    ``qvel``: torso linear (3) and angular (3) velocity, 8 joint velocities
29-106   contact forces ``clip(cfrc_ext[1:], -1, 1)``: 6 numbers for each of the 13 bodies
=======  =====================================================================================

gymnasium's default layout drops the torso x, y; we keep them (``qpos[0:3]`` is exactly the torso position
for a free joint) because the reward's velocity is computed from them, and the contact forces because the
contact cost is. The velocity is the exact ``(qpos[0:2]' - qpos[0:2]) / dt`` (body positions read straight
after ``mj_step``, as ``get_body_com`` does, date from the start of its last substep). The survival bonus is a
constant 1 as in PEARL/MACAW (gymnasium's ``Ant-v5`` pays it only while healthy).

Ant-SemiCircle (BOReL; Dorfman et al. 2021): goals on the upper unit semicircle, angle U(0, pi). Dense
reward ``-|xy - g|_1 - 0.1 |a|^2`` (BOReL uses the L1 distance, "make it happy, not suicidal"), sparse
reward ``1{|xy - g|_2 <= 0.2} - 0.1 |a|^2``; neither uses a contact cost, neither terminates, and as in BOReL
the ant starts exactly at the model's initial pose (no reset noise) so that evaluation starts at the origin.
Observation (29-d, ``float32``): ``qpos`` (15, torso x, y first) and ``qvel`` (14), BOReL's layout.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv

from lit_offmeta.tasks.base import Task, TaskSplit, require_finite_in_range, require_keys, require_number_array
from lit_offmeta.tasks.mujoco import (
    MujocoTaskFamily,
    TaskMujocoEnv,
    check_obs_shape,
    clip_action,
    finite_difference,
)

DT = 0.05
NQ, NV, NBODY = 15, 14, 14
DIR_OBS_DIM = NQ + NV + 6 * (NBODY - 1)  # 107
SEMICIRCLE_OBS_DIM = NQ + NV  # 29
CONTACTS = slice(NQ + NV, DIR_OBS_DIM)
TORSO_XY = slice(0, 2)
TORSO_Z = 2
HEALTHY_Z = (0.2, 1.0)
CONTACT_COST = 5e-4
GOAL_RADIUS = 0.2
GOAL_LIMIT = 10.0
PAPER_TEST_IDS = (6, 17, 23, 30, 41)


class AntDir(MujocoTaskFamily):
    """Run in a goal direction ``angle`` (radians, [0, 2 pi]); see the module docstring."""

    name: ClassVar[str] = "ant_dir"
    env_id: ClassVar[str] = "lit_offmeta/AntDir-v0"
    horizon: ClassVar[int] = 200
    num_default_tasks: ClassVar[int] = 50
    observation_dim: ClassVar[int] = DIR_OBS_DIM
    dt: ClassVar[float] = DT

    def sample_tasks(self, n: int, seed: int) -> list[Task]:
        if n < 1:
            raise ValueError(f"{self.name}: n must be >= 1, got {n}")
        angles = np.random.default_rng(seed).uniform(0.0, 2 * math.pi, size=n)
        return [{"angle": float(a)} for a in angles]

    def validate_task(self, task: Task) -> Task:
        task = require_keys(self.name, task, ["angle"])
        task["angle"] = require_finite_in_range(self.name, "angle", task["angle"], 0.0, 2 * math.pi)
        return task

    def reward(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Directional velocity - 0.5 |a|^2 - contact cost + 1 (PEARL/MACAW Ant-Dir), ``float32``."""
        obs = check_obs_shape(self.name, "obs", obs, DIR_OBS_DIM)
        next_obs = check_obs_shape(self.name, "next_obs", next_obs, DIR_OBS_DIM)
        velocity = finite_difference(next_obs, obs, TORSO_XY, DT)  # [..., 2]
        direction = np.array([math.cos(task["angle"]), math.sin(task["angle"])])
        forward = velocity @ direction
        ctrl_cost = 0.5 * np.sum(np.square(clip_action(action)), axis=-1)
        contacts = np.asarray(next_obs[..., CONTACTS], dtype=np.float64)
        contact_cost = CONTACT_COST * np.sum(np.square(contacts), axis=-1)
        return (forward - ctrl_cost - contact_cost + 1.0).astype(np.float32)

    def terminated(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """True when the torso height leaves [0.2, 1.0] or the state is not finite (PEARL's ``notdone``)."""
        next_obs = check_obs_shape(self.name, "next_obs", next_obs, DIR_OBS_DIM)
        z = next_obs[..., TORSO_Z]
        healthy = np.isfinite(next_obs).all(axis=-1) & (z >= HEALTHY_Z[0]) & (z <= HEALTHY_Z[1])
        return ~healthy

    def splits(self) -> dict[str, TaskSplit]:
        splits = super().splits()
        train = tuple(i for i in range(self.num_default_tasks) if i not in PAPER_TEST_IDS)
        splits["paper"] = TaskSplit("paper", train, PAPER_TEST_IDS, "MACAW held-out goal directions")
        return splits


class AntSemiCircle(MujocoTaskFamily):
    """Walk to a ``goal`` [x, y] on the upper unit semicircle; dense L1 reward (BOReL's data collection)."""

    name: ClassVar[str] = "ant_semicircle"
    env_id: ClassVar[str] = "lit_offmeta/AntSemiCircle-v0"
    horizon: ClassVar[int] = 200
    num_default_tasks: ClassVar[int] = 50
    default_split: ClassVar[str] = "random"
    observation_dim: ClassVar[int] = SEMICIRCLE_OBS_DIM
    dt: ClassVar[float] = DT
    episodes_per_trial: ClassVar[int] = 2

    def sample_tasks(self, n: int, seed: int) -> list[Task]:
        if n < 1:
            raise ValueError(f"{self.name}: n must be >= 1, got {n}")
        angles = np.random.default_rng(seed).uniform(0.0, math.pi, size=n)
        return [{"goal": [float(np.cos(a)), float(np.sin(a))]} for a in angles]

    def validate_task(self, task: Task) -> Task:
        task = require_keys(self.name, task, ["goal"])
        goal = require_number_array(self.name, "goal", task["goal"], (2,))
        task["goal"] = [
            require_finite_in_range(self.name, f"goal[{i}]", g, -GOAL_LIMIT, GOAL_LIMIT) for i, g in enumerate(goal)
        ]
        return task

    def _offset(self, task: Task, next_obs: np.ndarray) -> np.ndarray:
        next_obs = check_obs_shape(self.name, "next_obs", next_obs, SEMICIRCLE_OBS_DIM)
        return np.asarray(next_obs[..., TORSO_XY], dtype=np.float64) - np.asarray(task["goal"], dtype=np.float64)

    @staticmethod
    def control_cost(action: np.ndarray) -> np.ndarray:
        return 0.1 * np.sum(np.square(clip_action(action)), axis=-1)

    def reward(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """``-|xy' - g|_1 - 0.1 |a|^2`` (BOReL's dense Ant-SemiCircle), ``float32``."""
        distance = np.sum(np.abs(self._offset(task, next_obs)), axis=-1)
        return (-distance - self.control_cost(action)).astype(np.float32)

    def success(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """The torso is within 0.2 (Euclidean) of the goal after the step."""
        return np.linalg.norm(self._offset(task, next_obs), axis=-1) <= GOAL_RADIUS


class AntSemiCircleSparse(AntSemiCircle):
    """Sparse Ant-SemiCircle: ``1{|xy' - g|_2 <= 0.2} - 0.1 |a|^2`` (BOReL's evaluation reward)."""

    name: ClassVar[str] = "ant_semicircle_sparse"
    env_id: ClassVar[str] = "lit_offmeta/AntSemiCircleSparse-v0"

    def reward(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        goal_reward = self.success(task, obs, action, next_obs).astype(np.float64)
        return (goal_reward - self.control_cost(action)).astype(np.float32)


class _AntTaskEnv(TaskMujocoEnv, AntEnv):
    """gymnasium's Ant-v5 with the family's observation, reward and termination."""

    include_contacts: ClassVar[bool] = True
    default_reset_noise: ClassVar[float] = 0.1

    def __init__(self, task: Task, **kwargs: Any) -> None:
        self.task = self.family_class().validate_task(task)
        kwargs.setdefault("reset_noise_scale", self.default_reset_noise)
        AntEnv.__init__(self, **kwargs)
        self._setup_task(task, **kwargs)

    def _get_obs(self) -> np.ndarray:
        parts = [self.data.qpos, self.data.qvel]
        if self.include_contacts:
            parts.append(self.contact_forces[1:].ravel())
        return np.concatenate(parts).astype(np.float32)


class AntDirEnv(_AntTaskEnv):
    family_class = AntDir


class AntSemiCircleEnv(_AntTaskEnv):
    family_class = AntSemiCircle
    include_contacts = False
    default_reset_noise = 0.0


class AntSemiCircleSparseEnv(AntSemiCircleEnv):
    family_class = AntSemiCircleSparse
