"""The whole run's configuration: typed dataclasses from each module, stacked YAML presets and
`--set key=value` overrides, validated once at start-up.

Precedence (later wins): dataclass defaults < presets in the order given < command-line flags
(--env, --steps, --seed, --device) < --set overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wmrl.behavior.actor_critic import BOOTSTRAPS, GRADIENTS, ActorCriticConfig
from wmrl.behavior.cem import CemConfig
from wmrl.behavior.cmaes import CmaesConfig
from wmrl.data.replay import ReplayConfig
from wmrl.envs.factory import EnvConfig
from wmrl.errors import WmrlError, require_positive
from wmrl.run.train_config import TrainConfig
from wmrl.worldmodels.mdnrnn import MdnRnnConfig
from wmrl.worldmodels.rssm import RssmConfig
from wmrl.worldmodels.storm import StormConfig

PRESET_DIR = Path(__file__).parent / "presets"
WORLD_MODELS = ("storm", "rssm", "mdnrnn")
BEHAVIORS = ("actor_critic", "cem", "cmaes")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class Config:
    seed: int = 0
    """Seeds Python, numpy, torch and the env; a run's figures depend only on it (and the machine)."""
    device: str = "auto"
    """auto (CUDA when available), cpu, or cuda."""
    threads: int = 2
    """torch intra-op threads; set it to the cores this run may use alone."""
    precision: str = "auto"
    """auto (bf16 autocast on CUDA, fp32 on CPU), fp32, or bf16. bf16 applies everywhere to updates and to
    wmrl dream's imagination (the faithful horizon's too), and to acting (CEM's planning included) on CUDA
    only: on the CPU it made one act slower."""
    world_model: str = "storm"
    """storm, rssm or mdnrnn; its section (storm., rssm., mdnrnn.) holds its settings."""
    behavior: str = "actor_critic"
    """actor_critic, cem or cmaes; its section holds its settings. Every pair works."""
    env: EnvConfig = field(default_factory=EnvConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    storm: StormConfig = field(default_factory=StormConfig)
    rssm: RssmConfig = field(default_factory=RssmConfig)
    mdnrnn: MdnRnnConfig = field(default_factory=MdnRnnConfig)
    actor_critic: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    cem: CemConfig = field(default_factory=CemConfig)
    cmaes: CmaesConfig = field(default_factory=CmaesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise WmrlError(f"unknown preset '{name}'", f"choose from: {', '.join(available_presets())}")
    return yaml.safe_load(path.read_text()) or {}


_YAML12_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _number(text: str, fallback: Any) -> Any:
    """A YAML 1.2 number PyYAML (YAML 1.1) reads as a string, such as 3e-4: as an int or a float."""
    if not _YAML12_NUMBER.fullmatch(text.strip()):
        return fallback
    number = float(text)
    return int(number) if number.is_integer() and not any(c in text for c in ".eE") else number


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except WmrlError as e:
                errors.append(e)
        raise errors[0]
    if hint in (int, float) and isinstance(value, str):
        value = _number(value, value)
    ok = {bool: isinstance(value, bool),
          int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          str: isinstance(value, str)}
    if hint in ok:
        if not ok[hint]:
            raise WmrlError(f"{key}={value!r} is not a valid {hint.__name__}",
                            f"give {key} a {hint.__name__} value, e.g. --set {key}=<{hint.__name__}>")
        if hint is float and not math.isfinite(value):
            raise WmrlError(f"{key}={value!r} is not a finite number", f"give {key} a finite value")
        return float(value) if hint is float else value
    raise TypeError(f"unsupported config type {hint} for {key}")


def apply(obj: Any, updates: dict, prefix: str = "") -> None:
    """Merge a nested dict into a dataclass tree in place, checking keys and types."""
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in updates.items():
        path = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(key, names, n=3)
            hint = f"did you mean {', '.join(prefix + c for c in close)}?" if close else \
                f"valid keys here: {', '.join(prefix + n for n in names)}"
            raise WmrlError(f"unknown config key '{path}'", hint)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise WmrlError(f"config key '{path}' is a section, not a value",
                                f"set one of its fields, e.g. --set {path}.<field>=VALUE")
            apply(current, value, path + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], path))


def parse_override(text: str) -> dict:
    """'a.b.c=3' -> {'a': {'b': {'c': 3}}}; the value is read as YAML (numbers, true/false, null)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise WmrlError(f"override '{text}' is not of the form KEY=VALUE", "write e.g. --set train.steps=5000")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def build(presets: list[str], flags: dict, overrides: list[str]) -> Config:
    cfg = Config()
    for name in presets:
        apply(cfg, load_preset(name))
    apply(cfg, flags)
    for text in overrides:
        apply(cfg, parse_override(text))
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    choices = {"device": DEVICES, "precision": PRECISIONS, "world_model": WORLD_MODELS, "behavior": BEHAVIORS}
    for key, allowed in choices.items():
        if getattr(cfg, key) not in allowed:
            raise WmrlError(f"{key}={getattr(cfg, key)!r} is not supported", f"choose one of: {', '.join(allowed)}")
    if not 0 <= cfg.seed < 2**32:
        raise WmrlError(f"seed={cfg.seed} is outside [0, 2**32)", "use a seed such as 0, 1, 2 ...")
    if cfg.threads < 1:
        raise WmrlError(f"threads={cfg.threads} must be >= 1", "set --set threads=N with N the cores to use")
    cfg.env.validate()
    cfg.replay.validate()
    cfg.train.validate()
    n = cfg.train.num_envs  # each env's replay stream holds 1 / n of the capacity and of the warm-up
    if cfg.replay.capacity // n < cfg.train.wm_seq:
        raise WmrlError(f"replay.capacity={cfg.replay.capacity} holds fewer steps per training env (train.num_envs={n}) "
                        f"than one training sequence (train.wm_seq={cfg.train.wm_seq})",
                        f"set replay.capacity >= {n * cfg.train.wm_seq}")
    _validate_models(cfg)


def _validate_models(cfg: Config) -> None:
    # Every section's own fields are checked, used or not: a bad value a user set is an error either way.
    for name in WORLD_MODELS:
        getattr(cfg, name).validate(name)
    cfg.cem.validate()
    cfg.cmaes.validate()
    ac = cfg.actor_critic
    require_positive("actor_critic", ac, "hidden", "horizon", "imag_batch", "imag_context", "value_bins")
    if not (0 < ac.gamma <= 1 and 0 <= ac.lam <= 1):
        raise WmrlError(f"actor_critic.gamma={ac.gamma}, lam={ac.lam} must lie in (0, 1] and [0, 1]",
                        "use gamma=0.985 lam=0.95 (STORM)")
    if ac.bootstrap not in BOOTSTRAPS:
        raise WmrlError(f"actor_critic.bootstrap={ac.bootstrap!r} is not known", "use fast (DreamerV3, STORM) or slow")
    if ac.gradient not in GRADIENTS:
        raise WmrlError(f"actor_critic.gradient={ac.gradient!r} is not known",
                        "use auto, reinforce or dynamics (Box actions only)")
    if not 0 < ac.min_std <= ac.max_std:
        raise WmrlError(f"actor_critic.min_std={ac.min_std}, max_std={ac.max_std} must satisfy 0 < min_std <= max_std",
                        "use min_std=0.1 max_std=1.0 (DreamerV3)")
    # Then what holds between the chosen world model, behaviour and training loop.
    tc = cfg.train
    if cfg.world_model == "storm" and tc.wm_seq > cfg.storm.transformer.context:
        raise WmrlError(f"train.wm_seq={tc.wm_seq} is longer than storm.transformer.context="
                        f"{cfg.storm.transformer.context}", "make the training sequences at most as long as the "
                        "attention window")
    if tc.warmup // tc.num_envs < tc.wm_seq:
        raise WmrlError(f"train.warmup={tc.warmup} leaves each of train.num_envs={tc.num_envs} envs fewer steps than a "
                        f"training sequence (train.wm_seq={tc.wm_seq})", f"set train.warmup >= {tc.num_envs * tc.wm_seq}")
    if cfg.behavior == "cem":
        return
    if cfg.behavior == "cmaes":
        if cfg.cmaes.where == "real" and tc.num_envs > 1:
            raise WmrlError("cmaes.where=real plays each training episode with one candidate in turn, which several "
                            f"envs stepping together (train.num_envs={tc.num_envs}) would share",
                            "use train.num_envs=1 with cmaes.where=real, or cmaes.where=dream")
        if cfg.cmaes.where == "dream":
            _require_start_windows(cfg, "cmaes.context", cfg.cmaes.context, cfg.cmaes.rollouts)
        return
    _require_start_windows(cfg, "actor_critic.imag_context", ac.imag_context, ac.imag_batch)
    if cfg.world_model == "storm" and cfg.storm.history + ac.horizon > cfg.storm.transformer.context:
        raise WmrlError(f"storm.history={cfg.storm.history} plus actor_critic.horizon={ac.horizon} exceeds "
                        f"storm.transformer.context={cfg.storm.transformer.context}: imagination would slide past "
                        "every window the transformer trains on",
                        f"set storm.history <= {cfg.storm.transformer.context - ac.horizon}")


def _require_start_windows(cfg: Config, key: str, context: int, count: int) -> None:
    """Warm-up must leave replay windows as long as an imagination start (WorldModel.start_length); `count`
    starts taken from the loss's sequences (rssm.imagine_from=loss) must each be filtered over burn_in rows."""
    section = getattr(cfg, cfg.world_model)
    if getattr(section, "imagine_from", "replay") == "loss":
        tc, per = cfg.train, -(-count // cfg.train.wm_batch)
        if tc.wm_seq - per < section.burn_in:
            raise WmrlError(f"{cfg.world_model}.imagine_from=loss takes {count} starts from the last {per} rows of "
                            f"each of train.wm_batch={tc.wm_batch} sequences of train.wm_seq={tc.wm_seq}, which "
                            f"leaves fewer than {cfg.world_model}.burn_in={section.burn_in} rows before them",
                            f"set train.wm_seq >= {section.burn_in + per}, or lower {cfg.world_model}.burn_in")
        return
    length = section.start_length(context)
    if cfg.train.warmup // cfg.train.num_envs < length:
        what = (f"storm.history={section.history}" if cfg.world_model == "storm" else
                f"{cfg.world_model}.burn_in={section.burn_in} plus {key}={context}")
        raise WmrlError(f"train.warmup={cfg.train.warmup} leaves each of train.num_envs={cfg.train.num_envs} envs fewer "
                        f"steps than an imagination start's window ({what})",
                        f"set train.warmup >= {cfg.train.num_envs * length}")


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def save(cfg: Config, path: Path) -> None:
    from wmrl.run.files import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load(path: Path) -> Config:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise WmrlError(f"cannot read config {path}: {str(e).splitlines()[0]}",
                        "point at a run directory made by `wmrl train`") from e
    if not isinstance(data, dict):
        raise WmrlError(f"config {path} holds a {type(data).__name__}, not a mapping of config sections",
                        "point at a run directory made by `wmrl train`, whose config.yaml it wrote")
    cfg = Config()
    apply(cfg, data)
    validate(cfg)
    return cfg
