"""sheeprl 0.8.4's DreamerV3 (its XS size) on Gymnasium CartPole-v1, trained and scored like wmrl's CartPole runs.

sheeprl lives in its own venv, runs/peers/sheeprl-venv (made on the first run: torch 2.13.0, the local CPU wheel,
then sheeprl 0.8.4 with torch held at that pin), never in wmrl's. The script trains sheeprl's DreamerV3 with the gym
env config on the 4-float vector observation, on CPU, one env, for `--steps` env steps, with a checkpoint every
`--eval-every` steps and no video, test episode, replay-buffer checkpoint or Hydra log files. sheeprl has no periodic
evaluation (`algo.run_test` plays one sampled episode after training), so once training ends each checkpoint is
played greedily for `--episodes` episodes, in order, by sheeprl_greedy_eval.py inside the venv, until a mean reaches
`--target`. Reported: the env steps and training seconds (from sheeprl's start of training, written as its
config.yaml, to the checkpoint file; startup and evaluation excluded) when the greedy mean first reached the target,
or the best mean and its step; and gradient steps per second, over the update time alone (sheeprl's
Time/sps_train) and over the training wall time. Run it on an idle machine, like update_cost.py. At sheeprl's
replay ratio 1 the 20k steps are ~19k gradient steps on 16 x 64 sequences: hours on 2 cores (`--replay-ratio 0.2`
gives wmrl's CartPole update count).

    python benchmarks/peers/sheeprl_cartpole.py [--steps 20000] [--seed 0] [--threads 2] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for common

from common import ROOT, save  # noqa: E402

SHEEPRL = "0.8.4"
TORCH = "2.13.0"  # the local CPU wheel: a bare `torch` would make pip fetch a CUDA build
VENV = ROOT / "runs" / "peers" / "sheeprl-venv"
WORK = ROOT / "runs" / "peers" / "sheeprl_cartpole"
EVALUATOR = Path(__file__).with_name("sheeprl_greedy_eval.py")


def venv_python() -> Path:
    """The venv's interpreter, after making the venv and installing into it what is missing (idempotent)."""
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if installed_versions(py) != (TORCH, SHEEPRL):
        pip = [str(py), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, f"torch=={TORCH}"], check=True)
        # torch named again so that pip keeps the pin instead of resolving sheeprl's `torch>=2.6` anew
        subprocess.run([*pip, f"torch=={TORCH}", f"sheeprl=={SHEEPRL}"], check=True)
        if installed_versions(py) != (TORCH, SHEEPRL):
            raise SystemExit(f"{VENV}: expected torch {TORCH} and sheeprl {SHEEPRL}, got {installed_versions(py)}")
    return py


def installed_versions(py: Path) -> tuple[str, str] | None:
    """(torch, sheeprl) versions in the venv, torch without its local label (+cpu), or None if either is missing."""
    probe = ("from importlib.metadata import version; "
             "print(version('torch').split('+')[0], version('sheeprl'))")
    proc = subprocess.run([str(py), "-c", probe], capture_output=True, text=True)
    return tuple(proc.stdout.split()) if proc.returncode == 0 else None


def overrides(args: argparse.Namespace, log_root: Path) -> list[str]:
    """The Hydra overrides of the training run (each key is in sheeprl 0.8.4's configs/)."""
    return [
        "exp=dreamer_v3",  # sheeprl's DreamerV3 recipe: batches of 16 sequences of 64 steps, replay ratio 1
        "algo=dreamer_v3_XS",  # sheeprl's smallest size: 256 units, 1 MLP layer, recurrent state 256
        "env=gym", "env.id=CartPole-v1", "env.num_envs=1", "env.sync_env=True", "env.capture_video=False",
        # the 4 floats as `vector`, encoded and decoded (exp=dreamer_v3 decodes `rgb` unless told otherwise)
        "algo.cnn_keys.encoder=[]", "algo.cnn_keys.decoder=[]", "algo.mlp_keys.encoder=[vector]",
        "algo.mlp_keys.decoder=[vector]",
        f"algo.total_steps={args.steps}", f"algo.learning_starts={args.learning_starts}",
        f"algo.replay_ratio={args.replay_ratio}", "algo.run_test=False",
        "fabric.accelerator=cpu", "fabric.devices=1", f"num_threads={args.threads}", f"seed={args.seed}",
        # checkpoints kept for the greedy evaluation, without the replay buffer (in memory, wmrl's capacity)
        f"checkpoint.every={args.eval_every}", "checkpoint.keep_last=null",
        "buffer.size=100000", "buffer.memmap=False", "buffer.checkpoint=False",
        # the tensorboard scalars (Time/sps_train) once per checkpoint instead of every 5000 steps
        f"metric.log_every={args.eval_every}",
        f"log_root={log_root}", "root_dir=dreamer_v3_XS", f"run_name=seed{args.seed}",
        "hydra/job_logging=disabled", "hydra/hydra_logging=disabled", "hydra.output_subdir=null", "hydra.run.dir=.",
        *args.set,
    ]


def train(py: Path, cfg: list[str], threads: int, work: Path, minutes: float | None) -> tuple[Path, float, bool]:
    """Run sheeprl in `work` (emptied first), stopped after `minutes` of wall time if given (its checkpoints
    so far are kept); returns its log directory, the process's wall seconds and whether it was stopped."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    print(f"training sheeprl, its output in {work / 'train.log'}", file=sys.stderr)
    start, stopped = time.monotonic(), False
    with open(work / "train.log", "w") as log:
        proc = subprocess.Popen([str(py), "-m", "sheeprl", *cfg], cwd=work, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=None if minutes is None else 60 * minutes)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            stopped = True
    seconds = time.monotonic() - start
    if proc.returncode != 0 and not stopped:
        raise SystemExit(f"sheeprl failed ({proc.returncode}):\n{(work / 'train.log').read_text()[-4000:]}")
    configs = sorted(work.glob("logs/**/config.yaml"))
    if len(configs) != 1:
        raise SystemExit(f"expected one sheeprl config.yaml under {work}/logs, found {configs}")
    return configs[0].parent, seconds, stopped


def evaluate(py: Path, log_dir: Path, episodes: int, target: float, threads: int) -> dict:
    """sheeprl_greedy_eval.py's report: the greedy means of the checkpoints, up to the first reaching `target`."""
    proc = subprocess.run([str(py), str(EVALUATOR), str(log_dir), "--episodes", str(episodes), "--target", str(target),
                           "--threads", str(threads)], stdout=subprocess.PIPE, text=True)  # its progress on stderr
    if proc.returncode != 0:
        raise SystemExit(f"greedy evaluation of {log_dir} failed ({proc.returncode})")
    return json.loads(proc.stdout)


def summarize(report: dict, log_dir: Path, target: float) -> dict:
    """Steps and training seconds at the first greedy mean >= target (or the best mean), and gradient steps/s."""
    start = (log_dir / "config.yaml").stat().st_mtime  # written by sheeprl as its training loop begins

    def seconds(ckpt: str) -> float:
        return Path(ckpt).stat().st_mtime - start

    curve = [{**{k: v for k, v in c.items() if k != "checkpoint"}, "seconds": seconds(c["checkpoint"])}
             for c in report["checkpoints"]]
    best = max(curve, key=lambda c: c["mean"])
    hit = next((c for c in curve if c["mean"] >= target), None)
    last = report["last"]
    return {"reached": hit is not None, "steps_to_target": hit["step"] if hit else None,
            "seconds_to_target": hit["seconds"] if hit else None, "best_mean": best["mean"], "best_step": best["step"],
            "curve": curve, "steps_played": last["step"], "train_seconds": seconds(last["checkpoint"]),
            "grad_steps": last["grad_steps"], "grad_steps_per_update_s": report["sps_train"],
            "grad_steps_per_wall_s": last["grad_steps"] / seconds(last["checkpoint"])}


def markdown(args: argparse.Namespace, r: dict, stopped: bool) -> str:
    reached = (f"step {r['steps_to_target']}, {r['seconds_to_target'] / 60:.1f} min" if r["reached"] else "never")
    update_sps = f"{r['grad_steps_per_update_s']:.2f}" if r["grad_steps_per_update_s"] else "-"
    played = f"{r['steps_played']} of {args.steps}" + (f" (stopped at {args.minutes:g} min)" if stopped else "")
    return (f"| library | env steps played (budget) | seed | replay ratio | greedy mean >= {args.target:g} "
            f"({args.episodes} ep) | best mean (step) | grad steps | grad steps/s (update, wall) | train min |\n"
            "|---|---|---:|---:|---|---|---:|---|---:|\n"
            f"| sheeprl {SHEEPRL} DreamerV3 XS | {played} | {args.seed} | {args.replay_ratio:g} | {reached} | "
            f"{r['best_mean']:.1f} ({r['best_step']}) | {r['grad_steps']} | {update_sps}, "
            f"{r['grad_steps_per_wall_s']:.2f} | {r['train_seconds'] / 60:.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20000, help="env steps (wmrl's CartPole budget)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--eval-every", type=int, default=2000, help="env steps between checkpoints (wmrl's eval_every)")
    p.add_argument("--episodes", type=int, default=20, help="greedy episodes per checkpoint")
    p.add_argument("--target", type=float, default=475.0)
    p.add_argument("--learning-starts", type=int, default=1024,
                   help="random env steps before training (sheeprl's and wmrl's 1024; training waits for 64 at least)")
    p.add_argument("--replay-ratio", type=float, default=1.0,
                   help="gradient steps per env step (exp=dreamer_v3's value; wmrl's CartPole train_ratio is 0.2)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra sheeprl override, repeatable")
    p.add_argument("--minutes", type=float, default=None,
                   help="stop training after this much wall time (e.g. 3x wmrl's time to the target) and score the "
                        "checkpoints written so far")
    p.add_argument("--name", default="peers_sheeprl_cartpole", help="results name")
    p.add_argument("--setup-only", action="store_true", help="make the venv and stop")
    args = p.parse_args()
    py = venv_python()
    if args.setup_only:
        return
    work = WORK / f"seed{args.seed}"
    cfg = overrides(args, work / "logs")
    log_dir, process_seconds, stopped = train(py, cfg, args.threads, work, args.minutes)
    r = summarize(evaluate(py, log_dir, args.episodes, args.target, args.threads), log_dir, args.target)
    save(args.name, {"library": f"sheeprl {SHEEPRL}", "torch": TORCH, "seed": args.seed, "steps": args.steps,
                     "threads": args.threads, "replay_ratio": args.replay_ratio, "episodes": args.episodes,
                     "target": args.target, "sheeprl_command": f"python -m sheeprl {' '.join(cfg)}", "overrides": cfg,
                     "process_seconds": process_seconds, "minutes_limit": args.minutes, "stopped_at_limit": stopped,
                     **r}, markdown(args, r, stopped))


if __name__ == "__main__":
    main()
