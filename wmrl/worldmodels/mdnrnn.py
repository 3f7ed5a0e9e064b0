"""Ha & Schmidhuber's V + M (World Models, 2018) behind the world-model protocol: a Gaussian VAE (V)
compresses each observation to z, and an MDN-RNN (M: an LSTM with a mixture-density head) predicts
the next z, the reward and the termination from the history of z and actions.

Alignment (the same as STORM's and the RSSM's, see protocol.py):

    (h_t, c_t) = 0 if is_first_t else LSTM([z_t-1, onehot(a_t-1)], (h_t-1, c_t-1))
    z_t ~ V(obs_t)                                   the agent's features at step t: [z_t, h_t]
    g_t = LSTM output after [z_t, onehot(a_t)]       predicts z_t+1 (mixture), reward_t, terminal_t

Imagination samples z_t+1 from the mixture at `temperature` (nets/mdn.py).

Training (`training`):
- "staged", as in the paper: the first `vae_updates` updates train V alone (reconstruction + KL); then
  V is frozen and M learns on V's samples (mixture NLL of z_t+1, reward, termination).
- "joint": both at every update, and M's losses also reach V through M's inputs (its targets z_t+1
  are held fixed), so V can learn what matters for reward, not only what is visible.
Behaviours that learn in imagination wait until M trains (`ready_to_imagine`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from wmrl.envs.spaces import ActionSpace
from wmrl.errors import WmrlError, require_positive
from wmrl.nets.mdn import MixtureDensityHead
from wmrl.worldmodels.gaussian_vae import GaussianVAE
from wmrl.worldmodels.model_config import WorldModelConfig
from wmrl.worldmodels.outcome_heads import OutcomeHeads
from wmrl.worldmodels.protocol import Policy, Rollout, WorldModel, next_actions, total_loss

TRAINING = ("staged", "joint")


@dataclass
class MdnRnnConfig(WorldModelConfig):
    latent: int = 32
    """Size of V's Gaussian latent z (World Models: 32 for CarRacing, 64 for Doom)."""
    hidden: int = 256
    """LSTM size (256 CarRacing, 512 Doom)."""
    mixtures: int = 5
    """Gaussian components per latent dimension."""
    temperature: float = 1.0
    """Dream temperature: divides the mixture logits and scales sigma by sqrt(temperature)."""
    free_nats_per_dim: float = 0.5
    """V's KL tolerance per latent dimension."""
    training: str = "staged"
    """staged (V, then M with V frozen) or joint (see the module docstring)."""
    vae_updates: int = 1000
    """staged: updates of V alone before M starts."""
    burn_in: int = 32
    """Real steps the LSTM observes before an imagination start's context, so a start state has forgotten
    its zero start as the acting state has. On CartPole an 8-step start differed from the acting state by
    0.37 in value and in 5% of greedy actions; after 32 steps by nothing measurable
    (benchmarks/results/session9_rssm_burn_in.md)."""

    def validate(self, section: str) -> None:
        super().validate(section)
        require_positive(section, self, "latent", "hidden", "mixtures", "temperature")
        if self.training not in TRAINING:
            raise WmrlError(f"{section}.training={self.training!r} is not known", "use staged or joint")
        if self.free_nats_per_dim < 0 or self.vae_updates < 0:
            raise WmrlError(f"{section}.free_nats_per_dim and {section}.vae_updates must be >= 0",
                            "use e.g. free_nats_per_dim=0.5 vae_updates=1000")


@dataclass
class MdnRnnState:
    """h, c: (B, hidden) LSTM state at the current step (zero at an episode start);
    z: (B, latent) the current latent, None before the first observe."""

    h: torch.Tensor
    c: torch.Tensor
    z: torch.Tensor | None

    def select(self, idx: torch.Tensor) -> "MdnRnnState":
        return MdnRnnState(self.h[idx], self.c[idx], self.z[idx] if self.z is not None else None)


class MdnRnn(WorldModel):
    def __init__(self, cfg: MdnRnnConfig, obs_shape: tuple[int, ...], is_image: bool, action: ActionSpace):
        super().__init__()
        self.cfg, self.action = cfg, action
        self.vae = GaussianVAE(obs_shape, is_image, cfg.encoder, cfg.latent)
        self.lstm = nn.LSTMCell(cfg.latent + action.input_dim, cfg.hidden)
        self.mdn = MixtureDensityHead(cfg.hidden, cfg.latent, cfg.mixtures)
        self.heads = OutcomeHeads(cfg.hidden, cfg.head_hidden, cfg.head_layers, cfg.reward_bins)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.latent_dim, self.feat_dim = cfg.latent, cfg.latent + cfg.hidden

    @property
    def staged_v_phase(self) -> bool:
        return self.cfg.training == "staged" and int(self.updates) < self.cfg.vae_updates

    @property
    def ready_to_imagine(self) -> bool:
        return not self.staged_v_phase

    def _step(self, state: MdnRnnState, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The LSTM after [z, onehot(action)]: (h, c), each (B, hidden)."""
        x = torch.cat([state.z, self.action.encode(action, state.z.dtype)], -1)
        return self.lstm(x, (state.h, state.c))

    def _scan(self, z: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor
              ) -> tuple[torch.Tensor, MdnRnnState]:
        """z (B, T, latent), action (B, T), is_first (B, T) -> g (B, T, hidden), the LSTM output after
        each step's action, and the state at the last step (before its action)."""
        B, T = is_first.shape
        zero = z.new_zeros(B, self.cfg.hidden)
        h, c, gs = zero, zero, []
        for t in range(T):
            keep = (~is_first[:, t, None]).to(z.dtype)
            state = MdnRnnState(h * keep, c * keep, z[:, t])
            h, c = self._step(state, action[:, t])
            gs.append(h)
        return torch.stack(gs, 1), state

    # ----------------------------------------------------------------------------- protocol
    def initial(self, batch: int) -> MdnRnnState:
        zero = torch.zeros(batch, self.cfg.hidden, device=self.updates.device)
        return MdnRnnState(zero, zero.clone(), None)

    def features(self, state: MdnRnnState) -> torch.Tensor:
        return torch.cat([state.z, state.h], -1)

    def observe(self, state, obs, prev_action, is_first):
        h, c = (state.h, state.c) if state.z is None else self._step(state, prev_action)
        keep = (~is_first[:, None]).to(h.dtype)
        z = GaussianVAE.draw(*self.vae.encode(obs), mode=self.deterministic)
        new = MdnRnnState(h * keep, c * keep, z.to(h.dtype))
        return new, self.features(new)

    def observe_sequence(self, obs, action, is_first):
        z = GaussianVAE.draw(*self.vae.encode(obs), mode=self.deterministic)
        _, state = self._scan(z, action, is_first)
        return state

    def imagine(self, state: MdnRnnState, policy: Policy | torch.Tensor, horizon: int) -> Rollout:
        feats, actions, gs = [self.features(state)], [], []
        for t in range(horizon):
            a = next_actions(policy, feats[-1], t)
            h, c = self._step(state, a)
            z = self.mdn(h).sample(self.cfg.temperature, self.deterministic).to(h.dtype)
            state = MdnRnnState(h, c, z)
            actions.append(a)
            gs.append(h)
            feats.append(self.features(state))
        reward, cont = self.heads.predict(torch.stack(gs, 1))
        return Rollout(torch.stack(feats, 1), torch.stack(actions, 1), reward, cont)

    def loss(self, batch):
        obs, action, is_first = batch["obs"], batch["action"], batch["is_first"]
        metrics: dict[str, float] = {}
        joint = self.cfg.training == "joint"
        train_v, train_m = joint or self.staged_v_phase, joint or not self.staged_v_phase
        if self.training:
            self.updates += 1
        per_step, extra = {}, torch.zeros((), device=self.updates.device)
        if train_v:
            mean, log_std = self.vae.encode(obs)
            z = GaussianVAE.draw(mean, log_std)
            recon, kl = self.vae.loss(obs, mean, log_std, z, self.cfg.free_nats_per_dim)
            per_step.update(recon=recon, kl=kl)
        else:  # staged, M phase: V is frozen
            with torch.no_grad():
                self.vae.eval()
                z = GaussianVAE.draw(*self.vae.encode(obs))
        if train_m:
            g, _ = self._scan(z, action, is_first)
            # NLL of z_t+1 from g_t, per latent dimension, where t+1 continues t's episode.
            valid = (~is_first[:, 1:]).float()
            nll = -self.mdn(g[:, :-1]).log_prob(z[:, 1:].detach()) / self.cfg.latent
            extra = (nll * valid).sum() / valid.sum().clamp(min=1)
            metrics["wm/mdn_nll"] = extra.item()
            per_step["reward"], per_step["terminal"] = self.heads.loss(g, batch["reward"], batch["terminal"])
        return total_loss(per_step, extra, metrics)

    def predict_obs(self, feat: torch.Tensor) -> torch.Tensor:
        return self.vae.predict_obs(feat[..., :self.latent_dim])
