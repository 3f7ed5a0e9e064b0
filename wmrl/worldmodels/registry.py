"""Picks the world model named in the config."""

from __future__ import annotations

from typing import Any

from wmrl.nets.optim import OptimConfig
from wmrl.worldmodels.mdnrnn import MdnRnn
from wmrl.worldmodels.protocol import WorldModel
from wmrl.worldmodels.rssm import Rssm
from wmrl.worldmodels.storm import Storm


def build_world_model(name: str, cfgs: dict[str, Any], obs_shape: tuple[int, ...], is_image: bool,
                      num_actions: int) -> tuple[WorldModel, OptimConfig]:
    """The model and its optimiser settings; `cfgs` maps model names to their config sections."""
    classes = {"storm": Storm, "rssm": Rssm, "mdnrnn": MdnRnn}
    cfg = cfgs[name]
    return classes[name](cfg, obs_shape, is_image, num_actions), cfg.optim
