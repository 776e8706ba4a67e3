"""Convert a gpt-oss checkpoint (safetensors) into a model.bin in layout v1.

Two checkpoint layouts are understood (see docs/model-bin.md):

* "original": the ``original/`` folder of the released repositories (``block.N.attn.qkv.weight``,
  MXFP4 experts ``block.N.mlp.mlp1_weight.blocks`` ...);
* Hugging Face transformers (``model.layers.N.self_attn.q_proj.weight`` ...), with experts either
  MXFP4 (``gate_up_proj_blocks``/``_scales``) or dense (``gate_up_proj``), the dense ones being
  quantized here to MXFP4 by :func:`quantize_mxfp4`.

The conversion streams: tensors are memory-mapped and copied out one tensor (embedding tables in
row chunks, experts one expert at a time), so converting gpt-oss-120b needs a few hundred MB of
memory, not the model's size. The output is written to a temporary file next to the destination,
fsynced, checked with :func:`gpt_oss_metal.model_bin.read_model_bin`, and only then renamed over the
destination: a failed or interrupted conversion leaves no file that looks valid and never damages
an existing destination.

Safetensors files are read through the documented on-disk format (8-byte header length, JSON
header, raw data) with ``numpy.memmap``: the ``safetensors`` package's NumPy backend cannot
represent bfloat16, and memory-mapping gives zero-copy slicing of a single expert.
"""

from __future__ import annotations

import glob
import json
import math
import numbers
import os
import re
import struct
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from . import model_bin
from ._files import atomic_output, check_destination
from .errors import GptOssError
from .model_bin import MXFP4_BLOCK, MXFP4_SCALE_OFFSET, ModelHeader, bf16_to_f32, f32_to_bf16

__all__ = [
    "ConversionError",
    "CheckpointError",
    "convert_checkpoint",
    "detect_layout",
    "load_config",
    "quantize_mxfp4",
    "dequantize_mxfp4",
    "E2M1_VALUES",
    "SafetensorsShards",
    "interleave_rope_rows",
]


class ConversionError(GptOssError, ValueError):
    """The checkpoint cannot be converted: unknown layout, bad config, missing or malformed tensor,
    or an unusable destination."""


class CheckpointError(ConversionError):
    """A checkpoint file is malformed: a bad safetensors header (dtype, shape, data offsets), a
    tensor holding NaN or infinity, an E8M0 NaN scale, a config.json value of the wrong type or
    range, or a config inconsistent with the tensors. The message names the file, the tensor or
    field and the problem."""


def _is_int(value: Any) -> bool:
    """An integer (bool is an int in Python but not here; 2.0 is not an integer either)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _shown(value: Any) -> str:
    """A config value as it would appear in JSON (repr for anything JSON cannot show)."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _index_text(index: Any) -> str:
    parts = index if isinstance(index, tuple) else (index,)
    return ", ".join(f"{p.start or 0}:{p.stop}" if isinstance(p, slice) else str(p) for p in parts)


def _os_error(error: OSError, path: str, doing: str) -> OSError:
    """An OSError of the same errno whose message names ``path`` (and what was being done)."""
    if error.errno is None:
        return OSError(f"{path}: {doing} failed: {error}")
    return OSError(error.errno, f"{error.strerror or os.strerror(error.errno)} ({doing})", path)


#: e2m1 values by 4-bit code (bit 3 is the sign).
E2M1_VALUES = np.array(
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32
)
E8M0_BIAS = 127
HEAD_DIM = 64  # the only head size layout v1 supports
ROUTER_TOP_K = 4  # both released models route every token to 4 experts
#: Largest safetensors JSON header read (the safetensors library's own limit is 100 MB).
MAX_SAFETENSORS_HEADER = 100_000_000

# --------------------------------------------------------------------------------------------
# Safetensors shards
# --------------------------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {
    "BF16": np.dtype("<u2"),  # kept as raw bf16 bits
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
}


class SafetensorsShards:
    """Every tensor of the *.safetensors files in a directory, memory-mapped, read on demand."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.files = sorted(glob.glob(os.path.join(directory, "*.safetensors")))
        if not self.files:
            raise ConversionError(f"{directory}: no *.safetensors files")
        self._entries: dict[str, tuple[str, str, tuple[int, ...], int]] = {}  # name -> file, dtype, shape, offset
        self._maps: dict[str, np.memmap] = {}
        for path in self.files:
            self._index(path)

    def _index(self, path: str) -> None:
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                prefix = f.read(8)
                if len(prefix) != 8:
                    raise CheckpointError(f"{path}: not a safetensors file (shorter than 8 bytes)")
                (header_size,) = struct.unpack("<Q", prefix)
                if header_size > size - 8:
                    raise CheckpointError(f"{path}: safetensors header size {header_size} exceeds the file ({size} bytes)")
                if header_size > MAX_SAFETENSORS_HEADER:
                    raise CheckpointError(
                        f"{path}: safetensors header size {header_size} exceeds the limit of {MAX_SAFETENSORS_HEADER} bytes"
                    )
                raw = f.read(header_size)
        except OSError as e:
            raise _os_error(e, path, "reading") from None
        try:
            header = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise CheckpointError(f"{path}: safetensors header is not JSON: {e}") from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{path}: safetensors header is not a JSON object")
        data_start = 8 + header_size
        data_size = size - data_start
        spans: list[tuple[int, int, str]] = []
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            spans.append(self._parse_entry(path, name, entry, data_start, data_size))
        # The data of different tensors must not overlap (safetensors stores them back to back):
        # overlapping spans mean a corrupt or hostile header.
        spans.sort()
        for (begin, end, name), (next_begin, _, next_name) in zip(spans, spans[1:]):
            if next_begin < end:
                raise CheckpointError(
                    f"{path}: tensors {name} (bytes {begin}..{end}) and {next_name} (from byte {next_begin}) overlap"
                )

    def _parse_entry(self, path: str, name: str, entry: Any, data_start: int, data_size: int) -> tuple[int, int, str]:
        where = f"{path}: tensor {name}"
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where}: header entry is not a JSON object")
        dtype = entry.get("dtype")
        if not isinstance(dtype, str) or dtype not in _SAFETENSORS_DTYPES:
            raise CheckpointError(
                f"{where}: unsupported dtype {dtype!r} (supported: {', '.join(_SAFETENSORS_DTYPES)})"
            )
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise CheckpointError(f"{where}: shape {shape!r} is not a list of non-negative integers")
        offsets = entry.get("data_offsets")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(x) for x in offsets)):
            raise CheckpointError(f"{where}: data_offsets {offsets!r} is not a list of two integers")
        begin, end = offsets
        if begin < 0 or end < begin:
            raise CheckpointError(f"{where}: data_offsets [{begin}, {end}] are negative or out of order")
        if end > data_size:
            raise CheckpointError(
                f"{where}: data_offsets [{begin}, {end}] end beyond the file's {data_size} data bytes (truncated file?)"
            )
        nbytes = math.prod(shape) * _SAFETENSORS_DTYPES[dtype].itemsize
        if end - begin != nbytes:
            raise CheckpointError(
                f"{where}: data_offsets [{begin}, {end}] span {end - begin} bytes, but shape {shape} of {dtype} "
                f"needs {nbytes}"
            )
        if name in self._entries:
            raise CheckpointError(f"tensor {name} appears in both {self._entries[name][0]} and {path}")
        self._entries[name] = (path, dtype, tuple(shape), data_start + begin)
        return begin, end, name

    def describe(self) -> str:
        """The shard set, for error messages."""
        names = ", ".join(os.path.basename(p) for p in self.files)
        return f"{self.directory} [{names}]"

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name][2]

    def dtype(self, name: str) -> str:
        return self._entries[name][1]

    def file_of(self, name: str) -> str:
        return self._entries[name][0]

    def where(self, name: str, index: Any = ()) -> str:
        """``FILE: tensor NAME[INDEX]``, for error messages."""
        part = f"[{_index_text(index)}]" if index != () else ""
        return f"{self.file_of(name)}: tensor {name}{part}"

    def view(self, name: str) -> np.ndarray:
        """Zero-copy memory-mapped view of a tensor (BF16 as raw uint16)."""
        path, dtype, shape, offset = self._entries[name]
        m = self._maps.get(path)
        if m is None:
            try:
                m = self._maps[path] = np.memmap(path, dtype=np.uint8, mode="r")
            except OSError as e:
                raise _os_error(e, path, "memory-mapping") from None
        np_dtype = _SAFETENSORS_DTYPES[dtype]
        return np.frombuffer(m, dtype=np_dtype, count=math.prod(shape), offset=offset).reshape(shape)

    def _check_finite(self, name: str, index: Any, raw: np.ndarray, rounded: np.ndarray | None = None) -> None:
        """Refuse NaN and infinity in a float tensor: ``raw`` as stored, ``rounded`` its bf16 bits
        after rounding from F32/F16 (a finite value beyond the bf16 range rounds to infinity)."""
        if self.dtype(name) == "BF16":
            bad = (raw & 0x7F80) == 0x7F80  # exponent all ones: infinity or NaN
            problem = "NaN or infinity"
        else:
            bad = ~np.isfinite(raw)
            problem = "NaN or infinity"
            if rounded is not None and not bad.any():
                bad = (rounded & 0x7F80) == 0x7F80
                problem = "a value beyond the bf16 range (it would round to infinity)"
        if not bad.any():
            return
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        value = float(bf16_to_f32(raw[first]) if self.dtype(name) == "BF16" else raw[first])
        part = f"[{_index_text(index)}]" if index != () else ""
        raise CheckpointError(
            f"{self.file_of(name)}: tensor {name}{part} contains {problem}: {int(bad.sum())} such value(s), "
            f"the first {value} at index {list(first)}"
        )

    def read_bf16(self, name: str, index: Any = ()) -> np.ndarray:
        """A tensor (or ``index`` of it) as bf16 bits (uint16); F32/F16 are rounded to nearest-even.

        Raises CheckpointError if it holds NaN or infinity (or a value that rounds to infinity)."""
        part = self.view(name)[index]
        if self.dtype(name) == "BF16":
            out = np.array(part)
            self._check_finite(name, index, out)
            return out
        if self.dtype(name) in ("F32", "F16"):
            out = f32_to_bf16(part.astype(np.float32))
            self._check_finite(name, index, part, out)
            return out
        raise CheckpointError(f"tensor {name} in {self.file_of(name)} is {self.dtype(name)}, expected a float type")

    def read_f32(self, name: str, index: Any = ()) -> np.ndarray:
        """A tensor (or ``index`` of it) widened to float32 (exact for BF16/F16/F32); refuses NaN and infinity."""
        part = self.view(name)[index]
        if self.dtype(name) == "BF16":
            self._check_finite(name, index, part)
            return bf16_to_f32(part)
        if self.dtype(name) in ("F32", "F16"):
            self._check_finite(name, index, part)
            return part.astype(np.float32)
        raise CheckpointError(f"tensor {name} in {self.file_of(name)} is {self.dtype(name)}, expected a float type")

    def read_u8(self, name: str, index: Any = ()) -> np.ndarray:
        if self.dtype(name) != "U8":
            raise CheckpointError(f"tensor {name} in {self.file_of(name)} is {self.dtype(name)}, expected U8")
        return np.array(self.view(name)[index])

    def close(self) -> None:
        self._maps.clear()


# --------------------------------------------------------------------------------------------
# MXFP4
# --------------------------------------------------------------------------------------------


def dequantize_mxfp4(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """MXFP4 -> float32. blocks [..., K/32, 16] u8, scales [..., K/32] u8 E8M0 (bias 127) -> [..., K]."""
    low = E2M1_VALUES[blocks & 0x0F]
    high = E2M1_VALUES[blocks >> 4]
    values = np.stack([low, high], axis=-1).reshape(*blocks.shape[:-1], 2 * blocks.shape[-1])
    values = values * np.ldexp(np.float32(1.0), scales.astype(np.int32) - E8M0_BIAS)[..., None].astype(np.float32)
    return values.reshape(*blocks.shape[:-2], -1)


def quantize_mxfp4(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [..., K] -> (blocks [..., K/32, 16] u8, scales [..., K/32] u8 E8M0 with bias 127).

    The rule, per block of 32 consecutive values along the last axis:

    * amax = max |x|. The shared exponent is e = ceil(log2(amax / 6)), the smallest e with
      6·2^e >= amax, so the largest e2m1 magnitude (6) covers the block; it is computed exactly
      from the binary exponent of amax (no floating-point log). An all-zero block gets e = 0.
      e is clamped below at -127 (E8M0 code 0); e > 127 is an error.
    * each x/2^e is rounded to the nearest e2m1 magnitude {0, 0.5, 1, 1.5, 2, 3, 4, 6}; a tie
      goes to the even code (the one whose mantissa bit is 0), as IEEE round-half-to-even does.
    * the sign bit is the sign bit of x, so -0.0 and tiny negatives that round to 0 keep it.

    Values that are already e2m1·2^e with one block element of magnitude 6·2^e quantize back to
    exactly their original bits.
    """
    x = np.asarray(values, dtype=np.float32)
    k = x.shape[-1]
    if k % MXFP4_BLOCK:
        raise ConversionError(f"MXFP4 quantization needs a multiple of {MXFP4_BLOCK} values per row, got {k}")
    if not np.all(np.isfinite(x)):
        raise ConversionError("cannot quantize non-finite values to MXFP4")
    x = x.reshape(*x.shape[:-1], k // MXFP4_BLOCK, MXFP4_BLOCK)
    amax = np.max(np.abs(x), axis=-1)
    mantissa, exponent = np.frexp(amax)  # amax = m·2^k, m in [0.5, 1)
    # 6·2^e = 0.75·2^(e+3) >= m·2^k  <=>  e >= k-3 if m <= 0.75, else e >= k-2.
    e = np.where(mantissa <= 0.75, exponent - 3, exponent - 2).astype(np.int32)
    e = np.where(amax == 0, 0, e)
    e = np.maximum(e, -E8M0_BIAS)
    if np.any(e > E8M0_BIAS):
        raise ConversionError(f"value magnitude {float(amax.max())} is too large for an E8M0 scale")
    y = np.abs(x) * np.ldexp(np.float32(1.0), -e)[..., None].astype(np.float32)
    # Midpoints between adjacent magnitudes; '>' sends a tie down, '>=' up, so ties land on the even code.
    code = (
        (y > 0.25).astype(np.uint8)
        + (y >= 0.75)
        + (y > 1.25)
        + (y >= 1.75)
        + (y > 2.5)
        + (y >= 3.5)
        + (y > 5.0)
    ).astype(np.uint8)
    code |= np.signbit(x).astype(np.uint8) << 3
    blocks = (code[..., 0::2] | (code[..., 1::2] << 4)).astype(np.uint8)
    scales = (e + E8M0_BIAS).astype(np.uint8)
    return blocks, scales


def _stored_scales(scales: np.ndarray, what: str) -> np.ndarray:
    """Checkpoint E8M0 scales -> model.bin bytes (s + 14), refusing NaN (255) and values that overflow a byte."""
    nan = scales == 255
    if nan.any():
        first = [int(i) for i in np.argwhere(nan)[0]]
        raise CheckpointError(
            f"{what}: MXFP4 scale 255 (E8M0 NaN) at index {first} ({int(nan.sum())} in all); refusing NaN weights"
        )
    limit = 255 - MXFP4_SCALE_OFFSET
    if scales.size and int(scales.max()) > limit:
        raise CheckpointError(
            f"{what}: MXFP4 scale {int(scales.max())} exceeds {limit}, so scale + {MXFP4_SCALE_OFFSET} "
            "does not fit in a byte"
        )
    return scales + np.uint8(MXFP4_SCALE_OFFSET)


# --------------------------------------------------------------------------------------------
# Config and layout
# --------------------------------------------------------------------------------------------


def load_config(directory: str) -> dict[str, Any]:
    path = os.path.join(directory, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        raise ConversionError(f"{path}: missing (a checkpoint directory needs config.json)") from None
    except ValueError as e:
        raise ConversionError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise ConversionError(f"{path}: expected a JSON object")
    return config


def _normalized_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Accept transformers >= 5 ``rope_parameters`` as well as ``rope_theta`` + ``rope_scaling``."""
    out = dict(config)
    rope_parameters = config.get("rope_parameters")
    if isinstance(rope_parameters, Mapping):
        out.setdefault("rope_theta", rope_parameters.get("rope_theta"))
        out.setdefault("rope_scaling", dict(rope_parameters))
    return out


# Ranges the C loader accepts (metal/source/include/internal/model-file.h, parse_model_header).
MAX_CONTEXT_LENGTH = 1 << 24
MAX_BLOCKS = 1024
MAX_EXPERTS = 1024
MAX_EMBEDDING_DIM = 65536
MAX_MLP_DIM = 65536
MAX_HEADS = 1024
MAX_ATTENTION_WINDOW = 1 << 24
#: Largest vocab_size (rows of the checkpoint's embedding tables) accepted.
MAX_VOCAB_ROWS = 1 << 24
_F32_MAX = float(np.finfo(np.float32).max)


class _ConfigReader:
    """Typed, range-checked access to config.json values (CheckpointError naming the field)."""

    def __init__(self, config: Mapping[str, Any], where: str) -> None:
        self.config = config
        self.where = where

    def _lookup(self, names: tuple[str, ...], default: Any) -> tuple[str, Any]:
        for name in names:
            if name in self.config:
                return name, self.config[name]
        if default is not None:
            return names[0], default
        raise CheckpointError(f"{self.where}: config.json lacks {' / '.join(names)}")

    def int(self, *names: str, low: int, high: int, default: int | None = None) -> int:
        name, value = self._lookup(names, default)
        if not _is_int(value):
            raise CheckpointError(f"{self.where}: {name} must be an integer, got {_shown(value)}")
        value = int(value)
        if not low <= value <= high:
            raise CheckpointError(f"{self.where}: {name} is {value}; must be in [{low}, {high}]")
        return value

    def float(self, *names: str, above: float, high: float = _F32_MAX, default: float | None = None) -> float:
        """A finite number > ``above`` and <= ``high`` (float32-representable by default)."""
        name, value = self._lookup(names, default)
        if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
            raise CheckpointError(f"{self.where}: {name} must be a number, got {_shown(value)}")
        value = float(value)
        if not (math.isfinite(value) and above < value <= high):
            bound = f"> {above:g}" + (" and representable as float32" if high == _F32_MAX else f" and <= {high:g}")
            raise CheckpointError(f"{self.where}: {name} is {value}; must be a finite number {bound}")
        return value


def _check_header(h: ModelHeader, where: str) -> None:
    """The derived header against the C loader's checks (the fields that are not copied values)."""
    for field, low, high in (("interpolation_scale", 0.0, 1.0), ("yarn_multiplier", 0.0, math.inf),
                             ("rmsnorm_epsilon", 0.0, 1.0), ("yarn_offset", -math.inf, math.inf),
                             ("yarn_scale", -math.inf, math.inf), ("swiglu_limit", 0.0, math.inf),
                             ("rope_theta", 0.0, math.inf)):
        value = getattr(h, field)
        if not (math.isfinite(value) and (value > low or low == -math.inf) and value <= high):
            raise CheckpointError(
                f"{where}: the RoPE/YaRN settings give header field {field} = {value}, which the runtime rejects "
                f"(must be a finite number in ({low:g}, {high:g}])"
            )
    if not 1 <= h.context_length <= MAX_CONTEXT_LENGTH:
        raise CheckpointError(
            f"{where}: context length (initial context length x rope scaling factor) is {h.context_length}; "
            f"must be in [1, {MAX_CONTEXT_LENGTH}]"
        )


def header_for_config(config: Mapping[str, Any], where: str = "config.json") -> ModelHeader:
    """Validate a checkpoint config and derive the model.bin header (ConversionError if unusable).

    Every value is checked for its JSON type (an integer field must hold an integer: 2.7 and true
    are refused) and for the range the C loader accepts, so a converted file always loads.
    """
    config = _normalized_config(config)
    if "experts_per_token" not in config and "num_experts_per_tok" not in config:
        config["experts_per_token"] = ROUTER_TOP_K  # absent from some configs; both released models use 4
    rope_scaling = config.get("rope_scaling")
    if rope_scaling is not None and not isinstance(rope_scaling, Mapping):
        raise CheckpointError(f"{where}: rope_scaling must be a JSON object, got {_shown(rope_scaling)}")
    rope_scaling = rope_scaling or {}
    rope_type = rope_scaling.get("rope_type", rope_scaling.get("type", "yarn"))
    if rope_type != "yarn":
        raise ConversionError(f"{where}: rope_scaling type {rope_type!r} is not supported (expected 'yarn')")
    c = _ConfigReader(config, where)
    head_dim = c.int("head_dim", low=1, high=1 << 30)
    if head_dim != HEAD_DIM:
        raise ConversionError(f"{where}: head_dim {head_dim} is not supported (layout v1 needs {HEAD_DIM})")
    num_blocks = c.int("num_hidden_layers", low=1, high=MAX_BLOCKS)
    num_experts = c.int("num_experts", "num_local_experts", low=1, high=MAX_EXPERTS)
    active = c.int("experts_per_token", "num_experts_per_tok", low=1, high=num_experts)
    dims = {}
    for field, high in (("hidden_size", MAX_EMBEDDING_DIM), ("intermediate_size", MAX_MLP_DIM)):
        dims[field] = c.int(field, low=MXFP4_BLOCK, high=high)
        if dims[field] % MXFP4_BLOCK:
            raise CheckpointError(f"{where}: {field} {dims[field]} is not a multiple of {MXFP4_BLOCK} (MXFP4 blocks)")
    num_heads = c.int("num_attention_heads", low=1, high=MAX_HEADS)
    num_kv_heads = c.int("num_key_value_heads", low=1, high=MAX_HEADS)
    if num_heads % num_kv_heads:
        raise CheckpointError(
            f"{where}: num_attention_heads {num_heads} is not a multiple of num_key_value_heads {num_kv_heads}"
        )
    sliding_window = c.int("sliding_window", low=1, high=MAX_ATTENTION_WINDOW)
    c.float("swiglu_limit", above=0.0)
    c.float("rope_theta", above=1.0)  # ln(theta) divides in the YaRN formulas
    c.int("vocab_size", low=model_bin.NUM_TEXT_TOKENS + model_bin.NUM_SPECIAL_TOKENS, high=MAX_VOCAB_ROWS)
    # RoPE scaling: top-level (original layout) or inside rope_scaling (Hugging Face).
    scaling = _ConfigReader({**rope_scaling, **config}, where)
    scaling.int("initial_context_length", "original_max_position_embeddings", low=1, high=MAX_CONTEXT_LENGTH,
                default=4096)
    factor = scaling.float("rope_scaling_factor", "factor", above=0.0, default=32.0)
    if factor < 1.0:
        raise CheckpointError(f"{where}: rope scaling factor is {factor}; must be >= 1")
    alpha = scaling.float("rope_ntk_alpha", "beta_slow", above=0.0, default=1.0)
    beta = scaling.float("rope_ntk_beta", "beta_fast", above=0.0, default=32.0)
    if alpha == beta:
        raise CheckpointError(f"{where}: the YaRN ramp is empty: rope_ntk_alpha/beta_slow equals rope_ntk_beta/beta_fast ({alpha})")
    try:
        header = model_bin.header_from_config(config, num_active_experts=active)
    except (KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError) as e:
        raise CheckpointError(f"{where}: invalid value: {e}") from None
    # The values checked above are the ones header_from_config copies.
    assert (header.num_blocks, header.num_experts, header.embedding_dim, header.mlp_dim, header.num_heads,
            header.num_kv_heads, header.attention_window) == (
        num_blocks, num_experts, dims["hidden_size"], dims["intermediate_size"], num_heads, num_kv_heads, sliding_window)
    _check_header(header, where)
    layer_types = config.get("layer_types")
    if layer_types is not None:
        expected = ["sliding_attention" if n % 2 == 0 else "full_attention" for n in range(header.num_blocks)]
        if not isinstance(layer_types, list) or layer_types != expected:
            raise CheckpointError(
                f"{where}: layer_types must alternate sliding/full starting with sliding (layout v1 "
                f"implies that pattern) for {header.num_blocks} layers, got {_shown(layer_types)}"
            )
    return header


def detect_layout(shards: SafetensorsShards, config: Mapping[str, Any]) -> str:
    """'original', 'hf-mxfp4' or 'hf-dense', from the tensor names (cross-checked with the config)."""
    if "embedding.weight" in shards and "block.0.attn.qkv.weight" in shards:
        return "original"
    if "model.embed_tokens.weight" in shards:
        quant = config.get("quantization_config") or {}
        says_mxfp4 = isinstance(quant, Mapping) and quant.get("quant_method") == "mxfp4"
        if "model.layers.0.mlp.experts.gate_up_proj_blocks" in shards:
            return "hf-mxfp4"
        if "model.layers.0.mlp.experts.gate_up_proj" in shards:
            if says_mxfp4:
                raise ConversionError(
                    f"{shards.describe()}: config.json says quant_method mxfp4 but the experts are dense "
                    "(model.layers.0.mlp.experts.gate_up_proj)"
                )
            return "hf-dense"
        raise ConversionError(
            f"{shards.describe()}: Hugging Face layout without expert tensors "
            "(neither model.layers.0.mlp.experts.gate_up_proj_blocks nor ...gate_up_proj)"
        )
    sample = ", ".join(sorted(shards.names())[:5])
    raise ConversionError(
        f"{shards.describe()}: unknown checkpoint layout (expected gpt-oss 'original' tensors such as "
        f"embedding.weight or Hugging Face ones such as model.embed_tokens.weight; found {sample}, ...)"
    )


def interleave_rope_rows(rows: np.ndarray, num_heads: int, head_dim: int = HEAD_DIM) -> np.ndarray:
    """Reorder each head's rows from half-split [x0..x31 | x32..x63] to interleaved [x0, x32, x1, x33, ...]."""
    half = head_dim // 2
    order = np.stack([np.arange(half), np.arange(half) + half], axis=1).reshape(-1)
    per_head = rows.reshape(num_heads, head_dim, *rows.shape[1:])
    return per_head[:, order].reshape(rows.shape)


# --------------------------------------------------------------------------------------------
# Checkpoint readers: every layout is presented through the same small interface.
# --------------------------------------------------------------------------------------------


class _Checkpoint:
    """Reads model.bin-ready tensors from one layout. Names returned by expected_tensors() are checked first."""

    def __init__(self, shards: SafetensorsShards, header: ModelHeader, vocab_rows: int) -> None:
        self.shards = shards
        self.h = header
        self.vocab_rows = vocab_rows

    # Subclasses fill these in.
    names: dict[str, str]

    def expected_tensors(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def qkv(self, n: int, what: str) -> np.ndarray:  # float32, checkpoint row order, Q|K|V
        raise NotImplementedError

    def expert(self, n: int, e: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def dense(self, name: str) -> str:
        return self.names[name]


def _dense_names(prefix_map: Callable[[int], dict[str, str]], h: ModelHeader, top: dict[str, str]) -> dict[str, str]:
    names = dict(top)
    for n in range(h.num_blocks):
        names.update({f"block.{n}.{k}": v for k, v in prefix_map(n).items()})
    return names


class _OriginalCheckpoint(_Checkpoint):
    def __init__(self, shards: SafetensorsShards, header: ModelHeader, vocab_rows: int) -> None:
        super().__init__(shards, header, vocab_rows)
        self.names = _dense_names(
            lambda n: {
                "attn_norm": f"block.{n}.attn.norm.scale",
                "sinks": f"block.{n}.attn.sinks",
                "out_weight": f"block.{n}.attn.out.weight",
                "out_bias": f"block.{n}.attn.out.bias",
                "mlp_norm": f"block.{n}.mlp.norm.scale",
                "gate_weight": f"block.{n}.mlp.gate.weight",
                "gate_bias": f"block.{n}.mlp.gate.bias",
            },
            header,
            {"embedding": "embedding.weight", "final_norm": "norm.scale", "unembedding": "unembedding.weight"},
        )

    def expected_tensors(self) -> dict[str, tuple[int, ...]]:
        h = self.h
        d, i, e = h.embedding_dim, h.mlp_dim, h.num_experts
        out = {
            "embedding.weight": (self.vocab_rows, d),
            "norm.scale": (d,),
            "unembedding.weight": (self.vocab_rows, d),
        }
        for n in range(h.num_blocks):
            b = f"block.{n}"
            out.update({
                f"{b}.attn.norm.scale": (d,),
                f"{b}.attn.qkv.weight": (h.qkv_dim, d),
                f"{b}.attn.qkv.bias": (h.qkv_dim,),
                f"{b}.attn.sinks": (h.num_heads,),
                f"{b}.attn.out.weight": (d, h.num_heads * h.head_dim),
                f"{b}.attn.out.bias": (d,),
                f"{b}.mlp.norm.scale": (d,),
                f"{b}.mlp.gate.weight": (e, d),
                f"{b}.mlp.gate.bias": (e,),
                f"{b}.mlp.mlp1_weight.blocks": (e, 2 * i, d // MXFP4_BLOCK, 16),
                f"{b}.mlp.mlp1_weight.scales": (e, 2 * i, d // MXFP4_BLOCK),
                f"{b}.mlp.mlp1_bias": (e, 2 * i),
                f"{b}.mlp.mlp2_weight.blocks": (e, d, i // MXFP4_BLOCK, 16),
                f"{b}.mlp.mlp2_weight.scales": (e, d, i // MXFP4_BLOCK),
                f"{b}.mlp.mlp2_bias": (e, d),
            })
        return out

    def qkv(self, n: int, what: str) -> np.ndarray:
        return self.shards.read_f32(f"block.{n}.attn.qkv.{what}")

    def expert(self, n: int, e: int) -> dict[str, np.ndarray]:
        s, b = self.shards, f"block.{n}.mlp"
        return {
            "mlp1_blocks": s.read_u8(f"{b}.mlp1_weight.blocks", e),
            "mlp1_scales": _stored_scales(s.read_u8(f"{b}.mlp1_weight.scales", e), s.where(f"{b}.mlp1_weight.scales", e)),
            "mlp1_bias": s.read_bf16(f"{b}.mlp1_bias", e),
            "mlp2_blocks": s.read_u8(f"{b}.mlp2_weight.blocks", e),
            "mlp2_scales": _stored_scales(s.read_u8(f"{b}.mlp2_weight.scales", e), s.where(f"{b}.mlp2_weight.scales", e)),
            "mlp2_bias": s.read_bf16(f"{b}.mlp2_bias", e),
        }


class _HFCheckpoint(_Checkpoint):
    def __init__(self, shards: SafetensorsShards, header: ModelHeader, vocab_rows: int, quantized: bool) -> None:
        super().__init__(shards, header, vocab_rows)
        self.quantized = quantized
        self.names = _dense_names(
            lambda n: {
                "attn_norm": f"model.layers.{n}.input_layernorm.weight",
                "sinks": f"model.layers.{n}.self_attn.sinks",
                "out_weight": f"model.layers.{n}.self_attn.o_proj.weight",
                "out_bias": f"model.layers.{n}.self_attn.o_proj.bias",
                "mlp_norm": f"model.layers.{n}.post_attention_layernorm.weight",
                "gate_weight": f"model.layers.{n}.mlp.router.weight",
                "gate_bias": f"model.layers.{n}.mlp.router.bias",
            },
            header,
            {"embedding": "model.embed_tokens.weight", "final_norm": "model.norm.weight", "unembedding": "lm_head.weight"},
        )

    def expected_tensors(self) -> dict[str, tuple[int, ...]]:
        h = self.h
        d, i, e, hd = h.embedding_dim, h.mlp_dim, h.num_experts, h.head_dim
        out = {
            "model.embed_tokens.weight": (self.vocab_rows, d),
            "model.norm.weight": (d,),
            "lm_head.weight": (self.vocab_rows, d),
        }
        for n in range(h.num_blocks):
            a, m = f"model.layers.{n}.self_attn", f"model.layers.{n}.mlp"
            out.update({
                f"model.layers.{n}.input_layernorm.weight": (d,),
                f"{a}.q_proj.weight": (h.num_heads * hd, d),
                f"{a}.q_proj.bias": (h.num_heads * hd,),
                f"{a}.k_proj.weight": (h.num_kv_heads * hd, d),
                f"{a}.k_proj.bias": (h.num_kv_heads * hd,),
                f"{a}.v_proj.weight": (h.num_kv_heads * hd, d),
                f"{a}.v_proj.bias": (h.num_kv_heads * hd,),
                f"{a}.sinks": (h.num_heads,),
                f"{a}.o_proj.weight": (d, h.num_heads * hd),
                f"{a}.o_proj.bias": (d,),
                f"model.layers.{n}.post_attention_layernorm.weight": (d,),
                f"{m}.router.weight": (e, d),
                f"{m}.router.bias": (e,),
                f"{m}.experts.gate_up_proj_bias": (e, 2 * i),
                f"{m}.experts.down_proj_bias": (e, d),
            })
            if self.quantized:
                out.update({
                    f"{m}.experts.gate_up_proj_blocks": (e, 2 * i, d // MXFP4_BLOCK, 16),
                    f"{m}.experts.gate_up_proj_scales": (e, 2 * i, d // MXFP4_BLOCK),
                    f"{m}.experts.down_proj_blocks": (e, d, i // MXFP4_BLOCK, 16),
                    f"{m}.experts.down_proj_scales": (e, d, i // MXFP4_BLOCK),
                })
            else:
                out.update({
                    f"{m}.experts.gate_up_proj": (e, d, 2 * i),
                    f"{m}.experts.down_proj": (e, i, d),
                })
        return out

    def qkv(self, n: int, what: str) -> np.ndarray:
        a = f"model.layers.{n}.self_attn"
        return np.concatenate([self.shards.read_f32(f"{a}.{p}_proj.{what}") for p in "qkv"], axis=0)

    def expert(self, n: int, e: int) -> dict[str, np.ndarray]:
        s, x = self.shards, f"model.layers.{n}.mlp.experts"
        if self.quantized:
            mlp1_what = s.where(f"{x}.gate_up_proj_scales", e)
            mlp2_what = s.where(f"{x}.down_proj_scales", e)
            mlp1_blocks = s.read_u8(f"{x}.gate_up_proj_blocks", e)
            mlp1_scales = s.read_u8(f"{x}.gate_up_proj_scales", e)
            mlp2_blocks = s.read_u8(f"{x}.down_proj_blocks", e)
            mlp2_scales = s.read_u8(f"{x}.down_proj_scales", e)
        else:
            # gate_up_proj[e] is [D, 2I], input-major, gate = even columns: its transpose has the
            # alternating gate/linear rows of model.bin. down_proj[e] is [I, D] -> rows [D, I].
            mlp1_what = s.where(f"{x}.gate_up_proj", e)
            mlp2_what = s.where(f"{x}.down_proj", e)
            mlp1_blocks, mlp1_scales = quantize_mxfp4(s.read_f32(f"{x}.gate_up_proj", e).T)
            mlp2_blocks, mlp2_scales = quantize_mxfp4(s.read_f32(f"{x}.down_proj", e).T)
        return {
            "mlp1_blocks": mlp1_blocks,
            "mlp1_scales": _stored_scales(mlp1_scales, mlp1_what),
            "mlp1_bias": s.read_bf16(f"{x}.gate_up_proj_bias", e),
            "mlp2_blocks": mlp2_blocks,
            "mlp2_scales": _stored_scales(mlp2_scales, mlp2_what),
            "mlp2_bias": s.read_bf16(f"{x}.down_proj_bias", e),
        }


_BLOCK_INDEX = re.compile(r"^(?:block|model\.layers)\.(\d+)\.")


def _check_block_count(shards: SafetensorsShards, num_blocks: int, where: str) -> None:
    """config.json's layer count must match the blocks the checkpoint has tensors for (a larger
    count would ask for tensors that do not exist, a smaller one would silently drop layers)."""
    present = {int(m.group(1)) for m in map(_BLOCK_INDEX.match, shards.names()) if m}
    if present and present != set(range(num_blocks)) and (max(present) + 1 != num_blocks or len(present) > num_blocks):
        raise CheckpointError(
            f"{where}: num_hidden_layers is {num_blocks}, but {shards.describe()} has tensors for "
            f"{len(present)} blocks (numbered {min(present)}..{max(present)})"
        )


def _check_tensors(ckpt: _Checkpoint) -> None:
    shards = ckpt.shards
    expected = ckpt.expected_tensors()
    missing = [name for name in expected if name not in shards]
    if missing:
        shown = ", ".join(missing[:8]) + (f", ... ({len(missing)} in all)" if len(missing) > 8 else "")
        raise CheckpointError(f"missing tensors {shown} in {shards.describe()}")
    for name, shape in expected.items():
        if shards.shape(name) != shape:
            raise CheckpointError(
                f"tensor {name} in {shards.file_of(name)}: expected shape {list(shape)}, got {list(shards.shape(name))}"
            )
        want_u8 = name.endswith(("blocks", "scales"))
        if want_u8 != (shards.dtype(name) == "U8") or shards.dtype(name) == "I8":
            kind = "U8" if want_u8 else "a float type (BF16, F16, F32)"
            raise CheckpointError(f"tensor {name} in {shards.file_of(name)}: expected {kind}, got {shards.dtype(name)}")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def tokenizer_section() -> tuple[bytes, bytes, bytes]:
    """(special-token UUID table, regex with NUL, text-token table) of layout v1."""
    from . import vocab

    by_id = {token_id: text for text, token_id in model_bin.SPECIAL_TOKEN_IDS.items()}
    uuids = bytearray()
    for slot in range(model_bin.NUM_SPECIAL_TOKENS):
        text = by_id.get(model_bin.NUM_TEXT_TOKENS + slot)
        u = model_bin.SPECIAL_TOKEN_UUIDS.get(text) if text else None
        uuids += u.bytes if u is not None else bytes(16)
    regex = vocab.O200K_PATTERN.encode("ascii") + b"\x00"
    tokens = bytearray()
    for token in vocab.token_bytes_by_rank():
        tokens += struct.pack("<H", len(token)) + token
    return bytes(uuids), regex, bytes(tokens)


class _Writer:
    """Sequential writer that zero-fills up to each tensor's layout offset and checks it."""

    def __init__(self, f, progress, path: str = "") -> None:
        self.f = f
        self.pos = 0
        self.progress = progress
        self.path = path  # the destination, named in write errors

    def write(self, data: bytes | memoryview) -> None:
        try:
            self.f.write(data)
        except OSError as e:
            raise _os_error(e, self.path or getattr(self.f, "name", "?"), "writing") from None
        self.pos += len(data)
        if self.progress is not None:
            self.progress.update(len(data))

    def pad_to(self, offset: int) -> None:
        if offset < self.pos:
            raise AssertionError(f"layout offset {offset} is behind the write position {self.pos}")
        self.write(bytes(offset - self.pos))

    def tensor(self, spec: model_bin.TensorSpec, array: np.ndarray) -> None:
        want_dtype = np.uint16 if spec.dtype == "bf16" else np.uint8
        if array.dtype != want_dtype or tuple(array.shape) != spec.shape:
            raise AssertionError(f"{spec.name}: produced {array.dtype}{list(array.shape)}, layout wants {spec.shape}")
        self.pad_to(spec.offset)
        little_endian = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
        self.write(memoryview(little_endian).cast("B"))


EMBEDDING_CHUNK_BYTES = 4 << 20  # the embedding tables are copied in chunks of about this size


def _dense_tensors(ckpt: _Checkpoint) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    """model.bin dense tensors (except the embedding tables) in file order, as lazy producers."""
    h, s = ckpt.h, ckpt.shards
    q_rows, k_rows = h.num_heads * h.head_dim, h.num_kv_heads * h.head_dim

    def qkv(n: int, what: str) -> np.ndarray:
        x = ckpt.qkv(n, what)
        q = interleave_rope_rows(x[:q_rows], h.num_heads) * np.float32(0.5)
        k = interleave_rope_rows(x[q_rows : q_rows + k_rows], h.num_kv_heads) * np.float32(0.25)
        return f32_to_bf16(np.concatenate([q, k, x[q_rows + k_rows :]], axis=0))

    for n in range(h.num_blocks):
        yield f"block.{n}.attn_norm", lambda n=n: s.read_bf16(ckpt.dense(f"block.{n}.attn_norm"))
        yield f"block.{n}.qkv_weight", lambda n=n: qkv(n, "weight")
        yield f"block.{n}.qkv_bias", lambda n=n: qkv(n, "bias")
        for part in ("sinks", "out_weight", "out_bias", "mlp_norm", "gate_weight", "gate_bias"):
            yield f"block.{n}.{part}", lambda n=n, part=part: s.read_bf16(ckpt.dense(f"block.{n}.{part}"))
    yield "final_norm", lambda: s.read_bf16(ckpt.dense("final_norm"))


def _write_weights(w: _Writer, ckpt: _Checkpoint, layout: model_bin.Layout) -> None:
    h, s = ckpt.h, ckpt.shards
    vocab_size = model_bin.NUM_TEXT_TOKENS + model_bin.NUM_SPECIAL_TOKENS

    def embedding_table(name: str) -> None:
        spec = layout.tensors[name]
        w.pad_to(spec.offset)
        chunk_rows = max(1, EMBEDDING_CHUNK_BYTES // (2 * h.embedding_dim))
        for start in range(0, vocab_size, chunk_rows):
            rows = s.read_bf16(ckpt.dense(name), slice(start, min(start + chunk_rows, vocab_size)))
            w.write(memoryview(rows.astype("<u2", copy=False)).cast("B"))
        assert w.pos == spec.end

    embedding_table("embedding")
    for name, produce in _dense_tensors(ckpt):
        w.tensor(layout.tensors[name], produce())
    embedding_table("unembedding")
    for n in range(h.num_blocks):
        for e in range(h.num_experts):
            for suffix, array in ckpt.expert(n, e).items():
                w.tensor(layout.tensors[f"block.{n}.expert.{e}.{suffix}"], array)
    w.pad_to(layout.file_size)


def open_checkpoint(src: str) -> tuple[_Checkpoint, str]:
    """Open a checkpoint directory: (reader, layout name). Validates config, names and shapes."""
    if not os.path.isdir(src):
        raise ConversionError(f"{src}: not a directory")
    config = load_config(src)
    shards = SafetensorsShards(src)
    layout = detect_layout(shards, config)
    where = os.path.join(src, "config.json")
    header = header_for_config(config, where)
    _check_block_count(shards, header.num_blocks, where)
    vocab_rows = int(config["vocab_size"])
    ckpt: _Checkpoint
    if layout == "original":
        ckpt = _OriginalCheckpoint(shards, header, vocab_rows)
    else:
        ckpt = _HFCheckpoint(shards, header, vocab_rows, quantized=(layout == "hf-mxfp4"))
    _check_tensors(ckpt)
    return ckpt, layout


#: Errors of the C loader that mean the written file is wrong (others, such as a device too small
#: for the model, say nothing about the file: the loader validates the file before the device).
def _runtime_rejections() -> tuple[type[BaseException], ...]:
    from .errors import GptOssIOError, InvalidArgumentError, ModelFileError, UnsupportedArgumentError

    return (ModelFileError, UnsupportedArgumentError, InvalidArgumentError, GptOssIOError)


def _check_with_runtime(tmp: str, dst: str) -> None:
    """Load the finished temporary file with the C loader (the runtime's own validation).

    Skipped when the compiled extension is unavailable (the converter itself is pure Python)."""
    try:
        from . import _metal
    except ImportError:
        return
    try:
        model = _metal.Model(tmp)
    except _runtime_rejections() as e:
        raise ConversionError(f"{dst}: the converted file is rejected by the runtime's loader, so it was not written: {e}") from None
    except GptOssError:
        return  # e.g. InsufficientResourcesError: a valid file this machine cannot run
    model.close()


def convert_checkpoint(src: str, dst: str, progress: bool = True) -> model_bin.ModelBin:
    """Convert the checkpoint directory ``src`` into the model.bin file ``dst``.

    Returns the written file opened with :func:`gpt_oss_metal.model_bin.read_model_bin`. Raises
    :class:`ConversionError` (:class:`CheckpointError` for malformed checkpoint data) for an
    unusable checkpoint or destination, and :class:`OSError` naming the file for I/O failures; on
    any failure ``dst`` is left as it was and no temporary file remains. The destination must not
    be an existing non-regular file (a device, FIFO, directory) nor one of the checkpoint's files.

    Before the temporary file is renamed over ``dst`` it is re-read with
    :func:`gpt_oss_metal.model_bin.read_model_bin` and loaded by the C runtime's loader. In the
    main thread, SIGTERM and SIGHUP during the conversion delete the temporary file and exit with
    status 128 + signum (SIGINT raises KeyboardInterrupt, which deletes it too).
    """
    ckpt, layout_name = open_checkpoint(src)
    try:
        try:
            check_destination(dst, [*ckpt.shards.files, os.path.join(src, "config.json")])
        except ValueError as e:
            raise ConversionError(str(e)) from None
        h = ckpt.h
        uuids, regex, tokens = tokenizer_section()
        layout = model_bin.compute_layout(
            h, model_bin.NUM_SPECIAL_TOKENS, model_bin.NUM_TEXT_TOKENS, len(regex), len(tokens)
        )
        from tqdm.auto import tqdm

        with atomic_output(dst, suffix=".partial", cleanup_on_signals=True) as (f, tmp):
            with tqdm(
                total=layout.file_size, unit="B", unit_scale=True, unit_divisor=1024,
                desc=f"convert {layout_name}", disable=not progress,
            ) as bar:
                w = _Writer(f, bar, dst)
                w.write(model_bin.MAGIC)
                w.write(model_bin.MODEL_UUID.bytes)
                w.write(h.pack())
                w.write(model_bin.LAYOUT_UUID.bytes)
                w.write(model_bin.TOKENIZER_UUID.bytes)
                w.write(struct.pack("<4I", model_bin.NUM_SPECIAL_TOKENS, model_bin.NUM_TEXT_TOKENS, len(regex), len(tokens)))
                w.write(uuids)
                assert w.pos == layout.regex_offset
                w.write(regex)
                w.write(tokens)
                _write_weights(w, ckpt, layout)
            try:
                f.flush()
            except OSError as e:
                raise _os_error(e, dst, "writing") from None
            try:
                written = model_bin.read_model_bin(tmp)
            except ValueError as e:
                raise ConversionError(f"{dst}: re-reading the converted file failed, so it was not written: {e}") from None
            if written.header.pack() != h.pack() or written.layout.file_size != os.path.getsize(tmp):
                raise ConversionError(f"{tmp}: re-reading the written file gave a different header or size")
            del written
            _check_with_runtime(tmp, dst)
    finally:
        ckpt.shards.close()
    return model_bin.read_model_bin(dst)
