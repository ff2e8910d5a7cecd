"""How evaluation work is split across DDP ranks and merged back (no rank evaluates a task twice)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.distributed as dist


def shard_tasks(task_ids: Sequence[int], rank: int, world_size: int) -> list[int]:
    """The tasks rank ``rank`` evaluates: every ``world_size``-th task starting at ``rank``.

    Each task lands on exactly one rank, and the shards differ in size by at most one, so ranks finish at
    about the same time. A rank may get no task when there are fewer tasks than ranks.

    Raises:
        ValueError: ``world_size < 1`` or ``rank`` outside ``[0, world_size)``.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return [int(t) for t in list(task_ids)[rank::world_size]]


def gather_objects(obj: Any, world_size: int) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` without a process group)."""
    if world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def merge_task_results(shards: Sequence[dict[int, Any]], task_ids: Sequence[int]) -> dict[int, Any]:
    """Merge per-rank ``{task_id: result}`` dicts back into ``task_ids`` order.

    Raises:
        RuntimeError: a task was evaluated on two ranks or on none (a sharding bug, never silent).
    """
    merged: dict[int, Any] = {}
    for shard in shards:
        for tid, value in shard.items():
            if tid in merged:
                raise RuntimeError(f"task {tid} was evaluated on more than one rank")
            merged[tid] = value
    missing = [t for t in task_ids if t not in merged]
    if missing:
        raise RuntimeError(f"tasks {missing} were evaluated on no rank")
    return {int(t): merged[int(t)] for t in task_ids}
