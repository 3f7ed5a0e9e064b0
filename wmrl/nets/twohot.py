"""Symlog transform and the two-hot categorical regression used for rewards and values.

DreamerV3 (2023 arXiv version, which STORM follows): 255 bins evenly spaced in symlog space over
[-20, 20]; a scalar target y is encoded as two-hot weights on the two bins around symlog(y); the
prediction is symexp of the expected bin value.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class TwoHot(nn.Module):
    """Encodes scalars as two-hot vectors over fixed bins and decodes logits back to scalars."""

    def __init__(self, bins: int = 255, low: float = -20.0, high: float = 20.0):
        super().__init__()
        if bins < 2:
            raise ValueError(f"two-hot needs at least 2 bins, got {bins}")
        self.register_buffer("bins", torch.linspace(low, high, bins), persistent=False)

    @property
    def num_bins(self) -> int:
        return self.bins.numel()

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        """(...,) scalars -> (..., bins) two-hot weights on symlog(y), clipped to the bin range."""
        x = symlog(y.float()).clamp(self.bins[0], self.bins[-1])
        upper = torch.searchsorted(self.bins, x.contiguous(), right=False).clamp(1, self.num_bins - 1)
        lower = upper - 1
        lo_val, hi_val = self.bins[lower], self.bins[upper]
        w_hi = (x - lo_val) / (hi_val - lo_val)
        out = torch.zeros(*x.shape, self.num_bins, device=x.device)
        out.scatter_(-1, lower.unsqueeze(-1), (1 - w_hi).unsqueeze(-1))
        out.scatter_add_(-1, upper.unsqueeze(-1), w_hi.unsqueeze(-1))
        return out

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., bins) logits -> (...,) scalar: symexp of the expected bin position."""
        probs = logits.float().softmax(-1)
        return symexp((probs * self.bins).sum(-1))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(..., bins) logits, (...,) scalar targets -> (...,) cross-entropy against the two-hot target."""
        return self.cross_entropy(logits, self.encode(target))

    @staticmethod
    def cross_entropy(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(..., bins) logits against (..., bins) target weights (e.g. a sum of two-hot encodings)."""
        return -(weights * F.log_softmax(logits.float(), -1)).sum(-1)
