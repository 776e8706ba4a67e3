#!/usr/bin/env python3
"""Load a model.bin, print what it contains, and tokenize a prompt with the model's own tokenizer.

    python examples/inspect_model.py [MODEL] [-p PROMPT]

Without MODEL, a small random gpt-oss model is created once in the user cache directory: it has the
real o200k vocabulary and head shapes but random weights, so it is only good for trying things out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import gpt_oss_metal
from gpt_oss_metal.cli import run_reporting_errors, utf8_text
from gpt_oss_metal.testing.demo import default_demo_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="path to a model.bin (default: a small random demo model)")
    parser.add_argument("-p", "--prompt", type=utf8_text, default="Hello from gpt-oss-metal! Über-fast 🚀 on Apple GPUs: 12345.")
    args = parser.parse_args(argv)

    path = args.model
    if path is None:
        path = default_demo_model()
        print(f"No model given: using a small RANDOM model at {path} (its outputs are meaningless).")

    start = time.perf_counter()
    try:
        model = gpt_oss_metal.Model(path)
    except gpt_oss_metal.GptOssError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    load_seconds = time.perf_counter() - start

    print(f"model: {os.path.abspath(path)} ({os.path.getsize(path) / 2**30:.2f} GiB, loaded in {load_seconds * 1e3:.0f} ms)")
    for key, value in model.config.items():
        print(f"  {key:>20}: {value}")
    tokenizer = model.tokenizer
    print(f"vocabulary: {tokenizer.num_text_tokens} text + {tokenizer.num_special_tokens} special tokens")

    tokens = tokenizer.encode(args.prompt)
    print(f"prompt: {args.prompt!r} -> {len(tokens)} tokens")
    for token in tokens:
        print(f"  {token:>6} {tokenizer.decode(token)!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, prog="inspect_model.py"))
