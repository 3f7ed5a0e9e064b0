"""`wmrl bench`: every run of a suite as one Ray task, on a local Ray cluster (one CPU slot per run,
`threads` torch threads each) or on an existing cluster (`address`), with GPUs asked for per run where
the cluster has them. Finished runs are skipped and interrupted ones resumed from their checkpoints
(wmrl/bench/execute.py), so the same command continues a suite after any interruption. On a cluster the
output directory must be on a filesystem every node sees.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from pathlib import Path

from wmrl.bench.execute import execute, result_path
from wmrl.bench.suite import RunSpec, Suite
from wmrl.errors import WmrlError

INSTALL = "pip install -e '.[bench]' (Ray and rliable)"
RETRIES = 2
"""Times Ray restarts a run whose worker process died (killed by a signal or the kernel's out-of-memory
killer, a lost keepalive; on a local cluster also Ray's own memory monitor, whose retries Ray counts apart
unless told): the run resumes from its checkpoint. An error raised by the run itself (a Python
MemoryError too) is not retried: it is reported."""


def require(module: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise WmrlError(f"wmrl bench needs the {module} package, which is not installed", INSTALL) from e


_WATCHING = False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_with_bench(driver: tuple[str, int]) -> None:
    """End this worker as soon as its raylet or, on the bench's own machine, the bench process is gone.
    Ray's workers and raylet have process groups of their own, so a killed bench leaves them running
    until Ray notices (seconds on a busy machine, long enough to finish a small run and write a result
    the rerun then takes as done). One watcher per worker process, however many runs it takes."""
    global _WATCHING
    if _WATCHING:
        return
    _WATCHING = True
    parent = os.getppid()
    host, pid = driver
    local = host == platform.node()

    def watch() -> None:
        while os.getppid() == parent and (not local or _alive(pid)):
            time.sleep(0.2)
        os._exit(1)  # every file a run writes is written atomically

    threading.Thread(target=watch, daemon=True).start()


def _task(spec: RunSpec, out: str, threads: int, driver: tuple[str, int]) -> dict:
    """Runs in a Ray worker; `driver` is the bench process's (host, pid)."""
    _exit_with_bench(driver)
    return execute(spec, Path(out), threads)


def run_suite(suite: Suite, out: Path, address: str | None = None, threads: int = 1, cpus: int | None = None,
              log=print, only: list[str] | None = None) -> list[dict]:
    """Run every unfinished run of `suite` (of the configurations labelled in `only`, if given) on Ray;
    returns the results of those runs (in suite order). Errors of single runs are collected and raised together at the
    end (the other runs go on)."""
    ray = require("ray")
    require("rliable")
    specs = select(suite.runs(), only)
    pending = [s for s in specs if not result_path(out, s).exists()]
    log(f"{suite.name}: {len(specs)} runs{' of ' + ', '.join(only) if only else ''}, "
        f"{len(specs) - len(pending)} finished, {len(pending)} to run in {out}")
    failures = []
    if pending:
        # address="local" starts a cluster of our own even where another one runs on this machine.
        kwargs = {"address": address} if address else {
            "address": "local", "num_cpus": cpus or os.cpu_count(), "include_dashboard": False,
            "object_store_memory": 100 * 1024**2, "_system_config": {"task_oom_retries": RETRIES}}
        ray.init(log_to_driver=False, **kwargs)
        try:
            gpus = suite.gpus_per_run if ray.cluster_resources().get("GPU", 0) > 0 else 0
            task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=False)(_task)
            driver = (platform.node(), os.getpid())
            refs = {task.remote(spec, str(out), threads, driver): spec for spec in pending}
            waiting = list(refs)
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                spec = refs[done[0]]
                try:
                    r = ray.get(done[0])
                    means = ", ".join(f"{m} {v['return_mean']:.1f}" for m, v in r["final"].items())
                    resumed = "" if r["resumed_from"] is None else f", resumed from step {r['resumed_from']}"
                    log(f"  done {spec.label} {spec.env} seed {spec.seed}: {means} ({r['train_minutes']:.1f} min{resumed})")
                except Exception as e:  # a run's own error, reported with the others below
                    failures.append(f"{spec.label} {spec.env} seed {spec.seed}: {str(e).strip().splitlines()[-1]}")
                    log(f"  FAILED {failures[-1]}")
        finally:
            ray.shutdown()
    if failures:
        raise WmrlError(f"{len(failures)} of {len(specs)} runs failed: " + "; ".join(failures[:5]),
                        f"see each run's directory under {out}/runs; the same command retries them")
    return [json.loads(result_path(out, s).read_text()) for s in specs]


def select(specs: list[RunSpec], only: list[str] | None) -> list[RunSpec]:
    """The runs whose configuration label (e.g. storm+actor_critic/envs4) is in `only`; all when it is empty."""
    if not only:
        return specs
    labels = sorted({s.label for s in specs})
    unknown = [label for label in only if label not in labels]
    if unknown:
        raise WmrlError(f"--only {', '.join(unknown)}: no such configuration in the suite",
                        f"pass one of {', '.join(labels)}")
    return [s for s in specs if s.label in only]


def dry_run(suite: Suite, threads: int = 1, log=print, only: list[str] | None = None) -> dict:
    """List the runs (of the configurations in `only`, if given) and their projected CPU hours, from one short
    measurement per distinct model setting."""
    from wmrl.bench.cost import measure

    measured: dict[tuple, dict] = {}
    rows = []
    for spec in select(suite.runs(), only):
        cfg = spec.config()
        cfg.threads = threads
        key = (spec.env, spec.world_model, spec.behavior, spec.overrides)
        if key not in measured:
            measured[key] = measure(cfg)
        cost = measured[key]
        hours = cost["projected_hours"] * spec.steps / cost["steps"]
        rows.append({"run": spec.run_id, "label": spec.label, "env": spec.env, "seed": spec.seed,
                     "steps": spec.steps, "update_ms": 1000 * cost["update_s"], "act_ms": 1000 * cost["act_s"],
                     "cpu_hours": hours * threads})
    total = sum(r["cpu_hours"] for r in rows)
    for r in rows:
        log(f"{r['label']:32s} {r['env']:28s} seed {r['seed']:<3d} {r['steps']:>7d} steps  "
            f"update {r['update_ms']:7.1f} ms  act {r['act_ms']:6.1f} ms  {r['cpu_hours']:6.2f} CPU h")
    cores = os.cpu_count() or 1
    log(f"{len(rows)} runs, {total:.1f} CPU hours at threads={threads} (evaluations excluded); "
        f"about {total / cores:.1f} h of wall time on this machine's {cores} cores kept busy")
    return {"runs": rows, "cpu_hours": total}
