"""Task families: the single source of truth for each family of MDPs (see :mod:`lit_offmeta.tasks.base`).

Importing ``lit_offmeta`` (or this package) registers every family's environment with gymnasium, so after
``import lit_offmeta`` both ``get_family("cheetah_vel").make_env(task)`` and
``gym.make("lit_offmeta/HalfCheetahVel-v0", task=task)`` work; without the import, gymnasium's module prefix
does it: ``gym.make("lit_offmeta.tasks:lit_offmeta/HalfCheetahVel-v0", task=task)``.

Without ``task=``, ``gym.make`` builds the family's default task: task 0 of ``default_tasks()``, the task that
``lit-offmeta collect`` stores as ``task_0000-v0`` (last column; goals and angles rounded here).

============================  ========================================  =========  =======  =====  =====================
family (``get_family``)       gymnasium id                              obs / act  horizon  tasks  default task
============================  ========================================  =========  =======  =====  =====================
``point_robot``               ``lit_offmeta/PointRobot-v0``             2 / 2      20       40     goal (-0.928, 0.374)
``point_robot_sparse``        ``lit_offmeta/PointRobotSparse-v0``       2 / 2      60       100    goal (-0.928, 0.374)
``grid_navi``                 ``lit_offmeta/GridNavi-v0``               2 / 5 (d)  15       21     goal cell (0, 2)
``cheetah_vel``               ``lit_offmeta/HalfCheetahVel-v0``         20 / 6     200      40     velocity 0.075
``cheetah_dir``               ``lit_offmeta/HalfCheetahDir-v0``         20 / 6     200      2      direction 1 (forward)
``ant_dir``                   ``lit_offmeta/AntDir-v0``                 107 / 8    200      50     angle 5.517
``ant_semicircle``            ``lit_offmeta/AntSemiCircle-v0``          29 / 8     200      50     goal (-0.928, 0.374)
``ant_semicircle_sparse``     ``lit_offmeta/AntSemiCircleSparse-v0``    29 / 8     200      50     goal (-0.928, 0.374)
``walker_params``             ``lit_offmeta/Walker2dParams-v0``         18 / 6     200      50     first seeded scales
``metaworld_ml1_reach``       ``lit_offmeta/MetaWorldML1Reach-v0``      39 / 4     150      100    a seeded placement
``metaworld_ml1_push``        ``lit_offmeta/MetaWorldML1Push-v0``       39 / 4     150      100    a seeded placement
``metaworld_ml1_pick_place``  ``lit_offmeta/MetaWorldML1PickPlace-v0``  39 / 4     150      100    a seeded placement
``metaworld_ml45``            ``lit_offmeta/MetaWorldML45-v0``          39 / 4     150      50     ``assembly-v3``
============================  ========================================  =========  =======  =====  =====================

(d): discrete actions. The Meta-World families need the optional ``metaworld`` package
(``pip install 'lit-offmeta[metaworld]'``); their registry entries build the default task when the env is made.
Multi-episode (BAMDP) trials: :func:`make_trial_env` / :class:`TrialWrapper`.
"""

from __future__ import annotations

import gymnasium as gym

from lit_offmeta.tasks.ant import AntDir, AntSemiCircle, AntSemiCircleSparse
from lit_offmeta.tasks.base import Task, TaskFamily, TaskSplit, task_features
from lit_offmeta.tasks.cheetah import HalfCheetahDir, HalfCheetahVel
from lit_offmeta.tasks.grid_navi import GridNavi
from lit_offmeta.tasks.meta_world import (
    MetaWorldML1PickPlace,
    MetaWorldML1Push,
    MetaWorldML1Reach,
    MetaWorldML45,
)
from lit_offmeta.tasks.point_robot import PointRobot, PointRobotSparse
from lit_offmeta.tasks.trial import TrialWrapper, make_trial_env
from lit_offmeta.tasks.walker import Walker2dParams

FAMILIES: dict[str, type[TaskFamily]] = {
    cls.name: cls
    for cls in (
        PointRobot,
        PointRobotSparse,
        GridNavi,
        HalfCheetahVel,
        HalfCheetahDir,
        AntDir,
        AntSemiCircle,
        AntSemiCircleSparse,
        Walker2dParams,
        MetaWorldML1Reach,
        MetaWorldML1Push,
        MetaWorldML1PickPlace,
        MetaWorldML45,
    )
}


def get_family(name: str | TaskFamily) -> TaskFamily:
    """The task family registered under ``name`` (an instance passes through)."""
    if isinstance(name, TaskFamily):
        return name
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}; available: {sorted(FAMILIES)}")
    return FAMILIES[name]()


def _register(family: type[TaskFamily], entry_point: str, **kwargs) -> None:
    # The default task rides in the spec's kwargs, so ``gym.make(env_id)`` works and ``task=`` overrides it.
    if family.env_id not in gym.registry:
        kwargs["task"] = family().default_tasks()[0]
        gym.register(id=family.env_id, entry_point=entry_point, max_episode_steps=family.horizon, kwargs=kwargs)


_register(PointRobot, "lit_offmeta.tasks.point_robot:PointRobotEnv", sparse=False)
_register(PointRobotSparse, "lit_offmeta.tasks.point_robot:PointRobotEnv", sparse=True)
_register(GridNavi, "lit_offmeta.tasks.grid_navi:GridNaviEnv")
_register(HalfCheetahVel, "lit_offmeta.tasks.cheetah:HalfCheetahVelEnv")
_register(HalfCheetahDir, "lit_offmeta.tasks.cheetah:HalfCheetahDirEnv")
_register(AntDir, "lit_offmeta.tasks.ant:AntDirEnv")
_register(AntSemiCircle, "lit_offmeta.tasks.ant:AntSemiCircleEnv")
_register(AntSemiCircleSparse, "lit_offmeta.tasks.ant:AntSemiCircleSparseEnv")
_register(Walker2dParams, "lit_offmeta.tasks.walker:Walker2dParamsEnv")
for _meta_world in (MetaWorldML1Reach, MetaWorldML1Push, MetaWorldML1PickPlace, MetaWorldML45):
    # no default task in the spec: building one needs the optional metaworld package, which importing us must not
    if _meta_world.env_id not in gym.registry:
        gym.register(id=_meta_world.env_id, entry_point="lit_offmeta.tasks.meta_world:MetaWorldTaskEnv",
                     max_episode_steps=_meta_world.horizon, kwargs={"family": _meta_world.name})

__all__ = [
    "FAMILIES",
    "AntDir",
    "AntSemiCircle",
    "AntSemiCircleSparse",
    "GridNavi",
    "HalfCheetahDir",
    "HalfCheetahVel",
    "MetaWorldML1PickPlace",
    "MetaWorldML1Push",
    "MetaWorldML1Reach",
    "MetaWorldML45",
    "PointRobot",
    "PointRobotSparse",
    "Task",
    "TaskFamily",
    "TaskSplit",
    "TrialWrapper",
    "Walker2dParams",
    "get_family",
    "make_trial_env",
    "task_features",
]
