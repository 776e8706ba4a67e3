"""Routing and MoE kernels (metal/source/kernels/routing.metal, moe.metal) against the NumPy reference.

Kernels are dispatched with run_kernel using the geometry their C launch wrappers compute
(metal/source/launch-routing.c, launch-moe.c; documented in internal/kernels-moe.h). Expert weights
are built as a byte buffer laid out exactly like a model.bin MoE section.

Tolerances: float32 accumulation of n products has error ~ sqrt(n) * 2^-24 * sum|products| (random
rounding), and at most n * 2^-24 * sum|products| in the worst case; we use 8 * sqrt(n) * 2^-24 * sum|.|
per dot product (the reference itself is float32, so both sides carry such an error), propagated
through SwiGLU by its derivative bound.
"""

from __future__ import annotations

import math
import struct
import types

import numpy as np
import pytest

from gpt_oss_metal.model_bin import (
    MXFP4_SCALE_OFFSET,
    ModelHeader,
    align_up,
    bf16_to_f32,
    expert_tensor_shapes,
    f32_to_bf16,
    read_model_bin,
)
from gpt_oss_metal.testing.kernels import run_kernel
from gpt_oss_metal.testing.reference import ReferenceModel, dequantize_mxfp4

EPS32 = 2.0**-24
TILE_ROWS = 32  # prefill row tile (GPTOSS_MOE_PREFILL_TILE_ROWS)
DECODE_SIMDGROUPS = 8  # rows per decode threadgroup (launch-moe.c)


# ----- helpers ---------------------------------------------------------------------------------------


def make_header(d: int, i: int, e: int, k: int = 4, limit: float = 7.0) -> ModelHeader:
    """gpt-oss-20b header with the MoE dimensions replaced."""
    return ModelHeader(131072, 1, e, k, d, i, limit, 64, 64, 8, 128, 150000.0, 1 / 32, -0.869701, 0.107466,
                       1.346574, 1e-5)


def make_reference(header: ModelHeader, experts=None) -> ReferenceModel:
    """A ReferenceModel on a synthetic header (its math functions only need the header); `experts`
    (w1, b1, w2, b2 indexable by expert) stands in for block 0's dequantised experts."""
    fake_bin = types.SimpleNamespace(header=header, num_text_tokens=0, num_special_tokens=0, path="synthetic")
    ref = ReferenceModel(fake_bin)  # type: ignore[arg-type]
    if experts is not None:
        ref._experts[0] = experts
    return ref


def expert_layout(d: int, i: int) -> dict[str, int]:
    """Offsets of the parts of one expert and expert_size (compute_layout's arithmetic)."""
    h = types.SimpleNamespace(embedding_dim=d, mlp_dim=i)
    offsets, offset = {}, 0
    for suffix, shape, dtype in expert_tensor_shapes(h):  # type: ignore[arg-type]
        offsets[suffix] = offset
        offset = align_up(math.prod(shape) * (2 if dtype == "bf16" else 1), 16) + offset
    offsets["expert_size"] = offset
    return offsets


def router_args(t: int, d: int, e: int, k: int, eps: float) -> bytes:
    return struct.pack("<IIIIfI", t, d, e, k, eps, 0)


def moe_args(t: int, d: int, i: int, e: int, k: int, limit: float = 7.0) -> bytes:
    lay = expert_layout(d, i)
    max_tiles = -(-t * k // TILE_ROWS) + e
    return struct.pack(
        "<7Q5IfII", lay["expert_size"], lay["mlp1_blocks"], lay["mlp1_scales"], lay["mlp1_bias"], lay["mlp2_blocks"],
        lay["mlp2_scales"], lay["mlp2_bias"], t, d, i, e, k, limit, max_tiles, 0,
    )


class MoESection:
    """A MoE section of E experts as model.bin lays it out; `used` experts get random MXFP4 weights with
    realistic scales (2^-8 .. 2^-4) and bf16 biases; the others are poisoned (scale byte 255 = 2^128,
    i.e. inf): reading them makes results non-finite, so the tests also prove only routed experts are read."""

    def __init__(self, rng: np.random.Generator, d: int, i: int, e: int, used) -> None:
        self.d, self.i, self.e = d, i, e
        self.layout = expert_layout(d, i)
        size = self.layout["expert_size"]
        self.data = np.zeros(e * size, dtype=np.uint8)
        for x in range(e):
            self.part(x, "mlp1_scales")[:] = 255
            self.part(x, "mlp2_scales")[:] = 255
        for x in sorted(set(int(u) for u in used)):
            for name in ("mlp1_blocks", "mlp2_blocks"):
                p = self.part(x, name)
                p[:] = rng.integers(0, 256, p.shape, dtype=np.uint8)
            for name in ("mlp1_scales", "mlp2_scales"):
                p = self.part(x, name)
                p[:] = 127 + MXFP4_SCALE_OFFSET + rng.integers(-8, -3, p.shape)
            for name, n in (("mlp1_bias", 2 * i), ("mlp2_bias", d)):
                self.part(x, name)[:] = f32_to_bf16(rng.normal(0, 0.5, n).astype(np.float32))

    def part(self, expert: int, name: str) -> np.ndarray:
        shapes = {s: (shape, dtype) for s, shape, dtype in expert_tensor_shapes(
            types.SimpleNamespace(embedding_dim=self.d, mlp_dim=self.i))}  # type: ignore[arg-type]
        shape, dtype = shapes[name]
        start = expert * self.layout["expert_size"] + self.layout[name]
        n = math.prod(shape) * (2 if dtype == "bf16" else 1)
        raw = self.data[start:start + n]
        return raw.view(np.uint16).reshape(shape) if dtype == "bf16" else raw.reshape(shape)

    def dequantized(self, expert: int, nibble_swap: bool = False, scale_shift: int = 0):
        """(w1 [2I, D], b1, w2 [D, I], b2) via reference.dequantize_mxfp4; the flags build wrong variants."""
        out = []
        for m in ("mlp1", "mlp2"):
            blocks = self.part(expert, m + "_blocks")
            if nibble_swap:
                blocks = ((blocks & 0x0F) << 4) | (blocks >> 4)
            scales = (self.part(expert, m + "_scales").astype(np.int32) + scale_shift).astype(np.uint8)
            out += [dequantize_mxfp4(blocks, scales), bf16_to_f32(self.part(expert, m + "_bias"))]
        return out


class LazyExperts:
    """w1/b1/w2/b2 lists for ReferenceModel.moe that dequantise an expert on first use."""

    def __init__(self, section: MoESection, **variant) -> None:
        self.section, self.variant, self.cache = section, variant, {}

    def part(self, index: int):
        parent = self

        class View:
            def __getitem__(self, e):
                e = int(e)
                if e not in parent.cache:
                    parent.cache[e] = parent.section.dequantized(e, **parent.variant)
                return parent.cache[e][index]

        return View()

    def as_tuple(self):
        return tuple(self.part(n) for n in range(4))


def bf16_scalar(x: float) -> np.uint16:
    return f32_to_bf16(np.array([x], np.float32))[0]


def dot_tolerance(abs_sum: np.ndarray, n: int) -> np.ndarray:
    """Bound on the float32 error of a length-n dot product with sum |products| = abs_sum (see module doc)."""
    return 8.0 * math.sqrt(n) * EPS32 * abs_sum + 1e-30


# ----- kernel runners (geometry as in the launch wrappers) --------------------------------------------


def run_router(residual, gain_bf16, w_bf16, b_bf16, k: int, eps: float):
    t, d = residual.shape
    e = w_bf16.shape[0]
    x_norm = np.zeros((t, d), np.float32)
    ids = np.zeros((t, k), np.uint32)
    weights = np.zeros((t, k), np.float32)
    run_kernel("gptoss_router", t, 32 * min(e, 32),
               {0: router_args(t, d, e, k, eps), 1: np.array(residual, np.float32),
                2: np.array(gain_bf16, np.uint16), 3: np.array(w_bf16, np.uint16), 4: np.array(b_bf16, np.uint16),
                5: x_norm, 6: ids, 7: weights},
               threadgroup_memory={0: align_up(4 * d, 16)})
    return x_norm, ids, weights


def run_mlp1_decode(section: MoESection, x_norm, ids, limit=7.0):
    t, k = ids.shape
    act = np.zeros((t, k, section.i), np.float32)
    run_kernel("gptoss_moe_mlp1_swiglu_decode", (-(-section.i // DECODE_SIMDGROUPS), k, t), 32 * DECODE_SIMDGROUPS,
               {0: moe_args(t, section.d, section.i, section.e, k, limit), 1: np.ascontiguousarray(x_norm, np.float32),
                2: np.ascontiguousarray(ids, np.uint32), 3: section.data, 4: act})
    return act


def run_mlp2_decode(section: MoESection, act, ids, weights, residual):
    t, k = ids.shape
    out = np.array(residual, np.float32, copy=True)
    run_kernel("gptoss_moe_mlp2_accumulate_decode", (-(-section.d // DECODE_SIMDGROUPS), t), 32 * DECODE_SIMDGROUPS,
               {0: moe_args(t, section.d, section.i, section.e, k), 1: np.ascontiguousarray(act, np.float32),
                2: np.ascontiguousarray(ids, np.uint32), 3: np.ascontiguousarray(weights, np.float32),
                4: section.data, 5: out})
    return out


def run_moe_prefill(section: MoESection, x_norm, ids, weights, residual, limit=7.0):
    """scatter -> mlp1 GEMM + SwiGLU -> mlp2 GEMM -> gather: 4 dispatches after the router."""
    t, k = ids.shape
    d, i, e = section.d, section.i, section.e
    args = moe_args(t, d, i, e, k, limit)
    max_tiles = -(-t * k // TILE_ROWS) + e
    ids = np.ascontiguousarray(ids, np.uint32)
    plan = np.zeros(2 * (e + 1), np.uint32)
    row_pairs = np.zeros(t * k, np.uint32)
    run_kernel("gptoss_moe_scatter", 1, 1024, {0: args, 1: ids, 2: plan, 3: row_pairs})
    act = np.zeros((t, k, i), np.float32)
    run_kernel("gptoss_moe_mlp1_swiglu_prefill", (i // 32, max_tiles), 128,
               {0: args, 1: np.ascontiguousarray(x_norm, np.float32), 2: plan, 3: row_pairs, 4: section.data, 5: act})
    expert_out = np.zeros((t, k, d), np.float32)
    run_kernel("gptoss_moe_mlp2_prefill", (d // 32, max_tiles), 128,
               {0: args, 1: act, 2: plan, 3: row_pairs, 4: np.ascontiguousarray(weights, np.float32),
                5: section.data, 6: expert_out})
    out = np.array(residual, np.float32, copy=True)
    run_kernel("gptoss_moe_gather", (-(-(d // 4) // 256), t), 256, {0: args, 1: expert_out, 2: ids, 3: out})
    return out, act, plan, row_pairs


# ----- reference pieces -------------------------------------------------------------------------------


def mlp1_reference(ref: ReferenceModel, section: MoESection, x_norm, ids, swap_gate_linear=False, **variant):
    """act [T, k, I] and its tolerance, from the reference's dequantize_mxfp4 and swiglu."""
    t, k = ids.shape
    act = np.zeros((t, k, section.i), np.float32)
    tol = np.zeros_like(act)
    for tok in range(t):
        for s in range(k):
            w1, b1, _, _ = section.dequantized(int(ids[tok, s]), **variant)
            h = w1 @ x_norm[tok] + b1
            err = dot_tolerance(np.abs(w1) @ np.abs(x_norm[tok]), section.d)
            if swap_gate_linear:
                h = h.reshape(-1, 2)[:, ::-1].reshape(-1)
            act[tok, s] = ref.swiglu(h[None])[0]
            # |d act / d gate| <= 1.1 (limit + 1), |d act / d linear| <= limit: propagate both row errors.
            limit = ref.header.swiglu_limit
            tol[tok, s] = 1.1 * (limit + 1) * err[0::2] + limit * err[1::2] + 1e-6 * np.abs(act[tok, s])
    return act, tol


def mlp2_reference(section: MoESection, act, ids, weights, residual):
    t, k = ids.shape
    out = np.array(residual, np.float32, copy=True)
    tol = np.zeros_like(out)
    for tok in range(t):
        for s in range(k):
            _, _, w2, b2 = section.dequantized(int(ids[tok, s]))
            out[tok] += weights[tok, s] * (w2 @ act[tok, s] + b2)
            tol[tok] += weights[tok, s] * dot_tolerance(np.abs(w2) @ np.abs(act[tok, s]), section.i)
    return out, tol + 4 * EPS32 * np.abs(out)


def random_ids(rng, t: int, e: int, k: int) -> np.ndarray:
    return np.stack([rng.choice(e, k, replace=False) for _ in range(t)]).astype(np.uint32)


def random_routing_weights(rng, t: int, k: int) -> np.ndarray:
    w = rng.random((t, k)).astype(np.float32) + 0.1
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


# ----- router -----------------------------------------------------------------------------------------


def router_reference(ref: ReferenceModel, residual, gain, w, b):
    x_norm = ref.rms_norm(residual, bf16_to_f32(gain))
    logits = x_norm @ bf16_to_f32(w).T + bf16_to_f32(b)
    experts, weights, margin = ref.route(logits)
    logit_tol = dot_tolerance(np.abs(x_norm) @ np.abs(bf16_to_f32(w)).T, x_norm.shape[1])
    return x_norm, logits, experts, weights, margin, logit_tol


@pytest.mark.parametrize("num_experts", [32, 128])
def test_router_random(num_experts: int) -> None:
    rng = np.random.default_rng(num_experts)
    d, k, t = 2880, 4, 6
    header = make_header(d, d, num_experts, k)
    ref = make_reference(header)
    residual = rng.normal(0, 3, (t, d)).astype(np.float32)
    gain = f32_to_bf16(rng.normal(1, 0.2, d).astype(np.float32))
    w = f32_to_bf16(rng.normal(0, 0.03, (num_experts, d)).astype(np.float32))
    b = f32_to_bf16(rng.normal(0, 0.3, num_experts).astype(np.float32))
    x_norm, ids, weights = run_router(residual, gain, w, b, k, header.rmsnorm_epsilon)
    x_ref, logits, experts, w_ref, margin, logit_tol = router_reference(ref, residual, gain, w, b)
    # x_norm: mean square summed in another order (relative error ~ sqrt(D) 2^-24, halved by the sqrt),
    # times 1/sqrt and two products: a few ulp.
    np.testing.assert_allclose(x_norm, x_ref, rtol=2e-6 * math.sqrt(d) / 8, atol=1e-30)
    # The test data has no near-tie, so the selection must be exactly the reference's.
    assert (margin > 4 * logit_tol.max(axis=1)).all(), "seed produced a near tie; choose another"
    np.testing.assert_array_equal(ids, experts)
    # Weights: softmax of logits each within logit_tol; d softmax / d logit <= 1/4 per logit.
    np.testing.assert_allclose(weights, w_ref, rtol=0, atol=k * logit_tol.max() + 1e-6)


@pytest.mark.parametrize("num_experts", [32, 128])
def test_router_ties(num_experts: int) -> None:
    """Exactly tied logits (zero rows, equal biases): ties go to the lowest index, in descending order."""
    rng = np.random.default_rng(7)
    d, k, t = 160, 4, 3
    header = make_header(d, 96, num_experts, k)
    ref = make_reference(header)
    residual = rng.normal(0, 1, (t, d)).astype(np.float32)
    gain = f32_to_bf16(np.ones(d, np.float32))
    w = f32_to_bf16(rng.normal(0, 0.01, (num_experts, d)).astype(np.float32))
    b = np.full(num_experts, bf16_scalar(-2.0), np.uint16)
    # 5 experts (spread over lanes and, for E = 128, over several per-lane slots) tie at the top for
    # 4 places; two more tie for 2nd place in a second pattern below.
    tied = [3, 5, 7, 20, 31] if num_experts == 32 else [98, 2, 34, 66, 99]
    w[tied] = 0
    b[tied] = bf16_scalar(1.5)
    x_norm, ids, weights = run_router(residual, gain, w, b, k, header.rmsnorm_epsilon)
    want = sorted(tied)[:4]
    for tok in range(t):
        assert ids[tok].tolist() == want, (ids[tok], want)
        np.testing.assert_allclose(weights[tok], 0.25, rtol=1e-6)
    _, _, experts, _, _, _ = router_reference(ref, residual, gain, w, b)
    np.testing.assert_array_equal(ids, experts)

    # One clear winner, then two tied for 2nd/3rd, then a clear 4th.
    b2 = np.full(num_experts, bf16_scalar(-2.0), np.uint16)
    w2 = w.copy()
    top, pair, fourth = num_experts - 1, [num_experts - 2, 1], 10
    w2[[top, *pair, fourth]] = 0
    b2[top], b2[pair], b2[fourth] = bf16_scalar(3.0), bf16_scalar(2.0), bf16_scalar(1.0)
    _, ids2, weights2 = run_router(residual, gain, w2, b2, k, header.rmsnorm_epsilon)
    for tok in range(t):
        assert ids2[tok].tolist() == [top, 1, num_experts - 2, fourth]
    _, _, experts2, w_ref2, _, _ = router_reference(ref, residual, gain, w2, b2)
    np.testing.assert_array_equal(ids2, experts2)
    np.testing.assert_allclose(weights2, w_ref2, rtol=1e-6)


# ----- decode MoE -------------------------------------------------------------------------------------

DECODE_SHAPES = [(2880, 2880, 32, 1), (160, 96, 32, 3)]  # (D, I, E, T): real 20b shapes; awkward small


@pytest.mark.parametrize("d,i,e,t", DECODE_SHAPES)
def test_decode_mlp1_swiglu(d: int, i: int, e: int, t: int) -> None:
    rng = np.random.default_rng(d + t)
    k = 4
    ids = random_ids(rng, t, e, k)
    section = MoESection(rng, d, i, e, ids.reshape(-1))
    ref = make_reference(make_header(d, i, e, k))
    x_norm = rng.normal(0, 1, (t, d)).astype(np.float32)
    act = run_mlp1_decode(section, x_norm, ids)
    want, tol = mlp1_reference(ref, section, x_norm, ids)
    assert np.isfinite(act).all()
    assert (np.abs(act - want) <= tol).all(), f"max excess {np.max(np.abs(act - want) - tol)}"
    # The clamp is exercised: some gates beyond the limit.
    assert (np.abs(want) > 1.0).any()

    # Negative controls: each deliberately wrong reading of the format must disagree.
    for variant in ({"nibble_swap": True}, {"scale_shift": 1}, {"swap_gate_linear": True}):
        wrong, _ = mlp1_reference(ref, section, x_norm, ids, **variant)
        assert not (np.abs(act - wrong) <= tol).all(), f"control {variant} was not detected"


@pytest.mark.parametrize("d,i,e,t", DECODE_SHAPES)
def test_decode_mlp2_accumulate(d: int, i: int, e: int, t: int) -> None:
    rng = np.random.default_rng(100 + d + t)
    k = 4
    ids = random_ids(rng, t, e, k)
    section = MoESection(rng, d, i, e, ids.reshape(-1))
    act = rng.normal(0, 1, (t, k, i)).astype(np.float32)
    weights = random_routing_weights(rng, t, k)
    residual = rng.normal(0, 2, (t, d)).astype(np.float32)
    out = run_mlp2_decode(section, act, ids, weights, residual)
    want, tol = mlp2_reference(section, act, ids, weights, residual)
    assert np.isfinite(out).all()
    assert (np.abs(out - want) <= tol).all(), f"max excess {np.max(np.abs(out - want) - tol)}"
    # Negative controls on the mlp2 format.
    for variant in ({"nibble_swap": True}, {"scale_shift": 1}):
        wrong = np.array(residual, copy=True)
        for tok in range(t):
            for s in range(k):
                _, _, w2, b2 = section.dequantized(int(ids[tok, s]), **variant)
                wrong[tok] += weights[tok, s] * (w2 @ act[tok, s] + b2)
        assert not (np.abs(out - wrong) <= tol).all(), f"control {variant} was not detected"


# ----- prefill MoE ------------------------------------------------------------------------------------


def uneven_ids(rng, t: int, e: int, k: int, heavy: int, pool) -> np.ndarray:
    """Most tokens route to `heavy` (in a random slot); other slots from a small pool: many experts unused."""
    ids = np.zeros((t, k), np.uint32)
    for tok in range(t):
        others = rng.choice([p for p in pool if p != heavy], k, replace=False)
        if rng.random() < 0.9:
            others[rng.integers(k)] = heavy
        ids[tok] = others
    return ids


@pytest.mark.parametrize("t", [37, 128])
def test_prefill_moe_uneven(t: int) -> None:
    rng = np.random.default_rng(t)
    d, i, e, k = 160, 96, 32, 4
    header = make_header(d, i, e, k)
    pool = [0, 3, 4, 9, 17, 22, 30, 31]
    heavy = 17
    # Route with the router kernel so the prefill pipeline runs from the residual; the gate rows favour
    # the pool and the heavy expert.
    residual = rng.normal(0, 1, (t, d)).astype(np.float32)
    gain = f32_to_bf16(rng.normal(1, 0.1, d).astype(np.float32))
    w = f32_to_bf16(rng.normal(0, 0.05, (e, d)).astype(np.float32))
    b = np.full(e, bf16_scalar(-30.0), np.uint16)
    b[pool] = bf16_scalar(0.0)
    x_norm, ids, weights = run_router(residual, gain, w, b, k, header.rmsnorm_epsilon)
    # Replace the routing with a deliberately uneven one (the router is tested above).
    ids = uneven_ids(rng, t, e, k, heavy, pool)
    section = MoESection(rng, d, i, e, pool)
    ref = make_reference(header, LazyExperts(section).as_tuple())

    out, act, plan, row_pairs = run_moe_prefill(section, x_norm, ids, weights, residual)
    counts = np.bincount(ids.reshape(-1), minlength=e)
    assert counts[heavy] > 0.8 * t and (counts == 0).sum() >= e - len(pool)
    np.testing.assert_array_equal(plan[: e + 1], np.concatenate([[0], np.cumsum(counts)]))
    np.testing.assert_array_equal(plan[e + 1:], np.concatenate([[0], np.cumsum(-(-counts // TILE_ROWS))]))
    for x in range(e):
        got = np.sort(row_pairs[plan[x]:plan[x + 1]])
        np.testing.assert_array_equal(got, np.flatnonzero(ids.reshape(-1) == x))

    # Same activations and output as the decode path (same math, different summation order) ...
    act_decode = run_mlp1_decode(section, x_norm, ids)
    out_decode = run_mlp2_decode(section, act_decode, ids, weights, residual)
    act_want, act_tol = mlp1_reference(ref, section, x_norm, ids)
    assert (np.abs(act - act_want) <= act_tol).all(), f"max excess {np.max(np.abs(act - act_want) - act_tol)}"
    assert (np.abs(act - act_decode) <= 2 * act_tol).all()
    # ... and as ReferenceModel.moe (the reference sums experts in index order).
    want = residual + ref.moe(0, x_norm, ids.astype(np.int64), weights)
    _, tol = mlp2_reference(section, act_want, ids, weights, residual)
    tol = tol + 9 * (np.abs(weights)[:, :, None] * np.abs(act_tol)).sum(axis=(1, 2))[:, None]  # act errors
    assert np.isfinite(out).all()
    assert (np.abs(out - want) <= tol).all(), f"max excess {np.max(np.abs(out - want) - tol)}"
    assert (np.abs(out - out_decode) <= 2 * tol).all()


# ----- the tiny model, block by block ------------------------------------------------------------------


def test_tiny_model_block_trace(tiny_model_bin) -> None:
    """Router and MoE output of every block of the real tiny model on a 300-token prompt."""
    from gpt_oss_metal.testing.reference import Trace

    mb = read_model_bin(str(tiny_model_bin))
    h = mb.header
    ref = ReferenceModel(mb)
    rng = np.random.default_rng(300)
    tokens = rng.integers(0, mb.num_text_tokens, 300)
    trace = Trace()
    ref.forward(tokens, trace)
    d, i, e, k = h.embedding_dim, h.mlp_dim, h.num_experts, h.num_active_experts
    size = mb.layout.expert_size
    near_ties = 0
    for n, bt in enumerate(trace.blocks):
        gate_w = np.ascontiguousarray(mb.tensor(f"block.{n}.gate_weight"))
        x_norm, ids, weights = run_router(bt.mlp_input, np.ascontiguousarray(mb.tensor(f"block.{n}.mlp_norm")),
                                          gate_w, np.ascontiguousarray(mb.tensor(f"block.{n}.gate_bias")), k,
                                          h.rmsnorm_epsilon)
        np.testing.assert_allclose(x_norm, bt.mlp_norm, rtol=2e-6, atol=1e-30)
        logit_tol = dot_tolerance(np.abs(bt.mlp_norm) @ np.abs(bf16_to_f32(gate_w)).T, d).max(axis=1)
        clear = bt.router_margin > 4 * logit_tol
        near_ties += int((~clear).sum())
        np.testing.assert_array_equal(ids[clear], bt.experts[clear])
        np.testing.assert_allclose(weights[clear], bt.expert_weights[clear], atol=k * logit_tol.max() + 1e-6)

        # MoE with the reference's routing (so a flipped near tie cannot hide or fake a defect).
        section = MoESection.__new__(MoESection)
        section.d, section.i, section.e = d, i, e
        section.layout = expert_layout(d, i)
        assert section.layout["expert_size"] == size
        section.data = np.array(np.frombuffer(mb._map, np.uint8, e * size, mb.layout.moe_offsets[n]))
        ids_ref = bt.experts.astype(np.uint32)
        w_ref = bt.expert_weights.astype(np.float32)
        x_in = bt.mlp_norm.astype(np.float32)
        act_want, act_tol = mlp1_reference(ref, section, x_in, ids_ref)
        _, out_tol = mlp2_reference(section, act_want, ids_ref, w_ref, bt.mlp_input)
        out_tol = out_tol + 9 * (w_ref[:, :, None] * act_tol).sum(axis=(1, 2))[:, None]
        for path in ("decode", "prefill"):
            if path == "decode":
                out = run_mlp2_decode(section, run_mlp1_decode(section, x_in, ids_ref, h.swiglu_limit), ids_ref,
                                      w_ref, bt.mlp_input)
            else:
                out, _, _, _ = run_moe_prefill(section, x_in, ids_ref, w_ref, bt.mlp_input, h.swiglu_limit)
            assert (np.abs(out - bt.output) <= out_tol).all(), (
                f"block {n} {path}: max excess {np.max(np.abs(out - bt.output) - out_tol)}")
    assert near_ties < 0.01 * 300 * len(trace.blocks)
