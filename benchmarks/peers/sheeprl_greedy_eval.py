"""Greedy evaluation of the DreamerV3 checkpoints of one sheeprl run, for sheeprl_cartpole.py (it runs in the sheeprl
venv, not wmrl's: it imports sheeprl, never wmrl).

Each checkpoint (in order of env step) is rebuilt with sheeprl's own build_agent from the run's config.yaml and
plays `--episodes` episodes with the actor's mode (greedy=True, as sheeprl's own test does; the posterior latents
are still sampled), episode i reset, env and torch, with seed 1_000_000 + i; the
evaluation stops after the first checkpoint whose mean reaches `--target`. Prints one JSON object: for each
checkpoint played its path, env step, gradient steps and returns, the same counters of the run's last checkpoint,
and sheeprl's own Time/sps_train (gradient steps per second of update time) averaged over its tensorboard logs.

    runs/peers/sheeprl-venv/bin/python benchmarks/peers/sheeprl_greedy_eval.py LOG_DIR [--episodes 20] [--target 475]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from lightning import Fabric
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sheeprl.algos.dreamer_v3.agent import PlayerDV3, build_agent
from sheeprl.algos.dreamer_v3.utils import prepare_obs
from sheeprl.utils import fs
from sheeprl.utils.env import make_env
from sheeprl.utils.utils import dotdict

EVAL_SEED = 1_000_000


def run_config(log_dir: Path) -> dotdict:
    return dotdict(OmegaConf.to_container(fs.load_yaml(log_dir / "config.yaml"), resolve=True))


def load_player(fabric: Fabric, cfg: dotdict, ckpt: Path) -> tuple[PlayerDV3, gym.Env, dict]:
    """The checkpoint's player (world model + actor), a fresh unvectorized env without video, and its state."""
    state = fs.load_checkpoint(fabric, ckpt, weights_only=False)
    env = make_env(cfg, EVAL_SEED, 0, None, "test")()
    space = env.action_space
    if not isinstance(space, gym.spaces.Discrete):
        raise SystemExit(f"this evaluator plays one discrete action (CartPole), got {space}")
    *_, player = build_agent(fabric, (int(space.n),), False, cfg, env.observation_space,
                             state["world_model"], state["actor"])
    player.num_envs = 1
    return player, env, state


def counters(cfg: dotdict, ckpt: Path, state: dict) -> dict:
    """The checkpoint's path, env step (`iter_num` counts the iterations of all the processes) and gradient steps."""
    return {"checkpoint": str(ckpt), "step": state["iter_num"] * cfg.env.num_envs,
            "grad_steps": state["per_rank_gradient_steps"]}


@torch.no_grad()
def episode_return(fabric: Fabric, player: PlayerDV3, env: gym.Env, cnn_keys: list[str], seed: int) -> float:
    torch.manual_seed(seed)  # the posterior latents are sampled, also by a greedy player
    obs = env.reset(seed=seed)[0]
    player.init_states()
    total, done = 0.0, False
    while not done:
        actions = player.get_actions(prepare_obs(fabric, obs, cnn_keys=cnn_keys), greedy=True)
        obs, reward, terminated, truncated, _ = env.step(int(actions[0].argmax(dim=-1).item()))
        total += float(reward)
        done = terminated or truncated
    return total


def sps_train(log_dir: Path) -> float | None:
    """Mean of sheeprl's logged Time/sps_train (None when it logged none, e.g. `metric.log_level=0`)."""
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    if "Time/sps_train" not in events.Tags()["scalars"]:
        return None
    return float(np.mean([e.value for e in events.Scalars("Time/sps_train")]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("log_dir", type=Path, help="the run's sheeprl log directory (holding config.yaml and checkpoint/)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--target", type=float, default=475.0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = run_config(args.log_dir)
    fabric = Fabric(accelerator="cpu", devices=1)
    ckpts = [Path(c) for c in fs.checkpoints(args.log_dir / "checkpoint")]
    if not ckpts:
        raise SystemExit(f"no checkpoint in {args.log_dir / 'checkpoint'}")
    played = []
    for ckpt in ckpts:
        player, env, state = load_player(fabric, cfg, ckpt)
        returns = [episode_return(fabric, player, env, cfg.algo.cnn_keys.encoder, EVAL_SEED + i)
                   for i in range(args.episodes)]
        env.close()
        played.append({**counters(cfg, ckpt, state), "mean": float(np.mean(returns)), "returns": returns})
        print(f"step {played[-1]['step']}: greedy mean {played[-1]['mean']:.1f} over {args.episodes}", file=sys.stderr)
        if played[-1]["mean"] >= args.target:
            break
    last = counters(cfg, ckpts[-1], fs.load_checkpoint(fabric, ckpts[-1], weights_only=False))
    print(json.dumps({"checkpoints": played, "last": last, "sps_train": sps_train(args.log_dir)}))


if __name__ == "__main__":
    main()
