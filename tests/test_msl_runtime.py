"""MSL execution layer runtime: dispatch, built-ins, pointers, threadgroup memory, barriers, faults.

Every kernel lives in tests/msl/runtime_*.metal and runs through run_kernel on the default device;
the expected values are computed with NumPy from the kernel's documented behaviour.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from gpt_oss_metal.errors import DeviceError, InvalidArgumentError
from gpt_oss_metal.testing.kernels import default_device, run_kernel


def test_scale_with_constant_struct_and_bounds_check_in_kernel():
    n = 1000
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    out = np.zeros(n, np.float32)
    run_kernel("runtime_scale", (n + 63) // 64, 64, {0: struct.pack("<If", n, 3.0), 1: x, 2: out})
    # x * 3 + i in float32: the kernel computes the same two float32 operations (no fma on this path
    # is guaranteed, so allow one rounding of difference).
    np.testing.assert_allclose(out, x * np.float32(3.0) + np.arange(n, dtype=np.float32), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("groups,threads", [((3, 2, 2), (4, 2, 3)), ((5, 1, 1), (40, 1, 1)), ((1, 1, 1), (1, 1, 1))])
def test_builtins_uint3(groups, threads):
    gx, gy, gz = groups
    tx, ty, tz = threads
    total = gx * gy * gz * tx * ty * tz
    out = np.full(total * 16, 0xFFFFFFFF, np.uint32)
    run_kernel("runtime_builtins", groups, threads, {0: out})
    out = out.reshape(gz * tz, gy * ty, gx * tx, 16)
    z, y, x = np.meshgrid(np.arange(gz * tz), np.arange(gy * ty), np.arange(gx * tx), indexing="ij")
    tindex = ((z % tz) * ty + (y % ty)) * tx + (x % tx)
    n_threads = tx * ty * tz
    expected = [x, y, z, x % tx, y % ty, z % tz, x // tx, y // ty, z // tz,
                np.full_like(x, tx * 10000 + ty * 100 + tz), np.full_like(x, gx * 10000 + gy * 100 + gz),
                tindex, tindex // 32, tindex % 32, np.full_like(x, (n_threads + 31) // 32), np.full_like(x, 32)]
    for k, e in enumerate(expected):
        np.testing.assert_array_equal(out[..., k], e, err_msg=f"built-in value {k}")


def test_builtins_ushort_forms():
    out = np.zeros(6 * 64 * 4, np.uint16)  # grid: 64 x 6 threads
    run_kernel("runtime_builtins_short", (2, 3), (4 * 8, 2), {0: out})
    out = out.reshape(6, 64, 4)
    y, x = np.meshgrid(np.arange(6), np.arange(64), indexing="ij")
    np.testing.assert_array_equal(out[..., 0], x)
    np.testing.assert_array_equal(out[..., 1], y)
    np.testing.assert_array_equal(out[..., 2], x % 32)  # thread_position_in_threadgroup.x
    # thread_index_in_threadgroup = (y % 2) * 32 + x % 32, so the SIMD lane is x % 32.
    np.testing.assert_array_equal(out[..., 3], ((y % 2) * 32 + x % 32) % 32)


def test_builtins_ushort_scalar_forms():
    out = np.zeros(3 * 40 * 4, np.uint16)
    run_kernel("runtime_builtins_short_scalar", 3, 40, {0: out})
    out = out.reshape(3 * 40, 4)
    gid = np.arange(3 * 40)
    np.testing.assert_array_equal(out[:, 0], gid % 40)   # thread_position_in_threadgroup
    np.testing.assert_array_equal(out[:, 1], gid // 40)  # threadgroup_position_in_grid
    np.testing.assert_array_equal(out[:, 2], np.full(3 * 40, 40))
    np.testing.assert_array_equal(out[:, 3], gid % 40)   # thread_index_in_threadgroup


def test_pointers_casts_helpers_constants_half_literals():
    n = 16
    rng = np.random.default_rng(1)
    x = rng.integers(-8, 8, size=(n, 4)).astype(np.float32)
    w = np.array([1.0, -2.0, 3.0, 0.25], np.float32)
    out = np.zeros(n * 4, np.float32)
    run_kernel("runtime_pointers", 1, n, {0: x, 1: out, 2: w.tobytes()})
    out = out.reshape(n, 4)
    program_weights = np.array([0.5, 1.0, 2.0, 4.0], np.float32)
    # Small integers: every product and sum is exact in float32.
    np.testing.assert_array_equal(out[:, 0], x @ w)
    np.testing.assert_array_equal(out[:, 1], x.sum(axis=1))
    np.testing.assert_array_equal(out[:, 2], x[:, 3] * program_weights[np.arange(n) % 4])
    np.testing.assert_array_equal(out[:, 3], np.full(n, 3.0, np.float32))


@pytest.mark.cpu_layer_only
def test_out_of_bounds_read_names_kernel_buffer_offset_and_thread():
    n = 100
    x = np.zeros(n, np.float32)
    out = np.zeros(n + 64, np.float32)
    with pytest.raises(DeviceError) as info:
        run_kernel("runtime_scale", 2, 64, {0: struct.pack("<If", 128, 1.0), 1: x, 2: out})
    message = str(info.value)
    assert "runtime_scale" in message
    assert "[[buffer(1)]]" in message
    assert "byte offset 400" in message
    assert "thread_position_in_grid (100, 0, 0)" in message


@pytest.mark.cpu_layer_only
def test_out_of_bounds_write_and_device_usable_afterwards():
    out = np.zeros(64, np.float32)
    with pytest.raises(DeviceError, match=r"runtime_oob_write.*\[\[buffer\(0\)\]\].*byte offset 256.*\(63, 0, 0\)"):
        run_kernel("runtime_oob_write", 2, 32, {0: out})
    # The process and the device stay usable after a fault.
    x = np.arange(64, dtype=np.float32)
    res = np.zeros(64, np.float32)
    run_kernel("runtime_scale", 1, 64, {0: struct.pack("<If", 64, 1.0), 1: x, 2: res})
    np.testing.assert_array_equal(res, 2 * x)


def test_unknown_kernel_and_bad_arguments():
    with pytest.raises(InvalidArgumentError, match="no kernel named 'runtime_does_not_exist'"):
        run_kernel("runtime_does_not_exist", 1, 1, {})
    with pytest.raises(InvalidArgumentError, match=r"buffer\(2\)\]\] argument is not bound"):
        run_kernel("runtime_scale", 1, 1, {0: struct.pack("<If", 1, 1.0), 1: np.zeros(1, np.float32)})
    with pytest.raises(InvalidArgumentError, match="exceed the kernel's maximum"):
        run_kernel("runtime_oob_write", 1, (32, 33), {0: np.zeros(4096, np.float32)})
    with pytest.raises(InvalidArgumentError, match="1..4096 bytes"):
        run_kernel("runtime_oob_write", 1, 1, {0: bytes(5000)})
    with pytest.raises(InvalidArgumentError, match="C-contiguous"):
        run_kernel("runtime_oob_write", 1, 1, {0: np.zeros((4, 4), np.float32).T})


def test_threadgroup_reduce():
    groups = 37
    x = np.random.default_rng(2).integers(-1000, 1000, size=groups * 256).astype(np.float32)
    out = np.zeros(groups, np.float32)
    run_kernel("runtime_tg_reduce", groups, 256, {0: x, 1: out})
    # Integer-valued inputs with sums < 2^24: exact in float32 whatever the order.
    np.testing.assert_array_equal(out, x.reshape(groups, 256).sum(axis=1))


def test_threadgroup_parameter_and_2d_array():
    groups = 5
    x = np.arange(groups * 64, dtype=np.float32)
    out = np.zeros_like(x)
    run_kernel("runtime_tg_reverse", groups, 64, {0: x, 1: out}, threadgroup_memory={0: 256})
    expected = x.reshape(groups, 64)[:, ::-1] * 3
    np.testing.assert_array_equal(out.reshape(groups, 64), expected)


def test_threadgroup_array_passed_to_helper():
    out = np.zeros(32, np.uint32)
    run_kernel("runtime_tg_helper", 1, 32, {0: out})
    np.testing.assert_array_equal(out, (31 - np.arange(32)) * 3)


@pytest.mark.cpu_layer_only
def test_threadgroup_array_out_of_bounds():
    with pytest.raises(DeviceError, match=r"runtime_tg_array_oob.*threadgroup array access out of bounds.*"
                                          r"byte offset 128.*holds 128 bytes.*\(31, 0, 0\)"):
        run_kernel("runtime_tg_array_oob", 1, 32, {0: np.zeros(32, np.float32)})


@pytest.mark.cpu_layer_only
def test_threadgroup_parameter_out_of_bounds():
    with pytest.raises(DeviceError, match=r"threadgroup memory \[\[threadgroup\(0\)\]\] access out of bounds.*byte offset 64"):
        run_kernel("runtime_tg_param_oob", 1, 32, {}, threadgroup_memory={0: 64})
    with pytest.raises(InvalidArgumentError, match=r"threadgroup\(0\)\]\] argument is not bound"):
        run_kernel("runtime_tg_param_oob", 1, 32, {})


@pytest.mark.cpu_layer_only
def test_barrier_skipped_by_returned_threads_is_reported_with_line():
    with pytest.raises(DeviceError) as info:
        run_kernel("runtime_barrier_skipped", 1, 32, {0: np.zeros(32, np.float32)})
    message = str(info.value)
    assert "runtime_barrier_skipped" in message
    assert "threadgroup_barrier (" in message and "runtime_threadgroup.metal:" in message
    line = message.split("runtime_threadgroup.metal:")[-1].split(")")[0]
    source = open(__file__.replace("test_msl_runtime.py", "msl/runtime_threadgroup.metal")).read().splitlines()
    assert "threadgroup_barrier" in source[int(line) - 1]


@pytest.mark.cpu_layer_only
def test_threads_at_different_barriers():
    with pytest.raises(DeviceError, match="threads wait at different barriers"):
        run_kernel("runtime_barrier_mismatch", 1, 32, {0: np.zeros(32, np.float32)})


def test_device_info():
    info = default_device().info
    assert info["simd_width"] == 32
    assert info["max_threads_per_threadgroup"] == 1024
    assert info["max_threadgroup_memory"] == 32768
    assert info["kind"] in ("cpu", "metal")


def test_production_source_patterns():
    rows, stride_floats = 5, 80
    matrix = np.random.default_rng(12).integers(-9, 9, size=(rows, stride_floats)).astype(np.float32)
    out = np.zeros(rows, np.float32)
    run_kernel("runtime_styles_rowsum", (rows, 1), 32, {0: struct.pack("<II", stride_floats * 4, rows), 1: matrix, 2: out})
    np.testing.assert_array_equal(out, matrix[:, :64].sum(axis=1))
    # [[max_total_threads_per_threadgroup(32)]] is the kernel's limit.
    with pytest.raises(InvalidArgumentError, match="maximum of 32"):
        run_kernel("runtime_styles_rowsum", (rows, 1), 64, {0: struct.pack("<II", 320, rows), 1: matrix, 2: out})


@pytest.mark.cpu_layer_only
def test_pointer_formed_outside_every_buffer_is_a_fault():
    rows = 5
    matrix = np.zeros((rows, 64), np.float32)
    out = np.zeros(rows, np.float32)
    # A row stride past the end of the buffer forms a pointer from an integer outside it.
    with pytest.raises(DeviceError, match="pointer was formed from an address outside every bound buffer"):
        run_kernel("runtime_styles_rowsum", (rows, 1), 32, {0: struct.pack("<II", 1 << 28, rows), 1: matrix, 2: out})


RACE_SCRIPT = """
import struct, sys
import numpy as np
from gpt_oss_metal.errors import DeviceError
from gpt_oss_metal.testing.kernels import run_kernel
out = np.zeros(64, np.float32)
run_kernel("runtime_tg_race", 1, 64, {0: struct.pack("<I", 1), 1: out})
assert np.array_equal(out, (np.arange(64, dtype=np.float32) + 32) % 64), out
try:
    run_kernel("runtime_tg_race", 1, 64, {0: struct.pack("<I", 0), 1: out})
    print("no race reported")
except DeviceError as e:
    print(e)
try:
    run_kernel("runtime_tg_race_write_after_read", 1, 64, {0: out})
    print("no race reported")
except DeviceError as e:
    print(e)
"""


@pytest.mark.cpu_layer_only
@pytest.mark.parametrize("race_check", ["1", "0"])
def test_threadgroup_race_detection(race_check):
    import os
    import subprocess
    import sys

    env = dict(os.environ, GPTOSS_CPU_RACE_CHECK=race_check)
    result = subprocess.run([sys.executable, "-c", RACE_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    if race_check == "1":
        assert "runtime_tg_race" in result.stdout
        assert "data race on threadgroup memory: this thread accesses threadgroup variables byte offset 0, " \
               "written since the last barrier by thread_position_in_threadgroup (0, 0, 0) of SIMD group 0" in result.stdout
        assert "thread_position_in_threadgroup (32, 0, 0)" in result.stdout
        assert "this thread wrote threadgroup variables byte offset 128, which thread_position_in_threadgroup " \
               "(0, 0, 0) of SIMD group 0 accessed since the last barrier" in result.stdout
    else:
        assert result.stdout.split("\n") == ["no race reported"] * 2 + [""]  # opt-in: off by default


@pytest.mark.cpu_layer_only
def test_constant_struct_larger_than_the_bound_bytes():
    with pytest.raises(DeviceError, match=r"\[\[buffer\(0\)\]\] is a constant reference to 8 bytes but only 4 bytes are bound"):
        run_kernel("runtime_scale", 1, 1, {0: struct.pack("<I", 1), 1: np.zeros(1, np.float32), 2: np.zeros(1, np.float32)})
