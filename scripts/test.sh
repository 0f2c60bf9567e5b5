#!/usr/bin/env bash
# test.sh — set up (scripts/setup.sh), build, and run the whole test suite:
#   1. build/       the release build (CPU; the CUDA backend is compile-checked when nvcc exists)
#   2. build-asan/  AddressSanitizer + UBSan build; runs the bad-input and format tests under it
# The hardening suite runs in both; the fuzz targets replay their seed corpora and fuzz/regress/ (label
# fuzz) and then fuzz for QALIGN_FUZZ_SECONDS each (label fuzz-run; default 30, 0 leaves it out; docs/fuzzing.md).
# Extra ctest arguments pass through, e.g.  bash scripts/test.sh -L golden
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
bash scripts/setup.sh
export PATH="$here/.venv/bin:$PATH"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
jobs=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build -DQALIGN_CUDA=${QALIGN_CUDA:-AUTO} -DQALIGN_FUZZ_SECONDS=${QALIGN_FUZZ_SECONDS:-30} >build-configure.log 2>&1 || { cat build-configure.log; exit 1; }
cmake --build build -j"$jobs"
cmake -S . -B build-asan -DQALIGN_ASAN=ON -DQALIGN_CUDA=OFF >build-asan-configure.log 2>&1 || { cat build-asan-configure.log; exit 1; }
cmake --build build-asan -j"$jobs"

status=0
echo "== tests under AddressSanitizer (labels badinput, io, tokenizer-asan) =="
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 ctest --test-dir build-asan --output-on-failure -j"$jobs" -L 'badinput|asan' || status=1
echo "== all tests (fuzz targets: seed replay, then ${QALIGN_FUZZ_SECONDS:-30} s of fuzzing each) =="
ctest --test-dir build --output-on-failure -j"$jobs" "$@" || status=1
exit $status
