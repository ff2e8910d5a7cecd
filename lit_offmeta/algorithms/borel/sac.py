"""SAC on hyper-states (BOReL step 4, continuous actions): twin critics, soft targets, optional CQL penalty.

The project's one SAC (:mod:`lit_offmeta.algorithms.sac`: its losses, squashed-Gaussian actor and twin critic) on
the box ``[-1, 1]^act_dim``, the action space of every continuous family here; this module adds the fixed
temperature, the CQL penalty and the update order. Reference defaults (docs/REFERENCE.md, "RL on hyper-states"):
PointRobot sparse ``[128, 128]``, fixed alpha 0.01, gamma 0.9; Cheetah-Vel ``[256, 256]``, alpha 0.2, gamma 0.99; Adam
3e-4.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import torch
from lightning.pytorch import LightningModule

from lit_offmeta.algorithms.guards import TrainingGuards
from lit_offmeta.algorithms.sac import SquashedGaussianActor, TwinCritic, soft_td_target
from lit_offmeta.algorithms.sac import actor_loss as sac_actor_loss
from lit_offmeta.algorithms.sac import critic_loss as twin_critic_loss
from lit_offmeta.nn.polyak import polyak_update


# --- pure losses -------------------------------------------------------------------------------------------------
def cql_uniform_penalty(q_random: torch.Tensor, q_data: torch.Tensor, action_dim: int) -> torch.Tensor:
    """CQL(H) with uniform proposals: ``mean(logsumexp_k [Q(s, a_k) - log U] - log K - Q(s, a_data))``.

    ``a_k ~ U([-1, 1]^d)``, so ``log U = -d log 2`` (Kumar et al. 2020, arXiv:2006.04779, App. F, with only the
    uniform half of the importance-sampled estimator).

    Args:
        q_random: ``[K, B]`` critic values at ``K`` uniform actions; q_data: ``[B]``; action_dim: ``d``.
    """
    k = q_random.shape[0]
    log_density = -action_dim * math.log(2.0)
    return (torch.logsumexp(q_random - log_density, dim=0) - math.log(k) - q_data).mean()


class HyperStateSAC(TrainingGuards, LightningModule):
    """Soft actor-critic over hyper-states ``(s, mu, logvar)`` with a fixed temperature.

    Args:
        input_dim: hyper-state size.
        action_dim: action size (actions in ``[-1, 1]``).
        hidden: actor and critic hidden sizes.
        actor_lr, critic_lr: Adam learning rates.
        gamma: discount.
        tau: soft target rate.
        alpha: entropy temperature (fixed, as in the reference's PointRobot runs).
        cql_alpha: weight of the CQL penalty on each critic (0 disables it).
        cql_samples: uniform actions per state for the penalty.
    """

    def __init__(
        self,
        input_dim: int,
        action_dim: int,
        hidden: Sequence[int] = (256, 256),
        actor_lr: float = 3e-4,
        critic_lr: float = 3e-4,
        gamma: float = 0.99,
        tau: float = 0.005,
        alpha: float = 0.2,
        cql_alpha: float = 0.0,
        cql_samples: int = 10,
    ) -> None:
        super().__init__()
        for name, value in (("gamma", gamma), ("tau", tau)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"HyperStateSAC: {name} must be in (0, 1], got {value}")
        if alpha < 0 or cql_alpha < 0:
            raise ValueError(f"HyperStateSAC: alpha and cql_alpha must be >= 0, got {alpha}, {cql_alpha}")
        self.save_hyperparameters()
        # Own copy of the settings: under LightningCLI a module built inside another one receives the outer
        # module's hparams from save_hyperparameters(), so nested modules must not read self.hparams.
        self.cfg = SimpleNamespace(
            input_dim=input_dim,
            action_dim=action_dim,
            hidden=hidden,
            actor_lr=actor_lr,
            critic_lr=critic_lr,
            gamma=gamma,
            tau=tau,
            alpha=alpha,
            cql_alpha=cql_alpha,
            cql_samples=cql_samples,
        )
        self.automatic_optimization = False
        box = torch.ones(action_dim)
        self.actor = SquashedGaussianActor(input_dim, action_dim, hidden, -box, box)
        self.critics = TwinCritic(input_dim, action_dim, hidden)
        self.critics_target = TwinCritic(input_dim, action_dim, hidden)
        self.critics_target.load_state_dict(self.critics.state_dict())
        self.critics_target.requires_grad_(False)

    def critic_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hp = self.cfg
        obs, actions = batch["obs"], batch["actions"]
        with torch.no_grad():
            next_a, next_log_pi = self.actor.sample(batch["next_obs"])
            q1_t, q2_t = self.critics_target(batch["next_obs"], next_a)
            # terminals are true ends only (a goal reached is not one)
            target = soft_td_target(batch["rewards"], batch["terminals"], q1_t, q2_t, next_log_pi, hp.alpha, hp.gamma)
        q_data = self.critics(obs, actions)
        loss = twin_critic_loss(*q_data, target)
        metrics = {"loss_critic": loss.detach(), "q_mean": q_data[0].mean().detach()}
        if hp.cql_alpha > 0:
            k, b = hp.cql_samples, obs.shape[0]
            rand = torch.rand(k, b, hp.action_dim, device=obs.device) * 2 - 1
            obs_k = obs.unsqueeze(0).expand(k, -1, -1)
            penalty = sum(
                cql_uniform_penalty(q_random, q, hp.action_dim)
                for q_random, q in zip(self.critics(obs_k, rand), q_data)
            )
            loss = loss + hp.cql_alpha * penalty
            metrics["cql_penalty"] = penalty.detach()
        return loss, metrics

    def actor_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        action, log_pi = self.actor.sample(batch["obs"])
        q1, q2 = self.critics(batch["obs"], action)
        loss = sac_actor_loss(log_pi, q1, q2, self.cfg.alpha)
        return loss, {"loss_actor": loss.detach(), "entropy": -log_pi.mean().detach()}

    def update(
        self,
        batch: dict[str, torch.Tensor],
        optimizers: Sequence[torch.optim.Optimizer],
        backward: Callable[[torch.Tensor], None],
    ) -> dict[str, torch.Tensor]:
        """Critic step, actor step (critics held fixed), then the soft target update, in the paper's order."""
        critic_opt, actor_opt = optimizers
        loss_c, metrics = self.critic_loss(batch)
        critic_opt.zero_grad()
        backward(loss_c)
        critic_opt.step()
        self.critics.requires_grad_(False)
        loss_a, metrics_a = self.actor_loss(batch)
        actor_opt.zero_grad()
        backward(loss_a)
        actor_opt.step()
        self.critics.requires_grad_(True)
        polyak_update(self.critics_target.parameters(), self.critics.parameters(), self.cfg.tau)
        return {**metrics, **metrics_a}

    @torch.no_grad()
    def act(self, hyper_obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Actions ``[N, d]`` in ``[-1, 1]``: the squashed mean when ``deterministic`` (the evaluation protocol), else
        a draw from the policy."""
        return self.actor.deterministic(hyper_obs) if deterministic else self.actor.sample(hyper_obs)[0]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        metrics = self.update(batch, self.optimizers(), self.manual_backward)
        self.log_dict({f"train/rl/{k}": v for k, v in metrics.items()})

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            torch.optim.Adam(self.critics.parameters(), lr=self.cfg.critic_lr),
            torch.optim.Adam(self.actor.parameters(), lr=self.cfg.actor_lr),
        ]
