"""Tiny user-style environments, registered on import, for ``module:EnvId`` tests.

``WmrlTestGrid-v0`` has an RGB image observation and Discrete actions (what wmrl supports);
``WmrlTestDictObs-v0`` has a Dict observation (what it does not); ``WmrlBoxSign-v0`` has Box actions in
[-2, 2] (its unbounded and 2-D variants are refused).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class GridEnv(gym.Env):
    """Walk on a 6x6 grid from a random cell to the bottom-right corner; reward 1 on arrival."""

    SIZE = 6
    MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])

    def __init__(self):
        self.observation_space = spaces.Box(0, 255, shape=(self.SIZE, self.SIZE, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(4)
        self._pos = np.zeros(2, dtype=np.int64)

    def _obs(self) -> np.ndarray:
        img = np.zeros((self.SIZE, self.SIZE, 3), dtype=np.uint8)
        img[-1, -1, 1] = 255  # goal in green
        img[self._pos[0], self._pos[1], 0] = 255  # agent in red
        return img

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._pos = self.np_random.integers(0, self.SIZE - 1, size=2)
        return self._obs(), {}

    def step(self, action):
        self._pos = np.clip(self._pos + self.MOVES[action], 0, self.SIZE - 1)
        at_goal = bool((self._pos == self.SIZE - 1).all())
        return self._obs(), float(at_goal), at_goal, False, {}


class DictObsEnv(gym.Env):
    def __init__(self):
        self.observation_space = spaces.Dict({"pos": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)})
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return {"pos": np.zeros(2, dtype=np.float32)}, {}

    def step(self, action):
        return {"pos": np.zeros(2, dtype=np.float32)}, 0.0, True, False, {}


class SignBanditEnv(gym.Env):
    """A one-dimensional contextual bandit over 16 steps: the observation is +1 or -1 at random and the
    reward is 1 when the action (0 for -1, 1 for +1) matches its sign. Random play scores ~8 per episode,
    a learned policy 16. It needs the whole STORM pathway: encoder -> latent -> token -> reward head, and
    an actor reading the posterior of the current observation."""

    LENGTH = 16

    def __init__(self):
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)

    def _draw(self) -> np.ndarray:
        self._sign = int(self.np_random.integers(0, 2))
        return np.array([2.0 * self._sign - 1.0], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._draw(), {}

    def step(self, action):
        reward = float(int(action) == self._sign)
        self._t += 1
        return self._draw(), reward, False, self._t >= self.LENGTH, {}


class LivesEnv(gym.Env):
    """Three lives, one lost every 7 steps (reward 1 per step), reported as info["lives"] like the ALE;
    the episode ends with the last life (21 steps)."""

    def __init__(self):
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)

    def _obs(self) -> np.ndarray:
        return np.array([self._t / 21, self._lives / 3], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t, self._lives = 0, 3
        return self._obs(), {"lives": self._lives}

    def step(self, action):
        self._t += 1
        if self._t % 7 == 0:
            self._lives -= 1
        return self._obs(), 1.0, self._lives == 0, False, {"lives": self._lives}


class BoxSignEnv(gym.Env):
    """A contextual bandit with Box actions over 16 steps: the observation is +1 or -1 at random and the
    reward is -|a - obs| for an action a in [-2, 2] (wmrl's normalised action 0.5 * obs is best).
    Random play scores ~-20 per episode, the best policy 0. `last_action` is what the env received.
    `low`, `high` and `shape` make the unsupported variants (unbounded, 2-D)."""

    LENGTH = 16

    def __init__(self, low=-2.0, high=2.0, shape=(1,)):
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Box(low, high, shape=shape, dtype=np.float32)
        self.last_action = None

    def _draw(self) -> np.ndarray:
        self._sign = 2.0 * float(self.np_random.integers(0, 2)) - 1.0
        return np.array([self._sign], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._draw(), {}

    def step(self, action):
        self.last_action = np.array(action, copy=True)
        reward = -abs(float(np.asarray(action).reshape(-1)[0]) - self._sign)
        self._t += 1
        return self._draw(), reward, False, self._t >= self.LENGTH, {}


class NonFiniteEnv(gym.Env):
    """A 2-D vector env that returns a NaN observation (or reward) on its 40th step."""

    def __init__(self, where: str = "obs"):
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.where, self.t = where, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        obs, reward = np.full(2, 0.1 * (self.t % 7), dtype=np.float32), 1.0
        if self.t == 40:
            obs, reward = (np.full(2, np.nan, dtype=np.float32), 1.0) if self.where == "obs" else (obs, float("nan"))
        return obs, reward, False, False, {}


# Guarded so importing this module twice (e.g. as `fake_envs` and `tests.fake_envs`) does not warn.
for _id, _cls in [("WmrlTestGrid-v0", GridEnv), ("WmrlTestDictObs-v0", DictObsEnv),
                   ("WmrlSignBandit-v0", SignBanditEnv), ("WmrlLives-v0", LivesEnv)]:
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_cls, max_episode_steps=50)
for _id, _kwargs in [("WmrlBoxSign-v0", {}), ("WmrlBoxUnbounded-v0", {"low": -np.inf, "high": np.inf}),
                     ("WmrlBox2D-v0", {"shape": (2, 2)})]:
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=BoxSignEnv, max_episode_steps=50, kwargs=_kwargs)
for _id, _where in [("WmrlNanObs-v0", "obs"), ("WmrlNanReward-v0", "reward")]:
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=NonFiniteEnv, max_episode_steps=100, kwargs={"where": _where})
