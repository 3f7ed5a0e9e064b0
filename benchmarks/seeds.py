"""Train one configuration over several seeds, evaluate each, and report per-seed figures and medians.

Each seed: `wmrl train ... --seed S --run-dir OUT/seedS`, then `wmrl eval OUT/seedS --episodes N`
(greedy). The training wall time is the run's own clock at its last checkpoint (summed over resumes,
evaluations during training included). A seed whose run directory has a checkpoint short of --steps is
resumed, so long benchmarks can continue across sessions. Run seeds one at a time on an idle machine
for honest wall times (or pass --parallel with --set threads=1 and say so).

  python benchmarks/seeds.py --name cartpole --env CartPole-v1 --steps 20000 --seeds 1 2 3
  python benchmarks/seeds.py --name minatar_breakout --preset minatar --env MinAtar/Breakout-v1 \\
      --steps 100000 --seeds 1 2 --reference "DQN (MinAtar paper, 1M frames): ~9.5"
"""

from __future__ import annotations

import argparse
import json
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ROOT, cached_eval, checkpoint_state, logged_rows, save, wmrl


def final_eval(run: Path, episodes: int, step: int) -> dict:
    """`wmrl eval RUN --episodes N` of the checkpoint at `step`, kept in RUN/final_eval_N.json beside that
    step, so a relaunch to finish other seeds does not evaluate a finished seed again (a CEM evaluation
    costs minutes)."""
    return cached_eval(run, run / f"final_eval_{episodes}.json", step, ["--episodes", str(episodes)])


def run_seed(args, seed: int) -> dict:
    run = Path(args.out) / f"seed{seed}"
    done, stopped, _ = checkpoint_state(run)
    if done < args.steps and not stopped:
        if done >= 0:
            cmd = ["train", "--run-dir", str(run), "--resume", "--steps", str(args.steps), "--no-progress"]
        else:
            cmd = ["train", "--env", args.env, "--steps", str(args.steps), "--seed", str(seed), "--run-dir", str(run),
                   "--no-progress"] + [x for p in args.preset for x in ("--preset", p)] + \
                  [x for s in args.set for x in ("--set", s)]
        proc = wmrl(*cmd)
        if proc.returncode != 0:
            raise SystemExit(f"seed {seed} failed:\n{proc.stderr[-3000:]}")
    step, _, seconds = checkpoint_state(run)
    ev = final_eval(run, args.episodes, step)
    evals = [r for r in logged_rows(run, step) if "eval/return_mean" in r]
    reached = next((r for r in evals if args.target is not None and r["eval/return_mean"] >= args.target), {})
    result = {"seed": seed, "train_minutes": seconds / 60, "return_mean": ev["return_mean"], "return_std": ev["return_std"],
              "returns": ev["returns"], "first_eval_step_at_target": reached.get("step"),
              "train_minutes_at_target": reached.get("time/train_minutes"),
              "best_eval_return": max((r["eval/return_mean"] for r in evals), default=None),
              "steps_trained": step, "run_dir": str(run)}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--env", required=True)
    p.add_argument("--preset", action="append", default=[])
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--seeds", type=int, nargs="+", required=True)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--target", type=float, default=None, help="report the first evaluation step reaching this")
    p.add_argument("--reference", default="", help="a published reference to print beside the result")
    p.add_argument("--out", default=None, help="run directories (default runs/bench-NAME)")
    p.add_argument("--parallel", action="store_true",
                   help="train all seeds at once (give each one thread: --set threads=1; wall times then share the CPU)")
    args = p.parse_args()
    args.out = args.out or str(ROOT / "runs" / f"bench-{args.name}")
    if args.parallel:
        with ThreadPoolExecutor(len(args.seeds)) as pool:
            results = list(pool.map(lambda s: run_seed(args, s), args.seeds))
    else:
        results = [run_seed(args, s) for s in args.seeds]
    results.sort(key=lambda r: r["seed"])
    med = statistics.median(r["return_mean"] for r in results)
    lines = [f"Env `{args.env}`, {args.steps} env steps, presets {args.preset or ['cartpole (default)']}, "
             f"overrides {args.set or 'none'}; greedy evaluation over {args.episodes} episodes per seed; seeds trained "
             + ("in parallel (sharing the CPU)." if args.parallel else "one at a time."), "",
             "| seed | train wall time (min) | greedy return mean | std | first eval step at target |",
             "|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['seed']} | {r['train_minutes']:.1f} | {r['return_mean']:.1f} | {r['return_std']:.1f} | "
                     f"{r['first_eval_step_at_target'] or '-'} |")
    lines.append(f"| **median** | {statistics.median(r['train_minutes'] for r in results):.1f} | **{med:.1f}** | | |")
    if args.reference:
        lines.append(f"\nReference: {args.reference}")
    save(args.name, {"env": args.env, "steps": args.steps, "seeds": args.seeds, "median_return": med,
                     "results": results}, "\n".join(lines))


if __name__ == "__main__":
    main()
