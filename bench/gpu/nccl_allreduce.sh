#!/usr/bin/env bash
# Build and time the NCCL path of dist/ on the GPUs of one machine (one rank per GPU).
#
#   bench/gpu/nccl_allreduce.sh [build-dir]        (from the repository root; output also in $OUT if set)
#
# 1. configures a CUDA build (sm_90 for H100/H200) and builds test_dist_nccl + bench_dist_allreduce;
# 2. correctness: test_dist_nccl at np=1 (QALIGN_NCCL_FORCE_COLLECTIVES=1 runs the deterministic path
#    through self send/recv, the cuBLAS tree and the all-gather) and at np=<GPUs> when there are several;
# 3. timing: bench_dist_allreduce --nccl (device buffers, F32 and BF16, deterministic vs fast) at the same
#    world sizes, and the host (MPI) path at np=1 and np=2 on the same machine for comparison;
# 4. the share of a step: the LoRA q,v r=8 training step of Mistral-7B (bench_gpu_train, 16 x 512 tokens,
#    random BF16 weights) against the all-reduce of its gradient (f32, deterministic) measured in 3.
# Needs: CUDA toolkit with NCCL, Open MPI (mpicc, mpirun), cmake >= 3.20, nvidia-smi.
set -euo pipefail
B=${1:-build-gpu}
OUTDIR=${OUT:-$B/bench-out}
mkdir -p "$OUTDIR"
log() { echo "== $*" | tee -a "$OUTDIR/summary.txt"; }
for t in cmake mpicc mpirun nvidia-smi; do
  command -v $t >/dev/null || { echo "nccl_allreduce.sh: '$t' not found: install it (Debian: cmake, openmpi-bin, libopenmpi-dev; the CUDA toolkit and driver)" >&2; exit 2; }
done
# as root in a container (docs/distributed.md "Launch")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
NGPU=$(nvidia-smi -L | grep -c '^GPU' || true)
log "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1); GPUs: $NGPU"

cmake -S . -B "$B" -DQALIGN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release >"$OUTDIR/configure.log" 2>&1 \
  || { tail -30 "$OUTDIR/configure.log"; exit 1; }
cmake --build "$B" -j"$(nproc)" --target test_dist_nccl bench_dist_allreduce test_dist bench_gpu_train >"$OUTDIR/build.log" 2>&1 \
  || { tail -30 "$OUTDIR/build.log"; exit 1; }

rc=0
log "correctness np=1 (forced collectives)"
QALIGN_NCCL_FORCE_COLLECTIVES=1 mpirun -np 1 "$B/tests/test_dist_nccl" 2>&1 | tee -a "$OUTDIR/summary.txt" || rc=1
if [ "$NGPU" -gt 1 ]; then
  log "correctness np=$NGPU"
  mpirun -np "$NGPU" "$B/tests/test_dist_nccl" 2>&1 | tee -a "$OUTDIR/summary.txt" || rc=1
fi
log "timing nccl np=1 (forced collectives: self send/recv + tree + all-gather)"
QALIGN_NCCL_FORCE_COLLECTIVES=1 mpirun -np 1 "$B/bench/bench_dist_allreduce" --nccl 2>&1 | tee "$OUTDIR/nccl_np1.txt" \
  | tee -a "$OUTDIR/summary.txt"
if [ "$NGPU" -gt 1 ]; then
  log "timing nccl np=$NGPU"
  mpirun -np "$NGPU" "$B/bench/bench_dist_allreduce" --nccl 2>&1 | tee -a "$OUTDIR/summary.txt"
fi
log "timing host mpi np=2 (same machine, for comparison)"
mpirun -np 2 "$B/bench/bench_dist_allreduce" 2>&1 | tee -a "$OUTDIR/summary.txt"
log "share of a Mistral-7B LoRA q,v r=8 step (16 x 512 tokens) spent in the gradient all-reduce, np=1"
"$B/bench/bench_gpu_train" --device cuda --shape mistral-7b --batch 16 --seq 512 --mode train --steps 5 \
  --json "$OUTDIR/train_step.json" 2>&1 | tee -a "$OUTDIR/summary.txt" || rc=1
if [ -s "$OUTDIR/train_step.json" ]; then
  step_ms=$(sed -n 's/.*"step_ms": \([0-9.]*\).*/\1/p' "$OUTDIR/train_step.json" | head -1)
  ar_us=$(awk '$1 == "Mistral-7B" && $2 == 8 && $3 == "q,v" && $4 == "f32" { print $8 }' "$OUTDIR/nccl_np1.txt" | head -1)
  if [ -n "$step_ms" ] && [ -n "$ar_us" ]; then
    awk -v s="$step_ms" -v a="$ar_us" 'BEGIN { printf "step %.1f ms, all-reduce (f32, deterministic) %.3f ms: %.2f %% of the step\n", s, a / 1000, 100 * a / 1000 / (s + a / 1000) }' \
      | tee -a "$OUTDIR/summary.txt"
  fi
fi
exit $rc
