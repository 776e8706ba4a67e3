"""MSL execution layer: dispatch trace (GPTOSS_TRACE, counters) and parallel execution."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gpt_oss_metal import _metal
from gpt_oss_metal.testing.kernels import run_kernel

SCRIPT = textwrap.dedent(
    """
    import struct, sys
    import numpy as np
    from gpt_oss_metal.testing.kernels import run_kernel, default_device
    rng = np.random.default_rng(11)
    x = rng.standard_normal(300 * 256).astype(np.float32)
    sums = np.zeros(300, np.float32)
    run_kernel("runtime_tg_reduce", 300, 256, {0: x, 1: sums})
    rows, cols = 1000, 128
    w = rng.integers(0, 1 << 16, size=(rows, cols), dtype=np.uint16) & 0xBFFF  # finite bf16 bit patterns
    v = rng.standard_normal(cols).astype(np.float32)
    y = np.zeros(rows, np.float32)
    run_kernel("runtime_matvec_bf16", rows // 4, 128, {0: struct.pack("<II", rows, cols), 1: w, 2: v, 3: y})
    np.save(sys.argv[1], np.concatenate([sums, y]))
    print(default_device().info["num_compute_units"])
    """
)


def run_script(tmp_path, name: str, env_extra: dict[str, str]) -> tuple[np.ndarray, str]:
    env = dict(os.environ, **env_extra)
    out = tmp_path / f"{name}.npy"
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return np.load(out), result.stdout.strip()


def test_parallel_execution_matches_single_thread(tmp_path):
    serial, serial_units = run_script(tmp_path, "serial", {"GPTOSS_CPU_THREADS": "1"})
    parallel, parallel_units = run_script(tmp_path, "parallel", {"GPTOSS_CPU_THREADS": "4"})
    assert (serial_units, parallel_units) == ("1", "4")
    # Threadgroups are independent: the worker that runs them must not change a single bit.
    np.testing.assert_array_equal(serial.view(np.uint32), parallel.view(np.uint32))


def test_trace_file_lines(tmp_path):
    trace = tmp_path / "trace.jsonl"
    run_script(tmp_path, "traced", {"GPTOSS_TRACE": str(trace)})
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [line["kernel"] for line in lines] == ["runtime_tg_reduce", "runtime_matvec_bf16"]
    assert lines[0]["grid"] == [300, 1, 1] and lines[0]["threadgroup"] == [256, 1, 1]
    assert lines[0]["buffer_bytes"] == 300 * 256 * 4 + 300 * 4
    assert lines[1]["args"][0] == {"bytes": 0, "size": 8}
    assert lines[1]["args"][1] == {"buffer": 1, "offset": 0, "size": 1000 * 128 * 2}


def test_trace_to_stderr(tmp_path):
    env = dict(os.environ, GPTOSS_TRACE="-")
    code = "import numpy as np; from gpt_oss_metal.testing.kernels import run_kernel; " \
           "run_kernel('runtime_tg_helper', 1, 32, {0: np.zeros(32, np.uint32)})"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["kernel"] == "runtime_tg_helper" and line["buffer_bytes"] == 128


def test_trace_counters():
    device = _metal.Device("cpu")
    device.reset_trace_counters()
    assert device.trace_counters() == {"dispatches": 0, "command_buffers": 0, "bound_buffer_bytes": 0}
    run_kernel("runtime_tg_helper", 1, 32, {0: np.zeros(32, np.uint32)}, device=device)
    run_kernel("runtime_scale", 1, 16, {0: struct.pack("<If", 16, 1.0), 1: np.zeros(16, np.float32),
                                        2: np.zeros(16, np.float32)}, device=device)
    # setBytes arguments are not buffers: only the two 64-byte arrays and the 128-byte one count.
    assert device.trace_counters() == {"dispatches": 2, "command_buffers": 2, "bound_buffer_bytes": 128 + 64 + 64}


@pytest.mark.parametrize("value,expected", [
    ("cpu", "cpu"),
    ("bogus", "InvalidArgumentError: GPTOSS_DEVICE=bogus: expected \"cpu\" or \"metal\""),
])
def test_gptoss_device_environment_variable(value, expected):
    code = textwrap.dedent(
        """
        from gpt_oss_metal import _metal, errors
        try:
            print(_metal.Device().info["kind"])
        except errors.GptOssError as e:
            print(f"{type(e).__name__}: {e}")
        """
    )
    env = dict(os.environ, GPTOSS_DEVICE=value)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == expected, result.stderr
