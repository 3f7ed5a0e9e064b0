"""V-M-C pieces: the mixture density against slow references, temperature, staged training of V then M,
and the CMA-ES controller (learning in a dream, crediting real episodes, checkpoint round trip)."""

from __future__ import annotations

import io

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from tests.world_model_fixtures import batch
from wmrl.behavior.cmaes import CmaesConfig, CmaesController
from wmrl.envs.spaces import ActionSpace
from wmrl.nets.encoders import EncoderConfig
from wmrl.nets.mdn import Mixture
from wmrl.worldmodels.mdnrnn import MdnRnn, MdnRnnConfig
from wmrl.worldmodels.protocol import Rollout, WorldModel


def _random_mixture(*lead: int, dim: int = 3, k: int = 4) -> Mixture:
    g = torch.Generator().manual_seed(0)
    return Mixture(torch.randn(*lead, dim, k, generator=g), torch.randn(*lead, dim, k, generator=g),
                   0.5 * torch.randn(*lead, dim, k, generator=g))


def test_mixture_log_prob_matches_a_slow_loop_and_torch_distributions():
    mix = _random_mixture(5)
    x = torch.randn(5, 3)
    fast = mix.log_prob(x)
    for b in range(5):
        total = 0.0
        for d in range(3):
            weights = [math.exp(v) for v in mix.logits[b, d].tolist()]
            density = 0.0
            for k in range(4):
                mu, sigma = mix.mean[b, d, k].item(), math.exp(mix.log_std[b, d, k].item())
                gauss = math.exp(-0.5 * ((x[b, d].item() - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
                density += weights[k] / sum(weights) * gauss
            total += math.log(density)
        assert fast[b].item() == pytest.approx(total, rel=1e-5, abs=1e-5)
    ref = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(logits=mix.logits),
                                                torch.distributions.Normal(mix.mean, mix.log_std.exp()))
    assert torch.allclose(fast, ref.log_prob(x).sum(-1), atol=1e-5)


def test_temperature_divides_logits_and_scales_sigma_by_its_square_root():
    torch.manual_seed(0)
    n, tau = 200_000, 2.0
    # Two far-apart components with weights 1:3, and the second has sigma 0.5.
    mix = Mixture(torch.tensor([[[0.0, math.log(3.0)]]]).expand(n, 1, 2), torch.tensor([[[-100.0, 100.0]]]).expand(n, 1, 2),
                  torch.tensor([[[0.0, math.log(0.5)]]]).expand(n, 1, 2))
    x = mix.sample(tau)[:, 0]
    second = x > 0
    expected = math.sqrt(3.0) / (1 + math.sqrt(3.0))  # softmax([0, log 3] / 2)[1]
    assert second.float().mean().item() == pytest.approx(expected, abs=0.005)
    assert x[second].var().item() == pytest.approx(0.25 * tau, rel=0.02)
    assert mix.sample(tau, mode=True)[0, 0].item() == 100.0


def _vmc(training: str) -> MdnRnn:
    torch.manual_seed(0)
    cfg = MdnRnnConfig(latent=4, hidden=16, mixtures=2, head_hidden=16, training=training, vae_updates=2,
                       encoder=EncoderConfig(hidden=16, layers=1))
    return MdnRnn(cfg, (4,), False, ActionSpace.discrete(3)).train()


def _grads(model: MdnRnn) -> tuple[bool, bool]:
    """(does V get gradient, does M get gradient) after one loss.backward()."""
    model.zero_grad(set_to_none=True)
    model.loss(batch("vector"))[0].backward()
    v = any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.vae.parameters())
    m = all(p.grad is not None for mod in (model.lstm, model.mdn, model.heads) for p in mod.parameters())
    return v, m


def test_staged_training_trains_v_alone_then_m_with_v_frozen():
    model = _vmc("staged")
    assert not model.ready_to_imagine
    assert _grads(model) == (True, False)
    assert _grads(model) == (True, False)
    assert model.ready_to_imagine  # vae_updates=2 done
    norm_before = model.vae.encoder.scale.state_dict()
    assert _grads(model) == (False, True)
    assert all(torch.equal(v, model.vae.encoder.scale.state_dict()[k]) for k, v in norm_before.items())


def test_joint_training_lets_m_losses_reach_v(monkeypatch):
    model = _vmc("joint")
    assert model.ready_to_imagine
    assert _grads(model) == (True, True)
    # With V's own losses switched off, V's encoder still learns, through M's inputs.
    monkeypatch.setattr(model.vae, "loss", lambda obs, mean, *_: (mean.new_zeros(mean.shape[:-1]),) * 2)
    model.zero_grad(set_to_none=True)
    model.loss(batch("vector"))[0].backward()
    assert model.vae.stats.weight.grad.abs().sum() > 0


@dataclass
class _Rows:
    x: torch.Tensor  # (B, F) fixed features of each start state

    def select(self, idx):
        return _Rows(self.x[idx])


class _SignModel(WorldModel):
    """One-step dream: reward 1 when action 1 is taken on features with x[0] > 0, or action 0 otherwise."""

    feat_dim, latent_dim, action = 3, 3, ActionSpace.discrete(2)

    def imagine(self, state, policy, horizon):
        a = policy(state.x)
        reward = (a == (state.x[:, 0] > 0).long()).float()[:, None]
        return Rollout(state.x[:, None].expand(-1, 2, -1), a[:, None], reward, torch.ones_like(reward))


def test_cmaes_learns_a_linear_policy_in_a_dream():
    torch.manual_seed(0)
    ctrl = CmaesController(CmaesConfig(population=16, rollouts=32, horizon=1, sigma0=0.5), 3, ActionSpace.discrete(2))
    start = _Rows(torch.randn(32, 3))
    test_x = torch.randn(500, 3)

    def accuracy() -> float:
        acts, _ = ctrl.act(None, None, test_x, greedy=True)
        return (acts == (test_x[:, 0] > 0).long()).float().mean().item()

    before = accuracy()
    for _ in range(30):
        metrics = ctrl.learn(_SignModel(), start)
    assert metrics["cmaes/generation"] == 30
    assert before < 0.7 and accuracy() > 0.9, (before, accuracy())


def test_cmaes_acts_by_argmax_of_its_linear_outputs_while_training_too():
    """The controller's outputs are not logits (their scale is an accident of the search), so training
    episodes in dream mode are played by the mean's argmax, as World Models' C plays; a softmax of small
    parameters would play near uniform at random."""
    torch.manual_seed(0)
    ctrl = CmaesController(CmaesConfig(population=4, rollouts=2), 3, ActionSpace.discrete(2))
    ctrl.mean.copy_(torch.tensor([0.01, 0, 0, -0.01, 0, 0, 0, 0]))  # action 0 iff feat[0] > 0, by a small margin
    feat = torch.randn(400, 3)
    for greedy in (True, False):
        actions, _ = ctrl.act(None, None, feat, greedy=greedy)
        assert torch.equal(actions, (feat[:, 0] <= 0).long())


def test_cmaes_in_the_real_env_credits_each_candidate_its_own_episodes():
    ctrl = CmaesController(CmaesConfig(where="real", population=3, rollouts=2), 2, ActionSpace.discrete(2))
    assert ctrl.starts is None and ctrl.learn(None, None) == {}
    first = ctrl.candidates.copy()
    feat = torch.randn(1, 2)
    for p in range(3):
        for r in range(2):
            played = ctrl._current()[0].numpy()
            assert np.allclose(played, first[p])
            metrics = ctrl.episode_end(10.0 * p + r)  # candidate p's returns: 10p and 10p + 1
            ctrl.act(None, None, feat, greedy=False)
    assert metrics["cmaes/generation"] == 1 and metrics["cmaes/fitness_best"] == 20.5
    assert metrics["cmaes/fitness_mean"] == pytest.approx(10.5)
    assert not np.allclose(ctrl.candidates, first)  # a new generation is being played


@pytest.mark.parametrize("diagonal", [False, True])
def test_cmaes_state_round_trip_continues_the_same_search(diagonal):
    cfg = CmaesConfig(population=4, rollouts=8, horizon=1, diagonal=diagonal)
    a = CmaesController(cfg, 3, ActionSpace.discrete(2))
    for _ in range(3):
        a.learn(_SignModel(), _Rows(torch.randn(8, 3)))
    b = CmaesController(cfg, 3, ActionSpace.discrete(2))
    b.load_state_dict(a.state_dict())
    state = a.optim_state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)  # a checkpoint's way: plain tensors and numbers only
    buffer.seek(0)
    b.load_optim_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(a.mean, b.mean)
    # cma draws from numpy's global RNG, which a checkpoint restores with the run's other RNGs.
    rng = np.random.get_state()
    asked_a = np.asarray(a.es.ask())
    np.random.set_state(rng)
    assert np.array_equal(asked_a, np.asarray(b.es.ask()))


def test_agent_acts_at_random_until_the_dream_is_ready_then_asks_its_behaviour(monkeypatch):
    from wmrl import config
    from wmrl.envs.factory import EnvSpec
    from wmrl.run.agent import Agent

    torch.manual_seed(0)
    cfg = config.build(["debug"], {}, ["world_model=mdnrnn", "behavior=cem"])
    agent = Agent(cfg, EnvSpec((4,), False, ActionSpace.discrete(3)), torch.device("cpu"))
    monkeypatch.setattr(agent.behavior, "act", lambda wm, state, feat, greedy, memory: (torch.full(feat.shape[:1], 2), None))
    n = 600
    obs, prev, first = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32), np.zeros(n), np.ones(n, bool)
    assert not agent.wm.ready_to_imagine
    _, actions = agent.act(agent.initial_state(n), obs, prev, first, greedy=True)
    shares = np.bincount(actions, minlength=3) / n
    assert np.all(np.abs(shares - 1 / 3) < 0.07), shares  # uniform, not the planner's choice
    agent.wm.updates.fill_(cfg.mdnrnn.vae_updates)
    assert agent.wm.ready_to_imagine
    _, actions = agent.act(agent.initial_state(n), obs, prev, first, greedy=True)
    assert (actions == 2).all()
