"""A decoder-only transformer, from scratch: the GPT-2 family and LLaMA, one config apart.

    gpt2:  learned positions, LayerNorm, biases, GELU MLP (d -> f -> d), lm_head tied to wte
    llama: rotary positions, RMSNorm, no biases, SwiGLU MLP (gate, up: d -> f; down: f -> d),
           untied lm_head

Both are pre-norm: x = x + attn(norm(x)); x = x + mlp(norm(x)). Attention is causal, through
``F.scaled_dot_product_attention``. Shape letters are complexo's symbols: B batch, n tokens,
d width, h heads, hs = d/h, f MLP width, V vocabulary, L layers.

Activation checkpointing (``checkpoint=``, as ``blocks/vit.py``): "full" runs each block under
``torch.utils.checkpoint.checkpoint(block, x, ..., use_reentrant=False)``, so the forward keeps
each block's input only and the backward runs the block again before its own backward;
"selective" checkpoints the attention core only, SDPA (k and v repeated to h heads within it)
and the heads merged: the checkpoint keeps q, k, v, and the kernel's log-sum-exp is made again.

Presets are architecturally identical to the published models, so their parameter counts are the
published ones (see :data:`PUBLISHED_PARAMS`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint as recompute

from complexo.blocks.attention import MHSA
from complexo.presets import ModelConfig


class RMSNorm(nn.Module):
    """x / √(mean(x²) + ε) · w: LayerNorm without the mean and the bias."""

    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)  # (B, n, 1)
        return x * rstd * self.weight  # (B, n, d)


def rotary_tables(n: int, hs: int, like: torch.Tensor, base: float = 10000.0):
    """cos and sin of position × frequency, (n, hs), in ``like``'s dtype and device."""
    inv_freq = 1.0 / base ** (torch.arange(0, hs, 2, device=like.device).float() / hs)  # (hs/2,)
    angles = torch.outer(torch.arange(n, device=like.device).float(), inv_freq)  # (n, hs/2)
    angles = torch.cat((angles, angles), dim=-1)  # (n, hs)
    return angles.cos().to(like.dtype), angles.sin().to(like.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_i, x_{i+hs/2}) by its position's angle: (B, h, n, hs) -> same."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, h, n, hs/2) each
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class KVCache:
    """Every layer's keys and values for the tokens seen so far, preallocated for ``capacity``
    tokens: 2 tensors of (B, G, capacity, hs) per layer. Decoding appends one token's k and v
    per layer and attends to all of them, instead of recomputing the prefix.

    With a sliding window W (``cfg.window``) it is a rolling buffer of min(capacity, W) rows:
    position p lives in row p mod W, overwriting p − W, which no later token sees.

    In int8 each (token, head) row is stored as int8 values and one bf16 scale (symmetric,
    max |x| / 127), and read back in the compute dtype.
    """

    def __init__(self, cfg: ModelConfig, batch: int, capacity: int, dtype, device=None):
        self.window = cfg.window
        if self.window is not None:
            capacity = min(capacity, self.window)
        shape = (batch, cfg.groups, capacity, cfg.dim // cfg.heads)
        self.quantized = dtype == torch.int8

        def zeros(shape, dtype):
            return [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.layers)]

        self.k, self.v = zeros(shape, dtype), zeros(shape, dtype)
        scales = (*shape[:3], 1)
        self.k_scale = zeros(scales, torch.bfloat16) if self.quantized else []
        self.v_scale = zeros(scales, torch.bfloat16) if self.quantized else []

    def tensors(self) -> list[torch.Tensor]:
        return [*self.k, *self.v, *self.k_scale, *self.v_scale]

    def _rows(self, first: int, end: int, device):
        """Where positions first .. end − 1 are stored: a slice, or rows p mod W."""
        if self.window is None:
            return slice(first, end)
        return torch.arange(first, end, device=device) % self.window

    def write(self, layer: int, pos: int, k: torch.Tensor, v: torch.Tensor) -> None:
        n = k.shape[2]
        first = pos if self.window is None else max(pos, pos + n - self.window)  # the last W
        rows = self._rows(first, pos + n, k.device)
        for store, scales, x in ((self.k, self.k_scale, k), (self.v, self.v_scale, v)):
            x = x[:, :, first - pos :]
            if self.quantized:
                scale = x.abs().amax(-1, keepdim=True).clamp(min=1e-8) / 127  # (B, G, n, 1)
                scales[layer][:, :, rows] = scale
                x = torch.round(x / scale)
            store[layer][:, :, rows] = x

    def read(self, layer: int, first: int, end: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of positions first .. end − 1, in order: (B, G, end − first, hs)."""
        rows = self._rows(first, end, self.k[layer].device)
        k, v = self.k[layer][:, :, rows], self.v[layer][:, :, rows]
        if self.quantized:
            k = k.to(dtype) * self.k_scale[layer][:, :, rows].to(dtype)
            v = v.to(dtype) * self.v_scale[layer][:, :, rows].to(dtype)
        return k, v


def attention_mask(pos: int, n: int, first: int, window: int | None, device):
    """(mask, is_causal) for queries at pos .. pos + n − 1 and keys at first .. pos + n − 1:
    query i sees key j when j ≤ i, and, with a window W, j > i − W."""
    if n == 1:  # one query against exactly the keys it sees
        return None, False
    if first == pos and (window is None or n <= window):
        return None, True
    queries = pos + torch.arange(n, device=device)[:, None]  # (n, 1)
    keys = torch.arange(first, pos + n, device=device)[None, :]  # (1, pos + n − first)
    mask = keys <= queries
    return (mask & (keys > queries - window) if window is not None else mask), False


class CausalSelfAttention(MHSA):
    """MHSA's projections, causal SDPA (within a sliding window, if the model has one), rotary
    positions when given their tables, and, with a KV cache, the keys and values of earlier
    positions read from it. ``recompute_core``: the core, SDPA and the heads merged, under a
    checkpoint (selective recomputation)."""

    recompute_core = False

    def forward(self, x, rope=None, cache: KVCache | None = None, layer: int = 0, pos: int = 0):
        B, n, d = x.shape
        W = self.window
        q, k, v = self.project(x)  # (B, h, n, hs), (B, G, n, hs), (B, G, n, hs)
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)  # positions pos .. pos + n - 1
        first = pos  # the first position among the keys
        if cache is not None and (W is None or n == 1):
            first = 0 if W is None else max(0, pos + 1 - W)
            cache.write(layer, pos, k, v)  # append this step's keys and values
            k, v = cache.read(layer, first, pos + n, q.dtype)  # (B, G, pos + n − first, hs)
        elif cache is not None:  # a chunk into a rolling buffer: read what it will overwrite
            first = max(0, pos + 1 - W)
            old_k, old_v = cache.read(layer, first, pos, q.dtype)  # (B, G, pos − first, hs)
            cache.write(layer, pos, k, v)
            k, v = torch.cat((old_k, k), dim=2), torch.cat((old_v, v), dim=2)
        mask, causal = attention_mask(pos, n, first, W, x.device)

        def core(q, k, v):
            # (B, h, n, hs) x (B, h, hs, keys) -> (B, h, n, keys) -> (B, h, n, hs)
            y = F.scaled_dot_product_attention(
                q, self.share(k), self.share(v), attn_mask=mask, is_causal=causal
            )
            return y.transpose(1, 2).reshape(B, n, d)  # (B, h, n, hs) -> (B, n, d)

        y = recompute(core, q, k, v, use_reentrant=False) if self.recompute_core else core(q, k, v)
        return self.out_proj(y)  # (B, n, d) x (d, d) -> (B, n, d)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.swiglu = cfg.swiglu
        if self.swiglu:
            self.gate_proj = nn.Linear(cfg.dim, cfg.mlp, bias=False)
            self.up_proj = nn.Linear(cfg.dim, cfg.mlp, bias=False)
            self.down_proj = nn.Linear(cfg.mlp, cfg.dim, bias=False)
        else:
            self.fc_in = nn.Linear(cfg.dim, cfg.mlp)
            self.fc_out = nn.Linear(cfg.mlp, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu:
            g = F.silu(self.gate_proj(x))  # (B, n, d) x (d, f) -> (B, n, f)
            return self.down_proj(g * self.up_proj(x))  # (B, n, f) x (f, d) -> (B, n, d)
        a = F.gelu(self.fc_in(x), approximate="tanh")  # (B, n, d) x (d, f) -> (B, n, f)
        return self.fc_out(a)  # (B, n, f) x (f, d) -> (B, n, d)


def _norm(cfg: ModelConfig) -> nn.Module:
    return RMSNorm(cfg.dim) if cfg.arch == "llama" else nn.LayerNorm(cfg.dim)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.norm2 = _norm(cfg), _norm(cfg)
        self.attn = CausalSelfAttention(
            cfg.dim,
            cfg.heads,
            bias=cfg.bias,
            causal=True,
            kv_heads=cfg.kv_heads,
            window=cfg.window,
        )
        self.mlp = MLP(cfg)

    def forward(self, x, rope=None, cache: KVCache | None = None, layer: int = 0, pos: int = 0):
        x = x + self.attn(self.norm1(x), rope, cache, layer, pos)  # (B, n, d)
        return x + self.mlp(self.norm2(x))  # (B, n, d)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, checkpoint: str = "none"):
        super().__init__()
        if cfg.dim % cfg.heads:
            raise ValueError(f"d={cfg.dim} is not divisible by h={cfg.heads}")
        self.cfg, self.checkpoint = cfg, checkpoint
        self.wte = nn.Embedding(cfg.vocab, cfg.dim)  # (V, d)
        self.wpe = nn.Embedding(cfg.ctx, cfg.dim) if cfg.learned_positions else None  # (P, d)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        for block in self.blocks:
            block.attn.recompute_core = checkpoint == "selective"
        self.norm_f = _norm(cfg)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab, bias=False)  # (d, V)
        if cfg.tied:
            self.lm_head.weight = self.wte.weight

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
        pos: int = 0,
    ) -> torch.Tensor:
        """Logits for tokens ``idx`` at positions pos .. pos + n − 1 (the loss, with targets).
        With a cache, the keys and values of positions before ``pos`` come from it."""
        B, n = idx.shape
        x = self.wte(idx)  # (B, n) -> (B, n, d)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(pos, pos + n, device=idx.device))  # (n, d), over B
        else:
            cos, sin = rotary_tables(pos + n, self.cfg.dim // self.cfg.heads, x)  # (pos + n, hs)
            rope = (cos[pos:], sin[pos:]) if pos else (cos, sin)
        for i, block in enumerate(self.blocks):  # "full": only x is kept, the block runs again
            if self.checkpoint == "full":
                x = recompute(block, x, rope, cache, i, pos, use_reentrant=False)
            else:
                x = block(x, rope, cache, i, pos)
        logits = self.lm_head(self.norm_f(x))  # (B, n, d) x (d, V) -> (B, n, V)
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(B * n, -1), targets.view(B * n))


class CachedStep(nn.Module):
    """One call of a decoder at position ``pos``, with its KV cache (None: none), as one
    module: the model's parameters, the cache's tensors as buffers (what the step holds, beside
    the weights), ``forward(idx)`` the model's logits for tokens ``idx`` at pos, pos + 1, ..."""

    def __init__(self, model: Transformer, cache: KVCache | None, pos: int = 0):
        super().__init__()
        self.model, self.cache, self.pos = model, cache, pos
        for i, t in enumerate(cache.tensors() if cache is not None else []):
            self.register_buffer(f"cache_{i}", t, persistent=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx, cache=self.cache, pos=self.pos)  # (B, n) -> (B, n, V)
