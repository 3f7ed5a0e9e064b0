"""Run directories: where a run lives, and the checks that keep an existing one intact."""

from __future__ import annotations

import re
import time
from pathlib import Path

from wmrl import config as config_mod
from wmrl.errors import WmrlError
from wmrl.run.checkpoint import checkpoint_path
from wmrl.run.files import unwritable_reason


def default_run_dir(cfg) -> Path:
    env = re.sub(r"[^A-Za-z0-9]+", "-", cfg.env.id).strip("-")
    return Path("runs") / f"{env}-{cfg.world_model}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_new(run_dir: Path) -> None:
    """A new run goes only into a directory that does not exist yet or is empty, and that can be made:
    a directory holding anything else (a run that lost its config.yaml, a user's own files) is never
    written into."""
    if run_dir.exists() and (run_dir / "config.yaml").exists():
        raise WmrlError(f"run directory {run_dir} already holds a run",
                        "pass --resume to continue it, or choose another --run-dir")
    if run_dir.exists() and not run_dir.is_dir():
        raise WmrlError(f"{run_dir} exists and is not a directory", "choose another --run-dir")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise WmrlError(f"{run_dir} is not empty and holds no wmrl run (no config.yaml); wmrl starts a run "
                        "only in a new or empty directory", "choose another --run-dir, or empty this one yourself")
    reason = unwritable_reason(run_dir / "config.yaml")  # the first file a run writes
    if reason:
        raise WmrlError(f"cannot make run directory {run_dir}: {reason}", "choose another --run-dir")


def open_existing(run_dir: Path):
    """The saved config of an existing run; errors if the directory is not a usable run."""
    if not run_dir.is_dir():
        raise WmrlError(f"run directory {run_dir} does not exist", "pass the directory printed by `wmrl train`")
    if not (run_dir / "config.yaml").is_file():
        raise WmrlError(f"{run_dir} has no config.yaml, so it is not a wmrl run directory",
                        "pass the directory printed by `wmrl train`")
    return config_mod.load(run_dir / "config.yaml")


def has_checkpoint(run_dir: Path) -> bool:
    return checkpoint_path(run_dir).is_file()


def discard_unsaved_start(run_dir: Path) -> None:
    """A run stopped before its first checkpoint has nothing to resume: its metrics, TensorBoard events and
    replay chunks describe steps no checkpoint kept, and it starts again from step 0 with its config."""
    import shutil

    for name in ("metrics.jsonl", "learning_curve.png"):
        (run_dir / name).unlink(missing_ok=True)
    for name in ("tb", "replay"):
        shutil.rmtree(run_dir / name, ignore_errors=True)


RESUME_MAY_CHANGE = ("train.steps", "device", "threads")


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_resume(run_dir: Path, ckpt: dict, cfg) -> None:
    """Refuse a resume that cannot continue the checkpointed run `ckpt` (from load_checkpoint): fewer steps
    than it already took, or a config.yaml edited since the checkpoint (beyond what a resume may change)."""
    step = ckpt["counters"]["step"]
    if cfg.train.steps < step:
        raise WmrlError(f"--steps {cfg.train.steps} is below the checkpoint's step {step}",
                        f"pass --steps {step} or more to continue the run")
    # A setting added to wmrl after the checkpoint was made is absent from it: the run had its default.
    saved = {**_flatten(config_mod.to_dict(config_mod.Config())), **_flatten(ckpt.get("config") or {})}
    now = _flatten(config_mod.to_dict(cfg))
    changed = sorted(k for k in set(saved) | set(now) if k not in RESUME_MAY_CHANGE and saved.get(k) != now.get(k))
    if changed:
        shown = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:3])
        raise WmrlError(f"{run_dir}/config.yaml differs from the config its checkpoint was trained with ({shown}"
                        f"{', ...' if len(changed) > 3 else ''})",
                        "restore config.yaml, or start a new run with the new settings; a resume may change only "
                        + ", ".join(RESUME_MAY_CHANGE))
