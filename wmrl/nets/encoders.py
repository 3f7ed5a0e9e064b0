"""Observation encoders and decoders shared by every world model.

Vectors are standardised per dimension (or symlog-squashed, as DreamerV3) and go through an MLP.
Images are uint8 (C, H, W); they are scaled to [0, 1] and go through stride-2 convolutions
(STORM / World Models: kernel 4, stride 2, padding 1, channels depth * 2**i). Decoders mirror the
encoders; their losses are summed over observation dimensions, like STORM's pixel-summed MSE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from wmrl.errors import WmrlError
from wmrl.nets.mlp import MLP
from wmrl.nets.normalize import RunningNorm
from wmrl.nets.twohot import symexp, symlog


VECTOR_SCALINGS = ("standardize", "symlog")


@dataclass
class EncoderConfig:
    depth: int = 32
    """Channels of the first conv layer (doubled at every stage)."""
    stages: int = 0
    """Stride-2 conv stages for images; 0 picks them from the frame size: halve until the feature map
    is at most 4 across (64x64: 4 stages, as STORM; 16x16: 2; MinAtar's 10x10: 2). A fixed count would
    shrink a 16x16 frame to 1x1, where a one-pixel object is averaged away."""
    object_weight: float = 10.0
    """Image reconstruction: each pixel's squared error is weighted by 1 + object_weight * d, where d is
    how far the target pixel lies from the batch's mean frame (largest channel difference, in [0, 1]).
    0 is STORM's plain summed MSE (a departure, see ImageDecoder.loss: with 0 a one-pixel ball was
    never reconstructed; with 10, in 100% of frames; benchmarks/results/small_objects.md)."""
    hidden: int = 256
    """Width of the MLP used for vector observations."""
    layers: int = 2
    """Hidden layers of the vector MLP."""
    vector_scaling: str = "standardize"
    """Vector inputs and reconstruction targets: "standardize" (running per-dimension mean and std, see
    nets/normalize.py) or "symlog" (DreamerV3)."""

    def validate(self, section: str = "encoder") -> None:
        if self.stages < 0:
            raise WmrlError(f"{section}.stages={self.stages} is negative", "use 0 (from the frame size) or a count")
        if not math.isfinite(self.object_weight) or self.object_weight < 0:
            raise WmrlError(f"{section}.object_weight={self.object_weight} must be a finite number >= 0",
                            "use 0 (plain MSE) or e.g. 10")
        if self.vector_scaling not in VECTOR_SCALINGS:
            raise WmrlError(f"{section}.vector_scaling={self.vector_scaling!r} is not known",
                            "use standardize or symlog")


def _conv_sizes(size: int, stages: int) -> list[int]:
    sizes = [size]
    for _ in range(stages):
        sizes.append((sizes[-1] + 2 - 4) // 2 + 1)
    return sizes


def auto_stages(height: int, width: int, most: int = 4) -> int:
    """Stride-2 stages that bring the smaller side of a frame down to at most `most` pixels."""
    size, stages = min(height, width), 0
    while size > most:
        size, stages = _conv_sizes(size, 1)[-1], stages + 1
    return max(stages, 1)


class _GroupNormAct(nn.Sequential):
    # GroupNorm(1) normalises each sample on its own. Departure from STORM's BatchNorm: acting runs one
    # frame at a time while training runs 1024, and per-sample normalisation behaves the same in both.
    def __init__(self, channels: int):
        super().__init__(nn.GroupNorm(1, channels), nn.SiLU())


class ImageEncoder(nn.Module):
    """(..., C, H, W) uint8 -> (..., out_dim) features."""

    def __init__(self, obs_shape: tuple[int, ...], cfg: EncoderConfig):
        super().__init__()
        channels, height, width = obs_shape
        stages = cfg.stages or auto_stages(height, width)
        self.heights, self.widths = _conv_sizes(height, stages), _conv_sizes(width, stages)
        if min(self.heights[-1], self.widths[-1]) < 1:
            raise ValueError(f"{stages} conv stages shrink a {height}x{width} image to nothing")
        layers: list[nn.Module] = []
        in_ch = channels
        for i in range(stages):
            out_ch = cfg.depth * 2**i
            layers += [nn.Conv2d(in_ch, out_ch, 4, 2, 1), _GroupNormAct(out_ch)]
            in_ch = out_ch
        self.net = nn.Sequential(*layers)
        self.out_shape = (in_ch, self.heights[-1], self.widths[-1])
        self.out_dim = math.prod(self.out_shape)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).float() / 255.0
        return self.net(x).reshape(*lead, self.out_dim)


class ImageDecoder(nn.Module):
    """(..., in_dim) features -> (..., C, H, W) image in [0, 1] units (mirror of ImageEncoder)."""

    def __init__(self, in_dim: int, encoder: ImageEncoder, channels: int, object_weight: float = 0.0):
        super().__init__()
        self.object_weight = object_weight
        self.encoder_shape = encoder.out_shape
        self.sizes = list(zip(encoder.heights, encoder.widths))[::-1]
        self.proj = nn.Linear(in_dim, encoder.out_dim)
        layers: list[nn.Module] = []
        in_ch = encoder.out_shape[0]
        stages = len(self.sizes) - 1
        for i in range(stages):
            last = i == stages - 1
            out_ch = channels if last else in_ch // 2
            layers.append(nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1))
            if not last:
                layers.append(_GroupNormAct(out_ch))
            in_ch = out_ch
        self.layers = nn.ModuleList(layers)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        lead = feat.shape[:-1]
        x = self.proj(feat.reshape(-1, feat.shape[-1])).reshape(-1, *self.encoder_shape)
        stage = 1
        for layer in self.layers:
            if isinstance(layer, nn.ConvTranspose2d):
                # output_size resolves the size ambiguity of odd inputs (e.g. MinAtar's 10 -> 5 -> 2).
                x = layer(x, output_size=self.sizes[stage])
                stage += 1
            else:
                x = layer(x)
        return x.reshape(*lead, *x.shape[1:])

    def loss(self, pred: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """(..., C, H, W) prediction and uint8 target -> (...,) squared error summed over pixels, each
        pixel weighted by 1 + object_weight * (its distance from the batch's mean frame).

        With plain MSE a one-pixel object that moves is worth a few units of loss in a frame whose
        background is learned at once, and the tokenizer settles on frames without it (a 16x16 catch
        env: the reconstructions kept the paddle and never the ball; benchmarks/results/small_objects.md).
        The batch's mean frame is the static background; what moves differs from it and is weighted
        up. The weights are statistics of the targets only (no gradient, no state)."""
        target = obs.float() / 255.0
        err = (pred.float() - target).pow(2)
        if self.object_weight:
            frames = target.reshape(-1, *target.shape[-3:])  # (N, C, H, W)
            distance = (target - frames.mean(0)).abs().amax(-3, keepdim=True)  # (..., 1, H, W)
            err = err * (1 + self.object_weight * distance)
        return err.sum((-3, -2, -1))

    @staticmethod
    def to_obs(pred: torch.Tensor) -> torch.Tensor:
        return (pred.float().clamp(0, 1) * 255.0).round().to(torch.uint8)


class Symlog(nn.Module):
    """DreamerV3's scaling of vector inputs and targets: symlog, no statistics."""

    def update(self, x: torch.Tensor) -> None:
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return symlog(x.float())

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return symexp(y.float())


class VectorEncoder(nn.Module):
    """(..., D) float -> (..., hidden) features of the scaled observation (see EncoderConfig.vector_scaling)."""

    def __init__(self, obs_shape: tuple[int, ...], cfg: EncoderConfig):
        super().__init__()
        self.scale = RunningNorm(obs_shape[0]) if cfg.vector_scaling == "standardize" else Symlog()
        self.net = MLP(obs_shape[0], 0, cfg.hidden, cfg.layers)
        self.out_dim = self.net.out_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.scale.update(obs)
        return self.net(self.scale(obs))


class VectorDecoder(nn.Module):
    """(..., in_dim) -> (..., D) prediction in the encoder's scaled space (targets share its statistics)."""

    def __init__(self, in_dim: int, encoder: VectorEncoder, obs_dim: int, cfg: EncoderConfig):
        super().__init__()
        self.scale = encoder.scale  # shared module: the same statistics, saved under both names
        self.net = MLP(in_dim, obs_dim, cfg.hidden, cfg.layers)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat)

    def loss(self, pred: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """(..., D) prediction and raw observation -> (...,) squared error summed over dimensions."""
        return (pred.float() - self.scale(obs)).pow(2).sum(-1)

    def to_obs(self, pred: torch.Tensor) -> torch.Tensor:
        return self.scale.inverse(pred)


def make_encoder(obs_shape: tuple[int, ...], is_image: bool, cfg: EncoderConfig) -> nn.Module:
    return ImageEncoder(obs_shape, cfg) if is_image else VectorEncoder(obs_shape, cfg)


def make_decoder(in_dim: int, encoder: nn.Module, obs_shape: tuple[int, ...], cfg: EncoderConfig) -> nn.Module:
    if isinstance(encoder, ImageEncoder):
        return ImageDecoder(in_dim, encoder, obs_shape[0], cfg.object_weight)
    return VectorDecoder(in_dim, encoder, obs_shape[0], cfg)
