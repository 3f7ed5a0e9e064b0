"""Actor-critic trained in imagination, as STORM uses it (DreamerV3 2023 recipe).

Actor: a policy on the world model's features (nets/action_dist.py: a categorical for discrete actions,
DreamerV3's bounded normal for Box actions) plus an entropy bonus, learning by one of two gradients
(`gradient`):
- reinforce: the log-probability of the imagined actions times the advantage (R_t - V(s_t)) / max(1, S),
  S the percentile return scale (STORM, DreamerV3 for discrete actions);
- dynamics: the advantage (R_t - V(s_t)) / max(1, S) itself, differentiated through the imagined
  rewards, continuations and values back to the reparameterised actions (Dreamer v1; DreamerV3 2023's
  code for continuous actions). The world model and the critic are frozen while the gradient passes
  through them: the actor's loss changes neither. Box actions only (a discrete action is an index).
  As DreamerV3, the policy's input is detached in imagination, so the gradient reaches the actor
  through its actions, not through the features it saw.
Critic: two-hot symlog regression of the lambda-returns, regularised towards a slow (EMA) copy
of itself. The lambda-returns bootstrap from the current ("fast") critic by default, as DreamerV3
and STORM do, the slow copy serving only as the regulariser's target; `bootstrap=slow` bootstraps
from the slow copy instead (what wmrl did before it was made a field; benchmarks/results/
cartpole_bootstrap_ablation.md compares the two). The advantage's baseline V(s_t) is always the
current critic, which keeps up with the returns while the slow copy lags: a slow baseline leaves
early advantages large and positive whatever the action, and that collapses the policy's entropy. Every loss term on s_t is weighted by the probability w_t that s_t is
reached (continuation after predicted terminations).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from wmrl.behavior.protocol import Behavior
from wmrl.behavior.returns import ReturnNormalizer, continuation_weights, lambda_returns
from wmrl.envs.spaces import ActionSpace
from wmrl.errors import WmrlError
from wmrl.nets.action_dist import action_dist, policy_width
from wmrl.nets.mlp import MLP
from wmrl.nets.optim import OptimConfig, frozen, make_optimizer, optimizer_step
from wmrl.nets.twohot import TwoHot
from wmrl.worldmodels.protocol import Rollout, WorldModel


BOOTSTRAPS = ("fast", "slow")
GRADIENTS = ("auto", "reinforce", "dynamics")


@dataclass
class ActorCriticConfig:
    hidden: int = 512
    """Width of the actor's and the critic's MLPs."""
    layers: int = 2
    """Hidden layers of each."""
    gamma: float = 0.985
    """Discount of imagined rewards (STORM: 0.985)."""
    lam: float = 0.95
    """Lambda of the lambda-returns (0.95)."""
    entropy: float = 3e-4
    """Weight of the policy's entropy bonus (STORM: 3e-4)."""
    bootstrap: str = "fast"
    """Critic the lambda-returns bootstrap from: fast (the current critic; DreamerV3, STORM) or slow (its
    EMA copy)."""
    slow_decay: float = 0.98
    """EMA decay of the slow critic per update."""
    slow_reg: float = 1.0
    """Weight of the critic's regulariser towards the slow critic."""
    return_norm_decay: float = 0.99
    """EMA decay of the return scale (the 5-95 percentile spread of lambda-returns)."""
    unimix: float = 0.01
    """Uniform mixture in a discrete policy, so every action keeps some probability."""
    gradient: str = "auto"
    """The actor's gradient: reinforce, dynamics (backpropagation through the imagined dynamics; Box
    actions only) or auto (dynamics for Box actions, reinforce for discrete: DreamerV3 2023's code)."""
    min_std: float = 0.1
    """Box actions: the smallest std of the bounded normal policy (DreamerV3: 0.1)."""
    max_std: float = 1.0
    """Box actions: the largest std (DreamerV3: 1.0)."""
    value_bins: int = 255
    """Bins of the symlog two-hot critic."""
    horizon: int = 16
    """Imagined steps per rollout (STORM: 16)."""
    imag_batch: int = 1024
    """Imagination start states per update."""
    imag_context: int = 8
    """Real steps observed before each imagination."""
    actor_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-5, eps=1e-5, clip=100.0))
    critic_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-5, eps=1e-5, clip=100.0))
    """Separate settings: with a few thousand updates (CPU budgets) the two-hot critic needs a
    larger step than the actor to track the returns."""


def actor_gradient(cfg: ActorCriticConfig, space: ActionSpace) -> str:
    """The gradient `cfg.gradient` resolves to for `space` (reinforce or dynamics)."""
    if cfg.gradient == "auto":
        return "reinforce" if space.is_discrete else "dynamics"
    if cfg.gradient == "dynamics" and space.is_discrete:
        raise WmrlError(f"actor_critic.gradient=dynamics needs Box actions, and this env's actions are {space.describe()}",
                        "use actor_critic.gradient=reinforce (or auto) for discrete actions")
    return cfg.gradient


class ActorCritic(Behavior):
    def __init__(self, cfg: ActorCriticConfig, feat_dim: int, action: ActionSpace):
        super().__init__()
        self.cfg, self.action = cfg, action
        self.gradient = actor_gradient(cfg, action)
        self.starts = (cfg.imag_batch, cfg.imag_context)
        self.actor = MLP(feat_dim, policy_width(action), cfg.hidden, cfg.layers)
        self.critic = MLP(feat_dim, cfg.value_bins, cfg.hidden, cfg.layers, zero_init=True)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.twohot = TwoHot(cfg.value_bins)
        self.normalizer = ReturnNormalizer(cfg.return_norm_decay)
        self.actor_opt = make_optimizer(self.actor, cfg.actor_optim)
        self.critic_opt = make_optimizer(self.critic, cfg.critic_optim)

    def dist(self, feat: torch.Tensor):
        """(..., F) -> the policy's distribution over actions (nets/action_dist.py)."""
        return action_dist(self.action, self.actor(feat), self.cfg.unimix, self.cfg.min_std, self.cfg.max_std)

    @torch.no_grad()
    def policy(self, feat: torch.Tensor, greedy: bool = False) -> torch.Tensor:
        """(B, F) -> (B,) or (B, A) actions: the mode if greedy, else a sample."""
        dist = self.dist(feat)
        return dist.mode() if greedy else dist.sample()

    def _reparameterised(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, F) -> (B, A) a sample carrying the actor's gradient, from detached features (DreamerV3)."""
        return self.dist(feat.detach()).sample()

    def act(self, wm, state, feat, greedy, memory=None):
        return self.policy(feat, greedy), None

    def state_value(self):
        """The critic the actor's returns bootstrap from (`bootstrap`)."""
        net = self.critic if self.cfg.bootstrap == "fast" else self.slow_critic
        return (lambda feat: self.twohot.decode(net(feat))), self.cfg.gamma

    def learn(self, wm: WorldModel, start) -> dict[str, float]:
        if self.gradient == "dynamics":
            with frozen(wm):  # the graph reaches back to the actions; the model's weights get no gradient
                rollout = wm.imagine(start, self._reparameterised, self.cfg.horizon)
            return self.update(rollout)
        with torch.no_grad():
            rollout = wm.imagine(start, self._imagined, self.cfg.horizon)
        return self.update(rollout)

    @torch.no_grad()
    def _imagined(self, feat: torch.Tensor) -> torch.Tensor:
        """REINFORCE's imagined actions: samples as drawn (Box: unclipped, the model clips them as the env
        would), so that their log-probability is the likelihood of the action taken."""
        dist = self.dist(feat)
        return dist.sample() if self.action.is_discrete else dist.sample(clip=False)

    def update(self, rollout: Rollout) -> dict[str, float]:
        """One actor and critic step on an imagined rollout (with gradient=dynamics, one whose rewards,
        continuations and features carry the gradient back to its actions)."""
        feat, action = rollout.feat.detach(), rollout.action.detach()
        reward, cont = rollout.reward.float().detach(), rollout.cont.float().detach()
        all_logits = self.critic(feat)  # (B, H+1, bins): V(s_H) only bootstraps
        critic_logits = all_logits[:, :-1]  # (B, H, bins)
        with torch.no_grad():
            fast_value = self.twohot.decode(all_logits)  # (B, H+1)
            slow_value = self.twohot.decode(self.slow_critic(feat))  # (B, H+1)
            value = fast_value if self.cfg.bootstrap == "fast" else slow_value
            returns = lambda_returns(reward, cont, value, self.cfg.gamma, self.cfg.lam)  # (B, H)
            weight = continuation_weights(cont)  # (B, H)
            scale = self.normalizer.update(returns)
            baseline = fast_value[:, :-1]  # (B, H)
            advantage = (returns - baseline) / scale
        dist = self.dist(feat[:, :-1])  # over (B, H)
        entropy = dist.entropy()  # (B, H)
        if self.gradient == "dynamics":
            objective = self._differentiable_returns(rollout) / scale  # (B, H)
        else:
            objective = dist.log_prob(action) * advantage  # (B, H)
        actor_loss = -(weight * (objective + self.cfg.entropy * entropy)).mean()
        # Cross-entropy to the returns plus slow_reg times cross-entropy to the slow critic's value,
        # computed as one cross-entropy against the summed two-hot targets.
        target = self.twohot.encode(returns) + self.cfg.slow_reg * self.twohot.encode(slow_value[:, :-1])
        critic_loss = (weight * self.twohot.cross_entropy(critic_logits, target)).mean()
        actor_norm = optimizer_step(actor_loss, self.actor, self.actor_opt, self.cfg.actor_optim)
        critic_norm = optimizer_step(critic_loss, self.critic, self.critic_opt, self.cfg.critic_optim)
        if math.isfinite(critic_norm):  # a skipped critic step leaves its slow copy alone too
            self._update_slow()
        return {"ac/actor_loss": actor_loss.item(), "ac/critic_loss": critic_loss.item(),
                "ac/entropy": entropy.mean().item(), "ac/return": returns.mean().item(),
                "ac/return_scale": float(scale), "ac/imag_reward": reward.mean().item(),
                "ac/imag_cont": cont.mean().item(), "ac/actor_grad_norm": actor_norm,
                "ac/critic_grad_norm": critic_norm, "ac/value": slow_value.mean().item()}

    def _differentiable_returns(self, rollout: Rollout) -> torch.Tensor:
        """(B, H) lambda-returns minus V(s_t), with the gradient of the rollout's rewards, continuations and the
        bootstrap critic's values of its states (the critic frozen: its weights learn only from its loss)."""
        net = self.critic if self.cfg.bootstrap == "fast" else self.slow_critic
        with frozen(net):
            value = self.twohot.decode(net(rollout.feat))  # (B, H+1)
        returns = lambda_returns(rollout.reward.float(), rollout.cont.float(), value, self.cfg.gamma, self.cfg.lam)
        # DreamerV3's backprop objective subtracts V(s_t) without stopping its gradient: for t >= 1 the value
        # of a state depends on the actions that led there (Dreamer v1 maximised the returns alone).
        return returns - value[:, :-1]

    def optim_state_dict(self) -> dict:
        return {"actor": self.actor_opt.state_dict(), "critic": self.critic_opt.state_dict()}

    def load_optim_state_dict(self, state: dict) -> None:
        self.actor_opt.load_state_dict(state["actor"])
        self.critic_opt.load_state_dict(state["critic"])

    @torch.no_grad()
    def _update_slow(self) -> None:
        for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters()):
            slow.lerp_(fast, 1 - self.cfg.slow_decay)
