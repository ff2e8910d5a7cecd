"""The task-family interface: the single source of truth for a family of related MDPs.

A *task* is a plain JSON-serialisable ``dict`` of parameters (e.g. ``{"velocity": 1.2}``) so that it can be
stored as dataset metadata and read back without unpickling anything. A *task family* knows how to sample
tasks, validate them, build a gymnasium environment for one, and compute its reward with ONE vectorised
function that ``env.step()``, reward relabelling and the tests all call.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

Task = dict[str, Any]


@dataclass(frozen=True)
class TaskSplit:
    """Indices into a family's ``default_tasks()`` for meta-training and held-out evaluation.

    Attributes:
        name: the split's name, e.g. ``"paper"`` or ``"sparse_10"``.
        train: task indices used for meta-training.
        test: held-out task indices (never seen in meta-training).
        description: where the split comes from.
        allow_overlap: ``True`` only for protocols that evaluate on the training tasks themselves
            (Cheetah-Dir in PEARL/MACAW has two tasks and "train = test"); otherwise overlap is an error.
    """

    name: str
    train: tuple[int, ...]
    test: tuple[int, ...]
    description: str = ""
    allow_overlap: bool = False

    def __post_init__(self) -> None:
        overlap = set(self.train) & set(self.test)
        if overlap and not self.allow_overlap:
            raise ValueError(f"split {self.name!r}: train and test share task ids {sorted(overlap)}")
        if not self.train:
            raise ValueError(f"split {self.name!r} has no training tasks")


class TaskFamily(ABC):
    """A family of MDPs that differ in a task parameter (goal, velocity, dynamics...).

    Subclasses set the class attributes and implement the abstract methods. ``reward`` must be the function
    that the family's environment uses inside ``step()``; tests check that they agree exactly.
    """

    name: ClassVar[str]
    """Registry name, e.g. ``"cheetah_vel"``."""
    env_id: ClassVar[str]
    """gymnasium id, e.g. ``"lit_offmeta/HalfCheetahVel-v0"``; ``gym.make(env_id, task=...)`` works."""
    horizon: ClassVar[int]
    """Episode length (time limit) used for data collection and evaluation."""
    num_default_tasks: ClassVar[int]
    """How many tasks ``default_tasks()`` returns (e.g. 40 for Cheetah-Vel)."""
    discrete_actions: ClassVar[bool] = False
    """True when the action space is ``Discrete`` (GridNavi)."""
    default_split: ClassVar[str] = "paper"
    """The split used when the user names none."""
    dynamics_vary_with_task: ClassVar[bool] = False
    """True when the task changes the transition dynamics (Walker-Params): another task's paths are then not
    paths of this task, so reward relabelling across tasks (:func:`lit_offmeta.data.relabel.mix_trials`) is invalid."""

    rewards_from_transitions: ClassVar[bool] = True
    """False when rewards read simulator state that the observation lacks (Meta-World): ``reward`` then raises and
    reward relabelling (:mod:`lit_offmeta.data.relabel`) refuses the family."""
    success_in_info: ClassVar[bool] = False
    """True when success comes from the environment's ``info["success"]`` rather than :meth:`success`."""

    # --- tasks -------------------------------------------------------------------------------------------
    @abstractmethod
    def sample_tasks(self, n: int, seed: int) -> list[Task]:
        """Sample ``n`` tasks deterministically from ``seed``."""

    def default_tasks(self) -> list[Task]:
        """The family's canonical task list; splits index into it. Deterministic."""
        return self.sample_tasks(self.num_default_tasks, seed=1337)

    @abstractmethod
    def validate_task(self, task: Task) -> Task:
        """Return a normalised copy of ``task`` or raise ``ValueError`` naming the bad parameter."""

    # --- environments --------------------------------------------------------------------------------------
    @abstractmethod
    def make_env(self, task: Task, **kwargs: Any) -> gym.Env:
        """A fresh gymnasium environment for ``task`` with the family's time limit applied."""

    @abstractmethod
    def reward(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Vectorised reward: arrays with any leading batch shape -> rewards of that shape (float32/64)."""

    def terminated(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Vectorised true-termination flag (no bootstrapping past it), the one ``env.step()`` reports.

        Default: the family never terminates (only the time limit ends episodes). Families that end episodes
        early (Ant-Dir, Walker2d-Params) override it.
        """
        return np.zeros(np.asarray(next_obs).shape[:-1], dtype=bool)

    def success(self, task: Task, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray | None:
        """Per-transition success indicator, or ``None`` where the family defines no success."""
        return None

    @property
    def observation_space(self) -> gym.Space:
        return self._probe_env().observation_space

    @property
    def action_space(self) -> gym.Space:
        return self._probe_env().action_space

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.observation_space.shape))

    @property
    def action_dim(self) -> int:
        """Continuous: the action vector's size. Discrete: the number of actions."""
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            return int(space.n)
        return int(np.prod(space.shape))

    def _probe_env(self) -> gym.Env:
        probe = getattr(self, "_probe", None)
        if probe is None:
            probe = self.make_env(self.default_tasks()[0])
            self._probe = probe
        return probe

    # --- splits --------------------------------------------------------------------------------------------
    def splits(self) -> dict[str, TaskSplit]:
        """Named splits of ``default_tasks()``. Subclasses extend this dict."""
        n = self.num_default_tasks
        n_test = max(1, n // 5)
        rng = np.random.default_rng(0)
        test = tuple(sorted(int(i) for i in rng.choice(n, size=n_test, replace=False)))
        train = tuple(i for i in range(n) if i not in test)
        return {"random": TaskSplit("random", train, test, f"{n - n_test}/{n_test} random split, seed 0")}

    def split(self, name: str | None = None) -> TaskSplit:
        name = name or self.default_split
        splits = self.splits()
        if name not in splits:
            raise ValueError(f"family {self.name!r} has no split {name!r}; available: {sorted(splits)}")
        return splits[name]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, horizon={self.horizon})"


# --- helpers shared by the families ------------------------------------------------------------------------


def task_features(task: Task) -> np.ndarray:
    """The task's numeric parameters as a flat ``float32`` vector (keys in sorted order).

    What an agent told the task is conditioned on (the task-conditioned behaviour SAC, BOReL's oracle), e.g.
    ``[v_goal]`` for Cheetah-Vel or ``[dir]`` for Cheetah-Dir.

    Raises:
        ValueError: a parameter is not numeric.
    """
    values: list[float] = []
    for key in sorted(task):
        try:
            values.extend(np.asarray(task[key], dtype=np.float64).reshape(-1).tolist())
        except (TypeError, ValueError):
            raise ValueError(f"task_features: task parameter {key!r}={task[key]!r} is not numeric") from None
    return np.asarray(values, dtype=np.float32)


def require_keys(family: str, task: Any, keys: Sequence[str]) -> dict[str, Any]:
    """Check that ``task`` is a mapping holding exactly ``keys``; raise a ``ValueError`` naming what is wrong.

    An unknown key is refused rather than ignored: it is usually a misspelt parameter (``"velocty"``) or the
    task of another family, and a task dict is stored with the data, so it must mean what it says.
    """
    if not isinstance(task, dict):
        raise ValueError(f"{family}: a task must be a dict of parameters, got {type(task).__name__}")
    missing = [k for k in keys if k not in task]
    if missing:
        raise ValueError(f"{family}: task {task!r} lacks parameter(s) {missing}; expected keys {list(keys)}")
    unknown = [k for k in task if k not in keys]
    if unknown:
        raise ValueError(
            f"{family}: the task has unknown parameter(s) {unknown}; the parameters are {list(keys)}"
        )
    return dict(task)


def is_number(value: Any) -> bool:
    """An int or float (Python or numpy), but not a bool (``True`` is an ``int`` in Python) or a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def require_finite_in_range(family: str, key: str, value: Any, low: float, high: float) -> float:
    """A scalar task parameter, checked to be a finite number (not a string or bool) in ``[low, high]``."""
    if not is_number(value):
        raise ValueError(f"{family}: task parameter {key!r} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{family}: task parameter {key!r}={value} is outside [{low}, {high}]")
    return value


def require_number_array(family: str, key: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A task parameter holding numbers (no strings, no bools) in a (nested) list of ``shape``, as float64."""

    def leaves(v: Any) -> Iterator[Any]:
        if isinstance(v, np.ndarray):
            yield from (v.ravel().tolist() if v.dtype.kind in "iuf" else [v.dtype])
        elif isinstance(v, (list, tuple)):
            for item in v:
                yield from leaves(item)
        else:
            yield v

    bad = next((leaf for leaf in leaves(value) if not is_number(leaf)), None)
    if bad is not None:
        raise ValueError(
            f"{family}: task parameter {key!r} must be a (nested) list of numbers of shape {shape}, not strings "
            f"or bools; got {bad!r} in {value!r}"
        )
    try:
        array = np.asarray(value, dtype=np.float64)
    except ValueError:  # ragged nesting
        raise ValueError(f"{family}: task parameter {key!r} must have shape {shape}, got {value!r}") from None
    if array.shape != shape:
        raise ValueError(f"{family}: task parameter {key!r} must have shape {shape}, got {array.shape}")
    return array


def split_by_range(
    name: str, values: Sequence[float], train_range: tuple[float, float], test_range: tuple[float, float]
) -> TaskSplit:
    """An out-of-distribution split: tasks whose parameter lies in ``train_range`` vs ``test_range``.

    Ranges are closed on the left and open on the right, except that ``test_range`` is closed on both ends,
    so a boundary value belongs to exactly one side.
    """
    train = tuple(i for i, v in enumerate(values) if train_range[0] <= v < train_range[1])
    test = tuple(
        i for i, v in enumerate(values) if test_range[0] <= v <= test_range[1] and i not in set(train)
    )
    return TaskSplit(name, train, test, f"OOD: train {list(train_range)}, test {list(test_range)}")
