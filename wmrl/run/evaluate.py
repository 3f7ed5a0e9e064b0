"""Evaluation episodes: a fixed number, each run to its end, each credited only its own rewards.

(The public STORM code credits an episode's last reward to the next one and averages the first N
episodes to finish among parallel envs, which favours short episodes: flaw 6.)
"""

from __future__ import annotations

import numpy as np


def run_episode(agent, env, greedy: bool, max_steps: int = 0) -> tuple[float, int]:
    """Play one episode with a fresh model state; returns (return, length)."""
    obs, _ = env.reset()
    state, prev, total, length = agent.initial_state(), 0, 0.0, 0
    is_first = True
    while True:
        state, action = agent.step(state, obs, prev, is_first, greedy)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        length += 1
        prev, is_first = action, False
        if terminated or truncated or (max_steps and length >= max_steps):
            return total, length


def evaluate(agent, env, episodes: int, greedy: bool = True, max_steps: int = 0) -> dict:
    returns = [run_episode(agent, env, greedy, max_steps)[0] for _ in range(episodes)]
    return {"return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
            "returns": returns, "episodes": episodes, "greedy": greedy}
