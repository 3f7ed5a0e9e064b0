"""`wmrl bench`: suites, the Ray runner killed halfway and rerun (every run exactly once, the same
per-run results as an uninterrupted suite), the rliable report, the dry run and the missing-extra error."""

from __future__ import annotations

import fcntl
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

from wmrl.bench import runner
from wmrl import config as config_mod
from wmrl.bench.suite import ADDED_LATER, config_hash, load_suite
from wmrl.cli import main
from wmrl.errors import WmrlError

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("ray")
pytest.importorskip("rliable")

# 16-step episodes and checkpoints every 64 steps: every checkpoint is at an episode start, where a
# resumed run continues exactly as an uninterrupted one (tests/test_training.py).
SUITE = """\
name: debug2x2
protocol: "test: WmrlSignBandit-v0, 16-step episodes"
presets: [debug]
overrides: [train.checkpoint_every=64, train.eval_every=64, train.log_every=32, train.warmup=64]
eval: {episodes: 4, policy: both}
compare: [[storm+actor_critic, rssm+actor_critic]]
published: {"tests.fake_envs:WmrlSignBandit-v0": {a paper: 12.5}}
groups:
  - name: pairs
    envs: ["tests.fake_envs:WmrlSignBandit-v0"]
    world_models: [storm, rssm]
    behaviors: [actor_critic]
    seeds: [1, 2]
    steps: 320
"""


def bench(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "wmrl", "bench", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def results(out: Path) -> dict[str, Path]:
    return {p.parent.name: p for p in (out / "runs").glob("*/result.json")}


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def wait_for_orphans(out: Path, timeout: float = 60) -> None:
    """Until no process holds a run's lock: a Ray worker outliving the killed bench still holds one."""
    deadline = time.time() + timeout
    for lock in (out / "runs").glob(".*.lock"):
        with open(lock, "a") as f:
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    assert time.time() < deadline, f"a worker of the killed bench still holds {lock.name}"
                    time.sleep(0.1)
            fcntl.flock(f, fcntl.LOCK_UN)


def in_progress(out: Path) -> list[Path]:
    return [d for d in (out / "runs").glob("*") if d.is_dir() and (d / "checkpoints" / "latest.pt").exists()
            and not (d / "result.json").exists()]


def early(run_dir: Path, before: int = 128) -> bool:
    """The run's checkpoint is at most `before` of its 320 steps: far enough from the end that it cannot
    finish between the kill and its worker noticing the bench is gone."""
    try:
        ckpt = torch.load(run_dir / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    except (FileNotFoundError, RuntimeError, EOFError):  # replaced or gone between the glob and the load
        return False
    return ckpt["counters"]["step"] <= before


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "debug2x2.yaml"
    path.write_text(SUITE)
    return path


@pytest.fixture(scope="module")
def reference(suite_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    proc = bench(str(suite_file), "--out", str(out))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return out


def test_a_killed_suite_reruns_every_run_exactly_once_with_the_same_results(suite_file, reference, tmp_path):
    out = tmp_path / "bench"
    proc = bench(str(suite_file), "--out", str(out), start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not ((out / "runs").is_dir() and results(out)
                                                and any(map(early, in_progress(out)))):
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the bench; its workers follow it (wmrl/bench/runner.py)
        proc.communicate()
    wait_for_orphans(out)
    before = {k: p.read_bytes() for k, p in results(out).items()}
    interrupted = {d.name for d in in_progress(out)}
    assert before and interrupted, "the kill came too early or too late"
    proc = bench(str(suite_file), "--out", str(out))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    after = results(out)
    assert sorted(after) == sorted(results(reference)) and len(after) == 4
    for run, path in after.items():
        if run in before:
            assert path.read_bytes() == before[run]  # finished before the kill: not run again
        assert_as_uninterrupted(path, results(reference)[run], resumed=run in interrupted)


def assert_as_uninterrupted(path: Path, reference: Path, resumed: bool) -> None:
    """The run's result is the reference's, and a resumed one continued from its checkpoint (a second
    session from that step), not from the start, and logged no training step twice."""
    got, want = json.loads(path.read_text()), json.loads(reference.read_text())
    if resumed:
        assert got["resumed_from"] > 0 and [s["from_step"] for s in got["sessions"]] == [0, got["resumed_from"]]
    assert got["final"] == want["final"] and untimed(got["curve"]) == untimed(want["curve"])
    steps = [r["step"] for r in map(json.loads, (path.parent / "metrics.jsonl").read_text().splitlines())
             if "train/return" in r]
    assert steps == sorted(set(steps))


def holders(path: Path) -> list[int]:
    """Pids of the processes that have `path` open (Linux /proc)."""
    pids = []
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if Path(os.readlink(fd)) == path:
                pids.append(int(fd.parts[2]))
        except OSError:  # the process or descriptor went away meanwhile
            pass
    return sorted(set(pids))


def test_a_run_whose_worker_dies_is_resumed_and_the_suite_ends_as_if_it_never_had(suite_file, reference, tmp_path):
    out = tmp_path / "bench"
    proc = bench(str(suite_file), "--out", str(out))
    try:
        deadline, killed = time.time() + 300, None
        while time.time() < deadline and killed is None:
            for run in (d for d in in_progress(out) if early(d)):
                for pid in holders(out / "runs" / f".{run.name}.lock"):
                    os.kill(pid, signal.SIGKILL)  # the Ray worker training it, as the kernel's OOM killer would
                    killed = run.name
                break
            time.sleep(0.1)
        assert killed, "no run was caught early in its training"
        _, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    after = results(out)
    assert sorted(after) == sorted(results(reference))
    for run, path in after.items():
        assert_as_uninterrupted(path, results(reference)[run], resumed=run == killed)
    assert f", resumed from step {json.loads(after[killed].read_text())['resumed_from']})" in err


def test_a_worker_ends_when_the_bench_process_is_gone():
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])
    worker = subprocess.Popen([sys.executable, "-c", "import platform, time; from wmrl.bench.runner import "
                               f"_exit_with_bench; _exit_with_bench((platform.node(), {driver.pid})); time.sleep(120)"],
                              cwd=ROOT)
    driver.wait()
    assert worker.wait(timeout=60) == 1


def test_the_report_gives_rliable_intervals_for_both_modes(reference):
    report = json.loads((reference / "report.json").read_text())
    assert report["runs_finished"] == 4 and set(report["modes"]) == {"greedy", "sample"}
    for mode in report["modes"].values():
        assert set(mode["aggregate"]) == {"storm+actor_critic", "rssm+actor_critic"}
        for v in mode["aggregate"].values():
            point, low, high = v["iqm"]
            assert low <= point <= high
        assert mode["improvement"][0]["x"] == "storm+actor_critic" and 0 <= mode["improvement"][0]["p"] <= 1
        for plot in mode["plots"]:
            assert (reference / plot).read_bytes()[:4] == b"\x89PNG"
    md = (reference / "report.md").read_text()
    assert "IQM" in md and "policy `both`" in md and "test: WmrlSignBandit-v0" in md
    assert "| tests.fake_envs:WmrlSignBandit-v0 | a paper | 12.5 |" in md
    from wmrl.bench.report import _run_machine

    name = _run_machine(json.loads(next(iter(results(reference).values())).read_text()))
    sessions = [json.loads(p.read_text())["sessions"] for p in results(reference).values()]
    assert all(len(s) == 1 and s[0]["from_step"] == 0 for s in sessions)  # each run trained in one go
    speeds = [s[0]["fp32_gflops_1thread"] for s in sessions]
    assert all(v > 1 for v in speeds)  # measured: a machine's name alone hides 3x differences in speed
    assert (f"runs trained on: {name} (4 runs; 4 of 4 measured: {min(speeds):.0f}-{max(speeds):.0f} fp32 GFLOP/s "
            "on one thread)" in md)  # wall times compare only on one machine
    assert sorted(float(line.rsplit("|", 2)[1]) for line in md.splitlines() if f"| {name} | " in line) == sorted(
        float(f"{v:.0f}") for v in speeds)


def test_the_same_run_named_twice_is_one_run(suite_file, tmp_path):
    text = SUITE + """\
  - name: again
    envs: ["tests.fake_envs:WmrlSignBandit-v0"]
    world_models: [rssm]
    behaviors: [actor_critic]
    seeds: [2]
    steps: 320
    variants: {default: [rssm.burn_in=4], other: [rssm.burn_in=3]}
"""
    path = tmp_path / "s.yaml"
    path.write_text(text)
    runs = load_suite(str(path)).runs()
    assert len(runs) == 5 and len({r.run_id for r in runs}) == 5  # burn_in=4 is the debug preset's own


def test_dry_run_lists_runs_and_projected_hours(suite_file, capsys):
    assert main(["bench", str(suite_file), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert err.count("seed") == 4 and "CPU hours" in err


def test_dry_run_wall_time_is_the_cpu_hours_shared_by_the_cores(suite_file, monkeypatch):
    from wmrl.bench import cost

    # 1 h per run at threads 2 is 2 CPU hours; 4 runs on 4 cores take 2 h, not the 8 h of cores / threads.
    monkeypatch.setattr(cost, "measure", lambda cfg: {"projected_hours": 1.0, "steps": cfg.train.steps,
                                                      "update_s": 0.1, "act_s": 0.001})
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    lines = []
    assert runner.dry_run(load_suite(str(suite_file)), threads=2, log=lines.append)["cpu_hours"] == 8
    assert "8.0 CPU hours at threads=2" in lines[-1] and "about 2.0 h of wall time" in lines[-1]


def test_bench_without_the_extra_names_the_install_command(monkeypatch):
    import builtins

    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "ray" else real(name, *a, **k))
    with pytest.raises(WmrlError) as err:
        runner.require("ray")
    assert "pip install -e '.[bench]'" in err.value.fix


def test_a_suite_with_a_bad_run_is_refused_before_anything_runs(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(SUITE.replace("seeds: [1, 2]", "seeds: [1, 2]\n    variants: {x: [storm.transformr.layers=2]}"))
    assert main(["bench", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "storm.transformr" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_published_scores_for_an_env_the_suite_does_not_run_are_refused(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(SUITE.replace('{"tests.fake_envs:WmrlSignBandit-v0": {a paper: 12.5}}', '{CartPole-v1: {a paper: 500}}'))
    assert main(["bench", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "published entry CartPole-v1" in err and "WmrlSignBandit" in err and not (tmp_path / "out").exists()
    path.write_text(SUITE.replace('{"tests.fake_envs:WmrlSignBandit-v0": {a paper: 12.5}}', ''))
    assert main(["bench", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "is not a mapping" in capsys.readouterr().err


def test_a_setting_added_later_keeps_the_ids_of_runs_made_before_it_at_its_old_value():
    cfg = config_mod.build(["cartpole"], {"seed": 1}, [])
    data = config_mod.to_dict(cfg)
    data.pop("threads"), data.pop("device")
    for section, key in ADDED_LATER:
        del data[section][key]  # the config as runs made before these settings existed saved it
    before = hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
    assert config_hash(cfg) == before
    cfg.train.num_envs = 4
    assert config_hash(cfg) != before


def test_the_report_gives_the_median_time_to_a_target_over_the_runs_that_reached_it(tmp_path):
    from wmrl.bench.report import time_to_target

    path = tmp_path / "target.yaml"
    path.write_text(SUITE.replace("overrides: [", "overrides: [train.stop_at_return=12, ").replace(
        "world_models: [storm, rssm]", "world_models: [storm]").replace("seeds: [1, 2]", "seeds: [1, 2, 3]").replace(
        "compare: [[storm+actor_critic, rssm+actor_critic]]\n", ""))
    suite = load_suite(str(path))
    runs = suite.runs()
    results = [{"run_id": s.run_id, "label": s.label, "env": s.env, "stopped_at_target": s.seed != 2,
                "train_minutes": float(s.seed), "steps_trained": 100 * s.seed} for s in runs]
    (row,) = time_to_target(suite, results).values()
    assert row["target"] == 12 and (row["runs"], row["reached"]) == (3, 2)
    assert row["median_minutes"] == 2.0 and row["median_steps"] == 200 and row["steps"] == [100, 300]
    assert time_to_target(suite, []) == {}


def test_the_report_counts_env_steps_as_agent_steps_times_the_action_repeat(tmp_path):
    """PlaNet's, Dreamer's and DreamerV3's env steps are physics steps: with env.action_repeat=2 the curves'
    evaluation steps and the steps to a target are twice the agent steps the runs log."""
    from wmrl.bench.report import _curves, time_to_target

    path = tmp_path / "repeat.yaml"
    path.write_text(SUITE.replace("tests.fake_envs:WmrlSignBandit-v0", "dmc/cartpole-balance").replace(
        "overrides: [", "overrides: [env.action_repeat=2, train.stop_at_return=12, ").replace(
        "world_models: [storm, rssm]", "world_models: [storm]").replace(
        "compare: [[storm+actor_critic, rssm+actor_critic]]\n", ""))
    suite = load_suite(str(path))
    curve = [{"step": 64, "eval/greedy/return_mean": 1.0}, {"step": 128, "eval/greedy/return_mean": 2.0}]
    results = [{"run_id": s.run_id, "label": s.label, "env": s.env, "stopped_at_target": True, "train_minutes": 1.0,
                "steps_trained": 128, "curve": curve} for s in suite.runs()]
    (by_label,) = _curves(suite, results, "greedy").values()
    (c,) = by_label.values()
    assert c["steps"] == [128, 256] and c["iqm"] == [1.0, 2.0]
    (row,) = time_to_target(suite, results).values()
    assert row["median_steps"] == 256


def test_runs_without_a_final_evaluation_in_a_mode_leave_their_configuration_out_of_it(tmp_path):
    """A run finished while the suite asked for greedy evaluation only has no sampled score: after the suite
    asks for both, its configuration is incomplete in the sampled table instead of crashing the report."""
    from wmrl.bench.report import score_matrices

    suite = load_suite(str(_write(tmp_path, SUITE)))
    results = [{"run_id": s.run_id, "label": s.label, "env": s.env, "seed": s.seed,
                "final": {"greedy": {"return_mean": 1.0}, **({"sample": {"return_mean": 2.0}} if s.world_model == "rssm" else {})}}
               for s in suite.runs()]
    greedy, _ = score_matrices(suite, results, "greedy")
    sample, _ = score_matrices(suite, results, "sample")
    assert set(greedy) == {"storm+actor_critic", "rssm+actor_critic"} and set(sample) == {"rssm+actor_critic"}


@pytest.mark.parametrize("name", __import__("wmrl.bench.suite", fromlist=["available_suites"]).available_suites())
def test_every_shipped_suite_loads(name):
    assert load_suite(name).runs()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def test_a_run_measures_its_faithful_horizon_when_the_suite_asks_and_the_report_gives_it(tmp_path):
    from wmrl.bench.execute import execute
    from wmrl.bench.report import faithful_horizons

    path = tmp_path / "horizon.yaml"
    path.write_text(SUITE.replace("eval: {episodes: 4, policy: both}",
                                  "eval: {episodes: 2, policy: greedy, horizon_episodes: 2, horizon_steps: 6}").replace(
        "world_models: [storm, rssm]", "world_models: [rssm]").replace("seeds: [1, 2]", "seeds: [1]").replace(
        "steps: 320", "steps: 128").replace("compare: [[storm+actor_critic, rssm+actor_critic]]\n", ""))
    (spec,) = load_suite(str(path)).runs()
    result = execute(spec, tmp_path / "out")
    h = result["faithful_horizon"]
    assert h["episodes"] == 2 and h["horizon"] == 6 and h["windows"] >= 2 and 1 <= h["faithful_horizon"] <= 6
    (row,) = faithful_horizons([result, {**result, "faithful_horizon": {**h, "faithful_horizon": 2}},
                                {**result, "faithful_horizon": None}]).values()
    assert row["horizons"] == [h["faithful_horizon"], 2] and row["median"] == (h["faithful_horizon"] + 2) / 2
    assert row["horizons_modes"] == [h["faithful_horizon_modes"]] * 2
    old = {k: v for k, v in h.items() if not k.endswith("_modes")}  # a result made before latent modes were measured
    (row,) = faithful_horizons([{**result, "faithful_horizon": old}]).values()
    assert row["median_modes"] is None and row["horizons"] == [h["faithful_horizon"]]
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("horizon_steps: 6", "horizon_steps: 0"))
    with pytest.raises(WmrlError, match="horizon_steps >= 1"):
        load_suite(str(bad))


def test_only_runs_the_named_configuration_and_refuses_an_unknown_one(suite_file, reference, tmp_path, capsys):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(reference / "runs", out / "runs")
    for path in results(out).values():
        path.unlink()  # every run unfinished: --only decides which ones run
    assert main(["bench", str(suite_file), "--out", str(out), "--only", "rssm+actor_critic"]) == 0
    ran = results(out)
    assert len(ran) == 2 and all(json.loads(p.read_text())["label"] == "rssm+actor_critic" for p in ran.values())
    assert json.loads((out / "report.json").read_text())["runs_finished"] == 2
    capsys.readouterr()
    assert main(["bench", str(suite_file), "--out", str(out), "--only", "storm+actor_critc", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "storm+actor_critc" in err and "storm+actor_critic" in err and len(results(out)) == 2


def test_status_says_where_each_run_stands_and_projects_the_rest_at_the_current_pace(suite_file, reference, tmp_path,
                                                                                    capsys):
    import shutil

    from wmrl.bench.status import suite_status

    out = tmp_path / "out"
    shutil.copytree(reference / "runs", out / "runs")
    specs = {(s.world_model, s.seed): s for s in load_suite(str(suite_file)).runs()}
    rdir = {k: out / "runs" / s.run_id for k, s in specs.items()}
    (rdir["rssm", 2] / "result.json").unlink()  # trained to the end, killed in its final evaluation
    (rdir["storm", 1] / "result.json").unlink()  # killed at its checkpoint of step 128, after 64 s
    ckpt_file = rdir["storm", 1] / "checkpoints" / "latest.pt"
    ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=True)
    ckpt["counters"].update(step=128, train_seconds=64.0)
    torch.save(ckpt, ckpt_file)
    rates = {32: 1000.0, 64: 1000.0, 128: 4.0, 160: 1.0}  # warm-up windows, one after it, one past the checkpoint
    (rdir["storm", 1] / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": k, "perf/steps_per_second": v}) + "\n" for k, v in rates.items()))
    shutil.rmtree(rdir["storm", 2])  # not started

    def by_run() -> dict:
        status = suite_status(list(specs.values()), out)
        return status, {(r["label"].split("+")[0], r["seed"]): r for r in status["runs"]}

    with open(out / "runs" / f".{specs['rssm', 1].run_id}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a process at work on it
        status, got = by_run()
    assert {k: (r["state"], r["running"]) for k, r in got.items()} == {
        ("rssm", 1): ("finished", True), ("rssm", 2): ("trained", False), ("storm", 1): ("training", False),
        ("storm", 2): ("new", False)}
    assert got["rssm", 1]["final"] == {m: v["return_mean"] for m, v in json.loads(
        (rdir["rssm", 1] / "result.json").read_text())["final"].items()}
    # The recent pace after the warm-up (1/4 s per step), not the whole run's (64 s / 128 steps) ...
    assert got["storm", 1]["step"] == 128 and got["storm", 1]["remaining_seconds"] == pytest.approx(192 / 4)
    assert got["storm", 2]["remaining_seconds"] == pytest.approx(320 / 4)  # ... which also paces its sibling
    assert got["rssm", 2]["remaining_seconds"] == 0 and status["remaining_hours"] == pytest.approx(128 / 3600)

    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert main(["bench", str(suite_file), "--out", str(out), "--status", "--threads", "2", "--cpus", "2"]) == 0
    printed = capsys.readouterr()
    summary = json.loads(printed.out)
    assert summary["counts"] == {"finished": 1, "trained": 1, "training": 1, "new": 1, "unreadable": 0}
    assert summary["wall_hours"] == pytest.approx(80 / 3600)  # never less than the longest run left
    assert "    128/320" in printed.err and "at 2 runs at a time" in printed.err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # read only: nothing ran or changed

    (rdir["storm", 1] / "metrics.jsonl").unlink()  # no recent pace: its own so far; its new sibling has none
    status, got = by_run()
    assert got["storm", 1]["remaining_seconds"] == pytest.approx(192 * 0.5) and got["storm", 2]["remaining_seconds"] is None
    assert status["remaining_unknown"] == 1
    ckpt_file.write_bytes(b"not a checkpoint")
    status, got = by_run()
    assert got["storm", 1]["state"] == "unreadable" and "corrupt" in got["storm", 1]["error"]
    assert status["remaining_hours"] is None  # nothing left to project from, which the summary says
    assert main(["bench", str(suite_file), "--out", str(out), "--status"]) == 0
    assert "the time left is unknown" in capsys.readouterr().err
    assert main(["bench", str(suite_file), "--out", str(out), "--status", "--dry-run"]) == 2
    assert "exclude each other" in capsys.readouterr().err
