#!/usr/bin/env python3
"""analysis_check.py CLI_DIR — independent checks of the analysis outputs with h5py and NumPy.

1. h5py reads the activation dumps without a manual: root attributes, /items/*, /labels/<task>,
   /last|mean/layer_XX with shapes [N, D], chunked + compressed.
2. `qalign pca` (CLI_DIR/pca/pca.h5 of CLI_DIR/aligned.h5) equals NumPy: per layer, the mean-centred SVD
   of the same rows; PC1/PC2 scores equal up to sign (rel 1e-6), explained variance, Pearson r of PC1
   between index-paired items (np.corrcoef, abs 1e-6).
3. lens.h5 agrees with lens.csv (means) and the masses lie in [0, 1].
Exit 77 (skipped) without numpy/h5py."""
import sys, os, csv
try:
    import numpy as np
    import h5py
except ImportError as ex:
    print("SKIP: %s" % ex)
    sys.exit(77)

d = sys.argv[1]
from qtcheck import Checks

check = Checks()


# ---- 1. the dump ---------------------------------------------------------------------------------
f = h5py.File(os.path.join(d, "aligned.h5"), "r")
a = f.attrs
check(a["format"] == "qalign-activations" and int(a["version"]) == 1, "format attributes")
L, D, N = int(a["n_layers"]), int(a["hidden"]), int(a["n_items"])
for k in ["model", "adapter", "model_type", "precision", "tokenizer", "prompt_variant", "gold_mode", "tasks",
          "languages", "dtype", "layers", "pools", "vocab"]:
    check(k in a, "root attribute %s" % k)
check(a["adapter"] != "" and a["prompt_variant"] == "target-labels" and a["dtype"] == "float32", "adapter/prompt/dtype")
items = f["items"]
for k in ["task", "lang", "index", "gold", "gold_text", "n_tokens"]:
    check(k in items and items[k].shape == (N,), "/items/%s has shape [N]" % k)
langs = items["lang"].asstr()[()]
tasks = items["task"].asstr()[()]
index = items["index"][()]
check(list(dict.fromkeys(langs)) == ["en", "de", "fr", "hi", "zh", "sw"] and set(tasks) == {"emotion"}, "languages in order")
check(all((index[langs == l] == np.arange(4)).all() for l in set(langs)), "index 0..3 per language")
lab = f["labels/emotion"].attrs
check(list(lab["english"]) == ["positive", "negative"] and "target_zh" in lab, "/labels/emotion attributes")
for pool in ["last", "mean"]:
    names = sorted(f[pool].keys())
    check(names == ["layer_%02d" % i for i in range(L + 1)], "/%s/layer_00..layer_%02d" % (pool, L))
    ds = f[pool]["layer_%02d" % L]
    check(ds.shape == (N, D) and ds.dtype == np.float32, "/%s/layer_L shape [N, D] float32" % pool)
    check(ds.chunks is not None and ds.compression == "gzip" and ds.shuffle and ds.fletcher32,
          "/%s layers chunked, shuffle + deflate + fletcher32" % pool)
    check(int(ds.attrs["layer"]) == L and ds.attrs["pool"] == pool, "layer dataset attributes")
    check(np.isfinite(ds[()]).all(), "finite activations")

# ---- 2. PCA and Pearson vs NumPy -----------------------------------------------------------------
p = h5py.File(os.path.join(d, "pca", "pca.h5"), "r")
plangs = list(p.attrs["languages"])
check(plangs == ["en", "de", "fr", "hi", "sw"], "pca languages")
rows = p["items/row"][()]
want_rows = np.concatenate([np.where(langs == l)[0] for l in plangs])
check((rows == want_rows).all(), "pca rows = the chosen languages' rows in order")
pairs = [s.split("-") for s in p.attrs["pairs"]]
check(pairs == [["en", "de"], ["en", "fr"], ["en", "hi"], ["de", "fr"], ["de", "hi"], ["fr", "hi"], ["en", "sw"]],
      "the paper's pairs among the languages present")
r_all = p["pearson/r"][()]
players = p["pearson/layers"][()]
worst_s = worst_r = worst_v = 0.0
for j, layer in enumerate(players):
    X = f["mean"]["layer_%02d" % layer][()][rows].astype(np.float64)
    Xc = X - X.mean(0)
    U, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    ref = U[:, :2] * S[:2]
    g = p["layer_%02d" % layer]
    sc = g["scores"][()]
    for k in range(2):
        sgn = np.sign(np.dot(sc[:, k], ref[:, k])) or 1.0
        worst_s = max(worst_s, np.linalg.norm(sc[:, k] - sgn * ref[:, k]) / np.linalg.norm(ref[:, k]))
        comp = g["components"][()][k]
        worst_s = max(worst_s, np.linalg.norm(comp - sgn * Vt[k]))
    var = S[:2] ** 2 / (len(X) - 1)
    worst_v = max(worst_v, abs(g.attrs["explained_variance_1"] - var[0]) / var[0],
                  abs(g.attrs["explained_variance_2"] - var[1]) / var[1])
    lang_of = langs[rows]
    idx_of = index[rows]
    for q, (la, lb) in enumerate(pairs):
        ia = {int(i): s for i, s in zip(idx_of[lang_of == la], ref[lang_of == la, 0])}
        ib = {int(i): s for i, s in zip(idx_of[lang_of == lb], ref[lang_of == lb, 0])}
        common = sorted(set(ia) & set(ib))
        r = np.corrcoef([ia[i] for i in common], [ib[i] for i in common])[0, 1]
        worst_r = max(worst_r, abs(r - r_all[j, q]))
check(worst_s <= 1e-6, "PCA scores/components vs NumPy SVD up to sign: max rel err %.2e" % worst_s)
check(worst_v <= 1e-6, "explained variance vs NumPy: max rel err %.2e" % worst_v)
check(worst_r <= 1e-6, "Pearson r vs np.corrcoef: max abs err %.2e" % worst_r)
print("pca vs numpy over %d layers: scores/components rel %.2e, variance rel %.2e, pearson abs %.2e"
      % (len(players), worst_s, worst_v, worst_r))
# pearson.csv agrees with pca.h5
with open(os.path.join(d, "pca", "pearson.csv")) as fh:
    rr = list(csv.DictReader(fh))
check(len(rr) == len(players) * len(pairs), "pearson.csv rows")
check(all(abs(float(x["r"]) - r_all[list(players).index(int(x["layer"])), pairs.index([x["lang_a"], x["lang_b"]])]) < 1e-5
          for x in rr), "pearson.csv = pca.h5")

# ---- 3. the lens files ---------------------------------------------------------------------------
lh = h5py.File(os.path.join(d, "lens", "lens.h5"), "r")
check(list(lh.attrs["quantities"]) == ["target", "latent_en", "all_target", "all_en", "entropy"], "lens quantities")
with open(os.path.join(d, "lens", "lens.csv")) as fh:
    lc = list(csv.DictReader(fh))
worst = 0.0
for x in lc:
    g = lh["series_%s/%s" % (x["series"], x["lang"])]
    q = list(lh.attrs["quantities"]).index(x["quantity"])
    worst = max(worst, abs(float(x["mean"]) - g["mean"][int(x["layer"]) - 1, q]))
    v = g["values"][()]
    m = v[:, int(x["layer"]) - 1, q].mean()
    worst = max(worst, abs(m - float(x["mean"])))
check(worst < 1e-6, "lens.csv means = lens.h5 = mean of the per-item values (%.2e)" % worst)
vals = np.concatenate([lh["series_0"][l]["values"][()].reshape(-1, 5) for l in lh["series_0"]])
check((vals[:, :4] >= 0).all() and (vals[:, :4] <= 1 + 1e-9).all() and (vals[:, 2] + 1e-12 >= vals[:, 0]).all(),
      "masses in [0, 1], all-target >= target")
check(((vals[:, 4] >= 0) & (vals[:, 4] <= np.log2(int(a["vocab"])) + 1e-6)).all(), "entropy in [0, log2 V]")
check.finish()
