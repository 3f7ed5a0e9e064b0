"""Discrete latents: groups of categorical variables with unimix and straight-through gradients.

STORM and DreamerV3 represent a latent as `stoch` categorical variables of `classes` classes each.
The distribution mixes 1% uniform into the softmax ("unimix") so that no class gets probability 0,
which keeps the KL terms finite; samples are one-hot with straight-through gradients.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def unimix_logits(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    """(..., stoch, classes) raw logits -> log-probabilities of (1-unimix)*softmax + unimix/classes."""
    if unimix <= 0:
        return F.log_softmax(logits.float(), -1)
    probs = logits.float().softmax(-1)
    probs = (1 - unimix) * probs + unimix / probs.shape[-1]
    return probs.log()


def sample_onehot(log_probs: torch.Tensor, straight_through: bool = True) -> torch.Tensor:
    """(..., stoch, classes) log-probs -> one-hot sample with straight-through gradient to probs
    (only when the log-probs carry a gradient: imagination and acting skip the extra ops)."""
    probs = log_probs.exp()
    onehot = onehot_of(sample_index(log_probs, probs), probs.shape[-1], probs.dtype)
    if straight_through and probs.requires_grad:
        onehot = onehot + probs - probs.detach()
    return onehot


def draw(log_probs: torch.Tensor, mode: bool = False) -> torch.Tensor:
    """(..., stoch, classes) log-probs -> (..., stoch * classes) flattened one-hot: a straight-through
    sample, or the mode (no gradient) when `mode` (world models' `deterministic` switch)."""
    return (mode_onehot(log_probs) if mode else sample_onehot(log_probs)).flatten(-2)


def sample_index(log_probs: torch.Tensor, probs: torch.Tensor | None = None) -> torch.Tensor:
    """A sample index from (..., classes) log-probs by inverse-CDF sampling: one uniform number per
    distribution, so it is several times faster on CPU than the Gumbel-max trick (one per class)
    or torch.multinomial for many small distributions. `probs` = log_probs.exp() if already known."""
    probs = (log_probs.exp() if probs is None else probs).detach().float()
    cdf = probs.cumsum(-1)  # (..., classes)
    u = torch.rand(cdf.shape[:-1] + (1,), device=cdf.device) * cdf[..., -1:]  # uniform on [0, total)
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


def onehot_of(index: torch.Tensor, classes: int, dtype: torch.dtype) -> torch.Tensor:
    """(...,) integer indices -> (..., classes) one-hot of `dtype` (a scatter: cheaper than F.one_hot
    followed by a cast)."""
    out = torch.zeros(index.shape + (classes,), dtype=dtype, device=index.device)
    return out.scatter_(-1, index[..., None], 1.0)


def mode_onehot(log_probs: torch.Tensor) -> torch.Tensor:
    """(..., stoch, classes) -> one-hot of the most likely class of each variable."""
    return onehot_of(log_probs.argmax(-1), log_probs.shape[-1], log_probs.dtype)


def categorical_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) for (..., stoch, classes) log-probs, summed over the latent variables -> (...,)."""
    return (log_p.exp() * (log_p - log_q)).sum((-2, -1))


def categorical_entropy(log_p: torch.Tensor) -> torch.Tensor:
    """Entropy summed over the latent variables: (..., stoch, classes) -> (...,)."""
    return -(log_p.exp() * log_p).sum((-2, -1))


def free_bits_mean(kl: torch.Tensor, valid: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Mean over valid entries of max(free_bits, kl), clipped per sample.

    Clipping each sample's KL (not the batch mean, the public STORM code's flaw 4) stops the gradient
    only for the samples already below the threshold; the others still get pushed down.
    kl, valid: (...) with valid in {0, 1}.
    """
    return (kl.clamp(min=free_bits) * valid).sum() / valid.sum().clamp(min=1)


def balanced_kl(post: torch.Tensor, prior: torch.Tensor, valid: torch.Tensor, free_bits: float,
                dyn_scale: float, rep_scale: float) -> tuple[torch.Tensor, dict[str, float]]:
    """DreamerV3's KL balancing of a posterior and a prior, both (..., stoch, classes) log-probs.

    dyn_scale * KL(sg(post) || prior) trains the prior (dynamics); rep_scale * KL(post || sg(prior))
    trains the representation; each term has per-sample free bits. valid: (...) in {0, 1}.
    Returns the loss and the mean KL of the valid entries as metrics.
    """
    dyn = categorical_kl(post.detach(), prior)
    rep = categorical_kl(post, prior.detach())
    loss = dyn_scale * free_bits_mean(dyn, valid, free_bits) + rep_scale * free_bits_mean(rep, valid, free_bits)
    denom = valid.sum().clamp(min=1)
    return loss, {"wm/kl_dyn": ((dyn * valid).sum() / denom).item(), "wm/kl_rep": ((rep * valid).sum() / denom).item()}
