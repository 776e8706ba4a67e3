"""The Metal kernel-library generator (metal/tools/embed_metal.py), run on any OS.

metal.cmake runs it on macOS to embed either the MSL sources (Command Line Tools only) or the
compiled .metallib files (Xcode). Both generated C files are compiled here with the host C compiler
and executed, so the bytes a Mac would hand to Metal are checked byte for byte.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "metal" / "tools"
INCLUDE = ROOT / "metal" / "source" / "include"
KERNEL_FILES = sorted((ROOT / "metal" / "source" / "kernels").glob("*.metal")) + sorted((ROOT / "tests" / "msl").glob("*.metal"))

sys.path.insert(0, str(TOOLS))
import embed_metal  # noqa: E402

CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler on PATH to compile the generated file")

# A C program that prints every embedded library back: name, kind, size, sha256, kernels, then the bytes.
DUMP_C = r"""
#include <stdio.h>
#include "embedded-metal-library.h"
int main(void) {
    printf("%zu\n", gptoss_embedded_metal_library_count);
    for (size_t i = 0; i < gptoss_embedded_metal_library_count; i++) {
        const struct gptoss_embedded_metal_library* l = &gptoss_embedded_metal_libraries[i];
        printf("%s %d %zu %s", l->name, (int) l->kind, l->size, l->sha256);
        for (const char* const* k = l->kernel_names; *k != NULL; k++) printf(" %s", *k);
        printf("\n");
        if (l->kind == gptoss_embedded_metal_kind_source && l->data[l->size] != 0) { printf("NOT NUL-TERMINATED\n"); return 1; }
        fwrite(l->data, 1, l->size, stdout);
        printf("\n");
    }
    return 0;
}
"""


def run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOLS / "embed_metal.py"), *args], capture_output=True, text=True, timeout=120)


def compile_and_dump(tmp_path: Path, generated: Path) -> bytes:
    """Compiles the generated C file strictly (C11, every warning an error) with a dump program; returns its output."""
    (tmp_path / "dump.c").write_text(DUMP_C)
    exe = tmp_path / "dump"
    result = subprocess.run(
        [CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", str(TOOLS),
         str(generated), str(tmp_path / "dump.c"), "-o", str(exe)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return subprocess.run([str(exe)], capture_output=True, timeout=60, check=True).stdout


def parse_dump(output: bytes) -> list[tuple[str, int, bytes, str, list[str]]]:
    """(name, kind, data, sha256, kernels) per library, from the dump program's output."""
    count_line, rest = output.split(b"\n", 1)
    libraries = []
    for _ in range(int(count_line)):
        header, rest = rest.split(b"\n", 1)
        name, kind, size, digest, *kernels = header.decode().split(" ")
        data, rest = rest[:int(size)], rest[int(size) + 1:]
        libraries.append((name, int(kind), data, digest, kernels))
    return libraries


def test_every_kernel_file_is_found():
    # The glob the build uses: if it found nothing, every other test here would prove nothing.
    assert len([f for f in KERNEL_FILES if f.parent.name == "kernels"]) >= 7
    assert any(f.parent.name == "msl" for f in KERNEL_FILES)


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_inlining_removes_every_project_include_and_keeps_the_rest(path):
    text = embed_metal.inline_includes(path, [INCLUDE], ROOT)
    original = path.read_text()
    code = embed_metal._strip_comments(text)
    # No project include survives (runtime compilation has no include path) ...
    assert not re.search(r'^\s*#\s*include\s*[<"]internal/', code, re.M)
    # ... system headers stay, exactly as many as the file had.
    system = re.findall(r"^\s*#\s*include\s*<(metal_\w+)>", original, re.M)
    assert re.findall(r"^\s*#\s*include\s*<(metal_\w+)>", code, re.M) == system
    if "internal/kernel-args.h" in original:
        # The header's content is inlined exactly once, and no `#pragma once` is left in the main file.
        args_header = (INCLUDE / "internal" / "kernel-args.h").read_text()
        first_struct = re.search(r"struct\s+(\w+)\s*\{", args_header).group(1)
        assert len(re.findall(rf"struct\s+{first_struct}\s*\{{", code)) == 1
        assert not re.search(r"^\s*#\s*pragma\s+once", code, re.M)
    # The kernels found are exactly the file's `kernel void` functions.
    assert embed_metal.kernel_names(text) == re.findall(r"^kernel\s+void\s+(\w+)\s*\(", original, re.M)


def test_line_markers_point_back_at_the_original_lines():
    path = ROOT / "metal" / "source" / "kernels" / "matmul.metal"
    text = embed_metal.inline_includes(path, [INCLUDE], ROOT)
    original = path.read_text().splitlines()
    # Replay the #line markers: every line outside them must equal the original line it claims to be.
    current_file, line = None, 0
    checked = 0
    for out_line in text.splitlines():
        marker = re.match(r'#line (\d+) "([^"]+)"', out_line)
        if marker:
            line, current_file = int(marker.group(1)), marker.group(2)
            continue
        if current_file == "metal/source/kernels/matmul.metal" and not out_line.startswith("// #include"):
            assert out_line == original[line - 1], f"line {line}"
            checked += 1
        line += 1
    assert checked == len(original) - 1  # every line but the inlined #include


def test_include_once_cycles_and_quotes(tmp_path):
    inc = tmp_path / "inc"
    (inc / "p").mkdir(parents=True)
    (inc / "p" / "a.h").write_text("#pragma once\n#include <p/b.h>\nint a;\n")
    (inc / "p" / "b.h").write_text("#pragma once\n#include <p/a.h>\nint b;\n")
    (tmp_path / "local.h").write_text("int local;\n")
    src = tmp_path / "k.metal"
    src.write_text('#include <metal_stdlib>\n#include <p/a.h>\n#include <p/b.h>\n#include "local.h"\n'
                   "/* kernel void commented_out( */\nkernel void k(device int* x [[buffer(0)]]) { x[0] = a + b + local; }\n")
    text = embed_metal.inline_includes(src, [inc], tmp_path)
    assert text.count("int a;") == 1 and text.count("int b;") == 1 and text.count("int local;") == 1
    assert "#include <metal_stdlib>" in text
    assert embed_metal.kernel_names(text) == ["k"]
    # A header without #pragma once that includes itself is reported, not expanded forever.
    (inc / "loop.h").write_text("#include <loop.h>\n")
    src.write_text("#include <loop.h>\nkernel void k() {}\n")
    with pytest.raises(embed_metal.EmbedError, match="nest deeper"):
        embed_metal.inline_includes(src, [inc], tmp_path)


def test_duplicate_kernels_and_kernel_less_files_stop_the_build(tmp_path):
    a, b, empty = tmp_path / "a.metal", tmp_path / "b.metal", tmp_path / "empty.metal"
    a.write_text("kernel void same(device int* x [[buffer(0)]]) {}\n")
    b.write_text("kernel void same(device int* x [[buffer(0)]]) {}\n")
    empty.write_text("inline int helper() { return 1; }\n")
    result = run_generator("sources", "--output", str(tmp_path / "o.c"), "--root", str(tmp_path), str(a), str(b))
    assert result.returncode == 1 and "kernel same is defined by both a.metal and b.metal" in result.stderr
    result = run_generator("sources", "--output", str(tmp_path / "o.c"), "--root", str(tmp_path), str(empty))
    assert result.returncode == 1 and "empty.metal: defines no `kernel void NAME(` function" in result.stderr
    assert not (tmp_path / "o.c").exists()


@needs_cc
def test_source_mode_c_file_compiles_and_embeds_each_inlined_source(tmp_path):
    out = tmp_path / "embedded.c"
    result = run_generator("sources", "--output", str(out), "--root", str(ROOT), "--include-dir", str(INCLUDE),
                           *map(str, KERNEL_FILES))
    assert result.returncode == 0, result.stderr
    libraries = parse_dump(compile_and_dump(tmp_path, out))
    assert [name for name, *_ in libraries] == [p.relative_to(ROOT).as_posix() for p in KERNEL_FILES]
    all_kernels = []
    for (name, kind, data, digest, kernels), path in zip(libraries, KERNEL_FILES):
        assert kind == 1  # gptoss_embedded_metal_kind_source
        assert data.decode() == embed_metal.inline_includes(path, [INCLUDE], ROOT)
        assert digest == embed_metal.hashlib.sha256(data).hexdigest()
        assert kernels == embed_metal.kernel_names(data.decode()) and kernels
        all_kernels += kernels
    # Every product kernel the runtime looks up must be findable by name.
    for expected in ("gptoss_matvec_bf16", "gptoss_rmsnorm", "gptoss_router", "gptoss_sampling_prepare"):
        assert expected in all_kernels


@needs_cc
def test_metallib_mode_c_file_embeds_the_metallib_bytes(tmp_path):
    # A fake .metallib: the real one needs Xcode, but the generator only copies bytes after the magic.
    fake = b"MTLB" + bytes(range(256)) * 3 + b"\0\x01end"
    lib = tmp_path / "norm.metallib"
    lib.write_bytes(fake)
    source = ROOT / "metal" / "source" / "kernels" / "norm.metal"
    out = tmp_path / "embedded.c"
    result = run_generator("metallibs", "--output", str(out), "--root", str(ROOT), f"{source}={lib}")
    assert result.returncode == 0, result.stderr
    [(name, kind, data, digest, kernels)] = parse_dump(compile_and_dump(tmp_path, out))
    assert (name, kind, data, kernels) == ("metal/source/kernels/norm.metal", 0, fake, ["gptoss_rmsnorm"])
    assert digest == embed_metal.hashlib.sha256(fake).hexdigest()


def test_metallib_mode_rejects_a_file_that_is_not_a_metallib(tmp_path):
    bad = tmp_path / "bad.metallib"
    bad.write_bytes(b"error: metal compiler failed\n")
    source = ROOT / "metal" / "source" / "kernels" / "norm.metal"
    result = run_generator("metallibs", "--output", str(tmp_path / "o.c"), "--root", str(ROOT), f"{source}={bad}")
    assert result.returncode == 1 and "not a .metallib" in result.stderr


def test_unchanged_output_is_not_rewritten(tmp_path):
    out = tmp_path / "embedded.c"
    args = ("sources", "--output", str(out), "--root", str(ROOT), "--include-dir", str(INCLUDE), str(KERNEL_FILES[0]))
    assert run_generator(*args).returncode == 0
    old = out.stat().st_mtime_ns - 10**9
    os.utime(out, ns=(old, old))
    assert run_generator(*args).returncode == 0
    assert out.stat().st_mtime_ns == old  # not rewritten: dependants are not rebuilt


def test_workflow_yaml_is_valid():
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "macos.yml").read_text())
    jobs = workflow["jobs"]
    # Apple Silicon runners only, both SDK generations: Xcode 15 (macos-14) and Xcode 16 (macos-15).
    runners = set()
    for job in jobs.values():
        if "matrix." in job["runs-on"]:
            runners |= {entry["runner"] for entry in job["strategy"]["matrix"]["include"]}
        else:
            runners.add(job["runs-on"])
    assert runners == {"macos-14", "macos-15"}, runners
    xcodes = {str(entry["xcode"]) for job in jobs.values() for entry in job.get("strategy", {}).get("matrix", {}).get("include", [])}
    assert xcodes == {"15", "16"}, xcodes
    assert workflow["env"]["MACOSX_DEPLOYMENT_TARGET"] == "14.0"
    wheels = jobs["wheels"]["steps"]
    assert any("MACOSX_DEPLOYMENT_TARGET=14.0" in step.get("env", {}).get("CIBW_ENVIRONMENT_MACOS", "") for step in wheels)
    all_runs = [step.get("run", "") for job in jobs.values() for step in job["steps"]]
    assert any("check_macos_sdk.py" in r and "xcrun --sdk macosx --show-sdk-path" in r for r in all_runs)
    # GPU-only steps run only where the probe found a usable Metal device.
    test_steps = jobs["test"]["steps"]
    probe = next(step for step in test_steps if step.get("id") == "probe")
    assert "gpu=true" in probe["run"] and "gpu=false" in probe["run"]
    for step in test_steps:
        if step.get("env", {}).get("GPTOSS_DEVICE") == "metal" or "default_device" in step.get("run", ""):
            assert step.get("if") == "steps.probe.outputs.gpu == 'true'", step["name"]
    steps = [step.get("run", "") for job in jobs.values() for step in job["steps"]]
    assert any("GPTOSS_DEVICE=metal" in s or "GPTOSS_DEVICE: metal" in s for s in steps) or \
        any(step.get("env", {}).get("GPTOSS_DEVICE") == "metal" for job in jobs.values() for step in job["steps"])
