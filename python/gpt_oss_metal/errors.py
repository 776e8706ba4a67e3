"""Exceptions raised by gpt_oss_metal.

Every failure of the C runtime carries a status code; each code maps to one class below, and the
message is the runtime's own description (naming the file, field, offset or argument at fault).
Each class also derives from the closest built-in exception so generic handlers keep working:
a malformed model file is a ``ValueError``, a missing file an ``OSError``, and so on.
"""

from __future__ import annotations

__all__ = [
    "GptOssError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "InvalidTextError",
    "UnsupportedArgumentError",
    "InvalidStateError",
    "GptOssIOError",
    "InsufficientMemoryError",
    "InsufficientResourcesError",
    "UnsupportedSystemError",
    "ContextOverflowError",
    "ModelFileError",
    "CancelledError",
    "DeviceError",
    "DeviceMemoryWarning",
    "NotARegularFileError",
    "TokenIdError",
    "exception_for_status",
]


class GptOssError(Exception):
    """Base class of every error raised by the gpt-oss-metal runtime."""

    #: The C ``enum gptoss_status`` value this class stands for.
    status: int = -1


class InvalidArgumentError(GptOssError, ValueError):
    """An argument is invalid: out-of-range token id, bad sampling parameter, NULL handle."""

    status = 1


class InvalidArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument has the wrong type: a float, a bool or a string where a token id (an integer) is
    expected. Both an :class:`InvalidArgumentError` and a :class:`TypeError`."""


class InvalidTextError(InvalidArgumentError, UnicodeEncodeError):
    """Text that cannot be encoded as UTF-8: a ``str`` holding a lone surrogate (U+D800..U+DFFF, e.g.
    from ``"\\ud800"`` or a ``surrogateescape``-decoded file name). Raised by ``Context.append`` (and
    ``Tokenizer.encode``) instead of substituting U+FFFD: silently changing the text would change the
    tokens. ``start`` is the index in the ``str`` of the first lone surrogate; the message names it.
    Both an :class:`InvalidArgumentError` and a :class:`UnicodeEncodeError` (hence a ``ValueError``).
    """

    def __init__(self, function: str, text: str, start: int) -> None:
        character = text[start]
        reason = (
            f"{function}: the text has a lone surrogate U+{ord(character):04X} at index {start}, "
            "which cannot be encoded as UTF-8 (not substituted: fix the text, e.g. "
            "text.encode('utf-8', 'replace') to replace it)"
        )
        UnicodeEncodeError.__init__(self, "utf-8", text, start, start + 1, reason)
        self.function = function

    @property
    def index(self) -> int:
        """Index in the ``str`` of the first lone surrogate (the same as ``start``)."""
        return int(self.start)

    @property
    def code_point(self) -> int:
        """The lone surrogate's code point (U+D800..U+DFFF)."""
        return ord(str(self.object)[self.start])

    def __reduce__(self) -> tuple[type, tuple[str, str, int]]:
        return (type(self), (self.function, str(self.object), int(self.start)))

    def __str__(self) -> str:
        return str(self.reason)

    @classmethod
    def check(cls, function: str, text: str) -> bytes:
        """``text`` encoded as UTF-8, or this error naming the first lone surrogate."""
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise cls(function, text, error.start) from None


class UnsupportedArgumentError(GptOssError, ValueError):
    """A valid argument this runtime does not support (e.g. a head size other than 64)."""

    status = 2


class InvalidStateError(GptOssError, RuntimeError):
    """The object is not in a state that allows the call."""

    status = 3


class GptOssIOError(GptOssError, OSError):
    """The operating system failed to open, map or read a file."""

    status = 4


class InsufficientMemoryError(GptOssError, MemoryError):
    """Host memory ran out."""

    status = 5


class InsufficientResourcesError(GptOssError, RuntimeError):
    """Device resources (GPU working set, buffers) are insufficient, e.g. the model does not fit."""

    status = 6


class UnsupportedSystemError(GptOssError, RuntimeError):
    """No usable device on this system."""

    status = 7


class ContextOverflowError(GptOssError, IndexError):
    """The operation would exceed the context length."""

    status = 8


class ModelFileError(GptOssError, ValueError):
    """The model file is malformed: bad magic or UUID, insane header field, truncated section."""

    status = 9


class CancelledError(GptOssError):
    """The operation was cancelled before it completed; the object stays usable."""

    status = 10


class DeviceError(GptOssError, RuntimeError):
    """The device failed while executing kernels (a kernel fault or a command-buffer error)."""

    status = 11


class TokenIdError(InvalidArgumentError, IndexError):
    """A token id outside the vocabulary (or of the wrong kind, e.g. a special token where only
    text tokens have bytes). The message names the id and the vocabulary size; ``token_id`` holds
    the offending id."""

    def __init__(self, message: str, token_id: int | None = None) -> None:
        super().__init__(message)
        self.token_id = token_id


class NotARegularFileError(ModelFileError, GptOssIOError):
    """The model path names a directory, FIFO, device or socket, not a regular file (a model.bin
    is memory-mapped, and reading a FIFO would block forever). Both a :class:`ModelFileError`
    (``ValueError``) and a :class:`GptOssIOError` (``OSError``, ``errno`` ``EISDIR`` for a
    directory, ``ENODEV`` otherwise); the message names the path and what it is."""


class DeviceMemoryWarning(UserWarning):
    """The model loads but exceeds a soft device limit: its weights are larger than the GPU's
    recommended working set, so Metal may page them (slower inference). Issued with
    :func:`warnings.warn` when a :class:`~gpt_oss_metal.Model` is created; the message gives both
    sizes in GiB and the device name. A :class:`UserWarning` (not a :class:`ResourceWarning`, which
    Python's default filters hide) so that it is shown by default; silence it with
    ``warnings.filterwarnings("ignore", category=gpt_oss_metal.DeviceMemoryWarning)``."""


_BY_STATUS: dict[int, type[GptOssError]] = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        UnsupportedArgumentError,
        InvalidStateError,
        GptOssIOError,
        InsufficientMemoryError,
        InsufficientResourcesError,
        UnsupportedSystemError,
        ContextOverflowError,
        ModelFileError,
        CancelledError,
        DeviceError,
    )
}


def exception_for_status(status: int, message: str) -> GptOssError:
    """Return (not raise) the exception instance for a C status code and message."""
    cls = _BY_STATUS.get(status, GptOssError)
    return cls(message)
