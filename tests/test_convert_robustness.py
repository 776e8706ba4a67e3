"""The converter refuses bad input before writing, never leaves partial files, and names paths.

Each test feeds one bad input (config value, safetensors header, tensor value, destination, signal,
I/O failure) and checks the specific exception and message, and that nothing was written.
"""

from __future__ import annotations

import json
import math
import errno
import os
import resource
import signal
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gpt_oss_metal import model_bin
from gpt_oss_metal.convert import CheckpointError, ConversionError, convert_checkpoint, header_for_config
from gpt_oss_metal.testing.checkpoints import TinyConfig, generate_weights, write_safetensors

SMALL = TinyConfig(num_blocks=2, num_experts=4, hidden_size=64, intermediate_size=32)


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    return generate_weights(SMALL, seed=5)


def write_checkpoint(directory: Path, tensors: dict, config: dict | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    items = list(tensors.items())
    write_safetensors(str(directory / "a.safetensors"), dict(items[: len(items) // 2]))
    write_safetensors(str(directory / "b.safetensors"), dict(items[len(items) // 2 :]))
    (directory / "config.json").write_text(json.dumps(config or SMALL.original_config()))
    return directory


def expect(exc_type, src: Path, dst: Path, *fragments: str):
    with pytest.raises(exc_type) as info:
        convert_checkpoint(str(src), str(dst), progress=False)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    assert not dst.exists() or not stat.S_ISREG(dst.lstat().st_mode) or dst.read_bytes()[:7] != b"GPT-OSS"
    assert not [p for p in dst.parent.iterdir() if p.name.endswith(".partial")]
    return info.value


# ------------------------------------------------------------------------------------------
# config.json: types and the ranges the C loader accepts
# ------------------------------------------------------------------------------------------

BAD_CONFIGS = [
    ({"swiglu_limit": -1}, "swiglu_limit is -1.0"),
    ({"swiglu_limit": math.inf}, "swiglu_limit is inf"),
    ({"swiglu_limit": 1e39}, "swiglu_limit is 1e+39"),  # beyond float32
    ({"rope_theta": math.nan}, "rope_theta is nan"),
    ({"rope_theta": 1.0}, "rope_theta is 1.0"),
    ({"rope_theta": "150000"}, 'rope_theta must be a number, got "150000"'),
    ({"num_hidden_layers": 2.7}, "num_hidden_layers must be an integer, got 2.7"),
    ({"num_hidden_layers": True}, "num_hidden_layers must be an integer, got true"),
    ({"num_hidden_layers": 0}, "num_hidden_layers is 0; must be in [1, 1024]"),
    ({"num_hidden_layers": 10**9}, "num_hidden_layers is 1000000000; must be in [1, 1024]"),
    ({"num_experts": -4}, "num_experts is -4"),
    ({"experts_per_token": 5}, "experts_per_token is 5; must be in [1, 4]"),
    ({"hidden_size": 64.0}, "hidden_size must be an integer, got 64.0"),
    ({"num_key_value_heads": 3}, "not a multiple of num_key_value_heads 3"),
    ({"sliding_window": 0}, "sliding_window is 0"),
    ({"vocab_size": 1000}, "vocab_size is 1000"),
    ({"initial_context_length": 1 << 24}, "context length"),  # x 32 exceeds the runtime's maximum
    ({"rope_scaling_factor": 0.5}, "rope scaling factor is 0.5; must be >= 1"),
    ({"rope_ntk_alpha": 32.0}, "YaRN ramp is empty"),
    ({"rope_ntk_beta": -1}, "rope_ntk_beta is -1.0"),
]


@pytest.mark.parametrize("override, message", BAD_CONFIGS, ids=[m for _, m in BAD_CONFIGS])
def test_bad_config_value_is_refused_before_writing(override, message, weights, tmp_path):
    src = write_checkpoint(tmp_path / "ck", weights, dict(SMALL.original_config(), **override))
    error = expect(CheckpointError, src, tmp_path / "m.bin", "config.json", message)
    assert isinstance(error, ConversionError) and isinstance(error, ValueError)


def test_bad_hf_config_values():
    hf = SMALL.hf_config(quantized=True)
    with pytest.raises(CheckpointError, match="layer_types must alternate"):
        header_for_config(dict(hf, layer_types=7))
    with pytest.raises(CheckpointError, match="rope_scaling must be a JSON object"):
        header_for_config(dict(hf, rope_scaling=[1, 2]))
    with pytest.raises(CheckpointError, match="factor is nan"):
        header_for_config(dict(hf, rope_scaling=dict(hf["rope_scaling"], factor=math.nan)))


def test_config_layer_count_must_match_the_tensors(weights, tmp_path):
    # Fewer layers than the checkpoint has would silently drop block 1.
    src = write_checkpoint(tmp_path / "ck", weights, dict(SMALL.original_config(), num_hidden_layers=1))
    expect(CheckpointError, src, tmp_path / "m.bin", "num_hidden_layers is 1", "tensors for 2 blocks")
    src = write_checkpoint(tmp_path / "ck2", weights, dict(SMALL.original_config(), num_hidden_layers=40))
    expect(CheckpointError, src, tmp_path / "m.bin", "num_hidden_layers is 40", "tensors for 2 blocks")


def test_huge_layer_count_fails_fast_in_little_memory(weights, tmp_path):
    """num_hidden_layers = 10**9 used to build a billion-entry name table (> 6 GB, then MemoryError)."""
    src = write_checkpoint(tmp_path / "ck", weights, dict(SMALL.original_config(), num_hidden_layers=10**9))
    start = time.monotonic()
    result = run_cli("convert", "--no-progress", "-s", str(src), "-d", str(tmp_path / "m.bin"),
                     preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)))
    assert_one_line_error(result, "num_hidden_layers is 1000000000")
    assert time.monotonic() - start < 60
    assert not (tmp_path / "m.bin").exists()


# ------------------------------------------------------------------------------------------
# safetensors headers
# ------------------------------------------------------------------------------------------


def rewrite_header(path: Path, mutate) -> None:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    mutate(header)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])


def first_tensor(header: dict, dtype: str | None = None) -> str:
    return next(k for k, v in header.items() if k != "__metadata__" and (dtype is None or v["dtype"] == dtype))


def set_field(field, value, dtype=None):
    def mutate(header):
        header[first_tensor(header, dtype)][field] = value
    return mutate


def shift_offsets(header):
    name = first_tensor(header, "BF16")
    begin, end = header[name]["data_offsets"]
    header[name]["data_offsets"] = [begin - 16 - begin, end - begin - 16]  # starts 16 bytes before the data


def overlap(header):
    names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    a, b = names[0], names[1]
    size = header[b]["data_offsets"][1] - header[b]["data_offsets"][0]
    header[b]["data_offsets"] = [header[a]["data_offsets"][0], header[a]["data_offsets"][0] + size]


BAD_HEADERS = [
    (set_field("shape", ["x"]), "shape ['x'] is not a list of non-negative integers"),
    (set_field("shape", 5), "shape 5 is not a list"),
    (set_field("shape", [-1, -4]), "shape [-1, -4] is not a list of non-negative integers"),
    (set_field("shape", [True]), "shape [True]"),
    (set_field("data_offsets", [0]), "data_offsets [0] is not a list of two integers"),
    (set_field("data_offsets", None), "data_offsets None"),
    (set_field("data_offsets", [0.5, 8]), "data_offsets [0.5, 8]"),
    (shift_offsets, "data_offsets [-16, "),
    (set_field("data_offsets", [8, 4]), "data_offsets [8, 4] are negative or out of order"),
    (set_field("data_offsets", [0, 10**12]), "end beyond the file"),
    (set_field("dtype", "F64"), "unsupported dtype 'F64'"),
    (set_field("dtype", 3), "unsupported dtype 3"),
    (overlap, "overlap"),
]


@pytest.mark.parametrize("mutate, message", BAD_HEADERS, ids=[m for _, m in BAD_HEADERS])
def test_malformed_safetensors_header(mutate, message, weights, tmp_path):
    src = write_checkpoint(tmp_path / "ck", weights)
    rewrite_header(src / "b.safetensors", mutate)
    expect(CheckpointError, src, tmp_path / "m.bin", "b.safetensors", message)


def test_safetensors_header_not_json_or_too_long(weights, tmp_path):
    src = write_checkpoint(tmp_path / "ck", weights)
    raw = (src / "a.safetensors").read_bytes()
    (src / "a.safetensors").write_bytes(struct.pack("<Q", 4) + b"[[[[" + raw[8:])
    expect(CheckpointError, src, tmp_path / "m.bin", "a.safetensors", "not JSON")
    (src / "a.safetensors").write_bytes(struct.pack("<Q", 2**63) + raw[8:])
    expect(CheckpointError, src, tmp_path / "m.bin", "a.safetensors", "exceeds the file")


# ------------------------------------------------------------------------------------------
# Tensor values: NaN / infinity, E8M0 NaN scales
# ------------------------------------------------------------------------------------------


def with_value(weights, name, index, raw_value):
    tensors = dict(weights)
    x = tensors[name].copy()
    x[index] = raw_value
    tensors[name] = x
    return tensors


@pytest.mark.parametrize("bits, name", [(0x7FC0, "NaN"), (0x7F80, "+inf"), (0xFF80, "-inf")])
def test_non_finite_bf16_weight(bits, name, weights, tmp_path):
    tensors = with_value(weights, "block.1.attn.out.weight", (3, 5), bits)
    expect(CheckpointError, write_checkpoint(tmp_path / "ck", tensors), tmp_path / "m.bin",
           "tensor block.1.attn.out.weight", "NaN or infinity", "index [3, 5]", ".safetensors")


def test_non_finite_in_embedding_and_dense_hf_experts(weights, tmp_path):
    tensors = with_value(weights, "unembedding.weight", (200013, 0), 0x7FC0)  # the last row kept
    expect(CheckpointError, write_checkpoint(tmp_path / "ck", tensors), tmp_path / "m.bin",
           "tensor unembedding.weight[", "NaN or infinity")
    from gpt_oss_metal.testing.checkpoints import write_checkpoint as write_layout

    src = Path(write_layout(str(tmp_path / "hf"), layout="hf-dense", seed=5, config=SMALL))
    index = json.loads((src / "model.safetensors.index.json").read_text())["weight_map"]
    name = "model.layers.1.mlp.experts.down_proj"
    shard = src / index[name]
    raw = shard.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    entry = json.loads(raw[8 : 8 + n])[name]
    assert entry["dtype"] == "BF16"
    position = 8 + n + entry["data_offsets"][0] + 2 * 7  # element [0, 0, 7]
    shard.write_bytes(raw[:position] + struct.pack("<H", 0x7F80) + raw[position + 2 :])
    expect(CheckpointError, src, tmp_path / "m.bin", f"tensor {name}[0]", "NaN or infinity", "index [0, 7]",
           index[name])


def test_f32_value_beyond_bf16_range(weights, tmp_path):
    tensors = dict(weights)
    tensors["block.0.attn.sinks"] = np.full(8, 3.4e38, np.float32)
    expect(CheckpointError, write_checkpoint(tmp_path / "ck", tensors), tmp_path / "m.bin",
           "tensor block.0.attn.sinks", "beyond the bf16 range")


def test_e8m0_nan_scale(weights, tmp_path):
    tensors = with_value(weights, "block.0.mlp.mlp1_weight.scales", (2, 1, 0), 255)
    expect(CheckpointError, write_checkpoint(tmp_path / "ck", tensors), tmp_path / "m.bin",
           "tensor block.0.mlp.mlp1_weight.scales[2]", "255 (E8M0 NaN)", "index [1, 0]")


# ------------------------------------------------------------------------------------------
# The finished file is checked by the C loader before the rename
# ------------------------------------------------------------------------------------------


def test_file_the_runtime_rejects_is_not_written(weights, tmp_path, monkeypatch):
    pytest.importorskip("gpt_oss_metal._metal")
    import gpt_oss_metal.convert as convert

    # Disable the Python-side config checks so a header the C loader rejects reaches the writer.
    monkeypatch.setattr(convert, "_check_header", lambda h, where: None)
    real = convert._ConfigReader.float
    monkeypatch.setattr(convert._ConfigReader, "float",
                        lambda self, *names, above, **kw: real(self, *names, above=-math.inf, **kw))
    src = write_checkpoint(tmp_path / "ck", weights, dict(SMALL.original_config(), swiglu_limit=-1))
    out = tmp_path / "out"
    out.mkdir()
    (out / "m.bin").write_bytes(b"previous")
    expect(ConversionError, src, out / "m.bin", "rejected by the runtime's loader", "swiglu_limit")
    assert [p.name for p in out.iterdir()] == ["m.bin"] and (out / "m.bin").read_bytes() == b"previous"


# ------------------------------------------------------------------------------------------
# Destinations
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["FIFO", "directory", "character device"])
def test_non_regular_destination_is_refused(kind, weights, tmp_path):
    src = write_checkpoint(tmp_path / "ck", weights)
    dst = tmp_path / "dst"
    if kind == "FIFO":
        os.mkfifo(dst)
    elif kind == "directory":
        dst.mkdir()
    else:
        try:
            os.mknod(dst, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null node
        except PermissionError:
            pytest.skip("creating a device node needs privileges")
    before = dst.lstat()
    expect(ConversionError, src, dst, f"is a {kind}", "refusing to replace it")
    after = dst.lstat()
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)


def test_dev_null_is_refused_without_touching_it(weights, tmp_path):
    src = write_checkpoint(tmp_path / "ck", weights)
    before = os.stat("/dev/null")
    with pytest.raises(ConversionError, match="is a character device"):
        convert_checkpoint(str(src), "/dev/null", progress=False)
    after = os.stat("/dev/null")
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev) and stat.S_ISCHR(after.st_mode)


def test_source_shard_or_config_as_destination_is_refused(weights, tmp_path):
    src = write_checkpoint(tmp_path / "ck", weights)
    for victim in ("a.safetensors", "config.json"):
        content = (src / victim).read_bytes()
        expect(ConversionError, src, src / victim, "is the input file", victim)
        assert (src / victim).read_bytes() == content
    os.link(src / "b.safetensors", tmp_path / "hardlink.bin")  # the same inode under another name
    expect(ConversionError, src, tmp_path / "hardlink.bin", "is the input file")
    assert (src / "b.safetensors").read_bytes()[:8] == (tmp_path / "hardlink.bin").read_bytes()[:8]


# ------------------------------------------------------------------------------------------
# I/O errors name the file
# ------------------------------------------------------------------------------------------


def test_write_failure_names_the_destination(weights, tmp_path):
    """A write that fails (EFBIG under RLIMIT_FSIZE, like ENOSPC on a full disk) names the path."""
    src = write_checkpoint(tmp_path / "ck", weights)
    dst = tmp_path / "out" / "model.bin"
    dst.parent.mkdir()

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    result = run_cli("convert", "--no-progress", "-s", str(src), "-d", str(dst), preexec_fn=limit)
    assert_one_line_error(result, "[Errno 27]", str(dst))
    assert list(dst.parent.iterdir()) == []


def test_disk_full_names_the_destination(weights, tmp_path, monkeypatch):
    import errno

    import gpt_oss_metal.convert as convert

    class FullDisk:
        """The temporary file, failing with ENOSPC after some writes (as a full disk does)."""

        def __init__(self, f):
            self._f, self._writes = f, 0

        def write(self, data):
            self._writes += 1
            if self._writes > 20:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

    real_init = convert._Writer.__init__
    monkeypatch.setattr(convert._Writer, "__init__", lambda self, f, *a: real_init(self, FullDisk(f), *a))
    src = write_checkpoint(tmp_path / "ck", weights)
    with pytest.raises(OSError) as info:
        convert_checkpoint(str(src), str(tmp_path / "m.bin"), progress=False)
    assert info.value.errno == errno.ENOSPC, info.value
    assert str(tmp_path / "m.bin") in str(info.value) and "No space left on device" in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_unreadable_shard_names_the_file(weights, tmp_path, monkeypatch):
    src = write_checkpoint(tmp_path / "ck", weights)
    shard = str(src / "a.safetensors")
    if os.geteuid() == 0:
        # root reads files whatever their mode (CI runs as root): make open() of the shard fail as
        # it would for a user, with an OSError that does not name the file itself.
        import builtins
        real_open = builtins.open

        def refusing_open(file, *args, **kwargs):
            if os.fspath(file) == shard:
                raise PermissionError(errno.EACCES, "Permission denied")
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", refusing_open)
    else:
        os.chmod(shard, 0)
    with pytest.raises(PermissionError, match="a.safetensors"):
        convert_checkpoint(str(src), str(tmp_path / "m.bin"), progress=False)


# ------------------------------------------------------------------------------------------
# Signals: SIGTERM / SIGHUP mid-write delete the temporary file and exit 128 + signum
# ------------------------------------------------------------------------------------------

# Runs the real CLI in a subprocess; after the 3rd expert has been produced the conversion
# announces itself (a marker file) and sleeps, so the signal arrives mid-write, deterministically.
PAUSING_CONVERT = """
import os, sys, time
import gpt_oss_metal.convert as convert
real = convert._OriginalCheckpoint.expert
count = [0]
def expert(self, n, e):
    count[0] += 1
    if count[0] == 3:
        open(sys.argv[1], "w").close()
        time.sleep(120)
    return real(self, n, e)
convert._OriginalCheckpoint.expert = expert
from gpt_oss_metal.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_signal_mid_write_leaves_no_partial_file(signum, existing, weights, tmp_path):
    src = write_checkpoint(tmp_path / "ck", weights)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "model.bin"
    if existing:
        dst.write_bytes(b"previous model")
    marker = tmp_path / "paused"
    process = subprocess.Popen(
        [sys.executable, "-c", PAUSING_CONVERT, str(marker), "convert", "--no-progress", "-s", str(src), "-d", str(dst)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        partial = [p for p in out.iterdir() if p.name.endswith(".partial")]
        assert len(partial) == 1 and partial[0].stat().st_size > 0  # really mid-write
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    assert [p.name for p in out.iterdir()] == (["model.bin"] if existing else [])
    if existing:
        assert dst.read_bytes() == b"previous model"


def test_signal_handlers_are_restored(weights, tmp_path):
    src = write_checkpoint(tmp_path / "ck", weights)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    convert_checkpoint(str(src), str(tmp_path / "m.bin"), progress=False)
    assert {s: signal.getsignal(s) for s in before} == before
    assert model_bin.read_model_bin(str(tmp_path / "m.bin")).header.num_blocks == 2


def test_conversion_in_a_thread_works(weights, tmp_path):
    """signal.signal() is main-thread only: elsewhere the converter installs no handlers."""
    import threading

    src = write_checkpoint(tmp_path / "ck", weights)
    errors = []
    thread = threading.Thread(target=lambda: _convert_or_record(src, tmp_path / "m.bin", errors))
    thread.start()
    thread.join()
    assert errors == [] and (tmp_path / "m.bin").exists()


def _convert_or_record(src, dst, errors):
    try:
        convert_checkpoint(str(src), str(dst), progress=False)
    except BaseException as e:  # noqa: BLE001
        errors.append(e)


# ------------------------------------------------------------------------------------------
# Helpers: the CLI in a subprocess
# ------------------------------------------------------------------------------------------


def run_cli(*args: str, preexec_fn=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpt_oss_metal", *args], capture_output=True, text=True,
                          timeout=300, preexec_fn=preexec_fn)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpt-oss-metal: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
