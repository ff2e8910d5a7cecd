r"""Offline multi-task AWR + fine-tuning ("Offline MT+FT" of MACAW's Fig. 3 and 4).

Mitchell et al. 2021 (arXiv:2008.06043, Sec. 5): "multi-task AWR (Peng et al., 2019), which uses 20 steps of
Adam to adapt to a new task at meta-test time". One policy and one value function, neither told which task a
transition comes from, are trained with AWR on the pooled offline data of all training tasks; at test time
copies of both are fine-tuned on the new task's adaptation batch with 20 Adam steps, then the policy is
deployed. No meta-learning: the prior is whatever multi-task training produced.

The losses are MACAW's, from :mod:`lit_offmeta.algorithms.losses`: the Monte-Carlo value loss (Eq. 2) with
bootstrapping where a stored trajectory was cut, and AWR (Eq. 1) with advantages normalised per task, the
temperature and the weight clip at 20; the policy is MACAW's tanh-mean Gaussian with the fixed std 0.2. As in
MACAW, outer-loop value targets bootstrap with a slow copy of the value function.

Choices the paper leaves open (ours, stated so they can be changed): plain linear layers (``layer="linear"``; any
of MACAW's layer types can be chosen), both the support and the query transitions of each TaskBatch are used as
training data (there is no inner loop to hold data out for), losses are averaged over tasks, and each of the 20
fine-tuning steps is one Adam step on the value loss followed by one on the AWR loss with the updated value
(Algorithm 2's order, with Adam instead of SGD), at learning rates ``finetune_lr_value``/``finetune_lr_policy``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import vmap

from lit_offmeta.algorithms.base import GradientMetaModule, check_single_task_context
from lit_offmeta.algorithms.losses import awr_loss, awr_weights, mc_value_loss, mc_value_target
from lit_offmeta.data.batch import TaskBatch
from lit_offmeta.nn import MeanPolicyNetwork, NetConfig, ValueNetwork, gaussian_log_prob
from lit_offmeta.nn.polyak import polyak_update

VALUE_KEYS = ("obs", "actions", "mc_returns", "bootstrap_obs", "bootstrap_discounts")
"""Transition keys the AWR and value losses read."""


class MultiTaskAWR(GradientMetaModule):
    """One AWR actor-critic trained on all tasks' offline data; fine-tuned per task with Adam at test time.

    Args:
        obs_dim: observation size (checked against the datamodule in ``setup``).
        action_dim: action size (continuous actions).
        net: the policy and value networks (:class:`~lit_offmeta.nn.NetConfig`); by default plain ``linear``
            layers (a standard MLP); any of MACAW's layer types can be chosen.
        lr_value: Adam learning rate of the value function in multi-task training.
        lr_policy: Adam learning rate of the policy in multi-task training.
        temperature: AWR temperature (MACAW: 1).
        max_weight: AWR weight clip (MACAW: 20).
        bootstrap: bootstrap value targets where trajectories were cut (off: pure Monte-Carlo returns).
        target_update_rate: slow value target :math:`\\bar\\phi \\leftarrow (1-\\tau)\\bar\\phi + \\tau\\phi`
            per training step (MACAW: 0.1).
        finetune_steps: Adam steps of test-time fine-tuning (paper: 20); ``adapt``'s default.
        finetune_lr_value: Adam learning rate of the value fine-tuning.
        finetune_lr_policy: Adam learning rate of the policy fine-tuning.

    Example::

        model = MultiTaskAWR(obs_dim=2, action_dim=2, net=NetConfig(width=64, layer="linear"))
        Trainer(max_steps=2000).fit(model, datamodule=OfflineMetaDataModule("point_robot", "data/"))
        policy = model.adapt(context)  # 20 Adam steps; nn.Sequential: obs [N, 2] -> mean action [N, 2]
    """

    TEST_TIME_STEP_SIZES = ("finetune_lr_value", "finetune_lr_policy")
    """The hyperparameters that set the size of its test-time steps (``lit-offmeta benchmark``'s
    ``step_size_grid`` validates them on training tasks)."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        net: NetConfig = NetConfig(layer="linear"),
        lr_value: float = 1e-4,
        lr_policy: float = 1e-4,
        temperature: float = 1.0,
        max_weight: float = 20.0,
        bootstrap: bool = True,
        target_update_rate: float = 0.1,
        finetune_steps: int = 20,
        finetune_lr_value: float = 1e-3,
        finetune_lr_policy: float = 1e-3,
    ) -> None:
        super().__init__()
        self.net_config = NetConfig.of(net)
        _check_args(locals())
        net = self.net_config.as_dict()  # plain data in checkpoints
        self.save_hyperparameters()
        cfg = self.net_config
        policy_width, value_width = cfg.widths(obs_dim, action_dim)
        self.policy = MeanPolicyNetwork(obs_dim, action_dim, policy_width, cfg.depth, cfg.layer, cfg.latent_size)
        self.value = ValueNetwork(obs_dim, value_width, cfg.depth, cfg.layer, cfg.latent_size)
        self.value_target = copy.deepcopy(self.value).requires_grad_(False)

    # --- multi-task training ---------------------------------------------------------------------------------
    def training_step(self, batch: TaskBatch, batch_idx: int) -> Tensor:
        """AWR on K tasks' pooled transitions (support and query alike): value loss + policy loss."""
        data = {k: torch.cat([batch.support[k], batch.query[k]], dim=1) for k in VALUE_KEYS}  # [K, B_in + B_out]
        loss_value, loss_policy, weights = self.losses(self.value, self.policy, data, self.value_target)
        self.log_dict({"train/loss_value": loss_value.detach(), "train/loss_policy": loss_policy.detach()},
                      batch_size=batch.num_tasks, prog_bar=True)
        self.log_dict({"train/awr_weight_mean": weights.mean(), "train/awr_weight_max": weights.max()},
                      batch_size=batch.num_tasks)
        return loss_value + loss_policy

    def losses(
        self, value: ValueNetwork, policy: MeanPolicyNetwork, data: dict[str, Tensor],
        bootstrap_net: Callable[[Tensor], Tensor],
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Mean-over-tasks value loss (Eq. 2) and AWR loss (Eq. 1) for data ``[K, B, ...]``.

        Targets ``R = mc_returns + bootstrap_discounts * V_boot(bootstrap_obs)`` use ``bootstrap_net`` (the slow
        target in training, the network being fine-tuned at test time), called without gradient; the advantage
        ``R - V(s)`` uses the CURRENT value function and is a constant for the policy. AWR weights are normalised per
        task.

        Returns:
            ``(loss_value, loss_policy, awr_weights [K, B])``.
        """
        hp = self.hparams
        with torch.no_grad():
            boot = bootstrap_net(data["bootstrap_obs"]) if hp.bootstrap else torch.zeros_like(data["mc_returns"])
            targets = mc_value_target(data["mc_returns"], data["bootstrap_discounts"], boot)  # [K, B]
        values = value(data["obs"])  # [K, B]
        loss_value = vmap(mc_value_loss)(values, targets).mean()
        advantages = (targets - values).detach()
        log_probs = gaussian_log_prob(policy(data["obs"]), data["actions"])  # [K, B]
        per_task = vmap(lambda lp, adv: awr_loss(lp, adv, hp.temperature, hp.max_weight))(log_probs, advantages)
        weights = vmap(lambda adv: awr_weights(adv, hp.temperature, hp.max_weight))(advantages)
        return loss_value, per_task.mean(), weights

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # The slow value target follows the value function after each optimizer step (as MACAW's).
        polyak_update(self.value_target.parameters(), self.value.parameters(), self.hparams.target_update_rate)

    # --- meta-testing: fine-tune copies with Adam --------------------------------------------------------------
    def adapt(self, context: dict[str, Tensor], steps: int | None = None) -> nn.Sequential:
        """Fine-tune copies of the value function and policy on one task's offline ``context`` with Adam.

        Args:
            context: one task's transitions ``[B, ...]`` with at least ``obs``, ``actions``, ``mc_returns``,
                ``bootstrap_obs`` and ``bootstrap_discounts`` (the datamodule's ``adaptation_batch`` has them).
            steps: Adam steps (default ``finetune_steps``, the paper's 20; 0 returns the multi-task policy).

        Returns:
            A plain ``nn.Sequential`` (Linear/ReLU/.../Tanh): ``obs [N, obs_dim] -> mean action [N, act_dim]``.

        Raises:
            ValueError: when a needed key is missing or the shapes are not one task's.
        """
        steps = self.hparams.finetune_steps if steps is None else int(steps)
        if steps < 0:
            raise ValueError(f"MultiTaskAWR.adapt: steps must be >= 0, got {steps}")
        check_single_task_context(context, VALUE_KEYS, self.hparams.obs_dim, self.hparams.action_dim,
                                  "MultiTaskAWR.adapt")
        policy, value = self.finetune({k: torch.as_tensor(context[k]) for k in VALUE_KEYS}, steps)
        return policy.materialise()

    def finetune(self, context: dict[str, Tensor], steps: int) -> tuple[MeanPolicyNetwork, ValueNetwork]:
        """``steps`` rounds of (one Adam step on the value loss, one on AWR with the updated value) on copies.

        Args:
            context: one task's ``VALUE_KEYS`` tensors ``[B, ...]``.
            steps: Adam steps.

        Returns:
            The fine-tuned ``(policy, value)`` copies; the module itself is untouched.
        """
        hp = self.hparams
        data = self.single_task(context, VALUE_KEYS)
        with torch.inference_mode(False), torch.enable_grad():
            policy = _trainable_copy(self.policy)
            value = _trainable_copy(self.value)
            opt_value = torch.optim.Adam(value.parameters(), lr=hp.finetune_lr_value)
            opt_policy = torch.optim.Adam(policy.parameters(), lr=hp.finetune_lr_policy)
            for _ in range(steps):
                # Bootstrap with the network being fine-tuned (there is no slow target at test time).
                loss_value, _, _ = self.losses(value, policy, data, value)
                opt_value.zero_grad()
                loss_value.backward()
                opt_value.step()
                _, loss_policy, _ = self.losses(value, policy, data, value)  # advantages from the updated value
                opt_policy.zero_grad()
                loss_policy.backward()
                opt_policy.step()
        return policy.eval(), value.eval()

    # --- validation / test: held-out query losses before and after fine-tuning ----------------------------
    def _evaluate(self, batch: TaskBatch, stage: str) -> None:
        totals = {"value_pre": 0.0, "policy_pre": 0.0, "value_post": 0.0, "policy_post": 0.0}
        for i in range(batch.num_tasks):
            support = {k: batch.support[k][i] for k in VALUE_KEYS}
            query = {k: batch.query[k][i].unsqueeze(0) for k in VALUE_KEYS}
            for name, n in (("pre", 0), ("post", self.hparams.finetune_steps)):
                policy, value = self.finetune(support, n)
                with torch.no_grad():
                    loss_value, loss_policy, _ = self.losses(value, policy, query, value)
                totals[f"value_{name}"] += float(loss_value) / batch.num_tasks
                totals[f"policy_{name}"] += float(loss_policy) / batch.num_tasks
        kwargs = {"batch_size": batch.num_tasks, "sync_dist": True}
        for name, v in totals.items():
            kind, when = name.split("_")
            self.log(f"{stage}/loss_{kind}_{when}", v, **kwargs)

    # --- Lightning plumbing ----------------------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            [
                {"params": list(self.value.parameters()), "lr": self.hparams.lr_value},
                {"params": list(self.policy.parameters()), "lr": self.hparams.lr_policy},
            ]
        )


def _trainable_copy(module: nn.Module) -> nn.Module:
    copied = copy.deepcopy(module)
    copied.requires_grad_(True)
    return copied.train()


def _check_args(args: dict[str, Any]) -> None:
    for name in ("obs_dim", "action_dim"):
        if int(args[name]) < 1:
            raise ValueError(f"{name} must be >= 1, got {args[name]}")
    if int(args["finetune_steps"]) < 0:
        raise ValueError(f"finetune_steps must be >= 0, got {args['finetune_steps']}")
    for name in ("lr_value", "lr_policy", "temperature", "max_weight", "finetune_lr_value", "finetune_lr_policy"):
        if not args[name] > 0:
            raise ValueError(f"{name} must be > 0, got {args[name]}")
    if not 0.0 <= args["target_update_rate"] <= 1.0:
        raise ValueError(f"target_update_rate must be in [0, 1], got {args['target_update_rate']}")
