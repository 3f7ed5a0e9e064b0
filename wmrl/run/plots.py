"""The learning curve of a run: training episode returns and evaluation means (+- std) over env steps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from wmrl.run.files import atomic_write  # noqa: E402
from wmrl.run.logger import read_metrics  # noqa: E402


def plot_learning_curve(run_dir: Path, title: str = "") -> Path:
    rows = read_metrics(run_dir / "metrics.jsonl")
    train = [(r["step"], r["train/return"]) for r in rows if "train/return" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), ".", alpha=0.3, ms=3, label="training episodes")
    for mode in ("greedy", "sample"):
        key = f"eval/{mode}/return_mean"
        evals = [(r["step"], r[key], r[f"eval/{mode}/return_std"]) for r in rows if key in r]
        if evals:
            s, m, sd = zip(*evals)
            ax.errorbar(s, m, yerr=sd, marker="o", capsize=3, label=f"evaluation ({mode} policy, mean +- std)")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    out = run_dir / "learning_curve.png"
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)
    return out
