"""The DMC and CarRacing backends (envs/dmc.py, envs/carracing.py): spaces, action repeat, episode
length, seeding and the errors a user sees. Each test takes a few env steps (one full proprio episode at
most), so the file runs in seconds."""

from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest

from wmrl.errors import WmrlError

needs_dmc = pytest.mark.skipif(importlib.util.find_spec("dm_control") is None, reason="needs the dmc extra")
needs_box2d = pytest.mark.skipif(importlib.util.find_spec("Box2D") is None, reason="needs the box2d extra")


def _dmc(task: str = "cartpole-balance", **kwargs):
    from wmrl.envs.dmc import make_dmc

    return make_dmc(task, **{"pixels": False, **kwargs})


@needs_dmc
@pytest.mark.parametrize("task, D, A", [("cartpole-balance", 5, 1), ("walker-walk", 24, 6), ("cup-catch", 8, 2)])
def test_proprio_spaces(task, D, A):
    env = _dmc(task)
    assert env.observation_space.shape == (D,) and env.observation_space.dtype == np.float32
    assert env.action_space.shape == (A,) and env.action_space.dtype == np.float32
    obs, _ = env.reset(seed=0)
    assert obs.shape == (D,) and obs.dtype == np.float32
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.shape == (D,) and obs.dtype == np.float32 and np.isfinite(obs).all()
    assert np.isfinite(reward) and not terminated and not truncated


@needs_dmc
def test_walker_keys_follow_dm_controls_order():
    # Not alphabetical (shimmy's Dict space sorts): the scalar height sits between orientations and velocity.
    assert _dmc("walker-walk").keys == (("orientations", 14), ("height", 1), ("velocity", 9))


@needs_dmc
@pytest.mark.parametrize("size", [64, 32])
def test_pixel_frames(size):
    env = _dmc("cartpole-swingup", pixels=True, image_size=size, action_repeat=2)
    assert env.observation_space.shape == (size, size, 3) and env.observation_space.dtype == np.uint8
    obs, _ = env.reset(seed=0)
    assert obs.shape == (size, size, 3) and obs.dtype == np.uint8
    obs, *_ = env.step(np.zeros(1, np.float32))
    assert obs.shape == (size, size, 3) and obs.dtype == np.uint8
    assert obs.std() > 0  # a drawn scene, not a blank buffer


@needs_dmc
def test_fast_render_changes_frames_not_their_shape():
    standard = _dmc(pixels=True).reset(seed=0)[0]
    fast = _dmc(pixels=True, fast_render=True).reset(seed=0)[0]
    assert fast.shape == standard.shape and fast.dtype == standard.dtype
    assert not np.array_equal(fast, standard)  # no shadows or reflections


@needs_dmc
def test_action_repeat_sums_rewards_of_the_repeated_steps():
    # swingup gives a dense reward that changes every physics step, so a wrong sum would show.
    once, twice = _dmc("cartpole-swingup", action_repeat=1), _dmc("cartpole-swingup", action_repeat=2)
    obs1, _ = once.reset(seed=3)
    obs2, _ = twice.reset(seed=3)
    np.testing.assert_array_equal(obs1, obs2)
    for a in (0.7, -0.4, 1.0):
        action = np.array([a], np.float32)
        r1 = once.step(action)[1]
        obs1, r1b, *_ = once.step(action)
        obs2, r2, *_ = twice.step(action)
        assert r2 == pytest.approx(r1 + r1b)
        np.testing.assert_array_equal(obs1, obs2)


@needs_dmc
@pytest.mark.parametrize("repeat", [1, 2, 3])
def test_episode_is_1000_physics_steps_and_truncates(repeat):
    env = _dmc(action_repeat=repeat)
    env.reset(seed=0)
    action = np.zeros(1, np.float32)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(action)
        steps += 1
        assert steps <= 1000, "episode did not end"
    assert steps == math.ceil(1000 / repeat)
    assert truncated and not terminated


@needs_dmc
def test_seed_fixes_the_first_observation():
    env = _dmc("cartpole-swingup")
    first = env.reset(seed=7)[0]
    for _ in range(3):
        env.step(env.action_space.sample())
    np.testing.assert_array_equal(env.reset(seed=7)[0], first)
    np.testing.assert_array_equal(_dmc("cartpole-swingup").reset(seed=7)[0], first)
    assert not np.array_equal(env.reset(seed=8)[0], first)


@needs_dmc
def test_seed_fixes_the_first_frame():
    a = _dmc(pixels=True).reset(seed=5)[0]
    b = _dmc(pixels=True).reset(seed=5)[0]
    np.testing.assert_array_equal(a, b)


@needs_dmc
@pytest.mark.parametrize("task", ["cartpole-balanse", "cartpole", "pong-play"])
def test_unknown_task_lists_the_available_ones(task):
    with pytest.raises(WmrlError) as excinfo:
        _dmc(task)
    err = excinfo.value
    assert task in err.problem
    assert "cartpole-balance" in err.fix and "cup-catch" in err.fix and "walker-walk" in err.fix


@needs_dmc
def test_full_domain_name_works_too():
    assert _dmc("ball_in_cup-catch").observation_space.shape == (8,)


@needs_dmc
def test_camera_out_of_range_is_a_user_error():
    with pytest.raises(WmrlError, match="camera 9"):
        _dmc(pixels=True, camera=9)


def test_bad_action_repeat_is_a_user_error():
    with pytest.raises(WmrlError, match="action_repeat=0"):
        _dmc(action_repeat=0)


def test_missing_dm_control_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dm_control", None)  # makes `import dm_control` fail
    with pytest.raises(WmrlError) as excinfo:
        _dmc()
    assert "pip install -e '.[dmc]'" in excinfo.value.fix


@needs_box2d
def test_carracing_frames_and_actions():
    from wmrl.envs.carracing import make_carracing

    env = make_carracing()
    assert env.observation_space.shape == (64, 64, 3) and env.observation_space.dtype == np.uint8
    space = env.action_space
    assert space.shape == (3,) and space.dtype == np.float32
    np.testing.assert_array_equal(space.low, [-1, 0, 0])
    np.testing.assert_array_equal(space.high, [1, 1, 1])
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    obs, reward, *_ = env.step(np.array([0.0, 1.0, 0.0], np.float32))
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and np.isfinite(reward)


def test_missing_box2d_names_the_extra(monkeypatch):
    from wmrl.envs.carracing import make_carracing

    # Forget the imported box2d envs so gym.make imports them again, against a Box2D that fails to import.
    for name in [m for m in sys.modules if m.startswith("gymnasium.envs.box2d")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "Box2D", None)
    with pytest.raises(WmrlError) as excinfo:
        make_carracing()
    assert "pip install -e '.[box2d]'" in excinfo.value.fix
