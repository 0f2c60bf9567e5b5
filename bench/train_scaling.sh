#!/usr/bin/env bash
# train_scaling.sh — data-parallel scaling of `qalign train` on this machine: the same global batch
# (16 rows of 256 tokens per optimizer step) on 1 rank and on 2 ranks, one thread per rank, and the
# share of each step spent in the collectives (gradient all-reduce + loss / token counts, including
# the wait for the slower rank). Scaling efficiency = tokens/s(np=2) / (2 x tokens/s(np=1)).
#   bash bench/train_scaling.sh [BUILD_DIR] [STEPS]
#   env: REPEATS (3): np=1 and np=2 runs alternate this many times, so that load from other processes
#        hits both; each keeps its fastest run (mean step time over its steps after the first).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=${1:-$here/build}; STEPS=${2:-8}; REPEATS=${REPEATS:-3}
Q=$B/qalign
[ -x "$Q" ] || { echo "build qalign first (cmake --build $B)"; exit 1; }
[ -f "$here/assets/tokenizers/mistral-7b-v0.1.tokenizer.json" ] || bash "$here/scripts/fetch-assets.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
W=$(mktemp -d /tmp/qa_scaling.XXXXXX)
trap 'rm -rf "$W"' EXIT
"$Q" init-model --arch llama --tokenizer "$here/assets/tokenizers/mistral-7b-v0.1.tokenizer.json" --hidden 512 \
    --layers 4 --heads 8 --kv-heads 2 --intermediate 1408 --seed 1 --out "$W/model" >/dev/null
python3 - "$W/data.json" <<'PY'
import json, random, sys
random.seed(0)
recs = []
for i in range(512):
    ids = [random.randrange(3, 32000) for _ in range(256)]
    recs.append({"input_ids": ids, "labels": [-100] * 128 + ids[128:]})
json.dump(recs, open(sys.argv[1], "w"))
PY
cat > "$W/c.yaml" <<YAML
model: {path: $W/model}
data: {files: [$W/data.json], template: none, cutoff: 256, packing: false, val_fraction: 0}
train: {max_steps: $STEPS, micro_batch: 4, grad_accum: 4, lr: 1.0e-4, eval_every: 0, log_every: 100, threads: 1}
checkpoint: {dir: $W/run, every: 0}
YAML
run() { # np
  rm -rf "$W/run"
  if [ "$1" = 1 ]; then "$Q" train --config "$W/c.yaml" >/dev/null
  else mpirun -np "$1" --bind-to none "$Q" train --config "$W/c.yaml" >/dev/null; fi
  python3 - "$W/run/metrics.jsonl" "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
rows = rows[1:]  # the first step warms caches
st = sum(r["step_time_s"] for r in rows) / len(rows)
cm = sum(r["comm_s"] for r in rows) / len(rows)
tok = sum(r["tokens"] for r in rows) / len(rows)
print(f"{sys.argv[2]} {st:.4f} {cm:.5f} {tok/st:.1f}")
PY
}
r1=; r2=
faster() { # keep the run line with the smaller step time
  if [ -z "$1" ]; then echo "$2"; else awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " ");
    print (y[2] < x[2]) ? b : a }'; fi; }
for i in $(seq 1 "$REPEATS"); do
  a=$(run 1); b=$(run 2)
  echo "repeat $i / $REPEATS: np=1 step ${a#* } | np=2 step ${b#* }  (step_s comm_s tokens/s)"
  r1=$(faster "$r1" "$a"); r2=$(faster "$r2" "$b")
done
read -r _ st1 cm1 tps1 <<<"$r1"; read -r _ st2 cm2 tps2 <<<"$r2"
lora=$(python3 -c "print(4*8*((512+512) + (512+128)))")
echo "qalign train, llama-shaped hidden 512 x 4 layers, LoRA q,v r=8 ($lora parameters), 16 x 256 tokens per step, 1 thread per rank, best of $REPEATS; load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-6s %12s %12s %12s %12s\n" ranks step_s comm_s comm_share tokens/s
printf "%-6s %12.3f %12.4f %11.1f%% %12.0f\n" 1 "$st1" "$cm1" "$(python3 -c "print(100*$cm1/$st1)")" "$tps1"
printf "%-6s %12.3f %12.4f %11.1f%% %12.0f\n" 2 "$st2" "$cm2" "$(python3 -c "print(100*$cm2/$st2)")" "$tps2"
eff=$(python3 -c "print(f'{$tps2/(2*$tps1):.3f}')")
echo "speedup=$(python3 -c "print(f'{$tps2/$tps1:.3f}')") scaling_efficiency=$eff comm_share_np2=$(python3 -c "print(f'{$cm2/$st2:.4f}')")"
