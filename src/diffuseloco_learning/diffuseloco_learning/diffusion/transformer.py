"""The denoiser: a causal transformer decoder (minGPT style) conditioned by cross-attention, as in DiffuseLoco.

Tokens: the noisy action chunk (horizon tokens, Linear action_dim -> width) is the decoder input; the memory is
1 diffusion-timestep token + To observation tokens + To goal tokens, each passed through the cond encoder
(Linear-Mish-Linear) after adding a learned position embedding. Masks are causal like the reference: action
token i attends to action tokens <= i and to the observation/goal tokens of ticks <= i (the timestep always).

Why the split API (encode_cond / time_kv / join_memory / decode): the cond encoder and every layer's
cross-attention keys and values of the observation and goal tokens do not change between denoising steps of one
sample, so a sampler computes them once per sample and only re-runs the decoder each step (performance.md). The
time token's keys and values depend on the step only, so a sampler computes them for all its timesteps in one
batched call, and `join_memory` adds them to the cond keys/values for every step and layer in one tensor
operation per sample instead of two additions per layer and step. `forward` recomputes everything and is the
training path.

Export-friendliness (at batch 1 a sample's time is its matrix products plus a cost per graph node):
activations stay (B, T, W), so attention reads them without reshapes; no tensor shape is read in the per-step
path; inside an ONNX export the causal self-attention becomes ONNX Runtime's fused Attention kernel (projection
included) and the cross-attention its MultiHeadAttention kernel (same math as the eager path, tested to 1e-4).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from diffuseloco_policy.model_spec import DenoiserConfig

KV = tuple[torch.Tensor, torch.Tensor]


def timestep_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (B,) -> (B, dim), the diffusion_policy SinusoidalPosEmb."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=timesteps.device, dtype=torch.float32) * (-math.log(10000.0) / (half - 1)))
    args = timesteps.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=-1)


def _attention_math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, heads: int,
                    scale: float, drop: Optional[nn.Dropout] = None) -> torch.Tensor:
    """Scaled dot-product attention with an additive bias. q (B, T, W); k, v either (B, S, W) rows or
    per-head (B, h, S, d) caches; bias broadcastable to (B, h, T, S). Returns (B, T, W)."""
    width = q.shape[-1]
    d = width // heads
    qh = q.reshape(q.shape[0], q.shape[1], heads, d).transpose(1, 2)
    if k.dim() == 3:
        k = k.reshape(k.shape[0], k.shape[1], heads, d).transpose(1, 2)
        v = v.reshape(v.shape[0], v.shape[1], heads, d).transpose(1, 2)
    weights = torch.softmax((qh @ k.transpose(-2, -1)) * scale + bias, dim=-1)
    if drop is not None:
        weights = drop(weights)
    return (weights @ v).transpose(1, 2).reshape(q.shape[0], q.shape[1], width)


class _FusedAttention(torch.autograd.Function):
    """Export-only: emits ONNX Runtime's fused com.microsoft::MultiHeadAttention (one kernel instead of ~10
    reshape/transpose/matmul/softmax ops per attention; it accepts per-head cached keys/values and a broadcast
    additive bias). Eager values come from `_attention_math`, so tracing sees the same numbers."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, heads: int,
                scale: float) -> torch.Tensor:
        return _attention_math(q, k, v, bias, heads, scale)

    @staticmethod
    def symbolic(g: Any, q: Any, k: Any, v: Any, bias: Any, heads: int, scale: float) -> Any:
        from torch.onnx import symbolic_helper

        none = symbolic_helper._optional_input_placeholder_tensor(g)
        out = g.op("com.microsoft::MultiHeadAttention", q, k, v, none, none, bias, num_heads_i=heads, scale_f=scale)
        out.setType(q.type())
        return out


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, heads: int,
              drop: nn.Dropout) -> torch.Tensor:
    """Multi-head attention: plain torch math (with attention dropout) for training and eager sampling, the
    fused ONNX Runtime kernel inside an ONNX export."""
    scale = (q.shape[-1] // heads) ** -0.5
    if torch.onnx.is_in_onnx_export():
        return _FusedAttention.apply(q, k, v, bias, heads, float(scale))
    return _attention_math(q, k, v, bias, heads, scale, drop if drop.p > 0 and drop.training else None)


class _FusedCausalSelfAttention(torch.autograd.Function):
    """Export-only: emits ONNX Runtime's com.microsoft::Attention with `unidirectional` set, which computes the
    packed query/key/value product and causal attention in one kernel, and which the int8 rewrite turns into
    QAttention (quantize.py). It replaces a matrix product, a Split and a MultiHeadAttention with an additive mask
    per layer and step, about 8 % of an int8 paper-size sample (docs/research/performance.md, the leaner sampler graph). The weight goes in
    transposed, (W, 3 W), as the operator reads it. Eager values come from the module's own math."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor,
                heads: int) -> torch.Tensor:
        width = x.shape[-1]
        q, k, v = F.linear(x, weight, bias).split(width, dim=-1)
        return _attention_math(q, k, v, mask, heads, (width // heads) ** -0.5)

    @staticmethod
    def symbolic(g: Any, x: Any, weight: Any, bias: Any, mask: Any, heads: int) -> Any:
        out = g.op("com.microsoft::Attention", x, g.op("Transpose", weight, perm_i=[1, 0]), bias, num_heads_i=heads,
                   unidirectional_i=1)
        out.setType(x.type())
        return out


class SelfAttention(nn.Module):
    """Causal self-attention over the action tokens; activations are (B, T, W). The mask is the causal one
    (TransformerDenoiser.self_mask): inside an ONNX export the fused kernel applies it as `unidirectional`."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.width, self.heads = width, heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return self.proj(_FusedCausalSelfAttention.apply(x, self.qkv.weight, self.qkv.bias, mask, self.heads))
        q, k, v = self.qkv(x).split(self.width, dim=-1)
        return self.proj(attention(q, k, v, mask, self.heads, self.drop))


class CrossAttention(nn.Module):
    """Attention from action tokens to the cond memory; keys/values come precomputed per head (see `kv`)."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.width, self.heads, self.head_dim = width, heads, width // heads
        self.q = nn.Linear(width, width)
        self.kv_proj = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def kv(self, memory: torch.Tensor) -> KV:
        """Memory tokens (N, S, W) -> per-head keys and values, (N, h, S, d) each."""
        k, v = self.kv_proj(memory).split(self.width, dim=-1)
        shape = (-1, k.shape[1], self.heads, self.head_dim)
        return k.reshape(shape).transpose(1, 2), v.reshape(shape).transpose(1, 2)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.proj(attention(self.q(x), k, v, mask, self.heads, self.drop))


class DecoderBlock(nn.Module):
    """Pre-norm block: causal self-attention, cross-attention to the memory, GELU MLP."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = SelfAttention(width, heads, dropout)
        self.cross_attn = CrossAttention(width, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, self_mask: torch.Tensor,
                cross_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.self_attn(self.ln1(x), self_mask))
        x = x + self.drop(self.cross_attn(self.ln2(x), k, v, cross_mask))
        return x + self.drop(self.mlp(self.ln3(x)))


class TransformerDenoiser(nn.Module):
    """Predicts the noise in a normalized action chunk (B, horizon, action_dim) given normalized histories.

    Inside, activations are kept as (B, horizon, width), which attention reads without reshapes, and no tensor
    shape is read in the forward pass (constants only), which keeps the exported graph free of shape-arithmetic
    ops. Memory keys/values live in a 1 + 2 To slot layout: slot 0 is the timestep token and is zero in the cond
    cache, the cond slots are zero in the time entries, so one broadcast add joins them.
    """

    def __init__(self, config: DenoiserConfig, obs_dim: int, goal_dim: int, action_dim: int, history: int,
                 horizon: int) -> None:
        super().__init__()
        w = config.width
        self.config, self.history, self.horizon, self.action_dim = config, history, horizon, action_dim
        self.input_emb = nn.Linear(action_dim, w)
        self.pos_emb = nn.Parameter(torch.zeros(1, horizon, w))
        self.obs_emb = nn.Linear(obs_dim, w)
        self.goal_emb = nn.Linear(goal_dim, w)
        self.cond_pos_emb = nn.Parameter(torch.zeros(1, 1 + 2 * history, w))
        self.cond_encoder = nn.Sequential(nn.Linear(w, 4 * w), nn.Mish(), nn.Linear(4 * w, w))
        self.drop_emb = nn.Dropout(config.dropout_emb)
        self.blocks = nn.ModuleList(DecoderBlock(w, config.heads, config.dropout_attn)
                                    for _ in range(config.layers))
        self.ln_f = nn.LayerNorm(w)
        self.head = nn.Linear(w, action_dim)
        causal = torch.ones(horizon, horizon).tril().bool()
        self.register_buffer("self_mask", self._additive(causal)[None, None], persistent=False)
        self.register_buffer("cross_mask", self._additive(self._cond_visibility(config.causal_cond))[None, None],
                             persistent=False)
        self.apply(self._init_weights)
        nn.init.normal_(self.pos_emb, std=0.02)
        nn.init.normal_(self.cond_pos_emb, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    @staticmethod
    def _additive(allowed: torch.Tensor) -> torch.Tensor:
        return torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))

    def _cond_visibility(self, causal: bool) -> torch.Tensor:
        """(horizon, 1 + 2 To) bool: the timestep always; observation/goal of tick j only for action i >= j."""
        allowed = torch.ones(self.horizon, 1 + 2 * self.history, dtype=torch.bool)
        if causal:
            i = torch.arange(self.horizon)[:, None]
            j = torch.arange(self.history)[None, :]
            allowed[:, 1:1 + self.history] = j <= i
            allowed[:, 1 + self.history:] = j <= i
        return allowed

    def encode_cond(self, obs: torch.Tensor, goal: torch.Tensor) -> list[KV]:
        """Per-layer cross-attention keys/values of the 2 To observation and goal tokens (slot 0 left zero for
        the timestep); computed once per sample and reused by every denoising step."""
        tokens = torch.cat([self.obs_emb(obs), self.goal_emb(goal)], dim=1) + self.cond_pos_emb[:, 1:]
        memory = self.cond_encoder(self.drop_emb(tokens))
        return [(F.pad(k, (0, 0, 1, 0)), F.pad(v, (0, 0, 1, 0))) for k, v in (b.cross_attn.kv(memory) for b in self.blocks)]

    def time_kv(self, timesteps: torch.Tensor) -> list[KV]:
        """Per-layer keys/values of the timestep token for timesteps (N,), in slot 0 of otherwise zero
        (N, h, 1 + 2 To, d) tensors. Depends on the step only, never on the observation."""
        token = timestep_embedding(timesteps, self.config.width)[:, None, :] + self.cond_pos_emb[:, :1]
        memory = self.cond_encoder(self.drop_emb(token))
        n = 2 * self.history
        return [(F.pad(k, (0, 0, 0, n)), F.pad(v, (0, 0, 0, n))) for k, v in (b.cross_attn.kv(memory) for b in self.blocks)]

    def denoise(self, sample: torch.Tensor, cond: list[KV], time: list[KV]) -> torch.Tensor:
        """Noise prediction from cached cond keys/values; `time` entries have batch 1 or the sample's batch."""
        return self.decode(sample, [(ck + tk, cv + tv) for (ck, cv), (tk, tv) in zip(cond, time)])

    def join_memory(self, cond: list[KV], table: torch.Tensor) -> list[list[KV]]:
        """Per step and layer, the memory keys/values (cond + time token) of a whole sample.

        table: (steps, layers, 2, h, 1 + 2 To, d), the time keys/values of the sample's steps (`stack_time`).
        Why one broadcast add: the sums are the same numbers as `denoise` forms per step, but a sampler graph
        then runs one addition per sample instead of two per layer and step (each a graph node at batch 1)."""
        steps, layers, heads = int(table.shape[0]), len(self.blocks), self.config.heads
        slots, head_dim = 1 + 2 * self.history, self.config.width // heads
        stacked = torch.stack([torch.stack(kv, dim=1) for kv in cond], dim=1)  # (B, layers, 2, h, S, d)
        joined = (stacked[:, None] + table).reshape(-1, steps * layers * 2 * heads, slots, head_dim)
        parts = joined.split(heads, dim=1)
        return [[(parts[2 * (j * layers + i)], parts[2 * (j * layers + i) + 1]) for i in range(layers)]
                for j in range(steps)]

    def decode(self, sample: torch.Tensor, memory: list[KV]) -> torch.Tensor:
        """Noise prediction from one step's joined memory keys/values (cond + time token) per layer."""
        x = self.drop_emb(self.input_emb(sample) + self.pos_emb)
        for block, (k, v) in zip(self.blocks, memory):
            x = block(x, k, v, self.self_mask, self.cross_mask)
        return self.head(self.ln_f(x))

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, obs: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Training path: timesteps (B,) integer, one per sample; recomputes the cond memory."""
        return self.denoise(sample, self.encode_cond(obs, goal), self.time_kv(timesteps))


def stack_time(table: list[list[KV]]) -> torch.Tensor:
    """A [step][layer] -> (keys, values) time table of batch 1 as one (steps, layers, 2, h, S, d) tensor, the
    layout `join_memory` reads."""
    return torch.stack([torch.stack([torch.stack(kv, dim=1)[0] for kv in layers]) for layers in table])


def select_time(time: list[KV], index: int) -> list[KV]:
    """The keys/values of timestep number `index` out of a batched time_kv result, keeping a batch dim of 1."""
    return [(k[index:index + 1], v[index:index + 1]) for k, v in time]
