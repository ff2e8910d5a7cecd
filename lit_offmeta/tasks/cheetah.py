"""HalfCheetah task families: target velocity (Cheetah-Vel) and direction (Cheetah-Dir).

Definitions follow PEARL / MACAW (Rakelly et al. 2019; Mitchell et al. 2021, arXiv:2008.06043), on gymnasium's
``HalfCheetah-v5`` model (dt = 5 x 0.01 s = 0.05 s, actions in [-1, 1]^6, reset noise 0.1), horizon 200,
never terminating.

Observation (20-d, ``float32``), the PEARL/MACAW layout so that datasets from the authors' code line up:

======  =====================================================================================
index   content
======  =====================================================================================
0-7     ``qpos[1:]``: rootz, rooty (torso pitch), bthigh, bshin, bfoot, fthigh, fshin, ffoot
8-16    ``qvel``: rootx, rootz, rooty, then the six joint velocities
17-19   torso position ``get_body_com("torso")`` (x, y, z)
======  =====================================================================================

Indices 17-19 are what the reference code calls the torso "centre of mass": ``get_body_com`` returns the
torso body's frame origin (``data.xpos``), which for the HalfCheetah sits on the root joints, so index 17 equals
``qpos[0]`` (the root x position) exactly. We keep that quantity (not the inertial centre ``xipos``, which
moves with the torso's pitch) because the reward's forward velocity is defined through it. Body positions
read straight after ``mj_step`` date from the start of its last 0.01 s substep (measured here: 3-4 mm behind
``qpos[0]`` under random actions), so the environment recomputes the kinematics before reading them.

Rewards, with ``v_x = (next_obs[17] - obs[17]) / dt`` (the simulator's ``(qpos[0]' - qpos[0]) / dt``):

* Cheetah-Vel: ``-|v_x - v_goal| - 0.05 |a|^2``; 40 targets ``linspace(0.075, 3.0, 40)``, held-out
  ids {2, 7, 15, 23, 26} (split ``"paper"``), plus task-sparsity and out-of-distribution splits.
* Cheetah-Dir: ``dir * v_x - 0.05 |a|^2`` with ``dir`` in {+1, -1}; the paper trains and tests on both.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from lit_offmeta.tasks.base import (
    Task,
    TaskSplit,
    is_number,
    require_finite_in_range,
    require_keys,
    split_by_range,
)
from lit_offmeta.tasks.mujoco import (
    MujocoTaskFamily,
    TaskMujocoEnv,
    check_obs_shape,
    clip_action,
    finite_difference,
)

OBS_DIM = 20
TORSO_X = 17
"""Index of the torso x position in the observation."""
DT = 0.05
CTRL_COST = 0.05
MAX_VELOCITY = 3.0
PAPER_TEST_IDS = (2, 7, 15, 23, 26)


class _CheetahFamily(MujocoTaskFamily):
    """What the two HalfCheetah families share: model, observation, forward velocity, control cost."""

    horizon: ClassVar[int] = 200
    observation_dim: ClassVar[int] = OBS_DIM
    dt: ClassVar[float] = DT

    def forward_velocity(self, obs: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Torso x velocity over one step, ``[...]`` in ``float64``, from the observations alone."""
        obs = check_obs_shape(self.name, "obs", obs, OBS_DIM)
        next_obs = check_obs_shape(self.name, "next_obs", next_obs, OBS_DIM)
        return finite_difference(next_obs, obs, TORSO_X, DT)

    @staticmethod
    def control_cost(action: np.ndarray) -> np.ndarray:
        """``0.05 * |a|^2`` of the clipped action, ``[...]``."""
        action = clip_action(action)
        return CTRL_COST * np.sum(np.square(action), axis=-1)


class HalfCheetahVel(_CheetahFamily):
    """Run at a target forward velocity (task parameter ``velocity`` in [0, 3] m/s).

    ``default_tasks()`` are the 40 targets ``linspace(0.075, 3.0, 40)`` (sorted, so task-sparsity splits by
    index are splits by velocity); ``sample_tasks`` draws U(0, 3) as in BOReL.
    """

    name: ClassVar[str] = "cheetah_vel"
    env_id: ClassVar[str] = "lit_offmeta/HalfCheetahVel-v0"
    num_default_tasks: ClassVar[int] = 40
    episodes_per_trial: ClassVar[int] = 2
    """BOReL evaluates Cheetah-Vel with 2-episode trials."""

    def sample_tasks(self, n: int, seed: int) -> list[Task]:
        if n < 1:
            raise ValueError(f"{self.name}: n must be >= 1, got {n}")
        velocities = np.random.default_rng(seed).uniform(0.0, MAX_VELOCITY, size=n)
        return [{"velocity": float(v)} for v in velocities]

    def default_tasks(self) -> list[Task]:
        return [{"velocity": float(v)} for v in np.linspace(0.075, MAX_VELOCITY, self.num_default_tasks)]

    def validate_task(self, task: Task) -> Task:
        task = require_keys(self.name, task, ["velocity"])
        task["velocity"] = require_finite_in_range(self.name, "velocity", task["velocity"], 0.0, MAX_VELOCITY)
        return task

    def reward(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """``-|v_x - v_goal| - 0.05 |a|^2`` (PEARL / MACAW Cheetah-Vel), ``float32`` of the batch shape."""
        velocity = self.forward_velocity(obs, next_obs)
        reward = -np.abs(velocity - float(task["velocity"])) - self.control_cost(action)
        return reward.astype(np.float32)

    def splits(self) -> dict[str, TaskSplit]:
        """``paper``; task sparsity ``sparse_20/10/5/3``; out-of-distribution ``ood_0_1``, ``ood_0_2``.

        Sparsity splits (MACAW's ablation over the 40 velocity-sorted targets): train on every 2nd, 4th or
        8th task, or on tasks {0, 16, 32}; test on all the others (MACAW App. D). OOD splits train on targets
        in [0, 1) (resp. [0, 2)) and test on [1, 3] (resp. [2, 3]): 13 train / 27 test, as in the workshop
        paper's Fig. 2, and 26 / 14 (targets 2.025 to 3.0). The paper's fine-tuning table reports 13 test
        tasks for [2, 3] without listing them; we keep every target in range.
        """
        splits = super().splits()
        n = self.num_default_tasks
        paper_train = tuple(i for i in range(n) if i not in PAPER_TEST_IDS)
        splits["paper"] = TaskSplit("paper", paper_train, PAPER_TEST_IDS, "PEARL/MACAW held-out targets")
        for name, train in (
            ("sparse_20", tuple(range(0, n, 2))),
            ("sparse_10", tuple(range(0, n, 4))),
            ("sparse_5", tuple(range(0, n, 8))),
            ("sparse_3", (0, 16, 32)),
        ):
            test = tuple(i for i in range(n) if i not in train)
            splits[name] = TaskSplit(name, train, test, f"MACAW task sparsity: {len(train)} training tasks")
        velocities = [t["velocity"] for t in self.default_tasks()]
        splits["ood_0_1"] = split_by_range("ood_0_1", velocities, (0.0, 1.0), (1.0, MAX_VELOCITY))
        splits["ood_0_2"] = split_by_range("ood_0_2", velocities, (0.0, 2.0), (2.0, MAX_VELOCITY))
        return splits


class HalfCheetahDir(_CheetahFamily):
    """Run forwards (``direction`` +1) or backwards (-1). Two tasks; the paper trains and tests on both."""

    name: ClassVar[str] = "cheetah_dir"
    env_id: ClassVar[str] = "lit_offmeta/HalfCheetahDir-v0"
    num_default_tasks: ClassVar[int] = 2

    def sample_tasks(self, n: int, seed: int) -> list[Task]:
        if n < 1:
            raise ValueError(f"{self.name}: n must be >= 1, got {n}")
        directions = np.random.default_rng(seed).choice([1, -1], size=n)
        return [{"direction": int(d)} for d in directions]

    def default_tasks(self) -> list[Task]:
        return [{"direction": 1}, {"direction": -1}]

    def validate_task(self, task: Task) -> Task:
        task = require_keys(self.name, task, ["direction"])
        direction = task["direction"]
        if not is_number(direction) or direction not in (1, -1):
            raise ValueError(f"{self.name}: task parameter 'direction' must be 1 or -1, got {direction!r}")
        task["direction"] = int(direction)
        return task

    def reward(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """``dir * v_x - 0.05 |a|^2`` (PEARL / MACAW Cheetah-Dir), ``float32`` of the batch shape."""
        velocity = self.forward_velocity(obs, next_obs)
        reward = float(task["direction"]) * velocity - self.control_cost(action)
        return reward.astype(np.float32)

    def splits(self) -> dict[str, TaskSplit]:
        """``paper``: both directions for training AND evaluation, as in PEARL/MACAW (no held-out task)."""
        splits = super().splits()
        splits["paper"] = TaskSplit(
            "paper", (0, 1), (0, 1), "PEARL/MACAW: train = test (2 tasks)", allow_overlap=True
        )
        return splits


class _HalfCheetahTaskEnv(TaskMujocoEnv, HalfCheetahEnv):
    """gymnasium's HalfCheetah-v5 with the family's 20-d observation and reward."""

    def __init__(self, task: Task, **kwargs: Any) -> None:
        self.task = self.family_class().validate_task(task)
        HalfCheetahEnv.__init__(self, **kwargs)
        self._setup_task(task, **kwargs)

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        """Compile the model without MuJoCo's deprecated ``settotalmass`` compiler attribute.

        gymnasium's half_cheetah.xml sets ``settotalmass="14"``; MuJoCo 3 warns about it on every env
        construction (and writes ``MUJOCO_LOG.TXT`` into the working directory). We drop the attribute and
        apply ``mj_setTotalmass`` + ``mj_setConst`` to the compiled model instead, as MuJoCo advises; the result
        is bit-identical (same masses, inertias and trajectories; see the tests).
        """
        with open(self.fullpath, encoding="utf-8") as file:
            xml = file.read()
        match = re.search(r'\s+settotalmass="([^"]+)"', xml)
        if match is None:
            return super()._initialize_simulation()
        model = mujoco.MjModel.from_xml_string(xml[: match.start()] + xml[match.end() :])
        mujoco.mj_setTotalmass(model, float(match.group(1)))
        mujoco.mj_setConst(model, mujoco.MjData(model))
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    def _get_obs(self) -> np.ndarray:
        # mj_step leaves body positions from the start of its last substep; recompute them for the current
        # qpos so that the torso x in the observation is exactly qpos[0] and the velocity the simulator's.
        mujoco.mj_kinematics(self.model, self.data)
        torso = self.data.body("torso").xpos
        return np.concatenate([self.data.qpos[1:], self.data.qvel, torso]).astype(np.float32)


class HalfCheetahVelEnv(_HalfCheetahTaskEnv):
    family_class = HalfCheetahVel


class HalfCheetahDirEnv(_HalfCheetahTaskEnv):
    family_class = HalfCheetahDir
