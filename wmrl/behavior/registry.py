"""Picks the behaviour named in the config."""

from __future__ import annotations

from wmrl.behavior.actor_critic import ActorCritic
from wmrl.behavior.cem import CemPlanner
from wmrl.behavior.cmaes import CmaesController
from wmrl.behavior.protocol import Behavior
from wmrl.envs.spaces import ActionSpace


def build_behavior(cfg, feat_dim: int, action: ActionSpace) -> Behavior:
    """The behaviour `cfg.behavior` with its config section."""
    if cfg.behavior == "actor_critic":
        return ActorCritic(cfg.actor_critic, feat_dim, action)
    if cfg.behavior == "cem":
        return CemPlanner(cfg.cem, action)
    if cfg.behavior == "cmaes":
        return CmaesController(cfg.cmaes, feat_dim, action, seed=cfg.seed)
    raise ValueError(f"unknown behavior {cfg.behavior!r}")  # config.validate rejects it first
