"""Slow target networks: Polyak averaging, the one update every module with a target network uses."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


@torch.no_grad()
def polyak_update(target: Iterable[Tensor], source: Iterable[Tensor], rate: float) -> None:
    r"""In place, tensor by tensor: :math:`\bar\theta \leftarrow (1 - \tau)\bar\theta + \tau\theta` with
    :math:`\tau` = ``rate`` (``rate=1`` copies). ``target`` and ``source`` are matching sequences of tensors, e.g.
    ``target_net.parameters()`` and ``net.parameters()``.

    Raises:
        ValueError: when the two hold different numbers of tensors.
    """
    targets, sources = list(target), list(source)
    if len(targets) != len(sources):
        raise ValueError(f"polyak_update: {len(targets)} target tensors but {len(sources)} source tensors")
    for averaged, current in zip(targets, sources):
        averaged.lerp_(current, rate)
