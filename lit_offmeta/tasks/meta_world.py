"""Meta-World (Yu et al. 2019; Farama's ``metaworld`` 3.1, MuJoCo 3): Sawyer-arm manipulation task families.

* ``metaworld_ml1_reach``, ``metaworld_ml1_push``, ``metaworld_ml1_pick_place``: ML1, one environment's parametric
  variations. 100 tasks, each a fixed object and goal placement (``rand_vec``): 50 training and 50 held-out
  variations (the ``"ml1"`` split). Placements are drawn as metaworld's ``ML1`` draws them (environment resets,
  which reject invalid placements), but from the environment's own generator with our seed (``ML1`` draws from
  numpy's global generator and hands its tasks out as pickles).
* ``metaworld_ml45``: ML45, 50 tasks, one per environment: metaworld's 45 training environments then its 5
  held-out ones (the ``"paper"`` split). As in MACAW (arXiv:2008.06043, App. C.3) each task randomises its
  placement continuously: every episode draws a new one from the environment's seeded generator.

Episodes are 150 steps, MACAW's Meta-World length (App. C.3; metaworld's own limit is 500). Observations are
metaworld's 39-d vector (hand, gripper opening, object poses, the same for the previous frame, goal position)
with the goal zeroed, as metaworld's ML benchmarks hide it, as ``float32``; actions are 4-d in [-1, 1]
(hand displacement, gripper effort). Each step's ``info`` holds metaworld's ``success`` and the true goal
position under ``"goal"``, which the scripted experts use and the observation never shows.

Rewards are metaworld's v3 rewards. They read simulator state that the observation does not hold (the finger
pads, the tool centre point, the initial object height), so they cannot be recomputed from ``(obs, action,
next_obs)``: these families set ``rewards_from_transitions = False`` and reward relabelling refuses them.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from lit_offmeta.tasks.base import Task, TaskFamily, TaskSplit, require_keys, require_number_array

HORIZON = 150
OBS_DIM = 39
ACTION_DIM = 4
GOAL = slice(36, 39)
"""Where metaworld puts the goal position in its observation (zeroed here)."""

ML45_TRAIN = (
    "assembly-v3", "basketball-v3", "button-press-topdown-v3", "button-press-topdown-wall-v3", "button-press-v3",
    "button-press-wall-v3", "coffee-button-v3", "coffee-pull-v3", "coffee-push-v3", "dial-turn-v3",
    "disassemble-v3", "door-close-v3", "door-open-v3", "drawer-close-v3", "drawer-open-v3", "faucet-open-v3",
    "faucet-close-v3", "hammer-v3", "handle-press-side-v3", "handle-press-v3", "handle-pull-side-v3",
    "handle-pull-v3", "lever-pull-v3", "pick-place-wall-v3", "pick-out-of-hole-v3", "push-back-v3",
    "pick-place-v3", "plate-slide-v3", "plate-slide-side-v3", "plate-slide-back-v3", "plate-slide-back-side-v3",
    "peg-insert-side-v3", "peg-unplug-side-v3", "soccer-v3", "stick-push-v3", "stick-pull-v3", "push-wall-v3",
    "push-v3", "reach-wall-v3", "reach-v3", "shelf-place-v3", "sweep-into-v3", "sweep-v3", "window-open-v3",
    "window-close-v3",
)
"""metaworld's ML45 training environments, in its order (a test checks them against ``metaworld.env_dict``)."""
ML45_TEST = ("bin-picking-v3", "box-close-v3", "hand-insert-v3", "door-lock-v3", "door-unlock-v3")
"""metaworld's ML45 held-out environments."""


def require_metaworld() -> Any:
    """The ``metaworld`` package, or an ``ImportError`` saying how to install it."""
    try:
        import metaworld.env_dict
    except ImportError as err:
        raise ImportError(
            "the Meta-World families need the `metaworld` package (3.1, which pins mujoco 3.3.0): "
            "pip install 'lit-offmeta[metaworld]'"
        ) from err
    return metaworld.env_dict


@functools.cache
def reset_space(env_name: str) -> tuple[np.ndarray, np.ndarray]:
    """The bounds of ``env_name``'s random placement vector (``rand_vec``), read from the environment."""
    env = require_metaworld().ALL_V3_ENVIRONMENTS[env_name]()
    space = env._random_reset_space
    env.close()
    return np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)


class MetaWorldFamily(TaskFamily):
    """A Meta-World family; see the module docstring."""

    horizon: ClassVar[int] = HORIZON
    rewards_from_transitions: ClassVar[bool] = False
    success_in_info: ClassVar[bool] = True

    @property
    def observation_space(self) -> gym.Space:
        return gym.spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float32)

    @property
    def action_space(self) -> gym.Space:
        return gym.spaces.Box(-1.0, 1.0, shape=(ACTION_DIM,), dtype=np.float32)

    def make_env(self, task: Task, **kwargs: Any) -> gym.Env:
        return gym.make(self.env_id, task=self.validate_task(task), **kwargs)

    def reward(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        raise ValueError(
            f"{self.name}: Meta-World's rewards read simulator state (finger pads, tool centre point) that the "
            "observation does not hold, so they cannot be recomputed from (obs, action, next_obs); reward "
            "relabelling is not available for this family (use the logged rewards)"
        )


class MetaWorldML1(MetaWorldFamily):
    """ML1: one environment, 50 training and 50 held-out fixed placements."""

    env_name: ClassVar[str]
    num_default_tasks: ClassVar[int] = 100
    default_split: ClassVar[str] = "ml1"

    def sample_tasks(self, n: int, seed: int) -> list[Task]:
        """``n`` distinct placements, drawn as metaworld's ML1 draws them: resets of the environment with its
        placement unfrozen, each kept after the environment's own rejection of invalid ones (e.g. reach-v3 redraws
        a goal within 0.15 of the object), from the environment's generator seeded with ``seed``."""
        if n < 1:
            raise ValueError(f"{self.name}: n must be >= 1, got {n}")
        env = require_metaworld().ALL_V3_ENVIRONMENTS[self.env_name]()
        env._set_task_called, env._freeze_rand_vec, env.seeded_rand_vec = True, False, True
        env._set_task_inner()
        env.seed(seed)
        placements: list[list[float]] = []
        while len(placements) < n:
            env.reset()
            placement = np.asarray(env._last_rand_vec, dtype=np.float64).tolist()
            if placement not in placements:
                placements.append(placement)
        env.close()
        return [{"env_name": self.env_name, "rand_vec": placement} for placement in placements]

    def validate_task(self, task: Task) -> Task:
        task = require_keys(self.name, task, ["env_name", "rand_vec"])
        if task["env_name"] != self.env_name:
            raise ValueError(f"{self.name}: task env_name must be {self.env_name!r}, got {task['env_name']!r}")
        low, high = reset_space(self.env_name)
        value = require_number_array(self.name, "rand_vec", task["rand_vec"], low.shape)
        if not (np.isfinite(value).all() and (value >= low - 1e-12).all() and (value <= high + 1e-12).all()):
            raise ValueError(f"{self.name}: rand_vec {value.tolist()} is outside the environment's placement "
                             f"bounds [{low.tolist()}, {high.tolist()}]")
        task["rand_vec"] = value.tolist()
        return task

    def splits(self) -> dict[str, TaskSplit]:
        return {"ml1": TaskSplit("ml1", tuple(range(50)), tuple(range(50, 100)),
                                 "ML1: 50 training placements, 50 held-out placements")}


class MetaWorldML1Reach(MetaWorldML1):
    name: ClassVar[str] = "metaworld_ml1_reach"
    env_name: ClassVar[str] = "reach-v3"
    env_id: ClassVar[str] = "lit_offmeta/MetaWorldML1Reach-v0"


class MetaWorldML1Push(MetaWorldML1):
    name: ClassVar[str] = "metaworld_ml1_push"
    env_name: ClassVar[str] = "push-v3"
    env_id: ClassVar[str] = "lit_offmeta/MetaWorldML1Push-v0"


class MetaWorldML1PickPlace(MetaWorldML1):
    name: ClassVar[str] = "metaworld_ml1_pick_place"
    env_name: ClassVar[str] = "pick-place-v3"
    env_id: ClassVar[str] = "lit_offmeta/MetaWorldML1PickPlace-v0"


class MetaWorldML45(MetaWorldFamily):
    """ML45: one task per environment (45 training, 5 held out), placements randomised every episode."""

    name: ClassVar[str] = "metaworld_ml45"
    env_id: ClassVar[str] = "lit_offmeta/MetaWorldML45-v0"
    num_default_tasks: ClassVar[int] = len(ML45_TRAIN) + len(ML45_TEST)

    def sample_tasks(self, n: int, seed: int) -> list[Task]:
        names = ML45_TRAIN + ML45_TEST
        if not 1 <= n <= len(names):
            raise ValueError(f"{self.name}: has {len(names)} tasks (one per environment), asked for {n}")
        return [{"env_name": name} for name in names[:n]]

    def validate_task(self, task: Task) -> Task:
        task = require_keys(self.name, task, ["env_name"])
        if task["env_name"] not in ML45_TRAIN + ML45_TEST:
            raise ValueError(f"{self.name}: unknown env_name {task['env_name']!r}; ML45's environments are "
                             f"{list(ML45_TRAIN + ML45_TEST)}")
        return task

    def splits(self) -> dict[str, TaskSplit]:
        n = len(ML45_TRAIN)
        return {"paper": TaskSplit("paper", tuple(range(n)), tuple(range(n, n + len(ML45_TEST))),
                                   "ML45: 45 training environments, 5 held-out environments (MACAW App. C.3)")}


FAMILY_BY_NAME: dict[str, type[MetaWorldFamily]] = {
    cls.name: cls for cls in (MetaWorldML1Reach, MetaWorldML1Push, MetaWorldML1PickPlace, MetaWorldML45)
}


class MetaWorldTaskEnv(gym.Env):
    """One Meta-World task as a gymnasium env: goal hidden, ``float32`` observations, ``info["goal"]``.

    A task with a ``rand_vec`` keeps that placement in every episode (ML1); without one (ML45) every reset draws a
    new placement from the environment's generator, which ``reset(seed=...)`` seeds.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, family: str, task: Task | None = None) -> None:
        self.family = FAMILY_BY_NAME[family]()
        # the registry holds no default task (building one imports metaworld): task 0 of default_tasks()
        self.task = self.family.validate_task(task if task is not None else self.family.default_tasks()[0])
        env = require_metaworld().ALL_V3_ENVIRONMENTS[self.task["env_name"]]()
        env._partially_observable = True
        env.__dict__.pop("sawyer_observation_space", None)  # cached with the goal visible; recomputed hidden
        env._set_task_called = True  # what metaworld's set_task does, without its pickled task payload
        env._set_task_inner()
        env.max_path_length = HORIZON
        if "rand_vec" in self.task:
            env._freeze_rand_vec = True
            env._last_rand_vec = np.asarray(self.task["rand_vec"], dtype=np.float64)
        else:
            env._freeze_rand_vec = False
            env.seeded_rand_vec = True  # placements from env.np_random, which reset(seed=) seeds
        # metaworld redraws a placement its reset_model rejects (e.g. a goal too close to the object); a frozen one
        # would be redrawn for ever, so a second draw within one reset_model is an invalid placement: refuse it
        draw = env._get_state_rand_vec
        self._draws = 0

        def counted_draw():
            self._draws += 1
            if env._freeze_rand_vec and self._draws > 1:
                raise ValueError(f"{self.family.name}: rand_vec {self.task['rand_vec']} is a placement that "
                                 f"{self.task['env_name']} rejects (it violates the environment's own placement "
                                 "constraints); use placements from the family's sample_tasks/default_tasks")
            return draw()

        reset_model = env.reset_model

        def counted_reset_model():  # metaworld's reset runs reset_model twice; each may draw once
            self._draws = 0
            return reset_model()

        env._get_state_rand_vec = counted_draw
        env.reset_model = counted_reset_model
        self._env = env
        self.observation_space = self.family.observation_space
        self.action_space = self.family.action_space

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        return {**info, "task": dict(self.task), "goal": np.asarray(self._env._get_pos_goal(), np.float64).copy()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.seed(seed)
        obs, info = self._env.reset()
        return np.asarray(obs, dtype=np.float32), self._info(info)

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(ACTION_DIM), -1.0, 1.0)
        obs, reward, _, truncated, info = self._env.step(action)
        info = self._info(info)
        info["success"] = bool(info.get("success", False))
        # metaworld never terminates; the time limit comes from gym.make's TimeLimit (and metaworld's own).
        return np.asarray(obs, dtype=np.float32), float(reward), False, bool(truncated), info

    def close(self) -> None:
        self._env.close()
