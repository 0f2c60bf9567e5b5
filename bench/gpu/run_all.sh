#!/usr/bin/env bash
# run_all.sh — the one GPU check of the CUDA backend: build, check, time, in one go (~6-9 min on an H100/H200).
#
#   bench/gpu/run_all.sh            (from the repository root, on a machine with one NVIDIA GPU, sm_90)
#
#  1. build with -DQALIGN_CUDA=ON in /tmp (CMake when the Debian libraries are installed; otherwise a
#     minimal direct build of kernels/ model/ and the few io/ files they need, against the .debs that
#     bench/gpu/prepare.sh put into .gpu-carry/debs on a Debian machine);
#  2. checks: test_ops_cuda (every op vs the CPU backend), test_golden on the GPU (HF fixtures, rel err
#     <= 1e-2), compute-sanitizer memcheck on one training step of a small model;
#  3. timing (bench_gpu_train, random BF16 weights of the real shapes, no files): LoRA q,v r=8 training
#     at the anchor shapes (Mistral-7B 16x512 and 4x512, Qwen1.5-1.8B 16x512) with the HF+PEFT anchor
#     beside it and MFU (4N), the Mistral-7B forward, and the prefix-cached evaluation extrapolated to
#     32,000 prompts;
#  4. $OUT/summary.json (all numbers) and $OUT/run_all.log; a short table at the end of the output.
# Environment: OUT (output folder; default /tmp/qalign-gpu-out), QALIGN_GPU_DRYRUN=1 (build only, run
# nothing: checks the script and the build on a machine without a GPU), QALIGN_GPU_BUILD=cmake|min
# (force a build path), QALIGN_FIXTURES (default .gpu-carry/fixtures/hf, else ../shared/fixtures/hf),
# QALIGN_GPU_SKIP="sanitizer qwen forward eval" (steps to leave out), QALIGN_GPU_FORCE_DEBS=1 (min build
# against the carried .debs even where the system has the headers).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUTDIR=${OUT:-/tmp/qalign-gpu-out}
BUILD=${QALIGN_GPU_BUILDDIR:-/tmp/qalign-build-gpu}
DRY=${QALIGN_GPU_DRYRUN:-0}
SKIP=" ${QALIGN_GPU_SKIP:-} "
mkdir -p "$OUTDIR"
LOG="$OUTDIR/run_all.log"
: >"$LOG"
RES="$BUILD/results.jsonl"
T0=$(date +%s)
say() { echo "== [$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
skipped() { [[ "$SKIP" == *" $1 "* ]]; }
NPROC=$(nproc 2>/dev/null || echo 4)

# ---- 0. machine ---------------------------------------------------------------------------------
if [ "$DRY" != 1 ]; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader | tee -a "$LOG"
fi
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$NVCC" ] || { say "no nvcc (CUDA toolkit) found"; exit 2; }
CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$NVCC")")")
say "nvcc: $("$NVCC" --version | tail -1); CUDA at $CUDA_HOME"
mkdir -p "$BUILD"
: >"$RES"

# ---- 1. build ---------------------------------------------------------------------------------------
have_system_deps() {
  command -v pkg-config >/dev/null && command -v mpicc >/dev/null &&
    pkg-config --exists jansson yaml-0.1 libpcre2-8 libutf8proc openblas hdf5-serial 2>/dev/null
}
MODE=${QALIGN_GPU_BUILD:-}
[ -z "$MODE" ] && { have_system_deps && MODE=cmake || MODE=min; }
BIN=""
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"
if [ "$MODE" = cmake ]; then
  say "build: CMake (system libraries found), $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DQALIGN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release \
    >"$BUILD/configure.log" 2>&1 || { tail -30 "$BUILD/configure.log" | tee -a "$LOG"; exit 1; }
  cmake --build "$BUILD" -j"$NPROC" --target test_ops_cuda test_golden bench_gpu_train >"$BUILD/build.log" 2>&1 ||
    { grep -E "error|Error" "$BUILD/build.log" | head -30 | tee -a "$LOG"; exit 1; }
  T_OPS=$BUILD/tests/test_ops_cuda; T_GOLD=$BUILD/tests/test_golden; BENCH=$BUILD/bench/bench_gpu_train
else
  # minimal direct build: common, kernels (cpu + cuda), model and the io files the model reads
  # (safetensors, config.json, PEFT adapters): needs jansson, pcre2 and OpenBLAS only.
  DEPS=/tmp/qalign-deps
  INC=""; LIBDIRS=""
  if [ -d "$ROOT/.gpu-carry/debs" ] && { [ "${QALIGN_GPU_FORCE_DEBS:-0}" = 1 ] ||
       ! { [ -f /usr/include/jansson.h ] && [ -f /usr/include/pcre2.h ] && [ -f /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h ]; }; }; then
    say "build: unpacking $(ls "$ROOT"/.gpu-carry/debs/*.deb | wc -l) carried .debs into $DEPS"
    mkdir -p "$DEPS"
    for f in "$ROOT"/.gpu-carry/debs/*.deb; do dpkg -x "$f" "$DEPS" || exit 1; done
  fi
  if [ -d "$DEPS/usr" ]; then
    INC="-I$DEPS/usr/include -I$DEPS/usr/include/x86_64-linux-gnu/openblas-pthread"
    LIBDIRS="-L$DEPS/usr/lib/x86_64-linux-gnu -L$DEPS/usr/lib/x86_64-linux-gnu/openblas-pthread"
    export LD_LIBRARY_PATH="$DEPS/usr/lib/x86_64-linux-gnu:$DEPS/usr/lib/x86_64-linux-gnu/openblas-pthread:$LD_LIBRARY_PATH"
  else
    INC="-I/usr/include/x86_64-linux-gnu/openblas-pthread"
  fi
  say "build: minimal direct build (no system Debian libraries: MODE=min), $BUILD"
  O="$BUILD/obj"; mkdir -p "$O" "$BUILD/generated/common"
  sed 's/@PROJECT_VERSION@/gpu-check/' common/qa_version.h.in >"$BUILD/generated/common/qa_version.h"
  CFLAGS="-std=c11 -O3 -g -march=native -fno-trapping-math -fno-math-errno -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 \
          -DQALIGN_HAVE_CUDA=1 -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -I$ROOT -I$BUILD/generated $INC"
  SRCS="$(ls common/*.c kernels/*.c kernels/cpu/*.c model/*.c) io/safetensors.c io/hf_config.c io/hf_json.c io/peft.c"
  pids=()
  for f in $SRCS; do
    o="$O/$(echo "$f" | tr / _).o"
    gcc $CFLAGS -c "$f" -o "$o" 2>>"$BUILD/build.log" & pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "$NPROC" ]; do sleep 0.1; done
  done
  for f in kernels/cuda/*.cu; do
    "$NVCC" -arch=sm_90 -O3 -lineinfo -I"$ROOT" $INC -Xcompiler -Wall -c "$f" -o "$O/$(basename "$f").o" \
      2>>"$BUILD/build.log" & pids+=($!)
  done
  fail=0; for p in "${pids[@]}"; do wait "$p" || fail=1; done
  [ $fail = 0 ] || { grep -E "error" "$BUILD/build.log" | head -30 | tee -a "$LOG"; exit 1; }
  ar rcs "$BUILD/libqa_gpu.a" "$O"/*.o
  LIBS="$BUILD/libqa_gpu.a $LIBDIRS -L$CUDA_HOME/lib64 -L$CUDA_HOME/lib -ljansson -lpcre2-8 -lopenblas \
        -lcublas -lcudart -lstdc++ -lm -lpthread -ldl"
  mkdir -p "$BUILD/tests" "$BUILD/bench"
  gcc $CFLAGS -Itests tests/test_ops_cuda.c tests/testutil.c -o "$BUILD/tests/test_ops_cuda" $LIBS 2>>"$BUILD/build.log" &&
  gcc $CFLAGS -Itests tests/test_golden.c tests/testutil.c -o "$BUILD/tests/test_golden" $LIBS 2>>"$BUILD/build.log" &&
  gcc $CFLAGS bench/bench_gpu_train.c -o "$BUILD/bench/bench_gpu_train" $LIBS 2>>"$BUILD/build.log" ||
    { grep -E "error|undefined" "$BUILD/build.log" | head -30 | tee -a "$LOG"; exit 1; }
  T_OPS=$BUILD/tests/test_ops_cuda; T_GOLD=$BUILD/tests/test_golden; BENCH=$BUILD/bench/bench_gpu_train
fi
say "build done ($MODE)"
if [ "$DRY" = 1 ]; then
  for b in "$T_OPS" "$T_GOLD" "$BENCH"; do [ -x "$b" ] || { say "missing $b"; exit 1; }; done
  "$BENCH" --help >/dev/null || exit 1
  say "dry run: built $T_OPS, $T_GOLD, $BENCH; nothing run (QALIGN_GPU_DRYRUN=1)"
  exit 0
fi

# ---- 2. checks ---------------------------------------------------------------------------------------
rc=0
check() { # name, command...
  local name=$1; shift
  say "check: $name"
  local t=$(date +%s)
  "$@" >"$OUTDIR/$name.log" 2>&1
  local r=$?
  tail -4 "$OUTDIR/$name.log" | tee -a "$LOG"
  grep -E "FAIL" "$OUTDIR/$name.log" | head -20 | tee -a "$LOG"
  echo "{\"check\": \"$name\", \"rc\": $r, \"seconds\": $(( $(date +%s) - t ))}" >>"$RES"
  [ $r = 0 ] || rc=1
}
FIX=${QALIGN_FIXTURES:-}
[ -z "$FIX" ] && { [ -d "$ROOT/.gpu-carry/fixtures/hf" ] && FIX=$ROOT/.gpu-carry/fixtures/hf || FIX=$ROOT/../shared/fixtures/hf; }
check ops timeout 180 "$T_OPS"
if [ -d "$FIX" ]; then
  check golden env QALIGN_BACKEND=cuda QALIGN_FIXTURES="$FIX" timeout 180 "$T_GOLD"
  grep -E "max relative error" "$OUTDIR/golden.log" | tee -a "$LOG"
else
  say "golden: no fixtures at $FIX (run bench/gpu/prepare.sh and carry .gpu-carry)"; rc=1
fi
if ! skipped sanitizer; then
  if command -v compute-sanitizer >/dev/null; then
    check sanitizer timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 9 \
      "$BENCH" --shape tiny --batch 2 --seq 96 --steps 1 --warmup 0 --lora-modules all
    grep -E "ERROR SUMMARY" "$OUTDIR/sanitizer.log" | tee -a "$LOG"
  else
    say "sanitizer: compute-sanitizer not on PATH"
  fi
fi

# ---- 3. timing -----------------------------------------------------------------------------------------
bench() { # name, timeout, args...
  local name=$1 to=$2; shift 2
  say "time: $name"
  timeout "$to" "$BENCH" --json "$BUILD/$name.json" "$@" >"$OUTDIR/$name.log" 2>&1
  local r=$?
  cat "$OUTDIR/$name.log" | tee -a "$LOG" | tail -3
  [ $r = 0 ] && [ -s "$BUILD/$name.json" ] && cat "$BUILD/$name.json" >>"$RES" ||
    { echo "{\"bench\": \"$name\", \"rc\": $r}" >>"$RES"; rc=1; }
}
# anchors: ../shared/anchors/peft-h200.json (HF transformers + PEFT, H200, bf16, LoRA q,v r=8)
bench train_mistral7b_16x512 150 --shape mistral-7b --batch 16 --seq 512 --steps 6 --warmup 2 --anchor 14494
bench train_mistral7b_4x512 120 --shape mistral-7b --batch 4 --seq 512 --steps 6 --warmup 2 --anchor 12472
skipped qwen || bench train_qwen1.8b_16x512 120 --shape qwen1.5-1.8b --batch 16 --seq 512 --steps 6 --warmup 2 --anchor 41710
skipped forward || bench forward_mistral7b_16x512 120 --shape mistral-7b --mode forward --batch 16 --seq 512 --steps 4 --warmup 1 --anchor 32018
skipped eval || bench eval_mistral7b_32000 150 --shape mistral-7b --mode eval --prefix 350 --suffix 65 --rows 64 \
  --batches 12 --prompts 32000 --groups 60

# ---- 4. summary ------------------------------------------------------------------------------------------
{
  echo "{\"device\": \"$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)\", \"build\": \"$MODE\", \"rc\": $rc,"
  echo " \"seconds\": $(( $(date +%s) - T0 )), \"results\": ["
  sed '$!s/$/,/' "$RES"
  echo "]}"
} >"$OUTDIR/summary.json"
say "summary: $OUTDIR/summary.json (rc $rc)"
grep -hE "^(train|forward|eval) |anchor|extrapolated|rel err|ERROR SUMMARY|passed, .* failed" "$OUTDIR"/*.log 2>/dev/null | grep -v "^  ok" | tail -40
exit $rc
