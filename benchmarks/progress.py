"""Where a seeds.py benchmark stands while it runs or after it was interrupted (seeds.py writes its
result files only once every seed has finished). Reads the seeds' run directories and writes nothing.

    python progress.py --name cartpole_storm_cem [--out DIR]

Per seed: the checkpoint's step and training minutes (what a relaunch resumes from), whether the run
stopped at its target, and every evaluation mean logged so far with the best one. Evaluations past the
checkpoint are marked: an interruption throws that work away and a resume redoes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import ROOT, checkpoint_state, logged_rows


def seed_progress(run: Path) -> dict:
    step, stopped, seconds = checkpoint_state(run)
    rows = logged_rows(run)
    evals = [(r["step"], r["eval/return_mean"]) for r in rows if "eval/return_mean" in r]
    return {"run": run.name, "checkpoint_step": step, "train_minutes": seconds / 60, "stopped_at_target": stopped,
            "latest_step": max((r["step"] for r in rows), default=0), "evals": evals,
            "best_eval": max((e for s, e in evals if s <= step), default=None)}


def render(p: dict) -> str:
    evals = " ".join(f"{s // 1000}k:{e:.0f}" + ("*" if s > p["checkpoint_step"] else "") for s, e in p["evals"])
    best = "-" if p["best_eval"] is None else f"{p['best_eval']:.1f}"
    return (f"| {p['run']} | {p['checkpoint_step']} | {p['latest_step']} | {p['train_minutes']:.1f} | "
            f"{'yes' if p['stopped_at_target'] else 'no'} | {best} | {evals or '-'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, help="the seeds.py --name of the benchmark")
    ap.add_argument("--out", default=None, help="its run directories (default runs/bench-NAME)")
    args = ap.parse_args()
    out = Path(args.out or ROOT / "runs" / f"bench-{args.name}")
    seeds = sorted(out.glob("seed*"))
    if not seeds:
        raise SystemExit(f"no seed directories in {out}: pass the benchmark's --name, or --out if it ran elsewhere")
    print("| seed | checkpoint step | latest logged step | train minutes at checkpoint | stopped at target | "
          "best eval up to checkpoint | evals (step:mean, * = after the checkpoint) |")
    print("|---|---:|---:|---:|---|---:|---|")
    for run in seeds:
        print(render(seed_progress(run)))


if __name__ == "__main__":
    main()
