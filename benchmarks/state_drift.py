"""How long a world model's state takes to forget that filtering started from nothing.

An agent acts from states filtered over its whole episode; an imagination start is filtered over a short
replay window begun from the model's initial state. For probe steps t of the run's long episodes this
compares the two: the state after the whole episode up to t, and the state after only the last K steps.
It prints, per K, the mean distance between their features and, for actor-critic runs, the mean absolute
difference of the critic's values and the share of greedy actions that agree. Latents are taken at
their mode, so both filters see the same inputs and a state that has forgotten its start shows no gap.

For STORM, `--sliding` filters the whole episode as wmrl acted before the `storm.history` window
(231afcf): one token at a time into a KV cache that slides over the episode, so the receptive field
grows to layers x (context - 1) steps. Without it the whole-episode state is the model's own
(`observe_sequence`, which sees the last `storm.history` steps, as acting does).

    python benchmarks/state_drift.py RUN_DIR [--windows 8 16 32 64] [--sliding] [--name NAME]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from common import save
from wmrl.nets.categorical import draw
from wmrl.run.inference import load_run


def episodes(is_first: np.ndarray, min_length: int) -> list[tuple[int, int]]:
    """(start, end) of the complete episodes in replay rows that last at least min_length steps."""
    starts = np.flatnonzero(is_first).tolist() + [len(is_first)]
    return [(s, e) for s, e in zip(starts[:-1], starts[1:]) if e - s >= min_length]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--windows", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    p.add_argument("--probes", type=int, nargs="+", default=[150, 250, 350], help="steps into each episode")
    p.add_argument("--episodes", type=int, default=4, help="long episodes to probe")
    p.add_argument("--sliding", action="store_true", help="STORM: the whole-episode state from a sliding KV cache")
    p.add_argument("--name", default=None, help="save results/<name>.{json,md}")
    args = p.parse_args()
    cfg, agent, replay = load_run(args.run_dir, "cpu")
    wm, behavior = agent.wm.eval(), agent.behavior
    wm.deterministic = True
    # The one window as long as the buffer is all of it, oldest first (its first row marked a start).
    whole = replay.sample(1, len(replay), np.random.default_rng(0))
    rows = {k: torch.as_tensor(v[0]) for k, v in whole.items()}
    eps = episodes(rows["is_first"].numpy(), max(args.probes) + 1)[:args.episodes]
    if not eps:
        raise SystemExit(f"no episode in the replay lasts {max(args.probes) + 1} steps; lower --probes")
    critic = getattr(behavior, "critic", None)

    def feature(start: int, end: int) -> torch.Tensor:
        """Features (F,) after filtering replay rows [start, end) from the initial state."""
        d = agent.to_tensors({k: v[start:end][None].numpy() for k, v in rows.items()})
        return wm.features(wm.observe_sequence(d["obs"], d["action"], d["is_first"]))[0]

    def sliding(start: int, end: int) -> torch.Tensor:
        """STORM's features (F,) after rows [start, end) stepped through a sliding KV cache."""
        d = agent.to_tensors({k: v[start:end][None].numpy() for k, v in rows.items()})
        z = draw(wm.vae.posterior(d["obs"]), True)  # (1, T, latent)
        cache, h = None, None
        for t in range(z.shape[1] - 1):  # tokens (z_t, a_t) of the rows before the last
            out, cache = wm.transformer(wm._token(z[:, t], d["action"][:, t])[:, None], d["is_first"][:, t:t + 1], cache)
            h = out[0, -1]
        return torch.cat([z[0, -1], h])

    if args.sliding and cfg.world_model != "storm":
        raise SystemExit("--sliding is for STORM runs")
    whole_episode = sliding if args.sliding else feature

    def value(f: torch.Tensor) -> float:
        return behavior.twohot.decode(critic(f[None]))[0].item()

    def greedy(f: torch.Tensor) -> int:
        return behavior.policy(f[None], greedy=True)[0].item()

    results = []
    with torch.no_grad():
        full = {(s, t): whole_episode(s, s + t + 1) for s, _ in eps for t in args.probes}
        for K in args.windows:
            dist, dval, same = [], [], []
            for (s, t), f in full.items():
                g = feature(max(s, s + t + 1 - K), s + t + 1)  # at most the episode so far
                dist.append((f - g).norm().item())
                if critic is not None:
                    dval.append(abs(value(f) - value(g)))
                    same.append(greedy(f) == greedy(g))
            results.append({"window": K, "feature_distance": float(np.mean(dist)),
                            "value_difference": float(np.mean(dval)) if dval else None,
                            "greedy_agreement": float(np.mean(same)) if same else None})
    lines = ["| window K | mean feature distance | mean abs value difference | greedy actions agreeing |",
             "|---:|---:|---:|---:|"]
    for r in results:
        v = "-" if r["value_difference"] is None else f"{r['value_difference']:.2f}"
        a = "-" if r["greedy_agreement"] is None else f"{r['greedy_agreement']:.0%}"
        lines.append(f"| {r['window']} | {r['feature_distance']:.3f} | {v} | {a} |")
    how = "a sliding KV cache (as acting before storm.history)" if args.sliding else "the model's own observe_sequence"
    table = (f"Run `{args.run_dir}` ({cfg.world_model} + {cfg.behavior}), {len(eps)} episodes x probes at steps "
             f"{args.probes}, latents at their mode; whole-episode state from {how}.\n\n" + "\n".join(lines))
    if args.name:
        save(args.name, {"run_dir": str(args.run_dir), "sliding": args.sliding, "episodes": eps, "probes": args.probes, "results": results},
             table)
    else:
        print(table)


if __name__ == "__main__":
    main()
