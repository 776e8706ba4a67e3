"""The o200k_harmony tokenizer of a model.bin: :class:`Tokenizer`.

Encoding is exact tiktoken BPE: a ``tiktoken.Encoding`` is built from the vocabulary stored in the
model file (its text-token table as merge ranks, its regex as the pre-tokenizer pattern, its special
tokens named through their UUIDs), so no network access is needed and the ids are those of
tiktoken's o200k_harmony. (The original Metal runtime matched greedy longest prefixes instead,
which gives different ids.) Decoding reads token bytes straight from the file's mapping.
"""

from __future__ import annotations

import array
import hashlib
import threading
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, AbstractSet, Iterable, Literal

from . import _metal, model_bin
from .errors import InvalidArgumentError, ModelFileError

if TYPE_CHECKING:
    import tiktoken

    from .model import Model

__all__ = ["Tokenizer"]

#: Ids named by convention rather than by a UUID in the file.
_CONVENTIONAL_NAMES = {199998: "<|startoftext|>", 199999: "<|endoftext|>"}
_NAME_BY_UUID = {u.bytes: name for name, u in model_bin.SPECIAL_TOKEN_UUIDS.items()}

# Encodings by vocabulary digest: models loaded from the same vocabulary share one Encoding
# (building one from 200k ranks takes a noticeable fraction of a second). Bounded.
_ENCODING_CACHE: OrderedDict[str, tiktoken.Encoding] = OrderedDict()
_ENCODING_CACHE_SIZE = 4
_ENCODING_LOCK = threading.Lock()


class Tokenizer:
    """Tokenizer of a loaded model (usually obtained as ``model.tokenizer``).

    ``encode`` gives exactly ``tiktoken``'s o200k_harmony ids; ``decode`` returns bytes (a token
    may hold part of a UTF-8 character).
    """

    def __init__(self, model: Model | _metal.Model | _metal.Tokenizer) -> None:
        native = model
        if hasattr(native, "_native"):  # gpt_oss_metal.Model
            native = native._native  # type: ignore[union-attr]
        if isinstance(native, _metal.Model):
            native = native.tokenizer
        if not isinstance(native, _metal.Tokenizer):
            raise TypeError(f"Tokenizer() expects a Model or a _metal.Tokenizer, not {type(model).__name__}")
        self._native: _metal.Tokenizer = native
        self._special_tokens = _special_token_names(native)
        self._encoding: tiktoken.Encoding | None = None

    # ---- counts ----

    @property
    def num_text_tokens(self) -> int:
        """Number of BPE (text) tokens: ids 0 .. num_text_tokens - 1."""
        return self._native.num_text_tokens

    @property
    def num_special_tokens(self) -> int:
        """Number of special-token slots, which follow the text tokens."""
        return self._native.num_special_tokens

    @property
    def num_tokens(self) -> int:
        """Vocabulary size: text tokens plus special tokens."""
        return self._native.num_tokens

    @property
    def regex(self) -> str:
        """The pre-tokenizer regex stored in the model file (tiktoken's ``pat_str``)."""
        return self._native.regex

    @property
    def special_tokens(self) -> dict[str, int]:
        """Every special token by text: names from the file's UUIDs, ``<|reserved_NNNNNN|>`` for unnamed slots."""
        return dict(self._special_tokens)

    def special_token_uuid(self, token_id: int) -> uuid.UUID | None:
        """UUID of a special token, or None for text tokens and unnamed slots."""
        raw = self._native.token_uuid(token_id)
        return None if raw == bytes(16) else uuid.UUID(bytes=raw)

    # ---- encoding ----

    @property
    def encoding(self) -> tiktoken.Encoding:
        """The ``tiktoken.Encoding`` built from this vocabulary (built on first use, then cached)."""
        if self._encoding is None:
            self._encoding = _build_encoding(self._native, self._special_tokens)
        return self._encoding

    def encode(self, text: str, *, allowed_special: AbstractSet[str] | Literal["all"] = frozenset()) -> list[int]:
        """Token ids of ``text``, identical to tiktoken's o200k_harmony BPE.

        Special-token text such as ``"<|start|>"`` is encoded as plain text unless listed in
        ``allowed_special`` (or ``allowed_special="all"``), in which case it becomes its id.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() expects str, not {type(text).__name__}")
        return self.encoding.encode(text, allowed_special=allowed_special, disallowed_special=())

    def encode_special_token(self, name: str) -> int:
        """Id of a special token by its text, e.g. ``"<|start|>"`` -> 200006.

        Raises UnsupportedArgumentError for a harmony token the model file leaves unnamed and
        InvalidArgumentError for an unknown name.
        """
        token_id = self._special_tokens.get(name)
        if token_id is not None:
            return token_id
        if name in model_bin.SPECIAL_TOKEN_UUIDS:
            # A known role whose slot is unnamed in this file: the runtime says so precisely.
            return self._native.special_token_id(name)
        raise InvalidArgumentError(f"encode_special_token: unknown special token {name!r}")

    # ---- decoding ----

    def decode(self, tokens: int | Iterable[int]) -> bytes:
        """Bytes of one text token or the concatenated bytes of a sequence of them.

        Special-token ids and ids outside the vocabulary raise InvalidArgumentError.
        """
        if isinstance(tokens, int):
            return self._native.decode(tokens)
        decode = self._native.decode
        return b"".join([decode(token) for token in tokens])

    def __repr__(self) -> str:
        return (
            f"Tokenizer(num_text_tokens={self.num_text_tokens}, num_special_tokens={self.num_special_tokens})"
        )


def _special_token_names(native: _metal.Tokenizer) -> dict[str, int]:
    """Text of each special token: from its UUID, else by convention, else <|reserved_NNNNNN|>."""
    names: dict[str, int] = {}
    first = native.num_text_tokens
    for slot, raw in enumerate(native.special_token_uuids):
        token_id = first + slot
        name = _NAME_BY_UUID.get(raw)
        if name is None or name in names:  # unnamed, unknown or repeated UUID
            name = _CONVENTIONAL_NAMES.get(token_id, f"<|reserved_{token_id}|>")
        names[name] = token_id
    return names


def _build_encoding(native: _metal.Tokenizer, special_tokens: dict[str, int]) -> tiktoken.Encoding:
    import tiktoken

    token_bytes: list[bytes] = native.text_tokens()
    regex = native.regex
    digest = hashlib.sha256()
    digest.update(regex.encode())
    digest.update(repr(sorted(special_tokens.items())).encode())
    digest.update(array.array("I", map(len, token_bytes)).tobytes())
    digest.update(b"".join(token_bytes))
    key = digest.hexdigest()
    with _ENCODING_LOCK:
        cached = _ENCODING_CACHE.get(key)
        if cached is not None:
            _ENCODING_CACHE.move_to_end(key)
            return cached

    ranks = {token: rank for rank, token in enumerate(token_bytes)}
    if len(ranks) != len(token_bytes):
        seen: dict[bytes, int] = {}
        for rank, token in enumerate(token_bytes):
            if token in seen:
                raise ModelFileError(
                    f"token table: text tokens {seen[token]} and {rank} have the same bytes {token!r}; "
                    "a BPE vocabulary needs distinct tokens"
                )
            seen[token] = rank
    try:
        encoding = tiktoken.Encoding(
            name="o200k_harmony-model-bin",
            pat_str=regex,
            mergeable_ranks=ranks,
            special_tokens=special_tokens,
            explicit_n_vocab=len(token_bytes) + len(special_tokens),
        )
    except (ValueError, AssertionError) as error:
        raise ModelFileError(f"cannot build a BPE encoder from the model file's vocabulary: {error}") from error
    with _ENCODING_LOCK:
        _ENCODING_CACHE[key] = encoding
        while len(_ENCODING_CACHE) > _ENCODING_CACHE_SIZE:
            _ENCODING_CACHE.popitem(last=False)
    return encoding
