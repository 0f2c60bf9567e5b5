#!/usr/bin/env bash
# setup.sh — install what qalign needs on Debian 12 (idempotent; safe to run again).
#   Debian packages: compilers, CMake, Open MPI, HDF5, OpenBLAS, PCRE2, utf8proc, jansson, libyaml,
#   PLplot with its cairo driver (PNG/SVG figures of qalign lens / pca).
#   Python venv (.venv) with the test oracles: tokenizers, numpy, h5py, safetensors, matplotlib, tensorboard.
#   Assets (tokenizers, the paper's data): scripts/fetch-assets.sh.
# Environment: QALIGN_SKIP_APT=1 skips apt; QALIGN_SKIP_PIP=1 skips the venv.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

DEB_PKGS=(build-essential cmake pkg-config xz-utils curl ca-certificates
          libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools libopenblas-dev libpcre2-dev libutf8proc-dev
          libjansson-dev libyaml-dev libplplot-dev plplot-driver-cairo python3 python3-venv)
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

bash scripts/fetch-assets.sh
