"""Cross-entropy-method planning with model-predictive control (PlaNet), for discrete and Box actions.

At every real step, from the model's current state: keep an independent distribution over the action
of each of the next `horizon` steps: a categorical (B, H, A) for discrete actions, PlaNet's diagonal
Gaussian (mean and std (B, H, A), actions clipped to [-1, 1]) for Box actions. `iterations` times,
sample `candidates` action sequences, imagine them all as one batch, score each by its predicted
discounted return sum_t gamma^t w_t r_t (w_t the probability of still being in the episode, see
returns.py), and refit the distributions to the `elites` best: their action frequencies, or their mean
and std. Execute the first action, then replan: when greedy, the most frequent elite action (a tie
going to the best sequence's) or the Gaussian's mean (PlaNet's choice); otherwise a sample of the first
step's distribution (discrete), or the mean plus N(0, explore_std) noise (Box, PlaNet's exploration).
With `warm_start` the next plan of a stream starts from its last one shifted by a
step (the last step the prior: uniform, or N(0, 1)) instead of from the prior; the plan is the
stream's memory (behavior/protocol.py), so it
is dropped at an episode start and never passes between evaluation and training streams; with `latent_modes` candidates are imagined with latent modes, not samples.
With `terminal_value` each score adds gamma^H w_H V(s_H) from a learned value attached with
`attach_value` (`wmrl eval --plan` attaches the critic of an actor-critic run), and gamma is the
value's own discount, so the sum is one return.

PlaNet's settings (continuous actions, Gaussian CEM): horizon 12, 1000 candidates, 10 iterations,
refit to the top 100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from wmrl.behavior.protocol import Behavior
from wmrl.behavior.returns import discounted_return
from wmrl.envs.spaces import ActionSpace
from wmrl.errors import WmrlError, require_positive
from wmrl.nets.categorical import onehot_of


@dataclass
class CemConfig:
    horizon: int = 12
    """Planned steps (PlaNet: 12)."""
    candidates: int = 1000
    """Action sequences per iteration (PlaNet: 1000)."""
    iterations: int = 10
    """Refits per act (PlaNet: 10)."""
    elites: int = 100
    """Best candidates the refit uses (PlaNet: 100)."""
    gamma: float = 0.99
    """Discount of predicted rewards in a candidate's score."""
    warm_start: bool = True
    """Start each plan from the previous one shifted by a step, instead of from uniform."""
    min_prob: float = 0.01
    """Discrete actions: floor on every action's probability after a refit, so no action is ruled out for
    good."""
    explore_std: float = 0.3
    """Box actions, training (non-greedy) acts: std of the Gaussian noise added to the planned mean
    (PlaNet: 0.3)."""
    latent_modes: bool = False
    """Imagine candidates with each latent's mode instead of a sample. With samples the elites are partly
    the candidates whose draws happened to go well, so the planner trusts luck the real env will not
    repeat (benchmarks/results/session11_cem_latent_modes.md)."""
    terminal_value: bool = False
    """Add a learned value at the horizon (needs a critic: plan with `wmrl eval --plan` on an actor-critic
    run). A drift whose end lies beyond the horizon scores the same as staying centred without it."""

    def validate(self) -> None:
        require_positive("cem", self, "horizon", "candidates", "iterations", "elites")
        if self.elites > self.candidates:
            raise WmrlError(f"cem.elites={self.elites} exceeds cem.candidates={self.candidates}",
                            "refit to fewer elites than there are candidates, e.g. 10% of them")


def refit(seqs: torch.Tensor, scores: torch.Tensor, elites: int, num_actions: int, min_prob: float) -> torch.Tensor:
    """seqs (B, N, H) int64 action sequences, scores (B, N) -> (B, H, A) action frequencies of the
    `elites` best sequences of each batch row, mixed with `min_prob` uniform."""
    top = scores.topk(elites, dim=1).indices  # (B, E)
    best = seqs.gather(1, top[..., None].expand(-1, -1, seqs.shape[-1]))  # (B, E, H)
    freq = onehot_of(best, num_actions, torch.float32).mean(1)  # (B, H, A)
    mix = min(min_prob * num_actions, 1.0)
    return (1 - mix) * freq + mix / num_actions


def refit_gaussian(seqs: torch.Tensor, scores: torch.Tensor, elites: int) -> torch.Tensor:
    """seqs (B, N, H, A) action sequences, scores (B, N) -> (B, H, 2A): the mean and the std (over the
    elites, not unbiased) of the `elites` best sequences of each batch row."""
    top = scores.topk(elites, dim=1).indices  # (B, E)
    best = seqs.gather(1, top[:, :, None, None].expand(-1, -1, *seqs.shape[2:]))  # (B, E, H, A)
    return torch.cat([best.mean(1), (best.var(1, correction=0) + 1e-6).sqrt()], -1)  # PlaNet's floor


class CemPlanner(Behavior):
    def __init__(self, cfg: CemConfig, action: ActionSpace):
        super().__init__()
        self.cfg, self.action = cfg, action
        # (B, N) scores of the last act's last iteration, for diagnostics (benchmarks/cem_trace.py) only.
        self.last_scores: torch.Tensor | None = None
        self.value: Callable[[torch.Tensor], torch.Tensor] | None = None  # (K, F) features -> (K,) values
        self.value_gamma = cfg.gamma

    def attach_value(self, value: Callable[[torch.Tensor], torch.Tensor], gamma: float) -> None:
        """Use `value` at the horizon when cfg.terminal_value, discounting the whole score by its gamma."""
        self.value, self.value_gamma = value, gamma

    def _initial(self, batch: int, device: torch.device) -> torch.Tensor:
        """(B, H, W) the plan before anything is known: uniform probabilities (W = A), or the mean 0 and
        the std 1 of every dimension (W = 2A)."""
        H, A = self.cfg.horizon, self.action.size
        if self.action.is_discrete:
            return torch.full((batch, H, A), 1.0 / A, device=device)
        return torch.cat([torch.zeros(batch, H, A, device=device), torch.ones(batch, H, A, device=device)], -1)

    def _prior(self, plan: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """(B, H, W) the distributions a plan starts from: the initial plan, or the stream's last one shifted."""
        initial = self._initial(batch, device)
        if not self.cfg.warm_start or plan is None:
            return initial
        assert plan.shape == initial.shape, f"plan memory {tuple(plan.shape)} != {tuple(initial.shape)}"
        shifted = torch.cat([plan[:, 1:], initial[:, :1]], 1)
        if self.action.is_discrete:
            return shifted
        # Box: only the mean is carried over; the std restarts at 1 as PlaNet's every plan does. A carried
        # std collapses to ~0 within a few acts and the plan can then no longer change course.
        A = self.action.size
        return torch.cat([shifted[..., :A], initial[..., A:]], -1)

    def forget(self, memory, is_first):
        if memory is None:
            return None
        return torch.where(is_first[:, None, None], self._initial(memory.shape[0], memory.device), memory)

    def _sample(self, plan: torch.Tensor, count: int) -> torch.Tensor:
        """plan (B, H, W) -> (B, N, H) int64 or (B, N, H, A) float action sequences."""
        if self.action.is_discrete:
            return torch.distributions.Categorical(probs=plan).sample((count,)).transpose(0, 1)
        mean, std = plan[:, None].chunk(2, -1)  # (B, 1, H, A) each
        noise = torch.randn(plan.shape[0], count, *mean.shape[2:], device=plan.device)
        return (mean + std * noise).clamp(-1.0, 1.0)

    def _refit(self, seqs: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.action.is_discrete:
            return refit(seqs, scores, self.cfg.elites, self.action.size, self.cfg.min_prob)
        return refit_gaussian(seqs, scores, self.cfg.elites)

    def _first(self, plan: torch.Tensor, seqs: torch.Tensor, scores: torch.Tensor, greedy: bool) -> torch.Tensor:
        """The action to execute now (B,) or (B, A), from the refitted plan's first step."""
        first = plan[:, 0]  # (B, W)
        if self.action.is_discrete:
            if not greedy:
                return torch.multinomial(first, 1)[:, 0]
            return modal_action(first, seqs[:, :, 0].gather(1, scores.argmax(1, keepdim=True))[:, 0])
        mean = first[:, :self.action.size]  # (B, A)
        if greedy:
            return mean
        return (mean + self.cfg.explore_std * torch.randn_like(mean)).clamp(-1.0, 1.0)

    @torch.no_grad()
    def act(self, wm, state, feat, greedy, memory=None):
        """See Behavior.act; the memory is the stream's last refitted plan (B, H, W)."""
        cfg, B, N = self.cfg, feat.shape[0], self.cfg.candidates
        if cfg.terminal_value and self.value is None:
            raise WmrlError("cem.terminal_value is set but the planner has no learned value to add",
                            "plan with `wmrl eval RUN --plan` on an actor_critic run, or drop cem.terminal_value")
        gamma = self.value_gamma if cfg.terminal_value else cfg.gamma
        plan = self._prior(memory, B, feat.device)
        tiled = wm.select(state, torch.arange(B, device=feat.device).repeat_interleave(N))
        with wm.latent_modes(cfg.latent_modes):
            for _ in range(cfg.iterations):
                seqs = self._sample(plan, N)  # (B, N, H, ...)
                rollout = wm.imagine(tiled, seqs.flatten(0, 1), cfg.horizon)
                last = self.value(rollout.feat[:, -1]).float() if cfg.terminal_value else None  # (B*N,)
                scores = discounted_return(rollout.reward.float(), rollout.cont.float(), gamma, last)
                scores = scores.reshape(B, N)
                plan = self._refit(seqs, scores)
        self.last_scores = scores
        return self._first(plan, seqs, scores, greedy), plan


def modal_action(first: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """first (B, A) elite shares of each first action, best (B,) the best sequence's first action -> (B,)
    the most shared action, a tie going to `best` (argmax alone gives every tie to action 0, a steady
    push to one side wherever the elites split evenly)."""
    tied = first >= first.max(-1, keepdim=True).values - 1e-6  # (B, A)
    return torch.where(tied.gather(1, best[:, None])[:, 0], best, first.argmax(-1))
