"""An independent NumPy reference forward pass of gpt-oss, reading weights straight from a model.bin.

It works on the weights exactly as model.bin stores them (see docs/model-bin.md and
docs/reference-model.md): Q/K rows of every head in interleaved RoPE pairs, Q pre-scaled by 0.5 and
K by 0.25 (so attention applies no further scale), MXFP4 expert weights with the scale exponent
stored as s + 14, mlp1 rows alternating gate/linear. It is meant for the tiny random models the
tests build, and as the oracle every runtime kernel is compared with: it exposes each block's
intermediates, runs whole sequences (`forward`) or appends tokens to a KV cache (`step`) the way
the runtime does, and can round its KV cache to fp16 like the runtime's 16-bit cache.

Top-k expert selection is discontinuous: where the 4th and 5th router logits nearly tie, any
rounding difference can change the chosen experts. The router margins (4th minus 5th logit) are
recorded so comparisons can report such positions instead of widening tolerances.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from ..model_bin import MXFP4_BLOCK, MXFP4_SCALE_OFFSET, ModelBin, ModelHeader

#: e2m1 value of each 4-bit code: bit 3 is the sign, bits 0-2 index the magnitude.
E2M1_VALUES = np.array(
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32
)
#: E8M0 exponent bias: a checkpoint scale byte s means 2^(s - 127).
E8M0_BIAS = 127
#: SwiGLU sigmoid sharpness used by gpt-oss.
SWIGLU_ALPHA = 1.702


def dequantize_mxfp4(blocks: np.ndarray, scales_stored: np.ndarray) -> np.ndarray:
    """Decode model.bin MXFP4 weights to float32.

    blocks: uint8 [..., G, 16] (element 2i of a block is the low nibble of byte i, 2i+1 the high one);
    scales_stored: uint8 [..., G], the checkpoint's E8M0 exponent s stored as s + 14.
    Returns float32 [..., G * 32] with value e2m1(code) * 2^(s - 127). Every result is exact in float32
    (an e2m1 magnitude has at most 2 significant bits and the exponent stays in float32 range).
    """
    blocks = np.asarray(blocks)
    scales_stored = np.asarray(scales_stored)
    if blocks.dtype != np.uint8 or scales_stored.dtype != np.uint8:
        raise TypeError(f"dequantize_mxfp4: blocks and scales must be uint8, got {blocks.dtype}, {scales_stored.dtype}")
    if blocks.shape[-1] != MXFP4_BLOCK // 2 or blocks.shape[:-1] != scales_stored.shape:
        raise ValueError(f"dequantize_mxfp4: blocks {blocks.shape} do not match scales {scales_stored.shape}")
    if scales_stored.size and int(scales_stored.min()) < MXFP4_SCALE_OFFSET:
        raise ValueError(
            f"dequantize_mxfp4: stored scale {int(scales_stored.min())} < {MXFP4_SCALE_OFFSET}: not a model.bin scale"
        )
    codes = np.empty(blocks.shape[:-1] + (MXFP4_BLOCK,), dtype=np.uint8)
    codes[..., 0::2] = blocks & 0x0F
    codes[..., 1::2] = blocks >> 4
    exponent = scales_stored.astype(np.int32) - (MXFP4_SCALE_OFFSET + E8M0_BIAS)
    values = np.ldexp(E2M1_VALUES[codes], exponent[..., None])
    return values.reshape(blocks.shape[:-2] + (blocks.shape[-2] * MXFP4_BLOCK,))


@dataclasses.dataclass(frozen=True)
class Faults:
    """Deliberately wrong variants of the math. Only the negative-control tests set these: each must
    make the comparison with transformers fail, which proves that comparison can see the defect."""

    ignore_sinks: bool = False  # softmax without the sink logit
    rope_half_split: bool = False  # rotate (x_i, x_{i+d/2}) pairs although the weights are interleaved
    window_off_by_one: bool = False  # sliding layers see keys pos-W..pos (W+1 keys) instead of pos-W+1..pos
    drop_yarn_multiplier: bool = False  # cos/sin not multiplied by yarn_multiplier


@dataclasses.dataclass
class BlockTrace:
    """Intermediates of one block for the tokens of one call ([T, ...], T = tokens in the call)."""

    attn_input: np.ndarray  # residual entering the block [T, D]
    attn_norm: np.ndarray  # RMSNorm(residual) * gain [T, D]
    qkv: np.ndarray  # W_qkv x + b, Q and K rotated (model.bin row order) [T, (Hq + 2 Hkv) d]
    attn: np.ndarray  # attention output per head, concatenated, before W_out [T, Hq d]
    attn_out: np.ndarray  # W_out attn + b [T, D]
    mlp_input: np.ndarray  # residual after attention [T, D]
    mlp_norm: np.ndarray  # RMSNorm * gain [T, D]
    router_logits: np.ndarray  # [T, E]
    experts: np.ndarray  # selected experts, best first [T, k] int64
    expert_weights: np.ndarray  # softmax over the selected logits [T, k]
    router_margin: np.ndarray  # k-th minus (k+1)-th largest router logit [T] (inf when E == k)
    moe_out: np.ndarray  # sum_k weight_k * expert_k(x) [T, D]
    output: np.ndarray  # residual leaving the block [T, D]


@dataclasses.dataclass
class Trace:
    """Everything one `step`/`forward` call computed, filled when passed to it."""

    positions: np.ndarray | None = None  # [T]
    blocks: list[BlockTrace] = dataclasses.field(default_factory=list)
    final_norm: np.ndarray | None = None  # [T, D]

    def router_margins(self) -> np.ndarray:
        """[num_blocks, T] router margins (small = near tie, selection could flip under rounding)."""
        return np.stack([b.router_margin for b in self.blocks])

    def experts(self) -> np.ndarray:
        """[num_blocks, T, k] selected experts."""
        return np.stack([b.experts for b in self.blocks])


class KVCache:
    """Per-block keys and values of every position seen so far (RoPE applied to keys).

    kv_dtype float16 rounds entries on write like the runtime's 16-bit cache; they are widened to the
    model's compute dtype when read. Storage grows by doubling, so appending is amortised O(1).
    """

    def __init__(self, num_blocks: int, num_kv_heads: int, head_dim: int, kv_dtype: np.dtype) -> None:
        self.length = 0
        self._kv_dtype = np.dtype(kv_dtype)
        self._shape = (num_kv_heads, head_dim)
        self._keys = [np.empty((num_kv_heads, 0, head_dim), self._kv_dtype) for _ in range(num_blocks)]
        self._values = [np.empty((num_kv_heads, 0, head_dim), self._kv_dtype) for _ in range(num_blocks)]

    def _reserve(self, block: int, needed: int) -> None:
        capacity = self._keys[block].shape[1]
        if needed <= capacity:
            return
        new_capacity = max(needed, 2 * capacity, 64)
        for store in (self._keys, self._values):
            grown = np.empty((self._shape[0], new_capacity, self._shape[1]), self._kv_dtype)
            grown[:, :capacity] = store[block]
            store[block] = grown

    def write(self, block: int, start: int, keys: np.ndarray, values: np.ndarray) -> None:
        """Store keys/values [Hkv, T, d] at positions start..start+T-1 of a block."""
        end = start + keys.shape[1]
        self._reserve(block, end)
        self._keys[block][:, start:end] = keys
        self._values[block][:, start:end] = values

    def read(self, block: int, first: int, end: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """Keys and values of positions first..end-1, as dtype [Hkv, n, d]."""
        return (
            self._keys[block][:, first:end].astype(dtype, copy=False),
            self._values[block][:, first:end].astype(dtype, copy=False),
        )


class ReferenceModel:
    """NumPy forward pass of gpt-oss over the weights of a model.bin (tiny models: weights are widened
    to `dtype` in memory, experts block by block on first use).

    dtype: compute precision (float32 like the runtime; float64 to estimate float32 rounding error).
    kv_dtype: KV-cache storage precision (None = dtype; np.float16 = the runtime's 16-bit cache).
    faults: deliberately wrong math, for negative-control tests only.
    """

    def __init__(
        self,
        model_bin: ModelBin,
        dtype: np.dtype | type = np.float32,
        kv_dtype: np.dtype | type | None = None,
        faults: Faults = Faults(),
    ) -> None:
        self.model_bin = model_bin
        self.header: ModelHeader = model_bin.header
        self.dtype = np.dtype(dtype)
        self.kv_dtype = np.dtype(kv_dtype) if kv_dtype is not None else self.dtype
        self.faults = faults
        h = self.header
        if h.head_dim % 2 or h.num_heads % h.num_kv_heads:
            raise ValueError(f"{model_bin.path}: head_dim {h.head_dim} odd or heads {h.num_heads}/{h.num_kv_heads}")
        self.vocab_size = model_bin.num_text_tokens + model_bin.num_special_tokens
        self._dense: dict[str, np.ndarray] = {}
        self._experts: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._inv_freq = self._rope_inv_freq()

    # ----- weights -----------------------------------------------------------------------------

    def weight(self, name: str) -> np.ndarray:
        """A dense model.bin tensor widened to the compute dtype (cached)."""
        w = self._dense.get(name)
        if w is None:
            w = self.model_bin.tensor_f32(name).astype(self.dtype, copy=False)
            self._dense[name] = w
        return w

    def expert_weights(self, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Dequantized experts of a block: W1 [E, 2I, D], b1 [E, 2I], W2 [E, D, I], b2 [E, D] (cached)."""
        cached = self._experts.get(block)
        if cached is None:
            mb, h = self.model_bin, self.header
            parts: dict[str, list[np.ndarray]] = {"w1": [], "b1": [], "w2": [], "b2": []}
            for e in range(h.num_experts):
                prefix = f"block.{block}.expert.{e}."
                parts["w1"].append(dequantize_mxfp4(mb.tensor(prefix + "mlp1_blocks"), mb.tensor(prefix + "mlp1_scales")))
                parts["b1"].append(mb.tensor_f32(prefix + "mlp1_bias"))
                parts["w2"].append(dequantize_mxfp4(mb.tensor(prefix + "mlp2_blocks"), mb.tensor(prefix + "mlp2_scales")))
                parts["b2"].append(mb.tensor_f32(prefix + "mlp2_bias"))
            cached = tuple(np.stack(parts[k]).astype(self.dtype, copy=False) for k in ("w1", "b1", "w2", "b2"))
            self._experts[block] = cached  # type: ignore[assignment]
        return cached  # type: ignore[return-value]

    # ----- pieces of the math ------------------------------------------------------------------

    def _rope_inv_freq(self) -> np.ndarray:
        """YaRN inverse frequency of each rotation pair (computed in float64, then rounded to dtype)."""
        h = self.header
        pair = np.arange(h.head_dim // 2, dtype=np.float64)
        extrapolated = np.float64(h.rope_theta) ** (-2.0 * pair / h.head_dim)
        interpolated = extrapolated * np.float64(h.interpolation_scale)
        ramp = np.clip(pair * np.float64(h.yarn_scale) + np.float64(h.yarn_offset), 0.0, 1.0)
        return (interpolated * ramp + extrapolated * (1.0 - ramp)).astype(self.dtype)

    def rope_cos_sin(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """cos and sin [T, d/2] of each position's pair angles, times yarn_multiplier.

        The angle position * inv_freq is rounded to the compute dtype (as a float32 kernel would
        compute it); cos/sin of that angle are then evaluated accurately."""
        angle = positions.astype(self.dtype)[:, None] * self._inv_freq[None, :]
        multiplier = 1.0 if self.faults.drop_yarn_multiplier else self.header.yarn_multiplier
        multiplier = self.dtype.type(multiplier)
        cos = np.cos(angle.astype(np.float64)).astype(self.dtype) * multiplier
        sin = np.sin(angle.astype(np.float64)).astype(self.dtype) * multiplier
        return cos, sin

    def apply_rope(self, x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        """Rotate heads x [T, H, d] whose pairs are adjacent (x_2i, x_2i+1), as model.bin stores them."""
        half = x.shape[-1] // 2
        if self.faults.rope_half_split:
            a, b = x[..., :half], x[..., half:]
        else:
            a, b = x[..., 0::2], x[..., 1::2]
        c, s = cos[:, None, :], sin[:, None, :]
        out = np.empty_like(x)
        if self.faults.rope_half_split:
            out[..., :half], out[..., half:] = a * c - b * s, b * c + a * s
        else:
            out[..., 0::2], out[..., 1::2] = a * c - b * s, b * c + a * s
        return out

    def rms_norm(self, x: np.ndarray, gain: np.ndarray) -> np.ndarray:
        mean_square = np.mean(x * x, axis=-1, keepdims=True)
        return x / np.sqrt(mean_square + self.dtype.type(self.header.rmsnorm_epsilon)) * gain

    def route(self, logits: np.ndarray, override: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k experts (ties: lowest index), softmax over the k selected logits, and the k-th minus
        (k+1)-th logit margin. `override` [T, k] forces the selected experts (same weighting rule)."""
        k = self.header.num_active_experts
        # Stable sort of the negated logits puts equal logits in index order: ties go to the lowest index.
        order = np.argsort(-logits, axis=-1, kind="stable")
        ranked = np.take_along_axis(logits, order, axis=-1)
        margin = ranked[:, k - 1] - ranked[:, k] if logits.shape[-1] > k else np.full(len(logits), np.inf, self.dtype)
        if override is None:
            experts = order[:, :k]
        else:
            experts = np.asarray(override, dtype=np.int64)
            if experts.shape != (len(logits), k) or experts.min() < 0 or experts.max() >= logits.shape[-1]:
                raise ValueError(f"routing override must be [{len(logits)}, {k}] experts < {logits.shape[-1]}")
            if (np.diff(np.sort(experts, axis=-1), axis=-1) == 0).any():
                raise ValueError("routing override selects an expert twice for one token")
        selected = np.take_along_axis(logits, experts, axis=-1)
        exp = np.exp(selected - selected.max(axis=-1, keepdims=True))
        return experts.astype(np.int64), exp / exp.sum(axis=-1, keepdims=True), margin

    def swiglu(self, h: np.ndarray) -> np.ndarray:
        """h [.., 2I] with gate/linear interleaved -> activation [.., I]."""
        limit = self.dtype.type(self.header.swiglu_limit)
        glu = np.minimum(h[..., 0::2], limit)
        linear = np.clip(h[..., 1::2], -limit, limit)
        return glu / (1 + np.exp(-self.dtype.type(SWIGLU_ALPHA) * glu)) * (linear + 1)

    def moe(self, block: int, x: np.ndarray, experts: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Σ_k weight_k · expert_k(x) for each token of x [T, D]."""
        w1, b1, w2, b2 = self.expert_weights(block)
        out = np.zeros_like(x)
        for e in np.unique(experts):
            tokens, slot = np.nonzero(experts == e)  # a token selects an expert at most once
            hidden = x[tokens] @ w1[e].T + b1[e]
            y = self.swiglu(hidden) @ w2[e].T + b2[e]
            out[tokens] += weights[tokens, slot][:, None] * y
        return out

    def attention(self, block: int, cache: KVCache, start: int, q: np.ndarray) -> np.ndarray:
        """Attention of queries q [T, Hq, d] at positions start.. over the cache (keys already written).

        Even blocks see keys pos-W+1..pos, odd blocks 0..pos; each head's softmax includes its sink logit,
        which takes probability mass but has no value. Q and K carry the 1/sqrt(d) scale already."""
        h = self.header
        t = q.shape[0]
        end = start + t
        sliding = block % 2 == 0
        window = h.attention_window + (1 if self.faults.window_off_by_one else 0)
        first = max(0, start - window + 1) if sliding else 0
        keys, values = cache.read(block, first, end, self.dtype)  # [Hkv, n, d]
        group = h.num_heads // h.num_kv_heads
        qg = q.reshape(t, h.num_kv_heads, group, h.head_dim)
        scores = np.einsum("tkgd,knd->kgtn", qg, keys, optimize=True)  # [Hkv, G, T, n]
        query_pos = np.arange(start, end)[:, None]
        key_pos = np.arange(first, end)[None, :]
        allowed = key_pos <= query_pos
        if sliding:
            allowed &= key_pos > query_pos - window
        scores = np.where(allowed, scores, -np.inf)
        sinks = self.weight(f"block.{block}.sinks").reshape(h.num_kv_heads, group, 1, 1)
        peak = scores.max(axis=-1, keepdims=True)
        if not self.faults.ignore_sinks:
            peak = np.maximum(peak, sinks)
        probs = np.exp(scores - peak)
        denom = probs.sum(axis=-1, keepdims=True)
        if not self.faults.ignore_sinks:
            denom = denom + np.exp(sinks - peak)
        out = np.einsum("kgtn,knd->tkgd", probs / denom, values, optimize=True)
        return out.reshape(t, h.num_heads * h.head_dim)

    # ----- running ------------------------------------------------------------------------------

    def new_cache(self) -> KVCache:
        """An empty KV cache for `step`."""
        h = self.header
        return KVCache(h.num_blocks, h.num_kv_heads, h.head_dim, self.kv_dtype)

    def step(
        self,
        cache: KVCache,
        tokens: Sequence[int] | np.ndarray,
        trace: Trace | None = None,
        routing_override: Mapping[int, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Append tokens at positions cache.length.. and return their logits [T, V].

        trace: filled with every block's intermediates when given.
        routing_override: block -> [T, k] experts to use instead of the top-k choice (tests use it to
        follow another implementation's choice at near ties)."""
        h = self.header
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if tokens.size == 0:
            return np.zeros((0, self.vocab_size), self.dtype)
        if tokens.min() < 0 or tokens.max() >= self.vocab_size:
            raise ValueError(f"token id out of range [0, {self.vocab_size}): {int(tokens.min())}..{int(tokens.max())}")
        start = cache.length
        positions = np.arange(start, start + len(tokens))
        cos, sin = self.rope_cos_sin(positions)
        q_rows, kv_rows = h.num_heads * h.head_dim, h.num_kv_heads * h.head_dim
        x = self.weight("embedding")[tokens]
        if trace is not None:
            trace.positions, trace.blocks = positions, []
        for n in range(h.num_blocks):
            attn_input = x
            attn_norm = self.rms_norm(x, self.weight(f"block.{n}.attn_norm"))
            qkv = attn_norm @ self.weight(f"block.{n}.qkv_weight").T + self.weight(f"block.{n}.qkv_bias")
            t = len(tokens)
            q = self.apply_rope(qkv[:, :q_rows].reshape(t, h.num_heads, h.head_dim), cos, sin)
            k = self.apply_rope(qkv[:, q_rows : q_rows + kv_rows].reshape(t, h.num_kv_heads, h.head_dim), cos, sin)
            v = qkv[:, q_rows + kv_rows :].reshape(t, h.num_kv_heads, h.head_dim)
            qkv = np.concatenate([q.reshape(t, -1), k.reshape(t, -1), v.reshape(t, -1)], axis=1)
            cache.write(n, start, k.transpose(1, 0, 2), v.transpose(1, 0, 2))
            attn = self.attention(n, cache, start, q)
            attn_out = attn @ self.weight(f"block.{n}.out_weight").T + self.weight(f"block.{n}.out_bias")
            x = x + attn_out
            mlp_input = x
            mlp_norm = self.rms_norm(x, self.weight(f"block.{n}.mlp_norm"))
            router_logits = mlp_norm @ self.weight(f"block.{n}.gate_weight").T + self.weight(f"block.{n}.gate_bias")
            override = None if routing_override is None else routing_override.get(n)
            experts, expert_weights, margin = self.route(router_logits, override)
            moe_out = self.moe(n, mlp_norm, experts, expert_weights)
            x = x + moe_out
            if trace is not None:
                trace.blocks.append(
                    BlockTrace(attn_input, attn_norm, qkv, attn, attn_out, mlp_input, mlp_norm, router_logits,
                               experts, expert_weights, margin, moe_out, x)
                )
        cache.length = start + len(tokens)
        final = self.rms_norm(x, self.weight("final_norm"))
        if trace is not None:
            trace.final_norm = final
        return final @ self.weight("unembedding").T

    def forward(
        self,
        tokens: Sequence[int] | np.ndarray,
        trace: Trace | None = None,
        routing_override: Mapping[int, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Logits [T, V] of a whole sequence starting at position 0 (causal, windowed, with sinks)."""
        return self.step(self.new_cache(), tokens, trace, routing_override)
