#!/usr/bin/env bash
# load_7b.sh — generate a Mistral-7B-shaped BF16 checkpoint with `qalign init-model` (streamed, sharded
# like save_pretrained), load it with io/ (bench_load_7b) and report peak RSS vs weight bytes against a
# naive read-into-malloc peer; the checkpoint (~14.5 GB) is deleted afterwards.
# usage: bench/load_7b.sh [BUILD_DIR] [WORK_DIR]   (needs ~16 GB free in WORK_DIR)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$here/build}
work=${2:-$build/bench-load-7b}
qalign=$build/qalign
bench=$build/bench/bench_load_7b
[ -x "$bench" ] || bench=$build/bench_load_7b
for b in "$qalign" "$bench"; do [ -x "$b" ] || { echo "load_7b.sh: $b not built (cmake --build $build)" >&2; exit 2; }; done
mkdir -p "$work"
need_kb=$((16 * 1024 * 1024))
avail_kb=$(df -Pk "$work" | awk 'NR==2 {print $4}')
df -h "$work"
if [ "$avail_kb" -lt "$need_kb" ]; then
  echo "load_7b.sh: only $((avail_kb / 1024 / 1024)) GiB free in $work; need 16 GiB" >&2; exit 2
fi
model=$work/mistral-7b-shape
trap 'rm -rf "$model" "$work/tokenizer.json"' EXIT

# a tokenizer with 32000 ids (the real Mistral one when the assets are unpacked)
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
/usr/bin/time -f "init-model: %e s wall, peak RSS %M kB" \
  "$qalign" init-model --arch mistral --tokenizer "$tok" --hidden 4096 --layers 32 --heads 32 --kv-heads 8 \
  --intermediate 14336 --sliding-window 4096 --seed 1 --out "$model"
ls -la "$model"
"$qalign" info "$model"

echo "== load (warm page cache: the files were just written)"
"$bench" "$model"
