"""Hostile or changing model files: the loader refuses them precisely, never hangs, leaks or crashes.

Covers: non-regular files (FIFO, directory, device, socket) refused without blocking; a file
changed after the load (truncated, rewritten in place) detected by Model.check_file, while a
rename-replace is harmless; the SIGBUS guard; the o200k regex requirement; trailing bytes; header
values the kernels cannot run; NaN/Inf in the small dense tensors; paths that are not UTF-8.
Anything that could hang or kill the interpreter runs in a subprocess with a timeout.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from gpt_oss_metal import Context, GptOssIOError, Model, ModelFileError, UnsupportedArgumentError, model_bin
from gpt_oss_metal.errors import NotARegularFileError

TIMEOUT = 120  # generous: the suite may share two cores with other jobs


def run_python(code: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Runs code in a fresh interpreter; a hang fails the test instead of blocking the suite."""
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"timed out after {timeout} s (hang):\n{code}")


@pytest.fixture(scope="module")
def original(tiny_model_bin: Path) -> model_bin.ModelBin:
    return model_bin.read_model_bin(str(tiny_model_bin))


@pytest.fixture()
def copy(tiny_model_bin: Path, tmp_path: Path) -> Path:
    path = tmp_path / "model.bin"
    shutil.copyfile(tiny_model_bin, path)
    return path


# ---- 1. not a regular file ----


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    result = run_python(f"""
        from gpt_oss_metal import Model, ModelFileError, GptOssIOError
        try:
            Model({str(fifo)!r})
        except ModelFileError as e:
            assert isinstance(e, GptOssIOError) and isinstance(e, OSError), type(e).__mro__
            print(type(e).__name__, e.errno, '|', e)
        """)
    assert result.returncode == 0, result.stderr
    assert f"NotARegularFileError {errno.ENODEV} | {fifo}: is a FIFO (named pipe), not a regular file" in result.stdout


def test_cli_info_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    try:
        result = subprocess.run([sys.executable, "-m", "gpt_oss_metal", "info", str(fifo)], capture_output=True,
                                text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail("gpt-oss-metal info FIFO hangs")
    assert result.returncode != 0
    assert f"{fifo}: is a FIFO (named pipe), not a regular file" in result.stderr + result.stdout


@pytest.mark.parametrize("path, kind", [("/dev/null", "a character device"), ("/dev/zero", "a character device")])
def test_device_is_refused(path: str, kind: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"no {path}")
    with pytest.raises(NotARegularFileError) as info:
        Model(path)
    assert f"{path}: is {kind}, not a regular file" in str(info.value)
    assert isinstance(info.value, ModelFileError) and info.value.errno == errno.ENODEV


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as info:
        Model(tmp_path)
    assert isinstance(info.value, GptOssIOError) and info.value.errno == errno.EISDIR  # still an OSError
    assert f"{tmp_path}: is a directory, not a regular file" in str(info.value)


def test_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
    except OSError as error:  # e.g. a path too long for sun_path
        pytest.skip(f"cannot bind a Unix socket: {error}")
    try:
        with pytest.raises(NotARegularFileError):
            Model(path)
    except AssertionError:
        raise
    except GptOssIOError as error:  # Linux refuses open() of a socket itself (ENXIO)
        assert error.errno == errno.ENXIO and str(path) in str(error)
    finally:
        server.close()


# ---- 2. the file changes after the load ----


def test_unchanged_file_passes_check(copy: Path) -> None:
    model = Model(copy)
    model.check_file()
    model.check_file()


def test_truncation_is_detected(copy: Path) -> None:
    model = Model(copy)
    size = copy.stat().st_size
    os.truncate(copy, size // 2)
    with pytest.raises(ModelFileError) as info:
        model.check_file()
    assert (f"{copy}: the model file changed after it was loaded (size {size} \u2192 {size // 2} bytes); "
            "reload the model") in str(info.value)
    os.truncate(copy, size)  # same size again (zeros): still refused, the change is sticky
    with pytest.raises(ModelFileError, match="changed after it was loaded"):
        model.check_file()


def test_overwrite_in_place_is_detected(copy: Path) -> None:
    model = Model(copy)
    time.sleep(0.05)  # past the file system's timestamp granularity
    with open(copy, "r+b") as f:
        f.seek(model.layout["weights_offset"])
        f.write(b"\xff\x7f" * 1024)  # NaNs over the embedding
    with pytest.raises(ModelFileError) as info:
        model.check_file()
    message = str(info.value)
    assert f"{copy}: the model file changed after it was loaded (size {copy.stat().st_size} bytes unchanged" in message
    assert "written in place" in message and "reload the model" in message


def test_rename_replace_keeps_the_loaded_model(copy: Path, tiny_model_bin: Path, tmp_path: Path) -> None:
    """Downloads should replace the file by rename: the loaded inode stays mapped and intact."""
    model = Model(copy)
    with Context(model, context_length=64) as context:
        context.append([1, 2, 3])
        context.process()
        before = np.array(context.logits)
    replacement = tmp_path / "model.bin.partial"
    shutil.copyfile(tiny_model_bin, replacement)
    with open(replacement, "r+b") as f:  # a different model at the path
        f.seek(model.layout["weights_offset"])
        f.write(b"\x00" * 4096)
    os.replace(replacement, copy)
    model.check_file()  # not a change of the loaded file
    with Context(model, context_length=64) as context:
        context.append([1, 2, 3])
        context.process()
        assert np.array_equal(np.array(context.logits), before)
    os.unlink(copy)  # deleting the path is harmless too
    model.check_file()


def test_truncation_while_reading_is_caught_by_the_sigbus_guard(copy: Path) -> None:
    """A read of a page past the new end would kill the process with SIGBUS; the guard turns it
    into zeros plus a sticky change, so the next check fails. (Probed through the tokenizer, which
    reads the mapping directly, independently of the context's own checks.)"""
    result = run_python(f"""
        import os
        from gpt_oss_metal import Model, ModelFileError
        model = Model({str(copy)!r})
        tokenizer = model.tokenizer
        last = tokenizer.num_text_tokens - 1
        expected = tokenizer.decode(last)
        os.truncate({str(copy)!r}, 4096)  # the token table now lies past the end of the file
        got = tokenizer.decode(last)  # faults: SIGBUS without the guard
        assert got == bytes(len(expected)), (got, expected)
        try:
            model.check_file()
        except ModelFileError as e:
            print('refused:', e)
        """)
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert "refused:" in result.stdout and "changed after it was loaded" in result.stdout


def test_truncation_before_process_does_not_kill_the_process(copy: Path) -> None:
    """Before: SIGBUS (exit -7) at process(). Now: process() checks the file first and raises
    ModelFileError naming the change; check_file refuses too."""
    result = run_python(f"""
        import os
        from gpt_oss_metal import Model, Context, ModelFileError
        model = Model({str(copy)!r})
        context = Context(model, context_length=64)
        context.append([1, 2, 3])
        os.truncate({str(copy)!r}, os.path.getsize({str(copy)!r}) // 2)
        try:
            context.process()
            print('processed')
        except ModelFileError as e:
            print('process refused:', e)
        try:
            model.check_file()
        except ModelFileError as e:
            print('check refused:', e)
        """)
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert "process refused:" in result.stdout and "changed after it was loaded" in result.stdout
    assert "processed" not in result.stdout
    assert "check refused:" in result.stdout


def test_overwrite_in_place_stops_process_and_sampling(copy: Path) -> None:
    """Before: NaN logits, silently. Now every unit of work checks the file first."""
    model = Model(copy)
    with Context(model, context_length=64) as context:
        context.append([1, 2, 3])
        context.process()
        time.sleep(0.05)  # past the file system's timestamp granularity
        with open(copy, "r+b") as f:
            f.seek(model.layout["weights_offset"])
            f.write(b"\xff\x7f" * 1024)
        context.append([4])
        with pytest.raises(ModelFileError, match="changed after it was loaded"):
            context.process()
        with pytest.raises(ModelFileError, match="changed after it was loaded"):
            context.sample(max_output_tokens=1, temperature=0.0)


# ---- 3. the regex ----


def patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_regex_other_than_o200k_is_refused(copy: Path, original: model_bin.ModelBin) -> None:
    patch(copy, original.layout.regex_offset, b"[a-z]+\0")
    with pytest.raises(ModelFileError) as info:
        Model(copy)
    assert (f"{copy}: tokenizer field regex at offset {original.layout.regex_offset} (6 characters) is not the "
            "o200k pre-tokenizer pattern") in str(info.value)


def test_regex_differing_in_one_character_is_refused(copy: Path, original: model_bin.ModelBin) -> None:
    at = original.regex.index("{1,3}") + 3  # \p{N}{1,3} -> \p{N}{1,4}
    patch(copy, original.layout.regex_offset + at, b"4")
    with pytest.raises(ModelFileError) as info:
        Model(copy)
    assert f"it differs from character {at} on" in str(info.value)


def test_o200k_regex_loads_and_encoders_agree(tiny_model_bin: Path) -> None:
    from gpt_oss_metal.vocab import O200K_PATTERN

    model = Model(tiny_model_bin)
    tokenizer = model.tokenizer
    assert tokenizer.regex == O200K_PATTERN
    for text in ["Hello world", "[a-z]+ differs: ABC def's 123456 \u00e9t\u00e9 \u4f60\u597d  \n\n x"]:
        assert tokenizer.encode(text) == tokenizer._native.encode_c(text)


# ---- 4. trailing bytes and unsupported headers ----


def test_trailing_bytes_beyond_padding_are_refused(copy: Path, original: model_bin.ModelBin) -> None:
    end = original.layout.file_size
    os.truncate(copy, end + 2 * 16384)
    with pytest.raises(ModelFileError) as info:
        Model(copy)
    assert (f"{copy}: the file has {end + 2 * 16384} bytes but the layout computed from its header ends at {end} "
            f"({2 * 16384} bytes unaccounted for): the header fields num_blocks (4)") in str(info.value)


def test_zero_padding_to_16k_is_allowed_nonzero_is_not(copy: Path, original: model_bin.ModelBin) -> None:
    end = original.layout.file_size
    padded = (end + 16383) // 16384 * 16384
    assert padded > end
    os.truncate(copy, padded)
    assert Model(copy).layout["file_size"] == end
    patch(copy, padded - 1, b"\x01")
    with pytest.raises(ModelFileError, match=f"byte {padded - 1} after the end of the last tensor"):
        Model(copy)


def test_too_few_blocks_is_refused_and_explained(copy: Path) -> None:
    """Before: num_blocks 1 on a 4-block file loaded and gave NaN logits."""
    patch(copy, model_bin.HEADER_OFFSET + 4, struct.pack("<I", 1))
    with pytest.raises(ModelFileError) as info:
        Model(copy)
    assert "num_blocks (1)" in str(info.value) and "with num_blocks 4 instead of 1 the layout would match" in str(info.value)


def test_too_few_experts_is_refused_and_explained(copy: Path) -> None:
    patch(copy, model_bin.HEADER_OFFSET + 8, struct.pack("<I", 16))
    with pytest.raises(ModelFileError) as info:
        Model(copy)
    assert "with num_experts 32 instead of 16 the layout would match" in str(info.value)


def consistent_file(path: Path, original: model_bin.ModelBin, **fields: int) -> None:
    """Rewrites the header with fields replaced and resizes the file (sparse) to that layout."""
    h = dataclasses.replace(original.header, **fields)
    layout = model_bin.compute_layout(h, original.num_special_tokens, original.num_text_tokens,
                                      original.layout.tokens_offset - original.layout.regex_offset,
                                      original.layout.weights_offset - original.layout.tokens_offset)
    patch(path, model_bin.HEADER_OFFSET, h.pack())
    os.truncate(path, layout.file_size)


@pytest.mark.parametrize("fields, field, offset, fragment", [
    ({"num_heads": 16}, "num_heads", 64, "is 16; the kernels of this runtime support only num_heads = 8 x num_kv_heads "
                                         "(num_kv_heads is 1, so num_heads must be 8)"),
    ({"num_kv_heads": 2}, "num_heads", 64, "is 8; the kernels of this runtime support only num_heads = 8 x num_kv_heads "
                                           "(num_kv_heads is 2, so num_heads must be 16)"),
    ({"num_experts": 257}, "num_experts", 40, "is 257; the kernels of this runtime support 1..256 experts"),
    ({"num_active_experts": 9}, "num_active_experts", 44, "is 9; the kernels of this runtime support 1..8 active experts"),
    ({"embedding_dim": 7712}, "embedding_dim", 48, "is 7712; the kernels of this runtime support multiples of 32 in "
                                                   "32..7680"),
])
def test_header_the_kernels_cannot_run_is_refused(copy: Path, original: model_bin.ModelBin, fields: dict[str, int],
                                                  field: str, offset: int, fragment: str) -> None:
    """Before: these loaded and failed at the first process() with a launch wrapper's message."""
    consistent_file(copy, original, **fields)
    with pytest.raises(UnsupportedArgumentError) as info:
        Model(copy)
    assert f"{copy}: model header field {field} at offset {offset} {fragment}" in str(info.value)


def test_kernel_limits_themselves_load(copy: Path, original: model_bin.ModelBin) -> None:
    consistent_file(copy, original, num_active_experts=8)
    assert Model(copy).header["num_active_experts"] == 8


# ---- 7. NaN / Inf in the small dense tensors ----


@pytest.mark.parametrize("tensor, element, bits, shown", [
    ("block.1.attn_norm", 3, 0x7FC0, "NaN"),
    ("block.0.qkv_bias", 0, 0x7F80, "+inf"),
    ("block.2.sinks", 7, 0xFF80, "-inf"),
    ("block.3.out_bias", 5, 0x7FC0, "NaN"),
    ("block.0.mlp_norm", 159, 0xFFC1, "NaN"),
    ("block.3.gate_bias", 31, 0x7F80, "+inf"),
    ("final_norm", 42, 0x7FC0, "NaN"),
])
def test_non_finite_small_tensor_is_refused(copy: Path, original: model_bin.ModelBin, tensor: str, element: int,
                                            bits: int, shown: str) -> None:
    """Before: loaded; every logit NaN at the first process()."""
    spec = original.layout.tensors[tensor]
    patch(copy, spec.offset + 2 * element, struct.pack("<H", bits))
    with pytest.raises(ModelFileError) as info:
        Model(copy)
    assert (f"{copy}: tensor {tensor} (bytes [{spec.offset}, {spec.end})) holds a non-finite value: element {element} "
            f"is {shown} (bf16 0x{bits:04x})") in str(info.value)


# ---- 5. paths that are not UTF-8 ----


def mappings_and_fds(name: bytes) -> tuple[int, int]:
    with open("/proc/self/maps", "rb") as f:
        maps = sum(1 for line in f if name in line)
    return maps, len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc")
def test_path_not_utf8_loads_without_leaking(tiny_model_bin: Path, tmp_path: Path) -> None:
    """Before: RuntimeError from pybind11 after the load, and one leaked mapping per attempt."""
    raw = os.fsencode(tmp_path) + b"/m\xffodel.bin"
    try:
        shutil.copyfile(tiny_model_bin, raw)
    except (OSError, UnicodeError) as error:
        pytest.skip(f"the file system refuses the name: {error}")
    before = mappings_and_fds(b"m\xffodel.bin")
    for path in (raw, os.fsdecode(raw), Path(os.fsdecode(raw))) * 17:
        model = Model(path)
        assert os.fsencode(model.path) == raw
        assert model.header["num_blocks"] == 4
        model.close()
        del model
    assert mappings_and_fds(b"m\xffodel.bin") == before


def test_error_message_for_path_not_utf8(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/missing-\xff.bin"
    for _ in range(50):
        with pytest.raises(GptOssIOError) as info:
            Model(raw)
        assert info.value.errno == errno.ENOENT
        assert f"{tmp_path}/missing-\\xff.bin: cannot open model file" in str(info.value)
    bad = tmp_path / "bad-\udcfe.bin"
    with open(os.fsencode(bad), "wb") as f:
        f.write(b"not a model")
    with pytest.raises(ModelFileError) as info:
        Model(bad)
    assert f"{tmp_path}/bad-\\xfe.bin: " in str(info.value)
    str(info.value).encode("utf-8")  # printable


def test_path_types(tiny_model_bin: Path) -> None:
    assert Model(str(tiny_model_bin)).path == str(tiny_model_bin)
    assert Model(os.fsencode(tiny_model_bin)).path == str(tiny_model_bin)
    assert Model(tiny_model_bin).path == str(tiny_model_bin)
    with pytest.raises(TypeError):
        Model(42)  # type: ignore[arg-type]
