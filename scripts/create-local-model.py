#!/usr/bin/env python3
"""Convert a gpt-oss checkpoint directory (original or Hugging Face layout) into a model.bin.

    scripts/create-local-model.py -s gpt-oss-20b/original -d gpt-oss-20b/metal/model.bin
"""

from __future__ import annotations

import argparse
import sys

from gpt_oss_metal.convert import ConversionError, convert_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-s", "--src", required=True, metavar="CHECKPOINT_DIR",
                        help="directory with config.json and *.safetensors")
    parser.add_argument("-d", "--dst", required=True, metavar="MODEL_BIN", help="model.bin file to write")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    args = parser.parse_args(argv)
    try:
        model = convert_checkpoint(args.src, args.dst, progress=not args.no_progress)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    h = model.header
    print(f"wrote {args.dst}: {h.num_blocks} blocks, {h.num_experts} experts, embedding {h.embedding_dim}, "
          f"{model.layout.file_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
