"""The faithful horizon: its definition on known error curves, windows cut inside episodes, and a
held-out measurement through `wmrl dream --held-out` on a trained debug run."""

from __future__ import annotations

import json

import numpy as np
import torch

from wmrl.cli import main
from wmrl import config as config_mod
from wmrl.bench.cost import fill
from wmrl.run.horizon import first_exceeding, window_horizons, windows
from wmrl.run.trainer import build


def test_the_faithful_horizon_is_the_first_step_the_model_does_worse_than_the_mean_frame():
    base = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
    model = np.array([[0.1, 0.5, 1.5, 0.2], [0.1, 0.2, 0.3, 0.4], [0.6, 0.1, 0.1, 0.1]])
    assert first_exceeding(model, base).tolist() == [3, 4, 1]  # the second never exceeds: the window's end


def test_windows_lie_inside_one_episode_and_start_a_fresh_state():
    episodes = [{"obs": [np.array([t]) for t in range(7)], "action": list(range(7)), "is_first": [True] + [False] * 6},
                {"obs": [np.array([100 + t]) for t in range(3)], "action": list(range(3)), "is_first": [True] * 3}]
    out = windows(episodes, length=3, stride=2)
    assert out["obs"][:, :, 0].tolist() == [[0, 1, 2], [2, 3, 4], [4, 5, 6], [100, 101, 102]]
    assert out["is_first"].tolist() == [[True, False, False]] * 4
    assert windows(episodes, length=8, stride=1) == {}


def test_dream_reports_the_faithful_horizon_over_held_out_episodes(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--run-dir", str(run), "--no-progress", "--set", "train.steps=200"]) == 0
    capsys.readouterr()
    assert main(["dream", str(run), "--horizon", "5", "--held-out", "3"]) == 0
    held = json.loads(capsys.readouterr().out)["held_out"]
    assert held["episodes"] == 3 and held["windows"] >= 1
    assert 1 <= held["faithful_horizon"] <= 5 and len(held["model_mse"]) == len(held["baseline_mse"]) == 5
    assert held["reached_end"] == all(m <= b for m, b in zip(held["model_mse"], held["baseline_mse"]))
    assert 1 <= held["faithful_horizon_modes"] <= 5 and len(held["model_mse_modes"]) == 5
    saved = json.loads((run / "dream.json").read_text())
    assert saved["held_out"]["faithful_horizon"] == held["faithful_horizon"]


def test_a_bf16_run_dreams_and_reports_its_horizon(tmp_path, capsys):
    """The dream and the faithful horizon imagine under the update autocast (bf16 here) and give finite errors."""
    run = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--run-dir", str(run), "--no-progress", "--set", "train.steps=150",
                 "--set", "precision=bf16"]) == 0
    capsys.readouterr()
    assert main(["dream", str(run), "--horizon", "4", "--held-out", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["mse_per_step"]) == 4 and all(np.isfinite(result["mse_per_step"]))
    assert 1 <= result["held_out"]["faithful_horizon"] <= 4


def test_the_latent_modes_horizon_is_one_future_and_the_sampled_one_a_draw(tmp_path):
    """Under latent modes the open-loop prediction is the model's single most likely future, the same
    whatever torch's seed; the sampled rollout is a draw that changes with it."""
    cfg = config_mod.build(["debug"], {"seed": 0}, [])
    env, _, agent, replay = build(cfg, tmp_path, torch.device("cpu"))
    fill(env, replay, 200, 0)
    data = replay.sample(8, 10, np.random.default_rng(0))
    a, b = (window_horizons(agent, data, context=4, horizon=6, seed=s) for s in (0, 1))
    assert a["model_mse_modes"] == b["model_mse_modes"] and a["baseline_mse"] == b["baseline_mse"]
    assert a["model_mse"] != b["model_mse"]
    assert a["windows"] == 8 and len(a["model_mse"]) == 6
