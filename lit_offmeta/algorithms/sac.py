"""Soft Actor-Critic's math (Haarnoja et al. 2018, arXiv:1812.05905): the losses, the two networks and one update.

One copy shared by every SAC in the project: the MuJoCo behaviour agent (:mod:`lit_offmeta.collect.sac`),
offline PEARL's fine-tuning (:mod:`lit_offmeta.algorithms.pearl`) and BOReL's SAC on hyper-states. Each loss is a
small pure function (tensors in, scalar out) so that the tests can check it against a hand computation;
:func:`sac_update` is the order in which those agents apply them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lit_offmeta.nn.mlp import mlp
from lit_offmeta.nn.polyak import polyak_update

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
"""Range of the actor's log standard deviation (squashed into it with tanh, as CleanRL does)."""


# --- losses -----------------------------------------------------------------------------------------------


def soft_td_target(
    rewards: Tensor,
    terminals: Tensor,
    next_q1: Tensor,
    next_q2: Tensor,
    next_log_pi: Tensor,
    alpha: float | Tensor,
    discount: float,
) -> Tensor:
    r"""Soft Bellman target :math:`y = r + \gamma (1 - d) (\min_i Q'_i(s', a') - \alpha \log\pi(a'|s'))`.

    Eq. (3) of Haarnoja et al. 2018 with the twin-critic minimum (Fujimoto et al. 2018). ``terminals`` is 1
    only at a true end of the MDP; a time-limit cut keeps bootstrapping.

    Args:
        rewards, terminals, next_q1, next_q2, next_log_pi: ``[B]``; ``a' ~ pi(.|s')``.
        alpha: entropy temperature.
        discount: gamma.

    Returns:
        ``[B]`` targets (no gradient is taken through them by the caller).
    """
    soft_value = torch.minimum(next_q1, next_q2) - alpha * next_log_pi
    return rewards + discount * (1.0 - terminals) * soft_value


def critic_loss(q1: Tensor, q2: Tensor, target: Tensor) -> Tensor:
    r"""Twin-critic regression :math:`\mathrm{mean}((Q_1 - y)^2) + \mathrm{mean}((Q_2 - y)^2)`; inputs ``[B]``."""
    return F.mse_loss(q1, target) + F.mse_loss(q2, target)


def actor_loss(log_pi: Tensor, q1_pi: Tensor, q2_pi: Tensor, alpha: float | Tensor) -> Tensor:
    r"""Policy loss :math:`\mathrm{mean}(\alpha \log\pi(a|s) - \min_i Q_i(s, a))`, ``a ~ pi`` reparameterised.

    Eq. (7) of Haarnoja et al. 2018; inputs ``[B]``.
    """
    return (alpha * log_pi - torch.minimum(q1_pi, q2_pi)).mean()


def temperature_loss(log_alpha: Tensor, log_pi: Tensor, target_entropy: float) -> Tensor:
    r"""Temperature loss :math:`\mathrm{mean}(-\alpha (\log\pi(a|s) + \bar{\mathcal{H}}))`, ``alpha = exp(log_alpha)``.

    Eq. (18) of Haarnoja et al. 2018: alpha grows when the policy's entropy falls below the target
    ``target_entropy`` (``-act_dim`` by default). ``log_pi`` ``[B]`` is treated as a constant.
    """
    return -(log_alpha.exp() * (log_pi.detach() + target_entropy)).mean()


# --- networks ---------------------------------------------------------------------------------------------


def squashed_gaussian_log_prob(mean: Tensor, log_std: Tensor, actions: Tensor, scale: Tensor, bias: Tensor,
                               clip: float = 1e-4) -> Tensor:
    """Log-density ``[B]`` of ``actions`` under ``scale * tanh(N(mean, exp(log_std))) + bias``, tanh-corrected as in
    :meth:`SquashedGaussianActor.sample`; actions are pulled ``clip`` inside the box's edges, where the density is
    unbounded."""
    squashed = ((actions - bias) / scale).clamp(-1.0 + clip, 1.0 - clip)
    normal = torch.distributions.Normal(mean, log_std.exp(), validate_args=False)
    log_pi = normal.log_prob(torch.atanh(squashed)) - torch.log(scale * (1.0 - squashed.pow(2)) + 1e-6)
    return log_pi.sum(-1)


class SquashedGaussianActor(nn.Module):
    """A Gaussian policy squashed by tanh into the action box ``[low, high]``.

    Args:
        obs_dim: input size.
        action_dim: action size.
        hidden: hidden layer widths.
        action_low, action_high: the action box, ``[action_dim]`` each.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], action_low: Tensor, action_high: Tensor):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * action_dim)
        self.register_buffer("action_scale", (action_high - action_low) / 2.0)
        self.register_buffer("action_bias", (action_high + action_low) / 2.0)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log standard deviation of the pre-squash Gaussian, ``[B, act_dim]`` each."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1.0)
        return mean, log_std

    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """A reparameterised action ``[B, act_dim]`` and its log-probability ``[B]`` (tanh-corrected)."""
        mean, log_std = self(obs)
        normal = torch.distributions.Normal(mean, log_std.exp(), validate_args=False)  # NaN: left to the guard
        pre_tanh = normal.rsample()
        squashed = torch.tanh(pre_tanh)
        # Change of variables a = scale * tanh(u) + bias: log pi(a) = log N(u) - sum log(scale * (1 - tanh(u)^2)).
        log_pi = normal.log_prob(pre_tanh) - torch.log(self.action_scale * (1.0 - squashed.pow(2)) + 1e-6)
        return squashed * self.action_scale + self.action_bias, log_pi.sum(-1)

    def log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Log-density ``[B]`` of given ``actions`` (e.g. the dataset's, for a behaviour model); see
        :func:`squashed_gaussian_log_prob`."""
        return squashed_gaussian_log_prob(*self(obs), actions, self.action_scale, self.action_bias)

    def deterministic(self, obs: Tensor) -> Tensor:
        """The squashed mean action ``[B, act_dim]``."""
        mean, _ = self(obs)
        return torch.tanh(mean) * self.action_scale + self.action_bias


class TwinCritic(nn.Module):
    """Two independent Q-networks ``Q_i(s, a)``, each ``[B]``."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.q1 = mlp(obs_dim + action_dim, hidden, 1)
        self.q2 = mlp(obs_dim + action_dim, hidden, 1)

    def forward(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([obs, actions], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


# --- the update -------------------------------------------------------------------------------------------


class SACUpdate(NamedTuple):
    """What one :func:`sac_update` computed, detached: the two losses (before their steps), ``Q_1(s, a)`` ``[B]``
    on the batch's actions, and ``log pi(a|s)`` ``[B]`` of the actor's fresh actions (for a temperature step)."""

    loss_critic: Tensor
    loss_actor: Tensor
    q1: Tensor
    log_pi: Tensor


def sac_update(
    actor: SquashedGaussianActor,
    critic: TwinCritic,
    critic_target: TwinCritic,
    critic_optimizer: torch.optim.Optimizer,
    actor_optimizer: torch.optim.Optimizer,
    batch: dict[str, Tensor],
    alpha: float | Tensor,
    discount: float,
    tau: float,
    critic_penalty: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
    backward: Callable[[Tensor], None] = Tensor.backward,
) -> SACUpdate:
    """One SAC update in the paper's order: soft TD target from the target critics (no gradient), a twin-critic
    step, an actor step with the critics held fixed, then Polyak averaging of the target critics.

    Args:
        actor, critic, critic_target: the networks; ``critic_target`` is updated in place.
        critic_optimizer, actor_optimizer: their optimisers.
        batch: ``obs``, ``actions``, ``next_obs`` ``[B, ...]`` and ``rewards``, ``terminals`` ``[B]`` (1 only at
            a true end of the MDP).
        alpha: entropy temperature, a constant here (a learned one is stepped by the caller with ``log_pi``).
        discount: gamma.
        tau: Polyak rate.
        critic_penalty: ``(obs, q1, q2) -> scalar`` added to the critic loss (e.g. CQL's, weighted); ``None``: none.
        backward: how a loss is back-propagated (a LightningModule's ``manual_backward``, so that precision and
            strategy plug-ins see it).
    """
    obs = batch["obs"]
    with torch.no_grad():
        next_actions, next_log_pi = actor.sample(batch["next_obs"])
        target = soft_td_target(batch["rewards"], batch["terminals"], *critic_target(batch["next_obs"], next_actions),
                                next_log_pi, alpha, discount)
    q1, q2 = critic(obs, batch["actions"])
    loss_critic = critic_loss(q1, q2, target)
    loss = loss_critic if critic_penalty is None else loss_critic + critic_penalty(obs, q1, q2)
    critic_optimizer.zero_grad(set_to_none=True)
    backward(loss)
    critic_optimizer.step()

    actions_pi, log_pi = actor.sample(obs)
    critic.requires_grad_(False)  # the actor step must not leave gradients on the critics
    try:
        loss_actor = actor_loss(log_pi, *critic(obs, actions_pi), alpha)
    finally:
        critic.requires_grad_(True)
    actor_optimizer.zero_grad(set_to_none=True)
    backward(loss_actor)
    actor_optimizer.step()
    polyak_update(critic_target.parameters(), critic.parameters(), tau)
    return SACUpdate(loss_critic.detach(), loss_actor.detach(), q1.detach(), log_pi.detach())
