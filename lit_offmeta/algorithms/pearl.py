"""Offline PEARL: a probabilistic context encoder plus SAC on ``(state, z)``, trained from fixed task buffers.

PEARL (Rakelly et al. 2019, arXiv:1903.08254) infers a task latent ``z`` from a set of context transitions
with a permutation-invariant product-of-Gaussians encoder (:mod:`lit_offmeta.nn.context_encoder`) and
conditions an off-policy SAC actor and critic on it. The encoder is trained through the critic's Bellman error
plus a KL "information bottleneck" to ``N(0, I)``; the actor sees ``z`` detached. MACAW's paper
(Mitchell et al. 2021, arXiv:2008.06043, Sec. 5) runs it *offline*: no exploration, every update from the
fixed per-task buffers, and at test time ``z`` is inferred from the offline adaptation batch.

Mapping onto a :class:`~lit_offmeta.data.batch.TaskBatch`: the SUPPORT set of each task is PEARL's context
batch (a contiguous slice of the task's buffer, like PEARL's recent-context sampling), the QUERY set is its RL
batch. The two are disjoint draws from the same task.

Where we knowingly differ from PEARL's public code (and why):

* SAC with twin Q-functions and target Q-networks (Haarnoja et al. 2018b) instead of PEARL's older SAC with a
  separate state-value network; the task-inference part is unchanged. The SAC losses and networks are the
  project's one SAC (:mod:`lit_offmeta.algorithms.sac`, shared with the behaviour agent), applied to ``concat(s, z)``.
* One optimizer step per batch on the sum of the critic (+ encoder), actor and temperature losses, each with its
  own parameter group; gradients of one loss never reach another's parameters (the actor sees the critic
  through detached parameters). PEARL steps them one after the other. A single backward keeps Lightning's
  automatic optimisation, so gradient accumulation, clipping and DDP work as users expect.
* ``alpha = 0.2`` with ``reward_scale = 1`` instead of PEARL's ``reward_scale = 5`` with ``alpha = 1``: the two
  give the same optimum up to a scaling of Q.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.func import functional_call

from lit_offmeta.algorithms.base import check_sizes_against_datamodule
from lit_offmeta.algorithms.guards import TrainingGuards
from lit_offmeta.algorithms.prediction import AdaptedPolicyPrediction, predict_adapted_policy
from lit_offmeta.algorithms.sac import (
    SquashedGaussianActor,
    TwinCritic,
    actor_loss,
    critic_loss,
    sac_update,
    soft_td_target,
    temperature_loss,
)
from lit_offmeta.data.batch import TaskBatch
from lit_offmeta.nn.context_encoder import (
    ContextEncoder,
    factor_natural_params,
    gaussian_from_natural,
    kl_to_standard_normal,
)
from lit_offmeta.nn.polyak import polyak_update

# --- loss (pure function) -----------------------------------------------------------------------------------


def pearl_kl_loss(mu: Tensor, var: Tensor, kl_weight: float) -> Tensor:
    """PEARL's information-bottleneck term: ``kl_weight * sum_k KL(q(z | c_k) || N(0, I))``.

    .. math::
        \\mathcal L_{KL} = \\beta \\sum_k
            D_{KL}\\big(q_\\phi(z \\mid c^{\\mathcal T_k}) \\,\\|\\, \\mathcal N(0, I)\\big)

    Summed over the K tasks of the batch as in PEARL's code (Rakelly et al. 2019, Eq. 2, beta = 0.1 there).

    Args:
        mu: posterior means ``[K, latent]``.
        var: posterior variances ``[K, latent]``.
        kl_weight: ``beta``.

    Returns:
        Scalar loss.
    """
    return kl_weight * kl_to_standard_normal(mu, var).sum()


# --- the module ----------------------------------------------------------------------------------------------


class OfflinePEARL(TrainingGuards, LightningModule):
    """Offline PEARL as a LightningModule: context encoder + SAC on ``(s, z)`` from offline task data.

    Training on a :class:`TaskBatch` (K tasks): the encoder maps each task's SUPPORT transitions to a posterior
    ``q(z | c_k)``; ``z_k`` is sampled from it (reparameterised); the critic regresses the soft Bellman target
    on the task's QUERY transitions with ``z_k`` attached (its gradient trains the encoder); the actor maximises
    ``min Q - alpha log pi`` with ``z_k`` detached; the KL to ``N(0, I)`` regularises the encoder.

    At test time, :meth:`adapt` turns an offline adaptation batch into a posterior and returns a
    :class:`PearlRolloutPolicy` acting with the posterior MEAN (deterministic evaluation), which can keep
    multiplying in factors of the transitions it observes online.

    Args:
        obs_dim: observation size; checked against the datamodule in ``setup``.
        action_dim: action size (continuous actions in ``[-1, 1]``).
        latent_dim: size of ``z`` (PEARL: 5).
        encoder_hidden: context encoder MLP widths (PEARL: 200 x 3).
        hidden: actor and critic MLP widths (PEARL: 300 x 3).
        use_next_obs_in_context: feed ``s'`` to the encoder too (PEARL default off; on for dynamics tasks).
        kl_weight: weight of the KL bottleneck, summed over tasks (PEARL: 0.1).
        gamma: TD discount.
        tau: Polyak rate of the target critics.
        reward_scale: multiplies rewards in the TD target.
        alpha: entropy temperature (initial value when ``learn_alpha``).
        learn_alpha: tune alpha towards ``target_entropy`` (default ``-action_dim``).
        target_entropy: entropy target when ``learn_alpha``; ``None`` means ``-action_dim``.
        lr_encoder: Adam learning rate of the context encoder.
        lr_critic: Adam learning rate of the twin critics.
        lr_policy: Adam learning rate of the actor (and alpha).
        online_belief_update: default for :meth:`adapt`: whether the rollout policy folds observed transitions
            into its posterior (PEARL's online task inference) or keeps the offline one fixed (the default: the
            fully offline protocol of MACAW's paper, where only the adaptation batch informs the policy).

    Raises:
        ValueError: on non-positive sizes, rates or weights outside their range.

    Example:
        >>> model = OfflinePEARL(obs_dim=2, action_dim=2, hidden=[32, 32], encoder_hidden=[32])
        >>> ctx = {"obs": torch.zeros(16, 2), "actions": torch.zeros(16, 2), "rewards": torch.zeros(16)}
        >>> policy = model.adapt(ctx)
        >>> policy.reset(3)
        >>> policy.act(np.zeros((3, 2), dtype=np.float32)).shape
        (3, 2)
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        latent_dim: int = 5,
        encoder_hidden: Sequence[int] = (200, 200, 200),
        hidden: Sequence[int] = (300, 300, 300),
        use_next_obs_in_context: bool = False,
        kl_weight: float = 0.1,
        gamma: float = 0.99,
        tau: float = 0.005,
        reward_scale: float = 1.0,
        alpha: float = 0.2,
        learn_alpha: bool = False,
        target_entropy: float | None = None,
        lr_encoder: float = 3e-4,
        lr_critic: float = 3e-4,
        lr_policy: float = 3e-4,
        online_belief_update: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("obs_dim", obs_dim), ("action_dim", action_dim), ("latent_dim", latent_dim)):
            if int(value) < 1:
                raise ValueError(f"OfflinePEARL: {name} must be a positive integer, got {value!r}")
        for name, value in (("lr_encoder", lr_encoder), ("lr_critic", lr_critic), ("lr_policy", lr_policy)):
            if not value > 0:
                raise ValueError(f"OfflinePEARL: {name} must be > 0, got {value!r}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"OfflinePEARL: gamma must lie in [0, 1], got {gamma!r}")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"OfflinePEARL: tau must lie in (0, 1], got {tau!r}")
        if kl_weight < 0:
            raise ValueError(f"OfflinePEARL: kl_weight must be >= 0, got {kl_weight!r}")
        if not alpha > 0:
            raise ValueError(f"OfflinePEARL: alpha must be > 0 (its log is learned when learn_alpha), got {alpha!r}")
        self.save_hyperparameters()
        hidden, encoder_hidden = list(hidden), list(encoder_hidden)

        self.encoder = ContextEncoder(obs_dim, action_dim, latent_dim, encoder_hidden, use_next_obs_in_context)
        # Actor and critics see concat(s, z); actions live in [-1, 1] (checked against the family in setup).
        low, high = -torch.ones(action_dim), torch.ones(action_dim)
        self.policy = SquashedGaussianActor(obs_dim + latent_dim, action_dim, hidden, low, high)
        self.critic = TwinCritic(obs_dim + latent_dim, action_dim, hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)), requires_grad=learn_alpha)
        self.target_entropy = float(-action_dim if target_entropy is None else target_entropy)

    # --- helpers ---------------------------------------------------------------------------------------------
    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.exp()

    def setup(self, stage: str) -> None:
        """Check the sizes against the datamodule, when it exposes them (clear error instead of a shape crash)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        check_sizes_against_datamodule(self, datamodule, self.hparams.obs_dim, self.hparams.action_dim)
        space = getattr(getattr(datamodule, "family", None), "action_space", None)
        low, high = getattr(space, "low", None), getattr(space, "high", None)
        if low is not None and (np.any(np.asarray(low) != -1.0) or np.any(np.asarray(high) != 1.0)):
            raise ValueError(
                f"OfflinePEARL's actor outputs actions in [-1, 1], but the family's action box is [{low}, {high}]; "
                "rescale the environment's actions to [-1, 1]"
            )

    def infer_posterior(self, context: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Posterior ``(mu, var)`` ``[..., latent]`` from context transitions with leading dims ``[..., N]``."""
        return self.encoder(context)

    # --- training --------------------------------------------------------------------------------------------
    def compute_losses(self, batch: TaskBatch, sample_z: bool = True) -> dict[str, Tensor]:
        """All PEARL loss terms for a TaskBatch (support = context, query = RL batch).

        Returns a dict with ``loss`` (the sum to minimise), the loss terms ``loss_critic``, ``loss_kl``,
        ``loss_actor`` (and ``loss_alpha``), still attached to the graph, and detached diagnostics.
        """
        support, query = batch.support, batch.query
        mu, var = self.infer_posterior(support)  # [K, latent]
        z = mu + var.sqrt() * torch.randn_like(mu) if sample_z else mu
        k, b = query["rewards"].shape
        task_z = z[:, None, :].expand(k, b, z.shape[-1])  # [K, B, latent], one z per task
        obs_z = torch.cat([query["obs"], task_z], dim=-1)  # the critic's input: gradient reaches the encoder
        obs_z_detached = obs_z.detach()  # the actor's input: PEARL trains the encoder only through the critic
        next_obs_z = torch.cat([query["next_obs"], task_z.detach()], dim=-1)
        actions = query["actions"].to(obs_z.dtype)
        alpha = self.alpha.detach()

        # Critic (+ encoder through z): soft Bellman regression on the task's own transitions.
        with torch.no_grad():
            next_actions, next_log_pi = self.policy.sample(next_obs_z)
            next_q1, next_q2 = self.critic_target(next_obs_z, next_actions)
            target = soft_td_target(self.hparams.reward_scale * query["rewards"], query["terminals"], next_q1,
                                    next_q2, next_log_pi, alpha, self.hparams.gamma)
        q1, q2 = self.critic(obs_z, actions)
        loss_critic = critic_loss(q1, q2, target)
        loss_kl = pearl_kl_loss(mu, var, self.hparams.kl_weight)

        # Actor: the critics enter with detached parameters, so the actor loss cannot move them.
        new_actions, log_pi = self.policy.sample(obs_z_detached)
        frozen = {n: p.detach() for n, p in self.critic.named_parameters()}
        q1_pi, q2_pi = functional_call(self.critic, frozen, (obs_z_detached, new_actions))
        loss_actor = actor_loss(log_pi, q1_pi, q2_pi, alpha)

        loss = loss_critic + loss_kl + loss_actor
        out = {"loss_critic": loss_critic, "loss_kl": loss_kl, "loss_actor": loss_actor}
        if self.hparams.learn_alpha:
            out["loss_alpha"] = temperature_loss(self.log_alpha, log_pi, self.target_entropy)
            loss = loss + out["loss_alpha"]
        diagnostics = {
            "q_mean": q1.detach().mean(),
            "target_mean": target.mean(),
            "log_pi_mean": log_pi.detach().mean(),
            "alpha": alpha,
            "posterior_var_mean": var.detach().mean(),
        }
        return {"loss": loss, **out, **diagnostics}

    def training_step(self, batch: TaskBatch, batch_idx: int) -> Tensor:
        out = self.compute_losses(batch)
        for k, v in out.items():  # the total, the critic's and the actor's losses in the progress bar
            self.log(f"train/{k}", v.detach(), prog_bar=k in ("loss", "loss_critic", "loss_actor"),
                     batch_size=batch.num_tasks)
        # DDP averages gradients over ranks. The critic and actor terms are means over transitions, so the
        # average is the mean over every rank's tasks; the KL is a SUM over tasks, so it is scaled by the world
        # size to stay the sum over every rank's tasks, as if one process had seen them all.
        world_size = self.trainer.world_size if self._trainer is not None else 1
        return out["loss"] + (world_size - 1) * out["loss_kl"]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # Polyak averaging of the target critics, right after the optimizer step of this batch: here rather than
        # in on_train_batch_end, which runs after the callbacks' (a step checkpoint would miss this update).
        polyak_update(self.critic_target.parameters(), self.critic.parameters(), self.hparams.tau)

    def _eval_step(self, batch: TaskBatch, phase: str) -> None:
        """Held-out tasks: critic error with ``z`` from the support posterior mean vs from the prior mean 0."""
        out = self.compute_losses(batch, sample_z=False)
        prior = self._critic_error_with_prior(batch)
        self.log_dict(
            {
                f"{phase}/loss_critic": out["loss_critic"],
                f"{phase}/loss_kl": out["loss_kl"],
                f"{phase}/loss_critic_prior_z": prior,
            },
            batch_size=batch.num_tasks,
            sync_dist=True,
        )

    def _critic_error_with_prior(self, batch: TaskBatch) -> Tensor:
        query = batch.query
        k, b = query["rewards"].shape
        z = torch.zeros(k, b, self.hparams.latent_dim, device=query["obs"].device)
        obs_z, next_obs_z = torch.cat([query["obs"], z], -1), torch.cat([query["next_obs"], z], -1)
        next_actions, next_log_pi = self.policy.sample(next_obs_z)
        target = soft_td_target(self.hparams.reward_scale * query["rewards"], query["terminals"],
                                *self.critic_target(next_obs_z, next_actions), next_log_pi, self.alpha,
                                self.hparams.gamma)
        return critic_loss(*self.critic(obs_z, query["actions"].to(obs_z.dtype)), target)

    def validation_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = [
            {"params": list(self.encoder.parameters()), "lr": self.hparams.lr_encoder},
            {"params": list(self.critic.parameters()), "lr": self.hparams.lr_critic},
            {"params": list(self.policy.parameters()), "lr": self.hparams.lr_policy},
        ]
        if self.hparams.learn_alpha:
            groups.append({"params": [self.log_alpha], "lr": self.hparams.lr_policy})
        return torch.optim.Adam(groups)

    # --- meta-testing ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def adapt(
        self, context: dict[str, Tensor], steps: int | None = None, online_belief_update: bool | None = None
    ) -> PearlRolloutPolicy:
        """Infer the task posterior from an offline adaptation batch and return a rollout policy.

        Args:
            context: transitions of ONE task, ``obs [B, obs_dim]``, ``actions [B, act_dim]``,
                ``rewards [B]`` (and ``next_obs`` when the encoder uses it); other keys are ignored.
            steps: PEARL's inference is closed-form, so there are no gradient steps. ``0`` means "no
                adaptation": the context is ignored and the policy starts from the prior mean ``z = 0``
                (the pre-adaptation point of an adaptation curve); any other value uses the context.
            online_belief_update: fold the transitions seen through ``observe`` into the posterior
                (``None``: the module's ``online_belief_update`` hyperparameter).

        Returns:
            A :class:`PearlRolloutPolicy` (CPU copies of the actor and encoder; numpy in, numpy out).
        """
        latent = self.hparams.latent_dim
        if steps == 0:
            precision, weighted = torch.zeros(latent), torch.zeros(latent)
        else:
            context = _check_context(context, self.encoder.use_next_obs)
            context = {k: v.to(self.device) for k, v in context.items()}
            precision, weighted = factor_natural_params(*self.encoder.factors(context))
        online = self.hparams.online_belief_update if online_belief_update is None else online_belief_update
        return PearlRolloutPolicy(
            copy.deepcopy(self.policy).cpu().eval(),
            copy.deepcopy(self.encoder).cpu().eval(),
            precision.cpu(),
            weighted.cpu(),
            online_belief_update=online,
        )

    def predict_step(self, batch: Any, batch_idx: int = 0) -> AdaptedPolicyPrediction:
        """``Trainer.predict``: adapt (:meth:`adapt`, default steps) to one task's
        :class:`~lit_offmeta.datamodules.AdaptationBatch`; return the adapted policy and its actions."""
        return predict_adapted_policy(self, batch)

    def fine_tuner(self, context: dict[str, Tensor]) -> PearlFineTuner:
        """Offline PEARL + fine-tuning (MACAW App. C.2): :class:`PearlFineTuner` from the task's offline batch."""
        return PearlFineTuner(self, context)


class PearlFineTuner:
    """Offline PEARL+FT of one task (Mitchell et al. 2021, App. C.2): "after receiving an initial small batch of
    offline data for task inference, we alternate between performing rollouts of the task-conditioned policy to
    collect additional data from the test task and perform gradient descent on the PEARL policy and value function
    objectives with this off-policy data".

    Construction is the offline adaptation: ``z`` is the posterior mean of the offline batch, as
    :meth:`OfflinePEARL.adapt` infers it, and stays fixed (the encoder is not fine-tuned: the task is the one being
    solved). Each :meth:`step` is one SAC update of copies of the twin critics (soft Bellman regression) and then
    of the actor, on ``(s, z)``, with the module's own losses, rates, temperature and Polyak rate; the module is
    not modified. :class:`~lit_offmeta.callbacks.OnlineFineTuning` drives it like MACAW's gradient fine-tuner.
    """

    def __init__(self, module: OfflinePEARL, context: dict[str, Tensor]) -> None:
        hp = module.hparams
        self.gamma, self.tau, self.reward_scale = float(hp.gamma), float(hp.tau), float(hp.reward_scale)
        self.alpha = float(module.alpha.detach())
        with torch.inference_mode(False):  # Lightning's test loop runs in inference mode; these copies train
            belief = module.adapt(context)
            belief.reset(1)
            device = module.device
            self.z = belief.posterior()[0][0].detach().clone().to(device)  # [latent]
            self.actor = copy.deepcopy(module.policy).requires_grad_(True)
            self.critic = copy.deepcopy(module.critic).requires_grad_(True)
            self.critic_target = copy.deepcopy(module.critic_target).requires_grad_(False)
            self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=hp.lr_critic)
            self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=hp.lr_policy)
        self.num_steps = 0

    def _with_z(self, obs: Tensor) -> Tensor:
        return torch.cat([obs, self.z.expand(*obs.shape[:-1], -1)], dim=-1)

    def step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One SAC update on ``batch`` (one task's transitions ``[B, ...]``: ``obs``, ``actions``, ``rewards``,
        ``next_obs``, ``terminals``). Returns the critic and actor losses before their steps."""
        with torch.inference_mode(False), torch.enable_grad():
            b = {k: torch.as_tensor(batch[k], dtype=torch.float32).to(self.z.device)
                 for k in ("obs", "actions", "rewards", "next_obs", "terminals")}
            step = sac_update(self.actor, self.critic, self.critic_target, self.critic_optimizer,
                              self.actor_optimizer,
                              {"obs": self._with_z(b["obs"]), "actions": b["actions"],
                               "rewards": self.reward_scale * b["rewards"], "next_obs": self._with_z(b["next_obs"]),
                               "terminals": b["terminals"]},
                              self.alpha, self.gamma, self.tau)
        self.num_steps += 1
        return {"loss_critic": float(step.loss_critic), "loss_actor": float(step.loss_actor)}

    def policy(self) -> nn.Module:
        """The current deterministic policy, ``obs [N, obs_dim] -> tanh-squashed mean action`` with ``z`` attached."""
        return _FixedTaskPolicy(copy.deepcopy(self.actor).eval(), self.z.detach().clone())


class _FixedTaskPolicy(nn.Module):
    """PEARL's actor on ``(s, z)`` for one fixed ``z``, as a plain ``obs -> action`` module."""

    def __init__(self, actor: SquashedGaussianActor, z: Tensor) -> None:
        super().__init__()
        self.actor = actor
        self.register_buffer("z", z)

    @torch.no_grad()
    def forward(self, obs: Tensor) -> Tensor:
        return self.actor.deterministic(torch.cat([obs.to(self.z.dtype), self.z.expand(obs.shape[0], -1)], dim=-1))


def _check_context(context: dict[str, Tensor], use_next_obs: bool) -> dict[str, Tensor]:
    keys = ["obs", "actions", "rewards"] + (["next_obs"] if use_next_obs else [])
    if not isinstance(context, dict) or any(k not in context for k in keys):
        got = sorted(context) if isinstance(context, dict) else type(context).__name__
        raise ValueError(f"OfflinePEARL.adapt: context must be a dict with keys {keys} (one task, [B, ...]); got {got}")
    if context["rewards"].dim() != 1:
        raise ValueError(
            "OfflinePEARL.adapt: context['rewards'] must have shape [B] (one task); got "
            f"{tuple(context['rewards'].shape)}. Pass one task's adaptation batch at a time."
        )
    return {k: torch.as_tensor(context[k]) for k in keys}


class PearlRolloutPolicy(nn.Module):
    """PEARL's task-conditioned actor with a product-of-Gaussians belief, behind the ``RolloutPolicy`` API.

    The belief is kept in natural parameters: ``precision = sum_n 1/var_n`` and ``weighted = sum_n mu_n/var_n``
    over the offline context, plus, per environment, the transitions observed online (when enabled). The
    actor acts with the posterior MEAN of ``z`` and its deterministic action ``tanh(mean)``. ``reset`` drops
    only the online part; ``dones`` do not reset the belief because all episodes of a rollout share the task.
    With no factors at all (``adapt(..., steps=0)`` before any observation) ``z`` is the prior mean 0.

    It is an ``nn.Module``, so ``torch.save(policy.state_dict())`` keeps the actor, encoder and offline belief.
    """

    def __init__(
        self,
        actor: SquashedGaussianActor,
        encoder: ContextEncoder,
        precision: Tensor,
        weighted_mean: Tensor,
        online_belief_update: bool = False,
    ) -> None:
        super().__init__()
        self.actor, self.encoder = actor, encoder
        self.online_belief_update = bool(online_belief_update)
        self.register_buffer("offline_precision", precision.detach().clone())
        self.register_buffer("offline_weighted_mean", weighted_mean.detach().clone())
        self.reset(1)

    def reset(self, num_envs: int) -> None:
        """Forget the online transitions; one online belief per environment."""
        latent = self.offline_precision.shape[-1]
        self._online_precision = torch.zeros(num_envs, latent)
        self._online_weighted = torch.zeros(num_envs, latent)

    def posterior(self) -> tuple[Tensor, Tensor]:
        """Per-environment posterior ``(mu, var)`` ``[num_envs, latent]``; the prior ``N(0, I)`` if empty."""
        precision = self.offline_precision + self._online_precision
        weighted = self.offline_weighted_mean + self._online_weighted
        empty = precision <= 0
        mu, var = gaussian_from_natural(torch.where(empty, torch.ones_like(precision), precision), weighted)
        return torch.where(empty, torch.zeros_like(mu), mu), torch.where(empty, torch.ones_like(var), var)

    @torch.no_grad()
    def forward(self, obs: Tensor) -> Tensor:
        """Deterministic actions ``[N, act_dim]`` for ``obs [N, obs_dim]`` (N = the number of environments)."""
        z = self.posterior()[0]
        if z.shape[0] != obs.shape[0]:
            raise ValueError(
                f"PearlRolloutPolicy: got {obs.shape[0]} observations for {z.shape[0]} environments; "
                "call reset(num_envs) first"
            )
        return self.actor.deterministic(torch.cat([obs.to(z.dtype), z], dim=-1))

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self(torch.as_tensor(np.asarray(obs), dtype=torch.float32)).numpy()

    @torch.no_grad()
    def observe(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        dones: np.ndarray,
    ) -> None:
        """Multiply each environment's new transition into its posterior (a no-op when online updates are off)."""
        if not self.online_belief_update:
            return
        transition = {
            "obs": torch.as_tensor(np.asarray(obs), dtype=torch.float32),
            "actions": torch.as_tensor(np.asarray(actions), dtype=torch.float32),
            "rewards": torch.as_tensor(np.asarray(rewards), dtype=torch.float32).reshape(-1),
            "next_obs": torch.as_tensor(np.asarray(next_obs), dtype=torch.float32),
        }
        # [N, 1, ...]: each environment contributes one factor to its own product.
        mu_n, var_n = self.encoder.factors({k: v.unsqueeze(1) for k, v in transition.items()})
        precision, weighted = factor_natural_params(mu_n, var_n)
        self._online_precision += precision
        self._online_weighted += weighted
