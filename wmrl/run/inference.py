"""Loading a trained run for evaluation and dreams."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from wmrl import config as config_mod
from wmrl.behavior.registry import build_behavior
from wmrl.errors import WmrlError
from wmrl.run import rundir
from wmrl.run.checkpoint import load_checkpoint
from wmrl.run.trainer import build, setup_torch


def load_run(run_dir: Path, device: str = "auto", with_replay: bool = True, plan: list[str] | None = None):
    """(config, agent with the checkpoint's weights, replay holding the checkpoint's data or None).

    With `plan` (a list of `cem.KEY=VALUE` overrides, possibly empty) the agent acts by CEM planning on
    the run's world model instead of with the behaviour the run trained: the planner has no weights, so
    any run's model can be planned on."""
    cfg = rundir.open_existing(run_dir)
    cfg.device = device
    trained = cfg.behavior
    if plan is not None:
        cfg.behavior = "cem"
        for text in plan:
            if not text.startswith("cem."):
                raise WmrlError(f"--set {text} is not a planner setting",
                                "with --plan only cem.* keys can be set, e.g. --set cem.candidates=200")
            config_mod.apply(cfg, config_mod.parse_override(text))
        config_mod.validate(cfg)
    dev = setup_torch(cfg)
    _, _, agent, replay = build(cfg, run_dir, dev)
    ckpt = load_checkpoint(run_dir)
    if plan is None:
        agent.load_state_dict(ckpt["agent"])
    else:
        agent.load_state_dict({**ckpt["agent"], "behavior": agent.behavior.state_dict(),
                               "behavior_opt": agent.behavior.optim_state_dict()})
        if cfg.cem.terminal_value:
            attach_trained_value(cfg, trained, agent, ckpt["agent"]["behavior"])
    if not with_replay:
        return cfg, agent, None
    replay.load(ckpt["counters"]["step"])
    return cfg, agent, replay


def attach_trained_value(cfg, trained: str, agent, weights: dict) -> None:
    """Give the planner the learned value of the behaviour the run trained (its critic)."""
    own = build_behavior(dataclasses.replace(cfg, behavior=trained), agent.wm.feat_dim, agent.spec.action)
    own.load_state_dict(weights)
    value = own.to(agent.device).state_value()
    if value is None:
        raise WmrlError(f"cem.terminal_value needs a learned value, and this run's behaviour {trained!r} keeps none",
                        "plan on a run trained with behavior=actor_critic, or drop cem.terminal_value")
    agent.behavior.attach_value(*value)
