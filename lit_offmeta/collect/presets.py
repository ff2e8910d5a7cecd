"""Collection presets: how much behaviour data to record for each task family, and with which agent.

A preset is a :class:`CollectConfig`, a frozen record of every setting the ``collect`` command uses. Four
sizes exist for every family:

* ``tiny``: a few tasks and a few seconds of work; used by the tests.
* ``small``: sized for a 2-core CPU (PointRobot in under a minute, Cheetah-Vel 40 tasks in under 45 minutes).
* ``medium``: 1/25 of the paper for the MuJoCo families (100k recorded transitions per task), recorded from
  snapshots of a behaviour agent that learns apart from recording (``learn_steps_per_task``), so the size
  costs simulation, not learning; 5x ``small`` (or more) for the others. Times are in docs/DATASETS.md.
* ``paper``: the sizes of the source documents, for a big machine. MACAW (arXiv:2008.06043, App. D) saved
  each task's whole replay buffer: 2.5M steps for Cheetah-Vel and Cheetah-Dir, 2M for Ant-Dir, 1M for
  Walker-Params. The documents give no sizes for PointRobot and GridNavi
  (BOReL keeps each per-task agent's entire replay history), nor for Ant-Semi-circle; their ``paper`` presets
  are our choice, 10x ``small`` or more.

A config file (YAML) names a family and a preset and may override any field under ``settings``
(see ``configs/collect/``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

AGENTS = ("goal_seeker", "q_learning", "sac", "scripted_expert")
"""Behaviour agents: scripted annealed goal seeker (PointRobot), tabular Q-learning (GridNavi), SAC (MuJoCo),
metaworld's scripted experts with annealed action noise (Meta-World)."""


@dataclass(frozen=True)
class CollectConfig:
    """Every setting of one collection run. Fields not used by the chosen agent are ignored.

    Attributes:
        family: task-family name (``lit_offmeta.tasks.FAMILIES``).
        preset: the preset this config came from (recorded in each dataset's metadata).
        agent: one of :data:`AGENTS`.
        num_tasks: collect the first ``num_tasks`` of the family's ``default_tasks()`` (the tasks that its
            named splits index into), unless the user lists task indices explicitly.
        episodes_per_task: lifetime of a per-task agent (goal seeker, Q-learning), in episodes.
        episodes_per_trial: episodes of one multi-episode trial (BOReL: 4 for GridNavi, 2 for PointRobot
            sparse); 1 records no trial structure. Per-episode metadata holds ``trial_index`` and
            ``episode_in_trial`` when this is above 1.
        env_kwargs: keyword arguments of ``family.make_env`` (e.g. ``random_start`` for PointRobot).
        agent_kwargs: the agent's own hyperparameters (see the agent's config class).
        steps_per_task: SAC: environment steps recorded for each task (the task-conditioned agent runs
            ``steps_per_task * number of tasks`` steps in all).
        num_envs: SAC: environments stepped in parallel; each starts every episode on the task that has the
            fewest steps so far, so all tasks grow at the same pace.
        checkpoint_every: SAC: environment steps between mid-run checkpoints (0: none); a killed run resumes
            from the last one.
        learn_steps_per_task: SAC: 0 records the agent's own experience while it learns (``steps_per_task``
            steps per task); above 0 the agent learns for this many steps per task without recording, then
            ``steps_per_task`` steps per task are recorded from its snapshots
            (:mod:`lit_offmeta.collect.recorder`), so the dataset's size does not cost learning.
        num_snapshots: SAC with ``learn_steps_per_task > 0``: actor snapshots along the learning (the first
            before any update, the last at the end), each recording an equal share of the dataset.
    """

    family: str
    preset: str
    agent: str
    num_tasks: int
    episodes_per_task: int = 0
    episodes_per_trial: int = 1
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    agent_kwargs: dict[str, Any] = field(default_factory=dict)
    steps_per_task: int = 0
    num_envs: int = 1
    checkpoint_every: int = 0
    learn_steps_per_task: int = 0
    num_snapshots: int = 0

    def __post_init__(self) -> None:
        if self.agent not in AGENTS:
            raise ValueError(f"collect config: agent must be one of {AGENTS}, got {self.agent!r}")
        if self.num_tasks < 1:
            raise ValueError(f"collect config: num_tasks must be >= 1, got {self.num_tasks}")
        if self.episodes_per_trial < 1:
            raise ValueError(f"collect config: episodes_per_trial must be >= 1, got {self.episodes_per_trial}")
        if self.agent == "sac":
            if self.steps_per_task < 1 or self.num_envs < 1:
                raise ValueError(
                    f"collect config: the sac agent needs steps_per_task >= 1 and num_envs >= 1, "
                    f"got steps_per_task={self.steps_per_task}, num_envs={self.num_envs}"
                )
            if self.learn_steps_per_task < 0 or (self.learn_steps_per_task > 0 and self.num_snapshots < 2):
                raise ValueError(
                    f"collect config: learning apart from recording needs learn_steps_per_task > 0 and "
                    f"num_snapshots >= 2, got {self.learn_steps_per_task} and {self.num_snapshots}"
                )
            if self.episodes_per_trial > 1 and self.learn_steps_per_task == 0:
                # while it learns, each environment slot's episodes come from a policy that changes every step,
                # so only the snapshot recorder writes trials (consecutive episodes of one snapshot)
                raise ValueError(
                    f"collect config: episodes_per_trial={self.episodes_per_trial} with the sac agent needs recording "
                    f"apart from learning (learn_steps_per_task > 0, num_snapshots >= 2), as the medium and paper "
                    f"presets do; preset {self.preset!r} records while it learns"
                )
        elif self.episodes_per_task < 1:
            raise ValueError(
                f"collect config: agent {self.agent!r} needs episodes_per_task >= 1, got {self.episodes_per_task}"
            )
        if self.episodes_per_task % self.episodes_per_trial:
            raise ValueError(
                f"collect config: episodes_per_task={self.episodes_per_task} must be a multiple of "
                f"episodes_per_trial={self.episodes_per_trial}"
            )

    def replace(self, **changes: Any) -> CollectConfig:
        """A copy with ``changes`` applied; unknown field names raise ``ValueError`` listing the known ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"collect config: unknown setting(s) {unknown}; known settings: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _point_robot(name: str, preset: str, **kw: Any) -> CollectConfig:
    return CollectConfig(family=name, preset=preset, agent="goal_seeker", **kw)


def _sac(family: str, preset: str, **kw: Any) -> CollectConfig:
    return CollectConfig(family=family, preset=preset, agent="sac", **kw)


# SAC settings. tiny: small networks, updates start almost at once, so a few thousand steps run in seconds.
# Cheetah: hide the absolute torso x (observation index 17) from the agent; it grows without bound.
_SAC_TINY = {"hidden": [64, 64], "batch_size": 64, "learning_starts": 200, "updates_per_step": 0.25,
             "obs_exclude": [17]}
# small: 128x128 networks, 0.5 updates per env step: a 128x128 SAC update costs a fraction of a 256x256 one, so
# small collects in minutes per task on a CPU.
_SAC_SMALL = {"hidden": [128, 128], "batch_size": 256, "learning_starts": 5000, "updates_per_step": 0.5,
              "obs_exclude": [17]}
# paper: 256x256 as in SAC's paper (Haarnoja et al. 2018) and the authors' task-conditioned agent (docs/REFERENCE.md).
_SAC_FULL = {**_SAC_SMALL, "hidden": [256, 256]}


def _sac_medium(family: str, num_tasks: int, learn_steps_per_task: int, **agent_kwargs: Any) -> CollectConfig:
    """medium: the small agent learns for ``learn_steps_per_task`` steps per task without recording; 20
    snapshots along its learning then record 100k transitions per task (5k each), a lifetime from poor to good."""
    return _sac(family, "medium", num_tasks=num_tasks, steps_per_task=100_000, num_envs=8,
                learn_steps_per_task=learn_steps_per_task, num_snapshots=20, checkpoint_every=100_000,
                agent_kwargs={**_SAC_SMALL, **agent_kwargs})


def _ant_semicircle(family: str) -> dict[str, CollectConfig]:
    """BOReL's Ant-Semi-circle: 2-episode trials of one snapshot, recorded apart from learning."""
    kw = {"episodes_per_trial": 2, "num_snapshots": 20, "num_envs": 8}
    return {
        "tiny": _sac(family, "tiny", num_tasks=2, steps_per_task=800, learn_steps_per_task=400, num_envs=2,
                     num_snapshots=2, episodes_per_trial=2, agent_kwargs={**_SAC_TINY, "obs_exclude": []}),
        "small": _sac(family, "small", num_tasks=50, steps_per_task=8000, learn_steps_per_task=4000,
                      checkpoint_every=20_000, agent_kwargs=_SAC_SMALL | {"obs_exclude": []}, **kw),
        "medium": _sac(family, "medium", num_tasks=50, steps_per_task=100_000, learn_steps_per_task=10_000,
                       checkpoint_every=100_000, agent_kwargs=_SAC_SMALL | {"obs_exclude": []}, **kw),
        "paper": _sac(family, "paper", num_tasks=50, steps_per_task=2_000_000, learn_steps_per_task=200_000,
                      checkpoint_every=1_000_000, num_snapshots=100, num_envs=50, episodes_per_trial=2,
                      agent_kwargs={**_SAC_FULL, "obs_exclude": [], "replay_capacity": 2_000_000}),
    }

PRESETS: dict[str, dict[str, CollectConfig]] = {
    "point_robot": {
        "tiny": _point_robot("point_robot", "tiny", num_tasks=3, episodes_per_task=20),
        # MACAW demo: 40 tasks x 200 episodes x 20 steps = 4000 transitions per task.
        "small": _point_robot("point_robot", "small", num_tasks=40, episodes_per_task=200),
        "medium": _point_robot("point_robot", "medium", num_tasks=40, episodes_per_task=1000),
        "paper": _point_robot("point_robot", "paper", num_tasks=40, episodes_per_task=2500),
    },
    "point_robot_sparse": {
        # BOReL: 2-episode trials, data collected from random starts in [-1.5, 1.5] x [-0.5, 1.5].
        "tiny": _point_robot(
            "point_robot_sparse", "tiny", num_tasks=3, episodes_per_task=20, episodes_per_trial=2,
            env_kwargs={"random_start": True},
        ),
        "small": _point_robot(
            "point_robot_sparse", "small", num_tasks=100, episodes_per_task=100, episodes_per_trial=2,
            env_kwargs={"random_start": True},
        ),
        "medium": _point_robot(
            "point_robot_sparse", "medium", num_tasks=100, episodes_per_task=400, episodes_per_trial=2,
            env_kwargs={"random_start": True},
        ),
        "paper": _point_robot(
            "point_robot_sparse", "paper", num_tasks=100, episodes_per_task=1000, episodes_per_trial=2,
            env_kwargs={"random_start": True},
        ),
    },
    "grid_navi": {
        "tiny": CollectConfig("grid_navi", "tiny", "q_learning", num_tasks=3, episodes_per_task=80,
                              episodes_per_trial=4),
        "small": CollectConfig("grid_navi", "small", "q_learning", num_tasks=21, episodes_per_task=400,
                               episodes_per_trial=4),
        "medium": CollectConfig("grid_navi", "medium", "q_learning", num_tasks=21, episodes_per_task=2000,
                                episodes_per_trial=4),
        "paper": CollectConfig("grid_navi", "paper", "q_learning", num_tasks=21, episodes_per_task=4000,
                               episodes_per_trial=4),
    },
    "cheetah_vel": {
        "tiny": _sac("cheetah_vel", "tiny", num_tasks=2, steps_per_task=1200, num_envs=2, agent_kwargs=_SAC_TINY),
        # 40 tasks x 5000 steps (25 episodes of 200) = 200k steps in all.
        "small": _sac("cheetah_vel", "small", num_tasks=40, steps_per_task=5000, num_envs=8, agent_kwargs=_SAC_SMALL,
                      checkpoint_every=20_000),
        "medium": _sac_medium("cheetah_vel", 40, learn_steps_per_task=12_500),
        # MACAW App. D: 2.5M steps per task.
        "paper": _sac("cheetah_vel", "paper", num_tasks=40, steps_per_task=2_500_000, num_envs=40,
                      agent_kwargs={**_SAC_FULL, "replay_capacity": 2_000_000}, checkpoint_every=1_000_000),
    },
    # Ant and Walker: same task-conditioned SAC; the agent does not see the unbounded absolute position
    # (Ant: qpos x, y at indices 0, 1; Walker: qpos x at index 0). Their small/paper presets were not timed.
    "ant_dir": {
        "tiny": _sac("ant_dir", "tiny", num_tasks=2, steps_per_task=600, num_envs=2,
                     agent_kwargs={**_SAC_TINY, "obs_exclude": [0, 1]}),
        "small": _sac("ant_dir", "small", num_tasks=50, steps_per_task=5000, num_envs=8,
                      agent_kwargs={**_SAC_SMALL, "obs_exclude": [0, 1]}, checkpoint_every=20_000),
        "medium": _sac_medium("ant_dir", 50, learn_steps_per_task=10_000, obs_exclude=[0, 1]),
        "paper": _sac("ant_dir", "paper", num_tasks=50, steps_per_task=2_000_000, num_envs=50,
                      agent_kwargs={**_SAC_FULL, "obs_exclude": [0, 1], "replay_capacity": 2_000_000},
                      checkpoint_every=1_000_000),
    },
    "walker_params": {
        "tiny": _sac("walker_params", "tiny", num_tasks=2, steps_per_task=600, num_envs=2,
                     agent_kwargs={**_SAC_TINY, "obs_exclude": [0]}),
        "small": _sac("walker_params", "small", num_tasks=50, steps_per_task=5000, num_envs=8,
                      agent_kwargs={**_SAC_SMALL, "obs_exclude": [0]}, checkpoint_every=20_000),
        "medium": _sac_medium("walker_params", 50, learn_steps_per_task=10_000, obs_exclude=[0]),
        "paper": _sac("walker_params", "paper", num_tasks=50, steps_per_task=1_000_000, num_envs=50,
                      agent_kwargs={**_SAC_FULL, "obs_exclude": [0], "replay_capacity": 2_000_000},
                      checkpoint_every=1_000_000),
    },
    "cheetah_dir": {
        "tiny": _sac("cheetah_dir", "tiny", num_tasks=2, steps_per_task=1200, num_envs=2, agent_kwargs=_SAC_TINY),
        "small": _sac("cheetah_dir", "small", num_tasks=2, steps_per_task=60_000, num_envs=2, agent_kwargs=_SAC_SMALL,
                      checkpoint_every=20_000),
        "medium": _sac_medium("cheetah_dir", 2, learn_steps_per_task=150_000),
        "paper": _sac("cheetah_dir", "paper", num_tasks=2, steps_per_task=2_500_000, num_envs=2,
                      agent_kwargs={**_SAC_FULL, "replay_capacity": 2_000_000}, checkpoint_every=1_000_000),
    },
    "ant_semicircle": _ant_semicircle("ant_semicircle"),
}


def _meta_world(family: str, num_tasks: int) -> dict[str, CollectConfig]:
    """Scripted experts with annealed noise (lit_offmeta/collect/experts.py), 150-step episodes. medium: 100k
    transitions per task (667 episodes), paper: MACAW's 5M per task (App. D.2)."""
    def preset(name: str, tasks: int, episodes: int) -> CollectConfig:
        return CollectConfig(family, name, "scripted_expert", num_tasks=tasks, episodes_per_task=episodes)

    return {"tiny": preset("tiny", 2, 4), "small": preset("small", num_tasks, 40),
            "medium": preset("medium", num_tasks, 667), "paper": preset("paper", num_tasks, 33_334)}


for _family, _num_tasks in (("metaworld_ml1_reach", 100), ("metaworld_ml1_push", 100),
                            ("metaworld_ml1_pick_place", 100), ("metaworld_ml45", 50)):
    PRESETS[_family] = _meta_world(_family, _num_tasks)


def available_presets() -> dict[str, list[str]]:
    """Family name -> preset names."""
    return {family: sorted(presets) for family, presets in PRESETS.items()}


def get_preset(family: str, preset: str) -> CollectConfig:
    """The preset ``preset`` of ``family``; ``ValueError`` listing what exists otherwise."""
    if family not in PRESETS:
        raise ValueError(
            f"--family: no collection presets for family {family!r}; families with presets: {sorted(PRESETS)}"
        )
    if preset not in PRESETS[family]:
        raise ValueError(f"--preset: family {family!r} has no preset {preset!r}; available: {sorted(PRESETS[family])}")
    return PRESETS[family][preset]
