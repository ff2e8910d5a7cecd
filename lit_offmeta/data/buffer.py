"""TaskBuffer: one task's offline data, its trajectories in the order the behaviour agent recorded them.

A task's buffer is the lifetime replay buffer of a behaviour agent that learned the task from scratch
(MACAW, Mitchell et al. 2021, arXiv:2008.06043, Sec. 5 and App. D): early trajectories are poor, late ones
near expert. Keeping that chronological order is what makes the "bad / medium / good" data windows
(first / middle / last N trajectories, paper App. D) and contiguous support slices meaningful.

Monte-Carlo targets follow MACAW: the discounted reward-to-go inside each stored trajectory, plus
``gamma^(T-t) * V(s_T)`` where the trajectory was cut by a time limit (truncated), and nothing where it truly
terminated. :meth:`TaskBuffer.value_targets` returns the three arrays this needs.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

WindowKind = Literal["all", "first", "middle", "last"]
WINDOW_KINDS: tuple[str, ...] = ("all", "first", "middle", "last")

MAX_ABS_VALUE = 1e6
"""Largest magnitude an observation, action or reward may have, on write and on every load.

The pipeline is float32 and its losses square these values (TD errors, Bellman and regression targets): a
reward of 1e20 is finite, but its square overflows float32 and training turns to NaN a few steps in, with no
error. RL data of sane scale stays far below 1e6; data beyond it must be rescaled (e.g. rewards divided by a
constant) before it is stored. Writing checks each episode in its own dtype, before the float32 cast, so a float64 value
too large for float32 (1e39) is reported as such, not as the inf the cast would make of it."""


@dataclass(frozen=True)
class ValueTargets:
    """Monte-Carlo value-target pieces of every transition of a buffer, for one discount.

    Attributes:
        mc_returns: ``[N]`` float32, ``sum_{k=t}^{T-1} gamma^(k-t) r_k`` inside the transition's trajectory.
        bootstrap_index: ``[N]`` int64, row of the trajectory's last transition; its ``next_obs`` is the
            state ``s_T`` to bootstrap from.
        bootstrap_discounts: ``[N]`` float32, ``gamma^(T-t)`` where the trajectory was cut (truncated or
            unfinished), ``0`` where it terminated.
    """

    mc_returns: np.ndarray
    bootstrap_index: np.ndarray
    bootstrap_discounts: np.ndarray


@dataclass
class TaskBuffer:
    """All offline transitions of one task, trajectories concatenated in recording order.

    Attributes:
        obs: ``[N, obs_dim]`` float32, ``s_t``.
        actions: ``[N, act_dim]`` float32, or ``[N]`` int64 for discrete families.
        rewards: ``[N]`` float32.
        next_obs: ``[N, obs_dim]`` float32, ``s_{t+1}``.
        terminals: ``[N]`` bool, True where ``s_{t+1}`` is a true terminal state.
        truncations: ``[N]`` bool, True where a time limit cut the trajectory after this step.
        episode_starts: ``[E + 1]`` int64 offsets: trajectory ``e`` is rows ``episode_starts[e]`` to
            ``episode_starts[e + 1] - 1``; ``episode_starts[0] == 0`` and ``episode_starts[-1] == N``.
        behaviour_steps: ``[E]`` int64, the behaviour agent's environment-step count when each trajectory began
            (``-1`` where unknown, e.g. imported data).
        trial_index: ``[E]`` int64, the multi-episode trial each trajectory belongs to (``-1`` if none).
        episode_in_trial: ``[E]`` int64, the trajectory's position inside its trial (``-1`` if none).
        task: the task's parameters (a JSON dict, see :mod:`lit_offmeta.tasks.base`).
        task_index: the task's index in the family's ``default_tasks()`` (or the dataset's task index).
        family: the task family's registry name.
        source: where the data came from (a path, for error messages).

    Raises:
        ValueError: from :meth:`validate` (called on construction) when arrays disagree in length, contain
            NaN/inf or magnitudes beyond :data:`MAX_ABS_VALUE`, or the task has fewer than two transitions.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminals: np.ndarray
    truncations: np.ndarray
    episode_starts: np.ndarray
    behaviour_steps: np.ndarray
    task: dict[str, Any]
    task_index: int
    family: str
    trial_index: np.ndarray | None = None
    episode_in_trial: np.ndarray | None = None
    source: str = "<memory>"
    _targets: dict[float, ValueTargets] = field(default_factory=dict, repr=False, compare=False)
    _block: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        n_episodes = len(self.episode_starts) - 1
        if self.trial_index is None:
            self.trial_index = np.full(max(n_episodes, 0), -1, dtype=np.int64)
        if self.episode_in_trial is None:
            self.episode_in_trial = np.full(max(n_episodes, 0), -1, dtype=np.int64)
        self.validate()

    # --- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_episodes(
        cls,
        episodes: Sequence[dict[str, np.ndarray]],
        task: dict[str, Any],
        task_index: int,
        family: str,
        behaviour_steps: Sequence[int] | None = None,
        trial_index: Sequence[int] | None = None,
        episode_in_trial: Sequence[int] | None = None,
        source: str = "<memory>",
    ) -> TaskBuffer:
        """Build a buffer from Minari-style episode dicts (``observations`` has ``T + 1`` rows).

        Args:
            episodes: dicts with ``observations [T+1, obs_dim]``, ``actions [T, ...]``, ``rewards [T]``,
                ``terminations [T]``, ``truncations [T]``, in recording order.
            task: the task's parameters.
            task_index: the task's index.
            family: the family's name.
            behaviour_steps: per-episode behaviour step counts (``-1`` for unknown if omitted).
            trial_index: optional per-episode trial indices.
            episode_in_trial: optional per-episode position in the trial.
            source: a label for error messages.

        Returns:
            The concatenated buffer.
        """
        if len(episodes) == 0:
            raise ValueError(
                f"{source}: task {task_index} has no episodes; a task needs at least 2 transitions"
            )
        for e, ep in enumerate(episodes):
            check_episode(ep, f"{source}: episode {e}")
        obs = np.concatenate([np.asarray(ep["observations"][:-1], dtype=np.float32) for ep in episodes])
        next_obs = np.concatenate([np.asarray(ep["observations"][1:], dtype=np.float32) for ep in episodes])
        actions = np.concatenate([np.asarray(ep["actions"]) for ep in episodes])
        actions = (
            actions.astype(np.int64)
            if np.issubdtype(actions.dtype, np.integer)
            else actions.astype(np.float32)
        )
        lengths = np.array([len(ep["rewards"]) for ep in episodes], dtype=np.int64)
        n_episodes = len(episodes)

        def per_episode(values: Sequence[int] | None, name: str) -> np.ndarray | None:
            if values is None:
                return None
            arr = np.asarray(values, dtype=np.int64).reshape(-1)
            if len(arr) != n_episodes:
                raise ValueError(
                    f"{source}: {name} has {len(arr)} entries but there are {n_episodes} episodes"
                )
            return arr

        steps = per_episode(behaviour_steps, "behaviour_steps")
        return cls(
            obs=obs,
            actions=actions,
            rewards=np.concatenate(
                [np.asarray(ep["rewards"], dtype=np.float32).reshape(-1) for ep in episodes]
            ),
            next_obs=next_obs,
            terminals=np.concatenate(
                [np.asarray(ep["terminations"], dtype=bool).reshape(-1) for ep in episodes]
            ),
            truncations=np.concatenate(
                [np.asarray(ep["truncations"], dtype=bool).reshape(-1) for ep in episodes]
            ),
            episode_starts=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            behaviour_steps=steps if steps is not None else np.full(n_episodes, -1, dtype=np.int64),
            trial_index=per_episode(trial_index, "trial_index"),
            episode_in_trial=per_episode(episode_in_trial, "episode_in_trial"),
            task=dict(task),
            task_index=int(task_index),
            family=family,
            source=source,
        )

    def validate(self) -> None:
        """Check lengths, offsets and value range (:func:`check_value_range`); raise ``ValueError`` naming the field."""
        where = f"{self.source} (family {self.family!r}, task {self.task_index})"
        n = len(self.rewards)
        if n < 2:
            raise ValueError(
                f"{where} has {n} transition(s); a task needs at least 2 (one support and one query "
                "transition). Collect or import more data for this task, or leave it out of the split."
            )
        for name in ("obs", "actions", "next_obs", "terminals", "truncations"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{where}: field {name!r} has {len(getattr(self, name))} rows, rewards has {n}"
                )
        if self.obs.ndim != 2 or self.next_obs.shape != self.obs.shape:
            raise ValueError(
                f"{where}: 'obs' {self.obs.shape} and 'next_obs' {self.next_obs.shape} must both be [N, obs_dim]"
            )
        starts = self.episode_starts
        if (
            starts.ndim != 1
            or len(starts) < 2
            or starts[0] != 0
            or starts[-1] != n
            or np.any(np.diff(starts) <= 0)
        ):
            raise ValueError(
                f"{where}: 'episode_starts' must rise strictly from 0 to {n} (one offset per trajectory plus N)"
            )
        n_episodes = len(starts) - 1
        for name in ("behaviour_steps", "trial_index", "episode_in_trial"):
            if len(getattr(self, name)) != n_episodes:
                raise ValueError(
                    f"{where}: {name!r} has {len(getattr(self, name))} entries, expected {n_episodes}"
                )
        # One min/max pass over the stored block (flags are 0/1) is the common case; only when it fails, or
        # when there is no block yet, is each field checked on its own, which names the field and the row.
        if self._block is not None and values_in_range(self._block):
            return
        for name in ("obs", "actions", "rewards", "next_obs"):
            check_value_range(getattr(self, name), name, where, episode_starts=starts)

    # --- the packed transition block ------------------------------------------------------------------
    def block_columns(self) -> dict[str, slice]:
        """Column layout of :meth:`transition_block`: obs | actions | reward | next_obs | terminal | truncation."""
        return block_columns(self.obs_dim, self.action_dim)

    def transition_block(self) -> np.ndarray:
        """All transitions as one C-contiguous float32 ``[N, 2 * obs_dim + act_width + 3]`` array.

        This is the on-disk cache layout and what :class:`~lit_offmeta.data.packed.PackedTasks` gathers rows
        from. Built once; afterwards ``obs``, ``next_obs`` and (continuous) ``actions`` and ``rewards`` are
        column views of it, so the buffer does not hold its data twice.
        """
        if self._block is None:
            cols = self.block_columns()
            block = np.empty((len(self), cols["truncations"].stop), dtype=np.float32)
            block[:, cols["obs"]] = self.obs
            block[:, cols["actions"]] = self.actions.reshape(len(self), -1)
            block[:, cols["rewards"]] = self.rewards[:, None]
            block[:, cols["next_obs"]] = self.next_obs
            block[:, cols["terminals"]] = self.terminals[:, None]
            block[:, cols["truncations"]] = self.truncations[:, None]
            self._adopt_block(block)
        return self._block

    def _adopt_block(self, block: np.ndarray) -> None:
        cols = self.block_columns()
        self._block = block
        self.obs = block[:, cols["obs"]]
        self.next_obs = block[:, cols["next_obs"]]
        self.rewards = block[:, cols["rewards"].start]
        if self.actions.ndim == 2:  # discrete actions stay a separate int64 array
            self.actions = block[:, cols["actions"]]

    @classmethod
    def from_block(
        cls,
        block: np.ndarray,
        obs_dim: int,
        discrete_actions: bool,
        episode_starts: np.ndarray,
        behaviour_steps: np.ndarray,
        task: dict[str, Any],
        task_index: int,
        family: str,
        trial_index: np.ndarray | None = None,
        episode_in_trial: np.ndarray | None = None,
        source: str = "<memory>",
    ) -> TaskBuffer:
        """A buffer whose arrays are views of a :meth:`transition_block` (e.g. read back from the cache)."""
        width = block.shape[1] - 2 * obs_dim - 3
        if block.ndim != 2 or width < 1 or (discrete_actions and width != 1):
            raise ValueError(
                f"{source}: a transition block of shape {block.shape} does not fit obs_dim {obs_dim}"
            )
        cols = block_columns(obs_dim, width)
        actions = block[:, cols["actions"]]
        if mapped_region(block) is not None:
            # Memory-mapped: the per-transition scalars are read once, chunk by chunk, into compact arrays (the
            # value targets and windows read them); observations and actions stay on disk until sampled.
            def column(name: str, transform: Any = None) -> np.ndarray:
                return mapped_column(block, cols[name].start, transform)

            scalars = {"rewards": column("rewards"),
                       "terminals": column("terminals", lambda v: v > 0.5),
                       "truncations": column("truncations", lambda v: v > 0.5)}
            if discrete_actions:
                actions = column("actions", lambda v: np.rint(v).astype(np.int64))
        else:
            scalars = {"rewards": block[:, cols["rewards"].start], "terminals": block[:, cols["terminals"].start] > 0.5,
                       "truncations": block[:, cols["truncations"].start] > 0.5}
            if discrete_actions:
                actions = np.rint(actions[:, 0]).astype(np.int64)
        return cls(
            obs=block[:, cols["obs"]],
            actions=actions,
            next_obs=block[:, cols["next_obs"]],
            **scalars,
            episode_starts=episode_starts,
            behaviour_steps=behaviour_steps,
            trial_index=trial_index,
            episode_in_trial=episode_in_trial,
            task=task,
            task_index=task_index,
            family=family,
            source=source,
            _block=block,
        )

    # --- basic views ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def num_episodes(self) -> int:
        return len(self.episode_starts) - 1

    @property
    def obs_dim(self) -> int:
        return int(self.obs.shape[1])

    @property
    def action_dim(self) -> int:
        """Continuous: the action vector's size. Discrete (1-D integer actions): 1 column of action ids."""
        return 1 if self.actions.ndim == 1 else int(self.actions.shape[1])

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self.episode_starts)

    def episode_ids(self) -> np.ndarray:
        """``[N]`` int64: the trajectory each transition belongs to."""
        return np.repeat(np.arange(self.num_episodes, dtype=np.int64), self.episode_lengths)

    def episode_returns(self) -> np.ndarray:
        """``[E]`` float64, the undiscounted return of each stored trajectory, in recording order."""
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts[:-1])

    def head(self, max_transitions: int) -> TaskBuffer:
        """The first ``max_transitions`` transitions (a shorter-lived behaviour agent's buffer).

        The trajectory the cut falls into is kept up to the cut; as a cut by the data limit, not by the
        environment, its last step is marked neither terminal nor truncated, so it is bootstrapped.
        """
        if max_transitions < 2:
            raise ValueError(f"max_transitions must be >= 2, got {max_transitions}")
        if max_transitions >= len(self):
            return self
        n = max_transitions
        keep = int(np.searchsorted(self.episode_starts, n, side="left"))  # episodes starting before n
        starts = np.concatenate([self.episode_starts[:keep], [n]]).astype(np.int64)
        terminals, truncations = self.terminals[:n].copy(), self.truncations[:n].copy()
        if self.episode_starts[keep] != n:  # the cut splits an episode
            terminals[-1] = False
            truncations[-1] = False
        cut = TaskBuffer(
            obs=self.obs[:n],
            actions=self.actions[:n],
            rewards=self.rewards[:n],
            next_obs=self.next_obs[:n],
            terminals=terminals,
            truncations=truncations,
            episode_starts=starts,
            behaviour_steps=self.behaviour_steps[:keep],
            trial_index=self.trial_index[:keep],
            episode_in_trial=self.episode_in_trial[:keep],
            task=self.task,
            task_index=self.task_index,
            family=self.family,
            source=self.source,
            # Rows of a C-contiguous block stay contiguous; the flags agree (a mid-episode row is neither).
            _block=None if self._block is None else self._block[:n],
        )
        return cut

    # --- Monte-Carlo targets ----------------------------------------------------------------------------
    def value_targets(self, gamma: float) -> ValueTargets:
        """Discounted reward-to-go inside each trajectory and the bootstrap fields (cached per ``gamma``).

        For transition ``t`` of a trajectory of length ``T`` (local indices ``0..T-1``)::

            mc_returns[t]          = sum_{k=t}^{T-1} gamma^(k-t) r_k
            bootstrap_discounts[t] = gamma^(T-t)  if the trajectory was cut (time limit or end of data)
                                     0            if its last step is a true termination
            bootstrap_index[t]     = row of the trajectory's last transition (``next_obs`` there is s_T)

        so that ``mc_returns + bootstrap_discounts * V(next_obs[bootstrap_index])`` is MACAW's value target.

        Args:
            gamma: discount in ``[0, 1]``.

        Returns:
            :class:`ValueTargets` with float32/int64 arrays of length ``N``.
        """
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
        key = float(gamma)
        if key not in self._targets:
            self._targets[key] = _compute_value_targets(
                self.rewards, self.terminals, self.episode_starts, key
            )
        return self._targets[key]

    # --- index samplers --------------------------------------------------------------------------------
    def window_range(
        self, window: WindowKind = "all", num_trajectories: int | None = None
    ) -> tuple[int, int]:
        """Transition range ``[lo, hi)`` of a data-quality window.

        ``first`` / ``middle`` / ``last`` N trajectories are MACAW's bad / medium / good data (App. D); the
        middle window is centred, starting at trajectory ``(E - N) // 2``. ``all`` is the whole buffer.

        Raises:
            ValueError: on an unknown window, a missing or non-positive ``num_trajectories``, or a buffer
                with fewer trajectories than asked for.
        """
        if window not in WINDOW_KINDS:
            raise ValueError(f"window must be one of {WINDOW_KINDS}, got {window!r}")
        if window == "all":
            return 0, len(self)
        n_episodes = self.num_episodes
        if num_trajectories is None or num_trajectories < 1:
            raise ValueError(f"window {window!r} needs num_trajectories >= 1, got {num_trajectories}")
        if num_trajectories > n_episodes:
            raise ValueError(
                f"{self.source} (task {self.task_index}) holds {n_episodes} trajectories, fewer than the "
                f"{num_trajectories} the {window!r} window asks for; lower num_trajectories"
            )
        first = {
            "first": 0,
            "middle": (n_episodes - num_trajectories) // 2,
            "last": n_episodes - num_trajectories,
        }
        e0 = first[window]
        return int(self.episode_starts[e0]), int(self.episode_starts[e0 + num_trajectories])

    def contiguous_indices(
        self, size: int, rng: np.random.Generator, lo: int = 0, hi: int | None = None
    ) -> np.ndarray:
        """``size`` consecutive rows starting at a uniformly random offset inside ``[lo, hi)``.

        MACAW's inner-loop (support) batch is such a slice of the chronological buffer (paper App. E).
        """
        hi = len(self) if hi is None else hi
        self._check_size(size, hi - lo, "contiguous slice")
        start = lo + int(rng.integers(0, hi - lo - size + 1))
        return np.arange(start, start + size, dtype=np.int64)

    def uniform_indices(
        self,
        size: int,
        rng: np.random.Generator,
        lo: int = 0,
        hi: int | None = None,
        exclude: np.ndarray | None = None,
        exclude_range: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """``size`` distinct rows drawn uniformly from ``[lo, hi)`` minus ``exclude`` (without replacement).

        The exclusion is exact and needs no rejection loop: draw among the ``m`` allowed rows by rank, then
        shift each rank past the excluded rows below it. ``exclude_range=(e0, e1)`` excludes a contiguous block
        (a support slice) faster than listing its rows.
        """
        hi = len(self) if hi is None else hi
        if exclude_range is not None:  # fast path: a contiguous block [e0, e1) inside [lo, hi)
            if exclude is not None:
                raise ValueError("give exclude or exclude_range, not both")
            e0, e1 = max(lo, exclude_range[0]), min(hi, exclude_range[1])
            width = max(0, e1 - e0)
            self._check_size(size, hi - lo - width, "uniform draw")
            rows = lo + rng.choice(hi - lo - width, size=size, replace=False).astype(np.int64)
            rows[rows >= e0] += width
            return rows
        excluded = (
            np.empty(0, dtype=np.int64) if exclude is None else np.unique(np.asarray(exclude, np.int64))
        )
        excluded = excluded[(excluded >= lo) & (excluded < hi)]
        available = hi - lo - len(excluded)
        self._check_size(size, available, "uniform draw")
        ranks = rng.choice(available, size=size, replace=False).astype(np.int64)
        if len(excluded) == 0:
            return lo + ranks
        # The k-th excluded row (sorted) has (excluded[k] - lo - k) allowed rows below it; a rank r lands
        # after every excluded row whose count of allowed rows below is <= r.
        allowed_below = excluded - lo - np.arange(len(excluded))
        return lo + ranks + np.searchsorted(allowed_below, ranks, side="right")

    def _check_size(self, size: int, available: int, what: str) -> None:
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        if size > available:
            raise ValueError(
                f"{self.source} (family {self.family!r}, task {self.task_index}): a {what} of {size} transitions "
                f"asks for more than the {available} available; lower support_size/query_size (or the "
                "adaptation batch size), widen the data window, or collect more data"
            )


def block_columns(obs_dim: int, action_width: int) -> dict[str, slice]:
    """Column slices of a transition block (see :meth:`TaskBuffer.transition_block`)."""
    d, a = obs_dim, action_width
    return {
        "obs": slice(0, d),
        "actions": slice(d, d + a),
        "rewards": slice(d + a, d + a + 1),
        "next_obs": slice(d + a + 1, 2 * d + a + 1),
        "terminals": slice(2 * d + a + 1, 2 * d + a + 2),
        "truncations": slice(2 * d + a + 2, 2 * d + a + 3),
    }


MAPPED_CHUNK_BYTES = 64 << 20
"""A memory-mapped block is scanned in pieces of this size, its pages released after each one."""


def mapped_region(array: np.ndarray) -> mmap.mmap | None:
    """The memory map behind ``array`` (a ``np.load(..., mmap_mode="r")`` array or a view of one), else ``None``."""
    base: Any = array
    while base is not None:
        if isinstance(base, mmap.mmap):
            return base
        region = getattr(base, "_mmap", None)
        if isinstance(region, mmap.mmap):
            return region
        base = getattr(base, "base", None)
    return None


def release_pages(array: np.ndarray) -> bool:
    """Drop the resident pages of the memory map behind ``array`` from this process (``MADV_DONTNEED``).

    The map is read-only and file-backed, so nothing is lost: the pages stay in the OS page cache and the next
    read maps them again. This is what keeps a dataset larger than RAM at a bounded resident size. Returns
    whether ``array`` was memory-mapped.
    """
    region = mapped_region(array)
    if region is None:
        return False
    region.madvise(mmap.MADV_DONTNEED)
    return True


def row_chunks(array: np.ndarray) -> list[slice]:
    """Row slices of about :data:`MAPPED_CHUNK_BYTES` each covering ``array`` (2-D) in order."""
    rows = max(1, MAPPED_CHUNK_BYTES // max(1, array.itemsize * int(np.prod(array.shape[1:]))))
    return [slice(start, start + rows) for start in range(0, len(array), rows)]


def values_in_range(values: np.ndarray) -> bool:
    """True when every value is finite and within ``MAX_ABS_VALUE`` (NaN propagates through min and max).

    Two reductions, no temporaries: about 30 ms for a 2.5M x 49 float32 block on this project's CPU. A
    memory-mapped block is scanned chunk by chunk, releasing its pages as it goes (:func:`release_pages`).
    """
    values = np.asarray(values) if mapped_region(values) is None else values
    if values.size == 0 or values.dtype.kind not in "iuf":  # bool flags cannot be out of range
        return True
    if mapped_region(values) is not None and values.ndim == 2:
        for rows in row_chunks(values):
            chunk = np.array(values[rows])
            release_pages(values)  # after every chunk: the scan never makes the whole block resident
            if not values_in_range(chunk):
                return False
        return True
    return bool(values.min() >= -MAX_ABS_VALUE and values.max() <= MAX_ABS_VALUE)


def mapped_column(block: np.ndarray, column: int, transform: Any = None) -> np.ndarray:
    """One column of a memory-mapped ``block`` as a compact in-memory array (``transform`` applied per chunk),
    read chunk by chunk with the pages released after each, so reading it never makes the whole block resident."""
    chunks = []
    for rows in row_chunks(block):
        part = np.array(block[rows, column])
        release_pages(block)
        chunks.append(part if transform is None else transform(part))
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=block.dtype)


def check_value_range(
    values: np.ndarray, field: str, where: str, episode_starts: np.ndarray | None = None, rows: str = "transition"
) -> None:
    """Raise ``ValueError`` if ``values`` holds NaN, inf or a magnitude above :data:`MAX_ABS_VALUE`.

    The one value check of every path: writing (each episode, in its own dtype, before the float32 cast),
    importing (each source file) and every :class:`TaskBuffer` (Minari read and packed cache alike).

    Args:
        values: ``[N, ...]`` numbers; integer arrays are checked too, booleans are skipped.
        field: the field's name, for the message.
        where: the dataset, file or episode, for the message.
        episode_starts: ``[E + 1]`` offsets; given, the message also names the episode and its step.
        rows: what a row of ``values`` is called in the message (``"transition"``, ``"step"``, ``"row"``).
    """
    if values_in_range(values):
        return
    flat = np.asarray(values).reshape(len(values), -1)
    bad = ~((flat >= -MAX_ABS_VALUE) & (flat <= MAX_ABS_VALUE))  # True for NaN too
    row = int(np.flatnonzero(bad.any(axis=1))[0])
    value = flat[row, int(np.flatnonzero(bad[row])[0])]
    location = f"{rows} {row}"
    if episode_starts is not None:
        episode = int(np.searchsorted(episode_starts, row, side="right")) - 1
        location += f" (episode {episode}, step {row - int(episode_starts[episode])})"
    if not np.isfinite(value):
        raise ValueError(
            f"{where}: field {field!r} holds NaN or inf at {location}; fix or drop the offending episodes"
        )
    overflow = ", which overflows float32," if abs(float(value)) > float(np.finfo(np.float32).max) else ""
    raise ValueError(
        f"{where}: field {field!r} holds {float(value):.6g}{overflow} at {location}, beyond the bound "
        f"|x| <= {MAX_ABS_VALUE:g} (squared losses of such values overflow float32); rescale the data "
        "(e.g. divide the rewards by a constant) or drop the offending episodes"
    )


def check_episode(episode: dict[str, Any], where: str) -> None:
    """Check one Minari-style episode dict; raise ``ValueError`` naming the field and the fix."""
    required = ("observations", "actions", "rewards", "terminations", "truncations")
    missing = [k for k in required if k not in episode]
    if missing:
        raise ValueError(f"{where} lacks field(s) {missing}; an episode needs {list(required)}")
    obs = np.asarray(episode["observations"])
    steps = len(np.asarray(episode["rewards"]).reshape(-1))
    if steps < 1:
        raise ValueError(f"{where} is empty (0 steps); drop it before writing")
    if obs.ndim != 2 or len(obs) != steps + 1:
        raise ValueError(
            f"{where}: 'observations' must be [T + 1, obs_dim] with T = {steps} steps (Minari layout, the "
            f"final next-observation included), got shape {obs.shape}"
        )
    for key in ("actions", "terminations", "truncations"):
        if len(np.asarray(episode[key])) != steps:
            raise ValueError(f"{where}: '{key}' has {len(np.asarray(episode[key]))} rows, expected {steps}")


def _compute_value_targets(
    rewards: np.ndarray, terminals: np.ndarray, episode_starts: np.ndarray, gamma: float
) -> ValueTargets:
    """Vectorised per-trajectory discounted reward-to-go (float64 accumulation), see ``value_targets``.

    Trajectories of equal length are stacked into a matrix and the backward recursion
    ``G_t = r_t + gamma * G_{t+1}`` runs once per time step over all of them at once, so the Python loop
    runs ``sum over distinct lengths`` times, not once per transition.
    """
    n = len(rewards)
    lengths = np.diff(episode_starts)
    starts = episode_starts[:-1]
    mc = np.empty(n, dtype=np.float64)
    local_t = np.arange(n, dtype=np.int64) - np.repeat(starts, lengths)  # t inside its trajectory
    for length in np.unique(lengths):
        group = starts[lengths == length]
        rows = group[:, None] + np.arange(length)[None, :]  # [n_group, length]
        r = rewards[rows].astype(np.float64)
        g = np.empty_like(r)
        running = np.zeros(len(group))
        for t in range(length - 1, -1, -1):
            running = r[:, t] + gamma * running
            g[:, t] = running
        mc[rows] = g
    last_row = np.repeat(episode_starts[1:] - 1, lengths)
    remaining = np.repeat(lengths, lengths) - local_t  # T - t
    cut = ~terminals[last_row]  # truncated, or unfinished at the end of the data: bootstrap
    discounts = np.where(cut, np.power(gamma, remaining.astype(np.float64)), 0.0)
    return ValueTargets(
        mc_returns=mc.astype(np.float32),
        bootstrap_index=last_row.astype(np.int64),
        bootstrap_discounts=discounts.astype(np.float32),
    )
