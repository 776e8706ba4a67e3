"""gpt-oss-metal: run OpenAI's gpt-oss models on Apple Silicon GPUs from Python.

The runtime is a C library with Metal compute kernels; on machines without an Apple GPU the same
kernels run on the CPU execution layer. Names that need the compiled extension are imported
lazily, so pure-Python tools (the converter, ``model_bin``) work without it.
"""

from __future__ import annotations

from typing import Any

from .errors import (
    CancelledError,
    ContextOverflowError,
    DeviceError,
    DeviceMemoryWarning,
    GptOssError,
    GptOssIOError,
    InsufficientMemoryError,
    InsufficientResourcesError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    InvalidStateError,
    InvalidTextError,
    ModelFileError,
    NotARegularFileError,
    TokenIdError,
    UnsupportedArgumentError,
    UnsupportedSystemError,
)

__version__ = "0.1.0"

# name -> submodule that defines it; resolved on first attribute access (PEP 562).
_LAZY = {
    "Model": "model",
    "Tokenizer": "tokenizer",
    "Context": "context",
    "GeneratedToken": "context",
    "TextDecoder": "context",
}

__all__ = [
    "Model",
    "Tokenizer",
    "Context",
    "GeneratedToken",
    "TextDecoder",
    "GptOssError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "InvalidTextError",
    "TokenIdError",
    "UnsupportedArgumentError",
    "InvalidStateError",
    "GptOssIOError",
    "InsufficientMemoryError",
    "InsufficientResourcesError",
    "UnsupportedSystemError",
    "ContextOverflowError",
    "ModelFileError",
    "NotARegularFileError",
    "CancelledError",
    "DeviceError",
    "DeviceMemoryWarning",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'gpt_oss_metal' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
