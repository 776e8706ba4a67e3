"""The C loader rejects every malformed model.bin with a precise error, and never crashes.

One working copy of the tiny model is patched in place (and restored) for field corruptions, and
truncated progressively from the largest offset down for truncations, so the file is copied once.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import struct
from pathlib import Path
from typing import Iterator

import pytest

from gpt_oss_metal import GptOssIOError, Model, ModelFileError, UnsupportedArgumentError, model_bin

U32_MAX = 2**32 - 1
NAN = float("nan")
INF = float("inf")

# (name, struct format) of the 17 header fields, in file order.
HEADER_FIELDS = [(f.name, "I" if f.type in ("int", int) else "f") for f in model_bin.dataclasses.fields(model_bin.ModelHeader)]


def header_offset(field: str) -> int:
    return model_bin.HEADER_OFFSET + 4 * [name for name, _ in HEADER_FIELDS].index(field)


@pytest.fixture(scope="module")
def original(tiny_model_bin: Path) -> model_bin.ModelBin:
    return model_bin.read_model_bin(str(tiny_model_bin))


@pytest.fixture(scope="module")
def work_copy(tiny_model_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("validation") / "model.bin"
    shutil.copyfile(tiny_model_bin, path)
    return path


@contextlib.contextmanager
def patched(path: Path, offset: int, data: bytes) -> Iterator[Path]:
    """Temporarily overwrite bytes of the file."""
    with open(path, "r+b") as f:
        f.seek(offset)
        saved = f.read(len(data))
        f.seek(offset)
        f.write(data)
    try:
        yield path
    finally:
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(saved)


def load_error(path: Path, cls: type[Exception] = ModelFileError) -> str:
    with pytest.raises(cls) as info:
        Model(path)
    message = str(info.value)
    assert str(path) in message, message
    return message


def test_work_copy_loads(work_copy: Path) -> None:
    Model(work_copy)  # the baseline for every corruption below


# ---- corrupted fields ----


def test_bad_magic(work_copy: Path) -> None:
    with patched(work_copy, 0, b"GPT-OSS v2.0"):
        assert "bad magic at offset 0" in load_error(work_copy)
    with patched(work_copy, 12, b"\x01"):
        assert "bad magic at offset 0" in load_error(work_copy)


@pytest.mark.parametrize("name, offset", [("model UUID", 16), ("layout UUID", 100), ("tokenizer UUID", 116)])
def test_bad_uuid(work_copy: Path, name: str, offset: int) -> None:
    with open(work_copy, "rb") as f:
        f.seek(offset + 15)
        last = f.read(1)[0]
    with patched(work_copy, offset + 15, bytes([last ^ 0x01])):
        message = load_error(work_copy)
    assert f"{name} at offset {offset} is" in message and "expected" in message


# field -> values that must be rejected (each with the message fragment it gives)
U32_BAD_VALUES: dict[str, list[int]] = {
    "context_length": [0, U32_MAX, 2**24 + 1],
    "num_blocks": [0, U32_MAX, 1025],
    "num_experts": [0, U32_MAX],
    "num_active_experts": [0, U32_MAX, 33],  # tiny model: 32 experts
    "embedding_dim": [0, U32_MAX, 2**17],
    "mlp_dim": [0, U32_MAX, 2**17],
    "head_dim": [0, U32_MAX, 1025],
    "num_heads": [0, U32_MAX, 1025],
    "num_kv_heads": [0, U32_MAX, 9],  # tiny model: 8 heads
    "attention_window": [0, U32_MAX],
}


@pytest.mark.parametrize("field, value", [(f, v) for f, values in U32_BAD_VALUES.items() for v in values])
def test_u32_header_field_out_of_range(work_copy: Path, field: str, value: int) -> None:
    offset = header_offset(field)
    with patched(work_copy, offset, struct.pack("<I", value)):
        message = load_error(work_copy)
    assert f"model header field {field} at offset {offset} is {value}; must be in [" in message


@pytest.mark.parametrize("field, value, fragment", [
    ("embedding_dim", 176, "must be a multiple of 32"),
    ("mlp_dim", 100, "must be a multiple of 32"),
    ("num_kv_heads", 3, "must divide num_heads (8)"),
])
def test_u32_header_field_relations(work_copy: Path, field: str, value: int, fragment: str) -> None:
    offset = header_offset(field)
    with patched(work_copy, offset, struct.pack("<I", value)):
        message = load_error(work_copy)
    assert f"model header field {field} at offset {offset} is {value}; {fragment}" in message


F32_POSITIVE = ["swiglu_limit", "rope_theta", "interpolation_scale", "yarn_multiplier", "rmsnorm_epsilon"]
F32_FINITE = ["yarn_offset", "yarn_scale"]


@pytest.mark.parametrize("field, value", [(f, v) for f in F32_POSITIVE for v in (NAN, INF, -INF, 0.0, -1.0)]
                         + [(f, v) for f in F32_FINITE for v in (NAN, INF, -INF)]
                         + [("interpolation_scale", 2.0), ("rmsnorm_epsilon", 1e30)])
def test_f32_header_field_invalid(work_copy: Path, field: str, value: float) -> None:
    offset = header_offset(field)
    with patched(work_copy, offset, struct.pack("<f", value)):
        message = load_error(work_copy)
    shown = "nan" if math.isnan(value) else "%g" % value
    assert f"model header field {field} at offset {offset} is {shown}; must be a finite number" in message


def test_every_header_field_is_checked() -> None:
    covered = set(U32_BAD_VALUES) | set(F32_POSITIVE) | set(F32_FINITE)
    assert covered == {name for name, _ in HEADER_FIELDS} and len(covered) == 17


def test_head_dim_128_is_unsupported(work_copy: Path) -> None:
    offset = header_offset("head_dim")
    with patched(work_copy, offset, struct.pack("<I", 128)):
        message = load_error(work_copy, UnsupportedArgumentError)
    assert f"head_dim at offset {offset} is 128; this runtime supports only 64" in message


@pytest.mark.parametrize("field, index, value", [
    ("num_special_tokens", 0, 0), ("num_special_tokens", 0, U32_MAX),
    ("num_text_tokens", 1, 0), ("num_text_tokens", 1, U32_MAX), ("num_text_tokens", 1, 2**31),
    ("regex_size", 2, 0), ("regex_size", 2, U32_MAX),
])
def test_tokenizer_header_field_out_of_range(work_copy: Path, field: str, index: int, value: int) -> None:
    offset = model_bin.TOKENIZER_HEADER_OFFSET + 4 * index
    with patched(work_copy, offset, struct.pack("<I", value)):
        message = load_error(work_copy)
    assert f"tokenizer header field {field} at offset {offset} is {value}; must be in [" in message


def test_tokens_size_huge(work_copy: Path) -> None:
    with patched(work_copy, model_bin.TOKENIZER_HEADER_OFFSET + 12, struct.pack("<I", U32_MAX)):
        message = load_error(work_copy)
    assert f"file is truncated: the token table (tokens_size {U32_MAX} at offset 144)" in message


def test_tokens_size_too_small(work_copy: Path) -> None:
    with patched(work_copy, model_bin.TOKENIZER_HEADER_OFFSET + 12, struct.pack("<I", 1000)):
        message = load_error(work_copy)
    assert "tokens_size at offset 144 is 1000; too small for 199998 token entries" in message


def test_tokens_size_off_by_one(work_copy: Path, original: model_bin.ModelBin) -> None:
    tokens_size = len(b"".join(original.token_bytes)) + 2 * original.num_text_tokens
    with patched(work_copy, model_bin.TOKENIZER_HEADER_OFFSET + 12, struct.pack("<I", tokens_size + 1)):
        message = load_error(work_copy)
    assert "token table walk of 199998 entries ends at offset" in message and "(1 unaccounted bytes)" in message


def test_num_text_tokens_off_by_one(work_copy: Path) -> None:
    with patched(work_copy, model_bin.TOKENIZER_HEADER_OFFSET + 4, struct.pack("<I", 199997)):
        assert "token table walk of 199997 entries ends at offset" in load_error(work_copy)
    with patched(work_copy, model_bin.TOKENIZER_HEADER_OFFSET + 4, struct.pack("<I", 199999)):
        assert "token table entry 199998 at offset" in load_error(work_copy)


def test_token_length_past_table(work_copy: Path, original: model_bin.ModelBin) -> None:
    last_entry = original.layout.tokens_offset + sum(2 + len(t) for t in original.token_bytes[:-1])
    with patched(work_copy, last_entry, struct.pack("<H", 0xFFFF)):
        message = load_error(work_copy)
    assert f"token table entry 199997 at offset {last_entry} has length 65535, which points past the end" in message


def test_regex_without_nul(work_copy: Path, original: model_bin.ModelBin) -> None:
    nul = original.layout.tokens_offset - 1
    with patched(work_copy, nul, b"x"):
        message = load_error(work_copy)
    assert f"regex at offset {original.layout.regex_offset} is not NUL-terminated within its regex_size of" in message


def test_regex_not_printable(work_copy: Path, original: model_bin.ModelBin) -> None:
    with patched(work_copy, original.layout.regex_offset + 3, b"\x80"):
        message = load_error(work_copy)
    assert f"regex byte 0x80 at offset {original.layout.regex_offset + 3} is not printable ASCII" in message
    with patched(work_copy, original.layout.regex_offset, b"\0"):
        assert f"regex at offset {original.layout.regex_offset} is empty" in load_error(work_copy)


def test_huge_dimensions_do_not_wrap(work_copy: Path, original: model_bin.ModelBin) -> None:
    """Every dimension at its bound: sizes are computed in 64 bits exactly (same as Python's ints)."""
    h = model_bin.dataclasses.replace(original.header, num_blocks=4, num_experts=1024, embedding_dim=65536,
                                      mlp_dim=65536, num_heads=1024, num_kv_heads=1024)
    with patched(work_copy, model_bin.HEADER_OFFSET, h.pack()):
        message = load_error(work_copy)
    layout = model_bin.compute_layout(h, original.num_special_tokens, original.num_text_tokens,
                                      original.layout.tokens_offset - original.layout.regex_offset,
                                      original.layout.weights_offset - original.layout.tokens_offset)
    assert layout.file_size > 2**40
    assert f"the weights need {layout.file_size} " in message and "tensor embedding" in message


# ---- not a file / empty / missing ----


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "does-not-exist.bin"
    with pytest.raises(GptOssIOError) as info:
        Model(path)
    assert isinstance(info.value, OSError)
    assert info.value.errno == errno.ENOENT
    assert str(path) in str(info.value) and "No such file" in str(info.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(GptOssIOError) as info:
        Model(tmp_path)
    assert info.value.errno == errno.EISDIR and str(tmp_path) in str(info.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    assert "file is empty" in load_error(path)


# ---- truncations ----


def first_cut_tensor(layout: model_bin.Layout, size: int) -> str | None:
    """Name of the first tensor (in file order) that does not fit in `size` bytes."""
    for spec in layout.tensors.values():  # insertion order is file order
        if spec.end > size:
            return spec.name
    return None


def truncation_sizes(f: model_bin.ModelBin) -> list[int]:
    layout = f.layout
    sizes = set(range(0, layout.tokens_offset + 1))  # the whole fixed header, UUID table and regex
    entry = layout.tokens_offset
    for token_id, token in enumerate(f.token_bytes):
        if token_id % 997 == 0:  # sampled token-table entries
            sizes.update({entry - 1, entry, entry + 1, entry + 2})
        entry += 2 + len(token)
    sizes.update({entry - 1, entry, entry + 1, layout.weights_offset - 1, layout.weights_offset,
                  layout.weights_offset + 1})
    for spec in layout.tensors.values():
        sizes.update({spec.offset - 1, spec.offset, spec.offset + 1, spec.end - 1, spec.end, spec.end + 1})
    for offset in layout.moe_offsets:
        sizes.update({offset - 1, offset, offset + 1})
    sizes.add(layout.file_size - 1)
    return sorted((s for s in sizes if 0 <= s < layout.file_size), reverse=True)


def test_truncations(work_copy: Path, original: model_bin.ModelBin, tmp_path: Path) -> None:
    path = tmp_path / "truncated.bin"
    shutil.copyfile(work_copy, path)
    layout = original.layout
    tokens_end = layout.tokens_offset + sum(2 + len(t) for t in original.token_bytes)
    sizes = truncation_sizes(original)
    assert len(sizes) > 2000
    for size in sizes:  # largest first: each step only shortens the same file
        os.truncate(path, size)
        with pytest.raises(ModelFileError) as info:
            Model(path)
        message = str(info.value)
        assert str(path) in message, (size, message)
        if size == 0:
            assert "file is empty" in message
            continue
        assert "file is truncated" in message, (size, message)
        if size >= tokens_end:
            tensor = first_cut_tensor(layout, size)
            assert f"tensor {tensor} at bytes [{layout.tensors[tensor].offset}," in message, (size, message)
        elif size >= layout.tokens_offset:
            assert "the token table" in message, (size, message)
        elif size >= layout.regex_offset:
            assert "the regex" in message, (size, message)
        else:
            section = next(name for start, name in HEADER_SECTIONS[::-1] if size >= start)
            assert f"file is truncated: {section}" in message, (size, message)


# Sections of the fixed header by start offset (the UUID table runs up to the regex).
HEADER_SECTIONS = [
    (0, "the magic"),
    (16, "the model UUID"),
    (32, "the model header"),
    (100, "the layout UUID"),
    (116, "the tokenizer UUID"),
    (132, "the tokenizer header"),
    (148, "the special-token UUID table"),
]


def test_consistent_head_dim_128_file_is_unsupported(tiny_model_bin: Path, original: model_bin.ModelBin,
                                                     tmp_path: Path) -> None:
    """A file whose layout really is that of head_dim 128 (valid, just not runnable here)."""
    path = tmp_path / "head_dim_128.bin"
    shutil.copyfile(tiny_model_bin, path)
    h = model_bin.dataclasses.replace(original.header, head_dim=128)
    layout = model_bin.compute_layout(h, original.num_special_tokens, original.num_text_tokens,
                                      original.layout.tokens_offset - original.layout.regex_offset,
                                      original.layout.weights_offset - original.layout.tokens_offset)
    with open(path, "r+b") as f:
        f.seek(model_bin.HEADER_OFFSET)
        f.write(h.pack())
    os.truncate(path, layout.file_size)  # grows the copy (sparse zeros) to the head_dim-128 size
    assert "this runtime supports only 64" in load_error(path, UnsupportedArgumentError)


def test_trailing_bytes_are_tolerated(tiny_model_bin: Path, original: model_bin.ModelBin, tmp_path: Path) -> None:
    path = tmp_path / "padded.bin"
    shutil.copyfile(tiny_model_bin, path)
    os.truncate(path, original.layout.file_size + 12345)
    assert Model(path).layout["file_size"] == original.layout.file_size
