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
* Test-time steps beyond the ``inner_steps`` that meta-training optimised (``adapt(context, steps)`` with
  ``steps > inner_steps``) are Adam steps at ``extra_step_lr`` on the value loss (Eq. 2) and the AWR loss
  (Eq. 1), as the reference code fine-tunes after its single offline step; the learned rates are one-step rates
  and diverge when repeated on Cheetah-Vel (docs/MACAW.md, "Multi-step adaptation"). ``extra_step_lr=None``
  repeats Algorithm 2's learned-rate SGD step instead.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.func import vmap
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from lit_offmeta.algorithms.guards import TrainingGuards
from lit_offmeta.algorithms.losses import (
    advantage_regression_loss,
    awr_loss,
    awr_weights,
    inner_policy_loss,
    mc_value_loss,
    mc_value_target,
)
from lit_offmeta.algorithms.prediction import AdaptedPolicyPrediction, predict_adapted_policy
from lit_offmeta.data.batch import TRANSITION_KEYS, TaskBatch
from lit_offmeta.meta import MODES, InnerLearningRates, adapt, inverse_softplus
from lit_offmeta.nn import LAYER_TYPES, PolicyNetwork, ValueNetwork, Weights, gaussian_log_prob, layer_preset

_value = ValueNetwork.value_from_weights  # task-batched weights [K, ...] and data [K, B, ...]: baddbmm, no vmap


class MACAW(TrainingGuards, LightningModule):
    """Offline meta-RL by MAML on an advantage-weighted actor-critic (Algorithms 1 and 2).

    Args:
        obs_dim: observation size (must match the datamodule's ``obs_dim``; checked in ``setup``).
        action_dim: action size (continuous actions only).
        width: hidden width of the policy and value MLPs (paper: 100).
        depth: number of hidden layers (paper: 3).
        layer: ``weight_transform`` (MACAW), ``bias_transform`` (the reference's "no WT") or ``linear``.
        equal_params: for a non-weight-transform ``layer``, widen each network until it has as many parameters
            as its weight-transform version ("No WT-Equal Params", Fig. 4 centre); default: equal width.
        latent_size: weight-transform latent size (paper: 100).
        inner_steps: inner SGD steps in meta-training (paper: 1).
        test_inner_steps: adaptation steps of ``adapt`` / validation / test when none are given (paper: 1).
        first_order: drop second-order terms of the meta-gradient (for large models).
        inner_lr_value: initial inner learning rate :math:`\\eta_1` of every value tensor (paper: 1e-3).
        inner_lr_policy: initial inner learning rate :math:`\\alpha_1` of every policy tensor (paper: 1e-3).
        learn_inner_lrs: meta-learn the per-tensor inner learning rates and lambda (paper: yes).
        lr_inner_lrs: Adam learning rate of the learned rates and lambda (reference: 1e-3).
        lr_value: outer Adam learning rate :math:`\\eta_2` (paper: 1e-5).
        lr_policy: outer Adam learning rate :math:`\\alpha_2` (paper: 1e-4).
        lambda_init: initial advantage-regression coefficient :math:`\\lambda` (reference: 0.01).
        enriched_policy_loss: inner policy loss AWR + lambda ADV (Eq. 3); off = MAML+AWR ablation (Eq. 1).
        temperature: AWR temperature :math:`T` (paper: 1).
        max_weight: AWR weight clip (paper: 20).
        bootstrap: bootstrap value targets where trajectories were cut (off: pure Monte-Carlo returns).
        target_update_rate: slow value target rate, :math:`\\bar\\phi \\leftarrow (1-\\tau)\\bar\\phi + \\tau\\phi`.
        adaptation_mode: ``closed_form`` (fast, exact), ``vmap`` (plain torch.func) or ``loop`` (per task).
        extra_step_lr: Adam learning rate of the test-time steps beyond ``inner_steps`` (``adapt`` only; the
            reference's fine-tuning rate: 1e-5). ``None``: every step is Algorithm 2's SGD step with the learned
            rates, which were meta-trained for ``inner_steps`` steps only and can diverge (with a warning).

    Example::

        model = MACAW(obs_dim=20, action_dim=6)
        trainer = Trainer(max_steps=1000)
        trainer.fit(model, datamodule=OfflineMetaDataModule(family="cheetah_vel", data_dir="data/"))
        policy = model.adapt(context)  # plain nn.Sequential: obs [N, 20] -> mean action [N, 6]
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        width: int = 100,
        depth: int = 3,
        layer: str = "weight_transform",
        equal_params: bool = False,
        latent_size: int = 100,
        inner_steps: int = 1,
        test_inner_steps: int = 1,
        first_order: bool = False,
        inner_lr_value: float = 1e-3,
        inner_lr_policy: float = 1e-3,
        learn_inner_lrs: bool = True,
        lr_inner_lrs: float = 1e-3,
        lr_value: float = 1e-5,
        lr_policy: float = 1e-4,
        lambda_init: float = 0.01,
        enriched_policy_loss: bool = True,
        temperature: float = 1.0,
        max_weight: float = 20.0,
        bootstrap: bool = True,
        target_update_rate: float = 0.1,
        adaptation_mode: str = "closed_form",
        extra_step_lr: float | None = 1e-5,
    ) -> None:
        super().__init__()
        _check_args(locals())
        self.save_hyperparameters()
        self.automatic_optimization = False
        policy_width = value_width = width
        if equal_params and layer != "weight_transform":
            _, policy_width, value_width = layer_preset("equal_params", obs_dim, action_dim, width, depth, latent_size,
                                                        plain_layer=layer)
        self.policy = PolicyNetwork(obs_dim, action_dim, policy_width, depth, layer, latent_size)
        self.value = ValueNetwork(obs_dim, value_width, depth, layer, latent_size)
        # The slow target is a plain-linear MLP holding the value network's EFFECTIVE weights: the same function,
        # Polyak-averaged in weight space, without a copy of the ~1M-entry generators to average every step.
        self.value_target = ValueNetwork(obs_dim, value_width, depth, "linear").requires_grad_(False)
        self._copy_effective_weights(self.value_target, self.value.current_weights(), rate=1.0)
        self.policy_lrs = InnerLearningRates(dict(self.policy.named_parameters()), inner_lr_policy)
        self.value_lrs = InnerLearningRates(dict(self.value.named_parameters()), inner_lr_value)
        self.raw_lambda = nn.Parameter(torch.tensor(inverse_softplus(lambda_init)))
        if not learn_inner_lrs:
            for p in self.meta_lr_parameters():
                p.requires_grad_(False)

    # --- the paper's steps ------------------------------------------------------------------------------------
    def training_step(self, batch: TaskBatch, batch_idx: int) -> Tensor:
        """One meta-update on a minibatch of K tasks (Algorithm 1, lines 5-10)."""
        support, query = batch.support, batch.query  # Alg. 1, l. 6: disjoint D_tr, D_ts; [K, B, ...]
        steps, first_order = self.hparams.inner_steps, self.hparams.first_order
        value_trajectory, inner_value = self.adapt_value(support, steps, first_order)  # Alg. 1, l. 7
        policy_weights, inner_policy = self.adapt_policy(support, value_trajectory, steps, first_order)  # l. 8
        value_weights, target_weights = value_trajectory[-1], self.value_target.current_weights()
        # Alg. 1, l. 9 and 10 (sums over tasks); the query values and targets are computed once for both.
        loss_value, loss_policy, weights = self._outer_losses(policy_weights, value_weights, query, target_weights)
        self.meta_update(loss_value + loss_policy)  # Alg. 1, l. 9-10: the gradient steps
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
            values = _value(weights, data["obs"])
            if self.hparams.bootstrap:
                with torch.no_grad():  # a constant target (mc_value_target detaches it): record no graph
                    bootstrap = _value(weights, data["bootstrap_obs"])
            else:  # pure Monte-Carlo targets: skip the bootstrap forward pass
                bootstrap = torch.zeros_like(values)
            targets = mc_value_target(data["mc_returns"], data["bootstrap_discounts"], bootstrap)
            return vmap(mc_value_loss)(values, targets)

        data = {k: support[k] for k in ("obs", "mc_returns", "bootstrap_obs", "bootstrap_discounts")}
        params = dict(self.value.named_parameters()) if params is None else params
        return adapt(self.value, params, self.value_lrs(), loss_fn, data, steps, first_order,
                     self.hparams.adaptation_mode, task_batched=True)

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
                                   hp.adaptation_mode, task_batched=True)
        return trajectory[-1], losses

    def advantages(self, value_weights: Weights, data: dict[str, Tensor], target_weights: Weights | None = None
                   ) -> Tensor:
        r""":math:`R_D(s, a) - V_{\phi_i}(s)`, ``[K, B]``, detached (a constant for the policy).

        The bootstrap value at cuts comes from ``target_weights`` (default: ``value_weights``).
        """
        with torch.no_grad():
            values = _value(value_weights, data["obs"])
            return self.value_targets(data, target_weights or value_weights) - values

    def value_targets(self, data: dict[str, Tensor], weights: Weights) -> Tensor:
        """Monte-Carlo targets ``[K, B]`` bootstrapped with ``weights`` (per task or shared), detached."""
        with torch.no_grad():
            if not self.hparams.bootstrap:
                bootstrap = torch.zeros_like(data["mc_returns"])
            elif weights[0][0].dim() == 2:  # shared weights (the slow target): same network for every task
                bootstrap = ValueNetwork.value_from_weights(weights, data["bootstrap_obs"])
            else:
                bootstrap = _value(weights, data["bootstrap_obs"])
            return mc_value_target(data["mc_returns"], data["bootstrap_discounts"], bootstrap)

    def outer_value_loss(self, value_weights: Weights, query: dict[str, Tensor], target_weights: Weights) -> Tensor:
        r""":math:`\sum_i \mathcal{L}_V(\phi_i, D^{ts}_i)`, targets bootstrapped with the slow target's weights."""
        targets = self.value_targets(query, target_weights)
        per_task = vmap(mc_value_loss)(_value(value_weights, query["obs"]), targets)
        return per_task.sum()

    def outer_policy_loss(self, policy_weights: Weights, value_weights: Weights, query: dict[str, Tensor],
                          target_weights: Weights) -> tuple[Tensor, Tensor]:
        r""":math:`\sum_i \mathcal{L}^{AWR}(\theta_i, \phi_i, D^{ts}_i)` (Eq. 1) through the adapted policy.

        Returns:
            ``(loss, awr_weights [K, B])``.
        """
        return self._outer_policy_loss(policy_weights, query, self.advantages(value_weights, query, target_weights))

    def _outer_losses(self, policy_weights: Weights, value_weights: Weights, query: dict[str, Tensor],
                      target_weights: Weights) -> tuple[Tensor, Tensor, Tensor]:
        """``outer_value_loss`` and ``outer_policy_loss`` with one query value pass and one target pass.

        The outer AWR advantages are the (detached) query targets minus the adapted values, which the value loss
        computes anyway: two of the four value-network passes over the query set were repeats.
        """
        targets = self.value_targets(query, target_weights)
        values = _value(value_weights, query["obs"])
        loss_value = vmap(mc_value_loss)(values, targets).sum()
        loss_policy, weights = self._outer_policy_loss(policy_weights, query, targets - values.detach())
        return loss_value, loss_policy, weights

    def _outer_policy_loss(self, policy_weights: Weights, query: dict[str, Tensor], advantages: Tensor
                           ) -> tuple[Tensor, Tensor]:
        hp = self.hparams
        mean, _ = PolicyNetwork.mean_and_advantage_from_weights(policy_weights, query["obs"], None, self.policy.depth)
        log_probs = gaussian_log_prob(mean, query["actions"])  # [K, B]
        per_task = vmap(awr_loss, in_dims=(0, 0, None, None))(log_probs, advantages, hp.temperature, hp.max_weight)
        weights = vmap(awr_weights, in_dims=(0, None, None))(advantages, hp.temperature, hp.max_weight)
        return per_task.sum(), weights

    def meta_update(self, loss: Tensor) -> None:
        """Backpropagate the summed outer loss through adaptation and take one Adam step (value, policy and
        learned-rate groups).

        Under DDP the gradients are SUMMED over ranks by one explicit all-reduce, so the update equals one
        process seeing every rank's tasks (Algorithm 1 sums over tasks). DDP's own reducer is switched off
        (``no_sync``) for this backward: with the second-order inner loop it gave the learned lambda a wrong
        gradient (1.9x the true one in ``tests/test_macaw_ddp.py``), while the explicit all-reduce is exact.
        """
        optimizer = self.optimizers()
        optimizer.zero_grad()
        with _no_ddp_sync(self):
            self.manual_backward(loss)
        _all_reduce_sum_grads(self)
        optimizer.step()
        self.update_value_target()

    def update_value_target(self) -> None:
        r""":math:`\bar W \leftarrow (1 - \tau) \bar W + \tau W` on the value network's effective weights."""
        self._copy_effective_weights(self.value_target, self.value.current_weights(), self.hparams.target_update_rate)

    @staticmethod
    @torch.no_grad()
    def _copy_effective_weights(target: ValueNetwork, weights: Weights, rate: float) -> None:
        for layer, (weight, bias) in zip(target.layers, weights):
            layer.weight.lerp_(weight, rate)
            layer.bias.lerp_(bias, rate)

    # --- Algorithm 2 ----------------------------------------------------------------------------------------
    def adapt(self, context: dict[str, Tensor], steps: int | None = None) -> nn.Sequential:
        """Algorithm 2: adapt value then policy on one task's offline ``context``; return the adapted policy.

        The first ``inner_steps`` steps (the number meta-training optimised) are Algorithm 2's SGD steps with
        the learned rates; further steps are Adam steps at ``extra_step_lr`` (see the class docstring), or,
        with ``extra_step_lr=None``, more learned-rate SGD steps.

        Args:
            context: ``TRANSITION_KEYS`` -> tensors ``[B, ...]`` of ONE task (e.g. 256 uniform transitions).
            steps: adaptation steps (default ``test_inner_steps``).

        Returns:
            A plain ``nn.Sequential`` of ``nn.Linear``/``ReLU``/``Tanh`` (on this module's device) mapping
            ``obs [N, obs_dim]`` to the mean action ``[N, action_dim]``; save with
            ``torch.save(policy.state_dict(), path)`` and load into the same ``nn.Sequential`` built by hand (no
            lit-offmeta code needed).

        Raises:
            ValueError: when a context key is missing or has the wrong shape.
        """
        steps = self.hparams.test_inner_steps if steps is None else steps
        _check_context(context, self.hparams.obs_dim, self.hparams.action_dim)
        task = {k: torch.as_tensor(context[k], device=self.device, dtype=torch.float32).unsqueeze(0)
                for k in TRANSITION_KEYS if k in context}
        extra_lr = self.hparams.extra_step_lr
        meta_steps = self.hparams.inner_steps
        if steps > meta_steps and extra_lr is None:
            warnings.warn(f"MACAW.adapt: {steps} learned-rate SGD steps, but the rates were meta-trained for "
                          f"{meta_steps}; repeated steps can diverge (docs/MACAW.md, 'Multi-step adaptation'). "
                          "Set extra_step_lr to take the extra steps with Adam.", RuntimeWarning, stacklevel=2)
        with torch.inference_mode(False), torch.enable_grad():
            task = {k: v.clone() for k, v in task.items()}  # leave inference mode's tensors behind
            _, policy_weights = self.adapted_weights(task, steps)
        return self.policy.materialise([(w[0].detach(), b[0].detach()) for w, b in policy_weights])

    def predict_step(self, batch: Any, batch_idx: int = 0) -> AdaptedPolicyPrediction:
        """``Trainer.predict``: adapt (:meth:`adapt`, default steps) to one task's
        :class:`~lit_offmeta.datamodules.AdaptationBatch`; return the adapted policy and its actions."""
        return predict_adapted_policy(self, batch)

    def adapted_weights(self, support: dict[str, Tensor], steps: int) -> tuple[Weights, Weights]:
        """Test-time adaptation of every task in ``support`` (``[K, B, ...]``): ``(value, policy)`` weights.

        The one rule behind :meth:`adapt` and the validation/test losses: the first ``inner_steps`` steps are
        the meta-trained learned-rate steps (first order: nothing is meta-trained here), further steps Adam at
        ``extra_step_lr`` per task (or more learned-rate steps with ``extra_step_lr=None``).
        """
        meta_steps, extra_lr = self.hparams.inner_steps, self.hparams.extra_step_lr
        if steps <= meta_steps or extra_lr is None:
            value_trajectory, _ = self.adapt_value(support, steps, first_order=True)
            policy_weights, _ = self.adapt_policy(support, value_trajectory, steps, first_order=True)
            return value_trajectory[-1], policy_weights
        per_task = [self._adapt_with_extra_steps({k: v[i : i + 1] for k, v in support.items()}, meta_steps,
                                                 steps - meta_steps, extra_lr)
                    for i in range(next(iter(support.values())).shape[0])]  # Adam state is per task: a loop

        def stack(weights: list[Weights]) -> Weights:
            return [(torch.cat([w[layer][0] for w in weights]), torch.cat([w[layer][1] for w in weights]))
                    for layer in range(len(weights[0]))]

        return stack([v for v, _ in per_task]), stack([p for _, p in per_task])

    def _adapt_with_extra_steps(self, task: dict[str, Tensor], meta_steps: int, extra_steps: int,
                                lr: float) -> tuple[Weights, Weights]:
        """``meta_steps`` learned-rate SGD steps (Algorithm 2), then ``extra_steps`` Adam steps; one task.

        Both phases step parameter copies (the closed form keeps no parameters to continue from). The Adam
        phase follows the reference's fine-tuning: value MSE onto bootstrapped Monte-Carlo targets (Eq. 2), then
        AWR (Eq. 1, no advantage head) with the just-updated value, each network with its own Adam.
        """
        value = {k: p.detach().clone().requires_grad_() for k, p in self.value.named_parameters()}
        policy = {k: p.detach().clone().requires_grad_() for k, p in self.policy.named_parameters()}

        def value_weights() -> Weights:  # task-batched (K = 1) effective weights of the current copy
            return [(w.unsqueeze(0), b.unsqueeze(0)) for w, b in self.value.effective_weights(value)]

        def policy_weights() -> Weights:
            return [(w.unsqueeze(0), b.unsqueeze(0)) for w, b in self.policy.effective_weights(policy)]

        def sgd(params: dict[str, Tensor], lrs: dict[str, Tensor], loss: Tensor) -> None:
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True, materialize_grads=True)
            with torch.no_grad():
                for (name, p), g in zip(params.items(), grads):
                    p.sub_(lrs[name].detach() * g)

        for _ in range(meta_steps):  # == the closed form's steps, taken on the parameters
            sgd(value, self.value_lrs(), self.adapt_value(task, 1, True, value)[1][0].sum())
            updated = [tuple(t.detach() for t in wb) for wb in value_weights()]
            sgd(policy, self.policy_lrs(), self.adapt_policy(task, [updated], 1, True, policy)[1][0].sum())
        value_opt, policy_opt = torch.optim.Adam(value.values(), lr=lr), torch.optim.Adam(policy.values(), lr=lr)
        for _ in range(extra_steps):
            self.extra_adaptation_step(task, value, policy, value_opt, policy_opt)
        return value_weights(), policy_weights()

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
        are the parameter dicts the optimisers hold (copies in :meth:`adapt`, the fine-tuner's own module's
        parameters in :class:`~lit_offmeta.callbacks.finetune.GradientFineTuner`).

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
        loss_policy = self._outer_policy_loss(weights(self.policy, policy), task, self.advantages(updated, task))[0]
        loss_policy.backward()
        policy_opt.step()
        return float(loss_value.detach()), float(loss_policy.detach())

    # --- validation / test: query losses before and after adaptation on held-out tasks -------------------------
    def validation_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: TaskBatch, stage: str) -> None:
        steps = self.hparams.test_inner_steps
        with torch.inference_mode(False), torch.enable_grad():
            support = {k: v.clone() for k, v in batch.support.items()}
            query = {k: v.clone() for k, v in batch.query.items()}
            target_weights = self.value_target.current_weights()
            for name, n in (("pre", 0), ("post", steps)):
                value_weights, policy_weights = self.adapted_weights(support, n)  # the rule adapt() follows
                loss_value, loss_policy, _ = self._outer_losses(policy_weights, value_weights, query, target_weights)
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
            {"params": self.meta_lr_parameters(), "lr": hp.lr_inner_lrs, "name": "inner_lrs"},
        ]
        return torch.optim.Adam(groups, **fused)

    def setup(self, stage: str) -> None:
        """Check ``obs_dim``/``action_dim`` against the datamodule's (when it exposes them)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        for name in ("obs_dim", "action_dim"):
            expected = getattr(datamodule, name, None)
            if expected is not None and int(expected) != self.hparams[name]:
                raise ValueError(
                    f"model.{name}={self.hparams[name]} but the datamodule's family has {name}={expected}; "
                    f"set `model.init_args.{name}: {expected}` in the config"
                )
        if getattr(datamodule, "discrete_actions", False):
            raise ValueError("MACAW needs continuous actions; the datamodule's family has discrete actions")

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


def _no_ddp_sync(module: LightningModule):
    """``no_sync()`` of the DDP wrapper around ``module`` when there is one, else a no-op context."""
    wrapper = getattr(module._trainer, "model", None) if module._trainer is not None else None
    if isinstance(wrapper, DistributedDataParallel):
        return wrapper.no_sync()
    return contextlib.nullcontext()


def _all_reduce_sum_grads(module: nn.Module) -> None:
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


def _check_args(args: dict[str, Any]) -> None:
    if args["layer"] not in LAYER_TYPES:
        raise ValueError(f"layer must be one of {LAYER_TYPES}, got {args['layer']!r}")
    if args["adaptation_mode"] not in MODES:
        raise ValueError(f"adaptation_mode must be one of {MODES}, got {args['adaptation_mode']!r}")
    for name in ("obs_dim", "action_dim", "width", "depth", "latent_size"):
        if int(args[name]) < 1:
            raise ValueError(f"{name} must be >= 1, got {args[name]}")
    for name in ("inner_steps", "test_inner_steps"):
        if int(args[name]) < 0:
            raise ValueError(f"{name} must be >= 0, got {args[name]}")
    for name in ("inner_lr_value", "inner_lr_policy", "lr_inner_lrs", "lr_value", "lr_policy", "lambda_init",
                 "temperature", "max_weight"):
        if not args[name] > 0:
            raise ValueError(f"{name} must be > 0, got {args[name]}")
    if args["extra_step_lr"] is not None and not args["extra_step_lr"] > 0:
        raise ValueError(f"extra_step_lr must be > 0 or None, got {args['extra_step_lr']}")
    if not 0.0 <= args["target_update_rate"] <= 1.0:
        raise ValueError(f"target_update_rate must be in [0, 1], got {args['target_update_rate']}")


def _check_context(context: dict[str, Tensor], obs_dim: int, action_dim: int) -> None:
    missing = [k for k in TRANSITION_KEYS if k not in context]
    if missing:
        raise ValueError(f"adapt: context lacks key(s) {missing}; expected the TaskBatch keys {list(TRANSITION_KEYS)}")
    obs, actions = context["obs"], context["actions"]
    if obs.dim() != 2 or obs.shape[-1] != obs_dim:
        raise ValueError(f"adapt: context['obs'] must be [B, {obs_dim}] (one task), got {tuple(obs.shape)}")
    if actions.shape != (obs.shape[0], action_dim):
        raise ValueError(f"adapt: context['actions'] must be [B, {action_dim}], got {tuple(actions.shape)}")
