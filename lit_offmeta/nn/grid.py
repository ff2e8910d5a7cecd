"""Grid-world cells as network inputs: a cell ``(x, y)`` of a ``grid_size x grid_size`` grid as a one-hot.

Used by the GridNavi belief encoder (``state_one_hot``) and the DQN on hyper-states (``grid_size``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def grid_cell_one_hot(cell_xy: torch.Tensor, grid_size: int) -> torch.Tensor:
    """One-hot ``[..., grid_size**2]`` (float) of grid cells given as coordinates ``[..., 2]`` (``x * grid_size + y``).

    Coordinates are rounded and clamped to the grid, so float observations of a grid world are accepted as they are.
    """
    cell = cell_xy.round().long().clamp(0, grid_size - 1)
    return F.one_hot(cell[..., 0] * grid_size + cell[..., 1], grid_size**2).float()


class GridCellOneHot(nn.Module):
    """Replaces the first two input columns, a grid cell ``(x, y)``, by the cell's one-hot (the rest passes through).

    For networks over grid-world states: an effect tied to one cell (a wall that turns a move into staying put)
    is then one input unit's weight, where from raw coordinates an MLP must carve it out of a smooth function.
    Output size: ``input_dim - 2 + grid_size**2``.
    """

    def __init__(self, grid_size: int) -> None:
        super().__init__()
        if grid_size < 1:
            raise ValueError(f"GridCellOneHot: grid_size must be >= 1, got {grid_size}")
        self.grid_size = grid_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([grid_cell_one_hot(x[..., :2], self.grid_size), x[..., 2:]], dim=-1)
