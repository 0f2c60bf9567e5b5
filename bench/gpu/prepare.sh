#!/usr/bin/env bash
# prepare.sh — run on the Debian 12 development machine (with the CUDA toolkit) before a GPU check: puts
# into .gpu-carry/ (ignored by git; name it in the device run's `carry`) what the GPU machine lacks:
#   .gpu-carry/prebuilt.tar.xz  qalign, test_ops_cuda, test_golden, test_dist_nccl and bench_gpu_train built
#                               here with -DQALIGN_CUDA=ON for sm_80 + sm_90, and the Debian shared libraries
#                               they need (Open MPI, HDF5, OpenBLAS, ...; not glibc/libstdc++/CUDA/NCCL, which
#                               the GPU image provides); run_all.sh uses it when its binaries start there;
#   .gpu-carry/debs/            jansson, pcre2, OpenBLAS .debs: the fallback minimal build of run_all.sh
#                               (kernels + model only) when the prebuilt binaries do not start there;
#   .gpu-carry/fixtures/hf      the Hugging Face golden fixtures;
#   .gpu-carry/assets.tar.xz    the paper's data and the Qwen1.5 tokenizer (scripts/fetch-assets.sh) for the
#                               evaluation and training checks on the device.
# Environment: QALIGN_FIXTURES_HF (default: the fixtures ctest uses — the shared set when it is there, else
# .fixtures/hf made by tests/gen_golden.py, generated here when missing; docs/testing.md),
# QALIGN_GPU_CARRY_BUILD (default build-gpu-carry).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
C=.gpu-carry
mkdir -p .git/info "$C/debs" "$C/fixtures"
grep -qx '/.gpu-carry/' .git/info/exclude 2>/dev/null || echo '/.gpu-carry/' >>.git/info/exclude

# 1. .debs of the minimal fallback build (a failed download stops here)
(cd "$C/debs" && rm -f ./*.deb && apt-get download -q libjansson4 libjansson-dev libpcre2-dev libpcre2-8-0 \
   libopenblas0-pthread libopenblas-pthread-dev libopenblas-dev libopenblas0 libgfortran5 libquadmath0 \
   2> >(grep -v "^W: Download is performed unsandboxed" >&2))
[ "$(ls "$C"/debs/*.deb | wc -l)" -ge 10 ] || { echo "prepare.sh: apt-get download fetched too few .debs" >&2; exit 1; }

# 2. fixtures
# the same fallback as tests/CMakeLists.txt: the shared set, else the generated one (made now if missing)
SHARED_FIX=${QALIGN_SHARED:-$ROOT/../shared}/fixtures/hf
if [ -n "${QALIGN_FIXTURES_HF:-}" ]; then FIX=$QALIGN_FIXTURES_HF
elif [ -d "$SHARED_FIX" ]; then FIX=$SHARED_FIX
else
  FIX=$ROOT/.fixtures/hf
  bash tests/golden_fixtures.sh "$FIX" "$ROOT/.venv-hf/bin/python" "$SHARED_FIX" ||
    { echo "prepare.sh: no golden fixtures (see above; or set QALIGN_FIXTURES_HF)" >&2; exit 1; }
fi
[ -d "$FIX" ] || { echo "prepare.sh: no fixture directory $FIX (set QALIGN_FIXTURES_HF to the golden fixtures directory)" >&2; exit 1; }
rm -rf "$C/fixtures/hf" && cp -r "$FIX" "$C/fixtures/hf"

# 3. prebuilt binaries + their Debian libraries
B=${QALIGN_GPU_CARRY_BUILD:-build-gpu-carry}
cmake -S . -B "$B" -DQALIGN_CUDA=ON -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=80;90" >"$B.configure.log" 2>&1 ||
  { tail -20 "$B.configure.log"; exit 1; }
cmake --build "$B" -j"$(nproc)" --target qalign test_ops_cuda test_golden test_dist_nccl bench_gpu_train >"$B.build.log" 2>&1 ||
  { grep -E "error" "$B.build.log" | head -20; exit 1; }
P=$(mktemp -d)
mkdir -p "$P/prebuilt/bin" "$P/prebuilt/lib"
cp "$B/qalign" "$B/tests/test_ops_cuda" "$B/tests/test_golden" "$B/tests/test_dist_nccl" "$B/bench/bench_gpu_train" \
   "$P/prebuilt/bin/"
# every resolved library except glibc's, the compiler runtime's, CUDA's and NCCL's (the GPU image's own)
for b in "$P"/prebuilt/bin/*; do ldd "$b"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -vE '/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux-x86-64|libstdc\+\+|libgcc_s)\.so|/(libcudart|libcublas|libcublasLt|libnccl)\.so' |
  while read -r l; do cp -L "$l" "$P/prebuilt/lib/"; done
git rev-parse HEAD >"$P/prebuilt/COMMIT" 2>/dev/null || true
git diff --quiet 2>/dev/null || echo "dirty" >>"$P/prebuilt/COMMIT"
tar -C "$P" -cJf "$C/prebuilt.tar.xz" prebuilt
rm -rf "$P"

# 4. assets (the paper's data, the Qwen1.5 tokenizer)
[ -f assets/paper-data/tasks.json ] || bash scripts/fetch-assets.sh
tar -cJf "$C/assets.tar.xz" assets/paper-data assets/tokenizers/qwen1_5-qwen2.tokenizer.json \
  assets/tokenizers/mistral-7b-v0.1.tokenizer.json

du -sh "$C"/*
echo "prepare.sh: ready; on the GPU machine: bash bench/gpu/run_all.sh (carry .gpu-carry)"
