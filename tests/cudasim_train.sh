#!/usr/bin/env bash
# qalign on model.device=cuda through the CUDA simulator (kernels/cuda/sim) against model.device=cpu:
#   training (a fixture model, pre-tokenized random data, packing, LoRA on all 7 projections with dropout,
#   gradient clipping active, 4 steps of 2 micro-batches):
#   - cuda (bf16 GEMM and attention operands): every step's loss within 2e-3 (absolute) and grad_norm within
#     2e-2 (relative) of the CPU's; the checkpointed LoRA tensors and AdamW moments after 4 steps within 6e-2
#     relative (norm over each tensor). Measured here: loss 8.3e-4, grad_norm 5.3e-4, LoRA 2.1e-2, moments
#     2.9e-2 (the first moments of q/k lora_A, whose gradients pass through the bf16 attention scores: AdamW's
#     early steps are ~lr * sign(g), as in test_golden's "after step" kind); each bound about twice that.
#   - cuda-fp32 (the verification mode): loss within 1e-5, grad_norm and every checkpointed tensor within
#     1e-4 relative, the CPU's tolerance (measured 4.3e-8, 1.4e-7, 8.2e-6).
#   resume on the device: stopped after step 2 and resumed == uninterrupted (adapter bytes: the simulator
#   is deterministic, as the device must be)
#   evaluation (prefix cache): the same predictions, label log-masses within 1e-2
#   usage: cudasim_train.sh QALIGN_CUDASIM ASSETS PYTHON3 FIXTURES_HF
set -u
Q=$1 ASSETS=$2 PY=$3 FIX=$4
# the comparisons read HDF5 with h5py and numpy (scripts/setup.sh installs them into .venv): without them, skipped
if [ -z "$PY" ] || ! "$PY" -c 'import h5py, numpy' 2>/dev/null; then echo "SKIP: no Python with h5py and numpy"; exit 77; fi
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0; pass=0
check() { if eval "$2"; then pass=$((pass+1)); echo "ok   $1"; else echo "FAIL: $1"; fail=$((fail+1)); fi; }

"$PY" - "$d/data.json" <<'PYEOF' || { echo "cannot write the data"; exit 1; }
import json, random, sys
r = random.Random(11)
recs = []
for i in range(24):
    src, tgt = r.randrange(4, 24), r.randrange(2, 24)
    ids = [r.randrange(384) for _ in range(src + tgt)]
    recs.append({"input_ids": ids, "labels": [-100] * src + ids[src:]})
json.dump(recs, open(sys.argv[1], "w"))
PYEOF
cat > "$d/c.yaml" <<YAML
model: {path: $FIX/mistral/model}
data: {files: [$d/data.json], template: none, val_fraction: 0, packing: true, cutoff: 64}
lora: {targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj], r: 4, alpha: 8, dropout: 0.1}
train: {max_steps: 4, micro_batch: 2, grad_accum: 2, lr: 1.0e-2, log_every: 1, threads: 1, max_grad_norm: 0.05, seed: 7}
checkpoint: {dir: $d/run, every: 2, keep_last: 5}
YAML
run() { # name device [extra --set ...]
  local name=$1 dev=$2; shift 2
  "$Q" train --config "$d/c.yaml" --set model.device=$dev --set checkpoint.dir=$d/$name "$@" >"$d/$name.log" 2>&1
}
run cpu cpu; rc_cpu=$?
run cuda cuda; rc_cuda=$?
run f32 cuda-fp32; rc_f32=$?
check "train on cpu, cuda and cuda-fp32 (simulated) exit 0 ($(tail -1 "$d/cuda.log"))" \
  '[ $rc_cpu -eq 0 ] && [ $rc_cuda -eq 0 ] && [ $rc_f32 -eq 0 ]'
check "the cuda run says where it ran" 'grep -q "on cuda" "$d/cuda.log"'
cat > "$d/cmp_train.py" <<'PYEOF'
import json, sys
import h5py, numpy as np
a, b = sys.argv[1], sys.argv[2]
loss_tol, gn_tol, ck_tol = (float(x) for x in sys.argv[3:6])
ma = [json.loads(l) for l in open(a + "/metrics.jsonl") if '"loss"' in l]
mb = [json.loads(l) for l in open(b + "/metrics.jsonl") if '"loss"' in l]
ok = len(ma) == len(mb) == 4
for x, y in zip(ma, mb):
    dl, dg = abs(x["loss"] - y["loss"]), abs(x["grad_norm"] - y["grad_norm"]) / abs(x["grad_norm"])
    print("  step %d: loss %.6f vs %.6f (abs %.1e), grad_norm %.6f vs %.6f (rel %.1e)"
          % (x["step"], x["loss"], y["loss"], dl, x["grad_norm"], y["grad_norm"], dg))
    ok &= dl <= loss_tol and dg <= gn_tol
worst = {}
def walk(g, path):
    for k, v in g.items():
        if isinstance(v, h5py.Group):
            yield from walk(v, path + "/" + k)
        else:
            yield path + "/" + k
with h5py.File(a + "/checkpoints/step_00000004.h5") as fa, h5py.File(b + "/checkpoints/step_00000004.h5") as fb:
    for grp in ("/lora", "/optim"):
        names = [n for n in walk(fa[grp], grp) if fa[n].dtype.kind == "f" and fa[n].size > 1]
        ok &= len(names) > 0
        for n in names:
            x, y = np.asarray(fa[n], np.float64), np.asarray(fb[n], np.float64)
            e = np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-30)
            worst[grp] = max(worst.get(grp, 0.0), e)
            ok &= e <= ck_tol
print("  checkpoint step 4, max relative error: " + ", ".join("%s %.1e" % kv for kv in sorted(worst.items())))
sys.exit(0 if ok else 1)
PYEOF
cat > "$d/cmp_eval.py" <<'PYEOF'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
ok, worst = len(a) == len(b) > 0, 0.0
for x, y in zip(a, b):
    ok &= x["pred"] == y["pred"] and x["lang"] == y["lang"] and x["index"] == y["index"]
    for k, v in x["log_mass"].items():
        worst = max(worst, abs(v - y["log_mass"][k]))
print("  %d predictions, label log-mass max abs difference %.1e" % (len(a), worst))
sys.exit(0 if ok and worst <= 1e-2 else 1)
PYEOF
check "losses, grad norms, checkpointed LoRA tensors and moments: cuda == cpu within the bf16 bounds" \
  '"$PY" "$d/cmp_train.py" "$d/cpu" "$d/cuda" 2e-3 2e-2 6e-2'
check "losses, grad norms, checkpointed LoRA tensors and moments: cuda-fp32 == cpu within 1e-4" \
  '"$PY" "$d/cmp_train.py" "$d/cpu" "$d/f32" 1e-5 1e-4 1e-4'

# resume on the device
run res cuda --set train.max_steps=2; r1=$?
run res cuda; r2=$?
check "resumed run on cuda exits 0" '[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && grep -q "resumed from" "$d/res.log"'
check "resume on cuda == uninterrupted cuda (adapter bytes)" \
  'cmp -s "$d/res/adapter/adapter_model.safetensors" "$d/cuda/adapter/adapter_model.safetensors"'

# evaluation on a model with a real tokenizer (prefix cache on)
"$Q" init-model --arch llama --tokenizer "$ASSETS/tokenizers/llama2.reconstructed.tokenizer.json" --hidden 32 --layers 2 \
    --heads 4 --kv-heads 2 --intermediate 64 --seed 5 --out "$d/m" >/dev/null 2>&1 || echo "init-model failed"
for dev in cpu cuda; do
  "$Q" eval --model "$d/m" --data "$ASSETS/paper-data" --limit 2 --langs en,zh --tasks emotion --device $dev \
      --out "$d/ev-$dev" >"$d/ev-$dev.log" 2>&1 || echo "eval $dev failed: $(tail -2 "$d/ev-$dev.log")"
done
check "evaluation: cuda == cpu (predictions; label log-masses within 1e-2)" \
  '"$PY" "$d/cmp_eval.py" "$d/ev-cpu/predictions.jsonl" "$d/ev-cuda/predictions.jsonl"'
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
