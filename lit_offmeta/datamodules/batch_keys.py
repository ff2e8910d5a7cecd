"""Batch keys: where a training batch sits in a run, the one input (with the seed) it is drawn from.

Training batch ``g`` of a run (``g = 0, 1, 2, ...`` over all epochs) is drawn from ``(seed, g)`` alone, so any
number of DataLoader workers gives the same batches. The datamodules save the key of the next batch to train in
every checkpoint (their ``state_dict``, which Lightning saves and restores), and their sampler starts each pass at
the key of the next batch to train. A run resumed from any checkpoint, mid-epoch or at an epoch's end, therefore
trains on exactly the batches of the uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DistributedSampler


class BatchKeySampler(DistributedSampler):
    """Yields the keys of one epoch's batches, starting at the key of the next batch to train.

    Args:
        num_batches: batches per epoch (``len`` of the sampler, what Lightning counts an epoch by).
        per_epoch: training (``True``): each pass yields ``num_batches`` keys from ``position()``; evaluation
            (``False``): every pass yields ``0 .. num_batches - 1``.
        position: returns the key of the next batch to train when a pass starts (a datamodule passes the
            trainer's count of processed training batches, :func:`next_train_key`). ``None``, or a position that
            returns ``None``: the sampler counts itself, each pass continuing where the last one's keys ended (a
            datamodule used without a trainer).
        rank, world_size: recorded for Lightning; rank handling happens in the dataset, which builds each rank's
            batch from the same key.

    Asking for the position at each pass, rather than deriving keys from Lightning's epoch counter, keeps the keys
    exact whatever Lightning does on a resume: after a mid-epoch checkpoint it runs the epoch's rest, after one
    saved at an epoch's end it may run one more batch in the old epoch before starting the next. It subclasses
    ``DistributedSampler`` only so that Lightning recognises it as distribution-aware and neither replaces nor
    wraps it; ``set_epoch`` is accepted and ignored.
    """

    def __init__(
        self,
        num_batches: int,
        per_epoch: bool,
        position: Callable[[], int | None] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        # DistributedSampler.__init__ is skipped on purpose: it wants a sized dataset and a process group.
        self.num_batches = int(num_batches)
        self.per_epoch = per_epoch
        self.position = position
        self.next_key = 0
        self.rank, self.num_replicas = rank, world_size
        self.epoch = 0
        self.shuffle = False
        self.seed = 0
        self.drop_last = False

    def __iter__(self) -> Iterator[int]:
        if not self.per_epoch:
            yield from range(self.num_batches)
            return
        position = None if self.position is None else self.position()
        start = self.next_key if position is None else int(position)
        self.next_key = start + self.num_batches
        yield from range(start, start + self.num_batches)

    def __len__(self) -> int:
        return self.num_batches


def next_train_key(trainer: Any, resume_key: int) -> int | None:
    """The key of the next training batch: the number of training batches the trainer has processed so far.

    Lightning counts a batch as processed once its ``training_step`` (and optimizer step) ran, before the
    ``on_train_batch_end`` hooks where step checkpoints are saved, and restores the count on resume; until it has,
    ``resume_key`` (the key a checkpoint held) is the larger. ``None`` without a trainer (a datamodule used by
    hand): its sampler then counts by itself.
    """
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    if loop is None:
        return None
    return max(int(loop.batch_progress.total.processed), int(resume_key))


def loader_generator(seed: int) -> torch.Generator:
    """A DataLoader's own generator: creating an iterator draws its base seed from here, not from torch's global
    stream, so starting an epoch never shifts the random numbers the model draws (exact resume needs this)."""
    return torch.Generator().manual_seed(int(seed))
