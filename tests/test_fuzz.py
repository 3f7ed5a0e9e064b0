"""Bad input of every kind, through the command line: each one ends with exit code 2 and a one-line
message naming the problem and the fix, never a traceback, a hang or an exit 0, and leaves every existing
run directory byte for byte as it was.

Two families: every config key given a value of the wrong kind (generated from the config's own
description, so a new key is fuzzed too), and hand-written cases for train, resume, eval, dream, config,
bench, env ids and run directories.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

import tests.fake_envs  # noqa: F401  (registers the NaN envs)
from tests.test_cli import snapshot, trained_run  # noqa: F401  (fixture)
from wmrl import config as config_mod
from wmrl.cli import main
from wmrl.config_docs import describe


def _config_cases() -> list[str]:
    cases = []
    for row in describe(config_mod.build(["cartpole"], {}, [])):
        key, kind = row["key"], row["type"]
        if row["choices"]:
            cases.append(f"{key}=bogus_choice")
        if kind.startswith("float"):
            cases += [f"{key}=.nan", f"{key}=.inf", f"{key}=abc"]
        elif kind.startswith("int"):
            cases += [f"{key}=abc", f"{key}=1.5"]
        elif kind == "bool":
            cases.append(f"{key}=maybe")
    return cases


CONFIG_CASES = _config_cases()


def refused(args: list[str], capsys) -> str:
    """Run the CLI in-process; assert exit code 2 with a message and a fix (argparse: its usage line)."""
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, f"{args} exited {code}: {err[-500:]}"
    assert "Traceback" not in err
    assert "fix:" in err or "usage:" in err, err
    return err


@pytest.mark.parametrize("override", CONFIG_CASES)
def test_every_key_refuses_a_value_of_the_wrong_kind(override, capsys):
    err = refused(["config", "--set", override], capsys)
    assert override.split("=")[0] in err


def test_the_generated_cases_cover_the_config():
    assert len(CONFIG_CASES) >= 200
    assert len({c.split("=")[0] for c in CONFIG_CASES}) >= 120


TRAIN_CASES = {
    "empty env id": ["--env", ""],
    "unknown env id": ["--env", "NoSuchEnv-v0"],
    "env id with spaces": ["--env", " CartPole-v1"],
    "unknown module": ["--env", "no_such_module_xyz:Env-v0"],
    "module without the id": ["--env", "tests.fake_envs:NoSuchEnv-v0"],
    "unknown MinAtar game": ["--env", "MinAtar/NoGame-v1"],
    "unknown ALE game": ["--env", "ALE/NoSuchGame-v5"],
    "unknown wmrl env": ["--env", "wmrl/Nope-v0"],
    "2-D Box actions": ["--env", "tests.fake_envs:WmrlBox2D-v0"],
    "unbounded Box actions": ["--env", "tests.fake_envs:WmrlBoxUnbounded-v0"],
    "dynamics gradient for discrete actions": ["--set", "actor_critic.gradient=dynamics"],
    "dict observations": ["--env", "tests.fake_envs:WmrlTestDictObs-v0"],
    "negative seed": ["--seed", "-1"],
    "huge seed": ["--seed", str(2**70)],
    "seed not a number": ["--seed", "one"],
    "zero steps": ["--steps", "0"],
    "negative steps": ["--steps", "-5"],
    "steps not a number": ["--steps", "1e4"],
    "unknown preset": ["--preset", "nosuch"],
    "unknown device": ["--device", "tpu"],
    "unknown key": ["--set", "nokey=1"],
    "unknown nested key": ["--set", "storm.nokey=1"],
    "a section as a value": ["--set", "storm=1"],
    "override without =": ["--set", "train.steps"],
    "override without key": ["--set", "=3"],
    "replay smaller than a sequence": ["--set", "replay.capacity=5"],
    "negative warmup": ["--set", "train.warmup=-1"],
    "zero threads": ["--set", "threads=0"],
    "infinite train ratio": ["--set", "train.train_ratio=.inf"],
    "nan train ratio": ["--set", "train.train_ratio=.nan"],
    "zero train ratio": ["--set", "train.train_ratio=0"],
    "nan learning rate": ["--set", "storm.optim.lr=.nan"],
    "unknown eval policy": ["--set", "train.eval_policy=mean"],
    "unknown world model": ["--set", "world_model=iris"],
    "unknown behaviour": ["--set", "behavior=ppo"],
    "STORM history beyond its context": ["--set", "storm.history=100"],
    "STORM burn-in": ["--set", "storm.burn_in=4"],
    "odd head split": ["--set", "storm.transformer.width=30"],
    "negative object weight": ["--set", "storm.encoder.object_weight=-1"],
    "negative stages": ["--set", "storm.encoder.stages=-2"],
    "sticky probability 1": ["--set", "env.sticky_actions=1.0"],
    "negative no-ops": ["--set", "env.noop_max=-3"],
    "negative episode cap": ["--set", "env.max_episode_steps=-1"],
    "unknown bootstrap": ["--set", "actor_critic.bootstrap=medium"],
    "planner value without a critic": ["--set", "behavior=cem", "--set", "cem.terminal_value=true"],
    "cmaes population of one": ["--set", "behavior=cmaes", "--set", "cmaes.population=1"],
    "warm-up shorter than the start window": ["--set", "train.warmup=2"],
    "a list for a number": ["--set", "train.steps=[1, 2]"],
    "a mapping for a number": ["--set", "train.steps={a: 1}"],
    "null for a number": ["--set", "train.steps=null"],
}


@pytest.mark.parametrize("args", list(TRAIN_CASES.values()), ids=list(TRAIN_CASES))
def test_train_refuses_bad_input_before_writing_anything(args, tmp_path, capsys):
    run = tmp_path / "run"
    refused(["train", "--preset", "debug", "--run-dir", str(run), "--no-progress", *args], capsys)
    assert not run.exists()


@pytest.mark.parametrize("env_id, what", [("tests.fake_envs:WmrlNanObs-v0", "observation"),
                                          ("tests.fake_envs:WmrlNanReward-v0", "reward")])
def test_an_env_returning_nan_stops_the_run_with_a_message(env_id, what, tmp_path, capsys):
    err = refused(["train", "--preset", "debug", "--env", env_id, "--run-dir", str(tmp_path / "run"),
                   "--no-progress"], capsys)
    assert f"non-finite {what}" in err


def _copy(trained_run: Path, tmp_path: Path) -> Path:  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    return run


def _edit_config(run: Path, edit) -> None:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    edit(cfg)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))


def _edit_checkpoint(run: Path, edit) -> None:
    path = run / "checkpoints" / "latest.pt"
    ckpt = torch.load(path, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, path)


RUN_DIR_DAMAGE = {
    "config.yaml a list": lambda run: (run / "config.yaml").write_text("- 1\n- 2\n"),
    "config.yaml a scalar": lambda run: (run / "config.yaml").write_text("42\n"),
    "config.yaml binary": lambda run: (run / "config.yaml").write_bytes(b"\x00\xff\xfe\x89PNG"),
    "config.yaml empty": lambda run: (run / "config.yaml").write_text(""),
    "config.yaml bad YAML": lambda run: (run / "config.yaml").write_text("train: {steps: [\n"),
    "config.yaml unknown key": lambda run: _edit_config(run, lambda c: c.update(nokey=1)),
    "config.yaml bad value": lambda run: _edit_config(run, lambda c: c["train"].update(train_ratio="fast")),
    "config.yaml missing": lambda run: (run / "config.yaml").unlink(),
    "checkpoint truncated": lambda run: (run / "checkpoints" / "latest.pt").write_bytes(
        (run / "checkpoints" / "latest.pt").read_bytes()[:500]),
    "checkpoint empty": lambda run: (run / "checkpoints" / "latest.pt").write_bytes(b""),
    "checkpoint agent not a dict": lambda run: _edit_checkpoint(run, lambda c: c.update(agent=[1, 2])),
    "checkpoint counters not a dict": lambda run: _edit_checkpoint(run, lambda c: c.update(counters=3)),
    "checkpoint without agent": lambda run: _edit_checkpoint(run, lambda c: c.pop("agent")),
    "checkpoint a list": lambda run: torch.save([1, 2], run / "checkpoints" / "latest.pt"),
    "checkpoint of an older format": lambda run: _edit_checkpoint(run, lambda c: c.update(format=5)),
    "checkpoint weights of another shape": lambda run: _edit_config(
        run, lambda c: c["storm"]["transformer"].update(width=64, ffn=128)),
    "a larger model in config.yaml": lambda run: _edit_config(run, lambda c: c["storm"].update(stoch=8)),
}


@pytest.mark.parametrize("damage", list(RUN_DIR_DAMAGE.values()), ids=list(RUN_DIR_DAMAGE))
@pytest.mark.parametrize("command", ["eval", "dream", "resume"])
def test_a_damaged_run_directory_is_refused_and_left_as_it_is(trained_run, tmp_path, capsys, damage, command):  # noqa: F811
    run = _copy(trained_run, tmp_path)
    damage(run)
    before = snapshot(run)
    args = {"eval": ["eval", str(run)], "dream": ["dream", str(run)],
            "resume": ["train", "--run-dir", str(run), "--resume", "--steps", "400", "--no-progress"]}[command]
    refused(args, capsys)
    assert snapshot(run) == before


@pytest.mark.parametrize("command", ["eval", "dream"])
def test_a_run_without_a_checkpoint_cannot_be_evaluated_or_dreamed(trained_run, tmp_path, capsys, command):  # noqa: F811
    run = _copy(trained_run, tmp_path)
    (run / "checkpoints" / "latest.pt").unlink()
    before = snapshot(run)
    refused([command, str(run)], capsys)
    assert snapshot(run) == before


def test_a_run_killed_before_its_first_checkpoint_starts_again_on_resume(trained_run, tmp_path, capsys):  # noqa: F811
    run = _copy(trained_run, tmp_path)
    (run / "checkpoints" / "latest.pt").unlink()
    assert main(["train", "--run-dir", str(run), "--resume", "--no-progress"]) == 0
    assert "starting it again from step 0" in capsys.readouterr().err
    steps = [r["step"] for r in map(yaml.safe_load, (run / "metrics.jsonl").read_text().splitlines())
             if "train/return" in r]
    assert steps == sorted(set(steps)) and steps[-1] <= 300  # one run's rows, none of the discarded attempt twice


RESUME_CASES = {
    "steps below the checkpoint": ["--steps", "100"],
    "a preset on resume": ["--preset", "debug"],
    "an override on resume": ["--set", "train.steps=500"],
    "a seed on resume": ["--seed", "3"],
    "an env on resume": ["--env", "CartPole-v1"],
}


@pytest.mark.parametrize("args", list(RESUME_CASES.values()), ids=list(RESUME_CASES))
def test_a_resume_that_cannot_continue_the_run_changes_nothing(trained_run, tmp_path, capsys, args):  # noqa: F811
    run = _copy(trained_run, tmp_path)
    before = snapshot(run)
    refused(["train", "--run-dir", str(run), "--resume", "--no-progress", *args], capsys)
    assert snapshot(run) == before


def test_a_same_shape_env_edited_into_config_yaml_is_refused(trained_run, tmp_path, capsys):  # noqa: F811
    run = _copy(trained_run, tmp_path)
    _edit_config(run, lambda c: c["env"].update(id="CartPole-v0"))
    before = snapshot(run)
    err = refused(["train", "--run-dir", str(run), "--resume", "--steps", "400", "--no-progress"], capsys)
    assert "env.id" in err
    assert snapshot(run) == before


def test_resume_without_a_run_dir(capsys):
    refused(["train", "--resume"], capsys)


RUN_DIR_CASES = {
    "an existing run without --resume": lambda tmp, run: run,
    "a folder of other files": lambda tmp, run: _folder_with(tmp / "mine", "metrics.jsonl"),
    "a run that lost its config.yaml": lambda tmp, run: _without_config(run),
    "a path under a file": lambda tmp, run: _file(tmp / "afile") / "run",
    "a file": lambda tmp, run: _file(tmp / "afile2"),
}


def _folder_with(path: Path, name: str) -> Path:
    path.mkdir()
    (path / name).write_text('{"step": 1, "mine": true}\n')
    return path


def _without_config(run: Path) -> Path:
    (run / "config.yaml").unlink()
    return run


def _file(path: Path) -> Path:
    path.write_text("not a directory")
    return path


@pytest.mark.parametrize("where", list(RUN_DIR_CASES.values()), ids=list(RUN_DIR_CASES))
def test_train_never_writes_into_a_directory_that_is_not_a_new_run(trained_run, tmp_path, capsys, where):  # noqa: F811
    run = _copy(trained_run, tmp_path)
    target = where(tmp_path, run)
    before = {p: snapshot(p) if p.is_dir() else p.read_bytes() for p in (run, tmp_path) if p.exists()}
    refused(["train", "--preset", "debug", "--run-dir", str(target), "--no-progress"], capsys)
    assert {p: snapshot(p) if p.is_dir() else p.read_bytes() for p in before} == before


EVAL_DREAM_CASES = {
    "eval zero episodes": ["eval", "{run}", "--episodes", "0"],
    "eval negative episodes": ["eval", "{run}", "--episodes", "-2"],
    "eval planner settings without --plan": ["eval", "{run}", "--set", "cem.candidates=10"],
    "eval a non-cem setting with --plan": ["eval", "{run}", "--plan", "--set", "train.steps=10"],
    "eval a bad planner value": ["eval", "{run}", "--plan", "--set", "cem.candidates=0"],
    "eval a missing directory": ["eval", "{tmp}/nothing"],
    "eval a directory that is no run": ["eval", "{tmp}"],
    "dream zero horizon": ["dream", "{run}", "--horizon", "0"],
    "dream a horizon longer than the replay allows": ["dream", "{run}", "--horizon", "100000"],
    "dream a GIF of a vector env": ["dream", "{run}", "--out", "{tmp}/x.gif"],
    "dream an unknown suffix": ["dream", "{run}", "--out", "{tmp}/x.txt"],
    "dream out under a file": ["dream", "{run}", "--out", "{tmp}/afile/x.png"],
    "dream out a directory": ["dream", "{run}", "--out", "{tmp}/adir.png"],
    "dream a missing directory": ["dream", "{tmp}/nothing"],
    "bench an unknown suite": ["bench", "no-such-suite"],
    "bench zero threads": ["bench", "cartpole-pairs", "--threads", "0", "--dry-run"],
    "bench a suite file that is no YAML mapping": ["bench", "{tmp}/afile"],
    "config an unknown preset": ["config", "--preset", "nosuch"],
    "config a bad env id": ["config", "--env", ""],
}


@pytest.mark.parametrize("args", list(EVAL_DREAM_CASES.values()), ids=list(EVAL_DREAM_CASES))
def test_eval_dream_bench_and_config_refuse_bad_input(trained_run, tmp_path, capsys, args):  # noqa: F811
    run = _copy(trained_run, tmp_path)
    _file(tmp_path / "afile")
    (tmp_path / "adir.png").mkdir()
    before = snapshot(run)
    refused([a.format(run=run, tmp=tmp_path) for a in args], capsys)
    assert snapshot(run) == before


def test_the_fuzz_suite_is_large_enough():
    hand = len(TRAIN_CASES) + 3 * len(RUN_DIR_DAMAGE) + len(RESUME_CASES) + len(RUN_DIR_CASES) + len(EVAL_DREAM_CASES) + 6
    assert hand >= 120
