"""Running a model: :class:`Context`, streaming :meth:`Context.generate` and :class:`TextDecoder`."""

from __future__ import annotations

import codecs
import signal
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from . import _metal
from .errors import (
    CancelledError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    InvalidStateError,
    InvalidTextError,
    ModelFileError,
)

if TYPE_CHECKING:
    from .model import Model
    from .tokenizer import Tokenizer

__all__ = ["Context", "GeneratedToken", "TextDecoder"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class GeneratedToken:
    """One token of :meth:`Context.generate`.

    ``text`` is the text this token completes: whole characters only, so it is ``""`` for a token
    that ends inside a multi-byte UTF-8 character (the character appears with the token that
    completes it) and for special tokens (unless generate was asked to show them). Joining the
    ``text`` of every token gives the decoded completion.
    """

    token: int
    text: str


class TextDecoder:
    """Incremental detokenizer: token ids in, whole UTF-8 characters out.

    A token may end inside a character (the vocabulary holds byte sequences); its bytes are held
    until the character completes. :meth:`flush` returns what is left at the end (an incomplete
    character becomes U+FFFD). Special tokens give ``""``, or their text (``"<|return|>"``) with
    ``special_tokens=True``.

    >>> decoder = TextDecoder(model.tokenizer)                        # doctest: +SKIP
    >>> "".join(decoder.decode(t) for t in tokens) + decoder.flush()  # doctest: +SKIP
    """

    def __init__(self, tokenizer: Tokenizer, *, special_tokens: bool = False) -> None:
        self._tokenizer = tokenizer
        self._num_text_tokens = tokenizer.num_text_tokens
        self._special_names = {token_id: name for name, token_id in tokenizer.special_tokens.items()} if special_tokens else None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def decode(self, token: int, *, final: bool = False) -> str:
        """Text completed by ``token``; ``final=True`` also flushes held bytes."""
        token = int(token)
        if token >= self._num_text_tokens and 0 <= token < self._tokenizer.num_tokens:
            text = self._decoder.decode(b"", final=final)
            if self._special_names is not None:
                text += self._special_names.get(token, "")
            return text
        return self._decoder.decode(self._tokenizer.decode(token), final=final)

    def flush(self) -> str:
        """Bytes held back at the end of the stream (an incomplete character decodes as U+FFFD)."""
        return self._decoder.decode(b"", final=True)

    def reset(self) -> None:
        """Forget held bytes (start a new stream)."""
        self._decoder.reset()


def _size_argument(name: str, value: object) -> int:
    """A Context size argument: an int or NumPy integer >= 0 (huge values are capped at 2**63, which
    the runtime then reports as exceeding the model's maximum)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentTypeError(f"Context: {name} must be an integer, not {type(value).__name__} ({value!r})")
    if value < 0:
        raise InvalidArgumentError(f"Context: {name} {value} is out of range: it must be >= 0 (0: the default)")
    return min(int(value), 2**63)


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

    Threads (docs/thread-safety.md): a context runs one call at a time. A call made while another
    thread's call runs on the same context raises :class:`~gpt_oss_metal.InvalidStateError`
    ("context is in use by another thread") and changes nothing; :meth:`cancel` works from any
    thread, and :meth:`close` from another thread cancels the running call and waits for it.
    Use one context per thread (they may share one :class:`~gpt_oss_metal.Model`) or a lock.
    """

    def __init__(self, model: Model, context_length: int = 0, max_batch_tokens: int = 0, fp32_kv: bool = False) -> None:
        from .model import Model

        if not isinstance(model, Model):
            raise TypeError(f"Context() expects a gpt_oss_metal.Model, not {type(model).__name__}")
        sizes = [_size_argument(name, value) for name, value in
                 (("context_length", context_length), ("max_batch_tokens", max_batch_tokens))]
        self._model = model
        self._tokenizer = model.tokenizer  # kept: generate() decodes even after model.close()
        # The same C model as `model` (one mapping, one device); the C context retains it.
        self._native = _metal.Context(model._native, sizes[0], sizes[1], bool(fp32_kv))
        self._output_all_logits = False

    @property
    def model(self) -> Model:
        """The model this context runs."""
        return self._model

    # ----- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        """Free the KV cache and device buffers now (also done by ``with`` and at garbage
        collection). Later calls raise :class:`~gpt_oss_metal.InvalidStateError`. Safe from any
        thread: a :meth:`process`/:meth:`sample`/:meth:`generate` step running in another thread
        is cancelled (it raises :class:`~gpt_oss_metal.CancelledError`) and close waits for it to
        return (within one kernel) before freeing anything. Idempotent."""
        self._native.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._native.closed

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----- tokens ---------------------------------------------------------------------------------

    def append(self, data: str | bytes | int | Iterable[int]) -> int:
        """Append text (tokenized exactly like tiktoken's o200k; special-token text is plain text),
        a token id, or token ids. Returns the number of tokens appended.

        Token ids are ints or NumPy integers (an iterable, or a 1-D NumPy array of any integer
        dtype), each below the vocabulary size: an id out of range raises
        :class:`~gpt_oss_metal.InvalidArgumentError` naming it and the vocabulary; a float, bool or
        string where an id is expected raises :class:`~gpt_oss_metal.InvalidArgumentTypeError`
        (also a ``TypeError``). A ``str`` that cannot be encoded as UTF-8 (a lone surrogate such as
        ``"\\ud800"``) raises :class:`~gpt_oss_metal.InvalidTextError` naming its index, exactly
        as :meth:`Tokenizer.encode` does. Nothing is appended when an error is raised."""
        if isinstance(data, str):
            return self._native.append_bytes(InvalidTextError.check("Context.append", data))
        if isinstance(data, (bytes, bytearray, memoryview)):
            return self._native.append_bytes(bytes(data))
        return self._native.append_tokens(data)

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
        """Run the model over every unprocessed token (releases the GIL).

        Ctrl-C in the main thread cancels the computation and raises KeyboardInterrupt promptly;
        :meth:`cancel` from another thread makes it raise CancelledError. Either way the context
        stays consistent: the tokens stay and a later call continues where it stopped."""
        self._interruptible(self._native.process)

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
        context give the same tokens.

        Every argument is checked before anything runs: a value out of range (``top_k=-1``,
        ``temperature=-1``, ``top_p=1.5``, a stop token outside the vocabulary, ...) raises
        :class:`~gpt_oss_metal.InvalidArgumentError` naming the argument, the value and the allowed
        range; a wrong type (``top_k=1.5``) :class:`~gpt_oss_metal.InvalidArgumentTypeError`.
        ``max_output_tokens`` may exceed what fits: memory is reserved only for the tokens the
        context has room for."""
        return list(
            self._interruptible(
                self._native.sample,
                max_output_tokens, temperature, seed, top_p, top_k, min_p,
                presence_penalty, frequency_penalty, repetition_penalty, stop_tokens,
            )
        )

    def generate(
        self,
        max_output_tokens: int = 100,
        temperature: float = 1.0,
        seed: int = 0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        repetition_penalty: float = 1.0,
        stop_tokens: Sequence[int] = (),
        special_tokens: bool = False,
    ) -> Iterator[GeneratedToken]:
        """Stream :meth:`sample`: yield each token as it is sampled, with its text.

        Takes the arguments of :meth:`sample` and yields the same tokens (same seed, same context:
        the draw depends only on the seed, the position and the logits). Every token is appended
        to the context as it is yielded; stopping the iteration early (``break``) keeps the tokens
        yielded so far. Text is decoded incrementally (see :class:`GeneratedToken`); the last
        token's text includes any bytes still held. ``special_tokens=True`` shows special tokens
        as their text (``<|return|>``) instead of ``""``.

        >>> for piece in ctx.generate(64, temperature=0.7, stop_tokens=[200002]):  # doctest: +SKIP
        ...     print(piece.text, end="", flush=True)

        The arguments are checked like :meth:`sample`'s, when generate is called (not at the first
        iteration).
        """
        (count, *options, stop_list) = self._native.check_sampling(
            "Context.generate", max_output_tokens, temperature, seed, top_p, top_k, min_p,
            presence_penalty, frequency_penalty, repetition_penalty, stop_tokens,
        )
        stops = frozenset(stop_list)
        settings = (*options, sorted(stops))
        return self._generate(int(count), stops, settings, bool(special_tokens))

    def _generate(
        self, max_output_tokens: int, stops: frozenset[int], settings: tuple[Any, ...], special_tokens: bool
    ) -> Iterator[GeneratedToken]:
        step = self._step_function(settings)
        decoder = TextDecoder(self._tokenizer, special_tokens=special_tokens)
        max_tokens = self.max_tokens
        for index in range(max_output_tokens):
            if index > 0 and self.num_tokens >= max_tokens:
                break  # full: sample() stops here too (the first token raises ContextOverflowError)
            token = step()
            last = token in stops or index + 1 == max_output_tokens or self.num_tokens >= max_tokens
            yield GeneratedToken(token, decoder.decode(token, final=last))
            if last:
                return

    def _step_function(self, settings: tuple[Any, ...]) -> Callable[[], int]:
        """A function that samples one token with `settings` and appends it."""
        (temperature, seed, top_p, top_k, min_p, presence, frequency, repetition, stops) = settings
        if presence == 0.0 and frequency == 0.0:
            # The context's own sampling: the draw and the repetition penalty depend only on the
            # position, the logits and the whole context, so one token per call equals sample(n).
            def native_step() -> int:
                return self._interruptible(
                    self._native.sample, 1, temperature, seed, top_p, top_k, min_p, 0.0, 0.0, repetition, stops
                )[0]

            return native_step
        # Presence and frequency penalties count the tokens generated by *this* call, which a
        # one-token sample() cannot know: sample from the logits with the same kernels instead,
        # telling the sampler where the prompt ends.
        sampler = _metal.Sampler()
        sampler.set_temperature(temperature)
        sampler.set_seed(seed)
        sampler.set_top_p(top_p)
        sampler.set_top_k(top_k)
        sampler.set_min_p(min_p)
        sampler.set_presence_penalty(presence)
        sampler.set_frequency_penalty(frequency)
        sampler.set_repetition_penalty(repetition)
        num_prompt_tokens = self.num_tokens

        def penalised_step() -> int:
            if self.num_tokens >= self.max_tokens:
                from .errors import ContextOverflowError

                raise ContextOverflowError(f"generate: the context is full ({self.max_tokens} tokens)")
            self.process()
            history = self.tokens
            logits = self.logits
            try:
                token = int(sampler.sample_logits(logits, history, len(history), num_prompt_tokens))
            except InvalidArgumentError:
                if np.isfinite(logits).any():
                    raise
                raise ModelFileError(
                    f"Context.generate: the model's logits after position {len(history) - 1} are not finite "
                    f"({int(np.isnan(logits).sum())} NaN, {int(np.isneginf(logits).sum())} -inf, "
                    f"{int(np.isposinf(logits).sum())} +inf of {logits.size}): nothing can be sampled; the model "
                    "file's weights are likely corrupt (NaN or infinite values)"
                ) from None
            self._native.append_tokens([token])
            return token

        return penalised_step

    def _interruptible(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run a native call so that Ctrl-C stops it promptly and cleanly.

        While the extension runs with the GIL released, Python delivers SIGINT only when the call
        returns (minutes for a long prompt). So in the main thread, with Python's default SIGINT
        handler, the call runs in a worker thread while the main thread waits interruptibly; on
        KeyboardInterrupt the context is cancelled, the worker joined (the context is consistent
        again) and the KeyboardInterrupt re-raised. Elsewhere the call runs directly.
        """
        if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        ):
            return function(*args)
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                outcome["value"] = function(*args)
            except BaseException as error:  # re-raised in the caller's thread below
                outcome["error"] = error
            finally:
                done.set()

        # Wait on an Event, not Thread.join: a KeyboardInterrupt inside join() marks the thread as
        # stopped while it still runs (CPython's _wait_for_tstate_lock), and join() would then
        # return at once.
        threading.Thread(target=work, name="gpt-oss-metal compute", daemon=True).start()
        try:
            while not done.wait(0.1):  # a timed wait, so SIGINT is handled meanwhile
                pass
        except KeyboardInterrupt:
            self._native.cancel()
            while True:  # the worker stops within one kernel; a second Ctrl-C must not skip that
                try:
                    done.wait()
                    break
                except KeyboardInterrupt:
                    continue
            if not isinstance(outcome.get("error"), CancelledError):
                # The call ended before it saw the request, which is therefore still pending:
                # consume it (a run checks for a request before computing anything).
                try:
                    self._native.process()
                except CancelledError:
                    pass
            raise
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

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
        return self._output_all_logits

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
        if self.closed:
            return "Context(closed)"
        try:
            return f"Context(num_tokens={self.num_tokens}, max_tokens={self.max_tokens})"
        except InvalidStateError:  # another thread is running a call on it
            return f"Context(busy, max_tokens={self.max_tokens})"
