#!/usr/bin/env bash
# train_check.sh QALIGN WORKDIR [ASSETS] — `qalign train` on the GPU against the CPU, on a small Qwen2-shaped
# random model (hidden 256, 4 layers, 4 heads of 64, the real Qwen1.5 tokenizer) and the paper's SNLI zh+es
# question data (packed 256-token rows, LoRA q,v r=8, 12 steps of 4 x 2 rows):
#   cpu        the reference
#   cuda-fp32  the CUDA kernels in fp32: every step's loss within 1e-4 (relative) of the CPU's
#   cuda       bf16 tensor cores: every step's loss within 2e-2 (relative) of the CPU's, the same curve
#   resume     cuda stopped at step 6 (max_steps 6) and resumed to 12 == the uninterrupted cuda run, bit for bit
#              (adapter bytes, losses); the schedule is constant with no warmup because a decaying schedule
#              and its warmup are functions of max_steps (docs/training.md: extending one is a new schedule)
# Prints one JSON line per comparison ({"train_check": ...}) and exits 1 when one fails. bench/gpu/run_all.sh
# runs it; it also runs on a machine without a GPU with QALIGN_TRAIN_CHECK_DEVICE=emu (the emulated device).
set -u
Q=$1 W=$2 ASSETS=${3:-${QALIGN_ASSETS:-assets}}
DEV=${QALIGN_TRAIN_CHECK_DEVICE:-cuda}
mkdir -p "$W"
fail=0
"$Q" init-model --arch qwen2 --tokenizer "$ASSETS/tokenizers/qwen1_5-qwen2.tokenizer.json" --hidden 256 --layers 4 \
  --heads 4 --kv-heads 4 --intermediate 688 --seed 11 --out "$W/m" >/dev/null || { echo '{"train_check": "init-model", "ok": false}'; exit 1; }
cat >"$W/c.yaml" <<YAML
model: {path: $W/m}
data:
  files: [$ASSETS/paper-data/snli/snli_zh10k_train_question.json, $ASSETS/paper-data/snli/snli_es10k_train_question.json]
  max_examples: 200
  template: qwen
  cutoff: 256
  packing: true
lora: {targets: [q_proj, v_proj], r: 8, alpha: 16, dropout: 0.05}
train: {max_steps: 12, micro_batch: 2, grad_accum: 4, lr: 2.0e-3, schedule: constant, warmup_ratio: 0, eval_every: 6,
       log_every: 6, threads: 4}
checkpoint: {dir: $W/run, every: 6, keep_last: 3}
YAML
run() { # name device [--set ...]
  local name=$1 dev=$2; shift 2
  local t0; t0=$(date +%s%N)
  "$Q" train --config "$W/c.yaml" --set model.device="$dev" --set checkpoint.dir="$W/$name" "$@" >"$W/$name.log" 2>&1
  local r=$?
  echo "{\"train_check\": \"run\", \"name\": \"$name\", \"device\": \"$dev\", \"rc\": $r, \"seconds\": $(( ($(date +%s%N) - t0) / 1000000 ))e-3}"
  [ $r = 0 ] || { tail -5 "$W/$name.log" >&2; fail=1; }
}
cmp_losses() { # a b tol label
  python3 - "$W/$1/metrics.jsonl" "$W/$2/metrics.jsonl" "$3" "$4" <<'EOF'
import json, sys
def load(p):
    out = {}
    for line in open(p):
        r = json.loads(line)
        for k in ("loss", "val_loss"):
            if k in r: out[(k, r["step"])] = r[k]
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
tol = float(sys.argv[3])
keys = sorted(set(a) & set(b))
worst = max((abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in keys), default=float("inf"))
ok = len(keys) == len(a) == len(b) and len(keys) > 0 and worst <= tol
print(json.dumps({"train_check": sys.argv[4], "steps": len([k for k in keys if k[0] == "loss"]),
                  "max_rel_loss_diff": worst, "tolerance": tol, "ok": ok,
                  "first": [a.get(("loss", 1)), b.get(("loss", 1))], "last": [a.get(("loss", 12)), b.get(("loss", 12))]}))
sys.exit(0 if ok else 1)
EOF
}
run cpu cpu
if [ "$DEV" = cuda ]; then
  run fp32 cuda-fp32
  cmp_losses fp32 cpu 1e-4 "cuda-fp32 vs cpu" || fail=1
fi
run dev "$DEV"
cmp_losses dev cpu "$([ "$DEV" = cuda ] && echo 2e-2 || echo 0)" "$DEV vs cpu" || fail=1
run res "$DEV" --set train.max_steps=6
run res "$DEV"
adapter=false losses=false resumed=false
cmp -s "$W/dev/adapter/adapter_model.safetensors" "$W/res/adapter/adapter_model.safetensors" && adapter=true
cmp_losses res dev 0 "$DEV resume vs uninterrupted" >"$W/res.cmp" && losses=true
grep -q "resumed from" "$W/res.log" && resumed=true
same=false; $adapter && $losses && $resumed && same=true
echo "{\"train_check\": \"$DEV resume\", \"bitwise_equal\": $same, \"ok\": $same, \"adapter_bytes_equal\": $adapter, \"losses_equal\": $losses, \"resumed\": $resumed}"
$losses || cat "$W/res.cmp"
$same || fail=1
exit $fail
