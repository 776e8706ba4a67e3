"""The GPTOSS_BUILD_METAL build switch: configure-only CMake runs (a few seconds each)."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _configure(tmp_path: Path, value: str) -> subprocess.CompletedProcess[str]:
    cmake = shutil.which("cmake")
    if cmake is None:  # the cmake PyPI package puts it next to the interpreter
        cmake = str(Path(sys.executable).with_name("cmake"))
    import pybind11
    return subprocess.run(
        [cmake, "-S", str(ROOT), "-B", str(tmp_path / "build"), f"-DGPTOSS_BUILD_METAL={value}",
         f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}"],
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
