"""Small instances of every world model and fake replay batches, shared by the contract tests."""

from __future__ import annotations

import torch

from wmrl.envs.spaces import ActionSpace
from wmrl.nets.encoders import EncoderConfig
from wmrl.worldmodels.mdnrnn import MdnRnn, MdnRnnConfig
from wmrl.worldmodels.protocol import WorldModel
from wmrl.worldmodels.rssm import Rssm, RssmConfig
from wmrl.worldmodels.storm import Storm, StormConfig
from wmrl.worldmodels.storm_transformer import TransformerConfig

OBS = {"vector": ((4,), False), "minatar": ((4, 10, 10), True), "rgb": ((3, 16, 16), True)}
MODELS = ("storm", "rssm", "mdnrnn")


def make_model(name: str, kind: str = "vector", actions: int | ActionSpace = 3, context: int = 16, history: int = 8
               ) -> WorldModel:
    """A small `name` model; `actions`: a number of discrete actions, or an action space."""
    torch.manual_seed(0)
    if not isinstance(actions, ActionSpace):
        actions = ActionSpace.discrete(actions)
    shape, is_image = OBS[kind]
    encoder = EncoderConfig(depth=4, stages=2, hidden=32, layers=1)
    if name == "mdnrnn":  # joint training: every parameter learns from the first update
        cfg = MdnRnnConfig(latent=6, hidden=24, mixtures=3, head_hidden=32, encoder=encoder, training="joint")
        return MdnRnn(cfg, shape, is_image, actions).eval()
    common = dict(stoch=4, classes=5, head_hidden=32, encoder=encoder)
    if name == "storm":
        tf = TransformerConfig(layers=2, width=32, heads=2, ffn=64, context=context)
        return Storm(StormConfig(transformer=tf, history=history, **common), shape, is_image, actions).eval()
    if name == "rssm":
        return Rssm(RssmConfig(deter=24, hidden=32, **common), shape, is_image, actions).eval()
    raise ValueError(name)


def fake_obs(kind: str, *lead: int) -> torch.Tensor:
    shape, is_image = OBS[kind]
    if is_image:
        return torch.randint(0, 256, (*lead, *shape), dtype=torch.uint8)
    return torch.randn(*lead, *shape)


def batch(kind: str, B: int = 3, T: int = 10, actions: int = 3) -> dict:
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    first[1, 4] = True
    return {"obs": fake_obs(kind, B, T), "action": torch.randint(0, actions, (B, T)), "reward": torch.randn(B, T),
            "terminal": torch.rand(B, T) < 0.1, "is_first": first}
