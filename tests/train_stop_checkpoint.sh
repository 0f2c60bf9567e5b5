#!/usr/bin/env bash
# A stop signal at a step whose checkpoint is already committed (a checkpoint.every step, or the step a
# run resumed from) commits no second copy of it: SIGUSR1 to a run that resumes at step 2 ends it with
# "the checkpoint of step 2 is committed", exit 0, the checkpoint file untouched.
#   train_stop_checkpoint.sh QALIGN SOURCE_DIR ASSETS_DIR
set -u
Q=$1 SRC=$2 ASSETS=$3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
FAIL=0
fail() { echo "FAIL: $*"; FAIL=1; }
cd "$SRC" || exit 1
"$Q" init-model --arch mistral --tokenizer "$ASSETS/tokenizers/mistral-7b-v0.1.tokenizer.json" --seed 1 \
    --out "$T/m" >/dev/null || exit 1
A=(--config configs/demo.yaml --set "model.path=$T/m" --set data.template=mistral
   --set "data.files=$ASSETS/paper-data/snli/snli_zh10k_train_question.json" --set data.max_examples=16
   --set data.cutoff=32 --set data.val_fraction=0 --set train.micro_batch=2 --set train.grad_accum=2
   --set train.eval_every=0 --set train.threads=1 --set checkpoint.every=2 --set "checkpoint.dir=$T/run")
"$Q" train "${A[@]}" --set train.max_steps=2 > "$T/first.log" 2>&1 || { cat "$T/first.log"; exit 1; }
CK=$T/run/checkpoints/step_00000002.h5
[ -f "$CK" ] || { ls -R "$T/run"; exit 1; }
before=$(stat -c %Y.%s "$CK"; cksum < "$CK")
sleep 1.1
"$Q" train "${A[@]}" --set train.max_steps=4 > "$T/second.log" 2>&1 &
PID=$!
for _ in $(seq 300); do grep -q 'qalign: dist:' "$T/second.log" && break; sleep 0.05; done
kill -USR1 $PID
wait $PID
rc=$?
cat "$T/second.log"
[ $rc = 0 ] || fail "exit $rc after the stop signal, want 0"
grep -q "stop requested (signal): the checkpoint of step 2 is committed; exiting" "$T/second.log" ||
    fail "no 'checkpoint of step 2 is committed' line"
grep -q "committing a checkpoint at step 2" "$T/second.log" && fail "the stop wrote the checkpoint of step 2 again"
[ "$(stat -c %Y.%s "$CK"; cksum < "$CK")" = "$before" ] || fail "$CK was rewritten"
[ $FAIL = 0 ] && echo "train_stop_checkpoint: ok"
exit $FAIL
