r"""Meta behaviour cloning: MAML on a behaviour-cloning loss, the imitation baseline of MACAW's Fig. 3.

Mitchell et al. 2021 (arXiv:2008.06043, Sec. 5) compare MACAW with "a meta-behavior cloning baseline": the
same gradient-based meta-learner with no value function and no advantage weighting. Here it is literally MACAW's
batched inner loop (:func:`lit_offmeta.meta.adapt`, closed-form weight-transform update, learned per-tensor
inner learning rates) on the BC loss

.. math:: \mathcal{L}_{BC}(\theta, D) = -\mathbb{E}_{s,a \sim D}\big[\log \mathcal N(a; \mu_\theta(s), \sigma^2 I)\big]

with MACAW's FIXED std :math:`\sigma = 0.2`. We use the Gaussian log-likelihood rather than an MSE on the mean
because it is exactly MACAW's AWR loss with every advantage weight equal to 1: same gradient scale, so the same
inner learning rates (1e-3) and outer learning rate (1e-4) apply, and the comparison with MACAW isolates the
value function and advantage weighting. (With a fixed std the two losses differ only by the constant factor
:math:`\tfrac{d}{2\sigma^2}` and an additive constant, so their minimisers coincide.)

Meta-training (Algorithm 1 with the value lines removed): for K tasks, adapt the policy on each support set
with the BC loss, then take an outer Adam step on the sum over tasks of the query BC loss through the adapted
weights (second order unless ``first_order``). Meta-testing (Algorithm 2 likewise): ``adapt`` runs the inner BC
steps on one task's adaptation batch and returns a plain ``nn.Sequential``.

The paper does not say which data its meta-BC imitates; here it clones whatever the datamodule serves (the whole
lifetime buffer by default; ``window: last`` in the datamodule restricts the support/adaptation data to the
behaviour agent's late, near-expert trajectories).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.func import vmap

from lit_offmeta.algorithms.base import GradientMetaModule, check_single_task_context
from lit_offmeta.algorithms.losses import behaviour_cloning_loss
from lit_offmeta.data.batch import TaskBatch
from lit_offmeta.meta import InnerLearningRates, InnerLoopConfig, adapt
from lit_offmeta.nn import MeanPolicyNetwork, NetConfig, Weights


class MetaBC(GradientMetaModule):
    """Meta behaviour cloning: MACAW's functional inner loop on a Gaussian BC loss (no value function).

    Args:
        obs_dim: observation size (checked against the datamodule in ``setup``).
        action_dim: action size (continuous actions).
        net: the policy network (:class:`~lit_offmeta.nn.NetConfig`, as MACAW's).
        inner: the inner BC loop (:class:`~lit_offmeta.meta.InnerLoopConfig`, as MACAW's).
        inner_lr: initial per-tensor inner learning rate (learned as ``softplus(raw)``, MACAW: 1e-3).
        lr_policy: outer Adam learning rate (MACAW's policy rate: 1e-4).

    Example::

        model = MetaBC(obs_dim=2, action_dim=2, net=NetConfig(width=64))
        Trainer(max_steps=2000).fit(model, datamodule=OfflineMetaDataModule("point_robot", "data/"))
        policy = model.adapt(context)  # nn.Sequential: obs [N, 2] -> mean action [N, 2]
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        net: NetConfig = NetConfig(),
        inner: InnerLoopConfig = InnerLoopConfig(),
        inner_lr: float = 1e-3,
        lr_policy: float = 1e-4,
    ) -> None:
        super().__init__()
        self.net_config, self.inner = NetConfig.of(net), InnerLoopConfig.of(inner)
        _check_args(locals())
        net, inner = self.net_config.as_dict(), self.inner.as_dict()  # plain data in checkpoints
        self.save_hyperparameters()
        self.automatic_optimization = False
        cfg = self.net_config
        policy_width, _ = cfg.widths(obs_dim, action_dim)
        self.policy = MeanPolicyNetwork(obs_dim, action_dim, policy_width, cfg.depth, cfg.layer, cfg.latent_size)
        self.policy_lrs = InnerLearningRates(dict(self.policy.named_parameters()), inner_lr)
        if not self.inner.learn_lrs:
            self.policy_lrs.requires_grad_(False)

    # --- Algorithm 1 without the value function ------------------------------------------------------------
    def training_step(self, batch: TaskBatch, batch_idx: int) -> Tensor:
        """One meta-update on K tasks: inner BC on the support sets, outer BC on the query sets."""
        support, query = batch.support, batch.query  # [K, B, ...], disjoint per task
        adapted, inner_losses = self.adapt_policy(support, self.inner.steps, self.inner.first_order)
        loss = self.outer_loss(adapted, query)  # summed over tasks, as MACAW
        self.meta_update(loss)
        log = {"train/loss_policy": loss.detach() / batch.num_tasks}
        if inner_losses:
            log["train/inner/loss_policy"] = inner_losses[0].detach().mean()
        for name, lr in self.policy_lrs().items():
            log[f"train/inner_lr/policy.{name}"] = lr.detach()
        self.log("train/loss_policy", log.pop("train/loss_policy"), batch_size=batch.num_tasks, prog_bar=True)
        self.log_dict(log, batch_size=batch.num_tasks)
        return loss

    def adapt_policy(self, support: dict[str, Tensor], steps: int, first_order: bool) -> tuple[Weights, list]:
        r"""Inner BC steps :math:`\theta_i = \theta - \alpha \nabla_\theta \mathcal{L}_{BC}(\theta, D^{tr}_i)` for every
        task at once; returns the adapted effective weights (leading task axis) and the inner losses."""
        depth = self.policy.depth

        def loss_fn(weights: Weights, data: dict[str, Tensor], step: int) -> Tensor:
            return behaviour_cloning_loss(MeanPolicyNetwork.mean_from_weights(weights, data["obs"], depth),
                                          data["actions"])

        data = {"obs": support["obs"], "actions": support["actions"]}
        trajectory, losses = adapt(self.policy, dict(self.policy.named_parameters()), self.policy_lrs(), loss_fn,
                                   data, steps, first_order, self.inner.mode)
        return trajectory[-1], losses

    def outer_loss(self, adapted: Weights, query: dict[str, Tensor]) -> Tensor:
        r""":math:`\sum_i \mathcal{L}_{BC}(\theta_i, D^{ts}_i)` through the adapted weights."""
        depth = self.policy.depth

        def task_loss(weights: Weights, obs: Tensor, actions: Tensor) -> Tensor:
            return behaviour_cloning_loss(MeanPolicyNetwork.mean_from_weights(weights, obs, depth), actions)

        return vmap(task_loss)(adapted, query["obs"], query["actions"]).sum()

    def meta_update(self, loss: Tensor) -> None:
        """Backpropagate through adaptation (summed over ranks under DDP:
        :meth:`~lit_offmeta.algorithms.base.GradientMetaModule.meta_backward`) and step both optimizers."""
        optimizers = self.optimizers()
        for opt in optimizers:
            opt.zero_grad()
        self.meta_backward(loss)
        for opt in optimizers:
            opt.step()

    # --- Algorithm 2 -------------------------------------------------------------------------------------------
    def adapt(self, context: dict[str, Tensor], steps: int | None = None) -> nn.Sequential:
        """Inner BC steps on one task's offline ``context``; returns the adapted mean-action policy.

        Args:
            context: ``obs [B, obs_dim]`` and ``actions [B, act_dim]`` of ONE task (other keys are ignored).
            steps: adaptation steps (default ``inner.test_steps``; 0 returns the meta-learned initialisation).

        Returns:
            A plain ``nn.Sequential`` (Linear/ReLU/.../Tanh): ``obs [N, obs_dim] -> mean action [N, act_dim]``.

        Raises:
            ValueError: when ``obs``/``actions`` are missing or not one task's ``[B, ...]``.
        """
        steps = self.inner.test_steps if steps is None else int(steps)
        check_single_task_context(context, ("obs", "actions"), self.hparams.obs_dim, self.hparams.action_dim,
                                  f"{type(self).__name__}.adapt")
        task = self.single_task(context, ("obs", "actions"))
        with torch.inference_mode(False), torch.enable_grad():
            adapted, _ = self.adapt_policy(task, steps, first_order=True)
        return self.policy.materialise([(w[0].detach(), b[0].detach()) for w, b in adapted])

    # --- validation / test: query BC loss before and after adaptation on held-out tasks ------------------------
    def _evaluate(self, batch: TaskBatch, stage: str) -> None:
        with torch.inference_mode(False), torch.enable_grad():
            support = {k: batch.support[k].clone() for k in ("obs", "actions")}
            query = {k: batch.query[k].clone() for k in ("obs", "actions")}
            for name, n in (("pre", 0), ("post", self.inner.test_steps)):
                adapted, _ = self.adapt_policy(support, n, first_order=True)
                loss = self.outer_loss(adapted, query).detach() / batch.num_tasks
                self.log(f"{stage}/loss_policy_{name}", loss, batch_size=batch.num_tasks, sync_dist=True)

    # --- Lightning plumbing ----------------------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            torch.optim.Adam(self.policy.parameters(), lr=self.hparams.lr_policy),
            torch.optim.Adam(self.policy_lrs.parameters(), lr=self.inner.lr_of_lrs),
        ]


def _check_args(args: dict[str, Any]) -> None:
    for name in ("obs_dim", "action_dim"):
        if int(args[name]) < 1:
            raise ValueError(f"{name} must be >= 1, got {args[name]}")
    for name in ("inner_lr", "lr_policy"):
        if not args[name] > 0:
            raise ValueError(f"{name} must be > 0, got {args[name]}")
