"""Per-dimension standardisation of vector observations with running statistics.

Why not only symlog (DreamerV3)? symlog keeps every dimension on its raw scale, so a dimension
that varies by 0.02 (CartPole's pole angle) weighs almost nothing in a summed squared error, and it
compresses large values, so precision drops exactly where states get extreme (the cart near the
track's edge). Standardising gives every dimension unit spread and uniform precision.

Statistics are the exact mean and variance of every observation seen in training batches (Chan's
parallel merge). They are updated only in training mode, like BatchNorm's running statistics, and
they are buffers, so checkpoints carry them.
"""

from __future__ import annotations

import torch
from torch import nn


class RunningNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-4, clip: float = 10.0):
        super().__init__()
        self.eps, self.clip = eps, clip
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(dim, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merge a batch (..., dim) into the statistics; a batch with a non-finite value is left out (one
        NaN would poison the statistics for good)."""
        x = x.detach().reshape(-1, self.mean.shape[0]).to(torch.float64)
        n = x.shape[0]
        if n == 0 or not torch.isfinite(x).all():
            return
        mean, m2 = x.mean(0), ((x - x.mean(0)) ** 2).sum(0)
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta**2 * self.count * n / total
        self.count.copy_(total)

    def _moments(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if self.count < 2:  # nothing seen yet: identity
            return torch.zeros_like(self.mean, dtype=dtype), torch.ones_like(self.mean, dtype=dtype)
        std = (self.m2 / self.count + self.eps).sqrt()
        return self.mean.to(dtype), std.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., dim) raw -> standardised, clipped to +-clip."""
        mean, std = self._moments(torch.float32)
        return ((x.float() - mean) / std).clamp(-self.clip, self.clip)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        mean, std = self._moments(torch.float32)
        return y.float() * std + mean
