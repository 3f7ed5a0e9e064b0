"""Reward and termination heads, shared by every world model.

Both read the model's state right after an action (STORM: the transformer output for token (z_t, a_t);
RSSM: the recurrent state h_{t+1}; MDN-RNN: the LSTM output), so they predict reward_t and terminal_t,
the results of action_t, without needing obs_{t+1} (which replay lacks after a terminal step).
Reward: two-hot symlog regression; termination: Bernoulli logit.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from wmrl.nets.mlp import MLP
from wmrl.nets.twohot import TwoHot


class OutcomeHeads(nn.Module):
    def __init__(self, in_dim: int, hidden: int, layers: int, reward_bins: int):
        super().__init__()
        self.twohot = TwoHot(reward_bins)
        self.reward = MLP(in_dim, reward_bins, hidden, layers, zero_init=True)
        self.terminal = MLP(in_dim, 1, hidden, layers)

    def predict(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., in_dim) -> predicted reward (...) and continuation probability 1 - P(terminal) (...)."""
        return self.twohot.decode(self.reward(h)), 1 - torch.sigmoid(self.terminal(h)[..., 0].float())

    def loss(self, h: torch.Tensor, reward: torch.Tensor, terminal: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., in_dim), targets (...) -> per-step reward and termination losses (...)."""
        terminal_loss = F.binary_cross_entropy_with_logits(
            self.terminal(h)[..., 0].float(), terminal.float(), reduction="none")
        return self.twohot.loss(self.reward(h), reward), terminal_loss
