#!/usr/bin/env bash
# demo.sh — the main job on the embedded default, end to end on 2 CPU cores:
#   1. set up (Debian packages, Python oracles, assets) and build qalign
#   2. a tiny random Qwen2-shaped model with the real Qwen1.5 tokenizer (qalign init-model)
#   3. evaluate the base model on the paper's 3 tasks x 20 languages (a few items each)
#   4. question alignment: LoRA training on the paper's zh+es SNLI question files, 2 MPI ranks
#   5. evaluate again with the trained adapter: a before/after table for all 20 languages
#   6. the training curve (best validation step marked) and the aligned model under the paper's two other
#      emotion scorings (target-language labels, the irrelevant-label control)
#   7. look inside (paper Figures 1-2): activation dumps of base and aligned model on the emotion prompt with
#      target-language demo labels, the logit lens (base vs aligned, with the energy) and PCA / Pearson by
#      language, and the PCA coloured by record-index bucket
#   8. a sweep: the tiny grid (2 random models x 3 language mixes, configs/sweeps/tiny.yaml) trained,
#      evaluated and reported on this machine: a table per task, heatmaps, loss curves (docs/sweeps.md)
# The model is random, so the accuracies are chance-level noise: the demo shows the machinery.
# Point configs/demo.yaml (model.path) at a real checkpoint for real numbers (README.md).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
bash scripts/setup.sh
export PATH="$here/.venv/bin:$PATH"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
cmake -S . -B build -DQALIGN_CUDA=${QALIGN_CUDA:-AUTO} >build-configure.log 2>&1 || { cat build-configure.log; exit 1; }
cmake --build build -j"$(nproc)"
Q=$here/build/qalign
LIMIT=${QALIGN_DEMO_LIMIT:-10}
RANKS=${QALIGN_DEMO_RANKS:-2}

if [ ! -f demo/model/model.safetensors ]; then
  "$Q" init-model --arch qwen2 --tokenizer assets/tokenizers/qwen1_5-qwen2.tokenizer.json --seed 1 --out demo/model
fi
"$Q" info demo/model

echo "== evaluation of the base model (--limit $LIMIT per task and language) =="
mpirun -np "$RANKS" "$Q" eval --model demo/model --limit "$LIMIT" --out demo/eval-base

echo "== question alignment: LoRA training on zh+es SNLI questions, $RANKS ranks =="
mpirun -np "$RANKS" "$Q" train --config configs/demo.yaml

echo "== evaluation with the trained adapter =="
mpirun -np "$RANKS" "$Q" eval --model demo/model --adapter runs/demo/adapter --limit "$LIMIT" --out demo/eval-aligned

"$Q" eval-compare demo/eval-base demo/eval-aligned --out demo/before-after.md

echo "== the training curve; the paper's other emotion scorings (target-language labels, the ox/horse control) =="
"$Q" loss-curve runs/demo --out demo/analysis/loss --title "Training loss: the demo run (random model)"
for mode in target-labels irrelevant-labels; do
  mpirun -np "$RANKS" "$Q" eval --model demo/model --adapter runs/demo/adapter --tasks emotion --scoring "$mode" \
    --limit "$LIMIT" --out "demo/eval-aligned-$mode"
done

ALIMIT=${QALIGN_DEMO_ANALYSIS_LIMIT:-20}
echo "== looking inside: activation dumps, logit lens, PCA (--limit $ALIMIT per language) =="
ALANGS=en,de,fr,hi,th,sw,ms,zh,ru,ja,bn
mpirun -np "$RANKS" "$Q" eval --model demo/model --tasks emotion --langs "$ALANGS" --limit "$ALIMIT" \
  --prompt target-labels --dump-activations demo/analysis/base.h5
mpirun -np "$RANKS" "$Q" eval --model demo/model --adapter runs/demo/adapter --tasks emotion --langs "$ALANGS" \
  --limit "$ALIMIT" --prompt target-labels --dump-activations demo/analysis/aligned.h5
"$Q" lens --model demo/model --dump demo/analysis/base.h5 --label base --dump demo/analysis/aligned.h5 \
  --label aligned --langs zh,ru,ja,hi,sw,th,bn --out demo/analysis/lens
"$Q" pca --dump demo/analysis/aligned.h5 --langs en,de,fr,hi,th,sw,ms --bucket-size $(( (ALIMIT + 4) / 5 )) \
  --out demo/analysis/pca
echo "demo: loss curve demo/analysis/loss/loss.png, adapters runs/demo/adapter + adapter-best, table demo/before-after.md,"
echo "      logit lens demo/analysis/lens/lens_<lang>.png (+ lens_energy.csv), PCA demo/analysis/pca/pca.png,"
echo "      pca_buckets.png + pearson.md, scorings demo/eval-aligned-{target,irrelevant}-labels/results.md"

echo "== a sweep: the tiny grid (2 random models x 3 mixes) on this machine (qalign sweep submit --local) =="
if [ ! -f demo/model-mistral/model.safetensors ]; then
  "$Q" init-model --arch mistral --tokenizer assets/tokenizers/mistral-7b-v0.1.tokenizer.json --seed 1 --out demo/model-mistral
fi
"$Q" sweep submit configs/sweeps/tiny.yaml --local
echo "sweep: tables runs/sweeps/tiny/report/{emotion,snli,paws,summary}.md, heatmaps runs/sweeps/tiny/report/heatmap_*.png"
echo "       (e.g. heatmap_tiny-mistral_emotion.png: training mix x evaluation language), losses loss.png"
