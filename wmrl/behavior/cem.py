"""Cross-entropy-method planning with model-predictive control (PlaNet), for discrete actions.

At every real step, from the model's current state: keep an independent categorical distribution over
the action of each of the next `horizon` steps (B, H, A); `iterations` times, sample `candidates`
action sequences, imagine them all as one batch, score each by its predicted discounted return
sum_t gamma^t w_t r_t (w_t the probability of still being in the episode, see returns.py), and refit
the distributions to the action frequencies of the `elites` best. Execute the first action (the most
frequent elite action when greedy, a tie going to the best sequence's; a sample otherwise), then
replan. With `warm_start` the next plan of a stream starts from its last one shifted by a step (the
last step uniform) instead of from uniform; the plan is the stream's memory (behavior/protocol.py), so it
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
    """Floor on every action's probability after a refit, so no action is ruled out for good."""
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


class CemPlanner(Behavior):
    def __init__(self, cfg: CemConfig, num_actions: int):
        super().__init__()
        self.cfg, self.num_actions = cfg, num_actions
        # (B, N) scores of the last act's last iteration, for diagnostics (benchmarks/cem_trace.py) only.
        self.last_scores: torch.Tensor | None = None
        self.value: Callable[[torch.Tensor], torch.Tensor] | None = None  # (K, F) features -> (K,) values
        self.value_gamma = cfg.gamma

    def attach_value(self, value: Callable[[torch.Tensor], torch.Tensor], gamma: float) -> None:
        """Use `value` at the horizon when cfg.terminal_value, discounting the whole score by its gamma."""
        self.value, self.value_gamma = value, gamma

    def _prior(self, plan: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """(B, H, A) the distributions a plan starts from: uniform, or the stream's last plan shifted."""
        H, A = self.cfg.horizon, self.num_actions
        uniform = torch.full((batch, H, A), 1.0 / A, device=device)
        if not self.cfg.warm_start or plan is None:
            return uniform
        assert plan.shape == uniform.shape, f"plan memory {tuple(plan.shape)} != {tuple(uniform.shape)}"
        return torch.cat([plan[:, 1:], uniform[:, :1]], 1)

    def forget(self, memory, is_first):
        if memory is None:
            return None
        return torch.where(is_first[:, None, None], torch.full_like(memory, 1.0 / self.num_actions), memory)

    @torch.no_grad()
    def act(self, wm, state, feat, greedy, memory=None):
        """See Behavior.act; the memory is the stream's last refitted plan (B, H, A)."""
        cfg, B, N = self.cfg, feat.shape[0], self.cfg.candidates
        if cfg.terminal_value and self.value is None:
            raise WmrlError("cem.terminal_value is set but the planner has no learned value to add",
                            "plan with `wmrl eval RUN --plan` on an actor_critic run, or drop cem.terminal_value")
        gamma = self.value_gamma if cfg.terminal_value else cfg.gamma
        probs = self._prior(memory, B, feat.device)
        tiled = wm.select(state, torch.arange(B, device=feat.device).repeat_interleave(N))
        with wm.latent_modes(cfg.latent_modes):
            for _ in range(cfg.iterations):
                seqs = torch.distributions.Categorical(probs=probs).sample((N,)).transpose(0, 1)  # (B, N, H)
                rollout = wm.imagine(tiled, seqs.reshape(B * N, cfg.horizon), cfg.horizon)
                last = self.value(rollout.feat[:, -1]).float() if cfg.terminal_value else None  # (B*N,)
                scores = discounted_return(rollout.reward.float(), rollout.cont.float(), gamma, last)
                scores = scores.reshape(B, N)
                probs = refit(seqs, scores, cfg.elites, self.num_actions, cfg.min_prob)
        self.last_scores = scores
        first = probs[:, 0]  # (B, A)
        if not greedy:
            return torch.multinomial(first, 1)[:, 0], probs
        return modal_action(first, seqs[:, :, 0].gather(1, scores.argmax(1, keepdim=True))[:, 0]), probs


def modal_action(first: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """first (B, A) elite shares of each first action, best (B,) the best sequence's first action -> (B,)
    the most shared action, a tie going to `best` (argmax alone gives every tie to action 0, a steady
    push to one side wherever the elites split evenly)."""
    tied = first >= first.max(-1, keepdim=True).values - 1e-6  # (B, A)
    return torch.where(tied.gather(1, best[:, None])[:, 0], best, first.argmax(-1))
