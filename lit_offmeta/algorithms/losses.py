r"""MACAW's losses as pure functions (Mitchell et al. 2021, "Offline Meta-Reinforcement Learning with
Advantage Weighting", arXiv:2008.06043).

Tensors and floats in, a scalar loss out; nothing here steps an optimizer or writes into its inputs. All
functions work on one task's batch ``[B, ...]`` and are vmapped over tasks by :mod:`lit_offmeta.meta`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lit_offmeta.nn.networks import POLICY_STD, gaussian_log_prob


def mc_value_target(mc_returns: Tensor, bootstrap_discounts: Tensor, bootstrap_values: Tensor) -> Tensor:
    r"""Monte-Carlo value target with bootstrapping where the stored trajectory was cut.

    .. math:: R_D(s_t) = \sum_{k=t}^{T-1} \gamma^{k-t} r_k + \gamma^{T-t} V(s_T)\,[\text{cut at } T]

    ``bootstrap_discounts`` already holds :math:`\gamma^{T-t}` (0 where the episode truly terminated), so
    the target is ``mc_returns + bootstrap_discounts * bootstrap_values``; ``bootstrap_values`` are treated
    as constants (detached), as a regression target must be.

    Args:
        mc_returns: ``[B]`` discounted reward-to-go inside the stored trajectory.
        bootstrap_discounts: ``[B]``.
        bootstrap_values: ``[B]`` value estimates of the trajectories' last states.

    Returns:
        ``[B]`` targets.
    """
    return mc_returns + bootstrap_discounts * bootstrap_values.detach()


def mc_value_loss(values: Tensor, targets: Tensor) -> Tensor:
    r"""Supervised Monte-Carlo value loss, Eq. (2):

    .. math:: \mathcal{L}_V(\phi, D) = \mathbb{E}_{s,a \sim D}\big[(V_\phi(s) - R_D(s, a))^2\big]

    Args:
        values: ``[B]`` predictions :math:`V_\phi(s)`.
        targets: ``[B]`` Monte-Carlo targets (see :func:`mc_value_target`), treated as constants.

    Returns:
        Scalar mean squared error.
    """
    return ((values - targets.detach()) ** 2).mean()


def awr_weights(advantages: Tensor, temperature: float = 1.0, max_weight: float = 20.0, eps: float = 1e-8) -> Tensor:
    r"""Advantage weights of AWR as MACAW computes them (App. E; reference code):

    .. math:: w = \exp\Big(\min\big(\tfrac{\tilde A}{T}, \log w_{\max}\big)\Big), \quad
              \tilde A = \frac{A - \operatorname{mean}(A)}{\operatorname{std}(A) + \epsilon}

    The advantages are normalised over the batch (population std), divided by the temperature, and the weight
    is clipped above at ``max_weight`` (no lower clip). The result is detached: the advantage comes from the
    adapted value function and is a constant for the policy.

    Args:
        advantages: ``[B]`` raw advantages :math:`R_D(s, a) - V_{\phi_i}(s)`.
        temperature: :math:`T > 0`.
        max_weight: :math:`w_{\max} > 0`.
        eps: added to the std so a constant batch gives weights of 1.

    Returns:
        ``[B]`` weights in ``(0, max_weight]``.
    """
    advantages = advantages.detach()
    normalised = (advantages - advantages.mean()) / (advantages.std(correction=0) + eps)
    return torch.exp(torch.clamp(normalised / temperature, max=math.log(max_weight)))


def awr_loss(log_probs: Tensor, advantages: Tensor, temperature: float = 1.0, max_weight: float = 20.0) -> Tensor:
    r"""Advantage-weighted regression loss, Eq. (1):

    .. math:: \mathcal{L}_{AWR}(\theta, \phi_i, D) = \mathbb{E}_{s,a \sim D}\big[-w(s, a) \log \pi_\theta(a|s)\big]

    with :math:`w` from :func:`awr_weights`.

    Args:
        log_probs: ``[B]`` :math:`\log \pi_\theta(a|s)`.
        advantages: ``[B]`` raw advantages (detached inside).
        temperature: AWR temperature.
        max_weight: weight clip.

    Returns:
        Scalar loss.
    """
    return -(awr_weights(advantages, temperature, max_weight) * log_probs).mean()


def advantage_regression_loss(predicted_advantages: Tensor, advantages: Tensor) -> Tensor:
    r"""Advantage regression loss of MACAW's enriched policy update, Eq. (4):

    .. math:: \mathcal{L}_{ADV}(\theta, \phi_i, D) = \mathbb{E}_{s,a \sim D}
              \big[(\hat A_\theta(s, a) - (R_D(s, a) - V_{\phi_i}(s)))^2\big]

    on the RAW (unnormalised) advantage, a constant for the policy.

    Args:
        predicted_advantages: ``[B]`` :math:`\hat A_\theta(s, a)` from the policy's advantage head.
        advantages: ``[B]`` raw advantages.

    Returns:
        Scalar mean squared error.
    """
    return ((predicted_advantages - advantages.detach()) ** 2).mean()


def inner_policy_loss(awr: Tensor, advantage_regression: Tensor, lam: Tensor | float) -> Tensor:
    r"""MACAW's enriched inner-loop policy loss, Eq. (3):

    .. math:: \mathcal{L}_\pi = \mathcal{L}_{AWR} + \lambda\, \mathcal{L}_{ADV}

    Args:
        awr: scalar :math:`\mathcal{L}_{AWR}` on the support batch.
        advantage_regression: scalar :math:`\mathcal{L}_{ADV}` on the support batch.
        lam: :math:`\lambda` (MACAW learns it as ``softplus(raw)``; gradients flow into it).

    Returns:
        Scalar loss.
    """
    return awr + lam * advantage_regression


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
