"""Layer 2: the maths against slow, obvious references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wmrl.behavior.returns import ReturnNormalizer, continuation_weights, lambda_returns
from wmrl.nets.categorical import categorical_kl, sample_index, sample_onehot, unimix_logits
from wmrl.nets.encoders import EncoderConfig, VectorEncoder
from wmrl.nets.normalize import RunningNorm
from wmrl.nets.twohot import TwoHot, symexp, symlog


def test_symlog_matches_definition_and_inverts():
    x = torch.tensor([-1e4, -3.0, -0.5, 0.0, 0.5, 3.0, 1e4], dtype=torch.float64)
    expected = [math.copysign(math.log(abs(v) + 1), v) for v in x.tolist()]
    assert torch.allclose(symlog(x), torch.tensor(expected, dtype=torch.float64))
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-10)


def _twohot_reference(y: float, bins: list[float]) -> list[float]:
    x = min(max(math.copysign(math.log1p(abs(y)), y), bins[0]), bins[-1])
    out = [0.0] * len(bins)
    for i in range(len(bins) - 1):
        if bins[i] <= x <= bins[i + 1]:
            w = (x - bins[i]) / (bins[i + 1] - bins[i])
            out[i], out[i + 1] = 1 - w, w
            return out
    raise AssertionError("unreachable")


@pytest.mark.parametrize("y", [0.0, 1.0, -1.0, 0.37, 12.5, -250.0, 1e12])
def test_twohot_encode_matches_slow_reference(y):
    th = TwoHot(255)
    ref = torch.tensor(_twohot_reference(y, th.bins.tolist()))
    got = th.encode(torch.tensor([y]))[0]
    assert torch.allclose(got, ref, atol=1e-5)
    assert got.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert (got > 0).sum() <= 2


def test_twohot_decode_of_encoding_recovers_value_in_range():
    th = TwoHot(255)
    y = torch.tensor([-1000.0, -2.5, 0.0, 0.3, 7.0, 400.0])
    logits = torch.log(th.encode(y) + 1e-12)  # softmax(log p) == p
    assert torch.allclose(th.decode(logits), y, rtol=1e-3, atol=1e-3)


def test_twohot_loss_is_minimised_by_the_target():
    th = TwoHot(15, -5, 5)
    y = torch.tensor([1.7])
    best = th.loss(torch.log(th.encode(y) + 1e-12), y)
    other = th.loss(torch.zeros(1, 15), y)
    assert best.item() < other.item()


def test_lambda_returns_hand_computed():
    # H = 3, gamma = 0.9, lambda = 0.5, termination after step 1 (c_1 = 0).
    r = torch.tensor([[1.0, 2.0, 3.0]])
    c = torch.tensor([[1.0, 0.0, 1.0]])
    v = torch.tensor([[10.0, 20.0, 30.0, 40.0]])  # V(s_0) .. V(s_3)
    # R_3 = V(s_3) = 40
    # R_2 = 3 + 0.9 * 1 * (0.5 * 40 + 0.5 * 40) = 39
    # R_1 = 2 + 0.9 * 0 * (...) = 2
    # R_0 = 1 + 0.9 * 1 * (0.5 * V(s_1)=20 + 0.5 * R_1=2) = 1 + 0.9 * 11 = 10.9
    out = lambda_returns(r, c, v, gamma=0.9, lam=0.5)
    assert torch.allclose(out, torch.tensor([[10.9, 2.0, 39.0]]))


def test_lambda_returns_bootstrap_from_next_state_value():
    # With lambda = 0 the return is the one-step target r_t + gamma * c_t * V(s_{t+1}), never V(s_t).
    r = torch.zeros(1, 2)
    c = torch.ones(1, 2)
    v = torch.tensor([[100.0, 1.0, 2.0]])
    assert torch.allclose(lambda_returns(r, c, v, gamma=1.0, lam=0.0), torch.tensor([[1.0, 2.0]]))


def test_lambda_one_is_discounted_monte_carlo():
    g = torch.Generator().manual_seed(0)
    r, v = torch.rand(4, 6, generator=g), torch.rand(4, 7, generator=g)
    c = torch.ones(4, 6)
    gamma = 0.97
    mc = sum(gamma**k * r[:, k] for k in range(6)) + gamma**6 * v[:, 6]
    assert torch.allclose(lambda_returns(r, c, v, gamma, 1.0)[:, 0], mc, atol=1e-5)


def test_continuation_weights_are_products_of_earlier_continuations():
    c = torch.tensor([[0.9, 0.5, 0.0, 1.0]])
    assert torch.allclose(continuation_weights(c), torch.tensor([[1.0, 0.9, 0.45, 0.0]]))


def test_return_normalizer_is_an_ema_of_the_percentile_spread_from_zero_with_floor():
    norm = ReturnNormalizer(decay=0.5)
    returns = torch.arange(101.0)  # P5 = 5, P95 = 95
    assert norm.update(returns).item() == pytest.approx(45.0)  # 0.5 * 0 + 0.5 * 90: the EMA starts at 0
    assert norm.update(returns).item() == pytest.approx(67.5)
    assert norm.update(returns * 0).item() == pytest.approx(33.75)
    small = ReturnNormalizer()
    assert small.update(torch.zeros(10)).item() == 1.0  # floor of 1
    assert ReturnNormalizer(decay=0.99).update(returns).item() == pytest.approx(1.0)  # 0.9 is floored


def test_return_normalizer_ignores_a_batch_with_a_nan():
    norm = ReturnNormalizer(decay=0.5)
    norm.update(torch.arange(101.0))
    poisoned = torch.arange(101.0)
    poisoned[3] = float("nan")
    assert norm.update(poisoned).item() == pytest.approx(45.0)
    assert torch.isfinite(norm.scale)


def test_categorical_kl_matches_reference_and_unimix_bounds_probabilities():
    g = torch.Generator().manual_seed(1)
    p = unimix_logits(torch.randn(3, 2, 5, generator=g), 0.01)
    q = unimix_logits(torch.randn(3, 2, 5, generator=g), 0.01)
    ref = np.zeros(3)
    for b in range(3):
        for s in range(2):
            for k in range(5):
                pp, qq = p[b, s, k].exp().item(), q[b, s, k].exp().item()
                ref[b] += pp * math.log(pp / qq)
    assert np.allclose(categorical_kl(p, q).numpy(), ref, atol=1e-5)
    assert p.exp().min().item() >= 0.01 / 5 - 1e-7


def test_inverse_cdf_sampling_follows_each_rows_distribution():
    torch.manual_seed(0)
    probs = torch.tensor([[0.1, 0.6, 0.3, 0.0], [0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.25, 0.25]])
    idx = sample_index(probs.log()[:, None].expand(3, 20000, 4))  # (3, 20000)
    for row in range(3):
        freq = torch.bincount(idx[row], minlength=4).float() / 20000
        assert torch.allclose(freq, probs[row], atol=0.015)
        assert freq[probs[row] == 0].sum() == 0  # a class of probability 0 is never drawn


def test_onehot_sample_is_exact_and_straight_through_only_with_gradient():
    logits = torch.randn(5, 3, 4, requires_grad=True)
    sample = sample_onehot(unimix_logits(logits, 0.01))
    assert torch.allclose(sample.detach(), sample.detach().round(), atol=1e-6)  # one-hot up to rounding
    assert torch.equal(sample.detach().round().sum(-1), torch.ones(5, 3))
    (sample * torch.randn(5, 3, 4)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0  # gradient reaches the probabilities
    with torch.no_grad():
        plain = sample_onehot(unimix_logits(logits, 0.01))
    assert not plain.requires_grad and set(plain.unique().tolist()) <= {0.0, 1.0}


def test_running_norm_merges_batches_into_exact_moments():
    rng = np.random.default_rng(0)
    batches = [rng.normal([2.0, -1.0, 0.0], [0.02, 3.0, 1.0], size=(n, 3)) for n in (5, 64, 1, 300)]
    norm = RunningNorm(3, eps=0.0)
    x = torch.zeros(3)
    assert torch.equal(norm(x), x)  # identity before any statistics
    for b in batches:
        norm.update(torch.as_tensor(b, dtype=torch.float32)[None])  # leading dims are flattened
    data = np.concatenate(batches)
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-5)
    np.testing.assert_allclose((norm.m2 / norm.count).numpy(), data.var(0), rtol=1e-4)
    y = norm(torch.as_tensor(data, dtype=torch.float32))
    np.testing.assert_allclose(y.std(0, unbiased=False).numpy(), 1.0, rtol=1e-3)  # the 0.02-wide dimension too
    assert torch.allclose(norm.inverse(y), torch.as_tensor(data, dtype=torch.float32), atol=1e-4)


def test_vector_encoder_updates_statistics_only_when_training():
    enc = VectorEncoder((2,), EncoderConfig(hidden=8, layers=1))
    obs = torch.tensor([[1.0, 10.0], [3.0, 30.0]])
    enc.eval()
    enc(obs)
    assert enc.scale.count == 0
    enc.train()
    enc(obs)
    assert enc.scale.count == 2 and torch.allclose(enc.scale.mean, torch.tensor([2.0, 20.0], dtype=torch.float64))
    restored = VectorEncoder((2,), EncoderConfig(hidden=8, layers=1))
    restored.load_state_dict(enc.state_dict())
    assert torch.equal(restored.scale.mean, enc.scale.mean)
