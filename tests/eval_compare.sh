#!/usr/bin/env bash
# eval-compare: the table carries both runs, the difference and the averages; mismatched gold modes
# and files that are not results.json are refused with a message naming the file.
set -u
Q=$1
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0; pass=0
check() { if eval "$2"; then pass=$((pass+1)); else echo "FAIL: $1"; fail=$((fail+1)); fi; }
mk() { # dir gold acc_en acc_zh
  mkdir -p "$1"
  cat > "$1/results.json" <<JSON
{"model": "m", "adapter": null, "gold": "$2", "precision": "fp32", "limit": 10,
 "tasks": ["emotion"], "languages": ["en", "zh"],
 "accuracy": {"emotion": {"en": $3, "zh": $4}}}
JSON
}
mk "$d/a" corrected 0.5 0.25
mk "$d/b" corrected 0.75 0.5
mk "$d/p" paper 0.5 0.5
out=$("$Q" eval-compare "$d/a" "$d/b" --out "$d/t.md"); rc=$?
check "exit 0" '[ $rc -eq 0 ]'
check "base row" 'grep -q "| emotion | base | 50.0 | 25.0 | 37.5 |" <<<"$out"'
check "aligned row" 'grep -q "|  | aligned | 75.0 | 50.0 | 62.5 |" <<<"$out"'
check "delta row" 'grep -q "|  | Δ | +25.0 | +25.0 | +25.0 |" <<<"$out"'
check "--out written" 'cmp -s "$d/t.md" <(printf "%s\n" "$out")'
msg=$("$Q" eval-compare "$d/a" "$d/p" 2>&1); rc=$?
check "gold mismatch refused" '[ $rc -ne 0 ] && grep -q "gold mode" <<<"$msg"'
echo '[1,2]' > "$d/x.json"
msg=$("$Q" eval-compare "$d/a" "$d/x.json" 2>&1); rc=$?
check "not a results.json" '[ $rc -ne 0 ] && grep -q "x.json" <<<"$msg"'
msg=$("$Q" eval-compare "$d/a" "$d/missing" 2>&1); rc=$?
check "missing file named" '[ $rc -ne 0 ] && grep -q "missing" <<<"$msg"'
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
