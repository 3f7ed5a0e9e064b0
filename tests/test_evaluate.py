"""Batched evaluation: every episode runs to its own end, is credited only its own rewards, and the
model-state rows stay aligned with their envs as finished envs leave the batch."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from wmrl.run.evaluate import MAX_BATCH, evaluate


class CountdownEnv(gym.Env):
    """Episode of `length` steps, reward 1 per step and 100 on the last; obs = (env id, step)."""

    def __init__(self, env_id: int, length: int):
        self.env_id, self.length, self.t = env_id, length, 0
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.array([self.env_id, 0], np.float32), {}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        return np.array([self.env_id, self.t], np.float32), 1.0 + 100.0 * done, done, False, {}


class RowCheckingAgent:
    """Its 'model state' is the env id of each row; it asserts every observation comes from that env."""

    def __init__(self):
        self.batch_sizes: list[int] = []

    def initial_state(self, batch: int):
        return None

    def act(self, state, obs, prev, is_first, greedy):
        ids = obs[:, 0].astype(int)
        if state is not None:
            assert (ids == state).all(), (ids, state)
            assert not is_first.any()
        else:
            assert is_first.all()
        self.batch_sizes.append(len(ids))
        return ids, np.zeros(len(ids), np.int64)

    def select(self, state, rows):
        return state[rows]


def test_each_episode_is_credited_its_own_rewards_and_rows_stay_aligned():
    lengths = [5, 2, 9, 2, 7]
    agent = RowCheckingAgent()
    result = evaluate(agent, [CountdownEnv(i, n) for i, n in enumerate(lengths)])
    assert result["returns"] == [n + 100.0 for n in lengths]
    assert result["episodes"] == 5
    assert np.isclose(result["return_mean"], np.mean(lengths) + 100)
    # Rows leave the batch as their episodes end: 5 live for 2 steps, then 3, then 2, then 1.
    assert agent.batch_sizes == [5, 5, 3, 3, 3, 2, 2, 1, 1]


def test_max_steps_truncates_and_more_envs_than_a_batch_run_in_groups():
    agent = RowCheckingAgent()
    n = MAX_BATCH + 3
    result = evaluate(agent, [CountdownEnv(i, 50) for i in range(n)], max_steps=4)
    assert result["returns"] == [4.0] * n
    assert max(agent.batch_sizes) == MAX_BATCH and 3 in agent.batch_sizes
