"""STORM's tokenizer: a categorical VAE that maps an observation to `stoch` one-hot variables.

Encoder: the shared observation encoder, then a linear map to (stoch, classes) logits with 1%
unimix; samples are one-hot with straight-through gradients. Decoder: the shared decoder from the
flattened one-hot latent back to the observation (MSE, summed over dimensions).
"""

from __future__ import annotations

import torch
from torch import nn

from wmrl.nets.categorical import unimix_logits
from wmrl.nets.encoders import EncoderConfig, make_decoder, make_encoder


class CategoricalVAE(nn.Module):
    def __init__(self, obs_shape: tuple[int, ...], is_image: bool, enc: EncoderConfig,
                 stoch: int, classes: int, unimix: float):
        super().__init__()
        self.stoch, self.classes, self.unimix = stoch, classes, unimix
        self.encoder = make_encoder(obs_shape, is_image, enc)
        self.to_logits = nn.Linear(self.encoder.out_dim, stoch * classes)
        self.decoder = make_decoder(stoch * classes, self.encoder, obs_shape, enc)

    @property
    def latent_dim(self) -> int:
        return self.stoch * self.classes

    def posterior(self, obs: torch.Tensor) -> torch.Tensor:
        """(..., *obs_shape) -> (..., stoch, classes) log-probabilities of the posterior."""
        logits = self.to_logits(self.encoder(obs))
        return unimix_logits(logits.reshape(*logits.shape[:-1], self.stoch, self.classes), self.unimix)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def recon_loss(self, z: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """(..., latent) and (..., *obs_shape) -> (...,) reconstruction loss."""
        return self.decoder.loss(self.decoder(z), obs)

    def to_obs(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder.to_obs(self.decoder(z))
