#!/usr/bin/env python3
"""Continue a prompt with a gpt-oss model, streaming the text, then print prefill and decode speeds.

    python examples/generate.py [MODEL] [-p PROMPT] [-l LIMIT] [--temperature T] [--seed S] [--context-length N]

Without MODEL it runs the small random demo model (created once in ~/.cache/gpt-oss-metal): its
output is random tokens, not language. The same as `gpt-oss-metal generate`; the code is
gpt_oss_metal.cli_generate (generate_text shows the Python API: Context.append, process, generate).
"""

from __future__ import annotations

import sys

from gpt_oss_metal.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
