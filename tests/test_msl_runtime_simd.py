"""MSL execution layer: SIMD-group functions (32 lanes) and divergence detection."""

from __future__ import annotations

import numpy as np
import pytest

from gpt_oss_metal.errors import DeviceError
from gpt_oss_metal.testing.kernels import run_kernel

SIMD = 32


def lanes(a: np.ndarray) -> np.ndarray:
    """View a per-thread array as (SIMD groups, 32 lanes, ...)."""
    return a.reshape(-1, SIMD, *a.shape[1:])


def test_integer_reductions_and_scans():
    n = 4 * SIMD
    x = np.random.default_rng(3).integers(-50, 50, size=n).astype(np.int32)
    out = np.zeros(11 * n, np.int32)
    run_kernel("runtime_simd_int", 2, 64, {0: x, 1: out})
    out = out.reshape(11, n)
    g = lanes(x)
    factor = lanes(np.where(x % 3 == 0, 2, 1).astype(np.int64))
    bcast = lambda v: np.repeat(v, SIMD)  # noqa: E731
    np.testing.assert_array_equal(out[0], bcast(g.sum(axis=1)))
    np.testing.assert_array_equal(out[1], bcast(np.prod(factor, axis=1).astype(np.int32)))  # wraps like int32
    np.testing.assert_array_equal(out[2], bcast(g.min(axis=1)))
    np.testing.assert_array_equal(out[3], bcast(g.max(axis=1)))
    np.testing.assert_array_equal(out[4], bcast(np.bitwise_and.reduce(g, axis=1)))
    np.testing.assert_array_equal(out[5], bcast(np.bitwise_or.reduce(g, axis=1)))
    np.testing.assert_array_equal(out[6], bcast(np.bitwise_xor.reduce(g, axis=1)))
    inclusive = np.cumsum(g, axis=1)
    np.testing.assert_array_equal(out[7], inclusive.ravel())
    np.testing.assert_array_equal(out[8], (inclusive - g).ravel())
    inclusive_product = np.cumprod(factor, axis=1)
    np.testing.assert_array_equal(out[9], inclusive_product.astype(np.int32).ravel())
    np.testing.assert_array_equal(out[10], (inclusive_product // factor).astype(np.int32).ravel())


def test_shuffles_broadcasts_votes():
    n = 2 * SIMD
    x = np.random.default_rng(4).integers(-20, 20, size=n).astype(np.float32)
    x[SIMD:] = np.abs(x[SIMD:]) + 1  # second SIMD group: all positive
    out = np.zeros(10 * n, np.float32)
    run_kernel("runtime_simd_shuffle", 1, n, {0: x, 1: out})
    out = out.reshape(10, 2, SIMD)
    g = lanes(x)
    lane = np.arange(SIMD)
    np.testing.assert_array_equal(out[0], g[:, (lane * 7) % 32])
    np.testing.assert_array_equal(out[1], g[:, lane ^ 5])
    # The MSL specification: the lowest (highest) delta lanes of shuffle_up (down) keep their value.
    np.testing.assert_array_equal(out[2], g[:, np.where(lane >= 3, lane - 3, lane)])
    np.testing.assert_array_equal(out[3], g[:, np.where(lane + 3 < SIMD, lane + 3, lane)])
    np.testing.assert_array_equal(out[4], np.repeat(g[:, 9:10], SIMD, axis=1))
    np.testing.assert_array_equal(out[5], np.repeat(g[:, 0:1], SIMD, axis=1))
    ballot = [(sum(1 << i for i in range(SIMD) if g[s, i] > 0)) for s in range(2)]
    np.testing.assert_array_equal(out[6], np.repeat(np.array(ballot, np.float32)[:, None], SIMD, axis=1))
    np.testing.assert_array_equal(out[7], np.ones((2, SIMD)))
    np.testing.assert_array_equal(out[8], np.zeros((2, SIMD)))
    np.testing.assert_array_equal(out[9], np.repeat((lane == 0)[None, :], 2, axis=0).astype(np.float32))


def test_vector_reductions():
    n = 2 * SIMD
    x = np.random.default_rng(5).integers(-100, 100, size=(n, 4)).astype(np.float32)
    out = np.zeros((5 * n, 4), np.float32)
    run_kernel("runtime_simd_vector", 1, n, {0: x, 1: out})
    out = out.reshape(5, 2, SIMD, 4)
    g = lanes(x)
    # Integer-valued floats: sums are exact in any order.
    np.testing.assert_array_equal(out[0], np.repeat(g.sum(axis=1, keepdims=True), SIMD, axis=1))
    np.testing.assert_array_equal(out[1], np.repeat(g.max(axis=1, keepdims=True), SIMD, axis=1))
    np.testing.assert_array_equal(out[2], np.repeat(g.min(axis=1, keepdims=True), SIMD, axis=1))
    np.testing.assert_array_equal(out[3], np.cumsum(g, axis=1) - g)
    lane = np.arange(SIMD)
    np.testing.assert_array_equal(out[4], g[:, np.where(lane + 1 < SIMD, lane + 1, lane)])


def test_partial_simd_group():
    x = np.arange(80, dtype=np.int32)
    out = np.zeros(80, np.int32)
    run_kernel("runtime_simd_partial", 2, 40, {0: x, 1: out})
    expected = np.concatenate([np.full(32, x[0:32].sum()), np.full(8, x[32:40].sum()),
                               np.full(32, x[40:72].sum()), np.full(8, x[72:80].sum())])
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("kernel,threads,pattern", [
    ("runtime_simd_returned", 32, r"returned while 8 other lanes of its SIMD group 0 wait at simd_sum \(.*runtime_simd\.metal:\d+\)"),
    ("runtime_simd_mismatch", 32, r"different SIMD-group functions: this lane at simd_max \(.*:\d+\), 1 other lanes at simd_sum"),
    ("runtime_barrier_vs_simd", 64, r"32 other threads wait at threadgroup_barrier"),
    ("runtime_deadlock", 32, r"threads diverged and can never continue: 16 of 32 threads wait at threadgroup_barrier "
                             r"\(.*runtime_simd\.metal:\d+\); 16 of 32 lanes of SIMD group 0 wait at simd_sum"),
])
@pytest.mark.cpu_layer_only
def test_divergent_collectives_are_reported(kernel, threads, pattern):
    with pytest.raises(DeviceError, match=pattern):
        run_kernel(kernel, 1, threads, {0: np.zeros(threads, np.int32)})
    # and the device keeps working
    out = np.zeros(40, np.int32)
    run_kernel("runtime_simd_partial", 1, 40, {0: np.ones(40, np.int32), 1: out})
    np.testing.assert_array_equal(out, [32] * 32 + [8] * 8)


def to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, round to nearest even."""
    bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def test_bf16_matvec_one_simdgroup_per_row():
    rows, cols = 67, 256
    rng = np.random.default_rng(6)
    w_bits = to_bf16_bits(rng.standard_normal((rows, cols)))
    w = (w_bits.astype(np.uint32) << 16).view(np.float32)
    x = rng.standard_normal(cols).astype(np.float32)
    y = np.zeros(rows, np.float32)
    import struct

    run_kernel("runtime_matvec_bf16", (rows + 3) // 4, 128, {0: struct.pack("<II", rows, cols), 1: w_bits, 2: x, 3: y})
    # float32 accumulation of 256 products in a different order than float64: relative error
    # bounded by ~256 * 2^-24 of the sum of magnitudes.
    expected = w.astype(np.float64) @ x.astype(np.float64)
    bound = 256 * 2.0**-24 * (np.abs(w) @ np.abs(x))
    assert np.all(np.abs(y - expected) <= bound)
