"""Trajectory datamodule for offline VariBAD / BOReL: whole multi-episode trials, reward-relabelled.

Where MACAW's datamodule serves transitions, the belief VAE needs whole trials (``E`` episodes of one task)
because the belief after step ``t`` depends on everything seen since the trial started. Each training batch
holds ``tasks_per_batch`` tasks (drawn with replacement) x ``trials_per_task`` trials, as time-major tensors
``[E * H, B, ...]`` ready for the GRU encoder. With ``reward_relabelling`` on, every trial is rebuilt from
pooled episodes with rewards recomputed by its task's reward function (:func:`lit_offmeta.data.relabel.mix_trials`);
off, trials are the behaviour data as logged (the ablation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from lit_offmeta.data.relabel import TrialArrays, mix_trials, trials_from_episodes, trials_to_batch
from lit_offmeta.data.scripted import scripted_trials
from lit_offmeta.data.stitching import stitch_trials
from lit_offmeta.data.storage import load_task_buffers
from lit_offmeta.datamodules.batch_keys import BatchKeySampler, loader_generator, next_train_key
from lit_offmeta.datamodules.offline_meta import ReturnRange
from lit_offmeta.tasks import get_family, task_features
from lit_offmeta.tasks.base import TaskFamily, TaskSplit


class _TrialBatches(Dataset):
    """Map-style dataset whose item ``key`` is a whole batch of trials, drawn from ``(seed, key)`` alone."""

    def __init__(self, dm: TrialDataModule) -> None:
        self.dm = dm

    def __len__(self) -> int:  # keys are unbounded; the sampler bounds them
        return np.iinfo(np.int32).max

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        return self.dm.sample_batch(np.random.default_rng([self.dm.seed, int(key)]))


class TrialDataModule(LightningDataModule):
    """Multi-episode trials of the training tasks, with optional reward relabelling.

    Args:
        family: task family name (``"grid_navi"``, ``"point_robot_sparse"``...).
        data_dir: folder written by ``lit-offmeta collect`` (one dataset per task). ``None`` generates
            scripted behaviour trials in memory instead (see ``scripted_trials_per_task``).
        split: the family's task split (``None``: the family's default, ``"all"``: every task); the VAE and RL
            see only its ``train`` tasks, evaluation uses ``test``.
        episodes_per_trial: ``E`` (``None``: the family's ``episodes_per_trial``, else 2).
        tasks_per_batch: tasks per batch, drawn with replacement (reference: 8, MuJoCo 4).
        trials_per_task: trials per task in a batch (reference: 8).
        reward_relabelling: rebuild trials from pooled episodes with rewards recomputed by the target task's
            reward function (the MDP-ambiguity fix). ``False`` is the ablation.
        mix_prob: with relabelling, the probability that an episode comes from the pooled data (0.5: on average
            one of two episodes, as the reference replaces the first of two).
        shared_paths: with relabelling and ``mix_prob`` 1, draw ``trials_per_task`` paths (pooled episodes) per
            batch and relabel EACH for every task of the batch (tasks then drawn without replacement where there are
            enough), instead of a fresh path per trial. The expected ELBO is the same; the tasks are stratified
            per path, so each belief on a path is trained against several tasks' rewards at once: a
            lower-variance signal for what a path rules out (docs/BOREL.md).
        stitched_trials_per_task: add this many stitched trials per training task to the data
            (:func:`lit_offmeta.data.stitching.stitch_trials`: walks over the logged transitions that prefer
            unvisited states, i.e. search paths no single-task behaviour agent logs; discrete-state families with
            deterministic dynamics only). They join ``train_trials``, so the VAE batches and the pipeline's RL
            stage both draw them. 0 (default): the logged trials only, BOReL's protocol.
        scripted_trials_per_task: with ``data_dir=None``, trials per task of the scripted behaviour
            (:func:`lit_offmeta.data.scripted.scripted_trials`, an epsilon-greedy agent whose
            epsilon decays from 1 to 0.1 over its lifetime).
        steps_per_epoch: batches per epoch (the stream is endless; the trainer's ``max_steps`` decides).
        seed: seeds task sampling and relabelling.

    Example:
        >>> dm = TrialDataModule("grid_navi", scripted_trials_per_task=4, steps_per_epoch=2)
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["obs"].shape)
        (60, 64, 2)
    """

    def __init__(
        self,
        family: str = "grid_navi",
        data_dir: str | None = None,
        split: str | None = None,
        episodes_per_trial: int | None = None,
        tasks_per_batch: int = 8,
        trials_per_task: int = 8,
        reward_relabelling: bool = True,
        mix_prob: float = 0.5,
        shared_paths: bool = False,
        stitched_trials_per_task: int = 0,
        scripted_trials_per_task: int = 200,
        steps_per_epoch: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.family: TaskFamily = get_family(family)
        for name, value in (
            ("tasks_per_batch", tasks_per_batch),
            ("trials_per_task", trials_per_task),
            ("steps_per_epoch", steps_per_epoch),
        ):
            if value < 1:
                raise ValueError(f"TrialDataModule: {name} must be >= 1, got {value}")
        if stitched_trials_per_task < 0:
            raise ValueError(f"TrialDataModule: stitched_trials_per_task must be >= 0, got {stitched_trials_per_task}")
        if not 0.0 <= mix_prob <= 1.0:
            raise ValueError(f"TrialDataModule: mix_prob must be in [0, 1], got {mix_prob}")
        if shared_paths and not (reward_relabelling and mix_prob == 1.0):
            raise ValueError("TrialDataModule: shared_paths needs reward_relabelling=True and mix_prob=1.0 (a path "
                             f"relabelled for several tasks), got reward_relabelling={reward_relabelling}, "
                             f"mix_prob={mix_prob}")
        if data_dir is None and scripted_trials_per_task < 1:
            raise ValueError(
                "TrialDataModule: give data_dir (a folder from `lit-offmeta collect`) or "
                f"scripted_trials_per_task >= 1, got data_dir=None and {scripted_trials_per_task}"
            )
        self.data_dir = data_dir
        self.split_name = split
        self.episodes_per_trial = int(
            episodes_per_trial or getattr(self.family, "episodes_per_trial", 0) or 2
        )
        self.tasks_per_batch = tasks_per_batch
        self.trials_per_task = trials_per_task
        self.reward_relabelling = reward_relabelling
        self.mix_prob = mix_prob
        self.shared_paths = shared_paths
        self.stitched_trials_per_task = stitched_trials_per_task
        self.scripted_trials_per_task = scripted_trials_per_task
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        self.train_trials: TrialArrays | None = None
        self._num_logged = 0  # train_trials' first rows are the logged ones (stitched trials follow)
        self._held_out: dict[int, TrialArrays] = {}  # logged trials of evaluated tasks outside the training split
        self._dataset: _TrialBatches | None = None
        self._resume_key = 0  # key of the first training batch (set from a checkpoint on resume)

    # --- data ------------------------------------------------------------------------------------------------
    @property
    def split(self) -> TaskSplit:
        """The task split; ``"all"`` trains on every default task and evaluates on every task again (fresh online
        trials). GridNavi needs it: its 21 goals are the whole task space, and a goal cell that never pays a reward
        in the training data has belief probability ~0, so no learned belief would search a held-out cell."""
        if self.split_name == "all":
            every = tuple(range(len(self.family.default_tasks())))
            return TaskSplit("all", every, (), "every task, for training and for evaluation")
        return self.family.split(self.split_name)

    @property
    def test_indices(self) -> tuple[int, ...]:
        return self.split.test or self.split.train

    @property
    def test_tasks(self) -> list[dict]:
        tasks = self.family.default_tasks()
        return [tasks[i] for i in self.test_indices]

    # --- what lit_offmeta.callbacks.AdaptationEvaluator reads -----------------------------------------------------
    @property
    def train_task_ids(self) -> tuple[int, ...]:
        return tuple(self.split.train)

    @property
    def test_task_ids(self) -> tuple[int, ...]:
        """The evaluated tasks: the split's held-out ones (``split="all"``: every task again, in fresh trials)."""
        return tuple(self.test_indices)

    def task(self, task_id: int) -> dict:
        return dict(self.family.default_tasks()[task_id])

    def adaptation_batch(self, task_id: int, size: int = 256, window: str | None = None,
                         seed: int = 0) -> dict[str, torch.Tensor]:
        """No offline data: a belief-based policy adapts online, inside its evaluation trial, from the trial's first
        step. Only the task's true parameters (:func:`~lit_offmeta.tasks.task_features`, ``[1, F]``) are given, which
        the oracle agent reads (``OfflineVariBAD(belief_input="oracle")``) and the belief and Thompson policies
        ignore."""
        return {"task_features": torch.as_tensor(task_features(self.task(task_id)))[None]}

    def logged_trials(self, task_id: int, limit: int | None = None) -> TrialArrays:
        """The task's logged trials (the first ``limit``): rows of ``train_trials`` for a training task (never the
        stitched ones), else read once from the data and kept."""
        if task_id in self.split.train and self.train_trials is not None:
            rows = np.flatnonzero(self.train_trials.task_index[: self._num_logged] == task_id)
            return self.train_trials.select(rows[:limit])
        if task_id not in self._held_out:
            self._held_out[task_id] = self.load_trials([task_id])
        trials = self._held_out[task_id]
        return trials if limit is None else trials.select(np.arange(min(limit, trials.num_trials)))

    def behaviour_return_range(self, task_id: int) -> ReturnRange:
        """Worst, mean and best episode return in the task's logged trials (the normalised score's 1 is the best)."""
        trials = self.logged_trials(task_id)
        returns = (trials.rewards * trials.valid).sum(-1).reshape(-1)  # [N * E] episode returns
        return ReturnRange(float(returns.min()), float(returns.mean()), float(returns.max()))

    def prepare_data(self) -> None:
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise ValueError(
                f"TrialDataModule: data_dir {self.data_dir!r} is not a folder; create it with "
                f"`lit-offmeta collect --family {self.family.name} --out {self.data_dir}`"
            )

    def setup(self, stage: str | None = None) -> None:
        if self.train_trials is None:
            trials = self.load_trials(self.split.train)
            self._num_logged = trials.num_trials
            if self.stitched_trials_per_task > 0:
                targets = np.repeat(np.asarray(self.split.train), self.stitched_trials_per_task)
                rng = np.random.default_rng([self.seed, 1])  # its own stream: the batch stream stays as without
                stitched = stitch_trials(self.family, trials, targets, rng)
                trials = TrialArrays.concatenate([trials, stitched])
            self.train_trials = trials

    def load_trials(self, task_indices: tuple[int, ...] | list[int]) -> TrialArrays:
        """Trials of the tasks ``task_indices`` (from ``data_dir`` or the scripted behaviour)."""
        if self.data_dir is None:
            return scripted_trials(
                self.family,
                list(task_indices),
                self.scripted_trials_per_task,
                self.episodes_per_trial,
                seed=self.seed,
            )
        return load_trials_from_storage(self.family, self.data_dir, task_indices, self.episodes_per_trial)

    def sample_batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One batch: ``tasks_per_batch`` tasks x ``trials_per_task`` trials, time-major."""
        if self.train_trials is None:
            raise RuntimeError("TrialDataModule.sample_batch called before setup(); call dm.setup('fit') first")
        trials = self.train_trials
        train = np.asarray(self.split.train)
        # Shared paths: distinct tasks where there are enough, so each path is relabelled for different tasks.
        replace = not self.shared_paths or self.tasks_per_batch > len(train)
        tasks = rng.choice(train, size=self.tasks_per_batch, replace=replace)
        targets = np.repeat(tasks, self.trials_per_task)
        if self.reward_relabelling:
            paths = np.tile(np.arange(self.trials_per_task), self.tasks_per_batch) if self.shared_paths else None
            batch = mix_trials(self.family, trials, targets, rng, self.mix_prob, path_index=paths)
        else:
            by_task = {int(t): np.flatnonzero(trials.task_index == t) for t in np.unique(targets)}
            batch = trials.select(np.array([rng.choice(by_task[int(t)]) for t in targets]))
        return trials_to_batch(batch)

    # --- exact resume: batch g is drawn from (seed, g), and the next g travels in every checkpoint ----------
    def _next_train_key(self) -> int | None:
        return next_train_key(getattr(self, "trainer", None), self._resume_key)

    def state_dict(self) -> dict[str, int]:
        key = self._next_train_key()
        return {"next_train_batch": self._resume_key if key is None else key}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume_key = int(state_dict["next_train_batch"])

    def test_dataloader(self) -> DataLoader:
        """One batch per evaluated task: its first ``trials_per_task`` logged trials, as logged (no relabelling), for
        the belief's loss on them (``OfflineVariBAD.test_step``); the online evaluation itself is the evaluator's."""
        batches = [trials_to_batch(self.logged_trials(t, self.trials_per_task)) for t in self.test_task_ids]
        return DataLoader(batches, batch_size=None)  # the batches as they are, one per task

    def train_dataloader(self) -> DataLoader:
        if self._dataset is None:
            self._dataset = _TrialBatches(self)
        sampler = BatchKeySampler(self.steps_per_epoch, per_epoch=True, position=self._next_train_key)
        return DataLoader(self._dataset, sampler=sampler, batch_size=None, num_workers=0,
                          generator=loader_generator(self.seed))


def load_trials_from_storage(
    family: TaskFamily, root: str | Path, task_indices, episodes_per_trial: int
) -> TrialArrays:
    """Trials of ``task_indices`` read from datasets written by ``lit-offmeta collect`` (Minari on disk).

    Raises:
        MissingDatasetError: (a ``ValueError``) a task has no dataset; the message gives the collect command.
        ValueError: a dataset holds no complete trial, naming the file and the fix.
    """
    parts = []
    for buf in load_task_buffers(root, family.name, [int(i) for i in task_indices]):
        starts = buf.episode_starts
        episodes, metadata = [], []
        for e in range(len(starts) - 1):
            a, b = int(starts[e]), int(starts[e + 1])
            episodes.append(
                {
                    "observations": np.concatenate([buf.obs[a:b], buf.next_obs[b - 1 : b]]),
                    "actions": buf.actions[a:b],
                    "rewards": buf.rewards[a:b],
                    "terminations": buf.terminals[a:b],
                    "truncations": buf.truncations[a:b],
                }
            )
            metadata.append({"trial_index": int(buf.trial_index[e]), "episode_in_trial": int(buf.episode_in_trial[e])})
        if any(m["trial_index"] < 0 for m in metadata):
            raise ValueError(
                f"{buf.source}: episodes carry no trial structure (trial_index -1); re-collect with "
                f"episodes_per_trial={episodes_per_trial}"
            )
        trials = trials_from_episodes(
            buf.task_index, buf.task, episodes, metadata, episodes_per_trial, family.horizon, source=buf.source
        )
        if trials.num_trials == 0:
            raise ValueError(f"{buf.source}: no complete {episodes_per_trial}-episode trial")
        parts.append(trials)
    return TrialArrays.concatenate(parts)
