"""Loading a valid model.bin with the C loader: header, layout and tokenizer agree with the file."""

from __future__ import annotations

import gc
import shutil
import struct
from pathlib import Path

import pytest

from gpt_oss_metal import InvalidArgumentError, Model, UnsupportedArgumentError, _metal, model_bin
from gpt_oss_metal.vocab import O200K_PATTERN

EXPECTED_SPECIAL_IDS = {
    "return": 200002,
    "start": 200006,
    "message": 200008,
    "end": 200007,
    "call": 200012,
    "channel": 200005,
    "constrain": 200003,
    "refusal": 200013,
    "untrusted": 200000,
    "end_untrusted": 200001,
}


@pytest.fixture(scope="module")
def model(tiny_model_bin: Path) -> Model:
    return Model(tiny_model_bin)


@pytest.fixture(scope="module")
def file(tiny_model_bin: Path) -> model_bin.ModelBin:
    return model_bin.read_model_bin(str(tiny_model_bin))


def write_with_tokenizer(src: Path, dst: Path, token_bytes: list[bytes]) -> None:
    """Copy src to dst with its token table replaced (weights moved to the new 16 KiB-aligned offset)."""
    data = src.read_bytes()
    f = model_bin.read_model_bin(str(src))
    layout = f.layout
    table = b"".join(struct.pack("<H", len(t)) + t for t in token_bytes)
    head = bytearray(data[: layout.tokens_offset])
    struct.pack_into("<4I", head, model_bin.TOKENIZER_HEADER_OFFSET, f.num_special_tokens, len(token_bytes),
                     layout.tokens_offset - layout.regex_offset, len(table))
    out = bytes(head) + table
    out += b"\0" * (model_bin.align_up(len(out), model_bin.SECTION_ALIGNMENT) - len(out))
    dst.write_bytes(out + data[layout.weights_offset:])


# ---- header and layout ----


def test_header_matches_file(model: Model, file: model_bin.ModelBin) -> None:
    header = model.header
    for field, value in vars(file.header).items():
        # Floats: the dict holds the stored f32 widened to double, as struct.unpack("f") gives.
        assert header[field] == value, field
    assert header["num_text_tokens"] == file.num_text_tokens == model_bin.NUM_TEXT_TOKENS
    assert header["num_special_tokens"] == file.num_special_tokens == model_bin.NUM_SPECIAL_TOKENS
    assert header["regex_size"] == file.layout.tokens_offset - file.layout.regex_offset
    assert model.config == header


def test_max_context_length(model: Model, file: model_bin.ModelBin) -> None:
    assert model.max_context_length == file.header.context_length
    assert isinstance(model.max_context_length, int)


def test_layout_matches_compute_layout(model: Model, file: model_bin.ModelBin) -> None:
    ours = model.layout
    theirs = file.layout
    assert ours["regex_offset"] == theirs.regex_offset
    assert ours["tokens_offset"] == theirs.tokens_offset
    assert ours["weights_offset"] == theirs.weights_offset
    assert ours["weights_offset"] % model_bin.SECTION_ALIGNMENT == 0
    assert ours["moe_offsets"] == list(theirs.moe_offsets)
    assert ours["expert_size"] == theirs.expert_size
    assert ours["file_size"] == theirs.file_size
    assert ours["vocab_size"] == file.num_text_tokens + file.num_special_tokens
    expected = {name: (spec.offset, spec.nbytes) for name, spec in theirs.tensors.items()}
    assert ours["tensors"] == expected
    assert all(offset % model_bin.TENSOR_ALIGNMENT == 0 for offset, _ in ours["tensors"].values())


def test_repr_and_context_manager(tiny_model_bin: Path) -> None:
    with Model(tiny_model_bin) as m:
        text = repr(m)
        assert str(tiny_model_bin) in text and "num_blocks=4" in text
        assert m.path == str(tiny_model_bin)


# ---- tokenizer ----


def test_tokenizer_counts(model: Model) -> None:
    t = model.tokenizer
    assert (t.num_text_tokens, t.num_special_tokens, t.num_tokens) == (199998, 16, 200014)
    native = model._native.tokenizer
    assert (native.num_text_tokens, native.num_special_tokens, native.num_tokens) == (199998, 16, 200014)


def test_special_token_ids_by_role(model: Model) -> None:
    native = model._native.tokenizer
    assert set(_metal.SPECIAL_TOKEN_ROLES) == set(EXPECTED_SPECIAL_IDS)
    for role, expected in EXPECTED_SPECIAL_IDS.items():
        assert native.special_token_id(role) == expected, role
        assert native.special_token_id(_metal.SPECIAL_TOKEN_ROLES[role]) == expected, role
        assert native.special_token_id(f"<|{role}|>") == expected, role
        assert model.tokenizer.encode_special_token(f"<|{role}|>") == expected, role


def test_unknown_special_token_role(model: Model) -> None:
    native = model._native.tokenizer
    for role in (0, 11, -1, 1000):
        with pytest.raises(InvalidArgumentError, match="unknown special token type"):
            native.special_token_id(role)
    with pytest.raises(InvalidArgumentError, match="unknown special token role 'bogus'"):
        native.special_token_id("bogus")
    with pytest.raises(InvalidArgumentError, match="unknown special token"):
        model.tokenizer.encode_special_token("<|bogus|>")


def test_decode_every_text_token(model: Model, file: model_bin.ModelBin, vocab: tuple[bytes, ...]) -> None:
    native = model._native.tokenizer
    decoded = [native.decode(i) for i in range(native.num_text_tokens)]
    assert decoded == file.token_bytes
    assert decoded == list(vocab)
    assert native.text_tokens() == decoded
    assert model.tokenizer.decode(range(100, 110)) == b"".join(vocab[100:110])


def test_decode_rejects_special_and_out_of_range_ids(model: Model) -> None:
    native = model._native.tokenizer
    for token_id in range(199998, 200014):
        with pytest.raises(InvalidArgumentError, match=f"token id {token_id} is a special token"):
            native.decode(token_id)
        with pytest.raises(InvalidArgumentError):
            model.tokenizer.decode(token_id)
    for token_id in (200014, 200015, 2**32 - 1):
        with pytest.raises(InvalidArgumentError, match="outside the vocabulary"):
            native.decode(token_id)
    for token_id in (-1, 2**32, 2**40):
        with pytest.raises(InvalidArgumentError, match="outside the vocabulary"):
            native.decode(token_id)
    with pytest.raises(InvalidArgumentError):
        model.tokenizer.decode([1, 2, 200014])


def test_regex_and_uuids(model: Model) -> None:
    native = model._native.tokenizer
    assert native.regex == O200K_PATTERN
    uuids = native.special_token_uuids
    assert len(uuids) == 16
    by_id = {model_bin.SPECIAL_TOKEN_IDS[name]: u.bytes for name, u in model_bin.SPECIAL_TOKEN_UUIDS.items()}
    for slot, raw in enumerate(uuids):
        assert raw == by_id.get(199998 + slot, bytes(16)), slot
        assert native.token_uuid(199998 + slot) == raw
    assert native.token_uuid(0) == bytes(16)
    with pytest.raises(InvalidArgumentError):
        native.token_uuid(200014)
    assert model.tokenizer.special_token_uuid(200006) == model_bin.SPECIAL_TOKEN_UUIDS["<|start|>"]
    assert model.tokenizer.special_token_uuid(199999) is None


def test_tokenizer_outlives_model(tiny_model_bin: Path, vocab: tuple[bytes, ...]) -> None:
    m = Model(tiny_model_bin)
    native = m._native.tokenizer
    del m
    gc.collect()
    # The tokenizer holds its own reference to the file mapping.
    assert native.decode(1000) == vocab[1000]
    assert native.regex == O200K_PATTERN


def test_zeroed_special_token_slots_are_tolerated(tiny_model_bin: Path, tmp_path: Path) -> None:
    """The original converter could leave <|end_untrusted|> and <|message|> unnamed (zero UUIDs)."""
    path = tmp_path / "model.bin"
    shutil.copyfile(tiny_model_bin, path)
    with open(path, "r+b") as f:
        for token_id in (200001, 200008):
            f.seek(model_bin.SPECIAL_UUIDS_OFFSET + 16 * (token_id - 199998))
            f.write(bytes(16))
    m = Model(path)
    native = m._native.tokenizer
    for role in ("end_untrusted", "message"):
        with pytest.raises(UnsupportedArgumentError, match=rf"names no special token <\|{role}\|>"):
            native.special_token_id(role)
        with pytest.raises(UnsupportedArgumentError):
            m.tokenizer.encode_special_token(f"<|{role}|>")
    for role, expected in EXPECTED_SPECIAL_IDS.items():
        if role not in ("end_untrusted", "message"):
            assert native.special_token_id(role) == expected
    # Unnamed slots become reserved names in the BPE encoder.
    assert m.tokenizer.special_tokens["<|reserved_200008|>"] == 200008
    assert m.tokenizer.encode("<|message|>", allowed_special="all") == m.tokenizer.encode("<|message|>")


def test_unknown_special_token_uuid_is_tolerated(tiny_model_bin: Path, tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    shutil.copyfile(tiny_model_bin, path)
    with open(path, "r+b") as f:
        f.seek(model_bin.SPECIAL_UUIDS_OFFSET + 16 * (200004 - 199998))
        f.write(bytes(range(1, 17)))
    m = Model(path)
    assert m._native.tokenizer.token_uuid(200004) == bytes(range(1, 17))
    assert m.tokenizer.special_tokens["<|reserved_200004|>"] == 200004
    assert m.tokenizer.encode_special_token("<|start|>") == 200006


def test_long_tokens_decode_with_u16_lengths(tiny_model_bin: Path, tmp_path: Path, vocab: tuple[bytes, ...]) -> None:
    """Token lengths are u16 (the original runtime read a signed byte): 128, 200 and 65535 bytes."""
    tokens = list(vocab)
    tokens[5] = bytes(i % 251 for i in range(65535))
    tokens[6] = b"x" * 200
    tokens[7] = b"\xff" * 128
    path = tmp_path / "model.bin"
    write_with_tokenizer(tiny_model_bin, path, tokens)
    native = Model(path)._native.tokenizer
    assert native.decode(5) == tokens[5]
    assert native.decode(6) == tokens[6]
    assert native.decode(7) == tokens[7]
    assert native.decode(8) == vocab[8]
    assert native.decode(199997) == vocab[199997]
