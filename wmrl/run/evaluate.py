"""Evaluation episodes: a fixed number, each run to its end, each credited only its own rewards.

The episodes run side by side, one env each, as one batch through the agent; an env whose episode
has ended leaves the batch (its row of the model state is dropped), so a short episode never stands
in for a long one. (The public STORM code credits an episode's last reward to the next one and
averages the first N episodes to finish among parallel envs, which favours short episodes: flaw 6.)

Every evaluation can reset its envs from explicit seeds (`seeds`), so the episodes of the evaluation at
step S are the same whether or not the run was interrupted and resumed before S; the greedy and the
sampled evaluation of one step play the same episode starts. A lost life (`info["life_loss"]`, see
envs/wrappers.py) starts the agent's state afresh, as training does, while the episode and its
return go on.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from wmrl.envs.factory import EnvConfig, make_env
from wmrl.envs.spaces import action_space_of

POLICIES = ("greedy", "sample", "both")
MAX_BATCH = 32
"""Episodes played at once; more are played in successive groups (bounds memory for planners). The
protocols' 20-episode evaluations fit one group: a batched act costs far less than one act per env
(four CartPole envs cost STORM 1.3x one env's act, benchmarks/results/speed_cartpole_*.md), so a second
group of a few episodes adds nearly as much time as the first."""


def make_eval_envs(cfg: EnvConfig, seed: int, episodes: int) -> list[gym.Env]:
    """One env per evaluation episode, each with its own seed derived from `seed`."""
    return [make_env(cfg, seed + 101 * i) for i in range(episodes)]


def evaluation_seeds(seed: int, step: int, episodes: int) -> list[int]:
    """Reset seeds of the evaluation at `step` of a run with `seed`: a function of both only."""
    return np.random.SeedSequence([seed, step]).generate_state(episodes).tolist()


def modes(policy: str) -> list[str]:
    """train.eval_policy -> the evaluation modes it plays, in order ("both": greedy, then sample)."""
    return ["greedy", "sample"] if policy == "both" else [policy]


def run_episodes(agent, envs: list[gym.Env], greedy: bool, max_steps: int = 0, seeds: list[int] | None = None,
                 record: list[dict[str, list]] | None = None) -> list[float]:
    """Play one episode in every env at once, each from a fresh model state; returns their returns.

    With `record` (one dict per env), every step's obs_t and action_t of env i are appended to
    record[i]["obs"] and ["action"] (replay's alignment, data/replay.py)."""
    obs = np.stack([env.reset(seed=None if seeds is None else seeds[i])[0] for i, env in enumerate(envs)])
    n = len(envs)
    state = agent.initial_state(n)
    space = action_space_of(envs[0].action_space, "the evaluation env")
    prev, is_first = space.zeros(n), np.ones(n, bool)
    totals, lengths = np.zeros(n), np.zeros(n, np.int64)
    live = np.arange(n)  # env index of each row of the batch
    while live.size:
        state, actions = agent.act(state, obs[live], prev[live], is_first[live], greedy)
        keep = []
        for row, i in enumerate(live):
            if record is not None:
                record[i].setdefault("obs", []).append(obs[i].copy())
                record[i].setdefault("action", []).append(actions[row])
            obs[i], reward, terminated, truncated, info = envs[i].step(space.as_env_action(actions[row]))
            totals[i] += float(reward)
            lengths[i] += 1
            prev[i], is_first[i] = actions[row], bool(info.get("life_loss", False))
            if not (terminated or truncated or (max_steps and lengths[i] >= max_steps)):
                keep.append(row)
        if len(keep) < live.size:
            live = live[keep]
            if live.size:
                state = agent.select(state, keep)
    return totals.tolist()


def evaluate(agent, envs: list[gym.Env], greedy: bool = True, max_steps: int = 0, seeds: list[int] | None = None
             ) -> dict:
    """One episode per env (len(envs) episodes, in groups of MAX_BATCH): mean, std and every return."""
    returns: list[float] = []
    for start in range(0, len(envs), MAX_BATCH):
        group = None if seeds is None else seeds[start:start + MAX_BATCH]
        returns += run_episodes(agent, envs[start:start + MAX_BATCH], greedy, max_steps, group)
    return {"return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
            "returns": returns, "episodes": len(envs), "greedy": greedy}


def evaluate_modes(agent, envs: list[gym.Env], policy: str, max_steps: int = 0, seeds: list[int] | None = None
                   ) -> dict[str, dict]:
    """{mode: evaluate(...)} for each mode of `policy` (greedy|sample|both), every mode from the same seeds."""
    return {mode: evaluate(agent, envs, mode == "greedy", max_steps, seeds) for mode in modes(policy)}


def eval_metrics(results: dict[str, dict]) -> dict[str, float]:
    """Metric row of an evaluation: eval/<mode>/return_mean and eval/<mode>/return_std per mode played,
    and eval/episodes."""
    row: dict[str, float] = {}
    for mode, r in results.items():
        row[f"eval/{mode}/return_mean"], row[f"eval/{mode}/return_std"] = r["return_mean"], r["return_std"]
        row["eval/episodes"] = r["episodes"]
    return row
