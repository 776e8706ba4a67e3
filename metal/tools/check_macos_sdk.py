#!/usr/bin/env python3
"""Check the Mac build of gpt-oss-metal against a macOS SDK, on any host (stdlib only).

    GPTOSS_MACOS_SDK=/path/to/sdk python3 metal/tools/check_macos_sdk.py           # all build checks
    GPTOSS_MACOS_SDK=/path/to/sdk python3 metal/tools/check_macos_sdk.py --update-manifest
    python3 metal/tools/check_macos_sdk.py --check-manifest                       # no SDK needed

The SDK is either a real Xcode SDK (usr/include, System/Library/Frameworks, usr/lib: what
`xcrun --show-sdk-path` prints on a Mac) or a checkout of the GitHub repository
mitchellh/zig-build-macos-sdk (include/, Frameworks/, lib/). Its headers are Apple's: never commit
them to this repository.

Steps (one PASS/FAIL line each, followed by the first error lines of a failure):
  objc-typecheck  device-metal.m, -fobjc-arc -Wall -Wextra, availability and deprecation warnings at
                  the deployment target, every warning in the project's own files an error
  objc-link       device-metal.m compiled to an object and linked with ld64.lld into a dylib against
                  the SDK's .tbd stubs (Metal, Foundation, CoreGraphics, libobjc, libSystem if the SDK has
                  it); llvm-nm then requires every undefined symbol to come from those libraries or to be
                  the project's own (gptoss_*); without libSystem.tbd, C library symbols declared in the
                  SDK's libc headers stay undefined
  c-sources       every metal/source/*.c, -Wall -Wextra -Werror, as CMake builds them for the Metal build
  embedded-library  embed_metal.py in SOURCE mode (as metal.cmake runs it) and the generated C compiled
  cpu-layer       the CPU execution layer (cpu/*.cpp, translated kernels, registry) with clang++ against
                  the SDK's libc++ headers (-fsyntax-only)
  api-manifest    the Metal/Foundation identifiers of device-metal.m against metal-api-manifest.json

Compilers: GPTOSS_CLANG / GPTOSS_CLANGXX, else clang-16 / clang++-16 / clang / clang++; the linker
GPTOSS_LD64 else ld64.lld / ld64.lld-16 (on a Mac, Apple's ld as a last resort); nm: GPTOSS_NM, else
llvm-nm-16 / llvm-nm (on a Mac, xcrun nm).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "metal" / "tools"
SOURCE = ROOT / "metal" / "source"
INCLUDE_DIRS = [ROOT / "metal" / "include", SOURCE / "include"]
DEVICE_METAL = SOURCE / "device-metal.m"
DEPLOYMENT_TARGET = "14.0"
TARGET = f"arm64-apple-macos{DEPLOYMENT_TARGET}"
# The Metal device layer links these (metal.cmake) plus, implicitly, libobjc and libSystem.
FRAMEWORKS = ["Metal", "Foundation", "CoreGraphics"]
# Libraries whose symbols may stay undefined in the linked layer.
ALLOWED_LIBRARIES = {"Metal", "Foundation", "CoreFoundation", "CoreGraphics", "libobjc", "libSystem"}
# Emitted by the compiler, exported by libSystem (libunwind, libdyld, libc's stack protector).
COMPILER_RUNTIME_SYMBOLS = {"__Unwind_Resume", "___stack_chk_fail", "___stack_chk_guard", "dyld_stub_binder",
                            "___chkstk_darwin", "_bzero", "___bzero", "__tlv_bootstrap"}
ERROR_LINES = 12

HOW_TO_GET_AN_SDK = """\
check_macos_sdk.py needs a macOS SDK: set GPTOSS_MACOS_SDK to its directory.
  * On a Mac with Xcode or the Command Line Tools:
        GPTOSS_MACOS_SDK=$(xcrun --show-sdk-path) python3 metal/tools/check_macos_sdk.py
  * Anywhere else: check out the GitHub repository mitchellh/zig-build-macos-sdk (a subset of the
    macOS SDK: include/, Frameworks/, lib/) and point GPTOSS_MACOS_SDK at the checkout:
        git clone https://github.com/mitchellh/zig-build-macos-sdk /somewhere/macos-sdk
        GPTOSS_MACOS_SDK=/somewhere/macos-sdk python3 metal/tools/check_macos_sdk.py
    Use it under Apple's Xcode and Apple SDKs Agreement. The headers and stubs are Apple's: never
    commit them to this repository or copy them into its tests.
A real SDK has usr/include/Availability.h and System/Library/Frameworks/Metal.framework; the
zig-build-macos-sdk layout has include/Availability.h and Frameworks/Metal.framework."""


class SdkError(Exception):
    pass


@dataclass
class Sdk:
    """A macOS SDK in either layout, seen through one normalized root (a real SDK is its own root)."""
    path: Path
    layout: str            # "xcode" or "zig"
    include: Path          # the libc headers (usr/include)
    frameworks: Path       # System/Library/Frameworks
    lib: Path              # usr/lib: libobjc.tbd, libSystem.tbd
    version: str           # e.g. "14.2"
    root: Path | None = None   # -syslibroot for the linker (re-exported libraries are found by install name)

    @property
    def libcxx(self) -> Path | None:
        for candidate in (self.include / "c++" / "v1",):
            if (candidate / "vector").exists():
                return candidate
        return None

    @property
    def libsystem(self) -> Path | None:
        for name in ("libSystem.tbd", "libSystem.B.tbd"):
            if (self.lib / name).exists():
                return self.lib / name
        return None


def detect_sdk(value: str | None) -> Sdk:
    if not value:
        raise SdkError("GPTOSS_MACOS_SDK is not set.")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise SdkError(f"GPTOSS_MACOS_SDK={value} is not a directory.")
    path = path.resolve()
    if (path / "usr/include/Availability.h").exists() and (path / "System/Library/Frameworks/Metal.framework").is_dir():
        sdk = Sdk(path, "xcode", path / "usr/include", path / "System/Library/Frameworks", path / "usr/lib", "", root=path)
    elif (path / "include/Availability.h").exists() and (path / "Frameworks/Metal.framework").is_dir():
        sdk = Sdk(path, "zig", path / "include", path / "Frameworks", path / "lib", "")
    else:
        raise SdkError(f"GPTOSS_MACOS_SDK={value} is not a macOS SDK (no Availability.h and Metal.framework "
                       "in either layout).")
    sdk.version = sdk_version(sdk)
    return sdk


def sdk_version(sdk: Sdk) -> str:
    """SDKSettings.json's Version, else the newest MAC_OS_VERSION_X_Y the availability headers define."""
    settings = sdk.path / "SDKSettings.json"
    if settings.exists():
        try:
            version = json.loads(settings.read_text()).get("Version")
            if version:
                return str(version)
        except (OSError, ValueError):
            pass
    versions = []
    for header in ("AvailabilityVersions.h", "AvailabilityMacros.h"):
        text = (sdk.include / header).read_text(errors="replace") if (sdk.include / header).exists() else ""
        versions += [(int(a), int(b)) for a, b in re.findall(r"#define\s+MAC_OS_VERSION_(\d+)_(\d+)\b", text)]
    if not versions:
        return DEPLOYMENT_TARGET
    major, minor = max(versions)
    return f"{major}.{minor}"


def sysroot_for(sdk: Sdk, tmp: Path) -> Path:
    """The linker finds re-exported libraries (Foundation re-exports CoreFoundation, libobjc) by install
    name under -syslibroot: give the zig layout the real layout with symlinks."""
    if sdk.root is not None:
        return sdk.root
    root = tmp / "sysroot"
    (root / "System/Library").mkdir(parents=True, exist_ok=True)
    (root / "usr").mkdir(parents=True, exist_ok=True)
    for link, target in ((root / "System/Library/Frameworks", sdk.frameworks), (root / "usr/lib", sdk.lib),
                         (root / "usr/include", sdk.include)):
        if not link.exists():
            link.symlink_to(target)
    sdk.root = root
    return root


# ---- Tools ----

def find_tool(env: str, names: list[str], xcrun: str | None = None) -> list[str] | None:
    if os.environ.get(env):
        return os.environ[env].split()
    for name in names:
        found = shutil.which(name)
        if found:
            return [found]
    if xcrun and platform.system() == "Darwin" and shutil.which("xcrun"):
        result = subprocess.run(["xcrun", "--find", xcrun], capture_output=True, text=True)
        if result.returncode == 0 and result.stdout.strip():
            return [result.stdout.strip()]
    return None


@dataclass
class Tools:
    clang: list[str] | None
    clangxx: list[str] | None
    ld: list[str] | None
    nm: list[str] | None
    resource_include: Path | None = None

    @classmethod
    def find(cls) -> "Tools":
        tools = cls(find_tool("GPTOSS_CLANG", ["clang-16", "clang"], "clang"),
                    find_tool("GPTOSS_CLANGXX", ["clang++-16", "clang++"], "clang++"),
                    find_tool("GPTOSS_LD64", ["ld64.lld", "ld64.lld-16"], "ld"),
                    find_tool("GPTOSS_NM", ["llvm-nm-16", "llvm-nm"], "nm"))
        if tools.clang:
            result = subprocess.run([*tools.clang, "-print-resource-dir"], capture_output=True, text=True)
            if result.returncode == 0:
                tools.resource_include = Path(result.stdout.strip()) / "include"
        return tools


# ---- Steps ----

@dataclass
class StepResult:
    name: str
    ok: bool
    summary: str
    details: list[str] = field(default_factory=list)


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)


def first_errors(text: str, limit: int = ERROR_LINES) -> list[str]:
    """The first error/warning lines of compiler output (with the lines right after them), else its head."""
    lines = [line for line in text.splitlines() if line.strip()]
    picked: list[str] = []
    for i, line in enumerate(lines):
        if re.search(r"\b(error|warning|fatal error)\b:", line):
            picked += lines[i:i + 3]
        if len(picked) >= limit:
            break
    return (picked or lines)[:limit]


def c_flags(sdk: Sdk, tools: Tools) -> list[str]:
    """C/Objective-C include setup for the target: the compiler's own builtin headers, then the SDK's."""
    flags = ["-target", TARGET, "-nostdinc"]
    if tools.resource_include:
        flags += ["-isystem", str(tools.resource_include)]
    flags += ["-isystem", str(sdk.include), "-iframework", str(sdk.frameworks)]
    return flags


def project_includes() -> list[str]:
    return [f"-I{d}" for d in INCLUDE_DIRS]


OBJC_WARNINGS = ["-fobjc-arc", "-Wall", "-Wextra", "-Wno-unused-parameter",
                 "-Wunguarded-availability", "-Wunguarded-availability-new", "-Wdeprecated-declarations",
                 "-Wdeprecated-implementations", "-Wobjc-method-access", "-Werror"]


def step_objc_typecheck(sdk: Sdk, tools: Tools, tmp: Path) -> StepResult:
    cmd = [*tools.clang, *c_flags(sdk, tools), *OBJC_WARNINGS, "-DGPTOSS_WITH_METAL=1", *project_includes(),
           f"-I{TOOLS}", "-fsyntax-only", DEVICE_METAL]
    result = run(cmd)
    if result.returncode != 0:
        return StepResult("objc-typecheck", False, "device-metal.m does not type-check", first_errors(result.stderr))
    return StepResult("objc-typecheck", True, f"device-metal.m type-checks for {TARGET} (SDK {sdk.version}, "
                      "availability and deprecation warnings as errors)")


def libsystem_declares(sdk: Sdk, symbols: list[str]) -> set[str]:
    """The symbols (Mach-O names, leading underscore) that the SDK's libc headers declare as functions or
    extern variables: what libSystem exports when the SDK subset has no libSystem.tbd. A fortified
    ___name_chk counts when `name` is declared (the secure/ headers call it through a builtin)."""
    wanted: dict[str, list[str]] = {}
    for symbol in symbols:
        if not symbol.startswith("_"):
            continue
        name = symbol[1:]
        fortified = re.fullmatch(r"__(\w+)_chk", name)
        wanted.setdefault(fortified.group(1) if fortified else name, []).append(symbol)
    found: set[str] = set()
    if not wanted:
        return found
    names = "|".join(re.escape(n) for n in sorted(wanted, key=len, reverse=True))
    function = re.compile(r"\b(" + names + r")\b\s*\(")
    variable = re.compile(r"\bextern\b[^;(){}]*?\b(" + names + r")\b\s*(?:;|\[|__)")
    for header in sdk.include.rglob("*.h"):
        if "c++" in header.parts:
            continue
        try:
            text = header.read_text(errors="replace")
        except OSError:
            continue
        for pattern in (function, variable):
            for match in pattern.finditer(text):
                found.update(wanted[match.group(1)])
        if len(found) == len(symbols):
            break
    return found


def step_objc_link(sdk: Sdk, tools: Tools, tmp: Path, extra_objects: list[Path]) -> StepResult:
    name = "objc-link"
    if tools.ld is None or tools.nm is None:
        return StepResult(name, False, "no linker/nm: install lld and llvm (ld64.lld, llvm-nm) or set GPTOSS_LD64/GPTOSS_NM")
    obj = tmp / "device-metal.o"
    cmd = [*tools.clang, *c_flags(sdk, tools), *OBJC_WARNINGS, "-DGPTOSS_WITH_METAL=1", *project_includes(),
           f"-I{TOOLS}", "-fPIC", "-O2", "-c", DEVICE_METAL, "-o", obj]
    result = run(cmd)
    if result.returncode != 0:
        return StepResult(name, False, "device-metal.m does not compile to an object", first_errors(result.stderr))
    root = sysroot_for(sdk, tmp)
    dylib = tmp / "libgptoss_metal_check.dylib"
    link = [*tools.ld, "-dylib", "-arch", "arm64", "-platform_version", "macos", DEPLOYMENT_TARGET, sdk.version,
            "-syslibroot", root, "-F", root / "System/Library/Frameworks", "-L", root / "usr/lib",
            "-install_name", "@rpath/libgptoss_metal_check.dylib"]
    for framework in FRAMEWORKS:
        link += ["-framework", framework]
    link += ["-lobjc"]
    if sdk.libsystem is not None:
        link += ["-lSystem"]
    # Unresolved symbols are listed below instead of failing the link on the first one.
    link += ["-undefined", "dynamic_lookup", "-o", dylib, obj, *extra_objects]
    result = run(link)
    if result.returncode != 0:
        return StepResult(name, False, "the link against the SDK stubs failed", first_errors(result.stderr + result.stdout))
    nm = run([*tools.nm, "-m", "-u", dylib])
    if nm.returncode != 0:
        return StepResult(name, False, "llvm-nm failed on the linked dylib", first_errors(nm.stderr))
    unresolved, by_library = [], {}
    for line in nm.stdout.splitlines():
        match = re.search(r"\(undefined\)\s+(?:weak\s+)?external\s+(\S+)(?:\s+\((?:from\s+)?([^)]*)\))?", line)
        if not match:
            continue
        symbol, source = match.group(1), (match.group(2) or "")
        library = source.strip()
        if library in ALLOWED_LIBRARIES:
            by_library[library] = by_library.get(library, 0) + 1
        elif library and library != "dynamically looked up":
            unresolved.append(f"{symbol} (from {library}: not a library the Metal layer may depend on)")
        else:
            unresolved.append(symbol)
    own = [s for s in unresolved if s.startswith("_gptoss_")]
    rest = [s for s in unresolved if not s.startswith("_gptoss_")]
    libc = set()
    if sdk.libsystem is None:
        runtime = {s for s in rest if s in COMPILER_RUNTIME_SYMBOLS}
        libc = libsystem_declares(sdk, [s for s in rest if s not in runtime]) | runtime
    bad = [s for s in rest if s not in libc]
    counts = ", ".join(f"{lib} {n}" for lib, n in sorted(by_library.items()))
    if bad:
        return StepResult(name, False, f"{len(bad)} undefined symbol(s) not provided by the SDK's stubs "
                          "(an API missing from this SDK?)", bad[:ERROR_LINES])
    note = "" if sdk.libsystem is not None else f"; no libSystem.tbd in this SDK: {len(libc)} libSystem symbols left undefined"
    return StepResult(name, True, f"linked against the SDK's .tbd stubs ({counts}); {len(own)} gptoss_* symbols "
                      f"left to the rest of the project{note}")


def c_source_flags(sdk: Sdk, tools: Tools) -> list[str]:
    # As the top-level CMakeLists.txt compiles the core for the Metal build (C11 with GNU extensions,
    # -Wall -Wextra -Wno-unused-parameter, GPTOSS_WITH_METAL=1), every warning an error here.
    return [*c_flags(sdk, tools), "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror",
            "-DGPTOSS_WITH_METAL=1", "-fPIC", "-O1", *project_includes()]


def compile_many(jobs: int, commands: list[tuple[str, list]]) -> list[tuple[str, subprocess.CompletedProcess[str]]]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [(label, pool.submit(run, cmd)) for label, cmd in commands]
        return [(label, future.result()) for label, future in futures]


def step_c_sources(sdk: Sdk, tools: Tools, tmp: Path, jobs: int, objects: list[Path]) -> StepResult:
    sources = sorted(SOURCE.glob("*.c"))
    commands = []
    for source in sources:
        obj = tmp / "c" / (source.stem + ".o")
        obj.parent.mkdir(exist_ok=True)
        commands.append((source.name, [*tools.clang, *c_source_flags(sdk, tools), "-c", source, "-o", obj]))
        objects.append(obj)
    failed = [(label, r) for label, r in compile_many(jobs, commands) if r.returncode != 0]
    if failed:
        objects.clear()
        details = []
        for label, r in failed:
            details += first_errors(r.stderr, 6)
        return StepResult("c-sources", False, f"{len(failed)} of {len(sources)} C files fail: "
                          + ", ".join(label for label, _ in failed), details[:ERROR_LINES])
    return StepResult("c-sources", True, f"{len(sources)} C files of metal/source compile for {TARGET} (-Werror)")


def kernel_files() -> list[tuple[Path, str]]:
    """(file, id) of every kernel file the CMake build compiles, with GPTOSS_BUILD_TEST_KERNELS=ON (its default)."""
    files = [(p, "kernels_" + p.stem) for p in sorted((SOURCE / "kernels").glob("*.metal"))]
    files += [(p, "tests_" + p.stem) for p in sorted((ROOT / "tests" / "msl").glob("*.metal"))]
    return [(p, re.sub(r"[^A-Za-z0-9_]", "_", ident)) for p, ident in files]


def step_embedded_library(sdk: Sdk, tools: Tools, tmp: Path, objects: list[Path]) -> StepResult:
    name = "embedded-library"
    generated = tmp / "metal-library" / "embedded-metal-library.c"
    generated.parent.mkdir(exist_ok=True)
    cmd = [sys.executable, TOOLS / "embed_metal.py", "sources", "--output", generated, "--root", ROOT,
           "--include-dir", SOURCE / "include", *[p for p, _ in kernel_files()]]
    result = run(cmd)
    if result.returncode != 0:
        return StepResult(name, False, "embed_metal.py sources failed", first_errors(result.stderr + result.stdout))
    obj = tmp / "metal-library" / "embedded-metal-library.o"
    result = run([*tools.clang, *c_source_flags(sdk, tools), f"-I{TOOLS}", "-c", generated, "-o", obj])
    if result.returncode != 0:
        return StepResult(name, False, "the generated embedded-metal-library.c does not compile", first_errors(result.stderr))
    objects.append(obj)
    return StepResult(name, True, f"SOURCE-mode library of {len(kernel_files())} kernel files generated and compiled "
                      f"for {TARGET}")


def step_cpu_layer(sdk: Sdk, tools: Tools, tmp: Path, jobs: int) -> StepResult:
    name = "cpu-layer"
    if tools.clangxx is None:
        return StepResult(name, False, "no clang++ (set GPTOSS_CLANGXX)")
    libcxx = sdk.libcxx
    if libcxx is None:
        return StepResult(name, False, f"the SDK has no libc++ headers ({sdk.include / 'c++' / 'v1'})")
    cpu = SOURCE / "cpu"
    translator = cpu / "msl_translate.py"
    generated_dir = tmp / "msl-generated"
    generated_dir.mkdir(exist_ok=True)
    generated = []
    for metal, ident in kernel_files():
        out = generated_dir / f"{ident}.cpp"
        result = run([sys.executable, translator, "translate", metal, out, "--id", ident])
        if result.returncode != 0:
            return StepResult(name, False, f"msl_translate.py cannot translate {metal.relative_to(ROOT)}",
                              first_errors(result.stderr + result.stdout))
        generated.append(out)
    registry = generated_dir / "kernel_registry.cpp"
    result = run([sys.executable, translator, "registry", registry, *generated])
    if result.returncode != 0:
        return StepResult(name, False, "msl_translate.py registry failed", first_errors(result.stderr + result.stdout))
    # As metal/source/cpu/CMakeLists.txt: C++17, its warning set, hidden visibility, kernels with
    # -fno-strict-aliasing -ffp-contract=off; against the SDK's libc++ rather than the host's.
    base = [*tools.clangxx, "-target", TARGET, "-std=c++17", "-stdlib=libc++", "-nostdinc", "-nostdinc++",
            "-isystem", str(libcxx)]
    if tools.resource_include:
        base += ["-isystem", str(tools.resource_include)]
    base += ["-isystem", str(sdk.include), "-iframework", str(sdk.frameworks), *project_includes(),
             f"-I{cpu}", f"-I{cpu / 'msl'}", "-fvisibility=hidden", "-fvisibility-inlines-hidden",
             "-Wall", "-Wno-unused-parameter", "-Wno-unused-variable", "-Wno-unknown-pragmas", "-Wno-unused-function",
             "-fsyntax-only"]
    kernel_options = ["-fno-strict-aliasing", "-ffp-contract=off", "-Wno-unused-but-set-variable"]
    commands = [(p.name, [*base, p]) for p in sorted(cpu.glob("*.cpp"))]
    commands += [(p.name, [*base, *kernel_options, p]) for p in generated]
    commands.append((registry.name, [*base, registry]))
    failed = [(label, r) for label, r in compile_many(jobs, commands) if r.returncode != 0]
    if failed:
        details = []
        for label, r in failed:
            details += first_errors(r.stderr, 4)
        return StepResult(name, False, f"{len(failed)} of {len(commands)} C++ files fail against the SDK's libc++: "
                          + ", ".join(label for label, _ in failed), details[:ERROR_LINES])
    return StepResult(name, True, f"{len(commands)} C++ files (layer, translated kernels, registry) type-check "
                      f"for {TARGET} against the SDK's libc++")


def step_api_manifest(sdk: Sdk | None) -> StepResult:
    sys.path.insert(0, str(TOOLS))
    import metal_api_manifest  # noqa: E402

    problems = metal_api_manifest.check_file(DEVICE_METAL, metal_api_manifest.load_manifest())
    if problems:
        return StepResult("api-manifest", False, f"{len(problems)} problem(s) with metal-api-manifest.json "
                          "(update: --update-manifest with an SDK)", problems[:ERROR_LINES])
    return StepResult("api-manifest", True, "every Metal/Foundation identifier of device-metal.m is in the manifest "
                      f"and available at macOS {DEPLOYMENT_TARGET} or guarded")


def print_result(result: StepResult) -> None:
    print(f"{'PASS' if result.ok else 'FAIL'} {result.name}: {result.summary}", flush=True)
    for line in result.details:
        print(f"    {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--jobs", "-j", type=int, default=2, help="parallel compiler processes (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary build directory and print it")
    parser.add_argument("--update-manifest", action="store_true",
                        help="regenerate metal/tools/metal-api-manifest.json from the SDK's headers")
    parser.add_argument("--check-manifest", action="store_true",
                        help="only check device-metal.m against the manifest (no SDK needed)")
    parser.add_argument("--steps", help="comma-separated subset of: objc-typecheck,objc-link,c-sources,"
                        "embedded-library,cpu-layer,api-manifest")
    args = parser.parse_args(argv)
    jobs = max(1, min(args.jobs, 2))

    if args.check_manifest:
        result = step_api_manifest(None)
        print_result(result)
        return 0 if result.ok else 1

    try:
        sdk = detect_sdk(os.environ.get("GPTOSS_MACOS_SDK"))
    except SdkError as error:
        print(f"error: {error}\n\n{HOW_TO_GET_AN_SDK}", file=sys.stderr)
        return 2

    if args.update_manifest:
        sys.path.insert(0, str(TOOLS))
        import metal_api_manifest  # noqa: E402
        return metal_api_manifest.update(sdk, DEVICE_METAL)

    tools = Tools.find()
    if tools.clang is None:
        print("error: no clang found: install clang (clang-16) or set GPTOSS_CLANG", file=sys.stderr)
        return 2
    print(f"SDK {sdk.path} ({sdk.layout} layout, macOS {sdk.version}); target {TARGET}; clang {' '.join(tools.clang)}",
          flush=True)
    wanted = set(args.steps.split(",")) if args.steps else None
    tmp_dir = tempfile.mkdtemp(prefix="gptoss-macos-sdk-")
    tmp = Path(tmp_dir)
    results: list[StepResult] = []
    try:
        def want(step: str) -> bool:
            return wanted is None or step in wanted

        objects: list[Path] = []
        if want("objc-typecheck"):
            results.append(step_objc_typecheck(sdk, tools, tmp)); print_result(results[-1])
        if want("c-sources"):
            results.append(step_c_sources(sdk, tools, tmp, jobs, objects)); print_result(results[-1])
        if want("embedded-library"):
            results.append(step_embedded_library(sdk, tools, tmp, objects)); print_result(results[-1])
        if want("objc-link"):
            # The C core and the embedded library (when they compiled) are linked in too, so their libc
            # dependencies are checked against the SDK as well.
            results.append(step_objc_link(sdk, tools, tmp, objects)); print_result(results[-1])
        if want("cpu-layer"):
            results.append(step_cpu_layer(sdk, tools, tmp, jobs)); print_result(results[-1])
        if want("api-manifest"):
            results.append(step_api_manifest(sdk)); print_result(results[-1])
    finally:
        if args.keep:
            print(f"build directory kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    failed = [r.name for r in results if not r.ok]
    print(f"{len(results) - len(failed)} of {len(results)} steps passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
