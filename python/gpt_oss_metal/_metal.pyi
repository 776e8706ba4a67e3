"""Type stubs for gpt_oss_metal._metal, the pybind11 extension over the C runtime.

Use the gpt_oss_metal package (Model, Tokenizer, ...) rather than this module directly.
Every failure raises a class from gpt_oss_metal.errors.
"""

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

# --- Model and tokenizer (model_bindings.cpp) ---

#: Special-token roles (enum gptoss_special_token) by name: "return" -> 1, ..., "end_untrusted" -> 10.
SPECIAL_TOKEN_ROLES: dict[str, int]

class Tokenizer:
    """The vocabulary stored in a model.bin (obtain it from Model.tokenizer)."""

    @property
    def num_text_tokens(self) -> int: ...
    @property
    def num_special_tokens(self) -> int: ...
    @property
    def num_tokens(self) -> int: ...
    @property
    def regex(self) -> str:
        """The pre-tokenizer regex stored in the file."""
    @property
    def special_token_uuids(self) -> list[bytes]:
        """16-byte UUID of each special-token slot in id order (16 zero bytes: unnamed)."""
    def decode(self, token_id: int) -> bytes:
        """Bytes of a text token; special ids and ids past the vocabulary raise InvalidArgumentError."""
    def text_tokens(self) -> list[bytes]:
        """Bytes of every text token, indexed by id."""
    def special_token_id(self, role: int | str) -> int:
        """Id by role value, role name ("return") or token text ("<|return|>").

        InvalidArgumentError for an unknown role, UnsupportedArgumentError if the file names no such token.
        """
    def token_uuid(self, token_id: int) -> bytes:
        """16-byte UUID of a token (zero bytes for text tokens and unnamed slots)."""
    def encode_c(self, text: str | bytes) -> list[int]:
        """Token ids of text (str, or bytes that need not be valid UTF-8) from the C BPE encoder."""

class Model:
    """A model.bin loaded by the C runtime: validated, weights memory-mapped (never copied).

    Raises ModelFileError (malformed file), UnsupportedArgumentError (valid but unsupported, e.g.
    head_dim != 64) or GptOssIOError (an OSError with errno set) when the file cannot be opened.
    """

    def __init__(self, path: str | bytes | os.PathLike[str]) -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def max_context_length(self) -> int: ...
    @property
    def load_warning(self) -> str: ...
    @property
    def tokenizer(self) -> Tokenizer: ...
    @property
    def header(self) -> dict[str, int | float]:
        """The 17 model-header fields plus num_special_tokens, num_text_tokens, regex_size, tokens_size."""
    @property
    def layout(self) -> dict[str, Any]:
        """special_uuids_offset, regex_offset, tokens_offset, weights_offset, vocab_size,
        moe_offsets (list), expert_size, file_size, and tensors: name -> (offset, nbytes)."""
    def check_file(self) -> None:
        """ModelFileError if the file was truncated or rewritten in place since the load."""
    def close(self) -> None:
        """Release this object's reference to the C model (contexts and tokenizers keep theirs);
        later calls other than path raise InvalidStateError. Idempotent."""
    @property
    def closed(self) -> bool: ...

# --- BPE encoder (bpe_bindings.cpp) ---

def bpe_pretokenize(text: str | bytes) -> list[bytes]:
    """The C pre-tokenizer's pieces of text, as bytes."""

#: Unicode version of the C pre-tokenizer's character tables.
BPE_UNICODE_VERSION: str

# --- Context (context_bindings.cpp) ---

class Context:
    """An inference context on the C model of a Model (use gpt_oss_metal.Context).

    process and sample release the GIL; cancel may be called from any thread.
    """

    def __init__(self, model: Model, context_length: int = 0, max_batch_tokens: int = 0, fp32_kv: bool = False) -> None: ...
    @property
    def num_tokens(self) -> int: ...
    @property
    def num_processed_tokens(self) -> int: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def tokens(self) -> list[int]: ...
    @property
    def closed(self) -> bool: ...
    @property
    def vocabulary_size(self) -> int: ...
    def append_tokens(self, tokens: int | Iterable[int] | np.ndarray) -> int:
        """Ints / NumPy integers (or a 1-D integer array); floats and bools raise InvalidArgumentTypeError."""
    def append_bytes(self, text: bytes) -> int: ...
    def process(self) -> None: ...
    def sample(
        self, max_tokens: int, temperature: float, seed: int, top_p: float, top_k: int, min_p: float,
        presence_penalty: float, frequency_penalty: float, repetition_penalty: float,
        stop_tokens: Iterable[int] | np.ndarray,
    ) -> list[int]: ...
    def check_sampling(
        self, function: str, max_tokens: int, temperature: float, seed: int, top_p: float, top_k: int,
        min_p: float, presence_penalty: float, frequency_penalty: float, repetition_penalty: float,
        stop_tokens: Iterable[int] | np.ndarray,
    ) -> tuple[int, float, int, float, int, float, float, float, float, list[int]]:
        """Validate sample/generate arguments (one-line errors naming argument, value, range)."""
    def reset(self) -> None: ...
    def cancel(self) -> None: ...
    def close(self) -> None:
        """Free the context's KV cache and buffers now (cancelling and waiting for a call running in
        another thread); later calls raise InvalidStateError."""
    def set_output_all_logits(self, enabled: bool) -> None: ...
    def set_fp32_kv(self, enabled: bool) -> None: ...
    def logits(self) -> np.ndarray:
        """float32 [rows, vocabulary] copy of the last process's logits."""
    def expert_choices(self) -> np.ndarray:
        """uint32 [blocks, rows, k]: experts chosen for the last chunk's tokens."""
    def host_timings(self) -> dict[str, int]: ...

# --- Device (CPU execution layer / Metal) ---

class Device:
    """A compute device (Apple GPU or the CPU execution layer) for running kernels by name."""

    def __init__(self, kind: str = "any") -> None: ...
    @property
    def info(self) -> dict[str, int | str]: ...
    def run(
        self,
        kernel: str,
        threadgroups: Sequence[int],
        threads_per_threadgroup: Sequence[int],
        buffers: dict[int, np.ndarray | bytes],
        threadgroup_memory: dict[int, int] = ...,
    ) -> None:
        """Dispatch `kernel` once and wait; arrays are copied in and back, bytes bound with setBytes."""
    def trace_counters(self) -> dict[str, int]: ...
    def reset_trace_counters(self) -> None: ...

# --- Sampler (sampler_bindings.cpp) ---

class Sampler:
    """Sampling settings; sample_logits runs the GPU path, sample_logits_host the host reference."""

    def __init__(self) -> None: ...
    def set_temperature(self, temperature: float) -> None: ...
    def set_top_p(self, top_p: float) -> None: ...
    def set_top_k(self, top_k: int) -> None: ...
    def set_min_p(self, min_p: float) -> None: ...
    def set_presence_penalty(self, penalty: float) -> None: ...
    def set_frequency_penalty(self, penalty: float) -> None: ...
    def set_repetition_penalty(self, penalty: float) -> None: ...
    def set_seed(self, seed: int) -> None: ...
    def set_stop_tokens(self, tokens: Iterable[int] | np.ndarray) -> None: ...
    @property
    def stop_tokens(self) -> list[int]: ...
    def sample_logits(
        self, logits: np.ndarray, history: Sequence[int] = ..., position: int = 0,
        num_prompt_tokens: int = 0, device: str | None = None,
    ) -> int: ...
    def sample_logits_host(
        self, logits: np.ndarray, history: Sequence[int] = ..., position: int = 0, num_prompt_tokens: int = 0,
    ) -> int: ...
    def scaled_logits(
        self, logits: np.ndarray, history: Sequence[int] = ..., num_prompt_tokens: int = 0, device: str | None = None,
    ) -> np.ndarray: ...
    def scaled_logits_host(
        self, logits: np.ndarray, history: Sequence[int] = ..., num_prompt_tokens: int = 0,
    ) -> np.ndarray: ...
