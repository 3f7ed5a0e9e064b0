"""Metrics against environment steps: metrics.jsonl (one JSON object per row, each with `step`),
TensorBoard event files, and a live progress bar."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from wmrl.run.files import atomic_write_text


def read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a row cut by a crash ends the readable log
    return rows


class Logger:
    def __init__(self, run_dir: Path, start_step: int, total_steps: int, progress: bool = True):
        self.path = run_dir / "metrics.jsonl"
        # On resume, rows written after the checkpoint describe a future that was thrown away.
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= start_step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.file = self.path.open("a")
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            # Events after the checkpoint's step belong to the thrown-away future; those at it (its
            # evaluation, say) were written before the checkpoint and stay.
            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_step + 1 if start_step else None)
        except ImportError:  # tensorboard is a dependency; keep training if a user removed it
            pass
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                        disable=not progress, mininterval=1.0, smoothing=0.05)
        self.status: dict[str, str] = {}

    def accumulate(self, metrics: dict[str, float]) -> None:
        for k, v in metrics.items():
            if math.isfinite(v):
                self.sums[k] += v
                self.counts[k] += 1

    def write(self, step: int, metrics: dict) -> None:
        row = {"step": step, **metrics}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, step)

    def flush_averages(self, step: int) -> None:
        if not self.sums:
            return
        self.write(step, {k: self.sums[k] / self.counts[k] for k in self.sums})
        for key, name in (("wm/loss", "wm"), ("ac/return", "imag_ret")):
            if key in self.sums:
                self.status[name] = f"{self.sums[key] / self.counts[key]:.3g}"
        self.sums.clear()
        self.counts.clear()

    def progress(self, steps: int, **status) -> None:
        self.status.update({k: f"{v:.3g}" if isinstance(v, float) else str(v) for k, v in status.items()})
        self.bar.set_postfix(self.status, refresh=False)
        self.bar.update(steps)

    def close(self) -> None:
        self.bar.close()
        self.file.close()
        if self.tb is not None:
            self.tb.close()
