#!/usr/bin/env bash
# golden_fixtures.sh OUT PYTHON SHARED — make sure the golden fixtures exist at OUT (…/hf) before the tests that
# read them: kept when they are there and newer than tests/gen_golden.py, else generated with PYTHON (an
# interpreter with torch, transformers and peft: .venv-hf from scripts/setup.sh). Exit 77 (skipped) with a
# message when no such interpreter is there.
set -euo pipefail
OUT=$1 PY=${2:-} SHARED=${3:?the shared fixture directory tried first}
GEN=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/gen_golden.py
have_py() { [ -n "$PY" ] && "$PY" -c "import torch, transformers, peft" 2>/dev/null; }
if ls "$OUT"/*/golden.safetensors >/dev/null 2>&1; then
  # made by hand (no stamp), or by this script after the last change of gen_golden.py: use them
  if [ ! -f "$OUT/.generated" ] || [ "$OUT/.generated" -nt "$GEN" ] || ! have_py; then
    echo "golden_fixtures: using $OUT ($(cat "$OUT/.generated" 2>/dev/null || echo "made by hand"))"
    exit 0
  fi
fi
if ! have_py; then
  echo "golden_fixtures: skipped: no golden fixtures at $SHARED nor $OUT, and no Python with torch, transformers"
  echo "  and peft to make them. Make them with:  bash scripts/setup.sh   (creates .venv-hf), then"
  echo "  .venv-hf/bin/python tests/gen_golden.py --out $OUT   and re-run cmake (or ctest -L golden)."
  exit 77
fi
echo "golden_fixtures: generating $OUT with $PY tests/gen_golden.py (transformers + peft, float64 on the CPU)"
"$PY" "$GEN" --out "$OUT"
date -u +"generated %Y-%m-%dT%H:%M:%SZ by tests/gen_golden.py" > "$OUT/.generated"
