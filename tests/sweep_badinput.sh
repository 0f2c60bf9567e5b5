#!/usr/bin/env bash
# qalign sweep: bad input gets one clear message per problem (naming the grid entry, cell or run
# directory), exit 2, and nothing is written or submitted (a stand-in sbatch records any call).
#   sweep_badinput.sh QALIGN SOURCE_DIR ASSETS_DIR
set -u
Q=$1 SRC=$2 ASSETS=$3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
FAIL=0
fail() { echo "FAIL: $*"; FAIL=1; }
"$Q" init-model --arch mistral --tokenizer "$ASSETS/tokenizers/mistral-7b-v0.1.tokenizer.json" --seed 1 \
    --out "$T/models/model-mistral" >/dev/null || exit 1
mkdir -p "$T/bin"
printf '#!/bin/sh\necho "$@" >> %s/sbatch.log\necho 1\n' "$T" > "$T/bin/sbatch"
chmod +x "$T/bin/sbatch"
export PATH="$T/bin:$PATH"

head_() {  # the common part of a valid grid
    cat <<EOF
base: $SRC/configs/demo.yaml
set:
  data.max_examples: 8
  data.cutoff: 32
  data.val_fraction: 0.0
  train.micro_batch: 2
  train.grad_accum: 2
  train.max_steps: 2
models_dir: $T/models
data_dir: $ASSETS/paper-data
evaluation: {tasks: [snli], langs: [en, zh], limit: 2}
EOF
}
MODEL='models:
  - {name: m, path: model-mistral, template: mistral}'
MIXES='mixes:
  zh: [snli/snli_zh10k_train_question.json]
  es: [snli/snli_es10k_train_question.json]'
n=0
# expect NAME MESSAGE_REGEX [COUNT] -- qalign sweep arguments: exit 2, the message (COUNT times), nothing written
expect() {
    local name=$1 re=$2 count=${3:-1}
    shift 3
    [ "$1" = -- ] && shift
    rm -f "$T/sbatch.log"
    "$Q" sweep "$@" --set "dir=$T/sw-$name" > "$T/$name.out" 2>&1
    local rc=$?
    n=$((n + 1))
    [ $rc = 2 ] || fail "$name: exit $rc, want 2 ($(head -3 "$T/$name.out"))"
    local got
    got=$(grep -cE "^qalign: error: .*$re" "$T/$name.out")
    [ "$got" = "$count" ] || { cat "$T/$name.out"; fail "$name: want $count message(s) matching '$re', got $got"; }
    [ -e "$T/sw-$name" ] && fail "$name: something was written to $T/sw-$name"
    [ -e "$T/sbatch.log" ] && fail "$name: sbatch was called: $(cat "$T/sbatch.log")"
    grep -q "nothing" "$T/$name.out" || fail "$name: no 'nothing submitted/planned' line"
}

{ head_; echo "modles: []"; echo "$MODEL"; echo "$MIXES"; } > "$T/g1.yaml"
expect unknown_key "unknown key 'modles'; did you mean 'models'\?" 1 -- submit "$T/g1.yaml"

{ head_; echo "$MODEL"; echo "$MIXES"; echo "axes: {lora.rr: [4, 8]}"; } > "$T/g2.yaml"
expect unknown_axis "axes \(line [0-9]+\): unknown training config key 'lora.rr'; did you mean 'lora.r'\?" 1 -- plan "$T/g2.yaml"

{ head_; echo "$MODEL"; echo "$MIXES"; echo "axes: {train.seed: [1, 2]}"; } > "$T/g3.yaml"
expect reserved_axis "'train.seed' is an axis of its own" 1 -- plan "$T/g3.yaml"

{ head_; echo "$MODEL"; echo "$MIXES"; echo "  xx: [snli/snli_xx10k_train_question.json]"; } > "$T/g4.yaml"
expect missing_file "mix 'xx' \(line [0-9]+\): file .*/snli_xx10k_train_question.json does not exist" 1 -- submit "$T/g4.yaml"

{ head_; echo "$MODEL"; echo "$MIXES"; echo "seeds: [1, 1]"; } > "$T/g5.yaml"
expect same_run_dir "cells m/(zh|es)/s1 and m/(zh|es)/s1 resolve to one run directory" 2 -- submit "$T/g5.yaml"

{ head_; echo "$MODEL"; echo "$MIXES"; echo "seeds: [42]"; echo "include: [{model: m, mix: zh, seed: 42}]"; } > "$T/g6.yaml"
expect include_dup "cells m/zh/s42 and m/zh/s42 \(include, line [0-9]+\) resolve to one run directory" 1 -- plan "$T/g6.yaml"

{ head_; echo "$MODEL"; echo "$MIXES"; } > "$T/ok.yaml"
expect unknown_set "--set train.lrr=1: unknown key 'train.lrr'; did you mean 'train.lr'\?" 1 -- submit "$T/ok.yaml" --set train.lrr=1
expect unknown_set_grid "--set evaluation.limt=1: unknown key 'evaluation.limt'; did you mean 'evaluation.limit'\?" 1 -- \
    plan "$T/ok.yaml" --set evaluation.limt=1

{ head_; echo "models: [{name: m, path: no-such-model, template: mistral}]"; echo "$MIXES"; } > "$T/g7.yaml"
expect missing_model "model 'm' \(line [0-9]+\): model directory .*/no-such-model does not exist" 1 -- plan "$T/g7.yaml"

{ head_; echo "models: [{name: m, path: model-mistral, template: mistral, resources: {ranks: 3}}]"; echo "$MIXES"; } > "$T/g8.yaml"
expect ranks "cell m/(zh|es)/s42: train.grad_accum = 2 .* is not divisible by the 3 ranks of model 'm'" 2 -- submit "$T/g8.yaml"

{ head_; echo "models: [{name: m, path: model-mistral, template: mistral, resources: {mem: 1M}}]"; echo "$MIXES"; } > "$T/g9.yaml"
expect mem "cell m/(zh|es)/s42: needs ~[0-9.]+ GiB of host memory .* more than the mem 1 M of model 'm'" 2 -- submit "$T/g9.yaml"

{ head_; echo "models: [{name: m, path: model-mistral, template: mistral, resources: {time: '00:02:00'}}]"; echo "$MIXES"; } > "$T/g10.yaml"
expect time "cell m/(zh|es)/s42: the time limit 120 s of model 'm' .* leaves no room to checkpoint" 2 -- \
    plan "$T/g10.yaml" --set slurm.signal_s=300

{ head_; echo "models: [{name: m, path: model-mistral, template: mistral, bogus: 1}]"; echo "$MIXES"; } > "$T/g11.yaml"
expect model_key "model 1 \(line [0-9]+\): unknown key 'bogus'" 1 -- plan "$T/g11.yaml"

{ head_; echo "$MODEL"; echo "$MIXES"; echo "train.lr: 1e-4"; } > "$T/g12.yaml"
expect train_key_top "'train.lr' is a training config key; put it under 'set:'" 1 -- plan "$T/g12.yaml"

# ---- run directories that hold another config are refused, never overwritten --------------------------
"$Q" sweep plan "$T/ok.yaml" --set "dir=$T/sw-ok" > "$T/ok.out" 2>&1 || { cat "$T/ok.out"; fail "the valid grid does not plan"; }
RUN=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["cells"][0]["run_dir"])' "$T/sw-ok/plan.json")
python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["cells"][0]["config"], end="")' "$T/sw-ok/plan.json" \
    | sed 's/^  lr: .*/  lr: 0.5/' > "$T/other.yaml"
mkdir -p "$RUN"
cp "$T/other.yaml" "$RUN/config.yaml"
rm -f "$T/sbatch.log"
"$Q" sweep submit "$T/ok.yaml" --set "dir=$T/sw-ok" > "$T/rd1.out" 2>&1
rc=$?
[ $rc = 2 ] || fail "a run directory of another config.yaml: exit $rc, want 2"
grep -qE "^qalign: error: cell m/zh/s42: run directory .* holds a run of another config .*refusing to touch it" "$T/rd1.out" ||
    { cat "$T/rd1.out"; fail "no refusal of the run directory holding another config.yaml"; }
cmp -s "$T/other.yaml" "$RUN/config.yaml" || fail "the other run's config.yaml was changed"
[ "$(ls "$RUN")" = config.yaml ] || fail "files were added to the refused run directory: $(ls "$RUN")"
[ -e "$T/sbatch.log" ] && fail "sbatch was called although a run directory was refused"
rm "$RUN/config.yaml"
printf '{"id": "m/zh/s42@00000000", "hash": "0000000000000000"}\n' > "$RUN/cell.json"
"$Q" sweep submit "$T/ok.yaml" --set "dir=$T/sw-ok" --local > "$T/rd2.out" 2>&1
rc=$?
[ $rc = 2 ] || fail "a run directory of another cell.json: exit $rc, want 2"
grep -qE "^qalign: error: cell m/zh/s42: run directory .* holds cell m/zh/s42@00000000 \(config hash 0000000000000000\)" "$T/rd2.out" ||
    { cat "$T/rd2.out"; fail "no refusal of the run directory holding another cell"; }
[ "$(ls "$RUN")" = cell.json ] || fail "files were added to the refused run directory: $(ls "$RUN")"

# ---- qalign eval: several adapters need as many --out -------------------------------------------------
"$Q" eval --model "$T/models/model-mistral" --adapter none --adapter none --out "$T/e1" > "$T/ev.out" 2>&1
rc=$?
[ $rc = 2 ] || fail "eval with 2 --adapter and 1 --out: exit $rc, want 2"
grep -q "several adapters need one --out each" "$T/ev.out" || fail "eval: no message about --adapter/--out pairs"
[ $FAIL = 0 ] && echo "sweep_badinput: ok ($n grids, 2 run directories, 1 eval: each refused with its message, nothing written)"
exit $FAIL
