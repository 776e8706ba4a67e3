"""The MSL-to-C++ translator of the CPU execution layer: rewrites and rejected constructs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TRANSLATOR = Path(__file__).resolve().parents[1] / "metal" / "source" / "cpu" / "msl_translate.py"

KERNEL = """\
#include <metal_stdlib>
using namespace metal;
constant float table[2] = {1.0f, 2.0f};  // a constant device float* in a comment stays
kernel void k(
    constant uint& n [[buffer(0)]],
    device const float4* in [[buffer(1)]],
    device float* out [[buffer(3)]],
    threadgroup half* scratch [[threadgroup(2)]],
    ushort2 tid [[thread_position_in_threadgroup]])
{
    threadgroup float sums[4][8];
    thread float* p = &sums[0][0];
    out[tid.x] = in[0].x + float(1.5h);
}
"""


def translate(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    src = tmp_path / "k.metal"
    src.write_text(source)
    return subprocess.run([sys.executable, str(TRANSLATOR), "translate", str(src), str(tmp_path / "k.cpp"), "--id", "t"],
                          capture_output=True, text=True)


def test_rewrites_keep_lines_and_bind_arguments(tmp_path):
    result = translate(tmp_path, KERNEL)
    assert result.returncode == 0, result.stderr
    out = (tmp_path / "k.cpp").read_text()
    assert f'#line 1 "{tmp_path / "k.metal"}"' in out
    body = out.split("#line 1", 1)[1].split("\n", 1)[1]
    lines = body.splitlines()
    # Every source line stays on its line: line 13 of the .metal file is line 13 after #line 1.
    assert "out[tid.x] = in[0].x + float(half(1.5f));" in lines[12]
    assert "static const float table[2]" in lines[2]
    assert "::msl_rt::device_ptr<const float4> in" in out
    assert "::msl_rt::threadgroup_ptr<half> scratch" in out
    assert "auto& sums = ::msl_rt::threadgroup_variables<msl_threadgroup_k>().v0;" in lines[10]
    assert "struct msl_threadgroup_k { ::msl_rt::tg_array<::msl_rt::tg_array<float, 8>, 4> v0; };" in out
    assert "float* p = &sums[0][0];" in lines[11]
    assert "::msl_rt::bind_constant_reference<uint>(l, 0)" in out
    assert "::msl_rt::bind_threadgroup<::msl_rt::threadgroup_ptr<half>>(l, 2)" in out
    assert "::msl_rt::bind_builtin<ushort2>(l, ::msl_rt::builtin::thread_position_in_threadgroup)" in out
    # buffer mask: indices 0, 1, 3; threadgroup mask: index 2
    assert "UINT64_C(11), UINT64_C(4)" in out


@pytest.mark.parametrize("snippet,line,message", [
    ("kernel void k(device float* a) {}\n", 1, "has no [[buffer(n)]], [[threadgroup(n)]] or built-in attribute"),
    ("\nkernel void k(device float* a [[buffer(0)]], uint q [[quad_lane_id]]) {}\n", 2,
     "unsupported parameter attribute [[quad_lane_id]]"),
    ("threadgroup float x[4];\n", 1, "outside a kernel body"),
    ("texture2d<float> t;\n", 1, "textures and samplers are not supported"),
    ("\n\ntemplate [[host_name(\"a\")]] kernel decltype(f<1>) f<1>;\n", 3, "[[host_name]] are not supported"),
    ("kernel void k(device float& a [[buffer(0)]]) {}\n", 1, "must be `constant T&`"),
    ("kernel void k(device float* a [[buffer(31)]]) {}\n", 1, "indices are 0..30"),
])
def test_rejected_constructs_name_file_and_line(tmp_path, snippet, line, message):
    result = translate(tmp_path, snippet)
    assert result.returncode == 1
    assert result.stderr.startswith(f"{tmp_path / 'k.metal'}:{line}: error: ")
    assert message in result.stderr


def test_registry_rejects_duplicate_kernel_names(tmp_path):
    for name in ("a", "b"):
        src = tmp_path / f"{name}.metal"
        src.write_text("kernel void same(device float* x [[buffer(0)]]) {}\n")
        subprocess.run([sys.executable, str(TRANSLATOR), "translate", str(src), str(tmp_path / f"{name}.cpp"), "--id", name],
                       check=True)
    result = subprocess.run([sys.executable, str(TRANSLATOR), "registry", str(tmp_path / "r.cpp"),
                             str(tmp_path / "a.cpp"), str(tmp_path / "b.cpp")], capture_output=True, text=True)
    assert result.returncode == 1
    assert "kernel same is defined in both" in result.stderr
