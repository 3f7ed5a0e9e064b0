"""Policy distributions over an action space (envs/spaces.py), from an MLP on the agent's features.

- discrete: a categorical over the n actions with `unimix` uniform mixed in (DreamerV3), sampled without
  gradient (the actor learns by REINFORCE).
- box: DreamerV3's bounded normal, an independent Normal per dimension with mean tanh(m) in [-1, 1] and
  std = (max_std - min_std) * sigmoid(s + 2) + min_std (DreamerV3: 0.1 and 1.0). Samples are
  reparameterised (gradients reach the mean and std, for learning by backpropagation through the
  imagined dynamics) and clipped to [-1, 1] with a straight-through gradient: the world model and the
  env see only actions inside the space, as the env would clip them anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wmrl.envs.spaces import ActionSpace, clip_to_unit
from wmrl.nets.categorical import sample_index, unimix_logits


@dataclass
class Categorical:
    log_p: torch.Tensor  # (..., n) log-probabilities

    def sample(self) -> torch.Tensor:
        return sample_index(self.log_p)  # (...,) int64

    def mode(self) -> torch.Tensor:
        return self.log_p.argmax(-1)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        """(...,) int64 -> (...,)."""
        return self.log_p.gather(-1, action[..., None])[..., 0]

    def entropy(self) -> torch.Tensor:
        return -(self.log_p.exp() * self.log_p).sum(-1)


@dataclass
class BoundedNormal:
    mean: torch.Tensor  # (..., A) in [-1, 1]
    std: torch.Tensor  # (..., A) in [min_std, max_std]

    def sample(self, clip: bool = True) -> torch.Tensor:
        """(..., A) a reparameterised sample, clipped to [-1, 1] with a straight-through gradient; with
        clip=False the raw Normal sample, whose log_prob is the likelihood of what was drawn (REINFORCE:
        the log-density of a clipped sample would bias the score function)."""
        raw = self.mean + self.std * torch.randn_like(self.mean)
        return clip_to_unit(raw) if clip else raw

    def mode(self) -> torch.Tensor:
        return self.mean

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        """(..., A) -> (...,) the Normal's log-density summed over the dimensions."""
        return torch.distributions.Normal(self.mean, self.std).log_prob(action).sum(-1)

    def entropy(self) -> torch.Tensor:
        return torch.distributions.Normal(self.mean, self.std).entropy().sum(-1)


def policy_width(space: ActionSpace) -> int:
    """Outputs a policy network gives `action_dist`: n logits, or a mean and a std input per dimension."""
    return space.size if space.is_discrete else 2 * space.size


def action_dist(space: ActionSpace, out: torch.Tensor, unimix: float = 0.01, min_std: float = 0.1,
                max_std: float = 1.0) -> Categorical | BoundedNormal:
    """A policy network's outputs (..., policy_width(space)) -> the distribution over `space`'s actions."""
    if space.is_discrete:
        return Categorical(unimix_logits(out, unimix))
    mean, std = out.float().chunk(2, -1)
    return BoundedNormal(torch.tanh(mean), (max_std - min_std) * torch.sigmoid(std + 2.0) + min_std)
