"""How a trained run's world model predicts episode continuation when it imagines open loop.

From `--windows` replay windows, observe `--context` real steps, then imagine `--horizon` steps under
the actions really taken next, and print the mean predicted continuation probability per imagined step
beside the real one (only windows with no episode start inside the imagined span), then the same
under the run's own trained policy (no real counterpart; not for CEM runs, whose planner needs model
states). A model whose predicted continuation sinks while the real one stays at 1 imagines
terminations that do not happen.

    python benchmarks/open_loop_cont.py RUN_DIR [--mode]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from wmrl.run.horizon import actions_taken_next
from wmrl.run.inference import load_run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--windows", type=int, default=512)
    p.add_argument("--context", type=int, default=8)
    p.add_argument("--horizon", type=int, default=16)
    p.add_argument("--mode", action="store_true", help="imagine with the most likely latents instead of samples")
    args = p.parse_args()
    cfg, agent, replay = load_run(args.run_dir, "cpu")
    wm, C, H = agent.wm, args.context, args.horizon
    wm.deterministic = args.mode
    torch.manual_seed(0)  # imagination samples latents: the same run gives the same figures
    d = agent.to_tensors(replay.sample(args.windows, C + H, np.random.default_rng(0)))
    with torch.no_grad():
        start = wm.observe_sequence(d["obs"][:, :C], d["action"][:, :C], d["is_first"][:, :C])
        real_actions = wm.imagine(start, actions_taken_next(d["action"], C, H), H)
        own_policy = None if cfg.behavior == "cem" else \
            wm.imagine(start, lambda feat: agent.behavior.act(wm, None, feat, False)[0], H)
    inside = ~d["is_first"][:, C:C + H].any(1)
    real = 1 - d["terminal"][:, C - 1:C - 1 + H].float()
    out = {"windows": int(inside.sum()), "predicted_cont": real_actions.cont[inside].float().mean(0).tolist(),
           "real_cont": real[inside].mean(0).tolist(),
           "own_policy_cont": own_policy.cont.float().mean(0).tolist() if own_policy else None}
    print(json.dumps({k: [round(v, 4) for v in x] if isinstance(x, list) else x for k, x in out.items()}))


if __name__ == "__main__":
    main()
