"""MSL type/math library inside real kernels (tests/msl/types_*.metal) run through run_kernel on the
default device (the CPU execution layer here), compared with NumPy.

Unlike tests/test_msl_types_cpp.py this goes through the translator and the runtime: device
buffers of half/bfloat/packed types, swizzles, select, as_type on swizzles, math in kernels.
"""
from __future__ import annotations

import numpy as np

from gpt_oss_metal.testing.kernels import run_kernel  # no skip: the runtime must provide it


def _bfloat_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, round to nearest even (NaN inputs are not used here)."""
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def _bfloat_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def test_convert_f32_to_half_and_bfloat() -> None:
    rng = np.random.default_rng(0)
    n = 4096
    x = np.concatenate([
        rng.standard_normal(n - 8).astype(np.float32) * np.float32(1000.0),
        np.array([65504, 65520, 2.0**-24, 2.0**-25, -0.0, 1e-40, np.inf, -3.0e38], np.float32),
    ])
    out_h = np.zeros(n, np.float16)
    out_b = np.zeros(n, np.uint16)
    back = np.zeros((n, 2), np.float32)
    run_kernel("types_convert_f32_to_16", n // 64, 64, {0: x, 1: out_h, 2: out_b, 3: back})
    with np.errstate(over="ignore"):
        want_h = x.astype(np.float16)
    assert np.array_equal(out_h.view(np.uint16), want_h.view(np.uint16))  # bit exact, RNE
    assert np.array_equal(out_b, _bfloat_bits(x))
    assert np.array_equal(back[:, 0], want_h.astype(np.float32))
    assert np.array_equal(back[:, 1], _bfloat_to_f32(_bfloat_bits(x)))


def test_convert_vectors() -> None:
    rng = np.random.default_rng(1)
    n = 256
    w_bits = _bfloat_bits(rng.standard_normal(4 * n).astype(np.float32) * 4)
    h = (rng.standard_normal(4 * n) * 30).astype(np.float16)
    w_f32 = np.zeros(4 * n, np.float32)
    h_sq = np.zeros(4 * n, np.float16)
    truncated = np.zeros(4 * n, np.int32)
    run_kernel("types_convert_vectors", n // 32, 32, {0: w_bits, 1: h, 2: w_f32, 3: h_sq, 4: truncated})
    wf = _bfloat_to_f32(w_bits)
    assert np.array_equal(w_f32, wf)
    # half4 * half4 + half: each operation rounded to half (NumPy float16 ops round per operation too).
    with np.errstate(over="ignore"):
        want = (h * h) + np.float16(1)
    assert np.array_equal(h_sq.view(np.uint16), want.view(np.uint16))
    assert np.array_equal(truncated, np.trunc(wf * np.float32(3)).astype(np.int32))


def test_vector_ops_swizzles_select() -> None:
    rng = np.random.default_rng(2)
    n = 512
    a = rng.standard_normal((n, 4)).astype(np.float32) * 10
    b = rng.standard_normal((n, 4)).astype(np.float32) * 10
    out = np.zeros((n, 4), np.float32)
    out_dot = np.zeros(n, np.float32)
    run_kernel("types_vector_ops", n // 64, 64, {0: a, 1: b, 2: out, 3: out_dot})
    # fma in float64 then rounded once equals the fused float32 result except on double-rounding
    # ties, which random inputs do not hit; the other steps are exact float32 operations.
    r = (a.astype(np.float64) * 2 + b).astype(np.float32)
    r[:, [0, 1]] = r[:, [1, 0]]
    r[:, 2:] += a[:, [0, 0]]
    r = np.where(a < 0, -r, r)
    np.testing.assert_array_equal(out, np.clip(r, -100, 100))
    # dot in float32, left to right, unfused (the library's documented order).
    d = a[:, 0] * b[:, 2]
    d = d + a[:, 1] * b[:, 1]
    d = d + a[:, 2] * b[:, 0]
    s2 = a[:, :2] + b[:, 2:]
    np.testing.assert_array_equal(out_dot, d + (s2[:, 0] - s2[:, 1]))


def test_packed_float3() -> None:
    rng = np.random.default_rng(3)
    n = 320  # a multiple of the threadgroup size: the kernel has no bounds check
    p = rng.standard_normal((n, 3)).astype(np.float32)
    q = np.zeros((n, 3), np.float32)
    run_kernel("types_packed3", n // 32, 32, {0: p, 1: q})
    # cross(v, (0,0,1)) = (v.y, -v.x, 0); plus v.zxy * 0.5: exact float32 operations.
    c = np.stack([p[:, 1], -p[:, 0], np.zeros(n, np.float32)], axis=1)
    np.testing.assert_array_equal(q, c + p[:, [2, 0, 1]] * np.float32(0.5))


def test_mxfp4_unpack_bit_trick() -> None:
    rng = np.random.default_rng(4)
    n = 128
    blocks = rng.integers(0, 2**32, size=(n, 4), dtype=np.uint64).astype(np.uint32)
    out = np.zeros((n, 4, 4), np.float32)
    run_kernel("types_mxfp4_unpack", n // 32, 32, {0: blocks, 1: out})
    w = blocks.astype(np.uint32)
    even = ((w + w) & 0x1E1E1E1E) + np.uint32(0x70707070)
    odd = ((w >> 3) & 0x1E1E1E1E) + np.uint32(0x70707070)
    even &= 0x8E8E8E8E
    odd &= 0x8E8E8E8E
    hi = even & 0xFF00FF00
    lo = (even << 8) & 0xFF00FF00

    def as_half4(two_words: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(two_words).view(np.float16).astype(np.float32).reshape(n, 4)

    want = np.stack([as_half4(lo[:, :2]), as_half4(lo[:, 2:]), as_half4(hi[:, :2]),
                     as_half4((odd & 0xFF00FF00)[:, 2:])], axis=1)
    np.testing.assert_array_equal(out, want)


def _ulps32(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    def ordered(v: np.ndarray) -> np.ndarray:
        i = v.astype(np.float32).view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)

    return np.abs(ordered(got) - ordered(want))


def test_math_float_half_int() -> None:
    rng = np.random.default_rng(5)
    n = 1024
    x = (rng.standard_normal(n) * 20).astype(np.float32)
    out = np.zeros((n, 4), np.float32)
    run_kernel("types_math_float", n // 64, 64, {0: x, 1: out})
    x64 = x.astype(np.float64)
    want = np.stack([np.exp((x * np.float32(0.1)).astype(np.float64)), np.sin(x64), np.cos(x64),
                     1 / np.sqrt(np.abs(x64) + 1)], axis=1).astype(np.float32)
    # <= 2 ulp: host libm float functions (see tests/test_msl_types_cpp.py); MSL allows 4.
    assert _ulps32(out, want).max() <= 2

    h = (rng.standard_normal(n) * 5).astype(np.float16)
    out_h = np.zeros((n, 2), np.float16)
    run_kernel("types_math_half", n // 64, 64, {0: h, 1: out_h})
    h64 = h.astype(np.float64)
    assert np.array_equal(out_h[:, 0], np.sqrt(np.abs(h64)).astype(np.float16))  # correctly rounded
    ordered = lambda v: np.where(v.view(np.int16) < 0, -(v.view(np.int16).astype(np.int32) & 0x7FFF),  # noqa: E731
                                 v.view(np.int16).astype(np.int32))
    assert np.abs(ordered(out_h[:, 1]) - ordered(np.tanh(h64).astype(np.float16))).max() <= 1  # 1 half ulp

    u = np.concatenate([rng.integers(0, 2**32, n - 4, dtype=np.uint64).astype(np.uint32),
                        np.array([0, 1, 999, 0xFFFFFFFF], np.uint32)])
    out_u = np.zeros((n, 4), np.uint32)
    run_kernel("types_math_int", n // 64, 64, {0: u, 1: out_u})
    clz = np.array([32 - int(v).bit_length() for v in u], np.uint32)
    pop = np.array([bin(int(v)).count("1") for v in u], np.uint32)
    subsat = np.where(u > 1000, u - np.uint32(1000), 0).astype(np.uint32)
    np.testing.assert_array_equal(out_u, np.stack([clz, pop, subsat, (u >> 4) & 0xFF], axis=1))
