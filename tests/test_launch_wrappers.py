"""The C kernel launch wrappers' argument checks (metal/source/launch-*.c).

The checks run in C (metal/source/launch-selftest.c): every public wrapper is called with bad
arguments (NULL buffers, misaligned offsets, ranges past a buffer's end, the wrong kernel, zero or
oversized dimensions, head-ratio and ring-size violations), each expected to return
invalid_argument with a given message fragment, and with good arguments that must encode, the cheap
ones also run and compared with exact or tightly bounded results. Python only reads the verdict.
"""

from __future__ import annotations

import re

from gpt_oss_metal import _metal

# Every public wrapper the self-test must exercise (a name prefix of its report lines).
WRAPPERS = (
    "embeddings", "rmsnorm", "dense_projection", "unembedding", "qkv", "attention", "router",
    "moe_expert_layout", "moe_mlp1_decode", "moe_mlp2_decode", "moe_scatter", "moe_mlp1_prefill",
    "moe_mlp2_prefill", "moe_gather", "sampler_encode",
)


def run_selftest() -> tuple[int, str]:
    assert hasattr(_metal, "_launch_selftest"), (
        "_metal._launch_selftest is not registered: python/src/module.cpp must call "
        "gptoss_python::register_launch_selftest(m)")
    return _metal._launch_selftest()


def test_every_wrapper_check_holds() -> None:
    failures, report = run_selftest()
    assert failures == 0, f"{failures} launch-wrapper expectations failed:\n{report}"


def test_report_covers_every_wrapper_with_bad_and_good_calls() -> None:
    failures, report = run_selftest()
    lines = report.splitlines()
    summary = re.fullmatch(r"(\d+) checks, (\d+) failed", lines[-1])
    assert summary is not None, f"no summary line:\n{report}"
    assert int(summary.group(2)) == failures
    # ~140 expectations today; a much smaller count means whole groups silently stopped running.
    assert int(summary.group(1)) >= 120, report
    for wrapper in WRAPPERS:
        mine = [line for line in lines if line[5:].startswith(wrapper + ":") or line[5:].startswith(wrapper + " ")]
        assert any("invalid_argument" in line for line in mine), f"no rejected call of {wrapper}:\n{report}"
        assert any("status success" in line for line in mine), f"no accepted call of {wrapper}:\n{report}"
