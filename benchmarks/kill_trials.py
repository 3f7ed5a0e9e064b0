"""Kill -9 trials: a debug run is killed with SIGKILL at a random moment, resumed (again and again if
the resume is killed too) to the end, and then checked for what a crash must never cost:

- metrics.jsonl: every training episode row once, in step order; every evaluation and log row at its
  step exactly once; nothing after the end;
- TensorBoard: for every scalar tag, each step at most once, and every step metrics.jsonl has for that
  tag (the scalars logged at a checkpoint step included: a resume purges only what came after it);
- replay: as many steps as the run took.
A run killed before it wrote its config.yaml is started again, as a user would; one killed before its
first checkpoint starts again from step 0 on --resume.

    python benchmarks/kill_trials.py --trials 20 [--kills 2] [--name kill_trials]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from common import save

ROOT = Path(__file__).resolve().parents[1]
STEPS, EVERY = 600, 100
ARGS = ["--preset", "debug", "--steps", str(STEPS), "--no-progress", "--set", "threads=1",
        "--set", f"train.checkpoint_every={EVERY}", "--set", "train.eval_every=150", "--set", "train.log_every=50"]


def wmrl(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "wmrl", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def tensorboard_steps(tb: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def check(run: Path) -> list[str]:
    """What is missing, duplicated or out of order in a finished run (empty: nothing)."""
    problems = []
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    by_tag: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        for k in r:
            if k != "step":
                by_tag[k].append(r["step"])
    episodes = by_tag["train/episodes"]
    if episodes != sorted(set(episodes)):
        problems.append("training episode rows duplicated or out of order")
    for tag, want in (("eval/greedy/return_mean", list(range(150, STEPS + 1, 150))),
                      ("perf/steps_per_second", list(range(50, STEPS + 1, 50)))):
        if by_tag[tag] != want:
            problems.append(f"{tag} at {by_tag[tag]}, expected {want}")
    if max(r["step"] for r in rows) != STEPS:
        problems.append("rows beyond the end or missing the end")
    tb = tensorboard_steps(run / "tb")
    for tag, steps in by_tag.items():
        if tag.startswith("resume/"):
            continue
        got = tb.get(tag, [])
        if len(got) != len(set(got)):
            problems.append(f"TensorBoard {tag}: a step twice")
        if sorted(set(got)) != sorted(set(steps)):
            problems.append(f"TensorBoard {tag}: steps {sorted(set(steps) - set(got))[:5]} missing, "
                            f"{sorted(set(got) - set(steps))[:5]} extra")
    sys.path.insert(0, str(ROOT))
    from wmrl.run.inference import load_run

    _, _, replay = load_run(run, "cpu")
    if len(replay) != STEPS:
        problems.append(f"replay holds {len(replay)} steps, expected {STEPS}")
    return problems


def trial(i: int, rng: np.random.Generator, base: Path, expected_seconds: float, kills: int) -> dict:
    run = base / f"trial{i}"
    moments, resumes = [], 0
    proc = wmrl("train", "--run-dir", str(run), "--seed", str(i), *ARGS)
    for _ in range(kills):
        moment = float(rng.uniform(0.5, expected_seconds))
        try:
            proc.wait(timeout=moment)
            break  # it finished before the kill
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            moments.append(round(moment, 2))
            resumes += 1
            # What a user does: resume a run that has its config.yaml, start again one killed before it.
            proc = (wmrl("train", "--run-dir", str(run), "--resume", "--steps", str(STEPS), "--no-progress")
                    if (run / "config.yaml").exists() else wmrl("train", "--run-dir", str(run), "--seed", str(i), *ARGS))
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        return {"trial": i, "killed_at_s": moments, "resumes": resumes, "ok": False,
                "problems": [f"exit {proc.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}"]}
    problems = check(run)
    return {"trial": i, "killed_at_s": moments, "resumes": resumes, "ok": not problems, "problems": problems}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--kills", type=int, default=2, help="kills per trial (the resumes are killed too)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        start = time.time()
        proc = wmrl("train", "--run-dir", str(base / "timing"), *ARGS)
        proc.communicate(timeout=600)
        expected = time.time() - start
        results = [trial(i, rng, base, expected, args.kills) for i in range(args.trials)]
    ok = sum(r["ok"] for r in results)
    kills = sum(len(r["killed_at_s"]) for r in results)
    lines = ["| trial | killed at (s) | resumes | complete | problems |", "|---:|---|---:|---|---|"]
    lines += [f"| {r['trial']} | {r['killed_at_s']} | {r['resumes']} | {'yes' if r['ok'] else 'NO'} | "
              f"{'; '.join(r['problems']) or '-'} |" for r in results]
    table = (f"{args.trials} trials of a {STEPS}-step debug run (checkpoint every {EVERY} steps, an uninterrupted "
             f"run took {expected:.1f} s), up to {args.kills} SIGKILLs each at uniform random moments, resumed to "
             f"the end: **{ok} of {args.trials} complete** ({kills} kills), metrics, TensorBoard and replay "
             "checked.\n\n" + "\n".join(lines))
    if args.name:
        save(args.name, {"trials": results, "complete": ok, "kills": kills, "uninterrupted_seconds": expected}, table)
    print(table)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
