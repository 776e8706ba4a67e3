"""The Metal rules msl_translate.py enforces, so that a kernel the Metal compiler (-std=metal3.1, an
Apple7-or-later GPU) would reject also fails on Linux, at translate time, with `file:LINE: error:`.

Each rule: small bad kernels with the expected message and line, and a good kernel that passes.
docs/msl-cpu.md ("Metal rules the translator enforces") gives the specification section of each.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRANSLATOR = ROOT / "metal" / "source" / "cpu" / "msl_translate.py"
KERNEL_FILES = sorted((ROOT / "metal" / "source" / "kernels").glob("*.metal")) + sorted((ROOT / "tests" / "msl").glob("*.metal"))

HEAD = "#include <metal_stdlib>\nusing namespace metal;\n"


def translate(tmp_path: Path, source: str, *extra: str) -> subprocess.CompletedProcess[str]:
    src = tmp_path / "k.metal"
    src.write_text(source)
    return subprocess.run([sys.executable, str(TRANSLATOR), "translate", str(src), str(tmp_path / "k.cpp"), "--id", "t", *extra],
                          capture_output=True, text=True)


def assert_error(tmp_path: Path, source: str, line: int, message: str) -> None:
    result = translate(tmp_path, source)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"{tmp_path / 'k.metal'}:{line}: error: "), result.stderr
    assert message in result.stderr, result.stderr


def assert_ok(tmp_path: Path, source: str) -> str:
    result = translate(tmp_path, source)
    assert result.returncode == 0, result.stderr
    return (tmp_path / "k.cpp").read_text()


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_kernel_file_follows_the_rules(tmp_path, path):
    result = subprocess.run([sys.executable, str(TRANSLATOR), "translate", str(path), str(tmp_path / "out.cpp"), "--id", "t"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---- Position attributes (MSL spec 5.2.3.6, Table 5.8) ----

def kernel_with(*params: str) -> str:
    lines = ",\n".join(["    device uint* out [[buffer(0)]]", *(f"    {p}" for p in params)])
    return HEAD + f"kernel void k(\n{lines})\n{{\n}}\n"


@pytest.mark.parametrize("params,line,message", [
    # line 3 is `kernel void k(`, 4 the buffer, parameters from line 5
    (["int gid [[thread_position_in_grid]]"], 5,
     "[[thread_position_in_grid]] parameter 'gid' has type 'int'; Metal allows ushort, ushort2, ushort3, uint, uint2, uint3"),
    (["uint4 gid [[thread_position_in_grid]]"], 5, "Table 5.8"),
    (["ulong gid [[thread_position_in_grid]]"], 5, "has type 'ulong'"),
    (["uint2 lane [[thread_index_in_simdgroup]]"], 5,
     "[[thread_index_in_simdgroup]] parameter 'lane' has type 'uint2'; Metal allows ushort, uint"),
    (["float w [[threads_per_simdgroup]]"], 5, "has type 'float'"),
    # runtime_basic.metal's old runtime_builtins_short: ushort2 and ushort position attributes
    (["ushort2 gid [[thread_position_in_grid]]", "ushort tid [[thread_position_in_threadgroup]]"], 6,
     "position attributes mix ushort2 ('gid' [[thread_position_in_grid]]) and ushort ('tid' "
     "[[thread_position_in_threadgroup]]); Metal requires all of a kernel's position attributes to be scalars, "
     "or vectors with the same number of components"),
    (["uint3 group [[threadgroup_position_in_grid]]", "uint lane [[thread_index_in_simdgroup]]",
      "uint2 tid [[thread_position_in_threadgroup]]"], 7, "mix uint3 ('group'"),
    (["uint2 gid [[thread_position_in_grid]]", "ushort2 size [[threads_per_grid]]"], 6,
     "[[thread_position_in_grid]] 'gid' is uint2 but [[threads_per_grid]] 'size' is ushort2; Metal requires their "
     "types to match"),
    (["ushort tid [[thread_position_in_threadgroup]]", "uint n [[threads_per_threadgroup]]"], 6,
     "[[thread_position_in_threadgroup]] 'tid' is ushort but [[threads_per_threadgroup]] 'n' is uint"),
    (["uint3 tid [[thread_position_in_threadgroup]]", "ushort index [[thread_index_in_threadgroup]]"], 6,
     "[[thread_index_in_threadgroup]] 'index' must be uint, not ushort"),
])
def test_position_attribute_types(tmp_path, params, line, message):
    assert_error(tmp_path, kernel_with(*params), line, message)


def test_position_attributes_that_metal_accepts(tmp_path):
    assert_ok(tmp_path, kernel_with(
        "uint3 gid [[thread_position_in_grid]]", "ushort3 tid [[thread_position_in_threadgroup]]",
        "uint3 group [[threadgroup_position_in_grid]]", "ushort3 size [[threads_per_threadgroup]]",
        "uint3 groups [[threadgroups_per_grid]]", "uint3 grid [[threads_per_grid]]",
        "ushort index [[thread_index_in_threadgroup]]", "ushort lane [[thread_index_in_simdgroup]]",
        "uint sg [[simdgroup_index_in_threadgroup]]", "const uint width [[thread_execution_width]]"))
    assert_ok(tmp_path, kernel_with("ushort gid [[thread_position_in_grid]]", "uint group [[threadgroup_position_in_grid]]",
                                    "unsigned int tid [[thread_position_in_threadgroup]]",
                                    "uint index [[thread_index_in_threadgroup]]"))
    assert_ok(tmp_path, kernel_with("metal::uint2 gid [[thread_position_in_grid]]", "uint2 grid [[threads_per_grid]]"))


# ---- MSL scalar types (MSL spec 2.1, Table 2.1) and no C++ standard library (1.5.4) ----

@pytest.mark.parametrize("statement,message", [
    ("double d = 1.0;", "'double' is not a Metal Shading Language type"),
    ("long long q = 0;", "'long long' is not a Metal Shading Language type"),
    ("unsigned long long q = 0;", "'long long'"),
    ("long double q = 0;", "'long double'"),
    ("uintptr_t a = (uintptr_t) out;", "'uintptr_t' is not a Metal Shading Language type"),
    ("intptr_t a = 0;", "'intptr_t'"),
    ("wchar_t c = 0;", "'wchar_t'"),
    ("char16_t c = 0;", "'char16_t'"),
    ("uint_fast32_t c = 0;", "'uint_fast32_t'"),
    ("std::size_t n = 0;", "'std::size_t': Metal has no C++ standard library"),
])
def test_non_msl_types(tmp_path, statement, message):
    source = HEAD + f"kernel void k(device uint* out [[buffer(0)]])\n{{\n    {statement}\n}}\n"
    assert_error(tmp_path, source, 5, message)


def test_msl_scalar_types_pass(tmp_path):
    source = HEAD + """kernel void k(device uint* out [[buffer(0)]])
{
    bool b = true; char c = 0; uchar uc = 0; short s = 0; ushort us = 0; int i = 0; uint u = 0;
    long l = 0; ulong ul = 0; half h = 0; bfloat bf = 0; float f = 0; size_t n = 0; ptrdiff_t d = 0;
    int8_t i8 = 0; uint8_t u8 = 0; int16_t i16 = 0; uint16_t u16 = 0; int32_t i32 = 0; uint32_t u32 = 0;
    int64_t i64 = 0; uint64_t u64 = 0; unsigned long q = (ulong) out;  // "double" in a comment is fine
    const char* text = "a double in a string is fine";
}
"""
    assert_ok(tmp_path, source)


# ---- Metal 3.1 = C++14 (MSL spec 1.5) and Metal 3.2-only pragmas (MSL spec 3.2, 1.3) ----

@pytest.mark.parametrize("code,line,message", [
    ("template <int N> int f() {\n    if constexpr (N > 1) { return 1; }\n    return 0;\n}\n", 4, "`if constexpr` is C++17"),
    ("struct P { int a; int b; };\nint f(P p) {\n    auto [a, b] = p;\n    return a + b;\n}\n", 5, "structured bindings are C++17"),
    ("int f(P p) {\n    const auto& [a, b] = p;\n    return a;\n}\n", 4, "structured bindings are C++17"),
    ("template <class... T> int sum(T... t) {\n    return (t + ...);\n}\n", 4, "fold expressions are C++17"),
    ("template <class... T> int sum(T... t) {\n    return (... + t);\n}\n", 4, "fold expressions are C++17"),
    ("inline constexpr int N = 4;\n", 3, "inline variables are C++17"),
    ("namespace a::b {\n}\n", 3, "nested namespace definitions (`namespace a::b`) are C++17"),
    ("[[nodiscard]] int f() { return 1; }\n", 3, "[[nodiscard]]"),
    ("int f(int x) {\n    [[maybe_unused]] int y = x;\n    return x;\n}\n", 4, "C++17"),
    ("template <auto N> int f() { return N; }\n", 3, "`template <auto>` parameters are C++17"),
    ("static_assert(sizeof(int) == 4);\n", 3, "static_assert without a message is C++17"),
    ("\n#pragma METAL fp math_mode(safe)\n", 4, "`#pragma METAL fp math_mode` is Metal 3.2; this project compiles with -std=metal3.1"),
])
def test_cxx17_and_metal32_syntax(tmp_path, code, line, message):
    assert_error(tmp_path, HEAD + code, line, message)
    assert "is based on C++14" in translate(tmp_path, HEAD + code).stderr or "Metal 3.2" in message


def test_cxx14_syntax_passes(tmp_path):
    source = HEAD + """#pragma METAL fp contract(off)
namespace a { namespace b { constexpr int N = 4; } }
static_assert(a::b::N == 4, "four");
static_assert(a::b::N < 5 && a::b::N > 3, "a comparison before the message");
template <class... T> int count(T... t) { return sizeof...(T); }
template <class T> inline T twice(T x) { return x + x; }
inline int f(int x) { return count(x, x) + twice(x); }
constexpr constant int M = 2;
kernel void k(device int* out [[buffer(0)]], uint gid [[thread_position_in_grid]])
{
    int values[2] = {1, 2};
    out[gid] = f(values[gid % M]);
}
"""
    assert_ok(tmp_path, source)


# ---- Threadgroup memory: at most 32 KiB of threadgroup variables per kernel ----

def test_threadgroup_memory_over_32_kib(tmp_path):
    source = HEAD + """#define ROWS 64
constant constexpr uint COLS = 64;
kernel void k(device float* out [[buffer(0)]], uint tid [[thread_index_in_threadgroup]])
{
    threadgroup float a[ROWS * COLS];
    threadgroup half4 b[ROWS][2];
    out[tid] = a[tid] + float(b[0][0].x);
}
"""
    # a: 16384 bytes, b: 1024 bytes; with ROWS 128, a alone is 32768 bytes (the limit) and b adds 2048
    assert_ok(tmp_path, source)
    assert_error(tmp_path, source.replace("#define ROWS 64", "#define ROWS 128"), 8,
                 "kernel k: its threadgroup variables need 34816 bytes with 'b'; Metal allows at most 32768 bytes "
                 "(32 KiB) of threadgroup memory per threadgroup")
    assert_error(tmp_path, source.replace("ROWS * COLS", "ROWS * COLS * 2 + 1"), 7, "need 32772 bytes with 'a'")


def test_threadgroup_memory_uses_macros_of_included_project_headers(tmp_path):
    source = HEAD + """#include <internal/kernel-args.h>
kernel void k(device float* out [[buffer(0)]], uint tid [[thread_index_in_threadgroup]])
{
    threadgroup float tile[GPTOSS_GEMM_BM * GPTOSS_GEMM_BN * 5];
    out[tid] = tile[tid];
}
"""
    assert_error(tmp_path, source, 6, "need 40960 bytes with 'tile'")


def test_threadgroup_memory_not_evaluable_here_is_a_static_assert(tmp_path):
    source = HEAD + """struct S { float x[3000]; };
kernel void k(device float* out [[buffer(0)]], uint tid [[thread_index_in_threadgroup]])
{
    threadgroup S s[3];
    out[tid] = s[0].x[tid];
}
"""
    out = assert_ok(tmp_path, source)
    # On the kernel's line, so the compiler's message points at the .metal file.
    kernel_line = out.split('#line 1 "', 1)[1].split("\n", 1)[1].splitlines()[3]
    assert "static_assert(sizeof(msl_threadgroup_k) <= 32768" in kernel_line
    assert "more than 32768 bytes (32 KiB, the Metal limit) of `threadgroup` variables" in kernel_line


# ---- At most 1024 threads per threadgroup ----

def test_max_total_threads_per_threadgroup(tmp_path):
    source = HEAD + """#define THREADS 1024
[[max_total_threads_per_threadgroup(THREADS)]]
kernel void k(device float* out [[buffer(0)]], uint tid [[thread_index_in_threadgroup]])
{
    out[tid] = 1.0f;
}
"""
    out = assert_ok(tmp_path, source)
    assert '{"k", &msl_thunk_k, 1024, 0,' in out  # the registry's limit for this kernel
    assert '{"k", &msl_thunk_k, 96, 0,' in assert_ok(tmp_path, source.replace("1024", "96"))
    assert_error(tmp_path, source.replace("1024", "2048"), 4,
                 "kernel k: [[max_total_threads_per_threadgroup(THREADS)]] is 2048; Apple GPUs run at most 1024 "
                 "threads per threadgroup")
    assert_error(tmp_path, source.replace("1024", "0"), 4, "is 0;")
    # Not evaluable here (a function-like macro): checked when the generated C++ is compiled.
    out = assert_ok(tmp_path, source.replace("#define THREADS 1024", "#define TWICE(x) ((x) * 2)\n#define THREADS TWICE(512)"))
    assert "static_assert((THREADS) >= 1 && (THREADS) <= 1024" in out
    assert '{"k", &msl_thunk_k, THREADS, 0,' in out
    # Parentheses inside the attribute's argument.
    assert '{"k", &msl_thunk_k, 256, 0,' in assert_ok(tmp_path, source.replace("(THREADS)", "((THREADS) / (2 * 2))"))
    # Anywhere else the attribute would be silently dropped: an error.
    misplaced = HEAD + "kernel [[max_total_threads_per_threadgroup(64)]] void k(device float* out [[buffer(0)]]) {}\n"
    assert_error(tmp_path, misplaced, 3, "[[max_total_threads_per_threadgroup(n)]] must directly precede `kernel void name(`")


# ---- 64-bit atomics only behind __HAVE_ATOMIC_ULONG_MIN_MAX__ (Apple9 family) ----

ATOMIC_KERNEL = """kernel void k(device atomic_ulong* x [[buffer(0)]], uint gid [[thread_position_in_grid]])
{
    atomic_max_explicit(&x[0], ulong(gid), memory_order_relaxed);
}
"""


@pytest.mark.parametrize("code,line,what", [
    (ATOMIC_KERNEL, 3, "atomic_ulong"),
    (ATOMIC_KERNEL.replace("atomic_ulong*", "atomic<ulong>*"), 3, "atomic<ulong>"),
    ("#ifndef __HAVE_ATOMIC_ULONG_MIN_MAX__\n" + ATOMIC_KERNEL + "#endif\n", 4, "atomic_ulong"),
    ("#if defined(__HAVE_ATOMIC_ULONG_MIN_MAX__)\n#else\n" + ATOMIC_KERNEL + "#endif\n", 5, "atomic_ulong"),
    ("#if defined(__HAVE_ATOMIC_ULONG_MIN_MAX__) || 1\n" + ATOMIC_KERNEL + "#endif\n", 4, "atomic_ulong"),
    ("void f(device metal::atomic<ulong>* p) {}\n", 3, "atomic<ulong>"),
    ("void f(device atomic_uint* p) {\n    atomic_min_explicit(p, 1u, memory_order_relaxed);\n}\n", 4, "atomic_min_explicit"),
])
def test_64bit_atomics_need_the_feature_macro(tmp_path, code, line, what):
    assert_error(tmp_path, HEAD + code, line,
                 f"64-bit atomics ('{what}') need an Apple9-family GPU (M3 or later; M1/M2 lack them): put them inside "
                 "`#if defined(__HAVE_ATOMIC_ULONG_MIN_MAX__)`")


@pytest.mark.parametrize("guard", ["#if defined(__HAVE_ATOMIC_ULONG_MIN_MAX__)", "#ifdef __HAVE_ATOMIC_ULONG_MIN_MAX__",
                                   "#if __HAVE_ATOMIC_ULONG_MIN_MAX__ && 1",
                                   "#ifndef __HAVE_ATOMIC_ULONG_MIN_MAX__\n#else"])
def test_64bit_atomics_behind_the_feature_macro(tmp_path, guard):
    out = assert_ok(tmp_path, HEAD + guard + "\n" + ATOMIC_KERNEL + "#endif\n")
    # The CPU layer behaves like an Apple9 GPU: the macro is defined, and the kernel's thunk and table
    # entry sit behind the same guard as the kernel.
    assert out.startswith("// Generated") and "#define __HAVE_ATOMIC_ULONG_MIN_MAX__ 1" in out.split("#include <metal_stdlib>")[0]
    table = out.split("// ---- Entry thunks")[1]
    assert table.count("#if defined(__HAVE_ATOMIC_ULONG_MIN_MAX__)") == 2


def test_gpu_family_without_64bit_atomics(tmp_path):
    result = translate(tmp_path, HEAD + "#ifdef __HAVE_ATOMIC_ULONG_MIN_MAX__\n" + ATOMIC_KERNEL + "#endif\n",
                       "--gpu-family", "apple8")
    assert result.returncode == 0, result.stderr
    assert "#undef __HAVE_ATOMIC_ULONG_MIN_MAX__" in (tmp_path / "k.cpp").read_text()
