#!/usr/bin/env bash
# nf4_7b.sh — peak memory of an NF4 load of a Mistral-7B-shaped model: `qalign init-model` writes the BF16
# checkpoint (~14.5 GB, deleted afterwards), then bench_load_7b loads it (1) as stored (BF16 mmap: the peer) and
# (2) with --quant nf4 and (3) nf4-dq (the seven projections quantized block by block), each in a fresh process,
# and reports peak RSS per parameter against bitsandbytes' layout (4-bit projections + BF16 embeddings/head).
# usage: bench/nf4_7b.sh [BUILD_DIR] [WORK_DIR]   (needs ~16 GB free in WORK_DIR)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$here/build}
work=${2:-$build/bench-nf4-7b}
qalign=$build/qalign
bench=$build/bench/bench_load_7b
[ -x "$bench" ] || bench=$build/bench_load_7b
for b in "$qalign" "$bench"; do [ -x "$b" ] || { echo "nf4_7b.sh: $b not built (cmake --build $build)" >&2; exit 2; }; done
mkdir -p "$work"
avail_kb=$(df -Pk "$work" | awk 'NR==2 {print $4}')
[ "$avail_kb" -ge $((16 * 1024 * 1024)) ] || { echo "nf4_7b.sh: need 16 GiB free in $work" >&2; exit 2; }
model=$work/mistral-7b-shape
trap 'rm -rf "$model" "$work/tokenizer.json"' EXIT
tok=$here/assets/tokenizers/mistral-7b-v0.1.tokenizer.json
if [ ! -f "$tok" ]; then
  tok=$work/tokenizer.json
  python3 - "$tok" <<'PY'
import json, sys
vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"t{i}": i for i in range(3, 32000)}}
added = [{"id": i, "content": c, "special": True} for i, c in ((0, "<unk>"), (1, "<s>"), (2, "</s>"))]
json.dump({"version": "1.0", "added_tokens": added, "model": {"type": "BPE", "vocab": vocab, "merges": []}},
          open(sys.argv[1], "w"))
PY
fi
echo "== init-model (Mistral-7B shape: hidden 4096, 32 layers, 32/8 heads, intermediate 14336, vocab 32000)"
rm -rf "$model"
"$qalign" init-model --arch mistral --tokenizer "$tok" --hidden 4096 --layers 32 --heads 32 --kv-heads 8 \
  --intermediate 14336 --sliding-window 4096 --seed 1 --out "$model" >/dev/null
"$qalign" info "$model" | sed -n '/^parameters/,/^storage/p'
echo "== peer: BF16 as stored (mmap, every page touched)"
"$bench" "$model" --no-peer | grep -E "weight bytes|after touch|RESULT"
for q in nf4 nf4-dq; do
  echo "== --quant $q"
  /usr/bin/time -f "$q load: %e s wall, max RSS %M kB" "$bench" "$model" --quant "$q"
done
