"""AdaptedPolicyWriter: ``Trainer.predict``'s adapted policies and their actions, one set of files per task.

``lit-offmeta predict --config ALGO.yaml --config configs/predict/adapted_policies.yaml --ckpt_path CKPT``
adapts the checkpointed module to each requested task's offline data (the datamodule's ``predict_ids``,
default its held-out tasks) and this callback writes, into ``output_dir``:

* ``task_<id>.policy.pt``: the adapted policy's ``state_dict`` (plain tensors; ``torch.load(path,
  weights_only=True)``). For MACAW, meta-BC and multi-task AWR it loads into the ``nn.Sequential`` of
  ``nn.Linear``/``ReLU``/.../``Tanh`` that their ``adapt`` returns (layer sizes from the tensors' shapes);
  :func:`lit_offmeta.export.export_policy` turns such a policy into TorchScript and ONNX.
* ``task_<id>.obs.npy`` and ``task_<id>.actions.npy``: the adaptation batch's observations ``[B, obs_dim]``
  and the adapted policy's deterministic actions on them ``[B, act_dim]`` (float32).

Every file is written to a temporary name and renamed into place, so none is ever half-written.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from lit_offmeta.algorithms.prediction import AdaptedPolicyPrediction
from lit_offmeta.callbacks.report import atomic_write_bytes


class AdaptedPolicyWriter(BasePredictionWriter):
    """Write each task's :class:`~lit_offmeta.algorithms.prediction.AdaptedPolicyPrediction` as it is made.

    Args:
        output_dir: the folder to write into (created if missing; files of the same tasks are replaced).
    """

    def __init__(self, output_dir: str | os.PathLike) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if not isinstance(prediction, AdaptedPolicyPrediction):
            raise ValueError(
                f"AdaptedPolicyWriter writes adapted policies, but {type(pl_module).__name__}.predict_step returned "
                f"{type(prediction).__name__}; use a module whose predict_step adapts (MACAW, MetaBC, MultiTaskAWR, "
                "OfflinePEARL)"
            )
        paths = self.write(prediction)
        print(f"task {prediction.task_id}: {', '.join(str(p) for p in paths)}")  # every rank: its own tasks

    def write(self, prediction: AdaptedPolicyPrediction) -> list[Path]:
        """Write one task's files; returns their paths."""
        stem = self.output_dir / f"task_{prediction.task_id}"
        policy = io.BytesIO()
        torch.save({k: v.detach().cpu().clone() for k, v in prediction.policy.state_dict().items()}, policy)
        return [
            atomic_write_bytes(f"{stem}.policy.pt", policy.getvalue()),
            atomic_write_bytes(f"{stem}.obs.npy", _npy(prediction.obs)),
            atomic_write_bytes(f"{stem}.actions.npy", _npy(prediction.actions)),
        ]


def _npy(tensor: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, tensor.detach().cpu().numpy().astype(np.float32))
    return buffer.getvalue()
