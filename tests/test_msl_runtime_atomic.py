"""MSL execution layer: atomics (device memory across threadgroups, threadgroup memory) and
simdgroup_matrix."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from gpt_oss_metal.errors import GptOssError
from gpt_oss_metal.testing.kernels import default_device, run_kernel


def test_device_atomics_across_threadgroups():
    groups, threads = 64, 64
    n = groups * threads
    x = np.random.default_rng(7).integers(0, 1 << 20, size=n).astype(np.uint32)
    counters = np.array([0, 0, 0, 0xFFFFFFFF, 0, 0xFFFFFFFF, 0, 0], np.uint32)
    fsum = np.zeros(1, np.float32)
    previous = np.zeros(n, np.uint32)
    run_kernel("runtime_atomic_device", groups, threads, {0: x, 1: counters, 2: fsum, 4: previous})
    assert counters[0] == n
    # Every thread saw a distinct previous value of the counter: 0..n-1, each once.
    np.testing.assert_array_equal(np.sort(previous), np.arange(n))
    assert counters[1].view(np.int32) == -2 * n
    assert counters[2] == x.max()
    assert counters[3] == x.min()
    bits = np.bitwise_or.reduce(np.uint32(1) << (x % 32))
    assert counters[4] == bits
    assert counters[5] == (0xFFFFFFFF & ~int(bits))
    assert counters[6] == np.bitwise_xor.reduce(x)
    assert fsum[0] == 0.5 * n  # multiples of 0.5 below 2^24: exact


def test_device_atomics_64bit_min_max():
    """atomic_min/max_explicit on atomic_ulong: Apple9-family GPUs (M3+) and the CPU layer only."""
    groups, threads = 64, 64
    n = groups * threads
    x = np.random.default_rng(7).integers(0, 1 << 20, size=n).astype(np.uint32)
    ulongs = np.array([0xFFFFFFFFFFFFFFFF, 0], np.uint64)
    try:
        run_kernel("runtime_atomic_ulong_minmax", groups, threads, {0: x, 1: ulongs})
    except GptOssError as e:
        # The kernel is compiled only under __HAVE_ATOMIC_ULONG_MIN_MAX__, and a pipeline using the
        # instructions fails on M1/M2 (Apple7/Apple8) even where the compiler defines the macro.
        if default_device().info["kind"] == "cpu":
            raise
        pytest.skip(f"64-bit atomic min/max needs an Apple9-family GPU (M3 or later): {e}")
    wide = (x.astype(np.uint64) << np.uint64(32)) | np.arange(n, dtype=np.uint64)
    assert ulongs[0] == wide.min()
    assert ulongs[1] == wide.max()


def test_threadgroup_atomics():
    groups = 9
    x = np.random.default_rng(8).integers(0, 1000, size=groups * 128).astype(np.uint32)
    out = np.zeros(groups * 17, np.uint32)
    run_kernel("runtime_atomic_threadgroup", groups, 128, {0: x, 1: out})
    out = out.reshape(groups, 17)
    for g in range(groups):
        np.testing.assert_array_equal(out[g, :16], np.bincount(x[g * 128:(g + 1) * 128] % 16, minlength=16))
    np.testing.assert_array_equal(out[:, 16], np.full(groups, 3**5))


def test_simdgroup_matmul_f32():
    m, n, k = 16, 24, 32
    rng = np.random.default_rng(9)
    a = rng.integers(-4, 4, size=(m, k)).astype(np.float32)
    b = rng.integers(-4, 4, size=(k, n)).astype(np.float32)
    c = rng.integers(-4, 4, size=(m, n)).astype(np.float32)
    expected = a @ b + c
    run_kernel("runtime_matmul_f32", (n // 8, m // 8), 32, {0: struct.pack("<4I", m, n, k, 0), 1: a, 2: b, 3: c})
    np.testing.assert_array_equal(c, expected)  # small integers: exact


def test_simdgroup_matmul_f16_transpose_and_fill():
    rng = np.random.default_rng(10)
    a = rng.integers(-3, 4, size=(8, 8)).astype(np.float16)
    b = rng.integers(-3, 4, size=(8, 8)).astype(np.float16)
    out = np.zeros(192, np.float32)
    run_kernel("runtime_matmul_f16", 1, 32, {0: a, 1: b, 2: out})
    af, bf = a.astype(np.float32), b.astype(np.float32)
    np.testing.assert_array_equal(out[:64].reshape(8, 8), af.T @ bf)  # |values| <= 72: exact in half
    np.testing.assert_array_equal(out[64:128].reshape(8, 8), af @ bf)
    np.testing.assert_array_equal(out[128:], np.full(64, 2.5, np.float32))
