"""Build switches (GPTOSS_BUILD_METAL, GPTOSS_BUILD_TEST_KERNELS) and the build's numerical contract:
configure-only CMake runs (a few seconds each)."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _configure(tmp_path: Path, value: str, *extra: str) -> subprocess.CompletedProcess[str]:
    cmake = shutil.which("cmake")
    if cmake is None:  # the cmake PyPI package puts it next to the interpreter
        cmake = str(Path(sys.executable).with_name("cmake"))
    import pybind11
    return subprocess.run(
        [cmake, "-S", str(ROOT), "-B", str(tmp_path / "build"), f"-DGPTOSS_BUILD_METAL={value}",
         f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}", *extra],
        capture_output=True, text=True, timeout=300,
    )


@pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS GPTOSS_BUILD_METAL=1 is expected to succeed")
def test_forcing_metal_off_macos_fails_with_a_clear_message(tmp_path):
    result = _configure(tmp_path, "1")
    assert result.returncode != 0
    assert "Metal exists only on macOS" in result.stderr


def test_unknown_value_is_rejected(tmp_path):
    result = _configure(tmp_path, "banana")
    assert result.returncode != 0
    assert "GPTOSS_BUILD_METAL must be AUTO, 1/ON or 0/OFF" in result.stderr


def test_metal_off_configures(tmp_path):
    result = _configure(tmp_path, "0")
    assert result.returncode == 0, result.stderr
    assert "Metal device layer OFF; CPU execution layer ON" in result.stdout


# ---- GPTOSS_BUILD_TEST_KERNELS: the MSL test kernels of tests/msl stay out of what users install ----

def _build_files_text(build: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in build.rglob("*")
                     if p.is_file() and p.suffix in (".make", ".ninja", ".txt") and p.stat().st_size < 5_000_000)


def test_default_configure_leaves_test_kernels_out(tmp_path):
    result = _configure(tmp_path, "0")
    assert result.returncode == 0, result.stderr
    assert "MSL test kernels (tests/msl) OFF" in result.stdout
    cache = (tmp_path / "build" / "CMakeCache.txt").read_text()
    assert "GPTOSS_BUILD_TEST_KERNELS:BOOL=OFF" in cache
    text = _build_files_text(tmp_path / "build")
    assert "kernels_sampling.cpp" in text          # product kernels are translated
    assert "tests_runtime_basic.cpp" not in text   # test kernels are not


def test_test_kernels_on_when_asked(tmp_path):
    result = _configure(tmp_path, "0", "-DGPTOSS_BUILD_TEST_KERNELS=ON")
    assert result.returncode == 0, result.stderr
    assert "MSL test kernels (tests/msl) ON" in result.stdout
    assert "tests_runtime_basic.cpp" in _build_files_text(tmp_path / "build")


def test_pip_install_defaults_test_kernels_off_and_test_command_turns_them_on():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    defines = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["scikit-build"]["cmake"]["define"]
    assert defines["GPTOSS_BUILD_TEST_KERNELS"] == {"env": "GPTOSS_BUILD_TEST_KERNELS", "default": "OFF"}
    test_sh = (ROOT / "scripts" / "test.sh").read_text()
    assert 'GPTOSS_BUILD_TEST_KERNELS=1 .venv/bin/python -m pip install' in test_sh
    assert "exec bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


# ---- One numerical contract: never fast math (docs/metal.md) ----

@pytest.mark.parametrize("flags", ["-DCMAKE_C_FLAGS=-O2 -ffast-math", "-DCMAKE_CXX_FLAGS=-Ofast",
                                   "-DCMAKE_CXX_FLAGS=-ffinite-math-only -g"])
def test_fast_math_flags_are_refused(tmp_path, flags):
    result = _configure(tmp_path, "0", flags)
    assert result.returncode != 0
    assert "rely on IEEE NaN and infinity" in result.stderr, result.stderr[-3000:]


def test_cpu_layer_headers_refuse_fast_math(tmp_path):
    """A translation unit of the CPU layer compiled with -ffast-math stops with a clear #error."""
    compiler = next((c for c in ("g++", "clang++", "c++") if shutil.which(c)), None)
    if compiler is None:
        pytest.skip("no C++ compiler")
    source = tmp_path / "fast.cpp"
    source.write_text("#include <metal_stdlib>\nint main() { return 0; }\n")
    msl = ROOT / "metal" / "source" / "cpu" / "msl"
    for flag in ("-ffast-math", "-ffinite-math-only"):
        result = subprocess.run([compiler, "-std=c++17", flag, "-fsyntax-only", f"-I{msl}", str(source)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode != 0 and "must not be compiled with -ffast-math" in result.stderr, result.stderr
    ok = subprocess.run([compiler, "-std=c++17", "-fsyntax-only", f"-I{msl}", str(source)],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr


def test_metal_compiles_with_fast_math_off_for_macos_14():
    """metal.cmake (runs only on a Mac): every `metal` compile carries the deployment target 14.0 and
    the fast-math-off flag the configure probe chose; the top level defaults the deployment target."""
    text = (ROOT / "metal" / "source" / "metal.cmake").read_text()
    assert 'set(_gptoss_metal_macos_min "14.0")' in text
    assert "foreach(_flag IN ITEMS -fmetal-math-mode=safe -fno-fast-math)" in text
    commands = re.findall(r"COMMAND xcrun -sdk macosx metal (.*?)-o", text, flags=re.S)
    assert len(commands) == 2, commands  # the probe and the kernel build
    for command in commands:
        assert "-mmacosx-version-min=${_gptoss_metal_macos_min}" in command
        assert "${_flag}" in command or "${_gptoss_metal_math_flag}" in command
    top = (ROOT / "CMakeLists.txt").read_text()
    assert top.index('set(CMAKE_OSX_DEPLOYMENT_TARGET "14.0"') < top.index("project(gpt_oss_metal")
