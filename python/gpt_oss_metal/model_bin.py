"""model.bin layout v1: constants, header, and where every byte lives.

This module is the single Python definition of the file layout (see docs/model-bin.md). The
converter writes with it, tests and the NumPy reference model read with it; the C loader in
metal/source/model-file.c implements the same arithmetic and the tests check the two agree.

Everything is little-endian. Offsets are absolute file offsets in bytes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
import struct
import uuid
from typing import Mapping

import numpy as np

MAGIC = b"GPT-OSS v1.0" + b"\x00" * 4
MODEL_UUID = uuid.UUID("df52dc86-1789-4ed0-a295-66f10508145b")
LAYOUT_UUID = uuid.UUID("229177a8-5775-4268-bfd8-d588b351c56d")
TOKENIZER_UUID = uuid.UUID("7401aded-2a95-40cb-b782-9ccebaafe72b")

#: Special-token UUIDs by token text (slot = id - num_text_tokens).
SPECIAL_TOKEN_UUIDS: dict[str, uuid.UUID] = {
    "<|untrusted|>": uuid.UUID("07d7da55-b346-4cff-8b37-7cefacf8a3e8"),
    "<|end_untrusted|>": uuid.UUID("f265bd9c-c717-469e-a447-920687d65d90"),
    "<|return|>": uuid.UUID("f799ff69-1992-43c4-a3d8-d831f475dc75"),
    "<|constrain|>": uuid.UUID("c0bb14c7-6022-49da-ad08-792d67e8b470"),
    "<|channel|>": uuid.UUID("fd3dda11-c8ab-4033-876e-d93deb172c93"),
    "<|start|>": uuid.UUID("55a77c2f-8a01-4c54-8ac2-313bfc7e208d"),
    "<|end|>": uuid.UUID("fcac2f6d-4705-4f6b-b228-642accac7238"),
    "<|message|>": uuid.UUID("16e40431-f47f-4b22-b59b-8b278fc30a54"),
    "<|call|>": uuid.UUID("1220f796-e388-4de5-b487-fe2eb5fe03c0"),
    "<|refusal|>": uuid.UUID("e15ba702-28c4-4292-ab8f-ffa434709128"),
}

#: o200k_harmony special-token ids (the runtime vocabulary is 200014 ids).
NUM_TEXT_TOKENS = 199998
NUM_SPECIAL_TOKENS = 16
SPECIAL_TOKEN_IDS: dict[str, int] = {
    "<|startoftext|>": 199998,
    "<|endoftext|>": 199999,
    "<|untrusted|>": 200000,
    "<|end_untrusted|>": 200001,
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|call|>": 200012,
    "<|refusal|>": 200013,
}

HEADER_OFFSET = 32
HEADER_FORMAT = "<6If4I6f"  # ModelHeader fields in order: 6 u32, f32, 4 u32, 6 f32 = 68 bytes
TOKENIZER_HEADER_OFFSET = 132
SPECIAL_UUIDS_OFFSET = 148
TENSOR_ALIGNMENT = 16
SECTION_ALIGNMENT = 16384
#: Offset added to the checkpoint's E8M0 scale exponent when stored (see docs/model-bin.md).
MXFP4_SCALE_OFFSET = 14
MXFP4_BLOCK = 32  # values per MXFP4 block (16 bytes + 1 scale byte)


def align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


@dataclasses.dataclass(frozen=True)
class ModelHeader:
    """The 17 fields of the model header, in file order."""

    context_length: int
    num_blocks: int
    num_experts: int
    num_active_experts: int
    embedding_dim: int
    mlp_dim: int
    swiglu_limit: float
    head_dim: int
    num_heads: int
    num_kv_heads: int
    attention_window: int
    rope_theta: float
    interpolation_scale: float
    yarn_offset: float
    yarn_scale: float
    yarn_multiplier: float
    rmsnorm_epsilon: float

    def pack(self) -> bytes:
        d = self
        return struct.pack(
            HEADER_FORMAT,
            d.context_length, d.num_blocks, d.num_experts, d.num_active_experts,
            d.embedding_dim, d.mlp_dim, d.swiglu_limit, d.head_dim, d.num_heads,
            d.num_kv_heads, d.attention_window, d.rope_theta, d.interpolation_scale,
            d.yarn_offset, d.yarn_scale, d.yarn_multiplier, d.rmsnorm_epsilon,
        )

    @classmethod
    def unpack(cls, data: bytes) -> "ModelHeader":
        return cls(*struct.unpack(HEADER_FORMAT, data))

    @property
    def qkv_dim(self) -> int:
        return (self.num_heads + 2 * self.num_kv_heads) * self.head_dim


assert struct.calcsize(HEADER_FORMAT) == 68


def header_from_config(config: Mapping[str, object], num_active_experts: int | None = None) -> ModelHeader:
    """Derive the model header from a checkpoint config.json (either layout's key names).

    Float fields are rounded to float32, as stored, so the result compares equal to a header read
    back from a file.
    """
    rope_parameters = config.get("rope_parameters")  # transformers >= 5 nests RoPE settings here
    if isinstance(rope_parameters, Mapping):
        config = {
            **config,
            "rope_theta": config.get("rope_theta", rope_parameters.get("rope_theta")),
            "rope_scaling": config.get("rope_scaling", rope_parameters),
        }

    def get(*names: str):
        for name in names:
            if name in config:
                return config[name]
        raise KeyError(f"config.json lacks {' / '.join(names)}")

    rope_scaling = config.get("rope_scaling") if isinstance(config.get("rope_scaling"), Mapping) else {}
    initial_context = int(
        config.get("initial_context_length", rope_scaling.get("original_max_position_embeddings", 4096))
    )
    factor = float(config.get("rope_scaling_factor", rope_scaling.get("factor", 32.0)))
    alpha = float(config.get("rope_ntk_alpha", rope_scaling.get("beta_slow", 1.0)))
    beta = float(config.get("rope_ntk_beta", rope_scaling.get("beta_fast", 32.0)))
    theta = float(get("rope_theta"))
    head_dim = int(get("head_dim"))
    half = head_dim / 2
    low = half * math.log(initial_context / (beta * 2 * math.pi)) / math.log(theta)
    high = half * math.log(initial_context / (alpha * 2 * math.pi)) / math.log(theta)
    active = num_active_experts
    if active is None:
        active = int(get("experts_per_token", "num_experts_per_tok"))
    return ModelHeader.unpack(ModelHeader(
        context_length=int(initial_context * factor),
        num_blocks=int(get("num_hidden_layers")),
        num_experts=int(get("num_experts", "num_local_experts")),
        num_active_experts=active,
        embedding_dim=int(get("hidden_size")),
        mlp_dim=int(get("intermediate_size")),
        swiglu_limit=float(get("swiglu_limit")),
        head_dim=head_dim,
        num_heads=int(get("num_attention_heads")),
        num_kv_heads=int(get("num_key_value_heads")),
        attention_window=int(get("sliding_window")),
        rope_theta=theta,
        interpolation_scale=1.0 / factor,
        yarn_offset=-low / (high - low),
        yarn_scale=1.0 / (high - low),
        yarn_multiplier=0.1 * math.log(factor) + 1.0,
        rmsnorm_epsilon=1e-5,
    ).pack())


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One tensor of the weights region. dtype 'bf16' is stored as raw uint16."""

    name: str
    offset: int
    shape: tuple[int, ...]
    dtype: str  # "bf16" or "u8"

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * (2 if self.dtype == "bf16" else 1)

    @property
    def end(self) -> int:
        return self.offset + self.nbytes


@dataclasses.dataclass(frozen=True)
class Layout:
    """Absolute offsets of every section and tensor of a model.bin."""

    regex_offset: int
    tokens_offset: int
    weights_offset: int
    tensors: dict[str, TensorSpec]
    moe_offsets: tuple[int, ...]  # start of each block's MoE section
    expert_size: int  # bytes of one expert inside a MoE section
    file_size: int  # minimal file size: end of the last tensor


def dense_tensor_shapes(h: ModelHeader, vocab_size: int) -> list[tuple[str, tuple[int, ...]]]:
    """Dense-region tensors (all bf16) in file order."""
    d = h.embedding_dim
    shapes: list[tuple[str, tuple[int, ...]]] = [("embedding", (vocab_size, d))]
    for n in range(h.num_blocks):
        shapes += [
            (f"block.{n}.attn_norm", (d,)),
            (f"block.{n}.qkv_weight", (h.qkv_dim, d)),
            (f"block.{n}.qkv_bias", (h.qkv_dim,)),
            (f"block.{n}.sinks", (h.num_heads,)),
            (f"block.{n}.out_weight", (d, h.num_heads * h.head_dim)),
            (f"block.{n}.out_bias", (d,)),
            (f"block.{n}.mlp_norm", (d,)),
            (f"block.{n}.gate_weight", (h.num_experts, d)),
            (f"block.{n}.gate_bias", (h.num_experts,)),
        ]
    shapes += [("final_norm", (d,)), ("unembedding", (vocab_size, d))]
    return shapes


def expert_tensor_shapes(h: ModelHeader) -> list[tuple[str, tuple[int, ...], str]]:
    """Parts of one expert, in file order: (suffix, shape, dtype)."""
    d, i = h.embedding_dim, h.mlp_dim
    return [
        ("mlp1_blocks", (2 * i, d // MXFP4_BLOCK, 16), "u8"),
        ("mlp1_scales", (2 * i, d // MXFP4_BLOCK), "u8"),
        ("mlp1_bias", (2 * i,), "bf16"),
        ("mlp2_blocks", (d, i // MXFP4_BLOCK, 16), "u8"),
        ("mlp2_scales", (d, i // MXFP4_BLOCK), "u8"),
        ("mlp2_bias", (d,), "bf16"),
    ]


def compute_layout(
    h: ModelHeader, num_special_tokens: int, num_text_tokens: int, regex_size: int, tokens_size: int
) -> Layout:
    """Offsets of every part of a model.bin with this header and tokenizer section sizes."""
    regex_offset = SPECIAL_UUIDS_OFFSET + 16 * num_special_tokens
    tokens_offset = regex_offset + regex_size
    weights_offset = align_up(tokens_offset + tokens_size, SECTION_ALIGNMENT)
    vocab_size = num_text_tokens + num_special_tokens
    tensors: dict[str, TensorSpec] = {}
    offset = weights_offset
    for name, shape in dense_tensor_shapes(h, vocab_size):
        spec = TensorSpec(name, offset, shape, "bf16")
        tensors[name] = spec
        offset = align_up(spec.end, TENSOR_ALIGNMENT)
    expert_parts = expert_tensor_shapes(h)
    expert_size = sum(align_up(math.prod(s) * (2 if t == "bf16" else 1), TENSOR_ALIGNMENT) for _, s, t in expert_parts)
    moe_offsets = []
    end = offset
    for n in range(h.num_blocks):
        offset = align_up(offset, SECTION_ALIGNMENT)
        moe_offsets.append(offset)
        for e in range(h.num_experts):
            for suffix, shape, dtype in expert_parts:
                spec = TensorSpec(f"block.{n}.expert.{e}.{suffix}", offset, shape, dtype)
                tensors[spec.name] = spec
                offset = align_up(spec.end, TENSOR_ALIGNMENT)
        end = offset
    return Layout(regex_offset, tokens_offset, weights_offset, tensors, tuple(moe_offsets), expert_size, end)


@dataclasses.dataclass
class ModelBin:
    """A model.bin opened read-only with NumPy memory maps (nothing is copied)."""

    path: str
    header: ModelHeader
    num_special_tokens: int
    num_text_tokens: int
    special_token_uuids: list[uuid.UUID | None]  # None for an unnamed (all-zero) slot
    regex: str
    token_bytes: list[bytes]  # text tokens, by id
    layout: Layout
    _map: np.memmap

    def tensor(self, name: str) -> np.ndarray:
        """Raw view of a tensor: bf16 tensors as uint16, MXFP4 parts as uint8."""
        spec = self.layout.tensors[name]
        dtype = np.uint16 if spec.dtype == "bf16" else np.uint8
        count = math.prod(spec.shape)
        return np.frombuffer(self._map, dtype=dtype, count=count, offset=spec.offset).reshape(spec.shape)

    def tensor_f32(self, name: str) -> np.ndarray:
        """A bf16 tensor widened to float32."""
        return bf16_to_f32(self.tensor(name))

    def special_token_id(self, text: str) -> int | None:
        want = SPECIAL_TOKEN_UUIDS.get(text)
        for slot, u in enumerate(self.special_token_uuids):
            if u is not None and u == want:
                return self.num_text_tokens + slot
        return None


def bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(values: np.ndarray) -> np.ndarray:
    """Round float32 to bf16 (nearest, ties to even; NaN stays NaN), returned as uint16."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if np.any(nan):
        rounded = np.where(nan, ((bits >> 16) | 0x40).astype(np.uint16), rounded)
    return rounded


def read_model_bin(path: str) -> ModelBin:
    """Open a model.bin written in layout v1. Raises ValueError on a malformed file.

    This is a convenience reader for tests and tools; the runtime's validating loader is the C one.
    """
    mode = os.stat(path).st_mode  # never open a FIFO or device: opening a FIFO blocks until a writer comes
    if not stat.S_ISREG(mode):
        raise ValueError(f"{os.fsdecode(path)!s}: not a regular file (a model.bin must be a regular file)")
    m = np.memmap(path, dtype=np.uint8, mode="r")
    raw = memoryview(m)
    if len(m) < SPECIAL_UUIDS_OFFSET or bytes(raw[:16]) != MAGIC:
        raise ValueError(f"{path}: not a gpt-oss model.bin (bad magic)")
    if uuid.UUID(bytes=bytes(raw[16:32])) != MODEL_UUID:
        raise ValueError(f"{path}: unknown model UUID")
    header = ModelHeader.unpack(bytes(raw[32:100]))
    if uuid.UUID(bytes=bytes(raw[100:116])) != LAYOUT_UUID:
        raise ValueError(f"{path}: unknown layout UUID")
    if uuid.UUID(bytes=bytes(raw[116:132])) != TOKENIZER_UUID:
        raise ValueError(f"{path}: unknown tokenizer UUID")
    num_special, num_text, regex_size, tokens_size = struct.unpack("<4I", bytes(raw[132:148]))
    layout = compute_layout(header, num_special, num_text, regex_size, tokens_size)
    if len(m) < layout.file_size:
        raise ValueError(f"{path}: file is {len(m)} bytes, layout needs {layout.file_size}")
    uuids: list[uuid.UUID | None] = []
    for slot in range(num_special):
        b = bytes(raw[SPECIAL_UUIDS_OFFSET + 16 * slot : SPECIAL_UUIDS_OFFSET + 16 * slot + 16])
        uuids.append(None if b == b"\x00" * 16 else uuid.UUID(bytes=b))
    regex = bytes(raw[layout.regex_offset : layout.regex_offset + regex_size]).rstrip(b"\x00").decode("ascii")
    token_bytes: list[bytes] = []
    tokens = bytes(raw[layout.tokens_offset : layout.tokens_offset + tokens_size])
    pos = 0
    for _ in range(num_text):
        (length,) = struct.unpack_from("<H", tokens, pos)
        token_bytes.append(tokens[pos + 2 : pos + 2 + length])
        pos += 2 + length
    if pos != tokens_size:
        raise ValueError(f"{path}: token table is {pos} bytes, header says {tokens_size}")
    return ModelBin(path, header, num_special, num_text, uuids, regex, token_bytes, layout, m)
