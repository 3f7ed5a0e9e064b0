"""Behaviours: the CEM refit against a slow reference, CEM planning on a model with a known optimum and
on a gamble its latent samples misjudge, every behaviour acting through the protocol on every world
model, and the agent's imagination starts."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from tests.world_model_fixtures import MODELS, batch, make_model
from wmrl import config as config_mod
from wmrl.behavior.actor_critic import ActorCritic, ActorCriticConfig
from wmrl.behavior.cem import CemConfig, CemPlanner, modal_action, refit
from wmrl.behavior.cmaes import CmaesConfig, CmaesController
from wmrl.behavior.returns import discounted_return, lambda_returns
from wmrl.envs.spaces import ActionSpace
from wmrl.errors import WmrlError
from wmrl.run.trainer import build, setup_torch
from wmrl.worldmodels.protocol import Rollout, WorldModel


def test_refit_matches_a_slow_reference():
    torch.manual_seed(0)
    B, N, H, A, E = 2, 30, 4, 3, 7
    seqs, scores = torch.randint(0, A, (B, N, H)), torch.randn(B, N)
    fast = refit(seqs, scores, E, A, min_prob=0.0)
    for b in range(B):
        best = sorted(range(N), key=lambda n: -scores[b, n].item())[:E]
        for t in range(H):
            for a in range(A):
                share = sum(int(seqs[b, n, t].item() == a) for n in best) / E
                assert fast[b, t, a].item() == pytest.approx(share)
    floored = refit(seqs, scores, E, A, min_prob=0.05)
    assert torch.allclose(floored.sum(-1), torch.ones(B, H)) and floored.min() >= 0.05 - 1e-6


def test_discounted_return_stops_counting_after_a_predicted_termination():
    reward = torch.tensor([[1.0, 1.0, 1.0]])
    cont = torch.tensor([[1.0, 0.0, 1.0]])
    assert discounted_return(reward, cont, 0.5).item() == pytest.approx(1.0 + 0.5)


def test_discounted_return_with_a_last_value_is_the_lambda_one_return():
    torch.manual_seed(0)
    reward, cont, value = torch.randn(5, 7), torch.rand(5, 7), torch.randn(5, 8)
    expected = lambda_returns(reward, cont, value, 0.9, 1.0)[:, 0]
    assert torch.allclose(discounted_return(reward, cont, 0.9, value[:, -1]), expected, atol=1e-5)


@dataclass
class _TargetState:
    x: torch.Tensor  # (B,) unused payload, checks that select() tiles the batch

    def select(self, idx):
        return _TargetState(self.x[idx])


class _TargetModel(WorldModel):
    """Reward 1 when the action at step t equals target[t], else 0: the best plan is `target`."""

    def __init__(self, target: torch.Tensor, num_actions: int):
        super().__init__()
        self.target, self.action, self.feat_dim, self.latent_dim = target, ActionSpace.discrete(num_actions), 1, 0

    def imagine(self, state, policy, horizon):
        B = state.x.shape[0]
        reward = (policy == self.target[:horizon]).float()
        return Rollout(torch.zeros(B, horizon + 1, 1), policy, reward, torch.ones(B, horizon))


def test_cem_finds_the_best_action_sequence():
    torch.manual_seed(0)
    target = torch.tensor([2, 0, 3, 1, 1, 4])
    planner = CemPlanner(CemConfig(horizon=6, candidates=300, iterations=6, elites=30, gamma=1.0), ActionSpace.discrete(5))
    action, plan = planner.act(_TargetModel(target, 5), _TargetState(torch.zeros(2)), torch.zeros(2, 1), greedy=True)
    assert action.tolist() == [2, 2]
    assert plan.argmax(-1).tolist() == [target.tolist()] * 2
    assert planner.last_scores.shape == (2, 300) and planner.last_scores.max(1).values.tolist() == [6.0, 6.0]


def test_greedy_cem_gives_a_tie_to_the_best_sequence_not_to_the_lowest_action():
    shares = torch.tensor([[0.5, 0.5], [0.7, 0.3], [0.2, 0.8]])
    assert modal_action(shares, torch.tensor([1, 1, 0])).tolist() == [1, 0, 1]
    # every plan scores 0, so each row's elites split at random: greedy actions must not lean to action 0
    # (argmax alone picks 0 in the half of the rows whose two elites disagree: 75% zeros)
    torch.manual_seed(0)
    rows = 512
    planner = CemPlanner(CemConfig(horizon=2, candidates=8, iterations=1, elites=2, warm_start=False), ActionSpace.discrete(2))
    actions, _ = planner.act(_TargetModel(torch.tensor([-1, -1]), 2), _TargetState(torch.zeros(rows)),
                             torch.zeros(rows, 1), greedy=True)
    assert abs(actions.float().mean().item() - 0.5) < 0.08


def test_cem_warm_start_is_each_streams_own_and_dropped_at_an_episode_start(tmp_path):
    """The plan carried from one real step to the next lives in the agent state of each stream: an
    evaluation played in between does not change the training stream's next plan, and a stream whose
    episode starts anew plans from uniform."""
    cfg = config_mod.build(["debug"], {"seed": 0}, ["behavior=cem", "cem.horizon=3", "cem.candidates=16",
                                                    "cem.elites=4", "cem.iterations=1"])
    _, spec, agent, _ = build(cfg, tmp_path, setup_torch(cfg))
    obs = np.zeros((1, *spec.obs_shape), np.float32)
    state, _ = agent.act(agent.initial_state(), obs, [0], [True], greedy=False)
    plan = state.memory.clone()
    assert plan.shape == (1, 3, 2) and not torch.allclose(plan, torch.full_like(plan, 0.5))
    seen = []
    prior = agent.behavior._prior
    agent.behavior._prior = lambda memory, b, d: seen.append(None if memory is None else memory.clone()) or \
        prior(memory, b, d)
    agent.act(agent.initial_state(3), np.zeros((3, *spec.obs_shape), np.float32), [0] * 3, [True] * 3, True)
    agent.act(state, obs, [0], [False], greedy=False)  # the training stream goes on
    agent.act(state, obs, [0], [True], greedy=False)  # ... and starts a new episode
    assert seen[0] is None and torch.equal(seen[1], plan)
    assert torch.allclose(seen[2], torch.full_like(plan, 0.5))


class _FlatModel(WorldModel):
    """Reward 1 at every step whatever the actions; the last state's feature is the first action taken."""

    action, feat_dim, latent_dim = ActionSpace.discrete(2), 1, 0

    def imagine(self, state, policy, horizon):
        B = state.x.shape[0]
        feat = torch.zeros(B, horizon + 1, 1)
        feat[:, -1, 0] = policy[:, 0].float()
        return Rollout(feat, policy, torch.ones(B, horizon), torch.ones(B, horizon))


def test_cem_terminal_value_breaks_ties_the_horizon_cannot_see():
    torch.manual_seed(0)
    rows, cfg = 256, CemConfig(horizon=3, candidates=16, iterations=2, elites=4, terminal_value=True)
    planner = CemPlanner(cfg, ActionSpace.discrete(2))
    state, feat = _TargetState(torch.zeros(rows)), torch.zeros(rows, 1)
    with pytest.raises(WmrlError, match="terminal_value"):
        planner.act(_FlatModel(), state, feat, greedy=True)
    planner.attach_value(lambda f: f[:, 0], gamma=0.9)  # V(s_H) = 1 after a first action of 1
    assert (planner.act(_FlatModel(), state, feat, greedy=True)[0] == 1).all()
    ceiling = sum(0.9 ** t for t in range(3)) + 0.9 ** 3  # rewards discounted by the value's gamma, plus V
    assert planner.last_scores.max().item() == pytest.approx(ceiling)


class _GambleModel(WorldModel):
    """One step: action 0 pays 0.5 surely; action 1 pays 1 with probability 0.4 (its latent's mode pays 0)."""

    action, feat_dim, latent_dim = ActionSpace.discrete(2), 1, 0

    def imagine(self, state, policy, horizon):
        B = state.x.shape[0]
        win = torch.zeros(B) if self.deterministic else (torch.rand(B) < 0.4).float()
        reward = torch.where(policy[:, 0] == 1, win, torch.full((B,), 0.5))[:, None]
        return Rollout(torch.zeros(B, 2, 1), policy, reward, torch.ones(B, 1))


@pytest.mark.parametrize("modes, expected", [(False, 1), (True, 0)])
def test_cem_with_latent_modes_does_not_bet_on_lucky_draws(modes, expected):
    # with samples the best of 16 candidates is almost surely a won gamble, so the planner takes it
    torch.manual_seed(0)
    model, rows = _GambleModel(), 64
    planner = CemPlanner(CemConfig(horizon=1, candidates=16, iterations=1, elites=1, latent_modes=modes), ActionSpace.discrete(2))
    actions, _ = planner.act(model, _TargetState(torch.zeros(rows)), torch.zeros(rows, 1), greedy=True)
    assert (actions == expected).float().mean().item() > 0.95
    assert model.deterministic is False  # the planner's switch does not outlive its imagination


def test_latent_modes_restores_the_switch_even_after_an_error():
    model = _GambleModel()
    with pytest.raises(RuntimeError), model.latent_modes():
        assert model.deterministic
        raise RuntimeError
    assert model.deterministic is False
    model.deterministic = True
    with model.latent_modes(False):
        assert model.deterministic  # a model already deterministic stays so
    assert model.deterministic


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("behavior", ["actor_critic", "cem", "cmaes"])
def test_every_behaviour_acts_and_learns_on_every_world_model(name, behavior):
    m = make_model(name)
    if behavior == "cem":
        b = CemPlanner(CemConfig(horizon=3, candidates=8, iterations=2, elites=2), m.action)
    elif behavior == "cmaes":
        b = CmaesController(CmaesConfig(population=4, rollouts=3, horizon=3, context=2), m.feat_dim, m.action)
    else:
        b = ActorCritic(ActorCriticConfig(hidden=16, layers=1, horizon=3, imag_batch=3, value_bins=15), m.feat_dim,
                        m.action)
    data = batch("vector")
    with torch.no_grad():
        state = m.observe_sequence(data["obs"], data["action"], data["is_first"])
    for greedy in (True, False):
        actions, _ = b.act(m, state, m.features(state), greedy)
        assert actions.shape == (3,) and ((actions >= 0) & (actions < m.action.size)).all()
    before = {k: v.clone() for k, v in b.state_dict().items()}
    metrics = b.learn(m, state)
    changed = any(not torch.equal(v, b.state_dict()[k]) for k, v in before.items())
    assert changed == (b.starts is not None), "a learning behaviour must change its weights, a planner none"
    assert all(isinstance(v, float) for v in metrics.values())


def test_actor_advantage_baseline_is_the_current_critic_not_the_slow_copy():
    """With cont = 0 the returns are the rewards, so the slow critic (which only bootstraps the returns
    and regularises the critic) cannot change the actor's loss; the current critic, the baseline, does."""
    torch.manual_seed(0)
    B, H, F, A = 8, 3, 5, 2
    rollout = Rollout(torch.randn(B, H + 1, F), torch.randint(0, A, (B, H)), torch.randn(B, H) * 5,
                      torch.zeros(B, H))
    base = ActorCritic(ActorCriticConfig(hidden=16, layers=1), F, ActionSpace.discrete(A))

    def actor_loss(agent: ActorCritic) -> float:
        return agent.update(rollout)["ac/actor_loss"]

    def perturbed(net: str) -> ActorCritic:
        agent = copy.deepcopy(base)
        with torch.no_grad():
            for p in getattr(agent, net).parameters():
                p.add_(torch.randn_like(p))
        return agent

    reference = actor_loss(copy.deepcopy(base))
    assert actor_loss(perturbed("slow_critic")) == pytest.approx(reference, rel=1e-5)
    assert abs(actor_loss(perturbed("critic")) - reference) > 1e-3


@pytest.mark.parametrize("bootstrap", ["fast", "slow"])
def test_returns_bootstrap_from_the_critic_the_config_names(bootstrap):
    """With lambda = 0 and no reward the returns are gamma * V(s_{t+1}): only the critic named by
    actor_critic.bootstrap can move them (fast: the current critic, DreamerV3's and STORM's choice)."""
    torch.manual_seed(0)
    B, H, F, A = 8, 3, 5, 2
    rollout = Rollout(torch.randn(B, H + 1, F), torch.randint(0, A, (B, H)), torch.zeros(B, H), torch.ones(B, H))
    base = ActorCritic(ActorCriticConfig(hidden=16, layers=1, lam=0.0, bootstrap=bootstrap), F, ActionSpace.discrete(A))

    def mean_return(net: str | None) -> float:
        agent = copy.deepcopy(base)
        with torch.no_grad():
            for p in (getattr(agent, net).parameters() if net else []):
                p.add_(torch.randn_like(p))
        return agent.update(rollout)["ac/return"]

    reference = mean_return(None)
    moved = {net: abs(mean_return(net) - reference) > 1e-3 for net in ("critic", "slow_critic")}
    assert moved == {"critic": bootstrap == "fast", "slow_critic": bootstrap == "slow"}
    assert ActorCriticConfig().bootstrap == "fast"


@pytest.mark.parametrize("name, setting, length", [("storm", "storm.history=4", 4), ("rssm", "rssm.burn_in=5", 8),
                                                   ("mdnrnn", "mdnrnn.burn_in=6", 9)])
def test_imagination_starts_are_observed_over_the_models_start_window(tmp_path, name, setting, length):
    """The agent samples start windows of the world model's burn-in plus the behaviour's context (RSSM,
    MDN-RNN), or of STORM's history, the window its acting state holds."""
    overrides = [f"world_model={name}", "actor_critic.imag_context=3", "actor_critic.imag_batch=6", setting]
    cfg = config_mod.build(["debug"], {"seed": 0}, overrides)
    _, spec, agent, replay = build(cfg, tmp_path, setup_torch(cfg))
    rng = np.random.default_rng(0)
    for t in range(40):
        replay.add(rng.standard_normal(spec.obs_shape), int(rng.integers(2)), 1.0, t % 20 == 19, t % 20 == 0)
    asked = []
    sample = replay.sample
    replay.sample = lambda batch, length, rng: asked.append((batch, length)) or sample(batch, length, rng)
    agent.update(replay, rng)
    if name == "mdnrnn":
        agent.wm.updates.fill_(cfg.mdnrnn.vae_updates)  # past V's phase: the dream is ready
        asked.clear()
        agent.update(replay, rng)
    assert asked == [(cfg.train.wm_batch, cfg.train.wm_seq), (6, length)]


def test_the_behaviour_learns_from_the_update_whose_world_model_step_makes_the_dream_ready(tmp_path):
    """V-M-C: the update that completes V's phase (its loss counts the update) already trains the behaviour."""
    cfg = config_mod.build(["debug"], {"seed": 0}, ["world_model=mdnrnn", "actor_critic.imag_batch=6"])
    _, spec, agent, replay = build(cfg, tmp_path, setup_torch(cfg))
    rng = np.random.default_rng(0)
    for t in range(40):
        replay.add(rng.standard_normal(spec.obs_shape), int(rng.integers(2)), 1.0, t % 20 == 19, t % 20 == 0)
    agent.wm.updates.fill_(cfg.mdnrnn.vae_updates - 1)
    assert not agent.wm.ready_to_imagine
    learned = []
    learn = agent.behavior.learn
    agent.behavior.learn = lambda wm, start: learned.append(1) or learn(wm, start)
    agent.update(replay, rng)
    assert agent.wm.ready_to_imagine and learned == [1]


def test_rssm_imagination_can_start_from_the_states_its_loss_filtered(tmp_path, monkeypatch):
    """rssm.imagine_from=loss: one replay sample per update (the loss's), and the behaviour learns from
    imag_batch of the loss's states; a training sequence too short for its burn-in is refused."""
    overrides = ["world_model=rssm", "rssm.imagine_from=loss", "rssm.burn_in=4", "actor_critic.imag_batch=6",
                 "train.wm_batch=4", "train.wm_seq=6"]
    cfg = config_mod.build(["debug"], {"seed": 0}, overrides)
    _, spec, agent, replay = build(cfg, tmp_path, setup_torch(cfg))
    rng = np.random.default_rng(0)
    for t in range(40):
        replay.add(rng.standard_normal(spec.obs_shape), int(rng.integers(2)), 1.0, t % 20 == 19, t % 20 == 0)
    asked, starts = [], []
    sample = replay.sample
    replay.sample = lambda batch, length, rng: asked.append((batch, length)) or sample(batch, length, rng)
    learn = agent.behavior.learn
    monkeypatch.setattr(agent.behavior, "learn", lambda wm, start: starts.append(start) or learn(wm, start))
    agent.update(replay, rng)
    assert asked == [(4, 6)] and starts[0].h.shape[0] == 6
    with pytest.raises(WmrlError, match="train.wm_seq >= 6"):
        config_mod.build(["debug"], {"seed": 0}, overrides[:-1] + ["train.wm_seq=5"])


def test_imagined_steps_after_a_predicted_termination_do_not_train_the_actor_or_critic():
    """A rollout that ends at step k (cont_k = 0): what it imagines afterwards is never reached, so
    changing those states, actions and rewards must leave both losses as they were. Rewards are small,
    so the return scale stays at its floor of 1 and cannot carry the change either."""
    torch.manual_seed(0)
    B, H, F, A, k = 8, 6, 5, 3, 2
    feat, action = torch.randn(B, H + 1, F), torch.randint(0, A, (B, H))
    reward, cont = torch.rand(B, H) * 0.01, torch.ones(B, H)
    cont[:, k] = 0.0
    after = torch.zeros(B, H, dtype=torch.bool)
    after[:, k + 1:] = True
    changed_feat = feat.clone()
    changed_feat[:, k + 1:] = torch.randn(B, H - k, F) * 3
    changed = Rollout(changed_feat, torch.where(after, (action + 1) % A, action),
                      torch.where(after, torch.rand(B, H) * 0.01, reward), cont)
    base = ActorCritic(ActorCriticConfig(hidden=16, layers=1, entropy=0.1), F, ActionSpace.discrete(A))
    with torch.no_grad():  # a critic that tells states apart (it starts at zero output)
        for p in base.critic.parameters():
            p.add_(torch.randn_like(p) * 0.3)

    def losses(rollout: Rollout) -> tuple[float, float]:
        metrics = copy.deepcopy(base).update(rollout)
        return metrics["ac/actor_loss"], metrics["ac/critic_loss"]

    reference = losses(Rollout(feat, action, reward, cont))
    assert losses(changed) == pytest.approx(reference, rel=1e-5, abs=1e-7)
    # ... whereas a change before the termination does move them.
    before = feat.clone()
    before[:, 1] += 3
    moved = losses(Rollout(before, action, reward, cont))
    assert abs(moved[0] - reference[0]) > 1e-4 and abs(moved[1] - reference[1]) > 1e-4
