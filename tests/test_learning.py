"""The agent actually learns: on a tiny contextual bandit, the greedy return rises from chance to
near the optimum within 1200 environment steps (about 30 s on an idle 2-core CPU; the test asserts the
learning, not the time, so a loaded machine does not fail it)."""

from __future__ import annotations

import time

import tests.fake_envs  # noqa: F401  (registers WmrlSignBandit-v0 and WmrlBoxSign-v0)
from wmrl import config as config_mod
from wmrl.run.evaluate import evaluate, make_eval_envs
from wmrl.run.trainer import build, setup_torch, train


def test_storm_actor_critic_learns_a_contextual_bandit(tmp_path):
    # The debug preset widened a little: the reward is an XOR of observation sign and action, which a
    # width-32 model with dropout learns too slowly for a one-minute test.
    overrides = ["env.id=tests.fake_envs:WmrlSignBandit-v0", "train.steps=1200", "train.warmup=128",
                 "train.train_ratio=0.5", "train.eval_every=1200", "train.eval_episodes=10", "train.wm_batch=16",
                 "storm.optim.lr=0.001", "storm.transformer.dropout=0", "storm.transformer.width=64",
                 "storm.head_hidden=64", "storm.encoder.hidden=64", "actor_critic.imag_batch=64",
                 "actor_critic.actor_optim.lr=0.0003", "actor_critic.critic_optim.lr=0.0003", "actor_critic.entropy=0.01"]
    cfg = config_mod.build(["debug"], {"seed": 3}, overrides)
    device = setup_torch(cfg)
    _, _, untrained, _ = build(cfg, tmp_path / "untrained", device)
    before = evaluate(untrained, make_eval_envs(cfg.env, 99, 10))["return_mean"]
    start = time.time()
    result = train(cfg, tmp_path / "run", progress=False)
    after = result["eval"]["return_mean"]
    print(f"greedy return before {before}, after {after}, {time.time() - start:.1f} s")
    # Chance is 8 of 16; an untrained greedy policy ignores the sign, so it also scores about 8.
    assert before < 11, before
    assert after >= 14, f"greedy return {after} after training (untrained: {before})"


def test_storm_actor_critic_learns_box_actions_by_backpropagating_through_the_dream(tmp_path):
    """Box actions: reward -|a - obs| for a in [-2, 2] over 16 steps (fake_envs.BoxSignEnv). The untrained
    greedy policy plays about the same action whatever the sign, ~-16; random play ~-20; the best 0."""
    overrides = ["env.id=tests.fake_envs:WmrlBoxSign-v0", "train.steps=1200", "train.warmup=128",
                 "train.train_ratio=0.5", "train.eval_every=1200", "train.eval_episodes=10", "train.wm_batch=16",
                 "storm.optim.lr=0.001", "storm.transformer.dropout=0", "storm.transformer.width=64",
                 "storm.head_hidden=64", "storm.encoder.hidden=64", "actor_critic.imag_batch=64",
                 "actor_critic.actor_optim.lr=0.0003", "actor_critic.critic_optim.lr=0.0003"]
    cfg = config_mod.build(["debug"], {"seed": 3}, overrides)
    assert cfg.actor_critic.gradient == "auto"  # resolves to dynamics for Box actions
    device = setup_torch(cfg)
    _, _, untrained, _ = build(cfg, tmp_path / "untrained", device)
    before = evaluate(untrained, make_eval_envs(cfg.env, 99, 10))["return_mean"]
    after = train(cfg, tmp_path / "run", progress=False)["eval"]["return_mean"]
    print(f"greedy return before {before}, after {after}")
    assert before < -12, before
    assert after > -10, f"greedy return {after} after training (untrained: {before})"
