"""Settings of the training loop (env steps, update ratio, evaluation and checkpoint cadence)."""

from __future__ import annotations

from dataclasses import dataclass

from wmrl.errors import WmrlError


@dataclass
class TrainConfig:
    steps: int = 100_000
    """Environment steps to train for (the x-axis of every metric)."""
    warmup: int = 1024
    """Steps of uniformly random actions before any update."""
    train_ratio: float = 1.0
    """World-model and agent updates per environment step (STORM: 1)."""
    wm_batch: int = 16
    wm_seq: int = 64
    eval_every: int = 5000
    eval_episodes: int = 10
    eval_max_steps: int = 0
    """Cut an evaluation episode after this many steps (0: the env's own limit)."""
    stop_at_return: float | None = None
    """Stop once an evaluation's greedy mean reaches this (steps-to-target benchmarks); None: never."""
    checkpoint_every: int = 5000
    log_every: int = 500
    """Environment steps between rows of training metrics."""

    def validate(self) -> None:
        for name in ("steps", "wm_batch", "wm_seq", "eval_every", "eval_episodes", "checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise WmrlError(f"train.{name}={getattr(self, name)} must be positive",
                                f"set --set train.{name}=<positive integer>")
        if self.warmup < 0 or self.eval_max_steps < 0:
            raise WmrlError("train.warmup and train.eval_max_steps must be >= 0", "use 0 or a positive count")
        if self.train_ratio <= 0:
            raise WmrlError(f"train.train_ratio={self.train_ratio} must be positive",
                            "use e.g. 1.0 (one update per env step) or 0.25")
