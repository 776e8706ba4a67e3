#!/usr/bin/env python3
"""Interactive chat with a gpt-oss model in the harmony format, with a function-calling demo.

    python examples/chat.py [MODEL] [--reasoning-effort low|medium|high] [-l LIMIT] [--temperature T] [-p MESSAGE]

Type one message per line (/quit or Ctrl-D to leave; Ctrl-C stops an answer). Reasoning is shown
dimmed (or prefixed "[reasoning]"), the answer after "assistant:". The model may call the
get_current_time tool: the chat runs it, adds the result as a tool message and lets the model
continue. Without MODEL it runs the small random demo model: its output is random, not language.
The same as `gpt-oss-metal chat`; the code is gpt_oss_metal.cli_generate (chat_turn).
"""

from __future__ import annotations

import sys

from gpt_oss_metal.cli import main

if __name__ == "__main__":
    sys.exit(main(["chat", *sys.argv[1:]]))
