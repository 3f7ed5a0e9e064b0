"""Behaviour of wmrl.envs.factory: observation conventions, seeding, statistics, user envs, errors."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest

from wmrl.envs.factory import EnvConfig, EnvSpec, env_spec, make_env
from wmrl.envs.spaces import ActionSpace
from wmrl.errors import WmrlError


def _run_episode(env, actions, max_steps=300):
    """Observations and rewards of the next episode (plain ``reset()``) under a fixed action sequence."""
    obs, _ = env.reset()
    observations, rewards = [obs], []
    for t in range(max_steps):
        obs, reward, terminated, truncated, _ = env.step(int(actions[t % len(actions)]))
        observations.append(obs)
        rewards.append(float(reward))
        if terminated or truncated:
            break
    return np.stack(observations), np.array(rewards)


def test_cartpole_gives_float32_vectors_and_spec():
    env = make_env(EnvConfig(id="CartPole-v1"), seed=0)
    obs, _ = env.reset()
    assert obs.dtype == np.float32 and obs.shape == (4,)
    obs, *_ = env.step(0)
    assert obs.dtype == np.float32 and obs.shape == (4,)
    assert env_spec(env) == EnvSpec(obs_shape=(4,), is_image=False, action=ActionSpace.discrete(2))


@pytest.mark.parametrize("version, num_actions", [("v0", 6), ("v1", 3)])
def test_minatar_gives_binary_uint8_channel_first_images(version, num_actions):
    env = make_env(EnvConfig(id=f"MinAtar/Breakout-{version}"), seed=0)
    obs, _ = env.reset()
    for _ in range(3):
        assert obs.dtype == np.uint8 and obs.shape == (4, 10, 10)
        assert set(np.unique(obs)) <= {0, 255}
        assert obs.max() == 255  # paddle and bricks are visible
        obs, *_ = env.step(0)
    assert env_spec(env) == EnvSpec(obs_shape=(4, 10, 10), is_image=True, action=ActionSpace.discrete(num_actions))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b)


# Asterix rather than Breakout: Breakout's only start randomness is a coin flip, so short episodes
# from different seeds often coincide; Asterix spawns enemies at random every few steps.
@pytest.mark.parametrize("env_id", ["CartPole-v1", "MinAtar/Asterix-v1"])
def test_same_seed_reproduces_the_first_episode_and_later_episodes_differ(env_id):
    # A fixed action sequence, so any difference comes from the env's RNG (incl. MinAtar's sticky actions).
    actions = np.random.default_rng(123).integers(0, 2, size=300)
    env_a, env_b = make_env(EnvConfig(id=env_id), seed=7), make_env(EnvConfig(id=env_id), seed=7)
    obs_a, rew_a = _run_episode(env_a, actions)
    obs_b, rew_b = _run_episode(env_b, actions)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    second_episode, _ = _run_episode(env_a, actions)  # plain reset() continues the seeded RNG
    assert not _same(obs_a, second_episode)
    other_seed, _ = _run_episode(make_env(EnvConfig(id=env_id), seed=8), actions)
    assert not _same(obs_a, other_seed)


def test_action_space_is_seeded():
    space_a = make_env(EnvConfig(), seed=3).action_space
    space_b = make_env(EnvConfig(), seed=3).action_space
    assert [space_a.sample() for _ in range(20)] == [space_b.sample() for _ in range(20)]


def test_explicit_reset_seed_is_honoured():
    env = make_env(EnvConfig(), seed=0)
    first, _ = env.reset()
    env.reset()
    again, _ = env.reset(seed=0)
    np.testing.assert_array_equal(first, again)


def test_episode_statistics_match_summed_rewards():
    env = make_env(EnvConfig(id="MinAtar/Breakout-v1"), seed=1)
    env.reset()
    total, steps, rng = 0.0, 0, np.random.default_rng(0)
    while True:
        _, reward, terminated, truncated, info = env.step(int(rng.integers(3)))
        total += float(reward)
        steps += 1
        if terminated or truncated:
            break
        assert "episode" not in info
    assert info["episode"]["r"] == pytest.approx(total)
    assert info["episode"]["l"] == steps


def test_max_episode_steps_truncates():
    env = make_env(EnvConfig(id="CartPole-v1", max_episode_steps=5), seed=0)
    env.reset()
    for t in range(5):
        _, _, terminated, truncated, info = env.step(t % 2)  # alternating cannot topple the pole in 5 steps
    assert truncated and not terminated and info["episode"]["l"] == 5


def test_user_env_from_module_id():
    env = make_env(EnvConfig(id="tests.fake_envs:WmrlTestGrid-v0"), seed=0)
    obs, _ = env.reset()
    assert obs.dtype == np.uint8 and obs.shape == (3, 6, 6)
    assert obs[0].sum() == 255 and obs[1, -1, -1] == 255  # agent in the red channel, goal in green
    obs, *_ = env.step(3)
    assert obs.shape == (3, 6, 6) and obs.flags["C_CONTIGUOUS"]
    assert env_spec(env) == EnvSpec(obs_shape=(3, 6, 6), is_image=True, action=ActionSpace.discrete(4))


def _error_for(cfg: EnvConfig) -> WmrlError:
    with pytest.raises(WmrlError) as excinfo:
        make_env(cfg, seed=0)
    return excinfo.value


def test_unknown_id_error():
    err = _error_for(EnvConfig(id="Foo-v9"))
    assert "unknown environment id 'Foo-v9'" in err.problem
    assert "CartPole-v1" in err.fix


def test_unknown_id_in_existing_module_error():
    err = _error_for(EnvConfig(id="tests.fake_envs:Nope-v0"))
    assert "unknown environment id" in err.problem and "Nope-v0" in err.problem


def test_bad_module_error():
    err = _error_for(EnvConfig(id="no_such_wmrl_module:Env-v0"))
    assert "cannot import module 'no_such_wmrl_module'" in err.problem


def test_box_actions_are_normalised_to_the_unit_box_and_clipped_to_the_env_bounds():
    env = make_env(EnvConfig(id="tests.fake_envs:WmrlBoxSign-v0"), seed=0)
    assert env_spec(env).action == ActionSpace.box(1)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    env.reset()
    for given, received in [(0.5, 1.0), (-1.0, -2.0), (0.0, 0.0), (3.0, 2.0), (-7.0, -2.0)]:
        env.step(np.array([given], np.float32))
        assert env.unwrapped.last_action.tolist() == pytest.approx([received])
    pendulum = make_env(EnvConfig(id="Pendulum-v1"), seed=0)
    assert env_spec(pendulum).action == ActionSpace.box(1)


@pytest.mark.parametrize("env_id, what", [("WmrlBoxUnbounded-v0", "infinite or empty bounds"),
                                          ("WmrlBox2D-v0", "1-D Box actions only")])
def test_box_actions_wmrl_cannot_map_are_refused(env_id, what):
    err = _error_for(EnvConfig(id=f"tests.fake_envs:{env_id}"))
    assert what in err.problem and env_id in err.problem


def test_unsupported_observation_space_error():
    err = _error_for(EnvConfig(id="tests.fake_envs:WmrlTestDictObs-v0"))
    assert "observation space" in err.problem and "Dict" in err.problem


@pytest.mark.skipif(importlib.util.find_spec("ale_py") is not None, reason="ale_py is installed")
def test_missing_ale_py_error():
    err = _error_for(EnvConfig(id="ALE/Pong-v5"))
    assert "ale_py is not installed" in err.problem and "pip install ale-py" in err.fix


@pytest.mark.parametrize(
    "field, value",
    [("max_episode_steps", -1), ("sticky_actions", 1.0), ("sticky_actions", -0.1), ("frame_skip", 0),
     ("image_size", 0), ("id", "")],
)
def test_config_validation_names_the_bad_value(field, value):
    cfg = EnvConfig(**{field: value})
    with pytest.raises(WmrlError) as excinfo:
        cfg.validate()
    assert field in excinfo.value.problem


def _catch_return(env, policy, rng) -> float:
    obs, _ = env.reset()
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy(obs, rng))
        total, done = total + reward, terminated or truncated
    return total


def test_catch_rewards_only_an_agent_that_sees_the_one_pixel_ball():
    env = make_env(EnvConfig(id="wmrl/Catch-v0"), seed=0)
    assert env_spec(env) == EnvSpec(obs_shape=(3, 16, 16), is_image=True, action=ActionSpace.discrete(3))
    obs, _ = env.reset()
    assert (obs[0] == 255).sum() == 1  # the ball is the only red pixel

    def follow(obs, rng):  # move the paddle (green, bottom row) under the ball's column
        ball = np.argwhere(obs[0] == 255)[0][1]
        paddle = np.flatnonzero(obs[1, -1] == 255).mean()
        return 1 + int(np.sign(ball - paddle))

    rng = np.random.default_rng(0)
    followed = [_catch_return(env, follow, rng) for _ in range(20)]
    randomly = [_catch_return(env, lambda o, r: int(r.integers(3)), rng) for _ in range(200)]
    assert min(followed) == 5.0
    assert -3.6 < np.mean(randomly) < -2.4


@pytest.mark.skipif(importlib.util.find_spec("dm_control") is None, reason="needs the dmc extra")
def test_dmc_ids_give_wmrls_spaces_from_state_or_pixels():
    proprio = make_env(EnvConfig(id="dmc/cartpole-balance", action_repeat=2), seed=0)
    assert env_spec(proprio) == EnvSpec(obs_shape=(5,), is_image=False, action=ActionSpace.box(1))
    length = 0
    proprio.reset()
    while True:
        *_, terminated, truncated, _ = proprio.step(proprio.action_space.sample())
        length += 1
        if terminated or truncated:
            break
    assert length == 500 and truncated and not terminated  # 1000 physics steps at action repeat 2
    pixels = make_env(EnvConfig(id="dmc/walker-walk", pixels=True, image_size=32, fast_render=True), seed=0)
    assert env_spec(pixels) == EnvSpec(obs_shape=(3, 32, 32), is_image=True, action=ActionSpace.box(6))
    assert pixels.reset()[0].dtype == np.uint8


@pytest.mark.skipif(importlib.util.find_spec("Box2D") is None, reason="needs the box2d extra")
def test_carracing_takes_the_unit_box_for_steer_gas_and_brake():
    env = make_env(EnvConfig(id="CarRacing-v3", image_size=64), seed=0)
    assert env_spec(env) == EnvSpec(obs_shape=(3, 64, 64), is_image=True, action=ActionSpace.box(3))
    own = env.unwrapped.action_space  # steer in [-1, 1], gas and brake in [0, 1]: reached by the affine map
    assert own.low.tolist() == [-1.0, 0.0, 0.0] and own.high.tolist() == [1.0, 1.0, 1.0]
    obs, _ = env.reset()
    for action in ([-1.0, -1.0, 1.0], [1.0, 1.0, -1.0]):
        obs, reward, *_ = env.step(np.array(action, np.float32))
        assert obs.shape == (3, 64, 64) and np.isfinite(reward)


@pytest.mark.parametrize("key, value", [("action_repeat", 2), ("pixels", True), ("fast_render", True)])
def test_dmc_only_settings_on_another_env_are_refused_not_ignored(key, value):
    """An ignored env.action_repeat would also make the bench count twice the env steps that happened."""
    with pytest.raises(WmrlError, match=f"env.{key}=.* applies to DMC tasks"):
        EnvConfig(id="CartPole-v1", **{key: value}).validate()
    EnvConfig(id="dmc/cartpole-balance", **{key: value}).validate()
