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
    rf"(?P<attr>\[\[\s*max_total_threads_per_threadgroup\s*\((?P<max>(?:[^()]|\((?:[^()]|\([^()]*\))*\))*)\)\s*\]\]\s*)?"
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
    return [part for part, _ in split_top_level_with_offsets(text, sep)]


def split_top_level_with_offsets(text: str, sep: str = ",") -> list[tuple[str, int]]:
    """Parts of text separated by `sep` outside brackets, each with the offset of its first non-blank character."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "(<[{":
            depth += 1
        elif ch in ")>]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append((text[start:i], start))
            start = i + 1
    parts.append((text[start:], start))
    return [(p, offset + len(p) - len(p.lstrip())) for p, offset in parts if p.strip()]


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


# ---- Metal rules: what the Metal compiler (-std=metal3.1, Apple7+ GPUs) would reject ----
# Each check raises TranslationError("line N: ...") naming the rule and the MSL specification section
# it comes from (docs/msl-cpu.md, "Metal rules the translator enforces").

METAL_STD = "metal3.1"
MAX_THREADS_PER_THREADGROUP = 1024
MAX_THREADGROUP_MEMORY = 32768
ATOMIC_ULONG_MACRO = "__HAVE_ATOMIC_ULONG_MIN_MAX__"
# GPU families whose compiler defines ATOMIC_ULONG_MACRO (64-bit atomic min/max): Apple9 (M3) and later.
GPU_FAMILIES = {"apple7": False, "apple8": False, "apple9": True}
DEFAULT_GPU_FAMILY = "apple9"

# MSL spec 5.2.3.6 "Kernel Function Input Attributes" (Table 5.8): the grid-position attributes take
# ushort, ushort2, ushort3, uint, uint2 or uint3; the index/count attributes ushort or uint.
POSITION_ATTRIBUTES = (
    "thread_position_in_grid",
    "thread_position_in_threadgroup",
    "threadgroup_position_in_grid",
    "threads_per_threadgroup",
    "threadgroups_per_grid",
    "threads_per_grid",
)
SCALAR_ATTRIBUTES = (
    "thread_index_in_threadgroup",
    "simdgroup_index_in_threadgroup",
    "thread_index_in_simdgroup",
    "simdgroups_per_threadgroup",
    "threads_per_simdgroup",
    "thread_execution_width",
)
POSITION_TYPES = ("ushort", "ushort2", "ushort3", "uint", "uint2", "uint3")
SCALAR_TYPES = ("ushort", "uint")
TYPE_ALIASES = {
    "unsigned int": "uint", "uint32_t": "uint", "unsigned": "uint",
    "unsigned short": "ushort", "uint16_t": "ushort",
    "vec<uint, 2>": "uint2", "vec<uint, 3>": "uint3", "vec<ushort, 2>": "ushort2", "vec<ushort, 3>": "ushort3",
}

# MSL spec 2.1 "Scalar Data Types" (Table 2.1) lists bool, char/int8_t, uchar/uint8_t, short/int16_t,
# ushort/uint16_t, int/int32_t, uint/uint32_t, long/int64_t, ulong/uint64_t, half, bfloat, float,
# size_t, ptrdiff_t and void, and says Metal does not support double, long long, unsigned long long
# and long double. The C/C++ library types below are not MSL types either (spec 1.5.4: no C++
# standard library).
NON_MSL_TYPES = [
    (re.compile(r"\blong\s+double\b"), "long double"),
    (re.compile(r"\bdouble\b"), "double"),
    (re.compile(r"\blong\s+long\b"), "long long"),
    (re.compile(r"\b(?:u?intptr_t)\b"), None),
    (re.compile(r"\b(?:u?intmax_t|ssize_t|off_t|wchar_t|char8_t|char16_t|char32_t|__int128|__uint128_t|__int128_t)\b"), None),
    (re.compile(r"\bu?int_(?:least|fast)(?:8|16|32|64)_t\b"), None),
]
STD_NAMESPACE = re.compile(r"(?<![\w:])std\s*::\s*\w+")

# MSL 3.1 is based on C++14 (spec 1.5 "Metal and C++14"): C++17 syntax is rejected.
CXX17_SYNTAX = [
    (re.compile(r"\bif\s+constexpr\b"), "`if constexpr` is C++17"),
    (re.compile(rf"\bauto\s*(?:&&?)?\s*\[\s*{IDENT}\s*(?:,\s*{IDENT}\s*)*\]"), "structured bindings are C++17"),
    (re.compile(r"\(\s*\.\.\.\s*(?:<<=|>>=|<<|>>|&&|\|\||[-+*/%^&|=<>!]=?|,)"), "fold expressions are C++17"),
    (re.compile(r"(?:<<=|>>=|<<|>>|&&|\|\||[-+*/%^&|=<>!]=?|,)\s*\.\.\.\s*\)"), "fold expressions are C++17"),
    (re.compile(rf"\binline\s+(?:(?:static|constexpr|const|constant|volatile)\s+)*{TYPE}\s*[*&]?\s*{IDENT}\s*(?:=|;|\[|\{{)"),
     "inline variables are C++17"),
    (re.compile(rf"\bnamespace\s+{IDENT}\s*::"), "nested namespace definitions (`namespace a::b`) are C++17"),
    (re.compile(r"\[\[\s*(?:nodiscard|maybe_unused|fallthrough)\b"), "the [[nodiscard]], [[maybe_unused]] and [[fallthrough]] attributes are C++17"),
    (re.compile(r"\btemplate\s*<\s*auto\b"), "`template <auto>` parameters are C++17"),
]
# Metal 3.2 only (MSL spec 3.2, 1.3 "New in Metal 3.2"; MTLMathMode is macOS 15): the project compiles
# with -std=metal3.1.
METAL32_ONLY = [
    (re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+METAL[ \t]+fp[ \t]+math_mode\b", re.M),
     "`#pragma METAL fp math_mode` is Metal 3.2; this project compiles with -std=metal3.1 "
     "(use `#pragma METAL fp contract(off)` and the host's math mode instead)"),
]
# 64-bit atomics (MSL spec 6.15.4 "Atomic Functions", 2.6 "Atomic Data Types"): atomic_ulong and
# atomic_min/max_explicit on it exist only where the compiler defines __HAVE_ATOMIC_ULONG_MIN_MAX__
# (Apple9 family GPUs: M3 and later; not M1/M2).
ATOMIC_ULONG_USE = re.compile(
    r"\batomic_ulong\b|\batomic_long\b|\batomic\s*<\s*(?:metal\s*::\s*)?(?:ulong|long|uint64_t|int64_t|unsigned\s+long)\s*>"
    r"|\batomic_(?:min|max)_explicit\s*\("
)


def mask_strings(text: str) -> str:
    """Blank the contents of string and character literals (keeping their length and newlines)."""
    return re.sub(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'', lambda m: m.group(0)[0] + " " * (len(m.group(0)) - 2) + m.group(0)[-1], text)


def line_starts(text: str) -> list[int]:
    starts = [0]
    for m in re.finditer(r"\n", text):
        starts.append(m.end())
    return starts


def guarded_lines(text: str, macro: str) -> set[int]:
    """Lines inside a preprocessor branch that holds only if `macro` is defined: `#ifdef M`, `#if defined(M)`,
    `#if M` (also with `&& ...`), `#elif` likewise, the `#else` of `#ifndef M` / `#if !defined(M)`."""
    guarded: set[int] = set()
    stack: list[tuple[bool, bool]] = []  # (this branch needs the macro, the #else branch would)
    name = rf"(?:defined\s*\(\s*{macro}\s*\)|defined\s+{macro}\b|{macro}\b)"

    def classify(condition: str) -> tuple[bool, bool]:
        condition = condition.strip()
        if "||" in condition:
            return False, False
        if re.fullmatch(rf"!\s*{name}", condition):
            return False, True
        return bool(re.search(rf"(?<![\w!]){name}", condition)) and not re.search(rf"!\s*{name}", condition), False

    for number, line in enumerate(text.split("\n"), start=1):
        m = re.match(r"\s*#\s*(ifdef|ifndef|if|elif|else|endif)\b(.*)", line)
        if not m:
            if any(entry[0] for entry in stack):
                guarded.add(number)
            continue
        directive, condition = m.group(1), m.group(2).strip()
        if directive == "ifdef":
            stack.append((condition == macro, False))
        elif directive == "ifndef":
            stack.append((False, condition == macro))
        elif directive == "if":
            stack.append(classify(condition))
        elif directive == "elif" and stack:
            stack[-1] = (classify(condition)[0], False)
        elif directive == "else" and stack:
            stack[-1] = (stack[-1][1], False)
        elif directive == "endif" and stack:
            stack.pop()
    return guarded


# ---- Translate-time evaluation of sizes (threadgroup memory, max_total_threads_per_threadgroup) ----

SCALAR_SIZES = {
    "bool": 1, "char": 1, "uchar": 1, "int8_t": 1, "uint8_t": 1, "unsigned char": 1,
    "short": 2, "ushort": 2, "int16_t": 2, "uint16_t": 2, "half": 2, "bfloat": 2, "unsigned short": 2,
    "int": 4, "uint": 4, "int32_t": 4, "uint32_t": 4, "float": 4, "unsigned int": 4, "unsigned": 4,
    "long": 8, "ulong": 8, "int64_t": 8, "uint64_t": 8, "size_t": 8, "ptrdiff_t": 8, "unsigned long": 8,
    "atomic_int": 4, "atomic_uint": 4, "atomic_float": 4, "atomic_bool": 1, "atomic_ulong": 8,
}
VECTOR_ELEMENTS = {"bool": "bool", "char": "char", "uchar": "uchar", "short": "short", "ushort": "ushort",
                   "int": "int", "uint": "uint", "long": "long", "ulong": "ulong", "half": "half",
                   "bfloat": "bfloat", "float": "float"}


def type_size_align(type_text: str) -> tuple[int, int] | None:
    t = " ".join(type_text.replace("metal::", "").split())
    t = re.sub(r"^(?:const|volatile)\s+", "", t)
    if t in SCALAR_SIZES:
        return SCALAR_SIZES[t], SCALAR_SIZES[t]
    m = re.fullmatch(r"atomic\s*<\s*(\w+(?:\s+\w+)?)\s*>", t)
    if m and m.group(1) in SCALAR_SIZES:
        return SCALAR_SIZES[m.group(1)], SCALAR_SIZES[m.group(1)]
    m = re.fullmatch(r"(packed_)?([a-z]+)([234])", t)
    if m and m.group(2) in VECTOR_ELEMENTS:
        element = SCALAR_SIZES[m.group(2)]
        n = int(m.group(3))
        if m.group(1):
            return element * n, element
        size = element * (4 if n == 3 else n)
        return size, size
    m = re.fullmatch(r"simdgroup_(float|half|bfloat)8x8", t)
    if m:
        return 64 * SCALAR_SIZES[m.group(1)], SCALAR_SIZES[m.group(1)]
    return None


class ConstantEvaluator:
    """Integer constant expressions over the object-like macros and `constant`/`constexpr` integers of
    the file and of the project headers it includes (metal/source/include)."""

    def __init__(self, text: str, include_dirs: list[str]):
        self.values: dict[str, str] = {}
        self._collect(text, include_dirs, set())

    def _collect(self, text: str, include_dirs: list[str], seen: set[str]) -> None:
        for m in re.finditer(r'^[ \t]*#[ \t]*include[ \t]*[<"]([^>"]+)[>"]', text, re.M):
            for directory in include_dirs:
                path = os.path.join(directory, m.group(1))
                if os.path.isfile(path) and path not in seen:
                    seen.add(path)
                    with open(path, encoding="utf-8") as f:
                        self._collect(mask_comments(f.read()), include_dirs, seen)
                    break
        for m in re.finditer(rf"^[ \t]*#[ \t]*define[ \t]+({IDENT})[ \t]+([^\n]*)$", text, re.M):
            self.values.setdefault(m.group(1), m.group(2).strip())
        for m in re.finditer(rf"\b(?:constant|constexpr)\s+(?:(?:constant|constexpr|const|static)\s+)*"
                             rf"(?:u?int|u?short|u?long|int32_t|uint32_t|size_t|unsigned(?:\s+int)?)\s+({IDENT})\s*=\s*([^;{{}}]+);",
                             text):
            self.values.setdefault(m.group(1), m.group(2).strip())

    def evaluate(self, expression: str) -> int | None:
        import ast

        text = expression
        for _ in range(32):
            replaced = re.sub(rf"\b{IDENT}\b", lambda m: f"({self.values[m.group(0)]})" if m.group(0) in self.values else m.group(0), text)
            if replaced == text:
                break
            text = replaced
        text = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", text)
        text = re.sub(r"\b(?:u?int|uint32_t|ushort|size_t)\s*\(", "(", text)  # uint(x) casts
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError:
            return None

        def value(node: ast.AST) -> int:
            if isinstance(node, ast.Expression):
                return value(node.body)
            if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
                return node.value
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Invert)):
                v = value(node.operand)
                return -v if isinstance(node.op, ast.USub) else (v if isinstance(node.op, ast.UAdd) else ~v)
            if isinstance(node, ast.BinOp):
                a, b = value(node.left), value(node.right)
                ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                       ast.Div: lambda: int(a / b), ast.FloorDiv: lambda: a // b, ast.Mod: lambda: a % b,
                       ast.LShift: lambda: a << b, ast.RShift: lambda: a >> b, ast.BitAnd: lambda: a & b,
                       ast.BitOr: lambda: a | b, ast.BitXor: lambda: a ^ b}
                if type(node.op) in ops:
                    return ops[type(node.op)]()
            raise ValueError(node)

        try:
            return value(tree)
        except (ValueError, ZeroDivisionError, RecursionError):
            return None


def check_source_rules(text: str) -> None:
    """File-wide rules on comment-masked source text."""
    code = mask_strings(text)
    for pattern, message in METAL32_ONLY:
        m = pattern.search(code)
        if m:
            raise TranslationError(f"line {line_of(code, m.start())}: {message}")
    no_directives = re.sub(r"^[ \t]*#[^\n]*", lambda m: " " * len(m.group(0)), code, flags=re.M)
    for pattern, name in NON_MSL_TYPES:
        m = pattern.search(no_directives)
        if m:
            type_name = name or m.group(0)
            raise TranslationError(f"line {line_of(code, m.start())}: '{type_name}' is not a Metal Shading Language type "
                                   "(MSL spec 2.1, Table 2.1: Metal has no double, long long, long double, "
                                   "intptr_t/uintptr_t or other C library types; use ulong, long, size_t or ptrdiff_t)")
    m = STD_NAMESPACE.search(no_directives)
    if m:
        raise TranslationError(f"line {line_of(code, m.start())}: '{' '.join(m.group(0).split())}': Metal has no C++ "
                               "standard library (MSL spec 1.5.4); use the metal:: equivalent")
    for pattern, message in CXX17_SYNTAX:
        m = pattern.search(no_directives)
        if m:
            raise TranslationError(f"line {line_of(code, m.start())}: {message}; -std={METAL_STD} is based on C++14 "
                                   "(MSL spec 1.5, Metal and C++14)")
    for m in re.finditer(r"\bstatic_assert\s*\(", no_directives):
        close = matching(no_directives, m.end() - 1, "(", ")")
        depth, has_message = 0, False
        for ch in no_directives[m.end():close]:  # a top-level comma; `<` may be a comparison here
            depth += ch in "([{"
            depth -= ch in ")]}"
            has_message |= ch == "," and depth == 0
        if not has_message:
            raise TranslationError(f"line {line_of(code, m.start())}: static_assert without a message is C++17; "
                                   f"-std={METAL_STD} is based on C++14 (MSL spec 1.5, Metal and C++14)")
    guarded = guarded_lines(code, ATOMIC_ULONG_MACRO)
    for m in ATOMIC_ULONG_USE.finditer(no_directives):
        line = line_of(code, m.start())
        if line not in guarded:
            raise TranslationError(
                f"line {line}: 64-bit atomics ('{' '.join(m.group(0).rstrip('(').split())}') need an Apple9-family GPU "
                f"(M3 or later; M1/M2 lack them): put them inside `#if defined({ATOMIC_ULONG_MACRO})` "
                "(MSL spec 6.15.4, Atomic Functions)")


def normalised_builtin_type(type_text: str) -> str:
    t = " ".join(type_text.replace("metal::", "").split())
    t = re.sub(r"^(?:const\s+)+|(?:\s+const)+$", "", t).strip()
    t = re.sub(r"\s*<\s*", "<", re.sub(r"\s*>\s*", ">", re.sub(r"\s*,\s*", ", ", t)))
    return TYPE_ALIASES.get(t, t)


def check_kernel_attribute_types(kernel_name: str, params: list[tuple[KernelParam, int]]) -> None:
    """MSL spec 5.2.3.6, Kernel Function Input Attributes (Table 5.8 and the notes after it)."""
    positions: list[tuple[str, str, str, int]] = []  # attribute, type, name, line
    by_attribute: dict[str, tuple[str, str, int]] = {}
    for param, line in params:
        attribute = param.attribute
        if attribute not in POSITION_ATTRIBUTES and attribute not in SCALAR_ATTRIBUTES:
            continue
        t = normalised_builtin_type(param.type_text)
        allowed = POSITION_TYPES if attribute in POSITION_ATTRIBUTES else SCALAR_TYPES
        if t not in allowed:
            raise TranslationError(f"line {line}: kernel {kernel_name}: [[{attribute}]] parameter '{param.name}' has type "
                                   f"'{param.type_text}'; Metal allows {', '.join(allowed)} (MSL spec 5.2.3.6, Table 5.8)")
        by_attribute[attribute] = (t, param.name, line)
        if attribute in POSITION_ATTRIBUTES:
            positions.append((attribute, t, param.name, line))
    # All grid-position attributes are scalars, or vectors with one number of components.
    def components(t: str) -> int:
        return int(t[-1]) if t[-1].isdigit() else 1

    for attribute, t, name, line in positions[1:]:
        first_attribute, first_t, first_name, _ = positions[0]
        if components(t) != components(first_t):
            raise TranslationError(
                f"line {line}: kernel {kernel_name}: position attributes mix {first_t} ('{first_name}' "
                f"[[{first_attribute}]]) and {t} ('{name}' [[{attribute}]]); Metal requires all of a kernel's position "
                "attributes to be scalars, or vectors with the same number of components (MSL spec 5.2.3.6)")
    for group in (("thread_position_in_grid", "threads_per_grid"),
                  ("thread_position_in_threadgroup", "threads_per_threadgroup")):
        if group[0] in by_attribute and group[1] in by_attribute:
            (t0, n0, _), (t1, n1, l1) = by_attribute[group[0]], by_attribute[group[1]]
            if t0 != t1:
                raise TranslationError(
                    f"line {l1}: kernel {kernel_name}: [[{group[0]}]] '{n0}' is {t0} but [[{group[1]}]] '{n1}' is {t1}; "
                    "Metal requires their types to match (MSL spec 5.2.3.6)")
    if "thread_position_in_threadgroup" in by_attribute and "thread_index_in_threadgroup" in by_attribute:
        (t0, n0, _), (t1, n1, l1) = by_attribute["thread_position_in_threadgroup"], by_attribute["thread_index_in_threadgroup"]
        if t0.startswith("uint") and t1 != "uint":
            raise TranslationError(
                f"line {l1}: kernel {kernel_name}: [[thread_position_in_threadgroup]] '{n0}' is {t0}, so "
                f"[[thread_index_in_threadgroup]] '{n1}' must be uint, not {t1} (MSL spec 5.2.3.6)")


PROJECT_INCLUDE_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "include"))


def translate(source: str, display_path: str, file_id: str, output_path: str = "generated.cpp",
              include_dirs: list[str] | None = None, gpu_family: str = DEFAULT_GPU_FAMILY) -> tuple[str, list[Kernel]]:
    if gpu_family not in GPU_FAMILIES:
        raise TranslationError(f"unknown GPU family '{gpu_family}' (known: {', '.join(GPU_FAMILIES)})")
    text = mask_comments(source)
    check_rejected(text)
    check_source_rules(text)
    if include_dirs is None:
        include_dirs = [os.path.dirname(os.path.abspath(display_path)), PROJECT_INCLUDE_DIR]
    constants = ConstantEvaluator(text, include_dirs)
    atomic_guarded = guarded_lines(text, ATOMIC_ULONG_MACRO)
    deferred_checks: list[str] = []
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
        checks = []  # static_asserts for what cannot be evaluated here
        if m.group("max") is not None:
            # MSL spec 5.1.3 (kernel attribute [[max_total_threads_per_threadgroup]]): at most the device's
            # maxTotalThreadsPerThreadgroup, 1024 on every Apple GPU (Metal feature set tables).
            max_threads = constants.evaluate(kernel.max_threads)
            if max_threads is None:
                checks.append(f"static_assert(({kernel.max_threads}) >= 1 && ({kernel.max_threads}) <= "
                              f"{MAX_THREADS_PER_THREADGROUP}, \"kernel {name}: the maximum total threads per "
                              f"threadgroup must be 1..{MAX_THREADS_PER_THREADGROUP} (max_total_threads_per_threadgroup, Apple GPUs)\");")
            elif not 1 <= max_threads <= MAX_THREADS_PER_THREADGROUP:
                raise TranslationError(f"line {line}: kernel {name}: [[max_total_threads_per_threadgroup({kernel.max_threads})]] "
                                       f"is {max_threads}; Apple GPUs run at most {MAX_THREADS_PER_THREADGROUP} threads per "
                                       "threadgroup (MSL spec 5.1.3; Metal feature set tables)")
            else:
                kernel.max_threads = str(max_threads)
        params_text = text[open_paren + 1 : close_paren]
        located = [(p, line_of(text, open_paren + 1 + offset)) for p, offset in split_top_level_with_offsets(params_text)]
        kernel.params = [parse_param(p, name, line) for p, _ in located]
        check_kernel_attribute_types(name, [(param, param_line) for param, (_, param_line) in zip(kernel.params, located)])
        thunk_args = [thunk_argument(p, kernel, line) for p in kernel.params]
        kernel.guard = ATOMIC_ULONG_MACRO if line in atomic_guarded else None  # type: ignore[attr-defined]

        # Threadgroup variables of the body: hoisted into a struct laid out in threadgroup memory.
        body = text[body_open : body_close + 1]
        struct_name = f"msl_threadgroup_{name}"
        members = []
        layout: list[tuple[int, int] | None] = []  # evaluated (size, alignment) of each variable
        tg_bytes = 0

        def replace_variable(vm: re.Match[str]) -> str:
            nonlocal tg_bytes
            index = len(members)
            member_type = checked_array_type(" ".join(vm.group("type").split()), vm.group("dims"))
            members.append(f"{member_type} v{index};")
            element = type_size_align(vm.group("type"))
            counts = [constants.evaluate(d) for d in re.findall(r"\[([^\]]+)\]", vm.group("dims"))]
            if element is None or any(c is None for c in counts):
                layout.append(None)
            else:
                size = element[0]
                for c in counts:
                    size *= c  # type: ignore[operator]
                layout.append((size, element[1]))
                if all(entry is not None for entry in layout):
                    tg_bytes = (tg_bytes + element[1] - 1) // element[1] * element[1] + size
                    if tg_bytes > MAX_THREADGROUP_MEMORY:
                        raise TranslationError(
                            f"line {line_of(text, body_open + vm.start())}: kernel {name}: its threadgroup variables need "
                            f"{tg_bytes} bytes with '{vm.group('name')}'; Metal allows at most {MAX_THREADGROUP_MEMORY} "
                            "bytes (32 KiB) of threadgroup memory per threadgroup (MSL spec 4.4; Metal feature set tables)")
            return f"auto& {vm.group('name')} = ::msl_rt::threadgroup_variables<{struct_name}>().v{index};"

        body = THREADGROUP_VARIABLE.sub(replace_variable, body)
        kernel.has_threadgroup_vars = bool(members)
        prefix = f"struct {struct_name} {{ {' '.join(members)} }}; " if members else ""
        if members and any(entry is None for entry in layout):
            checks.append(f"static_assert(sizeof({struct_name}) <= {MAX_THREADGROUP_MEMORY}, \"kernel {name}: more than "
                          f"{MAX_THREADGROUP_MEMORY} bytes (32 KiB, the Metal limit) of `threadgroup` variables\");")
        # Inserted after the rewrites below (their messages must not be rewritten or rejected).
        for check in checks:
            prefix += f"@@msl_check_{len(deferred_checks)}@@ "
            deferred_checks.append(check)
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

    m = re.search(r"\bmax_total_threads_per_threadgroup\b", text)
    if m:
        raise TranslationError(f"line {line_of(text, m.start())}: [[max_total_threads_per_threadgroup(n)]] must directly "
                               "precede `kernel void name(` (MSL spec 5.1.3); elsewhere the CPU layer could not honour it")
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

    text = re.sub(r"@@msl_check_(\d+)@@", lambda cm: deferred_checks[int(cm.group(1))], text)

    path_literal = display_path.replace("\\", "\\\\").replace('"', '\\"')
    family_macro = (f"#define {ATOMIC_ULONG_MACRO} 1  // like the compiler for an {gpu_family} GPU\n"
                    if GPU_FAMILIES[gpu_family] else f"#undef {ATOMIC_ULONG_MACRO}  // {gpu_family}: no 64-bit atomic min/max\n")
    out = [
        f"// Generated by msl_translate.py from {display_path}: do not edit.\n",
        family_macro,
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
        guard = kernel.guard  # type: ignore[attr-defined]
        out.append(f"#if defined({guard})\n" if guard else "")
        out.append(f"static void msl_thunk_{kernel.name}(::msl_rt::lane* l) {{\n    (void) l;\n    {kernel.name}(\n        {args});\n}}\n")
        out.append("#endif\n" if guard else "")
    out.append(f'extern "C" const ::msl_rt::kernel_desc msl_rt_kernels_{file_id}[] = {{\n')
    for kernel in kernels:
        static_size = f"sizeof(msl_threadgroup_{kernel.name})" if kernel.has_threadgroup_vars else "0"
        guard = kernel.guard  # type: ignore[attr-defined]
        out.append(f"#if defined({guard})\n" if guard else "")
        out.append(
            f'    {{"{kernel.name}", &msl_thunk_{kernel.name}, {kernel.max_threads}, {static_size}, '
            f"UINT64_C({kernel.buffer_mask}), UINT64_C({kernel.threadgroup_mask}), \"{path_literal}\", {kernel.line}}},\n"
        )
        out.append("#endif\n" if guard else "")
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
    t.add_argument("--include-dir", action="append", default=None,
                   help="where #include files are looked up to evaluate macros (default: the input's directory and "
                        "metal/source/include)")
    t.add_argument("--gpu-family", default=DEFAULT_GPU_FAMILY, choices=sorted(GPU_FAMILIES),
                   help=f"GPU family whose compiler macros the CPU layer mimics (default {DEFAULT_GPU_FAMILY}: defines "
                        f"{ATOMIC_ULONG_MACRO})")
    r = sub.add_parser("registry")
    r.add_argument("output")
    r.add_argument("generated", nargs="*")
    args = parser.parse_args(argv)
    if args.command == "translate":
        display = args.display_path or os.path.abspath(args.input)
        with open(args.input, encoding="utf-8") as f:
            source = f.read()
        try:
            include_dirs = None
            if args.include_dir:
                include_dirs = [os.path.dirname(os.path.abspath(args.input))] + args.include_dir
            elif args.display_path:
                include_dirs = [os.path.dirname(os.path.abspath(args.input)), PROJECT_INCLUDE_DIR]
            content, _ = translate(source, display, args.id, os.path.abspath(args.output), include_dirs, args.gpu_family)
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
