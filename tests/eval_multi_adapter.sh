#!/usr/bin/env bash
# qalign eval --adapter A --out DA --adapter B --out DB ...: the base model loaded once, each adapter
# evaluated in turn (--adapter none = the base model) under mpirun -np 2; every result directory must
# hold what a separate single-process run writes: predictions.jsonl and results.md byte for byte,
# results.json equal but for its timings (created_utc, seconds, items_per_s, world_size).
#   eval_multi_adapter.sh QALIGN SOURCE_DIR ASSETS_DIR "MPIRUN -n"
set -u
Q=$1 SRC=$2 ASSETS=$3 MPI=${4:-}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
FAIL=0
fail() { echo "FAIL: $*"; FAIL=1; }
cd "$SRC" || exit 1
"$Q" init-model --arch mistral --tokenizer "$ASSETS/tokenizers/mistral-7b-v0.1.tokenizer.json" --seed 3 \
    --out "$T/m" >/dev/null || exit 1
"$Q" train --config configs/demo.yaml --set "model.path=$T/m" --set data.template=mistral \
    --set "data.files=$ASSETS/paper-data/snli/snli_zh10k_train_question.json" --set data.max_examples=16 \
    --set data.cutoff=32 --set data.val_fraction=0 --set train.micro_batch=2 --set train.grad_accum=2 \
    --set train.max_steps=3 --set train.eval_every=0 --set train.threads=1 --set checkpoint.every=2 \
    --set "checkpoint.dir=$T/run" > "$T/train.log" 2>&1 || { cat "$T/train.log"; exit 1; }
EV=(--model "$T/m" --data "$ASSETS/paper-data" --tasks snli,paws --langs en,zh,sw --limit 3)
# A: the final PEFT adapter; B: the run directory (its newest checkpoint: the same weights); C: step 2
ADS=(none "$T/run/adapter" "$T/run" "$T/run/checkpoints/step_00000002.h5")
NAMES=(base peft run ckpt2)
ARGS=()
for i in 0 1 2 3; do ARGS+=(--adapter "${ADS[$i]}" --out "$T/multi/${NAMES[$i]}"); done
# shellcheck disable=SC2086  # MPI holds the launcher and its flags
$MPI 2 "$Q" eval "${EV[@]}" "${ARGS[@]}" > "$T/multi.log" 2>&1 || { cat "$T/multi.log"; fail "multi-adapter eval"; }
[ "$(grep -c 'eval: \[[0-9]/4\]' "$T/multi.log")" = 4 ] || fail "want 4 adapters evaluated on one load"
[ "$(grep -c 'eval: model ' "$T/multi.log")" = 1 ] || fail "the model should be loaded once"
for i in 0 1 2 3; do
    a=()
    [ "${ADS[$i]}" != none ] && a=(--adapter "${ADS[$i]}")
    "$Q" eval "${EV[@]}" "${a[@]}" --out "$T/sep/${NAMES[$i]}" > "$T/sep-$i.log" 2>&1 || { cat "$T/sep-$i.log"; fail "eval ${NAMES[$i]}"; }
    for f in predictions.jsonl results.md; do
        cmp -s "$T/multi/${NAMES[$i]}/$f" "$T/sep/${NAMES[$i]}/$f" || fail "${NAMES[$i]}/$f differs from a separate run"
    done
    python3 - "$T/multi/${NAMES[$i]}/results.json" "$T/sep/${NAMES[$i]}/results.json" <<'PY' || fail "${NAMES[$i]}/results.json differs from a separate run"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for k in ("created_utc", "seconds", "items_per_s", "world_size"):
    a.pop(k, None), b.pop(k, None)
sys.exit(0 if a == b else 1)
PY
done
# the run directory resolves to its newest checkpoint: the same predictions as the final adapter
cmp -s "$T/multi/peft/predictions.jsonl" "$T/multi/run/predictions.jsonl" || fail "run dir and final adapter disagree"
cmp -s "$T/multi/base/predictions.jsonl" "$T/multi/peft/predictions.jsonl" && echo "note: the adapter changed no prediction"
[ $FAIL = 0 ] && echo "eval_multi_adapter: ok (4 adapters on one load, each as a separate run)"
exit $FAIL
