#!/usr/bin/env python3
"""Convert a gpt-oss checkpoint directory (original or Hugging Face layout) into a model.bin.

    scripts/create-local-model.py -s gpt-oss-20b/original -d gpt-oss-20b/metal/model.bin
"""

from __future__ import annotations

import argparse
import os
import sys

from gpt_oss_metal.cli import run_reporting_errors
from gpt_oss_metal.convert import convert_checkpoint

PROG = "create-local-model.py"


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 on success; 1 with one line ``create-local-model.py: error: ...`` on stderr for
    an unusable checkpoint, destination or I/O failure (no traceback; GPTOSS_DEBUG=1 shows one);
    2 for a wrong command line; 130 for Ctrl-C, 143/129 for SIGTERM/SIGHUP (no partial file left)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("-s", "--src", required=True, metavar="CHECKPOINT_DIR",
                        help="directory with config.json and *.safetensors")
    parser.add_argument("-d", "--dst", required=True, metavar="MODEL_BIN", help="model.bin file to write")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    args = parser.parse_args(argv)

    def run() -> int:
        model = convert_checkpoint(args.src, args.dst, progress=not args.no_progress)
        h = model.header
        shown = os.fsencode(args.dst).decode("utf-8", "backslashreplace")
        print(f"wrote {shown}: {h.num_blocks} blocks, {h.num_experts} experts, embedding {h.embedding_dim}, "
              f"{model.layout.file_size} bytes")
        return 0

    return run_reporting_errors(run, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
