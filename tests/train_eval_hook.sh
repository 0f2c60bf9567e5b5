#!/usr/bin/env bash
# qalign train with eval.every / eval.at_end: the paper's evaluation of the adapter during training
# writes RUN_DIR/eval/step_N/{results.json,results.md,predictions.jsonl} and a metrics.jsonl line.
set -u
Q=$1 ASSETS=$2
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0; pass=0
check() { if eval "$2"; then pass=$((pass+1)); else echo "FAIL: $1"; fail=$((fail+1)); fi; }
"$Q" init-model --arch qwen2 --tokenizer "$ASSETS/tokenizers/qwen1_5-qwen2.tokenizer.json" --hidden 32 --layers 1 \
    --heads 2 --kv-heads 1 --intermediate 64 --seed 3 --out "$d/m" >/dev/null || { echo "init-model failed"; exit 1; }
cat > "$d/c.yaml" <<YAML
model: {path: $d/m}
data:
  files: [$ASSETS/paper-data/snli/snli_zh10k_train_question.json]
  max_examples: 24
  template: qwen
  cutoff: 128
train: {max_steps: 2, micro_batch: 2, grad_accum: 2, lr: 1.0e-2, eval_every: 0, log_every: 1, threads: 1}
checkpoint: {dir: $d/run, every: 0}
eval: {every: 1, at_end: true, limit: 2, langs: [en, zh], tasks: [emotion, paws], data_dir: $ASSETS/paper-data}
YAML
out=$("$Q" train --config "$d/c.yaml" 2>&1); rc=$?
check "train exit 0 ($out)" '[ $rc -eq 0 ]'
for s in 1 2; do
  f="$d/run/eval/step_0000000$s"
  check "step $s results" '[ -s "$f/results.json" ] && [ -s "$f/results.md" ] && [ -s "$f/predictions.jsonl" ]'
  check "step $s: 2 tasks x 2 langs x 2 items" '[ $(wc -l < "$f/predictions.jsonl") -eq 8 ]'
  check "step $s metrics line" 'grep -q "{\"step\":$s,\"eval\":{\"emotion\":" "$d/run/metrics.jsonl"'
done
check "adapter id recorded" 'grep -q "training step 2" "$d/run/eval/step_00000002/results.json"'
check "compare step 1 vs 2" '"$Q" eval-compare "$d/run/eval/step_00000001" "$d/run/eval/step_00000002" >/dev/null'
# pre-tokenized data has no tokenizer: the evaluation cannot run and says why
echo '[{"input_ids": [1, 2, 3, 4], "labels": [-100, -100, 3, 4]}]' > "$d/tok.json"
msg=$("$Q" train --config "$d/c.yaml" --set data.template=none --set "data.files=[$d/tok.json]" \
      --set data.val_fraction=0 --set checkpoint.dir=$d/run2 2>&1); rc=$?
check "eval without tokenizer refused" '[ $rc -ne 0 ] && grep -q "eval.every" <<<"$msg"'
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
