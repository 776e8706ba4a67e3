"""The gpt-oss-metal command, run as ``python -m gpt_oss_metal.cli`` in a subprocess like a user would."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpt_oss_metal import cli

NO_NETWORK_ENV = {
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "HF_HUB_OFFLINE": "1",  # fail at once instead of retrying for half a minute
}


def run(*args: str, env: dict[str, str] | None = None, module: str = "gpt_oss_metal.cli") -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **NO_NETWORK_ENV, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=600, env=full_env
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit status 1 and one line ``gpt-oss-metal: error: ...`` on stderr, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gpt-oss-metal: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------


def test_info_text(tiny_model_bin: Path) -> None:
    from gpt_oss_metal import Model

    result = run("info", str(tiny_model_bin))
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    values = {key.strip(): value.strip() for key, value in lines.items()}
    header = Model(str(tiny_model_bin)).header
    for field in ("num_blocks", "num_experts", "embedding_dim", "num_heads", "num_kv_heads", "attention_window", "context_length"):
        assert values[field] == str(header[field]), field
    assert values["file size"].endswith(f"({os.path.getsize(tiny_model_bin):,} B)")
    assert values["vocabulary"] == "199,998 text + 16 special tokens"
    assert values["harmony vocabulary"] == "ok"
    assert "<|start|> 200006" in values["special tokens"] and "<|call|> 200012" in values["special tokens"]
    assert values["device"]  # the CPU execution layer here, the GPU on a Mac
    assert values["KV cache per token"].startswith("512 B fp16")  # checked against the header in test_info_json


def test_info_json(tiny_model_bin: Path) -> None:
    from gpt_oss_metal import Model

    result = run("info", "--json", str(tiny_model_bin))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    model = Model(str(tiny_model_bin))
    h = model.header
    assert info["header"] == h
    assert info["file_size"] == os.path.getsize(tiny_model_bin)
    assert info["max_context_length"] == model.max_context_length
    assert info["vocabulary"]["num_tokens"] == 200014 and info["vocabulary"]["harmony"] == "ok"
    assert info["vocabulary"]["special_tokens"]["<|return|>"] == 200002
    assert info["device"]["kind"] in ("cpu", "metal")
    # Odd blocks keep every token; even blocks (sliding window) keep a fixed ring.
    full_blocks = h["num_blocks"] // 2
    row = h["num_kv_heads"] * h["head_dim"]
    assert info["kv_cache"]["bytes_per_token_fp16"] == 2 * full_blocks * row * 2
    assert info["kv_cache"]["bytes_per_token_fp32"] == 2 * full_blocks * row * 4
    ring = 2 * (h["num_blocks"] - full_blocks) * (h["attention_window"] + 128) * row * 2
    assert info["kv_cache"]["sliding_ring_bytes_fp16"] == ring
    assert info["kv_cache"]["total_bytes_fp16_at_8192"] == 8192 * 2 * full_blocks * row * 2 + ring


def test_kv_cache_bytes_of_gpt_oss_20b() -> None:
    header_20b = {"num_blocks": 24, "num_kv_heads": 8, "head_dim": 64, "attention_window": 128}
    kv = cli.kv_cache_bytes(header_20b, 131072)
    assert kv["per_token"] == 24 * 1024  # 12 full-attention blocks x K,V x 8 heads x 64 x fp16
    assert kv["fixed"] == 12 * 2 * 256 * 8 * 64 * 2  # rings of 128 + 128 slots
    # Without sliding windows and with fp32 rows this is the original runtime's 96 KiB per token.
    assert cli.kv_cache_bytes({**header_20b, "attention_window": 0}, 131072, fp32=True)["per_token"] == 96 * 1024
    # A ring never exceeds the context.
    assert cli.kv_cache_bytes(header_20b, 100)["fixed"] == 12 * 2 * 100 * 8 * 64 * 2


def test_info_errors_are_one_clean_line(tmp_path: Path, tiny_model_bin: Path) -> None:
    assert_clean_error(run("info", str(tmp_path / "missing.bin")), "missing.bin", "No such file")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"not a model" * 100)
    assert_clean_error(run("info", str(garbage)), "garbage.bin", "magic")
    truncated = tmp_path / "truncated.bin"
    with open(tiny_model_bin, "rb") as f:
        truncated.write_bytes(f.read(1 << 20))
    assert_clean_error(run("info", str(truncated)), "truncated.bin")
    assert_clean_error(run("info", str(tmp_path)), str(tmp_path))  # a directory


def test_python_dash_m_package_and_version() -> None:
    result = run("--version", module="gpt_oss_metal")
    assert result.returncode == 0 and result.stdout.strip() == "gpt-oss-metal 0.1.0"
    assert run(module="gpt_oss_metal").returncode == 2  # no subcommand: usage error


# --------------------------------------------------------------------------------------------
# convert
# --------------------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def test_convert(tiny_checkpoints: dict[str, Path], tiny_model_bin: Path, tmp_path: Path) -> None:
    destination = tmp_path / "out" / "model.bin"
    destination.parent.mkdir()
    result = run("convert", "-s", str(tiny_checkpoints["original"]), "-d", str(destination))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {destination}: ")
    assert "convert original" in result.stderr  # the progress bar
    # The same bytes as the library's conversion of the same checkpoint (the conversion is deterministic).
    assert sha256(destination) == sha256(tiny_model_bin)
    assert run("info", str(destination)).returncode == 0


def test_convert_errors_are_one_clean_line(tiny_checkpoints: dict[str, Path], tmp_path: Path) -> None:
    assert_clean_error(run("convert", "-s", str(tmp_path / "nope"), "-d", str(tmp_path / "m.bin")), "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_error(run("convert", "-s", str(empty), "-d", str(tmp_path / "m.bin")), "config.json")
    missing_dir = tmp_path / "no" / "such" / "m.bin"
    assert_clean_error(
        run("convert", "--no-progress", "-s", str(tiny_checkpoints["original"]), "-d", str(missing_dir)), "No such file"
    )
    assert not (tmp_path / "m.bin").exists()
    assert run("convert", "-s", str(empty)).returncode == 2  # -d missing: usage error


# --------------------------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------------------------


def test_download_without_network_is_a_clean_error(tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    result = run("download", "gpt-oss-20b", "--local-dir", str(tmp_path), "--no-progress")
    assert_clean_error(result, "openai/gpt-oss-20b", "metal/model.bin")
    assert not (tmp_path / "metal" / "model.bin").exists()


def test_download_without_huggingface_hub(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['huggingface_hub'] = None\n"
        "from gpt_oss_metal.cli import main\n"
        f"sys.exit(main(['download', '--local-dir', {str(tmp_path)!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, **NO_NETWORK_ENV})
    assert_clean_error(result, "huggingface_hub", "pip install 'gpt-oss-metal[download]'")


def test_download_rejects_unknown_models() -> None:
    result = run("download", "gpt-oss-7b")
    assert result.returncode == 2 and "invalid choice: 'gpt-oss-7b'" in result.stderr


# --------------------------------------------------------------------------------------------
# generate / chat
# --------------------------------------------------------------------------------------------


def test_generate_and_chat_arguments() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["generate", "m.bin", "-p", "Hello", "-l", "7", "--temperature", "0", "--seed", "3",
                              "--context-length", "512"])
    assert (args.model, args.prompt, args.limit, args.temperature, args.seed, args.context_length) == (
        "m.bin", "Hello", 7, 0.0, 3, 512)
    args = parser.parse_args(["chat", "--reasoning-effort", "high"])
    assert (args.model, args.prompt, args.reasoning_effort, args.context_length) == (None, None, "high", 8192)
    for bad in (["generate", "-l", "0"], ["generate", "--temperature", "-1"], ["generate", "--temperature", "nan"],
                ["chat", "--reasoning-effort", "extreme"], ["generate", "--seed", "-2"]):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(bad)
        assert info.value.code == 2, bad


def test_generate_command(tiny_model_bin: Path) -> None:
    from gpt_oss_metal import Context, Model

    result = run("generate", str(tiny_model_bin), "-p", "Hi", "-l", "2", "--temperature", "0.7", "--seed", "5",
                 "--context-length", "32")
    assert result.returncode == 0, result.stderr
    with Model(tiny_model_bin) as model, Context(model, context_length=32) as ctx:
        ctx.append("Hi")
        want = "".join(p.text for p in ctx.generate(2, temperature=0.7, seed=5))
    assert result.stdout == "Hi" + want + "\n"
    assert "decode: 2 tokens" in result.stderr


def test_chat_command(tiny_model_bin: Path) -> None:
    result = run("chat", str(tiny_model_bin), "-p", "Hi", "-l", "2", "--reasoning-effort", "high")
    assert result.returncode == 0, result.stderr
    assert "decode: 2 tokens" in result.stderr and result.stdout.strip()


@pytest.mark.parametrize("command", ["generate", "chat"])
def test_generate_and_chat_errors_are_clean(command: str, tmp_path: Path, tiny_model_bin: Path) -> None:
    assert_clean_error(run(command, str(tmp_path / "missing.bin"), "-p", "Hi", "-l", "1"), "missing.bin")
    # The prompt does not fit the context.
    assert_clean_error(run(command, str(tiny_model_bin), "-p", "word " * 40, "-l", "1", "--context-length", "8"),
                       "context")


def test_generate_empty_prompt_is_a_clean_error(tiny_model_bin: Path) -> None:
    assert_clean_error(run("generate", str(tiny_model_bin), "-p", "", "-l", "1"), "prompt is empty")
