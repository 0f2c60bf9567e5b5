#!/usr/bin/env bash
# run.sh — build, seed and run the libFuzzer targets of fuzz/ (docs/fuzzing.md).
#   run.sh build BUILD_DIR                        configure fuzz/ with clang and build every target
#   run.sh seeds BUILD_DIR OUT ASSETS FIXTURES_HF CONFIGS   generate the seed corpora from the real files
#   run.sh replay BUILD_DIR TARGET SEEDS_DIR...  run TARGET once on every input of the directories (no
#                                                 mutation: what the regular CI does, seconds per target)
#   run.sh run BUILD_DIR TARGET SECONDS SEEDS_DIR [WORK_DIR] fuzz TARGET for SECONDS: new inputs go to
#                                                 WORK_DIR/corpus, a crash to WORK_DIR/crash-* (exit 1)
# Exit 77 (skipped) when clang with libFuzzer is not installed, or the build was skipped.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cmd=${1:-}; shift || true
CC=${QA_FUZZ_CC:-$(command -v clang || command -v clang-14 || true)}

case "$cmd" in
build)
  B=$1
  if [ -z "$CC" ]; then echo "fuzz: clang not found (apt-get install clang): skipped"; exit 77; fi
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$tmp/t.c"
  if ! "$CC" -fsanitize=fuzzer,address,undefined "$tmp/t.c" -o "$tmp/t" >/dev/null 2>&1; then
    echo "fuzz: $CC cannot link libFuzzer with ASan/UBSan (libclang-rt / compiler-rt missing): skipped"; exit 77
  fi
  cmake -S "$here" -B "$B" -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE= >"$B.configure.log" 2>&1 \
    || { cat "$B.configure.log"; exit 1; }
  cmake --build "$B" -j"$(nproc 2>/dev/null || echo 2)" >"$B.build.log" 2>&1 || { tail -50 "$B.build.log"; exit 1; }
  echo "fuzz: built $(ls "$B"/fuzz_* | grep -vc seeds) targets in $B"
  ;;
seeds)
  B=$1 OUT=$2
  [ -x "$B/fuzz_seeds" ] || { echo "fuzz: not built: skipped"; exit 77; }
  rm -rf "$OUT"; mkdir -p "$OUT"
  "$B/fuzz_seeds" "$OUT" "$3" "$4" "$5"
  ;;
replay)
  B=$1 T=$2; shift 2
  [ -x "$B/fuzz_$T" ] || { echo "fuzz: fuzz_$T not built: skipped"; exit 77; }
  dirs=(); for d in "$@"; do [ -d "$d" ] && dirs+=("$d"); done
  [ ${#dirs[@]} -gt 0 ] || { echo "fuzz: no inputs in $*: skipped"; exit 77; }
  W=$B/replay_$T; rm -rf "$W"; mkdir -p "$W"
  export QA_FUZZ_EXTERNAL="$W/external.bin"; head -c 64 /dev/zero >"$QA_FUZZ_EXTERNAL"
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} UBSAN_OPTIONS=print_stacktrace=1
  n=$(find "${dirs[@]}" -type f | wc -l)
  # -runs=0: every input of the directories is executed once (libFuzzer's INIT), nothing is mutated
  "$B/fuzz_$T" -runs=0 -timeout=20 -rss_limit_mb=2560 -artifact_prefix="$W/" "${dirs[@]}" >"$W/log" 2>&1
  rc=$?
  if [ $rc -ne 0 ] || ls "$W"/crash-* "$W"/leak-* "$W"/timeout-* "$W"/oom-* >/dev/null 2>&1; then
    echo "fuzz_$T FAILED on a replayed input (exit $rc):"; grep -A40 -E "ERROR|runtime error|deadly signal|exited" "$W/log" | head -60
    ls "$W"/crash-* "$W"/leak-* "$W"/timeout-* "$W"/oom-* 2>/dev/null
    exit 1
  fi
  echo "fuzz_$T: $n inputs replayed, no crash, leak or sanitizer report"
  ;;
run)
  B=$1 T=$2 S=$3 SEEDS=$4 W=${5:-$1/work_$2}
  [ -x "$B/fuzz_$T" ] || { echo "fuzz: fuzz_$T not built: skipped"; exit 77; }
  [ -d "$SEEDS" ] || { echo "fuzz: no seeds in $SEEDS: skipped"; exit 77; }
  regress=(); [ -d "$here/regress/$T" ] && regress=("$here/regress/$T")   # inputs that once failed
  mkdir -p "$W/corpus"; rm -f "$W"/crash-* "$W"/leak-* "$W"/timeout-* "$W"/oom-*
  # external storage in a fuzzed HDF5 file points at a regular file of our own (never a FIFO or a device)
  export QA_FUZZ_EXTERNAL="$W/external.bin"; head -c 64 /dev/zero >"$QA_FUZZ_EXTERNAL"
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} UBSAN_OPTIONS=print_stacktrace=1
  "$B/fuzz_$T" -max_total_time="$S" -timeout=20 -rss_limit_mb=2560 -print_final_stats=1 \
     -artifact_prefix="$W/" "$W/corpus" "$SEEDS" "${regress[@]}" >"$W/log" 2>&1
  rc=$?
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|#[0-9]+.*DONE" "$W/log" | tail -4
  echo "corpus: $(ls "$W/corpus" | wc -l) files ($(du -sh "$W/corpus" | cut -f1))"
  if [ $rc -ne 0 ] || ls "$W"/crash-* "$W"/leak-* "$W"/timeout-* "$W"/oom-* >/dev/null 2>&1; then
    echo "fuzz_$T FAILED (exit $rc):"; grep -A40 -E "ERROR|runtime error|deadly signal|exited" "$W/log" | head -60
    ls "$W"/crash-* "$W"/leak-* "$W"/timeout-* "$W"/oom-* 2>/dev/null
    exit 1
  fi
  ;;
*)
  sed -n 2,11p "${BASH_SOURCE[0]}"; exit 2 ;;
esac
