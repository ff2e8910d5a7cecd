"""PackedTasks: gather whole TaskBatches from per-task transition blocks with a handful of ``take`` calls.

Sampling a TaskBatch (K tasks x (B_in + B_out) transitions x 8 fields) field by field costs ~80 small copies.
Here each task's transitions are one C-contiguous float32 block ``[obs | action | reward | next_obs |
terminal | truncation]`` (the buffer's own storage, also the on-disk cache layout, so nothing is copied at
setup), and the Monte-Carlo targets for the chosen ``gamma`` sit in two small per-task arrays. A batch is, per
task, one ``take`` of rows into a preallocated ``[K, B, D]`` array, one from a small per-task table of bootstrap
states (the ``next_obs`` of each trajectory's last row) and two for the targets; then each field is one contiguous copy.
Blocks may be memory-mapped (``load_task_buffers(..., memory_map=True)``); their pages are then released every
:data:`RELEASE_EVERY` gathers.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence

import numpy as np
import torch

from lit_offmeta.data.batch import TRANSITION_KEYS
from lit_offmeta.data.buffer import TaskBuffer, ValueTargets, block_columns, mapped_region, release_pages

RELEASE_EVERY = 4
"""Memory-mapped blocks drop their resident pages every this many gathers. Each sampled row maps up to 64 KB
around it (the kernel's fault-around), so this bounds what random sampling over a dataset larger than RAM
keeps resident: about 4 x 5 x 512 x 64 KB = 650 MB for MACAW's K=5 x 512 rows. The pages stay in the OS page
cache; releasing them costs a page-table walk, and re-mapping them is a minor fault each."""


class PackedTasks:
    """Read-only, gather-friendly view of several task buffers (Monte-Carlo targets for one ``gamma``).

    Args:
        buffers: the tasks, all with the same observation size and action layout.
        gamma: discount of the Monte-Carlo returns.

    Raises:
        ValueError: when the buffers disagree in observation size or action layout (naming both tasks).
    """

    def __init__(self, buffers: Sequence[TaskBuffer], gamma: float) -> None:
        if not buffers:
            raise ValueError("PackedTasks needs at least one task buffer")
        check_consistent_dims(buffers)
        first = buffers[0]
        self.discrete = first.actions.ndim == 1
        self.obs_dim = first.obs_dim
        self.columns = block_columns(first.obs_dim, first.action_dim)
        self.blocks = [buf.transition_block() for buf in buffers]
        targets = [buf.value_targets(gamma) for buf in buffers]
        # [N, 2] float32: Monte-Carlo return and bootstrap discount, gathered together.
        self.targets = [np.stack([t.mc_returns, t.bootstrap_discounts], axis=1) for t in targets]
        for buf, stacked, t in zip(buffers, self.targets, targets):  # one copy: the buffer's cache views ours
            buf._targets[float(gamma)] = ValueTargets(stacked[:, 0], t.bootstrap_index, stacked[:, 1])
        # The bootstrap state of a row is the next_obs of its trajectory's last row: one small [E, obs] table per
        # task, so a batch reads no second random row per sampled row (from disk, when the block is mapped).
        self.episode_starts = [np.asarray(buf.episode_starts, dtype=np.int64) for buf in buffers]
        self.lengths = np.array([len(b) for b in buffers], dtype=np.int64)
        self.mapped = [block for block in self.blocks if mapped_region(block) is not None]
        for block in self.mapped:  # random rows: no read-ahead (the kernel still maps 64 KB around each fault)
            release_pages(block)
            mapped_region(block).madvise(mmap.MADV_RANDOM)
        self.end_obs = []
        for block, starts in zip(self.blocks, self.episode_starts):
            self.end_obs.append(np.ascontiguousarray(block[starts[1:] - 1][:, self.columns["next_obs"]]))
            release_pages(block)  # one block at a time: the rows' pages never add up over tasks
        self.gathers = 0

    @property
    def num_tasks(self) -> int:
        return len(self.blocks)

    def gather(self, positions: Sequence[int], *local_rows: np.ndarray) -> dict[str, torch.Tensor] | tuple:
        """Transitions of several tasks stacked along a leading task axis.

        Args:
            positions: ``K`` task positions (order of the ``buffers`` given at construction).
            *local_rows: one or more ``[K, B_j]`` int arrays of rows inside each task's buffer (e.g. support
                and query rows); they are fetched together.

        Returns:
            For each ``local_rows`` argument, ``TRANSITION_KEYS`` -> contiguous tensors ``[K, B_j, ...]``
            (float32; discrete actions int64 ``[K, B_j]``); a single dict when one array was given.
        """
        self.gathers += 1
        if self.mapped and self.gathers % RELEASE_EVERY == 0:
            for block in self.mapped:
                release_pages(block)
        blocks = [np.asarray(r, dtype=np.int64) for r in local_rows]
        rows = np.concatenate(blocks, axis=1)  # [K, B]
        k, b = rows.shape
        width = self.blocks[0].shape[1]
        data = np.empty((k, b, width), dtype=np.float32)
        targets = np.empty((k, b, 2), dtype=np.float32)
        boot = np.empty((k, b, self.obs_dim), dtype=np.float32)
        for j, pos in enumerate(positions):
            block = self.blocks[pos]
            block.take(rows[j], axis=0, out=data[j])
            self.targets[pos].take(rows[j], axis=0, out=targets[j])
            episode = np.searchsorted(self.episode_starts[pos], rows[j], side="right") - 1
            self.end_obs[pos].take(episode, axis=0, out=boot[j])
        fields = {
            "obs": data[..., self.columns["obs"]],
            "actions": data[..., self.columns["actions"]],
            "rewards": data[..., self.columns["rewards"].start],
            "next_obs": data[..., self.columns["next_obs"]],
            "terminals": data[..., self.columns["terminals"].start],
            "mc_returns": targets[..., 0],
            "bootstrap_obs": boot,
            "bootstrap_discounts": targets[..., 1],
        }
        if self.discrete:
            fields["actions"] = np.rint(fields["actions"][..., 0]).astype(np.int64)
        outputs, start = [], 0
        for size in (blk.shape[1] for blk in blocks):
            outputs.append(
                {
                    key: torch.from_numpy(np.ascontiguousarray(fields[key][:, start : start + size]))
                    for key in TRANSITION_KEYS
                }
            )
            start += size
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def check_consistent_dims(buffers: Sequence[TaskBuffer]) -> None:
    """Raise ``ValueError`` if the buffers do not share observation size and action layout."""
    first = buffers[0]
    for buf in buffers[1:]:
        if buf.obs_dim != first.obs_dim:
            raise ValueError(
                f"inconsistent observation sizes: task {first.task_index} ({first.source}) has obs_dim "
                f"{first.obs_dim}, task {buf.task_index} ({buf.source}) has {buf.obs_dim}; all tasks of a "
                "family must share one observation space (were they collected for different families?)"
            )
        if buf.actions.ndim != first.actions.ndim or buf.action_dim != first.action_dim:
            raise ValueError(
                f"inconsistent action layouts: task {first.task_index} ({first.source}) has actions "
                f"{first.actions.shape[1:] or 'discrete'}, task {buf.task_index} ({buf.source}) has "
                f"{buf.actions.shape[1:] or 'discrete'}; all tasks must share one action space"
            )
