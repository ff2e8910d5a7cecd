r"""MACAW: Meta-Actor-Critic with Advantage Weighting (Mitchell et al. 2021, arXiv:2008.06043).

``training_step`` is Algorithm 1 for a task minibatch, ``adapt`` is Algorithm 2. The inner loop is the
functional, task-batched one of :mod:`lit_offmeta.meta` (closed-form weight-transform update by default);
the losses are the pure functions of :mod:`lit_offmeta.algorithms.losses`.

Where we knowingly differ from the paper or the reference code (see docs/MACAW.md):

* Several inner steps follow Algorithm 2 in training too: policy step ``t`` uses the value function after value
  step ``t + 1`` (the paper writes one step; with the default single step this is identical).
* Value targets bootstrap where a stored trajectory was cut (``TaskBatch``'s ``bootstrap_*`` fields). Inner
  loop: with the value parameters of the current step, detached. Outer loop: with a slow target, the value
  network's effective weights averaged as :math:`\bar W \leftarrow 0.9 \bar W + 0.1 W` after every
  meta-update (``target_update_rate``), detached. (Averaging effective weights instead of the generator
  parameters avoids a second copy of the generators; the reference's exact target rule is not in the paper.)
* Learned rates are initialised with the exact inverse softplus, so ``softplus(raw) == inner_lr`` at start.
* Test-time steps beyond the ``inner.steps`` that meta-training optimised (``adapt(context, steps)`` with
  ``steps > inner.steps``) are Adam steps at ``extra_step_lr`` on the value loss (Eq. 2) and the AWR loss
  (Eq. 1), as the reference code fine-tunes after its single offline step; the learned rates are one-step rates
  and diverge when repeated on Cheetah-Vel (docs/MACAW.md). ``extra_step_lr=None`` repeats Algorithm 2's
  learned-rate SGD step instead. Both are :class:`~lit_offmeta.algorithms.finetuning.GradientFineTuner`.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import vmap
from torch.nn import functional as F

from lit_offmeta.algorithms.base import GradientMetaModule, check_single_task_context
from lit_offmeta.algorithms.finetuning import GradientFineTuner
from lit_offmeta.algorithms.losses import (
    advantage_regression_loss,
    awr_loss,
    awr_weights,
    inner_policy_loss,
    mc_value_loss,
    mc_value_target,
)
from lit_offmeta.data.batch import TRANSITION_KEYS, TaskBatch
from lit_offmeta.meta import InnerLearningRates, InnerLoopConfig, adapt, inverse_softplus
from lit_offmeta.nn import NetConfig, PolicyNetwork, ValueNetwork, Weights, gaussian_log_prob
from lit_offmeta.nn.polyak import polyak_update

_value = ValueNetwork.value_from_weights  # task-batched weights [K, ...] and data [K, B, ...]: baddbmm, no vmap


class MACAW(GradientMetaModule):
    """Offline meta-RL by MAML on an advantage-weighted actor-critic (Algorithms 1 and 2).

    Args:
        obs_dim: observation size (must match the datamodule's ``obs_dim``; checked in ``setup``).
        action_dim: action size (continuous actions only).
        net: the policy and value networks (:class:`~lit_offmeta.nn.NetConfig`: width, depth, layer type,
            equal-parameter ablation, weight-transform latent size; paper: 100, 3, weight transform, 100).
        inner: the inner loop (:class:`~lit_offmeta.meta.InnerLoopConfig`: meta-training and test steps, first
            order, learned rates and their outer learning rate, computation mode; paper: one step, learned rates).
        inner_lr_value: initial inner learning rate :math:`\\eta_1` of every value tensor (paper: 1e-3).
        inner_lr_policy: initial inner learning rate :math:`\\alpha_1` of every policy tensor (paper: 1e-3).
        lr_value: outer Adam learning rate :math:`\\eta_2` (paper: 1e-5).
        lr_policy: outer Adam learning rate :math:`\\alpha_2` (paper: 1e-4).
        lambda_init: initial advantage-regression coefficient :math:`\\lambda` (reference: 0.01).
        enriched_policy_loss: inner policy loss AWR + lambda ADV (Eq. 3); off = MAML+AWR ablation (Eq. 1).
        temperature: AWR temperature :math:`T` (paper: 1).
        max_weight: AWR weight clip (paper: 20).
        bootstrap: bootstrap value targets where trajectories were cut (off: pure Monte-Carlo returns).
        target_update_rate: slow value target rate, :math:`\\bar\\phi \\leftarrow (1-\\tau)\\bar\\phi + \\tau\\phi`.
        extra_step_lr: Adam learning rate of the test-time steps beyond ``inner.steps`` (the reference's
            fine-tuning rate: 1e-5). ``None``: every step is Algorithm 2's SGD step with the learned rates, which
            were meta-trained for ``inner.steps`` steps only and can diverge (with a warning).

    Example::

        model = MACAW(obs_dim=20, action_dim=6, net=NetConfig(width=100))
        trainer = Trainer(max_steps=1000)
        trainer.fit(model, datamodule=OfflineMetaDataModule(family="cheetah_vel", data_dir="data/"))
        policy = model.adapt(context)  # plain nn.Sequential: obs [N, 20] -> mean action [N, 6]
    """

    TEST_TIME_STEP_SIZES = ("extra_step_lr",)
    """The hyperparameters that set the size of its test-time steps (``lit-offmeta benchmark``'s
    ``step_size_grid`` validates them on training tasks)."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        net: NetConfig = NetConfig(),
        inner: InnerLoopConfig = InnerLoopConfig(),
        inner_lr_value: float = 1e-3,
        inner_lr_policy: float = 1e-3,
        lr_value: float = 1e-5,
        lr_policy: float = 1e-4,
        lambda_init: float = 0.01,
        enriched_policy_loss: bool = True,
        temperature: float = 1.0,
        max_weight: float = 20.0,
        bootstrap: bool = True,
        target_update_rate: float = 0.1,
        extra_step_lr: float | None = 1e-5,
    ) -> None:
        super().__init__()
        self.net_config, self.inner_config = NetConfig.of(net), InnerLoopConfig.of(inner)
        _check_args(locals())
        net, inner = self.net_config.as_dict(), self.inner_config.as_dict()  # plain data in checkpoints
        self.save_hyperparameters()
        self.automatic_optimization = False
        cfg = self.net_config
        policy_width, value_width = cfg.widths(obs_dim, action_dim)
        self.policy = PolicyNetwork(obs_dim, action_dim, policy_width, cfg.depth, cfg.layer, cfg.latent_size)
        self.value = ValueNetwork(obs_dim, value_width, cfg.depth, cfg.layer, cfg.latent_size)
        # The slow target is a plain-linear MLP holding the value network's EFFECTIVE weights: the same function,
        # Polyak-averaged in weight space, without a copy of the ~1M-entry generators to average every step.
        self.value_target = ValueNetwork(obs_dim, value_width, cfg.depth, "linear").requires_grad_(False)
        self.update_value_target(rate=1.0)
        self.policy_lrs = InnerLearningRates(dict(self.policy.named_parameters()), inner_lr_policy)
        self.value_lrs = InnerLearningRates(dict(self.value.named_parameters()), inner_lr_value)
        self.raw_lambda = nn.Parameter(torch.tensor(inverse_softplus(lambda_init)))
        if not self.inner_config.learn_lrs:
            for p in self.meta_lr_parameters():
                p.requires_grad_(False)

    @property
    def inner(self) -> InnerLoopConfig:
        return self.inner_config

    # --- Algorithm 1 ------------------------------------------------------------------------------------------
    def training_step(self, batch: TaskBatch, batch_idx: int) -> Tensor:
        """One meta-update on a minibatch of K tasks (Algorithm 1, lines 5-10)."""
        support, query = batch.support, batch.query  # l. 6: disjoint D_tr, D_ts per task; [K, B, ...]
        steps, first_order = self.inner.steps, self.inner.first_order
        value_trajectory, inner_value = self.adapt_value(support, steps, first_order)  # l. 7: phi_i
        policy_weights, inner_policy = self.adapt_policy(support, value_trajectory, steps, first_order)  # l. 8
        loss_value, loss_policy, weights = self.outer_losses(policy_weights, value_trajectory[-1], query)  # l. 9-10
        self.meta_update(loss_value + loss_policy)
        if self._log_due():
            self._log_train(loss_value, loss_policy, inner_value, inner_policy, weights, batch.num_tasks)
        return loss_value + loss_policy

    def adapt_value(self, support: dict[str, Tensor], steps: int, first_order: bool,
                    params: dict[str, Tensor] | None = None) -> tuple[list[Weights], list]:
        r"""Inner value steps :math:`\phi_i = \phi - \eta_1 \nabla_\phi \mathcal{L}_V(\phi, D^{tr}_i)` (Eq. 2).

        ``params`` (default: the value network's own) are the parameters to step from.

        Returns:
            ``(trajectory, inner_losses)`` from :func:`lit_offmeta.meta.adapt`.
        """

        def loss_fn(weights: Weights, data: dict[str, Tensor], step: int) -> Tensor:  # [K] per-task losses
            return vmap(mc_value_loss)(_value(weights, data["obs"]), self.value_targets(data, weights))

        data = {k: support[k] for k in ("obs", "mc_returns", "bootstrap_obs", "bootstrap_discounts")}
        params = dict(self.value.named_parameters()) if params is None else params
        return adapt(self.value, params, self.value_lrs(), loss_fn, data, steps, first_order,
                     self.inner.mode, task_batched=True)

    def adapt_policy(self, support: dict[str, Tensor], value_trajectory: list[Weights], steps: int,
                     first_order: bool, params: dict[str, Tensor] | None = None) -> tuple[Weights, list]:
        r"""Inner policy steps :math:`\theta_i = \theta - \alpha_1 \nabla_\theta \mathcal{L}_\pi(\theta, \phi_i,
        D^{tr}_i)`, with :math:`\mathcal{L}_\pi` = AWR + :math:`\lambda` ADV (Eq. 3) or AWR alone.

        Step ``t`` uses the advantages of the value function after value step ``t + 1`` (Algorithm 2).
        """
        advantages = torch.stack([self.advantages(w, support) for w in value_trajectory], dim=1)  # [K, steps, B]
        lam = self.lam
        hp = self.hparams

        def loss_fn(weights: Weights, data: dict[str, Tensor], step: int) -> Tensor:  # [K] per-task losses
            adv = data["advantages"][:, step]
            mean, predicted = PolicyNetwork.mean_and_advantage_from_weights(
                weights, data["obs"], data["actions"], self.policy.depth)
            awr = vmap(awr_loss, in_dims=(0, 0, None, None))(gaussian_log_prob(mean, data["actions"]), adv,
                                                             hp.temperature, hp.max_weight)
            if not hp.enriched_policy_loss:
                return awr
            return inner_policy_loss(awr, vmap(advantage_regression_loss)(predicted, adv), lam)

        data = {"obs": support["obs"], "actions": support["actions"], "advantages": advantages}
        params = dict(self.policy.named_parameters()) if params is None else params
        trajectory, losses = adapt(self.policy, params, self.policy_lrs(), loss_fn, data, steps, first_order,
                                   self.inner.mode, task_batched=True)
        return trajectory[-1], losses

    def value_targets(self, data: dict[str, Tensor], weights: Weights) -> Tensor:
        """The value targets ``[K, B]``, detached: Monte-Carlo returns, bootstrapped with ``weights`` (per task,
        or shared: the slow target) where a stored trajectory was cut; pure returns without ``bootstrap``."""
        with torch.no_grad():
            if not self.hparams.bootstrap:
                bootstrap = torch.zeros_like(data["mc_returns"])
            elif weights[0][0].dim() == 2:  # shared weights (the slow target): same network for every task
                bootstrap = ValueNetwork.value_from_weights(weights, data["bootstrap_obs"])
            else:
                bootstrap = _value(weights, data["bootstrap_obs"])
            return mc_value_target(data["mc_returns"], data["bootstrap_discounts"], bootstrap)

    def advantages(self, value_weights: Weights, data: dict[str, Tensor], target_weights: Weights | None = None
                   ) -> Tensor:
        r""":math:`R_D(s, a) - V_{\phi_i}(s)`, ``[K, B]``, detached (a constant for the policy).

        The bootstrap value at cuts comes from ``target_weights`` (default: ``value_weights``).
        """
        with torch.no_grad():
            values = _value(value_weights, data["obs"])
            return self.value_targets(data, target_weights or value_weights) - values

    def outer_losses(self, policy_weights: Weights, value_weights: Weights, query: dict[str, Tensor],
                     target_weights: Weights | None = None) -> tuple[Tensor, Tensor, Tensor]:
        r"""Algorithm 1, lines 9-10: :math:`\sum_i \mathcal{L}_V(\phi_i, D^{ts}_i)` (Eq. 2) and
        :math:`\sum_i \mathcal{L}^{AWR}(\theta_i, \phi_i, D^{ts}_i)` (Eq. 1), through the adapted weights.

        Targets bootstrap with ``target_weights`` (default: the slow target's). The AWR advantages are those
        (detached) targets minus the adapted values, which the value loss computes anyway, so one value pass
        over the query set serves both losses.

        Returns:
            ``(loss_value, loss_policy, awr_weights [K, B])``.
        """
        target_weights = self.value_target.current_weights() if target_weights is None else target_weights
        targets = self.value_targets(query, target_weights)
        values = _value(value_weights, query["obs"])
        loss_value = vmap(mc_value_loss)(values, targets).sum()
        loss_policy, weights = self.awr_policy_loss(policy_weights, query, targets - values.detach())
        return loss_value, loss_policy, weights

    def awr_policy_loss(self, policy_weights: Weights, data: dict[str, Tensor], advantages: Tensor
                        ) -> tuple[Tensor, Tensor]:
        """Eq. 1 summed over tasks for given (detached) ``advantages`` ``[K, B]``; returns it and the AWR weights."""
        hp = self.hparams
        mean, _ = PolicyNetwork.mean_and_advantage_from_weights(policy_weights, data["obs"], None, self.policy.depth)
        log_probs = gaussian_log_prob(mean, data["actions"])  # [K, B]
        per_task = vmap(awr_loss, in_dims=(0, 0, None, None))(log_probs, advantages, hp.temperature, hp.max_weight)
        weights = vmap(awr_weights, in_dims=(0, None, None))(advantages, hp.temperature, hp.max_weight)
        return per_task.sum(), weights

    def meta_update(self, loss: Tensor) -> None:
        """Backpropagate the summed outer loss through adaptation (summed over ranks under DDP:
        :meth:`~lit_offmeta.algorithms.base.GradientMetaModule.meta_backward`), take one Adam step (value, policy
        and learned-rate groups), then move the slow value target."""
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.meta_backward(loss)
        optimizer.step()
        self.update_value_target()

    def update_value_target(self, rate: float | None = None) -> None:
        r""":math:`\bar W \leftarrow (1 - \tau) \bar W + \tau W` on the value network's effective weights
        (:math:`\tau` = ``rate``, default ``target_update_rate``)."""
        rate = self.hparams.target_update_rate if rate is None else rate
        targets = [t for layer in self.value_target.layers for t in (layer.weight, layer.bias)]
        polyak_update(targets, [t for layer in self.value.current_weights() for t in layer], rate)

    # --- Algorithm 2 ----------------------------------------------------------------------------------------
    def adapt(self, context: dict[str, Tensor], steps: int | None = None) -> nn.Sequential:
        """Algorithm 2: adapt value then policy on one task's offline ``context``; return the adapted policy.

        Args:
            context: ``TRANSITION_KEYS`` -> tensors ``[B, ...]`` of ONE task (e.g. 256 uniform transitions).
            steps: adaptation steps (default ``inner.test_steps``); beyond ``inner.steps`` they are the
                fine-tuner's (:class:`~lit_offmeta.algorithms.finetuning.GradientFineTuner`).

        Returns:
            A plain ``nn.Sequential`` of ``nn.Linear``/``ReLU``/``Tanh`` (on this module's device) mapping
            ``obs [N, obs_dim]`` to the mean action ``[N, action_dim]``; save with
            ``torch.save(policy.state_dict(), path)`` and load into the same ``nn.Sequential`` built by hand (no
            lit-offmeta code needed).

        Raises:
            ValueError: when a context key is missing or has the wrong shape.
        """
        steps = self.inner.test_steps if steps is None else steps
        check_single_task_context(context, TRANSITION_KEYS, self.hparams.obs_dim, self.hparams.action_dim,
                                  "MACAW.adapt")
        if steps > self.inner.steps and self.hparams.extra_step_lr is None:
            warnings.warn(f"MACAW.adapt: {steps} learned-rate SGD steps, but the rates were meta-trained for "
                          f"{self.inner.steps}; repeated steps can diverge (docs/MACAW.md). Set extra_step_lr to "
                          "take the extra steps with Adam.", RuntimeWarning, stacklevel=2)
        task = self.single_task(context, TRANSITION_KEYS)
        with torch.inference_mode(False), torch.enable_grad():
            _, policy_weights = self.adapted_weights(task, steps)  # l. 4-7 for this task
        return self.policy.materialise([(w[0].detach(), b[0].detach()) for w, b in policy_weights])

    def adapted_weights(self, support: dict[str, Tensor], steps: int) -> tuple[Weights, Weights]:
        """Test-time adaptation of every task in ``support`` (``[K, B, ...]``): its ``(value, policy)`` weights.

        The one rule behind :meth:`adapt` and the validation/test losses: up to ``inner.steps`` steps (or any
        number with ``extra_step_lr=None``) are the meta-trained learned-rate steps, all tasks at once (first
        order: nothing is meta-trained here); more steps run :class:`GradientFineTuner` task by task (its Adam
        state is per task).
        """
        if steps <= self.inner.steps or self.hparams.extra_step_lr is None:
            value_trajectory, _ = self.adapt_value(support, steps, first_order=True)
            policy_weights, _ = self.adapt_policy(support, value_trajectory, steps, first_order=True)
            return value_trajectory[-1], policy_weights
        tuned = []
        for i in range(next(iter(support.values())).shape[0]):
            tuner = GradientFineTuner(self)
            for _ in range(steps):
                tuner.step_task({k: v[i : i + 1] for k, v in support.items()})
            tuned.append(tuner.weights())
        return tuple(_cat_tasks([weights[net] for weights in tuned]) for net in (0, 1))

    def extra_adaptation_step(
        self,
        task: dict[str, Tensor],
        value: dict[str, Tensor],
        policy: dict[str, Tensor],
        value_opt: torch.optim.Optimizer,
        policy_opt: torch.optim.Optimizer,
    ) -> tuple[float, float]:
        """One test-time step beyond the meta-trained ones (the reference's fine-tuning), on one task (K = 1).

        Adam (``value_opt``) on the value MSE onto bootstrapped Monte-Carlo targets (Eq. 2), then Adam
        (``policy_opt``) on AWR (Eq. 1, no advantage head) with the just-updated value. ``value`` / ``policy``
        are the parameter dicts the optimisers hold (:class:`GradientFineTuner`'s copies).

        Returns:
            The value and policy losses before their steps.
        """
        def weights(net, params: dict[str, Tensor]) -> Weights:  # task-batched (K = 1) effective weights
            return [(w.unsqueeze(0), b.unsqueeze(0)) for w, b in net.effective_weights(params)]

        value_weights = weights(self.value, value)
        value_opt.zero_grad()
        loss_value = vmap(mc_value_loss)(
            _value(value_weights, task["obs"]), self.value_targets(task, value_weights)
        ).sum()
        loss_value.backward()
        value_opt.step()
        updated = [tuple(t.detach() for t in wb) for wb in weights(self.value, value)]
        policy_opt.zero_grad()
        loss_policy = self.awr_policy_loss(weights(self.policy, policy), task, self.advantages(updated, task))[0]
        loss_policy.backward()
        policy_opt.step()
        return float(loss_value.detach()), float(loss_policy.detach())

    # --- validation / test: query losses before and after adaptation on held-out tasks -------------------------
    def _evaluate(self, batch: TaskBatch, stage: str) -> None:
        with torch.inference_mode(False), torch.enable_grad():
            support = {k: v.clone() for k, v in batch.support.items()}
            query = {k: v.clone() for k, v in batch.query.items()}
            for name, n in (("pre", 0), ("post", self.inner.test_steps)):
                value_weights, policy_weights = self.adapted_weights(support, n)  # the rule adapt() follows
                loss_value, loss_policy, _ = self.outer_losses(policy_weights, value_weights, query)
                kwargs = {"batch_size": batch.num_tasks, "sync_dist": True}
                self.log(f"{stage}/loss_value_{name}", loss_value.detach() / batch.num_tasks, **kwargs)
                self.log(f"{stage}/loss_policy_{name}", loss_policy.detach() / batch.num_tasks, **kwargs)

    # --- Lightning plumbing -----------------------------------------------------------------------------------
    @property
    def lam(self) -> Tensor:
        """The advantage-regression coefficient ``softplus(raw_lambda)``."""
        return F.softplus(self.raw_lambda)

    def meta_lr_parameters(self) -> list[nn.Parameter]:
        return [*self.value_lrs.parameters(), *self.policy_lrs.parameters(), self.raw_lambda]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on three parameter groups: value (:math:`\\eta_2`), policy (:math:`\\alpha_2`), learned rates.

        One optimizer with three groups is the same update as three Adam optimizers (Adam is per-parameter),
        and keeps ``trainer.global_step`` (``max_steps``) equal to the number of meta-updates: Lightning counts
        every manual ``optimizer.step()``.
        """
        hp = self.hparams
        # fused: one kernel per step instead of a dozen passes over ~5M parameters (a third of a CPU update).
        fused = {"fused": True} if torch.device(self.device).type in ("cpu", "cuda") else {}
        groups = [
            {"params": list(self.value.parameters()), "lr": hp.lr_value, "name": "value"},
            {"params": list(self.policy.parameters()), "lr": hp.lr_policy, "name": "policy"},
            {"params": self.meta_lr_parameters(), "lr": self.inner.lr_of_lrs, "name": "inner_lrs"},
        ]
        return torch.optim.Adam(groups, **fused)

    def _log_due(self) -> bool:
        """Log only on the steps the logger writes: ``self.log`` costs ~1 ms per key, and with ~40 keys that
        was a quarter of a meta-update at the benchmark's shapes."""
        trainer = self._trainer
        if trainer is None:
            return True
        return self.global_step % max(1, trainer.log_every_n_steps) == 0 or trainer.max_steps == self.global_step

    def _log_train(self, loss_value, loss_policy, inner_value, inner_policy, weights, num_tasks) -> None:
        log = {
            "train/loss_value": loss_value.detach() / num_tasks,
            "train/loss_policy": loss_policy.detach() / num_tasks,
            "train/lambda": self.lam.detach(),
            "train/awr_weight_mean": weights.mean(),
            "train/awr_weight_max": weights.max(),
            "train/awr_weight_clipped_frac": (weights >= self.hparams.max_weight * (1 - 1e-6)).float().mean(),
        }
        if inner_value:
            log["train/inner/loss_value"] = inner_value[0].detach().mean()
            log["train/inner/loss_policy"] = inner_policy[0].detach().mean()
        for prefix, lrs in (("value", self.value_lrs), ("policy", self.policy_lrs)):
            for name, lr in lrs().items():
                log[f"train/inner_lr/{prefix}.{name}"] = lr.detach()
        # the two meta-losses in the progress bar; the diagnostics go to the logger only
        shown = ("train/loss_value", "train/loss_policy")
        self.log_dict({k: log.pop(k) for k in shown}, batch_size=num_tasks, prog_bar=True)
        self.log_dict(log, batch_size=num_tasks)



def _check_args(args: dict[str, Any]) -> None:
    for name in ("obs_dim", "action_dim"):
        if int(args[name]) < 1:
            raise ValueError(f"{name} must be >= 1, got {args[name]}")
    for name in ("inner_lr_value", "inner_lr_policy", "lr_value", "lr_policy", "lambda_init", "temperature",
                 "max_weight"):
        if not args[name] > 0:
            raise ValueError(f"{name} must be > 0, got {args[name]}")
    if args["extra_step_lr"] is not None and not args["extra_step_lr"] > 0:
        raise ValueError(f"extra_step_lr must be > 0 or None, got {args['extra_step_lr']}")
    if not 0.0 <= args["target_update_rate"] <= 1.0:
        raise ValueError(f"target_update_rate must be in [0, 1], got {args['target_update_rate']}")


def _cat_tasks(per_task: list[Weights]) -> Weights:
    """Task-batched weights of single tasks (``K = 1`` each) concatenated along the task axis."""
    return [type(layers[0])(*(torch.cat(parts) for parts in zip(*layers))) for layers in zip(*per_task)]
