"""Mixture density output (Ha & Schmidhuber's MDN-RNN): every dimension of a D-dimensional target has
its own mixture of K one-dimensional Gaussians.

Sampling at a temperature tau divides the mixture logits by tau and scales every sigma by sqrt(tau):
tau < 1 sharpens the predictions, tau > 1 makes the dream more random (World Models: 1.15 in Doom).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class Mixture:
    """logits, mean, log_std: (..., D, K) for D target dimensions and K components."""

    logits: torch.Tensor
    mean: torch.Tensor
    log_std: torch.Tensor

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) targets -> (...,) log-density, summed over the D dimensions (temperature 1)."""
        x = x.float()[..., None]
        log_std = self.log_std.float()
        normal = -0.5 * ((x - self.mean.float()) / log_std.exp()).pow(2) - log_std - LOG_SQRT_2PI
        return torch.logsumexp(self.logits.float().log_softmax(-1) + normal, -1).sum(-1)

    def sample(self, temperature: float = 1.0, mode: bool = False) -> torch.Tensor:
        """(..., D) draw at `temperature`; mode = the mean of each dimension's most probable component.
        Reparameterised within the drawn component: a gradient (actor_critic.gradient=dynamics) reaches the
        component's mean and std, not the choice of the component (a discrete draw)."""
        if mode:
            pick = self.logits.argmax(-1, keepdim=True)
            return self.mean.gather(-1, pick)[..., 0]
        pick = torch.distributions.Categorical(logits=self.logits.float() / temperature).sample()[..., None]
        mean, log_std = self.mean.gather(-1, pick)[..., 0], self.log_std.gather(-1, pick)[..., 0]
        return mean + log_std.exp() * math.sqrt(temperature) * torch.randn_like(mean)


class MixtureDensityHead(nn.Module):
    """(..., in_dim) -> Mixture over a `dim`-dimensional target with `mixtures` components per dimension."""

    def __init__(self, in_dim: int, dim: int, mixtures: int):
        super().__init__()
        self.dim, self.mixtures = dim, mixtures
        self.linear = nn.Linear(in_dim, 3 * dim * mixtures)

    def forward(self, x: torch.Tensor) -> Mixture:
        out = self.linear(x).reshape(*x.shape[:-1], self.dim, 3, self.mixtures)
        return Mixture(out[..., 0, :], out[..., 1, :], out[..., 2, :].clamp(-7.0, 3.0))
