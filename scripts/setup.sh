#!/usr/bin/env bash
# setup.sh — install what qalign needs on Debian 12 (idempotent; safe to run again).
#   Debian packages: compilers, CMake, Open MPI, HDF5, OpenBLAS, PCRE2, utf8proc, jansson, libyaml,
#   PLplot with its cairo driver (PNG/SVG figures of qalign lens / pca / sweep report), Slurm + munge
#   (slurm-wlm: `ctest -L slurm` starts a private single-node Slurm; no service is configured here),
#   clang (libFuzzer: fuzz/).
#   Python venv (.venv) with the test oracles: tokenizers, numpy, h5py, safetensors, matplotlib, tensorboard.
#   Assets (tokenizers, the paper's data): scripts/fetch-assets.sh.
#   Transformers + PEFT oracles (.venv-hf: tests/hf_roundtrip.py, tests/gen_golden.py) on Debian's CPU torch
#   (python3-torch): PyPI's x86-64 torch wheels pull ~5 GB of CUDA libraries; this is ~150 MB of .debs and a
#   ~250 MB venv on top of the system site packages.
# Environment: QALIGN_SKIP_APT=1 skips apt; QALIGN_SKIP_PIP=1 skips the venvs; QALIGN_SKIP_HF=1 skips the
#   transformers + PEFT oracles (their tests are then skipped, not failed).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

DEB_PKGS=(build-essential cmake pkg-config xz-utils curl ca-certificates
          libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libopenblas-dev libpcre2-dev libutf8proc-dev
          libjansson-dev libyaml-dev libplplot-dev plplot-driver-cairo python3 python3-venv slurm-wlm munge clang)
[ "${QALIGN_SKIP_HF:-0}" = 1 ] || DEB_PKGS+=(python3-torch)
if [ "${QALIGN_SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in "${DEB_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PY_PKGS=(numpy h5py safetensors tokenizers matplotlib tensorboard)
if [ "${QALIGN_SKIP_PIP:-0}" != 1 ]; then
  if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
  fi
  if ! .venv/bin/python -c "import numpy, h5py, safetensors, tokenizers, matplotlib, tensorboard" 2>/dev/null; then
    echo "setup: installing Python test oracles into .venv: ${PY_PKGS[*]}"
    .venv/bin/python -m pip install -q --disable-pip-version-check "${PY_PKGS[@]}"
  fi
fi

# transformers / peft / accelerate pinned to releases that support Debian 12's torch 1.13 (installed without
# their torch requirement, which pip cannot see satisfied by Debian's "1.13.0a0" build)
HF_PKGS=(transformers==4.46.3 peft==0.13.2 accelerate==0.34.2)
HF_DEPS=("numpy<2" "huggingface-hub>=0.23.2,<1.0" "tokenizers>=0.20,<0.21" "safetensors>=0.4.1" regex requests tqdm
         pyyaml packaging filelock psutil jinja2)
if [ "${QALIGN_SKIP_PIP:-0}" != 1 ] && [ "${QALIGN_SKIP_HF:-0}" != 1 ] && [ -x /usr/bin/python3 ]; then
  if [ ! -x .venv-hf/bin/python ]; then
    echo "setup: creating .venv-hf (Debian's torch + transformers, peft)"
    /usr/bin/python3 -m venv --system-site-packages .venv-hf
  fi
  if ! .venv-hf/bin/python -c "import torch, transformers, peft, jinja2" 2>/dev/null; then
    echo "setup: installing the transformers + PEFT oracles into .venv-hf: ${HF_PKGS[*]}"
    .venv-hf/bin/python -m pip install -q --disable-pip-version-check --no-deps "${HF_PKGS[@]}"
    .venv-hf/bin/python -m pip install -q --disable-pip-version-check "${HF_DEPS[@]}"
  fi
fi

bash scripts/fetch-assets.sh
