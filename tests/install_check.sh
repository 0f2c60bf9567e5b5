#!/usr/bin/env bash
# install_check.sh BUILD_DIR ASSETS_DIR — qalign as a user gets it, away from the source tree:
#   1. cmake --install into a temporary prefix: binary, data (configs, templates), docs, man page
#      (every command of `qalign --help` has its section), modulefile naming the prefix;
#   2. the demo's steps run from a directory outside the repository with the installed binary
#      (init-model, eval, train with the installed demo config whose template is found beside the
#      binary, eval with the adapter, eval-compare, activation dumps, lens, pca), small sizes;
#   3. cpack -G DEB, the package unpacked with dpkg-deb -x into a scratch root: its binary runs and
#      finds its data there, and its Depends names the Debian package of every library it links.
# Exit 77 (skipped) when the assets (scripts/fetch-assets.sh) are missing; step 3 is skipped with a
# message when cpack / dpkg-deb are not there.
set -euo pipefail
BUILD=$(cd "$1" && pwd)
ASSETS=$(cd "$2" 2>/dev/null && pwd || echo "$2")
TOK=$ASSETS/tokenizers/qwen1_5-qwen2.tokenizer.json
DATA=$ASSETS/paper-data
if [ ! -f "$TOK" ] || [ ! -f "$DATA/tasks.json" ]; then
  echo "install_check: skipped: no $TOK or $DATA/tasks.json (run scripts/fetch-assets.sh)"
  exit 77
fi
T=$(mktemp -d /tmp/qalign-install.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "install_check: FAIL: $*" >&2; exit 1; }

echo "== 1. cmake --install --prefix $T/prefix"
cmake --install "$BUILD" --prefix "$T/prefix" >"$T/install.log" 2>&1 || { cat "$T/install.log"; fail "cmake --install"; }
P=$T/prefix
Q=$P/bin/qalign
for f in bin/qalign share/qalign/configs/demo.yaml share/qalign/configs/templates/qwen.yaml \
         share/qalign/configs/templates/mistral.yaml share/qalign/configs/templates/vanilla.yaml \
         share/man/man1/qalign.1 share/doc/qalign/README.md share/doc/qalign/install.md \
         share/qalign/modulefiles/qalign; do
  [ -e "$P/$f" ] || fail "$P/$f was not installed"
done
mod=$(ls "$P"/share/qalign/modulefiles/qalign/*)
grep -q "^set root $P\$" "$mod" || fail "$mod does not name the prefix $P"
head -1 "$mod" | grep -q '^#%Module' || fail "$mod is not a modulefile"
cmds=$("$Q" --help | awk '/^commands:/{f=1;next} f && NF{print $1}')
[ "$(echo "$cmds" | wc -l)" -ge 10 ] || fail "qalign --help lists too few commands: $cmds"
for c in $cmds; do
  grep -q "^\.SS $c\$" "$P/share/man/man1/qalign.1" || fail "the man page has no section for '$c'"
done
if command -v man >/dev/null; then
  MANWIDTH=100 man -l "$P/share/man/man1/qalign.1" 2>/dev/null | grep -q "QALIGN_TEMPLATES" || fail "man qalign does not render"
fi

echo "== 2. the demo's steps from $T/work (outside the repository)"
mkdir -p "$T/work"
cd "$T/work"
export QALIGN_DATA=$DATA OPENBLAS_NUM_THREADS=1
unset QALIGN_TEMPLATES QALIGN_DATADIR
cp "$P/share/qalign/configs/demo.yaml" .
run() { echo "+ qalign $* ($SECONDS s)"; "$Q" "$@" >"$T/step.log" 2>&1 || { tail -20 "$T/step.log"; fail "qalign $1"; }; }
run init-model --arch qwen2 --tokenizer "$TOK" --seed 1 --out model
# the template (data.template: qwen) is not beside the config nor under ./configs: only the data dir has it
QALIGN_DATADIR=$T/nowhere "$Q" train --config demo.yaml --set model.path=model --dry-run >"$T/neg.log" 2>&1 \
  && fail "train found template 'qwen' without its data directory"
grep -q "template 'qwen' not found" "$T/neg.log" || { cat "$T/neg.log"; fail "no clear message for a missing template"; }
run eval --model model --limit 1 --out eval-base
run train --config demo.yaml --set model.path=model \
  --set data.files="$DATA/snli/snli_zh10k_train_question.json,$DATA/snli/snli_es10k_train_question.json" \
  --set data.max_examples=24 --set data.cutoff=128 --set checkpoint.dir=run --set train.threads=1
grep -q "done: " "$T/step.log" || fail "train did not finish"
[ -f run/adapter/adapter_config.json ] || fail "no adapter written"
run eval --model model --adapter run/adapter --limit 1 --out eval-aligned
run eval-compare eval-base eval-aligned --out before-after.md
grep -q "| emotion | base |" before-after.md || fail "before-after.md has no table"
run eval --model model --tasks emotion --langs en,de,zh,ru --limit 3 --prompt target-labels --dump-activations base.h5
run eval --model model --adapter run/adapter --tasks emotion --langs en,de,zh,ru --limit 3 --prompt target-labels \
  --dump-activations aligned.h5
run lens --model model --dump base.h5 --label base --dump aligned.h5 --label aligned --langs zh,ru --out lens
run pca --dump aligned.h5 --langs en,de,zh,ru --out pca
for f in lens/lens.csv lens/lens_zh.png pca/pearson.md pca/pca.png; do [ -s "$f" ] || fail "$f missing"; done

echo "== 3. the .deb ($SECONDS s)"
if ! command -v cpack >/dev/null || ! command -v dpkg-deb >/dev/null || [ ! -f "$BUILD/CPackConfig.cmake" ]; then
  echo "install_check: .deb part skipped (no cpack / dpkg-deb / CPackConfig.cmake)"
  echo "install_check: OK (install + demo steps)"
  exit 0
fi
cpack --config "$BUILD/CPackConfig.cmake" -B "$T/deb" >"$T/cpack.log" 2>&1 || { cat "$T/cpack.log"; fail "cpack -G DEB"; }
deb=$(ls "$T"/deb/qalign_*.deb)
dpkg-deb -x "$deb" "$T/root"
deps=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $deps"
"$T/root/usr/bin/qalign" --help >/dev/null || fail "the packaged binary does not run"
# the packaged binary finds the packaged data (its own ../share/qalign), from anywhere
"$T/root/usr/bin/qalign" train --config demo.yaml --set model.path=model --set data.files="$DATA/snli/snli_zh10k_train_question.json" \
  --dry-run >"$T/deb.log" 2>&1 || { cat "$T/deb.log"; fail "the packaged binary does not find its templates"; }
# every shared library the binary names (DT_NEEDED) belongs to a Debian package that Depends lists
pkg_of() {
  local l=$1 r
  r=$(readlink -f "$l")
  for p in "$l" "$r" "/usr$l" "${l#/usr}" "/usr$r" "${r#/usr}"; do
    dpkg -S "$p" 2>/dev/null | head -1 | cut -d: -f1 && return 0
  done
  return 1
}
for lib in $(readelf -d "$T/root/usr/bin/qalign" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
  path=$(ldd "$T/root/usr/bin/qalign" | awk -v l="$lib" '$1 == l {print $3}')
  [ -n "$path" ] || fail "$lib does not resolve"
  pkg=$(pkg_of "$path") || { echo "install_check: $lib ($path) belongs to no Debian package: not checked"; continue; }
  base=${pkg%%:*}
  echo "$deps" | tr ',|' '\n\n' | sed 's/ *(.*//; s/^ *//' | grep -qx "$base" \
    || { [ "$base" = libopenblas0-pthread ] && echo "$deps" | grep -q "libopenblas0"; } \
    || fail "$lib comes from $base, which Depends does not name"
done
echo "$deps" | grep -q "plplot-driver-cairo" || fail "Depends lacks plplot-driver-cairo (figures)"
echo "install_check: OK (install, demo steps outside the repository, .deb)"
