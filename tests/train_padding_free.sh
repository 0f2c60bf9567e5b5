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
[ -n "$PY" ] && "$PY" -c 'import numpy, safetensors' 2>/dev/null ||
  { echo "SKIP: no Python with numpy and safetensors ('${PY:-none}'; scripts/setup.sh makes .venv)"; exit 77; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
"$Q" init-model --arch qwen2 --tokenizer "$ASSETS/tokenizers/qwen1_5-qwen2.tokenizer.json" --hidden 64 --layers 2 \
  --heads 4 --kv-heads 2 --intermediate 128 --seed 3 --out "$d/m" >/dev/null || { echo "init-model failed"; exit 1; }
cat >"$d/c.yaml" <<YAML
model: {path: $d/m, device: cpu}
data:
  files: [$ASSETS/paper-data/snli/snli_zh10k_train_question.json, $ASSETS/paper-data/snli/snli_es10k_train_question.json]
  max_examples: 60
  template: qwen
  cutoff: 256
  packing: false
  val_fraction: 0.1
lora: {targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj], r: 4, alpha: 8, dropout: 0.0}
train: {max_steps: 6, micro_batch: 4, grad_accum: 2, lr: 5.0e-3, eval_every: 3, log_every: 1, threads: 1}
checkpoint: {dir: $d/run, every: 0}
YAML
run() { local name=$1; shift; "$Q" train --config "$d/c.yaml" --set checkpoint.dir="$d/$name" "$@" >"$d/$name.log" 2>&1; }
run pad; r1=$?
run flat --set data.padding_free=true; r2=$?
run other --set data.shuffle_seed=99; r3=$?
check "three runs exit 0" '[ $r1 = 0 ] && [ $r2 = 0 ] && [ $r3 = 0 ] || { tail -n 3 "$d"/*.log; false; }'
"$Q" train --config "$d/c.yaml" --set data.padding_free=true --dry-run >"$d/dry.txt" 2>&1
check "the dry run names the padding-free layout" 'grep -q "padding-free" "$d/dry.txt"'
cmp_runs() { # a b: every loss / val_loss within 1e-5 relative, the same tokens per step
  "$PY" - "$d/$1/metrics.jsonl" "$d/$2/metrics.jsonl" <<'PY'
import json, sys
def load(p):
    out = {}
    for line in open(p):
        r = json.loads(line)
        for k in ("loss", "val_loss", "tokens", "val_tokens"):
            if k in r: out[(k, r["step"])] = r[k]
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
if set(a) != set(b) or not any(k[0] == "val_loss" for k in a): sys.exit(1)
worst = max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in a)
print(f"  max relative difference {worst:.2e} over {len(a)} values")
sys.exit(0 if worst <= 1e-5 else 1)
PY
}
check "padding-free == padded: every loss, validation loss and token count (1e-5)" 'cmp_runs flat pad'
check "the comparison fails for a run on other examples" '! cmp_runs other pad >/dev/null'
check "adapters agree (1e-4)" '"$PY" - "$d/pad/adapter/adapter_model.safetensors" "$d/flat/adapter/adapter_model.safetensors" <<PY
import sys
from safetensors.numpy import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
import numpy as np
w = max(float(np.linalg.norm(a[k] - b[k]) / max(np.linalg.norm(a[k]), 1e-30)) for k in a)
print(f"  adapter max relative difference {w:.2e}")
sys.exit(0 if set(a) == set(b) and w <= 1e-4 else 1)
PY'
exit $fail
