"""PackedTasks: many TaskBuffers in one float32 matrix, so a whole TaskBatch is two row gathers.

Sampling a TaskBatch (K tasks x (B_in + B_out) transitions x 8 fields) from separate per-task, per-field arrays
costs ~80 small copies; here every transition is one row ``[obs | action | reward | next_obs | terminal |
mc_return | bootstrap_discount]`` of a single ``[N_total, D]`` tensor, and a batch is one ``index_select`` for the
rows plus one for the bootstrap states (the ``next_obs`` of each trajectory's last row), then copies of
column blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lit_offmeta.data.batch import TRANSITION_KEYS
from lit_offmeta.data.buffer import TaskBuffer


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
        self.action_width = first.action_dim
        d, a = self.obs_dim, self.action_width
        self.columns = {
            "obs": slice(0, d),
            "actions": slice(d, d + a),
            "rewards": slice(d + a, d + a + 1),
            "next_obs": slice(d + a + 1, 2 * d + a + 1),
            "terminals": slice(2 * d + a + 1, 2 * d + a + 2),
            "mc_returns": slice(2 * d + a + 2, 2 * d + a + 3),
            "bootstrap_discounts": slice(2 * d + a + 3, 2 * d + a + 4),
        }
        lengths = np.array([len(b) for b in buffers], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        matrix = np.empty((int(self.offsets[-1]), 2 * d + a + 4), dtype=np.float32)
        bootstrap_row = np.empty(int(self.offsets[-1]), dtype=np.int64)
        for k, buf in enumerate(buffers):
            rows = slice(self.offsets[k], self.offsets[k + 1])
            targets = buf.value_targets(gamma)
            block = matrix[rows]
            block[:, self.columns["obs"]] = buf.obs
            block[:, self.columns["actions"]] = buf.actions.reshape(len(buf), -1)
            block[:, self.columns["rewards"]] = buf.rewards[:, None]
            block[:, self.columns["next_obs"]] = buf.next_obs
            block[:, self.columns["terminals"]] = buf.terminals[:, None]
            block[:, self.columns["mc_returns"]] = targets.mc_returns[:, None]
            block[:, self.columns["bootstrap_discounts"]] = targets.bootstrap_discounts[:, None]
            bootstrap_row[rows] = self.offsets[k] + targets.bootstrap_index
        self._matrix_np = matrix
        self._bootstrap_np = bootstrap_row
        self.matrix = torch.from_numpy(matrix)  # shares memory with the numpy array
        self.bootstrap_row = torch.from_numpy(bootstrap_row)

    @property
    def num_tasks(self) -> int:
        return len(self.offsets) - 1

    def gather(self, positions: Sequence[int], *local_rows: np.ndarray) -> dict[str, torch.Tensor] | tuple:
        """Transitions of several tasks stacked along a leading task axis.

        Args:
            positions: ``K`` task positions (order of the ``buffers`` given at construction).
            *local_rows: one or more ``[K, B_j]`` int arrays of rows inside each task's buffer (e.g. support
                and query rows); they are fetched together in one gather.

        Returns:
            For each ``local_rows`` argument, ``TRANSITION_KEYS`` -> contiguous tensors ``[K, B_j, ...]``
            (float32; discrete actions int64 ``[K, B_j]``); a single dict when one array was given.
        """
        blocks = [np.asarray(r, dtype=np.int64) for r in local_rows]
        k = blocks[0].shape[0]
        sizes = [b.shape[1] for b in blocks]
        rows = np.concatenate(blocks, axis=1) + self.offsets[np.asarray(positions, dtype=np.int64)][:, None]
        flat = rows.reshape(-1)
        # ndarray.take on a flat index is ~2x faster than fancy indexing with a 2-d index at these sizes.
        data = self._matrix_np.take(flat, axis=0).reshape(k, -1, self._matrix_np.shape[1])  # [K, sum B_j, D]
        boot = self._matrix_np.take(self._bootstrap_np.take(flat), axis=0)[:, self.columns["next_obs"]]
        boot = boot.reshape(k, -1, self.obs_dim)  # [K, sum B_j, obs_dim]
        outputs = []
        start = 0
        for size in sizes:
            part = data[:, start : start + size]
            out: dict[str, torch.Tensor] = {}
            for key in TRANSITION_KEYS:
                if key == "bootstrap_obs":
                    value = boot[:, start : start + size]
                else:
                    value = part[..., self.columns[key]]
                    if key not in ("obs", "next_obs", "actions"):
                        value = value[..., 0]
                    elif key == "actions" and self.discrete:
                        value = np.rint(value[..., 0]).astype(np.int64)
                out[key] = torch.from_numpy(np.ascontiguousarray(value))
            outputs.append(out)
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
