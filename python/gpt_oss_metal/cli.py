"""The ``gpt-oss-metal`` command (also ``python -m gpt_oss_metal``).

Subcommands::

    gpt-oss-metal info MODEL                       # header, vocabulary, size, device, KV-cache cost
    gpt-oss-metal convert -s CHECKPOINT -d model.bin
    gpt-oss-metal download [gpt-oss-20b|gpt-oss-120b] [--local-dir D]
    gpt-oss-metal generate [MODEL] -p PROMPT [-l LIMIT] [--temperature T] [--seed S] [--context-length N]
    gpt-oss-metal chat [MODEL] [--reasoning-effort low|medium|high] ...

Errors of the runtime (:mod:`gpt_oss_metal.errors`), of the converter and of the operating system
are printed as a single line ``gpt-oss-metal: error: ...`` with exit status 1, never as a
traceback (any other exception, a bug, is one line too, with a hint to set ``GPTOSS_DEBUG=1`` for
the traceback); a wrong command line, including any out-of-range number and a prompt that is not
UTF-8, exits with status 2 (argparse's usage error naming the option), Ctrl-C with 130, SIGTERM or
SIGHUP during ``convert`` with 143 or 129 (the partial file deleted).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Sequence

from . import __version__
from .errors import GptOssError

__all__ = ["main", "build_parser", "model_info", "kv_cache_bytes"]

PROG = "gpt-oss-metal"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
DEFAULT_CONTEXT_LENGTH = 8192
#: Tokens a context processes per command buffer by default; sliding-window rings hold this many
#: slots beyond the window (see Context's max_batch_tokens).
DEFAULT_MAX_BATCH_TOKENS = 128
#: What `generate` continues when no prompt is given.
DEFAULT_PROMPT = "Once upon a time,"


# --------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------


def kv_cache_bytes(header: dict[str, Any], context_length: int, *, fp32: bool = False,
                   max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS) -> dict[str, int]:
    """KV-cache size of a context, as the runtime allocates it.

    Odd blocks attend to everything and keep ``context_length`` K and V rows; even blocks use the
    sliding window and keep a ring of ``attention_window + max_batch_tokens`` rows (at most
    ``context_length``). A row is ``num_kv_heads * head_dim`` values of 2 bytes (fp16) or 4 (fp32).
    Returns ``per_token`` (bytes per context token), ``fixed`` (the rings) and ``total``.
    """
    element = 4 if fp32 else 2
    row = int(header["num_kv_heads"]) * int(header["head_dim"]) * element
    window = int(header["attention_window"])
    num_blocks = int(header["num_blocks"])
    sliding = (num_blocks + 1) // 2 if window else 0  # blocks 0, 2, 4, ...
    full = num_blocks - sliding
    ring_rows = min(window + max_batch_tokens, context_length)
    per_token = 2 * full * row
    fixed = 2 * sliding * ring_rows * row
    return {"per_token": per_token, "fixed": fixed, "total": per_token * context_length + fixed,
            "full_blocks": full, "sliding_blocks": sliding}


def model_info(path: str) -> dict[str, Any]:
    """Everything ``gpt-oss-metal info`` reports, as a JSON-serializable dict."""
    from .model import Model

    os.stat(path)  # a missing file is an OSError naming the path, whatever bytes the name holds
    model = Model(path)
    header = dict(model.header)
    tokenizer = model.tokenizer
    named = {name: token_id for name, token_id in tokenizer.special_tokens.items() if not name.startswith("<|reserved_")}
    try:
        from .harmony import verify_tokenizer

        verify_tokenizer(tokenizer)
        harmony = "ok"
    except GptOssError as error:
        harmony = f"mismatch: {error}"
    layout = model.layout
    file_size = os.path.getsize(path)
    max_context = model.max_context_length
    kv_default = kv_cache_bytes(header, min(DEFAULT_CONTEXT_LENGTH, max_context))
    kv_max = kv_cache_bytes(header, max_context)
    return {
        "path": os.path.abspath(path),
        "file_size": file_size,
        "weights_bytes": file_size - int(layout["weights_offset"]),
        "header": header,
        "max_context_length": max_context,
        "vocabulary": {
            "num_text_tokens": tokenizer.num_text_tokens,
            "num_special_tokens": tokenizer.num_special_tokens,
            "num_tokens": tokenizer.num_tokens,
            "special_tokens": named,
            "harmony": harmony,
        },
        "device": _device_info(),
        "kv_cache": {
            "bytes_per_token_fp16": kv_default["per_token"],
            "bytes_per_token_fp32": kv_cache_bytes(header, max_context, fp32=True)["per_token"],
            "full_attention_blocks": kv_default["full_blocks"],
            "sliding_window_blocks": kv_default["sliding_blocks"],
            "sliding_ring_bytes_fp16": kv_default["fixed"],
            f"total_bytes_fp16_at_{min(DEFAULT_CONTEXT_LENGTH, max_context)}": kv_default["total"],
            f"total_bytes_fp16_at_{max_context}": kv_max["total"],
        },
    }


def _device_info() -> dict[str, Any]:
    from . import _metal

    try:
        info = dict(_metal.Device("any").info)
    except GptOssError as error:
        return {"kind": "none", "name": f"no usable device: {error}"}
    return {
        key: info[key]
        for key in ("kind", "name", "recommended_working_set", "max_buffer_length", "physical_memory", "num_compute_units")
        if key in info
    }


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n:,} B" if unit == "B" else f"{value:.1f} {unit} ({n:,} B)"
        value /= 1024
    raise AssertionError("unreachable")


def _print_info(info: dict[str, Any]) -> None:
    h = info["header"]
    vocab_info = info["vocabulary"]
    kv = info["kv_cache"]
    device = info["device"]
    lines = [
        ("model", info["path"]),
        ("file size", _size(info["file_size"])),
        ("weights", _size(info["weights_bytes"])),
        ("max context length", f"{info['max_context_length']:,} tokens"),
    ]
    lines += [(name, f"{value:.9g}" if isinstance(value, float) else str(value)) for name, value in h.items()]
    lines += [
        ("vocabulary", f"{vocab_info['num_text_tokens']:,} text + {vocab_info['num_special_tokens']} special tokens"),
        ("special tokens", ", ".join(f"{name} {token_id}" for name, token_id in sorted(vocab_info["special_tokens"].items(), key=lambda kv: kv[1]))),
        ("harmony vocabulary", vocab_info["harmony"]),
        ("device", f"{device['name']} ({device['kind']})"),
    ]
    if "recommended_working_set" in device:
        lines.append(("device working set", _size(int(device["recommended_working_set"]))))
    if device.get("max_buffer_length", 2**64 - 1) < 2**64 - 1:
        lines.append(("device max buffer", _size(int(device["max_buffer_length"]))))
    if device.get("physical_memory"):
        lines.append(("physical memory", _size(int(device["physical_memory"]))))
    lines.append(
        (
            "KV cache per token",
            f"{_size(kv['bytes_per_token_fp16'])} fp16 ({kv['full_attention_blocks']} full-attention blocks; "
            f"{kv['sliding_window_blocks']} sliding-window blocks use fixed rings of {_size(kv['sliding_ring_bytes_fp16'])})",
        )
    )
    for key, value in kv.items():
        if key.startswith("total_bytes_fp16_at_"):
            lines.append((f"KV cache at {int(key.rsplit('_', 1)[1]):,} tokens", _size(value)))
    width = max(len(name) for name, _ in lines) + 1
    for name, value in lines:
        print(f"{name + ':':<{width}} {value}")


def _cmd_info(args: argparse.Namespace) -> int:
    info = model_info(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_info(info)
    return 0


# --------------------------------------------------------------------------------------------
# convert / download
# --------------------------------------------------------------------------------------------


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    result = convert_checkpoint(args.source, args.destination, progress=not args.no_progress)
    h = result.header
    shown = os.fsencode(args.destination).decode("utf-8", "backslashreplace")  # any bytes in a file name
    print(
        f"wrote {shown}: {_size(os.path.getsize(args.destination))}, "
        f"{h.num_blocks} blocks, {h.num_experts} experts, embedding {h.embedding_dim}"
    )
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from .download import download_model

    path = download_model(args.name, local_dir=args.local_dir, progress=not args.no_progress, revision=args.revision)
    print(path)
    return 0


# --------------------------------------------------------------------------------------------
# generate / chat (implemented in cli_generate)
# --------------------------------------------------------------------------------------------


def _cmd_generate(args: argparse.Namespace) -> int:
    from .cli_generate import run_generate

    return int(run_generate(args) or 0)


def _cmd_chat(args: argparse.Namespace) -> int:
    from .cli_generate import run_chat

    return int(run_chat(args) or 0)


# ---- argument types: every numeric option is range-checked here, so a bad value is a usage
# error (exit status 2, "argument --seed: ...") and never reaches the runtime as a traceback.

#: Ranges of the options (the runtime's own limits: u64 seeds, the sampler's temperature range,
#: GPTOSS_MAX_CONTEXT_LENGTH).
MAX_SEED = 2**64 - 1
MAX_LIMIT = 2**32 - 1
MAX_CONTEXT_LENGTH = 1 << 24
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-4, 1e4


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _int_in(low: int, high: int, what: str = "") -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _parse_int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {what or f'an integer in [{low}, {high}]'}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _positive_int(text: str) -> int:
    return _int_in(1, MAX_LIMIT, f"a positive integer at most {MAX_LIMIT}")(text)


def _non_negative_int(text: str) -> int:
    return _int_in(0, MAX_SEED, f"an integer in [0, {MAX_SEED}]")(text)


def _seed(text: str) -> int:
    return _int_in(0, MAX_SEED, f"an integer in [0, 2**64 - 1 = {MAX_SEED}]")(text)


def _context_length(text: str) -> int:
    return _int_in(0, MAX_CONTEXT_LENGTH, f"0 (the model's maximum) or a token count in [1, {MAX_CONTEXT_LENGTH}]")(text)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _temperature(text: str) -> float:
    value = _non_negative_float(text)
    if value != 0 and not MIN_TEMPERATURE <= value <= MAX_TEMPERATURE:
        raise argparse.ArgumentTypeError(
            f"must be 0 (greedy) or in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}], got {text}"
        )
    return value


def utf8_text(text: str) -> str:
    """An argv string that must be valid UTF-8 text (a prompt).

    Python decodes argv with surrogateescape, so invalid bytes arrive as lone surrogates, which
    cannot be tokenized or printed. Refuse them, naming the first bad byte and its offset.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raw = os.fsencode(text) if _is_surrogateescape(text) else None
        offset = len(os.fsencode(text[: error.start])) if raw is not None else error.start
        shown = f"byte 0x{raw[offset]:02x}" if raw is not None else f"character {text[error.start]!r}"
        raise argparse.ArgumentTypeError(
            f"not valid UTF-8: {shown} at byte offset {offset} (pass the text in UTF-8)"
        ) from None
    return text


def _is_surrogateescape(text: str) -> bool:
    try:
        os.fsencode(text)
        return True
    except UnicodeError:
        return False


def _add_sampling_arguments(parser: argparse.ArgumentParser, default_limit: int, demo_limit: int) -> None:
    parser.add_argument("model", nargs="?", default=None, metavar="MODEL",
                        help="model.bin to run (default: the small random demo model)")
    parser.add_argument("-l", "--limit", type=_positive_int, default=None,
                        help=f"most tokens to generate (default {default_limit}; {demo_limit} on the demo model)")
    parser.add_argument("--temperature", type=_temperature, default=1.0,
                        help=f"sampling temperature: 0 is greedy, else in [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}] "
                             "(default 1.0)")
    parser.add_argument("--seed", type=_seed, default=0, help="random seed, 0 .. 2**64-1 (default 0)")
    parser.add_argument("--context-length", type=_context_length, default=DEFAULT_CONTEXT_LENGTH,
                        help=f"context size in tokens, 0 for the model's maximum (default {DEFAULT_CONTEXT_LENGTH})")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``gpt-oss-metal`` (subcommands info, convert, download, generate, chat)."""
    parser = argparse.ArgumentParser(prog=PROG, description="Run OpenAI's gpt-oss models with Metal kernels.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = commands.add_parser("info", help="describe a model.bin", description="Describe a model.bin.")
    info.add_argument("model", metavar="MODEL", help="path of a model.bin")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(run=_cmd_info)

    convert = commands.add_parser("convert", help="convert a safetensors checkpoint into a model.bin",
                                  description="Convert a gpt-oss checkpoint (original or Hugging Face layout) into model.bin.")
    convert.add_argument("-s", "--source", required=True, metavar="CHECKPOINT", help="checkpoint directory")
    convert.add_argument("-d", "--destination", required=True, metavar="MODEL_BIN", help="model.bin to write")
    convert.add_argument("--no-progress", action="store_true", help="no progress bar")
    convert.set_defaults(run=_cmd_convert)

    from .download import MODELS  # light module: no huggingface_hub import until a download runs

    download = commands.add_parser("download", help="download metal/model.bin from the Hugging Face Hub",
                                   description="Download metal/model.bin of gpt-oss-20b or gpt-oss-120b (needs huggingface_hub).")
    download.add_argument("name", nargs="?", default="gpt-oss-20b", choices=list(MODELS), help="model (default gpt-oss-20b)")
    download.add_argument("--local-dir", default=None, metavar="DIR",
                          help="download directory (default ~/.cache/gpt-oss-metal/models/NAME)")
    download.add_argument("--revision", default=None, help="repository revision (branch, tag or commit)")
    download.add_argument("--no-progress", action="store_true", help="no progress bar")
    download.set_defaults(run=_cmd_download)

    generate = commands.add_parser("generate", help="continue a text prompt", description="Continue a plain-text prompt.")
    _add_sampling_arguments(generate, default_limit=100, demo_limit=16)
    generate.add_argument("-p", "--prompt", type=utf8_text, default=DEFAULT_PROMPT, help=f"text to continue (default {DEFAULT_PROMPT!r})")
    generate.set_defaults(run=_cmd_generate)

    chat = commands.add_parser("chat", help="chat in the harmony format", description="Chat with a model in the harmony format.")
    _add_sampling_arguments(chat, default_limit=1024, demo_limit=24)
    chat.add_argument("-p", "--prompt", type=utf8_text, default=None, help="one user message to answer (default: interactive)")
    chat.add_argument("--reasoning-effort", choices=["low", "medium", "high"], default="medium",
                      help="reasoning effort stated in the system message (default medium)")
    chat.set_defaults(run=_cmd_chat)
    return parser


#: Exceptions that are the user's problem (bad file, bad input, missing dependency, no network),
#: not bugs: shown as one line without a traceback.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (GptOssError, OSError, NotImplementedError, UnicodeError)
DEBUG_ENV = "GPTOSS_DEBUG"


def one_line(error: BaseException) -> str:
    """An exception as one line (its message with whitespace collapsed)."""
    text = str(error) or type(error).__name__
    return " ".join(text.split())


def run_reporting_errors(run: Callable[[], int], prog: str = PROG) -> int:
    """Call ``run`` and turn exceptions into the exit statuses and one-line messages of the CLI.

    * errors of the runtime and the converter (:mod:`gpt_oss_metal.errors`), OSError and
      UnicodeError: ``PROG: error: MESSAGE`` on standard error, exit status 1;
    * any other exception (a bug): the same line, prefixed "internal error" with the exception's
      type, plus a hint to set ``GPTOSS_DEBUG=1``, which re-raises every exception so that Python
      prints the traceback;
    * Ctrl-C: ``PROG: interrupted``, status 130; a closed output pipe (``| head``): status 141,
      silently, as for a process killed by SIGPIPE.
    """
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return run()
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        if debug:
            raise
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KNOWN_ERRORS as error:
        if debug:
            raise
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as error:  # noqa: BLE001 - the last resort: one line, not a traceback
        if debug:
            raise
        print(f"{prog}: error: internal error: {type(error).__name__}: {one_line(error)} "
              f"(run with {DEBUG_ENV}=1 for a traceback)", file=sys.stderr)
        return EXIT_ERROR


def _silence_stdout() -> None:
    """After EPIPE on stdout: point it at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gpt-oss-metal``; returns the exit status."""
    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: args.run(args))


if __name__ == "__main__":
    sys.exit(main())
