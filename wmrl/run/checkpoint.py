"""Checkpoints: models, optimisers, counters and RNG states in one atomically written file.

Replay data is flushed (append-only, atomic chunks) before the checkpoint is written; the
checkpoint records how many steps the replay held, so a resumed run reloads exactly those.

RNG states: Python's, the run's numpy Generator, numpy's global RNG (the `cma` package draws its
candidates from it), torch's (CPU and CUDA), each training env's action space (warm-up actions) and
each training env's own RNG as it was before its last reset (lists with train.num_envs > 1): an env
checkpointed at an episode start resumes by replaying that reset, and then goes on exactly as the
uninterrupted run would (for envs whose randomness is their `np_random`, such as Gymnasium's; others,
and an env checkpointed mid-episode, resume with a new episode seeded from the step).
Nothing in a checkpoint is a pickled object: it holds tensors, numbers, strings and containers of them
(the CMA-ES state too, see behavior/cma_state.py), and it is loaded with `torch.load(weights_only=True)`,
which refuses anything else, so a planted checkpoint cannot run code. Older formats (which pickled the
CMA-ES state) are refused with a message, never unpickled.
A checkpoint is always loaded onto the CPU: RNG states must stay CPU tensors (torch.set_rng_state
refuses others), and `load_state_dict` copies weights and optimiser moments onto the agent's device.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import torch

from wmrl.errors import WmrlError
from wmrl.run.files import atomic_torch_save

FORMAT = 6  # 2: MLP biases, vector running statistics; 3: actor and critic optimisers apart; 4: shared outcome
# heads; 5: RSSM heads on [z, h] and learned h0, return scale EMA from 0, numpy-global and action-space RNGs;
# 6: no pickled objects (the CMA-ES state as tensors), loaded with weights_only=True


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "latest.pt"


def _per_env(values: list):
    """One training env's value as it was stored before train.num_envs existed; several as a list."""
    return values[0] if len(values) == 1 else list(values)


def as_list(value) -> list:
    """The per-env list of a value stored by `_per_env`."""
    return value if isinstance(value, list) else [value]


def rng_state(np_rng: np.random.Generator, action_spaces: list, env_before_reset: list[dict | None]) -> dict:
    """action_spaces, env_before_reset: one per training env (train.num_envs)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": np_rng.bit_generator.state,
            "numpy_global": {"name": name, "keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
            "action_space": _per_env([a.np_random.bit_generator.state for a in action_spaces]),
            "env_before_reset": _per_env(env_before_reset),
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng(state: dict, np_rng: np.random.Generator, action_spaces: list) -> None:
    """Restore every RNG but the envs' own (see `resume`)."""
    random.setstate(state["python"])
    np_rng.bit_generator.state = state["numpy"]
    g = state["numpy_global"]
    np.random.set_state((g["name"], np.asarray(g["keys"], np.uint32), g["pos"], g["has_gauss"], g["gauss"]))
    saved = as_list(state["action_space"])
    if len(saved) != len(action_spaces):
        raise WmrlError(f"the checkpoint holds {len(saved)} training envs' states, the run has {len(action_spaces)}",
                        "resume with the train.num_envs the run was made with")
    for space, s in zip(action_spaces, saved):
        space.np_random.bit_generator.state = s
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, agent, counters: dict, rng: dict, config: dict) -> None:
    """config: the run's resolved config as plain values (config.to_dict), checked on resume."""
    payload = {"format": FORMAT, "agent": agent.state_dict(), "counters": dict(counters), "rng": rng,
               "config": config}
    atomic_torch_save(payload, checkpoint_path(run_dir))


def resume(run_dir: Path, agent, np_rng: np.random.Generator, action_spaces: list) -> tuple[dict, list]:
    """Load the run's checkpoint into `agent` (on whatever device it lives) and the RNGs (see `restore`)."""
    return restore(load_checkpoint(run_dir), agent, np_rng, action_spaces)


def restore(ckpt: dict, agent, np_rng: np.random.Generator, action_spaces: list) -> tuple[dict, list]:
    """Put a loaded checkpoint into `agent` and the RNGs. Returns its counters and, per training env, its
    RNG state before its last reset (None if the env keeps no np_random)."""
    agent.load_state_dict(ckpt["agent"])
    restore_rng(ckpt["rng"], np_rng, action_spaces)
    return ckpt["counters"], as_list(ckpt["rng"].get("env_before_reset"))


def load_checkpoint(run_dir: Path, mmap: bool = False) -> dict:
    """The run's checkpoint, every tensor on the CPU; with `mmap`, tensors are mapped from the file and read
    only when used (cheap for a caller that wants the counters)."""
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise WmrlError(f"no checkpoint in {run_dir} (expected {path})",
                        "pass a run directory made by `wmrl train` that has saved at least one checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:  # weights_only met an object it does not load: never unpickled
        raise WmrlError(f"checkpoint {path} holds objects other than tensors and numbers (an older wmrl format, "
                        "or a file not written by wmrl); wmrl does not unpickle them, since a pickle can run code",
                        "retrain with this version of wmrl, or resume from a checkpoint it wrote") from e
    except Exception as e:  # torch raises many types for a damaged zip
        raise WmrlError(f"checkpoint {path} is corrupt or unreadable ({type(e).__name__})",
                        "resume from an intact copy of the run directory, or start a new run") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WmrlError(f"checkpoint {path} is not a wmrl checkpoint of format {FORMAT}",
                        "use a run directory written by this version of wmrl")
    counters = payload.get("counters")
    if (not isinstance(payload.get("agent"), dict) or not isinstance(payload.get("rng"), dict)
            or not isinstance(counters, dict) or not isinstance(counters.get("step"), int)):
        raise WmrlError(f"checkpoint {path} is damaged: its agent, counters or RNG states are missing or malformed",
                        "resume from an intact copy of the run directory, or start a new run")
    return payload
