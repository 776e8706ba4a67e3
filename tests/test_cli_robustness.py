"""The gpt-oss-metal command never shows a traceback: bad options are usage errors (status 2)
naming the option and its range, runtime and OS errors one line (status 1), bugs one line with a
GPTOSS_DEBUG hint. Run in subprocesses, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpt_oss_metal import cli


def run(*args: str | bytes, env: dict[str, str] | None = None, module: str = "gpt_oss_metal") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, timeout=300,
                          env={**os.environ, **(env or {})})


def usage_error(result: subprocess.CompletedProcess[bytes], *fragments: str) -> None:
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert ": error: argument " in last, last
    for fragment in fragments:
        assert fragment in last, last


BAD_OPTIONS = [
    (["--seed", "18446744073709551616"], "argument --seed", "[0, 2**64 - 1 = 18446744073709551615]"),
    (["--seed", "-1"], "argument --seed", "got -1"),
    (["--seed", "1e3"], "argument --seed", "expected an integer, got '1e3'"),
    (["-l", "0"], "argument -l/--limit", "positive integer"),
    (["-l", "-5"], "argument -l/--limit", "got -5"),
    (["-l", str(10**30)], "argument -l/--limit", "at most 4294967295"),
    (["-l", "many"], "argument -l/--limit", "expected an integer"),
    (["--temperature", "-0.5"], "argument --temperature", "must be >= 0"),
    (["--temperature", "nan"], "argument --temperature", "got nan"),
    (["--temperature", "inf"], "argument --temperature", "[0.0001, 10000]"),
    (["--temperature", "1e300"], "argument --temperature", "[0.0001, 10000]"),
    (["--temperature", "1e-9"], "argument --temperature", "[0.0001, 10000]"),
    (["--temperature", "hot"], "argument --temperature", "expected a number"),
    (["--context-length", "-1"], "argument --context-length", "got -1"),
    (["--context-length", str(2**40)], "argument --context-length", "[1, 16777216]"),
]


@pytest.mark.parametrize("command", ["generate", "chat"])
@pytest.mark.parametrize("options, option, message", BAD_OPTIONS, ids=[" ".join(o) for o, _, _ in BAD_OPTIONS])
def test_out_of_range_options_are_usage_errors(command, options, option, message):
    usage_error(run(command, "missing.bin", *options), option, message)


@pytest.mark.parametrize("command", ["generate", "chat"])
def test_prompt_that_is_not_utf8_is_refused(command):
    usage_error(run(command, "-p", b"caf\xe9 au lait", "-l", "1"), "argument -p/--prompt", "not valid UTF-8",
                "byte 0xe9 at byte offset 3")
    usage_error(run(command, "-p", "\u00fc".encode() + b"\xff", "-l", "1"), "byte 0xff at byte offset 2")


def test_utf8_text_type():
    assert cli.utf8_text("Grüße 🚀") == "Grüße 🚀"
    with pytest.raises(Exception, match="byte offset 1"):
        cli.utf8_text(os.fsdecode(b"a\xc3"))


def test_valid_edge_values_parse():
    parser = cli.build_parser()
    args = parser.parse_args(["generate", "--seed", str(2**64 - 1), "--temperature", "0", "--context-length", "0",
                              "-l", str(2**32 - 1)])
    assert (args.seed, args.temperature, args.context_length, args.limit) == (2**64 - 1, 0.0, 0, 2**32 - 1)
    assert parser.parse_args(["chat", "--temperature", "1e4", "--context-length", str(1 << 24)]).temperature == 1e4


def test_largest_seed_runs(tiny_model_bin: Path):
    result = run("generate", str(tiny_model_bin), "-p", "Hi", "-l", "1", "--seed", str(2**64 - 1),
                 "--context-length", "16")
    assert result.returncode == 0, result.stderr.decode()


def test_non_utf8_model_path_is_one_line():
    result = run("info", os.fsencode("/nonexistent/") + b"\xff.bin")
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 1 and "Traceback" not in stderr
    assert stderr.startswith("gpt-oss-metal: error: [Errno 2] No such file or directory: '/nonexistent/"), stderr
    assert len(stderr.strip().splitlines()) == 1


def test_unexpected_exception_is_one_line_with_a_debug_hint(tmp_path: Path):
    code = (
        "import sys, gpt_oss_metal.cli as cli\n"
        "def boom(args): raise ZeroDivisionError('a bug')\n"
        "cli._cmd_info = boom\n"
        "sys.exit(cli.main(['info', 'x.bin']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    # build_parser binds _cmd_info at parse time, so the patched function runs.
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == ("gpt-oss-metal: error: internal error: ZeroDivisionError: a bug "
                                     "(run with GPTOSS_DEBUG=1 for a traceback)")
    debug = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "GPTOSS_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ZeroDivisionError: a bug" in debug.stderr


def test_closed_output_pipe_is_quiet(tiny_model_bin: Path):
    """Like `gpt-oss-metal generate ... | head -c 0`: the reader is gone before anything is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "gpt_oss_metal", "generate", str(tiny_model_bin), "-p", "Hi",
                                 "-l", "2", "--context-length", "16"], stdout=write_end, stderr=subprocess.PIPE,
                                timeout=300)
    finally:
        os.close(write_end)
    stderr = result.stderr.decode()
    assert result.returncode == cli.EXIT_BROKEN_PIPE, stderr
    assert stderr == ""


def test_convert_errors_through_the_console_entry_points(tmp_path: Path):
    """Both converter front ends print one line: the CLI and scripts/create-local-model.py."""
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "config.json").write_text('{"num_hidden_layers": 2.7}')
    (tmp_path / "ck" / "x.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    result = run("convert", "-s", str(tmp_path / "ck"), "-d", "/dev/null")
    stderr = result.stderr.decode()
    assert result.returncode == 1 and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert stderr.startswith("gpt-oss-metal: error: ")
    script = Path(__file__).parents[1] / "scripts" / "create-local-model.py"
    done = subprocess.run([sys.executable, str(script), "-s", str(tmp_path / "nope"), "-d", str(tmp_path / "m.bin")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.startswith("create-local-model.py: error: ") and "nope" in done.stderr


def test_interactive_chat_skips_a_line_that_is_not_utf8(tiny_model_bin: Path):
    result = subprocess.run([sys.executable, "-m", "gpt_oss_metal", "chat", str(tiny_model_bin), "-l", "1",
                             "--context-length", "512"], input=b"caf\xe9\n/quit\n", capture_output=True, timeout=300)
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert "[ignored: the message is not valid UTF-8 (byte 0xe9 at byte offset 3)]" in stderr
    assert "Traceback" not in stderr
