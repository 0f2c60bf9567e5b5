# train_runs_lib.sh — sourced by the tests that compare whole `qalign train` runs (train_padding_free.sh,
# train_fused.sh): a Qwen2-shaped random model on the paper's SNLI zh+es question data, one example per row,
# LoRA on every projection, and comparisons of two runs' metrics.jsonl and adapters.
# Needs: Q (qalign), ASSETS, PY (a Python with numpy and safetensors); tr_begin makes d (the scratch directory).

# tr_begin: exit 77 (skipped) without a Python that has numpy and safetensors; else the scratch directory $d
# (removed at exit) and fail=0, which `check` sets to 1
tr_begin() {
  [ -n "$PY" ] && "$PY" -c 'import numpy, safetensors' 2>/dev/null ||
    { echo "SKIP: no Python with numpy and safetensors ('${PY:-none}'; scripts/setup.sh makes .venv)"; exit 77; }
  d=$(mktemp -d)
  trap 'rm -rf "$d"' EXIT
  fail=0
}

# check NAME COMMAND: "ok: NAME" when COMMAND (eval'd) succeeds, else "FAIL: NAME" and fail=1
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi; }

# tr_setup SEED MICRO_BATCH GRAD_ACCUM CHECKPOINT_EVERY: the model in $d/m and the config $d/c.yaml (6 steps,
# validation every 3)
tr_setup() {
  "$Q" init-model --arch qwen2 --tokenizer "$ASSETS/tokenizers/qwen1_5-qwen2.tokenizer.json" --hidden 64 --layers 2 \
    --heads 4 --kv-heads 2 --intermediate 128 --seed "$1" --out "$d/m" >/dev/null || { echo "init-model failed"; exit 1; }
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
train: {max_steps: 6, micro_batch: $2, grad_accum: $3, lr: 5.0e-3, eval_every: 3, log_every: 1, threads: 1}
checkpoint: {dir: $d/run, every: $4}
YAML
}

# tr_run NAME [--set ...]: a run in $d/NAME, its output in $d/NAME.log
tr_run() { local name=$1; shift; "$Q" train --config "$d/c.yaml" --set checkpoint.dir="$d/$name" "$@" >"$d/$name.log" 2>&1; }

# tr_cmp_runs A B: every loss / val_loss within 1e-5 relative, the same tokens per step
tr_cmp_runs() {
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

# tr_cmp_adapters A B [TOL]: the adapters' tensors agree to TOL (default 1e-4) relative
tr_cmp_adapters() {
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
