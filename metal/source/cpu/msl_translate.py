#!/usr/bin/env python3
"""Translate a Metal Shading Language kernel file into C++ for the MSL CPU execution layer.

The rewrites are mechanical and keep every source line on its line (a single ``#line`` directive
then maps compiler errors, fault messages and debugger positions back to the .metal file):

* address-space pointers ``device T*``, ``const device T*``, ``constant T*`` become
  ``::msl_rt::device_ptr<[const] T>`` (bounds-checked against the bound buffer), ``threadgroup T*``
  becomes ``::msl_rt::threadgroup_ptr<T>``; ``thread T*`` / any ``space T&`` lose the qualifier;
* ``threadgroup T name[N]...;`` in a kernel body becomes a reference into the threadgroup's storage,
  laid out by a struct emitted just before the kernel (arrays get a checked subscript);
* remaining ``constant`` declarations (program scope) become ``static const``;
* ``kernel void f(...)`` becomes a static C++ function without attributes, plus a generated entry
  thunk binding ``[[buffer(n)]]``, ``[[threadgroup(n)]]`` and built-in arguments, and a table entry;
* ``1.0h`` half literals become ``half(1.0f)``; reinterpret/static casts to address-space pointer
  types become the checked pointer's explicit conversion.

Anything outside the supported subset stops the build with ``file:line: error: ...``.

Usage:
  msl_translate.py translate INPUT.metal OUTPUT.cpp --id ID [--display-path PATH]
  msl_translate.py registry OUTPUT.cpp GENERATED.cpp...
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field

IDENT = r"[A-Za-z_]\w*"
# A type name: optionally qualified, with up to two levels of template arguments.
TEMPLATE_ARGS = r"<(?:[^<>;{}()]|<(?:[^<>;{}()]|<[^<>;{}()]*>)*>)*>"
TYPE = rf"(?:::)?{IDENT}(?:::{IDENT})*(?:\s*{TEMPLATE_ARGS})?"
QUALS = r"(?:(?:const|volatile)\s+)*"
SPACE_POINTER = re.compile(
    rf"(?<![\w.:])(?P<q1>{QUALS})(?P<space>device|constant|threadgroup|thread)\s+(?P<q2>{QUALS})"
    rf"(?P<type>{TYPE})\s*(?P<q3>(?:\s*(?:const|volatile)\b)*)\s*(?P<kind>\*|&)"
)
THREADGROUP_VARIABLE = re.compile(
    rf"(?<![\w.:])threadgroup\s+(?P<type>{TYPE})\s+(?P<name>{IDENT})\s*(?P<dims>(?:\[[^\]\[;]+\]\s*)*);"
)
KERNEL_HEAD = re.compile(
    rf"(?P<attr>\[\[\s*max_total_threads_per_threadgroup\s*\((?P<max>[^)]*)\)\s*\]\]\s*)?"
    rf"(?P<kw>\bkernel\b|\[\[\s*kernel\s*\]\])\s+void\s+(?P<name>{IDENT})\s*\("
)
HALF_LITERAL = re.compile(r"(?<![\w.])((?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)[hH]\b")
CAST_TO_CHECKED = re.compile(r"\b(?:reinterpret_cast|static_cast)\s*<\s*(?=::msl_rt::(?:device|threadgroup)_ptr<)")

BUILTINS = {
    "thread_position_in_grid",
    "thread_position_in_threadgroup",
    "threadgroup_position_in_grid",
    "threads_per_threadgroup",
    "threadgroups_per_grid",
    "threads_per_grid",
    "thread_index_in_threadgroup",
    "simdgroup_index_in_threadgroup",
    "thread_index_in_simdgroup",
    "simdgroups_per_threadgroup",
    "threads_per_simdgroup",
}
BUILTIN_ALIASES = {"thread_execution_width": "threads_per_simdgroup"}

REJECTED = [
    (re.compile(r"\btemplate\s*\[\[\s*host_name"), "explicit kernel instantiations with [[host_name]] are not supported; "
     "write one `kernel void` function per kernel name"),
    (re.compile(r"\b(?:vertex|fragment)\s+\w+\s*\w*\s*\("), "vertex and fragment functions are not supported (compute kernels only)"),
    (re.compile(r"\b(?:texture[123]d\w*|depth2d\w*|sampler)\b"), "textures and samplers are not supported"),
    (re.compile(r"\[\[\s*function_constant"), "function constants are not supported"),
    (re.compile(r"\bimageblock\b"), "imageblocks are not supported"),
    (re.compile(r"\bquad_\w+\s*\("), "quad-group functions are not supported"),
]


class TranslationError(Exception):
    pass


@dataclass
class KernelParam:
    type_text: str
    name: str
    attribute: str


@dataclass
class Kernel:
    name: str
    line: int
    max_threads: str
    params: list[KernelParam] = field(default_factory=list)
    buffer_mask: int = 0
    threadgroup_mask: int = 0
    has_threadgroup_vars: bool = False


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def mask_comments(text: str) -> str:
    """Replace comments by spaces (keeping newlines) so rewrites never look inside them."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join("\n" if ch == "\n" else " " for ch in text[i:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching(text: str, start: int, open_ch: str, close_ch: str) -> int:
    """Index of the bracket closing the one at text[start]."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_ch:
            depth += 1
        elif text[i] == close_ch:
            depth -= 1
            if depth == 0:
                return i
    raise TranslationError(f"line {line_of(text, start)}: unbalanced '{open_ch}'")


def split_top_level(text: str, sep: str = ",") -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "(<[{":
            depth += 1
        elif ch in ")>]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def rewrite_pointer_types(text: str) -> str:
    def replace(m: re.Match[str]) -> str:
        quals = m.group("q1") + " " + m.group("q2") + " " + m.group("q3")
        const = "const " if ("const" in quals.split() or m.group("space") == "constant") else ""
        type_text = " ".join(m.group("type").split())
        space, kind = m.group("space"), m.group("kind")
        if kind == "&" or space == "thread":
            return f"{const}{type_text}{kind}"
        wrapper = "::msl_rt::threadgroup_ptr" if space == "threadgroup" else "::msl_rt::device_ptr"
        return f"{wrapper}<{const}{type_text}>"

    previous = None
    while previous != text:  # pointers to pointers, nested template arguments
        previous = text
        text = SPACE_POINTER.sub(replace, text)
    return text


def remove_casts_to_checked(text: str) -> str:
    """reinterpret_cast<::msl_rt::device_ptr<T>>(x) -> ::msl_rt::device_ptr<T>(x) (explicit conversion)."""
    while True:
        m = CAST_TO_CHECKED.search(text)
        if not m:
            return text
        type_start = m.end()
        depth, i = 1, type_start
        while depth:
            if text[i] == "<":
                depth += 1
            elif text[i] == ">":
                depth -= 1
            i += 1
        text = text[: m.start()] + text[type_start : i - 1] + text[i:]


def checked_array_type(type_text: str, dims: str) -> str:
    sizes = re.findall(r"\[([^\]]+)\]", dims)
    result = type_text
    for size in reversed(sizes):
        result = f"::msl_rt::tg_array<{result}, {size.strip()}>"
    return result


def parse_param(text: str, kernel: str, line: int) -> KernelParam:
    m = re.search(r"\[\[(.*)\]\]\s*$", text, re.S)
    if not m:
        raise TranslationError(f"line {line}: parameter '{' '.join(text.split())}' of kernel {kernel} has no "
                               "[[buffer(n)]], [[threadgroup(n)]] or built-in attribute")
    declaration = text[: m.start()].strip()
    attribute = " ".join(m.group(1).split())
    name_match = re.search(rf"({IDENT})\s*$", declaration)
    if not name_match:
        raise TranslationError(f"line {line}: cannot find the parameter name in '{declaration}' (kernel {kernel})")
    type_text = declaration[: name_match.start()].strip()
    return KernelParam(type_text=type_text, name=name_match.group(1), attribute=attribute)


def thunk_argument(param: KernelParam, kernel: Kernel, line: int) -> str:
    rewritten = " ".join(rewrite_pointer_types(param.type_text + " ").split())
    attribute = param.attribute
    m = re.fullmatch(r"(buffer|threadgroup)\s*\(\s*(\d+)\s*\)", attribute)
    if m:
        index = int(m.group(2))
        if index >= 31:
            raise TranslationError(f"line {line}: [[{attribute}]] of kernel {kernel.name}: indices are 0..30")
        if m.group(1) == "buffer":
            kernel.buffer_mask |= 1 << index
            if rewritten.endswith("&"):
                base = rewritten[:-1].strip()
                if not base.startswith("const "):
                    raise TranslationError(f"line {line}: [[buffer({index})]] reference '{param.type_text}' must be "
                                           "`constant T&` (device references to whole buffers are not supported)")
                return f"::msl_rt::bind_constant_reference<{base[len('const '):]}>(l, {index})"
            if not rewritten.startswith("::msl_rt::device_ptr<"):
                raise TranslationError(f"line {line}: [[buffer({index})]] parameter '{param.type_text} {param.name}' "
                                       "must be a device or constant pointer or a constant reference")
            return f"::msl_rt::bind_buffer<{rewritten}>(l, {index})"
        kernel.threadgroup_mask |= 1 << index
        if not rewritten.startswith("::msl_rt::threadgroup_ptr<"):
            raise TranslationError(f"line {line}: [[threadgroup({index})]] parameter must be a threadgroup pointer")
        return f"::msl_rt::bind_threadgroup<{rewritten}>(l, {index})"
    builtin = BUILTIN_ALIASES.get(attribute, attribute)
    if builtin in BUILTINS:
        return f"::msl_rt::bind_builtin<{rewritten}>(l, ::msl_rt::builtin::{builtin})"
    raise TranslationError(f"line {line}: kernel {kernel.name}: unsupported parameter attribute [[{attribute}]]")


def check_rejected(text: str) -> None:
    for pattern, message in REJECTED:
        m = pattern.search(text)
        if m:
            raise TranslationError(f"line {line_of(text, m.start())}: {message}")


def translate(source: str, display_path: str, file_id: str, output_path: str = "generated.cpp") -> tuple[str, list[Kernel]]:
    text = mask_comments(source)
    check_rejected(text)
    kernels: list[Kernel] = []
    pieces: list[str] = []
    pos = 0
    kernel_spans: list[tuple[int, int]] = []
    for m in KERNEL_HEAD.finditer(text):
        if m.start() < pos:
            continue
        name = m.group("name")
        line = line_of(text, m.start())
        open_paren = m.end() - 1
        close_paren = matching(text, open_paren, "(", ")")
        body_open = text.find("{", close_paren)
        if body_open < 0 or text[close_paren + 1 : body_open].strip():
            raise TranslationError(f"line {line}: kernel {name}: expected a function body after the parameters")
        body_close = matching(text, body_open, "{", "}")
        kernel = Kernel(name=name, line=line, max_threads=(m.group("max") or "1024").strip())
        params_text = text[open_paren + 1 : close_paren]
        kernel.params = [parse_param(p, name, line) for p in split_top_level(params_text)]
        thunk_args = [thunk_argument(p, kernel, line) for p in kernel.params]

        # Threadgroup variables of the body: hoisted into a struct laid out in threadgroup memory.
        body = text[body_open : body_close + 1]
        struct_name = f"msl_threadgroup_{name}"
        members = []

        def replace_variable(vm: re.Match[str]) -> str:
            index = len(members)
            member_type = checked_array_type(" ".join(vm.group("type").split()), vm.group("dims"))
            members.append(f"{member_type} v{index};")
            return f"auto& {vm.group('name')} = ::msl_rt::threadgroup_variables<{struct_name}>().v{index};"

        body = THREADGROUP_VARIABLE.sub(replace_variable, body)
        kernel.has_threadgroup_vars = bool(members)
        prefix = f"struct {struct_name} {{ {' '.join(members)} }}; " if members else ""
        params_rewritten = ", ".join(
            " ".join(rewrite_pointer_types(p.type_text + " ").split()) + " " + p.name for p in kernel.params
        )
        newlines = "\n" * text.count("\n", m.start(), body_open)
        pieces.append(text[pos : m.start()])
        pieces.append(f"{prefix}static void {name}({params_rewritten}){newlines} ")
        pieces.append(body)
        pos = body_close + 1
        kernel.thunk_args = thunk_args  # type: ignore[attr-defined]
        kernels.append(kernel)
        kernel_spans.append((m.start(), body_close))
    pieces.append(text[pos:])
    text = "".join(pieces)

    m = THREADGROUP_VARIABLE.search(text)
    if m:
        raise TranslationError(f"line {line_of(text, m.start())}: threadgroup variable '{m.group('name')}' outside a "
                               "kernel body (MSL allows them only in kernel functions)")
    text = rewrite_pointer_types(text)
    text = remove_casts_to_checked(text)
    text = re.sub(r"(?<![\w.:])constant\s+", "static const ", text)
    text = HALF_LITERAL.sub(lambda hm: f"half({hm.group(1) if ('.' in hm.group(1) or 'e' in hm.group(1).lower()) else hm.group(1) + '.0'}f)", text)
    text = re.sub(r"(?<![\w.:])thread\s+(?=[A-Za-z_])", "", text)
    for keyword in ("device", "threadgroup"):
        km = re.search(rf"(?<![\w.:]){keyword}\s+[A-Za-z_]", text)
        if km:
            raise TranslationError(f"line {line_of(text, km.start())}: unsupported use of the '{keyword}' address space "
                                   "(supported: pointers and references, threadgroup variables in kernel bodies)")
    if not kernels and "kernel" in text and re.search(r"\bkernel\b", text):
        km = re.search(r"\bkernel\b", text)
        raise TranslationError(f"line {line_of(text, km.start())}: unrecognised kernel declaration "
                               "(expected `kernel void name(...) {`)")

    path_literal = display_path.replace("\\", "\\\\").replace('"', '\\"')
    out = [
        f"// Generated by msl_translate.py from {display_path}: do not edit.\n",
        "#include <metal_stdlib>\n",
        f"#line 1 \"{path_literal}\"\n",
        text,
        "\n",
    ]
    generated_line = "".join(out).count("\n") + 2
    out.append(f'#line {generated_line} "{output_path}"\n')
    out.append("// ---- Entry thunks and kernel table (generated) ----\n")
    for kernel in kernels:
        args = ",\n        ".join(kernel.thunk_args)  # type: ignore[attr-defined]
        out.append(f"static void msl_thunk_{kernel.name}(::msl_rt::lane* l) {{\n    (void) l;\n    {kernel.name}(\n        {args});\n}}\n")
    out.append(f'extern "C" const ::msl_rt::kernel_desc msl_rt_kernels_{file_id}[] = {{\n')
    for kernel in kernels:
        static_size = f"sizeof(msl_threadgroup_{kernel.name})" if kernel.has_threadgroup_vars else "0"
        out.append(
            f'    {{"{kernel.name}", &msl_thunk_{kernel.name}, {kernel.max_threads}, {static_size}, '
            f"UINT64_C({kernel.buffer_mask}), UINT64_C({kernel.threadgroup_mask}), \"{path_literal}\", {kernel.line}}},\n"
        )
    out.append("    {nullptr, nullptr, 0, 0, 0, 0, nullptr, 0},\n};\n")
    out.append(f"// msl-kernels: {' '.join(k.name for k in kernels)}\n")
    return "".join(out), kernels


def write_if_changed(path: str, content: str) -> None:
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == content:
                return
    except OSError:
        pass
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)


def registry(output: str, generated: list[str]) -> None:
    ids, seen = [], {}
    for path in generated:
        with open(path, encoding="utf-8") as f:
            content = f.read()
        file_id = re.search(r"msl_rt_kernels_(\w+)\[\]", content).group(1)
        names = re.search(r"^// msl-kernels:(.*)$", content, re.M).group(1).split()
        for name in names:
            if name in seen:
                raise TranslationError(f"kernel {name} is defined in both {seen[name]} and {path}")
            seen[name] = path
        ids.append(file_id)
    lines = ["// Generated by msl_translate.py: every translated kernel file's table.",
             '#include "msl/msl_rt_core.h"', "", "#include <cstring>", ""]
    lines += [f'extern "C" const msl_rt::kernel_desc msl_rt_kernels_{i}[];' for i in ids]
    lines += ["", "namespace msl_rt {", "", "static const kernel_desc* const kernel_tables[] = {"]
    lines += [f"    msl_rt_kernels_{i}," for i in ids]
    lines += ["    nullptr,", "};", "",
              "const kernel_desc* find_kernel(const char* name) {",
              "    for (const kernel_desc* const* table = kernel_tables; *table != nullptr; table++) {",
              "        for (const kernel_desc* k = *table; k->name != nullptr; k++) {",
              "            if (std::strcmp(k->name, name) == 0) {",
              "                return k;",
              "            }",
              "        }",
              "    }",
              "    return nullptr;",
              "}", "", "}  // namespace msl_rt", ""]
    write_if_changed(output, "\n".join(lines))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("translate")
    t.add_argument("input")
    t.add_argument("output")
    t.add_argument("--id", required=True, help="C identifier suffix unique to this file")
    t.add_argument("--display-path", help="path used in #line and fault messages (default: absolute input path)")
    r = sub.add_parser("registry")
    r.add_argument("output")
    r.add_argument("generated", nargs="*")
    args = parser.parse_args(argv)
    if args.command == "translate":
        display = args.display_path or os.path.abspath(args.input)
        with open(args.input, encoding="utf-8") as f:
            source = f.read()
        try:
            content, _ = translate(source, display, args.id, os.path.abspath(args.output))
        except TranslationError as e:
            located = re.match(r"line (\d+): (.*)", str(e), re.S)
            if located:
                print(f"{display}:{located.group(1)}: error: {located.group(2)}", file=sys.stderr)
            else:
                print(f"{display}: error: {e}", file=sys.stderr)
            return 1
        write_if_changed(args.output, content)
        return 0
    try:
        registry(args.output, args.generated)
    except TranslationError as e:
        print(f"msl_translate.py registry: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
