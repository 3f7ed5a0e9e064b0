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
from wmrl.data.replay import Replay
from wmrl.envs.factory import env_spec, make_env
from wmrl.errors import WmrlError
from wmrl.run.agent import Agent, resolve_device
from wmrl.run import checkpoint, rundir
from wmrl.run.evaluate import eval_metrics, evaluate_modes, evaluation_seeds, make_eval_envs
from wmrl.run.logger import Logger
from wmrl.run.plots import plot_learning_curve

EVAL_SEED_OFFSET = 10_000


def setup_torch(cfg) -> torch.device:
    torch.set_num_threads(cfg.threads)
    return resolve_device(cfg.device)


def build(cfg, run_dir: Path, device: torch.device):
    """The training env, agent and replay of a run (shared by train, eval and dream)."""
    env = make_env(cfg.env, cfg.seed)
    spec = env_spec(env)
    agent = Agent(cfg, spec, device)
    dtype = np.uint8 if spec.is_image else np.float32
    replay = Replay(cfg.replay, spec.obs_shape, dtype, run_dir / "replay")
    return env, spec, agent, replay


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
    eval_envs = make_eval_envs(cfg.env, cfg.seed + EVAL_SEED_OFFSET, cfg.train.eval_episodes)
    counters = {"step": 0, "updates": 0, "episodes": 0, "credit": 0.0, "train_seconds": 0.0, "stopped_at_target": 0,
                "nonfinite_updates": 0, "checkpoint_step": 0, "episode_start": 1}
    before_reset = None
    if resume:
        ckpt = checkpoint.load_checkpoint(run_dir)
        rundir.check_resume(run_dir, ckpt, cfg)  # before anything is loaded or written
        saved, before_reset = checkpoint.restore(ckpt, agent, np_rng, env.action_space)
        del ckpt  # the CPU copy of the weights is no longer needed
        counters.update(saved)
        counters["checkpoint_step"] = counters["step"]
        replay.load(counters["step"])
        config_mod.save(cfg, run_dir / "config.yaml")  # only now: a failed resume leaves the run as it was
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        config_mod.save(cfg, run_dir / "config.yaml")
    tc = cfg.train
    guard = NonFiniteGuard(tc.nonfinite_limit, counters)
    log = Logger(run_dir, counters["step"], tc.steps, progress)
    if resume:
        log.write(counters["step"], {"resume/replay_size": len(replay), "resume/updates": counters["updates"]})
    else:
        log.write(0, parameter_counts(agent))
    # A run resumed at an episode start replays that episode's reset (see checkpoint.py); one resumed
    # mid-episode starts a new episode (the interrupted one cannot be restored), seeded from (seed, step)
    # so that resuming twice from one checkpoint gives the same run.
    if resume and counters["episode_start"] and before_reset is not None and env_rng(env) is not None:
        env.reset(seed=0)  # uses up the first-reset seed (envs/wrappers.py), then the replayed reset
        env.unwrapped.np_random.bit_generator.state = before_reset
        obs, _ = env.reset()
    else:
        before_reset = env_rng(env)
        obs, _ = env.reset(seed=cfg.seed * 1_000_003 + counters["step"]) if resume else env.reset()
    state, prev, is_first, ep_return, ep_len = agent.initial_state(), 0, True, 0.0, 0
    last_eval: dict = {}
    t0, steps_since = time.time(), 0
    started, seconds_before = time.time(), counters["train_seconds"]

    def train_minutes() -> float:
        """Training wall time so far, summed over resumes (kept in counters["train_seconds"])."""
        counters["train_seconds"] = seconds_before + time.time() - started
        return counters["train_seconds"] / 60

    try:
        while counters["step"] < tc.steps and not counters["stopped_at_target"]:
            if counters["step"] < tc.warmup:
                action = int(env.action_space.sample())
            else:
                # The first acting step after the warm-up starts the model afresh, mid-episode or not:
                # its state has observed nothing yet.
                fresh = is_first or counters["step"] == tc.warmup
                state, actions = agent.act(state, obs[None], [prev], [fresh], greedy=False)
                action = int(actions[0])
            next_obs, reward, terminated, truncated, info = env.step(action)
            # A lost life (env.life_loss) ends the model's episode in replay while the game goes on.
            life_lost = bool(info.get("life_loss", False))
            replay.add(obs, action, float(reward), bool(terminated) or life_lost, is_first)
            counters["step"] += 1
            step = counters["step"]
            ep_return, ep_len = ep_return + float(reward), ep_len + 1
            prev, is_first, obs = action, life_lost, next_obs
            if terminated or truncated:
                counters["episodes"] += 1
                log.write(step, {"train/return": ep_return, "train/length": ep_len, "train/episodes": counters["episodes"]})
                if step - ep_len >= tc.warmup:  # the agent chose every action of this episode
                    log.accumulate(agent.behavior.episode_end(ep_return))
                log.progress(0, ret=ep_return)
                before_reset = env_rng(env)
                obs, _ = env.reset()
                is_first, ep_return, ep_len = True, 0.0, 0
            if step >= tc.warmup:
                counters["credit"] += tc.train_ratio
                while counters["credit"] >= 1.0:
                    metrics = agent.update(replay, np_rng)
                    guard.check(metrics, step, counters["checkpoint_step"])
                    log.accumulate(metrics)
                    counters["updates"] += 1
                    counters["credit"] -= 1.0
            steps_since += 1
            if step % tc.log_every == 0:
                elapsed = time.time() - t0
                log.accumulate({"perf/steps_per_second": steps_since / max(elapsed, 1e-9),
                                "perf/updates": counters["updates"],
                                "health/nonfinite_updates": counters["nonfinite_updates"]})
                log.flush_averages(step)
                t0, steps_since = time.time(), 0
            if step % tc.eval_every == 0 or step == tc.steps:
                seeds = evaluation_seeds(cfg.seed + EVAL_SEED_OFFSET, step, len(eval_envs))
                results = evaluate_modes(agent, eval_envs, tc.eval_policy, tc.eval_max_steps, seeds)
                log.write(step, {**eval_metrics(results), "time/train_minutes": train_minutes()})
                last_eval = next(iter(results.values()))
                log.progress(0, eval=last_eval["return_mean"])
                if tc.stop_at_return is not None and last_eval["return_mean"] >= tc.stop_at_return:
                    counters["stopped_at_target"] = 1
            if step % tc.checkpoint_every == 0 or step == tc.steps or counters["stopped_at_target"]:
                train_minutes()
                replay.flush()
                counters["checkpoint_step"], counters["episode_start"] = step, int(ep_len == 0)
                rng = checkpoint.rng_state(np_rng, env.action_space, before_reset)
                checkpoint.save_checkpoint(run_dir, agent, counters, rng, config_mod.to_dict(cfg))
                plot_learning_curve(run_dir, f"{cfg.world_model} + {cfg.behavior} on {cfg.env.id}, seed {cfg.seed}")
            log.progress(1)
    finally:
        log.close()
    return {"step": counters["step"], "eval": last_eval, "run_dir": str(run_dir)}
