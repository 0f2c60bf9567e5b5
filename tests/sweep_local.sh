#!/usr/bin/env bash
# qalign sweep submit --local on the tiny grid (fewer steps and languages to stay short): every cell
# trained and evaluated, the base models once, the report's tables equal to what the cells'
# results.json give (sweep_check.py), status, a second submit that does nothing, and a changed grid
# refused by the run directories it would overwrite.
#   sweep_local.sh QALIGN SOURCE_DIR ASSETS_DIR
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
SETS=(--set "models_dir=$T/models" --set "data_dir=$ASSETS/paper-data" --set "dir=$T/sw" --set train.max_steps=3
      --set evaluation.tasks=snli,paws --set evaluation.langs=en,zh,es,sw --set evaluation.limit=3)
G=configs/sweeps/tiny.yaml
"$Q" sweep submit "$G" "${SETS[@]}" --local > "$T/run.txt" 2>&1 || { cat "$T/run.txt"; fail "submit --local"; }
cat "$T/run.txt"
[ "$(grep -c '^  trained ' "$T/run.txt")" = 6 ] || fail "want 6 cells trained"
[ "$(grep -c "^  evaluated model '.*': the base model and 3 adapter(s) on one load" "$T/run.txt")" = 2 ] ||
    fail "want one evaluation per model of the base and its 3 adapters"
python3 "$SRC/tests/sweep_check.py" "$T/sw" || fail "the report disagrees with the evaluations"
for f in snli.md snli.csv paws.md paws.csv summary.md summary.csv results.csv sweep.h5 loss.png loss.svg \
         heatmap_size_mix.png heatmap_tiny-qwen_snli.png heatmap_tiny-mistral_paws.svg; do
    [ -s "$T/sw/report/$f" ] || fail "report/$f is missing"
done
if command -v h5ls >/dev/null; then
    h5ls -r "$T/sw/report/sweep.h5" > "$T/h5.txt"
    grep -q '^/tasks/snli/delta .*Dataset {6, 5}' "$T/h5.txt" || { cat "$T/h5.txt"; fail "sweep.h5: want /tasks/snli/delta [6 rows, 4 languages + avg]"; }
    [ "$(grep -c '^/loss/cell_00[0-5]/loss ' "$T/h5.txt")" = 6 ] || fail "sweep.h5: want the loss of 6 cells"
fi
"$Q" sweep status "$G" "${SETS[@]}" > "$T/status.txt" || fail "status"
grep -q "6 done, 0 running, 0 queued, 0 failed, 0 planned" "$T/status.txt" || { cat "$T/status.txt"; fail "want 6 done"; }
grep -Eq "^tiny-qwen/zh\+es/s1@[0-9a-f]{8} +done +- +3/3 " "$T/status.txt" || fail "status: want step 3/3 of tiny-qwen/zh+es"
before=$(cat "$T"/sw/cells/*/*/*/train.log | wc -l)
"$Q" sweep submit "$G" "${SETS[@]}" --local > "$T/again.txt" 2>&1 || { cat "$T/again.txt"; fail "second submit --local"; }
grep -q "6 cells, 0 to train" "$T/again.txt" || fail "the second submit should train nothing"
[ "$(cat "$T"/sw/cells/*/*/*/train.log | wc -l)" = "$before" ] || fail "the second submit ran something"
# the grid changed (another learning rate): its cells' run directories hold the old runs
"$Q" sweep plan "$G" "${SETS[@]}" --set train.lr=0.5 > "$T/changed.txt" 2>&1
rc=$?
[ $rc = 2 ] || fail "a changed grid over existing run directories: exit $rc, want 2"
[ "$(grep -c 'holds cell .*the config changed; refusing to touch it' "$T/changed.txt")" = 6 ] ||
    { cat "$T/changed.txt"; fail "want 6 refused run directories"; }
[ $FAIL = 0 ] && echo "sweep_local: ok"
exit $FAIL
