"""Does a world model's tokenizer keep a one-pixel object? The world model alone is trained on random-
policy replay of the 16x16 catch env (wmrl/envs/catch.py: a one-pixel white ball decides every reward),
then its reconstructions of held-out frames are checked at the ball: the ball counts as kept where the
decoded red channel at the ball's pixel exceeds 0.5 (only the ball is red). Also reports the same for
open-loop predictions 1-8 steps ahead under the actions taken, and the summed pixel error.

    python benchmarks/small_objects.py --updates 1500 --weights 0 3 10 30 [--world-model rssm] [--jobs 2] [--name NAME]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import save  # noqa: E402
from wmrl import config as config_mod  # noqa: E402
from wmrl.bench.cost import fill  # noqa: E402
from wmrl.nets.optim import optimizer_step  # noqa: E402
from wmrl.run.trainer import build, setup_torch  # noqa: E402

ENV = "wmrl/Catch-v0"


def ball_kept(pred: np.ndarray, real: np.ndarray) -> float:
    """pred, real (N, 3, H, W) uint8 -> share of the frames with a ball (the only red pixel of `real`)
    whose prediction is red (> 127) at the ball and at no more than 3 other pixels (a frame red all over
    does not keep the ball)."""
    red = real[:, 0] > 127  # (N, H, W): the ball only
    has = red.reshape(len(red), -1).any(1)
    pred_red = pred[:, 0] > 127
    at_ball = (pred_red & red).reshape(len(red), -1).any(1)
    elsewhere = (pred_red & ~red).reshape(len(red), -1).sum(1)
    return float((at_ball & (elsewhere <= 3))[has].mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--updates", type=int, default=1500)
    p.add_argument("--weights", type=float, nargs="+", default=[10.0], help="encoder.object_weight values to compare")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--preset", default="cartpole")
    p.add_argument("--world-model", default="storm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None)
    p.add_argument("--jobs", type=int, default=1, help="weights measured at once (one thread each)")
    args = p.parse_args()
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        rows = pool.starmap(measure, [(args, w) for w in args.weights])
    table = (f"Catch 16x16 (`wmrl/Catch-v0`, a one-pixel ball), world model `{args.world_model}` alone, trained "
             f"{args.updates} updates on 20k steps of random-policy replay, preset {args.preset}, overrides "
             f"{args.set or 'none'}, seed {args.seed}; 256 held-out windows.\n\n"
             "| object_weight | reconstruction: ball kept | summed sq. error | open loop 1..8 steps ahead: ball kept | minutes |\n"
             "|---:|---:|---:|---|---:|\n"
             + "\n".join(f"| {r['object_weight']:g} | {r['recon_ball_kept']:.0%} | {r['recon_sq_error']:.2f} | "
                         + " ".join(f"{v:.0%}" for v in r["ahead_ball_kept"]) + f" | {r['minutes']:.1f} |" for r in rows))
    if args.name:
        save(args.name, {"rows": rows}, table)
    else:
        print(table)


def measure(args, weight: float) -> dict:
    cfg = config_mod.build([args.preset], {"seed": args.seed},
                           [f"env.id={ENV}", "threads=1", f"world_model={args.world_model}",
                            f"{args.world_model}.encoder.object_weight={weight}", *args.set])
    device = setup_torch(cfg)
    torch.manual_seed(args.seed)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        env, _, agent, replay = build(cfg, Path(tmp), device)
        fill(env, replay, 20_000, args.seed)
        rng = np.random.default_rng(args.seed)
        wm, tc = agent.wm, cfg.train
        for _ in range(args.updates):
            wm.train()
            loss, _ = wm.loss(agent.to_tensors(replay.sample(tc.wm_batch, tc.wm_seq, rng)))
            optimizer_step(loss, wm, agent.wm_opt, agent.wm_optim_cfg)
        wm.eval()
        held_env, _, _, held = build(cfg, Path(tmp) / "held", device)
        fill(held_env, held, 3000, args.seed + 1)
        C, H = wm.start_length(8), 8
        data = agent.to_tensors(held.sample(256, C + H, np.random.default_rng(1)))
        with torch.no_grad():
            recon = wm.predict_obs(_posterior_feats(wm, data["obs"][:, C]))  # (B, 3, 16, 16)
            state = wm.observe_sequence(data["obs"][:, :C], data["action"][:, :C], data["is_first"][:, :C])
            ro = wm.imagine(state, data["action"][:, C - 1:C - 1 + H], H)
            ahead = wm.predict_obs(ro.feat[:, 1:]).cpu().numpy()  # (B, H, 3, 16, 16)
    real = data["obs"].cpu().numpy()
    inside = ~data["is_first"][:, C:C + H].cpu().numpy().any(1)
    return {"object_weight": weight, "updates": args.updates, "overrides": args.set,
            "minutes": (time.time() - start) / 60,
            "recon_ball_kept": ball_kept(recon.cpu().numpy(), real[:, C]),
            "recon_sq_error": float(((recon.float().cpu().numpy() - real[:, C]) / 255.0).__pow__(2).sum((1, 2, 3)).mean()),
            "ahead_ball_kept": [ball_kept(ahead[inside, h], real[inside, C + h]) for h in range(H)]}


def _posterior_feats(wm, obs: torch.Tensor) -> torch.Tensor:
    """Features whose latent part is the posterior mode of `obs` (B, ...) (what predict_obs decodes)."""
    with wm.latent_modes():
        state = wm.observe(wm.initial(obs.shape[0]), obs, torch.zeros(obs.shape[0], dtype=torch.long, device=obs.device),
                           torch.ones(obs.shape[0], dtype=torch.bool, device=obs.device))[1]
    return state


if __name__ == "__main__":
    main()
