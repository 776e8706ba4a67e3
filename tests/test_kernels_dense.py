"""Dense kernel family (embeddings.metal, norm.metal, matmul.metal) against the NumPy reference.

Kernels run through run_kernel on whichever device is present (the CPU execution layer here). The
math under test is taken from gpt_oss_metal.testing.reference (rms_norm, rope_cos_sin, apply_rope,
_rope_inv_freq, and full per-block traces of a tiny converted model), not rewritten.

Tolerances, from the arithmetic: a dot product of n bf16 x f32 products accumulated in f32 has an
error of about sqrt(n) * 2^-24 * sum|w_k x_k| (the summation order differs from NumPy's pairwise
sum); for n <= 4096 that is < 2^-18 of the magnitude sum, so we allow 1e-5 relative to the row's
|w|.|x| plus 1e-6 absolute. RMSNorm adds a few ulp (2^-23 relative). fp16 KV entries carry one extra
rounding of 2^-11 relative. RoPE angles are pos * inv_freq rounded to float in both implementations
with bit-identical inv_freq; cos/sin differ by a few ulp only.
"""

from __future__ import annotations

import struct
import types

import numpy as np
import pytest

from gpt_oss_metal.errors import DeviceError
from gpt_oss_metal.model_bin import ModelHeader, bf16_to_f32, f32_to_bf16, read_model_bin
from gpt_oss_metal.testing.kernels import run_kernel
from gpt_oss_metal.testing.reference import Faults, ReferenceModel, Trace

# Geometry shared with metal/source/include/internal/kernel-args.h.
MATVEC_ROWS, MATVEC_TOKENS, MATVEC_SIMDGROUPS = 4, 4, 8
GEMM_BM, GEMM_BN, GEMM_THREADS = 32, 64, 128
FLAG_BIAS, FLAG_ADD_RESIDUAL, FLAG_RMSNORM = 1, 2, 4
HEAD_DIM = 64

HEADER_20B = ModelHeader(
    context_length=131072, num_blocks=24, num_experts=32, num_active_experts=4, embedding_dim=2880,
    mlp_dim=2880, swiglu_limit=7.0, head_dim=64, num_heads=64, num_kv_heads=8, attention_window=128,
    rope_theta=150000.0, interpolation_scale=1 / 32, yarn_offset=-0.8697005, yarn_scale=0.1074660,
    yarn_multiplier=1.3465736, rmsnorm_epsilon=1e-5,
)


def reference_for_header(header: ModelHeader, faults: Faults = Faults()) -> ReferenceModel:
    """A ReferenceModel with no weights, for its math functions (rms_norm, RoPE) at given dimensions."""
    fake_bin = types.SimpleNamespace(header=header, path="<20b shapes>", num_text_tokens=199998, num_special_tokens=16)
    return ReferenceModel(fake_bin, faults=faults)  # type: ignore[arg-type]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def random_bf16(rng: np.random.Generator, shape: tuple[int, ...], std: float, mean: float = 0.0) -> np.ndarray:
    return f32_to_bf16((mean + std * rng.standard_normal(shape)).astype(np.float32))


# ----- kernel runners (argument structs packed as in kernel-args.h) ------------------------------


def run_embeddings(tokens: np.ndarray, table: np.ndarray) -> np.ndarray:
    vocab, dim = table.shape
    out = np.full((len(tokens), dim), np.nan, np.float32)
    run_kernel("gptoss_embeddings_bf16", len(tokens), 128,
               {0: struct.pack("<III", len(tokens), dim, vocab), 1: tokens.astype(np.uint32), 2: table, 3: out})
    return out


def run_matvec(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, gain: np.ndarray | None,
               out: np.ndarray | None = None, eps: float = 1e-5) -> np.ndarray:
    """out (+)= [RMSNorm(x)*gain or x] @ w.T (+ bias); residual add when out is given."""
    t, k = x.shape
    n = w.shape[0]
    flags = (FLAG_BIAS if bias is not None else 0) | (FLAG_RMSNORM if gain is not None else 0)
    if out is None:
        out = np.full((t, n), np.nan, np.float32)
    else:
        flags |= FLAG_ADD_RESIDUAL
    unused = np.zeros(8, np.uint16)  # every declared buffer must be bound
    run_kernel("gptoss_matvec_bf16", (ceil_div(n, MATVEC_ROWS * MATVEC_SIMDGROUPS), ceil_div(t, MATVEC_TOKENS)),
               32 * MATVEC_SIMDGROUPS,
               {0: struct.pack("<IIIIf", t, k, n, flags, eps), 1: np.ascontiguousarray(x, np.float32), 2: w,
                3: bias if bias is not None else unused, 4: gain if gain is not None else unused, 5: out})
    return out


def run_gemm(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, out: np.ndarray | None = None) -> np.ndarray:
    t, k = x.shape
    n = w.shape[0]
    flags = FLAG_BIAS if bias is not None else 0
    if out is None:
        out = np.full((t, n), np.nan, np.float32)
    else:
        flags |= FLAG_ADD_RESIDUAL
    run_kernel("gptoss_gemm_bf16", (ceil_div(n, GEMM_BN), ceil_div(t, GEMM_BM)), GEMM_THREADS,
               {0: struct.pack("<IIII", t, k, n, flags), 1: np.ascontiguousarray(x, np.float32), 2: w,
                3: bias if bias is not None else np.zeros(8, np.uint16), 4: out})
    return out


def run_rmsnorm(x: np.ndarray, gain: np.ndarray, eps: float) -> np.ndarray:
    out = np.full_like(x, np.nan)
    run_kernel("gptoss_rmsnorm", x.shape[0], 32,
               {0: struct.pack("<IIf", x.shape[0], x.shape[1], eps), 1: np.ascontiguousarray(x), 2: gain, 3: out})
    return out


def qkv_args(ref: ReferenceModel, num_tokens: int, position: int, kv_slots: int) -> bytes:
    h = ref.header
    inv_freq = ref._rope_inv_freq().astype(np.float32)  # the reference's own float64-then-rounded table
    return struct.pack("<IIIIIIff32f", num_tokens, h.embedding_dim, h.num_heads, h.num_kv_heads, position,
                       kv_slots, h.rmsnorm_epsilon, h.yarn_multiplier, *inv_freq)


def new_kv(slots: int, h: ModelHeader, kv_dtype) -> tuple[np.ndarray, np.ndarray]:
    fill = np.nan
    return (np.full((slots, h.num_kv_heads, HEAD_DIM), fill, kv_dtype),
            np.full((slots, h.num_kv_heads, HEAD_DIM), fill, kv_dtype))


def run_qkv_decode(ref: ReferenceModel, residual: np.ndarray, gain, weight, bias, position: int, kv, kv_dtype):
    h = ref.header
    t = residual.shape[0]
    q = np.full((t, h.num_heads * HEAD_DIM), np.nan, np.float32)
    rows = h.qkv_dim
    name = "gptoss_qkv_rope_kv16" if kv_dtype == np.float16 else "gptoss_qkv_rope_kv32"
    run_kernel(name, (ceil_div(rows, MATVEC_ROWS * MATVEC_SIMDGROUPS), ceil_div(t, MATVEC_TOKENS)),
               32 * MATVEC_SIMDGROUPS,
               {0: qkv_args(ref, t, position, kv[0].shape[0]), 1: np.ascontiguousarray(residual, np.float32),
                2: gain, 3: weight, 4: bias, 5: q, 6: kv[0], 7: kv[1]})
    return q


def run_rope_kv(ref: ReferenceModel, qkv: np.ndarray, position: int, kv, kv_dtype) -> np.ndarray:
    h = ref.header
    t = qkv.shape[0]
    q = np.full((t, h.num_heads * HEAD_DIM), np.nan, np.float32)
    name = "gptoss_rope_kv16" if kv_dtype == np.float16 else "gptoss_rope_kv32"
    run_kernel(name, (t, h.num_heads + 2 * h.num_kv_heads), 32,
               {0: qkv_args(ref, t, position, kv[0].shape[0]), 1: np.ascontiguousarray(qkv, np.float32), 2: q,
                3: kv[0], 4: kv[1]})
    return q


def assert_dense_close(actual: np.ndarray, expected: np.ndarray, magnitude: np.ndarray, rel: float = 1e-5) -> None:
    """|actual - expected| <= rel * magnitude + 1e-6 elementwise (magnitude: sum |w||x| per element)."""
    assert actual.shape == expected.shape
    assert np.all(np.isfinite(actual)), "kernel left unwritten (NaN) or non-finite outputs"
    err = np.abs(actual.astype(np.float64) - expected)
    bound = rel * magnitude + 1e-6
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"max excess at {worst}: got {actual[worst]}, want {expected[worst]}, bound {bound[worst]}"


# ----- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_model_bin):
    """(model_bin, f32 reference, 40-token trace from position 0). 40 > window 32, so rings wrap."""
    mb = read_model_bin(str(tiny_model_bin))
    ref = ReferenceModel(mb)
    tokens = np.random.default_rng(7).integers(0, ref.vocab_size, size=40)
    trace = Trace()
    logits = ref.forward(tokens, trace)
    return types.SimpleNamespace(mb=mb, ref=ref, tokens=tokens, trace=trace, logits=logits)


# ----- embeddings --------------------------------------------------------------------------------


def test_embeddings_real_width_exact_and_bad_ids_give_zero_rows():
    rng = np.random.default_rng(1)
    table = random_bf16(rng, (1000, 2880), 0.05)
    tokens = np.array([0, 999, 17, 1000, 0xFFFFFFFF, 5], np.uint64).astype(np.uint32)
    out = run_embeddings(tokens, table)
    good = tokens < 1000
    np.testing.assert_array_equal(out[good], bf16_to_f32(table[tokens[good]]))  # a widening: exact
    np.testing.assert_array_equal(out[~good], 0.0)


def test_embeddings_tiny_model(tiny):
    table = tiny.mb.tensor("embedding")
    out = run_embeddings(tiny.tokens[:9].astype(np.uint32), np.array(table))
    np.testing.assert_array_equal(out, tiny.trace.blocks[0].attn_input[:9])


# ----- RMSNorm + decode QKV + RoPE + KV write ------------------------------------------------------


def qkv_magnitude(x_norm: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.abs(x_norm.astype(np.float64)) @ np.abs(w.astype(np.float64)).T


def check_qkv_against_trace(ref, block_trace, weight_f32, positions, q, kv, kv_dtype, slots) -> None:
    """q and the cache slots of `positions` vs the reference's post-RoPE qkv (rows of those positions)."""
    h = ref.header
    q_rows, kv_rows = h.num_heads * HEAD_DIM, h.num_kv_heads * HEAD_DIM
    want = block_trace.qkv[positions]
    mag = qkv_magnitude(block_trace.attn_norm[positions], weight_f32) * h.yarn_multiplier
    assert_dense_close(q, want[:, :q_rows], mag[:, :q_rows])
    # fp16 cache: one more rounding, 2^-11 relative to the value itself.
    kv_rel = 2.0**-11 if kv_dtype == np.float16 else 0.0
    for part, cache in ((0, kv[0]), (1, kv[1])):
        cols = slice(q_rows + part * kv_rows, q_rows + (part + 1) * kv_rows)
        got = cache[np.asarray(positions) % slots].reshape(len(positions), kv_rows).astype(np.float32)
        bound_mag = mag[:, cols] + kv_rel / 1e-5 * np.abs(want[:, cols])
        assert_dense_close(got, want[:, cols], bound_mag)


@pytest.mark.parametrize("kv_dtype", [np.float16, np.float32])
def test_qkv_decode_tiny_model_positions_and_ring_wrap(tiny, kv_dtype):
    ref, tr = tiny.ref, tiny.trace
    slots = ref.header.attention_window + 1  # 33: positions 33..39 wrap to slots 0..6
    for block in (0, 1):
        w_raw = np.array(tiny.mb.tensor(f"block.{block}.qkv_weight"))
        args = (np.array(tiny.mb.tensor(f"block.{block}.attn_norm")), w_raw,
                np.array(tiny.mb.tensor(f"block.{block}.qkv_bias")))
        bt = tr.blocks[block]
        for positions in ([0], [5], [39], list(range(34, 39))):  # 5 tokens: a full and a partial token group
            kv = new_kv(slots, ref.header, kv_dtype)
            q = run_qkv_decode(ref, bt.attn_input[positions], *args, positions[0], kv, kv_dtype)
            check_qkv_against_trace(ref, bt, bf16_to_f32(w_raw), positions, q, kv, kv_dtype, slots)
            untouched = np.setdiff1d(np.arange(slots), np.asarray(positions) % slots)
            assert np.isnan(kv[0][untouched].astype(np.float32)).all(), "wrote outside the token's slots"


@pytest.mark.parametrize("kv_dtype", [np.float16, np.float32])
def test_qkv_decode_20b_shapes(kv_dtype):
    """D = 2880, 5120 outputs (Hq 64, Hkv 8), random weights, 2 tokens at positions 4999, 5000 of a 4096-slot ring."""
    rng = np.random.default_rng(3)
    ref = reference_for_header(HEADER_20B)
    h = HEADER_20B
    d, rows = h.embedding_dim, h.qkv_dim
    gain, weight, bias = random_bf16(rng, (d,), 0.1, 1.0), random_bf16(rng, (rows, d), 0.02), random_bf16(rng, (rows,), 0.02)
    residual = (rng.standard_normal((2, d)) * 3).astype(np.float32)
    start, slots = 4999, 4096
    kv = new_kv(slots, h, kv_dtype)
    q = run_qkv_decode(ref, residual, gain, weight, bias, start, kv, kv_dtype)
    want, mag = reference_qkv(ref, residual, gain, weight, bias, start)
    q_rows, kv_rows = h.num_heads * HEAD_DIM, h.num_kv_heads * HEAD_DIM
    assert_dense_close(q, want[:, :q_rows], mag[:, :q_rows])
    kv_rel = 2.0**-11 if kv_dtype == np.float16 else 0.0
    for part in (0, 1):
        cols = slice(q_rows + part * kv_rows, q_rows + (part + 1) * kv_rows)
        got = kv[part][np.arange(start, start + 2) % slots].reshape(2, kv_rows).astype(np.float32)
        assert_dense_close(got, want[:, cols], mag[:, cols] + kv_rel / 1e-5 * np.abs(want[:, cols]))


def reference_qkv(ref: ReferenceModel, residual, gain, weight, bias, start: int):
    """The reference's qkv after RoPE for tokens at start.. (same steps as ReferenceModel.step)."""
    h = ref.header
    t = residual.shape[0]
    x_norm = ref.rms_norm(residual, bf16_to_f32(gain))
    w = bf16_to_f32(weight)
    qkv = x_norm @ w.T + bf16_to_f32(bias)
    cos, sin = ref.rope_cos_sin(np.arange(start, start + t))
    q_rows, kv_rows = h.num_heads * HEAD_DIM, h.num_kv_heads * HEAD_DIM
    q = ref.apply_rope(qkv[:, :q_rows].reshape(t, h.num_heads, HEAD_DIM), cos, sin).reshape(t, -1)
    k = ref.apply_rope(qkv[:, q_rows:q_rows + kv_rows].reshape(t, h.num_kv_heads, HEAD_DIM), cos, sin).reshape(t, -1)
    want = np.concatenate([q, k, qkv[:, q_rows + kv_rows:]], axis=1)
    return want, qkv_magnitude(x_norm, w) * h.yarn_multiplier


@pytest.mark.parametrize("fault", [Faults(rope_half_split=True), Faults(drop_yarn_multiplier=True)])
def test_qkv_decode_negative_control_wrong_rope_fails(tiny, fault):
    """The comparison must see a wrong RoPE pairing or a missing YaRN multiplier."""
    ref = ReferenceModel(tiny.mb)
    wrong = ReferenceModel(tiny.mb, faults=fault)
    gain, w, b = (np.array(tiny.mb.tensor(f"block.0.{n}")) for n in ("attn_norm", "qkv_weight", "qkv_bias"))
    residual = tiny.trace.blocks[0].attn_input[[20]]
    kv = new_kv(64, ref.header, np.float32)
    q = run_qkv_decode(ref, residual, gain, w, b, 20, kv, np.float32)
    want_right, mag = reference_qkv(ref, residual, gain, w, b, 20)
    want_wrong, _ = reference_qkv(wrong, residual, gain, w, b, 20)
    q_rows = ref.header.num_heads * HEAD_DIM
    assert_dense_close(q, want_right[:, :q_rows], mag[:, :q_rows])
    with pytest.raises(AssertionError):
        assert_dense_close(q, want_wrong[:, :q_rows], mag[:, :q_rows])


# ----- decode mat-vec (output projection) ----------------------------------------------------------


@pytest.mark.parametrize("t,n,k", [(1, 2880, 4096), (6, 2880, 4096), (5, 37, 168), (1, 1, 8)])
def test_matvec_bias_residual(t, n, k):
    rng = np.random.default_rng(t * 1000 + n + k)
    w, bias = random_bf16(rng, (n, k), 0.03), random_bf16(rng, (n,), 0.02)
    x = rng.standard_normal((t, k)).astype(np.float32)
    residual = rng.standard_normal((t, n)).astype(np.float32)
    out = run_matvec(x, w, bias, None, out=residual.copy())
    wf = bf16_to_f32(w).astype(np.float64)
    want = residual + x.astype(np.float64) @ wf.T + bf16_to_f32(bias)
    mag = np.abs(x.astype(np.float64)) @ np.abs(wf).T + np.abs(residual)
    assert_dense_close(out, want, mag)
    with pytest.raises(AssertionError):  # negative control: the bias must be visible to the comparison
        assert_dense_close(out, want - bf16_to_f32(bias), mag)


def test_matvec_tiny_model_attention_output(tiny):
    bt = tiny.trace.blocks[1]
    w, b = (np.array(tiny.mb.tensor(f"block.1.{n}")) for n in ("out_weight", "out_bias"))
    rows = [3, 4, 38]
    out = run_matvec(bt.attn[rows], w, b, None, out=bt.attn_input[rows].copy())
    mag = np.abs(bt.attn[rows]) @ np.abs(bf16_to_f32(w)).T + np.abs(bt.attn_input[rows])
    assert_dense_close(out, bt.mlp_input[rows], mag)


# ----- unembedding -----------------------------------------------------------------------------------


def test_unembedding_tiny_model_full_vocabulary(tiny):
    """RMSNorm(residual) * final_gain fused into the 200014 x 160 unembedding, L = 2 positions."""
    w = np.array(tiny.mb.tensor("unembedding"))
    gain = np.array(tiny.mb.tensor("final_norm"))
    rows = [0, 39]
    residual = tiny.trace.blocks[-1].output[rows]
    logits = run_matvec(residual, w, None, gain, eps=tiny.ref.header.rmsnorm_epsilon)
    mag = np.abs(tiny.trace.final_norm[rows]).astype(np.float64) @ np.abs(bf16_to_f32(w)).T.astype(np.float64)
    assert_dense_close(logits, tiny.logits[rows], mag)
    assert (np.argmax(logits, axis=1) == np.argmax(tiny.logits[rows], axis=1)).all()


def test_unembedding_slice_real_width():
    rng = np.random.default_rng(11)
    ref = reference_for_header(HEADER_20B)
    w, gain = random_bf16(rng, (3001, 2880), 0.03), random_bf16(rng, (2880,), 0.1, 1.0)
    residual = (rng.standard_normal((3, 2880)) * 5).astype(np.float32)
    logits = run_matvec(residual, w, None, gain)
    x_norm = ref.rms_norm(residual, bf16_to_f32(gain))
    wf = bf16_to_f32(w)
    assert_dense_close(logits, x_norm @ wf.T, np.abs(x_norm) @ np.abs(wf).T)


# ----- prefill: RMSNorm, GEMM, RoPE + KV write -------------------------------------------------------


def test_rmsnorm_batched():
    rng = np.random.default_rng(5)
    ref = reference_for_header(HEADER_20B)
    x = (rng.standard_normal((7, 2880)) * 4).astype(np.float32)
    gain = random_bf16(rng, (2880,), 0.1, 1.0)
    want = ref.rms_norm(x, bf16_to_f32(gain))
    np.testing.assert_allclose(run_rmsnorm(x, gain, 1e-5), want, rtol=1e-5, atol=1e-6)  # a few ulp


@pytest.mark.parametrize("t,n,k,residual", [(37, 200, 160, False), (5, 70, 168, True), (33, 65, 8, True),
                                            (64, 64, 32, False)])
def test_gemm_awkward_sizes(t, n, k, residual):
    rng = np.random.default_rng(t + n + k)
    w, bias = random_bf16(rng, (n, k), 0.05), random_bf16(rng, (n,), 0.02)
    x = rng.standard_normal((t, k)).astype(np.float32)
    res = rng.standard_normal((t, n)).astype(np.float32) if residual else None
    out = run_gemm(x, w, bias, None if res is None else res.copy())
    wf = bf16_to_f32(w).astype(np.float64)
    want = x @ wf.T + bf16_to_f32(bias) + (0 if res is None else res)
    mag = np.abs(x) @ np.abs(wf).T + (0 if res is None else np.abs(res))
    assert_dense_close(out, want, mag)
    with pytest.raises(AssertionError):  # negative control: a transposed-tile bug would look like this
        assert_dense_close(out, want + 1e-3 * np.roll(want, 1, axis=1), mag)


def test_gemm_real_qkv_shape():
    """T = 64 tokens, N = 5120 (QKV of 20b), K = 2880."""
    rng = np.random.default_rng(9)
    w, bias = random_bf16(rng, (5120, 2880), 0.02), random_bf16(rng, (5120,), 0.02)
    x = rng.standard_normal((64, 2880)).astype(np.float32)
    out = run_gemm(x, w, bias)
    wf = bf16_to_f32(w)
    assert_dense_close(out, x @ wf.T + bf16_to_f32(bias), np.abs(x) @ np.abs(wf).T)


@pytest.mark.parametrize("kv_dtype", [np.float16, np.float32])
def test_prefill_qkv_chain_tiny_model(tiny, kv_dtype):
    """rmsnorm -> GEMM -> RoPE + KV write over 40 tokens from position 0, vs the block trace (ring of 33)."""
    ref, bt = tiny.ref, tiny.trace.blocks[2]
    gain, w, b = (np.array(tiny.mb.tensor(f"block.2.{n}")) for n in ("attn_norm", "qkv_weight", "qkv_bias"))
    x_norm = run_rmsnorm(bt.attn_input, gain, ref.header.rmsnorm_epsilon)
    qkv = run_gemm(x_norm, w, b)
    slots = 64  # no wrap here: every position keeps its slot and can be compared
    kv = new_kv(slots, ref.header, kv_dtype)
    q = run_rope_kv(ref, qkv, 0, kv, kv_dtype)
    check_qkv_against_trace(ref, bt, bf16_to_f32(w), list(range(40)), q, kv, kv_dtype, slots)


def test_rope_kv_ring_wrap_keeps_last_positions(tiny):
    """Prefill of 40 tokens into a 33-slot ring: slot s holds the latest position p with p % 33 == s."""
    ref, bt = tiny.ref, tiny.trace.blocks[0]
    kv = new_kv(33, ref.header, np.float32)
    run_rope_kv(ref, bt.qkv_pre_rope if hasattr(bt, "qkv_pre_rope") else unrotated_qkv(ref, bt, tiny.mb), 0, kv,
                np.float32)
    q_rows, kv_rows = ref.header.num_heads * HEAD_DIM, ref.header.num_kv_heads * HEAD_DIM
    latest = [max(p for p in range(40) if p % 33 == s) for s in range(33)]
    np.testing.assert_allclose(kv[0].reshape(33, kv_rows), bt.qkv[latest, q_rows:q_rows + kv_rows], rtol=1e-5, atol=1e-6)


def unrotated_qkv(ref: ReferenceModel, bt, mb) -> np.ndarray:
    return (bt.attn_norm @ ref.weight("block.0.qkv_weight").T + ref.weight("block.0.qkv_bias")).astype(np.float32)


@pytest.mark.cpu_layer_only
def test_kernel_fault_not_silent_for_short_buffer():
    """A weight buffer shorter than N x K must fault (DeviceError), not read past its end."""
    x = np.ones((1, 64), np.float32)
    w = np.zeros((3, 64), np.uint16)  # claims n = 4 below
    out = np.zeros((1, 4), np.float32)
    with pytest.raises(DeviceError):
        run_kernel("gptoss_matvec_bf16", (1, 1), 256,
                   {0: struct.pack("<IIIIf", 1, 64, 4, 0, 1e-5), 1: x, 2: w, 3: np.zeros(8, np.uint16),
                    4: np.zeros(8, np.uint16), 5: out})
