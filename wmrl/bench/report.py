"""A suite's report, computed with rliable (Agarwal et al. 2021): per task and over all tasks, the mean,
median and interquartile mean (IQM) of the final evaluation scores with 95% stratified-bootstrap
intervals, the probability of improvement between configurations, and plots: learning curves with
interval bands, the aggregate intervals and performance profiles. Written as report.json, report.md and
PNG files into the suite's output directory, for each evaluation mode the suite played.

Scores are each run's final-evaluation mean (suite `eval`), normalised per task (suite `normalize`).
"""

from __future__ import annotations

import collections
import itertools
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from wmrl.bench import references
from wmrl.bench.execute import commit, machine, result_path
from wmrl.bench.suite import Suite
from wmrl.run.evaluate import modes
from wmrl.run.files import atomic_write, atomic_write_text

REPS = 2000
METRICS = ("mean", "median", "iqm")
MAX_PAIRS = 30


def _rliable():
    # rliable passes arch a RandomState through an argument arch deprecates; the figures are unaffected.
    warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
    from rliable import library as rly
    from rliable import metrics

    return rly, metrics


def _aggregate(x: np.ndarray) -> np.ndarray:
    _, metrics = _rliable()
    return np.array([metrics.aggregate_mean(x), metrics.aggregate_median(x), metrics.aggregate_iqm(x)])


def score_matrices(suite: Suite, results: list[dict], mode: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """{label: (seeds, tasks) normalised final scores} for the labels whose every run has finished with a
    final evaluation in `mode` (a run made while the suite asked for the other policy lacks it), and the
    tasks in order."""
    tasks = sorted({r["env"] for r in results})
    by = {}
    for r in results:
        if mode not in r["final"]:
            continue
        by.setdefault(r["label"], {}).setdefault(r["env"], []).append((r["seed"], r["final"][mode]["return_mean"]))
    wanted = {}
    for spec in suite.runs():
        wanted.setdefault(spec.label, {}).setdefault(spec.env, set()).add(spec.seed)
    out = {}
    for label, envs in wanted.items():
        got = by.get(label, {})
        if set(envs) != set(got) or any(len(got[e]) != len(envs[e]) for e in envs) or \
                len({len(s) for s in envs.values()}) != 1:
            continue
        cols = [[references.normalizer(suite.normalize, e)(v) for _, v in sorted(got[e])] for e in sorted(envs)]
        out[label] = np.array(cols, dtype=np.float64).T  # (seeds, tasks)
    return out, tasks


def intervals(scores: dict[str, np.ndarray]) -> dict[str, dict]:
    """{label: {metric: [point, low, high]}} with 95% stratified-bootstrap intervals."""
    rly, _ = _rliable()
    point, ci = rly.get_interval_estimates(scores, _aggregate, reps=REPS, random_state=np.random.RandomState(0))
    return {k: {m: [float(point[k][i]), float(ci[k][0, i]), float(ci[k][1, i])] for i, m in enumerate(METRICS)}
            for k in scores}


def improvement(scores: dict[str, np.ndarray], pairs: list[list[str]]) -> list[dict]:
    """Probability that a run of X beats a run of Y, with its 95% interval, for each pair [X, Y]."""
    rly, metrics = _rliable()
    out = []
    for x, y in pairs:
        if x in scores and y in scores and scores[x].shape[1] == scores[y].shape[1]:
            point, ci = rly.get_interval_estimates({"p": (scores[x], scores[y])}, metrics.probability_of_improvement,
                                                   reps=REPS, random_state=np.random.RandomState(0))
            low, high = np.ravel(ci["p"])
            out.append({"x": x, "y": y, "p": float(point["p"]), "low": float(low), "high": float(high)})
    return out


def env_steps_per_step(suite: Suite) -> dict[str, int]:
    """{run_id: env steps per agent step} of the suite's runs: env.action_repeat, since env steps count
    physics steps (PlaNet's, Dreamer's and DreamerV3's convention) and train.steps counts agent steps."""
    return {s.run_id: s.config().env.action_repeat for s in suite.runs()}


def _curves(suite: Suite, results: list[dict], mode: str) -> dict[str, dict[str, dict]]:
    """Training-time evaluations: {task: {label: {steps, iqm, low, high, mode}}}, IQM over seeds at every
    evaluation step all of the label's runs reached, 95% bootstrap bands; steps are env steps."""
    rly, metrics = _rliable()
    repeat = env_steps_per_step(suite)
    out: dict[str, dict[str, dict]] = {}
    for (env, label), runs in itertools.groupby(sorted(results, key=lambda r: (r["env"], r["label"])),
                                                key=lambda r: (r["env"], r["label"])):
        runs = list(runs)
        norm = references.normalizer(suite.normalize, env)
        used = mode
        if not any(f"eval/{used}/return_mean" in row for row in runs[0]["curve"]):
            used = "sample" if mode == "greedy" else "greedy"  # training evaluations used the other mode
        key = f"eval/{used}/return_mean"
        series = [{row["step"] * repeat.get(r["run_id"], 1): norm(row[key]) for row in r["curve"] if key in row}
                  for r in runs]
        steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
        if not steps:
            continue
        data = {str(t): np.array([[s[t]] for s in series]) for t in steps}
        point, ci = rly.get_interval_estimates(data, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=500,
                                               random_state=np.random.RandomState(0))
        out.setdefault(env, {})[label] = {"steps": steps, "iqm": [float(point[str(t)][0]) for t in steps],
                                          "low": [float(ci[str(t)][0, 0]) for t in steps],
                                          "high": [float(ci[str(t)][1, 0]) for t in steps], "mode": used}
    return out


def _plots(out: Path, mode: str, summary: dict, scores: dict[str, np.ndarray], curves: dict, unit: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from rliable import plot_utils

    files = []

    def save(fig, name: str) -> None:
        atomic_write(out / name, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
        plt.close(fig)
        files.append(name)

    if curves:
        fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
        for ax, (env, by_label) in zip(axes[0], sorted(curves.items())):
            for label, c in sorted(by_label.items()):
                ax.plot(c["steps"], c["iqm"], label=label)
                ax.fill_between(c["steps"], c["low"], c["high"], alpha=0.2)
            ax.set_title(f"{env}: training evaluations ({next(iter(by_label.values()))['mode']})", fontsize=9)
            ax.set_xlabel("env steps (agent steps x action repeat)")
            ax.set_ylabel(f"IQM {unit} (95% CI)")
            ax.grid(alpha=0.3)
        axes[0, 0].legend(fontsize=7)
        save(fig, f"curves_{mode}.png")
    if scores:
        labels = sorted(scores)
        point = {k: np.array([summary[k][m][0] for m in METRICS]) for k in labels}
        ci = {k: np.array([[summary[k][m][1] for m in METRICS], [summary[k][m][2] for m in METRICS]]) for k in labels}
        fig, _ = plot_utils.plot_interval_estimates(point, ci, metric_names=["Mean", "Median", "IQM"],
                                                    algorithms=labels, xlabel=f"final {unit} ({mode} policy)")
        save(fig, f"intervals_{mode}.png")
        lo = min(float(s.min()) for s in scores.values())
        hi = max(float(s.max()) for s in scores.values())
        taus = np.linspace(lo, hi if hi > lo else lo + 1, 101)
        np.random.seed(0)
        profiles, profile_cis = rly.create_performance_profile(scores, taus, reps=REPS)
        fig, ax = plt.subplots(figsize=(6, 3.6))
        plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=profile_cis, ax=ax,
                                             xlabel=f"{unit} ($\\tau$)")
        ax.legend(list(profiles), fontsize=7)
        save(fig, f"profiles_{mode}.png")
    return files


def time_to_target(suite: Suite, results: list[dict]) -> dict:
    """Per configuration and task whose runs stop at a target return (train.stop_at_return): how many of
    its finished runs reached it, and the median wall time (training, evaluations included) and env steps
    to it over those runs, with every run's figures; {} if no run has a target."""
    targets = {s.run_id: s.config().train.stop_at_return for s in suite.runs()}
    repeat = env_steps_per_step(suite)
    out: dict = {}
    for r in results:
        target = targets.get(r["run_id"])
        if target is None:
            continue
        row = out.setdefault(f"{r['label']} on {r['env']}", {"target": target, "runs": 0, "reached": 0,
                                                               "minutes": [], "steps": []})
        row["runs"] += 1
        if r["stopped_at_target"]:
            row["reached"] += 1
            row["minutes"].append(r["train_minutes"])
            row["steps"].append(r["steps_trained"] * repeat.get(r["run_id"], 1))
    for row in out.values():
        row["median_minutes"] = float(np.median(row["minutes"])) if row["minutes"] else None
        row["median_steps"] = float(np.median(row["steps"])) if row["steps"] else None
    return out


def faithful_horizons(results: list[dict]) -> dict:
    """Per configuration and task whose runs measured it: every run's faithful horizon (run/horizon.py) and
    the median over runs; {} if none did."""
    out: dict = {}
    for r in results:
        h = r.get("faithful_horizon")
        if not h or h.get("faithful_horizon") is None:
            continue
        row = out.setdefault(f"{r['label']} on {r['env']}", {"horizon_steps": h["horizon"], "context": h["context"],
                                                               "horizons": [], "reached_end": 0, "horizons_modes": []})
        row["horizons"].append(h["faithful_horizon"])
        row["reached_end"] += int(h["reached_end"])
        if "faithful_horizon_modes" in h:  # results made before latent modes were measured lack it
            row["horizons_modes"].append(h["faithful_horizon_modes"])
    for row in out.values():
        row["median"] = float(np.median(row["horizons"]))
        row["median_modes"] = float(np.median(row["horizons_modes"])) if row["horizons_modes"] else None
    return out


def build(suite: Suite, out: Path, command: str | None = None) -> dict:
    """Write the report of every finished run of `suite` in `out`; returns it."""
    results = [json.loads(p.read_text()) for p in (result_path(out, s) for s in suite.runs()) if p.exists()]
    unit = {"none": "return", "atari_hns": "human-normalised score",
            "minatar_dqn": "DQN@5M-normalised score"}[suite.normalize]
    report = {"suite": suite.name, "protocol": suite.protocol, "suite_file": suite.path, "commit": commit(),
              "machine": machine(), "command": command or " ".join(["wmrl", *sys.argv[1:]]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "normalize": suite.normalize,
              "unit": unit, "eval": {"episodes": suite.eval.episodes, "policy": suite.eval.policy},
              "runs_total": len(suite.runs()), "runs_finished": len(results), "modes": {}}
    for mode in modes(suite.eval.policy):
        scores, tasks = score_matrices(suite, results, mode)
        per_task = {t: intervals({k: v[:, [i]] for k, v in scores.items()}) for i, t in enumerate(tasks)} \
            if len(tasks) > 1 else {}
        summary = intervals(scores) if scores else {}
        pairs = suite.compare or [list(p) for p in itertools.combinations(sorted(scores), 2)][:MAX_PAIRS]
        curves = _curves(suite, results, mode)
        files = _plots(out, mode, summary, scores, curves, unit)
        report["modes"][mode] = {"aggregate": summary, "per_task": per_task, "improvement": improvement(scores, pairs),
                                 "tasks": tasks, "seeds": {k: int(v.shape[0]) for k, v in scores.items()},
                                 "plots": files}
    report["time_to_target"] = time_to_target(suite, results)
    report["faithful_horizon"] = faithful_horizons(results)
    report["runs"] = [{k: r[k] for k in ("label", "env", "seed", "steps", "steps_trained", "train_minutes",
                                        "stopped_at_target", "nonfinite_updates", "params_world_model", "commit")}
                      | {"final": {m: v["return_mean"] for m, v in r["final"].items()}, "machine": _run_machine(r),
                         "speeds": [x["fp32_gflops_1thread"] for x in r.get("sessions") or []]}
                      for r in results]
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    atomic_write_text(out / "report.md", markdown(suite, report))
    return report


def _run_machine(result: dict) -> str:
    """The CPU (and GPU) a run trained on: its wall times compare only with runs on the same one."""
    m = result.get("machine") or {}
    return m.get("cpu", "unknown") + (f" + {m['gpu']}" if m.get("gpu") else "")


def _speed(run: dict) -> str:
    """The one-thread speeds of the sessions a run trained in: '34', or '34-98' across machines."""
    v = run.get("speeds") or []
    if not v:
        return "-"
    low, high = f"{min(v):.0f}", f"{max(v):.0f}"
    return low if low == high else f"{low}-{high}"


def _machines(runs: list[dict]) -> str:
    """Each machine the runs ended on, with their count and the range of the speeds measured in them."""
    parts = []
    for name, n in collections.Counter(r["machine"] for r in runs).items():
        mine = [r for r in runs if r["machine"] == name]
        speeds = [v for r in mine for v in r.get("speeds") or []]
        measured = sum(bool(r.get("speeds")) for r in mine)
        speed = (f"; {measured} of {n} measured: {min(speeds):.0f}-{max(speeds):.0f} fp32 GFLOP/s on one thread"
                 if speeds else "")
        parts.append(f"{name} ({n} run{'s' * (n > 1)}{speed})")
    return ", ".join(parts)


def _ci(v: list[float]) -> str:
    return f"{v[0]:.3g} [{v[1]:.3g}, {v[2]:.3g}]"


def markdown(suite: Suite, report: dict) -> str:
    m = report["machine"]
    lines = [f"# wmrl bench: {suite.name}", "",
             f"- protocol: {suite.protocol or 'not named'}", f"- suite file: `{report['suite_file']}`",
             f"- commit: `{report['commit']}`; report built on: {m['cpu']}, GPU {m['gpu'] or 'none'}, torch {m['torch']}",
             "- runs trained on: " + (_machines(report["runs"]) or "none yet"),
             f"- command: `{report['command']}`; date: {report['date']}",
             f"- final evaluation: {suite.eval.episodes} episodes per run, policy `{suite.eval.policy}`; "
             f"scores: {report['unit']}; runs finished: {report['runs_finished']} of {report['runs_total']}",
             "- intervals: 95% stratified bootstrap (rliable), IQM = interquartile mean over runs x tasks", ""]
    for mode, r in report["modes"].items():
        lines += [f"## Final evaluation, {mode} policy", "",
                  "| configuration | seeds | mean | median | IQM |", "|---|---:|---|---|---|"]
        for label, v in sorted(r["aggregate"].items()):
            lines.append(f"| {label} | {r['seeds'][label]} | {_ci(v['mean'])} | {_ci(v['median'])} | {_ci(v['iqm'])} |")
        if r["per_task"]:
            lines += ["", "| task | configuration | IQM | mean | published |", "|---|---|---|---|---|"]
            for task, by in r["per_task"].items():
                pub = ", ".join(f"{k} {v:g}" for k, v in references.published(suite.normalize, task).items())
                for label, v in sorted(by.items()):
                    lines.append(f"| {task} | {label} | {_ci(v['iqm'])} | {_ci(v['mean'])} | {pub} |")
        if r["improvement"]:
            lines += ["", "| X | Y | P(X > Y) [95% CI] |", "|---|---|---|"]
            lines += [f"| {p['x']} | {p['y']} | {p['p']:.2f} [{p['low']:.2f}, {p['high']:.2f}] |" for p in r["improvement"]]
        lines += [""] + [f"![{f}]({f})" for f in r["plots"]] + [""]
    if report.get("time_to_target"):
        lines += ["## Time to the target return", "",
                  "Wall time includes the evaluations during training; medians over the runs that reached it. "
                  "Minutes compare only between runs on the same machine (the Runs table names each run's).", "",
                  "| configuration | target | reached | median min | median env steps | min per run | steps per run |",
                  "|---|---:|---:|---:|---:|---|---|"]
        for name, row in sorted(report["time_to_target"].items()):
            med_min = "-" if row["median_minutes"] is None else f"{row['median_minutes']:.2f}"
            med_steps = "-" if row["median_steps"] is None else f"{row['median_steps']:.0f}"
            lines.append(f"| {name} | {row['target']:g} | {row['reached']} of {row['runs']} | {med_min} | {med_steps} | "
                         f"{', '.join(f'{m:.2f}' for m in row['minutes'])} | {', '.join(map(str, row['steps']))} |")
        lines.append("")
    if report.get("faithful_horizon"):
        lines += ["## Faithful horizon", "",
                  "The first open-loop step at which the model's prediction error exceeds that of predicting the "
                  "context's mean observation, on held-out episodes (`wmrl/run/horizon.py`): one sampled rollout "
                  "per window, and under latent modes.", "",
                  "| configuration | context | steps imagined | median (sampled) | per run | reached the end | "
                  "median (latent modes) | per run |",
                  "|---|---:|---:|---:|---|---:|---:|---|"]
        for name, row in sorted(report["faithful_horizon"].items()):
            modes = "-" if row["median_modes"] is None else f"{row['median_modes']:g}"
            lines.append(f"| {name} | {row['context']} | {row['horizon_steps']} | {row['median']:g} | "
                         f"{', '.join(map(str, row['horizons']))} | {row['reached_end']} of {len(row['horizons'])} | "
                         f"{modes} | {', '.join(map(str, row['horizons_modes'])) or '-'} |")
        lines.append("")
    if suite.published:
        lines += ["## Published scores", "", "Raw returns as the suite file gives them (their protocols may differ: "
                  "see the suite's description).", "", "| task | source | score |", "|---|---|---:|"]
        lines += [f"| {env} | {src} | {v:g} |" for env, by in suite.published.items() for src, v in by.items()]
        lines.append("")
    lines += ["## Runs", "", "Speed: fp32 matmul GFLOP/s on one thread, measured each time the run started or resumed "
              "(a range: it trained on several machines; -: a run made before wmrl measured it).", "",
              "| configuration | task | seed | agent steps trained | final | train min | machine | speed |",
              "|---|---|---:|---:|---|---:|---|---:|"]
    for run in sorted(report["runs"], key=lambda r: (r["label"], r["env"], r["seed"])):
        final = ", ".join(f"{k} {v:.1f}" for k, v in run["final"].items())
        lines.append(f"| {run['label']} | {run['env']} | {run['seed']} | {run['steps_trained']} | {final} | "
                     f"{run['train_minutes']:.1f} | {run['machine']} | {_speed(run)} |")
    return "\n".join(lines) + "\n"
