"""Env steps/s, update and act time of a preset on this machine's device, and the hours they project per
game (benchmarks/gpu_check.sh runs it for the Atari 100k preset on a GPU).

    python benchmarks/gpu_timing.py --preset atari100k --env ALE/Pong-v5 [--precision bf16] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wmrl import config as config_mod  # noqa: E402
from wmrl.bench.cost import measure  # noqa: E402
from wmrl.bench.execute import commit, machine  # noqa: E402
from wmrl.envs.factory import make_env  # noqa: E402


def env_steps_per_second(cfg, steps: int = 2000) -> float:
    env = make_env(cfg.env, cfg.seed)
    env.reset()
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(int(env.action_space.sample()))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="atari100k")
    p.add_argument("--env", default="ALE/Pong-v5")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--updates", type=int, default=20)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    cfg = config_mod.build([args.preset], {}, [f"env.id={args.env}", f"device={args.device}",
                                               f"precision={args.precision}", f"threads={args.threads}"])
    env_sps = env_steps_per_second(cfg)
    cost = measure(cfg, updates=args.updates, acts=200)
    tc = cfg.train
    env_hours = tc.steps / env_sps / 3600
    result = {**cost, "env_steps_per_s": env_sps, "updates_per_s": 1 / cost["update_s"],
              "projected_hours_per_game": cost["projected_hours"] + env_hours,
              "preset": args.preset, "env": args.env, "precision": cfg.precision, "device": args.device,
              "commit": commit(), "machine": machine(), "world_model": cfg.world_model}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
