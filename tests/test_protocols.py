"""Named benchmark protocols (../shared/reference/protocols.md): the Atari 100k presets, backend defaults
for sticky actions and episode caps, and life loss, on the real ALE and MinAtar envs."""

from __future__ import annotations

import numpy as np
import pytest

from wmrl import config as config_mod
from wmrl.envs.factory import EnvConfig, make_env

pytest.importorskip("ale_py")


def ale_settings(env) -> dict:
    ale = env.unwrapped.ale
    return {"sticky": ale.getFloat("repeat_action_probability"), "actions": env.action_space.n,
            "cap": env.spec.max_episode_steps if env.spec else None}


@pytest.mark.parametrize("preset, sticky, noops", [("atari100k", 0.0, 30), ("atari100k_storm", 0.25, 0)])
def test_atari_presets_are_the_protocols_they_name(preset, sticky, noops):
    cfg = config_mod.build([preset], {}, [])
    assert (cfg.env.sticky(), cfg.env.noop_max, cfg.env.life_loss) == (sticky, noops, True)
    assert cfg.env.episode_cap() * cfg.env.frame_skip == 108_000
    assert cfg.train.eval_policy == "sample" and cfg.train.steps == 100_000
    env = make_env(cfg.env, 0)
    assert ale_settings(env)["sticky"] == pytest.approx(sticky)
    assert ale_settings(env)["actions"] == 4  # Breakout's minimal action set
    assert env.observation_space.shape == (3, 64, 64)


def test_noop_starts_follow_the_field():
    """With no-op starts, the first frames of episodes differ by how many no-ops were played; without,
    every episode of a deterministic game starts on the same frame."""
    firsts = {}
    for noops in (0, 30):
        env = make_env(EnvConfig(id="ALE/Breakout-v5", sticky_actions=0.0, noop_max=noops), 0)
        firsts[noops] = [env.reset(seed=s)[1]["episode_frame_number"] for s in range(6)]
    assert len(set(firsts[0])) == 1 and len(set(firsts[30])) > 1


@pytest.mark.parametrize("env_id, sticky, cap", [("ALE/Pong-v5", 0.25, 27_000), ("MinAtar/Breakout-v1", 0.1, 10_000),
                                                 ("CartPole-v1", 0.0, 500)])
def test_backend_defaults_for_sticky_actions_and_episode_caps(env_id, sticky, cap):
    cfg = EnvConfig(id=env_id)
    assert cfg.sticky() == sticky
    env = make_env(cfg, 0)
    assert env.spec.max_episode_steps == cap
    if env_id.startswith("ALE/"):
        assert ale_settings(env)["sticky"] == pytest.approx(sticky)
    if env_id.startswith("MinAtar/"):
        assert env.unwrapped.game.sticky_action_prob == pytest.approx(sticky)


def test_the_ale_reports_a_lost_life_while_the_game_goes_on():
    env = make_env(EnvConfig(id="ALE/Breakout-v5", sticky_actions=0.0, life_loss=True), 0)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(3000):
        _, _, terminated, truncated, info = env.step(int(rng.integers(4)))
        if info["life_loss"]:
            assert not (terminated or truncated) and info["lives"] == 4
            break
    else:
        pytest.fail("no life lost in 3000 random steps")
