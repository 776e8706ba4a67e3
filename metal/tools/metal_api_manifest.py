#!/usr/bin/env python3
"""Which Metal/Foundation/dispatch APIs device-metal.m uses, and since which macOS (stdlib only).

metal/tools/metal-api-manifest.json lists every such identifier with the macOS version that
introduced it (and, where Apple deprecated it, since when). It is the project's own data: names and
versions only. It is regenerated from a macOS SDK's availability annotations with

    GPTOSS_MACOS_SDK=/path/to/sdk python3 metal/tools/check_macos_sdk.py --update-manifest

and checked without any SDK (tests/test_metal_api_manifest.py, check_macos_sdk.py --check-manifest):

* every identifier the Objective-C uses must be in the manifest: class and protocol names, message
  selectors (`[x foo:a bar:b]` is `-[Receiver foo:bar:]`, the receiver's type inferred from the
  declarations), dot-syntax properties on Objective-C objects (`device.name` is `MTLDevice.name`),
  fields of Metal structs, and MTL*/NS*/CF*/dispatch_*/DISPATCH_* enum constants, functions, types
  and macros;
* an identifier introduced after the deployment target (macOS 14.0) must be used inside
  `if (@available(macOS X, *)) { ... }` (or a function marked API_AVAILABLE(macos(X))) or inside an
  SDK-version guard `#if ... __MAC_OS_X_VERSION_MAX_ALLOWED >= MAC_OS_VERSION_X_Y`, with X at least
  its introduction version;
* an identifier deprecated in macOS D may be used only as the fallback for older systems or SDKs: in
  the `else` of an `@available(macOS V, *)` or the `#else` of an SDK-version guard, with V <= D.

Entries the SDK given to --update-manifest does not declare (APIs newer than that SDK, such as the
macOS 15 names used under the SDK-version guards) are kept from the existing manifest with their
"note"; a hand-written "deprecated"/"note" on any entry is kept too.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
MANIFEST = TOOLS / "metal-api-manifest.json"
DEPLOYMENT_TARGET = "14.0"

API_PREFIX = re.compile(r"^(MTL|NS|CF|dispatch_|DISPATCH_|MAC_OS_VERSION_|__MAC_OS_X_|API_AVAILABLE$)")
KEYWORDS = {"return", "case", "if", "else", "while", "for", "do", "switch", "sizeof", "in", "default", "goto",
            "break", "continue", "typedef", "static", "const", "struct", "enum", "void", "nil", "NULL", "YES", "NO",
            "self", "super"}
OBJC_ROOT = "NSObject"


# ---- Versions ----

def parse_version(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    return tuple(int(p) for p in re.split(r"[._]", str(text)) if p.isdigit())


def version_str(v: tuple[int, ...] | None) -> str | None:
    if v is None:
        return None
    v = tuple(v) + (0,) * (2 - len(v))
    return ".".join(str(p) for p in v)


# ---- Lexer ----

@dataclass
class Token:
    kind: str      # ident, number, string, punct, at (an @keyword: text is the keyword), pp (preprocessor line)
    text: str
    line: int


PUNCT = ["->", "<<=", ">>=", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "++", "--", "+=", "-=", "*=", "/=",
         "%=", "&=", "|=", "^=", "::", "..."]


def strip_comments(text: str) -> str:
    """Comments and the contents of string and character literals blanked, newlines kept (line numbers hold)."""
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
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + c)
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def tokenize(text: str) -> list[Token]:
    """Tokens of (comment-free) Objective-C; each preprocessor directive is one `pp` token (continuations joined)."""
    tokens: list[Token] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        lineno = i + 1
        if line.lstrip().startswith("#"):
            directive = line
            while directive.endswith("\\") and i + 1 < len(lines):
                i += 1
                directive = directive[:-1] + " " + lines[i]
            tokens.append(Token("pp", directive.strip(), lineno))
            i += 1
            continue
        pos = 0
        while pos < len(line):
            c = line[pos]
            if c.isspace():
                pos += 1
                continue
            m = re.match(r"[A-Za-z_]\w*", line[pos:])
            if m:
                tokens.append(Token("ident", m.group(0), lineno))
                pos += m.end()
                continue
            m = re.match(r"\d[\w.]*", line[pos:])
            if m:
                tokens.append(Token("number", m.group(0), lineno))
                pos += m.end()
                continue
            if c in "\"'":
                j = line.find(c, pos + 1)
                j = len(line) - 1 if j < 0 else j
                tokens.append(Token("string", line[pos:j + 1], lineno))
                pos = j + 1
                continue
            if c == "@":
                m = re.match(r"@([A-Za-z_]\w*)", line[pos:])
                if m:
                    tokens.append(Token("at", m.group(1), lineno))
                    pos += m.end()
                    continue
                tokens.append(Token("punct", "@", lineno))
                pos += 1
                continue
            for p in PUNCT:
                if line.startswith(p, pos):
                    tokens.append(Token("punct", p, lineno))
                    pos += len(p)
                    break
            else:
                tokens.append(Token("punct", c, lineno))
                pos += 1
        i += 1
    return tokens


def ends_expression(tok: Token | None) -> bool:
    if tok is None:
        return False
    if tok.kind == "ident":
        return tok.text not in KEYWORDS or tok.text in {"self", "super", "nil", "YES", "NO", "NULL"}
    return tok.kind in {"number", "string"} or tok.text in {")", "]"}


def matching(tokens: list[Token], i: int) -> int:
    """Index of the bracket closing tokens[i] (one of ( [ {)."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    opener, closer = tokens[i].text, pairs[tokens[i].text]
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j].kind == "punct":
            if tokens[j].text == opener:
                depth += 1
            elif tokens[j].text == closer:
                depth -= 1
                if depth == 0:
                    return j
    return len(tokens) - 1


# ---- Usage extraction ----

@dataclass
class Use:
    key: str                  # manifest key: "MTLDevice", "-[MTLDevice newCommandQueue]", "MTLDevice.name", ...
    line: int
    guard: tuple[int, ...] | None          # the newest macOS version the use is guarded for (None: unguarded)
    fallback: tuple[int, ...] | None       # inside the else/#else of a guard for this version
    candidates: list[str] = field(default_factory=list)   # receiver unknown: possible keys
    what: str = ""


class Resolver:
    """Answers, for the extractor, what an owner declares: backed by the manifest (check) or an SDK (update)."""

    def entry(self, key: str) -> dict | None:
        raise NotImplementedError

    def inherits(self, owner: str) -> list[str]:
        entry = self.entry(owner)
        return list(entry.get("inherits", [])) if entry else []

    def find_member(self, owner: str, member_key: str) -> str | None:
        """The key of `member_key` (".name", " foo:]" form built by the caller) declared on owner or an ancestor."""
        seen, queue = set(), [owner]
        while queue:
            current = queue.pop(0)
            if current in seen:
                continue
            seen.add(current)
            for key in member_key.format(owner=current).split("|"):
                if self.entry(key) is not None:
                    return key
            queue += self.inherits(current)
            if current != OBJC_ROOT and self.entry(current) and self.entry(current).get("kind") == "class" \
                    and OBJC_ROOT not in queue:
                queue.append(OBJC_ROOT)
        return None

    def keys_with_suffix(self, suffix: str) -> list[str]:
        return []


class ManifestResolver(Resolver):
    def __init__(self, manifest: dict):
        self.entries = manifest["entries"]

    def entry(self, key: str) -> dict | None:
        return self.entries.get(key)

    def keys_with_suffix(self, suffix: str) -> list[str]:
        return [k for k in self.entries if k.endswith(suffix)]


def object_type(type_tokens: list[str]) -> str | None:
    """`id <MTLDevice>` -> MTLDevice; `NSString *` -> NSString; `MTLSize` -> MTLSize; C scalars -> None."""
    words = [t for t in type_tokens if re.match(r"[A-Za-z_]\w*$", t) and t not in
             {"const", "nullable", "nonnull", "_Nullable", "_Nonnull", "__nullable", "__nonnull", "__kindof",
              "__strong", "__weak", "__unsafe_unretained", "__autoreleasing", "struct", "__bridge"}]
    if not words:
        return None
    if words[0] == "id":
        return words[1] if len(words) > 1 else "id"
    if words[0] == "instancetype":
        return "instancetype"
    if words[0][0].isupper() or words[0].startswith("dispatch_"):
        return words[0]
    return None


class Extractor:
    def __init__(self, text: str, resolver: Resolver):
        self.tokens = tokenize(strip_comments(text))
        self.resolver = resolver
        self.uses: list[Use] = []
        self.var_types: dict[str, str] = {}
        self.own_classes: dict[str, str] = {}                 # own @interface -> superclass
        self.own_props: dict[tuple[str, str], str] = {}        # (class, property) -> type
        self.guard_at: list[tuple[int, ...] | None] = [None] * len(self.tokens)
        self.fallback_at: list[tuple[int, ...] | None] = [None] * len(self.tokens)

    # Guards: preprocessor SDK-version #if and @available / API_AVAILABLE regions.
    def mark_guards(self) -> None:
        stack: list[tuple[tuple[int, ...] | None, bool]] = []   # (sdk version, in else branch)
        toks = self.tokens

        def sdk_guard() -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
            then = [v for v, in_else in stack if v is not None and not in_else]
            other = [v for v, in_else in stack if v is not None and in_else]
            return (max(then) if then else None, min(other) if other else None)

        for i, tok in enumerate(toks):
            if tok.kind == "pp":
                m = re.match(r"#\s*(\w+)\s*(.*)", tok.text)
                directive, rest = (m.group(1), m.group(2)) if m else ("", "")
                if directive in ("if", "ifdef", "ifndef"):
                    stack.append((self.sdk_condition(rest) if directive == "if" else None, False))
                elif directive in ("elif", "else") and stack:
                    stack[-1] = (stack[-1][0], True)
                elif directive == "endif" and stack:
                    stack.pop()
                guard, fallback = sdk_guard()
                if directive == "if" and stack and stack[-1][0] is not None:
                    guard = stack[-1][0]      # the condition's own identifiers are the guard
                self.guard_at[i], self.fallback_at[i] = guard, fallback
            else:
                self.guard_at[i], self.fallback_at[i] = sdk_guard()
        for i, tok in enumerate(toks):
            if tok.kind == "at" and tok.text == "available":
                version = self.available_version(i)
                if version is None:
                    continue
                # if ( @available(...) ) STATEMENT [else STATEMENT]
                if i >= 2 and toks[i - 1].text == "(" and toks[i - 2].text == "if":
                    close = matching(toks, i - 1)
                    end = self.statement_end(close + 1)
                    self.raise_guard(close + 1, end, version)
                    if end + 1 < len(toks) and toks[end + 1].text == "else":
                        self.mark_fallback(end + 2, self.statement_end(end + 2), version)
            elif tok.kind == "ident" and tok.text == "API_AVAILABLE" and i + 1 < len(toks) and toks[i + 1].text == "(":
                close = matching(toks, i + 1)
                m = re.search(r"\bmacos\s*\(\s*([\d.]+)", " ".join(t.text for t in toks[i:close + 1]))
                j = close + 1
                if m and j < len(toks) and toks[j].text == "{":
                    self.raise_guard(j, matching(toks, j), parse_version(m.group(1)))

    @staticmethod
    def sdk_condition(condition: str) -> tuple[int, ...] | None:
        if "__MAC_OS_X_VERSION_MAX_ALLOWED" not in condition:
            return None
        m = re.search(r"__MAC_OS_X_VERSION_MAX_ALLOWED\s*>=?\s*(?:MAC_OS_VERSION_|__MAC_)(\d+)_(\d+)", condition)
        if m:
            return (int(m.group(1)), int(m.group(2)))
        m = re.search(r"__MAC_OS_X_VERSION_MAX_ALLOWED\s*>=?\s*(\d+)", condition)
        if m:
            n = int(m.group(1))
            return (n // 10000, n // 100 % 100) if n >= 100000 else (n // 100, n // 10 % 10)
        return None

    def available_version(self, i: int) -> tuple[int, ...] | None:
        toks = self.tokens
        if i + 1 >= len(toks) or toks[i + 1].text != "(":
            return None
        close = matching(toks, i + 1)
        text = " ".join(t.text for t in toks[i + 2:close])
        m = re.search(r"\bmacOS\s+([\d.]+)", text, re.IGNORECASE)
        return parse_version(m.group(1)) if m else None

    def statement_end(self, i: int) -> int:
        toks = self.tokens
        if i < len(toks) and toks[i].text == "{":
            return matching(toks, i)
        depth = 0
        for j in range(i, len(toks)):
            if toks[j].text in "([{":
                depth += 1
            elif toks[j].text in ")]}":
                depth -= 1
            elif toks[j].text == ";" and depth == 0:
                return j
        return len(toks) - 1

    def raise_guard(self, start: int, end: int, version: tuple[int, ...] | None) -> None:
        for k in range(start, end + 1):
            if self.guard_at[k] is None or version > self.guard_at[k]:
                self.guard_at[k] = version

    def mark_fallback(self, start: int, end: int, version: tuple[int, ...] | None) -> None:
        for k in range(start, end + 1):
            if self.fallback_at[k] is None or version < self.fallback_at[k]:
                self.fallback_at[k] = version

    # Declarations: the types of variables, parameters and the file's own properties.
    def collect_declarations(self) -> None:
        toks = self.tokens
        current_class = None
        for i, tok in enumerate(toks):
            if tok.kind == "at" and tok.text == "interface" and i + 1 < len(toks):
                current_class = toks[i + 1].text
                superclass = toks[i + 3].text if i + 3 < len(toks) and toks[i + 2].text == ":" else OBJC_ROOT
                self.own_classes[current_class] = superclass
            elif tok.kind == "at" and tok.text == "end":
                current_class = None
            elif tok.kind == "at" and tok.text == "property" and current_class:
                j = i + 1
                if toks[j].text == "(":
                    j = matching(toks, j) + 1
                end = j
                while toks[end].text != ";":
                    end += 1
                self.own_props[(current_class, toks[end - 1].text)] = object_type([t.text for t in toks[j:end - 1]])
            elif tok.kind == "ident" and tok.text == "id" and i + 1 < len(toks) and toks[i + 1].text == "<":
                j = i + 2
                while j < len(toks) and toks[j].text != ">":
                    j += 1
                if j + 1 < len(toks) and toks[j + 1].kind == "ident":
                    self.var_types[toks[j + 1].text] = toks[i + 2].text
            elif tok.kind == "ident" and tok.text[0].isupper() and i + 2 < len(toks) and toks[i + 1].text == "*" \
                    and toks[i + 2].kind == "ident" and (i == 0 or toks[i - 1].text not in {"__bridge"}):
                if i + 3 < len(toks) and toks[i + 3].text in {"=", ";", ",", ")", "in"}:
                    self.var_types[toks[i + 2].text] = tok.text

    def is_class_name(self, name: str) -> bool:
        if name in self.own_classes:
            return True
        entry = self.resolver.entry(name)
        return bool(entry) and entry.get("kind") == "class"

    # Types of expressions (enough for the receivers in this file).
    def member(self, owner: str | None, name: str, line: int, record: bool = True, class_side: bool = False) -> str | None:
        """Records `owner.name` (property, or unary method called with dot syntax); returns its type.
        class_side: `Owner.name` on a class name, a class property ("+[Owner name]")."""
        if owner is None:
            return None
        if class_side:
            key = self.resolver.find_member(self.own_classes.get(owner, owner), "+[{owner} " + name + "]")
            if key is None:
                if record:
                    self.add_use(f"+[{owner} {name}]", line, what=f"class property {name} of {owner}")
                return None
            if record:
                self.add_use(key, line)
            result = (self.resolver.entry(key) or {}).get("type") or (self.resolver.entry(key) or {}).get("returns")
            return owner if result == "instancetype" else result
        if (owner, name) in self.own_props or (owner in self.own_classes and self.own_class_prop(owner, name)):
            return self.own_props.get((owner, name)) or self.own_class_prop(owner, name)
        start = self.own_classes.get(owner, owner)
        key = self.resolver.find_member(start, "{owner}." + name + "|-[{owner} " + name + "]")
        if key is None:
            if record:
                self.add_use(f"{owner}.{name}", line, what=f"property {name} of {owner}")
            return None
        if record:
            self.add_use(key, line)
        entry = self.resolver.entry(key) or {}
        result = entry.get("type") or entry.get("returns")
        return owner if result == "instancetype" else result

    def own_class_prop(self, owner: str, name: str) -> str | None:
        return self.own_props.get((owner, name))

    def expression_type(self, start: int, end: int, record: bool = True) -> str | None:
        """Type of tokens[start:end] (a receiver or a dot chain root), recording the members it uses."""
        toks = self.tokens
        i, current, class_side = start, None, False
        if i >= end:
            return None
        if toks[i].text == "(":
            close = matching(toks, i)
            inner = [t.text for t in toks[i + 1:close]]
            if "__bridge" in inner or (inner and (inner[0] == "id" or inner[-1] == "*")):
                return object_type(inner)
            if close + 1 >= end:
                return self.expression_type(i + 1, close, record)
            return None
        if toks[i].text == "[":
            close = matching(toks, i)
            current = self.message_send(i, close)
            i = close + 1
        elif toks[i].kind == "ident":
            name = toks[i].text
            current = self.var_types.get(name)
            if current is None and self.is_class_name(name):
                current, class_side = name, True
            if current is None and API_PREFIX.match(name) and i + 1 < end and toks[i + 1].text == ".":
                self.add_use(name, toks[i].line)      # an unknown class: reported as such
            i += 1
        else:
            return None
        while i < end:
            if toks[i].text == "." and i + 1 < end and toks[i + 1].kind == "ident":
                current = self.member(current, toks[i + 1].text, toks[i + 1].line, record, class_side=class_side)
                class_side = False
                i += 2
            else:
                return None
        return current

    def message_send(self, open_: int, close: int) -> str | None:
        """Records the selector of the send tokens[open_..close]; returns the result type if known."""
        toks = self.tokens
        # The receiver ends where an identifier follows an expression-ending token (the selector's first part).
        j = open_ + 1
        depth = 0
        receiver_end = None
        while j < close:
            t = toks[j]
            if t.text in "([{" and t.kind == "punct":
                j = matching(toks, j) + 1
                continue
            if t.kind == "ident" and j > open_ + 1 and ends_expression(toks[j - 1]) and toks[j - 1].text != "." \
                    and toks[j - 1].text != "->":
                receiver_end = j
                break
            j += 1
        if receiver_end is None:
            return None
        parts, args = [], []
        j = receiver_end
        if j + 1 < close and toks[j + 1].text == ":":
            while j < close:
                parts.append(toks[j].text + ":")
                k = j + 2
                arg_start = k
                while k < close:
                    t = toks[k]
                    if t.kind == "punct" and t.text in "([{":
                        k = matching(toks, k) + 1
                        continue
                    if t.kind == "ident" and k + 1 < close and toks[k + 1].text == ":" and ends_expression(toks[k - 1]) \
                            and toks[k - 1].text not in {".", "->", "?"} and k > arg_start:
                        break
                    k += 1
                args.append((arg_start, k))
                j = k
        else:
            parts.append(toks[j].text)
        selector = "".join(parts)
        receiver_is_class = (receiver_end == open_ + 2 and toks[open_ + 1].kind == "ident"
                             and toks[open_ + 1].text not in self.var_types and self.is_class_name(toks[open_ + 1].text))
        receiver = self.expression_type(open_ + 1, receiver_end)
        for a, b in args:     # nested sends and dot chains inside the arguments
            self.scan_range(a, b)
        line = toks[receiver_end].line
        sign = "+" if receiver_is_class else "-"
        if receiver is None or receiver == "id":
            candidates = self.resolver.keys_with_suffix(f" {selector}]")
            self.add_use(f"?[? {selector}]", line, candidates=candidates, what=f"selector {selector} (receiver type unknown)")
            return None
        start = self.own_classes.get(receiver, receiver) if receiver in self.own_classes else receiver
        key = self.resolver.find_member(start, sign + "[{owner} " + selector + "]")
        if key is None:
            self.add_use(f"{sign}[{receiver} {selector}]", line, what=f"selector {selector} of {receiver}")
            return None
        self.add_use(key, line)
        entry = self.resolver.entry(key) or {}
        result = entry.get("returns") or entry.get("type")
        return receiver if result == "instancetype" else result

    def add_use(self, key: str, line: int, candidates: list[str] | None = None, what: str = "") -> None:
        index = self.token_index_at_line(line)
        self.uses.append(Use(key, line, self.guard_at[index] if index is not None else None,
                             self.fallback_at[index] if index is not None else None, candidates or [], what))

    def token_index_at_line(self, line: int) -> int | None:
        # The guard of the token currently being scanned (set by scan_range), else the first on the line.
        if self._current is not None and self.tokens[self._current].line == line:
            return self._current
        for k, t in enumerate(self.tokens):
            if t.line == line:
                return k
        return None

    _current: int | None = None

    def scan_range(self, start: int, end: int) -> None:
        toks = self.tokens
        i = start
        while i < end:
            tok = toks[i]
            self._current = i
            if tok.kind == "pp":
                self.scan_directive(tok, i)
            elif tok.kind == "punct" and tok.text == "[" and not ends_expression(toks[i - 1] if i else None) \
                    and not (i and toks[i - 1].text == "@"):
                close = matching(toks, i)
                self.message_send(i, close)
                # a dot chain on the result: [x foo].bar
                j = close + 1
                if j < end and toks[j].text == ".":
                    k = j
                    while k + 1 < end and toks[k].text == "." and toks[k + 1].kind == "ident":
                        k += 2
                    self.expression_type(i, k)
                    i = k
                    continue
                i = close + 1
                continue
            elif tok.kind == "ident":
                prev = toks[i - 1].text if i else ""
                if prev in {".", "->"}:
                    i += 1
                    continue
                if i + 1 < end and toks[i + 1].text == "." and (tok.text in self.var_types or self.is_class_name(tok.text)) \
                        and prev not in {"->"}:
                    k = i + 1
                    while k + 1 < end and toks[k].text == "." and toks[k + 1].kind == "ident":
                        k += 2
                    self._current = i
                    self.expression_type(i, k)
                    i = k
                    continue
                if API_PREFIX.match(tok.text) and tok.text not in self.own_classes:
                    self.add_use(tok.text, tok.line)
            i += 1

    def scan_directive(self, tok: Token, index: int) -> None:
        m = re.match(r"#\s*(\w+)\s*(.*)", tok.text)
        if not m or m.group(1) not in ("if", "elif", "define", "ifdef", "ifndef"):
            return
        body = m.group(2)
        if m.group(1) == "define":
            body = re.sub(r"^\w+(\([^)]*\))?", "", body)
        for name in re.findall(r"[A-Za-z_]\w*", body):
            if API_PREFIX.match(name):
                self.add_use(name, tok.line)

    def run(self) -> list[Use]:
        self.mark_guards()
        self.collect_declarations()
        self.scan_range(0, len(self.tokens))
        return self.uses


def extract_uses(text: str, resolver: Resolver) -> list[Use]:
    return Extractor(text, resolver).run()


# ---- The check ----

def load_manifest(path: Path = MANIFEST) -> dict:
    return json.loads(path.read_text())


def check_text(text: str, manifest: dict, name: str = "device-metal.m") -> list[str]:
    """Problems with the Metal/Foundation identifiers `text` uses: empty if none."""
    resolver = ManifestResolver(manifest)
    target = parse_version(manifest.get("deployment_target", DEPLOYMENT_TARGET))
    problems = []
    seen = set()
    for use in extract_uses(text, resolver):
        entries = [use.key] if not use.candidates else use.candidates
        if use.key.startswith("?[") and not use.candidates:
            problems.append(f"{name}:{use.line}: {use.what}: not in metal-api-manifest.json under any receiver")
            continue
        if not use.key.startswith("?[") and resolver.entry(use.key) is None:
            problems.append(f"{name}:{use.line}: {use.key}{' (' + use.what + ')' if use.what else ''}: "
                            "not in metal-api-manifest.json (run check_macos_sdk.py --update-manifest with an SDK)")
            continue
        introduced = max((parse_version(resolver.entry(k).get("introduced")) or (0,) for k in entries), default=(0,))
        if introduced > target and (use.guard is None or use.guard < introduced):
            problems.append(f"{name}:{use.line}: {use.key} was introduced in macOS {version_str(introduced)}, after the "
                            f"deployment target {version_str(target)}: use it inside if (@available(macOS "
                            f"{version_str(introduced)}, *)) or an SDK-version #if guard")
        for k in entries:
            deprecated = parse_version(resolver.entry(k).get("deprecated"))
            if deprecated is not None and (use.fallback is None or use.fallback > deprecated) \
                    and (k, use.line) not in seen:
                seen.add((k, use.line))
                problems.append(f"{name}:{use.line}: {k} is deprecated since macOS {version_str(deprecated)}: use it only "
                                f"in the else branch of @available(macOS {version_str(deprecated)}, *) or the #else of "
                                "an SDK-version guard, with the replacement in the guarded branch")
    return problems


def check_file(path: Path, manifest: dict) -> list[str]:
    return check_text(Path(path).read_text(), manifest, Path(path).name)


# ---- The SDK side: an index of declarations and their availability ----

AVAILABILITY_MACROS = re.compile(r"\b(API_AVAILABLE|API_DEPRECATED|API_DEPRECATED_WITH_REPLACEMENT|API_UNAVAILABLE|"
                                 r"NS_AVAILABLE|NS_AVAILABLE_MAC|NS_CLASS_AVAILABLE|NS_CLASS_AVAILABLE_MAC|"
                                 r"NS_DEPRECATED|NS_DEPRECATED_MAC|NS_ENUM_AVAILABLE|NS_ENUM_DEPRECATED|"
                                 r"__OSX_AVAILABLE_STARTING|__OSX_AVAILABLE)\s*\(")


def availability(decl: str) -> dict:
    """{"introduced": "10.11", "deprecated": "13.0"} from the availability macros in a declaration's text."""
    result: dict = {}
    for m in AVAILABILITY_MACROS.finditer(decl):
        macro = m.group(1)
        depth, j = 0, m.end() - 1
        while j < len(decl):
            depth += decl[j] == "("
            depth -= decl[j] == ")"
            if depth == 0:
                break
            j += 1
        args = decl[m.end():j]
        if macro == "API_UNAVAILABLE":
            if re.search(r"\bmacos\b", args):
                result["unavailable"] = True
            continue
        mac = re.search(r"\bmacos\s*\(\s*([\d.]+)\s*(?:,\s*([\d.]+))?", args)
        if macro.startswith("API_"):
            if mac:
                result.setdefault("introduced", mac.group(1))
                if macro.startswith("API_DEPRECATED") and mac.group(2):
                    result["deprecated"] = mac.group(2)
        elif macro.startswith("__OSX"):
            v = re.search(r"__MAC_(\d+)_(\d+)", args)
            if v:
                result.setdefault("introduced", f"{v.group(1)}.{v.group(2)}")
        else:
            nums = re.findall(r"\b(\d+)_(\d+)\b", args)
            if nums:
                result.setdefault("introduced", ".".join(nums[0]))
                if "DEPRECATED" in macro and len(nums) > 1:
                    result["deprecated"] = ".".join(nums[1])
    return result


@dataclass
class Container:
    name: str
    kind: str                     # class or protocol
    inherits: list[str]
    avail: dict
    header: str


class SdkIndex(Resolver):
    """Declarations of the SDK headers device-metal.m can reach, with their availability."""

    def __init__(self, header_dirs: list[Path]):
        self.containers: dict[str, Container] = {}
        self.members: dict[str, dict] = {}      # manifest-style keys -> entry
        self.texts: list[tuple[str, str]] = []
        for d in header_dirs:
            for header in sorted(d.rglob("*.h")) if d.is_dir() else [d]:
                if "c++" in header.parts:
                    continue
                text = strip_comments(header.read_text(errors="replace"))
                label = f"{header.parent.parent.name}/{header.name}" if header.parent.name == "Headers" else header.name
                self.texts.append((label, text))
                self.parse_containers(text, label)

    def parse_containers(self, text: str, label: str) -> None:
        # @interface Name<Generics> (Category) : Super<Args> <Protocols>   /   @protocol Name <Protocols>
        pattern = re.compile(r"@(interface)\s+(\w+)(?:\s*<[^<>]*>)?\s*(\(\s*\w*\s*\))?\s*(?::\s*(\w+)(?:<[^<>]*>)?)?"
                             r"\s*(<[^>{;]*>)?|@(protocol)\s+(\w+)()()\s*(<[^>{;]*>)?")
        for m in pattern.finditer(text):
            if m.group(1):
                kind, name, category, superclass, protocols = m.group(1, 2, 3, 4, 5)
            else:
                kind, name, category, superclass, protocols = m.group(6), m.group(7), None, None, m.group(10)
            after = text[m.end():m.end() + 2]
            if kind == "protocol" and after.lstrip().startswith((";", ",")):
                continue   # forward declaration
            end = text.find("@end", m.end())
            if end < 0:
                continue
            start_of_line = text.rfind("\n", 0, m.start())
            prefix = text[max(text.rfind(";", 0, m.start()), text.rfind("@end", 0, m.start()), text.rfind("}", 0, m.start()),
                              text.rfind("#", 0, start_of_line), 0):m.start()]
            line_end = text.find("\n", m.end())
            avail = availability(prefix + text[m.end():line_end])
            inherits = ([superclass] if superclass else []) + re.findall(r"\w+", protocols or "")
            inherits = [i for i in inherits if i != name]
            container_kind = "class" if kind == "interface" else "protocol"
            if category is None:
                if name not in self.containers or not self.containers[name].inherits:
                    self.containers[name] = Container(name, container_kind, inherits, avail, label)
            else:
                self.containers.setdefault(name, Container(name, container_kind, [], {}, label))
            body = text[m.end():end]
            body = re.sub(r"^\s*#.*$", "", body, flags=re.M)   # #pragma mark, #if inside the block
            body = re.sub(r"\{[^{}]*\}", ";", body)   # instance variable blocks
            self.parse_members(name, body, avail if category is None else {**self.containers[name].avail, **avail}, label)

    def parse_members(self, owner: str, body: str, owner_avail: dict, label: str) -> None:
        for decl in body.split(";"):
            decl = " ".join(decl.split())
            decl = re.sub(r"^(@optional|@required|@public|@private|@protected|@package)\s*", "", decl)
            if decl.startswith("@property"):
                toks = [t.text for t in tokenize(decl)]
                i = 1
                if i < len(toks) and toks[i] == "(":
                    depth = 0
                    for j in range(i, len(toks)):
                        depth += toks[j] == "("
                        depth -= toks[j] == ")"
                        if depth == 0:
                            i = j + 1
                            break
                # the name: the last identifier before the attribute macros
                cut = len(toks)
                for j in range(i, len(toks)):
                    if re.match(r"(API_|NS_|MTL_|__attribute__|OBJC_|CF_|__OSX|UNAVAILABLE_ATTRIBUTE)", toks[j]):
                        cut = j
                        break
                names = [t for t in toks[i:cut] if re.match(r"[A-Za-z_]\w*$", t)]
                if not names:
                    continue
                name = names[-1]
                attributes = decl[:decl.find(")") + 1] if toks[1:2] == ["("] else ""
                is_class = re.search(r"\bclass\b", attributes) is not None
                entry = {"kind": "class property" if is_class else "property", "type": object_type(toks[i:cut][:-1]),
                         **owner_avail, **availability(decl)}
                # A class property is read as [Owner name] or Owner.name: the getter is a class method.
                self.members.setdefault(f"+[{owner} {name}]" if is_class else f"{owner}.{name}", entry)
            elif decl.startswith(("-", "+")):
                toks = [t.text for t in tokenize(decl)]
                i = 1
                returns = None
                if i < len(toks) and toks[i] == "(":
                    depth, j = 0, i
                    for j in range(i, len(toks)):
                        depth += toks[j] == "("
                        depth -= toks[j] == ")"
                        if depth == 0:
                            break
                    returns = object_type(toks[i + 1:j])
                    i = j + 1
                parts = []
                while i < len(toks) and re.match(r"[A-Za-z_]\w*$", toks[i]):
                    if i + 1 < len(toks) and toks[i + 1] == ":":
                        parts.append(toks[i] + ":")
                        i += 2
                        if i < len(toks) and toks[i] == "(":
                            depth = 0
                            for j in range(i, len(toks)):
                                depth += toks[j] == "("
                                depth -= toks[j] == ")"
                                if depth == 0:
                                    i = j + 1
                                    break
                        i += 1   # the parameter name
                    else:
                        if not parts:
                            parts.append(toks[i])
                        break
                if not parts:
                    continue
                key = f"{decl[0]}[{owner} {''.join(parts)}]"
                self.members.setdefault(key, {"kind": "method", "returns": returns, **owner_avail, **availability(decl)})

    def entry(self, key: str) -> dict | None:
        if key in self.members:
            return self.members[key]
        if key in self.containers:
            c = self.containers[key]
            return {"kind": c.kind, "inherits": c.inherits, **c.avail}
        if re.match(r"[A-Za-z_]\w*\.\w+$", key):     # a struct field: MTLSize.width
            owner, field_name = key.split(".")
            for _, text in self.texts:
                m = re.search(r"typedef\s+struct\s*\w*\s*\{([^{}]*)\}\s*" + re.escape(owner) + r"\s*;", text)
                if m and re.search(r"\b" + re.escape(field_name) + r"\b", m.group(1)):
                    return {"kind": "field"}
        return None

    def is_struct(self, name: str) -> bool:
        return any(re.search(r"\}\s*" + re.escape(name) + r"\s*;", text) and
                   re.search(r"typedef\s+struct", text) for _, text in self.texts)

    def top_level(self, name: str) -> dict | None:
        """Enum constant, function, macro or type `name`, with its availability."""
        if name in self.containers:
            return self.entry(name)
        for label, text in self.texts:
            if re.search(r"^\s*#\s*define\s+" + re.escape(name) + r"\b", text, re.M):
                return {"kind": "macro"}
        for label, text in self.texts:
            for m in re.finditer(r"\b" + re.escape(name) + r"\b", text):
                line_start = text.rfind("\n", 0, m.start()) + 1
                line = text[line_start:text.find("\n", m.end())]
                if re.match(r"\s*#\s*define\s+" + re.escape(name) + r"\b", line):
                    return {"kind": "macro", "header": label}
                # an enumerator: inside NS_ENUM/NS_OPTIONS/enum { ... }
                enum = self.enclosing_enum(text, m.start())
                if enum is not None:
                    enum_name, enum_avail, enum_body_start = enum
                    after = text[m.end():]
                    own = after[:min([p for p in (after.find(","), after.find("}")) if p >= 0] or [0])]
                    entry = {"kind": "enum constant", **({"enum": enum_name} if enum_name else {}), **enum_avail,
                             **availability(own)}
                    return entry
                decl_start = max(text.rfind(";", 0, m.start()), text.rfind("}", 0, m.start()),
                                 text.rfind("#", 0, line_start)) + 1
                rest = text[m.end():]
                if re.match(r"\s*\(", rest):
                    decl_end = min([p for p in (text.find(";", m.end()), text.find("{", m.end())) if p >= 0] or [len(text)])
                    decl = text[decl_start:decl_end]
                    if re.search(r"[=]", text[decl_start:m.start()]) or re.search(r"\breturn\b", text[decl_start:m.start()]):
                        continue   # a use, not the declaration
                    return {"kind": "function", **availability(decl)}
                if re.match(r"\s*;", rest) and re.search(r"\btypedef\b|\}", text[decl_start - 1:m.start()]):
                    return {"kind": "type", **availability(text[decl_start:m.end() + 1])}
        return None

    @staticmethod
    def enclosing_enum(text: str, pos: int) -> tuple[str | None, dict, int] | None:
        brace = text.rfind("{", 0, pos)
        if brace < 0 or text.rfind("}", brace, pos) >= 0:
            return None
        head = text[max(0, brace - 200):brace]
        m = re.search(r"(?:NS_(?:CLOSED_)?ENUM|NS_OPTIONS|NS_ERROR_ENUM)\s*\(\s*\w+\s*(?:,\s*(\w+)\s*)?\)\s*$|\benum\s*(\w*)\s*(?::\s*\w+\s*)?$",
                      head)
        if not m:
            return None
        name = m.group(1) or m.group(2) or None
        close = text.find("}", pos)
        tail_end = text.find(";", close)
        avail = availability(text[close:tail_end] + " " + head[m.start():])
        # the enumerator must not be inside a nested expression
        return name, avail, brace


class SdkResolver(Resolver):
    def __init__(self, index: SdkIndex):
        self.index = index

    def entry(self, key: str) -> dict | None:
        return self.index.entry(key)


def sdk_header_dirs(sdk) -> list[Path]:
    dirs = [sdk.frameworks / f"{f}.framework" / "Headers" for f in ("Metal", "Foundation", "CoreFoundation")]
    dirs += [sdk.include / "objc" / "NSObject.h", sdk.include / "dispatch", sdk.include / "Availability.h",
             sdk.include / "AvailabilityInternal.h",
             sdk.include / "AvailabilityMacros.h", sdk.include / "AvailabilityVersions.h", sdk.include / "os" / "availability.h"]
    return [d for d in dirs if d.exists()]


def clean(entry: dict) -> dict:
    out = {}
    for k in ("kind", "introduced", "deprecated", "unavailable", "inherits", "type", "returns", "enum", "note"):
        if entry.get(k) not in (None, [], ""):
            out[k] = entry[k]
    return out


def build_manifest(text: str, index: SdkIndex, old: dict | None, sdk_version: str) -> tuple[dict, list[str]]:
    """The manifest for `text` from the SDK index; entries it lacks are kept from `old` (hand-maintained)."""
    old_entries = (old or {}).get("entries", {})

    class Combined(Resolver):
        def entry(self, key: str) -> dict | None:
            found = index.entry(key)
            if found is None and key not in index.containers and not key.startswith(("-[", "+[")) and "." not in key:
                found = None
            return found if found is not None else old_entries.get(key)

    resolver = Combined()
    entries: dict[str, dict] = {}
    missing = []
    for use in extract_uses(text, resolver):
        if use.key.startswith("?["):
            missing.append(f"line {use.line}: {use.what}")
            continue
        entry = index.entry(use.key) if (use.key.startswith(("-[", "+[")) or "." in use.key) else index.top_level(use.key)
        if entry is None:
            entry = old_entries.get(use.key)
            if entry is None:
                missing.append(f"line {use.line}: {use.key}")
                continue
            entry = {**entry, "note": entry.get("note") or "not in the SDK this manifest was generated from"}
        entries[use.key] = clean(entry)
        # Owners on the lookup path (for inheritance in the check).
        owner = re.match(r"[-+]\[(\w+) |(\w+)\.", use.key)
        if owner:
            add_owner_chain(owner.group(1) or owner.group(2), index, entries)
    for key in list(entries):
        if key in index.containers:
            add_owner_chain(key, index, entries)
    # Hand-written fields survive an update.
    for key, entry in entries.items():
        previous = old_entries.get(key, {})
        for k in ("note", "deprecated"):
            if previous.get(k) and not entry.get(k):
                entry[k] = previous[k]
    manifest = {
        "about": "The Metal/Foundation/CoreFoundation/dispatch identifiers metal/source/device-metal.m uses, each with "
                 "the macOS version that introduced it (and deprecated it, where Apple did), from the SDK's "
                 "availability annotations. Regenerate: GPTOSS_MACOS_SDK=<sdk> python3 metal/tools/check_macos_sdk.py "
                 "--update-manifest. Checked by tests/test_metal_api_manifest.py. No introduced version: no "
                 "availability annotation (older than every supported macOS).",
        "deployment_target": DEPLOYMENT_TARGET,
        "generated_from_sdk": sdk_version,
        "entries": dict(sorted(entries.items(), key=lambda kv: kv[0].lstrip("-+[").lower())),
    }
    return manifest, missing


def add_owner_chain(owner: str, index: SdkIndex, entries: dict) -> None:
    queue, seen = [owner], set()
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        container = index.containers.get(name)
        if container is None:
            if index.is_struct(name):
                entries.setdefault(name, {"kind": "struct"})
            continue
        inherits = [i for i in container.inherits if i in index.containers]
        entries[name] = clean({"kind": container.kind, "inherits": inherits, **container.avail})
        queue += inherits


def dump_manifest(manifest: dict) -> str:
    """JSON, one entry per line (readable diffs)."""
    lines = ["{"]
    for key in ("about", "deployment_target", "generated_from_sdk"):
        lines.append(f"  {json.dumps(key)}: {json.dumps(manifest[key])},")
    lines.append('  "entries": {')
    items = list(manifest["entries"].items())
    for n, (key, entry) in enumerate(items):
        comma = "," if n + 1 < len(items) else ""
        lines.append(f"    {json.dumps(key)}: {json.dumps(entry)}{comma}")
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def update(sdk, device_metal: Path, path: Path = MANIFEST) -> int:
    index = SdkIndex(sdk_header_dirs(sdk))
    old = load_manifest(path) if path.exists() else None
    manifest, missing = build_manifest(device_metal.read_text(), index, old, sdk.version)
    path.write_text(dump_manifest(manifest))
    print(f"wrote {path} ({len(manifest['entries'])} entries, from SDK {sdk.version})")
    if missing:
        print("not declared in this SDK and not in the previous manifest (add them by hand with "
              '"introduced" and a "note"):', file=sys.stderr)
        for m in missing:
            print(f"    {m}", file=sys.stderr)
        return 1
    problems = check_file(device_metal, manifest)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    target = Path(args[0]) if args else TOOLS.parent / "source" / "device-metal.m"
    found = check_file(target, load_manifest())
    print("\n".join(found) if found else f"{target.name}: every API use is in the manifest and guarded as needed")
    sys.exit(1 if found else 0)
