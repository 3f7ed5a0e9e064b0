"""One imagination (the behaviour's rollout from its start states) under the CPU levers the speed issue names.

The agent is built as a run builds it, its replay filled with random-policy steps and one update made;
then the actor-critic's imagination from one batch of start states (`imag_batch` x `horizon` steps) is
timed eagerly under torch.no_grad (what wmrl does), under torch.inference_mode, under bf16 autocast, and
compiled with torch.compile (inductor; its compile time reported apart), in alternating rounds. Also the
eager imagination at 2x and 4x the start batch, which shows whether the time goes into per-op overhead
(flat in the batch) or into the ops' element work (linear in it). Run on an idle machine.

    python benchmarks/imagination_levers.py [--preset cartpole] [--world-model storm] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import save
from wmrl import config as config_mod
from wmrl.bench.cost import fill
from wmrl.run.trainer import build, setup_torch
import wmrl.worldmodels.storm_transformer as storm_transformer


def median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cartpole")
    p.add_argument("--world-model", default="storm")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes of compile time)")
    p.add_argument("--name", default=None, help="results name (default: imagination_levers_<preset>_<model>)")
    args = p.parse_args()
    cfg = config_mod.build([args.preset], {}, [f"world_model={args.world_model}", "behavior=actor_critic",
                                               f"threads={args.threads}"])
    device = setup_torch(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        env, _, agent, replay = build(cfg, Path(tmp), device)
        fill(env, replay, max(cfg.train.warmup, 2048), cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        agent.update(replay, rng)
        wm, behavior = agent.wm.eval(), agent.behavior
        count, context = behavior.starts
        horizon = cfg.actor_critic.horizon

        def starts(n: int):
            data = agent.to_tensors(replay.sample(n, wm.start_length(context), rng))
            with torch.no_grad():
                return wm.observe_sequence(data["obs"], data["action"], data["is_first"])

        start = starts(count)

        def imagine(mode: str, fn=wm.imagine, state=start):
            def run():
                if mode == "inference_mode":
                    with torch.inference_mode():
                        return fn(state, behavior.policy, horizon)
                with torch.no_grad(), (torch.autocast(device.type, dtype=torch.bfloat16) if mode == "bf16"
                                       else torch.autocast(device.type, enabled=False)):
                    return fn(state, behavior.policy, horizon)
            return run

        variants = {"no_grad (wmrl)": imagine("no_grad"), "inference_mode": imagine("inference_mode"),
                    "bf16 autocast": imagine("bf16")}
        for factor in (2, 4):
            variants[f"no_grad, {factor}x starts"] = imagine("no_grad", state=starts(factor * count))
        compile_s = None
        if not args.no_compile:
            if hasattr(storm_transformer._rope_angles, "__wrapped__"):  # its lru_cache would break the graph
                storm_transformer._rope_angles = storm_transformer._rope_angles.__wrapped__
            compiled = torch.compile(wm.imagine)
            t = time.perf_counter()
            imagine("no_grad", compiled)()
            compile_s = time.perf_counter() - t
            variants["torch.compile"] = imagine("no_grad", compiled)
        got: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for name, fn in variants.items():
                got[name].append(median_ms(fn, args.reps))
    base = statistics.median(got["no_grad (wmrl)"])
    rows = []
    for name, values in got.items():
        ms = statistics.median(values)
        rows.append(f"| {name} | {ms:.1f} | {base / ms:.2f}x |")
    table = (f"{args.preset} / {args.world_model}: one imagination of {count} starts x {horizon} steps, threads "
             f"{args.threads}; medians of {args.reps} calls, {args.rounds} alternating rounds"
             + (f"; torch.compile took {compile_s:.0f} s to compile" if compile_s is not None else "") + ".\n\n"
             "| variant | ms | speed-up against no_grad |\n|---|---:|---:|\n" + "\n".join(rows))
    save(args.name or f"imagination_levers_{args.preset}_{args.world_model}",
         {"preset": args.preset, "world_model": args.world_model, "threads": args.threads, "starts": count,
          "horizon": horizon, "compile_seconds": compile_s, "ms": got}, table)


if __name__ == "__main__":
    main()
