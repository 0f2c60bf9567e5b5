#!/usr/bin/env bash
# run_all.sh — the one GPU check of the CUDA backend: build, check, time, in one go, inside a fixed budget.
#
#   bash bench/gpu/prepare.sh        (on the development machine: fills .gpu-carry/, see there)
#   bash bench/gpu/run_all.sh        (from the repository root, on a machine with one NVIDIA GPU)
#
#  0. what the machine has: GPU, driver, runtime (Firecracker / gVisor), nvcc, cuBLAS headers and
#     libraries, ldconfig entries, NCCL (the toolkit's or the nvidia-nccl-cu13 wheel's), compute-sanitizer,
#     MPI, Debian packages;
#  1. binaries: the prebuilt ones carried in .gpu-carry/prebuilt.tar.xz when they start here (ldd clean);
#     else a CMake build (system Debian libraries present); else a minimal direct build of kernels/ and
#     model/ against the carried .debs (no qalign, no NCCL test then);
#  2. checks: test_ops_cuda (every op case vs the CPU backend, the NF4 linears included), test_golden on cuda (HF fixtures, bf16
#     tolerance) and on cuda-fp32 (the verification mode, at the CPU's 1e-4), test_dist_nccl at np=1 through
#     the real NCCL communicator, `qalign eval` cpu vs cuda on a random tiny model and the paper's data,
#     `qalign train` cpu vs cuda-fp32 vs cuda (loss curves) and resume on the device (train_check.sh),
#     compute-sanitizer memcheck + racecheck on a training step;
#  3. timing: bench_gpu_train at the anchor shapes (the HF + PEFT numbers of bench/gpu/anchors.json beside
#     them), and the peer (HF transformers + PEFT, peft_peer.py) timed in the same run, with the ratio of the two.
# Every step's timeout is cut to what is left of QALIGN_GPU_BUDGET_S (default 540 s) so the whole run
# ends inside a 600 s device call; a step that no longer fits is recorded as skipped.
# Output (at most 8 files come back from a device run): $OUT/summary.json (rewritten after every step and
# from an EXIT trap, so a killed run still reports), $OUT/run_all.log, $OUT/checks.log, $OUT/bench.log,
# $OUT/results.jsonl. Exit 0 only when every check that ran passed.
# Environment: OUT (default /tmp/qalign-gpu-out); QALIGN_GPU_DRYRUN=1 (build only, run nothing: checks
# the script and the build on a machine without a GPU); QALIGN_GPU_BUILD=carried|cmake|min;
# QALIGN_GPU_SKIP="sanitizer racecheck peer qwen forward eval train nccl evalcheck profile recipe" (steps to leave
# out); QALIGN_CUDA_PROFILE=1 (kernels/cuda) is how the profile steps see where a step's time goes;
# QALIGN_GPU_BUDGET_S; QALIGN_FIXTURES (default .gpu-carry/fixtures/hf).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUTDIR=${OUT:-/tmp/qalign-gpu-out}
WORK=${QALIGN_GPU_WORK:-/tmp/qalign-gpu}
DRY=${QALIGN_GPU_DRYRUN:-0}
SKIP=" ${QALIGN_GPU_SKIP:-} "
BUDGET=${QALIGN_GPU_BUDGET_S:-540}
mkdir -p "$OUTDIR" "$WORK"
LOG=$OUTDIR/run_all.log CHK=$OUTDIR/checks.log BLOG=$OUTDIR/bench.log RES=$OUTDIR/results.jsonl SUM=$OUTDIR/summary.json
: >"$LOG"; : >"$CHK"; : >"$BLOG"; : >"$RES"
T0=$(date +%s)
NPROC=$(nproc 2>/dev/null || echo 4)
rc=0
MODE=none
RUNTIME=unknown
say() { echo "== [$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
skipped() { [[ "$SKIP" == *" $1 "* ]]; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
jstr() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr -d '\n\r\t'; }
record() { echo "$1" >>"$RES"; write_summary; }
write_summary() {
  {
    printf '{"device": "%s", "runtime": "%s", "build": "%s", "rc": %d, "seconds": %d, "budget_s": %d,\n' \
      "$(jstr "${GPU_NAME:-}")" "$RUNTIME" "$MODE" "$rc" "$(( $(date +%s) - T0 ))" "$BUDGET"
    printf ' "results": [\n'
    sed '$!s/$/,/' "$RES"
    printf ']}\n'
  } >"$SUM.tmp" && mv "$SUM.tmp" "$SUM"
}
trap 'write_summary' EXIT
# step timeout: the step's own cap, cut to what is left of the budget (0: no time left)
tmo() { local l; l=$(left); l=$(( l - 5 )); [ "$l" -lt "$1" ] && echo $(( l > 0 ? l : 0 )) || echo "$1"; }

# ---- 0. the machine --------------------------------------------------------------------------------
{
  echo "---- machine"
  uname -srm
  case "$(uname -r)" in *fc*|*firecracker*) RUNTIME=firecracker ;; 4.4.0*) RUNTIME=gvisor ;; esac
  echo "runtime: $RUNTIME (kernel $(uname -r))"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
  NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  [ -x "$NVCC" ] && echo "nvcc: $("$NVCC" --version | tail -1) at $NVCC" || echo "nvcc: not found"
  echo "cuBLAS headers: $(ls /usr/local/cuda/include/cublas_v2.h /usr/include/cublas_v2.h 2>/dev/null | tr '\n' ' ')"
  echo "cuBLAS/cudart libs: $(ls /usr/local/cuda/lib64/libcublas.so* /usr/local/cuda/lib64/libcudart.so* 2>/dev/null | tr '\n' ' ')"
  echo "ldconfig: $(ldconfig -p 2>/dev/null | grep -E 'libcublas|libcudart|libnccl|libmpi\.' | awk '{print $1}' | sort -u | tr '\n' ' ')"
  echo "python3: $(command -v python3) $(python3 --version 2>&1)"
  echo "dpkg: $(dpkg -l 2>/dev/null | grep -c '^ii') packages; -dev: $(dpkg -l 2>/dev/null | awk '/^ii/ && $2 ~ /-dev/ {print $2}' | head -15 | tr '\n' ' ')"
  echo "mpirun: $(command -v mpirun || echo none); cmake: $(command -v cmake || echo none); pkg-config: $(command -v pkg-config || echo none)"
} 2>&1 | tee -a "$LOG"
case "$(uname -r)" in *fc*|*firecracker*) RUNTIME=firecracker ;; 4.4.0*) RUNTIME=gvisor ;; esac
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
CUDA_HOME=$( [ -x "$NVCC" ] && dirname "$(dirname "$(readlink -f "$NVCC")")" || echo /usr/local/cuda)
# NVIDIA's pip wheels (torch's cuBLAS / NCCL): the fallback for libraries the toolkit lacks
WHEELS=$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]) + "/nvidia")' 2>/dev/null || true)
NCCL_LIB=""
for d in "$CUDA_HOME/lib64" "$CUDA_HOME/lib" /usr/lib/x86_64-linux-gnu ${WHEELS:+"$WHEELS"/nccl/lib "$WHEELS"/cu13/lib}; do
  [ -e "$d/libnccl.so.2" ] && { NCCL_LIB=$d; break; }
done
WHEEL_LIBS=""
[ -n "$WHEELS" ] && WHEEL_LIBS=$(ls -d "$WHEELS"/*/lib 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="$CUDA_HOME/lib64:$CUDA_HOME/lib:${NCCL_LIB:+$NCCL_LIB:}${LD_LIBRARY_PATH:-}${WHEEL_LIBS:+:$WHEEL_LIBS}"
SAN=$(command -v compute-sanitizer || ls "$CUDA_HOME"/bin/compute-sanitizer "$CUDA_HOME"/compute-sanitizer/compute-sanitizer \
      /opt/nvidia/*/compute-sanitizer /usr/local/cuda*/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)
say "NCCL library: ${NCCL_LIB:-none found}; wheels: ${WHEELS:-none}; compute-sanitizer: ${SAN:-not found}"
record "{\"machine\": {\"gpu\": \"$(jstr "$GPU_NAME")\", \"runtime\": \"$RUNTIME\", \"kernel\": \"$(uname -r)\", \"nccl\": \"$(jstr "$NCCL_LIB")\", \"sanitizer\": \"$(jstr "${SAN:-}")\", \"cuda_home\": \"$(jstr "$CUDA_HOME")\"}}"

# ---- 1. binaries ---------------------------------------------------------------------------------------
Q="" T_OPS="" T_GOLD="" T_NCCL="" BENCH=""
have_system_deps() {
  command -v pkg-config >/dev/null && command -v mpicc >/dev/null &&
    pkg-config --exists jansson yaml-0.1 libpcre2-8 libutf8proc openblas hdf5-serial plplot 2>/dev/null
}
try_carried() {
  [ -f .gpu-carry/prebuilt.tar.xz ] || return 1
  rm -rf "$WORK/prebuilt" && tar -C "$WORK" -xJf .gpu-carry/prebuilt.tar.xz || return 1
  export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$WORK/prebuilt/lib"
  local b miss=0
  for b in "$WORK"/prebuilt/bin/*; do
    if ldd "$b" | grep -q "not found"; then say "carried $(basename "$b"): $(ldd "$b" | grep 'not found' | tr -s ' \t' ' ' | tr '\n' ';')"; miss=1; fi
  done
  [ $miss = 0 ] && "$WORK/prebuilt/bin/qalign" --help >/dev/null 2>&1 || return 1
  P=$WORK/prebuilt/bin
  Q=$P/qalign T_OPS=$P/test_ops_cuda T_GOLD=$P/test_golden T_NCCL=$P/test_dist_nccl BENCH=$P/bench_gpu_train
  say "build: carried prebuilt binaries ($(cat "$WORK/prebuilt/COMMIT" 2>/dev/null | tr '\n' ' '))"
}
build_cmake() {
  local B=$WORK/build
  say "build: CMake (system libraries found), $B"
  cmake -S "$ROOT" -B "$B" -DQALIGN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release \
    >"$WORK/configure.log" 2>&1 || { tail -30 "$WORK/configure.log" | tee -a "$LOG"; return 1; }
  timeout "$(tmo 240)" cmake --build "$B" -j"$NPROC" --target qalign test_ops_cuda test_golden test_dist_nccl bench_gpu_train \
    >"$WORK/build.log" 2>&1 || { grep -E "error|Error" "$WORK/build.log" | head -30 | tee -a "$LOG"; return 1; }
  Q=$B/qalign T_OPS=$B/tests/test_ops_cuda T_GOLD=$B/tests/test_golden T_NCCL=$B/tests/test_dist_nccl BENCH=$B/bench/bench_gpu_train
}
build_min() {
  # common, kernels (cpu + cuda), model and the io files the model reads: jansson, pcre2 and OpenBLAS only
  local B=$WORK/min DEPS=$WORK/deps INC="" LIBDIRS=""
  if [ -d .gpu-carry/debs ] && ! { [ -f /usr/include/jansson.h ] && [ -f /usr/include/pcre2.h ]; }; then
    mkdir -p "$DEPS"
    for f in .gpu-carry/debs/*.deb; do dpkg -x "$f" "$DEPS" || return 1; done
  fi
  if [ -d "$DEPS/usr" ]; then
    INC="-I$DEPS/usr/include -I$DEPS/usr/include/x86_64-linux-gnu/openblas-pthread"
    LIBDIRS="-L$DEPS/usr/lib/x86_64-linux-gnu -L$DEPS/usr/lib/x86_64-linux-gnu/openblas-pthread"
    export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$DEPS/usr/lib/x86_64-linux-gnu:$DEPS/usr/lib/x86_64-linux-gnu/openblas-pthread"
  else
    INC="-I/usr/include/x86_64-linux-gnu/openblas-pthread"
  fi
  [ -n "$WHEELS" ] && for d in "$WHEELS"/*/include; do INC="$INC -I$d"; done
  say "build: minimal direct build (MODE=min), $B"
  local O=$B/obj; mkdir -p "$O" "$B/generated/common" "$B/tests" "$B/bench"
  sed 's/@PROJECT_VERSION@/gpu-check/' common/qa_version.h.in >"$B/generated/common/qa_version.h"
  local CF="-std=c11 -O3 -g -march=native -fno-trapping-math -fno-math-errno -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 \
            -DQALIGN_HAVE_CUDA=1 -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare -I$ROOT -I$B/generated $INC"
  local f pids=() fail=0
  for f in $(ls common/*.c kernels/*.c kernels/cpu/*.c kernels/emu/*.c model/*.c) io/safetensors.c io/hf_config.c io/hf_json.c io/peft.c io/bnb4.c; do
    gcc $CF -c "$f" -o "$O/$(echo "$f" | tr / _).o" 2>>"$B/build.log" & pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "$NPROC" ]; do sleep 0.1; done
  done
  for f in kernels/cuda/*.cu; do
    "$NVCC" -arch=sm_90 -O3 -lineinfo -I"$ROOT" $INC -Xcompiler -Wall -c "$f" -o "$O/$(basename "$f").o" 2>>"$B/build.log" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || fail=1; done
  [ $fail = 0 ] || { grep -E "error" "$B/build.log" | head -30 | tee -a "$LOG"; return 1; }
  ar rcs "$B/libqa_gpu.a" "$O"/*.o
  local LIBS="$B/libqa_gpu.a $LIBDIRS -L$CUDA_HOME/lib64 -L$CUDA_HOME/lib ${WHEELS:+-L$WHEELS/cublas/lib -L$WHEELS/cuda_runtime/lib} \
              -Wl,-rpath,$CUDA_HOME/lib64 -ljansson -lpcre2-8 -lopenblas -lcublas -lcudart -lstdc++ -lm -lpthread -ldl"
  gcc $CF -DQT_OPS_CUDA=1 -Itests tests/test_ops.c tests/op_cases.c tests/testutil.c -o "$B/tests/test_ops_cuda" $LIBS \
    2>>"$B/build.log" &&
  gcc $CF -Itests tests/test_golden.c tests/testutil.c -o "$B/tests/test_golden" $LIBS 2>>"$B/build.log" &&
  gcc $CF bench/bench_gpu_train.c -o "$B/bench/bench_gpu_train" $LIBS 2>>"$B/build.log" ||
    { grep -E "error|undefined" "$B/build.log" | head -30 | tee -a "$LOG"; return 1; }
  T_OPS=$B/tests/test_ops_cuda T_GOLD=$B/tests/test_golden BENCH=$B/bench/bench_gpu_train
}
MODE=${QALIGN_GPU_BUILD:-}
if [ -z "$MODE" ] || [ "$MODE" = carried ]; then try_carried && MODE=carried || MODE=""; fi
[ -z "$MODE" ] && { have_system_deps && MODE=cmake || MODE=min; }
if [ "$MODE" = cmake ]; then build_cmake || { MODE=min; build_min || { say "build failed"; rc=1; exit 1; }; }
elif [ "$MODE" = min ]; then build_min || { say "build failed"; rc=1; exit 1; }; fi
say "binaries ready ($MODE)"
record "{\"build\": \"$MODE\", \"seconds\": $(( $(date +%s) - T0 ))}"
if [ "$DRY" = 1 ]; then
  for b in "$T_OPS" "$T_GOLD" "$BENCH"; do [ -x "$b" ] || { say "missing $b"; rc=1; exit 1; }; done
  "$BENCH" --help >/dev/null || { rc=1; exit 1; }
  say "dry run: binaries built; nothing run (QALIGN_GPU_DRYRUN=1)"
  exit 0
fi

# ---- 2. checks -----------------------------------------------------------------------------------------
export QALIGN_TEMPLATES=$ROOT/configs/templates
# A world of one rank without mpirun (the image has no MPI launcher): qalign's env bootstrap.
export SLURM_JOB_ID=${SLURM_JOB_ID:-1} SLURM_STEP_ID=${SLURM_STEP_ID:-0} SLURM_PROCID=${SLURM_PROCID:-0} \
  SLURM_LOCALID=${SLURM_LOCALID:-0} SLURM_STEP_NUM_TASKS=${SLURM_STEP_NUM_TASKS:-1} QALIGN_DIST_ENV_BOOTSTRAP=1 \
  QALIGN_NCCL_ID_DIR=$WORK
check() { # name cap command... : runs with the cut timeout, output to checks.log, one record
  local name=$1 cap=$2; shift 2
  local to; to=$(tmo "$cap")
  if [ "$to" -le 0 ]; then say "check $name: skipped (budget)"; record "{\"check\": \"$name\", \"skipped\": \"budget\"}"; return 0; fi
  say "check: $name (timeout ${to}s)"
  local t; t=$(date +%s)
  echo "---- check $name: $*" >>"$CHK"
  timeout "$to" "$@" >"$WORK/$name.out" 2>&1
  local r=$?
  cat "$WORK/$name.out" >>"$CHK"
  tail -3 "$WORK/$name.out" | tee -a "$LOG"
  grep -E "FAIL" "$WORK/$name.out" | head -15 | tee -a "$LOG"
  record "{\"check\": \"$name\", \"rc\": $r, \"seconds\": $(( $(date +%s) - t ))$([ $r = 124 ] && echo ', "timed_out": true')}"
  [ $r = 0 ] || [ $r = 77 ] || rc=1
  return $r
}
FIX=${QALIGN_FIXTURES:-$ROOT/.gpu-carry/fixtures/hf}
check ops 60 "$T_OPS"
if [ -d "$FIX" ]; then
  check golden_bf16 90 env QALIGN_BACKEND=cuda QALIGN_FIXTURES="$FIX" "$T_GOLD"
  grep -E "max relative error" "$WORK/golden_bf16.out" | tee -a "$LOG"
  check golden_fp32 90 env QALIGN_BACKEND=cuda-fp32 QALIGN_FIXTURES="$FIX" "$T_GOLD"
  grep -E "max relative error" "$WORK/golden_fp32.out" | tee -a "$LOG"
else
  say "golden: no fixtures at $FIX (bench/gpu/prepare.sh copies them; carry .gpu-carry)"; rc=1
fi
if [ -n "$T_NCCL" ] && [ -n "$NCCL_LIB" ] && ! skipped nccl; then
  check nccl_np1 60 env QALIGN_NCCL_FORCE_COLLECTIVES=1 "$T_NCCL"
fi
if [ -n "$Q" ] && [ -f .gpu-carry/assets.tar.xz ] && ! skipped evalcheck; then
  tar -C "$WORK" -xJf .gpu-carry/assets.tar.xz
  export QALIGN_DATA=$WORK/assets/paper-data
  M=$WORK/tiny
  "$Q" init-model --arch qwen2 --tokenizer "$WORK/assets/tokenizers/qwen1_5-qwen2.tokenizer.json" --seed 1 --out "$M" >/dev/null 2>&1
  check eval_cpu 60 "$Q" eval --model "$M" --limit 10 --out "$WORK/ev-cpu" --device cpu &&
  check eval_cuda 60 "$Q" eval --model "$M" --limit 10 --out "$WORK/ev-cuda" --device cuda &&
  check eval_compare 20 python3 bench/gpu/compare_eval.py "$WORK/ev-cpu" "$WORK/ev-cuda"
  [ -f "$WORK/eval_compare.out" ] && record "$(tail -1 "$WORK/eval_compare.out")"
fi
if [ -n "$Q" ] && [ -d "$WORK/assets" ] && ! skipped train; then
  check train 150 bash bench/gpu/train_check.sh "$Q" "$WORK/train" "$WORK/assets"
  grep -E '^\{"train_check": "[^r]' "$WORK/train.out" | while read -r l; do record "$l"; done
fi
if [ -n "$SAN" ] && ! skipped sanitizer; then
  check memcheck 90 "$SAN" --tool memcheck --leak-check no --error-exitcode 9 \
    "$BENCH" --shape tiny --batch 2 --seq 96 --steps 1 --warmup 0 --lora-modules all
  grep -E "ERROR SUMMARY|not supported|Device" "$WORK/memcheck.out" | head -3 | tee -a "$LOG"
  if ! skipped racecheck; then
    check racecheck 90 "$SAN" --tool racecheck --error-exitcode 9 \
      "$BENCH" --shape tiny --batch 2 --seq 96 --steps 1 --warmup 0 --lora-modules all
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|not supported" "$WORK/racecheck.out" | head -3 | tee -a "$LOG"
  fi
elif [ -z "$SAN" ]; then
  say "sanitizer: compute-sanitizer not found (PATH, $CUDA_HOME/bin, /opt/nvidia): memcheck/racecheck NOT run"
  record "{\"check\": \"memcheck\", \"skipped\": \"compute-sanitizer not found\"}"
fi

# ---- 3. timing -----------------------------------------------------------------------------------------
bench() { # name cap args...
  local name=$1 cap=$2; shift 2
  local to; to=$(tmo "$cap")
  if [ "$to" -le 0 ]; then say "time $name: skipped (budget)"; record "{\"bench\": \"$name\", \"skipped\": \"budget\"}"; return; fi
  say "time: $name (timeout ${to}s)"
  rm -f "$WORK/$name.json"
  echo "---- bench $name: $*" >>"$BLOG"
  timeout "$to" "$BENCH" --json "$WORK/$name.json" "$@" >"$WORK/$name.out" 2>&1
  local r=$?
  cat "$WORK/$name.out" >>"$BLOG"
  tail -2 "$WORK/$name.out" | tee -a "$LOG"
  if [ $r = 0 ] && [ -s "$WORK/$name.json" ]; then record "$(sed "s/^{/{\"bench\": \"$name\", /" "$WORK/$name.json")"
  else record "{\"bench\": \"$name\", \"rc\": $r}"; rc=1; fi
}
# the HF + PEFT anchor of a workload (bench/gpu/anchors.json: measured on an H200, see its "about"): tokens/s
anchor() {
  python3 - "$ROOT/bench/gpu/anchors.json" "$@" <<'PY' 2>/dev/null || echo 0
import json, sys
runs = json.load(open(sys.argv[1]))["peft_h200"]["runs"]
model, mode, batch = sys.argv[2], sys.argv[3], int(sys.argv[4])
print(round(next(r["tokens_per_s"] for r in runs if r["model"] == model and r["mode"] == mode and r["B"] == batch)))
PY
}
bench train_mistral7b_16x512 75 --shape mistral-7b --batch 16 --seq 512 --steps 4 --warmup 1 --anchor "$(anchor mistral-7b lora_train 16)"
if ! skipped peer; then
  to=$(tmo 100)
  if [ "$to" -gt 30 ]; then
    say "time: peer HF+PEFT (timeout ${to}s)"
    PEER_RUNS="mistral-7b:forward:16x512,mistral-7b:train:16x512,mistral-7b:train:4x512"
    skipped qwen || PEER_RUNS="$PEER_RUNS,qwen1.5-1.8b:train:16x512"
    echo "---- peer: $PEER_RUNS" >>"$BLOG"
    PYTHONUNBUFFERED=1 timeout "$to" python3 bench/gpu/peft_peer.py --runs "$PEER_RUNS" --steps 4 --warmup 2 \
      >"$WORK/peer.out" 2>&1
    cat "$WORK/peer.out" >>"$BLOG"
    grep -E '^\{' "$WORK/peer.out" | while read -r l; do record "$l"; done
    grep -E '^\{' "$WORK/peer.out" | tee -a "$LOG" | cut -c1-200
  fi
fi
bench train_mistral7b_4x512 60 --shape mistral-7b --batch 4 --seq 512 --steps 4 --warmup 1 --anchor "$(anchor mistral-7b lora_train 4)"
if ! skipped profile && [ "$(tmo 40)" -ge 30 ]; then
  say "profile: train mistral-7b 16x512, one step with every launch synchronized (bench.log)"
  echo "---- profile: train mistral-7b 16x512" >>"$BLOG"
  QALIGN_CUDA_PROFILE=1 timeout "$(tmo 40)" "$BENCH" --shape mistral-7b --batch 16 --seq 512 --steps 1 --warmup 1 \
    >>"$BLOG" 2>&1
  echo "---- profile: train mistral-7b 4x160 (a recipe micro-batch)" >>"$BLOG"
  QALIGN_CUDA_PROFILE=1 timeout "$(tmo 40)" "$BENCH" --shape mistral-7b --batch 4 --seq 160 --steps 1 --warmup 1 \
    >>"$BLOG" 2>&1
fi
skipped qwen || bench train_qwen1.8b_16x512 60 --shape qwen1.5-1.8b --batch 16 --seq 512 --steps 4 --warmup 1 --anchor "$(anchor qwen1.5-1.8b lora_train 16)"
skipped forward || bench forward_mistral7b_16x512 60 --shape mistral-7b --mode forward --batch 16 --seq 512 --steps 3 --warmup 1 --anchor "$(anchor mistral-7b forward 16)"
skipped eval || bench eval_mistral7b_32000 75 --shape mistral-7b --mode eval --prefix 350 --suffix 65 --rows 64 \
  --batches 8 --prompts 32000 --groups 60

# the paper's recipe on the real data (configs/paper-mistral7b.yaml: SNLI zh+es, 16 examples per step, 3 epochs)
# with a Mistral-7B-shaped random model written here: a few steps timed, the whole recipe extrapolated from
# the plan's step count (printed as such)
if [ -n "$Q" ] && [ -d "$WORK/assets" ] && ! skipped recipe && [ "$(tmo 150)" -ge 120 ]; then
  to=$(tmo 150)
  say "time: paper recipe, Mistral-7B shape (timeout ${to}s)"
  recipe() {
    "$Q" init-model --arch mistral --tokenizer "$WORK/assets/tokenizers/mistral-7b-v0.1.tokenizer.json" --hidden 4096 \
      --layers 32 --heads 32 --kv-heads 8 --intermediate 14336 --seed 1 --out "$WORK/m7b" --force >/dev/null || return 1
    local A=(--config configs/paper-mistral7b.yaml --set model.path="$WORK/m7b" --set model.device=cuda
             --set "data.files=[$WORK/assets/paper-data/snli/snli_zh10k_train_question.json,$WORK/assets/paper-data/snli/snli_es10k_train_question.json]"
             --set checkpoint.every=0 --set train.eval_every=0)
    "$Q" train "${A[@]}" --set checkpoint.dir="$WORK/recipe" --dry-run >"$WORK/recipe.plan" 2>&1 || return 1
    "$Q" train "${A[@]}" --set checkpoint.dir="$WORK/recipe" --set train.max_steps=12 || return 1
    python3 bench/gpu/extrapolate.py "$WORK/recipe/metrics.jsonl" "$WORK/recipe.plan"
    # padding-free micro-batches (data.padding_free: the same examples and loss, no padding computed)
    if [ "$(tmo 40)" -ge 40 ]; then
      "$Q" train "${A[@]}" --set checkpoint.dir="$WORK/recipe-pf" --set data.padding_free=true \
        --set train.max_steps=12 && python3 bench/gpu/extrapolate.py "$WORK/recipe-pf/metrics.jsonl" "$WORK/recipe.plan" \
        paper_recipe_mistral7b_padding_free
    fi
    # the step's 4 micro-batches as one pass of 16 rows, each micro-batch still its own token mean
    # (train.fuse_micro_batches: the same step, rounding apart), padded and padding-free
    if [ "$(tmo 40)" -ge 40 ]; then
      "$Q" train "${A[@]}" --set checkpoint.dir="$WORK/recipe-fused" --set train.fuse_micro_batches=true \
        --set train.max_steps=12 && python3 bench/gpu/extrapolate.py "$WORK/recipe-fused/metrics.jsonl" \
        "$WORK/recipe.plan" paper_recipe_mistral7b_fused
    fi
    if [ "$(tmo 40)" -ge 40 ]; then
      "$Q" train "${A[@]}" --set checkpoint.dir="$WORK/recipe-fpf" --set train.fuse_micro_batches=true \
        --set data.padding_free=true --set train.max_steps=12 && python3 bench/gpu/extrapolate.py \
        "$WORK/recipe-fpf/metrics.jsonl" "$WORK/recipe.plan" paper_recipe_mistral7b_fused_padding_free
    fi
    # where a recipe step's time goes (every launch synchronized: slower than the timed run)
    if ! skipped profile && [ "$(tmo 40)" -ge 40 ]; then
      QALIGN_CUDA_PROFILE=1 "$Q" train "${A[@]}" --set checkpoint.dir="$WORK/recipe-prof" --set train.max_steps=3 \
        2>"$WORK/recipe-prof.txt" >/dev/null
      echo "---- profile: paper recipe, 3 steps"; cat "$WORK/recipe-prof.txt"
    fi
    return 0
  }
  recipe >"$WORK/recipe.out" 2>&1
  r=$?
  grep -E '^\{"bench"|done:' "$WORK/recipe.out" | tee -a "$LOG" | cut -c1-240
  cat "$WORK/recipe.out" >>"$BLOG"
  if [ $r = 0 ]; then grep '^{"bench"' "$WORK/recipe.out" | while read -r l; do record "$l"; done
  else record "{\"bench\": \"paper_recipe_mistral7b\", \"rc\": $r}"; rc=1; fi
  rm -rf "$WORK/m7b"
fi

# ---- 4. ratios against the peer measured in this run ----------------------------------------------------
python3 - "$RES" <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
key = lambda r: (r.get("shape"), r.get("mode"), r.get("batch"), r.get("seq"))
peer = {key(r): r for r in rows if r.get("peer") and "tokens_per_s" in r}
print(f"{'workload':34s} {'qalign tok/s':>13s} {'HF+PEFT tok/s':>14s} {'ratio':>6s} {'anchor':>8s}")
for r in rows:
    if "tokens_per_s" not in r or r.get("peer") or "shape" not in r:
        continue
    p = peer.get(key(r))
    ratio = f"{r['tokens_per_s'] / p['tokens_per_s']:.2f}" if p else "-"
    print(f"{r['bench']:34s} {r['tokens_per_s']:13.0f} {p['tokens_per_s'] if p else float('nan'):14.0f} {ratio:>6s} "
          f"{r.get('anchor_tokens_per_s', 0):8.0f}")
for r in rows:
    if r.get("bench") == "paper_recipe_mistral7b" and "extrapolated_total_s" in r:
        print(f"paper recipe (Mistral-7B shape, {r['recipe_steps']} steps): {r['tokens_per_s']:.0f} tokens/s, "
              f"{r['extrapolated_total_s']:.0f} s extrapolated (target {r['target_s']} s; HF+PEFT/LLaMA-Factory "
              f"{r['hf_peft_llamafactory_s']} s)")
    if r.get("mode") == "eval" and "extrapolated_total_s" in r:
        print(f"evaluation, {r['prompts']} prompts: {r['extrapolated_total_s']:.1f} s extrapolated (HF batch-16 anchor ~18 min)")
EOF
say "done: rc $rc; $SUM"
exit $rc
