"""Contract tests of the world-model protocol, run for every world model."""

from __future__ import annotations

import pytest
import torch

from tests.world_model_fixtures import MODELS, OBS, batch, fake_obs, make_model


@pytest.mark.parametrize("kind", list(OBS))
@pytest.mark.parametrize("name", MODELS)
def test_shapes_of_observe_imagine_and_loss(name, kind):
    m = make_model(name, kind)
    b = batch(kind)
    B, T = b["is_first"].shape
    state, feat = m.observe(m.initial(B), b["obs"][:, 0], b["action"][:, 0], torch.ones(B, dtype=torch.bool))
    assert feat.shape == (B, m.feat_dim)
    state = m.observe_sequence(b["obs"], b["action"], b["is_first"])
    ro = m.imagine(state, lambda f: torch.zeros(f.shape[0], dtype=torch.long), horizon=5)
    assert ro.feat.shape == (B, 6, m.feat_dim) and ro.action.shape == (B, 5)
    assert ro.reward.shape == (B, 5) and ro.cont.shape == (B, 5)
    assert ((ro.cont >= 0) & (ro.cont <= 1)).all()
    m.train()
    loss, metrics = m.loss(b)
    loss.backward()
    assert torch.isfinite(loss) and {"wm/recon", "wm/reward", "wm/terminal", "wm/loss"} <= set(metrics)
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad), "a parameter gets no gradient"
    assert m.predict_obs(ro.feat).shape == (B, 6, *OBS[kind][0])


@pytest.mark.parametrize("name", MODELS)
def test_imagining_twice_from_one_state_gives_the_same_rollout(name):
    m = make_model(name)
    b = batch("vector")
    actions = torch.randint(0, 3, (3, 6))
    with torch.no_grad():
        state = m.observe_sequence(b["obs"], b["action"], b["is_first"])
        rollouts = []
        for _ in range(2):
            torch.manual_seed(1)
            rollouts.append(m.imagine(state, actions, 6))
    assert torch.equal(rollouts[0].feat, rollouts[1].feat)
    assert torch.equal(rollouts[0].cont, rollouts[1].cont)


@pytest.mark.parametrize("name", MODELS)
def test_stepwise_observe_equals_observe_sequence(name):
    m = make_model(name)
    m.deterministic = True
    b = batch("vector", T=9)
    B, T = b["is_first"].shape
    with torch.no_grad():
        seq_state = m.observe_sequence(b["obs"], b["action"], b["is_first"])
        state, prev = m.initial(B), torch.zeros(B, dtype=torch.long)
        for t in range(T):
            state, feat = m.observe(state, b["obs"][:, t], prev, b["is_first"][:, t])
            prev = b["action"][:, t]
    assert torch.allclose(feat, m.features(seq_state), atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_one_imagined_step_has_the_history_state_observation_gives(name):
    # Imagining a_t from s_t and observing obs_{t+1} after a_t must agree on h_{t+1}: both use one transition.
    m = make_model(name)
    m.deterministic = True
    b = batch("vector", T=8)
    b["is_first"][:] = False
    b["is_first"][:, 0] = True
    B, T = b["is_first"].shape
    with torch.no_grad():
        state, prev = m.initial(B), torch.zeros(B, dtype=torch.long)
        for t in range(T - 1):
            state, _ = m.observe(state, b["obs"][:, t], prev, b["is_first"][:, t])
            prev = b["action"][:, t]
            imagined = m.imagine(state, prev[:, None], 1).feat[:, 1, m.latent_dim:]
            _, observed = m.observe(state, b["obs"][:, t + 1], prev, b["is_first"][:, t + 1])
            assert torch.allclose(imagined, observed[:, m.latent_dim:], atol=1e-5), f"step {t}"


@pytest.mark.parametrize("name", MODELS)
def test_is_first_drops_the_earlier_history(name):
    m = make_model(name)
    m.deterministic = True
    B = 2
    tail = fake_obs("vector", B, 4)
    acts = torch.randint(0, 3, (B, 4))
    feats = []
    with torch.no_grad():
        for seed in (0, 1):
            torch.manual_seed(seed)
            state, prev = m.initial(B), torch.zeros(B, dtype=torch.long)
            for t in range(5):  # different histories
                state, _ = m.observe(state, fake_obs("vector", B), prev, torch.tensor([t == 0] * B))
                prev = torch.randint(0, 3, (B,))
            for t in range(4):  # the same new episode
                state, feat = m.observe(state, tail[:, t], prev, torch.tensor([t == 0] * B))
                prev = acts[:, t]
            feats.append(feat)
    assert torch.allclose(feats[0], feats[1], atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip_preserves_predictions(name):
    m = make_model(name, "minatar")
    b = batch("minatar")
    other = make_model(name, "minatar")
    for p in other.parameters():
        p.data.add_(1.0)
    other.load_state_dict(m.state_dict())
    with torch.no_grad():
        losses = []
        for model in (m, other):
            torch.manual_seed(3)
            losses.append(model.loss(b)[0])
    assert torch.equal(losses[0], losses[1])


@pytest.mark.parametrize("name", MODELS)
def test_acting_and_imagining_under_bf16_autocast(name):
    # precision=bf16 (the default on CUDA): a step-by-step observation, then imagination from it, as an
    # agent acts and plans. STORM's key/value cache starts in fp32 and must take the bf16 keys.
    m = make_model(name)
    b = batch("vector", T=6)
    B, T = b["is_first"].shape
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        state, prev = m.initial(B), torch.zeros(B, dtype=torch.long)
        for t in range(T):
            state, feat = m.observe(state, b["obs"][:, t], prev, b["is_first"][:, t])
            prev = b["action"][:, t]
        ro = m.imagine(state, lambda f: torch.zeros(f.shape[0], dtype=torch.long), horizon=4)
    assert feat.shape == (B, m.feat_dim) and ro.feat.shape == (B, 5, m.feat_dim)
    assert torch.isfinite(ro.feat.float()).all() and torch.isfinite(ro.reward.float()).all()
