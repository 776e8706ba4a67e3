#!/usr/bin/env bash
# Check the Mac build (Objective-C Metal layer, C core, embedded kernels, CPU layer) against a macOS SDK,
# on any host. On a Mac without GPTOSS_MACOS_SDK, the SDK xcrun reports is used.
#   bash scripts/check-macos-sdk.sh [--update-manifest | --check-manifest | --steps a,b ...]
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${GPTOSS_MACOS_SDK:-}" && "$(uname -s)" == "Darwin" ]] && command -v xcrun >/dev/null; then
  GPTOSS_MACOS_SDK="$(xcrun --sdk macosx --show-sdk-path)"
  export GPTOSS_MACOS_SDK
fi
exec "${PYTHON:-python3}" metal/tools/check_macos_sdk.py "$@"
