"""Checkpoints: models, optimisers, counters and RNG states in one atomically written file.

Replay data is flushed (append-only, atomic chunks) before the checkpoint is written; the
checkpoint records how many steps the replay held, so a resumed run reloads exactly those.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from wmrl.errors import WmrlError
from wmrl.run.files import atomic_torch_save

FORMAT = 4  # 2: MLP biases, vector running statistics; 3: actor and critic optimisers apart; 4: shared outcome heads


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "latest.pt"


def rng_state(np_rng: np.random.Generator) -> dict:
    return {"python": random.getstate(), "numpy": np_rng.bit_generator.state, "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng(state: dict, np_rng: np.random.Generator) -> None:
    random.setstate(state["python"])
    np_rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, agent, counters: dict, np_rng: np.random.Generator) -> None:
    payload = {"format": FORMAT, "agent": agent.state_dict(), "counters": dict(counters), "rng": rng_state(np_rng)}
    atomic_torch_save(payload, checkpoint_path(run_dir))


def load_checkpoint(run_dir: Path, map_location: torch.device | str = "cpu") -> dict:
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise WmrlError(f"no checkpoint in {run_dir} (expected {path})",
                        "pass a run directory made by `wmrl train` that has saved at least one checkpoint")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises many types for a damaged zip/pickle
        raise WmrlError(f"checkpoint {path} is corrupt or unreadable ({type(e).__name__})",
                        "resume from an intact copy of the run directory, or start a new run") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "agent" not in payload:
        raise WmrlError(f"checkpoint {path} is not a wmrl checkpoint of format {FORMAT}",
                        "use a run directory written by this version of wmrl")
    return payload
