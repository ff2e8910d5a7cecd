"""What every lit-offmeta LightningModule does around training: stop on a non-finite update, resume exactly.

:class:`TrainingGuards` is a mixin placed before ``LightningModule`` in a module's bases:

* **Non-finite updates.** Before every optimizer step (automatic or manual optimization alike: Lightning calls
  ``on_before_optimizer_step`` for both) it checks the gradients that step would apply. A NaN or inf one raises
  :class:`NonFiniteUpdateError` naming the global step, the batch's task ids and the first bad parameters, before
  the weights change. Training stops with that error, so no checkpoint holding NaN weights is written (Lightning's
  ``ModelCheckpoint`` does not save when training raises): ``last.ckpt`` keeps the last finite state. A non-finite
  loss always shows up here, as it makes every gradient it reaches non-finite.
* **Exact resume.** Lightning checkpoints hold the weights, optimizers and loop counters but not torch's random
  state, which SAC's action noise and PEARL's latent samples draw from. The mixin stores it in every checkpoint
  and puts it back when training resumes (``on_train_start``, so loading a model to evaluate it leaves the
  caller's random state alone). With the datamodules' batch keys (:mod:`lit_offmeta.datamodules.batch_keys`), a
  run resumed from any checkpoint equals the uninterrupted run bit for bit.

Modules that override these hooks call ``super()`` in them.
"""

from __future__ import annotations

from typing import Any

import torch

RNG_KEY = "lit_offmeta_rng"


class NonFiniteUpdateError(FloatingPointError):
    """A gradient about to be applied is NaN or inf (the loss or the data it came from is not finite)."""


def batch_task_ids(batch: Any) -> list[int] | None:
    """The task ids of a training batch: a ``TaskBatch``'s ``task_ids`` or a trial batch's ``task_index``."""
    ids = getattr(batch, "task_ids", None)
    if ids is None and isinstance(batch, dict):
        ids = batch.get("task_index")
    if not isinstance(ids, torch.Tensor):
        return None
    return sorted({int(i) for i in ids.reshape(-1).tolist()})


class TrainingGuards:
    """Mixin for LightningModules: stop on non-finite gradients, carry torch's random state in checkpoints."""

    _guard_task_ids: list[int] | None = None
    _resume_rng: dict[str, Any] | None = None

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        self._guard_task_ids = batch_task_ids(batch)
        return super().on_train_batch_start(batch, batch_idx)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        # One reduction and one host sync per step. A norm is non-finite when an entry is, or (rarely) when finite
        # entries are so large that the norm overflows float32: an update of that size would be as fatal.
        if grads and not bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all()):
            names = {id(p): name for name, p in self.named_parameters()}
            bad = [
                names.get(id(p), "?")
                for group in optimizer.param_groups
                for p in group["params"]
                if p.grad is not None and not bool(torch.isfinite(p.grad).all())
            ]
            step = self.trainer.global_step
            where = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "") or "gradients whose norm overflows float32"
            raise NonFiniteUpdateError(
                f"{type(self).__name__}: non-finite gradients at global step {step} "
                f"(batch of task ids {self._guard_task_ids}) in {where}; the weights were not updated and no "
                "checkpoint of this state is written. Check that task's data for extreme values, or lower the "
                "learning rates."
            )
        super().on_before_optimizer_step(optimizer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RNG_KEY] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resume_rng = checkpoint.get(RNG_KEY)
        super().on_load_checkpoint(checkpoint)

    def on_train_start(self) -> None:
        state, self._resume_rng = self._resume_rng, None
        if state is not None:
            torch.set_rng_state(state["torch"])
            if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(state["cuda"])
        super().on_train_start()
