"""Lambda-returns, continuation weights and percentile return normalisation (DreamerV3).

Timeline of an imagined rollout (see worldmodels/protocol.py):

    s_0 -a_0-> (r_0, c_0) s_1 -a_1-> (r_1, c_1) ... s_{H-1} -a_{H-1}-> (r_{H-1}, c_{H-1}) s_H

    R_t = r_t + gamma * c_t * ((1 - lambda) * V(s_{t+1}) + lambda * R_{t+1}),   R_H = V(s_H)

The bootstrap is V(s_{t+1}), the value of the state the transition leads to (the public STORM code
uses V(s_t), flaw 1). A state after a predicted termination is reached with probability
w_t = c_0 * ... * c_{t-1}; losses on s_t are weighted by w_t.
"""

from __future__ import annotations

import torch
from torch import nn


def lambda_returns(reward: torch.Tensor, cont: torch.Tensor, value: torch.Tensor, gamma: float, lam: float
                   ) -> torch.Tensor:
    """reward, cont: (B, H); value: (B, H+1) values of s_0..s_H -> (B, H) returns R_0..R_{H-1}."""
    B, H = reward.shape
    assert value.shape == (B, H + 1), f"value shape {tuple(value.shape)} != {(B, H + 1)}"
    out = torch.empty_like(reward)
    last = value[:, H]
    for t in reversed(range(H)):
        last = reward[:, t] + gamma * cont[:, t] * ((1 - lam) * value[:, t + 1] + lam * last)
        out[:, t] = last
    return out


def continuation_weights(cont: torch.Tensor) -> torch.Tensor:
    """(B, H) continuation probabilities -> (B, H) weights w_t = prod_{k<t} c_k (w_0 = 1)."""
    return torch.cat([torch.ones_like(cont[:, :1]), cont[:, :-1]], 1).cumprod(1)


class ReturnNormalizer(nn.Module):
    """Scale S = EMA of (P_high - P_low) of the returns, starting from 0 as DreamerV3's return moments do;
    advantages are divided by max(1, S). (Starting at the first batch's spread instead lets one early
    batch of an untrained critic set the scale for hundreds of updates.)"""

    def __init__(self, decay: float = 0.99, low: float = 5.0, high: float = 95.0):
        super().__init__()
        self.decay, self.low, self.high = decay, low / 100, high / 100
        self.register_buffer("scale", torch.zeros(()))

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> torch.Tensor:
        """Merge a batch of returns (any shape) into the scale, unless it holds a non-finite value (the
        scale then stays as it was: a NaN would otherwise poison it for good); returns max(1, S)."""
        flat = returns.detach().float().flatten()
        if torch.isfinite(flat).all():
            spread = torch.quantile(flat, self.high) - torch.quantile(flat, self.low)
            self.scale.mul_(self.decay).add_((1 - self.decay) * spread)
        return self.scale.clamp(min=1.0)


def discounted_return(reward: torch.Tensor, cont: torch.Tensor, gamma: float,
                      last_value: torch.Tensor | None = None) -> torch.Tensor:
    """(K, H) predicted rewards and continuations -> (K,) sum_t gamma^t w_t r_t, plus
    gamma^H w_H V(s_H) when last_value (K,) is given (the lambda = 1 return of `lambda_returns`)."""
    H = reward.shape[1]
    discount = gamma ** torch.arange(H, device=reward.device, dtype=reward.dtype)
    total = (reward * continuation_weights(cont) * discount).sum(1)
    if last_value is None:
        return total
    return total + gamma ** H * cont.prod(1) * last_value
