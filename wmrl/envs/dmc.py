"""DeepMind Control Suite tasks as Gymnasium envs: ``make_dmc("cartpole-swingup", pixels=True)``.

shimmy's ``DmControlCompatibilityV0`` does the dm_env -> Gymnasium translation (reset/step, seeding the
task's RandomState on ``reset(seed=...)``, ``truncated`` for DMC's time limit since its last discount is 1).
What it lacks, and this module adds, is what the world-model papers feed their agents (protocols.md, DMC):
  * proprio: the observation dict flattened into one float32 vector ``(D,)``;
  * pixels: a uint8 ``(S, S, 3)`` frame from the task's standard camera instead of the dict;
  * action repeat, with rewards summed and one frame rendered per agent step (rendering costs ~100x a
    physics step in software, so frames inside a repeat are never drawn);
  * a float32 action space (dm_control's specs are float64).

Every task of the suite runs 1000 physics steps per episode (so 1000 / action_repeat agent steps, rounded
up) and never terminates: the last step has ``truncated=True, terminated=False``.

Proprio keys are concatenated in dm_control's observation-spec order (the order each task's
``get_observation`` builds its dict; ``env.keys`` lists ``(key, size)`` pairs), for example
  cartpole    position(3) velocity(2)                 -> D=5
  reacher     position(2) to_target(2) velocity(2)    -> D=6
  cheetah     position(8) velocity(9)                 -> D=17
  finger-spin position(4) velocity(3) touch(2)        -> D=9
  walker      orientations(14) height(1) velocity(9)  -> D=24
  cup         position(4) velocity(4)                 -> D=8
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from wmrl.errors import WmrlError

# dm_control's one domain whose name has underscores that users shorten (PlaNet, Dreamer: "cup_catch").
DOMAIN_ALIASES = {"cup": "ball_in_cup"}
# Camera 0 everywhere except quadruped, whose camera 0 does not follow the body (Dreamer's wrapper uses 2).
DEFAULT_CAMERAS = {"quadruped": 2}
_INSTALL_FIX = "pip install -e '.[dmc]'"


def _import_backend() -> tuple[Any, Any]:
    """Import dm_control's suite and shimmy's wrapper, choosing the GL backend first.

    dm_control reads ``MUJOCO_GL`` once, on import; EGL renders headless here (software, no display and
    no extra system packages). A user's own choice (osmesa, glfw) is kept.
    """
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        from dm_control import suite
        from shimmy.dm_control_compatibility import DmControlCompatibilityV0
    except ImportError as e:
        raise WmrlError(f"DMC tasks need dm_control, mujoco and shimmy, which failed to import ({e})",
                        _INSTALL_FIX) from e
    return suite, DmControlCompatibilityV0


def _task_names(suite: Any) -> list[str]:
    inverse = {v: k for k, v in DOMAIN_ALIASES.items()}
    return sorted(f"{inverse.get(d, d)}-{t}" for d, t in suite.ALL_TASKS)


def _split_task(task: str, suite: Any) -> tuple[str, str]:
    """"cup-catch" -> ("ball_in_cup", "catch"); the full domain name works too."""
    domain, _, name = task.partition("-")
    domain = DOMAIN_ALIASES.get(domain, domain)
    if (domain, name) not in suite.ALL_TASKS:
        raise WmrlError(f"unknown DMC task '{task}' (write it as domain-task)",
                        "use one of: " + ", ".join(_task_names(suite)))
    return domain, name


class ActionRepeat(gym.Wrapper):
    """Applies each action ``repeat`` times and sums the rewards, stopping early when the episode ends.

    Also declares the action space float32 (the values are passed to the env unchanged; MuJoCo copies them
    into its float64 controls).
    """

    def __init__(self, env: gym.Env, repeat: int):
        super().__init__(env)
        self.repeat = repeat
        space = env.action_space
        assert isinstance(space, spaces.Box), space
        self.action_space = spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32),
                                       shape=space.shape, dtype=np.float32)

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


class FlattenProprio(gym.ObservationWrapper):
    """The observation dict as one float32 vector ``(D,)``, keys in the env's observation-spec order."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        # The order comes from dm_control's own spec (an OrderedDict): shimmy's gymnasium Dict space sorts
        # its keys alphabetically, which would reorder e.g. walker's vector against the papers' layout.
        spec = env.unwrapped.observation_spec()
        # Scalars (walker's height) have shape (); int(np.prod(())) == 1 makes them one entry.
        self.keys: tuple[tuple[str, int], ...] = tuple((k, int(np.prod(a.shape))) for k, a in spec.items())
        D = sum(size for _, size in self.keys)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(D,), dtype=np.float32)

    def observation(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(observation[k], dtype=np.float32).reshape(-1)
                               for k, _ in self.keys])  # (D,)


class RenderPixels(gym.ObservationWrapper):
    """Replaces the observation dict with a uint8 ``(S, S, 3)`` frame of the physics after the step.

    Sits outside ``ActionRepeat`` so only the frame the agent sees is rendered. ``fast_render`` switches
    off shadows and reflections in the model (about 4x faster in software rendering; the frames then
    differ from the papers', which rendered with them).
    """

    def __init__(self, env: gym.Env, size: int, camera: int, fast_render: bool = False):
        super().__init__(env)
        self.size, self.camera = size, camera
        # shimmy forwards unknown attributes to the dm_control env; a suite task keeps one Physics for
        # its lifetime (resets rewrite its state, never recompile the model), so a reference stays valid.
        self._physics = env.unwrapped.physics
        ncam = self._physics.model.ncam
        if not 0 <= camera < ncam:
            raise WmrlError(f"camera {camera} does not exist in this task, which has cameras 0..{ncam - 1}",
                            "pass camera=None for the task's standard camera, or an index in range")
        if fast_render:
            self._physics.model.light_castshadow[:] = 0
            self._physics.model.mat_reflectance[:] = 0
        self.observation_space = spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8)
        try:
            self._render()
        except Exception as e:  # noqa: BLE001 - any GL failure means the same fix
            raise WmrlError(f"MuJoCo could not render with MUJOCO_GL={os.environ.get('MUJOCO_GL')} ({e})",
                            "unset MUJOCO_GL (wmrl then uses egl) or set MUJOCO_GL=osmesa; "
                            "or use pixels=False") from e

    def _render(self) -> np.ndarray:
        return self._physics.render(height=self.size, width=self.size, camera_id=self.camera)  # (S, S, 3)

    def observation(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        return self._render()


def make_dmc(
    task: str,
    *,
    pixels: bool,
    image_size: int = 64,
    action_repeat: int = 1,
    camera: int | None = None,
    fast_render: bool = False,
) -> gym.Env:
    """Build a DMC task as a Gymnasium env.

    Args:
        task: "domain-task", e.g. "cartpole-swingup", "walker-walk", "cup-catch" (ball_in_cup).
        pixels: observe uint8 frames ``(image_size, image_size, 3)`` instead of the float32 proprio
            vector ``(D,)``.
        image_size: side of the square frame (pixels only; the papers use 64).
        action_repeat: physics steps per agent step, rewards summed (PlaNet: 2-8 by task, Dreamer: 2,
            DreamerV3: 1).
        camera: camera index for pixels; None is the standard one (2 for quadruped, else 0).
        fast_render: pixels only: no shadows or reflections, ~4x faster software rendering.

    Returns:
        The env; ``reset(seed=s)`` seeds the task's initial state, so equal seeds give equal first
        observations. The action space is the task's own Box as float32.
    """
    if action_repeat < 1:
        raise WmrlError(f"action_repeat={action_repeat} must be at least 1", "pass action_repeat >= 1")
    if pixels and image_size < 1:
        raise WmrlError(f"image_size={image_size} must be positive", "pass image_size=64, as the papers")
    suite, Compat = _import_backend()
    domain, name = _split_task(task, suite)
    env: gym.Env = Compat(suite.load(domain, name))
    env = ActionRepeat(env, action_repeat)
    if pixels:
        return RenderPixels(env, image_size, DEFAULT_CAMERAS.get(domain, 0) if camera is None else camera,
                            fast_render)
    return FlattenProprio(env)
