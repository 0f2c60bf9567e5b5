#!/usr/bin/env bash
# analysis_cli.sh QALIGN TEST_ANALYSIS DATA TMP MPIEXEC [badinput]
# The command line end to end on a tiny random model: `qalign eval --dump-activations` (base and a random
# adapter; 1 and 2 ranks give identical dumps), `qalign lens` (base vs aligned) and `qalign pca`: every
# output file, PNG and SVG signatures, --help. With "badinput": usage errors and refused inputs.
set -u
Q=$1 TA=$2 DATA=$3 TMP=$4 MPI=${5:-}
MODE=${6:-cli}
fail=0 pass=0
check() { if eval "$2"; then pass=$((pass+1)); else echo "FAIL: $1"; fail=$((fail+1)); fi; }
is_png() { [ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }
is_svg() { [ -s "$1" ] && head -c 400 "$1" | grep -q "<svg"; }
M=$TMP/tiny
C=$TMP/cli
EV=(--model "$M" --data "$DATA" --tasks emotion --langs en,de,fr,hi,zh,sw --limit 4 --prompt target-labels)

if [ "$MODE" = badinput ]; then
  msg=$("$Q" eval --model "$M" --data "$DATA" --tasks snli --langs en --limit 1 --prompt target-labels \
        --dump-activations "$C/x.h5" 2>&1); rc=$?
  check "target-labels prompt for snli refused ($msg)" '[ $rc -ne 0 ] && grep -q "prefix_target_labels" <<<"$msg"'
  check "no file left" '[ ! -e "$C/x.h5" ] && [ ! -e "$C/x.h5.partial" ]'
  msg=$("$Q" eval --model "$M" --prompt nonsense --out "$C/x" 2>&1); rc=$?
  check "unknown prompt variant: usage error" '[ $rc -eq 2 ] && grep -q "target-labels" <<<"$msg"'
  msg=$("$Q" lens --dump "$C/base.h5" --out "$C/x" 2>&1); rc=$?
  check "lens without --model: usage error" '[ $rc -eq 2 ] && grep -q -- "--model" <<<"$msg"'
  msg=$("$Q" lens --label x --model "$M" 2>&1); rc=$?
  check "lens --label before --dump: usage error" '[ $rc -eq 2 ]'
  msg=$("$Q" pca --dump "$C/base.h5" 2>&1); rc=$?
  check "pca without --out: usage error" '[ $rc -eq 2 ]'
  msg=$("$Q" pca --dump "$C/base.h5" --out "$C/x" --pool median 2>&1); rc=$?
  check "pca --pool median: usage error" '[ $rc -eq 2 ] && grep -q "mean or last" <<<"$msg"'
  msg=$("$Q" pca --dump "$C/base.h5" --out "$C/x" --format gif 2>&1); rc=$?
  check "pca --format gif: usage error" '[ $rc -eq 2 ]'
  msg=$("$Q" lens --model "$TMP/tiny-l3" --dump "$C/base.h5" --out "$C/x" 2>&1); rc=$?
  check "lens with another model: exit 1 naming the dump ($msg)" \
    '[ $rc -eq 1 ] && grep -q "base.h5" <<<"$msg" && grep -q "another model" <<<"$msg"'
  msg=$("$Q" pca --dump "$C/nonexistent.h5" --out "$C/x" 2>&1); rc=$?
  check "pca of a missing dump: exit 1 naming it" '[ $rc -eq 1 ] && grep -q "nonexistent.h5" <<<"$msg"'
  echo "$pass passed, $fail failed"
  [ $fail -eq 0 ]; exit
fi

rm -rf "$C"; mkdir -p "$C"
"$Q" eval "${EV[@]}" --dump-activations "$C/base.h5" --dump-batch 3 --out "$C/eval-base" >"$C/log" 2>&1
check "eval --dump-activations (base) exits 0" '[ $? -eq 0 ] || { cat "$C/log"; false; }'
check "results.json records the prompt variant" 'grep -q "\"prompt_variant\": \"target-labels\"" "$C/eval-base/results.json"'
check "results.md names the prompt" 'grep -q "target-labels" "$C/eval-base/results.md"'
"$Q" eval "${EV[@]}" --adapter "$TMP/adapter" --dump-activations "$C/aligned.h5" --dump-batch 3 >"$C/log" 2>&1
check "eval --dump-activations (adapter, dump only) exits 0" '[ $? -eq 0 ] || { cat "$C/log"; false; }'
check "dump only: no results written" '[ ! -e "$C/results.json" ]'
if [ -n "$MPI" ] && [ "$MPI" != - ]; then
  "$MPI" --allow-run-as-root --oversubscribe -n 2 "$Q" eval "${EV[@]}" --adapter "$TMP/adapter" \
     --dump-activations "$C/aligned_np2.h5" --dump-batch 3 >"$C/log" 2>&1
  check "2 ranks exit 0" '[ $? -eq 0 ] || { cat "$C/log"; false; }'
  check "np=2 dump identical to np=1" '"$TA" same "$C/aligned.h5" "$C/aligned_np2.h5" >"$C/log" 2>&1 || { cat "$C/log"; false; }'
fi
"$Q" lens --model "$M" --dump "$C/base.h5" --dump "$C/aligned.h5" --out "$C/lens" >"$C/log" 2>&1
check "qalign lens exits 0" '[ $? -eq 0 ] || { cat "$C/log"; false; }'
for f in lens.csv lens_items.csv lens_kept.csv lens.h5; do check "lens: $f" '[ -s "$C/lens/$f" ]'; done
for l in en hi zh sw; do
  check "lens_$l.png is a PNG" 'is_png "$C/lens/lens_$l.png"'
  check "lens_$l.svg is an SVG" 'is_svg "$C/lens/lens_$l.svg"'
done
# de/fr: every item shares a Latin prefix between the target and English sets (§8 filter): no figure
for l in de fr; do
  check "lens: $l items all dropped (overlap), no figure" \
    'grep -q "^0,base,$l,4,0,0,4,0$" "$C/lens/lens_kept.csv" && [ ! -e "$C/lens/lens_$l.png" ]'
done
check "lens.csv: 2 series x 6 languages x 2 layers x 5 quantities + header" '[ $(wc -l < "$C/lens/lens.csv") -eq 121 ]'
check "lens_kept.csv: labels base and aligned" 'grep -q "^0,base,en,4," "$C/lens/lens_kept.csv" && grep -q "^1,aligned,hi," "$C/lens/lens_kept.csv"'
"$Q" pca --dump "$C/aligned.h5" --out "$C/pca" --langs en,de,fr,hi,sw >"$C/log" 2>&1
check "qalign pca exits 0" '[ $? -eq 0 ] || { cat "$C/log"; false; }'
for f in pca.h5 pca_scores.csv pca_variance.csv pearson.csv pearson.md; do check "pca: $f" '[ -s "$C/pca/$f" ]'; done
check "pca.png is a PNG" 'is_png "$C/pca/pca.png"'
check "pca.svg is an SVG" 'is_svg "$C/pca/pca.svg"'
check "pca_layer_02.png is a PNG" 'is_png "$C/pca/pca_layer_02.png"'
check "pearson.md: the paper's pairs present" 'grep -q "en–de" "$C/pca/pearson.md" && grep -q "fr–hi" "$C/pca/pearson.md" && grep -q "en–sw" "$C/pca/pearson.md"'
"$Q" pca --dump "$C/base.h5" --out "$C/pca-last" --pool last --all-pairs --layers 1 --plot-layers 2 --format svg >"$C/log" 2>&1
check "pca --pool last --all-pairs --format svg" '[ $? -eq 0 ] && is_svg "$C/pca-last/pca.svg" && [ ! -e "$C/pca-last/pca.png" ] || { cat "$C/log"; false; }'
check "--all-pairs: 15 pairs x 2 layers" '[ $(wc -l < "$C/pca-last/pearson.csv") -eq 31 ]'
for c in lens pca; do
  out=$("$Q" $c --help); check "$c --help" '[ $? -eq 0 ] && grep -q "usage: qalign $c" <<<"$out"'
done
out=$("$Q" eval --help); check "eval --help lists --dump-activations and --prompt" 'grep -q -- "--dump-activations" <<<"$out" && grep -q -- "--prompt" <<<"$out"'
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
