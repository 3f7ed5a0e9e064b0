"""Settings of the training loop (env steps, update ratio, evaluation and checkpoint cadence)."""

from __future__ import annotations

from dataclasses import dataclass

from wmrl.errors import WmrlError
from wmrl.run.evaluate import POLICIES


@dataclass
class TrainConfig:
    steps: int = 100_000
    """Environment steps to train for (the x-axis of every metric)."""
    warmup: int = 1024
    """Steps of uniformly random actions before any update."""
    num_envs: int = 1
    """Training envs stepped together, their actions chosen in one batch (four CartPole envs cost STORM
    1.3x one env's act); each has a replay stream of its own. Every count here (steps, warmup,
    train_ratio, the cadences) is in env steps summed over the envs."""
    train_ratio: float = 1.0
    """World-model and agent updates per environment step (STORM: 1)."""
    wm_batch: int = 16
    """Sequences per world-model update (STORM: 16)."""
    wm_seq: int = 64
    """Steps per training sequence (STORM: 64; at most storm.transformer.context)."""
    eval_every: int = 5000
    """Environment steps between evaluations."""
    eval_episodes: int = 10
    """Episodes per evaluation, played side by side."""
    eval_policy: str = "greedy"
    """How evaluations act: greedy (the most likely action), sample (the policy's own draws: STORM's and
    DreamerV3's protocol) or both (each evaluation plays the same episode starts both ways). Metric rows
    carry eval/<mode>/return_mean."""
    eval_max_steps: int = 0
    """Cut an evaluation episode after this many steps (0: the env's own limit)."""
    stop_at_return: float | None = None
    """Stop once an evaluation's mean reaches this (its first mode: greedy unless eval_policy=sample);
    None: never."""
    checkpoint_every: int = 5000
    """Environment steps between checkpoints (and replay flushes)."""
    log_every: int = 500
    """Environment steps between rows of training metrics."""
    nonfinite_limit: int = 20
    """An update whose loss or gradient is not finite changes no weight (it is counted in
    health/nonfinite_updates); this many in a row stop the run with an error, its last checkpoint intact."""

    def validate(self) -> None:
        for name in ("steps", "num_envs", "wm_batch", "wm_seq", "eval_every", "eval_episodes", "checkpoint_every", "log_every",
                     "nonfinite_limit"):
            if getattr(self, name) <= 0:
                raise WmrlError(f"train.{name}={getattr(self, name)} must be positive",
                                f"set --set train.{name}=<positive integer>")
        for name in ("steps", "eval_every", "checkpoint_every"):
            if getattr(self, name) % self.num_envs:
                raise WmrlError(f"train.{name}={getattr(self, name)} is not a multiple of train.num_envs={self.num_envs}: "
                                "the envs step together, so the run could not stop, evaluate or checkpoint there",
                                f"make train.{name} a multiple of {self.num_envs}")
        if self.warmup < 0 or self.eval_max_steps < 0:
            raise WmrlError("train.warmup and train.eval_max_steps must be >= 0", "use 0 or a positive count")
        if self.eval_policy not in POLICIES:
            raise WmrlError(f"train.eval_policy={self.eval_policy!r} is not known", "use greedy, sample or both")
        if self.train_ratio <= 0:
            raise WmrlError(f"train.train_ratio={self.train_ratio} must be positive",
                            "use e.g. 1.0 (one update per env step) or 0.25")
