"""STORM-only tests: the KV cache, episode masking and per-sample free bits (the protocol's contract
tests, shared by every world model, are in test_world_models.py)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.world_model_fixtures import batch, make_model
from wmrl.nets.categorical import free_bits_mean
from wmrl.worldmodels.storm_transformer import CausalTransformer, TransformerConfig, _rope_angles, _rotate

@pytest.mark.parametrize("kind", ["vector", "minatar"])
def test_cached_imagination_equals_uncached_forward(kind):
    m = make_model("storm", kind, context=32)
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


def test_acting_deep_into_an_episode_sees_a_fresh_window_of_history_steps():
    """The state after 40 steps of one episode is the transformer run afresh over the last `history`
    steps, the same window an imagination start is observed over, and never a cache that slid over the
    whole episode (whose receptive field grows to layers * (context - 1) steps, beyond any training
    window)."""
    m = make_model("storm", context=16, history=6)
    m.deterministic = True
    b = batch("vector", B=2, T=40)
    b["is_first"][:] = False
    b["is_first"][:, 0] = True
    with torch.no_grad():
        state, prev = m.initial(2), torch.zeros(2, dtype=torch.long)
        for t in range(40):
            state, feat = m.observe(state, b["obs"][:, t], prev, b["is_first"][:, t])
            prev = b["action"][:, t]
        window = {k: v[:, -6:] for k, v in b.items()}
        fresh = m.features(m.observe_sequence(window["obs"], window["action"], window["is_first"]))
        longer = {k: v[:, -7:] for k, v in b.items()}
        seven = m.features(m.observe_sequence(longer["obs"], longer["action"], longer["is_first"]))
    assert torch.allclose(feat, fresh, atol=1e-5)
    assert torch.allclose(seven, fresh, atol=1e-5)  # rows before the window do not reach the state
    assert state.tokens[0].shape[1] == 5


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


@pytest.mark.parametrize("streams", [2, 16])  # 16 streams take the batched (plain matmul) attention path
def test_cache_slides_exactly_past_the_context_window(streams):
    torch.manual_seed(0)
    C = 6
    tf = CausalTransformer(TransformerConfig(layers=2, width=16, heads=2, ffn=32, context=C, dropout=0.0)).eval()
    x = torch.randn(streams, 4 * C, 16)
    first = torch.zeros(streams, 4 * C, dtype=torch.bool)
    first[:, 0] = True
    first[1, 9] = True
    with torch.no_grad():
        full, _ = tf(x, first)
        cache, outs = None, []
        for t in range(4 * C):
            out, cache = tf(x[:, t:t + 1], first[:, t:t + 1], cache)
            outs.append(out)
    assert torch.allclose(torch.cat(outs, 1), full, atol=1e-5)


@pytest.mark.parametrize("streams", [2, 16])
def test_last_only_gives_the_last_output_and_the_same_cache(streams):
    """Observing a window needs only its last output: the last block then runs for the last token alone,
    and the cache (every token's keys and values) is the one of the full forward."""
    torch.manual_seed(0)
    tf = CausalTransformer(TransformerConfig(layers=3, width=16, heads=2, ffn=32, context=8, dropout=0.0)).eval()
    x = torch.randn(streams, 7, 16)
    first = torch.zeros(streams, 7, dtype=torch.bool)
    first[:, 0] = first[0, 3] = True
    with torch.no_grad():
        full, cache_full = tf(x, first)
        last, cache_last = tf(x, first, last_only=True)
        step_full, _ = tf(x[:, :1], first[:, :1], cache_full.clone())
        step_last, _ = tf(x[:, :1], first[:, :1], cache_last.clone())
    assert last.shape == (streams, 1, 16)
    assert torch.allclose(last[:, 0], full[:, -1], atol=1e-6)
    assert torch.allclose(step_last, step_full, atol=1e-6)


def test_rotary_embedding_matches_a_slow_reference():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64)  # (B, heads, T, head_dim)
    start, half = 1000, 4
    got = _rotate(x, *_rope_angles(start, 5, half, torch.device("cpu")))
    ref = x.clone()
    for t in range(5):
        for i in range(half):
            angle = (start + t) * 10000.0 ** (-i / half)
            a, b = x[..., t, i], x[..., t, i + half]
            ref[..., t, i] = a * math.cos(angle) - b * math.sin(angle)
            ref[..., t, i + half] = a * math.sin(angle) + b * math.cos(angle)
    assert torch.allclose(got, ref, atol=1e-5)


def test_outputs_do_not_depend_on_where_an_episode_starts():
    """Rotary positions are relative: an episode seen after 40 tokens of another one (masked out)
    gives the same outputs as the same episode seen first."""
    torch.manual_seed(0)
    tf = CausalTransformer(TransformerConfig(layers=2, width=16, heads=2, ffn=32, context=8, dropout=0.0)).eval()
    before, x = torch.randn(3, 40, 16), torch.randn(3, 10, 16)
    first = torch.zeros(3, 10, dtype=torch.bool)
    first[:, 0] = True
    with torch.no_grad():
        alone, _ = tf(x, first)
        _, cache = tf(before, torch.zeros(3, 40, dtype=torch.bool))
        later, _ = tf(x, first, cache)
    assert torch.allclose(alone, later, atol=1e-5)


def test_free_bits_apply_per_sample():
    kl = torch.tensor([0.5, 1.5], requires_grad=True)
    loss = free_bits_mean(kl, torch.ones(2), 1.0)
    assert loss.item() == pytest.approx(1.25)  # a batch-mean clip would give max(1, 1.0) = 1.0
    loss.backward()
    assert kl.grad.tolist() == [0.0, 0.5]  # only the sample above the threshold is pushed


