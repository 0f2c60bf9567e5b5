#!/usr/bin/env bash
# qalign sweep plan: the tiny grid (cells, ids, resource groups, job scripts that pass bash -n, the
# submission it would make), every cell's memory estimate equal to `qalign train --dry-run` of its
# config, GPU resources for model.device auto on a cluster with GPUs, and the paper's SNLI grid on a
# models directory of real configs (config.json + tokenizer.json; no weights are read by a plan).
#   sweep_plan.sh QALIGN SOURCE_DIR ASSETS_DIR
set -u
Q=$1 SRC=$2 ASSETS=$3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
FAIL=0
fail() { echo "FAIL: $*"; FAIL=1; }
cd "$SRC" || exit 1
"$Q" init-model --arch qwen2 --tokenizer "$ASSETS/tokenizers/qwen1_5-qwen2.tokenizer.json" --seed 1 \
    --out "$T/models/model" >/dev/null || exit 1
"$Q" init-model --arch mistral --tokenizer "$ASSETS/tokenizers/mistral-7b-v0.1.tokenizer.json" --seed 1 \
    --out "$T/models/model-mistral" >/dev/null || exit 1
SETS=(--set "models_dir=$T/models" --set "data_dir=$ASSETS/paper-data")

# ---- the tiny grid ---------------------------------------------------------------------------------
"$Q" sweep plan configs/sweeps/tiny.yaml "${SETS[@]}" --set "dir=$T/tiny" > "$T/plan.txt" 2>&1 ||
    { cat "$T/plan.txt"; fail "plan of the tiny grid"; }
cat "$T/plan.txt"
grep -q "sweep tiny: 6 cells (2 model(s) x 3 mix(es) x 1 seed(s))" "$T/plan.txt" || fail "want 6 cells"
grep -q "g0: 3 cell(s); training 1 CPU rank(s) x 1 cpus" "$T/plan.txt" || fail "want group g0 of 3 CPU cells"
grep -q "g1: 3 cell(s)" "$T/plan.txt" || fail "want group g1 of 3 cells"
[ "$(grep -c '^  sbatch' "$T/plan.txt")" = 7 ] || fail "want 7 sbatch lines in what submit would do"
grep -Eq "tiny-qwen/zh\+es/s1@[0-9a-f]{8} +24 " "$T/plan.txt" || fail "tiny-qwen/zh+es: want 24 steps (96 examples / 4 rows)"
for f in train-g0 train-g1 eval-g0 eval-g1 eval-tiny-mistral eval-tiny-qwen report; do
    [ -f "$T/tiny/slurm/$f.sbatch" ] || { fail "no $f.sbatch"; continue; }
    bash -n "$T/tiny/slurm/$f.sbatch" || fail "$f.sbatch: bash -n"
done
grep -q '^#SBATCH --array=0-2%2$' "$T/tiny/slurm/train-g0.sbatch" || fail "train-g0.sbatch: want --array=0-2%2"
grep -q '^#SBATCH --signal=B:USR1@60$' "$T/tiny/slurm/train-g0.sbatch" || fail "train-g0.sbatch: want --signal=B:USR1@60"
grep -q -- '--gpus' "$T/tiny/slurm/train-g0.sbatch" && fail "a CPU cell asks for GPUs"
grep -q 'sweep.sbatch' "$T/tiny/slurm/train-g0.sbatch" || fail "train-g0.sbatch does not run slurm/sweep.sbatch"
# every template a job script names is there
for t in $(grep -ho '\$QALIGN_SLURM_DIR/[a-z]*\.sbatch' "$T"/tiny/slurm/*.sbatch | sort -u); do
    [ -f "$SRC/slurm/${t#\$QALIGN_SLURM_DIR/}" ] || fail "a job script names $t, which is not in slurm/"
done
[ -d "$T/tiny/cells" ] && fail "plan created run directories"

# the memory estimate of every cell is the dry run's
python3 - "$T/tiny/plan.json" "$T/cells" <<'EOF' || fail "could not extract the cells' configs"
import json, os, sys
os.makedirs(sys.argv[2], exist_ok=True)
for c in json.load(open(sys.argv[1]))["cells"]:
    with open(os.path.join(sys.argv[2], "%d.yaml" % c["index"]), "w") as f:
        f.write(c["config"])
    with open(os.path.join(sys.argv[2], "%d.mem" % c["index"]), "w") as f:
        f.write("%.2f\n" % (c["mem_train_bytes"] / 2**30))
EOF
for y in "$T"/cells/*.yaml; do
    want=$(cat "${y%.yaml}.mem")
    got=$("$Q" train --config "$y" --dry-run 2>&1 | sed -n 's/^memory estimate per rank (.*): \([0-9.]*\) GiB$/\1/p')
    [ -n "$got" ] && [ "$got" = "$want" ] || fail "cell $(basename "$y" .yaml): plan says $want GiB, the dry run '$got'"
done

# GPU resources: model.device auto on a cluster with GPUs
"$Q" sweep plan configs/sweeps/tiny.yaml "${SETS[@]}" --set "dir=$T/gpu" --set model.device=auto \
    --set slurm.gpus=yes > "$T/gpu.txt" 2>&1 || { cat "$T/gpu.txt"; fail "plan with GPUs"; }
grep -q "training 1 GPU rank(s) x 1 cpus" "$T/gpu.txt" || fail "model.device auto + GPUs: want GPU ranks"
grep -q '^#SBATCH --gpus-per-task=1$' "$T/gpu/slurm/train-g0.sbatch" || fail "GPU cell without --gpus-per-task=1"
grep -q -- '--device cuda' "$T/gpu/slurm/eval-g0.sbatch" || fail "GPU evaluation without --device cuda"
grep -q 'device: "cuda"' <(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cells"][0]["config"])' "$T/gpu/plan.json") ||
    fail "model.device auto on a GPU cluster should resolve to cuda in the cell's config"

# ---- the paper's SNLI grid on real model configs -------------------------------------------------------
mk() {  # mk DIR TOKENIZER JSON
    mkdir -p "$T/paper-models/$1"
    cp "$ASSETS/tokenizers/$2" "$T/paper-models/$1/tokenizer.json"
    printf '%s\n' "$3" > "$T/paper-models/$1/config.json"
}
QW='"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu", "bos_token_id": 151643, "eos_token_id": 151643, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "tie_word_embeddings": false, "use_sliding_window": false, "sliding_window": 32768, "max_window_layers": 21, "torch_dtype": "bfloat16"'
mk Qwen1.5-1.8B qwen1_5-qwen2.tokenizer.json "{$QW, \"hidden_size\": 2048, \"intermediate_size\": 5504, \"num_hidden_layers\": 24, \"num_attention_heads\": 16, \"num_key_value_heads\": 16, \"vocab_size\": 151936, \"rope_theta\": 1000000.0}"
mk Qwen1.5-4B qwen1_5-qwen2.tokenizer.json "{$QW, \"hidden_size\": 2560, \"intermediate_size\": 6912, \"num_hidden_layers\": 40, \"num_attention_heads\": 20, \"num_key_value_heads\": 20, \"vocab_size\": 151936, \"rope_theta\": 5000000.0}"
mk Qwen1.5-14B qwen1_5-qwen2.tokenizer.json "{$QW, \"hidden_size\": 5120, \"intermediate_size\": 13696, \"num_hidden_layers\": 40, \"num_attention_heads\": 40, \"num_key_value_heads\": 40, \"vocab_size\": 152064, \"rope_theta\": 1000000.0}"
mk Mistral-7B-v0.1 mistral-7b-v0.1.tokenizer.json '{"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2, "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 32768, "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false, "vocab_size": 32000, "torch_dtype": "bfloat16"}'
# (data.max_examples only keeps the test short: the plan tokenizes every cell's data)
"$Q" sweep plan configs/sweeps/paper-snli.yaml --set "models_dir=$T/paper-models" --set "data_dir=$ASSETS/paper-data" \
    --set "dir=$T/paper" --set slurm.gpus=yes --set data.max_examples=200 > "$T/paper.txt" 2>&1 ||
    { cat "$T/paper.txt"; fail "plan of the paper grid"; }
head -30 "$T/paper.txt"
grep -q "sweep paper-snli: 24 cells (4 model(s) x 6 mix(es) x 1 seed(s))" "$T/paper.txt" || fail "paper grid: want 24 cells"
[ "$(grep -c '^  g[0-9]: 6 cell(s); training 1 GPU rank' "$T/paper.txt")" = 4 ] ||
    fail "paper grid: want one GPU group of 6 cells per model"
grep -Eq "qwen1.5-14b/zh\+es/s42@[0-9a-f]{8} " "$T/paper.txt" || fail "paper grid: no qwen1.5-14b/zh+es cell"
# the 14B model does not fit a 24 GiB GPU: one message per cell, nothing planned
"$Q" sweep plan configs/sweeps/paper-snli.yaml --set "models_dir=$T/paper-models" --set "data_dir=$ASSETS/paper-data" \
    --set "dir=$T/paper24" --set slurm.gpus=yes --set data.max_examples=50 --set resources.gpu_mem_gb=24 \
    > "$T/paper24.txt" 2>&1
rc=$?
[ $rc = 2 ] || fail "a cell bigger than a GPU: want exit 2, got $rc"
[ "$(grep -c 'qalign: error: cell qwen1.5-14b/.*more than the 24 GiB of a GPU' "$T/paper24.txt")" = 6 ] ||
    { cat "$T/paper24.txt"; fail "want one message per 14B cell that does not fit a 24 GiB GPU"; }
[ -e "$T/paper24" ] && fail "a refused plan wrote $T/paper24"
[ $FAIL = 0 ] && echo "sweep_plan: ok"
exit $FAIL
