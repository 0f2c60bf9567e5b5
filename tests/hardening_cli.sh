#!/usr/bin/env bash
# hardening_cli.sh QALIGN TEST_HARDENING FIXTURES_HF ASSETS TMP [MPIEXEC|-] [PYTHON] — hostile inputs and file systems
# through the command line. Every check names the failure mode it guards against; each one failed before
# (crash, hang, silent success, lost files) and must now give one clear error and the right exit code.
# Mounting a small tmpfs (a full disk) needs CAP_SYS_ADMIN: without it those checks are reported as
# skipped, the rest still runs.
set -u
Q=$1 TH=$2 FX=$3 ASSETS=$4 TMP=$5 MPI=${6:-} PY=${7:-python3}
fail=0 pass=0 skip=0
check() { if eval "$2"; then pass=$((pass+1)); else echo "FAIL: $1"; fail=$((fail+1)); fi; }
crashed() { [ "$1" -ge 126 ]; }   # a signal (128+N) or an exec failure, never an orderly error
rm -rf "$TMP"; mkdir -p "$TMP"
M=$FX/llama/model
TOK=$ASSETS/tokenizers/qwen1_5-qwen2.tokenizer.json
DATA=$ASSETS/paper-data

# pre-tokenized training data below the fixture's vocab (384)
"$PY" - "$TMP/data.json" <<'EOF' || { echo "FAIL: writing the data"; exit 1; }
import json, random, sys
random.seed(5)
recs = []
for i in range(16):
    n = random.randint(4, 12); ids = [random.randrange(3, 380) for _ in range(n)]; k = random.randint(1, n - 1)
    recs.append({"input_ids": ids, "labels": [-100] * k + ids[k:]})
json.dump(recs, open(sys.argv[1], "w"))
EOF
TRAIN=(train --set model.path="$M" --set data.files="$TMP/data.json" --set data.template=none
       --set data.val_fraction=0 --set data.packing=false --set train.micro_batch=2 --set train.grad_accum=1
       --set train.threads=1 --set train.eval_every=0 --set train.lr=1e-3 --set checkpoint.every=1)

mounted=()
small_fs() {  # small_fs DIR SIZE: a tmpfs of SIZE at DIR, 1 if mounting is not allowed
  mkdir -p "$1"
  if mount -t tmpfs -o size="$2" tmpfs "$1" 2>/dev/null; then mounted+=("$1"); return 0; fi
  return 1
}
trap 'for d in "${mounted[@]}"; do umount "$d" 2>/dev/null; done' EXIT

# ---- 2: activation dump on a full disk: the error, exit 1, no crash at exit, nothing left ----
"$Q" init-model --arch qwen2 --tokenizer "$TOK" --seed 3 --out "$TMP/tiny" >/dev/null 2>&1
check "init-model of the tiny model" '[ -s "$TMP/tiny/model.safetensors" ]'
EV=(eval --model "$TMP/tiny" --data "$DATA" --tasks emotion --langs en,de,fr,hi,zh,sw --limit 4 --prompt target-labels)
if small_fs "$TMP/full" 24k; then
  msg=$("$Q" "${EV[@]}" --dump-activations "$TMP/full/d.h5" 2>&1); rc=$?
  check "dump on a full disk: exit 1 naming the disk ($rc: $msg)" '[ $rc -eq 1 ] && grep -q "No space left" <<<"$msg"'
  check "dump on a full disk: no HDF5 teardown noise" '! grep -q "infinite loop\|HDF5-DIAG" <<<"$msg"'
  check "dump on a full disk: nothing left behind" '[ -z "$(ls -A "$TMP/full")" ]'
else skip=$((skip+1)); echo "SKIP: no tmpfs mount (full-disk dump)"; fi

# ---- in-memory HDF5 files (pca.h5, lens.h5, checkpoints) never start from a file of the same name ----
"$Q" "${EV[@]}" --dump-activations "$TMP/d.h5" >/dev/null 2>&1
mkdir -p "$TMP/cwd"; echo garbage >"$TMP/cwd/pca.h5"
msg=$(cd "$TMP/cwd" && "$Q" pca --dump "$TMP/d.h5" --out "$TMP/pca" 2>&1); rc=$?
check "pca with an unrelated pca.h5 in the working directory ($rc: ${msg: -200})" '[ $rc -eq 0 ] && [ -s "$TMP/pca/pca.h5" ]'

# ---- 17: a file-size limit: exit 1 with the reason instead of death by SIGXFSZ ----
# (set on the running trainer once its first checkpoint is committed: before the start it would also
# fail MPI_Init's shared-memory files; SIGXFSZ keeps its default action, as in a user's shell)
"$Q" "${TRAIN[@]}" --set train.max_steps=100000 --set checkpoint.dir="$TMP/fsize" >"$TMP/fsize.log" 2>&1 &
pid=$!
for i in $(seq 1 600); do [ -e "$TMP/fsize/checkpoints/latest" ] && break; sleep 0.1; done
sz=$(stat -c %s "$TMP"/fsize/checkpoints/step_*.h5 2>/dev/null | head -1)
prlimit --pid $pid --fsize=$(( ${sz:-4096} / 2 )) 2>/dev/null
wait $pid; rc=$?
msg=$(cat "$TMP/fsize.log")
check "a file-size limit during training: exit 1 naming the limit ($rc: ${msg: -300})" \
  '[ $rc -eq 1 ] && grep -q "File too large" <<<"$msg" && grep -q "ulimit -f" <<<"$msg"'

# ---- 10: init-model refuses absurd sizes at once and leaves no temporary directory ----
t0=$(date +%s)
msg=$(timeout 60 "$Q" init-model --arch llama --tokenizer "$TOK" --seed 1 --vocab 2147483647 --out "$TMP/huge" 2>&1); rc=$?
check "init-model --vocab 2^31-1: usage error within seconds ($rc: $msg)" \
  '[ $rc -eq 2 ] && [ $(( $(date +%s) - t0 )) -lt 20 ] && grep -q -- "--vocab" <<<"$msg"'
check "init-model --vocab 2^31-1: nothing written" '[ -z "$(ls -d "$TMP"/huge* 2>/dev/null)" ]'
if small_fs "$TMP/small" 4m; then
  msg=$("$Q" init-model --arch qwen2 --tokenizer "$TOK" --seed 1 --hidden 128 --out "$TMP/small/m" 2>&1); rc=$?
  check "init-model on a full disk: exit 1, no directory and no temporary left ($rc: ${msg: -200})" \
    '[ $rc -eq 1 ] && [ -z "$(ls -A "$TMP/small")" ]'
  umount "$TMP/small"
else skip=$((skip+1)); echo "SKIP: no tmpfs mount (init-model on a full disk)"; fi
"$Q" init-model --arch qwen2 --tokenizer "$TOK" --seed 1 --hidden 768 --tie --out "$TMP/killed/m" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 200); do [ -n "$(ls -d "$TMP"/killed/m.tmp.* 2>/dev/null)" ] && break; sleep 0.05; done   # staging
kill -TERM $pid 2>/dev/null; wait $pid; rc=$?
if [ $rc -ne 0 ]; then
  check "init-model killed by SIGTERM: no temporary directory left" '[ -z "$(ls -d "$TMP"/killed/m.tmp.* 2>/dev/null)" ]'
else echo "note: init-model finished before SIGTERM arrived (nothing to check)"; fi
mkdir -p "$TMP/killed"; mkdir -m 700 "$TMP/killed/m2.tmp.Ab12Cd"; echo partial >"$TMP/killed/m2.tmp.Ab12Cd/model.safetensors"   # after a SIGKILL
mkdir -m 700 "$TMP/killed/m2.tmp.Xy34Zw"; echo mine >"$TMP/killed/m2.tmp.Xy34Zw/notes.txt"     # not init-model's
mkdir -m 700 "$TMP/killed/m2.tmp.0123456789ab"; echo old >"$TMP/killed/m2.tmp.0123456789ab/config.json"  # moved aside by --force
"$Q" init-model --arch qwen2 --tokenizer "$TOK" --seed 1 --out "$TMP/killed/m2" >/dev/null 2>&1
check "init-model removes the staging directory a killed run left" \
  '[ -s "$TMP/killed/m2/model.safetensors" ] && [ ! -e "$TMP/killed/m2.tmp.Ab12Cd" ]'
check "init-model keeps directories at staging names that hold other files or an older model" \
  '[ -s "$TMP/killed/m2.tmp.Xy34Zw/notes.txt" ] && [ -s "$TMP/killed/m2.tmp.0123456789ab/config.json" ]'

# ---- a run directory with checkpoints for the next checks ----
"$Q" "${TRAIN[@]}" --set train.max_steps=2 --set checkpoint.dir="$TMP/run" >"$TMP/log" 2>&1
check "training run for the checks below" '[ $? -eq 0 ] && [ -s "$TMP/run/adapter/adapter_model.safetensors" ]'

# ---- 11: export-peft never deletes what qalign did not write ----
mkdir -p "$TMP/mine/sub"; echo draft >"$TMP/mine/paper.tex"; echo x >"$TMP/mine/sub/fig.png"
msg=$("$Q" export-peft "$TMP/run" "$TMP/mine" 2>&1); rc=$?
check "export-peft into a directory of other files: refused ($rc: $msg)" '[ $rc -eq 1 ] && grep -q "mine" <<<"$msg"'
check "export-peft: the user's files are untouched" '[ "$(cat "$TMP/mine/paper.tex")" = draft ] && [ -s "$TMP/mine/sub/fig.png" ]'
msg=$("$Q" export-peft "$TMP/run" "$TMP/mine" --force 2>&1); rc=$?
check "export-peft --force: writes the adapter files ($rc: $msg)" \
  '[ $rc -eq 0 ] && [ -s "$TMP/mine/adapter_model.safetensors" ] && [ -s "$TMP/mine/adapter_config.json" ]'
check "export-peft --force: the other files stay" '[ "$(cat "$TMP/mine/paper.tex")" = draft ] && [ -s "$TMP/mine/sub/fig.png" ]'
"$Q" export-peft "$TMP/run" "$TMP/ad" >/dev/null 2>&1; echo notes >"$TMP/ad/README.md"
msg=$("$Q" export-peft "$TMP/run" "$TMP/ad" 2>&1); rc=$?
check "export-peft over an adapter directory: replaced, README kept ($rc: $msg)" \
  '[ $rc -eq 0 ] && [ "$(cat "$TMP/ad/README.md")" = notes ]'

# ---- 12: outputs that exist and are not regular files are refused, and stay what they were ----
mkfifo "$TMP/out.fifo"
msg=$(timeout 60 "$Q" eval --dump-prompts "$TMP/out.fifo" --data "$DATA" --tasks emotion --langs en --limit 1 2>&1); rc=$?
check "eval --dump-prompts onto a FIFO: refused ($rc: $msg)" '[ $rc -eq 1 ] && grep -q "FIFO" <<<"$msg" && [ -p "$TMP/out.fifo" ]'
msg=$(timeout 60 "$Q" "${EV[@]}" --dump-activations "$TMP/out.fifo" 2>&1); rc=$?
check "eval --dump-activations onto a FIFO: refused ($rc: ${msg: -200})" '[ $rc -eq 1 ] && [ -p "$TMP/out.fifo" ]'
if mknod "$TMP/null" c 1 3 2>/dev/null; then
  msg=$(timeout 60 "$Q" eval --dump-prompts "$TMP/null" --data "$DATA" --tasks emotion --langs en --limit 1 2>&1); rc=$?
  check "eval --dump-prompts onto a device node: refused, the node stays ($rc: $msg)" \
    '[ $rc -eq 1 ] && [ -c "$TMP/null" ]'
else skip=$((skip+1)); echo "SKIP: mknod not allowed (device-node output)"; fi

# ---- 3: a checkpoint whose cursor does not fit the data: a clear error, no out-of-bounds read ----
cp -r "$TMP/run" "$TMP/run_cursor"
"$TH" set-attr "$TMP/run_cursor/checkpoints/step_00000002.h5" / cursor 1000 || echo "FAIL: set-attr"
msg=$("$Q" "${TRAIN[@]}" --set train.max_steps=4 --set checkpoint.dir="$TMP/run_cursor" 2>&1); rc=$?
check "resume with cursor 1000 > 16 rows: exit 1 naming the cursor ($rc: ${msg: -300})" \
  '[ $rc -eq 1 ] && grep -q "cursor 1000" <<<"$msg"'
cp -r "$TMP/run" "$TMP/run_neg"
"$TH" set-attr "$TMP/run_neg/checkpoints/step_00000002.h5" / cursor -5 || echo "FAIL: set-attr"
msg=$("$Q" "${TRAIN[@]}" --set train.max_steps=4 --set checkpoint.dir="$TMP/run_neg" 2>&1); rc=$?
check "resume with cursor -5: that checkpoint is refused, the run falls back ($rc: ${msg: -300})" \
  '! crashed $rc && grep -q "cursor -5" <<<"$msg" && grep -q "falling back" <<<"$msg"'
cp -r "$TMP/run" "$TMP/run_optim"
"$TH" set-attr "$TMP/run_optim/checkpoints/step_00000002.h5" /optim step -1 || echo "FAIL: set-attr"
msg=$("$Q" "${TRAIN[@]}" --set train.max_steps=4 --set checkpoint.dir="$TMP/run_optim" 2>&1); rc=$?
check "resume with optim/step -1: refused, no undefined behaviour ($rc: ${msg: -300})" \
  '! crashed $rc && grep -q "AdamW step -1" <<<"$msg"'

# ---- resuming on another base model warns ----
cp -r "$TMP/run" "$TMP/run_other"
msg=$("$Q" "${TRAIN[@]}" --set train.max_steps=3 --set checkpoint.dir="$TMP/run_other" --set model.path="$FX/mistral/model" 2>&1); rc=$?
check "resume on another base model: a warning naming both ($rc: ${msg: -300})" 'grep -q "another model" <<<"$msg"'

# ---- 15: non-finite adapters and runs that train nothing ----
cp -r "$TMP/run/adapter" "$TMP/nan_adapter"; "$TH" fill-adapter "$TMP/nan_adapter" nan
msg=$("$Q" "${TRAIN[@]}" --set train.max_steps=2 --set checkpoint.dir="$TMP/run_nan" --set lora.init_adapter="$TMP/nan_adapter" 2>&1); rc=$?
check "training from a NaN adapter: exit 1 naming the tensor ($rc: ${msg: -300})" \
  '[ $rc -eq 1 ] && grep -q "lora_A.weight" <<<"$msg" && grep -q "NaN" <<<"$msg" && [ ! -e "$TMP/run_nan/adapter" ]'
msg=$("$Q" forward --model "$M" --adapter "$TMP/nan_adapter" --ids 1,2,3 2>&1); rc=$?
check "forward with a NaN adapter: exit 1 ($rc: ${msg: -200})" '[ $rc -eq 1 ] && grep -q "NaN" <<<"$msg"'
cp -r "$TMP/run/adapter" "$TMP/big_adapter"; "$TH" fill-adapter "$TMP/big_adapter" 1e30
msg=$("$Q" "${TRAIN[@]}" --set train.max_steps=2 --set checkpoint.dir="$TMP/run_big" --set lora.init_adapter="$TMP/big_adapter" 2>&1); rc=$?
check "a run whose every step is skipped fails ($rc: ${msg: -300})" '[ $rc -eq 1 ] && grep -q "skipped" <<<"$msg"'
msg=$("$Q" "${TRAIN[@]}" --set train.max_steps=2 --set checkpoint.dir="$TMP/run_lr" --set train.lr=1e30 2>&1); rc=$?
check "train.lr=1e30 is refused ($rc: ${msg: -200})" '[ $rc -eq 2 ] && grep -q "train.lr" <<<"$msg"'

# ---- 8: ranks with different configurations stop at once, naming the key ----
if [ -n "$MPI" ] && [ "$MPI" != - ]; then
  t0=$(date +%s)
  msg=$(timeout 120 $MPI -n 2 sh -c '"$0" "$@" --set train.eval_every=$((5 + ${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}))' \
        "$Q" "${TRAIN[@]}" --set train.max_steps=2 --set checkpoint.dir="$TMP/run_ranks" 2>&1); rc=$?
  check "ranks with different train.eval_every: exit non-zero within 60 s naming it ($rc: ${msg: -400})" \
    '[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $(( $(date +%s) - t0 )) -lt 60 ] && grep -q "train.eval_every" <<<"$msg"'
else skip=$((skip+1)); echo "SKIP: no mpiexec (ranks with different configurations)"; fi

# ---- also: arguments that used to be accepted ----
msg=$("$Q" forward --model "$M" --ids 1,,2 2>&1); rc=$?
check "forward --ids 1,,2: usage error ($rc: $msg)" '[ $rc -eq 2 ] && grep -q "empty item" <<<"$msg"'
for opt in --limit --seed; do
  msg=$("$Q" eval --dump-prompts "$TMP/p.jsonl" --data "$DATA" --tasks emotion --langs en $opt '' 2>&1); rc=$?
  check "eval $opt '': usage error ($rc: $msg)" '[ $rc -eq 2 ]'
done
msg=$("$Q" init-model --arch llama --tokenizer "$TOK" --seed 1 --rope-theta inf --out "$TMP/x1" 2>&1); rc=$?
check "init-model --rope-theta inf: usage error ($rc: $msg)" '[ $rc -eq 2 ] && [ ! -e "$TMP/x1" ]'
msg=$("$Q" init-model --arch llama --tokenizer "$TOK" --seed 99999999999999999999999 --out "$TMP/x2" 2>&1); rc=$?
check "init-model --seed 1e23: usage error ($rc: $msg)" '[ $rc -eq 2 ] && [ ! -e "$TMP/x2" ]'
msg=$("$Q" init-model --arch llama --tokenizer "$TOK" --seed 1 --max-shard-size -5 --out "$TMP/x3" 2>&1); rc=$?
check "init-model --max-shard-size -5: usage error ($rc: $msg)" '[ $rc -eq 2 ] && [ ! -e "$TMP/x3" ]'
msg=$("$Q" lens --model "$M" --dump "$TMP/x.h5" --out "$TMP/x4" --ymax inf 2>&1); rc=$?
check "lens --ymax inf: usage error ($rc: $msg)" '[ $rc -eq 2 ] && grep -q -- "--ymax" <<<"$msg"'
msg=$("$Q" label-tokens --tokenizer "$TOK" yes --bogus 2>&1); rc=$?
check "label-tokens WORD --bogus: usage error ($rc: $msg)" '[ $rc -eq 2 ] && grep -q -- "--bogus" <<<"$msg"'
msg=$("$Q" label-tokens --tokenizer "$TOK" yes --show 2>&1); rc=$?
check "label-tokens: options after the words still work ($rc)" '[ $rc -eq 0 ] && [ $(wc -l <<<"$msg") -eq 1 ]'
msg=$("$Q" label-tokens --tokenizer "$TOK" -- -x 2>&1); rc=$?
check "label-tokens -- -x: a word starting with '-' ($rc)" '[ $rc -eq 0 ]'
# the dry run opens the device as the run would: refused exactly where the device cannot be used
"$Q" forward --model "$M" --ids 1,2,3 --device cuda >/dev/null 2>&1; cuda_rc=$?
msg=$("$Q" "${TRAIN[@]}" --set checkpoint.dir="$TMP/dry" --set model.device=cuda --dry-run 2>&1); rc=$?
if [ $cuda_rc -ne 0 ]; then
  check "train --dry-run with model.device=cuda and no usable GPU: refused as the run would ($rc: ${msg: -200})" \
    '[ $rc -eq 2 ] && grep -q "model.device" <<<"$msg"'
else
  check "train --dry-run with model.device=cuda on a usable GPU: accepted ($rc: ${msg: -200})" '[ $rc -eq 0 ]'
fi
echo x >"$TMP/a_file"
msg=$("$Q" "${TRAIN[@]}" --set checkpoint.dir="$TMP/a_file" --dry-run 2>&1); rc=$?
check "train --dry-run with checkpoint.dir a file: refused ($rc: ${msg: -200})" '[ $rc -ne 0 ] && grep -q "checkpoint.dir" <<<"$msg"'
msg=$("$Q" "${TRAIN[@]}" --set checkpoint.dir="$TMP/dry" --set lora.init_adapter="$TMP/nowhere" --dry-run 2>&1); rc=$?
check "train --dry-run with a missing lora.init_adapter: refused ($rc: ${msg: -200})" '[ $rc -ne 0 ] && grep -q "init_adapter" <<<"$msg"'

# ---- also: merge on a full disk leaves no half-written directory ----
if small_fs "$TMP/mfull" 64k; then
  msg=$("$Q" merge --model "$M" --adapter "$TMP/run/adapter" --out "$TMP/mfull/merged" 2>&1); rc=$?
  check "merge on a full disk: exit 1, nothing left ($rc: ${msg: -200})" '[ $rc -eq 1 ] && [ -z "$(ls -A "$TMP/mfull")" ]'
else skip=$((skip+1)); echo "SKIP: no tmpfs mount (merge on a full disk)"; fi

echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
