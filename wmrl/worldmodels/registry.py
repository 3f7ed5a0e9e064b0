"""Picks the world model named in the config."""

from __future__ import annotations

from typing import Any

from wmrl.envs.spaces import ActionSpace
from wmrl.nets.optim import OptimConfig
from wmrl.worldmodels.mdnrnn import MdnRnn
from wmrl.worldmodels.protocol import WorldModel
from wmrl.worldmodels.rssm import Rssm
from wmrl.worldmodels.storm import Storm


def build_world_model(name: str, cfg: Any, obs_shape: tuple[int, ...], is_image: bool,
                      action: ActionSpace) -> tuple[WorldModel, OptimConfig]:
    """The model `name` built from its config section `cfg`, and its optimiser settings."""
    classes = {"storm": Storm, "rssm": Rssm, "mdnrnn": MdnRnn}
    return classes[name](cfg, obs_shape, is_image, action), cfg.optim
