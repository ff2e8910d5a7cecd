"""Linear layers whose inner-loop gradient step is more expressive than a plain ``nn.Linear``'s.

Every layer here computes ``y = x W^T + b`` with an *effective* weight matrix ``W`` and bias ``b`` that are
functions of the layer's own parameters. ``effective(params)`` returns ``(W, b)`` from a dict of the layer's
parameters (keyed by the local names of ``named_parameters()``), so the same code serves the module's
``forward`` and the functional inner loop in :mod:`lit_offmeta.meta`, which adapts parameter dicts.

* :class:`WeightTransformLinear` (MACAW, Mitchell et al. 2021, arXiv:2008.06043, Sec. 4.3 and App. B):
  a latent ``z`` is mapped by a linear generator into ``[vec(W); b]``. A gradient step on ``z`` and the
  generator changes ``W`` by a matrix of rank up to ``latent_size + 1`` instead of rank one.
* :class:`BiasTransformLinear` (Finn et al. 2017, used by the reference when weight transforms are off):
  ``b_eff = b + W_b z`` with a learnable ``out x out`` matrix ``W_b`` and vector ``z``.
* :class:`PlainLinear`: ``nn.Linear`` with the same ``effective`` interface.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

LayerType = Literal["weight_transform", "bias_transform", "linear"]
LAYER_TYPES: tuple[str, ...] = ("weight_transform", "bias_transform", "linear")


class PlainLinear(nn.Linear):
    """``nn.Linear`` exposing ``effective(params) -> (W, b)`` like the transform layers."""

    def effective(self, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Return ``(W [out, in], b [out])`` from ``{"weight", "bias"}``."""
        return params["weight"], params["bias"]


class BiasTransformLinear(nn.Module):
    """Linear layer with a bias transform: ``y = x W^T + b + W_b z`` (App. B, Finn et al. 2017).

    The forward pass is no more expressive than a plain linear layer, but a gradient step on ``(W_b, z)``
    moves the effective bias more flexibly. All four tensors are adapted in the inner loop.

    Args:
        in_features: input size.
        out_features: output size; also the size of ``z`` and of the square matrix ``W_b``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        _check_sizes(in_features, out_features)
        self.in_features, self.out_features = in_features, out_features
        base = nn.Linear(in_features, out_features)
        self.weight = nn.Parameter(base.weight.detach().clone())
        self.bias = nn.Parameter(base.bias.detach().clone())
        # W_b z starts near zero so the layer's initial function is that of the plain Linear init.
        self.bias_transform = nn.Parameter(torch.empty(out_features, out_features).normal_(0.0, 1.0 / out_features))
        self.bias_latent = nn.Parameter(torch.empty(out_features).normal_(0.0, 1.0 / math.sqrt(out_features)))

    def effective(self, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Return ``(W, b + W_b z)``."""
        return params["weight"], params["bias"] + params["bias_transform"] @ params["bias_latent"]

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.effective(dict(self.named_parameters()))
        return nn.functional.linear(x, weight, bias)


class WeightTransformLinear(nn.Module):
    """MACAW's weight-transform layer: ``[vec(W); b] = G z + c``, then ``y = x W^T + b``.

    ``z`` (``latent``, size ``latent_size``) and the generator ``nn.Linear(latent_size, out*in + out)``
    (``generator.weight`` = G, ``generator.bias`` = c) are all adapted in the inner loop (App. B). The inner
    gradient w.r.t. the generator is the outer product ``g_w z^T`` of the effective-weight gradient ``g_w`` and
    ``z``; :mod:`lit_offmeta.meta.closed_form` uses this to adapt without copying G per task.

    Initialisation: the generator uses ``nn.Linear``'s default; ``z ~ N(0, 1/out_features)`` (variance
    ``1/out_features``, our reading of the reference's ``N(0, 1/out)``), which gives effective weights of the
    same order as a default ``nn.Linear``'s.

    Args:
        in_features: input size.
        out_features: output size.
        latent_size: size of ``z`` (reference: 100).
    """

    def __init__(self, in_features: int, out_features: int, latent_size: int = 100) -> None:
        super().__init__()
        _check_sizes(in_features, out_features)
        if latent_size < 1:
            raise ValueError(f"latent_size must be >= 1, got {latent_size}")
        self.in_features, self.out_features, self.latent_size = in_features, out_features, latent_size
        self.generator = nn.Linear(latent_size, out_features * in_features + out_features)
        self.latent = nn.Parameter(torch.empty(latent_size).normal_(0.0, 1.0 / math.sqrt(out_features)))

    def split(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """Split flat effective weights ``[..., out*in + out]`` into ``(W [..., out, in], b [..., out])``."""
        n = self.out_features * self.in_features
        return w[..., :n].unflatten(-1, (self.out_features, self.in_features)), w[..., n:]

    def effective(self, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Return ``(W, b)`` generated from ``{"latent", "generator.weight", "generator.bias"}``."""
        w = params["generator.weight"] @ params["latent"] + params["generator.bias"]
        return self.split(w)

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.effective(dict(self.named_parameters()))
        return nn.functional.linear(x, weight, bias)


def make_layer(layer: str, in_features: int, out_features: int, latent_size: int = 100) -> nn.Module:
    """Build one layer of type ``layer`` (``weight_transform | bias_transform | linear``).

    Raises:
        ValueError: for an unknown ``layer``.
    """
    if layer == "weight_transform":
        return WeightTransformLinear(in_features, out_features, latent_size)
    if layer == "bias_transform":
        return BiasTransformLinear(in_features, out_features)
    if layer == "linear":
        return PlainLinear(in_features, out_features)
    raise ValueError(f"layer must be one of {LAYER_TYPES}, got {layer!r}")


def _check_sizes(in_features: int, out_features: int) -> None:
    if in_features < 1 or out_features < 1:
        raise ValueError(f"layer sizes must be >= 1, got in_features={in_features}, out_features={out_features}")
