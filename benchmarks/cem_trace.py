"""Follow one greedy CEM-planned episode on a CartPole run's world model, step by step.

For every step: the real cart position and velocity and pole angle, and the planner's predicted
score (discounted return, see wmrl/behavior/returns.py) of its best and of its average candidate in
its last iteration. The best score sitting at its ceiling (sum of gamma^t over the horizon) while the
cart drifts means the planner foresees no termination within its horizon; a falling best score means
it sees the end coming and finds no way out.

    python benchmarks/cem_trace.py RUN_DIR --name NAME [--seed 1000] [--set cem.horizon=100]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from common import save
from wmrl.envs.factory import make_env
from wmrl.run.inference import load_run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--name", required=True, help="results/cem_trace_NAME.{json,md}")
    p.add_argument("--seed", type=int, default=1000, help="the episode's env seed")
    p.add_argument("--set", action="append", default=[], help="a planner setting, e.g. cem.horizon=100")
    p.add_argument("--every", type=int, default=10, help="rows of the Markdown table: every N-th step and the last 10")
    args = p.parse_args()
    cfg, agent, _ = load_run(args.run_dir, "cpu", with_replay=False, plan=args.set)
    torch.manual_seed(0)
    env = make_env(cfg.env, args.seed)
    obs, _ = env.reset()
    state, prev, first = agent.initial_state(1), np.zeros(1, np.int64), np.ones(1, bool)
    rows, done = [], False
    while not done:
        state, action = agent.act(state, obs[None], prev, first, True)
        scores = agent.behavior.last_scores  # (1, candidates), the planner's last iteration
        rows.append({"step": len(rows), "x": float(obs[0]), "x_dot": float(obs[1]), "theta": float(obs[2]),
                     "best": scores.max().item(), "mean": scores.mean().item(), "action": int(action[0])})
        obs, _, terminated, truncated, _ = env.step(int(action[0]))
        prev, first, done = np.asarray(action, np.int64).reshape(1), np.zeros(1, bool), terminated or truncated
    c = agent.behavior.cfg
    # With a terminal value the score adds the critic's estimate, so it has no fixed ceiling.
    ceiling = None if c.terminal_value else sum(c.gamma ** t for t in range(c.horizon))
    bound = ("no fixed score ceiling (scores add the critic's value at the horizon)" if ceiling is None
             else f"score ceiling (no predicted termination) {ceiling:.1f}")
    lines = [f"Run `{args.run_dir}`, env seed {args.seed}, planner horizon {c.horizon}, {c.candidates} candidates, "
             f"{c.iterations} iterations, {c.elites} elites, latents {'modes' if c.latent_modes else 'sampled'}; "
             f"{bound}. Episode length {len(rows)}; final real state x {obs[0]:+.2f}, x_dot {obs[1]:+.2f}, "
             f"theta {obs[2]:+.3f} (CartPole ends at |x| > 2.4 or |theta| > 0.21).", "",
             "| step | x | x_dot | theta | best score | mean score |", "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["step"] % args.every == 0 or r["step"] >= len(rows) - 10:
            lines.append(f"| {r['step']} | {r['x']:+.2f} | {r['x_dot']:+.2f} | {r['theta']:+.3f} | {r['best']:.1f} | "
                         f"{r['mean']:.1f} |")
    save(f"cem_trace_{args.name}", {"run_dir": str(args.run_dir), "env_seed": args.seed, "planner": vars(c),
                                    "ceiling": ceiling, "length": len(rows), "steps": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
