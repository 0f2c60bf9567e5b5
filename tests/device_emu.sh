#!/usr/bin/env bash
# The device code paths on the emulated device (kernels/emu: host_memory 0, device memory unreadable by the
# host, every op pointer checked): each run here on model.device emu must give the CPU backend's bits.
#   training (np=1): losses, validation losses, adapter and checkpoint tensors == cpu, with eval.every on
#   resume on the device: stopped at step 2 and resumed == uninterrupted (both emu)
#   np=2 (mpirun; the gradient all-reduce through the staged device-buffer communicator) == cpu np=2 == np=1
#   evaluation (prefix cache, adapter) and activation dumps: predictions and every dataset == cpu
#   logit lens on the device == cpu
#   an NF4 base (--quant nf4 / nf4-dq): QLoRA training, evaluation and forward == cpu
#   usage: device_emu.sh QALIGN ASSETS [MPIRUN...]
set -u
Q=$1 ASSETS=$2
shift 2
MPIRUN=("$@")
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0; pass=0
check() { if eval "$2"; then pass=$((pass+1)); else echo "FAIL: $1"; fail=$((fail+1)); fi; }
same() { cmp -s "$1" "$2"; }
losses() { grep -o '"\(loss\|val_loss\|grad_norm\)":[^,}]*' "$1"; }
h5same() { h5diff "$1" "$2" "$3" "$3" >/dev/null 2>&1; } # a group of two HDF5 files, value for value

"$Q" init-model --arch qwen2 --tokenizer "$ASSETS/tokenizers/qwen1_5-qwen2.tokenizer.json" --hidden 32 --layers 2 \
    --heads 4 --kv-heads 2 --intermediate 64 --seed 5 --out "$d/m" >/dev/null || { echo "init-model failed"; exit 1; }
cat > "$d/c.yaml" <<YAML
model: {path: $d/m}
data:
  files: [$ASSETS/paper-data/snli/snli_zh10k_train_question.json, $ASSETS/paper-data/snli/snli_es10k_train_question.json]
  max_examples: 40
  template: qwen
  cutoff: 128
  packing: true
lora: {targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj], r: 4, alpha: 8, dropout: 0.1}
train: {max_steps: 4, micro_batch: 2, grad_accum: 4, lr: 1.0e-2, schedule: constant, warmup_ratio: 0, eval_every: 2,
       log_every: 1, threads: 1, max_grad_norm: 0.5}
checkpoint: {dir: $d/run, every: 2, keep_last: 5}
eval: {every: 2, at_end: false, limit: 2, langs: [en, zh], tasks: [emotion], data_dir: $ASSETS/paper-data}
YAML
run() { # name device [extra --set ...]
  local name=$1 dev=$2; shift 2
  "$Q" train --config "$d/c.yaml" --set model.device=$dev --set checkpoint.dir=$d/$name "$@" >"$d/$name.log" 2>&1
}
run cpu cpu; rc_cpu=$?
run emu emu; rc_emu=$?
check "train cpu and emu exit 0 ($(tail -2 "$d/emu.log"))" '[ $rc_cpu -eq 0 ] && [ $rc_emu -eq 0 ]'
check "emu run says where it ran" 'grep -q " on emu" "$d/emu.log"'
check "training losses, grad norms, validation losses: emu == cpu" '[ -n "$(losses "$d/cpu/metrics.jsonl")" ] && [ "$(losses "$d/cpu/metrics.jsonl")" = "$(losses "$d/emu/metrics.jsonl")" ]'
check "adapter: emu == cpu (bytes)" 'same "$d/cpu/adapter/adapter_model.safetensors" "$d/emu/adapter/adapter_model.safetensors"'
for s in 2 4; do
  c=$(ls "$d/cpu/checkpoints/"*"$s".h5 2>/dev/null | head -1) g=$(ls "$d/emu/checkpoints/"*"$s".h5 2>/dev/null | head -1)
  check "checkpoint step $s: LoRA, AdamW m and v: emu == cpu" '[ -n "$c" ] && [ -n "$g" ] && h5same "$c" "$g" /lora && h5same "$c" "$g" /optim'
done
bestof() { sed -e 's/"checkpoint": *"[^"]*"//' "$1/best/best.json" 2>/dev/null; } # step, loss, pass: not the path
check "best checkpoint (checkpoint.keep_best) from the host mirror: emu == cpu (best.json, /lora, adapter-best bytes)" \
  '[ -n "$(bestof "$d/cpu")" ] && [ "$(bestof "$d/cpu")" = "$(bestof "$d/emu")" ] &&
   h5same "$(ls "$d/cpu/best/checkpoints/"*.h5)" "$(ls "$d/emu/best/checkpoints/"*.h5)" /lora &&
   same "$d/cpu/adapter-best/adapter_model.safetensors" "$d/emu/adapter-best/adapter_model.safetensors"'
check "evaluation during training: emu == cpu" 'same "$d/cpu/eval/step_00000002/predictions.jsonl" "$d/emu/eval/step_00000002/predictions.jsonl"'

# resume on the device: stop after step 2 (max_steps 2), then continue to 4 (a constant schedule: a decaying one
# is a function of max_steps)
run res emu --set train.max_steps=2; r1=$?
run res emu; r2=$?
check "resumed run exit 0" '[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && grep -q "resumed from" "$d/res.log"'
check "resume on emu: the same best step and adapter-best" \
  '[ "$(bestof "$d/res")" = "$(bestof "$d/emu")" ] && same "$d/res/adapter-best/adapter_model.safetensors" "$d/emu/adapter-best/adapter_model.safetensors"'
check "resume on emu == uninterrupted emu (adapter bytes)" 'same "$d/res/adapter/adapter_model.safetensors" "$d/emu/adapter/adapter_model.safetensors"'

# two ranks: the gradient all-reduce over device buffers (staged communicator) keeps the bits
if [ ${#MPIRUN[@]} -gt 0 ]; then
  "${MPIRUN[@]}" 2 "$Q" train --config "$d/c.yaml" --set model.device=emu --set checkpoint.dir=$d/np2e >"$d/np2e.log" 2>&1; a=$?
  "${MPIRUN[@]}" 2 "$Q" train --config "$d/c.yaml" --set model.device=cpu --set checkpoint.dir=$d/np2c >"$d/np2c.log" 2>&1; b=$?
  check "np=2 runs exit 0 ($(tail -2 "$d/np2e.log"))" '[ $a -eq 0 ] && [ $b -eq 0 ]'
  check "np=2 emu == np=2 cpu == np=1 (adapter bytes)" 'same "$d/np2e/adapter/adapter_model.safetensors" "$d/np2c/adapter/adapter_model.safetensors" && same "$d/np2e/adapter/adapter_model.safetensors" "$d/cpu/adapter/adapter_model.safetensors"'
  check "np=2 emu: the same best step and adapter-best as np=1" '[ "$(bestof "$d/np2e")" = "$(bestof "$d/cpu")" ] && same "$d/np2e/adapter-best/adapter_model.safetensors" "$d/cpu/adapter-best/adapter_model.safetensors"'
  check "np=2 emu: losses == np=1" '[ "$(losses "$d/np2e/metrics.jsonl" | grep -v grad_norm)" = "$(losses "$d/cpu/metrics.jsonl" | grep -v grad_norm)" ]'
else
  echo "no MPI launcher: the np=2 device all-reduce is not checked here"
fi

# evaluation with the adapter, prefix cache on and off, and activation dumps
for dev in cpu emu; do
  "$Q" eval --model "$d/m" --adapter "$d/cpu/adapter" --data "$ASSETS/paper-data" --limit 3 --langs en,zh,th \
      --device $dev --out "$d/ev-$dev" >"$d/ev-$dev.log" 2>&1 || echo "eval $dev failed: $(tail -2 "$d/ev-$dev.log")"
  "$Q" eval --model "$d/m" --adapter "$d/cpu/adapter" --data "$ASSETS/paper-data" --limit 2 --langs en,zh --tasks snli \
      --no-prefix-cache --device $dev --out "$d/evn-$dev" >/dev/null 2>&1 || echo "eval --no-prefix-cache $dev failed"
  "$Q" eval --model "$d/m" --data "$ASSETS/paper-data" --tasks emotion --langs en,zh --limit 3 --prompt target-labels \
      --device $dev --dump-activations "$d/dump-$dev.h5" >/dev/null 2>&1 || echo "dump $dev failed"
done
check "eval predictions: emu == cpu" '[ -s "$d/ev-cpu/predictions.jsonl" ] && same "$d/ev-cpu/predictions.jsonl" "$d/ev-emu/predictions.jsonl"'
check "eval without prefix cache: emu == cpu" '[ -s "$d/evn-cpu/predictions.jsonl" ] && same "$d/evn-cpu/predictions.jsonl" "$d/evn-emu/predictions.jsonl"'
for ds in /last /mean; do
  check "dump $ds: emu == cpu" '[ -s "$d/dump-cpu.h5" ] && h5same "$d/dump-cpu.h5" "$d/dump-emu.h5" $ds'
done
for dev in cpu emu; do
  "$Q" lens --model "$d/m" --dump "$d/dump-cpu.h5" --langs zh --device $dev --out "$d/lens-$dev" >"$d/lens-$dev.log" 2>&1 ||
    echo "lens $dev failed: $(tail -2 "$d/lens-$dev.log")"
done
check "logit lens: emu == cpu (lens.csv)" '[ -s "$d/lens-cpu/lens.csv" ] && same "$d/lens-cpu/lens.csv" "$d/lens-emu/lens.csv"'

# an NF4 base (QLoRA: the 4-bit weight block uploaded whole, the ops dequantize it on the device): training,
# evaluation and forward on emu == cpu
for dev in cpu emu; do
  run nf4-$dev $dev --set model.quant=nf4 --set train.max_steps=2 --set eval.every=0; eval "rq_$dev=\$?"
done
check "QLoRA train cpu and emu exit 0 ($(tail -2 "$d/nf4-emu.log"))" '[ $rq_cpu -eq 0 ] && [ $rq_emu -eq 0 ]'
check "QLoRA: losses and adapter: emu == cpu" '[ -n "$(losses "$d/nf4-cpu/metrics.jsonl")" ] && [ "$(losses "$d/nf4-cpu/metrics.jsonl")" = "$(losses "$d/nf4-emu/metrics.jsonl")" ] && same "$d/nf4-cpu/adapter/adapter_model.safetensors" "$d/nf4-emu/adapter/adapter_model.safetensors"'
check "QLoRA adapter differs from the BF16-base adapter" '! same "$d/nf4-cpu/adapter/adapter_model.safetensors" "$d/cpu/adapter/adapter_model.safetensors"'
for dev in cpu emu; do
  "$Q" eval --model "$d/m" --quant nf4 --adapter "$d/nf4-cpu/adapter" --data "$ASSETS/paper-data" --limit 3 --langs en,zh \
      --device $dev --out "$d/evq-$dev" >"$d/evq-$dev.log" 2>&1 || echo "eval --quant nf4 $dev failed: $(tail -2 "$d/evq-$dev.log")"
  "$Q" forward --model "$d/m" --quant nf4-dq --ids 1,2,3,4,5 --hidden-states --all-logits --device $dev >"$d/fwq-$dev.txt" 2>&1 ||
    echo "forward --quant nf4-dq $dev failed: $(tail -2 "$d/fwq-$dev.txt")"
done
check "eval --quant nf4: emu == cpu" '[ -s "$d/evq-cpu/predictions.jsonl" ] && same "$d/evq-cpu/predictions.jsonl" "$d/evq-emu/predictions.jsonl"'
check "forward --quant nf4-dq: emu == cpu (logits, hidden states)" '[ -s "$d/fwq-cpu.txt" ] && diff -q <(grep -v " on \(cpu\|emu\)" "$d/fwq-cpu.txt") <(grep -v " on \(cpu\|emu\)" "$d/fwq-emu.txt") >/dev/null'
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
