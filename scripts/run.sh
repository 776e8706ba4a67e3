#!/usr/bin/env bash
# The main job on a fresh machine: create .venv, install gpt-oss-metal into it, then generate text
# from PROMPT with MODEL (a model.bin), streaming it and printing prefill and decode tokens/s.
# Without MODEL it runs on a small random model that the package creates itself (its output is
# random tokens, and it says so) with a limit of 16 tokens, so it finishes in seconds on the CPU layer.
#   bash scripts/run.sh [MODEL] [-p PROMPT] [-l LIMIT] [--temperature T] [--seed S] [--context-length N]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet .
exec .venv/bin/python examples/generate.py "$@"
