#!/usr/bin/env bash
# Run the test suite on a fresh machine: create .venv, install the package with its test dependencies
# (PyTorch CPU build and Hugging Face transformers, the independent implementation our model is
# compared against), then run pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# Pinned: on the project's machines this is a local CPU-only wheel; an unpinned torch pulls GBs of CUDA.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
# GPTOSS_BUILD_TEST_KERNELS=1: the suite runs the MSL test kernels of tests/msl, which a plain
# `pip install .` leaves out.
GPTOSS_BUILD_TEST_KERNELS=1 .venv/bin/python -m pip install --quiet ".[test]" "transformers>=4.55"
exec .venv/bin/python -m pytest "$@"
