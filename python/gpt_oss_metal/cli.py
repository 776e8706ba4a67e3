"""The ``gpt-oss-metal`` command (also ``python -m gpt_oss_metal``).

Subcommands::

    gpt-oss-metal info MODEL                       # header, vocabulary, size, device, KV-cache cost
    gpt-oss-metal convert -s CHECKPOINT -d model.bin
    gpt-oss-metal download [gpt-oss-20b|gpt-oss-120b] [--local-dir D]
    gpt-oss-metal generate [MODEL] -p PROMPT [-l LIMIT] [--temperature T] [--seed S] [--context-length N]
    gpt-oss-metal chat [MODEL] [--reasoning-effort low|medium|high] ...

Errors of the runtime (:mod:`gpt_oss_metal.errors`) and of the operating system are printed as a
single line ``gpt-oss-metal: error: ...`` with exit status 1, never as a traceback; a wrong
command line exits with status 2 (argparse's usage error), Ctrl-C with 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from . import __version__
from .errors import GptOssError

__all__ = ["main", "build_parser", "model_info", "kv_cache_bytes"]

PROG = "gpt-oss-metal"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
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
    print(
        f"wrote {args.destination}: {_size(os.path.getsize(args.destination))}, "
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


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _add_sampling_arguments(parser: argparse.ArgumentParser, default_limit: int, demo_limit: int) -> None:
    parser.add_argument("model", nargs="?", default=None, metavar="MODEL",
                        help="model.bin to run (default: the small random demo model)")
    parser.add_argument("-l", "--limit", type=_positive_int, default=None,
                        help=f"most tokens to generate (default {default_limit}; {demo_limit} on the demo model)")
    parser.add_argument("--temperature", type=_non_negative_float, default=1.0,
                        help="sampling temperature; 0 is greedy (default 1.0)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default 0)")
    parser.add_argument("--context-length", type=_non_negative_int, default=DEFAULT_CONTEXT_LENGTH,
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
    generate.add_argument("-p", "--prompt", default=DEFAULT_PROMPT, help=f"text to continue (default {DEFAULT_PROMPT!r})")
    generate.set_defaults(run=_cmd_generate)

    chat = commands.add_parser("chat", help="chat in the harmony format", description="Chat with a model in the harmony format.")
    _add_sampling_arguments(chat, default_limit=1024, demo_limit=24)
    chat.add_argument("-p", "--prompt", default=None, help="one user message to answer (default: interactive)")
    chat.add_argument("--reasoning-effort", choices=["low", "medium", "high"], default="medium",
                      help="reasoning effort stated in the system message (default medium)")
    chat.set_defaults(run=_cmd_chat)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gpt-oss-metal``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (GptOssError, OSError, NotImplementedError) as error:
        # One clean line: these are the user's problems (bad file, missing dependency, no network),
        # not bugs, so a traceback would only hide the message.
        message = " ".join((str(error) or type(error).__name__).split())
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
