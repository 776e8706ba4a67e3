#!/usr/bin/env bash
# Run the loader, tokenizer, context and converter tests (and the fuzz tests) against a build of the
# extension with AddressSanitizer + UndefinedBehaviorSanitizer (GPTOSS_SANITIZE=address,undefined).
# Fails on any test failure and on any sanitizer report, from pytest or from any subprocess it starts.
#
#   bash scripts/test-sanitizers.sh                 # the default test files below
#   bash scripts/test-sanitizers.sh -k surrogate    # extra arguments go to pytest
#   GPTOSS_SANITIZE_TESTS="tests/test_context.py" bash scripts/test-sanitizers.sh   # other files
#
# The normal .venv (scripts/test.sh) supplies Python and the test dependencies and is left alone: the
# sanitized package is built in build/sanitize-<tag>, installed into build/sanitize/site and put first
# on PYTHONPATH. The ASan runtime is preloaded (a Python executable is not instrumented), leaks are not
# reported (CPython itself leaks at exit), and every report goes to a log file in build/sanitize/logs.
# See docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
sanitizers=${GPTOSS_SANITIZE:-address,undefined}
default_tests=(
  tests/test_model_file_validation.py tests/test_model_loading.py
  tests/test_tokenizer.py tests/test_bpe_c.py tests/test_vocab.py
  tests/test_context.py tests/test_sampling.py tests/test_generate.py
  tests/test_convert.py tests/test_convert_robustness.py
  tests/test_fuzz_loader.py tests/test_fuzz_tokenizer.py
)
read -r -a tests <<< "${GPTOSS_SANITIZE_TESTS:-${default_tests[*]}}"

# 1. The normal environment (as scripts/test.sh makes it), if it is not there yet.
if ! { [ -x .venv/bin/python ] && .venv/bin/python -c "import pytest, hypothesis, pybind11, torch, safetensors" 2>/dev/null; }; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  GPTOSS_BUILD_TEST_KERNELS=1 .venv/bin/python -m pip install --quiet ".[test]" "transformers>=4.55"
fi
# The build backend in .venv, so the sanitized build is not isolated: an isolated build gets new
# pybind11 paths each time and recompiles every binding.
.venv/bin/python -c "import scikit_build_core" 2>/dev/null || .venv/bin/python -m pip install --quiet "scikit-build-core>=0.10"

# 2. The sanitized package, in its own build and install directories.
site="$root/build/sanitize/site"
logs="$root/build/sanitize/logs"
started=$(date +%s)
rm -rf "$site"
# GPTOSS_SANITIZE_KERNELS=OFF (default here): the translated kernels are not instrumented, the runtime
# around them is; instrumented kernels make the forward-pass tests ~10x slower. =ON instruments them too.
GPTOSS_SANITIZE="$sanitizers" GPTOSS_SANITIZE_KERNELS="${GPTOSS_SANITIZE_KERNELS:-OFF}" GPTOSS_BUILD_TEST_KERNELS=1 GPTOSS_BUILD_METAL=0 \
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation --target "$site" \
  --config-settings=build-dir="build/sanitize-{wheel_tag}" --config-settings=cmake.build-type=RelWithDebInfo .
echo "sanitized build ($sanitizers, kernels instrumented: ${GPTOSS_SANITIZE_KERNELS:-OFF}): $(( $(date +%s) - started )) s"
extension=$(ls "$site"/gpt_oss_metal/_metal*.so)

# 3. The sanitizer runtime to preload: the libasan the extension links (GCC), else the compiler's.
preload=""
if [[ "$sanitizers" == *address* ]]; then
  preload=$(ldd "$extension" | awk '/libasan|libclang_rt.asan/ { print $3; exit }')
  if [ -z "$preload" ]; then
    cc=${CC:-cc}
    for name in libasan.so "libclang_rt.asan-$(uname -m).so"; do
      candidate=$("$cc" -print-file-name="$name")
      if [ -f "$candidate" ]; then preload=$candidate; break; fi
    done
  fi
  if [ -z "$preload" ] || [ ! -f "$preload" ]; then
    echo "test-sanitizers: cannot find the ASan runtime to preload for $extension" >&2
    exit 2
  fi
  # The C++ library too: ASan resolves its __cxa_throw interceptor when it starts, before Python
  # dlopens the extension; without libstdc++ loaded by then the first C++ exception aborts with
  # 'CHECK failed: ... real___cxa_throw != 0'.
  cxxlib=$(ldd "$extension" | awk '/libstdc\+\+|libc\+\+\.so/ { print $3; exit }')
  if [ -n "$cxxlib" ]; then preload="$preload $cxxlib"; fi
fi

# 4. Run the tests with the runtime preloaded; every report lands in $logs (one file per process).
rm -rf "$logs"
mkdir -p "$logs"
export LD_PRELOAD="$preload${LD_PRELOAD:+ $LD_PRELOAD}"
# allocator_may_return_null: a failed huge allocation returns NULL as malloc does (the runtime turns it
# into InsufficientMemoryError); detect_stack_use_after_return=0: a lane's fake stack frames cannot be
# released when its fiber ends (metal/source/cpu/fiber.cpp).
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:detect_stack_use_after_return=0:halt_on_error=1:log_path=$logs/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
export GPTOSS_SANITIZED_BUILD="$sanitizers"
status=0
started=$(date +%s)
# Deselected: a test whose subprocess runs under a 2 GiB RLIMIT_AS, in which ASan cannot even reserve
# its shadow memory ("ReserveShadowMemoryRange failed ... ulimit -v").
.venv/bin/python -m pytest -p no:cacheprovider \
  --deselect tests/test_convert_robustness.py::test_huge_layer_count_fails_fast_in_little_memory \
  "${tests[@]}" "$@" || status=$?
echo "tests under $sanitizers: $(( $(date +%s) - started )) s"
unset LD_PRELOAD

reports=$(find "$logs" -type f | sort)
if [ -n "$reports" ]; then
  echo "test-sanitizers: sanitizer reports:" >&2
  for report in $reports; do
    echo "==== $report" >&2
    cat "$report" >&2
  done
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "test-sanitizers: pytest failed (status $status), no sanitizer report" >&2
fi
exit "$status"
