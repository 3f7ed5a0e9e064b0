"""Optimiser settings shared by every trainable part, and the one step they all take."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn


@dataclass
class OptimConfig:
    lr: float = 1e-4
    """Adam learning rate."""
    eps: float = 1e-8
    """Adam epsilon."""
    clip: float = 1000.0
    """Global gradient-norm clip (STORM: 1000 for the world model, 100 for the agent)."""


def make_optimizer(module: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(module.parameters(), lr=cfg.lr, eps=cfg.eps, foreach=True)


def optimizer_step(loss: torch.Tensor, module: nn.Module, opt: torch.optim.Optimizer, cfg: OptimConfig) -> float:
    """Backward, clip and step; returns the gradient norm before clipping.

    A non-finite loss or gradient norm skips the step: no weight and no optimiser moment changes, and the
    returned norm is NaN or inf, which the agent counts (Agent.update)."""
    opt.zero_grad(set_to_none=True)
    if not torch.isfinite(loss.detach()).all():
        return math.nan
    loss.backward()
    norm = float(nn.utils.clip_grad_norm_(module.parameters(), cfg.clip))
    if math.isfinite(norm):
        opt.step()
    else:
        opt.zero_grad(set_to_none=True)
    return norm


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Within the block, `module`'s parameters take no gradient (a graph through the module still carries
    gradients to its inputs); each parameter's requires_grad is restored afterwards."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
