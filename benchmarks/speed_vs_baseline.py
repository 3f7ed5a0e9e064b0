"""Update and act cost of this checkout against a baseline commit, alternated in one sitting.

Runs benchmarks/update_cost.py of each checkout in its own process (its own `wmrl` on PYTHONPATH), for
every preset x world model, `--rounds` times, the baseline and this checkout in alternating order, so a
drift of the machine's speed during the sitting touches both alike. Reports the medians over the rounds
and the ratios baseline / now (above 1: cheaper now), and the cost per replayed sample, which stays
comparable when a preset changes its batch sizes or update ratio. Run it on an idle machine.

    python benchmarks/speed_vs_baseline.py --baseline-commit 231afcf [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import save

ROOT = Path(__file__).resolve().parents[1]


def checkout(commit: str) -> Path:
    """A worktree of `commit` under runs/ (made once, reused)."""
    path = ROOT / "runs" / f"baseline-{commit}"
    if not (path / "wmrl").is_dir():
        subprocess.run(["git", "worktree", "add", "--force", "--detach", str(path), commit], cwd=ROOT, check=True,
                       capture_output=True)
    return path


def measure(tree: Path, preset: str, world_model: str, threads: int, updates: int, acts: int,
            extra: list[str]) -> dict:
    name = f"_speed_{preset}_{world_model}"
    sets = [f"world_model={world_model}", "behavior=actor_critic", f"threads={threads}", *extra]
    cmd = [sys.executable, str(tree / "benchmarks" / "update_cost.py"), "--preset", preset, "--updates", str(updates),
           "--acts", str(acts), "--name", name] + [a for kv in sets for a in ("--set", kv)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True, text=True)
    path = tree / "benchmarks" / "results" / f"{name}.json"
    result = json.loads(path.read_text())
    for suffix in (".json", ".md"):
        path.with_suffix(suffix).unlink()
    return result


def samples_per_update(tree: Path, preset: str, world_model: str, extra: list[str]) -> dict:
    """Replayed world-model rows and imagination starts per update, and updates per env step, of a checkout's preset."""
    code = ("import json; from wmrl import config as c; g = c.build([%r], {}, %r); "
            "t = g.train; print(json.dumps({'wm_rows': t.wm_batch * t.wm_seq, 'starts': g.actor_critic.imag_batch, "
            "'train_ratio': t.train_ratio}))") % (preset, [f"world_model={world_model}", "behavior=actor_critic", *extra])
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline-commit", default="231afcf")
    p.add_argument("--presets", nargs="+", default=["cartpole", "minatar"])
    p.add_argument("--world-models", nargs="+", default=["storm", "rssm"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--updates", type=int, default=10)
    p.add_argument("--acts", type=int, default=200)
    p.add_argument("--now-set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for this checkout only (a setting the baseline lacks), repeatable")
    p.add_argument("--name", default=None, help="results name (default: speed_vs_<commit>)")
    args = p.parse_args()
    trees = {"baseline": checkout(args.baseline_commit), "now": ROOT}
    extra = {"baseline": [], "now": args.now_set}
    rows, payload = [], {"baseline_commit": args.baseline_commit, "rounds": args.rounds, "threads": args.threads,
                         "now_overrides": args.now_set, "configs": {}}
    for preset in args.presets:
        for wm in args.world_models:
            got: dict[str, list[dict]] = {"baseline": [], "now": []}
            for r in range(args.rounds):
                for side in (("baseline", "now") if r % 2 == 0 else ("now", "baseline")):
                    got[side].append(measure(trees[side], preset, wm, args.threads, args.updates, args.acts, extra[side]))
                    print(f"{preset} {wm} round {r} {side}: update {got[side][-1]['update_ms']:.0f} ms, "
                          f"act {got[side][-1]['act_ms']:.2f} ms", flush=True)
            summary = {}
            for side, runs in got.items():
                size = samples_per_update(trees[side], preset, wm, extra[side])
                update = statistics.median(x["update_ms"] for x in runs)
                summary[side] = {"update_ms": update, "act_ms": statistics.median(x["act_ms"] for x in runs),
                                 "update_ms_rounds": [x["update_ms"] for x in runs],
                                 "act_ms_rounds": [x["act_ms"] for x in runs], **size,
                                 "update_ms_per_env_step": update * size["train_ratio"]}
            b, n = summary["baseline"], summary["now"]
            ratios = {"update": b["update_ms"] / n["update_ms"], "act": b["act_ms"] / n["act_ms"],
                      "update_per_env_step": b["update_ms_per_env_step"] / n["update_ms_per_env_step"]}
            payload["configs"][f"{preset}/{wm}"] = {**summary, "ratio": ratios}
            rows.append(f"| {preset} | {wm} | {b['update_ms']:.0f} | {n['update_ms']:.0f} | {ratios['update']:.2f}x | "
                        f"{b['update_ms_per_env_step']:.1f} | {n['update_ms_per_env_step']:.1f} | "
                        f"{ratios['update_per_env_step']:.2f}x | {b['act_ms']:.2f} | {n['act_ms']:.2f} | "
                        f"{ratios['act']:.2f}x |")
    table = (f"Medians over {args.rounds} alternated rounds, threads={args.threads}, actor-critic; ratio = baseline / now; "
             f"overrides of this checkout only: {' '.join(args.now_set) or 'none'}. Acting is per env step.\n\n"
             f"| preset | world model | update ms {args.baseline_commit} | update ms now | update ratio | "
             "update ms per env step (base) | (now) | ratio | act ms (base) | act ms (now) | act ratio |\n"
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows))
    save(args.name or f"speed_vs_{args.baseline_commit}", payload, table)


if __name__ == "__main__":
    main()
