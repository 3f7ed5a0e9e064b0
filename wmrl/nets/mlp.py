"""Multi-layer perceptron with LayerNorm + SiLU, the block DreamerV3 and STORM heads are built from."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """`layers` hidden blocks of Linear -> LayerNorm -> SiLU, then an optional linear output.

    Args:
        in_dim: input features.
        out_dim: output features; 0 means no output layer (the last hidden activation is returned).
        hidden: width of the hidden blocks.
        layers: number of hidden blocks (0 gives a single linear map from in_dim to out_dim).
        zero_init: initialise the output layer to zero, as DreamerV3 does for its reward and critic
            heads so that the first predictions are exactly the two-hot "zero" bin.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int, layers: int, zero_init: bool = False):
        super().__init__()
        blocks: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.SiLU()]
            width = hidden
        if out_dim:
            out = nn.Linear(width, out_dim)
            if zero_init:
                nn.init.zeros_(out.weight)
                nn.init.zeros_(out.bias)
            blocks.append(out)
        self.net = nn.Sequential(*blocks)
        self.out_dim = out_dim or width

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in_dim) -> (..., out_dim)
        return self.net(x)
