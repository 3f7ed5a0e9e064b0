"""The one protocol every way of acting answers (actor-critic, CEM planning, CMA-ES controller).

A behaviour gets actions out of a world model and may learn from it. It sees the model only through
the world-model protocol (worldmodels/protocol.py): features, `imagine`, and batch selection of states.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from wmrl.worldmodels.protocol import WorldModel


class Behavior(nn.Module):
    starts: tuple[int, int] | None = None
    """(batch, context): imagination start states `learn` wants per update (replay windows of `context`
    real steps, observed by the model), or None if it learns nothing from the model."""

    def act(self, wm: WorldModel, state: Any, feat: torch.Tensor, greedy: bool, memory: Any = None
            ) -> tuple[torch.Tensor, Any]:
        """Actions (B,) for model states `state` with features feat (B, F); greedy = evaluation.

        `memory` is what this behaviour carries from one real step to the next for each of the B streams
        (a planner's previous plan), None for a fresh start; the new memory is returned beside the
        actions. It belongs to the caller's streams, never to the behaviour, so an evaluation's streams
        and the training stream never see each other's. A tensor memory has the streams as its first
        dimension (the agent selects its rows when streams leave a batch)."""
        raise NotImplementedError

    def forget(self, memory: Any, is_first: torch.Tensor) -> Any:
        """`memory` with the streams whose episode starts now (is_first (B,) bool) reset."""
        return memory

    def learn(self, wm: WorldModel, start: Any) -> dict[str, float]:
        """One learning step from imagination start states (batch `starts[0]`); returns metrics."""
        return {}

    def state_value(self) -> tuple[Callable[[torch.Tensor], torch.Tensor], float] | None:
        """(V, gamma): a learned value V of features (B, F) -> (B,), a discounted return at discount
        gamma of acting on from there, or None if the behaviour keeps none. A planner can add it at its
        horizon (`cem.terminal_value`)."""
        return None

    def episode_end(self, episode_return: float) -> dict[str, float]:
        """Told the return of every training episode the agent played; returns metrics."""
        return {}

    def optim_state_dict(self) -> dict:
        return {}

    def load_optim_state_dict(self, state: dict) -> None:
        pass
