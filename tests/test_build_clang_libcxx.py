"""The C core and the CPU execution layer build and run with clang and libc++ (Apple's toolchain pair).

Apple's clang uses libc++, whose <math.h> declares generic math templates at global scope; GCC's
libstdc++ does not. A Mac-only build failure (`sampling.metal:84: call to 'isfinite' is ambiguous`)
went unnoticed because every other build here used GCC. This test builds, with clang-16 and
-stdlib=libc++ (Debian's packages reproduce Apple's libc++ 16 behaviour), warnings as errors:

* tests/cpp/test_msl_names.cpp: every MSL math name called unqualified as kernels call it, with and
  without <cmath>/<atomic> visible, also with the host's libstdc++ for comparison;
* the targets gptoss and gptoss_cpu_device (every product kernel translated and compiled) in a temp
  dir, and tests/cpp/cpu_layer_smoke.c linked against them: the launch self-test and a sampling step
  with -inf/NaN logits through the kernels, compared with the host reference.

The tools are clang-16, clang++-16, libc++-16-dev, libc++abi-16-dev, lld-16 (.ci/run installs them).
When they are missing the test fails under CI (the CI environment variable is set) and is skipped
otherwise. On macOS the system's clang/clang++ (Apple's libc++) are used. GPTOSS_TEST_CLANG /
GPTOSS_TEST_CLANGXX name other clang executables.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MSL_DIR = ROOT / "metal" / "source" / "cpu" / "msl"
ON_MAC = platform.system() == "Darwin"  # Apple's clang and libc++ are the real thing there
CC = os.environ.get("GPTOSS_TEST_CLANG", "clang" if ON_MAC else "clang-16")
CXX = os.environ.get("GPTOSS_TEST_CLANGXX", "clang++" if ON_MAC else "clang++-16")
LIBCXX = ["-stdlib=libc++"]
LINK = ["-stdlib=libc++"] if ON_MAC else ["-stdlib=libc++", "-fuse-ld=lld"]
TOOLS_HINT = ("apt-get install -y --no-install-recommends clang-16 libc++-16-dev libc++abi-16-dev lld-16 "
              "(.ci/run does this)")


def _run(cmd: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


def _missing_toolchain(work: Path) -> str | None:
    """Why clang + libc++ + lld cannot build a C++ program here, or None if they can."""
    for tool in (CC, CXX):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = work / "probe.cpp"
    probe.write_text("#include <atomic>\n#include <cmath>\n#include <vector>\n"
                     "int main() { std::vector<double> v{1.0}; std::atomic<int> a{0};"
                     " return std::isfinite(v[0]) ? a.load() : 1; }\n")
    result = _run([CXX, "-std=c++17", *LIBCXX, *LINK, str(probe), "-o", str(work / "probe")])
    if result.returncode != 0:
        return f"{CXX} -stdlib=libc++ -fuse-ld=lld cannot build a program:\n{result.stderr[-2000:]}"
    if _run([str(work / "probe")]).returncode != 0:
        return "a libc++ program built here does not run"
    return None


@pytest.fixture(scope="module")
def toolchain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("clang-libcxx")
    reason = _missing_toolchain(work)
    if reason is not None:
        message = f"clang/libc++ toolchain unavailable: {reason}. Install it with: {TOOLS_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: this check must run in CI)", pytrace=False)
        pytest.skip(message)
    return work


NAME_VARIANTS = [
    pytest.param([], id="metal_stdlib-only"),
    pytest.param(["-DMSL_NAMES_WITH_MATH_H"], id="with-math.h"),
]


@pytest.mark.parametrize("defines", NAME_VARIANTS)
@pytest.mark.parametrize("library", ["libc++", "libstdc++"])
def test_msl_math_names_resolve(toolchain: Path, library: str, defines: list[str]) -> None:
    """Every MSL math name resolves unambiguously, to metal's functions, with either C++ library."""
    if library == "libc++":
        compiler, flags = [CXX, *LIBCXX], LINK
    else:
        gxx = shutil.which("g++")
        compiler, flags = ([gxx], []) if gxx else ([CXX], [])
    exe = toolchain / f"names-{library}-{len(defines)}"
    build = _run([*compiler, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", *defines, f"-I{MSL_DIR}",
                  str(ROOT / "tests" / "cpp" / "test_msl_names.cpp"), *flags, "-o", str(exe)])
    assert build.returncode == 0, f"{' '.join(compiler)} failed:\n{build.stderr[-8000:]}"
    run = _run([str(exe)], timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr


def _cmake() -> str:
    cmake = shutil.which("cmake")
    return cmake if cmake is not None else str(Path(sys.executable).with_name("cmake"))


def test_core_and_cpu_layer_build_and_run_with_libcxx(toolchain: Path) -> None:
    """Configure + build gptoss and gptoss_cpu_device with clang/libc++ and -Werror, then run the
    smoke program (launch self-test, sampling kernels with -inf/NaN logits) built against them."""
    import pybind11

    build = toolchain / "build"
    env = {k: v for k, v in os.environ.items() if k not in ("CFLAGS", "CXXFLAGS", "LDFLAGS", "CC", "CXX")}
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    started = time.monotonic()
    configure = _run([
        _cmake(), "-S", str(ROOT), "-B", str(build), *generator,
        f"-DCMAKE_C_COMPILER={CC}", f"-DCMAKE_CXX_COMPILER={CXX}",
        "-DCMAKE_C_FLAGS=-Werror", f"-DCMAKE_CXX_FLAGS={' '.join(LIBCXX)} -Werror",
        f"-DCMAKE_EXE_LINKER_FLAGS={' '.join(LINK)}", f"-DCMAKE_SHARED_LINKER_FLAGS={' '.join(LINK)}",
        "-DCMAKE_BUILD_TYPE=Release", "-DGPTOSS_BUILD_METAL=OFF", "-DGPTOSS_BUILD_TEST_KERNELS=OFF",
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}",
    ], env=env)
    assert configure.returncode == 0, configure.stdout[-4000:] + configure.stderr[-4000:]
    compiled = _run([_cmake(), "--build", str(build), "--target", "gptoss", "gptoss_cpu_device", "-j2"],
                    timeout=900, env=env)
    assert compiled.returncode == 0, compiled.stdout[-10000:] + compiled.stderr[-4000:]
    libs = {name: next(build.rglob(name), None) for name in ("libgptoss.a", "libgptoss_cpu_device.a")}
    assert all(libs.values()), f"static libraries not found in {build}: {libs}"

    obj = toolchain / "cpu_layer_smoke.o"
    exe = toolchain / "cpu_layer_smoke"
    c = _run([CC, "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{ROOT / 'metal' / 'include'}",
              f"-I{ROOT / 'metal' / 'source' / 'include'}", "-c", str(ROOT / "tests" / "cpp" / "cpu_layer_smoke.c"),
              "-o", str(obj)])
    assert c.returncode == 0, c.stderr[-4000:]
    link = _run([CXX, *LINK, str(obj), str(libs["libgptoss.a"]), str(libs["libgptoss_cpu_device.a"]),
                 "-lpthread", "-lm", "-o", str(exe)])
    assert link.returncode == 0, link.stderr[-4000:]
    run = _run([str(exe)], timeout=120, env={**env, "GPTOSS_CPU_THREADS": "2"})
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout[-4000:] + run.stderr[-4000:]
    print(f"clang/libc++ configure + build + smoke run: {time.monotonic() - started:.0f} s")
