"""The GPTOSS_SANITIZE build option is wired, its sanitizers report bugs, and the CPU layer runs clean.

Builds the C core (gptoss) and the CPU execution layer (gptoss_cpu_device, every product kernel) with
``-DGPTOSS_SANITIZE=address,undefined`` in a temp dir with the default compiler (GCC on Linux), then:

* the option reaches every target: core, CPU layer and translated kernels compile with -fsanitize;
  an unknown sanitizer is refused at configure time;
* negative controls (tests/cpp/sanitizer_controls.c, a test-only program linked against the
  instrumented libraries): an intentional heap overflow IS reported by ASan, an intentional signed
  overflow IS reported by UBSan and is fatal (-fno-sanitize-recover);
* positive controls: the C loader on the tiny model and on a non-model file, and
  tests/cpp/cpu_layer_smoke.c (the launch self-test and sampling kernels, run on fibers by the CPU
  layer's hand-written context switch) run without any report;
* the fiber annotations are load-bearing: the same smoke program with fiber.cpp compiled without them
  gets ASan's false "stack-buffer-overflow" on a fiber stack (GCC only: it keys on __SANITIZE_ADDRESS__).

The whole test suite of the loader, tokenizer, context and converter runs under the sanitizers with
``bash scripts/test-sanitizers.sh`` (docs/testing.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CC = os.environ.get("CC", "cc")
CXX = os.environ.get("CXX", "c++")
SANITIZERS = "address,undefined"
FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer", "-g"]
# detect_leaks=0: only the reports asked for (the controls exit without freeing everything on purpose).
ENV = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0", "UBSAN_OPTIONS": "print_stacktrace=1",
       "GPTOSS_CPU_THREADS": "2"}
for _name in ("LD_PRELOAD", "CFLAGS", "CXXFLAGS", "LDFLAGS"):
    ENV.pop(_name, None)


def _run(cmd: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


def _cmake() -> str:
    cmake = shutil.which("cmake")
    return cmake if cmake is not None else str(Path(sys.executable).with_name("cmake"))


def _configure(build: Path, sanitize: str, *extra: str) -> subprocess.CompletedProcess[str]:
    import pybind11

    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    return _run([
        _cmake(), "-S", str(ROOT), "-B", str(build), *generator, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
        "-DGPTOSS_BUILD_METAL=OFF", "-DGPTOSS_BUILD_TEST_KERNELS=OFF", f"-DGPTOSS_SANITIZE={sanitize}",
        "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", *extra,
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}",
    ], env=ENV)


def _sanitizer_toolchain_missing(work: Path) -> str | None:
    probe = work / "probe.c"
    probe.write_text("#include <stdlib.h>\nint main(void) { char* p = malloc(4); free(p); return 0; }\n")
    result = _run([CC, *FLAGS, str(probe), "-o", str(work / "probe")], env=ENV)
    if result.returncode != 0:
        return f"{CC} cannot link with {' '.join(FLAGS)} (libasan/libubsan missing?):\n{result.stderr[-2000:]}"
    if _run([str(work / "probe")], env=ENV).returncode != 0:
        return "a program built with ASan/UBSan does not run here"
    return None


class Build:
    def __init__(self, work: Path, build: Path) -> None:
        self.work = work
        self.build = build
        self.core = build / "libgptoss.a"
        self.cpu = build / "metal" / "source" / "cpu" / "libgptoss_cpu_device.a"

    def link(self, source: Path, name: str, cpu_library: Path | None = None) -> Path:
        obj = self.work / f"{name}.o"
        exe = self.work / name
        compiled = _run([CC, "-std=c11", "-Wall", "-Wextra", "-Werror", *FLAGS, f"-I{ROOT / 'metal' / 'include'}",
                         f"-I{ROOT / 'metal' / 'source' / 'include'}", "-c", str(source), "-o", str(obj)], env=ENV)
        assert compiled.returncode == 0, compiled.stderr[-4000:]
        linked = _run([CXX, *FLAGS, str(obj), str(self.core), str(cpu_library or self.cpu), "-lpthread", "-lm",
                       "-o", str(exe)], env=ENV)
        assert linked.returncode == 0, linked.stderr[-4000:]
        return exe


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory: pytest.TempPathFactory) -> Build:
    work = tmp_path_factory.mktemp("sanitize")
    reason = _sanitizer_toolchain_missing(work)
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: this check must run in CI)", pytrace=False)
        pytest.skip(reason)
    build = work / "build"
    started = time.monotonic()
    configure = _configure(build, SANITIZERS)
    assert configure.returncode == 0, configure.stdout[-4000:] + configure.stderr[-4000:]
    compiled = _run([_cmake(), "--build", str(build), "--target", "gptoss", "gptoss_cpu_device", "-j2"],
                    timeout=1800, env=ENV)
    assert compiled.returncode == 0, compiled.stdout[-10000:] + compiled.stderr[-4000:]
    print(f"sanitized configure + build: {time.monotonic() - started:.0f} s")
    result = Build(work, build)
    assert result.core.is_file() and result.cpu.is_file(), f"static libraries not found in {build}"
    return result


def test_option_reaches_every_target(sanitized: Build) -> None:
    cache = (sanitized.build / "CMakeCache.txt").read_text()
    assert f"GPTOSS_SANITIZE:STRING={SANITIZERS}" in cache
    by_kind = _commands_by_kind(sanitized.build)
    for kind, entries in by_kind.items():
        assert entries, f"no {kind} sources in compile_commands.json"
        for command in entries:
            assert f"-fsanitize={SANITIZERS}" in command and "-fno-sanitize-recover=undefined" in command, command
            assert "-fno-sanitize=all" not in command, command  # GPTOSS_SANITIZE_KERNELS is ON by default


def _commands_by_kind(build: Path) -> dict[str, list[str]]:
    by_kind: dict[str, list[str]] = {"core": [], "cpu": [], "kernel": []}
    for entry in json.loads((build / "compile_commands.json").read_text()):
        source = entry["file"]
        kind = ("kernel" if "msl-generated" in source and "kernel_registry" not in source
                else "cpu" if "/metal/source/cpu/" in source or "kernel_registry" in source
                else "core" if "/metal/source/" in source else None)
        if kind is not None:
            by_kind[kind].append(entry["command"])
    return by_kind


def test_kernels_can_be_left_uninstrumented(tmp_path: Path) -> None:
    """GPTOSS_SANITIZE_KERNELS=OFF (scripts/test-sanitizers.sh): the translated kernels end with
    -fno-sanitize=all, the runtime around them keeps the sanitizers."""
    build = tmp_path / "build"
    result = _configure(build, SANITIZERS, "-DGPTOSS_SANITIZE_KERNELS=OFF")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    by_kind = _commands_by_kind(build)
    assert by_kind["kernel"] and by_kind["cpu"] and by_kind["core"]
    for command in by_kind["kernel"]:
        assert command.rindex("-fno-sanitize=all") > command.rindex(f"-fsanitize={SANITIZERS}"), command
    for command in by_kind["cpu"] + by_kind["core"]:
        assert f"-fsanitize={SANITIZERS}" in command and "-fno-sanitize=all" not in command, command


def test_unknown_sanitizer_is_refused(tmp_path: Path) -> None:
    result = _configure(tmp_path / "build", "address,thread")
    assert result.returncode != 0
    assert "GPTOSS_SANITIZE: 'thread' is not supported" in result.stderr


def test_pip_install_passes_the_option() -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        pytest.skip("tomllib needs Python 3.11")
    defines = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["scikit-build"]["cmake"]["define"]
    assert defines["GPTOSS_SANITIZE"] == {"env": "GPTOSS_SANITIZE", "default": ""}
    assert defines["GPTOSS_SANITIZE_KERNELS"] == {"env": "GPTOSS_SANITIZE_KERNELS", "default": "ON"}


def test_heap_overflow_is_reported(sanitized: Build) -> None:
    exe = sanitized.link(ROOT / "tests" / "cpp" / "sanitizer_controls.c", "controls")
    run = _run([str(exe), "heap-overflow"], timeout=120, env=ENV)
    assert run.returncode != 0, run.stdout + run.stderr
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in run.stderr, run.stderr[-4000:]
    assert "sanitizer_controls.c" in run.stderr  # symbolised stack


def test_undefined_behaviour_is_reported_and_fatal(sanitized: Build) -> None:
    exe = sanitized.link(ROOT / "tests" / "cpp" / "sanitizer_controls.c", "controls")
    run = _run([str(exe), "signed-overflow"], timeout=120, env=ENV)
    assert run.returncode != 0, run.stdout + run.stderr
    assert "runtime error: signed integer overflow" in run.stderr, run.stderr[-4000:]
    assert "not detected" not in run.stdout


def test_loader_runs_clean(sanitized: Build, tiny_model_bin: Path) -> None:
    exe = sanitized.link(ROOT / "tests" / "cpp" / "sanitizer_controls.c", "controls")
    for path, status in ((tiny_model_bin, 0), (Path(__file__), 9)):
        run = _run([str(exe), "clean", str(path)], timeout=300, env=ENV)
        assert run.returncode == 0 and run.stdout.startswith(f"ok {status} "), run.stdout + run.stderr[-4000:]
        assert "Sanitizer" not in run.stderr and "runtime error" not in run.stderr, run.stderr[-4000:]


def test_cpu_layer_fibers_run_clean(sanitized: Build) -> None:
    exe = sanitized.link(ROOT / "tests" / "cpp" / "cpu_layer_smoke.c", "cpu_layer_smoke")
    run = _run([str(exe)], timeout=600, env=ENV)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout[-2000:] + run.stderr[-6000:]
    assert "Sanitizer" not in run.stderr and "runtime error" not in run.stderr, run.stderr[-6000:]


def test_fiber_annotations_are_needed(sanitized: Build) -> None:
    """Without the annotations ASan mistakes fiber stacks for overflowed frames: the same smoke
    program with fiber.cpp built without them is reported (so the clean run above means something)."""
    version = _run([CXX, "--version"], env=ENV).stdout
    if "clang" in version.lower():
        pytest.skip("the unannotated build is made by undefining __SANITIZE_ADDRESS__, a GCC macro")
    obj = sanitized.work / "fiber-unannotated.o"
    compiled = _run([CXX, "-std=c++17", "-O2", *FLAGS, "-U__SANITIZE_ADDRESS__", "-fvisibility=hidden",
                     f"-I{ROOT / 'metal' / 'source' / 'cpu'}", "-c", str(ROOT / "metal" / "source" / "cpu" / "fiber.cpp"),
                     "-o", str(obj)], env=ENV)
    assert compiled.returncode == 0, compiled.stderr[-4000:]
    library = sanitized.work / "libgptoss_cpu_device_unannotated.a"
    shutil.copyfile(sanitized.cpu, library)
    members = _run(["ar", "t", str(library)]).stdout.split()
    fiber_member = next(m for m in members if m.startswith("fiber"))
    assert _run(["ar", "d", str(library), fiber_member]).returncode == 0
    assert _run(["ar", "r", str(library), str(obj)]).returncode == 0
    exe = sanitized.link(ROOT / "tests" / "cpp" / "cpu_layer_smoke.c", "cpu_layer_smoke_unannotated", library)
    run = _run([str(exe)], timeout=600, env=ENV)
    assert run.returncode != 0 and "ERROR: AddressSanitizer" in run.stderr, (
        "ASan no longer reports the unannotated fiber switches; the control is void:\n" + run.stderr[-4000:])
