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
[ -n "$PY" ] && "$PY" -c 'import numpy, safetensors' 2>/dev/null ||
  { echo "SKIP: no Python with numpy and safetensors ('${PY:-none}'; scripts/setup.sh makes .venv)"; exit 77; }
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }
"$Q" init-model --arch qwen2 --tokenizer "$ASSETS/tokenizers/qwen1_5-qwen2.tokenizer.json" --hidden 64 --layers 2 \
  --heads 4 --kv-heads 2 --intermediate 128 --seed 5 --out "$d/m" >/dev/null || { echo "init-model failed"; exit 1; }
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
train: {max_steps: 6, micro_batch: 2, grad_accum: 4, lr: 5.0e-3, eval_every: 3, log_every: 1, threads: 1}
checkpoint: {dir: $d/run, every: 3}
YAML
run() { local name=$1; shift; "$Q" train --config "$d/c.yaml" --set checkpoint.dir="$d/$name" "$@" >"$d/$name.log" 2>&1; }
run sep; r1=$?
run fused --set train.fuse_micro_batches=true; r2=$?
run fusedpf --set train.fuse_micro_batches=true --set data.padding_free=true; r3=$?
run other --set data.shuffle_seed=99; r4=$?
run mb8 --set train.micro_batch=8 --set train.grad_accum=1; r5=$?
check "five runs exit 0" '[ $r1 = 0 ] && [ $r2 = 0 ] && [ $r3 = 0 ] && [ $r4 = 0 ] && [ $r5 = 0 ] || { tail -n 3 "$d"/*.log; false; }'
check "the log says the micro-batches are fused" 'grep -q "fused: one pass" "$d/fused.log"'
"$Q" train --config "$d/c.yaml" --set train.fuse_micro_batches=true --dry-run >"$d/dry.txt" 2>&1
check "the dry run plans 8 rows a pass" 'grep -q "fused micro-batches .* one forward/backward of 8 rows" "$d/dry.txt" &&
  grep -q "memory estimate per rank (micro-batch 8 x" "$d/dry.txt"'
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
cmp_adapters() { # a b [tol]
  "$PY" - "$d/$1/adapter/adapter_model.safetensors" "$d/$2/adapter/adapter_model.safetensors" "${3:-1e-4}" <<'PY'
import sys
import numpy as np
from safetensors.numpy import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
w = max(float(np.linalg.norm(a[k] - b[k]) / max(np.linalg.norm(a[k]), 1e-30)) for k in a)
print(f"  adapter max relative difference {w:.2e}")
sys.exit(0 if set(a) == set(b) and w <= float(sys.argv[3]) else 1)
PY
}
check "fused == separate micro-batches: every loss, validation loss and token count (1e-5)" 'cmp_runs fused sep'
check "fused adapter == separate (1e-4)" 'cmp_adapters fused sep'
check "fused padding-free == separate (1e-5)" 'cmp_runs fusedpf sep'
check "fused padding-free adapter == separate (1e-4)" 'cmp_adapters fusedpf sep'
check "the comparison fails for a run on other examples" '! cmp_runs other sep >/dev/null'
check "one token mean over the step (micro-batch 8) is not the same step" '! cmp_adapters mb8 sep 1e-4 >/dev/null'
if [ -n "${QA_MPIRUN:-}" ]; then
  $QA_MPIRUN 2 "$Q" train --config "$d/c.yaml" --set checkpoint.dir="$d/fused2" --set train.fuse_micro_batches=true \
    >"$d/fused2.log" 2>&1; r6=$?
  check "2 ranks, 2 fused micro-batches each: exit 0" '[ $r6 = 0 ] || { tail -n 5 "$d/fused2.log"; false; }'
  check "2 ranks fused == 1 rank separate (1e-5)" 'cmp_runs fused2 sep'
  check "2 ranks fused adapter == separate (1e-4)" 'cmp_adapters fused2 sep'
else
  echo "note: QA_MPIRUN unset: the 2-rank fused run is not checked"
fi
# resume: the fused run's step-3 checkpoint, continued, gives the straight run's adapter bytes
mkdir -p "$d/resumed/checkpoints"
cp "$d/fused/config.yaml" "$d/resumed/" && cp "$d/fused/checkpoints/step_00000003.h5"* "$d/resumed/checkpoints/" 2>/dev/null
run resumed --set train.fuse_micro_batches=true; r7=$?
check "a fused run resumed from step 3 ends with the same adapter bytes" '[ $r7 = 0 ] && grep -q "resum" "$d/resumed.log" &&
  cmp -s "$d/resumed/adapter/adapter_model.safetensors" "$d/fused/adapter/adapter_model.safetensors" ||
  { tail -n 4 "$d/resumed.log"; ls "$d/fused/checkpoints"; false; }'
exit $fail
