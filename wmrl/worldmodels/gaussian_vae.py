"""V of World Models: a VAE with a diagonal Gaussian latent (conv encoder for images, MLP for vectors,
both from nets/encoders.py).

KL to N(0, I) with World Models' "KL tolerance": each sample's summed KL below `free_nats_per_dim *
latent` is not penalised (CarRacing used 0.5 per dimension).
"""

from __future__ import annotations

import torch
from torch import nn

from wmrl.nets.encoders import EncoderConfig, make_decoder, make_encoder


class GaussianVAE(nn.Module):
    def __init__(self, obs_shape: tuple[int, ...], is_image: bool, cfg: EncoderConfig, latent: int):
        super().__init__()
        self.latent = latent
        self.encoder = make_encoder(obs_shape, is_image, cfg)
        self.stats = nn.Linear(self.encoder.out_dim, 2 * latent)
        self.decoder = make_decoder(latent, self.encoder, obs_shape, cfg)

    def encode(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., *obs_shape) -> mean, log_std (..., latent) of the posterior."""
        mean, log_std = self.stats(self.encoder(obs)).chunk(2, -1)
        return mean, log_std.clamp(-7.0, 3.0)

    @staticmethod
    def draw(mean: torch.Tensor, log_std: torch.Tensor, mode: bool = False) -> torch.Tensor:
        """A reparameterised sample (or the mean when `mode`)."""
        return mean if mode else mean + log_std.exp() * torch.randn_like(mean)

    def loss(self, obs: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, z: torch.Tensor,
             free_nats_per_dim: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample reconstruction error and KL (...,), the KL floored at free_nats_per_dim * latent."""
        recon = self.decoder.loss(self.decoder(z), obs)
        kl = 0.5 * (mean.float().pow(2) + (2 * log_std.float()).exp() - 1 - 2 * log_std.float()).sum(-1)
        return recon, kl.clamp(min=free_nats_per_dim * self.latent)

    def predict_obs(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder.to_obs(self.decoder(z))
