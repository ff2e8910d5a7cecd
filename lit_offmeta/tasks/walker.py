"""Walker2d-Params: walk forward under randomised dynamics (PEARL / MACAW Walker-Params).

Each task scales the parameters of gymnasium's ``Walker2d-v5`` MuJoCo model (dt = 4 x 0.002 s = 0.008 s,
actions in [-1, 1]^6, reset noise 5e-3), following PEARL's ``rand_param_envs``:

================================  ===========  ==============================================
task parameter (JSON list)        shape        scale factors drawn as
================================  ===========  ==============================================
``body_mass_scale``               [8]          1.5 ** U(-3, 3), one per body (world included)
``body_inertia_scale``            [8][3]       1.5 ** U(-3, 3), per body and principal axis
``geom_friction_scale``           [8][3]       1.5 ** U(-3, 3), per geom (slide, spin, roll)
``dof_damping_scale``             [9]          1.3 ** U(-3, 3), per degree of freedom
================================  ===========  ==============================================

Every factor must lie in the range its distribution can produce ([1.5^-3, 1.5^3] or [1.3^-3, 1.3^3]).
The task is the same MDP everywhere else: reward ``v_x + 1 - 1e-3 |a|^2`` with
``v_x = (x' - x) / dt``, horizon 200, and the episode terminates unless the torso height is in (0.8, 2) and
its angle in (-1, 1). 50 default tasks; the MACAW paper (App. C) holds out 5 of its 50 without naming them, and
the tasks are i.i.d. draws, so ``"paper"`` holds out the last 5 (45/5). (The workshop version used 35 tasks, 30/5.)

Observation (18-d, ``float32``): ``qpos`` (rootx, rootz = height, rooty = torso angle, six joint angles)
then ``clip(qvel, -10, 10)`` (nine velocities). gymnasium's default drops ``rootx``; we keep it because the
reward's velocity is computed from it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv

from lit_offmeta.tasks.base import Task, TaskSplit, require_keys, require_number_array
from lit_offmeta.tasks.mujoco import (
    MujocoTaskFamily,
    TaskMujocoEnv,
    check_obs_shape,
    clip_action,
    finite_difference,
)

DT = 0.008
NBODY, NGEOM, NV = 8, 8, 9
OBS_DIM = 9 + NV
X, HEIGHT, ANGLE = 0, 1, 2
HEALTHY_HEIGHT = (0.8, 2.0)
HEALTHY_ANGLE = (-1.0, 1.0)
CTRL_COST = 1e-3
LOG_SCALE_LIMIT = 3.0

# parameter name -> (shape, base of the exponent, MuJoCo model field it scales)
PARAMETERS: dict[str, tuple[tuple[int, ...], float, str]] = {
    "body_mass_scale": ((NBODY,), 1.5, "body_mass"),
    "body_inertia_scale": ((NBODY, 3), 1.5, "body_inertia"),
    "geom_friction_scale": ((NGEOM, 3), 1.5, "geom_friction"),
    "dof_damping_scale": ((NV,), 1.3, "dof_damping"),
}


class Walker2dParams(MujocoTaskFamily):
    """Walker2d with per-task mass, inertia, friction and damping; see the module docstring."""

    name: ClassVar[str] = "walker_params"
    dynamics_vary_with_task: ClassVar[bool] = True  # body masses, inertia, damping, friction
    env_id: ClassVar[str] = "lit_offmeta/Walker2dParams-v0"
    horizon: ClassVar[int] = 200
    num_default_tasks: ClassVar[int] = 50
    observation_dim: ClassVar[int] = OBS_DIM
    dt: ClassVar[float] = DT

    def sample_tasks(self, n: int, seed: int) -> list[Task]:
        if n < 1:
            raise ValueError(f"{self.name}: n must be >= 1, got {n}")
        rng = np.random.default_rng(seed)
        tasks = []
        for _ in range(n):
            task = {}
            for key, (shape, base, _) in PARAMETERS.items():
                task[key] = (base ** rng.uniform(-LOG_SCALE_LIMIT, LOG_SCALE_LIMIT, size=shape)).tolist()
            tasks.append(task)
        return tasks

    def validate_task(self, task: Task) -> Task:
        task = require_keys(self.name, task, list(PARAMETERS))
        for key, (shape, base, _) in PARAMETERS.items():
            value = require_number_array(self.name, key, task[key], shape)
            # A hair of slack so that factors that went through a JSON round trip still pass.
            low, high = base**-LOG_SCALE_LIMIT * (1 - 1e-9), base**LOG_SCALE_LIMIT * (1 + 1e-9)
            bad = ~np.isfinite(value) | (value < low) | (value > high)
            if bad.any():
                index = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(
                    f"{self.name}: task parameter {key!r}{list(index)}={value[index]} is outside "
                    f"[{base}^-{LOG_SCALE_LIMIT:g}, {base}^{LOG_SCALE_LIMIT:g}] = [{low:.4g}, {high:.4g}]"
                )
            task[key] = value.tolist()
        return task

    def reward(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """``v_x + 1 - 1e-3 |a|^2`` (PEARL / MACAW Walker-Params), ``float32`` of the batch shape."""
        obs = check_obs_shape(self.name, "obs", obs, OBS_DIM)
        next_obs = check_obs_shape(self.name, "next_obs", next_obs, OBS_DIM)
        velocity = finite_difference(next_obs, obs, X, DT)
        ctrl_cost = CTRL_COST * np.sum(np.square(clip_action(action)), axis=-1)
        return (velocity + 1.0 - ctrl_cost).astype(np.float32)

    def terminated(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """True unless ``0.8 < height < 2`` and ``-1 < angle < 1`` after the step."""
        next_obs = check_obs_shape(self.name, "next_obs", next_obs, OBS_DIM)
        height, angle = next_obs[..., HEIGHT], next_obs[..., ANGLE]
        healthy = (
            (height > HEALTHY_HEIGHT[0])
            & (height < HEALTHY_HEIGHT[1])
            & (angle > HEALTHY_ANGLE[0])
            & (angle < HEALTHY_ANGLE[1])
        )
        return ~healthy

    def splits(self) -> dict[str, TaskSplit]:
        splits = super().splits()
        n = self.num_default_tasks
        splits["paper"] = TaskSplit(
            "paper", tuple(range(n - 5)), tuple(range(n - 5, n)), "MACAW: 45 train / 5 held out (the last 5)"
        )
        return splits


class Walker2dParamsEnv(TaskMujocoEnv, Walker2dEnv):
    """gymnasium's Walker2d-v5 whose MuJoCo model is rescaled by the task's factors."""

    family_class = Walker2dParams

    def __init__(self, task: Task, **kwargs: Any) -> None:
        self.task = self.family_class().validate_task(task)
        Walker2dEnv.__init__(self, **kwargs)
        self._setup_task(task, **kwargs)
        for key, (shape, _, field) in PARAMETERS.items():
            values = getattr(self.model, field)
            if values.shape != shape:
                raise ValueError(
                    f"walker_params: the MuJoCo model's {field} has shape {values.shape}, expected {shape}; "
                    "task parameters only fit gymnasium's default walker2d_v5.xml"
                )
            # Scaling in place is safe: every env instance compiles its own copy of the model.
            values *= np.asarray(self.task[key], dtype=np.float64)

    def _get_obs(self) -> np.ndarray:
        velocity = np.clip(self.data.qvel, -10, 10)
        return np.concatenate([self.data.qpos, velocity]).astype(np.float32)
