"""Tokenizer input edge cases: huge inputs, NumPy ids, lone surrogates, ids outside the vocabulary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpt_oss_metal import InvalidArgumentError, Model
from gpt_oss_metal.errors import InvalidTextError, TokenIdError
from gpt_oss_metal.tokenizer import Tokenizer
from gpt_oss_metal.vocab import O200K_PATTERN


@pytest.fixture(scope="module")
def tokenizer(tiny_model_bin: Path) -> Tokenizer:
    return Model(tiny_model_bin).tokenizer


def tiktoken_pieces_reference(tokenizer: Tokenizer, text: str) -> list[int]:
    """tiktoken's own ids for text its regex engine cannot split: the pieces from the `regex`
    module (tiktoken's semantics), each byte-pair encoded by tiktoken itself."""
    import regex

    encoding = tokenizer.encoding
    return [i for piece in regex.findall(O200K_PATTERN, text) for i in encoding._encode_single_piece(piece.encode())]


# ---- inputs tiktoken's regex engine gives up on ----


def test_million_spaces(tokenizer: Tokenizer) -> None:
    """Before: tiktoken's raw ValueError ("Max stack size exceeded for backtracking")."""
    text = " " * 1_000_000
    with pytest.raises(ValueError, match="Max stack size exceeded"):
        tokenizer.encoding.encode(text, disallowed_special=())  # the cause: fancy-regex's backtracking stack
    ids = tokenizer.encode(text)
    assert ids == tiktoken_pieces_reference(tokenizer, text)
    assert tokenizer.decode(ids) == text.encode()


def test_long_whitespace_with_special_tokens(tokenizer: Tokenizer) -> None:
    text = "<|start|>user<|message|>" + " " * 1_000_000 + "x<|end|> <|start|>"
    ids = tokenizer.encode(text, allowed_special="all")
    start, message, end = (tokenizer.encode_special_token(t) for t in ("<|start|>", "<|message|>", "<|end|>"))
    body = " " * 1_000_000 + "x"
    assert ids == [start, *tokenizer.encode("user"), message, *tiktoken_pieces_reference(tokenizer, body), end,
                   *tokenizer.encode(" "), start]
    # not allowed: special-token text is plain text
    plain = tokenizer.encode(text)
    assert start not in plain and tokenizer.decode(plain) == text.encode()


@pytest.mark.parametrize("allowed", [frozenset(), "all", {"<|start|>"}, {"<|end|>", "<|message|>"}])
def test_fallback_path_equals_tiktoken(tokenizer: Tokenizer, allowed: object) -> None:
    """The C path (used when tiktoken's regex fails) gives tiktoken's ids wherever tiktoken works."""
    texts = [
        "",
        "Hello, world!",
        "<|start|>system<|message|>You are ChatGPT.<|end|><|start|>user<|message|>Hi  there\n\n\n<|end|>",
        "<|start|><|start|><|end|>x<|endoftext|>",
        "caf\u00e9 \u4f60\u597d\u4e16\u754c  \t\n 1234567 don't I'LL  \u0301\u0301 <|call|>",
        " " * 5000 + "<|message|>" + "\n" * 3000,
    ]
    for text in texts:
        assert tokenizer._encode_with_c(text, allowed) == tokenizer.encoding.encode(
            text, allowed_special=allowed, disallowed_special=()), text[:80]


# ---- lone surrogates ----


@pytest.mark.parametrize("text, index, code_point", [
    ("\ud800", 0, 0xD800),
    ("ab\udfffc", 2, 0xDFFF),
    ("ok \U0001F600 then \udcff", 10, 0xDCFF),
])
def test_lone_surrogate_raises(tokenizer: Tokenizer, text: str, index: int, code_point: int) -> None:
    """Before: tiktoken substituted U+FFFD silently (while Context.append raised UnicodeEncodeError)."""
    with pytest.raises(InvalidTextError) as info:
        tokenizer.encode(text)
    error = info.value
    assert isinstance(error, ValueError) and isinstance(error, InvalidArgumentError)
    assert error.index == index and error.code_point == code_point
    assert f"lone surrogate U+{code_point:04X} at index {index}" in str(error)


def test_valid_astral_text_still_encodes(tokenizer: Tokenizer) -> None:
    assert tokenizer.decode(tokenizer.encode("\U0001F600")) == "\U0001F600".encode()


# ---- decode: NumPy ids, ids outside the vocabulary ----


@pytest.mark.parametrize("value", [np.int64(5), np.int32(5), np.uint16(5), np.uint64(5), np.array(5)])
def test_decode_numpy_scalar(tokenizer: Tokenizer, value: object) -> None:
    """Before: TypeError ('numpy.int64' object is not iterable)."""
    assert tokenizer.decode(value) == tokenizer.decode(5)


def test_decode_numpy_arrays(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("Hello, world! \u4f60\u597d")
    for dtype in (np.int64, np.int32, np.uint32):
        assert tokenizer.decode(np.array(ids, dtype=dtype)) == "Hello, world! \u4f60\u597d".encode()
    assert tokenizer.decode(np.array([ids[:2], ids[2:4]])) == tokenizer.decode(ids[:4])
    assert tokenizer.decode(np.array([], dtype=np.int64)) == b""
    assert tokenizer.decode([np.int64(i) for i in ids]) == tokenizer.decode(ids)
    with pytest.raises(TypeError):
        tokenizer.decode(np.array([1.0, 2.0]))
    with pytest.raises(TypeError):
        tokenizer.decode([1.5])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        tokenizer.decode("abc")  # type: ignore[arg-type]


@pytest.mark.parametrize("token_id", [200014, 300000, 2**32, 2**70, -1, -(2**40)])
def test_decode_outside_vocabulary(tokenizer: Tokenizer, token_id: int) -> None:
    for argument in (token_id, [1, token_id], np.array([token_id]) if -(2**63) <= token_id < 2**63 else [token_id]):
        with pytest.raises(TokenIdError) as info:
            tokenizer.decode(argument)  # type: ignore[arg-type]
        assert isinstance(info.value, InvalidArgumentError) and isinstance(info.value, IndexError)
        assert info.value.token_id == token_id
        assert f"token id {token_id} is outside the vocabulary of 200014 tokens (valid ids: 0..200013)" in str(info.value)


def test_decode_special_token(tokenizer: Tokenizer) -> None:
    start = tokenizer.encode_special_token("<|start|>")
    with pytest.raises(TokenIdError) as info:
        tokenizer.decode(start)
    assert f"token id {start} is the special token <|start|>, which has no bytes" in str(info.value)
    with pytest.raises(TokenIdError):
        tokenizer.decode(np.array([5, start]))
