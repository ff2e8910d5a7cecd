"""Collection across processes and machines, launched by ``torchrun``.

``torchrun --nproc_per_node 8 -m lit_offmeta.cli collect --family cheetah_vel --preset paper --out /shared/data``
runs one collector per process; on several machines add ``--nnodes N --node_rank R --rdzv_endpoint HOST:PORT``
(``--out`` must then be a folder every machine sees). Rank ``r`` of ``W`` takes tasks ``r, r + W, ...`` of the
tasks still to collect. Per-task agents (goal seeker, Q-learning, scripted experts) seed each task on its own
(:func:`lit_offmeta.collect.runner.task_seed`); the task-conditioned SAC learns once, on rank 0 (it is one agent
over all tasks), and every rank then records its tasks from the saved snapshots, whose episodes are seeded per
(seed, task, snapshot, episode) (:mod:`lit_offmeta.collect.recorder`). Every dataset is therefore the one a
single process writes, each written atomically by the rank that owns it; rank 0 writes the manifest.

The ranks meet through ``torch.distributed`` (gloo, CPU only) at three barriers: after rank 0 has checked the
output folder and written the manifest, after the SAC has learned, and at the end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch.distributed as dist

BARRIER_TIMEOUT = timedelta(days=7)
"""How long a rank waits at a barrier: the other ranks may be waiting for rank 0 to learn for days."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the collectors."""

    rank: int = 0
    world_size: int = 1

    def share(self, tasks: list[int]) -> list[int]:
        """This rank's tasks: every ``world_size``-th, starting at ``rank``."""
        return tasks[self.rank :: self.world_size]

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def launched_ranks() -> Ranks:
    """The ranks ``torchrun`` set up (``WORLD_SIZE`` and ``RANK`` in the environment), joining its process group;
    a single process (no ``torchrun``) is rank 0 of 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Ranks()
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    return Ranks(dist.get_rank(), dist.get_world_size())
