#!/usr/bin/env bash
# prepare.sh — run on the Debian 12 development machine before a GPU check: puts what the GPU machine
# lacks into .gpu-carry/ (ignored by git; name it in the device run's `carry`):
#   .gpu-carry/debs/      jansson, pcre2, OpenBLAS (+ libgfortran5, libquadmath0) .debs for the minimal
#                         build of run_all.sh when the GPU image has no Debian development libraries;
#   .gpu-carry/fixtures/  the HF golden fixtures (../shared does not travel to the GPU machine).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
mkdir -p .git/info .gpu-carry/debs .gpu-carry/fixtures
grep -qx '/.gpu-carry/' .git/info/exclude 2>/dev/null || echo '/.gpu-carry/' >>.git/info/exclude
(cd .gpu-carry/debs && rm -f ./*.deb && apt-get download libjansson4 libjansson-dev libpcre2-dev libpcre2-8-0 \
   libopenblas0-pthread libopenblas-pthread-dev libopenblas-dev libopenblas0 libgfortran5 libquadmath0 2>&1 |
   grep -v "^W: Download is performed unsandboxed" || true)
FIX=${QALIGN_SHARED:-$ROOT/../shared}/fixtures/hf
rm -rf .gpu-carry/fixtures/hf && cp -r "$FIX" .gpu-carry/fixtures/hf
du -sh .gpu-carry
echo "prepare.sh: ready; run on the GPU machine: bash bench/gpu/run_all.sh (carry .gpu-carry)"
