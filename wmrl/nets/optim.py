"""Optimiser settings shared by every trainable part."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class OptimConfig:
    lr: float = 1e-4
    eps: float = 1e-8
    clip: float = 1000.0
    """Global gradient-norm clip (STORM: 1000 for the world model, 100 for the agent)."""


def make_optimizer(module: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(module.parameters(), lr=cfg.lr, eps=cfg.eps, foreach=True)


def optimizer_step(loss: torch.Tensor, module: nn.Module, opt: torch.optim.Optimizer, cfg: OptimConfig) -> float:
    """Backward, clip and step; returns the gradient norm before clipping."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = nn.utils.clip_grad_norm_(module.parameters(), cfg.clip)
    opt.step()
    return float(norm)
