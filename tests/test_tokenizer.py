"""Tokenizer.encode gives exactly tiktoken's o200k ids; decode inverts it; special tokens by name."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Iterator

import pytest

from gpt_oss_metal import InvalidArgumentError, Model, Tokenizer, vocab

HARMONY_TOKENS = {
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|call|>": 200012,
}


def pseudo_random_unicode(seed: int, length: int) -> str:
    """Characters drawn from many scripts and planes (no surrogates), deterministic per seed."""
    rng = random.Random(seed)
    ranges = [
        (0x20, 0x7E), (0x09, 0x0D), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
        (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x3040, 0x30FF), (0x4E00, 0x9FFF),
        (0xAC00, 0xD7A3), (0xFE00, 0xFE0F), (0x1F300, 0x1FAFF), (0x200B, 0x200D), (0x10000, 0x1007F),
    ]
    return "".join(chr(rng.randint(*rng.choice(ranges))) for _ in range(length))


CORPUS = {
    "ascii prose": "The quick brown fox jumps over the lazy dog. It wasn't me, they'd said; we'll see what you've done.",
    "contractions": "I'm sure you're right, she's gone, they've left, I'll go, he'd know, it's THEY'RE and WE'LL.",
    "accents": "naïve café résumé façade über Straße Ångström señor jalapeño œuvre São Paulo Kraków",
    "cjk": "你好，世界！今天天气很好。日本語のテキストとカタカナ、ひらがな。한국어 문장도 있습니다.",
    "emoji": "👍🏽 🎉 👨‍👩‍👧‍👦 🏳️‍🌈 🧑🏿‍💻 ❤️‍🔥 🇫🇷🇯🇵 😀😃😄 1️⃣ #️⃣",
    "code": "def f(x):\n    if x > 0:\n        return [i ** 2 for i in range(x)]\n\treturn None\n\n\nclass A:\n    pass\n",
    "whitespace": "a" + " " * 37 + "b\n\n\n\n   \n\t\t  \r\n\r\n" + " " * 200 + "\n" + "\t" * 17 + "end   ",
    "numbers": " ".join(str(10**k + 7 * k) for k in range(30)) + " 3.14159 -42 1,000,000 0x1F 1e-10 007",
    "mixed scripts": "Hello мир 世界 مرحبا שלום नमस्ते γειά σου こんにちは 123abc٤٥٦",
    "punctuation": "!!!??? ... --- *** ((( ))) {}[]<> @#$%^&*~` ''' \"\"\" ;;; ::: ,,, ___ ===>>> <<<",
    "special text": "<|start|>user<|message|>hi<|end|><|endoftext|><|channel|>final<|return|>",
    "urls": "https://example.com/path?query=1&b=two#frag mailto:a.b@c.de C:\\Windows\\System32",
    "random unicode": pseudo_random_unicode(seed=1234, length=3000),
    "random bmp": pseudo_random_unicode(seed=99, length=1500),
    "empty": "",
    "single space": " ",
}


@pytest.fixture(scope="module")
def tiktoken_o200k() -> Iterator[object]:
    """tiktoken's own o200k_base, loaded offline from the packaged vocabulary."""
    import tiktoken

    saved = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = vocab.tiktoken_cache_dir()
    try:
        yield tiktoken.get_encoding("o200k_base")
    finally:
        if saved is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = saved


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

    words = [w for w in CORPUS["random unicode"].split() if w]
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
