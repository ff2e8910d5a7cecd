"""PEARL's probabilistic context encoder: a permutation-invariant Gaussian belief over a task latent ``z``.

Each context transition ``c_n`` is mapped independently by an MLP to a Gaussian factor
``Psi(z | c_n) = N(mu_n, sigma_n^2)``; the posterior is their normalised product (Rakelly et al. 2019,
arXiv:1903.08254, Sec. 4.1, Eq. 3 / Appendix A):

.. math::
    q(z \\mid c_{1:N}) \\propto \\prod_n \\mathcal N(z; \\mu_n, \\sigma_n^2), \\quad
    \\sigma^2 = \\Big(\\sum_n \\sigma_n^{-2}\\Big)^{-1}, \\quad
    \\mu = \\sigma^2 \\sum_n \\sigma_n^{-2} \\mu_n .

A product of Gaussians does not depend on the order of the transitions and can be updated one transition
at a time by adding natural parameters (precision and precision-weighted mean); the online belief update of
:class:`lit_offmeta.algorithms.pearl.PearlRolloutPolicy` relies on exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_offmeta.nn.mlp import mlp

MIN_VARIANCE = 1e-7
"""Floor on each factor's variance (as PEARL's public code): a factor with variance -> 0 would make the
product's precision infinite."""




def factor_natural_params(mu_n: Tensor, var_n: Tensor) -> tuple[Tensor, Tensor]:
    """Sum the natural parameters of Gaussian factors over the context axis (the second to last).

    Args:
        mu_n: factor means ``[..., N, latent]``.
        var_n: factor variances ``[..., N, latent]`` (positive).

    Returns:
        ``(precision_sum, weighted_mean_sum)``, each ``[..., latent]``: ``sum_n 1/var_n`` and
        ``sum_n mu_n/var_n``. Adding these for two sets of transitions gives the natural parameters of
        the product over their union.
    """
    precision = 1.0 / var_n.clamp_min(MIN_VARIANCE)
    return precision.sum(-2), (mu_n * precision).sum(-2)


def gaussian_from_natural(precision_sum: Tensor, weighted_mean_sum: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance of a product of Gaussians from its summed natural parameters."""
    var = 1.0 / precision_sum
    return var * weighted_mean_sum, var


def product_of_gaussians(mu_n: Tensor, var_n: Tensor) -> tuple[Tensor, Tensor]:
    """The normalised product of N diagonal Gaussian factors (PEARL, Rakelly et al. 2019, Eq. 3).

    .. math::
        \\sigma^2 = \\Big(\\sum_n \\sigma_n^{-2}\\Big)^{-1}, \\qquad \\mu = \\sigma^2 \\sum_n \\sigma_n^{-2} \\mu_n

    Args:
        mu_n: factor means ``[..., N, latent]``.
        var_n: factor variances ``[..., N, latent]``.

    Returns:
        ``(mu, var)``, each ``[..., latent]``.
    """
    return gaussian_from_natural(*factor_natural_params(mu_n, var_n))


def kl_to_standard_normal(mu: Tensor, var: Tensor) -> Tensor:
    """``KL(N(mu, diag(var)) || N(0, I))`` summed over the latent axis (PEARL's information bottleneck).

    .. math::
        D_{KL} = \\tfrac12 \\sum_j \\big(\\sigma_j^2 + \\mu_j^2 - 1 - \\log \\sigma_j^2\\big)

    Args:
        mu: posterior means ``[..., latent]``.
        var: posterior variances ``[..., latent]``.

    Returns:
        KL divergences ``[...]`` (one per posterior).
    """
    return 0.5 * (var + mu.square() - 1.0 - var.log()).sum(-1)


def transition_features(context: dict[str, Tensor], use_next_obs: bool, owner: str = "context encoder") -> Tensor:
    """``concat(obs, action, reward[, next_obs])`` per transition, ``[..., N, in_dim]``, from a transition dict with
    leading dims ``[..., N]``; a ``ValueError`` naming ``owner`` and the missing keys otherwise."""
    keys = ["obs", "actions", "rewards"] + (["next_obs"] if use_next_obs else [])
    missing = [k for k in keys if k not in context]
    if missing:
        raise ValueError(f"{owner}: context lacks key(s) {missing}; it needs {keys}")
    parts = [context["obs"], context["actions"].to(context["obs"].dtype), context["rewards"].unsqueeze(-1)]
    if use_next_obs:
        parts.append(context["next_obs"])
    return torch.cat(parts, dim=-1)


class ContextEncoder(nn.Module):
    """Maps context transitions to PEARL's Gaussian posterior over the task latent.

    Each transition is featurised as ``concat(obs, action, reward[, next_obs])`` and passed through an MLP
    with ``2 * latent_dim`` outputs: factor means and pre-softplus variances.

    Args:
        obs_dim: observation size.
        action_dim: action size (continuous actions).
        latent_dim: size of ``z`` (PEARL uses 5).
        hidden: hidden widths of the MLP (PEARL uses ``[200, 200, 200]``).
        use_next_obs: include ``next_obs`` in each transition's features. PEARL's default is off: for
            reward-varying families ``(s, a, r)`` identifies the task; turn it on when dynamics vary.

    Example:
        >>> enc = ContextEncoder(obs_dim=2, action_dim=2, latent_dim=5, hidden=[32])
        >>> ctx = {"obs": torch.zeros(4, 64, 2), "actions": torch.zeros(4, 64, 2), "rewards": torch.zeros(4, 64)}
        >>> mu, var = enc(ctx)
        >>> mu.shape, var.shape
        (torch.Size([4, 5]), torch.Size([4, 5]))
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        latent_dim: int = 5,
        hidden: Sequence[int] = (200, 200, 200),
        use_next_obs: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("obs_dim", obs_dim), ("action_dim", action_dim), ("latent_dim", latent_dim)):
            if int(value) < 1:
                raise ValueError(f"ContextEncoder: {name} must be >= 1, got {value}")
        self.obs_dim, self.action_dim, self.latent_dim = int(obs_dim), int(action_dim), int(latent_dim)
        self.use_next_obs = bool(use_next_obs)
        in_dim = obs_dim + action_dim + 1 + (obs_dim if use_next_obs else 0)
        self.net = mlp(in_dim, list(hidden), 2 * latent_dim)

    def features(self, context: dict[str, Tensor]) -> Tensor:
        """Per-transition features ``[..., N, in_dim]`` from a transition dict with leading dims ``[..., N]``."""
        return transition_features(context, self.use_next_obs, type(self).__name__)

    def factors(self, context: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Per-transition Gaussian factors ``(mu_n, var_n)``, each ``[..., N, latent]``."""
        out = self.net(self.features(context))
        mu_n, raw_var = out.split(self.latent_dim, dim=-1)
        return mu_n, F.softplus(raw_var).clamp_min(MIN_VARIANCE)

    def forward(self, context: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Posterior ``(mu, var)``, each ``[..., latent]``, for a context with leading dims ``[..., N]``."""
        return product_of_gaussians(*self.factors(context))


class DeterministicContextEncoder(nn.Module):
    """A deterministic, permutation-invariant task embedding: an MLP per transition, averaged over the context.

    FOCAL (Li et al. 2021, arXiv:2010.01112, Sec. 4) embeds each transition ``q_n = E(c_n)`` and represents the task
    by their mean; its distance-metric loss acts on the per-transition embeddings (:meth:`embed`).

    Args:
        obs_dim, action_dim: sizes of the transitions.
        latent_dim: size of the embedding.
        hidden: MLP widths.
        use_next_obs: include ``next_obs`` in each transition's features (needed when the dynamics vary).
    """

    def __init__(self, obs_dim: int, action_dim: int, latent_dim: int = 20, hidden: Sequence[int] = (200, 200, 200),
                 use_next_obs: bool = True) -> None:
        super().__init__()
        for name, value in (("obs_dim", obs_dim), ("action_dim", action_dim), ("latent_dim", latent_dim)):
            if int(value) < 1:
                raise ValueError(f"DeterministicContextEncoder: {name} must be >= 1, got {value}")
        self.latent_dim, self.use_next_obs = int(latent_dim), bool(use_next_obs)
        self.net = mlp(obs_dim + action_dim + 1 + (obs_dim if use_next_obs else 0), list(hidden), latent_dim)

    def embed(self, context: dict[str, Tensor]) -> Tensor:
        """Per-transition embeddings ``[..., N, latent]``."""
        return self.net(transition_features(context, self.use_next_obs, type(self).__name__))

    def forward(self, context: dict[str, Tensor]) -> Tensor:
        """The task embedding ``[..., latent]``: the mean of the per-transition embeddings."""
        return self.embed(context).mean(-2)
