"""Shared by the benchmark scripts: running the CLI, reading a run's checkpoint counters, cached
evaluations, the machine/commit description and writing JSON + Markdown results. Multi-seed comparisons
are `wmrl bench` suites (wmrl/bench/); these scripts are the experiments around them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from wmrl.bench.execute import commit
from wmrl.bench.execute import machine as bench_machine
from wmrl.run.files import atomic_write_text

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def wmrl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wmrl", *args], cwd=ROOT, capture_output=True, text=True)


def checkpoint_state(run: Path) -> tuple[int, bool, float]:
    """(steps in the run's checkpoint or -1, whether it stopped early at train.stop_at_return, training
    seconds up to the checkpoint summed over resumes; work lost to an interruption is not counted)."""
    ckpt = run / "checkpoints" / "latest.pt"
    if not ckpt.exists():
        return -1, False, 0.0
    counters = torch.load(ckpt, weights_only=True)["counters"]
    return counters["step"], bool(counters.get("stopped_at_target")), counters["train_seconds"]


def cached_eval(run: Path, cache: Path, step: int, args: list[str], **keys) -> dict:
    """`wmrl eval RUN ARGS` of the checkpoint at `step`, kept in `cache` beside that step and `keys`; a
    cache whose step and keys still match is returned instead (a CEM evaluation costs minutes)."""
    want = {"checkpoint_step": step, **keys}
    if cache.exists():
        kept = json.loads(cache.read_text())
        if all(kept.get(k) == v for k, v in want.items()):
            return kept
    proc = wmrl("eval", str(run), *args)  # the CLI runs in the repo root
    if proc.returncode != 0:
        raise SystemExit(f"wmrl eval {run} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    result = {**json.loads(proc.stdout), **want}
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache, json.dumps(result))
    return result


def machine() -> dict:
    return {**bench_machine(), "cores": os.cpu_count(), "threads": torch.get_num_threads()}


def save(name: str, payload: dict, table: str) -> None:
    """Write results/<name>.json and results/<name>.md (the table plus how it was made)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"machine": machine(), "commit": commit(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (RESULTS / f"{name}.json").write_text(json.dumps({**meta, **payload}, indent=1))
    header = "\n".join(f"- {k}: `{v}`" for k, v in meta.items())
    (RESULTS / f"{name}.md").write_text(f"# {name}\n\n{header}\n\n{table}\n")
    print(table)
