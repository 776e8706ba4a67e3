"""Running a model: :class:`Context`."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from . import _metal

if TYPE_CHECKING:
    from .model import Model

__all__ = ["Context"]

_native_models_lock = threading.Lock()


def _native_model(model: Model) -> _metal.ContextModel:
    """The C model every context of `model` shares (loaded once per Python Model)."""
    with _native_models_lock:
        native = model.__dict__.get("_context_model")
        if native is None:
            native = _metal.ContextModel(model.path)
            model.__dict__["_context_model"] = native
        return native


class Context:
    """A token sequence on a model with its KV cache: append tokens, process them, sample.

    ``context_length`` is the most tokens it can hold (0: the model's maximum);
    ``max_batch_tokens`` how many are processed per device command buffer (0: default 128).
    ``fp32_kv`` keeps the KV cache in float32 (exact-parity mode) instead of float16.

    >>> ctx = Context(model, context_length=4096)          # doctest: +SKIP
    >>> ctx.append("<|start|>user<|message|>Hi<|end|>")     # doctest: +SKIP
    >>> ctx.sample(max_output_tokens=16, temperature=0.0)  # doctest: +SKIP

    Errors raise the classes of :mod:`gpt_oss_metal.errors`: an id outside the vocabulary
    :class:`~gpt_oss_metal.InvalidArgumentError`, too many tokens
    :class:`~gpt_oss_metal.ContextOverflowError` (nothing is appended in either case),
    :meth:`cancel` makes the running call raise :class:`~gpt_oss_metal.CancelledError`.
    """

    def __init__(self, model: Model, context_length: int = 0, max_batch_tokens: int = 0, fp32_kv: bool = False) -> None:
        self._model = model
        self._native = _metal.Context(_native_model(model), context_length, max_batch_tokens, fp32_kv)

    # ----- tokens ---------------------------------------------------------------------------------

    def append(self, data: str | bytes | int | Iterable[int]) -> int:
        """Append text (tokenized exactly like tiktoken's o200k; special-token text is plain text),
        a token id, or token ids. Returns the number of tokens appended."""
        if isinstance(data, str):
            return self._native.append_bytes(data.encode("utf-8"))
        if isinstance(data, (bytes, bytearray, memoryview)):
            return self._native.append_bytes(bytes(data))
        if isinstance(data, (int, np.integer)):
            return self._native.append_tokens([int(data)])
        return self._native.append_tokens([int(t) for t in data])

    @property
    def num_tokens(self) -> int:
        """Tokens in the context (processed or not)."""
        return self._native.num_tokens

    @property
    def num_processed_tokens(self) -> int:
        """Leading tokens whose KV-cache entries are computed."""
        return self._native.num_processed_tokens

    @property
    def max_tokens(self) -> int:
        """The context length."""
        return self._native.max_tokens

    @property
    def tokens(self) -> list[int]:
        """The token ids of the context."""
        return list(self._native.tokens)

    # ----- running --------------------------------------------------------------------------------

    def process(self) -> None:
        """Run the model over every unprocessed token (releases the GIL)."""
        self._native.process()

    def sample(
        self,
        max_output_tokens: int = 1,
        temperature: float = 1.0,
        seed: int = 0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repetition_penalty: float = 1.0,
        stop_tokens: Sequence[int] = (),
    ) -> list[int]:
        """Sample up to ``max_output_tokens`` tokens, appending each to the context (releases the GIL).

        temperature 0 is greedy (argmax, ties to the lowest id). Generation stops after a token of
        ``stop_tokens`` (it is appended and returned) or when the context is full. The same seed and
        context give the same tokens."""
        if max_output_tokens < 0:
            raise ValueError(f"max_output_tokens must be >= 0, got {max_output_tokens}")
        return list(
            self._native.sample(
                max_output_tokens, float(temperature), int(seed), float(top_p), int(top_k), float(min_p),
                float(presence_penalty), float(frequency_penalty), float(repetition_penalty),
                [int(t) for t in stop_tokens],
            )
        )

    def reset(self) -> None:
        """Empty the token sequence but keep the KV cache: the next :meth:`process` reuses the
        entries of the longest common prefix of the old and new sequences."""
        self._native.reset()

    def cancel(self) -> None:
        """Make a running (or the next) :meth:`process`/:meth:`sample` raise CancelledError. Thread-safe."""
        self._native.cancel()

    # ----- outputs --------------------------------------------------------------------------------

    @property
    def logits(self) -> np.ndarray:
        """float32 [V] logits of the last processed position (a copy)."""
        return self._native.logits()[-1]

    @property
    def all_logits(self) -> np.ndarray:
        """float32 [rows, V]: every row the last process kept (one per position of the last chunk
        when :attr:`output_all_logits` is set, else only the last position)."""
        return self._native.logits()

    @property
    def output_all_logits(self) -> bool:
        """Whether :meth:`process` keeps every position's logits of a chunk (see :attr:`all_logits`)."""
        return getattr(self, "_output_all_logits", False)

    @output_all_logits.setter
    def output_all_logits(self, enabled: bool) -> None:
        self._native.set_output_all_logits(bool(enabled))
        self._output_all_logits = bool(enabled)

    def expert_choices(self) -> np.ndarray:
        """uint32 [blocks, rows, k]: experts chosen for the last chunk's tokens (diagnostics)."""
        return self._native.expert_choices()

    def host_timings(self) -> dict[str, int]:
        """Host nanoseconds since creation: ``encode_ns`` (building command buffers), ``device_ns``
        (commit + wait), ``finish_ns`` (host part of sampling). For benchmarks."""
        return dict(self._native.host_timings())

    def __repr__(self) -> str:
        return f"Context(num_tokens={self.num_tokens}, max_tokens={self.max_tokens})"
