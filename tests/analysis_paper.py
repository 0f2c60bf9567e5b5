#!/usr/bin/env python3
"""analysis_paper.py QALIGN AN_TMP — the rest of the paper's analysis: the logit lens's "energy" against the
paper's formula in NumPy, and the PCA scatter coloured by record-index bucket.

zsm_emotion_2shot.py computes, besides the lens masses, per item and layer:
    U_w = lm_head.weight * final_norm.weight        (rows = vocabulary)
    U_n = U_w / ||U_w rows||;  avgUU = sqrt(sum((U_nᵀ U_n)^2) / V^2)
    h   = last-position residual stream, / RMS(h), / ||h||
    energy = sqrt(mean((U_n h)^2)) / avgUU
This script redoes that from the model's safetensors (read without torch) and the activation dump, for
  1. the lens of AN_TMP/cli (the tiny model, final-norm weight 1: analysis_cli's output), and
  2. a copy of the tiny model whose final-norm weight is random (so the weighting of U and, at the last
     layer, the recovery of h's direction from the normed state are exercised): `qalign lens` is run on
     it here;
and checks lens.h5's energy of every kept item and layer (rel 1e-5), avgUU, the aggregates and
lens_energy.csv. Then `qalign pca --bucket-size`: pca_buckets.png/.svg written (and not with 0), the
bucket count bounded, usage errors. Exit 77 without numpy / h5py."""
import csv
import json
import os
import shutil
import subprocess
import sys

try:
    import h5py
    import numpy as np
except ImportError as ex:
    print("SKIP: %s" % ex)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qtcheck import Checks  # noqa: E402

check = Checks()
Q, T = sys.argv[1], sys.argv[2]


def st_read(path):
    """(header, data offset, raw bytes) of a safetensors file"""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), 8 + n, raw


def st_tensor(path, name):
    hdr, base, raw = st_read(path)
    meta = hdr[name]
    lo, hi = meta["data_offsets"]
    b = raw[base + lo:base + hi]
    if meta["dtype"] == "BF16":
        x = (np.frombuffer(b, np.uint16).astype(np.uint32) << 16).view(np.float32)
    else:
        x = np.frombuffer(b, {"F32": np.float32, "F16": np.float16}[meta["dtype"]])
    return x.astype(np.float64).reshape(meta["shape"])


def st_replace_f32(src, dst, name, values):
    """a copy of src with tensor `name` replaced by float32 `values` (the other tensors byte for byte)"""
    hdr, base, raw = st_read(src)
    meta = {k: v for k, v in hdr.items() if k == "__metadata__"}
    blobs, off = [], 0
    for k in sorted((k for k in hdr if k != "__metadata__"), key=lambda k: hdr[k]["data_offsets"][0]):
        if k == name:
            b = np.asarray(values, np.float32).tobytes()
            meta[k] = {"dtype": "F32", "shape": hdr[k]["shape"], "data_offsets": [off, off + len(b)]}
        else:
            lo, hi = hdr[k]["data_offsets"]
            b = raw[base + lo:base + hi]
            meta[k] = dict(hdr[k], data_offsets=[off, off + len(b)])
        blobs.append(b)
        off += len(b)
    h = json.dumps(meta).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(dst, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def check_lens(lens_dir, model_dir, what):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    st = os.path.join(model_dir, "model.safetensors")
    U = st_tensor(st, "model.embed_tokens.weight" if cfg.get("tie_word_embeddings") else "lm_head.weight")
    w = st_tensor(st, "model.norm.weight")
    U_n = U * w[None, :]
    U_n = U_n / np.sqrt((U_n ** 2).sum(axis=1, keepdims=True))
    V = U.shape[0]
    avg_uu = np.sqrt(((U_n.T @ U_n) ** 2).sum() / V ** 2)
    lh = h5py.File(os.path.join(lens_dir, "lens.h5"), "r")
    L = int(lh.attrs["n_layers"])
    check(abs(float(lh.attrs["energy_avgUU"]) - avg_uu) <= 1e-9 * avg_uu,
          "%s: avgUU %.9g vs NumPy %.9g" % (what, lh.attrs["energy_avgUU"], avg_uu))
    with open(os.path.join(lens_dir, "lens_energy.csv")) as fh:
        ecsv = list(csv.DictReader(fh))
    worst, n = 0.0, 0
    for sname in lh:
        g0 = lh[sname]
        dump = h5py.File(str(g0.attrs["dump"]), "r")
        dl, di = dump["items/lang"].asstr()[()], dump["items/index"][()]
        for lang in g0:
            g = g0[lang]
            en, idx = g["energy"][()], g["index"][()]
            check(en.shape == (len(idx), L), "%s %s %s: energy [n, L]" % (what, sname, lang))
            for j, ix in enumerate(idx):
                row = int(np.where((dl == lang) & (di == ix))[0][0])
                for layer in range(1, L + 1):
                    h = dump["last/layer_%02d" % layer][row].astype(np.float64)
                    if layer == L:  # the dump's last layer is after the final norm: h's direction is state / w
                        h = h / w
                    h = h / np.sqrt((h ** 2).mean())
                    h = h / np.linalg.norm(h)
                    ref = np.sqrt(((U_n @ h) ** 2).mean()) / avg_uu
                    worst = max(worst, abs(en[j, layer - 1] - ref) / ref)
                    n += 1
            if len(idx):
                m = en.mean(axis=0)
                check(np.allclose(g["energy_mean"][()], m, rtol=1e-12), "%s %s %s: energy_mean" % (what, sname, lang))
                rows = [x for x in ecsv if "series_" + x["series"] == sname and x["lang"] == lang]
                check(len(rows) == L and all(abs(float(x["mean"]) - m[int(x["layer"]) - 1]) <= 1e-7 * m[int(x["layer"]) - 1]
                                             for x in rows), "%s %s %s: lens_energy.csv" % (what, sname, lang))
    check(n > 0 and worst <= 1e-5, "%s: energy of %d item-layers vs NumPy, max rel err %.2e" % (what, n, worst))
    print("%s: energy of %d item-layers vs the script's formula in NumPy: max rel err %.2e (avgUU %.6g)"
          % (what, n, worst, avg_uu))


cli = os.path.join(T, "cli")
check_lens(os.path.join(cli, "lens"), os.path.join(T, "tiny"), "tiny model (norm weight 1)")

# the same dumps through a copy of the model with a random final-norm weight
mw = os.path.join(T, "tiny-normw")
shutil.rmtree(mw, ignore_errors=True)
shutil.copytree(os.path.join(T, "tiny"), mw)
D = json.load(open(os.path.join(mw, "config.json")))["hidden_size"]
rng = np.random.default_rng(5)
st_replace_f32(os.path.join(T, "tiny", "model.safetensors"), os.path.join(mw, "model.safetensors"), "model.norm.weight",
               rng.uniform(0.3, 1.7, D) * rng.choice([-1.0, 1.0], D))
out = os.path.join(T, "lens-normw")
r = subprocess.run([Q, "lens", "--model", mw, "--dump", os.path.join(cli, "base.h5"), "--dump",
                    os.path.join(cli, "aligned.h5"), "--out", out, "--format", "png"], capture_output=True, text=True,
                   env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
check(r.returncode == 0, "qalign lens with the random-norm model: %s" % r.stderr[-2000:])
if r.returncode == 0:
    check_lens(out, mw, "random final-norm weight")

# ---- the index-bucket scatter ------------------------------------------------------------------------------
def pca(*args):
    r = subprocess.run([Q, "pca", "--dump", os.path.join(cli, "aligned.h5"), "--langs", "en,de,fr,hi"] + list(args),
                       capture_output=True, text=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    return r.returncode, r.stdout + r.stderr


P = os.path.join(T, "pca-buckets")
shutil.rmtree(P, ignore_errors=True)
rc, out = pca("--out", P, "--bucket-size", "2")
check(rc == 0, "pca --bucket-size 2: %s" % out)
png = os.path.join(P, "pca_buckets.png")
check(os.path.exists(png) and open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n", "pca_buckets.png is a PNG")
svg = os.path.join(P, "pca_buckets.svg")
check(os.path.exists(svg) and b"<svg" in open(svg, "rb").read(400), "pca_buckets.svg is an SVG")
P0 = os.path.join(T, "pca-nobuckets")
shutil.rmtree(P0, ignore_errors=True)
rc, out = pca("--out", P0, "--bucket-size", "0", "--format", "png")
check(rc == 0 and not os.path.exists(os.path.join(P0, "pca_buckets.png")) and os.path.exists(os.path.join(P0, "pca.png")),
      "pca --bucket-size 0: no bucket figure")
rc, out = pca("--out", P0, "--bucket-size", "x")
check(rc == 2 and "--bucket-size" in out, "pca --bucket-size x: usage error: %s" % out)
# the dump holds records 0..3: buckets of 1 are 4 colours, fine; the bound is 30 buckets
rc, out = pca("--out", P0, "--bucket-size", "1", "--format", "svg")
check(rc == 0 and os.path.exists(os.path.join(P0, "pca_buckets.svg")), "pca --bucket-size 1 (4 buckets)")
check.finish()
