"""Device limits at load and launch, tested on the CPU execution layer with its reported limits set low.

The CPU device reads its testing knobs (docs/msl-cpu.md: GPTOSS_CPU_MAX_BUFFER_LENGTH,
GPTOSS_CPU_RECOMMENDED_WORKING_SET, GPTOSS_CPU_PHYSICAL_MEMORY,
GPTOSS_CPU_MAX_THREADS_PER_THREADGROUP, GPTOSS_CPU_SIMD_WIDTH) each time a device is created, and
every Model creates its own device, so setting the environment before Model(...) is enough.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from gpt_oss_metal import (
    Context,
    DeviceMemoryWarning,
    InsufficientResourcesError,
    InvalidArgumentError,
    Model,
    UnsupportedSystemError,
)

PAGE = 16384
PROMPT = list(range(100, 120))  # 20 tokens: the prefill kernels (GEMM, grouped MoE, batched attention)
KNOBS = (
    "GPTOSS_CPU_MAX_BUFFER_LENGTH",
    "GPTOSS_CPU_RECOMMENDED_WORKING_SET",
    "GPTOSS_CPU_PHYSICAL_MEMORY",
    "GPTOSS_CPU_MAX_THREADS_PER_THREADGROUP",
    "GPTOSS_CPU_SIMD_WIDTH",
)


@pytest.fixture(autouse=True)
def cpu_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPTOSS_DEVICE", "cpu")
    for name in KNOBS:
        monkeypatch.delenv(name, raising=False)


def _regions(model: Model) -> tuple[int, int, int]:
    """(dense region, one MoE section, all weights) in bytes, the regions rounded up to 16 KiB."""
    layout, header = model.layout, model.header
    dense = layout["moe_offsets"][0] - layout["weights_offset"]
    moe = header["num_experts"] * layout["expert_size"]
    weights = layout["file_size"] - layout["weights_offset"]
    return -(-dense // PAGE) * PAGE, -(-moe // PAGE) * PAGE, weights


def _run(model: Model) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Logits after a prefill, after decoding 3 tokens one at a time, and 4 sampled tokens."""
    ctx = Context(model, context_length=64, max_batch_tokens=32)
    ctx.append(PROMPT)
    ctx.process()
    prefill = ctx.logits.copy()
    ctx.append([7, 8, 9])
    ctx.process()
    ctx2 = Context(model, context_length=64, max_batch_tokens=1)
    ctx2.append(PROMPT[:6])
    ctx2.process()
    decode = ctx2.logits.copy()
    sampled = ctx.sample(max_output_tokens=4, temperature=0.8, top_p=0.9, seed=5)
    return prefill, decode, list(sampled)


@pytest.fixture(scope="module")
def reference(tiny_model_bin: Path) -> tuple[np.ndarray, np.ndarray, list[int]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GPTOSS_DEVICE", "cpu")
        for name in KNOBS:
            mp.delenv(name, raising=False)
        with Model(tiny_model_bin) as model:
            return _run(model)


def _assert_same(run: tuple[np.ndarray, np.ndarray, list[int]], reference: tuple[np.ndarray, np.ndarray, list[int]]) -> None:
    np.testing.assert_array_equal(run[0], reference[0])
    np.testing.assert_array_equal(run[1], reference[1])
    assert run[2] == reference[2]


def test_weights_split_into_buffers_within_max_buffer_length(
    tiny_model_bin: Path, reference, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with Model(tiny_model_bin) as model:
        dense, moe, _ = _regions(model)
    limit = max(dense, moe)  # exactly the largest region: every region is its own buffer
    monkeypatch.setenv("GPTOSS_CPU_MAX_BUFFER_LENGTH", str(limit))
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("GPTOSS_TRACE", str(trace))
    with Model(tiny_model_bin) as model:
        assert model.load_warning == ""
        _assert_same(_run(model), reference)
    # No bound buffer is larger than the limit; the MoE kernels see only their block's section.
    moe_sizes = set()
    for line in trace.read_text().splitlines():
        record = json.loads(line)
        for arg in record["args"]:
            if "buffer" in arg:
                assert arg["size"] <= limit
        if record["kernel"].startswith("gptoss_moe_mlp"):
            moe_sizes.update(arg["size"] for arg in record["args"] if arg.get("buffer") in (3, 4, 5) and arg["size"] >= moe - PAGE)
    assert moe_sizes and max(moe_sizes) <= moe


def test_dense_region_above_max_buffer_length(tiny_model_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Model(tiny_model_bin) as model:
        dense, moe, _ = _regions(model)
    assert moe < dense
    monkeypatch.setenv("GPTOSS_CPU_MAX_BUFFER_LENGTH", str(dense - PAGE))
    with pytest.raises(InsufficientResourcesError) as info:
        Model(tiny_model_bin)
    message = str(info.value)
    assert "dense weights region" in message and f"{dense} bytes" in message
    assert f"maximum buffer length of" in message and f"({dense - PAGE} bytes)" in message
    assert "MoE section" not in message


def test_moe_section_above_max_buffer_length(tiny_model_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Model(tiny_model_bin) as model:
        dense, moe, _ = _regions(model)
        blocks = model.header["num_blocks"]
    monkeypatch.setenv("GPTOSS_CPU_MAX_BUFFER_LENGTH", str(moe - 1))
    with pytest.raises(InsufficientResourcesError) as info:
        Model(tiny_model_bin)
    message = str(info.value)
    assert f"the MoE section of each block (0..{blocks - 1}) is" in message and f"({moe} bytes)" in message
    assert f"({moe - 1} bytes)" in message and str(tiny_model_bin) in message


def test_weights_above_recommended_working_set_warn_and_run(
    tiny_model_bin: Path, reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Model(tiny_model_bin) as model:
        _, _, weights = _regions(model)
    monkeypatch.setenv("GPTOSS_CPU_RECOMMENDED_WORKING_SET", "64M")
    with pytest.warns(DeviceMemoryWarning) as record:
        model = Model(tiny_model_bin)
    message = str(record[0].message)
    assert f"{weights / 2**30:.2f} GiB" in message and "0.06 GiB" in message
    assert "recommended working set of CPU execution layer" in message
    assert model.load_warning == message
    with model:
        _assert_same(_run(model), reference)


def test_no_warning_within_the_working_set(tiny_model_bin: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeviceMemoryWarning)
        with Model(tiny_model_bin) as model:
            assert model.load_warning == ""


def test_weights_above_physical_memory_are_refused(tiny_model_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Model(tiny_model_bin) as model:
        _, _, weights = _regions(model)
    # The margin is 2 GiB: weights + 2 GiB must fit.
    monkeypatch.setenv("GPTOSS_CPU_PHYSICAL_MEMORY", str(weights + 2 * 2**30 - 1))
    with pytest.raises(InsufficientResourcesError, match=r"exceed the physical memory of this machine \(2\.\d\d GiB") as info:
        Model(tiny_model_bin)
    assert f"weights ({weights / 2**30:.2f} GiB)" in str(info.value)
    monkeypatch.setenv("GPTOSS_CPU_PHYSICAL_MEMORY", str(weights + 2 * 2**30))
    Model(tiny_model_bin).close()


@pytest.mark.parametrize("cap", ["1023", "256"])
def test_capped_threads_per_threadgroup_give_the_same_results(
    tiny_model_bin: Path, reference, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cap: str
) -> None:
    monkeypatch.setenv("GPTOSS_CPU_MAX_THREADS_PER_THREADGROUP", cap)
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("GPTOSS_TRACE", str(trace))
    with Model(tiny_model_bin) as model:
        _assert_same(_run(model), reference)
    sizes = {}
    for line in trace.read_text().splitlines():
        record = json.loads(line)
        threads = record["threadgroup"][0] * record["threadgroup"][1] * record["threadgroup"][2]
        assert threads <= int(cap) and threads % 32 == 0, record
        sizes[record["kernel"]] = threads
    # The adaptable kernels took the largest multiple of 32 allowed.
    assert sizes["gptoss_moe_scatter"] == int(cap) // 32 * 32
    assert sizes["gptoss_sampling_prepare"] == min(256, int(cap) // 32 * 32)


@pytest.mark.parametrize("cap", ["128", "64"])
def test_kernels_needing_more_threads_fail_clearly(tiny_model_bin: Path, monkeypatch: pytest.MonkeyPatch, cap: str) -> None:
    monkeypatch.setenv("GPTOSS_CPU_MAX_THREADS_PER_THREADGROUP", cap)
    with Model(tiny_model_bin) as model:
        ctx = Context(model, context_length=64, max_batch_tokens=32)
        ctx.append(PROMPT)
        with pytest.raises(UnsupportedSystemError, match=rf"kernel gptoss_\w+ needs \d+ threads per threadgroup .*at most {cap}"):
            ctx.process()


def test_simd_width_other_than_32_fails_clearly(tiny_model_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPTOSS_CPU_SIMD_WIDTH", "16")
    with Model(tiny_model_bin) as model:
        ctx = Context(model, context_length=64)
        ctx.append(PROMPT)
        with pytest.raises(UnsupportedSystemError, match=r"kernel gptoss_\w+ runs with 16-lane SIMD groups"):
            ctx.process()


def test_kv_cache_above_max_buffer_length(tiny_model_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Model(tiny_model_bin) as model:
        dense, moe, _ = _regions(model)
        max_context = model.max_context_length
    monkeypatch.setenv("GPTOSS_CPU_MAX_BUFFER_LENGTH", str(max(dense, moe)))
    with Model(tiny_model_bin) as model:
        # fp32 KV of the tiny model at its full 131072 tokens: 2 full-attention blocks x K,V x
        # 1 KV head x 64 x 4 bytes = 1 KiB a token, 128 MiB in all: just above the dense region.
        assert 2 * 2 * 64 * 4 * max_context > max(dense, moe)
        with pytest.raises(InsufficientResourcesError) as info:
            Context(model, context_length=max_context, fp32_kv=True)
        message = str(info.value)
        assert f"KV cache buffer of a context of {max_context} tokens" in message and "fp32 KV cache" in message
        assert "use a shorter context_length or the fp16 KV cache" in message
        ctx = Context(model, context_length=max_context)  # fp16: half the size, fits
        with pytest.raises(InsufficientResourcesError, match="keeps its fp16 KV cache"):
            ctx._native.set_fp32_kv(True)
        ctx.append(PROMPT)
        ctx.process()  # still usable
        ctx.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GPTOSS_CPU_MAX_BUFFER_LENGTH", "lots"),
        ("GPTOSS_CPU_MAX_BUFFER_LENGTH", "0"),
        ("GPTOSS_CPU_PHYSICAL_MEMORY", "16GB"),
        ("GPTOSS_CPU_RECOMMENDED_WORKING_SET", "-5"),
        ("GPTOSS_CPU_MAX_THREADS_PER_THREADGROUP", "2048"),
        ("GPTOSS_CPU_SIMD_WIDTH", ""),
    ],
)
def test_bad_knob_values_fail_device_creation(
    tiny_model_bin: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidArgumentError, match=rf'{name}="{value}": expected an integer'):
        Model(tiny_model_bin)


def test_knob_suffixes_and_device_info(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpt_oss_metal import _metal

    monkeypatch.setenv("GPTOSS_CPU_MAX_BUFFER_LENGTH", "3G")
    monkeypatch.setenv("GPTOSS_CPU_PHYSICAL_MEMORY", "8g")
    monkeypatch.setenv("GPTOSS_CPU_RECOMMENDED_WORKING_SET", "512M")
    monkeypatch.setenv("GPTOSS_CPU_MAX_THREADS_PER_THREADGROUP", "96")
    info = _metal.Device("cpu").info
    assert info["max_buffer_length"] == 3 * 2**30
    assert info["physical_memory"] == 8 * 2**30
    assert info["recommended_working_set"] == 512 * 2**20
    assert info["max_threads_per_threadgroup"] == 96


def test_buffer_creation_above_max_buffer_length(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpt_oss_metal import _metal

    monkeypatch.setenv("GPTOSS_CPU_MAX_BUFFER_LENGTH", "4K")
    device = _metal.Device("cpu")
    with pytest.raises(InsufficientResourcesError, match=r"4097 bytes .* maximum buffer length of 4096 bytes"):
        device.run("gptoss_moe_gather", [1, 1, 1], [32, 1, 1], {1: np.zeros(4097, dtype=np.uint8)})
