"""A small pixel env whose reward hangs on a one-pixel object: a check that a world model's tokenizer
keeps small objects (benchmarks/small_objects.py, the `catch` bench suite). Registered as
``wmrl/Catch-v0`` when an id in the ``wmrl/`` namespace is asked for (envs/factory.py).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CatchEnv(gym.Env):
    """16x16 RGB catch: a one-pixel white ball falls a row per step from a random column of the top row,
    drifting sideways by -1, 0 or +1 a step (bouncing off the walls); a green paddle three pixels wide on
    the bottom row moves left, stays or moves right (actions 0, 1, 2). When the ball reaches the bottom
    row the reward is +1 if the paddle is under it, else -1, and a new ball falls. An episode is 5 balls
    (75 steps). Only the one-pixel ball decides the reward: a random paddle scores about -3.1, an agent
    that follows the ball +5."""

    SIZE, BALLS = 16, 5

    def __init__(self):
        self.observation_space = spaces.Box(0, 255, shape=(self.SIZE, self.SIZE, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(3)

    def _spawn(self) -> None:
        self._ball = np.array([0, self.np_random.integers(self.SIZE)])
        self._drift = int(self.np_random.integers(-1, 2))

    def _obs(self) -> np.ndarray:
        img = np.zeros((self.SIZE, self.SIZE, 3), dtype=np.uint8)
        img[-1, max(self._paddle - 1, 0):self._paddle + 2, 1] = 255
        img[self._ball[0], self._ball[1]] = 255
        return img

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._paddle, self._balls = self.SIZE // 2, 0
        self._spawn()
        return self._obs(), {}

    def step(self, action):
        self._paddle = int(np.clip(self._paddle + int(action) - 1, 1, self.SIZE - 2))
        col = self._ball[1] + self._drift
        if not 0 <= col < self.SIZE:
            self._drift, col = -self._drift, self._ball[1] - self._drift
        self._ball = np.array([self._ball[0] + 1, col])
        reward = 0.0
        if self._ball[0] == self.SIZE - 1:
            reward = 1.0 if abs(self._ball[1] - self._paddle) <= 1 else -1.0
            self._balls += 1
            obs = self._obs()  # the ball at the bottom row, then the next one falls
            if self._balls < self.BALLS:
                self._spawn()
            return obs, reward, self._balls == self.BALLS, False, {}
        return self._obs(), reward, False, False, {}


def register() -> None:
    if "wmrl/Catch-v0" not in gym.registry:
        gym.register(id="wmrl/Catch-v0", entry_point=CatchEnv, max_episode_steps=None)
