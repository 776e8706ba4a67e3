"""Tokenizer.encode gives exactly tiktoken's o200k ids; decode inverts it; special tokens by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpt_oss_metal import InvalidArgumentError, Model, Tokenizer, vocab

from text_corpus import CORPUS

HARMONY_TOKENS = {
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|call|>": 200012,
}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_bin: Path) -> Tokenizer:
    return Model(tiny_model_bin).tokenizer


@pytest.mark.parametrize("name", list(CORPUS))
def test_encode_matches_tiktoken(tokenizer: Tokenizer, tiktoken_o200k, name: str) -> None:
    text = CORPUS[name]
    assert tokenizer.encode(text) == tiktoken_o200k.encode(text, disallowed_special=())


def test_encode_all_corpus_at_once(tokenizer: Tokenizer, tiktoken_o200k) -> None:
    text = "\n\n".join(CORPUS.values())
    ids = tokenizer.encode(text)
    assert ids == tiktoken_o200k.encode(text, disallowed_special=())
    assert len(ids) > 1000


@pytest.mark.parametrize("name", list(CORPUS))
def test_decode_inverts_encode(tokenizer: Tokenizer, name: str) -> None:
    text = CORPUS[name]
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text.encode("utf-8")
    assert b"".join(tokenizer.decode(i) for i in ids) == text.encode("utf-8")


def test_encode_is_not_greedy_longest_match(tokenizer: Tokenizer, tiktoken_o200k) -> None:
    """BPE merges by rank, not longest prefix: find a word where the two differ and check we follow BPE."""
    vocab_bytes = {t: i for i, t in enumerate(vocab.token_bytes_by_rank())}

    def greedy(word: bytes) -> list[int]:
        out, i = [], 0
        while i < len(word):
            j = max(j for j in range(i + 1, len(word) + 1) if word[i:j] in vocab_bytes)
            out.append(vocab_bytes[word[i:j]])
            i = j
        return out

    words = [w for w in CORPUS["random scripts"].split() if w]
    differing = [w for w in words if greedy(w.encode()) != tiktoken_o200k.encode(w)]
    assert differing, "corpus too easy: greedy matching agrees with BPE everywhere"
    for word in differing:
        assert tokenizer.encode(word) == tiktoken_o200k.encode(word)


def test_special_token_text_is_plain_text_by_default(tokenizer: Tokenizer) -> None:
    for text, token_id in HARMONY_TOKENS.items():
        ids = tokenizer.encode(text)
        assert token_id not in ids and len(ids) > 1
        assert tokenizer.decode(ids) == text.encode()


def test_special_token_text_allowed(tokenizer: Tokenizer) -> None:
    for text, token_id in HARMONY_TOKENS.items():
        assert tokenizer.encode(text, allowed_special={text}) == [token_id]
        assert tokenizer.encode(text, allowed_special="all") == [token_id]
    ids = tokenizer.encode("<|start|>user<|message|>Hi<|end|>", allowed_special="all")
    assert ids[0] == 200006 and ids[2] == 200008 and ids[-1] == 200007
    # Only the listed ones become special.
    ids = tokenizer.encode("<|start|>x<|end|>", allowed_special={"<|start|>"})
    assert ids[0] == 200006 and 200007 not in ids


def test_special_tokens_match_o200k_harmony(tokenizer: Tokenizer) -> None:
    """With every special allowed, ids equal tiktoken built from the same ranks with harmony names."""
    harmony = vocab.tiktoken_encoding("o200k_harmony")
    text = "<|startoftext|><|start|>assistant<|channel|>final<|message|>Done.<|return|><|endoftext|>"
    assert tokenizer.encode(text, allowed_special="all") == harmony.encode(text, allowed_special="all")


def test_encode_special_token(tokenizer: Tokenizer) -> None:
    for text, token_id in HARMONY_TOKENS.items():
        assert tokenizer.encode_special_token(text) == token_id
    assert tokenizer.encode_special_token("<|endoftext|>") == 199999
    assert tokenizer.encode_special_token("<|startoftext|>") == 199998
    assert tokenizer.encode_special_token("<|reserved_200004|>") == 200004
    with pytest.raises(InvalidArgumentError):
        tokenizer.encode_special_token("<|not_a_token|>")


def test_counts_and_encoding_cached(tokenizer: Tokenizer, tiny_model_bin: Path) -> None:
    assert (tokenizer.num_text_tokens, tokenizer.num_special_tokens, tokenizer.num_tokens) == (199998, 16, 200014)
    assert tokenizer.encoding is tokenizer.encoding
    # A second model with the same vocabulary reuses the encoder.
    assert Model(tiny_model_bin).tokenizer.encoding is tokenizer.encoding
    assert tokenizer.encoding.n_vocab == 200014


def test_encode_rejects_non_str(tokenizer: Tokenizer) -> None:
    with pytest.raises(TypeError):
        tokenizer.encode(b"bytes")  # type: ignore[arg-type]
