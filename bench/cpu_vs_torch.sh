#!/usr/bin/env bash
# cpu_vs_torch.sh — qalign vs PyTorch on this machine's CPU, same thread count: the LoRA training step
# (forward, loss on the labelled positions, backward, AdamW; q,v r=8) and the evaluation forward (next-token
# logits at the last position of each row) of a Llama-shaped model (hidden 512, 8 layers, 8 / 2 heads, intermediate 1408, vocab 32000,
# random weights written by `qalign init-model`), batch 4 x 256, plus an sgemm ceiling measured in the
# same run (the faster of OpenBLAS and torch.mm on [2048 x 2048]^2).
#
# usage: bench/cpu_vs_torch.sh [BUILD_DIR] [WORK_DIR]
#   env: THREADS (2), ROUNDS (8), STEPS (timed training steps per process, 3; the evaluation forward gets
#        3x as many), LABELS (half: the second half of each row is labelled, as in instruction data; all),
#        VENV (repo/.venv), TORCH_DTYPE (fp32 | bf16 | auto: bf16 autocast's evaluation forward is timed in
#        the first round, and its training step too unless that forward is >= 1.5x slower than fp32)
# Creates / reuses the venv and pip-installs torch (PyPI) into it when missing. Rounds alternate
# qalign and PyTorch so that load from other processes hits both; in each round each side keeps its best
# step (after a warm-up step), and the two are paired.
# The last line reads: train_ratio=R1 eval_ratio=R2 ceiling_fraction=F
#   R1, R2: the median over rounds of qalign tokens/s over PyTorch tokens/s in the same round (the ratio of
#   the best steps over all rounds is printed too); F: qalign's training GFLOP/s (model FLOPs, the same
#   count for both; its median round) over the ceiling (the best sgemm of all rounds).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$here/build}
work=${2:-$build/bench-cpu-vs-torch}
threads=${THREADS:-2}
rounds=${ROUNDS:-8}
steps=${STEPS:-3}
labels=${LABELS:-half}
venv=${VENV:-$here/.venv}
want_dtype=${TORCH_DTYPE:-auto}
mkdir -p "$work"

# ---- PyTorch (CPU) in the venv ----------------------------------------------------------------
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
py=$venv/bin/python
if ! "$py" -c "import torch, safetensors, numpy" 2>/dev/null; then
  echo "== installing torch, safetensors, numpy into $venv (PyPI)"
  "$py" -m pip install --quiet torch safetensors numpy
fi

# ---- qalign build + model ---------------------------------------------------------------------
cmake --build "$build" -j"$(nproc)" --target bench_cpu_vs_torch >/dev/null
bench=$build/bench/bench_cpu_vs_torch
[ -x "$bench" ] || bench=$build/bench_cpu_vs_torch
model=$work/llama-512x8
if [ ! -f "$model/model.safetensors" ]; then
  cmake --build "$build" -j"$(nproc)" --target qalign >/dev/null || [ -x "$build/qalign" ]
  tok=$here/assets/tokenizers/mistral-7b-v0.1.tokenizer.json
  [ -f "$tok" ] || bash "$here/scripts/fetch-assets.sh" >/dev/null
  "$build/qalign" init-model --arch llama --tokenizer "$tok" --seed 1 --out "$model" --force --hidden 512 \
    --layers 8 --heads 8 --kv-heads 2 --intermediate 1408 >/dev/null
fi

export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
log=$work/results.txt
: > "$log"
q() { "$bench" "$model" "$1" --threads "$threads" --steps "$2" --labels "$labels" | tee -a "$log"; }
t() { "$py" "$here/bench/cpu_vs_torch.py" "$model" "$1" --threads "$threads" --steps "$2" --labels "$labels" \
        --dtype "$3" | tee -a "$log"; }
sec() { sed -n 's/.* sec=\([0-9.]*\).*/\1/p' | tail -1; }

echo "== $(nproc) cores online, $threads threads, labels $labels; torch $("$py" -c 'import torch; print(torch.__version__)'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
bf16_train=0
[ "$want_dtype" = bf16 ] && bf16_train=1
for r in $(seq 1 "$rounds"); do
  echo "== round $r / $rounds"
  q ceiling "$steps"; t mm "$steps" fp32
  q eval $((3 * steps))
  if [ "$want_dtype" != bf16 ]; then t eval $((3 * steps)) fp32; fi
  if [ "$want_dtype" = bf16 ] || { [ "$want_dtype" = auto ] && [ "$r" = 1 ]; }; then
    s16=$(t eval $((3 * steps)) bf16 | sec)
    if [ "$want_dtype" = auto ]; then
      s32=$(grep '^torch eval dtype=fp32' "$log" | tail -1 | sec)
      if awk -v a="$s16" -v b="$s32" 'BEGIN { exit !(a < 1.5 * b) }'; then bf16_train=1
      else echo "   (torch bf16 autocast: evaluation forward ${s16}s vs ${s32}s fp32 -- its training step is not timed)"; fi
    fi
  fi
  q train "$steps"
  if [ "$want_dtype" != bf16 ]; then t train "$steps" fp32; fi
  if [ "$bf16_train" = 1 ] && { [ "$want_dtype" = bf16 ] || [ "$r" = 1 ]; }; then t train "$steps" bf16; fi
done

"$py" - "$log" "$threads" <<'PY'
import sys, collections, statistics
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 2: continue
    kv = dict(x.split("=", 1) for x in f[2:] if "=" in x)
    key = (f[0], f[1], kv.get("dtype", "") if f[0] == "torch" else "")
    if f[1] in ("ceiling", "mm"): key = (f[0], "mm", "")
    rows[key].append(kv)
def best(key):
    return min(rows[key], key=lambda kv: float(kv["sec"]))
med = statistics.median
B, T = 4, 256
tok = B * T
ceil_q = max(float(kv["gflops"]) for kv in rows[("qalign", "mm", "")])
ceil_t = max(float(kv["gflops"]) for kv in rows[("torch", "mm", "")])
ceiling = max(ceil_q, ceil_t)
out = {}
print()
print(f"threads {sys.argv[2]}; sgemm ceiling [2048^3], best of all rounds: OpenBLAS {ceil_q:.1f} GFLOP/s, "
      f"torch.mm {ceil_t:.1f} GFLOP/s -> {ceiling:.1f}")
print("tokens/s and GFLOP/s: median over rounds (best over rounds); ratio: median of the per-round ratios")
print(f"{'':22s}{'qalign':>20s}{'torch fp32':>20s}{'torch bf16':>20s}{'ratio':>8s}")
def cell(vals, fmt):
    return f"{format(med(vals), fmt)} ({format(max(vals), fmt)})".rjust(20) if vals else f"{'-':>20s}"
for mode in ("train", "eval"):
    qa = rows[("qalign", mode, "")]
    peers = {dt: rows[("torch", mode, dt)] for dt in ("fp32", "bf16") if rows[("torch", mode, dt)]}
    # the peer: the PyTorch variant with the faster median step
    pdt = min(peers, key=lambda d: med(float(kv["sec"]) for kv in peers[d]))
    flops = float(qa[0]["flops"])
    qsec = [float(kv["sec"]) for kv in qa]
    psec = [float(kv["sec"]) for kv in peers[pdt]]
    pairs = sorted(p / q for q, p in zip(qsec, psec))   # rounds in order: qalign then torch
    ratio, ratio_best = med(pairs), min(psec) / min(qsec)
    tps = lambda secs: [tok / x for x in secs]
    print(f"{mode + ' tokens/s':22s}{cell(tps(qsec), '.0f')}"
          + "".join(cell(tps([float(kv['sec']) for kv in peers[d]]), ".0f") if d in peers else f"{'-':>20s}"
                    for d in ("fp32", "bf16")) + f"{ratio:8.2f}   (peer: torch {pdt})")
    gf = lambda secs: [flops / x * 1e-9 for x in secs]
    gq = med(gf(qsec))
    print(f"{mode + ' GFLOP/s':22s}{cell(gf(qsec), '.1f')}"
          + "".join(cell(gf([float(kv['sec']) for kv in peers[d]]), ".1f") if d in peers else f"{'-':>20s}"
                    for d in ("fp32", "bf16")) + f"{'':8s}   (median: {gq / ceiling:.0%} of the ceiling)")
    pq = max(int(kv["peak_rss_kb"]) for kv in qa) / 1024
    pp = [f"{max(int(kv['peak_rss_kb']) for kv in peers[d]) / 1024:20.0f}" if d in peers else f"{'-':>20s}"
          for d in ("fp32", "bf16")]
    print(f"{mode + ' peak RSS MiB':22s}{pq:20.0f}{''.join(pp)}")
    bq = max(int(kv["peak_rss_kb"]) - int(kv["base_rss_kb"]) for kv in qa) / 1024
    bp = [f"{max(int(kv['peak_rss_kb']) - int(kv['base_rss_kb']) for kv in peers[d]) / 1024:20.0f}"
          if d in peers else f"{'-':>20s}" for d in ("fp32", "bf16")]
    print(f"{'  above setup MiB':22s}{bq:20.0f}{''.join(bp)}")
    print(f"{mode + ' loss (step 1)':22s}{float(qa[0]['loss']):20.6f}" +
          "".join(f"{float(peers[d][0]['loss']):20.6f}" if d in peers else f"{'-':>20s}" for d in ("fp32", "bf16")))
    print(f"{'  per-round ratios':22s}{' '.join(f'{x:.2f}' for x in pairs)}   "
          f"(median {ratio:.2f}; best step over best step {ratio_best:.2f})")
    out[mode] = (ratio, gq / ceiling)
print(f"train_ratio={out['train'][0]:.2f} eval_ratio={out['eval'][0]:.2f} ceiling_fraction={out['train'][1]:.2f}")
PY
