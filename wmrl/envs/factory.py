"""Build any supported environment behind one call: ``make_env(cfg, seed)``.

Every env leaving this module looks the same to the rest of wmrl:
  * observations are float32 vectors ``(D,)`` or uint8 channel-first images ``(C, H, W)`` in [0, 255];
  * actions are ``Discrete(n)`` starting at 0, or a 1-D ``Box`` in [-1, 1] mapped affinely onto the env's
    own bounds and clipped to them (envs/spaces.py);
  * ``info["episode"] = {"r", "l", "t"}`` appears on the step that ends an episode;
  * the first ``reset()`` is seeded with ``seed`` and later resets are not (see ``SeedOnFirstReset``).

Supported ids: any registered Gymnasium id, ``module:EnvId`` (Gymnasium syntax: importing ``module``
registers ``EnvId``), ``MinAtar/<Game>-v0|v1``, wmrl's own ``wmrl/Catch-v0`` (envs/catch.py), and with
their extras installed ``ALE/<Game>-v5``, ``dmc/<domain>-<task>`` (envs/dmc.py, e.g.
``dmc/cartpole-balance``) and ``CarRacing-v3`` with frames resized to ``image_size`` (envs/carracing.py).
Optional backends (minatar, ale_py, dm_control, box2d) are imported only when their ids are asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import RecordEpisodeStatistics, TimeLimit

from wmrl.envs.spaces import ActionSpace, action_space_of
from wmrl.envs.wrappers import ChannelFirstImage, Float32Vector, LifeLossSignal, RequireFinite, SeedOnFirstReset
from wmrl.errors import WmrlError

_KNOWN_ID_HINT = (
    "use a registered Gymnasium id such as CartPole-v1, MinAtar/Breakout-v1, or module:EnvId for "
    "your own env (importing the module must call gymnasium.register for EnvId)"
)


# Defaults that depend on the backend (protocols.md). Sticky actions: MinAtar's paper 0.1; the ALE's v5
# default and Machado et al.'s recommendation 0.25 (the Atari 100k presets set their protocol's own).
# Episode caps in agent steps: the ALE's 108k frames, and for MinAtar, whose games have no limit, a cap
# that stops an agent that never loses from making an evaluation endless.
STICKY_DEFAULTS = {"MinAtar/": 0.1, "ALE/": 0.25}
ALE_FRAME_CAP = 108_000
MINATAR_STEP_CAP = 10_000


@dataclass
class EnvConfig:
    id: str = "CartPole-v1"
    """Gymnasium id, ``module:EnvId`` for your own env, ``MinAtar/<Game>-v0|v1`` or ``ALE/<Game>-v5``."""
    max_episode_steps: int | None = None
    """Truncate episodes after this many agent steps; 0 keeps the env's own limit; None the backend's
    default (ALE: 108k frames / frame_skip; MinAtar: 10000; others: the env's own)."""
    sticky_actions: float | None = None
    """Probability of repeating the previous action (MinAtar and ALE only); None: the backend's default
    (MinAtar 0.1, its paper's; ALE 0.25, v5's and Machado et al.'s)."""
    frame_skip: int = 4
    """ALE only: emulator frames per agent step (max-pooled over the last two)."""
    image_size: int = 64
    """ALE, CarRacing and DMC pixels: RGB frames are image_size x image_size."""
    pixels: bool = False
    """DMC only: observe image_size x image_size RGB frames of the task's standard camera instead of its
    proprioceptive state vector."""
    action_repeat: int = 1
    """DMC only: physics steps per agent step, rewards summed (PlaNet 2-8 by task, Dreamer 2, DreamerV3 1).
    Env-step counts in the protocols count physics steps: train.steps counts agent steps."""
    fast_render: bool = False
    """DMC pixels only: render without shadows and reflections (~4x faster in software; the frames differ
    slightly from the papers')."""
    noop_max: int = 30
    """ALE only: each episode starts with up to this many no-op actions (0: none, as STORM's code)."""
    life_loss: bool = False
    """Envs that report info["lives"] (the ALE): a lost life is a terminal step in replay and starts the
    agent's model state afresh, while the game and its return go on (the Atari 100k protocols)."""

    def backend(self) -> str:
        """"ALE/", "MinAtar/" or "" for every other id."""
        name = self.id.split(":", 1)[-1]
        return next((b for b in STICKY_DEFAULTS if name.startswith(b)), "")

    def sticky(self) -> float:
        """The sticky-action probability in force (0 for backends without sticky actions)."""
        return STICKY_DEFAULTS.get(self.backend(), 0.0) if self.sticky_actions is None else float(self.sticky_actions)

    def episode_cap(self) -> int:
        """Agent steps after which episodes are truncated (0: only the env's own limit)."""
        if self.max_episode_steps is not None:
            return self.max_episode_steps
        return {"ALE/": ALE_FRAME_CAP // self.frame_skip, "MinAtar/": MINATAR_STEP_CAP}.get(self.backend(), 0)

    def validate(self) -> None:
        if not isinstance(self.id, str) or not self.id or self.id != self.id.strip():
            raise WmrlError(f"env.id must be a non-empty id without spaces, got {self.id!r}", _KNOWN_ID_HINT)
        if self.max_episode_steps is not None and (not isinstance(self.max_episode_steps, int)
                                                    or self.max_episode_steps < 0):
            raise WmrlError(
                f"env.max_episode_steps must be an integer >= 0 or null, got {self.max_episode_steps!r}",
                "set it to 0 to keep the env's own time limit, null for the backend's default, or a step count",
            )
        if self.sticky_actions is not None and (not isinstance(self.sticky_actions, (int, float))
                                                or not 0.0 <= self.sticky_actions < 1.0):
            raise WmrlError(
                f"env.sticky_actions must be a probability in [0, 1), got {self.sticky_actions!r}",
                "use 0.0 to disable sticky actions, 0.1 (MinAtar) or 0.25 (Machado et al. Atari protocol)",
            )
        if not isinstance(self.frame_skip, int) or self.frame_skip < 1:
            raise WmrlError(
                f"env.frame_skip must be an integer >= 1, got {self.frame_skip!r}",
                "use 4, the standard Atari frame skip, or 1 for no skipping",
            )
        if not isinstance(self.image_size, int) or self.image_size < 1:
            raise WmrlError(
                f"env.image_size must be a positive integer, got {self.image_size!r}",
                "use 64 (STORM, DreamerV3) or 84 (DQN)",
            )
        if not isinstance(self.action_repeat, int) or self.action_repeat < 1:
            raise WmrlError(f"env.action_repeat must be an integer >= 1, got {self.action_repeat!r}",
                            "use 2 (Dreamer on DMC) or 1 (no repeat)")
        if not self.id.startswith("dmc/"):  # DMC-only settings away from their defaults would be ignored
            for key, default, fix in (("action_repeat", 1, "Atari repeats through env.frame_skip"),
                                      ("pixels", False, "image envs give frames already"),
                                      ("fast_render", False, "it changes DMC's renderer only")):
                if getattr(self, key) != default:
                    raise WmrlError(f"env.{key}={getattr(self, key)!r} applies to DMC tasks (dmc/<domain>-<task>) only, "
                                    f"and env.id is {self.id}", f"set env.{key}={str(default).lower()} for it ({fix})")
        if not isinstance(self.noop_max, int) or self.noop_max < 0:
            raise WmrlError(f"env.noop_max must be an integer >= 0, got {self.noop_max!r}",
                            "use 30 (the standard Atari protocol) or 0 (STORM's code)")


@dataclass(frozen=True)
class EnvSpec:
    obs_shape: tuple[int, ...]  # (D,) for vectors, (C, H, W) for images
    is_image: bool
    action: ActionSpace


def make_env(cfg: EnvConfig, seed: int) -> gym.Env:
    """Build the env named by ``cfg.id``, converted to wmrl's observation/action conventions.

    Args:
        cfg: environment config; validated here.
        seed: seeds the first ``reset()`` and the action space, so a run is reproducible.
    Returns:
        A Gymnasium env with float32 ``(D,)`` or uint8 ``(C, H, W)`` observations, Discrete actions from
        0 or Box actions in [-1, 1], and ``RecordEpisodeStatistics``. Raises WmrlError for ids or spaces wmrl cannot use.
    """
    cfg.validate()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise WmrlError(f"the env seed must be an integer, got {seed!r}", "pass an int such as 0")
    env = _make_base(cfg)
    try:
        env = _adapt_actions(env, cfg.id)
        env = _adapt_observation(env, cfg.id)
    except WmrlError:
        env.close()
        raise
    env = RequireFinite(env, cfg.id)
    if cfg.life_loss:
        env = LifeLossSignal(env)
    env = RecordEpisodeStatistics(env)
    # Outermost, so the first reset's seed reaches every wrapper and the base env.
    return SeedOnFirstReset(env, int(seed))


def env_spec(env: gym.Env) -> EnvSpec:
    """Shapes the networks need, read from an env built by ``make_env``."""
    obs, act = env.observation_space, env.action_space
    is_vector = isinstance(obs, spaces.Box) and len(obs.shape) == 1 and obs.dtype == np.float32
    is_image = isinstance(obs, spaces.Box) and len(obs.shape) == 3 and obs.dtype == np.uint8
    if not (is_vector or is_image):
        raise WmrlError(
            f"env_spec got observation space {obs}, which is not wmrl's float32 (D,) or uint8 (C, H, W)",
            "build the env with wmrl.envs.factory.make_env",
        )
    return EnvSpec(obs_shape=tuple(int(d) for d in obs.shape), is_image=is_image,
                   action=action_space_of(act, str(env.spec.id) if env.spec else "the env"))


def _make_base(cfg: EnvConfig) -> gym.Env:
    """The env before wmrl's conversions; backend-specific arguments are added here."""
    module, name = cfg.id.split(":", 1) if ":" in cfg.id else ("", cfg.id)
    if module:
        _import_user_module(module, cfg.id)
    if name.startswith("ALE/"):
        return _make_ale(name, cfg)
    if name.startswith("dmc/") or name == "CarRacing-v3":
        env = _make_continuous(name, cfg)
        return TimeLimit(env, cfg.episode_cap()) if cfg.episode_cap() else env
    if name.startswith("wmrl/"):
        from wmrl.envs import catch

        catch.register()
    kwargs: dict = {}
    if name.startswith("MinAtar/"):
        _register_minatar()
        kwargs["sticky_action_prob"] = cfg.sticky()
    if cfg.episode_cap():
        # gym.make replaces the registered limit instead of stacking a second TimeLimit on it.
        kwargs["max_episode_steps"] = cfg.episode_cap()
    if name.startswith("MinAtar/"):
        # MinAtar's v0 (all 6 actions) and v1 (minimal action set) are variants, not versions, but
        # Gymnasium calls v0 "out of date" because v1 exists; silence that misleading warning.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is out of date", category=DeprecationWarning)
            return _gym_make(name, cfg.id, **kwargs)
    return _gym_make(name, cfg.id, **kwargs)


def _make_ale(name: str, cfg: EnvConfig) -> gym.Env:
    try:
        import ale_py
    except ImportError as e:
        raise WmrlError(
            f"environment '{cfg.id}' needs the Arcade Learning Environment, but ale_py is not installed",
            "pip install ale-py (and opencv-python for frame resizing)",
        ) from e
    gym.register_envs(ale_py)
    # Frame skipping happens in AtariPreprocessing (which max-pools the last two frames), so the
    # emulator itself must not skip.
    # v5 ids use the minimal action set unless full_action_space=True is asked for (the protocols' choice).
    env = _gym_make(name, cfg.id, frameskip=1, repeat_action_probability=cfg.sticky())
    try:
        env = gym.wrappers.AtariPreprocessing(
            env,
            noop_max=cfg.noop_max,
            frame_skip=cfg.frame_skip,
            screen_size=cfg.image_size,
            grayscale_obs=False,
        )
    except gym.error.DependencyNotInstalled as e:
        env.close()
        raise WmrlError(
            "Atari preprocessing needs OpenCV to resize frames, but cv2 is not installed",
            "pip install opencv-python",
        ) from e
    if cfg.episode_cap():
        # Applied after frame skipping so the limit counts agent steps, not emulator frames.
        env = TimeLimit(env, cfg.episode_cap())
    return env


def _make_continuous(name: str, cfg: EnvConfig) -> gym.Env:
    """DMC tasks (envs/dmc.py) and CarRacing (envs/carracing.py): continuous-control envs whose frames
    wmrl sizes itself."""
    if name == "CarRacing-v3":
        from wmrl.envs.carracing import make_carracing

        return make_carracing(cfg.image_size)
    from wmrl.envs.dmc import make_dmc

    return make_dmc(name[len("dmc/"):], pixels=cfg.pixels, image_size=cfg.image_size,
                    action_repeat=cfg.action_repeat, fast_render=cfg.fast_render)


def _register_minatar() -> None:
    try:
        import minatar.gym
    except ImportError as e:
        raise WmrlError("MinAtar ids need the minatar package, which is not installed", "pip install minatar") from e
    # register_envs() warns about overriding if called twice, so only call it once per process.
    if "MinAtar/Breakout-v1" not in gym.registry:
        minatar.gym.register_envs()


def _is_run_dir(path: Path) -> bool:
    return (path / "config.yaml").is_file() and ((path / "checkpoints").is_dir() or (path / "metrics.jsonl").is_file())


def _import_user_module(module: str, env_id: str) -> None:
    """Import the module an env id names: this runs its code, with the user's permissions, so wmrl says
    which file it imports (on stderr) and refuses one inside a wmrl run directory (a shared or downloaded
    run must not be able to bring its own code: `python -m wmrl` puts the working directory on sys.path)."""
    if module not in sys.modules:
        try:
            spec = importlib.util.find_spec(module.split(".")[0])
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin not in (None, "built-in", "frozen"):
            origin = Path(spec.origin).resolve()
            inside = next((d for d in origin.parents if _is_run_dir(d)), None)
            if inside is not None:
                raise WmrlError(f"environment id '{env_id}' names module '{module}', found at {origin}, inside the wmrl "
                                f"run directory {inside}; wmrl does not import code from run directories",
                                "install the env's module as a package or run from another directory, "
                                "and import only code you trust")
            print(f"wmrl: importing {module} from {origin} for environment id '{env_id}' (this runs its code)",
                  file=sys.stderr)
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if module == missing or module.startswith(missing + "."):
            raise WmrlError(
                f"cannot import module '{module}' named in environment id '{env_id}'",
                "check the spelling; the module must be importable: installed, or on PYTHONPATH (the `wmrl` "
                "command does not search the working directory: run `PYTHONPATH=. wmrl ...` for "
                f"./{module.replace('.', '/')}.py)",
            ) from e
        raise WmrlError(
            f"module '{module}' named in environment id '{env_id}' imports '{missing}', which is not installed",
            f"pip install the package that provides '{missing}'",
        ) from e


def _gym_make(name: str, env_id: str, **kwargs) -> gym.Env:
    try:
        return gym.make(name, **kwargs)
    except gym.error.DependencyNotInstalled as e:
        raise WmrlError(f"environment '{env_id}' needs a package that is not installed: {e}", "pip install it") from e
    except gym.error.DeprecatedEnv as e:
        raise WmrlError(f"environment id '{env_id}' is deprecated: {e}", "use the version it suggests") from e
    except gym.error.Error as e:
        # Gymnasium reports unknown ids as UnregisteredEnv subclasses, or as a plain Error when a
        # namespace exists but the name does not; anything else is not ours to reword.
        if isinstance(e, gym.error.UnregisteredEnv) or str(e).startswith("No registered env"):
            raise WmrlError(f"unknown environment id '{env_id}' ({e})", _KNOWN_ID_HINT) from e
        raise


def _adapt_actions(env: gym.Env, env_id: str) -> gym.Env:
    """Discrete actions from 0 pass as they are; a 1-D Box with finite bounds becomes [-1, 1]^A, mapped
    affinely onto its bounds, with actions outside [-1, 1] clipped (a Gaussian policy's samples)."""
    space = env.action_space
    if isinstance(space, spaces.Discrete):
        if int(space.start) != 0:
            raise WmrlError(
                f"environment '{env_id}' has action space {space} starting at {space.start}, but wmrl "
                "policies output actions 0..n-1",
                "wrap the env in a gymnasium.ActionWrapper that adds the offset, registered as your own env",
            )
        return env
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)) and np.all(space.low < space.high)):
            raise WmrlError(
                f"environment '{env_id}' has Box actions {space} with infinite or empty bounds, which wmrl cannot "
                "map onto [-1, 1]",
                "register your own env that gives the action space finite bounds (low < high)",
            )
        if space.dtype != np.float32:
            env = gym.wrappers.TransformAction(
                env, lambda a: np.asarray(a, space.dtype),
                spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32), dtype=np.float32))
        ones = np.ones(space.shape, np.float32)  # float32 bounds: float64 ones make gymnasium warn of a cast
        env = gym.wrappers.RescaleAction(env, -ones, ones)
        # Clip on the outside (gymnasium's ClipAction would announce unbounded actions to the agent).
        unit = spaces.Box(-1.0, 1.0, space.shape, np.float32)
        return gym.wrappers.TransformAction(env, lambda a: np.clip(np.asarray(a, np.float32), -1.0, 1.0), unit)
    raise WmrlError(
        f"environment '{env_id}' has action space {space}, but wmrl supports Discrete actions and 1-D Box "
        "actions only",
        "use an env with a Discrete or a 1-D Box action space (e.g. CartPole-v1, Pendulum-v1), or register your "
        "own env that flattens its actions into one Box",
    )


def _adapt_observation(env: gym.Env, env_id: str) -> gym.Env:
    space = env.observation_space
    if isinstance(space, spaces.Box):
        if len(space.shape) == 1:
            # CartPole and most classic-control envs are float32 already: skip a no-op wrapper.
            return env if space.dtype == np.float32 else Float32Vector(env)
        if len(space.shape) == 3 and space.dtype == np.bool_:
            return ChannelFirstImage(env, binary=True)  # MinAtar-style (H, W, C) occupancy channels
        if len(space.shape) == 3 and space.dtype == np.uint8 and space.shape[2] in (1, 3):
            return ChannelFirstImage(env)
    raise WmrlError(
        f"environment '{env_id}' has observation space {space}, which wmrl cannot encode",
        "use a 1-D Box (vector), an (H, W, C) uint8 Box with C in {1, 3} (image), or a boolean (H, W, C) "
        "Box (MinAtar); convert other observations in a gymnasium.ObservationWrapper registered as your own env",
    )
