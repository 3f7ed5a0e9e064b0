"""Where a suite's runs stand: finished, trained but not yet evaluated, part-trained (at the step of its
last checkpoint) or not started, with the time each has trained and a projection of what is left at
the pace of the runs so far. Reads only result.json files and checkpoint counters, so it can watch a
suite while it runs (checkpoints are replaced atomically) and costs no training time.

A run's pace is its training wall seconds per agent step (evaluations during training included, the
final evaluation not). A run not started takes the median pace of the runs of its configuration and
env that have one, else of its configuration; where none has, its remaining time is unknown.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from wmrl.bench.execute import result_path, run_dir
from wmrl.bench.suite import RunSpec
from wmrl.errors import WmrlError
from wmrl.run.checkpoint import checkpoint_path, load_checkpoint

STATES = ("finished", "trained", "training", "new")  # trained: training done, the final evaluation not


def run_status(spec: RunSpec, out: Path) -> dict:
    """One run's state, agent steps reached and training seconds so far."""
    row = {"run": spec.run_id, "label": spec.label, "env": spec.env, "seed": spec.seed, "steps": spec.steps}
    path = result_path(out, spec)
    if path.exists():
        r = json.loads(path.read_text())
        return {**row, "state": "finished", "step": r["steps_trained"], "train_seconds": 60 * r["train_minutes"],
                "final": {mode: v["return_mean"] for mode, v in r["final"].items()}}
    if not checkpoint_path(run_dir(out, spec)).exists():
        return {**row, "state": "new", "step": 0, "train_seconds": 0.0}
    try:
        counters = load_checkpoint(run_dir(out, spec))["counters"]
    except WmrlError as e:
        raise WmrlError(f"run {spec.run_id}: {e}", e.hint) from e
    done = counters["step"] >= spec.steps or bool(counters.get("stopped_at_target"))
    return {**row, "state": "trained" if done else "training", "step": counters["step"],
            "train_seconds": float(counters["train_seconds"])}


def _pace(row: dict) -> float | None:
    return row["train_seconds"] / row["step"] if row["step"] > 0 and row["train_seconds"] > 0 else None


def suite_status(specs: list[RunSpec], out: Path) -> dict:
    """Every run's status with its projected remaining training seconds (None: no pace to go by), and the
    totals. A finished or trained run has nothing left to train."""
    rows = [run_status(s, out) for s in specs]
    by_task: dict[tuple, list[float]] = {}
    by_label: dict[str, list[float]] = {}
    for r in rows:
        if (p := _pace(r)) is not None:
            by_task.setdefault((r["label"], r["env"]), []).append(p)
            by_label.setdefault(r["label"], []).append(p)
    for r in rows:
        if r["state"] in ("finished", "trained"):
            r["remaining_seconds"] = 0.0
            continue
        paces = [_pace(r)] if _pace(r) is not None else by_task.get((r["label"], r["env"])) or by_label.get(r["label"])
        r["remaining_seconds"] = (r["steps"] - r["step"]) * statistics.median(paces) if paces else None
    counts = {s: sum(r["state"] == s for r in rows) for s in STATES}
    known = [r["remaining_seconds"] for r in rows if r["remaining_seconds"] is not None]
    return {"runs": rows, "counts": counts, "trained_hours": sum(r["train_seconds"] for r in rows) / 3600,
            "remaining_hours": sum(known) / 3600, "remaining_unknown": len(rows) - len(known)}


def render(status: dict, slots: int) -> list[str]:
    """Printable lines: one per run, then the totals with the wall time left at `slots` runs at a time."""
    lines = []
    for r in status["runs"]:
        left = "-" if r["remaining_seconds"] is None else f"{r['remaining_seconds'] / 60:7.1f} min left"
        what = (", ".join(f"{m} {v:.1f}" for m, v in r["final"].items()) if r["state"] == "finished"
                else left)
        lines.append(f"{r['label']:32s} {r['env']:28s} seed {r['seed']:<3d} {r['state']:9s} "
                     f"{r['step']:>7d}/{r['steps']:<7d} {r['train_seconds'] / 60:7.1f} min trained  {what}")
    c = status["counts"]
    unknown = status["remaining_unknown"]
    lines.append(f"{len(status['runs'])} runs: {c['finished']} finished, {c['trained']} trained and awaiting their "
                 f"final evaluation, {c['training']} part-trained, {c['new']} not started; "
                 f"{status['trained_hours']:.1f} run-hours trained, {status['remaining_hours']:.1f} left at the "
                 f"pace so far (about {status['remaining_hours'] / max(1, slots):.1f} h of wall time at {slots} "
                 f"runs at a time)" + (f"; {unknown} runs without a pace to go by (see --dry-run)" if unknown else ""))
    return lines
