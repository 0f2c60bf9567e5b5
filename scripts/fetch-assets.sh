#!/usr/bin/env bash
# fetch-assets.sh — put third-party assets into assets/ (never committed):
#   assets/tokenizers/*.tokenizer.json   real Hugging Face tokenizer.json files
#   assets/paper-data/                   the paper's test sets, training questions and tasks.json
# From a local mirror of the tarballs when present ($QALIGN_SHARED/data, default ../shared/data), else from the
# public sources: the paper's GitHub repository (data/) with configs/paper/tasks.json, and the tokenizer.json
# files of the models' Hugging Face repositories (sha256-pinned).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${QALIGN_SHARED:-$here/../shared}
dst=$here/assets
mkdir -p "$dst"

unpack() { # tarball -> assets/
  local tb=$1 tmp
  tmp=$(mktemp -d "$dst/.unpack.XXXXXX")
  tar xJf "$tb" -C "$tmp"
  for d in "$tmp"/*; do rm -rf "$dst/$(basename "$d")"; mv "$d" "$dst/"; done
  rmdir "$tmp"
}

# tokenizers: file name -> "Hugging Face repository, file, sha256" (the models' own repositories; the sha256
# pins the exact file: a changed upstream file stops the script instead of changing the tests' inputs)
declare -A TOK=(
  [qwen1_5-qwen2.tokenizer.json]="Qwen/Qwen1.5-72B-Chat tokenizer.json f7c9b2dba4a296b1aa76c16a34b8225c0c118978400d4bb66bff0902d702f5b8"
  [qwen3.tokenizer.json]="Qwen/Qwen3-4B tokenizer.json aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
  [mistral-7b-v0.1.tokenizer.json]="mistral-community/Mixtral-8x22B-v0.1 tokenizer.json fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc"
)
HF=${QALIGN_HF_ENDPOINT:-https://huggingface.co}

have_tokenizers() { [ -f "$dst/tokenizers/qwen1_5-qwen2.tokenizer.json" ] && [ -f "$dst/tokenizers/mistral-7b-v0.1.tokenizer.json" ]; }
have_data() { [ -f "$dst/paper-data/tasks.json" ] && [ -d "$dst/paper-data/snli" ]; }

if ! have_tokenizers; then
  if [ -f "$shared/data/tokenizers.tar.xz" ]; then
    echo "assets: unpacking tokenizers from $shared/data"
    unpack "$shared/data/tokenizers.tar.xz"
  else
    echo "assets: downloading tokenizers from the models' Hugging Face repositories ($HF)"
    mkdir -p "$dst/tokenizers"
    for f in "${!TOK[@]}"; do
      read -r repo path sha <<<"${TOK[$f]}"
      tmp=$(mktemp -d)
      curl -fsSL "$HF/$repo/resolve/main/$path" -o "$tmp/$f"
      echo "$sha  $tmp/$f" | sha256sum -c --quiet || { echo "assets: $repo/$path is not the file the tests expect" >&2; exit 1; }
      mv "$tmp/$f" "$dst/tokenizers/$f"
      rm -rf "$tmp"
    done
    echo "assets: llama2.reconstructed.tokenizer.json (a Llama-2 tokenizer rebuilt from public tables) is not" \
         "downloaded: the tests that need it skip"
  fi
fi

if ! have_data; then
  if [ -f "$shared/data/paper-data.tar.xz" ]; then
    echo "assets: unpacking paper data from $shared/data"
    unpack "$shared/data/paper-data.tar.xz"
  else
    echo "assets: downloading the paper data (Shimao-Zhang/LLM-Multilingual-Learner, data/ at 5605459)"
    rev=5605459
    tmp=$(mktemp -d)
    curl -fsSL "https://codeload.github.com/Shimao-Zhang/LLM-Multilingual-Learner/tar.gz/$rev" -o "$tmp/repo.tgz"
    tar xzf "$tmp/repo.tgz" -C "$tmp"
    mkdir -p "$dst/paper-data"
    cp -r "$tmp"/LLM-Multilingual-Learner-*/data/* "$dst/paper-data/"
    rm -rf "$tmp"
    # the evaluation protocol as data (prefixes, query templates, label words of the paper's scripts)
    cp "$here/configs/paper/tasks.json" "$dst/paper-data/tasks.json"
  fi
fi
echo "assets: ready in $dst"
