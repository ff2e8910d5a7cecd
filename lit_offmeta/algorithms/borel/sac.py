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
from lit_offmeta.algorithms.sac import SquashedGaussianActor, TwinCritic, sac_update


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

    def cql_penalty(self, obs: torch.Tensor, q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
        """The CQL penalty summed over both critics, at ``cql_samples`` uniform actions per state of ``obs``."""
        k, b = self.cfg.cql_samples, obs.shape[0]
        rand = torch.rand(k, b, self.cfg.action_dim, device=obs.device) * 2 - 1
        obs_k = obs.unsqueeze(0).expand(k, -1, -1)
        return sum(
            cql_uniform_penalty(q_random, q, self.cfg.action_dim)
            for q_random, q in zip(self.critics(obs_k, rand), (q1, q2))
        )

    def update(
        self,
        batch: dict[str, torch.Tensor],
        optimizers: Sequence[torch.optim.Optimizer],
        backward: Callable[[torch.Tensor], None],
    ) -> dict[str, torch.Tensor]:
        """One :func:`~lit_offmeta.algorithms.sac.sac_update` (critic step, actor step with the critics held fixed,
        soft target update), the CQL penalty on the critics when ``cql_alpha > 0``."""
        hp = self.cfg
        critic_opt, actor_opt = optimizers
        metrics: dict[str, torch.Tensor] = {}

        def penalty(obs: torch.Tensor, q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
            value = self.cql_penalty(obs, q1, q2)
            metrics["cql_penalty"] = value.detach()
            return hp.cql_alpha * value

        step = sac_update(self.actor, self.critics, self.critics_target, critic_opt, actor_opt, batch, hp.alpha,
                          hp.gamma, hp.tau, critic_penalty=penalty if hp.cql_alpha > 0 else None, backward=backward)
        return {"loss_critic": step.loss_critic, "q_mean": step.q1.mean(), **metrics, "loss_actor": step.loss_actor,
                "entropy": -step.log_pi.mean()}

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
