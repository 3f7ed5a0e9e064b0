"""The one protocol every world model answers, and the rollout it imagines.

Timeline of a real step (replay rows use the same alignment):

    obs_t --(is_first_t: obs_t starts an episode)
      |  observe(state_{t-1}, obs_t, action_{t-1}, is_first_t) -> state_t, feat_t
      v
    action_t ~ policy(feat_t)  -->  reward_t, terminal_t (results of action_t)  -->  obs_{t+1}

Imagination repeats the same step with the model's own prediction of obs_{t+1}:
state s_0 .. s_H, actions a_0 .. a_{H-1}, and from each transition (s_t, a_t) a reward r_t and a
continuation probability c_t = 1 - P(terminal_t).

A state is whatever the model needs to continue (STORM: key/value cache + current latent; RSSM: (h, z);
MDN-RNN: (h, c, z)). Behaviour learners only ever see `feat` vectors, the rollout and these methods.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Union

import torch
from torch import nn

from wmrl.envs.spaces import ActionSpace
from wmrl.worldmodels.model_config import WorldModelConfig

Policy = Callable[[torch.Tensor], torch.Tensor]
"""Maps features (B, F) to actions: (B,) int64 for a discrete space, (B, A) float in [-1, 1] for a Box."""


@dataclass
class Rollout:
    """An imagined trajectory, batch-major.

    feat: (B, H+1, F) features of states s_0..s_H.
    action: (B, H) int64 or (B, H, A) float actions a_0..a_{H-1} (envs/spaces.py).
    reward: (B, H) predicted rewards of (s_t, a_t).
    cont: (B, H) predicted probability that the episode continues after (s_t, a_t).
    """

    feat: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    cont: torch.Tensor


class WorldModel(nn.Module):
    """Base class of every world model. Subclasses implement the abstract methods below."""

    cfg: WorldModelConfig
    feat_dim: int
    latent_dim: int
    """Features are [z, h]: the stochastic latent (latent_dim) first, then the model's history state."""
    action: ActionSpace
    """What the model conditions on: discrete actions (one-hot) or Box vectors (envs/spaces.py)."""
    deterministic: bool = False
    """Observe and imagine with the mode of each latent instead of a sample (tests use it to compare
    call paths exactly; `cem.latent_modes` sets it while the planner imagines). Training losses always
    sample."""
    ready_to_imagine: bool = True
    """False while imagination is not yet meaningful (V-M-C trains M only after V); the agent does not
    call a behaviour's `learn` until then."""

    @contextmanager
    def latent_modes(self, on: bool = True) -> Iterator[None]:
        """Within the block, observe and imagine with latent modes when `on` (`deterministic` is restored
        after it; a model already deterministic stays so)."""
        before = self.deterministic
        self.deterministic = before or on
        try:
            yield
        finally:
            self.deterministic = before

    def start_length(self, context: int) -> int:
        """Replay rows an imagination start is observed over, for a behaviour that asks for `context` real
        steps. The start must look like the states the agent acts on deep into an episode: a recurrent
        state filtered from zeros over a short window differs from them, so recurrent models observe a
        `burn_in` before the context (RSSM, MDN-RNN); STORM's state is a window of `storm.history`
        steps, so its starts are exactly that window."""
        return self.cfg.start_length(context)

    def initial(self, batch: int) -> Any:
        """A state before any observation; the first `observe` must have is_first=True."""
        raise NotImplementedError

    def observe(self, state: Any, obs: torch.Tensor, prev_action: torch.Tensor, is_first: torch.Tensor
                ) -> tuple[Any, torch.Tensor]:
        """Take in one real step.

        Args:
            state: the previous state (from `initial`, `observe` or `observe_sequence`).
            obs: (B, *obs_shape) observation obs_t.
            prev_action: (B,) int64 or (B, A) float action_{t-1} (ignored where is_first).
            is_first: (B,) bool, obs_t starts an episode: the state's history is dropped.
        Returns:
            the new state and its features (B, F), using the posterior of obs_t.
        """
        raise NotImplementedError

    def observe_sequence(self, obs: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor) -> Any:
        """The state after observing replay rows (B, T): obs_t, action_t (taken at obs_t), is_first_t.

        The last row's action is not used: the returned state sits at obs_{T-1}, ready to act.
        Models override this with a parallel version; the result must equal stepping `observe`.
        """
        B, T = is_first.shape
        state = self.initial(B)
        prev = torch.zeros_like(action[:, 0])
        for t in range(T):
            state, _ = self.observe(state, obs[:, t], prev, is_first[:, t])
            prev = action[:, t]
        return state

    def select(self, state: Any, idx: torch.Tensor) -> Any:
        """The batch rows idx (K,) int64 of `state`, as a new state (planners tile one state over their
        candidates with idx = arange(B).repeat_interleave(N)). States implement it as `state.select(idx)`."""
        return state.select(idx)

    def features(self, state: Any) -> torch.Tensor:
        """(B, F) features of a state."""
        raise NotImplementedError

    def imagine(self, state: Any, policy: Union[Policy, torch.Tensor], horizon: int) -> Rollout:
        """Roll the model forward from `state` for `horizon` steps.

        Args:
            policy: a callable features (B, F) -> actions (B,) or (B, A), or a (B, horizon) / (B, horizon, A)
                action tensor (planners). Imagination keeps the graph from the actions on (no detach), so a
                caller that wants no gradients runs it under torch.no_grad.
        """
        raise NotImplementedError

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on replay sequences (keys obs, action, reward, terminal, is_first; (B, T, ...))."""
        raise NotImplementedError

    def loss_and_starts(self, batch: dict[str, torch.Tensor], per_sequence: int
                        ) -> tuple[torch.Tensor, dict[str, float], Any]:
        """`loss` and, as imagination starts, the states the loss filtered at the last `per_sequence` rows
        of every sequence: B * per_sequence states without gradient, sequence-major (models whose config
        has imagine_from=loss)."""
        raise NotImplementedError

    def predict_obs(self, feat: torch.Tensor) -> torch.Tensor:
        """(..., F) features -> (..., *obs_shape) predicted observations in the environment's units: fp32
        (uint8 for frames) whatever the autocast dtype (the decoders' to_obs casts)."""
        raise NotImplementedError


def next_actions(policy: Union[Policy, torch.Tensor], feat: torch.Tensor, t: int) -> torch.Tensor:
    """Action a_t for the imagination step t, from a policy callable or a (B, H, ...) action tensor."""
    if callable(policy):
        return policy(feat)
    return policy[:, t]


def total_loss(per_step: dict[str, torch.Tensor], extra: torch.Tensor, metrics: dict[str, float]
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """A world model's training loss: the means of its per-step losses (name -> (B, T)) plus `extra`
    (e.g. the KL term); `metrics` gains wm/<name> for each mean and wm/loss for the total."""
    means = {name: loss.mean() for name, loss in per_step.items()}
    total = sum(means.values()) + extra
    metrics.update({f"wm/{name}": mean.item() for name, mean in means.items()})
    metrics["wm/loss"] = total.item()
    return total, metrics
