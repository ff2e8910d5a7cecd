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
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.func import vmap

from lit_offmeta.algorithms.guards import TrainingGuards
from lit_offmeta.algorithms.macaw import _all_reduce_sum_grads, _no_ddp_sync
from lit_offmeta.algorithms.prediction import AdaptedPolicyPrediction, predict_adapted_policy
from lit_offmeta.data.batch import TaskBatch
from lit_offmeta.meta import MODES, InnerLearningRates, adapt
from lit_offmeta.nn import LAYER_TYPES, PolicyNetwork, Weights, gaussian_log_prob, layer_preset
from lit_offmeta.nn.networks import POLICY_STD


def behaviour_cloning_loss(mean: Tensor, actions: Tensor, std: float = POLICY_STD) -> Tensor:
    r"""Gaussian behaviour-cloning loss with a fixed std (negative log-likelihood of the data's actions).

    .. math:: \mathcal{L}_{BC} = -\frac1B \sum_b \log \mathcal N(a_b; \mu_b, \sigma^2 I)
              = \frac1B \sum_b \Big[\frac{\lVert a_b - \mu_b\rVert^2}{2\sigma^2}\Big] + d\,\log(\sigma\sqrt{2\pi})

    Args:
        mean: ``[B, act_dim]`` policy means :math:`\mu_\theta(s)`.
        actions: ``[B, act_dim]`` the behaviour agent's actions.
        std: the fixed policy std (MACAW: 0.2).

    Returns:
        Scalar loss.
    """
    return -gaussian_log_prob(mean, actions, std).mean()


class MeanPolicyNetwork(PolicyNetwork):
    """MACAW's policy network without the advantage head: ``[obs] + [width] * depth + [act]``, tanh mean.

    Meta-BC and multi-task AWR never use the advantage head; dropping it keeps every parameter in use (which
    DDP requires) and the parameter count honest. ``forward``, ``effective_weights`` and ``materialise`` are
    the parent's (they only read layers ``0..depth``).
    """

    def __init__(self, obs_dim: int, action_dim: int, width: int = 100, depth: int = 3,
                 layer: str = "weight_transform", latent_size: int = 100) -> None:
        super().__init__(obs_dim, action_dim, width, depth, layer, latent_size)
        self.layers = self.layers[: depth + 1]

    @staticmethod
    def mean_from_weights(weights: Weights, obs: Tensor, depth: int) -> Tensor:
        """Mean action ``[..., act_dim]`` from effective weights."""
        return PolicyNetwork.mean_and_advantage_from_weights(weights, obs, None, depth)[0]


class MetaBC(TrainingGuards, LightningModule):
    """Meta behaviour cloning: MACAW's functional inner loop on a Gaussian BC loss (no value function).

    Args:
        obs_dim: observation size (checked against the datamodule in ``setup``).
        action_dim: action size (continuous actions).
        width: hidden width (paper: 100).
        depth: number of hidden layers (paper: 3).
        layer: ``weight_transform`` (as MACAW), ``bias_transform`` or ``linear``.
        equal_params: for a non-weight-transform ``layer``, widen the network to the weight-transform
            network's parameter count (as MACAW's "No WT-Equal Params").
        latent_size: weight-transform latent size.
        inner_steps: inner BC steps in meta-training (paper: 1).
        test_inner_steps: adaptation steps of ``adapt`` and validation when none are given.
        first_order: drop second-order terms of the meta-gradient.
        inner_lr: initial per-tensor inner learning rate (learned as ``softplus(raw)``, MACAW: 1e-3).
        learn_inner_lrs: meta-learn the inner learning rates.
        lr_inner_lrs: Adam learning rate of the learned inner rates.
        lr_policy: outer Adam learning rate (MACAW's policy rate: 1e-4).
        adaptation_mode: ``closed_form | vmap | loop`` (see :mod:`lit_offmeta.meta.adaptation`).

    Example::

        model = MetaBC(obs_dim=2, action_dim=2, width=64)
        Trainer(max_steps=2000).fit(model, datamodule=OfflineMetaDataModule("point_robot", "data/"))
        policy = model.adapt(context)  # nn.Sequential: obs [N, 2] -> mean action [N, 2]
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
        inner_lr: float = 1e-3,
        learn_inner_lrs: bool = True,
        lr_inner_lrs: float = 1e-3,
        lr_policy: float = 1e-4,
        adaptation_mode: str = "closed_form",
    ) -> None:
        super().__init__()
        _check_args(locals())
        self.save_hyperparameters()
        self.automatic_optimization = False
        policy_width = width
        if equal_params and layer != "weight_transform":
            _, policy_width, _ = layer_preset("equal_params", obs_dim, action_dim, width, depth, latent_size)
        self.policy = MeanPolicyNetwork(obs_dim, action_dim, policy_width, depth, layer, latent_size)
        self.policy_lrs = InnerLearningRates(dict(self.policy.named_parameters()), inner_lr)
        if not learn_inner_lrs:
            self.policy_lrs.requires_grad_(False)

    # --- Algorithm 1 without the value function ------------------------------------------------------------
    def training_step(self, batch: TaskBatch, batch_idx: int) -> Tensor:
        """One meta-update on K tasks: inner BC on the support sets, outer BC on the query sets."""
        support, query = batch.support, batch.query  # [K, B, ...], disjoint per task
        adapted, inner_losses = self.adapt_policy(support, self.hparams.inner_steps, self.hparams.first_order)
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
                                   data, steps, first_order, self.hparams.adaptation_mode)
        return trajectory[-1], losses

    def outer_loss(self, adapted: Weights, query: dict[str, Tensor]) -> Tensor:
        r""":math:`\sum_i \mathcal{L}_{BC}(\theta_i, D^{ts}_i)` through the adapted weights."""
        depth = self.policy.depth

        def task_loss(weights: Weights, obs: Tensor, actions: Tensor) -> Tensor:
            return behaviour_cloning_loss(MeanPolicyNetwork.mean_from_weights(weights, obs, depth), actions)

        return vmap(task_loss)(adapted, query["obs"], query["actions"]).sum()

    def meta_update(self, loss: Tensor) -> None:
        """Backpropagate through adaptation and step both optimizers.

        Under DDP the gradients are SUMMED over ranks by one explicit all-reduce with DDP's reducer off, exactly
        as MACAW does (its docstring explains why: DDP's reducer mis-handles the second-order inner loop), so the
        update equals one process seeing every rank's tasks.
        """
        optimizers = self.optimizers()
        for opt in optimizers:
            opt.zero_grad()
        with _no_ddp_sync(self):
            self.manual_backward(loss)
        _all_reduce_sum_grads(self)
        for opt in optimizers:
            opt.step()

    # --- Algorithm 2 -------------------------------------------------------------------------------------------
    def adapt(self, context: dict[str, Tensor], steps: int | None = None) -> nn.Sequential:
        """Inner BC steps on one task's offline ``context``; returns the adapted mean-action policy.

        Args:
            context: ``obs [B, obs_dim]`` and ``actions [B, act_dim]`` of ONE task (other keys are ignored).
            steps: adaptation steps (default ``test_inner_steps``; 0 returns the meta-learned initialisation).

        Returns:
            A plain ``nn.Sequential`` (Linear/ReLU/.../Tanh): ``obs [N, obs_dim] -> mean action [N, act_dim]``.

        Raises:
            ValueError: when ``obs``/``actions`` are missing or not one task's ``[B, ...]``.
        """
        steps = self.hparams.test_inner_steps if steps is None else int(steps)
        check_single_task_context(context, self.hparams.obs_dim, self.hparams.action_dim, type(self).__name__)
        with torch.inference_mode(False), torch.enable_grad():
            task = {k: torch.as_tensor(context[k], dtype=torch.float32, device=self.device).clone().unsqueeze(0)
                    for k in ("obs", "actions")}
            adapted, _ = self.adapt_policy(task, steps, first_order=True)
        return self.policy.materialise([(w[0].detach(), b[0].detach()) for w, b in adapted])

    def predict_step(self, batch: Any, batch_idx: int = 0) -> AdaptedPolicyPrediction:
        """``Trainer.predict``: adapt (:meth:`adapt`, default steps) to one task's
        :class:`~lit_offmeta.datamodules.AdaptationBatch`; return the adapted policy and its actions."""
        return predict_adapted_policy(self, batch)

    # --- validation / test: query BC loss before and after adaptation on held-out tasks ------------------------
    def validation_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: TaskBatch, stage: str) -> None:
        with torch.inference_mode(False), torch.enable_grad():
            support = {k: batch.support[k].clone() for k in ("obs", "actions")}
            query = {k: batch.query[k].clone() for k in ("obs", "actions")}
            for name, n in (("pre", 0), ("post", self.hparams.test_inner_steps)):
                adapted, _ = self.adapt_policy(support, n, first_order=True)
                loss = self.outer_loss(adapted, query).detach() / batch.num_tasks
                self.log(f"{stage}/loss_policy_{name}", loss, batch_size=batch.num_tasks, sync_dist=True)

    # --- Lightning plumbing ----------------------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            torch.optim.Adam(self.policy.parameters(), lr=self.hparams.lr_policy),
            torch.optim.Adam(self.policy_lrs.parameters(), lr=self.hparams.lr_inner_lrs),
        ]

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        check_sizes_against_datamodule(self, datamodule, self.hparams.obs_dim, self.hparams.action_dim)


# --- shared by the baselines ---------------------------------------------------------------------------------


def check_sizes_against_datamodule(module: LightningModule, datamodule: Any, obs_dim: int, action_dim: int) -> None:
    """Raise a clear ``ValueError`` when the module's sizes disagree with the datamodule's (if it has them),
    or when the data has discrete actions (every baseline here is for continuous control)."""
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
                f"{type(module).__name__}: model.{name}={mine} but the datamodule's data has {name}={theirs}; "
                f"set `model.init_args.{name}: {theirs}` in the config"
            )


def check_single_task_context(context: dict[str, Tensor], obs_dim: int, action_dim: int, who: str) -> None:
    """``context`` must hold one task's ``obs [B, obs_dim]`` and ``actions [B, action_dim]``."""
    if not isinstance(context, dict) or "obs" not in context or "actions" not in context:
        got = sorted(context) if isinstance(context, dict) else type(context).__name__
        raise ValueError(f"{who}.adapt: context must be a dict with 'obs' and 'actions' of one task; got {got}")
    obs, actions = torch.as_tensor(context["obs"]), torch.as_tensor(context["actions"])
    if obs.dim() != 2 or obs.shape[-1] != obs_dim:
        raise ValueError(f"{who}.adapt: context['obs'] must be [B, {obs_dim}] (one task), got {tuple(obs.shape)}")
    if tuple(actions.shape) != (obs.shape[0], action_dim):
        raise ValueError(f"{who}.adapt: context['actions'] must be [B, {action_dim}], got {tuple(actions.shape)}")


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
    for name in ("inner_lr", "lr_inner_lrs", "lr_policy"):
        if not args[name] > 0:
            raise ValueError(f"{name} must be > 0, got {args[name]}")
