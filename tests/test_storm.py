"""Layer 1: contract tests of the world-model protocol (STORM now; RSSM and MDN-RNN join the
parametrisation when they land)."""

from __future__ import annotations

import pytest
import torch

from wmrl.nets.categorical import free_bits_mean, mode_onehot
from wmrl.nets.encoders import EncoderConfig
from wmrl.worldmodels.storm import Storm, StormConfig
from wmrl.worldmodels.storm_transformer import CausalTransformer, TransformerConfig

OBS = {"vector": ((4,), False), "minatar": ((4, 10, 10), True), "rgb": ((3, 16, 16), True)}


def make_storm(kind: str = "vector", context: int = 16, actions: int = 3) -> Storm:
    torch.manual_seed(0)
    shape, is_image = OBS[kind]
    cfg = StormConfig(stoch=4, classes=5, head_hidden=32,
                      encoder=EncoderConfig(depth=4, stages=2, hidden=32, layers=1),
                      transformer=TransformerConfig(layers=2, width=32, heads=2, ffn=64, context=context))
    return Storm(cfg, shape, is_image, actions).eval()


def fake_obs(kind: str, *lead: int) -> torch.Tensor:
    shape, is_image = OBS[kind]
    if is_image:
        return torch.randint(0, 256, (*lead, *shape), dtype=torch.uint8)
    return torch.randn(*lead, *shape)


def batch(kind: str, B: int = 3, T: int = 10, actions: int = 3) -> dict:
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    first[1, 4] = True
    return {"obs": fake_obs(kind, B, T), "action": torch.randint(0, actions, (B, T)), "reward": torch.randn(B, T),
            "terminal": torch.rand(B, T) < 0.1, "is_first": first}


def deterministic(model: Storm) -> Storm:
    """Latents by mode instead of sampling, so different call paths can be compared exactly."""
    model.vae.sample = lambda log_probs: mode_onehot(log_probs).flatten(-2)
    return model


@pytest.mark.parametrize("kind", list(OBS))
def test_shapes_of_observe_imagine_and_loss(kind):
    m = make_storm(kind)
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
    assert torch.isfinite(loss) and {"wm/recon", "wm/reward", "wm/kl_dyn"} <= set(metrics)
    assert m.predict_obs(ro.feat).shape == (B, 6, *OBS[kind][0])


@pytest.mark.parametrize("kind", ["vector", "minatar"])
def test_cached_imagination_equals_uncached_forward(kind):
    m = make_storm(kind, context=32)
    b = batch(kind, T=8)
    actions = torch.randint(0, 3, (3, 12))
    with torch.no_grad():
        state = m.observe_sequence(b["obs"], b["action"], b["is_first"])
        torch.manual_seed(5)
        cached = m.imagine(state, actions, 12)
        torch.manual_seed(5)
        full = m.imagine(state, actions, 12, use_cache=False)
    assert torch.allclose(cached.feat, full.feat, atol=1e-5)
    assert torch.allclose(cached.reward, full.reward, atol=1e-5)
    assert torch.allclose(cached.cont, full.cont, atol=1e-5)


def test_imagining_twice_from_one_state_gives_the_same_rollout():
    m = make_storm()
    b = batch("vector")
    actions = torch.randint(0, 3, (3, 6))
    with torch.no_grad():
        state = m.observe_sequence(b["obs"], b["action"], b["is_first"])
        torch.manual_seed(1)
        first = m.imagine(state, actions, 6)
        torch.manual_seed(1)
        second = m.imagine(state, actions, 6)
    assert torch.equal(first.feat, second.feat)


def test_stepwise_observe_equals_observe_sequence():
    m = deterministic(make_storm())
    b = batch("vector", T=9)
    B, T = b["is_first"].shape
    with torch.no_grad():
        seq_state = m.observe_sequence(b["obs"], b["action"], b["is_first"])
        state, prev = m.initial(B), torch.zeros(B, dtype=torch.long)
        for t in range(T):
            state, feat = m.observe(state, b["obs"][:, t], prev, b["is_first"][:, t])
            prev = b["action"][:, t]
    assert torch.allclose(feat, m.features(seq_state), atol=1e-5)


def test_is_first_drops_the_earlier_history():
    m = deterministic(make_storm())
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


def test_attention_is_masked_across_episode_boundaries():
    torch.manual_seed(0)
    tf = CausalTransformer(TransformerConfig(layers=2, width=16, heads=2, ffn=32, context=32, dropout=0.0)).eval()
    x = torch.randn(2, 10, 16)
    first = torch.zeros(2, 10, dtype=torch.bool)
    first[:, 0] = first[:, 6] = True
    y = x.clone()
    y[:, :6] += torch.randn(2, 6, 16)  # change only the first episode
    with torch.no_grad():
        out_x, _ = tf(x, first)
        out_y, _ = tf(y, first)
    assert torch.allclose(out_x[:, 6:], out_y[:, 6:], atol=1e-6)
    assert not torch.allclose(out_x[:, :6], out_y[:, :6])


def test_cache_slides_exactly_past_the_context_window():
    torch.manual_seed(0)
    C = 6
    tf = CausalTransformer(TransformerConfig(layers=2, width=16, heads=2, ffn=32, context=C, dropout=0.0)).eval()
    x = torch.randn(2, 4 * C, 16)
    first = torch.zeros(2, 4 * C, dtype=torch.bool)
    first[:, 0] = True
    first[1, 9] = True
    with torch.no_grad():
        full, _ = tf(x, first)
        cache, outs = None, []
        for t in range(4 * C):
            out, cache = tf(x[:, t:t + 1], first[:, t:t + 1], cache)
            outs.append(out)
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)


def test_free_bits_apply_per_sample():
    kl = torch.tensor([0.5, 1.5], requires_grad=True)
    loss = free_bits_mean(kl, torch.ones(2), 1.0)
    assert loss.item() == pytest.approx(1.25)  # a batch-mean clip would give max(1, 1.0) = 1.0
    loss.backward()
    assert kl.grad.tolist() == [0.0, 0.5]  # only the sample above the threshold is pushed


def test_state_dict_round_trip_preserves_predictions():
    m = make_storm("minatar")
    b = batch("minatar")
    other = make_storm("minatar")
    for p in other.parameters():
        p.data.add_(1.0)
    other.load_state_dict(m.state_dict())
    with torch.no_grad():
        torch.manual_seed(3)
        la, _ = m.loss(b)
        torch.manual_seed(3)
        lb, _ = other.loss(b)
    assert torch.equal(la, lb)
