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
import operator
import re
import threading
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, AbstractSet, Any, Iterable, Literal

from . import _metal, model_bin
from .errors import InvalidArgumentError, InvalidTextError, ModelFileError, TokenIdError

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

        A lone surrogate (e.g. ``"\\ud800"``, not valid Unicode) raises
        :class:`~gpt_oss_metal.InvalidTextError` naming its index, as ``Context.append`` does
        (tiktoken would silently substitute U+FFFD). Text that tiktoken's regex engine cannot
        handle (a whitespace run of ~100k characters exceeds its backtracking stack) is encoded by
        the runtime's C encoder, which gives tiktoken's ids by construction (the same o200k
        pre-tokenizer, which the loader requires of every model file, and the same BPE merges).
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() expects str, not {type(text).__name__}")
        if not text.isascii():
            InvalidTextError.check("Tokenizer.encode", text)
        try:
            return self.encoding.encode(text, allowed_special=allowed_special, disallowed_special=())
        except ValueError as error:
            if "regex" not in str(error).lower():
                raise
        return self._encode_with_c(text, allowed_special)

    def _encode_with_c(self, text: str, allowed_special: AbstractSet[str] | Literal["all"]) -> list[int]:
        """Encoding by the C encoder (bpe.c), split at allowed special tokens as tiktoken splits."""
        if allowed_special == "all":
            allowed: AbstractSet[str] = self._special_tokens.keys()
        else:
            allowed = allowed_special
        specials = [name for name in allowed if name in self._special_tokens]
        if not specials:
            return self._native.encode_c(text)
        # No special token's text is a prefix of another's (all are "<|name|>"), so the leftmost
        # match is the one tiktoken finds.
        pattern = re.compile("|".join(re.escape(name) for name in sorted(specials, key=len, reverse=True)))
        ids: list[int] = []
        start = 0
        for match in pattern.finditer(text):
            if match.start() > start:
                ids.extend(self._native.encode_c(text[start : match.start()]))
            ids.append(self._special_tokens[match.group()])
            start = match.end()
        if start < len(text):
            ids.extend(self._native.encode_c(text[start:]))
        return ids

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

        Accepts Python and NumPy integers, sequences and (1-D or any-shape, flattened in order)
        NumPy integer arrays. An id outside the vocabulary, or a special-token id (special tokens
        have no bytes), raises :class:`~gpt_oss_metal.TokenIdError` (an InvalidArgumentError)
        naming the id and the vocabulary size.
        """
        if _is_integer(tokens):
            return self._decode_one(operator.index(tokens))  # type: ignore[arg-type]
        if hasattr(tokens, "dtype") and hasattr(tokens, "tolist"):  # NumPy array
            kind = getattr(tokens.dtype, "kind", "")
            if kind not in ("i", "u"):
                raise TypeError(f"decode() expects integer token ids, not an array of dtype {tokens.dtype}")
            tokens = tokens.reshape(-1).tolist() if hasattr(tokens, "reshape") else tokens.tolist()
        if isinstance(tokens, (str, bytes, bytearray)) or not hasattr(tokens, "__iter__"):
            raise TypeError(f"decode() expects a token id or an iterable of token ids, not {type(tokens).__name__}")
        decode = self._native.decode
        num_text_tokens = self._native.num_text_tokens
        parts = []
        for token in tokens:
            if not _is_integer(token):
                raise TypeError(f"decode() expects integer token ids, not {type(token).__name__}")
            token_id = operator.index(token)
            if 0 <= token_id < num_text_tokens:
                parts.append(decode(token_id))
            else:
                self._decode_one(token_id)  # raises TokenIdError
        return b"".join(parts)

    def _decode_one(self, token_id: int) -> bytes:
        num_text_tokens = self._native.num_text_tokens
        if 0 <= token_id < num_text_tokens:
            return self._native.decode(token_id)
        num_tokens = self._native.num_tokens
        if num_text_tokens <= token_id < num_tokens:
            name = next((n for n, i in self._special_tokens.items() if i == token_id), f"<|reserved_{token_id}|>")
            raise TokenIdError(
                f"decode: token id {token_id} is the special token {name}, which has no bytes "
                f"(text tokens are 0..{num_text_tokens - 1} of a vocabulary of {num_tokens})",
                token_id,
            )
        raise TokenIdError(
            f"decode: token id {token_id} is outside the vocabulary of {num_tokens} tokens "
            f"(valid ids: 0..{num_tokens - 1})",
            token_id,
        )

    def __repr__(self) -> str:
        return (
            f"Tokenizer(num_text_tokens={self.num_text_tokens}, num_special_tokens={self.num_special_tokens})"
        )


def _is_integer(value: Any) -> bool:
    """int or NumPy integer scalar (or 0-d integer array)."""
    if isinstance(value, int):
        return True
    if hasattr(value, "dtype") and getattr(value, "shape", None) == ():  # NumPy scalar or 0-d array
        return getattr(value.dtype, "kind", "") in ("i", "u")
    return False


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
