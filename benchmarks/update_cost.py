"""Cost of one agent update (world-model step + imagination + actor-critic step) and of one acting step.

Fills a throwaway replay with random-policy steps, runs a few warm-up updates, then times each of
`--updates` calls of `Agent.update` and reports the median, plus the training time those costs imply
for `train.steps` at `train.train_ratio` (acting included, evaluation excluded). Run it on an idle
machine: another busy process on the same cores makes the figures meaningless.

    python benchmarks/update_cost.py --preset cartpole --env CartPole-v1 [--set key=value ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from common import save
from wmrl import config as config_mod
from wmrl.run.trainer import build, setup_torch


def fill(env, replay, steps: int, seed: int) -> np.ndarray:
    obs, _ = env.reset(seed=seed)
    first = True
    for _ in range(steps):
        action = int(env.action_space.sample())
        nxt, reward, terminated, truncated, _ = env.step(action)
        replay.add(obs, action, float(reward), bool(terminated), first)
        obs, first = nxt, False
        if terminated or truncated:
            (obs, _), first = env.reset(), True
    return obs


def measure(preset: str, overrides: list[str], fill_steps: int, updates: int, acts: int) -> dict:
    cfg = config_mod.build([preset], {}, overrides)
    device = setup_torch(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        env, _, agent, replay = build(cfg, Path(tmp), device)
        obs = fill(env, replay, fill_steps, cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        for _ in range(3):
            agent.update(replay, rng)
        times = []
        for _ in range(updates):
            t = time.perf_counter()
            agent.update(replay, rng)
            times.append(time.perf_counter() - t)
        state, t = agent.initial_state(), time.perf_counter()
        for i in range(acts):
            state, _ = agent.act(state, obs[None], [0], [i == 0], greedy=False)
        act = (time.perf_counter() - t) / acts
    update = statistics.median(times)
    tc = cfg.train
    minutes = (tc.steps * act + max(tc.steps - tc.warmup, 0) * tc.train_ratio * update) / 60
    return {"update_ms": 1000 * update, "update_ms_min": 1000 * min(times), "update_ms_max": 1000 * max(times),
            "act_ms": 1000 * act, "threads": cfg.threads, "projected_train_minutes": minutes,
            "steps": tc.steps, "train_ratio": tc.train_ratio}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="cartpole")
    p.add_argument("--env", default=None, help="env id (default: the preset's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    p.add_argument("--fill", type=int, default=2000, help="random steps put in the replay first")
    p.add_argument("--updates", type=int, default=20)
    p.add_argument("--acts", type=int, default=200)
    p.add_argument("--name", default=None, help="results name (default: update_cost_<preset>)")
    args = p.parse_args()
    overrides = ([f"env.id={args.env}"] if args.env else []) + args.set
    r = measure(args.preset, overrides, args.fill, args.updates, args.acts)
    table = ("| preset | overrides | threads | update ms (median, min-max) | act ms | projected train min |\n"
             "|---|---|---:|---|---:|---:|\n"
             f"| {args.preset} | {' '.join(overrides) or '-'} | {r['threads']} | {r['update_ms']:.0f} "
             f"({r['update_ms_min']:.0f}-{r['update_ms_max']:.0f}) | {r['act_ms']:.1f} | "
             f"{r['projected_train_minutes']:.1f} ({r['steps']} steps, ratio {r['train_ratio']}) |")
    save(args.name or f"update_cost_{args.preset}", {"overrides": overrides, **r}, table)


if __name__ == "__main__":
    main()
