#!/usr/bin/env python3
"""Embed the Metal kernel libraries in the binary as C byte arrays (run by metal/source/metal.cmake).

    embed_metal.py sources   --output OUT.c --root ROOT --include-dir DIR [--include-dir ...] FILE.metal...
    embed_metal.py metallibs --output OUT.c --root ROOT FILE.metal=FILE.metallib...
    embed_metal.py inline    --output OUT.metal --root ROOT --include-dir DIR FILE.metal

``sources`` is the mode for machines with only the Command Line Tools (no ``metal`` compiler): each
kernel file is embedded as MSL source with every project include (``#include <internal/...>``)
inlined, because a library compiled at run time (newLibraryWithSource:options:error:) has no include
search path. ``#line`` markers keep compiler messages pointing at the original files.
``metallibs`` embeds .metallib files compiled at build time by Xcode's ``metal``/``metallib``.
``inline`` writes one inlined source (for debugging what the runtime compiles).

Both C outputs define the table declared in metal/tools/embedded-metal-library.h, one entry per
kernel file with the names of the kernels it defines. Pure Python (no macOS needed), so the
generators are tested on Linux (tests/test_metal_build_scripts.py).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

_INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
_PRAGMA_ONCE = re.compile(r"^\s*#\s*pragma\s+once\b")
# `kernel void name(` (the project's style) and `[[kernel]] void name(`.
_KERNEL = re.compile(r"(?:\bkernel|\[\[\s*kernel\s*\]\])\s+void\s+([A-Za-z_]\w*)\s*\(")
_MAX_INCLUDE_DEPTH = 32


class EmbedError(Exception):
    """A problem with the kernel sources: reported as one line naming the file, and exit status 1."""


def _strip_comments(text: str) -> str:
    """Blank out // and /* */ comments (keeping newlines, so line numbers stay) outside string literals."""
    out: list[str] = []
    i, n = 0, len(text)
    in_block = in_line = False
    quote = ""
    while i < n:
        c = text[i]
        two = text[i:i + 2]
        if in_block:
            if two == "*/":
                in_block = False
                out.append("  ")
                i += 2
                continue
            out.append("\n" if c == "\n" else " ")
        elif in_line:
            if c == "\n":
                in_line = False
                out.append(c)
            else:
                out.append(" ")
        elif quote:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == quote or c == "\n":
                quote = ""
        elif two == "/*":
            in_block = True
            out.append("  ")
            i += 2
            continue
        elif two == "//":
            in_line = True
            out.append("  ")
            i += 2
            continue
        else:
            if c in "\"'":
                quote = c
            out.append(c)
        i += 1
    return "".join(out)


def _display_name(path: Path, root: Path) -> str:
    """The path relative to the project root (no absolute build paths end up in the binary)."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def _resolve_include(name: str, quoted: bool, including_dir: Path, include_dirs: list[Path]) -> Path | None:
    candidates = ([including_dir] if quoted else []) + include_dirs
    for directory in candidates:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None  # a system header (<metal_stdlib>): left for the Metal compiler


def inline_includes(path: Path, include_dirs: list[Path], root: Path) -> str:
    """MSL source of `path` with every include found in include_dirs (or next to the file, for "")
    inlined once per #pragma-once header, framed by #line markers; other includes are kept."""
    once_seen: set[Path] = set()

    def expand(file: Path, depth: int, stack: tuple[Path, ...]) -> list[str]:
        if depth > _MAX_INCLUDE_DEPTH:
            raise EmbedError(f"{_display_name(file, root)}: includes nest deeper than {_MAX_INCLUDE_DEPTH} "
                             f"(cycle through {' -> '.join(_display_name(p, root) for p in stack)}?)")
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise EmbedError(f"{_display_name(file, root)}: cannot read: {error}") from error
        raw_lines = text.splitlines()
        code_lines = _strip_comments(text).splitlines()
        name = _display_name(file, root)
        out: list[str] = []
        for number, (raw, code) in enumerate(zip(raw_lines, code_lines), start=1):
            if _PRAGMA_ONCE.match(code):
                once_seen.add(file.resolve())
                out.append(f"// (#pragma once of {name})")
                continue
            match = _INCLUDE.match(code)
            if match is None:
                out.append(raw)
                continue
            quoted, header = match.group(1) == '"', match.group(2).strip()
            resolved = _resolve_include(header, quoted, file.parent, include_dirs)
            if resolved is None:
                out.append(raw)
                continue
            if resolved.resolve() in once_seen:
                out.append(f"// {raw.strip()} (already inlined)")
                continue
            out.append(f"// {raw.strip()} (inlined)")
            out.append(f'#line 1 "{_display_name(resolved, root)}"')
            out.extend(expand(resolved, depth + 1, stack + (resolved,)))
            out.append(f'#line {number + 1} "{name}"')
        return out

    lines = [f'#line 1 "{_display_name(path, root)}"'] + expand(path, 0, (path,))
    return "\n".join(lines) + "\n"


def kernel_names(source: str) -> list[str]:
    """The compute kernels a .metal source defines, in order."""
    return _KERNEL.findall(_strip_comments(source))


@dataclass
class Library:
    name: str               # e.g. "metal/source/kernels/matmul.metal"
    kind: str               # "source" or "metallib"
    data: bytes
    kernels: list[str]


def _c_string(text: str) -> str:
    if not re.fullmatch(r"[\w./+\- ]*", text):
        raise EmbedError(f"{text!r}: unexpected characters for an embedded name")
    return f'"{text}"'


def _c_bytes(data: bytes) -> str:
    rows = []
    for start in range(0, len(data), 20):
        rows.append("    " + ", ".join(f"0x{b:02x}" for b in data[start:start + 20]) + ",")
    return "\n".join(rows)


def generate_c(libraries: list[Library], generator_args: str) -> str:
    """The C file defining gptoss_embedded_metal_libraries (see embedded-metal-library.h)."""
    if not libraries:
        raise EmbedError("no kernel files given: a Metal layer without kernels cannot run anything")
    owners: dict[str, str] = {}
    for library in libraries:
        if not library.kernels:
            raise EmbedError(f"{library.name}: defines no `kernel void NAME(` function")
        for kernel in library.kernels:
            if kernel in owners:
                raise EmbedError(f"kernel {kernel} is defined by both {owners[kernel]} and {library.name}")
            owners[kernel] = library.name
    out = [
        "/* Generated by metal/tools/embed_metal.py: do not edit. */",
        f"/* {generator_args} */",
        "#include <stddef.h>",
        "",
        '#include "embedded-metal-library.h"',
        "",
    ]
    entries = []
    for index, library in enumerate(libraries):
        data = library.data + (b"\0" if library.kind == "source" else b"")
        out.append(f"/* {library.name}: {library.kind}, {len(library.data)} bytes */")
        out.append(f"static const unsigned char gptoss_metal_data_{index}[{len(data)}] = {{")
        out.append(_c_bytes(data))
        out.append("};")
        names = ", ".join(_c_string(k) for k in library.kernels)
        out.append(f"static const char* const gptoss_metal_kernels_{index}[] = {{{names}, NULL}};")
        out.append("")
        kind = "gptoss_embedded_metal_kind_source" if library.kind == "source" else "gptoss_embedded_metal_kind_metallib"
        digest = hashlib.sha256(library.data).hexdigest()
        entries.append(f"    {{{_c_string(library.name)}, {kind}, gptoss_metal_data_{index}, {len(library.data)}u, "
                       f'"{digest}", gptoss_metal_kernels_{index}}},')
    out.append("const struct gptoss_embedded_metal_library gptoss_embedded_metal_libraries[] = {")
    out.extend(entries)
    out.append("};")
    out.append(f"const size_t gptoss_embedded_metal_library_count = {len(libraries)};")
    return "\n".join(out) + "\n"


def _write_if_changed(path: Path, text: str) -> None:
    """Leave an unchanged output untouched, so its dependants are not rebuilt."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def source_libraries(files: list[Path], include_dirs: list[Path], root: Path) -> list[Library]:
    libraries = []
    for file in files:
        text = inline_includes(file, include_dirs, root)
        libraries.append(Library(_display_name(file, root), "source", text.encode("utf-8"), kernel_names(text)))
    return libraries


def metallib_libraries(pairs: list[str], root: Path) -> list[Library]:
    libraries = []
    for pair in pairs:
        source, sep, metallib = pair.partition("=")
        if not sep:
            raise EmbedError(f"{pair}: expected FILE.metal=FILE.metallib")
        source_path, metallib_path = Path(source), Path(metallib)
        try:
            text = source_path.read_text(encoding="utf-8")
            data = metallib_path.read_bytes()
        except (OSError, UnicodeDecodeError) as error:
            raise EmbedError(f"{pair}: cannot read: {error}") from error
        # Every .metallib starts with the magic "MTLB"; anything else is a failed or foreign build.
        if not data.startswith(b"MTLB"):
            raise EmbedError(f"{metallib_path}: not a .metallib (no MTLB magic at the start)")
        libraries.append(Library(_display_name(source_path, root), "metallib", data, kernel_names(text)))
    return libraries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("sources", "metallibs", "inline"):
        p = sub.add_parser(name)
        p.add_argument("--output", required=True, type=Path)
        p.add_argument("--root", required=True, type=Path, help="project root: embedded names are relative to it")
        if name != "metallibs":
            p.add_argument("--include-dir", action="append", default=[], type=Path)
        p.add_argument("inputs", nargs="+")
    args = parser.parse_args(argv)
    summary = f"{args.command}: {len(args.inputs)} kernel file(s)"
    try:
        if args.command == "sources":
            text = generate_c(source_libraries([Path(f) for f in args.inputs], args.include_dir, args.root), summary)
        elif args.command == "metallibs":
            text = generate_c(metallib_libraries(args.inputs, args.root), summary)
        else:
            if len(args.inputs) != 1:
                raise EmbedError("inline takes exactly one .metal file")
            text = inline_includes(Path(args.inputs[0]), args.include_dir, args.root)
    except EmbedError as error:
        print(f"embed_metal.py: error: {error}", file=sys.stderr)
        return 1
    _write_if_changed(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
