"""CEM planning on trained runs under named planner settings: each model's greedy mean and the median
over models, so a planner setting is judged across models rather than on one lucky model.

Every (run, setting) is `wmrl eval RUN --episodes N --plan --set KEY=VAL ...`, kept in
RUN/plan_eval/<setting>_<N>.json beside the checkpoint step and settings it used. A relaunch (to add a
setting or a model) reuses the evaluations whose step and settings still match: one CEM evaluation costs
minutes here. Evaluations run one at a time, each with the run's own `threads`.

  python plan_eval.py --name cartpole_cem_on_storm_ac --episodes 20 \\
      --runs ../runs/bench-cartpole_storm_ac_stop/seed1 ../runs/bench-cartpole_storm_ac_stop/seed2 \\
      --setting horizon12 cem.horizon=12 --setting horizon12_value cem.horizon=12 cem.terminal_value=true
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

from common import cached_eval, checkpoint_state, save


def parse_setting(words: list[str]) -> tuple[str, list[str]]:
    """["horizon12", "cem.horizon=12"] -> ("horizon12", ["cem.horizon=12"]); no overrides = the preset."""
    name, overrides = words[0], words[1:]
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or "=" in name:
        raise SystemExit(f"--setting {' '.join(words)}: start with a name made of letters, digits, _ . or -, "
                         "then the cem.KEY=VALUE overrides, e.g. --setting horizon12 cem.horizon=12")
    for o in overrides:
        if not o.startswith("cem.") or "=" not in o:
            raise SystemExit(f"--setting {name}: {o!r} is not a planner override; write cem.KEY=VALUE")
    return name, overrides


def plan_eval(run: Path, name: str, overrides: list[str], episodes: int) -> dict:
    """The cached or fresh `wmrl eval RUN --plan` result of the run's latest checkpoint under `overrides`."""
    step, _, _ = checkpoint_state(run)
    if step < 0:
        raise SystemExit(f"{run} has no checkpoint (checkpoints/latest.pt); pass the run directory of a trained run")
    cache = run / "plan_eval" / f"{name}_{episodes}.json"
    plan = ["--plan"] + [x for o in overrides for x in ("--set", o)]
    result = cached_eval(run.resolve(), cache, step, ["--episodes", str(episodes), *plan], overrides=overrides)
    print(f"{run} {name}: {result['return_mean']:.1f}", flush=True)
    return result


def table(runs: list[Path], settings: list[tuple[str, list[str]]], cells: dict, medians: dict) -> str:
    head = "| model | checkpoint step | " + " | ".join(n for n, _ in settings) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(settings)]
    for run in runs:
        row = cells[str(run)]
        step = next(iter(row.values()))["checkpoint_step"]
        lines.append(f"| {run} | {step} | " + " | ".join(
            f"{row[n]['return_mean']:.1f} ± {row[n]['return_std']:.1f}" for n, _ in settings) + " |")
    lines.append("| **median** | | " + " | ".join(f"**{medians[n]:.1f}**" for n, _ in settings) + " |")
    lines.append("")
    lines += [f"- `{n}`: {' '.join(o) or 'the run preset planner'}" for n, o in settings]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="trained run directories (one per model)")
    p.add_argument("--setting", nargs="+", action="append", required=True, metavar="NAME [cem.KEY=VALUE ...]")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--reference", default="", help="a note printed under the table (e.g. where the models come from)")
    args = p.parse_args()
    settings = [parse_setting(words) for words in args.setting]
    if len({n for n, _ in settings}) < len(settings):
        raise SystemExit("two --setting share a name; give each its own")
    cells = {str(run): {n: plan_eval(run, n, o, args.episodes) for n, o in settings} for run in args.runs}
    medians = {n: statistics.median(cells[str(run)][n]["return_mean"] for run in args.runs) for n, _ in settings}
    text = (f"CEM planning (`wmrl eval RUN --plan`), greedy, {args.episodes} episodes per model and setting; "
            "mean ± std per model, median over models.\n\n" + table(args.runs, settings, cells, medians))
    if args.reference:
        text += f"\n\n{args.reference}"
    save(args.name, {"episodes": args.episodes, "settings": dict(settings), "medians": medians, "results": cells}, text)


if __name__ == "__main__":
    main()
