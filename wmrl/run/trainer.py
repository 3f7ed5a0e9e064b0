"""The training loop: random warm-up, acting, replay, updates at a set ratio, evaluation, checkpoints.

Replay rows follow worldmodels/protocol.py: (obs_t, action_t, reward_t, terminal_t, is_first_t), with
reward_t and terminal_t the results of action_t.
"""

from __future__ import annotations

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
from wmrl.run.checkpoint import load_checkpoint, restore_rng, save_checkpoint
from wmrl.run.evaluate import evaluate, make_eval_envs
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


def train(cfg, run_dir: Path, resume: bool = False, progress: bool = True) -> dict:
    if cfg.behavior == "cem" and cfg.cem.terminal_value:
        raise WmrlError("cem.terminal_value needs a learned value, and a planner trained on its own has none",
                        "train with behavior=actor_critic and plan on it with `wmrl eval RUN --plan --set "
                        "cem.terminal_value=true`, or drop cem.terminal_value")
    device = setup_torch(cfg)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)
    env, spec, agent, replay = build(cfg, run_dir, device)
    eval_envs = make_eval_envs(cfg.env, cfg.seed + EVAL_SEED_OFFSET, cfg.train.eval_episodes)
    counters = {"step": 0, "updates": 0, "episodes": 0, "credit": 0.0, "train_seconds": 0.0, "stopped_at_target": 0}
    if resume:
        ckpt = load_checkpoint(run_dir, device)
        agent.load_state_dict(ckpt["agent"])
        counters.update(ckpt["counters"])
        restore_rng(ckpt["rng"], np_rng)
        replay.load(counters["step"])
        config_mod.save(cfg, run_dir / "config.yaml")  # only now: a failed resume leaves the run as it was
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        config_mod.save(cfg, run_dir / "config.yaml")
    tc = cfg.train
    log = Logger(run_dir, counters["step"], tc.steps, progress)
    if resume:
        log.write(counters["step"], {"resume/replay_size": len(replay), "resume/updates": counters["updates"]})
    # A resumed run starts a new episode (the interrupted one cannot be restored); its seed derives
    # from (seed, step) so resuming twice from one checkpoint gives the same run.
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
                state, actions = agent.act(state, obs[None], [prev], [is_first], greedy=False)
                action = int(actions[0])
            next_obs, reward, terminated, truncated, info = env.step(action)
            replay.add(obs, action, float(reward), bool(terminated), is_first)
            counters["step"] += 1
            step = counters["step"]
            ep_return, ep_len = ep_return + float(reward), ep_len + 1
            prev, is_first, obs = action, False, next_obs
            if terminated or truncated:
                counters["episodes"] += 1
                log.write(step, {"train/return": ep_return, "train/length": ep_len, "train/episodes": counters["episodes"]})
                if step - ep_len >= tc.warmup:  # the agent chose every action of this episode
                    log.accumulate(agent.behavior.episode_end(ep_return))
                log.progress(0, ret=ep_return)
                obs, _ = env.reset()
                is_first, ep_return, ep_len = True, 0.0, 0
            if step >= tc.warmup:
                counters["credit"] += tc.train_ratio
                while counters["credit"] >= 1.0:
                    log.accumulate(agent.update(replay, np_rng))
                    counters["updates"] += 1
                    counters["credit"] -= 1.0
            steps_since += 1
            if step % tc.log_every == 0:
                elapsed = time.time() - t0
                log.accumulate({"perf/steps_per_second": steps_since / max(elapsed, 1e-9),
                                "perf/updates": counters["updates"]})
                log.flush_averages(step)
                t0, steps_since = time.time(), 0
            if step % tc.eval_every == 0 or step == tc.steps:
                last_eval = evaluate(agent, eval_envs, greedy=True, max_steps=tc.eval_max_steps)
                log.write(step, {"eval/return_mean": last_eval["return_mean"], "eval/return_std": last_eval["return_std"],
                                 "eval/episodes": last_eval["episodes"], "time/train_minutes": train_minutes()})
                log.progress(0, eval=last_eval["return_mean"])
                if tc.stop_at_return is not None and last_eval["return_mean"] >= tc.stop_at_return:
                    counters["stopped_at_target"] = 1
            if step % tc.checkpoint_every == 0 or step == tc.steps or counters["stopped_at_target"]:
                train_minutes()
                replay.flush()
                save_checkpoint(run_dir, agent, counters, np_rng)
                plot_learning_curve(run_dir, f"{cfg.world_model} on {cfg.env.id}, seed {cfg.seed}")
            log.progress(1)
    finally:
        log.close()
    return {"step": counters["step"], "eval": last_eval, "run_dir": str(run_dir)}
