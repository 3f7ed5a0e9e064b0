"""STORM's sequence model: a GPT-style causal transformer with a real per-layer key/value cache.

One token per environment step. Attention is masked three ways:
  causal        a token sees itself and earlier tokens only;
  episode       a token sees only tokens of its own episode (segment ids grow at every is_first), so
                training batches and imagination contexts never attend across a reset (STORM flaw 3);
  window        a token sees at most `context` tokens (itself included), as in training.

Positions. Deliberate departure from STORM's learned absolute positional embedding: rotary
embeddings (RoPE) on queries and keys make attention depend only on the distance between tokens.
That lets the cache slide over an episode of any length exactly (the oldest key is dropped, nothing
is recomputed) and makes a token's meaning independent of where its episode starts inside a
training window.

The cache stores each layer's rotated keys and values, so one imagined step costs O(context)
attention instead of re-running the whole context (STORM flaw 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class TransformerConfig:
    layers: int = 2
    width: int = 512
    heads: int = 8
    ffn: int = 1024
    dropout: float = 0.1
    context: int = 64
    """Longest attention window in tokens (training sequences are this long in the STORM paper)."""


@dataclass
class KVCache:
    """Keys/values of the tokens seen so far, for B parallel streams.

    k, v: per layer (B, heads, L, head_dim), keys already rotated by their absolute position.
    seg: (B, L) episode id of each cached token; pos: (L,) absolute position shared by the batch.
    last_seg: (B,) episode id of the newest token; next_pos: position of the next token.
    """

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    seg: torch.Tensor
    pos: torch.Tensor
    last_seg: torch.Tensor
    next_pos: int

    @property
    def length(self) -> int:
        return self.pos.numel()

    def index(self, idx: torch.Tensor) -> "KVCache":
        """Select batch rows (used when an imagination starts from a subset of streams)."""
        return KVCache([k[idx] for k in self.k], [v[idx] for v in self.v], self.seg[idx], self.pos,
                       self.last_seg[idx], self.next_pos)


def _rope(x: torch.Tensor, pos: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate (B, heads, T, head_dim) by absolute positions (T,). Angles in float64 so that
    positions of 10^6 steps still rotate precisely."""
    half = x.shape[-1] // 2
    inv_freq = base ** (-torch.arange(half, device=x.device, dtype=torch.float64) / half)
    angle = pos.to(torch.float64)[:, None] * inv_freq[None, :]  # (T, half)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


class _Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        if cfg.width % cfg.heads or (cfg.width // cfg.heads) % 2:
            raise ValueError(f"width {cfg.width} must split into {cfg.heads} heads of even size")
        self.heads = cfg.heads
        self.norm1, self.norm2 = nn.LayerNorm(cfg.width), nn.LayerNorm(cfg.width)
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.ffn = nn.Sequential(nn.Linear(cfg.width, cfg.ffn), nn.GELU(), nn.Linear(cfg.ffn, cfg.width))
        self.drop = nn.Dropout(cfg.dropout)
        self.attn_dropout = cfg.dropout

    def forward(self, x, pos, mask, past_k, past_v):
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(D, -1)
        q, k, v = (t.reshape(B, T, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
        q, k = _rope(q, pos), _rope(k, pos)  # (B, heads, T, head_dim)
        if past_k is not None:
            k, v = torch.cat([past_k, k], 2), torch.cat([past_v, v], 2)  # (B, heads, L+T, head_dim)
        drop = self.attn_dropout if self.training else 0.0
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(B, T, D)))
        x = x + self.drop(self.ffn(self.norm2(x)))
        return x, k, v


class CausalTransformer(nn.Module):
    """Pre-LayerNorm GPT blocks over (B, T, width) tokens, with optional cache."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.width)

    def empty_cache(self, batch: int, device: torch.device) -> KVCache:
        empty = torch.zeros(batch, self.cfg.heads, 0, self.cfg.width // self.cfg.heads, device=device)
        return KVCache([empty] * self.cfg.layers, [empty] * self.cfg.layers,
                       torch.zeros(batch, 0, dtype=torch.long, device=device),
                       torch.zeros(0, dtype=torch.long, device=device),
                       torch.full((batch,), -1, dtype=torch.long, device=device), 0)

    def forward(self, x: torch.Tensor, is_first: torch.Tensor, cache: KVCache | None = None
                ) -> tuple[torch.Tensor, KVCache]:
        """Append T tokens per stream and return their outputs.

        Args:
            x: (B, T, width) new tokens.
            is_first: (B, T) bool, True where a token starts a new episode: it and later tokens stop
                seeing everything before it (cached tokens included).
            cache: tokens already seen, or None for a fresh start.
        Returns:
            (B, T, width) outputs, and the cache extended by the new tokens and trimmed to the last
            `context - 1` tokens (all a future token may attend besides itself).
        """
        B, T, _ = x.shape
        if cache is None:
            cache = self.empty_cache(B, x.device)
        seg = cache.last_seg[:, None] + is_first.long().cumsum(1)  # (B, T)
        pos = cache.next_pos + torch.arange(T, device=x.device)  # (T,)
        key_seg = torch.cat([cache.seg, seg], 1)  # (B, L+T)
        key_pos = torch.cat([cache.pos, pos])  # (L+T,)
        dist = pos[:, None] - key_pos[None, :]  # (T, L+T)
        visible = (dist >= 0) & (dist < self.cfg.context)
        mask = (seg[:, :, None] == key_seg[:, None, :]) & visible[None]  # (B, T, L+T)
        mask = mask[:, None]  # (B, 1, T, L+T): broadcast over heads
        new_k, new_v = [], []
        for i, block in enumerate(self.blocks):
            x, k, v = block(x, pos, mask, cache.k[i] if cache.length else None,
                            cache.v[i] if cache.length else None)
            new_k.append(k)
            new_v.append(v)
        keep = self.cfg.context - 1
        out = KVCache([k[:, :, -keep:] for k in new_k], [v[:, :, -keep:] for v in new_v],
                      key_seg[:, -keep:], key_pos[-keep:], seg[:, -1], cache.next_pos + T)
        return self.norm(x), out
