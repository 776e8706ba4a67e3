"""Loading a model.bin: :class:`Model`."""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

from . import _metal
from .errors import DeviceMemoryWarning

if TYPE_CHECKING:
    from .tokenizer import Tokenizer

__all__ = ["Model"]


class Model:
    """A gpt-oss model loaded from a model.bin (layout v1, as published for gpt-oss-20b/120b).

    The C runtime validates the whole file before use (magic, UUIDs, every header field, the
    tokenizer section, the size of every section and tensor) and memory-maps the weights without
    copying them. Problems raise :class:`~gpt_oss_metal.ModelFileError` (malformed file),
    :class:`~gpt_oss_metal.UnsupportedArgumentError` (a valid file this runtime cannot run) or
    :class:`~gpt_oss_metal.GptOssIOError`, an :class:`OSError` with ``errno`` set (cannot open/map).
    A model that cannot run on this device raises
    :class:`~gpt_oss_metal.InsufficientResourcesError` (weights beyond physical memory, or a weights
    region beyond the GPU's maximum buffer length); weights beyond the GPU's recommended working set
    load with a :class:`~gpt_oss_metal.DeviceMemoryWarning` (see :attr:`load_warning`).

    Contexts (:class:`~gpt_oss_metal.Context`) run on this same native model: one mapping and
    one device per Model, however many contexts. ``with Model(path) as model:`` (or
    :meth:`close`) drops the model's native reference at the end; contexts and the tokenizer
    keep their own, so the mapping goes when the last of them is released.

    >>> model = Model("gpt-oss-20b/metal/model.bin")   # doctest: +SKIP
    >>> model.max_context_length
    131072
    """

    def __init__(self, path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> None:
        if not isinstance(path, (str, bytes, os.PathLike)):
            raise TypeError(f"Model() expects a path (str, bytes or os.PathLike), not {type(path).__name__}")
        self._native = _metal.Model(path)
        self._tokenizer: Tokenizer | None = None
        self._load_warning: str = self._native.load_warning
        if self._load_warning:
            warnings.warn(self._load_warning, DeviceMemoryWarning, stacklevel=2)

    @property
    def load_warning(self) -> str:
        """The warning of the load ("" if none): weights above the device's recommended working set."""
        return self._load_warning

    @property
    def path(self) -> str:
        """The path the model was loaded from (as :func:`os.fsdecode` gives it: bytes that are not
        UTF-8 appear as surrogate escapes, so ``os.fsencode(model.path)`` is the original path)."""
        return self._native.path

    @property
    def max_context_length(self) -> int:
        """Largest number of tokens a context of this model can hold (the header's context_length)."""
        return self._native.max_context_length

    @property
    def header(self) -> dict[str, int | float]:
        """The 17 model-header fields and the tokenizer-section sizes, as stored in the file."""
        return self._native.header

    @property
    def config(self) -> dict[str, int | float]:
        """Alias of :attr:`header`."""
        return self.header

    @property
    def layout(self) -> dict[str, Any]:
        """Offsets the loader computed: sections, MoE sections and ``tensors`` (name -> (offset, nbytes))."""
        return self._native.layout

    @property
    def tokenizer(self) -> Tokenizer:
        """The model's :class:`~gpt_oss_metal.Tokenizer` (created once per model)."""
        if self._tokenizer is None:
            from .tokenizer import Tokenizer

            self._tokenizer = Tokenizer(self)
        return self._tokenizer

    def check_file(self) -> None:
        """Raise :class:`~gpt_oss_metal.ModelFileError` if the model file changed since it was loaded.

        The weights are memory-mapped, not copied: truncating the file (e.g. a download writing
        over it) would make the next read of a lost page fail, and rewriting it in place would
        silently change the weights. The runtime checks this (one ``fstat``) before every unit of
        work that reads weights; this method runs the same check on demand. Replacing the file by
        renaming a complete new file over it is safe: the loaded file stays mapped unchanged.
        """
        self._native.check_file()

    def close(self) -> None:
        """Release this object's native model now (idempotent). Later calls other than
        :attr:`path` raise :class:`~gpt_oss_metal.InvalidStateError`; existing contexts and the
        tokenizer stay usable."""
        self._native.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._native.closed

    def __repr__(self) -> str:
        if self.closed:
            return f"Model({self.path!r}, closed)"
        h = self.header
        return (
            f"Model({self.path!r}, num_blocks={h['num_blocks']}, num_experts={h['num_experts']}, "
            f"embedding_dim={h['embedding_dim']}, max_context_length={self.max_context_length})"
        )

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
