#!/usr/bin/env python3
"""The checkpoint file as an h5py user sees it: names, shapes, dtypes, attributes, filters, values,
and the documented checksums recomputed independently. Usage: checkpoint_h5py.py RUN_DIR
(RUN_DIR written by `test_checkpoint sample`). Exit 77 (skipped) without h5py / numpy."""
import glob
import os
import re
import sys

try:
    import h5py
    import numpy as np
except ImportError as exc:  # skipped, as every Python oracle without its modules (scripts/setup.sh installs them)
    print(f"SKIP: {exc}: install h5py and numpy (bash scripts/setup.sh, or pip install h5py numpy)")
    sys.exit(77)

from qtcheck import Checks

check = Checks()


_TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _TABLE.append(c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    t = _TABLE
    for b in data:
        crc = (crc >> 8) ^ t[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


def sample_value(t, j, salt):  # mirrors tests/test_checkpoint.c
    return np.float32(((j * 7 + t * 13 + salt * 101) % 1024) / 1024.0 - 0.5)


run = sys.argv[1]
files = sorted(glob.glob(os.path.join(run, "checkpoints", "step_*.h5")))
check([os.path.basename(f) for f in files] == ["step_00000001.h5", "step_00000002.h5"], f"files {files}")
with open(os.path.join(run, "checkpoints", "latest")) as fh:
    check(fh.read() == "step_00000002.h5\n", "latest names step 2")
path = files[-1]

with h5py.File(path, "r") as f:
    a = f.attrs
    check(a["format"] == "qalign-lora-ckpt" and isinstance(a["format"], str), "format is a str")
    check(int(a["format_version"]) == 1 and int(a["step"]) == 2, "format_version, step")
    check(int(a["epoch"]) == 0 and int(a["cursor"]) == 32 and int(a["tokens_seen"]) == 8192, "epoch, cursor, tokens_seen")
    check(int(a["world_size"]) == 4 and int(a["lora_r"]) == 4 and float(a["lora_alpha"]) == 16.0, "world_size, lora_r, alpha")
    check(list(a["target_modules"]) == ["q_proj", "v_proj"], f"target_modules {a['target_modules']!r}")
    check(a["config_yaml"].startswith("model: llama\n"), "config_yaml text")
    check(a["base_model_id"] == "meta-llama/Llama-2-7b-hf", "base_model_id")
    check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", a["created_utc"]) is not None, "created_utc ISO 8601")
    check("CRC32C" in a["checksum_scheme"], "checksum_scheme explains itself")
    check(set(f.keys()) == {"lora", "optim", "rng", "data", "metrics"}, f"groups {list(f.keys())}")

    names = list(f["lora"].keys())
    pat = re.compile(r"base_model\.model\.model\.layers\.\d+\.self_attn\.[qv]_proj\.lora_[AB]\.weight")
    check(len(names) == 8 and all(pat.fullmatch(n) for n in names), f"PEFT names {names}")
    # the PEFT state dict is one comprehension away
    sd = {k: f["lora"][k][()] for k in f["lora"]}
    check(sd["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].shape == (4, 64), "lora_A [r, in]")
    check(sd["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"].shape == (64, 4), "lora_B [out, r]")
    check(sd["base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"].shape == (8, 40000), "large lora_A")
    check(all(v.dtype == np.dtype("<f4") for v in sd.values()), "float32 little-endian")
    ds = f["lora"]["base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"]
    check(ds.fletcher32 and ds.chunks is not None and ds.chunks[0] < 8, f"chunked {ds.chunks} + fletcher32")
    check(ds.compression == "gzip" and ds.shuffle, "shuffle + deflate (sample written with deflate 1)")
    check(ds.attrs["layout"] == "[r, in_features]", "layout attr")
    # values: tensor k in creation order (layer, q/v, A/B), salt 7
    order = [f"base_model.model.model.layers.{l}.self_attn.{p}_proj.lora_{ab}.weight"
             for l in range(2) for p in "qv" for ab in "AB"]
    ok = True
    for k, n in enumerate(order):
        flat = sd[n].reshape(-1)
        j = np.arange(flat.size, dtype=np.int64)
        want = (((j * 7 + k * 13 + 7 * 101) % 1024) / 1024.0 - 0.5).astype(np.float32)
        if k == 0:
            flat, want = flat[4:], want[4:]
        ok &= bool(np.array_equal(flat, want))
    check(ok, "LoRA values equal the generator's")
    w0 = sd[order[0]].reshape(-1)
    check(w0[:4].view(np.uint32).tolist() == [0x7FC12345, 0x00000001, 0x80000000, 0x7F800000],
          "NaN payload, denormal, -0, inf kept bit-exact")
    check(sorted(f["optim/m"].keys()) == sorted(names) and sorted(f["optim/v"].keys()) == sorted(names), "optim m/v mirror lora")
    check(int(f["optim"].attrs["step"]) == 2, "/optim step")
    check(f["rng/host"].dtype == np.dtype("<u8") and int(f["rng/host"][0]) == 2**64 - 1, "rng uint64")
    check(int(f["data"].attrs["shuffle_seed"]) == 1234567890123 and int(f["data"].attrs["cursor"]) == 32, "/data attrs")
    check(f["data/order"].dtype == np.dtype("<i8") and f["data/order"].shape == (100,), "data/order int64")
    check(f["metrics/loss"].dtype == np.dtype("<f8") and f["metrics/step"][()].tolist() == [0, 10, 20, 30, 40], "metrics")

    # checksums as documented in the file itself
    dsets = []
    f.visititems(lambda n, o: dsets.append(n) if isinstance(o, h5py.Dataset) else None)
    dsets.sort(key=lambda s: s.encode())
    total = 0
    per_ok = True
    for n in dsets:
        raw = f[n][()]
        b = raw.astype(raw.dtype.newbyteorder("<")).tobytes()
        if crc32c(b) != int(f[n].attrs["crc32c"]):
            per_ok = False
            print(f"  crc32c mismatch {n}")
        total = crc32c(n.encode() + b"\0" + int(f[n].attrs["crc32c"]).to_bytes(4, "little"), total)
    check(per_ok, "every dataset's crc32c attr")
    check(total == int(a["checksum"]), f"file checksum {total:08x} vs {int(a['checksum']):08x}")

check.finish()
