"""Soft Actor-Critic (Haarnoja et al. 2018, arXiv:1812.05905), pure torch: the MuJoCo behaviour agent.

The update is the project's one SAC update (:func:`lit_offmeta.algorithms.sac.sac_update`: soft TD target under
``no_grad``, twin-critic regression, actor, Polyak averaging of the target critics), then a step of the learned
temperature; this module adds the agent (config, optimisers, temperature). MACAW
(arXiv:2008.06043, App. D) collected its data with per-task SAC (TD3 for Cheetah-Vel); we use SAC throughout,
conditioned on the task (see
:mod:`lit_offmeta.collect.sac_collect`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from lit_offmeta.algorithms.sac import SquashedGaussianActor, TwinCritic, sac_update, temperature_loss

# --- agent ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters (defaults: Haarnoja et al. 2018 / CleanRL, 256x256 networks).

    Attributes:
        hidden: hidden widths of actor and critics.
        actor_lr, critic_lr, alpha_lr: Adam learning rates.
        discount: gamma.
        tau: Polyak coefficient of the target critics.
        batch_size: transitions per update.
        learning_starts: environment steps with uniform random actions before the first update.
        updates_per_step: gradient updates per environment step (0.5: one update every two steps).
        initial_alpha: starting entropy temperature.
        autotune_alpha: learn alpha towards ``target_entropy`` (``-act_dim`` when ``None``).
        target_entropy: see ``autotune_alpha``.
        replay_capacity: most recent transitions the agent samples its updates from (the recorded datasets
            keep every transition regardless).
        obs_exclude: observation indices hidden from the agent (e.g. Cheetah's absolute torso x, which
            grows without bound and says nothing about the task); the datasets keep them.
        torch_threads: intra-op threads while collecting (1 suits small networks on a shared CPU).
    """

    hidden: list[int] = field(default_factory=lambda: [256, 256])
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    discount: float = 0.99
    tau: float = 0.005
    batch_size: int = 256
    learning_starts: int = 5000
    updates_per_step: float = 0.5
    initial_alpha: float = 1.0
    autotune_alpha: bool = True
    target_entropy: float | None = None
    replay_capacity: int = 1_000_000
    obs_exclude: list[int] = field(default_factory=list)
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if not self.hidden or any(int(w) < 1 for w in self.hidden):
            raise ValueError(f"SACConfig: hidden must be a non-empty list of positive widths, got {self.hidden}")
        for name in ("actor_lr", "critic_lr", "alpha_lr", "initial_alpha", "updates_per_step"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SACConfig: {name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.discount <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError(f"SACConfig: need discount in [0, 1] and tau in (0, 1], got {self.discount}, {self.tau}")
        if self.batch_size < 1 or self.learning_starts < 0 or self.torch_threads < 1 or self.replay_capacity < 1:
            raise ValueError(
                f"SACConfig: need batch_size >= 1, learning_starts >= 0, torch_threads >= 1, replay_capacity >= 1, "
                f"got {self.batch_size}, {self.learning_starts}, {self.torch_threads}, {self.replay_capacity}"
            )


class SAC(nn.Module):
    """Actor, twin critics with Polyak-averaged targets, and a learned temperature.

    Args:
        obs_dim: size of the agent's input (observation, plus task features for a task-conditioned agent).
        action_dim: action size.
        action_low, action_high: the action box.
        config: hyperparameters.
    """

    def __init__(self, obs_dim: int, action_dim: int, action_low: Sequence[float], action_high: Sequence[float],
                 config: SACConfig):
        super().__init__()
        self.config = config
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        self.actor = SquashedGaussianActor(obs_dim, action_dim, config.hidden, low, high)
        self.critic = TwinCritic(obs_dim, action_dim, config.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config.initial_alpha)))
        self.target_entropy = -float(action_dim) if config.target_entropy is None else config.target_entropy
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.alpha_lr)

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.exp().detach()

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Actions ``[B, act_dim]`` for observations ``[B, obs_dim]``."""
        return self.actor.deterministic(obs) if deterministic else self.actor.sample(obs)[0]

    def update(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """One SAC step on ``batch`` (``obs``, ``actions``, ``rewards``, ``next_obs``, ``terminals``).

        Returns:
            Float diagnostics keyed ``losses/...`` and ``charts/...``.
        """
        alpha = self.alpha
        step = sac_update(self.actor, self.critic, self.critic_target, self.critic_optimizer, self.actor_optimizer,
                          batch, alpha, self.config.discount, self.config.tau)
        metrics = {"losses/critic": step.loss_critic.item(), "losses/actor": step.loss_actor.item(),
                   "charts/q_mean": step.q1.mean().item(), "charts/alpha": alpha.item()}
        if self.config.autotune_alpha:
            loss_alpha = temperature_loss(self.log_alpha, step.log_pi, self.target_entropy)
            self.alpha_optimizer.zero_grad(set_to_none=True)
            loss_alpha.backward()
            self.alpha_optimizer.step()
            metrics["losses/alpha"] = loss_alpha.item()
        return metrics
