"""Time per imagined STORM step (batch 1024) at context lengths 8..64, with and without the KV cache.

Without the cache every step re-runs the transformer over the whole token history (what a model
without a per-layer K/V cache must do); with it, one token attends over cached keys. Run on an idle
machine:  python benchmarks/kv_cache.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from common import save
from wmrl.envs.spaces import ActionSpace
from wmrl.worldmodels.storm import Storm, StormConfig
from wmrl.worldmodels.storm_transformer import TransformerConfig


def time_steps(model: Storm, batch: int, context: int, steps: int, use_cache: bool) -> float:
    """Seconds per imagined step after `context` real steps, median over the imagined steps' total."""
    obs = torch.randn(batch, context, 4)
    action = torch.randint(0, 2, (batch, context))
    first = torch.zeros(batch, context, dtype=torch.bool)
    first[:, 0] = True
    actions = torch.randint(0, 2, (batch, steps))
    with torch.no_grad():
        state = model.observe_sequence(obs, action, first)
        start = time.perf_counter()
        model.imagine(state, actions, steps, use_cache=use_cache)
        return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=4, help="imagined steps timed at each context length")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # STORM's paper transformer (2 layers, width 512, 8 heads, FFN 1024); window 128 so context 64 + steps fit.
    cfg = StormConfig(transformer=TransformerConfig(layers=2, width=512, heads=8, ffn=1024, context=128))
    model = Storm(cfg, (4,), False, ActionSpace.discrete(2)).eval()
    rows = []
    for context in (8, 16, 32, 64):
        entry = {"context": context}
        for use_cache in (True, False):
            time_steps(model, args.batch, context, 1, use_cache)  # warm-up
            t = statistics.median(time_steps(model, args.batch, context, args.steps, use_cache)
                                  for _ in range(args.repeats))
            entry["cached_ms" if use_cache else "uncached_ms"] = 1000 * t
        entry["speedup"] = entry["uncached_ms"] / entry["cached_ms"]
        rows.append(entry)
        print(entry, flush=True)
    base = rows[0]
    lines = ["| context | with cache (ms/step) | growth vs ctx 8 | without cache (ms/step) | growth vs ctx 8 | speed-up |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['context']} | {r['cached_ms']:.1f} | {r['cached_ms'] / base['cached_ms']:.2f}x | "
                     f"{r['uncached_ms']:.1f} | {r['uncached_ms'] / base['uncached_ms']:.2f}x | {r['speedup']:.1f}x |")
    lines.append(f"\nBatch {args.batch}, STORM paper transformer (2x512, 8 heads, FFN 1024), fp32, "
                 f"{args.threads} threads, median of {args.repeats} repeats of {args.steps} imagined steps.")
    save("kv_cache", {"batch": args.batch, "threads": args.threads, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
