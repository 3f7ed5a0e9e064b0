"""Benchmark suites: a YAML file names groups of runs, each group the product envs x world models x
behaviours x variants x seeds at one step budget, and how every run is finally evaluated.

    name: cartpole-pairs
    protocol: "CartPole-v1 (Gymnasium 1.x): 500-step episodes, no sticky actions"
    presets: [cartpole]            # stacked under every run's own settings
    overrides: [threads=1]         # --set overrides for every run
    normalize: none                # none | atari_hns | minatar_dqn (references.py)
    eval: {episodes: 20, policy: both}  # optional: horizon_episodes: 5, horizon_steps: 50
    gpus_per_run: 1.0              # asked of Ray per run where the cluster has GPUs
    compare: [[storm+actor_critic, storm+actor_critic/slow]]   # probability of improvement (optional)
    groups:
      - {name: actor_critic, envs: [CartPole-v1], world_models: [storm, rssm], behaviors: [actor_critic],
         seeds: [1, 2, 3], steps: 20000, variants: {default: [], slow: [actor_critic.bootstrap=slow]}}

A run is identified by its resolved configuration (every field but `threads` and `device`), so the same
run named by two groups (an ablation's baseline and the main table, say) is trained once. A
configuration's label is `world_model+behavior`, with `/variant` for variants other than `default`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from wmrl import config as config_mod
from wmrl.errors import WmrlError
from wmrl.run.evaluate import POLICIES

SUITE_DIR = Path(__file__).parent / "suites"
NORMALIZE = ("none", "atari_hns", "minatar_dqn")


@dataclass
class EvalSpec:
    episodes: int = 20
    policy: str = "both"
    horizon_episodes: int = 0
    """Held-out episodes on which each run's model gets its faithful horizon (run/horizon.py); 0: none."""
    horizon_steps: int = 50
    """Open-loop steps imagined per window for the faithful horizon."""


@dataclass
class Group:
    name: str
    envs: list[str]
    world_models: list[str]
    behaviors: list[str]
    seeds: list[int]
    steps: int
    variants: dict[str, list[str]] = field(default_factory=lambda: {"default": []})


@dataclass(frozen=True)
class RunSpec:
    """One run of a suite: everything `execute` needs, in plain values (it crosses to Ray workers)."""

    env: str
    world_model: str
    behavior: str
    variant: str
    seed: int
    steps: int
    presets: tuple[str, ...]
    overrides: tuple[str, ...]
    episodes: int
    policy: str
    horizon_episodes: int = 0
    horizon_steps: int = 50

    @property
    def label(self) -> str:
        base = f"{self.world_model}+{self.behavior}"
        return base if self.variant == "default" else f"{base}/{self.variant}"

    def config(self):
        flags = {"seed": self.seed, "env": {"id": self.env}, "world_model": self.world_model,
                 "behavior": self.behavior, "train": {"steps": self.steps}}
        return config_mod.build(list(self.presets), flags, list(self.overrides))

    @property
    def run_id(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.env).strip("-")
        return f"{slug}-{self.world_model}-{self.behavior}-s{self.seed}-{config_hash(self.config())}"


ADDED_LATER = {("train", "num_envs"): 1, ("rssm", "imagine_from"): "replay", ("env", "pixels"): False,
               ("env", "action_repeat"): 1, ("env", "fast_render"): False, ("actor_critic", "gradient"): "auto",
               ("actor_critic", "min_std"): 0.1, ("actor_critic", "max_std"): 1.0,
               ("cem", "explore_std"): 0.3}
"""Settings added after suites had been run, with the value every earlier run had: at that value they
are left out of the hash, so the runs made before they existed keep their ids (and are not run again)."""


def config_hash(cfg) -> str:
    """Hash of a resolved config without the fields that do not change what is learned."""
    data = config_mod.to_dict(cfg)
    data.pop("threads"), data.pop("device")
    for (section, key), old in ADDED_LATER.items():
        if data[section].get(key) == old:
            del data[section][key]
    return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class Suite:
    name: str
    groups: list[Group]
    protocol: str = ""
    description: str = ""
    presets: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    normalize: str = "none"
    eval: EvalSpec = field(default_factory=EvalSpec)
    gpus_per_run: float = 1.0
    compare: list[list[str]] = field(default_factory=list)
    published: dict[str, dict[str, float]] = field(default_factory=dict)
    """Published scores (raw returns) shown beside the suite's in its report: {env id: {source: score}}."""
    path: str = ""

    def runs(self) -> list[RunSpec]:
        """Every distinct run, in the order the groups name them."""
        seen, out = set(), []
        for g in self.groups:
            for env in g.envs:
                for wm in g.world_models:
                    for behavior in g.behaviors:
                        for variant, extra in g.variants.items():
                            for seed in g.seeds:
                                spec = RunSpec(env, wm, behavior, variant, seed, g.steps, tuple(self.presets),
                                               tuple(self.overrides) + tuple(extra), self.eval.episodes,
                                               self.eval.policy, self.eval.horizon_episodes,
                                               self.eval.horizon_steps)
                                key = (spec.run_id, spec.label)
                                if key not in seen:
                                    seen.add(key)
                                    out.append(spec)
        return out


def available_suites() -> list[str]:
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


def load_suite(name_or_path: str) -> Suite:
    """A shipped suite by name (wmrl/bench/suites/NAME.yaml) or a suite file; validated, every run's config
    built once so a bad field fails before anything runs."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise WmrlError(f"no benchmark suite '{name_or_path}'",
                        f"name a shipped suite ({', '.join(available_suites())}) or a suite YAML file")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise WmrlError(f"cannot read suite {path}: {e}", "fix the YAML") from e
    if not isinstance(data, dict):
        raise WmrlError(f"suite {path} is not a YAML mapping", "see wmrl/bench/suite.py for the format")
    try:
        groups = [Group(**g) for g in data.pop("groups")]
        suite = Suite(groups=groups, eval=EvalSpec(**data.pop("eval", {})), path=str(path), **data)
    except (KeyError, TypeError) as e:
        raise WmrlError(f"suite {path} does not fit the suite format ({e})", "see wmrl/bench/suite.py for the format") from e
    _validate(suite)
    return suite


def _validate(suite: Suite) -> None:
    if suite.normalize not in NORMALIZE:
        raise WmrlError(f"suite normalize={suite.normalize!r} is not known", f"use one of: {', '.join(NORMALIZE)}")
    ev = suite.eval
    if ev.policy not in POLICIES or ev.episodes < 1 or ev.horizon_episodes < 0 or ev.horizon_steps < 1:
        raise WmrlError(f"suite eval {dataclasses.asdict(ev)} is not valid",
                        "use eval: {episodes: 20, policy: greedy|sample|both} and, for the faithful horizon, "
                        "horizon_episodes >= 0 and horizon_steps >= 1")
    runs = suite.runs()
    if not runs:
        raise WmrlError(f"suite {suite.name} names no runs", "give each group envs, world_models, behaviors and seeds")
    for spec in runs:
        try:
            spec.config()
        except WmrlError as e:
            raise WmrlError(f"suite {suite.name}, run {spec.label} on {spec.env} seed {spec.seed}: {e.problem}",
                            e.fix) from e
    envs = {s.env for s in runs}
    if not isinstance(suite.published, dict):
        raise WmrlError(f"suite published: {suite.published!r} is not a mapping",
                        "use published: {ENV: {SOURCE: SCORE}} or leave it out")
    for env, scores in suite.published.items():
        if env not in envs or not isinstance(scores, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in scores.items()):
            raise WmrlError(f"suite published entry {env}: {scores!r} is not a mapping of sources to scores for one "
                            "of the suite's envs", f"use published: {{ENV: {{SOURCE: SCORE}}}} with ENV one of: "
                            f"{', '.join(sorted(envs))}")
    labels = {s.label for s in runs}
    for pair in suite.compare:
        if len(pair) != 2 or not set(pair) <= labels:
            raise WmrlError(f"suite compare entry {pair} does not name two configurations of the suite",
                            f"choose from: {', '.join(sorted(labels))}")
