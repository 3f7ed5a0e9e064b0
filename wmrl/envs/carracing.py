"""CarRacing, the World Models benchmark (Ha & Schmidhuber 2018), as Gymnasium's ``CarRacing-v3``.

The env draws 96x96 RGB top-down frames and takes 3 continuous actions, steer in [-1, 1], gas and brake
in [0, 1]; an episode is capped at 1000 steps (Gymnasium's registration) and ends earlier when every
track tile is visited or the car leaves the playfield. "Solved" is 900 averaged over 100 trials
(protocols.md, CarRacing).

Deliberate departure: World Models' own code cropped the dashboard (the bottom 12 rows) before resizing to
64x64; here the whole frame is resized, so the speed and ABS bars stay in view (matching the original means
cropping rows 0:84 of the raw frame before the resize).
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium.error import DependencyNotInstalled
from gymnasium.wrappers import ResizeObservation

from wmrl.errors import WmrlError

_INSTALL_FIX = "pip install -e '.[box2d]'"


def make_carracing(image_size: int = 64) -> gym.Env:
    """Build CarRacing-v3 with frames resized to ``(image_size, image_size, 3)`` uint8 RGB.

    Args:
        image_size: side of the square frame (World Models: 64; 96 keeps the native frame).

    Returns:
        The env, continuous actions as its own float32 Box ``(3,)`` (low [-1, 0, 0], high [1, 1, 1]).
    """
    if image_size < 1:
        raise WmrlError(f"image_size={image_size} must be positive", "pass image_size=64, as World Models")
    try:
        env = gym.make("CarRacing-v3")
        if image_size != 96:
            # Gymnasium's resize uses OpenCV's area filter, the right one for downscaling; it needs cv2,
            # which the box2d extra installs.
            env = ResizeObservation(env, (image_size, image_size))
    except (ImportError, DependencyNotInstalled) as e:
        raise WmrlError(f"CarRacing needs box2d, pygame-ce and opencv, one of which is missing ({e})",
                        _INSTALL_FIX) from e
    return env
