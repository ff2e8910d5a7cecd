"""What the gradient-based modules share (MACAW, meta-BC, multi-task AWR): the network and inner-loop configs,
the size checks against the datamodule, one task's context on the module's device, and the meta-gradient under DDP.

:class:`GradientMetaModule` is their base class (after :class:`~lit_offmeta.algorithms.guards.TrainingGuards`).
The checks are functions too, for modules that are not gradient-based (offline PEARL).

Why the meta-gradient is reduced by hand under DDP: with the second-order inner loop, DDP's reducer gave MACAW's
learned lambda a wrong gradient (1.9x the true one in ``tests/test_macaw_ddp.py``). :meth:`meta_backward` switches
the reducer off (``no_sync``) and SUMS every gradient over the ranks with one flat all-reduce, so an update equals
one process seeing every rank's tasks (Algorithm 1 sums over tasks).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from lit_offmeta.algorithms.guards import TrainingGuards
from lit_offmeta.algorithms.prediction import AdaptedPolicyPrediction, predict_adapted_policy
from lit_offmeta.data.batch import TaskBatch


class GradientMetaModule(TrainingGuards, LightningModule):
    """Base of the modules whose policy is a MACAW network adapted (or fine-tuned) by gradient steps.

    Subclasses save ``obs_dim`` and ``action_dim`` as hyperparameters; ``setup`` checks them against the
    datamodule's, and refuses data with discrete actions.
    """

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        check_sizes_against_datamodule(self, datamodule, self.hparams.obs_dim, self.hparams.action_dim)

    def meta_backward(self, loss: Tensor) -> None:
        """``manual_backward(loss)`` with DDP's reducer off, then the gradients summed over ranks (see the module
        docstring); outside DDP a plain backward."""
        with no_ddp_sync(self):
            self.manual_backward(loss)
        all_reduce_sum_grads(self)

    def predict_step(self, batch: Any, batch_idx: int = 0) -> AdaptedPolicyPrediction:
        """``Trainer.predict``: adapt (``adapt``, default steps) to one task's
        :class:`~lit_offmeta.datamodules.AdaptationBatch`; return the adapted policy and its actions."""
        return predict_adapted_policy(self, batch)

    def validation_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: TaskBatch, stage: str) -> None:
        """Log ``{stage}/loss_*_pre`` and ``_post``: the held-out tasks' query losses before and after adaptation
        on their support sets. Each subclass defines it for its own losses."""
        raise NotImplementedError(f"{type(self).__name__} must define _evaluate(batch, stage)")

    def single_task(self, context: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Tensor]:
        """One task's ``context[k]`` (``[B, ...]``) for ``k`` in ``keys`` as float32 tensors ``[1, B, ...]`` on this
        module's device: the task-batched layout of the inner loop. Fresh copies, so they work outside inference
        mode (Lightning's test and predict loops run in it)."""
        with torch.inference_mode(False):
            return {k: torch.as_tensor(context[k], dtype=torch.float32, device=self.device).clone().unsqueeze(0)
                    for k in keys}


def check_sizes_against_datamodule(module: LightningModule, datamodule: Any, obs_dim: int, action_dim: int) -> None:
    """Raise a clear ``ValueError`` when the module's sizes disagree with the datamodule's (if it has them),
    or when the data has discrete actions (every module here but BOReL is for continuous control)."""
    if datamodule is None:
        return
    family = getattr(datamodule, "family", None)
    if getattr(family, "discrete_actions", False) or getattr(datamodule, "discrete_actions", False):
        name = getattr(family, "name", "?")
        raise ValueError(f"{type(module).__name__} needs continuous actions; family {name!r} has discrete actions")
    for name, mine in (("obs_dim", obs_dim), ("action_dim", action_dim)):
        theirs = getattr(datamodule, name, None)
        if theirs is not None and int(theirs) != int(mine):
            raise ValueError(
                f"{type(module).__name__}: model.{name}={mine} but the datamodule's family has {name}={theirs}; "
                f"set `model.init_args.{name}: {theirs}` in the config"
            )


def check_single_task_context(context: Any, keys: Iterable[str], obs_dim: int, action_dim: int, who: str) -> None:
    """``context`` must be a dict holding ``keys``, with one task's ``obs [B, obs_dim]`` and
    ``actions [B, action_dim]``; the ``ValueError`` names ``who`` (e.g. ``"MACAW.adapt"``) and what is wrong."""
    keys = list(keys)
    missing = [k for k in keys if not isinstance(context, Mapping) or k not in context]
    if missing:
        got = sorted(context) if isinstance(context, Mapping) else type(context).__name__
        needed = " and ".join([", ".join(map(repr, keys[:-1])), repr(keys[-1])] if len(keys) > 1 else map(repr, keys))
        raise ValueError(f"{who}: context lacks key(s) {missing}; it needs {needed} of one task, got {got}")
    obs, actions = torch.as_tensor(context["obs"]), torch.as_tensor(context["actions"])
    if obs.dim() != 2 or obs.shape[-1] != obs_dim:
        raise ValueError(f"{who}: context['obs'] must be [B, {obs_dim}] (one task), got {tuple(obs.shape)}")
    if tuple(actions.shape) != (obs.shape[0], action_dim):
        raise ValueError(f"{who}: context['actions'] must be [B, {action_dim}], got {tuple(actions.shape)}")


def no_ddp_sync(module: LightningModule):
    """``no_sync()`` of the DDP wrapper around ``module`` when there is one, else a no-op context."""
    wrapper = getattr(module._trainer, "model", None) if module._trainer is not None else None
    if isinstance(wrapper, DistributedDataParallel):
        return wrapper.no_sync()
    return contextlib.nullcontext()


def all_reduce_sum_grads(module: nn.Module) -> None:
    """Sum every parameter's gradient over all ranks (one flat all-reduce); no-op without a process group."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    if torch.distributed.get_world_size() == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
