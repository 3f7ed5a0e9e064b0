"""wmrl's command line: train, eval and dream. See `wmrl --help` and the README."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from wmrl.errors import WmrlError

DESCRIPTION = """\
Sample-efficient RL with learned world models.

  wmrl train                      STORM on CartPole-v1 (preset `cartpole`): the main job
  wmrl train --preset minatar --env MinAtar/Breakout-v1 --steps 100000 --seed 1
  wmrl train --run-dir DIR --resume
  wmrl eval RUN_DIR --episodes 10 [--sample]
  wmrl dream RUN_DIR --horizon 16 --out dream.gif
  wmrl bench cartpole-pairs [--dry-run | --status] [--out DIR] [--address ray://HOST:10001]
"""


def _parser() -> argparse.ArgumentParser:
    from wmrl.config import BEHAVIORS, DEVICES, WORLD_MODELS, available_presets

    p = argparse.ArgumentParser(prog="wmrl", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train an agent (default: STORM on CartPole-v1)",
                       description="Train a world model and a behaviour in it. Presets stack in the order "
                                   f"given (available: {', '.join(available_presets())}; default cartpole); "
                                   "--set KEY=VALUE overrides any config field, e.g. --set storm.transformer.layers=2. "
                                   f"Pick the world model with --set world_model={'|'.join(WORLD_MODELS)} and the "
                                   f"behaviour with --set behavior={'|'.join(BEHAVIORS)}; every pair is valid. "
                                   "The run directory gets config.yaml, metrics.jsonl, tb/, learning_curve.png, "
                                   "checkpoints/ and replay/.")
    t.add_argument("--preset", action="append", default=[], metavar="NAME", help="preset to stack (repeatable)")
    t.add_argument("--env", help="Gymnasium id, MinAtar/<Game>-v1, ALE/<Game>-v5 or module:EnvId")
    t.add_argument("--steps", type=int, help="environment steps to train for")
    t.add_argument("--seed", type=int, help="random seed")
    t.add_argument("--run-dir", type=Path, help="run directory (default runs/<env>-<model>-seed<S>-<time>)")
    t.add_argument("--device", choices=DEVICES, help="compute device (default auto)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one config field (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    t.epilog = ("progress bar: ret = the last training episode's return; wm = the world-model loss, averaged since "
                "the last log row; imag_ret = the behaviour's mean imagined lambda-return; eval = the last "
                "evaluation's mean return (first mode of train.eval_policy). Every key for --set, with its "
                "type, choices and meaning: wmrl config [--preset NAME] [--set KEY=VALUE].")
    c = sub.add_parser("config", help="print the resolved config: every --set key with its value, type and meaning",
                       description="Resolve presets and --set overrides as `wmrl train` would and print every key "
                                   "with its value, type, choices and docstring (or JSON with --json); the same "
                                   "checks as train refuse bad values.")
    c.add_argument("--preset", action="append", default=[], metavar="NAME", help="preset to stack (repeatable)")
    c.add_argument("--env", help="environment id")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides")
    c.add_argument("--json", action="store_true", help="one JSON list of {key, value, type, choices, doc}")
    e = sub.add_parser("eval", help="evaluate a trained run; prints one JSON object",
                       description="Play --episodes full episodes on a fresh env (seeded apart from training) "
                                   "and print {return_mean, return_std, returns, greedy, behavior}. Greedy unless --sample; "
                                   "--plan acts by CEM planning on the run's world model (any run) instead.")
    e.add_argument("run_dir", type=Path)
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--sample", action="store_true", help="sample actions instead of taking the most likely")
    e.add_argument("--device", choices=DEVICES, default="auto")
    e.add_argument("--plan", action="store_true",
                   help="act by CEM planning on the run's world model instead of its trained behaviour")
    e.add_argument("--set", action="append", default=[], metavar="cem.KEY=VALUE", dest="overrides",
                   help="with --plan: a planner setting (repeatable), e.g. --set cem.candidates=200; "
                        "cem.terminal_value=true adds an actor-critic run's critic at the horizon")
    d = sub.add_parser("dream", help="show the model's open-loop imagination beside the real future",
                       description="From a real context in the run's replay, imagine --horizon steps under the "
                                   "real actions; write real | imagined side by side (GIF/MP4 for images, a PNG "
                                   "plot per state dimension for vectors) and print the per-step prediction error. "
                                   "With --held-out N, also play N new episodes with the run's agent and report the "
                                   "faithful horizon on them: the first open-loop step whose prediction error "
                                   "exceeds that of predicting the context's mean observation.")
    d.add_argument("run_dir", type=Path)
    d.add_argument("--horizon", type=int, default=16)
    d.add_argument("--out", type=Path, help="output file (default RUN_DIR/dream.gif or dream.png)")
    d.add_argument("--seed", type=int, default=0, help="which replay context to pick")
    d.add_argument("--held-out", type=int, default=0, metavar="N",
                   help="episodes played afresh (never trained on) for the faithful horizon (0: none)")
    d.add_argument("--device", choices=DEVICES, default="auto")
    from wmrl.bench.suite import available_suites

    b = sub.add_parser("bench", help="run a benchmark suite on Ray and report it with rliable",
                       description="Run every run of a suite (a shipped one: "
                                   f"{', '.join(available_suites())}; or a suite YAML file) as a Ray task, skip "
                                   "finished runs and resume interrupted ones, then write report.{json,md} and "
                                   "plots (IQM, mean, median with 95% stratified-bootstrap intervals, probability "
                                   "of improvement, learning curves, performance profiles) into --out. Needs "
                                   "pip install -e '.[bench]'.")
    b.add_argument("suite", help="suite name or YAML file")
    b.add_argument("--out", type=Path, help="output directory (default runs/bench/<suite>)")
    b.add_argument("--address", help="an existing Ray cluster (default: start a local one)")
    b.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    b.add_argument("--cpus", type=int, help="CPU slots of the local cluster (default: all cores)")
    b.add_argument("--dry-run", action="store_true", help="list the runs and their projected CPU hours")
    b.add_argument("--report-only", action="store_true", help="report the finished runs, run nothing")
    b.add_argument("--status", action="store_true",
                   help="list where each run in --out stands (finished, part-trained at its checkpoint's step, not "
                        "started) and the time left at the pace so far; runs nothing, safe while the suite runs")
    b.add_argument("--only", action="append", metavar="LABEL",
                   help="run only this configuration (as the report names it, e.g. storm+actor_critic/envs4); "
                        "repeatable; the report still covers every finished run in --out")
    return p


def _finite(obj):
    """obj with every non-finite float replaced by None, so what wmrl prints is valid JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _print_json(obj) -> None:
    print(json.dumps(_finite(obj), allow_nan=False))


def _train(args) -> None:
    from wmrl import config as config_mod
    from wmrl.run import rundir
    from wmrl.run.trainer import train

    if args.resume:
        if args.run_dir is None:
            raise WmrlError("--resume needs the run to continue", "pass --run-dir DIR together with --resume")
        if args.preset or args.overrides or args.env or args.seed is not None:
            raise WmrlError("a resumed run keeps its saved config",
                            "drop --preset/--set/--env/--seed; only --steps and --device may change on --resume")
        cfg = rundir.open_existing(args.run_dir)
        flags = {k: v for k, v in {"device": args.device}.items() if v is not None}
        if args.steps is not None:
            flags["train"] = {"steps": args.steps}
        config_mod.apply(cfg, flags)
        config_mod.validate(cfg)
        run_dir = args.run_dir
        if not rundir.has_checkpoint(run_dir):
            print(f"wmrl: {run_dir} stopped before its first checkpoint; starting it again from step 0",
                  file=sys.stderr)
            rundir.discard_unsaved_start(run_dir)
            args.resume = False
    else:
        flags: dict = {}
        if args.env is not None:
            flags["env"] = {"id": args.env}
        if args.steps is not None:
            flags["train"] = {"steps": args.steps}
        for key in ("seed", "device"):
            if getattr(args, key) is not None:
                flags[key] = getattr(args, key)
        cfg = config_mod.build(args.preset or ["cartpole"], flags, args.overrides)
        run_dir = args.run_dir or rundir.default_run_dir(cfg)
        rundir.check_new(run_dir)
        # Build the env once before touching the disk, so a bad env id leaves no directory behind.
        from wmrl.envs.factory import env_spec, make_env

        env_spec(make_env(cfg.env, cfg.seed))
    print(f"run directory: {run_dir}", file=sys.stderr)
    result = train(cfg, run_dir, resume=args.resume, progress=not args.no_progress)
    _print_json(result)


def _eval(args) -> None:
    import torch

    from wmrl.run.inference import load_run
    from wmrl.run.evaluate import evaluate, make_eval_envs
    from wmrl.run.trainer import EVAL_SEED_OFFSET

    if args.episodes < 1:
        raise WmrlError(f"--episodes {args.episodes} must be >= 1", "pass e.g. --episodes 10")
    if args.overrides and not args.plan:
        raise WmrlError("--set on eval only changes the planner", "add --plan, e.g. --plan --set cem.horizon=20")
    cfg, agent, _ = load_run(args.run_dir, args.device, with_replay=False, plan=args.overrides if args.plan else None)
    seed = cfg.seed + 2 * EVAL_SEED_OFFSET
    torch.manual_seed(seed)  # latents are sampled while observing: the same checkpoint gives the same figures
    envs = make_eval_envs(cfg.env, seed, args.episodes)
    result = evaluate(agent, envs, greedy=not args.sample)
    _print_json({**result, "behavior": cfg.behavior})


def _dream(args) -> None:
    from wmrl.run.dream import dream

    if args.horizon < 1:
        raise WmrlError(f"--horizon {args.horizon} must be >= 1", "pass e.g. --horizon 16")
    if args.held_out < 0:
        raise WmrlError(f"--held-out {args.held_out} must be >= 0", "pass the number of episodes, e.g. --held-out 5")
    _print_json(dream(args.run_dir, args.horizon, args.out, args.seed, args.device, args.held_out))


def _config(args) -> None:
    from wmrl import config as config_mod
    from wmrl.config_docs import describe, render

    flags = {"env": {"id": args.env}} if args.env is not None else {}
    cfg = config_mod.build(args.preset or ["cartpole"], flags, args.overrides)
    if args.json:
        _print_json(describe(cfg))
    else:
        print(render(cfg))


def _bench(args) -> None:
    from wmrl.bench import report, runner
    from wmrl.bench.suite import load_suite

    if args.threads < 1 or (args.cpus is not None and args.cpus < 1):
        raise WmrlError("--threads and --cpus must be >= 1", "pass e.g. --threads 1 --cpus 2")
    if sum((args.dry_run, args.report_only, args.status)) > 1:
        raise WmrlError("--dry-run, --report-only and --status exclude each other", "pass one of them")
    suite = load_suite(args.suite)
    specs = runner.select(suite.runs(), args.only)  # an unknown label is refused before anything runs
    if args.dry_run:
        runner.dry_run(suite, args.threads, log=lambda m: print(m, file=sys.stderr), only=args.only)
        return
    out = args.out or Path("runs") / "bench" / suite.name
    if args.status:
        from wmrl.bench.status import render, suite_status, wall_hours

        status = suite_status(specs, out)
        slots = args.cpus or os.cpu_count() or 1  # one CPU slot per run, whatever its threads
        for line in render(status, slots):
            print(line, file=sys.stderr)
        _print_json({**{k: status[k] for k in ("counts", "running", "trained_hours", "remaining_hours",
                                                "remaining_unknown")}, "wall_hours": wall_hours(status, slots)})
        return
    runner.require("rliable")
    if not args.report_only:
        runner.run_suite(suite, out, args.address, args.threads, args.cpus, log=lambda m: print(m, file=sys.stderr),
                         only=args.only)
    built = report.build(suite, out)
    _print_json({"report": str(out / "report.md"), "runs_finished": built["runs_finished"],
                 "runs_total": built["runs_total"]})


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        {"train": _train, "eval": _eval, "dream": _dream, "config": _config, "bench": _bench}[args.command](args)
    except WmrlError as e:
        print(f"wmrl: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wmrl: interrupted; resume with --resume from the last checkpoint", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
