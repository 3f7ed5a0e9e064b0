"""Run directories: where a run lives, and the checks that keep an existing one intact."""

from __future__ import annotations

import re
import time
from pathlib import Path

from wmrl import config as config_mod
from wmrl.errors import WmrlError
from wmrl.run.checkpoint import checkpoint_path


def default_run_dir(cfg) -> Path:
    env = re.sub(r"[^A-Za-z0-9]+", "-", cfg.env.id).strip("-")
    return Path("runs") / f"{env}-{cfg.world_model}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_new(run_dir: Path) -> None:
    if run_dir.exists() and (run_dir / "config.yaml").exists():
        raise WmrlError(f"run directory {run_dir} already holds a run",
                        "pass --resume to continue it, or choose another --run-dir")
    if run_dir.exists() and not run_dir.is_dir():
        raise WmrlError(f"{run_dir} exists and is not a directory", "choose another --run-dir")


def open_existing(run_dir: Path):
    """The saved config of an existing run; errors if the directory is not a usable run."""
    if not run_dir.is_dir():
        raise WmrlError(f"run directory {run_dir} does not exist", "pass the directory printed by `wmrl train`")
    if not (run_dir / "config.yaml").is_file():
        raise WmrlError(f"{run_dir} has no config.yaml, so it is not a wmrl run directory",
                        "pass the directory printed by `wmrl train`")
    if not checkpoint_path(run_dir).is_file():
        raise WmrlError(f"{run_dir} has no checkpoint yet", "train longer than train.checkpoint_every steps first")
    return config_mod.load(run_dir / "config.yaml")
