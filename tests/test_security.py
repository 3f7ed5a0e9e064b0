"""Nothing runs code from a run directory: a planted checkpoint pickle and a planted env module in a run
directory are refused with a message, run nothing, and leave the directory as it was."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.test_cli import ROOT, run_error, snapshot, trained_run  # noqa: F401  (fixture)


class _Planted:
    """Unpickling this calls Path.touch on the marker: the stand-in for any code a pickle can run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("where", ["agent", "rng"])
def test_a_planted_checkpoint_runs_nothing(trained_run, tmp_path, capsys, where):  # noqa: F811
    run, marker = tmp_path / "run", tmp_path / "pwned"
    shutil.copytree(trained_run, run)
    ckpt = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    ckpt[where] = _Planted(marker)
    torch.save(ckpt, run / "checkpoints" / "latest.pt")
    before = snapshot(run)
    for cmd in (["eval", str(run)], ["dream", str(run)], ["train", "--run-dir", str(run), "--resume", "--steps", "400"]):
        err = run_error(cmd, capsys)
        assert "does not unpickle" in err, err
        assert not marker.exists()
        assert snapshot(run) == before


def test_a_checkpoint_of_the_pickling_format_is_refused(trained_run, tmp_path, capsys):  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    ckpt = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    ckpt["format"] = 5
    torch.save(ckpt, run / "checkpoints" / "latest.pt")
    assert "format 6" in run_error(["eval", str(run)], capsys)


def test_a_module_planted_in_a_run_directory_is_not_imported(trained_run, tmp_path):  # noqa: F811
    run, marker = tmp_path / "run", tmp_path / "pwned"
    shutil.copytree(trained_run, run)
    (run / "payload.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["env"]["id"] = "payload:Planted-v0"
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    before = snapshot(run)
    # `python -m` puts the working directory first on sys.path: run from inside the run directory.
    proc = subprocess.run([sys.executable, "-m", "wmrl", "eval", "."], cwd=run, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert "does not import code from run directories" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
    assert snapshot(run) == before


def test_an_env_module_outside_run_directories_is_imported_and_named(tmp_path, capsys):
    from wmrl.envs.factory import EnvConfig, make_env

    (tmp_path / "wmrl_user_env_mod.py").write_text(
        "import gymnasium as gym\n"
        "gym.register(id='WmrlUserEnvMod-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        make_env(EnvConfig(id="wmrl_user_env_mod:WmrlUserEnvMod-v0"), 0).close()
    finally:
        sys.path.remove(str(tmp_path))
    assert f"importing wmrl_user_env_mod from {tmp_path / 'wmrl_user_env_mod.py'}" in capsys.readouterr().err
