"""The (world model, behaviour) table on one env: steps and training minutes to a target, median over seeds.

Each pair is measured by seeds.py under the name `<prefix>_<world model>_<behaviour>` with the
behaviour's short name (e.g. cartpole_rssm_ac), with `--target T --set train.stop_at_return=T` so a
run stops once it gets there. This script only reads those results and writes
`results/<prefix>_pairs.{json,md}`; for a pair not measured yet it prints the seeds.py command that
measures it.

A seed that never reached the target counts as "not reached" (above every reached value) in the
medians, so a median is a number only when more than half of the seeds got there.

    python pairs.py --prefix cartpole --env CartPole-v1 --target 475 --steps 50000 [--use storm+actor_critic=cartpole]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

from common import RESULTS, save

WORLD_MODELS = ("storm", "rssm", "mdnrnn")
BEHAVIORS = {"actor_critic": "ac", "cem": "cem", "cmaes": "cmaes"}  # behaviour -> short name in result files
ROUTINE_SETTINGS = ("world_model", "behavior", "train.stop_at_return", "threads")  # set by every pair run


def median_reached(values: list[float | None]) -> float | None:
    """Median with None (never reached) ranked above every number; None when that median is unreached."""
    ranked = sorted(math.inf if v is None else v for v in values)
    med = statistics.median(ranked) if ranked else math.inf
    return None if math.isinf(med) else med


def summarize(results: list[dict]) -> dict:
    steps = [r["first_eval_step_at_target"] for r in results]
    minutes = [r["train_minutes_at_target"] for r in results]  # None where the target was not reached
    return {"seeds": [r["seed"] for r in results],
            "reached": sum(s is not None for s in steps),
            "median_steps_to_target": median_reached(steps),
            "median_minutes_to_target": median_reached(minutes),
            "median_best_eval_return": statistics.median(r["best_eval_return"] or 0.0 for r in results),
            "median_final_return": statistics.median(r["return_mean"] for r in results),
            "per_seed": [{k: r[k] for k in ("seed", "first_eval_step_at_target", "train_minutes_at_target",
                                            "best_eval_return", "return_mean", "steps_trained")} for r in results]}


def pair_source(text: str) -> tuple[str, str]:
    """`--use` value WM+BEHAVIOUR=NAME -> ("WM+BEHAVIOUR", NAME), checked against the known pairs."""
    pair, sep, name = text.partition("=")
    wm, _, beh = pair.partition("+")
    if not sep or not name or wm not in WORLD_MODELS or beh not in BEHAVIORS:
        raise argparse.ArgumentTypeError(f"{text!r} is not WM+BEHAVIOUR=NAME with WM in {WORLD_MODELS} and "
                                         f"BEHAVIOUR in {tuple(BEHAVIORS)}, e.g. storm+actor_critic=cartpole")
    return pair, name


def extra_settings(command: str) -> str:
    """The `--set key=value` overrides of a seeds.py command beyond the pair's routine ones (comma-joined)."""
    words = command.split()
    pairs = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--set"]
    extra = [kv for kv in pairs if kv.partition("=")[0] not in ROUTINE_SETTINGS]
    return ", ".join(f"`{kv}`" for kv in extra) or "preset"


def fmt(value: float | None, spec: str) -> str:
    return "not reached" if value is None else format(value, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prefix", default="cartpole")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--target", type=float, default=475.0)
    p.add_argument("--steps", type=int, default=50000)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--use", action="append", default=[], type=pair_source, metavar="WM+BEHAVIOUR=NAME",
                   help="read a pair from results/NAME.json instead, e.g. storm+actor_critic=cartpole (the default "
                        "agent's own benchmark, run with --target but without stopping there)")
    args = p.parse_args()
    sources = dict(args.use)

    rows, missing = {}, []
    table = [f"Env `{args.env}`: environment steps and training wall time until a greedy evaluation mean "
              f">= {args.target:g} (median over seeds; a run stops there), else the best evaluation within the "
              f"pair's step budget (the issue asks for {args.steps}; a pair's own budget is in its column, lower "
              f"where all seeds reached the target well inside it or where the pair's cost per step did not fit "
              f"this CPU); \"steps trained\" is how far the furthest seed got (less than the budget where a run "
              f"was stopped early). Per-pair commits, commands and machines are in "
              f"results/{args.prefix}_<pair>.md.", "",
              "| world model | behaviour | seeds reaching | steps to target | minutes to target | best eval (median) "
              "| final greedy (median) | step budget | steps trained (max) | settings beyond the preset | commit |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for wm in WORLD_MODELS:
        for beh, short in BEHAVIORS.items():
            name = sources.get(f"{wm}+{beh}", f"{args.prefix}_{wm}_{short}")
            path = RESULTS / f"{name}.json"
            if not path.exists():
                missing.append(f"python seeds.py --name {name} --env {args.env} --steps {args.steps} --seeds "
                               f"{' '.join(map(str, args.seeds))} --target {args.target:g} --set world_model={wm} "
                               f"--set behavior={beh} --set train.stop_at_return={args.target:g} --set threads=1")
                table.append(f"| {wm} | {beh} | - | - | - | - | - | - | - | - | not measured |")
                continue
            data = json.loads(path.read_text())
            s = summarize(data["results"])
            rows[f"{wm}+{beh}"] = {**s, "step_budget": data["steps"], "commit": data["commit"],
                                   "command": data["command"]}
            trained = max(r["steps_trained"] for r in data["results"])
            table.append(f"| {wm} | {beh} | {s['reached']}/{len(s['seeds'])} | {fmt(s['median_steps_to_target'], '.0f')} | "
                         f"{fmt(s['median_minutes_to_target'], '.1f')} | {s['median_best_eval_return']:.1f} | "
                         f"{s['median_final_return']:.1f} | {data['steps']} | {trained} | "
                         f"{extra_settings(data['command'])} | `{data['commit']}` |")
    save(f"{args.prefix}_pairs", {"env": args.env, "target": args.target, "steps": args.steps, "pairs": rows},
         "\n".join(table))
    if missing:
        print("\nnot measured yet:\n" + "\n".join(missing))


if __name__ == "__main__":
    main()
