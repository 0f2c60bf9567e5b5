#!/usr/bin/env bash
# train.fuse_micro_batches: a rank's micro-batches of a step computed as one forward/backward, each still
# normalized by its own token count, give the step of the separate micro-batches. A Qwen2-shaped random model on
# the paper's SNLI zh+es question data, one example per row (lengths vary), LoRA on every projection, 6 steps of
# 4 micro-batches x 2 rows with validation every 3 steps. Every training loss, validation loss and token count of
# the fused runs (padded, padding-free, and 2 ranks x 2 fused micro-batches under mpirun when QA_MPIRUN is set)
# matches the separate micro-batches (relative 1e-5: the same sums in another order), the adapters agree to 1e-4,
# and a fused run resumed from its step-3 checkpoint ends with the same adapter bytes as the straight one. A
# tampered comparison (a run on other examples) must fail; so must one token mean over the whole step (the
# micro-batch of 8: what fusing must not turn into).
#   usage: train_fused.sh QALIGN ASSETS [PYTHON]  (a Python with numpy and safetensors; exit 77 = skipped without)
set -u
Q=$1 ASSETS=$2 PY=${3:-python3}
. "$(dirname "$0")/train_runs_lib.sh"
tr_begin
tr_setup 5 2 4 3
tr_run sep; r1=$?
tr_run fused --set train.fuse_micro_batches=true; r2=$?
tr_run fusedpf --set train.fuse_micro_batches=true --set data.padding_free=true; r3=$?
tr_run other --set data.shuffle_seed=99; r4=$?
tr_run mb8 --set train.micro_batch=8 --set train.grad_accum=1; r5=$?
check "five runs exit 0" '[ $r1 = 0 ] && [ $r2 = 0 ] && [ $r3 = 0 ] && [ $r4 = 0 ] && [ $r5 = 0 ] || { tail -n 3 "$d"/*.log; false; }'
check "the log says the micro-batches are fused" 'grep -q "fused: one pass" "$d/fused.log"'
"$Q" train --config "$d/c.yaml" --set train.fuse_micro_batches=true --dry-run >"$d/dry.txt" 2>&1
check "the dry run plans 8 rows a pass" 'grep -q "fused micro-batches .* one forward/backward of 8 rows" "$d/dry.txt" &&
  grep -q "memory estimate per rank (micro-batch 8 x" "$d/dry.txt"'
check "fused == separate micro-batches: every loss, validation loss and token count (1e-5)" 'tr_cmp_runs fused sep'
check "fused adapter == separate (1e-4)" 'tr_cmp_adapters fused sep'
check "fused padding-free == separate (1e-5)" 'tr_cmp_runs fusedpf sep'
check "fused padding-free adapter == separate (1e-4)" 'tr_cmp_adapters fusedpf sep'
check "the comparison fails for a run on other examples" '! tr_cmp_runs other sep >/dev/null'
check "one token mean over the step (micro-batch 8) is not the same step" '! tr_cmp_adapters mb8 sep 1e-4 >/dev/null'
if [ -n "${QA_MPIRUN:-}" ]; then
  $QA_MPIRUN 2 "$Q" train --config "$d/c.yaml" --set checkpoint.dir="$d/fused2" --set train.fuse_micro_batches=true \
    >"$d/fused2.log" 2>&1; r6=$?
  check "2 ranks, 2 fused micro-batches each: exit 0" '[ $r6 = 0 ] || { tail -n 5 "$d/fused2.log"; false; }'
  check "2 ranks fused == 1 rank separate (1e-5)" 'tr_cmp_runs fused2 sep'
  check "2 ranks fused adapter == separate (1e-4)" 'tr_cmp_adapters fused2 sep'
else
  echo "note: QA_MPIRUN unset: the 2-rank fused run is not checked"
fi
# resume: the fused run's step-3 checkpoint, continued, gives the straight run's adapter bytes
mkdir -p "$d/resumed/checkpoints"
cp "$d/fused/config.yaml" "$d/resumed/" && cp "$d/fused/checkpoints/step_00000003.h5"* "$d/resumed/checkpoints/" 2>/dev/null
tr_run resumed --set train.fuse_micro_batches=true; r7=$?
check "a fused run resumed from step 3 ends with the same adapter bytes" '[ $r7 = 0 ] && grep -q "resum" "$d/resumed.log" &&
  cmp -s "$d/resumed/adapter/adapter_model.safetensors" "$d/fused/adapter/adapter_model.safetensors" ||
  { tail -n 4 "$d/resumed.log"; ls "$d/fused/checkpoints"; false; }'
exit $fail
