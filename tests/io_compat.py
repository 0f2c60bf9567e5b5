#!/usr/bin/env python3
"""io_compat.py — the reference safetensors implementation (pip `safetensors`) against io/safetensors.c
and io/peft.c, both directions:
  1. what qa_st_write writes loads in safetensors and is byte-identical to safetensors' own output;
  2. what safetensors writes (varied dtypes, shapes, name lengths) reads identically in qa_st_open;
  3. a qa_peft_save adapter has PEFT's tensor names, shapes, dtype and metadata.
usage: io_compat.py TEST_IO_WRITE FIXTURES_HF_ROOT      (exit 77 = skipped: no safetensors/numpy)"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file, save, save_file
except ImportError as ex:  # pragma: no cover
    print(f"skipped: {ex}")
    sys.exit(77)

from qtcheck import Checks, hf_fixtures

tool, fixtures = sys.argv[1], hf_fixtures(sys.argv[2])
check = Checks()


def fnv1a64(b):
    h = 1469598103934665603
    for x in b:
        h ^= x
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


DT = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "U64": np.uint64, "I32": np.int32,
      "U32": np.uint32, "I16": np.int16, "U16": np.uint16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
ORDER = ["F64", "F32", "F16", "I64", "U64", "I32", "U32", "I16", "U16", "I8", "U8", "BOOL"]

with tempfile.TemporaryDirectory() as tmp:
    # 1. ours -> reference
    ours = os.path.join(tmp, "ours.safetensors")
    subprocess.run([tool, "write", ours], check=True)
    d = load_file(ours)
    check(len(d) == 24, f"24 tensors load ({len(d)})")
    for k, name in enumerate(ORDER):
        for v, (d0, d1) in enumerate([(5, 7), (3, 1)]):
            key = ("col." if v else "mat.") + name
            i = np.arange(d0 * d1)
            x = ((i * 7 + k * 3) % 13) - 6.0
            if name.startswith("U"):
                x = x + 6
            ref = (x > 0) if name == "BOOL" else x.astype(DT[name])
            got = d.get(key)
            check(got is not None and got.dtype == np.dtype(DT[name]) and got.shape == (d0, d1)
                  and np.array_equal(got.reshape(-1), ref), f"{key}: dtype, shape and values")
    with safe_open(ours, "numpy") as f:
        check(f.metadata() == {"format": "pt"}, "metadata format=pt")
    ref_bytes = save(d, metadata={"format": "pt"})
    check(open(ours, "rb").read() == ref_bytes, "byte-identical to safetensors' own serialization")

    # 2. reference -> ours (names of many lengths exercise header padding; a scalar, an empty tensor)
    rng = np.random.default_rng(3)
    for trial in range(6):
        t = {}
        for j in range(1 + trial * 3):
            name = "t" + "x" * int(rng.integers(0, 9)) + f".{j}"
            dt = ORDER[int(rng.integers(0, len(ORDER)))]
            shape = tuple(int(s) for s in rng.integers(0, 4, size=int(rng.integers(0, 4))))
            a = rng.integers(0, 100, size=shape).astype(DT[dt]) if shape else np.array(rng.integers(0, 100), dtype=DT[dt])
            t[name] = a
        path = os.path.join(tmp, f"ref{trial}.safetensors")
        save_file(t, path, metadata={"k": f"v{trial}"} if trial % 2 else None)
        out = subprocess.run([tool, "dump", path], check=True, capture_output=True, text=True).stdout.splitlines()
        rows = [r for r in out if not r.startswith("__metadata__ ")]
        want = []
        for name in sorted(t):
            a = t[name]
            dtn = [k for k, v in DT.items() if np.dtype(v) == a.dtype][0]
            want.append(f"{name} {dtn} [{','.join(str(s) for s in a.shape)}] {fnv1a64(a.tobytes()):016x}")
        check(rows == want, f"reference file {trial}: names, dtypes, shapes, bytes\n    got  {rows}\n    want {want}")
        meta = [r for r in out if r.startswith("__metadata__ ")]
        check((json.loads(meta[0][13:]) if meta else None) == ({"k": f"v{trial}"} if trial % 2 else None),
              f"reference file {trial}: metadata")

    # 3. a PEFT adapter written by qa_peft_save
    for arch in sorted(os.listdir(fixtures)):
        model = os.path.join(fixtures, arch, "model")
        if not os.path.isdir(model):
            continue
        out = os.path.join(tmp, "adapter_" + arch)
        subprocess.run([tool, "adapter", model, out], check=True)
        w = load_file(os.path.join(out, "adapter_model.safetensors"))
        with safe_open(os.path.join(out, "adapter_model.safetensors"), "numpy") as f:
            check(f.metadata() == {"format": "pt"}, f"{arch}: adapter metadata format=pt")
        check(all(v.dtype == np.float32 for v in w.values()), f"{arch}: adapter tensors are F32")
        fx = os.path.join(fixtures, arch, "adapter_qv_init", "adapter_model.safetensors")
        if os.path.exists(fx):   # the fixture is r=4 on q_proj, v_proj as well
            ref = load_file(fx)
            check(sorted(ref) == sorted(w), f"{arch}: tensor names as PEFT writes them")
            check(all(ref[k].shape == w[k].shape for k in ref if k in w), f"{arch}: shapes as PEFT writes them")
        ok = True
        for k, v in w.items():
            parts = k.split(".")
            layer, mod = int(parts[4]), ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                         "down_proj"].index(parts[6])
            i = np.arange(v.size, dtype=np.float32) / np.float32(1024)
            base = np.float32(layer * 10 + mod)
            ref = (base + i) if parts[7] == "lora_A" else -(base + i)
            ok &= np.array_equal(v.reshape(-1), ref.astype(np.float32))
        check(ok, f"{arch}: adapter values")
        cfg = json.load(open(os.path.join(out, "adapter_config.json")))
        fxc = os.path.join(fixtures, arch, "adapter_qv_init", "adapter_config.json")
        if os.path.exists(fxc):
            theirs = json.load(open(fxc))
            check(set(cfg) <= set(theirs), f"{arch}: adapter_config keys are PEFT keys: {set(cfg) - set(theirs)}")
        check(cfg["r"] == 4 and cfg["lora_alpha"] == 8 and sorted(cfg["target_modules"]) == ["q_proj", "v_proj"]
              and cfg["peft_type"] == "LORA" and cfg["task_type"] == "CAUSAL_LM", f"{arch}: adapter_config values")

check.finish(need_one=True)
