"""Learned per-tensor inner-loop learning rates (MACAW App. E; Li et al. 2017 "Meta-SGD", per tensor)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def inverse_softplus(x: float) -> float:
    """``raw`` with ``softplus(raw) == x`` exactly (x > 0).

    The reference stores ``log(lr)``, whose softplus is only approximately ``lr``; we invert softplus exactly so
    the initial inner learning rate is the configured one.
    """
    if x <= 0:
        raise ValueError(f"a softplus-parameterised value must be > 0, got {x}")
    return x + math.log(-math.expm1(-x))  # log(exp(x) - 1), stable for small and large x


class InnerLearningRates(nn.Module):
    """One learned scalar learning rate per parameter tensor: ``lr = softplus(raw)``, ``raw`` meta-trained.

    Args:
        names: parameter names (as in ``named_parameters()``) that the inner loop adapts.
        init: initial learning rate (``softplus(raw_init) == init`` exactly).
    """

    def __init__(self, names: Iterable[str], init: float) -> None:
        super().__init__()
        self.names = list(names)
        raw = inverse_softplus(init)
        # ParameterDict keys may not contain '.', so the dotted parameter names are encoded.
        self.raw = nn.ParameterDict({_key(n): nn.Parameter(torch.tensor(raw)) for n in self.names})

    def forward(self) -> dict[str, Tensor]:
        """``{parameter name: softplus(raw)}``."""
        return {n: F.softplus(self.raw[_key(n)]) for n in self.names}


def _key(name: str) -> str:
    return name.replace(".", "__")
