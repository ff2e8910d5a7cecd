"""Test-time adaptation of MACAW beyond Algorithm 2's meta-trained steps, one step at a time, on one task.

:class:`GradientFineTuner` holds copies of a MACAW module's value and policy parameters and steps them:

* the first ``inner.steps`` steps (the ones meta-training optimised) are Algorithm 2's: an SGD step on the value
  loss (Eq. 2), then one on the policy loss (Eq. 3) with the just-updated value function, every tensor with its
  meta-learned inner learning rate. They equal :meth:`MACAW.adapt`'s closed-form steps (a test proves it).
* every further step is an Adam step at ``extra_step_lr`` on the value loss, then one on AWR (Eq. 1) with the
  updated value, as the authors' code fine-tunes after its single offline step (docs/REFERENCE.md,
  "Defaults used for the paper runs"). The learned rates are one-step rates, and repeating them diverges on
  Cheetah-Vel (docs/MACAW.md). With ``extra_step_lr=None`` every step is a learned-rate SGD step.

It is the one implementation of those steps: ``MACAW.adapt(context, steps)`` with ``steps > inner.steps`` runs
it on the offline context, and :class:`~lit_offmeta.callbacks.OnlineFineTuning` runs it on the growing online
buffer. Each step continues from the current copies, so ``N`` steps cost ``N``, not ``N^2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from lit_offmeta.data.batch import TRANSITION_KEYS
from lit_offmeta.nn import Weights


class GradientFineTuner:
    """Continue MACAW-style adaptation of one task from the meta-parameters, one step at a time.

    Args:
        module: a MACAW-like module: ``adapt_value``, ``adapt_policy``, ``extra_adaptation_step``, ``value_lrs``,
            ``policy_lrs``, ``value``, ``policy`` and ``inner`` (its :class:`~lit_offmeta.meta.InnerLoopConfig`).
            It is read, never modified.

    Example::

        tuner = GradientFineTuner(macaw)
        tuner.step(offline_batch)          # == macaw.adapt(offline_batch, steps=1)
        for batch in online_batches:
            tuner.step(batch)
        policy = tuner.policy()            # plain nn.Sequential: obs -> mean action
    """

    REQUIRED = ("adapt_value", "adapt_policy", "extra_adaptation_step", "value_lrs", "policy_lrs", "value",
                "policy", "inner")

    def __init__(self, module: nn.Module) -> None:
        missing = [name for name in self.REQUIRED if not hasattr(module, name)]
        if missing:
            raise ValueError(
                f"GradientFineTuner: {type(module).__name__} lacks {missing}; fine-tuning needs a gradient-based "
                "module with MACAW's adapt_value/adapt_policy interface"
            )
        self.module = module
        self.meta_steps = int(module.inner.steps)
        self.extra_lr = module.hparams.get("extra_step_lr")
        # outside inference mode (Lightning's test loop runs in it): the copies must take gradients
        with torch.inference_mode(False), torch.no_grad():
            self.value_params = {k: p.detach().clone().requires_grad_() for k, p in module.value.named_parameters()}
            self.policy_params = {k: p.detach().clone().requires_grad_() for k, p in module.policy.named_parameters()}
            # the learned rates are constants here: fine-tuning adapts the networks, never the meta-learned rates
            self.value_lrs = {k: v.detach().clone() for k, v in module.value_lrs().items()}
            self.policy_lrs = {k: v.detach().clone() for k, v in module.policy_lrs().items()}
        self.num_steps = 0
        self._optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer] | None = None

    @property
    def device(self) -> torch.device:
        return next(iter(self.value_params.values())).device

    def step(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """One adaptation step on ``batch`` (``TRANSITION_KEYS`` -> one task's ``[B, ...]``).

        Returns:
            ``{"loss_value": L_V before the step, "loss_policy": L_pi before the policy step}``.
        """
        with torch.inference_mode(False):
            task = {k: torch.as_tensor(batch[k], device=self.device, dtype=torch.float32).clone().unsqueeze(0)
                    for k in TRANSITION_KEYS}
        return self.step_task(task)

    def step_task(self, task: dict[str, Tensor]) -> dict[str, float]:
        """:meth:`step` on data already in the task-batched layout ``[1, B, ...]`` on :attr:`device`."""
        module = self.module
        with torch.inference_mode(False), torch.enable_grad():
            if self.extra_lr is not None and self.num_steps >= self.meta_steps:
                if self._optimizers is None:
                    self._optimizers = (torch.optim.Adam(self.value_params.values(), lr=self.extra_lr),
                                        torch.optim.Adam(self.policy_params.values(), lr=self.extra_lr))
                loss_value, loss_policy = module.extra_adaptation_step(task, self.value_params, self.policy_params,
                                                                       *self._optimizers)
            else:
                # Alg. 2, l. 5: phi <- phi - eta_1 grad L_V(phi, D)
                loss_value = _sgd(self.value_params, self.value_lrs,
                                  module.adapt_value(task, 1, True, self.value_params)[1][0].sum())
                # Alg. 2, l. 6: theta <- theta - alpha_1 grad L_pi(theta, phi_{t+1}, D), with the updated value
                updated = [tuple(t.detach() for t in layer) for layer in self.weights()[0]]
                loss_policy = _sgd(self.policy_params, self.policy_lrs,
                                   module.adapt_policy(task, [updated], 1, True, self.policy_params)[1][0].sum())
        self.num_steps += 1
        return {"loss_value": loss_value, "loss_policy": loss_policy}

    def weights(self) -> tuple[Weights, Weights]:
        """The current ``(value, policy)`` effective weights, task-batched (``K = 1``)."""
        return (_batched(self.module.value.effective_weights(self.value_params)),
                _batched(self.module.policy.effective_weights(self.policy_params)))

    def policy(self) -> nn.Sequential:
        """The current policy as a plain mean-action ``nn.Sequential`` (see :meth:`MACAW.adapt`)."""
        with torch.no_grad():
            return self.module.policy.materialise(
                [(w.detach(), b.detach()) for w, b in self.module.policy.effective_weights(self.policy_params)])



def _batched(weights: Weights) -> Weights:
    return [type(layer)(*(t.unsqueeze(0) for t in layer)) for layer in weights]


def _sgd(params: dict[str, Tensor], lrs: dict[str, Tensor], loss: Tensor) -> float:
    """One SGD step with per-tensor ``lrs`` on the leaf tensors ``params``; returns the loss before it."""
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True, materialize_grads=True)
    with torch.no_grad():
        for (name, p), g in zip(params.items(), grads):
            p.sub_(lrs[name] * g)
    return float(loss.detach())
