"""Fuzz the tokenizers against tiktoken with hypothesis.

Text is drawn from all of Unicode (every plane and category), mixed with long runs of spaces, digits,
punctuation and newlines, contractions, combining marks, emoji sequences, mixed scripts and the text
of special tokens. For text that is valid Unicode (no lone surrogates):

* the C encoder (``_metal.Tokenizer.encode_c`` on str and on its UTF-8 bytes), ``Context.append``
  (which tokenizes with the C encoder) and ``Tokenizer.encode`` all give tiktoken's o200k_base ids;
* decoding the ids gives back the text's UTF-8 bytes.

Arbitrary bytes (``encode_c`` accepts bytes: each invalid byte is a character of its own) give ids in
range that decode back to the same bytes. Text with a lone surrogate cannot be UTF-8: every entry point
(``encode_c``, ``Tokenizer.encode``, ``Context.append``) must raise a specific exception class defined
in ``gpt_oss_metal.errors`` (a ValueError subclass), not encode something else silently.

As in tests/test_fuzz_loader.py the loop runs in a subprocess (a crash or hang of the C encoder fails
the test with the input saved under build/fuzz-reproducers/) and the budget is GPTOSS_FUZZ_SECONDS
(default 40 s per test) or GPTOSS_FUZZ_EXAMPLES examples.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from test_fuzz_loader import HYPOTHESIS_DB, fuzz_budget, run_fuzz_subprocess, specific_error_classes  # noqa: E402

PROPERTIES = ("valid_text", "arbitrary_bytes", "lone_surrogates")


def text_strategies():
    from hypothesis import strategies as st

    any_valid_char = st.characters(codec="utf-8")  # every code point except the surrogates
    fragments = st.sampled_from([
        " ", "  ", "\n", "\n\n", "\r\n", "\t", " \n ", "'s", "'S", "'t", "'re", "'ve", "'m", "'ll", "'d", "'LL",
        ",", ".", "...", "!?", "—", "–", "\u00a0", "\u3000", "\u200b", "\u2028", "\ufeff", "\x00", "\x7f",
        "é", "e\u0301", "a\u0308\u0301", "ﬁ", "ǅ", "ß", "İ", "👍", "👍🏽", "👨‍👩‍👧", "🇫🇷", "1️⃣", "日本語", "中文",
        "한국어", "العربية", "עברית", "ไทย", "हिन्दी", "Ελληνικά", "кириллица", "ᚠᛇᚻ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\U0010ffff",
        "<|start|>", "<|endoftext|>", "<|end|>", "<|message|>", "https://example.com/a?b=c", "x = 1 + 2;",
    ])
    runs = st.tuples(st.sampled_from([" ", "\n", "\t", "0", "9", "1", ".", "!", "-", "=", "_", "a", "A", "é", "日", "\u00a0"]),
                     st.integers(1, 400)).map(lambda t: t[0] * t[1])
    numbers = st.integers(0, 10**40).map(str)
    piece = st.one_of(st.text(any_valid_char, max_size=40), fragments, fragments, runs, numbers,
                      st.text(st.characters(codec="utf-8", max_codepoint=0x7f), max_size=40),
                      st.text(st.characters(codec="utf-8", min_codepoint=0x80, max_codepoint=0x2fff), max_size=20),
                      st.text(st.characters(codec="utf-8", min_codepoint=0x10000), max_size=10))
    valid_text = st.lists(piece, max_size=16).map("".join)
    surrogate = st.integers(0xD800, 0xDFFF).map(chr)
    with_surrogate = st.tuples(valid_text, surrogate, valid_text, st.booleans()).map(
        lambda t: t[0] + t[1] + (t[1] if t[3] else "") + t[2])
    return valid_text, with_surrogate, st.binary(max_size=300)


class Subjects:
    def __init__(self, model_path: Path) -> None:
        import tiktoken

        from gpt_oss_metal import Context, Model, vocab

        os.environ["TIKTOKEN_CACHE_DIR"] = vocab.tiktoken_cache_dir()
        self.reference = tiktoken.get_encoding("o200k_base")
        self.model = Model(str(model_path))
        self.tokenizer = self.model.tokenizer
        self.native = self.model._native.tokenizer
        self.context = Context(self.model, context_length=8192)
        self.allowed = specific_error_classes()

    def check_valid_text(self, text: str) -> None:
        expected = self.reference.encode(text, disallowed_special=())
        assert self.native.encode_c(text) == expected, "encode_c(str) differs from tiktoken"
        assert self.native.encode_c(text.encode("utf-8")) == expected, "encode_c(bytes) differs from tiktoken"
        assert self.tokenizer.encode(text) == expected, "Tokenizer.encode differs from tiktoken"
        assert self.tokenizer.decode(expected) == text.encode("utf-8"), "decode(encode(text)) != text"
        if len(expected) < 8000:
            self.context.reset()
            self.context.append(text)
            assert self.context.tokens == expected, "Context.append(str) differs from tiktoken"

    def check_arbitrary_bytes(self, data: bytes) -> None:
        ids = self.native.encode_c(data)
        n = self.native.num_text_tokens
        assert all(0 <= i < n for i in ids), ids
        assert b"".join(self.native.decode(i) for i in ids) == data, "decode(encode_c(bytes)) != bytes"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return
        assert ids == self.reference.encode(text, disallowed_special=())

    def check_lone_surrogates(self, text: str) -> None:
        entry_points = {
            "_metal.Tokenizer.encode_c": lambda: self.native.encode_c(text),
            "Tokenizer.encode": lambda: self.tokenizer.encode(text),
            "Context.append": lambda: (self.context.reset(), self.context.append(text)),
        }
        problems = []
        for name, call in entry_points.items():
            try:
                result = call()
            except self.allowed as error:
                if not isinstance(error, ValueError):
                    problems.append(f"{name}: {type(error).__name__} is not a ValueError")
                continue
            except BaseException as error:  # noqa: BLE001 - the property is about exactly this
                problems.append(f"{name} raised {type(error).__module__}.{type(error).__name__}: {error} "
                                "(not a gpt_oss_metal.errors class)")
                continue
            problems.append(f"{name} accepted the lone surrogate and returned {result!r}")
        assert not problems, f"text {text!r}:\n  " + "\n  ".join(problems)


def run_fuzz(model: Path, work: Path, prop: str, seconds: float, examples: int | None) -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis.database import DirectoryBasedExampleDatabase

    work.mkdir(parents=True, exist_ok=True)
    current = work / "current.json"
    subjects = Subjects(model)
    valid_text, with_surrogate, binary = text_strategies()
    strategy, check = {
        "valid_text": (valid_text, subjects.check_valid_text),
        "arbitrary_bytes": (binary, subjects.check_arbitrary_bytes),
        "lone_surrogates": (with_surrogate, subjects.check_lone_surrogates),
    }[prop]

    def one(value) -> None:
        record = {"property": prop}
        if isinstance(value, bytes):
            record["bytes_hex"] = value.hex()
        else:
            record["text_utf8_surrogatepass_hex"] = value.encode("utf-8", "surrogatepass").hex()
            record["text_repr"] = repr(value)[:2000]
        current.write_text(json.dumps(record))
        check(value)

    started = time.monotonic()
    total = 0
    batch = 100 if examples is None else examples
    while True:
        test = settings(max_examples=batch, deadline=None, database=DirectoryBasedExampleDatabase(str(HYPOTHESIS_DB / f"tokenizer-{prop}")),
                        suppress_health_check=list(HealthCheck), print_blob=True)(given(strategy)(one))
        test()
        total += batch
        if examples is not None or time.monotonic() - started >= seconds:
            break
    print(f"FUZZ-OK examples={total} seconds={time.monotonic() - started:.1f}")
    return 0


def reproduce(model: Path, record_file: Path) -> int:
    record = json.loads(record_file.read_text())
    subjects = Subjects(model)
    if "bytes_hex" in record:
        value = bytes.fromhex(record["bytes_hex"])
    else:
        value = bytes.fromhex(record["text_utf8_surrogatepass_hex"]).decode("utf-8", "surrogatepass")
    getattr(subjects, f"check_{record['property']}")(value)
    print("property holds for", repr(value)[:200])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--property", choices=PROPERTIES, default="valid_text")
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--examples", type=int)
    parser.add_argument("--reproduce", type=Path, help="replay one saved input (JSON)")
    args = parser.parse_args(argv)
    if args.reproduce:
        return reproduce(args.model, args.reproduce)
    return run_fuzz(args.model, args.work, args.property, args.seconds, args.examples)


# ---------------------------------------------------------------- pytest

def _fuzz(prop: str, model: Path, work: Path, share: float) -> None:
    seconds, examples = fuzz_budget()
    seconds *= share
    argv = [str(Path(__file__)), "--model", str(model), "--work", str(work), "--property", prop, "--seconds", str(seconds)]
    if examples is not None:
        argv += ["--examples", str(examples)]
    run_fuzz_subprocess(f"tokenizer-{prop}", argv, work, seconds, timeout=max(300.0, 5 * seconds + 120))


def test_fuzz_valid_text_matches_tiktoken(tiny_model_bin: Path, tmp_path: Path) -> None:
    _fuzz("valid_text", tiny_model_bin, tmp_path, 1.0)


def test_fuzz_arbitrary_bytes_round_trip(tiny_model_bin: Path, tmp_path: Path) -> None:
    _fuzz("arbitrary_bytes", tiny_model_bin, tmp_path, 0.25)


def test_fuzz_lone_surrogates_raise_specific_error(tiny_model_bin: Path, tmp_path: Path) -> None:
    _fuzz("lone_surrogates", tiny_model_bin, tmp_path, 0.25)


if __name__ == "__main__":
    sys.exit(main())
