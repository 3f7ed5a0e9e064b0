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

import functools
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class TransformerConfig:
    layers: int = 2
    """Transformer blocks (STORM: 2)."""
    width: int = 512
    """Token width (STORM: 512)."""
    heads: int = 8
    """Attention heads; width / heads must be even (rotary embeddings)."""
    ffn: int = 1024
    """Hidden width of each block's feed-forward layer (STORM: 1024)."""
    dropout: float = 0.1
    """Dropout in attention and feed-forward layers while training (STORM: 0.1)."""
    context: int = 64
    """Longest attention window in tokens (training sequences are this long in the STORM paper)."""


_EMPTY = -(10**9)  # position of an unused cache slot: always outside the window


@dataclass
class KVCache:
    """A ring buffer of the last `context` tokens' keys and values, for B parallel streams.

    k, v: per layer (B, heads, C, head_dim), C = context; keys already rotated by their position.
    seg: (B, C) episode id per slot; pos: (C,) absolute position per slot (_EMPTY if unused).
    last_seg: (B,) episode id of the newest token; next_pos: position of the next token.
    Token p lives in slot p % C, so appending one token overwrites the one that just left the window.
    """

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    seg: torch.Tensor
    pos: torch.Tensor
    last_seg: torch.Tensor
    next_pos: int

    def clone(self) -> "KVCache":
        """A copy safe to extend: `CausalTransformer.forward` writes into the cache it is given."""
        return KVCache([k.clone() for k in self.k], [v.clone() for v in self.v], self.seg.clone(),
                       self.pos.clone(), self.last_seg.clone(), self.next_pos)

    def select(self, idx: torch.Tensor) -> "KVCache":
        """The streams idx (K,) of the batch (a copy; positions are shared by all streams)."""
        return KVCache([k[idx] for k in self.k], [v[idx] for v in self.v], self.seg[idx], self.pos.clone(),
                       self.last_seg[idx], self.next_pos)


@functools.lru_cache(maxsize=64)
def _rope_angles(start: int, length: int, half: int, device: torch.device, base: float = 10000.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE factors for positions start .. start + length - 1: cos (length, 2 * half) and signed sin
    (length, 2 * half) = [-sin, sin], so that rotation is x * cos + swap_halves(x) * sin.

    The angles are computed in float64 so positions of 10^6 steps stay exact. Memoised: imagination
    repeats the same positions at every update, and these ~10 tiny ops per step are a visible share
    of a CPU imagination step.
    """
    with torch.inference_mode(False):  # normal tensors even if first made under inference mode
        pos = torch.arange(start, start + length, device=device, dtype=torch.float64)
        inv_freq = base ** (-torch.arange(half, device=device, dtype=torch.float64) / half)
        angle = pos[:, None] * inv_freq[None, :]
        cos, sin = angle.cos().float(), angle.sin().float()
        return torch.cat([cos, cos], -1), torch.cat([-sin, sin], -1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, heads, T, head_dim) by the (T, head_dim) factors of _rope_angles: each pair
    (x_i, x_{i + head_dim / 2}) turns by its position's angle for frequency i."""
    x1, x2 = x.chunk(2, -1)
    return x * cos.to(x.dtype) + torch.cat([x2, x1], -1) * sin.to(x.dtype)


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

    def forward(self, x, rope, mask, attend, last_only: bool = False):
        """x: (B, T, width); attend(k, v) -> keys/values to attend over (new ones written to the cache).
        `last_only`: every token's keys and values are made, but only the last token's output (B, 1, width)."""
        B, T, D = x.shape
        qk, v = self.qkv(self.norm1(x)).split((2 * D, D), -1)
        # Queries and keys are rotated together: (B, 2 * heads, T, head_dim), then split.
        q, k = _rotate(qk.reshape(B, T, 2 * self.heads, D // self.heads).transpose(1, 2), *rope).chunk(2, 1)
        v = v.reshape(B, T, self.heads, D // self.heads).transpose(1, 2)  # (B, heads, T, head_dim)
        k, v = attend(k, v)
        if last_only:
            x, q, mask, T = x[:, -1:], q[:, :, -1:], mask[:, :, -1:], 1
        if not self.training and B * T > 8:
            # Batched inference (imagination, its context): plain matmuls match the fused CPU kernel
            # for one query per stream and are ~3x faster for a few (it is quicker for B * T tiny).
            scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, heads, 1, K)
            att = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        else:
            drop = self.attn_dropout if self.training else 0.0
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(B, T, D)))
        return x + self.drop(self.ffn(self.norm2(x)))


class CausalTransformer(nn.Module):
    """Pre-LayerNorm GPT blocks over (B, T, width) tokens, with optional cache."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.width)

    def empty_cache(self, batch: int, device: torch.device) -> KVCache:
        C, H = self.cfg.context, self.cfg.heads
        shape = (batch, H, C, self.cfg.width // H)
        return KVCache([torch.zeros(shape, device=device) for _ in self.blocks],
                       [torch.zeros(shape, device=device) for _ in self.blocks],
                       torch.full((batch, C), -2, dtype=torch.long, device=device),
                       torch.full((C,), _EMPTY, dtype=torch.long, device=device),
                       torch.full((batch,), -1, dtype=torch.long, device=device), 0)

    def forward(self, x: torch.Tensor, is_first: torch.Tensor, cache: KVCache | None = None,
                last_only: bool = False) -> tuple[torch.Tensor, KVCache]:
        """Append T tokens per stream and return their outputs.

        Args:
            x: (B, T, width) new tokens.
            is_first: (B, T) bool, True where a token starts a new episode: it and later tokens stop
                seeing everything before it (cached tokens included).
            cache: tokens already seen, or None for a fresh start. It is updated IN PLACE and returned;
                clone() it first to keep the old state (e.g. to imagine twice from one start).
            last_only: return only the last token's output (B, 1, width), the same as the last row of
                the full output; the last block then attends and runs its feed-forward layer for that
                token alone (observing a window needs its last output and every token's keys and values).
        Returns:
            (B, T, width) outputs (or (B, 1, width)) and the cache holding the last `context` tokens.
        """
        B, T, _ = x.shape
        C = self.cfg.context
        fresh = cache is None
        if fresh:
            cache = self.empty_cache(B, x.device)
        in_place = T == 1 and not fresh
        seg = cache.last_seg[:, None] + is_first.long().cumsum(1)  # (B, T)
        pos = cache.next_pos + torch.arange(T, device=x.device)  # (T,)
        if in_place:
            # One token: write it into its slot first (the token it replaces left the window), then
            # attend over the buffer: O(context) work, no copy of the cache. The slot is a Python
            # int, so the writes are plain copies rather than indexed scatters.
            keep, slots = None, cache.next_pos % C
            cache.pos[slots] = cache.next_pos
            cache.seg[:, slots] = seg[:, 0]
            key_seg, key_pos = cache.seg, cache.pos  # (B, C), (C,)
        else:
            keep = torch.arange(max(0, T - C), T, device=x.device)  # new tokens that stay in the window
            slots = pos[keep] % C
            key_seg = seg if fresh else torch.cat([cache.seg, seg], 1)  # (B, K)
            key_pos = pos if fresh else torch.cat([cache.pos, pos])  # (K,)
        dist = pos[:, None] - key_pos[None, :]  # (T, K)
        visible = (dist >= 0) & (dist < C)
        mask = ((seg[:, :, None] == key_seg[:, None, :]) & visible[None])[:, None]  # (B, 1, T, K)
        rope = _rope_angles(cache.next_pos, T, self.cfg.width // self.cfg.heads // 2, x.device)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, rope, mask, self._attend(cache, i, in_place, fresh, keep, slots), last_only and i == last)
        if not in_place:
            cache.pos[slots] = pos[keep]
            cache.seg[:, slots] = seg[:, keep]
        cache.last_seg, cache.next_pos = seg[:, -1], cache.next_pos + T
        return self.norm(x), cache

    @staticmethod
    def _attend(cache: KVCache, layer: int, in_place: bool, fresh: bool, keep, slots):
        def attend(k: torch.Tensor, v: torch.Tensor):
            if cache.k[layer].dtype != k.dtype:  # under bf16 autocast the keys come out in bf16: the cache follows
                cache.k[layer], cache.v[layer] = cache.k[layer].to(k.dtype), cache.v[layer].to(v.dtype)
            ck, cv = cache.k[layer], cache.v[layer]
            if k.requires_grad:
                # A graph being recorded (imagination the actor backpropagates through) still needs the
                # buffer as it was: write into a copy, O(context) per step, only on this path.
                ck, cv = ck.clone(), cv.clone()
                cache.k[layer], cache.v[layer] = ck, cv
            if in_place:
                ck[:, :, slots], cv[:, :, slots] = k[:, :, 0], v[:, :, 0]
                return ck, cv
            out = (k, v) if fresh else (torch.cat([ck, k], 2), torch.cat([cv, v], 2))
            ck[:, :, slots], cv[:, :, slots] = k[:, :, keep], v[:, :, keep]
            return out

        return attend
