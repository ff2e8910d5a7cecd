"""Task families: the single source of truth for each family of MDPs (see :mod:`lit_offmeta.tasks.base`).

Importing this package registers every family's environment with gymnasium, so after
``import lit_offmeta.tasks`` both ``get_family("cheetah_vel").make_env(task)`` and
``gym.make("lit_offmeta/HalfCheetahVel-v0", task=task)`` work; without the import, gymnasium's module prefix
does it: ``gym.make("lit_offmeta.tasks:lit_offmeta/HalfCheetahVel-v0", task=task)``.

=========================  ======================================  =========  =======  =====
family (``get_family``)    gymnasium id                            obs / act  horizon  tasks
=========================  ======================================  =========  =======  =====
``point_robot``            ``lit_offmeta/PointRobot-v0``           2 / 2      20       40
``point_robot_sparse``     ``lit_offmeta/PointRobotSparse-v0``     2 / 2      60       100
``grid_navi``              ``lit_offmeta/GridNavi-v0``             2 / 5 (d)  15       21
``cheetah_vel``            ``lit_offmeta/HalfCheetahVel-v0``       20 / 6     200      40
``cheetah_dir``            ``lit_offmeta/HalfCheetahDir-v0``       20 / 6     200      2
``ant_dir``                ``lit_offmeta/AntDir-v0``               107 / 8    200      50
``ant_semicircle``         ``lit_offmeta/AntSemiCircle-v0``        29 / 8     200      50
``ant_semicircle_sparse``  ``lit_offmeta/AntSemiCircleSparse-v0``  29 / 8     200      50
``walker_params``          ``lit_offmeta/Walker2dParams-v0``       18 / 6     200      50
=========================  ======================================  =========  =======  =====

(d): discrete actions. Multi-episode (BAMDP) trials: :func:`make_trial_env` / :class:`TrialWrapper`.
"""

from __future__ import annotations

import gymnasium as gym

from lit_offmeta.tasks.ant import AntDir, AntSemiCircle, AntSemiCircleSparse
from lit_offmeta.tasks.base import Task, TaskFamily, TaskSplit
from lit_offmeta.tasks.cheetah import HalfCheetahDir, HalfCheetahVel
from lit_offmeta.tasks.grid_navi import GridNavi
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
    )
}


def get_family(name: str | TaskFamily) -> TaskFamily:
    """The task family registered under ``name`` (an instance passes through)."""
    if isinstance(name, TaskFamily):
        return name
    if name not in FAMILIES:
        raise ValueError(f"unknown task family {name!r}; available: {sorted(FAMILIES)}")
    return FAMILIES[name]()


def _register(env_id: str, entry_point: str, horizon: int, **kwargs) -> None:
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, max_episode_steps=horizon, kwargs=kwargs)


_register(PointRobot.env_id, "lit_offmeta.tasks.point_robot:PointRobotEnv", PointRobot.horizon, sparse=False)
_register(
    PointRobotSparse.env_id, "lit_offmeta.tasks.point_robot:PointRobotEnv", PointRobotSparse.horizon, sparse=True
)
_register(GridNavi.env_id, "lit_offmeta.tasks.grid_navi:GridNaviEnv", GridNavi.horizon)
_register(HalfCheetahVel.env_id, "lit_offmeta.tasks.cheetah:HalfCheetahVelEnv", HalfCheetahVel.horizon)
_register(HalfCheetahDir.env_id, "lit_offmeta.tasks.cheetah:HalfCheetahDirEnv", HalfCheetahDir.horizon)
_register(AntDir.env_id, "lit_offmeta.tasks.ant:AntDirEnv", AntDir.horizon)
_register(AntSemiCircle.env_id, "lit_offmeta.tasks.ant:AntSemiCircleEnv", AntSemiCircle.horizon)
_register(Walker2dParams.env_id, "lit_offmeta.tasks.walker:Walker2dParamsEnv", Walker2dParams.horizon)
_register(
    AntSemiCircleSparse.env_id, "lit_offmeta.tasks.ant:AntSemiCircleSparseEnv", AntSemiCircleSparse.horizon
)

__all__ = [
    "FAMILIES",
    "AntDir",
    "AntSemiCircle",
    "AntSemiCircleSparse",
    "GridNavi",
    "HalfCheetahDir",
    "HalfCheetahVel",
    "PointRobot",
    "PointRobotSparse",
    "Task",
    "TaskFamily",
    "TaskSplit",
    "TrialWrapper",
    "Walker2dParams",
    "get_family",
    "make_trial_env",
]
