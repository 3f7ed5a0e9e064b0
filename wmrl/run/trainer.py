"""The training loop: random warm-up, acting, replay, updates at a set ratio, evaluation, checkpoints.

Replay rows follow worldmodels/protocol.py: (obs_t, action_t, reward_t, terminal_t, is_first_t), with
reward_t and terminal_t the results of action_t.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from wmrl import config as config_mod
from wmrl.data.streams import StreamReplay
from wmrl.envs.factory import env_spec, make_env
from wmrl.errors import WmrlError
from wmrl.run.agent import Agent, resolve_device
from wmrl.run import checkpoint, rundir
from wmrl.run.evaluate import eval_metrics, evaluate_modes, evaluation_seeds, make_eval_envs
from wmrl.run.logger import Logger
from wmrl.run.plots import plot_learning_curve

EVAL_SEED_OFFSET = 10_000
TRAIN_SEED_STRIDE = 7919


def setup_torch(cfg) -> torch.device:
    torch.set_num_threads(cfg.threads)
    return resolve_device(cfg.device)


def build(cfg, run_dir: Path, device: torch.device):
    """The (first) training env, agent and replay of a run (shared by train, eval and dream); the replay
    has one stream per training env (data/streams.py)."""
    env = make_env(cfg.env, cfg.seed)
    spec = env_spec(env)
    agent = Agent(cfg, spec, device)
    dtype = np.uint8 if spec.is_image else np.float32
    replay = StreamReplay(cfg.replay, spec.obs_shape, dtype, run_dir / "replay", cfg.train.num_envs,
                          spec.action.shape, spec.action.np_dtype)
    return env, spec, agent, replay


def train_env_seed(seed: int, i: int) -> int:
    """Seed of training env i (env 0: the run's seed)."""
    return seed + TRAIN_SEED_STRIDE * i


def reset_seed(seed: int, step: int, i: int) -> int:
    """Seed of the new episode training env i starts when a run resumes at `step` mid-episode."""
    return seed * 1_000_003 + step + TRAIN_SEED_STRIDE * i


def crossed(before: int, after: int, every: int) -> bool:
    """A multiple of `every` lies in (before, after]: the env steps of one step of every training env."""
    return after // every > before // every


def env_rng(env) -> dict | None:
    """The state of the env's own RNG (Gymnasium's np_random), or None if it has none."""
    rng = getattr(env.unwrapped, "np_random", None)
    return rng.bit_generator.state if isinstance(rng, np.random.Generator) else None


def parameter_counts(agent) -> dict[str, int]:
    return {"model/params_world_model": sum(p.numel() for p in agent.wm.parameters()),
            "model/params_behavior": sum(p.numel() for p in agent.behavior.parameters())}


class NonFiniteGuard:
    """Counts updates with a non-finite metric (a loss or gradient norm: their steps changed no weight,
    see nets/optim.py) and stops the run after `limit` of them in a row."""

    def __init__(self, limit: int, counters: dict):
        self.limit, self.counters, self.streak = limit, counters, 0

    def check(self, metrics: dict[str, float], step: int, last_checkpoint: int) -> None:
        bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
        if not bad:
            self.streak = 0
            return
        self.streak += 1
        self.counters["nonfinite_updates"] += 1
        if self.streak >= self.limit:
            raise WmrlError(
                f"{self.streak} updates in a row had non-finite values ({', '.join(bad[:4])}); the run stopped at "
                f"step {step} and its checkpoint at step {last_checkpoint} is intact",
                "look for NaN or inf in the env's observations or rewards, or lower the learning rates, then "
                "continue with `wmrl train --run-dir DIR --resume` (health/nonfinite_updates in metrics.jsonl "
                "counts such updates)")


def train(cfg, run_dir: Path, resume: bool = False, progress: bool = True) -> dict:
    if cfg.behavior == "cem" and cfg.cem.terminal_value:
        raise WmrlError("cem.terminal_value needs a learned value, and a planner trained on its own has none",
                        "train with behavior=actor_critic and plan on it with `wmrl eval RUN --plan --set "
                        "cem.terminal_value=true`, or drop cem.terminal_value")
    device = setup_torch(cfg)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)
    env, spec, agent, replay = build(cfg, run_dir, device)
    tc = cfg.train
    N = tc.num_envs
    envs = [env] + [make_env(cfg.env, train_env_seed(cfg.seed, i)) for i in range(1, N)]
    eval_envs = make_eval_envs(cfg.env, cfg.seed + EVAL_SEED_OFFSET, tc.eval_episodes)
    counters = {"step": 0, "updates": 0, "episodes": 0, "credit": 0.0, "train_seconds": 0.0, "stopped_at_target": 0,
                "nonfinite_updates": 0, "checkpoint_step": 0, "episode_start": 1 if N == 1 else [1] * N}
    before_reset: list = [None] * N
    if resume:
        ckpt = checkpoint.load_checkpoint(run_dir)
        rundir.check_resume(run_dir, ckpt, cfg)  # before anything is loaded or written
        saved, before_reset = checkpoint.restore(ckpt, agent, np_rng, [e.action_space for e in envs])
        del ckpt  # the CPU copy of the weights is no longer needed
        counters.update(saved)
        counters["checkpoint_step"] = counters["step"]
        replay.load(counters["step"])
        config_mod.save(cfg, run_dir / "config.yaml")  # only now: a failed resume leaves the run as it was
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        config_mod.save(cfg, run_dir / "config.yaml")
    guard = NonFiniteGuard(tc.nonfinite_limit, counters)
    log = Logger(run_dir, counters["step"], tc.steps, progress)
    if resume:
        log.write(counters["step"], {"resume/replay_size": len(replay), "resume/updates": counters["updates"]})
    else:
        log.write(0, parameter_counts(agent))
    # An env resumed at an episode start replays that episode's reset (see checkpoint.py); one resumed
    # mid-episode starts a new episode (the interrupted one cannot be restored), seeded from (seed, step)
    # so that resuming twice from one checkpoint gives the same run.
    at_start = checkpoint.as_list(counters["episode_start"])
    obs = []
    for i, e in enumerate(envs):
        if resume and at_start[i] and before_reset[i] is not None and env_rng(e) is not None:
            e.reset(seed=0)  # uses up the first-reset seed (envs/wrappers.py), then the replayed reset
            e.unwrapped.np_random.bit_generator.state = before_reset[i]
            obs.append(e.reset()[0])
        else:
            before_reset[i] = env_rng(e)
            obs.append((e.reset(seed=reset_seed(cfg.seed, counters["step"], i)) if resume else e.reset())[0])
    state = agent.initial_state(N)
    prev, is_first = spec.action.zeros(N), np.ones(N, bool)
    ep_return, ep_len = np.zeros(N), np.zeros(N, np.int64)
    last_eval: dict = {}
    t0, steps_since = time.time(), 0
    started, seconds_before = time.time(), counters["train_seconds"]

    def train_minutes() -> float:
        """Training wall time so far, summed over resumes (kept in counters["train_seconds"])."""
        counters["train_seconds"] = seconds_before + time.time() - started
        return counters["train_seconds"] / 60

    try:
        while counters["step"] < tc.steps and not counters["stopped_at_target"]:
            before = counters["step"]  # one step of every training env: env steps (before, step]
            if before < tc.warmup:
                actions = [spec.action.as_env_action(e.action_space.sample()) for e in envs]
            else:
                # The first acting step after the warm-up starts the model afresh, mid-episode or not:
                # its state has observed nothing yet.
                fresh = is_first | (before < tc.warmup + N)
                state, acted = agent.act(state, np.stack(obs), prev, fresh, greedy=False)
                actions = [spec.action.as_env_action(a) for a in acted]
            counters["step"] = step = before + N
            for i, e in enumerate(envs):
                next_obs, reward, terminated, truncated, info = e.step(actions[i])
                # A lost life (env.life_loss) ends the model's episode in replay while the game goes on.
                life_lost = bool(info.get("life_loss", False))
                replay.add(obs[i], actions[i], float(reward), bool(terminated) or life_lost, bool(is_first[i]), stream=i)
                ep_return[i] += float(reward)
                ep_len[i] += 1
                prev[i], is_first[i], obs[i] = actions[i], life_lost, next_obs
                if terminated or truncated:
                    counters["episodes"] += 1
                    log.write(step, {"train/return": float(ep_return[i]), "train/length": int(ep_len[i]),
                                     "train/episodes": counters["episodes"]})
                    if before - (ep_len[i] - 1) * N >= tc.warmup:  # the agent chose every action of this episode
                        log.accumulate(agent.behavior.episode_end(float(ep_return[i])))
                    log.progress(0, ret=float(ep_return[i]))
                    before_reset[i] = env_rng(e)
                    obs[i], _ = e.reset()
                    is_first[i], ep_return[i], ep_len[i] = True, 0.0, 0
            credited = step - max(before, tc.warmup - 1)  # env steps of this one from the warm-up's last on
            if credited > 0:
                counters["credit"] += credited * tc.train_ratio
                while counters["credit"] >= 1.0:
                    metrics = agent.update(replay, np_rng)
                    guard.check(metrics, step, counters["checkpoint_step"])
                    log.accumulate(metrics)
                    counters["updates"] += 1
                    counters["credit"] -= 1.0
            steps_since += N
            if crossed(before, step, tc.log_every):
                elapsed = time.time() - t0
                log.accumulate({"perf/steps_per_second": steps_since / max(elapsed, 1e-9),
                                "perf/updates": counters["updates"],
                                "health/nonfinite_updates": counters["nonfinite_updates"]})
                log.flush_averages(step)
                t0, steps_since = time.time(), 0
            if crossed(before, step, tc.eval_every) or step >= tc.steps:
                seeds = evaluation_seeds(cfg.seed + EVAL_SEED_OFFSET, step, len(eval_envs))
                results = evaluate_modes(agent, eval_envs, tc.eval_policy, tc.eval_max_steps, seeds)
                log.write(step, {**eval_metrics(results), "time/train_minutes": train_minutes()})
                last_eval = next(iter(results.values()))
                log.progress(0, eval=last_eval["return_mean"])
                if tc.stop_at_return is not None and last_eval["return_mean"] >= tc.stop_at_return:
                    counters["stopped_at_target"] = 1
            if crossed(before, step, tc.checkpoint_every) or step >= tc.steps or counters["stopped_at_target"]:
                train_minutes()
                replay.flush()
                counters["checkpoint_step"] = step
                counters["episode_start"] = int(ep_len[0] == 0) if N == 1 else [int(n == 0) for n in ep_len]
                rng = checkpoint.rng_state(np_rng, [e.action_space for e in envs], before_reset)
                checkpoint.save_checkpoint(run_dir, agent, counters, rng, config_mod.to_dict(cfg))
                plot_learning_curve(run_dir, f"{cfg.world_model} + {cfg.behavior} on {cfg.env.id}, seed {cfg.seed}")
            log.progress(N)
    finally:
        log.close()
    return {"step": counters["step"], "eval": last_eval, "run_dir": str(run_dir)}
