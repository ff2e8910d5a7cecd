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

* SAC with twin Q-functions and target Q-networks (Haarnoja et al. 2018b, the SAC everyone uses now) instead of
  PEARL's older SAC with a separate state-value network; the task-inference part is unchanged.
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
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.func import functional_call

from lit_offmeta.data.batch import TaskBatch
from lit_offmeta.nn.context_encoder import (
    ContextEncoder,
    factor_natural_params,
    gaussian_from_natural,
    kl_to_standard_normal,
    mlp,
)

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


# --- losses (pure functions) ---------------------------------------------------------------------------------


def pearl_kl_loss(mu: Tensor, var: Tensor, kl_weight: float) -> Tensor:
    """PEARL's information-bottleneck term: ``kl_weight * sum_k KL(q(z | c_k) || N(0, I))``.

    .. math::
        \\mathcal L_{KL} = \\beta \\sum_k D_{KL}\\big(q_\\phi(z \\mid c^{\\mathcal T_k}) \\,\\|\\, \\mathcal N(0, I)\\big)

    Summed over the K tasks of the batch as in PEARL's code (Rakelly et al. 2019, Eq. 2, beta = 0.1 there).

    Args:
        mu: posterior means ``[K, latent]``.
        var: posterior variances ``[K, latent]``.
        kl_weight: ``beta``.

    Returns:
        Scalar loss.
    """
    return kl_weight * kl_to_standard_normal(mu, var).sum()


def soft_bellman_target(
    rewards: Tensor,
    terminals: Tensor,
    next_q_min: Tensor,
    next_log_pi: Tensor,
    alpha: float | Tensor,
    gamma: float,
    reward_scale: float = 1.0,
) -> Tensor:
    """SAC's soft Bellman target (Haarnoja et al. 2018, Eq. 3 with the entropy bonus inside the next value).

    .. math::
        y = s_r r + \\gamma (1 - d) \\big(\\min_i Q_{\\bar\\theta_i}(s', a') - \\alpha \\log\\pi(a' \\mid s')\\big),
        \\quad a' \\sim \\pi(\\cdot \\mid s')

    ``terminals`` marks TRUE terminal states only: at a time-limit cut the target still bootstraps.

    Args:
        rewards, terminals, next_q_min, next_log_pi: ``[...]`` tensors of one shape.
        alpha: entropy temperature.
        gamma: discount.
        reward_scale: ``s_r``.

    Returns:
        Targets ``[...]`` (compute under ``no_grad``).
    """
    return reward_scale * rewards + gamma * (1.0 - terminals) * (next_q_min - alpha * next_log_pi)


def twin_q_loss(q1: Tensor, q2: Tensor, target: Tensor) -> Tensor:
    """Twin-critic regression: ``mean((Q_1 - y)^2) + mean((Q_2 - y)^2)`` (SAC, Haarnoja et al. 2018b, Eq. 5)."""
    return F.mse_loss(q1, target) + F.mse_loss(q2, target)


def sac_actor_loss(log_pi: Tensor, q_min: Tensor, alpha: float | Tensor) -> Tensor:
    """SAC's policy loss ``mean(alpha * log pi(a|s) - min_i Q_i(s, a))``, ``a ~ pi`` reparameterised (Eq. 7)."""
    return (alpha * log_pi - q_min).mean()


def sac_alpha_loss(log_alpha: Tensor, log_pi: Tensor, target_entropy: float) -> Tensor:
    """Temperature loss ``-mean(log_alpha * (log pi + H_target))`` (SAC, Haarnoja et al. 2018b, Eq. 18)."""
    return -(log_alpha * (log_pi.detach() + target_entropy)).mean()


# --- networks ------------------------------------------------------------------------------------------------


class TanhGaussianPolicy(nn.Module):
    """``a = tanh(u)``, ``u ~ N(mean(x), std(x))``; ``x`` is the state concatenated with ``z``.

    Args:
        in_dim: input size (``obs_dim + latent_dim``).
        action_dim: action size; actions live in ``[-1, 1]``.
        hidden: hidden widths.
    """

    def __init__(self, in_dim: int, action_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.net = mlp(in_dim, list(hidden), 2 * action_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-tanh mean and log-std ``[..., action_dim]``."""
        mean, log_std = self.net(x).split(self.action_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Reparameterised action ``[..., action_dim]`` and its log-density ``[...]`` with the tanh correction."""
        mean, log_std = self(x)
        std = log_std.exp()
        u = mean + std * torch.randn_like(mean)
        log_prob = (-0.5 * ((u - mean) / std).square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), the numerically stable form.
        log_prob = log_prob - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return torch.tanh(u), log_prob

    def mean_action(self, x: Tensor) -> Tensor:
        """Deterministic action ``tanh(mean)`` used for evaluation."""
        return torch.tanh(self(x)[0])


# --- the module ----------------------------------------------------------------------------------------------


class OfflinePEARL(LightningModule):
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
            into its posterior (PEARL's online task inference) or keeps the offline one fixed.

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
        online_belief_update: bool = True,
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
        self.policy = TanhGaussianPolicy(obs_dim + latent_dim, action_dim, hidden)
        q_in = obs_dim + action_dim + latent_dim
        self.q1, self.q2 = mlp(q_in, hidden, 1), mlp(q_in, hidden, 1)
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        for p in (*self.q1_target.parameters(), *self.q2_target.parameters()):
            p.requires_grad_(False)
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

    def _q_pair(self, obs: Tensor, actions: Tensor, z: Tensor, q1: nn.Module, q2: nn.Module) -> tuple[Tensor, Tensor]:
        x = torch.cat([obs, actions, z], dim=-1)
        return q1(x).squeeze(-1), q2(x).squeeze(-1)

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
        task_z_detached = task_z.detach()
        obs, actions, next_obs = query["obs"], query["actions"].to(query["obs"].dtype), query["next_obs"]
        alpha = self.alpha.detach()

        # Critic (+ encoder through z): soft Bellman regression on the task's own transitions.
        with torch.no_grad():
            policy_in_next = torch.cat([next_obs, task_z_detached], dim=-1)
            next_actions, next_log_pi = self.policy.sample(policy_in_next)
            next_q1, next_q2 = self._q_pair(next_obs, next_actions, task_z_detached, self.q1_target, self.q2_target)
            target = soft_bellman_target(
                query["rewards"], query["terminals"], torch.minimum(next_q1, next_q2), next_log_pi, alpha,
                self.hparams.gamma, self.hparams.reward_scale,
            )
        q1, q2 = self._q_pair(obs, actions, task_z, self.q1, self.q2)
        loss_critic = twin_q_loss(q1, q2, target)
        loss_kl = pearl_kl_loss(mu, var, self.hparams.kl_weight)

        # Actor: z detached (PEARL trains the encoder only through the critic); the critics enter with detached
        # parameters so the actor loss cannot move them.
        new_actions, log_pi = self.policy.sample(torch.cat([obs, task_z_detached], dim=-1))
        q_in = torch.cat([obs, new_actions, task_z_detached], dim=-1)
        q1_pi = functional_call(self.q1, {n: p.detach() for n, p in self.q1.named_parameters()}, (q_in,))
        q2_pi = functional_call(self.q2, {n: p.detach() for n, p in self.q2.named_parameters()}, (q_in,))
        loss_actor = sac_actor_loss(log_pi, torch.minimum(q1_pi, q2_pi).squeeze(-1), alpha)

        loss = loss_critic + loss_kl + loss_actor
        out = {"loss_critic": loss_critic, "loss_kl": loss_kl, "loss_actor": loss_actor}
        if self.hparams.learn_alpha:
            out["loss_alpha"] = sac_alpha_loss(self.log_alpha, log_pi, self.target_entropy)
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
        self.log_dict({f"train/{k}": v.detach() for k, v in out.items() if k != "loss"}, batch_size=batch.num_tasks)
        self.log("train/loss", out["loss"].detach(), prog_bar=True, batch_size=batch.num_tasks)
        return out["loss"]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Polyak averaging of the target critics, after the optimizer step of this batch.
        with torch.no_grad():
            for target, source in ((self.q1_target, self.q1), (self.q2_target, self.q2)):
                for pt, ps in zip(target.parameters(), source.parameters()):
                    pt.lerp_(ps, self.hparams.tau)

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
        next_actions, next_log_pi = self.policy.sample(torch.cat([query["next_obs"], z], dim=-1))
        next_q = torch.minimum(*self._q_pair(query["next_obs"], next_actions, z, self.q1_target, self.q2_target))
        target = soft_bellman_target(
            query["rewards"], query["terminals"], next_q, next_log_pi, self.alpha, self.hparams.gamma,
            self.hparams.reward_scale,
        )
        q1, q2 = self._q_pair(query["obs"], query["actions"].to(query["obs"].dtype), z, self.q1, self.q2)
        return twin_q_loss(q1, q2, target)

    def validation_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = [
            {"params": list(self.encoder.parameters()), "lr": self.hparams.lr_encoder},
            {"params": [*self.q1.parameters(), *self.q2.parameters()], "lr": self.hparams.lr_critic},
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


def check_sizes_against_datamodule(module: LightningModule, datamodule: Any, obs_dim: int, action_dim: int) -> None:
    """Raise a clear ``ValueError`` when the module's sizes disagree with the datamodule's (if it has them)."""
    if datamodule is None:
        return
    family = getattr(datamodule, "family", None)
    if family is not None and getattr(family, "discrete_actions", False):
        raise ValueError(
            f"{type(module).__name__} needs continuous actions, but family {family.name!r} has discrete actions"
        )
    for name, mine in (("obs_dim", obs_dim), ("action_dim", action_dim)):
        theirs = getattr(datamodule, name, None)
        if theirs is not None and int(theirs) != int(mine):
            raise ValueError(
                f"{type(module).__name__}: model.{name}={mine} but the datamodule's data has {name}={theirs}; "
                f"set `model.init_args.{name}: {theirs}` in the config"
            )


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
        actor: TanhGaussianPolicy,
        encoder: ContextEncoder,
        precision: Tensor,
        weighted_mean: Tensor,
        online_belief_update: bool = True,
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
        return self.actor.mean_action(torch.cat([obs.to(z.dtype), z], dim=-1))

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
