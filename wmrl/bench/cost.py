"""What one update and one acting step of a configuration cost here, and the run time they project.

Fills a throwaway replay with random-policy steps, runs one warm-up update, then times a few updates and
acting steps. Used by `wmrl bench --dry-run` (projected CPU hours) and benchmarks/update_cost.py.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from wmrl.envs.spaces import action_space_of
from wmrl.run.trainer import build, setup_torch


def fill(env, replay, steps: int, seed: int) -> np.ndarray:
    """Put `steps` random-policy steps into `replay`; returns the last observation."""
    space = action_space_of(env.action_space, "the env")
    obs, _ = env.reset(seed=seed)
    first = True
    for _ in range(steps):
        action = space.as_env_action(env.action_space.sample())
        nxt, reward, terminated, truncated, _ = env.step(action)
        replay.add(obs, action, float(reward), bool(terminated), first)
        obs, first = nxt, False
        if terminated or truncated:
            (obs, _), first = env.reset(), True
    return obs


def measure(cfg, updates: int = 5, acts: int = 50, fill_steps: int | None = None) -> dict:
    """Median seconds per update and mean seconds of acting per env step of `cfg` on this machine (one act
    for the train.num_envs envs, divided by their number), with the training time they project for
    cfg.train.steps (acting and updates; evaluations excluded)."""
    device = setup_torch(cfg)
    tc = cfg.train
    with tempfile.TemporaryDirectory() as tmp:
        env, spec, agent, replay = build(cfg, Path(tmp), device)
        obs = fill(env, replay, fill_steps or max(tc.warmup, 2 * tc.wm_seq, 256), cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        agent.update(replay, rng)
        times = []
        for _ in range(updates):
            t = time.perf_counter()
            agent.update(replay, rng)
            times.append(time.perf_counter() - t)
        n = tc.num_envs  # one act chooses the actions of every training env
        batch, prev = np.repeat(obs[None], n, 0), spec.action.zeros(n)
        state = agent.initial_state(n)
        state, _ = agent.act(state, batch, prev, np.ones(n, bool), greedy=False)
        t = time.perf_counter()
        for _ in range(acts):
            state, _ = agent.act(state, batch, prev, np.zeros(n, bool), greedy=False)
        act = (time.perf_counter() - t) / acts / n
    update = statistics.median(times)
    seconds = tc.steps * act + max(tc.steps - tc.warmup, 0) * tc.train_ratio * update
    return {"update_s": update, "update_s_min": min(times), "update_s_max": max(times), "act_s": act,
            "num_envs": n, "projected_hours": seconds / 3600, "threads": cfg.threads, "steps": tc.steps,
            "train_ratio": tc.train_ratio}
