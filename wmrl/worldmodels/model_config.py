"""Config fields shared by the world models, so each model's dataclass only adds its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from wmrl.errors import WmrlError, require_positive
from wmrl.nets.encoders import EncoderConfig
from wmrl.nets.optim import OptimConfig


@dataclass
class WorldModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    head_hidden: int = 512
    """Width of the reward and termination heads (and of STORM's prior head)."""
    head_layers: int = 1
    """Hidden layers of the reward and termination heads (STORM's code: more; see the README's departures)."""
    reward_bins: int = 255
    """Bins of the symlog two-hot reward head (DreamerV3, STORM: 255 in [-20, 20])."""
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, eps=1e-8, clip=1000.0))
    burn_in: int = 0
    """Extra real steps the model observes before each imagination start's context (see
    WorldModel.start_length)."""

    def start_length(self, context: int) -> int:
        """Replay rows an imagination start is observed over, for a behaviour that asks for `context`."""
        return self.burn_in + context

    def validate(self, section: str) -> None:
        """Raise a WmrlError for a bad field; `section` is the config key (e.g. "rssm") for the message."""
        require_positive(section, self, "head_hidden", "head_layers", "reward_bins")
        if self.burn_in < 0:
            raise WmrlError(f"{section}.burn_in={self.burn_in} is negative", "use 0 or more real steps")
        require_positive(f"{section}.optim", self.optim, "lr")
        self.encoder.validate(f"{section}.encoder")


@dataclass
class CategoricalLatentConfig(WorldModelConfig):
    """Models whose latent is `stoch` categorical variables (STORM, DreamerV3's RSSM)."""

    stoch: int = 32
    """Categorical latent variables per observation."""
    classes: int = 32
    """Classes per latent variable."""
    unimix: float = 0.01
    """Share of the uniform distribution mixed into every categorical latent (DreamerV3: 1%)."""
    kl_dyn: float = 0.5
    """Weight of KL(sg(posterior) || prior), which trains the dynamics."""
    kl_rep: float = 0.1
    """Weight of KL(posterior || sg(prior)), which trains the representation."""
    free_bits: float = 1.0
    """Each sample's KL below this many nats is not penalised (applied per sample, not to the batch mean)."""

    def validate(self, section: str) -> None:
        super().validate(section)
        require_positive(section, self, "stoch", "classes")
