"""GRU cell with LayerNorm on its gates, as in DreamerV3's RSSM.

    [r, c, u] = LayerNorm(W [x, h])        (no bias: the norm supplies it)
    r = sigmoid(r);  c = tanh(r * c);  u = sigmoid(u - 1)
    h' = u * c + (1 - u) * h

The -1 on the update gate makes a fresh cell keep most of its state, which helps long sequences.
"""

from __future__ import annotations

import torch
from torch import nn


class LayerNormGRUCell(nn.Module):
    def __init__(self, in_dim: int, size: int):
        super().__init__()
        self.linear = nn.Linear(in_dim + size, 3 * size, bias=False)
        self.norm = nn.LayerNorm(3 * size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x: (B, in_dim), h: (B, size) -> (B, size)."""
        reset, cand, update = self.norm(self.linear(torch.cat([x, h], -1))).chunk(3, -1)
        reset, update = torch.sigmoid(reset), torch.sigmoid(update - 1)
        return update * torch.tanh(reset * cand) + (1 - update) * h
