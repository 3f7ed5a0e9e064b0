"""Layer 3: the command line on the `debug` preset: train, eval, dream, resume after a kill, and one
test per user error (clear message, exit code 2, no traceback, the run directory untouched)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from wmrl.cli import main

ROOT = Path(__file__).resolve().parents[1]


def wmrl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wmrl", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def snapshot(path: Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    proc = wmrl("train", "--preset", "debug", "--run-dir", str(run), "--seed", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["step"] == 300
    return run


def test_train_writes_a_complete_run_directory(trained_run):
    for name in ("config.yaml", "metrics.jsonl", "learning_curve.png", "checkpoints/latest.pt"):
        assert (trained_run / name).is_file(), name
    assert any((trained_run / "tb").iterdir())
    assert any((trained_run / "replay").glob("chunk_*.npz"))
    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert all("step" in r for r in rows)
    evals = [r for r in rows if "eval/greedy/return_mean" in r]
    assert evals and {"eval/greedy/return_std", "eval/episodes"} <= set(evals[-1])
    assert rows[0]["step"] == 0 and rows[0]["model/params_world_model"] > 0
    assert [r["step"] for r in evals] == [150, 300]
    assert 0 < evals[0]["time/train_minutes"] < evals[1]["time/train_minutes"]


def test_stop_at_return_ends_the_run_and_a_resume_leaves_it_stopped(tmp_path):
    run = tmp_path / "run"
    proc = wmrl("train", "--preset", "debug", "--run-dir", str(run), "--no-progress", "--set", "train.stop_at_return=0")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["step"] == 150  # CartPole returns are >= 0
    proc = wmrl("train", "--run-dir", str(run), "--resume", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["step"] == 150


def test_vmc_with_a_cmaes_controller_trains_in_the_dream_and_resumes(tmp_path):
    run = tmp_path / "run"
    common = ["--no-progress", "--set", "world_model=mdnrnn", "--set", "behavior=cmaes"]
    proc = wmrl("train", "--preset", "debug", "--run-dir", str(run), "--steps", "200", *common)
    assert proc.returncode == 0, proc.stderr
    proc = wmrl("train", "--run-dir", str(run), "--resume", "--steps", "300", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    generations = [r["cmaes/generation"] for r in rows if "cmaes/generation" in r]
    assert generations and generations == sorted(generations) and generations[-1] > generations[0]
    assert max(r["step"] for r in rows) == 300


def test_eval_prints_one_json_object(trained_run):
    proc = wmrl("eval", str(trained_run), "--episodes", "3")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["returns"]) == 3 and out["greedy"] is True
    assert out["return_mean"] == pytest.approx(sum(out["returns"]) / 3)
    sampled = json.loads(wmrl("eval", str(trained_run), "--episodes", "2", "--sample").stdout)
    assert sampled["greedy"] is False


def test_eval_is_reproducible_even_when_sampling(trained_run):
    """Environments and the model's random draws (latents, sampled actions) are seeded, so the same
    checkpoint gives the same figures."""
    runs = [json.loads(wmrl("eval", str(trained_run), "--episodes", "4", "--sample").stdout)["returns"]
            for _ in range(2)]
    assert runs[0] == runs[1]


def test_eval_can_plan_on_any_runs_world_model_without_touching_the_run(trained_run):
    before = snapshot(trained_run)
    proc = wmrl("eval", str(trained_run), "--episodes", "2", "--plan", "--set", "cem.candidates=16",
                "--set", "cem.elites=4", "--set", "cem.iterations=2")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["behavior"] == "cem" and len(out["returns"]) == 2
    assert snapshot(trained_run) == before


def test_plan_with_terminal_value_adds_the_runs_own_critic(trained_run):
    from wmrl.run.inference import load_run

    _, trained, _ = load_run(trained_run, "cpu", with_replay=False)
    _, agent, _ = load_run(trained_run, "cpu", with_replay=False, plan=["cem.terminal_value=true"])
    feat = torch.randn(6, agent.wm.feat_dim)
    critic, gamma = trained.behavior.state_value()
    assert torch.equal(agent.behavior.value(feat), critic(feat)) and agent.behavior.value_gamma == gamma
    assert critic(feat).std() > 0  # a trained critic, not the zero-initialised one


def test_a_planner_trained_alone_has_no_terminal_value(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--run-dir", str(run), "--set", "behavior=cem",
                 "--set", "cem.terminal_value=true"]) == 2
    assert "terminal_value" in capsys.readouterr().err and not run.exists()


@pytest.mark.parametrize("extra", [["--set", "cem.candidates=16"], ["--plan", "--set", "train.steps=5"],
                                   ["--plan", "--set", "cem.elites=999"]])
def test_eval_rejects_settings_it_cannot_apply(trained_run, capsys, extra):
    assert main(["eval", str(trained_run), *extra]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("--plan" in err or "cem." in err)


def test_dream_writes_a_plot_and_errors(trained_run, tmp_path):
    out = tmp_path / "dream.png"
    proc = wmrl("dream", str(trained_run), "--horizon", "6", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert out.stat().st_size > 1000
    assert len(result["mse_per_step"]) == result["horizon"] >= 1
    assert json.loads(out.with_suffix(".json").read_text())["mse_mean"] == pytest.approx(result["mse_mean"])


def test_dream_on_images_writes_a_gif(tmp_path):
    run = tmp_path / "grid"
    assert main(["train", "--preset", "debug", "--env", "tests.fake_envs:WmrlTestGrid-v0", "--steps", "120",
                 "--run-dir", str(run), "--no-progress", "--set", "train.checkpoint_every=120"]) == 0
    assert main(["dream", str(run), "--horizon", "4"]) == 0
    gif = run / "dream.gif"
    assert gif.read_bytes()[:6] in (b"GIF89a", b"GIF87a")


def _checkpoint_step(run: Path) -> int:
    return torch.load(run / "checkpoints" / "latest.pt", weights_only=False)["counters"]["step"]


def test_killed_run_resumes_at_its_checkpoint_with_the_same_replay(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "wmrl", "train", "--preset", "debug", "--steps", "100000", "--run-dir", str(run),
           "--no-progress", "--set", "train.checkpoint_every=100", "--set", "train.eval_every=100000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if (run / "checkpoints" / "latest.pt").exists() and _checkpoint_step(run) >= 200:
                break
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    killed_at = _checkpoint_step(run)
    assert killed_at >= 200 and killed_at % 100 == 0
    assert main(["train", "--run-dir", str(run), "--resume", "--steps", str(killed_at + 100), "--no-progress"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    resumed = [r for r in rows if "resume/replay_size" in r]
    assert resumed == [{"step": killed_at, "resume/replay_size": killed_at, "resume/updates": resumed[0]["resume/updates"]}]
    assert _checkpoint_step(run) == killed_at + 100
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps), "rows written after the checkpoint by the killed run must be dropped"
    # TensorBoard keeps what was logged at the checkpoint step itself, once, and drops what came after.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    logged = [e.step for e in acc.Scalars("wm/loss")]
    want = sorted({r["step"] for r in rows if "wm/loss" in r})
    assert killed_at in want and logged == want


# ------------------------------------------------------------------------------------------- errors
def run_error(args: list[str], capsys) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert "fix:" in err
    return err


def test_unknown_env_id(tmp_path, capsys):
    err = run_error(["train", "--env", "NoSuchEnv-v9", "--run-dir", str(tmp_path / "r")], capsys)
    assert "NoSuchEnv-v9" in err and not (tmp_path / "r").exists()


def test_unknown_preset(tmp_path, capsys):
    err = run_error(["train", "--preset", "nonesuch", "--run-dir", str(tmp_path / "r")], capsys)
    assert "unknown preset 'nonesuch'" in err and "debug" in err


def test_bad_override_key(tmp_path, capsys):
    err = run_error(["train", "--set", "storm.transformr.layers=2", "--run-dir", str(tmp_path / "r")], capsys)
    assert "storm.transformr" in err and "storm.transformer" in err


def test_bad_override_value(tmp_path, capsys):
    err = run_error(["train", "--set", "train.steps=lots", "--run-dir", str(tmp_path / "r")], capsys)
    assert "train.steps='lots'" in err


def test_warmup_shorter_than_the_imagination_start_windows(tmp_path, capsys):
    err = run_error(["train", "--preset", "debug", "--set", "world_model=rssm", "--set", "rssm.burn_in=70",
                     "--run-dir", str(tmp_path / "r")], capsys)
    assert "rssm.burn_in=70" in err and "train.warmup >= 74" in err and not (tmp_path / "r").exists()


def test_unsupported_observation_space(tmp_path, capsys):
    err = run_error(["train", "--env", "tests.fake_envs:WmrlTestDictObs-v0", "--run-dir", str(tmp_path / "r")], capsys)
    assert "observation" in err and not (tmp_path / "r").exists()


def test_unsupported_action_space(tmp_path, capsys):
    err = run_error(["train", "--env", "tests.fake_envs:WmrlBox2D-v0", "--run-dir", str(tmp_path / "r")], capsys)
    assert "1-D Box actions only" in err


def test_missing_run_directory(tmp_path, capsys):
    for cmd in (["eval", str(tmp_path / "nope")], ["dream", str(tmp_path / "nope")],
                ["train", "--run-dir", str(tmp_path / "nope"), "--resume"]):
        assert "does not exist" in run_error(cmd, capsys)


def test_existing_run_directory_is_not_overwritten(trained_run, capsys):
    before = snapshot(trained_run)
    err = run_error(["train", "--preset", "debug", "--run-dir", str(trained_run)], capsys)
    assert "already holds a run" in err and "--resume" in err
    assert snapshot(trained_run) == before


def test_corrupt_checkpoint(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    ckpt = run / "checkpoints" / "latest.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    before = snapshot(run)
    for cmd in (["eval", str(run)], ["train", "--run-dir", str(run), "--resume", "--steps", "400"]):
        assert "corrupt" in run_error(cmd, capsys)
        assert snapshot(run) == before


def test_checkpoint_that_does_not_fit_the_config(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    ckpt = run / "checkpoints" / "latest.pt"
    payload = torch.load(ckpt, weights_only=False)
    payload["agent"]["wm"].pop(next(iter(payload["agent"]["wm"])))
    torch.save(payload, ckpt)
    before = snapshot(run)
    for cmd in (["eval", str(run)], ["train", "--run-dir", str(run), "--resume", "--steps", "400"]):
        assert "do not fit" in run_error(cmd, capsys)
        assert snapshot(run) == before


def test_help_documents_the_interface():
    proc = wmrl("train", "--help")
    for flag in ("--preset", "--env", "--steps", "--seed", "--run-dir", "--device", "--set", "--resume"):
        assert flag in proc.stdout
    for field in ("ret =", "wm =", "imag_ret =", "eval ="):  # the progress bar's fields are explained
        assert field in " ".join(proc.stdout.split())


def test_config_lists_every_key_with_its_type_and_meaning(capsys):
    assert main(["config", "--json", "--set", "storm.optim.lr=3e-4"]) == 0
    rows = json.loads(capsys.readouterr().out)
    keys = {r["key"]: r for r in rows}
    assert keys["storm.optim.lr"]["value"] == 0.0003  # a YAML 1.2 float, which YAML 1.1 reads as a string
    assert keys["train.eval_policy"]["choices"] == ["greedy", "sample", "both"]
    assert "threads" in keys and "precision" in keys and len(rows) > 120
    assert all(r["doc"] for r in rows), [r["key"] for r in rows if not r["doc"]]
    assert main(["config"]) == 0
    assert "storm.history = 16" in capsys.readouterr().out


def test_run_files_can_be_read_by_others(trained_run):
    # mkstemp makes files 0600; run files get what open() would give them: 0666 less the umask.
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.yaml", "metrics.jsonl", "checkpoints/latest.pt"):
        mode = (trained_run / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~umask, f"{name} has mode {oct(mode)}"
