"""The C BPE encoder (metal/source/bpe.c) gives exactly tiktoken's o200k_base ids.

Reached through ``_metal.Tokenizer.encode_c`` and ``_metal.bpe_pretokenize`` (python/src/bpe_bindings.cpp).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from gpt_oss_metal import Model, Tokenizer, _metal, vocab

from text_corpus import CORPUS

O200K = vocab.O200K_PATTERN


@pytest.fixture(scope="module")
def native(tiny_model_bin: Path) -> _metal.Tokenizer:
    return _metal.Model(str(tiny_model_bin)).tokenizer


def reference(encoding, text: str) -> list[int]:
    return encoding.encode(text, disallowed_special=())


@pytest.mark.parametrize("name", list(CORPUS))
def test_encode_matches_tiktoken(native: _metal.Tokenizer, tiktoken_o200k, name: str) -> None:
    text = CORPUS[name]
    assert native.encode_c(text) == reference(tiktoken_o200k, text)


def test_whole_corpus_and_python_tokenizer(native: _metal.Tokenizer, tiktoken_o200k, tiny_model_bin: Path) -> None:
    text = "\n\n".join(CORPUS.values())
    ids = native.encode_c(text)
    assert len(ids) > 3000
    assert ids == reference(tiktoken_o200k, text)
    assert ids == Tokenizer(Model(tiny_model_bin)).encode(text)
    assert native.encode_c(text.encode("utf-8")) == ids  # bytes input is the same text


# The random-range entries hold unassigned code points, whose classes change with each Unicode
# version; the `regex` module follows the newest (17+, and a newer release may move more), tiktoken
# 16.0. Their ids are still compared with tiktoken itself above; here only text of assigned
# characters is compared piece by piece.
RANDOM_RANGE_ENTRIES = {"random planes", "random scripts", "random bmp"}


@pytest.mark.parametrize("name", [name for name in CORPUS if name not in RANDOM_RANGE_ENTRIES])
def test_pieces_match_regex(name: str) -> None:
    """Piece boundaries equal the pattern's own matches (the `regex` module has tiktoken's semantics).

    Stricter than comparing ids: a wrong boundary often gives the same ids (no token spans it).
    """
    import regex

    text = CORPUS[name]
    assert _metal.bpe_pretokenize(text) == [piece.encode() for piece in regex.findall(O200K, text)]


def test_every_code_point_in_context(native: _metal.Tokenizer, tiktoken_o200k) -> None:
    """All 1.1M code points, each inside words, after spaces and digits, before suffixes.

    Catches any class (letter/mark/number/whitespace) that differs from tiktoken's regex tables,
    e.g. a Unicode version mismatch (Python 3.11's unicodedata is 14.0; tiktoken's is 16.0).
    """
    assert _metal.BPE_UNICODE_VERSION == "16.0.0"
    mismatched_blocks = []
    code_points = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000]
    step = 1 << 14
    for start in range(0, len(code_points), step):
        text = "".join(f"a{c}{c}b {c}1'S{c}é {c}.A{c}\t{c} " for c in map(chr, code_points[start:start + step]))
        if native.encode_c(text) != reference(tiktoken_o200k, text):
            mismatched_blocks.append(hex(code_points[start]))
    assert mismatched_blocks == []


@pytest.mark.parametrize("text", [
    "a" * 10000, " " * 10000, "!" * 10000, "\n" * 5000, "ab" * 5000, "é" * 4000, "1" * 9999, " \t" * 3000,
    "x" + " " * 10000 + "y", "A" * 5000 + "b", "\u0301" * 3000, "👍🏽" * 2000,
])
def test_long_runs(native: _metal.Tokenizer, tiktoken_o200k, text: str) -> None:
    """Long single pieces take the O(n log n) merge path and still match tiktoken's merge order."""
    assert native.encode_c(text) == reference(tiktoken_o200k, text)


def test_pieces_around_the_small_merge_limit(native: _metal.Tokenizer, tiktoken_o200k) -> None:
    """Random words of 2..400 letters: both merge paths (<= 128 bytes and longer) agree with tiktoken."""
    rng = random.Random(3)
    alphabet = "abcdefghijklmnopqrstuvwxyzéüаб"
    for length in [*range(2, 20), 100, 127, 128, 129, 130, 200, 400] * 5:
        word = "".join(rng.choice(alphabet) for _ in range(length))
        assert native.encode_c(word) == reference(tiktoken_o200k, word), word


INVALID_UTF8 = [
    b"\xff", b"\x80", b"abc\xffdef", b"\xc3", b"caf\xc3", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80", b"\xf5\x80", b"\xe2\x82", b"\xe2\x82a", b" \xff\xfe\xfd x", b"it\xff's",
    b"\xf0\x9f\x91", b"\xf0\x9f\x91\x8d\xff\xf0\x9f", b"  \xff  \n\xff\r\n", b"\x00\x01 abc\x00",
    b"\x80" * 1000, b"a\xe9b c\xe9d", bytes(range(256)) * 4,
]


@pytest.mark.parametrize("data", INVALID_UTF8, ids=range(len(INVALID_UTF8)))
def test_invalid_utf8(native: _metal.Tokenizer, data: bytes) -> None:
    """Each byte outside a well-formed sequence is one 'other' character: pieces as the pattern
    gives for that text with U+0378 (unassigned: 'other') in its place; ids decode to the input."""
    import regex

    ids = native.encode_c(data)
    assert all(0 <= i < native.num_text_tokens for i in ids)
    assert b"".join(native.decode(i) for i in ids) == data

    escaped = data.decode("utf-8", errors="surrogateescape")  # one lone surrogate per invalid byte
    placeholder = "".join("\u0378" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in escaped)
    expected, pos = [], 0
    for piece in regex.findall(O200K, placeholder):
        expected.append(escaped[pos:pos + len(piece)].encode("utf-8", errors="surrogateescape"))
        pos += len(piece)
    assert _metal.bpe_pretokenize(data) == expected


def test_valid_bytes_equal_str(native: _metal.Tokenizer) -> None:
    text = CORPUS["random assigned"]
    assert native.encode_c(text.encode()) == native.encode_c(text)


def test_argument_errors(native: _metal.Tokenizer) -> None:
    with pytest.raises(TypeError):
        native.encode_c(123)  # type: ignore[arg-type]
    with pytest.raises(UnicodeEncodeError):
        native.encode_c("lone \ud800 surrogate")
    assert native.encode_c("") == []
    assert native.encode_c(b"") == []


def test_threads_share_one_index(tiny_model_bin: Path, tiktoken_o200k) -> None:
    """First use from several threads at once (the GIL is released): the index is built safely."""
    tokenizer = _metal.Model(str(tiny_model_bin)).tokenizer
    text = CORPUS["random assigned"] + CORPUS["code"]
    expected = reference(tiktoken_o200k, text)
    results: list[list[int]] = []
    lock = threading.Lock()

    def work() -> None:
        ids = tokenizer.encode_c(text)
        with lock:
            results.append(ids)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(ids == expected for ids in results)


def test_one_megabyte(native: _metal.Tokenizer, tiktoken_o200k) -> None:
    """1 MB of mixed text: same ids; time reported next to tiktoken's."""
    block = (Path(__file__).read_text() + "".join(CORPUS.values()))
    text = (block * (1_000_000 // len(block) + 1))[:1_000_000]
    native.encode_c("warm up: builds the rank index")
    start = time.perf_counter()
    ids = native.encode_c(text)
    c_seconds = time.perf_counter() - start
    start = time.perf_counter()
    expected = reference(tiktoken_o200k, text)
    tiktoken_seconds = time.perf_counter() - start
    print(f"\n1 MB: C encoder {c_seconds:.3f} s, tiktoken {tiktoken_seconds:.3f} s, {len(ids)} tokens")
    assert ids == expected
    # Linear work; a generous bound (shared 2-core machine) that an O(n^2) path would still break.
    assert c_seconds < 10 * tiktoken_seconds + 0.5


def test_random_bytes_never_crash(native: _metal.Tokenizer) -> None:
    """Random byte strings (valid fragments, broken sequences, controls): pieces tile the input and
    the ids decode back to it."""
    rng = random.Random(11)
    fragments = [b"a", b"Z", b" ", b"\n", b"\r", b"'", b"s", b"1", b"\xc3\xa9", b"\xe4\xbd\xa0", b"\xf0\x9f\x91\x8d",
                 b"\xcc\x81", b"\xe2\x80\x8d", b"\xc3", b"\x80", b"\xff", b"\xed\xa0\x80", b"\xf4\x90", b"\x00", b"/"]
    for _ in range(300):
        data = b"".join(rng.choice(fragments) for _ in range(rng.randrange(1, 60)))
        pieces = _metal.bpe_pretokenize(data)
        assert all(pieces) and b"".join(pieces) == data
        assert b"".join(native.decode(i) for i in native.encode_c(data)) == data
