"""OfflineMetaDataModule: task batches of disjoint support / query sets from per-task offline buffers.

Each training batch is a :class:`~lit_offmeta.data.batch.TaskBatch` of ``K`` tasks. Per task, following MACAW
(Mitchell et al. 2021, arXiv:2008.06043, App. E): the support (inner-loop) set is a random CONTIGUOUS slice of
the chronological buffer, the query (outer-loop) set is drawn uniformly without replacement from the rest, so
the two never share a transition. Validation and test batches cover the held-out tasks: the support set is a
uniform adaptation batch (as at meta-test time), the query set a disjoint uniform draw from the rest, so a
module can log its losses before and after adaptation.

Determinism and workers: training batch ``g`` of a run (``g = e * batches_per_epoch + i`` for batch ``i`` of
epoch ``e``) is built from numpy generators seeded with ``seed``, the key ``g`` and the rank, and nothing else, so
the same seed gives the same batches with any ``num_workers`` (workers only decide who computes a batch, never
what it holds). The next key is saved in every checkpoint (:mod:`lit_offmeta.datamodules.batch_keys`), so a run
resumed from any checkpoint, mid-epoch included, draws exactly the batches of the uninterrupted run.

DDP: every rank draws the same permutation of the training tasks for step ``i`` and takes its own block of
``K`` tasks from it, so no two ranks train on the same task in one step (when ``world_size * K`` does not
exceed the number of training tasks; otherwise each rank draws its own ``K`` tasks with a rank-offset seed and a
warning says so). The sampler subclasses ``DistributedSampler`` so Lightning keeps it instead of wrapping it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from lit_offmeta.data.batch import TaskBatch
from lit_offmeta.data.buffer import WINDOW_KINDS, TaskBuffer
from lit_offmeta.data.packed import PackedTasks, check_consistent_dims
from lit_offmeta.data.storage import (
    MissingDatasetError,
    collect_command,
    dataset_path,
    list_task_datasets,
    load_task_buffers,
    raise_if_corrupt,
)
from lit_offmeta.datamodules.batch_keys import BatchKeySampler, loader_generator, next_train_key
from lit_offmeta.tasks import get_family
from lit_offmeta.tasks.base import TaskFamily

_TRAIN, _EVAL = 0, 1  # stream tags mixed into the seeds so train and eval draws never coincide


class ReturnRange(NamedTuple):
    """Undiscounted episode returns in one task's offline data (for normalised scores)."""

    min: float
    mean: float
    max: float


class AdaptationBatch(NamedTuple):
    """One task's offline data to adapt to: what :meth:`OfflineMetaDataModule.predict_dataloader` yields.

    ``context`` is :meth:`OfflineMetaDataModule.adaptation_batch` of task ``task_id`` (``TRANSITION_KEYS`` ->
    ``[B, ...]``); a module's ``predict_step`` passes it to its own ``adapt``.
    """

    task_id: int
    context: dict[str, torch.Tensor]


class OfflineMetaDataModule(LightningDataModule):
    """Task batches for offline meta-training from one Minari dataset per task.

    Args:
        family: task family name (e.g. ``"cheetah_vel"``); tasks are indices into its ``default_tasks()``.
        data_dir: the data root written by ``lit-offmeta collect --out DIR`` (or the importers).
        split: a named split of the family (``None``: the family's default split). Ignored when both
            ``train_ids`` and ``test_ids`` are given.
        train_ids: explicit meta-training task indices (overrides the split's).
        test_ids: explicit held-out task indices (overrides the split's).
        tasks_per_batch: ``K``, tasks per meta-training batch (MACAW: 5).
        support_size: ``B_in``, transitions per task in the support (inner-loop) set (MACAW: 256).
        query_size: ``B_out``, transitions per task in the query (outer-loop) set (MACAW: 256).
        gamma: discount of the Monte-Carlo returns (MACAW: 0.99).
        batches_per_epoch: training batches per epoch.
        num_workers: DataLoader workers (batches are identical for any value).
        seed: base seed of every draw.
        window: data-quality window of the support / adaptation data: ``"all"``, or the ``"first"``,
            ``"middle"`` or ``"last"`` ``window_trajectories`` trajectories (bad / medium / good data).
        window_trajectories: trajectories in the window (MACAW's ablation: 500); needed unless ``"all"``.
        window_applies_to: ``"support"`` follows the paper (App. D: the *adaptation* data comes from the
            window; query data from the whole buffer), as the authors' code does (it windows the support and
            test buffers, not the query buffer); ``"both"`` restricts query data to the window too.
        max_transitions_per_task: keep only each buffer's first N transitions (a shorter-lived behaviour agent).
        use_cache: read and refresh the packed per-task cache (see :mod:`lit_offmeta.data.storage`).
        memory_map: memory-map the packed caches instead of reading them: observations and actions stay on disk
            until sampled, for datasets larger than RAM (``benchmarks/memory_mapped_sampling.py``).
        predict_ids: the tasks ``Trainer.predict`` adapts to (:meth:`predict_dataloader`); any task of the family
            with data on disk, training tasks included (``None``: the held-out tasks, ``test_ids``).

    Raises:
        ValueError: on invalid sizes, an unknown window, overlapping or unknown task ids.

    Example::

        dm = OfflineMetaDataModule("point_robot", "data/", tasks_per_batch=5)
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))  # TaskBatch, support [5, 256, ...], query [5, 256, ...]
    """

    def __init__(
        self,
        family: str,
        data_dir: str | Path,
        split: str | None = None,
        train_ids: list[int] | None = None,
        test_ids: list[int] | None = None,
        tasks_per_batch: int = 5,
        support_size: int = 256,
        query_size: int = 256,
        gamma: float = 0.99,
        batches_per_epoch: int = 1000,
        num_workers: int = 0,
        seed: int = 0,
        window: Literal["all", "first", "middle", "last"] = "all",
        window_trajectories: int | None = None,
        window_applies_to: Literal["support", "both"] = "support",
        max_transitions_per_task: int | None = None,
        use_cache: bool = True,
        memory_map: bool = False,
        predict_ids: list[int] | None = None,
    ) -> None:
        super().__init__()
        # hparams go into checkpoints: a Path there would not load under torch.load(weights_only=True).
        data_dir = str(data_dir)
        self.save_hyperparameters()
        for name, value in (
            ("tasks_per_batch", tasks_per_batch),
            ("support_size", support_size),
            ("query_size", query_size),
            ("batches_per_epoch", batches_per_epoch),
        ):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
        if window not in WINDOW_KINDS:
            raise ValueError(f"window must be one of {WINDOW_KINDS}, got {window!r}")
        if window != "all" and (window_trajectories is None or window_trajectories < 1):
            raise ValueError(f"window={window!r} needs window_trajectories >= 1, got {window_trajectories}")
        if window_applies_to not in ("support", "both"):
            raise ValueError(f"window_applies_to must be 'support' or 'both', got {window_applies_to!r}")
        if max_transitions_per_task is not None and max_transitions_per_task < 2:
            raise ValueError(f"max_transitions_per_task must be >= 2 or None, got {max_transitions_per_task}")

        self._family = get_family(family)
        self.data_dir = Path(data_dir)
        self.tasks_per_batch = int(tasks_per_batch)
        self.support_size = int(support_size)
        self.query_size = int(query_size)
        self.gamma = float(gamma)
        self.batches_per_epoch = int(batches_per_epoch)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.window = window
        self.window_trajectories = window_trajectories
        self.window_applies_to = window_applies_to
        self.max_transitions_per_task = max_transitions_per_task
        self.use_cache = use_cache
        self.memory_map = memory_map
        self._train_ids, self._test_ids = self._resolve_ids(split, train_ids, test_ids)
        self._predict_ids = None if predict_ids is None else tuple(int(i) for i in predict_ids)
        if self._predict_ids is not None:
            if not self._predict_ids:
                raise ValueError("predict_ids is empty; leave it unset (null) to predict the held-out tasks")
            self._check_ids("predict_ids", self._predict_ids)
        self._buffers: dict[int, TaskBuffer] = {}
        self._extra_packed: dict[int, PackedTasks] = {}
        self._train_set: TaskBatchDataset | None = None
        self._eval_set: TaskBatchDataset | None = None
        self._resume_key = 0  # key of the first training batch (set from a checkpoint on resume)

    # --- public properties ------------------------------------------------------------------------------
    @property
    def family(self) -> TaskFamily:
        return self._family

    @property
    def obs_dim(self) -> int:
        return self._family.obs_dim

    @property
    def action_dim(self) -> int:
        """Continuous: the action vector's size. Discrete: the number of actions."""
        return self._family.action_dim

    @property
    def train_task_ids(self) -> tuple[int, ...]:
        return self._train_ids

    @property
    def test_task_ids(self) -> tuple[int, ...]:
        return self._test_ids

    @property
    def predict_task_ids(self) -> tuple[int, ...]:
        """The tasks :meth:`predict_dataloader` yields: ``predict_ids``, or the held-out tasks."""
        return self._test_ids if self._predict_ids is None else self._predict_ids

    def _resolve_ids(
        self, split: str | None, train_ids: Sequence[int] | None, test_ids: Sequence[int] | None
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        allow_overlap = False
        if train_ids is None or test_ids is None:
            named = self._family.split(split)
            train = named.train if train_ids is None else train_ids
            test = named.test if test_ids is None else test_ids
            # a protocol that evaluates on its training tasks (Cheetah-Dir's two) says so on its split
            allow_overlap = named.allow_overlap and train_ids is None and test_ids is None
        else:
            train, test = train_ids, test_ids
        train, test = tuple(int(i) for i in train), tuple(int(i) for i in test)
        for name, ids in (("train_ids", train), ("test_ids", test)):
            self._check_ids(name, ids)
        if not train:
            raise ValueError("train_ids is empty; meta-training needs at least one task")
        overlap = sorted(set(train) & set(test))
        if overlap and not allow_overlap:
            raise ValueError(f"train_ids and test_ids share tasks {overlap}; held-out tasks must be unseen")
        if self.tasks_per_batch > len(train):
            raise ValueError(
                f"tasks_per_batch={self.tasks_per_batch} exceeds the {len(train)} training tasks; lower it"
            )
        return train, test

    def _check_ids(self, name: str, ids: Sequence[int]) -> None:
        n = self._family.num_default_tasks
        bad = [i for i in ids if not 0 <= i < n]
        if bad:
            raise ValueError(f"{name} holds task indices {bad} outside [0, {n}) of family {self._family.name!r}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"{name} lists a task twice: {list(ids)}")

    # --- Lightning hooks ----------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Only checks that every needed task dataset exists (nothing to download)."""
        self._check_available(self._train_ids + self._test_ids)

    def _check_available(self, ids: Sequence[int]) -> None:
        available = list_task_datasets(self.data_dir, self._family.name)
        missing = sorted(set(ids) - set(available))
        for index in missing:  # a folder whose metadata is unreadable is corrupt, not missing
            raise_if_corrupt(dataset_path(self.data_dir, self._family.name, index), self._family.name, self.data_dir)
        if missing:
            raise MissingDatasetError(
                f"no dataset for {self._family.name!r} task(s) {missing} under {self.data_dir / self._family.name}; "
                f"create them with `{collect_command(self._family.name, self.data_dir)}`"
            )

    def setup(self, stage: str | None = None) -> None:
        """Load the train and held-out buffers, check them, and pack them for sampling (once)."""
        if self._train_set is not None:
            return
        self._check_available(self._train_ids + self._test_ids)
        self._load(self._train_ids + self._test_ids)
        buffers = [self._buffers[i] for i in self._train_ids + self._test_ids]
        check_consistent_dims(buffers)
        self._check_family_dims(buffers[0])
        self._train_set = self._dataset([self._buffers[i] for i in self._train_ids], "train")
        if self._test_ids:
            self._eval_set = self._dataset([self._buffers[i] for i in self._test_ids], "eval")

    def _dataset(self, buffers: list[TaskBuffer], mode: Literal["train", "eval"]) -> TaskBatchDataset:
        return TaskBatchDataset(
            buffers,
            mode,
            tasks_per_batch=self.tasks_per_batch,
            support_size=self.support_size,
            query_size=self.query_size,
            gamma=self.gamma,
            seed=self.seed,
            window=self.window,
            window_trajectories=self.window_trajectories,
            window_applies_to=self.window_applies_to,
        )

    def _load(self, ids: Sequence[int]) -> None:
        todo = [i for i in dict.fromkeys(ids) if i not in self._buffers]
        if not todo:
            return
        for buf in load_task_buffers(self.data_dir, self._family.name, todo, use_cache=self.use_cache,
                                     memory_map=self.memory_map):
            if self.max_transitions_per_task is not None:
                buf = buf.head(self.max_transitions_per_task)
            self._buffers[buf.task_index] = buf

    def _check_family_dims(self, buf: TaskBuffer) -> None:
        if buf.obs_dim != self.obs_dim:
            raise ValueError(
                f"{buf.source}: observations have {buf.obs_dim} dims but family {self._family.name!r} has "
                f"{self.obs_dim}; the data was made for another family or version"
            )
        expected = 1 if self._family.discrete_actions else self.action_dim
        if buf.action_dim != expected or (buf.actions.ndim == 1) != self._family.discrete_actions:
            raise ValueError(
                f"{buf.source}: actions of shape {buf.actions.shape[1:] or '(discrete)'} do not match family "
                f"{self._family.name!r} (action_dim {self.action_dim}, discrete={self._family.discrete_actions})"
            )

    def _distributed(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.global_rank), int(trainer.world_size)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _loader(self, dataset: TaskBatchDataset, sampler: BatchKeySampler) -> DataLoader:
        return DataLoader(
            dataset,
            sampler=sampler,
            batch_size=None,  # each item already is a whole TaskBatch
            collate_fn=collate_task_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=loader_generator(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        self._require_setup()
        rank, world = self._distributed()
        self._train_set.set_rank(rank, world)
        sampler = BatchKeySampler(
            self.batches_per_epoch, per_epoch=True, position=self._next_train_key, rank=rank, world_size=world
        )
        return self._loader(self._train_set, sampler)

    # --- exact resume: the next batch's key travels in every checkpoint ------------------------------------
    def _next_train_key(self) -> int | None:
        return next_train_key(getattr(self, "trainer", None), self._resume_key)

    def state_dict(self) -> dict[str, int]:
        key = self._next_train_key()
        return {"next_train_batch": self._resume_key if key is None else key}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_key = int(state_dict["next_train_batch"])

    def val_dataloader(self) -> DataLoader | list:
        if self._eval_set is None:
            rank_zero_warn(
                "no held-out tasks (test_ids is empty): validation is skipped", category=UserWarning
            )
            return []
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def _eval_loader(self) -> DataLoader:
        self._require_setup()
        if self._eval_set is None:
            raise ValueError("no held-out tasks (test_ids is empty): there is nothing to validate or test on")
        n_batches = math.ceil(len(self._test_ids) / self.tasks_per_batch)
        rank, world = self._distributed()
        return self._loader(
            self._eval_set, BatchKeySampler(n_batches, per_epoch=False, rank=rank, world_size=world)
        )

    def predict_dataloader(self) -> DataLoader:
        """One :class:`AdaptationBatch` per task of :attr:`predict_task_ids`, in that order.

        Each holds ``support_size`` transitions of its task drawn as :meth:`adaptation_batch` draws them (the
        datamodule's window, ``seed`` = the task id: the batch the ``AdaptationEvaluator`` adapts on with its
        default seed and ``batch_size = support_size``). A module's ``predict_step`` adapts to it.

        Raises:
            ValueError: when there is no task to predict (no ``predict_ids`` and no held-out tasks), or a
                task's window holds fewer than ``support_size`` transitions.
        """
        ids = self.predict_task_ids
        if not ids:
            raise ValueError(
                "no tasks to predict: test_ids is empty and predict_ids is unset; set data.init_args.predict_ids"
            )
        batches = [AdaptationBatch(t, self.adaptation_batch(t, size=self.support_size, seed=t)) for t in ids]
        # A list is a dataset. Batches of one item, unwrapped, give prediction writers each task's index.
        return DataLoader(batches, batch_size=1, collate_fn=itemgetter(0))

    def _require_setup(self) -> None:
        if self._train_set is None:
            raise RuntimeError("call setup() before asking for a dataloader (the Trainer does this for you)")

    # --- evaluation API ------------------------------------------------------------------------------------
    def buffer(self, task_id: int) -> TaskBuffer:
        """The (possibly ``max_transitions_per_task``-cut) buffer of any task of the family, loaded on demand."""
        self._load([int(task_id)])
        return self._buffers[int(task_id)]

    def task(self, task_id: int) -> dict[str, Any]:
        """The parameters of a task, as stored with its data."""
        return dict(self.buffer(task_id).task)

    def behaviour_return_range(self, task_id: int) -> ReturnRange:
        """Worst, mean and best undiscounted episode return in the task's offline data.

        Only finished episodes count (ended by termination or time limit); an episode cut short by the end of
        the data or by ``max_transitions_per_task`` would look like a bad one. If none is finished, all count.
        """
        buf = self.buffer(task_id)
        returns = buf.episode_returns()
        last = buf.episode_starts[1:] - 1
        finished = buf.terminals[last] | buf.truncations[last]
        if finished.any():
            returns = returns[finished]
        return ReturnRange(float(returns.min()), float(returns.mean()), float(returns.max()))

    def adaptation_batch(
        self,
        task_id: int,
        size: int = 256,
        window: str | None = None,
        seed: int = 0,
        num_trajectories: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """A uniform batch of one task's offline data for test-time adaptation (MACAW App. E).

        Args:
            task_id: any task of the family with data on disk (usually a held-out one).
            size: transitions in the batch (MACAW: 256).
            window: ``"all"``, ``"first"``, ``"middle"`` or ``"last"`` (``None``: the datamodule's window).
            seed: seed of the draw (same seed, same batch).
            num_trajectories: trajectories in the window (``None``: ``window_trajectories``).

        Returns:
            ``TRANSITION_KEYS`` -> tensors ``[size, ...]`` with Monte-Carlo targets for ``gamma``.

        Raises:
            ValueError: if ``size`` exceeds the transitions in the window.
        """
        buf = self.buffer(task_id)
        kind = self.window if window is None else window
        n_traj = self.window_trajectories if num_trajectories is None else num_trajectories
        lo, hi = buf.window_range(kind, n_traj)  # type: ignore[arg-type]
        rows = buf.uniform_indices(
            size, np.random.default_rng([self.seed, _EVAL, 7, int(task_id), seed]), lo, hi
        )
        packed, position = self._packed_for(int(task_id))
        return {k: v[0] for k, v in packed.gather([position], rows[None, :]).items()}

    def _packed_for(self, task_id: int) -> tuple[PackedTasks, int]:
        """The packed store holding ``task_id`` (the train/eval sets' own, or a cached single-task one)."""
        for dataset in (self._eval_set, self._train_set):
            if dataset is not None and task_id in dataset.task_ids:
                return dataset.packed, int(np.flatnonzero(dataset.task_ids == task_id)[0])
        if task_id not in self._extra_packed:
            self._extra_packed[task_id] = PackedTasks([self.buffer(task_id)], self.gamma)
        return self._extra_packed[task_id], 0


class TaskBatchDataset(Dataset):
    """Map-style dataset whose item ``key`` is a whole :class:`TaskBatch`, drawn from ``key`` alone.

    Args:
        buffers: the tasks this dataset draws from.
        mode: ``"train"`` (K random tasks, contiguous support) or ``"eval"`` (the tasks in order, K at a time,
            uniform support).
        tasks_per_batch, support_size, query_size, gamma, seed, window, window_trajectories,
            window_applies_to: as in :class:`OfflineMetaDataModule`.

    Raises:
        ValueError: if a task cannot supply disjoint support and query sets of the requested sizes.
    """

    def __init__(
        self,
        buffers: Sequence[TaskBuffer],
        mode: Literal["train", "eval"],
        tasks_per_batch: int,
        support_size: int,
        query_size: int,
        gamma: float,
        seed: int = 0,
        window: Literal["all", "first", "middle", "last"] = "all",
        window_trajectories: int | None = None,
        window_applies_to: Literal["support", "both"] = "support",
    ) -> None:
        self.mode = mode
        self.task_ids = np.array([b.task_index for b in buffers], dtype=np.int64)
        self.k = int(tasks_per_batch)
        self.support_size, self.query_size = int(support_size), int(query_size)
        self.seed = int(seed)
        self.rank, self.world_size = 0, 1
        self.packed = PackedTasks(buffers, gamma)
        self.buffers = list(buffers)
        # Per-task [lo, hi) of the support window and of the query window.
        self.support_ranges = [b.window_range(window, window_trajectories) for b in buffers]
        self.query_ranges = (
            self.support_ranges if window_applies_to == "both" else [(0, len(b)) for b in buffers]
        )
        for buf, (lo, hi), (qlo, qhi) in zip(self.buffers, self.support_ranges, self.query_ranges):
            query_room = (qhi - qlo) - self.support_size  # the support slice lies inside the query window
            if self.support_size > hi - lo or self.query_size > query_room:
                raise ValueError(
                    f"{buf.source} (task {buf.task_index}): support_size={self.support_size} + "
                    f"query_size={self.query_size} need more transitions than the task offers "
                    f"({hi - lo} in the support window, {qhi - qlo} for queries); lower the sizes, widen "
                    "the window, or collect more data"
                )

    def set_rank(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = int(rank), int(world_size)
        if self.mode == "train" and world_size * self.k > len(self.task_ids):
            rank_zero_warn(
                f"{world_size} ranks x {self.k} tasks per batch exceed the {len(self.task_ids)} training tasks: "
                "ranks draw their tasks independently (rank-offset seeds) and may share tasks in a step",
                category=UserWarning,
            )

    def __len__(self) -> int:  # keys are unbounded (epoch * batches_per_epoch + i); the sampler bounds them
        return np.iinfo(np.int32).max

    def __getitem__(self, key: int) -> TaskBatch:
        if self.mode == "train":
            positions = self._train_positions(int(key))
            rng = np.random.default_rng([self.seed, _TRAIN, 1, int(key), self.rank])
        else:
            positions = np.arange(key * self.k, min((key + 1) * self.k, len(self.task_ids)))
            if len(positions) == 0:
                raise IndexError(f"eval batch {key} is past the {len(self.task_ids)} held-out tasks")
            rng = np.random.default_rng([self.seed, _EVAL, 1, int(key)])
        support_rows = np.empty((len(positions), self.support_size), dtype=np.int64)
        query_rows = np.empty((len(positions), self.query_size), dtype=np.int64)
        for j, pos in enumerate(positions):
            buf = self.buffers[pos]
            lo, hi = self.support_ranges[pos]
            qlo, qhi = self.query_ranges[pos]
            if self.mode == "train":
                support = buf.contiguous_indices(self.support_size, rng, lo, hi)
                query = buf.uniform_indices(
                    self.query_size, rng, qlo, qhi, exclude_range=(int(support[0]), int(support[-1]) + 1)
                )
            else:
                support = buf.uniform_indices(self.support_size, rng, lo, hi)
                query = buf.uniform_indices(self.query_size, rng, qlo, qhi, exclude=support)
            support_rows[j], query_rows[j] = support, query
        support_set, query_set = self.packed.gather(positions, support_rows, query_rows)
        return TaskBatch(
            support=support_set, query=query_set, task_ids=torch.from_numpy(self.task_ids[positions])
        )

    def _train_positions(self, key: int) -> np.ndarray:
        n = len(self.task_ids)
        if self.world_size * self.k <= n:
            # One permutation shared by all ranks; each rank takes its own block: disjoint by construction.
            perm = np.random.default_rng([self.seed, _TRAIN, 0, key]).permutation(n)
            return perm[self.rank * self.k : (self.rank + 1) * self.k]
        return np.random.default_rng([self.seed, _TRAIN, 0, key, self.rank]).permutation(n)[: self.k]


def collate_task_batch(item: TaskBatch) -> TaskBatch:
    """DataLoader collate for ``batch_size=None``: every item already is a :class:`TaskBatch`."""
    if not isinstance(item, TaskBatch):
        raise TypeError(f"expected a TaskBatch, got {type(item).__name__}")
    return item
