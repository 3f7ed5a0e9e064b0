"""Small Gymnasium wrappers that put every environment into the shape wmrl expects.

Observations leaving ``make_env`` are either float32 vectors ``(D,)`` or uint8 channel-first images
``(C, H, W)`` in [0, 255]. Each wrapper below does one conversion so the per-step cost stays at a
single numpy call (CartPole has to stay well above 20k steps/s through the whole stack).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class SeedOnFirstReset(gym.Wrapper):
    """Seeds the first ``reset()`` with ``seed``; later resets continue the env's own RNG.

    Seeding every reset would replay the same episode forever; never seeding would make runs
    irreproducible. Seeding once gives both: a run is reproducible and its episodes differ. The
    training loop can then call plain ``env.reset()``. An explicit ``reset(seed=...)`` still wins.
    """

    def __init__(self, env: gym.Env, seed: int):
        super().__init__(env)
        self._pending_seed: int | None = seed
        # Random exploration (e.g. prefill with uniform actions) must be reproducible too.
        self.action_space.seed(seed)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        return self.env.reset(seed=seed, options=options)


class Float32Vector(gym.ObservationWrapper):
    """Casts a 1-D Box observation to float32 (networks run in float32)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        assert isinstance(space, spaces.Box) and len(space.shape) == 1, space
        self.observation_space = spaces.Box(
            low=space.low.astype(np.float32),
            high=space.high.astype(np.float32),
            shape=space.shape,
            dtype=np.float32,
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(observation, dtype=np.float32)


class ChannelFirstImage(gym.ObservationWrapper):
    """Turns an ``(H, W, C)`` image into a contiguous uint8 ``(C, H, W)`` array in [0, 255].

    With ``binary=True`` the input is a boolean occupancy map (MinAtar's ``(10, 10, C)`` channels)
    and True becomes 255, so binary and RGB images share one encoder and one ``/255`` scaling.
    """

    def __init__(self, env: gym.Env, binary: bool = False):
        super().__init__(env)
        H, W, C = env.observation_space.shape
        self._binary = binary
        self.observation_space = spaces.Box(0, 255, shape=(C, H, W), dtype=np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        # Contiguous copy: the replay buffer and torch.from_numpy then see a plain C-ordered array.
        chw = np.ascontiguousarray(observation.transpose(2, 0, 1), dtype=np.uint8)  # (C, H, W)
        if self._binary:
            chw *= 255
        return chw


class LifeLossSignal(gym.Wrapper):
    """Sets ``info["life_loss"] = True`` on a step that loses a life without ending the episode, from the
    ``info["lives"]`` count the env reports (the ALE does). The training loop stores such a step as
    terminal in replay and starts the agent's state afresh; the episode itself goes on."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._lives = info.get("lives")
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = info.get("lives")
        lost = lives is not None and self._lives is not None and lives < self._lives
        info["life_loss"] = bool(lost and not (terminated or truncated))
        self._lives = lives
        return obs, reward, terminated, truncated, info


class RequireFinite(gym.Wrapper):
    """Stop with a clear error when the env returns a non-finite observation or reward: one NaN in replay
    makes every later world-model loss NaN."""

    def __init__(self, env: gym.Env, env_id: str):
        super().__init__(env)
        self.env_id, self.steps = env_id, 0
        self.check_obs = np.issubdtype(env.observation_space.dtype, np.floating)

    def _check(self, obs, reward=0.0) -> None:
        from wmrl.errors import WmrlError

        if not np.isfinite(reward) or (self.check_obs and not np.isfinite(obs).all()):
            what = "reward" if not np.isfinite(reward) else "observation"
            raise WmrlError(f"environment '{self.env_id}' returned a non-finite {what} at its step {self.steps}",
                            "fix the env so that observations and rewards are finite numbers")

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._check(obs)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        self._check(obs, float(reward))
        return obs, reward, terminated, truncated, info
