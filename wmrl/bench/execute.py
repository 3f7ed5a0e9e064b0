"""One run of a suite, start to finish and resumable: train (or resume from the checkpoint), evaluate the
final checkpoint, write `result.json`. A run whose result exists is not touched again; a run directory
without a checkpoint (killed before its first) is the bench's own and starts over. A lock file beside
the run directory makes sure that two processes never write one run, even a worker orphaned by a
killed bench. Each (re)start of a run is recorded beside it too, with the step it starts from and the
speed of the machine (`result.json`'s "sessions"): a run resumed across sessions may train on several.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import platform
import shutil
import subprocess
import time
from pathlib import Path

import torch

from wmrl import config as config_mod
from wmrl.bench.suite import RunSpec, config_hash
from wmrl.errors import WmrlError
from wmrl.run.checkpoint import checkpoint_path, load_checkpoint
from wmrl.run.evaluate import evaluate_modes, evaluation_seeds, make_eval_envs
from wmrl.run.files import atomic_write_text
from wmrl.run.horizon import faithful_horizon
from wmrl.run.inference import load_run
from wmrl.run.logger import read_metrics
from wmrl.run.trainer import EVAL_SEED_OFFSET, train

FINAL_EVAL_OFFSET = 2 * EVAL_SEED_OFFSET  # the final evaluation's episodes are `wmrl eval`'s


def run_dir(out: Path, spec: RunSpec) -> Path:
    return out / "runs" / spec.run_id


def result_path(out: Path, spec: RunSpec) -> Path:
    return run_dir(out, spec) / "result.json"


@contextlib.contextmanager
def locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the holder exits, however it exits
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def commit() -> str:
    """The short commit of the wmrl code running, with "+dirty" if tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent,
                              timeout=10).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD") or "unknown"
        return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu, "gpu": gpu, "host": platform.node(), "torch": torch.__version__,
            "python": platform.python_version()}


def cpu_speed(repeats: int = 3, seconds: float = 0.2, size: int = 1024) -> float:
    """fp32 matmul GFLOP/s on one thread, the best of a few short measurements: machines that report the
    same CPU name run far apart (an "AMD EPYC" of 34 GFLOP/s trained the pendulum runs in 67.8 min, another
    "AMD EPYC" in 21), so a run's wall time is read beside the speed of the machines it trained on."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b
        best = 0.0
        for _ in range(repeats):
            n, start = 0, time.perf_counter()
            while n < 2 or time.perf_counter() - start < seconds:
                a @ b
                n += 1
            best = max(best, 2 * size**3 * n / (time.perf_counter() - start) / 1e9)
        return best
    finally:
        torch.set_num_threads(threads)


def lock_path(out: Path, spec: RunSpec) -> Path:
    return out / "runs" / f".{spec.run_id}.lock"


def sessions_path(out: Path, spec: RunSpec) -> Path:
    """Beside the run directory (a new run's directory must be empty when its training starts)."""
    return out / "runs" / f".{spec.run_id}.sessions.json"


def _start_session(out: Path, spec: RunSpec, step: int) -> list[dict]:
    """Record that the run (re)starts here and now at `step`, with this machine's speed; returns every
    session of the run so far (the run's own, or none if its directory is new)."""
    path = sessions_path(out, spec)
    sessions = json.loads(path.read_text()) if path.exists() and step > 0 else []
    m = machine()
    sessions.append({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "from_step": step,
                     "cpu": m["cpu"], "gpu": m["gpu"], "host": m["host"], "fp32_gflops_1thread": cpu_speed()})
    atomic_write_text(path, json.dumps(sessions, indent=1))
    return sessions


def execute(spec: RunSpec, out: Path, threads: int = 1, device: str = "auto") -> dict:
    """Train and evaluate one run (see the module docstring); returns its result."""
    path = result_path(out, spec)
    with locked(lock_path(out, spec)):
        if path.exists():
            return json.loads(path.read_text())
        cfg = spec.config()
        cfg.threads, cfg.device = threads, device
        rdir = run_dir(out, spec)
        resumed_from = None
        if checkpoint_path(rdir).exists():
            if config_hash(config_mod.load(rdir / "config.yaml")) != config_hash(cfg):
                raise WmrlError(f"run directory {rdir} holds another configuration than the suite's run",
                                "the suite file changed: restore it, or move the old runs away")
            counters = load_checkpoint(rdir)["counters"]
            resumed_from = counters["step"]
        sessions = _start_session(out, spec, resumed_from or 0)
        if resumed_from is None:
            shutil.rmtree(rdir, ignore_errors=True)
            train(cfg, rdir, progress=False)
        elif counters["step"] < cfg.train.steps and not counters["stopped_at_target"]:
            train(cfg, rdir, resume=True, progress=False)
        result = {**_summary(spec, rdir, device), "resumed_from": resumed_from, "commit": commit(),
                  "machine": machine(), "sessions": sessions, "threads": threads}
        atomic_write_text(path, json.dumps(result, indent=1))
        return result


def _summary(spec: RunSpec, rdir: Path, device: str) -> dict:
    cfg, agent, _ = load_run(rdir, device, with_replay=False)
    counters = load_checkpoint(rdir)["counters"]
    step = counters["step"]
    seed = cfg.seed + FINAL_EVAL_OFFSET
    torch.manual_seed(seed)
    envs = make_eval_envs(cfg.env, seed, spec.episodes)
    final = evaluate_modes(agent, envs, spec.policy, cfg.train.eval_max_steps, evaluation_seeds(seed, step, len(envs)))
    curve = [r for r in read_metrics(rdir / "metrics.jsonl") if "eval/episodes" in r and r["step"] <= step]
    params = next((r for r in read_metrics(rdir / "metrics.jsonl") if "model/params_world_model" in r), {})
    horizon = None
    if spec.horizon_episodes:  # on held-out episodes the agent plays now (run/horizon.py)
        context = agent.wm.start_length(cfg.actor_critic.imag_context)
        horizon = faithful_horizon(agent, cfg, context, spec.horizon_steps, spec.horizon_episodes, seed=seed)
    return {"run_id": spec.run_id, "label": spec.label, "env": spec.env, "world_model": spec.world_model,
            "behavior": spec.behavior, "variant": spec.variant, "seed": spec.seed, "steps": spec.steps,
            "steps_trained": step, "stopped_at_target": bool(counters["stopped_at_target"]),
            "train_minutes": counters["train_seconds"] / 60, "updates": counters["updates"],
            "nonfinite_updates": counters.get("nonfinite_updates", 0),
            "params_world_model": params.get("model/params_world_model"),
            "params_behavior": params.get("model/params_behavior"),
            "final": {mode: {k: r[k] for k in ("return_mean", "return_std", "returns", "episodes")}
                      for mode, r in final.items()},
            "eval_policy": spec.policy, "curve": curve, "overrides": list(spec.overrides), "faithful_horizon": horizon,
            "presets": list(spec.presets)}
