"""Where a suite's runs stand: finished, trained but not yet evaluated, part-trained (at the step of its
last checkpoint), not started, or with an unreadable checkpoint; whether a process is working on it now
(it holds the run's lock); the time each has trained and a projection of the training time left. Reads
only result.json files, checkpoint counters (memory-mapped) and lock states, so it can watch a suite
while it runs and costs no training time.

Pace: training wall seconds per agent step (evaluations during training included, final evaluations
not). Machines differ up to 3x, so the projection prefers what the current machine does: a part-trained
run's recent pace (the median of its last three logged rates after the warm-up), else the median recent
pace of the part-trained runs of its configuration and env, else the median pace of their finished runs
(which may have trained elsewhere), else the run's own pace so far (too fast early on: it is mostly the
warm-up's), else the same by configuration alone. Where none exists the time left is unknown.
"""

from __future__ import annotations

import fcntl
import json
import statistics
from pathlib import Path

from wmrl.bench.execute import lock_path, result_path, run_dir
from wmrl.bench.suite import RunSpec
from wmrl.errors import WmrlError
from wmrl.run.checkpoint import checkpoint_path, load_checkpoint
from wmrl.run.logger import read_metrics

STATES = ("finished", "trained", "training", "new", "unreadable")  # trained: the final evaluation not done


def _held(lock: Path) -> bool:
    """Whether a process holds the run's lock (wmrl/bench/execute.py), without taking it for long."""
    if not lock.exists():
        return False
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def run_status(spec: RunSpec, out: Path) -> dict:
    """One run's state, agent steps reached (of the run's budget), training seconds so far and whether a
    process works on it now."""
    tc, rdir, path = spec.config().train, run_dir(out, spec), result_path(out, spec)
    steps = tc.steps
    row = {"run": spec.run_id, "label": spec.label, "env": spec.env, "seed": spec.seed, "steps": steps,
           "running": _held(lock_path(out, spec))}
    if path.exists():
        r = json.loads(path.read_text())
        return {**row, "state": "finished", "step": r["steps_trained"], "train_seconds": 60 * r["train_minutes"],
                "final": {mode: v["return_mean"] for mode, v in r["final"].items()}}
    if not checkpoint_path(rdir).exists():
        return {**row, "state": "new", "step": 0, "train_seconds": 0.0}
    try:
        counters = load_checkpoint(rdir, mmap=True)["counters"]
    except WmrlError as e:
        return {**row, "state": "unreadable", "step": 0, "train_seconds": 0.0, "error": str(e)}
    done = counters["step"] >= steps or bool(counters.get("stopped_at_target"))
    return {**row, "state": "trained" if done else "training", "step": counters["step"],
            "train_seconds": float(counters["train_seconds"]), "recent_pace": _recent_pace(rdir, tc.warmup, counters["step"])}


def _recent_pace(rdir: Path, warmup: int, step: int) -> float | None:
    """Seconds per agent step over the run's last three logging windows after its warm-up, up to `step`."""
    rates = [r["perf/steps_per_second"] for r in read_metrics(rdir / "metrics.jsonl")
             if "perf/steps_per_second" in r and warmup < r["step"] <= step and r["perf/steps_per_second"] > 0]
    return 1 / statistics.median(rates[-3:]) if rates else None


def _pace(row: dict) -> float | None:
    return row["train_seconds"] / row["step"] if row["step"] > 0 and row["train_seconds"] > 0 else None


def suite_status(specs: list[RunSpec], out: Path) -> dict:
    """Every run's status (a run named under two configurations once) with its projected training seconds
    left (None: no pace to go by), and the totals (remaining_hours None when runs are left to train and none
    of them has a projection)."""
    specs = list({s.run_id: s for s in specs}.values())
    rows = [run_status(s, out) for s in specs]
    paces: dict[tuple, list[float]] = {}  # (kind, label[, env]) -> paces
    for r in rows:
        complete = r["state"] in ("finished", "trained")
        kind, pace = ("complete", _pace(r)) if complete else ("recent", r.get("recent_pace"))
        if pace is not None:
            paces.setdefault((kind, r["label"], r["env"]), []).append(pace)
            paces.setdefault((kind, r["label"]), []).append(pace)
    for r in rows:
        if r["state"] in ("finished", "trained"):
            r["remaining_seconds"] = 0.0
            continue
        own, recent = _pace(r), r.get("recent_pace")
        task, label = (r["label"], r["env"]), (r["label"],)
        choices = ([recent] if recent else None, paces.get(("recent", *task)), paces.get(("complete", *task)),
                   [own] if own else None, paces.get(("recent", *label)), paces.get(("complete", *label)))
        pace = next((statistics.median(c) for c in choices if c), None)
        r["remaining_seconds"] = None if pace is None else (r["steps"] - r["step"]) * pace
    pending = [r for r in rows if r["state"] not in ("finished", "trained")]
    known = [r["remaining_seconds"] for r in pending if r["remaining_seconds"] is not None]
    return {"runs": rows, "counts": {s: sum(r["state"] == s for r in rows) for s in STATES},
            "running": sum(r["running"] for r in rows), "trained_hours": sum(r["train_seconds"] for r in rows) / 3600,
            "remaining_hours": sum(known) / 3600 if known or not pending else None,
            "longest_remaining_hours": max(known, default=0.0) / 3600, "remaining_unknown": len(pending) - len(known)}


def wall_hours(status: dict, slots: int) -> float | None:
    """Wall time left with `slots` runs at a time: the total shared among the slots, but never less than
    the longest single run left."""
    if status["remaining_hours"] is None:
        return None
    return max(status["remaining_hours"] / max(1, slots), status["longest_remaining_hours"])


def render(status: dict, slots: int) -> list[str]:
    """Printable lines: one per run, then the totals."""
    lines = []
    for r in status["runs"]:
        if r["state"] == "finished":
            what = ", ".join(f"{m} {v:.1f}" for m, v in r["final"].items())
        elif r["state"] == "unreadable":
            what = r["error"]
        else:
            what = "-" if r["remaining_seconds"] is None else f"{r['remaining_seconds'] / 60:7.1f} min left"
        state = r["state"] + ("*" if r["running"] else "")
        lines.append(f"{r['label']:32s} {r['env']:28s} seed {r['seed']:<3d} {state:11s} "
                     f"{r['step']:>7d}/{r['steps']:<7d} {r['train_seconds'] / 60:7.1f} min trained  {what}")
    c, unknown = status["counts"], status["remaining_unknown"]
    total = (f"{c['finished']} finished, {c['trained']} trained and awaiting their final evaluation, "
             f"{c['training']} part-trained, {c['new']} not started"
             + (f", {c['unreadable']} with an unreadable checkpoint" if c["unreadable"] else ""))
    lines.append(f"{len(status['runs'])} runs: {total}; * = in the hands of a process now ({status['running']})")
    if status["remaining_hours"] is None:
        lines.append(f"{status['trained_hours']:.1f} run-hours trained; the time left is unknown: no run has a "
                     "pace to go by yet (see --dry-run for a projection)")
    else:
        bound = "at least " if unknown else ""
        lines.append(f"{status['trained_hours']:.1f} run-hours trained, {bound}{status['remaining_hours']:.1f} of "
                     f"training left at the pace so far, final evaluations excluded (about {bound}"
                     f"{wall_hours(status, slots):.1f} h of wall time at {slots} runs at a time)"
                     + (f"; {unknown} runs without a pace to go by (see --dry-run)" if unknown else ""))
    return lines
