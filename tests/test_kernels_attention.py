"""Attention kernels (metal/source/kernels/attention.metal) against the NumPy reference.

The expected output is ReferenceModel.attention (python/gpt_oss_metal/testing/reference.py: sinks,
GQA, sliding window, proven against transformers), evaluated in float64 on exactly the K/V values
the kernel reads (fp16 caches are widened), so the comparison measures only the kernel's float32
arithmetic. The kernel sees a KV cache laid out as the runtime keeps it: [slots, Hkv, 64] with
position p in slot p % slots (a ring on sliding blocks, which these tests make wrap).
"""

from __future__ import annotations

import math
import struct
import types
from dataclasses import dataclass

import numpy as np
import pytest

from gpt_oss_metal.errors import DeviceError
from gpt_oss_metal.model_bin import bf16_to_f32, f32_to_bf16, read_model_bin
from gpt_oss_metal.testing.kernels import run_kernel
from gpt_oss_metal.testing.reference import Faults, KVCache, ReferenceModel, Trace

HEAD_DIM = 64
GROUP = 8  # query heads per KV head
DECODE_THREADS = PREFILL_THREADS = 128
PREFILL_TOKENS = 4  # tokens per prefill threadgroup
SPLIT_GRANULE = 128  # keys_per_split must be a multiple of 4 SIMD groups x 32 keys
U = 2.0**-24  # float32 unit roundoff
SLIDING_BLOCK, FULL_BLOCK = 0, 1  # the reference's rule: even blocks slide, odd blocks see everything


class _AttentionOnly:
    """The slice of ReferenceModel that ReferenceModel.attention uses, for arbitrary head shapes."""

    attention = ReferenceModel.attention

    def __init__(self, num_heads: int, num_kv_heads: int, window: int, sinks: np.ndarray, faults: Faults) -> None:
        self.header = types.SimpleNamespace(
            num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=HEAD_DIM, attention_window=window)
        self.dtype = np.dtype(np.float64)
        self.faults = faults
        self._sinks = sinks.astype(np.float64)

    def weight(self, name: str) -> np.ndarray:
        assert name.endswith(".sinks"), name
        return self._sinks


def reference_attention(q: np.ndarray, keys: np.ndarray, values: np.ndarray, sinks: np.ndarray, first_position: int,
                        window: int, faults: Faults = Faults()) -> np.ndarray:
    """float64 reference: q [T, Hq*64]; keys/values [positions, Hkv, 64] for positions 0..first+T-1;
    window 0 = full block."""
    t = q.shape[0]
    num_kv_heads = keys.shape[1]
    num_heads = q.shape[1] // HEAD_DIM
    block = SLIDING_BLOCK if window else FULL_BLOCK
    cache = KVCache(2, num_kv_heads, HEAD_DIM, np.float64)
    cache.write(block, 0, keys.transpose(1, 0, 2).astype(np.float64), values.transpose(1, 0, 2).astype(np.float64))
    ref = _AttentionOnly(num_heads, num_kv_heads, window, sinks, faults)
    return ref.attention(block, cache, first_position, q.astype(np.float64).reshape(t, num_heads, HEAD_DIM))


def ring(history: np.ndarray, slots: int) -> np.ndarray:
    """The cache a kernel sees: position p in slot p % slots, later positions overwriting earlier ones."""
    cache = np.zeros((slots,) + history.shape[1:], history.dtype)
    for p in range(history.shape[0]):
        cache[p % slots] = history[p]
    return cache


def suffix(kv_dtype: type) -> str:
    return "f16" if np.dtype(kv_dtype) == np.float16 else "f32"


def run_attention(kernel: str, q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, sinks_bf16: np.ndarray,
                  first_position: int, window: int, splits: int = 1, slots: int | None = None) -> np.ndarray:
    """Run the decode (+ combine when splits > 1) or the prefill kernel as the C wrapper dispatches it.
    slots: what the args claim (default: the caches' first dimension)."""
    t = q.shape[0]
    num_kv_heads = k_cache.shape[1]
    slots = k_cache.shape[0] if slots is None else slots
    num_heads = num_kv_heads * GROUP
    last = first_position + t - 1
    max_keys = min(window, last + 1) if window else last + 1
    keys_per_split = -(-(-(-max_keys // splits)) // SPLIT_GRANULE) * SPLIT_GRANULE
    args = struct.pack("<8I", t, first_position, num_heads, num_kv_heads, window, slots, splits, keys_per_split)
    out = np.full((t, num_heads * HEAD_DIM), np.nan, np.float32)  # every element must be written
    name = f"gptoss_attention_{kernel}_{suffix(k_cache.dtype)}"
    buffers = {0: args, 1: np.ascontiguousarray(q, np.float32), 2: k_cache, 3: v_cache, 4: sinks_bf16, 5: out}
    if kernel == "prefill":
        run_kernel(name, (num_kv_heads, -(-t // PREFILL_TOKENS)), PREFILL_THREADS, buffers)
        return out
    partials = np.full(t * num_heads * splits * (HEAD_DIM + 2), np.nan, np.float32)
    run_kernel(name, (num_kv_heads, t, splits), DECODE_THREADS, {**buffers, 6: partials})
    if splits > 1:
        run_kernel("gptoss_attention_combine", (num_heads, t), HEAD_DIM, {0: args, 1: partials, 2: out})
    return out


@dataclass
class Problem:
    q: np.ndarray  # [T, Hq*64] f32
    keys: np.ndarray  # [positions, Hkv, 64] in the cache dtype
    values: np.ndarray
    sinks_bf16: np.ndarray  # [Hq] uint16
    first_position: int
    window: int

    @property
    def sinks(self) -> np.ndarray:
        return bf16_to_f32(self.sinks_bf16)

    def reference(self, faults: Faults = Faults()) -> np.ndarray:
        return reference_attention(self.q, self.keys, self.values, self.sinks, self.first_position, self.window, faults)

    def tolerance(self) -> float:
        """float32 error model of the kernel, on the scale of the values.

        A 64-term float32 dot product is off by about sqrt(64)·u·|q|·|k| (random-walk rounding of
        partial sums bounded by |q|·|k|); a score error e changes a probability by the factor e^e ≈ 1 + e,
        so it moves the output by at most ~e·max|v|. Summing n probability-weighted values adds
        ~sqrt(n)·u·max|v|, exp() a few u. 4x headroom for the error distributions' tails.
        """
        q = self.q.astype(np.float64).reshape(self.q.shape[0], -1, HEAD_DIM)
        k = self.keys.astype(np.float64)
        score_error = math.sqrt(HEAD_DIM) * U * np.linalg.norm(q, axis=-1).max() * np.linalg.norm(k, axis=-1).max()
        n_keys = self.window or (self.first_position + self.q.shape[0])
        vmax = float(np.abs(self.values.astype(np.float64)).max())
        return 4.0 * (score_error + (math.sqrt(n_keys) + 8.0) * U) * vmax


def make_problem(rng: np.random.Generator, num_tokens: int, first_position: int, window: int, kv_dtype: type,
                 num_kv_heads: int = 8, sink_scale: float = 2.0, sink_offset: float = 0.0) -> Problem:
    """Random q/K/V with the real model's score scale (q pre-scaled: scores of order 1-3)."""
    positions = first_position + num_tokens
    num_heads = num_kv_heads * GROUP
    q = (rng.standard_normal((num_tokens, num_heads * HEAD_DIM)) * 0.25).astype(np.float32)
    keys = rng.standard_normal((positions, num_kv_heads, HEAD_DIM)).astype(kv_dtype)
    values = rng.standard_normal((positions, num_kv_heads, HEAD_DIM)).astype(kv_dtype)
    sinks = f32_to_bf16((rng.standard_normal(num_heads) * sink_scale + sink_offset).astype(np.float32))
    return Problem(q, keys, values, sinks, first_position, window)


def max_error(out: np.ndarray, expected: np.ndarray) -> float:
    assert np.isfinite(out).all(), "kernel left NaN/inf in the output"
    return float(np.abs(out.astype(np.float64) - expected).max())


def check(problem: Problem, kernel: str, slots: int, splits: int = 1) -> np.ndarray:
    out = run_attention(kernel, problem.q, ring(problem.keys, slots), ring(problem.values, slots), problem.sinks_bf16,
                        problem.first_position, problem.window, splits)
    err, tol = max_error(out, problem.reference()), problem.tolerance()
    assert err <= tol, f"{kernel}: max error {err:.3g} > tolerance {tol:.3g}"
    return out


W = 128  # the real model's attention_window
MAX_BATCH = 32  # sliding-block ring = W + max batch tokens (docs/inference-design.md)


# ----- decode: T = 1 (and a few) at the real head shapes ------------------------------------------

@pytest.mark.parametrize("kv_dtype", [np.float16, np.float32])
@pytest.mark.parametrize("context", [1, 100, 128, 129, 301, 700])
@pytest.mark.parametrize("window", [W, 0], ids=["sliding", "full"])
def test_decode_real_heads(kv_dtype, context, window):
    rng = np.random.default_rng(context * 7 + window)
    problem = make_problem(rng, 1, context - 1, window, kv_dtype)
    # sliding: ring of W + MAX_BATCH slots, which contexts beyond 160 wrap; full: one slot per position.
    check(problem, "decode", W + MAX_BATCH if window else 1024)


@pytest.mark.parametrize("kv_dtype", [np.float16, np.float32])
@pytest.mark.parametrize("window,first", [(0, 2000), (W, 2000), (0, 300)], ids=["full-2001", "sliding", "full-301"])
def test_decode_split_k_with_combine(kv_dtype, window, first):
    rng = np.random.default_rng(first + window)
    problem = make_problem(rng, 3, first, window, kv_dtype)
    slots = W + MAX_BATCH if window else first + 3
    # 3 splits (more than the keys need for the sliding case: empty splits must merge to nothing).
    check(problem, "decode", slots, splits=3)


def test_decode_matches_prefill_and_several_tokens():
    rng = np.random.default_rng(5)
    problem = make_problem(rng, 5, 301, W, np.float16)
    decode = check(problem, "decode", W + MAX_BATCH)
    prefill = check(problem, "prefill", W + MAX_BATCH)
    np.testing.assert_allclose(decode, prefill, rtol=0, atol=problem.tolerance())


# ----- prefill: batches, second chunks, awkward sizes ---------------------------------------------

@pytest.mark.parametrize("kv_dtype", [np.float16, np.float32])
@pytest.mark.parametrize("num_tokens,first", [(37, 0), (37, 264), (64, 200), (1, 400), (6, 3)])
@pytest.mark.parametrize("window", [W, 0], ids=["sliding", "full"])
def test_prefill_real_heads(kv_dtype, num_tokens, first, window):
    rng = np.random.default_rng(num_tokens * 1000 + first + window)
    problem = make_problem(rng, num_tokens, first, window, kv_dtype)
    # The ring holds W + the batch (the design's slots = W + max_batch_tokens); first > 0 makes it wrap.
    check(problem, "prefill", W + max(num_tokens, MAX_BATCH) if window else first + num_tokens)


@pytest.mark.parametrize("kernel", ["decode", "prefill"])
def test_awkward_small_shapes(kernel):
    """One KV head, a window (45) that is no multiple of anything, context 301, T = 37."""
    rng = np.random.default_rng(11)
    problem = make_problem(rng, 37 if kernel == "prefill" else 2, 264 if kernel == "prefill" else 299, 45,
                           np.float16, num_kv_heads=1)
    check(problem, kernel, 45 + 37)


@pytest.mark.parametrize("kernel", ["decode", "prefill"])
@pytest.mark.parametrize("sink_offset", [30.0, -30.0], ids=["sinks+30", "sinks-30"])
def test_extreme_sinks(kernel, sink_offset):
    """Sinks far above every score (output ~ 0: the sink takes nearly all mass) and far below (plain
    softmax). Both must stay finite: the running max starts at the sink, so no exp() overflows."""
    rng = np.random.default_rng(17)
    problem = make_problem(rng, 3, 400, 0, np.float16, sink_scale=1.0, sink_offset=sink_offset)
    out = check(problem, kernel, 403)
    if sink_offset > 0:
        assert np.abs(out).max() < 1e-4  # weights e^(score - 30) with scores of order 10 at most
    else:
        ignoring = problem.reference(Faults(ignore_sinks=True))
        assert max_error(out, ignoring) <= problem.tolerance()


# ----- negative controls: each deliberate defect must fail the comparison --------------------------

@pytest.mark.parametrize("kernel", ["decode", "prefill"])
def test_negative_controls(kernel):
    rng = np.random.default_rng(23)
    problem = make_problem(rng, 4, 300, W, np.float16)
    slots = W + MAX_BATCH
    out = run_attention(kernel, problem.q, ring(problem.keys, slots), ring(problem.values, slots), problem.sinks_bf16,
                        problem.first_position, problem.window)
    tol = problem.tolerance()
    assert max_error(out, problem.reference()) <= tol
    # Each must exceed 10x the tolerance: a kernel with the defect would fail clearly.
    assert max_error(out, problem.reference(Faults(ignore_sinks=True))) > 10 * tol
    assert max_error(out, problem.reference(Faults(window_off_by_one=True))) > 10 * tol
    # Wrong GQA mapping: query head h reading KV head h % Hkv instead of h // 8. Built from the same
    # reference by permuting the heads so its h // 8 rule lands on h % Hkv, then permuting back.
    hkv = problem.keys.shape[1]
    order = np.array([(n % GROUP) * hkv + n // GROUP for n in range(hkv * GROUP)])  # new head n = old head order[n]
    q_perm = problem.q.reshape(4, -1, HEAD_DIM)[:, order].reshape(4, -1)
    wrong = reference_attention(q_perm, problem.keys, problem.values, problem.sinks[order], problem.first_position,
                                problem.window)
    wrong_back = np.empty_like(wrong.reshape(4, -1, HEAD_DIM))
    wrong_back[:, order] = wrong.reshape(4, -1, HEAD_DIM)
    assert max_error(out, wrong_back.reshape(4, -1)) > 10 * tol
    # A window too short by one key (W - 1) would also be caught: the kernel reads the right keys.
    short = reference_attention(problem.q, problem.keys, problem.values, problem.sinks, problem.first_position, W - 1)
    assert max_error(out, short) > 10 * tol


@pytest.mark.cpu_layer_only
def test_bad_kv_reads_are_faults_not_garbage():
    """A cache smaller than the slots the args promise is an out-of-bounds fault on the CPU layer."""
    rng = np.random.default_rng(29)
    problem = make_problem(rng, 1, 50, 0, np.float16)
    short_cache = ring(problem.keys, 64)[:40].copy()
    with pytest.raises(DeviceError):
        run_attention("decode", problem.q, short_cache, ring(problem.values, 64), problem.sinks_bf16, 50, 0, slots=64)


# ----- the real tiny model's per-block trace --------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_trace(tiny_model_bin):
    model_bin = read_model_bin(str(tiny_model_bin))
    reference = ReferenceModel(model_bin)  # float32 compute, float32 KV: the exact-parity mode
    tokens = np.random.default_rng(31).integers(0, 50000, size=300)
    trace = Trace()
    reference.forward(tokens, trace=trace)
    return model_bin, trace


@pytest.mark.parametrize("block", [0, 1], ids=["block0-sliding", "block1-full"])
def test_tiny_model_trace(tiny_trace, block):
    model_bin, trace = tiny_trace
    h = model_bin.header
    assert h.head_dim == HEAD_DIM and h.num_heads == GROUP * h.num_kv_heads
    window = h.attention_window if block % 2 == 0 else 0
    qkv = trace.blocks[block].qkv
    q_rows, kv_rows = h.num_heads * HEAD_DIM, h.num_kv_heads * HEAD_DIM
    q = np.ascontiguousarray(qkv[:, :q_rows], np.float32)
    keys = qkv[:, q_rows:q_rows + kv_rows].reshape(-1, h.num_kv_heads, HEAD_DIM).astype(np.float32)
    values = qkv[:, q_rows + kv_rows:].reshape(-1, h.num_kv_heads, HEAD_DIM).astype(np.float32)
    sinks = np.array(model_bin.tensor(f"block.{block}.sinks"), dtype=np.uint16)  # writable copy
    expected = trace.blocks[block].attn
    problem = Problem(q, keys, values, sinks, 0, window)
    # The trace is another float32 evaluation: both sides carry the float32 error model, so 2x.
    tol = 2 * problem.tolerance()
    n = q.shape[0]
    # Prefill of the whole prompt (ring of window + batch on the sliding block).
    slots = window + n if window else n
    out = run_attention("prefill", q, ring(keys, slots), ring(values, slots), sinks, 0, window)
    assert max_error(out, expected) <= tol
    # Decode of the last 2 tokens as a second chunk, on a small wrapped ring (sliding) / split-K (full).
    slots = window + 16 if window else n
    out = run_attention("decode", q[-2:].copy(), ring(keys, slots), ring(values, slots), sinks, n - 2, window,
                        splits=1 if window else 2)
    assert max_error(out, expected[-2:]) <= tol
    # fp16 cache: the expected output moves by the fp16 rounding of K/V (2^-11 relative), which the
    # reference on the rounded values reproduces.
    keys16, values16 = keys.astype(np.float16), values.astype(np.float16)
    out16 = run_attention("prefill", q, ring(keys16, window + n if window else n),
                          ring(values16, window + n if window else n), sinks, 0, window)
    assert max_error(out16, Problem(q, keys16, values16, sinks, 0, window).reference()) <= tol
