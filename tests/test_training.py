"""The training loop: the switch from warm-up to acting, lost lives, evaluation modes and seeds, exact
resumes, checkpoints loaded for an agent on another device, and loud failure on non-finite updates."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import tests.fake_envs  # noqa: F401  (registers the fake envs)
from wmrl import config as config_mod
from wmrl.data.replay import Replay
from wmrl.envs.factory import EnvSpec
from wmrl.envs.spaces import ActionSpace
from wmrl.errors import WmrlError
from wmrl.run import checkpoint
from wmrl.run.agent import Agent
from wmrl.run.evaluate import evaluate, evaluation_seeds, make_eval_envs
from wmrl.bench.cost import fill
from wmrl.run.trainer import build, train

BANDIT = "tests.fake_envs:WmrlSignBandit-v0"  # 16-step episodes
BOX_BANDIT = "tests.fake_envs:WmrlBoxSign-v0"


def rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def record_acts(monkeypatch) -> list[tuple[list[bool], int]]:
    """Every Agent.act call's is_first flags and batch size, in order."""
    calls = []
    act = Agent.act

    def spy(self, state, obs, prev, is_first, greedy):
        calls.append((list(np.asarray(is_first, bool)), len(obs)))
        return act(self, state, obs, prev, is_first, greedy)

    monkeypatch.setattr(Agent, "act", spy)
    return calls


def test_the_first_act_after_the_warm_up_starts_the_model_afresh(tmp_path, monkeypatch):
    calls = record_acts(monkeypatch)
    cfg = config_mod.build(["debug"], {"seed": 0}, [f"env.id={BANDIT}", "train.warmup=70", "train.steps=76",
                                                   "train.eval_every=1000"])
    train(cfg, tmp_path / "run", progress=False)
    assert 70 % 16  # the warm-up ends mid-episode ...
    training = [first for first, n in calls if n == 1]
    assert training[0] == [True] and not any(f[0] for f in training[1:])  # ... yet the model starts afresh


def test_a_lost_life_is_terminal_in_replay_and_restarts_the_state_while_the_episode_goes_on(tmp_path, monkeypatch):
    calls = record_acts(monkeypatch)
    cfg = config_mod.build(["debug"], {"seed": 0}, ["env.id=tests.fake_envs:WmrlLives-v0", "env.life_loss=true",
                                                   "train.warmup=21", "train.steps=63", "train.eval_every=1000",
                                                   "train.checkpoint_every=63"])
    train(cfg, tmp_path / "run", progress=False)
    replay = Replay(cfg.replay, (2,), np.float32, tmp_path / "run" / "replay")
    replay.load(63)
    data = replay.sample(1, 63, np.random.default_rng(0))
    t = np.arange(63)
    assert np.array_equal(data["terminal"][0], t % 7 == 6)  # each life's last step
    assert np.array_equal(data["is_first"][0], t % 7 == 0)
    assert [r["train/return"] for r in rows(tmp_path / "run") if "train/return" in r] == [21.0, 21.0, 21.0]
    training = [first[0] for first, n in calls if n == 1]  # steps 21..62
    assert training == [s % 7 == 0 for s in range(21, 63)]


def test_eval_policy_both_plays_the_same_starts_greedy_and_sampled(tmp_path):
    cfg = config_mod.build(["debug"], {"seed": 0}, ["train.eval_policy=both", "train.steps=150"])
    train(cfg, tmp_path / "run", progress=False)
    evals = [r for r in rows(tmp_path / "run") if "eval/episodes" in r]
    assert [r["step"] for r in evals] == [150]
    assert {"eval/greedy/return_mean", "eval/sample/return_mean", "eval/greedy/return_std"} <= set(evals[0])


class _FirstObsAgent:
    """Records the first observation of each evaluation episode; acts 0."""

    def __init__(self):
        self.first: list[np.ndarray] = []

    def initial_state(self, batch):
        return batch

    def act(self, state, obs, prev, is_first, greedy):
        if is_first.all():
            self.first.append(obs.copy())
        return state, np.zeros(len(obs), np.int64)

    def select(self, state, rows):
        return len(rows)


def test_the_episodes_of_an_evaluation_depend_on_its_step_only(tmp_path):
    """A resumed run's evaluation envs are new; the envs of a run never interrupted have played every
    earlier evaluation. Both must play the same episodes at step S."""
    cfg = config_mod.build(["debug"], {"seed": 3}, []).env
    fresh, used = make_eval_envs(cfg, 7, 3), make_eval_envs(cfg, 7, 3)
    agent = _FirstObsAgent()
    evaluate(agent, used, seeds=evaluation_seeds(7, 100, 3))
    evaluate(agent, used, seeds=evaluation_seeds(7, 200, 3))
    evaluate(agent, fresh, seeds=evaluation_seeds(7, 200, 3))
    assert np.array_equal(agent.first[1], agent.first[2])
    assert not np.array_equal(agent.first[0], agent.first[1])


def _strip(run) -> list[dict]:
    """Metric rows without wall-clock figures and resume markers."""
    out = []
    for r in rows(run):
        r = {k: v for k, v in r.items() if not k.startswith(("perf/", "time/", "resume/"))}
        if len(r) > 1:
            out.append(r)
    return out


@pytest.mark.parametrize("behavior,envs,env_id", [("actor_critic", 1, BANDIT), ("cmaes", 1, BANDIT),
                                                  ("actor_critic", 2, BANDIT), ("actor_critic", 1, BOX_BANDIT)])
def test_a_run_resumed_at_an_episode_start_is_the_run_never_interrupted(tmp_path, behavior, envs, env_id):
    """Checkpoints at episode starts (16-step episodes, every 64 steps): training to 128 then resuming to
    192 gives the metrics and weights of one run to 192, through warm-up actions (the action spaces'
    RNGs), CMA-ES generations, evaluations (seeded by their step) and the envs' RNGs (their resets
    replayed). Two training envs step together, so both are at an episode start at every checkpoint. Box
    actions (BOX_BANDIT) go through the same path with float actions in replay and a Gaussian policy."""
    overrides = [f"env.id={env_id}", "world_model=rssm", f"behavior={behavior}", "train.checkpoint_every=64",
                 "train.eval_every=64", "train.log_every=32", "train.warmup=150", "train.eval_policy=both",
                 f"train.num_envs={envs}"]
    whole = config_mod.build(["debug"], {"seed": 2}, overrides + ["train.steps=192"])
    train(whole, tmp_path / "whole", progress=False)
    part = config_mod.build(["debug"], {"seed": 2}, overrides + ["train.steps=128"])
    train(part, tmp_path / "part", progress=False)
    part.train.steps = 192
    train(part, tmp_path / "part", resume=True, progress=False)
    assert _strip(tmp_path / "whole") == _strip(tmp_path / "part")
    a, b = (checkpoint.load_checkpoint(tmp_path / r)["agent"]["wm"] for r in ("whole", "part"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.filterwarnings("ignore:.*meta parameter")
def test_a_checkpoint_loads_for_an_agent_on_another_device(tmp_path):
    """The checkpoint is read onto the CPU and the weights copied to the agent's device, so the RNG states
    stay CPU tensors (torch.set_rng_state takes no other). The meta device stands in for CUDA here."""
    cfg = config_mod.build(["debug"], {"seed": 0}, ["train.steps=100"])
    train(cfg, tmp_path / "run", progress=False)
    saved = checkpoint.load_checkpoint(tmp_path / "run")["rng"]["torch"]
    torch.manual_seed(123)
    agent = Agent(cfg, EnvSpec((4,), False, ActionSpace.discrete(2)), torch.device("meta"))
    env_like = make_eval_envs(cfg.env, 0, 1)[0]
    counters, _ = checkpoint.resume(tmp_path / "run", agent, np.random.default_rng(0), [env_like.action_space])
    assert counters["step"] == 100 and torch.equal(torch.get_rng_state(), saved)
    assert next(agent.wm.parameters()).device.type == "meta"


def test_non_finite_losses_skip_their_steps_then_stop_the_run_and_resume_works(tmp_path, monkeypatch):
    from wmrl.worldmodels.storm import Storm

    loss = Storm.loss
    calls = {"n": 0}

    def poisoned(self, batch):
        calls["n"] += 1
        total, metrics = loss(self, batch)
        return (total * math.nan, metrics) if calls["n"] > 40 else (total, metrics)

    monkeypatch.setattr(Storm, "loss", poisoned)
    cfg = config_mod.build(["debug"], {"seed": 0}, ["train.nonfinite_limit=5", "train.eval_every=1000"])
    run = tmp_path / "run"
    with pytest.raises(WmrlError) as err:
        train(cfg, run, progress=False)
    # debug: warm-up 64, one update per 4 steps, so update n comes at step 63 + 4n: the first bad one at 227, the fifth at 243
    assert "5 updates in a row" in err.value.problem and "checkpoint at step 200 is intact" in err.value.problem
    assert "--resume" in err.value.fix
    ckpt = checkpoint.load_checkpoint(run)
    assert ckpt["counters"]["step"] == 200
    assert all(torch.isfinite(v).all() for v in ckpt["agent"]["wm"].values() if v.is_floating_point())
    monkeypatch.setattr(Storm, "loss", loss)
    result = train(config_mod.load(run / "config.yaml"), run, resume=True, progress=False)
    assert result["step"] == 300
    assert any(r.get("health/nonfinite_updates", 0) == 0 for r in rows(run) if r["step"] > 200)


def test_several_training_envs_act_in_one_batch_each_with_a_replay_stream_of_its_own(tmp_path, monkeypatch):
    calls = record_acts(monkeypatch)
    cfg = config_mod.build(["debug"], {"seed": 0}, [f"env.id={BANDIT}", "world_model=storm", "train.num_envs=3",
                                                    "train.steps=150", "train.warmup=60", "train.checkpoint_every=75"])
    train(cfg, tmp_path / "run", progress=False)
    acting = [c for c in calls if c[1] == 3]
    assert len(acting) == (150 - 60) // 3  # one batch of 3 per step of the three envs after the warm-up
    assert acting[0][0] == [True] * 3  # the first acting step starts every env's model afresh
    ckpt = checkpoint.load_checkpoint(tmp_path / "run")
    assert ckpt["counters"]["step"] == 150 and len(ckpt["counters"]["episode_start"]) == 3
    for i in range(3):
        stream = Replay(cfg.replay, (1,), np.float32, tmp_path / "run" / "replay" / f"stream_{i}")
        stream.load(50)
        data = stream.sample(1, 50, np.random.default_rng(0))
        # Each stream is one env's own timeline: 16-step episodes from its first row on.
        assert np.flatnonzero(data["is_first"][0]).tolist() == [0, 16, 32, 48]
    config = config_mod.build(["debug"], {"seed": 0}, [f"env.id={BANDIT}", "world_model=storm", "train.num_envs=2",
                                                       "train.steps=150", "train.warmup=60"])
    with pytest.raises(WmrlError, match="num_envs"):
        train(config, tmp_path / "run", resume=True, progress=False)


def test_a_checkpoint_made_before_a_setting_existed_resumes_with_its_default(tmp_path):
    cfg = config_mod.build(["debug"], {"seed": 0}, [f"env.id={BANDIT}", "train.steps=100"])
    train(cfg, tmp_path / "run", progress=False)
    path = checkpoint.checkpoint_path(tmp_path / "run")
    ckpt = torch.load(path, weights_only=True)
    del ckpt["config"]["train"]["num_envs"]  # as a checkpoint made before train.num_envs was added
    torch.save(ckpt, path)
    cfg.train.steps = 120
    train(cfg, tmp_path / "run", resume=True, progress=False)
    assert checkpoint.load_checkpoint(tmp_path / "run")["counters"]["step"] == 120
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["train"]["num_envs"] = 2  # a setting that does differ is still refused
    torch.save(ckpt, path)
    with pytest.raises(WmrlError, match="num_envs"):
        train(cfg, tmp_path / "run", resume=True, progress=False)


@pytest.mark.parametrize("overrides, match", [
    (["train.steps=150", "train.num_envs=4"], "train.steps=150 is not a multiple of train.num_envs=4"),
    (["train.num_envs=10"], "train.warmup=64 leaves each of train.num_envs=10 envs"),
    (["behavior=cmaes", "cmaes.where=real", "train.num_envs=2"], "cmaes.where=real"),
])
def test_settings_several_training_envs_cannot_honour_are_refused(overrides, match):
    with pytest.raises(WmrlError, match=match):
        config_mod.build(["debug"], {"seed": 0}, overrides)


def test_bf16_on_the_cpu_autocasts_updates_and_leaves_acting_in_fp32(tmp_path, monkeypatch):
    """precision=bf16 on the CPU: the world model's update runs under bf16 autocast, an act does not (one
    act's small ops cost more under CPU autocast than they save)."""
    cfg = config_mod.build(["debug"], {"seed": 0}, ["precision=bf16"])
    env, spec, agent, replay = build(cfg, tmp_path, torch.device("cpu"))
    obs = fill(env, replay, 300, 0)
    seen = []
    for name in ("observe", "loss"):
        method = getattr(type(agent.wm), name)
        monkeypatch.setattr(type(agent.wm), name, lambda self, *a, _m=method, _n=name:
                            (seen.append((_n, torch.is_autocast_enabled("cpu"))), _m(self, *a))[1])
    agent.act(agent.initial_state(1), obs[None], spec.action.zeros(1), np.ones(1, bool), greedy=True)
    agent.update(replay, np.random.default_rng(0))
    assert seen == [("observe", False), ("loss", True)]
