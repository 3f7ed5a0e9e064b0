"""Cost of one agent update (world-model step + imagination + actor-critic step) and of one acting step.

Measured by wmrl.bench.cost (a throwaway replay of random-policy steps, one warm-up update, then
`--updates` timed updates and `--acts` acting steps); reports the median update, plus the training time
those costs imply for `train.steps` at `train.train_ratio` (acting included, evaluation excluded). Run it on an idle
machine: another busy process on the same cores makes the figures meaningless.

    python benchmarks/update_cost.py --preset cartpole --env CartPole-v1 [--set key=value ...]
        [--against key=value ... --rounds 2]

With --against, a second configuration (the first's overrides plus these) is measured too, the two
alternating for --rounds rounds, and the table gives both and the ratio of their median updates.
"""

from __future__ import annotations

import argparse
import statistics

from common import save
from wmrl import config as config_mod
from wmrl.bench import cost


def measure(preset: str, overrides: list[str], fill_steps: int, updates: int, acts: int) -> dict:
    cfg = config_mod.build([preset], {}, overrides)
    r = cost.measure(cfg, updates, acts, fill_steps)
    return {"update_ms": 1000 * r["update_s"], "update_ms_min": 1000 * r["update_s_min"],
            "update_ms_max": 1000 * r["update_s_max"], "act_ms": 1000 * r["act_s"], "num_envs": r["num_envs"], "threads": cfg.threads,
            "projected_train_minutes": 60 * r["projected_hours"], "steps": r["steps"], "train_ratio": r["train_ratio"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cartpole")
    p.add_argument("--env", default=None, help="env id (default: the preset's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    p.add_argument("--fill", type=int, default=2000, help="random steps put in the replay first")
    p.add_argument("--updates", type=int, default=20)
    p.add_argument("--acts", type=int, default=200)
    p.add_argument("--against", action="append", default=[], metavar="KEY=VALUE",
                   help="overrides of a second configuration measured alternately with the first, repeatable")
    p.add_argument("--rounds", type=int, default=1, help="alternated rounds (with --against)")
    p.add_argument("--name", default=None, help="results name (default: update_cost_<preset>)")
    args = p.parse_args()
    overrides = ([f"env.id={args.env}"] if args.env else []) + args.set
    configs = {"base": overrides, **({"against": overrides + args.against} if args.against else {})}
    rounds = {name: [] for name in configs}
    for _ in range(args.rounds if args.against else 1):
        for name, ov in configs.items():
            rounds[name].append(measure(args.preset, ov, args.fill, args.updates, args.acts))
    rows = []
    for name, ov in configs.items():
        for i, r in enumerate(rounds[name]):
            rows.append(f"| {args.preset} | {' '.join(ov) or '-'} | {i + 1} | {r['threads']} | {r['update_ms']:.0f} "
                        f"({r['update_ms_min']:.0f}-{r['update_ms_max']:.0f}) | {r['act_ms']:.1f} | "
                        f"{r['projected_train_minutes']:.1f} ({r['steps']} steps, ratio {r['train_ratio']}) |")
    table = ("| preset | overrides | round | threads | update ms (median, min-max) | act ms per env step | "
             "projected train min |\n|---|---|---:|---:|---|---:|---:|\n" + "\n".join(rows))
    payload = {"overrides": overrides, **rounds["base"][0], "rounds": rounds}
    if args.against:
        med = {n: statistics.median(r["update_ms"] for r in rs) for n, rs in rounds.items()}
        payload["against"], payload["update_ratio"] = args.against, med["base"] / med["against"]
        table += (f"\n\nMedian update over the rounds: {med['base']:.0f} ms against {med['against']:.0f} ms with "
                  f"{' '.join(args.against)}: {payload['update_ratio']:.2f}x cheaper.")
    save(args.name or f"update_cost_{args.preset}", payload, table)


if __name__ == "__main__":
    main()
