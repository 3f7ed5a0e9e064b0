"""The action-space type every layer passes along: discrete n, or a Box of dim A.

What wmrl's layers agree on (make_env converts every env to it):
  * discrete: actions are int64 indices 0..n-1; one action is a scalar, a batch is (B,).
  * box: actions are float32 vectors in [-1, 1]^A; one action is (A,), a batch is (B, A). The env's own
    bounds are reached by an affine map in the env (gymnasium's RescaleAction, see factory.py), so a
    behaviour or world model never sees them: DreamerV3 normalises its action spaces the same way.

A world model conditions on `encode(action)`: the one-hot of a discrete action, or the Box vector itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces

from wmrl.errors import WmrlError
from wmrl.nets.categorical import onehot_of

KINDS = ("discrete", "box")


def clip_to_unit(action: torch.Tensor) -> torch.Tensor:
    """Box actions clipped to [-1, 1] as the env clips them, with a straight-through gradient (the dynamics
    gradient still passes at the bounds)."""
    return action + (action.clamp(-1.0, 1.0) - action).detach()


@dataclass(frozen=True)
class ActionSpace:
    kind: str
    """discrete or box."""
    size: int
    """discrete: the number of actions n; box: the dimension A."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.size < 1:
            raise ValueError(f"ActionSpace(kind={self.kind!r}, size={self.size}) needs a kind in {KINDS} and size >= 1")

    @classmethod
    def discrete(cls, n: int) -> "ActionSpace":
        return cls("discrete", int(n))

    @classmethod
    def box(cls, dim: int) -> "ActionSpace":
        return cls("box", int(dim))

    @property
    def is_discrete(self) -> bool:
        return self.kind == "discrete"

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one action: () discrete, (A,) box."""
        return () if self.is_discrete else (self.size,)

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(np.int64 if self.is_discrete else np.float32)

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.int64 if self.is_discrete else torch.float32

    @property
    def input_dim(self) -> int:
        """Width of `encode`'s output: what a world model takes in per action."""
        return self.size

    def encode(self, action: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(...,) int64 or (..., A) float actions -> (..., input_dim) model input of `dtype`."""
        if self.is_discrete:
            return onehot_of(action, self.size, dtype)
        return clip_to_unit(action).to(dtype)  # a REINFORCE policy's raw samples reach the model unclipped

    def zeros(self, batch: int) -> np.ndarray:
        """(batch, *shape) actions that stand for "no previous action" (models ignore them at is_first)."""
        return np.zeros((batch, *self.shape), self.np_dtype)

    def uniform(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(batch, *shape) actions drawn uniformly from the space (torch's global RNG)."""
        if self.is_discrete:
            return torch.randint(self.size, (batch,), device=device)
        return torch.rand(batch, self.size, device=device) * 2 - 1

    def as_env_action(self, action: np.ndarray):
        """One action (shape `shape`) as the env takes it: a Python int, or a float32 vector."""
        return int(action) if self.is_discrete else np.asarray(action, np.float32).reshape(self.shape)

    def describe(self) -> str:
        return f"Discrete({self.size})" if self.is_discrete else f"Box([-1, 1]^{self.size})"


def action_space_of(space: spaces.Space, env_id: str) -> ActionSpace:
    """wmrl's description of a Gymnasium action space as make_env leaves it (Discrete from 0, or a 1-D
    Box in [-1, 1]); anything else is refused with what to do."""
    if isinstance(space, spaces.Discrete) and int(space.start) == 0:
        return ActionSpace.discrete(space.n)
    if (isinstance(space, spaces.Box) and len(space.shape) == 1 and np.all(space.low == -1.0)
            and np.all(space.high == 1.0)):
        return ActionSpace.box(space.shape[0])
    raise WmrlError(f"environment '{env_id}' has action space {space}, which is not one of wmrl's action spaces "
                    "(Discrete(n) from 0, or a 1-D Box in [-1, 1])",
                    "build the env with wmrl.envs.factory.make_env, which converts the supported spaces")
