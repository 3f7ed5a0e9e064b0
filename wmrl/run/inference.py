"""Loading a trained run for evaluation and dreams."""

from __future__ import annotations

from pathlib import Path

from wmrl.run import rundir
from wmrl.run.checkpoint import load_checkpoint
from wmrl.run.trainer import build, setup_torch


def load_run(run_dir: Path, device: str = "auto", with_replay: bool = True):
    """(config, agent with the checkpoint's weights, replay holding the checkpoint's data or None)."""
    cfg = rundir.open_existing(run_dir)
    cfg.device = device
    dev = setup_torch(cfg)
    _, _, agent, replay = build(cfg, run_dir, dev)
    ckpt = load_checkpoint(run_dir, dev)
    agent.load_state_dict(ckpt["agent"])
    if not with_replay:
        return cfg, agent, None
    replay.load(ckpt["counters"]["step"])
    return cfg, agent, replay
