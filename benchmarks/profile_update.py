"""Where one agent update and one acting step spend their time and FLOPs, against this machine's matmul peak.

For each preset x world model (actor-critic behaviour), the agent is built as a run builds it and its
replay filled with random-policy steps (wmrl.bench.cost.fill). The methods `Agent.update` and
`Agent.act` call are then wrapped, in this script only, with exclusive phase meters: replay sampling,
host-to-device copies, the world-model loss (forward), its backward + optimiser step, the start states
(observe_sequence), imagination, the actor-critic losses and their backward + optimiser steps; acting
splits into the world model's observe and the policy. "other" is the rest of the call (Python glue,
metrics, device-to-host copies of actions). Each phase reports its median milliseconds over `--updates`
timed calls, then its FLOPs from one more call under torch.utils.flop_counter.FlopCounterMode (backward
included) and the GFLOP/s that implies, beside the fp32 and bf16 peaks of a 2048^2 torch.mm at the
same thread count. Run on an idle machine.

    python benchmarks/profile_update.py [--presets cartpole minatar] [--world-models storm rssm] [--set k=v]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import wmrl.behavior.actor_critic as actor_critic_mod
import wmrl.run.agent as agent_mod
from common import save
from wmrl import config as config_mod
from wmrl.bench.cost import fill
from wmrl.run.trainer import build, setup_torch

UPDATE_PHASES = ["replay sample", "host->device", "wm loss forward", "wm backward+step", "start states",
                 "imagination", "actor-critic losses", "actor-critic backward+step", "other"]
ACT_PHASES = ["wm observe", "policy", "other"]


class Meter:
    """Exclusive cost per phase of one call: time, or FLOPs when `flops` (a FlopCounterMode) is given.
    A phase opens only at the top of the stack or directly inside its `parent`, so a wrapped method
    that the model also calls from inside another phase (observe_sequence inside a loss) stays in that
    phase's figure."""

    def __init__(self, device: torch.device):
        self.device, self.flops = device, None
        self.stack: list[list] = []  # [name, start reading, children's total]
        self.totals: dict[str, float] = defaultdict(float)

    def read(self) -> float:
        if self.flops is not None:
            return float(self.flops.get_total_flops())
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def wrap(self, name: str, fn, parent: str | None = None):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            top = self.stack[-1][0] if self.stack else None
            if top is not None and top != parent:
                return fn(*args, **kwargs)
            self.stack.append([name, self.read(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                _, start, children = self.stack.pop()
                spent = self.read() - start
                self.totals[name] += spent - children
                if self.stack:
                    self.stack[-1][2] += spent
        return wrapped

    def call(self, fn, *args) -> dict[str, float]:
        """Run fn(*args) as the outermost phase "other"; returns each phase's exclusive cost."""
        self.totals = defaultdict(float)
        self.wrap("other", fn)(*args)
        return dict(self.totals)


@contextlib.contextmanager
def instrument(agent, replay, meter: Meter):
    """Wrap the methods and module functions the phases name, for the duration of the block."""
    originals = (agent_mod.optimizer_step, actor_critic_mod.optimizer_step)
    agent.to_tensors = meter.wrap("host->device", agent.to_tensors, parent="other")
    replay.sample = meter.wrap("replay sample", replay.sample, parent="other")
    wm, behavior = agent.wm, agent.behavior
    wm.loss = meter.wrap("wm loss forward", wm.loss, parent="other")
    wm.observe_sequence = meter.wrap("start states", wm.observe_sequence, parent="other")
    wm.imagine = meter.wrap("imagination", wm.imagine, parent="other")
    wm.observe = meter.wrap("wm observe", wm.observe, parent="other")
    behavior.update = meter.wrap("actor-critic losses", behavior.update, parent="other")
    behavior.act = meter.wrap("policy", behavior.act, parent="other")
    agent_mod.optimizer_step = meter.wrap("wm backward+step", agent_mod.optimizer_step, parent="other")
    actor_critic_mod.optimizer_step = meter.wrap("actor-critic backward+step", actor_critic_mod.optimizer_step,
                                                 parent="actor-critic losses")
    try:
        yield
    finally:
        agent_mod.optimizer_step, actor_critic_mod.optimizer_step = originals


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of an n x n torch.mm in `dtype` at the current thread count (best of `reps`)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def profile(preset: str, world_model: str, overrides: list[str], updates: int, acts: int) -> dict:
    cfg = config_mod.build([preset], {}, [f"world_model={world_model}", "behavior=actor_critic", *overrides])
    device = setup_torch(cfg)
    tc = cfg.train
    with tempfile.TemporaryDirectory() as tmp:
        env, _, agent, replay = build(cfg, Path(tmp), device)
        obs = fill(env, replay, max(tc.warmup, 2 * tc.wm_seq, 256), cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        meter = Meter(device)
        holder = {"state": agent.initial_state()}

        def act(first: bool = False):
            holder["state"], _ = agent.act(holder["state"], obs[None], [0], [first], greedy=False)

        with instrument(agent, replay, meter):
            agent.update(replay, rng)  # warm-up
            per_update = [meter.call(agent.update, replay, rng) for _ in range(updates)]
            act(first=True)
            per_act = [meter.call(act) for _ in range(acts)]
            with FlopCounterMode(display=False) as counter:
                meter.flops = counter
                update_flops = meter.call(agent.update, replay, rng)
                act_flops = meter.call(act)
                meter.flops = None
    return {"preset": preset, "world_model": world_model, "overrides": overrides, "threads": cfg.threads,
            "precision": cfg.precision, "device": str(device),
            "update": summarise(per_update, update_flops, UPDATE_PHASES),
            "act": summarise(per_act, act_flops, ACT_PHASES)}


def summarise(calls: list[dict], flops: dict, phases: list[str]) -> dict:
    rows = {}
    for name in phases:
        ms = statistics.median(1000 * c.get(name, 0.0) for c in calls)
        f = flops.get(name, 0.0)
        rows[name] = {"ms": ms, "gflop": f / 1e9, "gflops_per_s": f / 1e6 / ms if ms > 0 else 0.0}
    total_ms = statistics.median(1000 * sum(c.values()) for c in calls)
    total_f = sum(flops.values())
    rows["total"] = {"ms": total_ms, "gflop": total_f / 1e9, "gflops_per_s": total_f / 1e6 / total_ms}
    return rows


def table(r: dict, kind: str, peak32: float) -> str:
    lines = [f"### {r['preset']} / {r['world_model']} + actor_critic: one {kind} (threads {r['threads']}, "
             f"precision {r['precision']}, {r['device']})", "",
             "| phase | ms (median) | share | GFLOP | GFLOP/s | % of fp32 peak |", "|---|---:|---:|---:|---:|---:|"]
    rows = r[kind]
    for name, v in rows.items():
        share = 100 * v["ms"] / rows["total"]["ms"]
        lines.append(f"| {name} | {v['ms']:.2f} | {share:.0f}% | {v['gflop']:.3f} | {v['gflops_per_s']:.1f} | "
                     f"{100 * v['gflops_per_s'] / peak32:.1f}% |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["cartpole", "minatar"])
    p.add_argument("--world-models", nargs="+", default=["storm", "rssm"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    p.add_argument("--updates", type=int, default=10)
    p.add_argument("--acts", type=int, default=200)
    p.add_argument("--name", default="update_profile")
    args = p.parse_args()
    results = [profile(preset, wm, args.set, args.updates, args.acts)
               for preset in args.presets for wm in args.world_models]
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    head = (f"torch.mm 2048^2 peak at {torch.get_num_threads()} threads: fp32 {peaks['fp32']:.0f} GFLOP/s, "
            f"bf16 {peaks['bf16']:.0f} GFLOP/s. FLOPs: torch.utils.flop_counter (matmuls and convolutions, "
            "forward and backward); times exclusive per phase.")
    body = "\n\n".join(table(r, kind, peaks["fp32"]) for r in results for kind in ("update", "act"))
    save(args.name, {"peaks_gflops": peaks, "results": results}, head + "\n\n" + body)


if __name__ == "__main__":
    main()
