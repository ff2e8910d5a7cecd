"""``Trainer.predict`` for offline meta-RL: adapt to one task's offline data, return the adapted policy.

A predict batch is one task's adaptation batch (:class:`~lit_offmeta.datamodules.AdaptationBatch`, from
:meth:`~lit_offmeta.datamodules.OfflineMetaDataModule.predict_dataloader`: any object with ``task_id`` and a
``context`` dict will do). A module's ``predict_step`` hands it to :func:`predict_adapted_policy`, which adapts
with the module's own ``adapt`` and returns an :class:`AdaptedPolicyPrediction`: the adapted policy and its
deterministic actions on the batch's observations. ``Trainer.predict`` returns one per task;
:class:`~lit_offmeta.callbacks.AdaptedPolicyWriter` writes them to disk.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from lit_offmeta.policy import RolloutPolicy


class AdaptedPolicyPrediction(NamedTuple):
    """One task's prediction.

    Attributes:
        task_id: the task adapted to.
        policy: the adapted policy on the CPU in eval mode: ``obs [N, obs_dim] -> action [N, act_dim]``. A plain
            ``nn.Sequential`` for MACAW, meta-BC and multi-task AWR; a ``PearlRolloutPolicy`` (actor, encoder and
            offline task belief) for offline PEARL. ``policy.state_dict()`` holds plain tensors.
        obs: the adaptation batch's observations ``[B, obs_dim]`` (CPU).
        actions: the adapted policy's deterministic actions on ``obs``, ``[B, act_dim]`` (CPU).
    """

    task_id: int
    policy: nn.Module
    obs: Tensor
    actions: Tensor


def predict_adapted_policy(module: Any, batch: Any) -> AdaptedPolicyPrediction:
    """Adapt ``module`` (its ``adapt(context)``, default steps) to ``batch.context``; act on its observations.

    The policy outlives ``Trainer.predict``, which runs in inference mode; it is built outside it, so it is an
    ordinary module that can be fine-tuned or exported (:func:`lit_offmeta.export.export_policy`).

    Raises:
        ValueError: when ``batch`` is not one task's adaptation batch, or ``adapt`` rejects its context.
    """
    context = getattr(batch, "context", None)
    if not isinstance(context, dict) or "obs" not in context or not hasattr(batch, "task_id"):
        raise ValueError(
            f"{type(module).__name__}.predict_step needs one task's adaptation batch (task_id, context with 'obs'), "
            f"got {type(batch).__name__}; use OfflineMetaDataModule's predict_dataloader"
        )
    with torch.inference_mode(False):
        context = {k: torch.as_tensor(v).clone() for k, v in context.items()}  # normal tensors, not inference ones
        policy = module.adapt(context).cpu().eval()
        obs = context["obs"].to("cpu", torch.float32)
        with torch.no_grad():
            if isinstance(policy, RolloutPolicy):  # a belief policy: one fresh trial per observation
                policy.reset(obs.shape[0])
            actions = policy(obs)
    return AdaptedPolicyPrediction(int(batch.task_id), policy, obs, actions.detach())
