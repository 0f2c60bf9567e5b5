#!/usr/bin/env bash
# data.padding_free: the rows of each micro-batch laid end to end in one row compute what the padded rows
# compute. A Qwen2-shaped random model on the paper's SNLI zh+es question data, one example per row
# (lengths vary, so padded micro-batches carry padding), LoRA on every projection, 6 steps of 4 x 2 rows
# with validation: every training and validation loss and the token counts of the padding-free run match
# the padded run (relative 1e-5: the same sums in another order), its dry run says so, and the adapters
# agree to 1e-4. A tampered comparison (padded vs a run on other examples) must fail.
#   usage: train_padding_free.sh QALIGN ASSETS [PYTHON]  (a Python with numpy and safetensors; exit 77 = skipped
#   without one)
set -u
Q=$1 ASSETS=$2 PY=${3:-python3}
. "$(dirname "$0")/train_runs_lib.sh"
tr_begin
tr_setup 3 4 2 0
tr_run pad; r1=$?
tr_run flat --set data.padding_free=true; r2=$?
tr_run other --set data.shuffle_seed=99; r3=$?
check "three runs exit 0" '[ $r1 = 0 ] && [ $r2 = 0 ] && [ $r3 = 0 ] || { tail -n 3 "$d"/*.log; false; }'
"$Q" train --config "$d/c.yaml" --set data.padding_free=true --dry-run >"$d/dry.txt" 2>&1
check "the dry run names the padding-free layout" 'grep -q "padding-free" "$d/dry.txt"'
check "padding-free == padded: every loss, validation loss and token count (1e-5)" 'tr_cmp_runs flat pad'
check "the comparison fails for a run on other examples" '! tr_cmp_runs other pad >/dev/null'
check "adapters agree (1e-4)" 'tr_cmp_adapters pad flat'
exit $fail
