#!/usr/bin/env bash
# The main job on a fresh machine: create .venv, install gpt-oss-metal into it, then run the demo on
# MODEL (a model.bin). Without MODEL it runs on a small random model that the package creates itself
# (its output is meaningless, and the demo says so).
#   bash scripts/run.sh [MODEL] [-p PROMPT]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet .
exec .venv/bin/python examples/inspect_model.py "$@"
