"""Box (continuous) actions through every layer: contracts over every world model x behaviour, the
replay round trip of float actions, the dynamics gradient reaching the actor and not the world model,
the Gaussian CEM refit against a slow reference, and a command-line run on a Box-action env."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tests.fake_envs  # noqa: F401  (registers WmrlBoxSign-v0)
from tests.world_model_fixtures import MODELS, fake_obs, make_model
from wmrl.behavior.actor_critic import ActorCritic, ActorCriticConfig
from wmrl.behavior.cem import CemConfig, CemPlanner, refit_gaussian
from wmrl.behavior.cmaes import CmaesConfig, CmaesController
from wmrl.cli import main
from wmrl.data.replay import Replay, ReplayConfig
from wmrl.envs.spaces import ActionSpace
from wmrl.errors import WmrlError
from wmrl.nets.action_dist import action_dist
from wmrl.nets.optim import OptimConfig
from wmrl.worldmodels.protocol import Rollout, WorldModel

BOX = ActionSpace.box(2)
BEHAVIOURS = ("actor_critic-reinforce", "actor_critic-dynamics", "cem", "cmaes")


def box_batch(B: int = 3, T: int = 10) -> dict:
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    return {"obs": fake_obs("vector", B, T), "action": torch.rand(B, T, 2) * 2 - 1, "reward": torch.randn(B, T),
            "terminal": torch.zeros(B, T, dtype=torch.bool), "is_first": first}


def make_behaviour(name: str, model: WorldModel):
    if name == "cem":
        return CemPlanner(CemConfig(horizon=3, candidates=8, iterations=2, elites=2), model.action)
    if name == "cmaes":
        return CmaesController(CmaesConfig(population=4, rollouts=3, horizon=3, context=2), model.feat_dim, model.action)
    gradient = name.split("-")[1]
    cfg = ActorCriticConfig(hidden=16, layers=1, horizon=3, imag_batch=3, value_bins=15, gradient=gradient)
    return ActorCritic(cfg, model.feat_dim, model.action)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_every_behaviour_acts_inside_the_box_and_learns_on_every_world_model(name, behaviour):
    model = make_model(name, actions=BOX)
    b = make_behaviour(behaviour, model)
    data = box_batch()
    loss, _ = model.loss(data)
    assert torch.isfinite(loss)
    with torch.no_grad():
        state = model.observe_sequence(data["obs"], data["action"], data["is_first"])
        state, feat = model.observe(state, data["obs"][:, -1], data["action"][:, -1], torch.zeros(3, dtype=torch.bool))
    for greedy in (True, False):
        actions, _ = b.act(model, state, feat, greedy)
        assert actions.shape == (3, 2) and actions.dtype == torch.float32
        assert ((actions >= -1) & (actions <= 1)).all(), actions
    before = {k: v.clone() for k, v in b.state_dict().items()}
    metrics = b.learn(model, state)
    changed = any(not torch.equal(v, b.state_dict()[k]) for k, v in before.items())
    assert changed == (b.starts is not None), "a learning behaviour must change its weights, a planner none"
    assert all(np.isfinite(v) for v in metrics.values()), metrics


@pytest.mark.parametrize("name", MODELS)
def test_the_dynamics_gradient_reaches_the_actor_and_not_the_world_model(name):
    model = make_model(name, actions=BOX)
    cfg = ActorCriticConfig(hidden=16, layers=1, horizon=3, imag_batch=3, value_bins=15, gradient="dynamics",
                            entropy=0.0)  # no entropy term: the actor's only gradient is through the dream
    ac = ActorCritic(cfg, model.feat_dim, BOX)
    with torch.no_grad():
        data = box_batch()
        state = model.observe_sequence(data["obs"], data["action"], data["is_first"])
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    actor = [p.clone() for p in ac.actor.parameters()]
    metrics = ac.learn(model, state)
    assert metrics["ac/actor_grad_norm"] > 0
    assert any(not torch.equal(a, p) for a, p in zip(actor, ac.actor.parameters())), "the actor did not move"
    assert all(p.grad is None for p in model.parameters()), "the actor's loss put gradients into the world model"
    assert all(p.requires_grad for p in model.parameters()), "freezing must be undone"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())


def test_dynamics_gradients_are_refused_for_discrete_actions():
    with pytest.raises(WmrlError) as e:
        ActorCritic(ActorCriticConfig(gradient="dynamics"), 4, ActionSpace.discrete(2))
    assert "needs Box actions" in e.value.problem and "reinforce" in e.value.fix


class _QuadraticDream(WorldModel):
    """One imagined step whose reward -(a - target)^2 summed over the dimensions is differentiable in the
    action: the actor's dynamics gradient points straight at `target`."""

    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.target, self.action, self.feat_dim, self.latent_dim = target, ActionSpace.box(len(target)), 1, 0

    def imagine(self, state, policy, horizon):
        feat = torch.ones(state, 1)
        a = policy(feat)
        reward = -((a - self.target) ** 2).sum(-1, keepdim=True)  # (B, 1)
        return Rollout(torch.ones(state, 2, 1), a[:, None], reward, torch.zeros_like(reward))


def test_the_actor_learns_a_target_action_by_backpropagating_through_the_dream():
    torch.manual_seed(0)
    target = torch.tensor([-0.6, 0.7])
    cfg = ActorCriticConfig(hidden=16, layers=1, horizon=1, imag_batch=64, value_bins=15, gradient="dynamics",
                            entropy=0.0, actor_optim=OptimConfig(lr=3e-3))
    ac = ActorCritic(cfg, 1, ActionSpace.box(2))
    dream = _QuadraticDream(target)
    start = ac.policy(torch.ones(1, 1), greedy=True)[0]
    for _ in range(300):
        ac.learn(dream, 64)
    end = ac.policy(torch.ones(1, 1), greedy=True)[0]
    assert (end - target).abs().max() < 0.1, (start, end)
    assert (start - target).abs().max() > 0.25


def test_the_bounded_normal_keeps_its_std_and_mean_in_range_and_clips_samples():
    torch.manual_seed(0)
    out = torch.randn(1000, 4) * 10
    dist = action_dist(BOX, out, min_std=0.1, max_std=1.0)
    assert ((dist.std >= 0.1) & (dist.std <= 1.0)).all() and (dist.mean.abs() <= 1).all()
    sample = dist.sample()
    assert sample.shape == (1000, 2) and (sample.abs() <= 1).all()
    raw = torch.zeros(3, 4, requires_grad=True)
    action_dist(BOX, raw).sample().sum().backward()
    assert raw.grad.abs().sum() > 0, "samples must carry the gradient to the mean and std"


def test_gaussian_refit_matches_a_slow_reference():
    torch.manual_seed(0)
    B, N, H, A, E = 2, 20, 3, 2, 5
    seqs, scores = torch.rand(B, N, H, A) * 2 - 1, torch.randn(B, N)
    fit = refit_gaussian(seqs, scores, E)  # (B, H, 2A)
    for b in range(B):
        best = seqs[b, sorted(range(N), key=lambda n: -scores[b, n])[:E]]  # (E, H, A)
        mean = best.sum(0) / E
        std = (((best - mean) ** 2).sum(0) / E + 1e-6).sqrt()  # with PlaNet's floor
        assert torch.allclose(fit[b, :, :A], mean, atol=1e-6) and torch.allclose(fit[b, :, A:], std, atol=1e-6)


class _BoxTargetModel(WorldModel):
    """Reward -(a_t - target_t)^2 per step: the best plan is `target` (H, A)."""

    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.target, self.action, self.feat_dim, self.latent_dim = target, ActionSpace.box(target.shape[1]), 1, 0

    def imagine(self, state, policy, horizon):
        reward = -((policy - self.target[:horizon]) ** 2).sum(-1)  # (B, H)
        return Rollout(torch.zeros(policy.shape[0], horizon + 1, 1), policy, reward, torch.ones_like(reward))

    def select(self, state, idx):
        return state


def test_gaussian_cem_finds_the_best_plan_of_a_known_model():
    torch.manual_seed(0)
    target = torch.tensor([[0.6, -0.4], [-0.8, 0.2], [0.1, 0.9]])
    planner = CemPlanner(CemConfig(horizon=3, candidates=300, iterations=8, elites=30, gamma=1.0),
                         ActionSpace.box(2))
    action, plan = planner.act(_BoxTargetModel(target), None, torch.zeros(2, 1), greedy=True)
    assert action.shape == (2, 2) and plan.shape == (2, 3, 4)
    assert (plan[:, :, :2] - target).abs().max() < 0.1
    sampled, _ = planner.act(_BoxTargetModel(target), None, torch.zeros(2, 1), greedy=False)
    assert (sampled.abs() <= 1).all()


def test_a_replay_keeps_float_actions_exactly_through_disk(tmp_path):
    rng = np.random.default_rng(0)
    actions = (rng.random((40, 2)) * 2 - 1).astype(np.float32)
    replay = Replay(ReplayConfig(capacity=100, save_chunk=16), (1,), np.float32, tmp_path, (2,), np.float32)
    for t, a in enumerate(actions):
        replay.add(np.array([t], np.float32), a, 0.0, False, t == 0)
    replay.flush()
    restored = Replay(ReplayConfig(capacity=100, save_chunk=16), (1,), np.float32, tmp_path, (2,), np.float32)
    restored.load(40)
    window = restored.sample(1, 40, rng)
    assert window["action"].dtype == np.float32 and np.array_equal(window["action"][0], actions)
    with pytest.raises(ValueError, match="cannot be stored"):
        replay.add(np.array([0], np.float32), np.zeros(3, np.float32), 0.0, False, False)
    discrete = Replay(ReplayConfig(capacity=100, save_chunk=16), (1,), np.float32, tmp_path)
    with pytest.raises(WmrlError, match="actions are float32"):
        discrete.load(40)


@pytest.mark.parametrize("behaviour", ["actor_critic", "cem", "cmaes"])
def test_train_eval_and_dream_run_on_a_box_action_env(tmp_path, capsys, behaviour):
    run = tmp_path / "run"
    args = ["--preset", "debug", "--env", "tests.fake_envs:WmrlBoxSign-v0", "--run-dir", str(run), "--no-progress",
            "--set", f"behavior={behaviour}", "--set", "train.steps=160", "--set", "train.eval_every=80"]
    assert main(["train", *args]) == 0
    assert main(["eval", str(run), "--episodes", "2", "--sample"]) == 0
    assert main(["dream", str(run), "--horizon", "3"]) == 0
    assert (run / "dream.png").is_file()


def test_a_warm_started_gaussian_plan_keeps_its_mean_and_restarts_its_std():
    planner = CemPlanner(CemConfig(horizon=3, candidates=8, iterations=1, elites=2), ActionSpace.box(1))
    plan = torch.tensor([[[0.5, 0.01], [0.7, 0.02], [-0.2, 0.03]]])  # (B=1, H=3, mean | std)
    prior = planner._prior(plan, 1, torch.device("cpu"))
    assert prior[0, :, 0].tolist() == pytest.approx([0.7, -0.2, 0.0]) and prior[0, :, 1].tolist() == [1.0] * 3


def test_reinforce_scores_box_actions_as_drawn_and_the_model_sees_them_clipped():
    torch.manual_seed(0)
    ac = ActorCritic(ActorCriticConfig(hidden=16, layers=1, gradient="reinforce", min_std=1.0), 3, BOX)
    drawn = ac._imagined(torch.randn(4000, 3))
    assert drawn.abs().max() > 1.5, "REINFORCE must score the raw samples, not their clipped values"
    assert BOX.encode(drawn, torch.float32).abs().max() <= 1.0


def test_the_dynamics_objective_subtracts_each_states_differentiable_value():
    """DreamerV3's backprop objective is R_t - V(s_t) with V(s_t) not stopped. With a horizon of 2 and
    continuation 1, the summed objective's derivative in V(s_0) is -1, in V(s_1) gamma (1 - lam) - 1
    (R_0's bootstrap minus s_1's baseline), in V(s_2) gamma + gamma^2 lam (the returns' bootstraps only)."""
    torch.manual_seed(0)
    gamma, lam = 0.9, 0.5
    cfg = ActorCriticConfig(hidden=16, layers=1, horizon=2, value_bins=15, gradient="dynamics", gamma=gamma, lam=lam)
    ac = ActorCritic(cfg, 3, BOX)
    with torch.no_grad():  # the critic's output layer starts at zero, which would make every derivative 0
        for p in ac.critic.parameters():
            p.normal_(0, 0.5)
    feat = torch.randn(4, 3, 3, requires_grad=True)
    rollout = Rollout(feat, torch.zeros(4, 2, 2), torch.randn(4, 2), torch.ones(4, 2))
    (d_objective,) = torch.autograd.grad(ac._differentiable_returns(rollout).sum(), feat)
    (d_value,) = torch.autograd.grad(ac.twohot.decode(ac.critic(feat)).sum(), feat)  # (4, 3, 3): dV(s_t)/ds_t
    for t, weight in enumerate((-1.0, gamma * (1 - lam) - 1, gamma + gamma ** 2 * lam)):
        assert d_value[:, t].abs().max() > 1e-2
        assert torch.allclose(d_objective[:, t], weight * d_value[:, t], atol=1e-5), t
