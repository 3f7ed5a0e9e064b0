"""DreamerV3's recurrent state-space model (RSSM) behind the world-model protocol.

Alignment (the same as STORM's, see protocol.py):

    h_t   = h0 if is_first_t else g_t                   deterministic state before obs_t (h0 learned)
    z_t   ~ posterior(h_t, embed(obs_t))                 categorical, stoch x classes, 1% unimix
    g_t+1 = GRU(h_t, MLP([z_t, enc(a_t)]))               the state after action a_t (one-hot or Box vector)
    g_t+1 predicts prior(z_t+1); [z_t+1, g_t+1] predicts reward_t and terminal_t (the results of a_t)
    agent features at step t: feat_t = [z_t, h_t];  the decoder reconstructs obs_t from feat_t

As in DreamerV3 the reward and continuation heads read the whole next state [z, h], and the state of
an episode start is learned (h0 = tanh(w)) rather than zero. In training z_t+1 is the posterior of
obs_t+1 where row t+1 continues the episode; where it does not (a terminal or truncated step, or the
window's last row) obs_t+1 is not in the batch and z_t+1 is a sample of the prior, as in imagination.
The prior at an episode start is prior(h0), so every step has a KL term. Losses: decoder error
(summed over dimensions, symlog or standardised vectors, [0, 1] pixels), two-hot symlog reward,
termination cross-entropy, and KL balancing with per-sample free bits (nets/categorical.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from wmrl.envs.spaces import ActionSpace
from wmrl.errors import WmrlError, require_positive
from wmrl.nets.categorical import balanced_kl, draw, unimix_logits
from wmrl.nets.encoders import make_decoder, make_encoder
from wmrl.nets.gru import LayerNormGRUCell
from wmrl.nets.mlp import MLP
from wmrl.worldmodels.model_config import CategoricalLatentConfig
from wmrl.worldmodels.outcome_heads import OutcomeHeads
from wmrl.worldmodels.protocol import Policy, Rollout, WorldModel, next_actions, total_loss


IMAGINE_FROM = ("replay", "loss")


@dataclass
class RssmConfig(CategoricalLatentConfig):
    deter: int = 512
    """Size of the GRU state h."""
    hidden: int = 512
    """Width of the MLPs inside the RSSM (input to the GRU, prior and posterior)."""
    burn_in: int = 32
    """The GRU state started from zeros takes tens of real steps to forget the start: on CartPole, the
    critic's value of a state filtered over the last 8 steps differed from the same state filtered over
    the whole episode by 27 on average, over 32 steps by 4, over 64 by 0.6 (benchmarks/results/
    session9_rssm_burn_in.md). 32 costs 38% more per CartPole update, 64 costs 79%."""

    imagine_from: str = "replay"
    """Where imagination starts come from. replay: windows of their own, burn_in + the behaviour's context
    rows, filtered apart from the world-model batch (on CartPole 128 windows of 40 rows, 36% of an
    update). loss: the posterior states the world-model loss has filtered anyway, at the last rows of
    each training sequence (DreamerV3 starts from every row of its batch), each filtered over at least
    burn_in rows; it needs train.wm_seq >= burn_in + imag_batch / wm_batch."""

    def validate(self, section: str) -> None:
        super().validate(section)
        require_positive(section, self, "deter", "hidden")
        if self.imagine_from not in IMAGINE_FROM:
            raise WmrlError(f"{section}.imagine_from={self.imagine_from!r} is not known", "use replay or loss")


@dataclass
class RssmState:
    """h: (B, deter) deterministic state at the current step (after the reset of an episode start);
    z: (B, stoch * classes) the current latent, None before the first observe."""

    h: torch.Tensor
    z: torch.Tensor | None

    def select(self, idx: torch.Tensor) -> "RssmState":
        """The batch rows idx (K,) of this state (see WorldModel.select)."""
        return RssmState(self.h[idx], self.z[idx] if self.z is not None else None)


class Rssm(WorldModel):
    def __init__(self, cfg: RssmConfig, obs_shape: tuple[int, ...], is_image: bool, action: ActionSpace):
        super().__init__()
        self.cfg, self.action = cfg, action
        latent = cfg.stoch * cfg.classes
        self.encoder = make_encoder(obs_shape, is_image, cfg.encoder)
        self.gru_in = MLP(latent + action.input_dim, 0, cfg.hidden, 1)
        self.gru = LayerNormGRUCell(cfg.hidden, cfg.deter)
        self.prior_head = MLP(cfg.deter, latent, cfg.hidden, 1)
        self.posterior_head = MLP(cfg.deter + self.encoder.out_dim, latent, cfg.hidden, 1)
        self.decoder = make_decoder(latent + cfg.deter, self.encoder, obs_shape, cfg.encoder)
        self.heads = OutcomeHeads(latent + cfg.deter, cfg.head_hidden, cfg.head_layers, cfg.reward_bins)
        self.initial_weight = nn.Parameter(torch.zeros(cfg.deter))  # h0 = tanh(w): DreamerV3's learned start
        self.latent_dim, self.feat_dim = latent, latent + cfg.deter

    # ----------------------------------------------------------------------------- steps
    def _categorical(self, logits: torch.Tensor) -> torch.Tensor:
        return unimix_logits(logits.reshape(*logits.shape[:-1], self.cfg.stoch, self.cfg.classes), self.cfg.unimix)

    def _transition(self, h: torch.Tensor, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(B, deter), (B, latent), (B,) -> g: (B, deter), the state after the action."""
        x = self.gru_in(torch.cat([z, self.action.encode(action, z.dtype)], -1))
        return self.gru(x, h)

    def _posterior(self, h: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
        return self._categorical(self.posterior_head(torch.cat([h, embed], -1)))

    def _scan(self, state: RssmState, embed: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor,
              prev: torch.Tensor, training: bool = False) -> tuple[dict[str, torch.Tensor], RssmState]:
        """Filter a sequence: embed (B, T, E), action (B, T) taken at each step, is_first (B, T).

        `prev` (B,) is the action before the first step. Returns the state at the last step and (B, T, ...)
        tensors h (after resets), post (log-probs) and z; when `training` also g, the state after each
        step's action (the last one computed from action[:, -1]), and latents are always sampled.
        """
        h, z = state.h, state.z
        out: dict[str, list[torch.Tensor]] = {"h": [], "post": [], "z": [], "g": []}
        for t in range(embed.shape[1]):
            if z is not None:
                h = self._transition(h, z, prev)
                if training and t > 0:
                    out["g"].append(h)
            h = torch.where(is_first[:, t, None], self._h0().to(h.dtype).expand_as(h), h)
            post = self._posterior(h, embed[:, t])
            z = draw(post, mode=self.deterministic and not training)
            prev = action[:, t]
            for key, value in (("h", h), ("post", post), ("z", z)):
                out[key].append(value)
        if training:
            out["g"].append(self._transition(h, z, prev))
        return {k: torch.stack(v, 1) for k, v in out.items() if v}, RssmState(h, z)

    def _h0(self) -> torch.Tensor:
        """(deter,) the learned deterministic state at an episode start."""
        return torch.tanh(self.initial_weight)

    # ----------------------------------------------------------------------------- protocol
    def initial(self, batch: int) -> RssmState:
        return RssmState(self._h0().expand(batch, -1), None)

    def features(self, state: RssmState) -> torch.Tensor:
        return torch.cat([state.z, state.h], -1)

    def observe(self, state, obs, prev_action, is_first):
        _, new = self._scan(state, self.encoder(obs)[:, None], prev_action[:, None], is_first[:, None],
                            prev_action)
        return new, self.features(new)

    def observe_sequence(self, obs, action, is_first):
        B = is_first.shape[0]
        _, state = self._scan(self.initial(B), self.encoder(obs), action, is_first, torch.zeros_like(action[:, 0]))
        return state

    def imagine(self, state: RssmState, policy: Policy | torch.Tensor, horizon: int) -> Rollout:
        h, z = state.h, state.z
        feats, actions = [self.features(state)], []
        for t in range(horizon):
            a = next_actions(policy, feats[-1], t)
            h = self._transition(h, z, a)
            z = draw(self._categorical(self.prior_head(h)), self.deterministic)
            actions.append(a)
            feats.append(torch.cat([z, h], -1))
        feat = torch.stack(feats, 1)  # (B, H+1, F)
        reward, cont = self.heads.predict(feat[:, 1:])  # (B, H) each, from the state each action led to
        return Rollout(feat, torch.stack(actions, 1), reward, cont)

    def loss(self, batch):
        loss, metrics, _ = self._loss(batch)
        return loss, metrics

    def loss_and_starts(self, batch, per_sequence: int):
        """See WorldModel.loss_and_starts: the filtered states [z_t, h_t] of the last rows."""
        loss, metrics, seq = self._loss(batch)
        h, z = seq["h"][:, -per_sequence:].detach(), seq["z"][:, -per_sequence:].detach()
        return loss, metrics, RssmState(h.reshape(-1, h.shape[-1]), z.reshape(-1, z.shape[-1]))

    def _loss(self, batch):
        obs, action, is_first = batch["obs"], batch["action"], batch["is_first"]
        B, T = is_first.shape
        seq, _ = self._scan(self.initial(B), self.encoder(obs), action, is_first, torch.zeros_like(action[:, 0]),
                            training=True)
        h, z, g = seq["h"], seq["z"], seq["g"]  # (B, T, deter), (B, T, latent), (B, T, deter)
        recon = self.decoder.loss(self.decoder(torch.cat([z, h], -1)), obs)  # (B, T)
        # The state each action led to: [posterior z_t+1, h_t+1 = g_t] where row t+1 continues the episode,
        # else [a prior sample from g_t, g_t] (see the module docstring).
        with torch.no_grad():
            z_prior = draw(self._categorical(self.prior_head(g)))  # (B, T, latent)
        follows = torch.cat([~is_first[:, 1:], torch.zeros_like(is_first[:, :1])], 1)[..., None]  # (B, T, 1)
        z_next = torch.where(follows, torch.cat([z[:, 1:], z_prior[:, -1:]], 1), z_prior.to(z.dtype))
        reward, terminal = self.heads.loss(torch.cat([z_next, g], -1), batch["reward"], batch["terminal"])
        prior = self._categorical(self.prior_head(h))  # prior of z_t from h_t (h = h0 at a start)
        kl, metrics = balanced_kl(seq["post"], prior, torch.ones_like(reward), self.cfg.free_bits,
                                  self.cfg.kl_dyn, self.cfg.kl_rep)
        return (*total_loss({"recon": recon, "reward": reward, "terminal": terminal}, kl, metrics), seq)

    def predict_obs(self, feat: torch.Tensor) -> torch.Tensor:
        return self.decoder.to_obs(self.decoder(feat))
