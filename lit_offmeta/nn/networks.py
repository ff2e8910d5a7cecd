"""MACAW's policy (tanh-mean Gaussian with an advantage head) and value networks.

Both are MLPs ``[in] + [width] * depth + [out]`` with ReLU between layers, built from one layer type
(:mod:`lit_offmeta.nn.layers`). Each network has two faces:

* a normal ``nn.Module`` (``forward``), and
* a functional one used by the inner loop: ``effective_weights(params)`` turns a parameter dict (names as in
  ``named_parameters()``) into a list of ``(W, b)`` per layer, and ``*_from_weights`` functions run the
  network on such a list. Losses are written against effective weights, so the closed-form weight-transform
  update (:mod:`lit_offmeta.meta.closed_form`) and plain autograd on the parameters share them.

``materialise`` turns effective weights into a plain ``nn.Sequential`` of ``nn.Linear`` layers: the deployable
adapted policy (no lit-offmeta code needed to load or run it).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lit_offmeta.nn.layers import LAYER_TYPES, make_layer


class LayerWeights(NamedTuple):
    """One layer's effective weights: ``weight [out, in]`` and ``bias [out]`` (with a leading task axis ``K`` in
    the task-batched inner loop)."""

    weight: Tensor
    bias: Tensor


Weights = list[LayerWeights]
"""The effective weights of every layer of a network, in layer order: what the inner loop adapts, the losses
read and ``materialise`` turns into a plain ``nn.Sequential``."""

POLICY_STD = 0.2
"""Fixed std of MACAW's Gaussian policy (App. E: variance 0.04); the network predicts only the mean."""

ADVANTAGE_HIDDEN = 32
"""Hidden size of the advantage head (reference: concat(last pre-activation, a) -> ReLU -> 32 -> ReLU -> 1)."""


class MetaMLP(nn.Module):
    """Layers in ``self.layers`` plus the dict <-> effective-weights plumbing shared by both networks."""

    layers: nn.ModuleList

    def _check(self, width: int, depth: int, layer: str) -> None:
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if depth < 1:
            raise ValueError(f"depth (number of hidden layers) must be >= 1, got {depth}")
        if layer not in LAYER_TYPES:
            raise ValueError(f"layer must be one of {LAYER_TYPES}, got {layer!r}")

    def effective_weights(self, params: dict[str, Tensor]) -> Weights:
        """Effective ``(W, b)`` of every layer from a parameter dict keyed like ``named_parameters()``."""
        weights = []
        for i, layer in enumerate(self.layers):
            prefix = f"layers.{i}."
            local = {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}
            weights.append(LayerWeights(*layer.effective(local)))
        return weights

    def current_weights(self) -> Weights:
        """Effective weights of the module's own parameters."""
        return self.effective_weights(dict(self.named_parameters()))


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``x W^T + b``; with task-batched weights ``W [K, out, in]``, ``b [K, out]`` and ``x [K, B, in]``, one
    ``baddbmm`` (about half the time of the same layer evaluated under ``vmap``, which adds the bias apart)."""
    if weight.dim() == 3:
        return torch.baddbmm(bias.unsqueeze(-2), x, weight.transpose(-1, -2))
    return F.linear(x, weight, bias)


def _trunk(weights: Weights, x: Tensor) -> tuple[Tensor, Tensor]:
    """Run hidden layers; return (last hidden pre-activation, its ReLU)."""
    pre = x
    h = x
    for weight, bias in weights:
        pre = linear(h, weight, bias)
        h = F.relu(pre)
    return pre, h


class ValueNetwork(MetaMLP):
    """State-value MLP ``V(s)``: ``[obs_dim] + [width] * depth + [1]``.

    Args:
        obs_dim: observation size.
        width: hidden width.
        depth: number of hidden layers.
        layer: ``weight_transform | bias_transform | linear``.
        latent_size: weight-transform latent size.
    """

    def __init__(self, obs_dim: int, width: int = 100, depth: int = 3, layer: str = "weight_transform",
                 latent_size: int = 100) -> None:
        super().__init__()
        self._check(width, depth, layer)
        sizes = [obs_dim] + [width] * depth + [1]
        self.layers = nn.ModuleList(make_layer(layer, a, b, latent_size) for a, b in zip(sizes[:-1], sizes[1:]))

    @staticmethod
    def value_from_weights(weights: Weights, obs: Tensor) -> Tensor:
        """``V(obs)``: ``[..., obs_dim] -> [...]``; task-batched weights (``W [K, out, in]``) take
        ``[K, B, obs_dim]``."""
        _, h = _trunk(weights[:-1], obs)
        return linear(h, *weights[-1]).squeeze(-1)

    def forward(self, obs: Tensor) -> Tensor:
        return self.value_from_weights(self.current_weights(), obs)


class PolicyNetwork(MetaMLP):
    """Gaussian policy with tanh mean and fixed std 0.2, plus MACAW's advantage head (Fig. 2).

    Layers ``0..depth`` form the mean MLP ``[obs_dim] + [width] * depth + [action_dim]``; layers
    ``depth+1, depth+2`` are the advantage head on ``concat(last hidden pre-activation, action)``:
    ReLU -> ``ADVANTAGE_HIDDEN`` -> ReLU -> 1. The head serves only the inner-loop loss (Eq. 3).

    Args:
        obs_dim: observation size.
        action_dim: action size.
        width: hidden width.
        depth: number of hidden layers.
        layer: ``weight_transform | bias_transform | linear``.
        latent_size: weight-transform latent size.
    """

    def __init__(self, obs_dim: int, action_dim: int, width: int = 100, depth: int = 3,
                 layer: str = "weight_transform", latent_size: int = 100) -> None:
        super().__init__()
        self._check(width, depth, layer)
        self.depth = depth
        sizes = [obs_dim] + [width] * depth + [action_dim]
        trunk = [make_layer(layer, a, b, latent_size) for a, b in zip(sizes[:-1], sizes[1:])]
        head = [make_layer(layer, width + action_dim, ADVANTAGE_HIDDEN, latent_size),
                make_layer(layer, ADVANTAGE_HIDDEN, 1, latent_size)]
        self.layers = nn.ModuleList(trunk + head)

    @staticmethod
    def mean_and_advantage_from_weights(weights: Weights, obs: Tensor, actions: Tensor | None,
                                        depth: int) -> tuple[Tensor, Tensor | None]:
        """Mean action ``[..., action_dim]`` and predicted advantage ``[...]`` (None without ``actions``).

        Task-batched weights (``W [K, out, in]``) take ``obs [K, B, obs_dim]`` and ``actions [K, B, action_dim]``.
        """
        pre, h = _trunk(weights[:depth], obs)
        mean = torch.tanh(linear(h, *weights[depth]))
        if actions is None:
            return mean, None
        x = F.relu(torch.cat([pre, actions], dim=-1))
        x = F.relu(linear(x, *weights[depth + 1]))
        return mean, linear(x, *weights[depth + 2]).squeeze(-1)

    def forward(self, obs: Tensor) -> Tensor:
        """Mean action for ``obs [..., obs_dim]``."""
        return self.mean_and_advantage_from_weights(self.current_weights(), obs, None, self.depth)[0]

    def materialise(self, weights: Weights | None = None) -> nn.Sequential:
        """A plain ``nn.Sequential`` (Linear/ReLU/.../Linear/Tanh) computing the mean action.

        Args:
            weights: effective weights of ONE task (unbatched); default the module's own.

        Returns:
            A detached module on the weights' device and dtype, whose ``state_dict`` loads into the same
            ``nn.Sequential`` built by hand.
        """
        weights = self.current_weights() if weights is None else weights
        modules: list[nn.Module] = []
        for i, (weight, bias) in enumerate(weights[: self.depth + 1]):
            if weight.dim() != 2:
                raise ValueError(f"materialise needs one task's weights; layer {i} has shape {tuple(weight.shape)}")
            linear = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(weight)
                linear.bias.copy_(bias)
            modules += [linear, nn.ReLU()]
        modules[-1] = nn.Tanh()
        return nn.Sequential(*modules)


def gaussian_log_prob(mean: Tensor, actions: Tensor, std: float = POLICY_STD) -> Tensor:
    """``log N(a; mean, std^2 I)`` summed over the action dimension (no tanh correction, as the reference)."""
    var = std * std
    return (-0.5 * (actions - mean) ** 2 / var - math.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)


def num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


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


def layer_preset(preset: str, obs_dim: int, action_dim: int, width: int, depth: int,
                 latent_size: int = 100, plain_layer: str = "bias_transform") -> tuple[str, int, int]:
    """``(layer, policy_width, value_width)`` for MACAW's weight-transform ablations (Fig. 4 centre, Fig. 5).

    * ``"weight_transform"``: MACAW as published.
    * ``"equal_width"``: ``plain_layer`` layers (default: bias transform, as the reference) of the same width
      ("No WT-Equal Width").
    * ``"equal_params"``: ``plain_layer`` layers, each network widened until its parameter count reaches the
      weight-transform network's ("No WT-Equal Params").

    Raises:
        ValueError: for an unknown ``preset``.
    """
    if preset == "weight_transform":
        return "weight_transform", width, width
    if plain_layer not in ("bias_transform", "linear"):
        raise ValueError(f"plain_layer must be bias_transform or linear, got {plain_layer!r}")
    if preset == "equal_width":
        return plain_layer, width, width
    if preset == "equal_params":
        target_p = num_parameters(PolicyNetwork(obs_dim, action_dim, width, depth, "weight_transform", latent_size))
        target_v = num_parameters(ValueNetwork(obs_dim, width, depth, "weight_transform", latent_size))
        return (plain_layer,
                _width_for(lambda w: PolicyNetwork(obs_dim, action_dim, w, depth, plain_layer), target_p),
                _width_for(lambda w: ValueNetwork(obs_dim, w, depth, plain_layer), target_v))
    raise ValueError(f"preset must be weight_transform | equal_width | equal_params, got {preset!r}")


def _width_for(build, target: int) -> int:
    """Smallest width whose network has at least ``target`` parameters (bisection on a monotone count)."""
    low, high = 1, 2
    while num_parameters(build(high)) < target:
        low, high = high, high * 2
    while low < high:
        mid = (low + high) // 2
        if num_parameters(build(mid)) < target:
            low = mid + 1
        else:
            high = mid
    return low
