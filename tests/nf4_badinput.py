"""nf4_badinput.py — NF4 checkpoints and --quant on bad input: one clear error naming the tensor (labels nf4, badinput).

usage: nf4_badinput.py QALIGN TEST_NF4 FIXTURES_ROOT

From the first fixture model it builds, with numpy and safetensors only:
  - a 4-bit checkpoint in the layout transformers saves (codes U8 [n/2, 1], absmax, quant_map,
    quant_state.bitsandbytes__nf4 JSON; config.json with quantization_config), its codes and absmax made by
    `test_nf4 quantize` from the fixture's weights: it must load and give the logits `--quant nf4` gives on the
    float checkpoint, bit for bit (the printed top-10);
  - broken copies of it: absmax missing, absmax of the wrong length, absmax U8 without the nested tensors, a
    quant_map that is not NF4, blocksize 128, quant_type fp4, codes of the wrong length, a quant_state shape
    that disagrees with config.json, quant_state not JSON;
  - a float model whose k_proj has a size that is not a multiple of 64, loaded with --quant nf4;
  - `qalign merge` of a fixture adapter into the NF4 base, from the float checkpoint with --quant nf4 and from
    the 4-bit checkpoint: the same BF16 projections bit for bit, no 4-bit tensors or quantization_config left,
    and the merged model's logits those of the NF4 base + adapter up to the BF16 rounding of the merge.
Each broken one must make `qalign forward` (and `qalign info` where the format is at fault) exit non-zero with an
error that names the tensor."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qtcheck import Checks, hf_fixtures  # noqa: E402

try:
    import numpy as np
    from safetensors.numpy import load_file, save_file
except ImportError as exc:
    print(f"SKIP: {exc}")
    sys.exit(77)

PROJ = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
        "mlp.up_proj", "mlp.down_proj")


def read_f32(path):
    """every tensor of a safetensors file as float32 (BF16 widened; numpy has no bfloat16)"""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        b = raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
        if v["dtype"] == "BF16":
            a = (np.frombuffer(b, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(b, {"F32": np.float32, "F16": np.float16}[v["dtype"]]).astype(np.float32)
        out[k] = a.reshape(v["shape"])
    return out


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def main():
    qalign, tool, root = sys.argv[1], sys.argv[2], hf_fixtures(sys.argv[3])
    fx = next(os.path.join(root, d, "model") for d in sorted(os.listdir(root))
              if os.path.isfile(os.path.join(root, d, "model", "config.json")))
    ck = Checks()
    with tempfile.TemporaryDirectory() as tmp:
        f32 = read_f32(os.path.join(fx, "model.safetensors"))
        qin, qout = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "q.safetensors")
        save_file({k: v for k, v in f32.items() if any(p in k for p in PROJ)}, qin)
        subprocess.run([tool, "quantize", qin, qout], check=True, capture_output=True)
        q = load_file(qout)
        cfg = json.load(open(os.path.join(fx, "config.json")))

        def build(name, mutate=None, cfg_over=None):
            d = os.path.join(tmp, name)
            os.makedirs(d)
            out = {}
            for k, v in f32.items():
                if not any(p in k for p in PROJ) or not k.endswith(".weight"):
                    out[k] = v
                    continue
                out[k] = q[k + ".codes"].reshape(-1, 1)
                out[k + ".absmax"] = q[k + ".absmax"]
                out[k + ".quant_map"] = q["table.nf4_code"]
                st = {"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": list(v.shape)}
                out[k + ".quant_state.bitsandbytes__nf4"] = np.frombuffer(json.dumps(st).encode(), dtype=np.uint8)
            if mutate:
                mutate(out)
            save_file(out, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
            c = dict(cfg, quantization_config={"quant_method": "bitsandbytes", "load_in_4bit": True,
                                               "bnb_4bit_quant_type": "nf4"})
            c.update(cfg_over or {})
            json.dump(c, open(os.path.join(d, "config.json"), "w"))
            return d

        ids = "1,5,9,33,7"
        good = build("good")
        rc, got = run([qalign, "forward", "--model", good, "--ids", ids])
        rc2, ref = run([qalign, "forward", "--model", fx, "--ids", ids, "--quant", "nf4"])
        tail = lambda s: s[s.find("top-10"):]
        ck(rc == 0 and rc2 == 0 and tail(got) == tail(ref) and "top-10" in got,
           f"a 4-bit checkpoint gives the logits of --quant nf4 on the float one: {got[-400:]} | {ref[-400:]}")
        rc, out = run([qalign, "info", good])
        ck(rc == 0 and "stored 4-bit" in out, f"qalign info reads the 4-bit checkpoint: {out[-300:]}")

        # merge into the NF4 base: from --quant nf4 and from the 4-bit checkpoint
        adapter = os.path.join(os.path.dirname(fx), "adapter_qv_init")
        m1, m2 = os.path.join(tmp, "merged_q"), os.path.join(tmp, "merged_4bit")
        rc1, o1 = run([qalign, "merge", "--model", fx, "--quant", "nf4", "--adapter", adapter, "--out", m1])
        rc2, o2 = run([qalign, "merge", "--model", good, "--adapter", adapter, "--out", m2])
        ck(rc1 == 0 and rc2 == 0, f"merge into the NF4 base: {o1[-300:]} {o2[-300:]}")
        if rc1 == 0 and rc2 == 0:
            h1, h2 = [json.loads(open(os.path.join(m, "model.safetensors"), "rb").read()[8:8 + int.from_bytes(
                open(os.path.join(m, "model.safetensors"), "rb").read(8), "little")]) for m in (m1, m2)]
            a1, a2 = read_f32(os.path.join(m1, "model.safetensors")), read_f32(os.path.join(m2, "model.safetensors"))
            projs = [k for k in h1 if any(p in k for p in PROJ) and k.endswith(".weight")]
            ck(projs and all(h1[k]["dtype"] == "BF16" and h2[k]["dtype"] == "BF16" and np.array_equal(a1[k], a2[k])
                             for k in projs), f"merged projections: BF16, equal from both bases ({len(projs)})")
            ck(not [k for k in h2 if "absmax" in k or "quant_" in k] and
               "quantization_config" not in json.load(open(os.path.join(m2, "config.json"))),
               "the merged 4-bit checkpoint has no 4-bit tensors and no quantization_config")
            rc, merged = run([qalign, "forward", "--model", m1, "--ids", ids])
            rc2, base = run([qalign, "forward", "--model", fx, "--quant", "nf4", "--adapter", adapter, "--ids", ids])

            def top(sv):
                return [(int(l.split()[2]), float(l.split()[4])) for l in sv.splitlines() if " id " in l and "logit" in l]
            t1, t2 = top(merged), top(base)
            d = max(abs(x[1] - y[1]) for x, y in zip(t1, t2)) if t1 and t2 else 1e9
            ck(rc == 0 and rc2 == 0 and t1 and t1[0][0] == t2[0][0] and d < 0.02,
               f"merged model's logits = NF4 base + adapter (top id {t1[:1]} vs {t2[:1]}, max |diff| {d:.4f})")
            print(f"  merge: {len(projs)} projections equal from both bases; top-10 logits max |diff| {d:.4f} (BF16 merge)")

        w = "model.layers.1.mlp.up_proj.weight"

        def state(o, **kw):
            st = json.loads(bytes(o[w + ".quant_state.bitsandbytes__nf4"]).decode())
            st.update(kw)
            o[w + ".quant_state.bitsandbytes__nf4"] = np.frombuffer(json.dumps(st).encode(), dtype=np.uint8)

        cases = [
            ("absmax missing", lambda o: o.pop(w + ".absmax"), ["absmax"], True),
            ("absmax short", lambda o: o.update({w + ".absmax": o[w + ".absmax"][:-1].copy()}), ["absmax"], True),
            ("absmax U8, no nested tensors", lambda o: (o.update({w + ".absmax": np.zeros(o[w + ".absmax"].size, np.uint8)}),
                                                        state(o, nested_blocksize=256, nested_offset=0.1)),
             ["nested_absmax"], True),
            ("quant_map not NF4", lambda o: o.update({w + ".quant_map": o[w + ".quant_map"] * 0.5}), ["quant_map"], False),
            ("blocksize 128", lambda o: state(o, blocksize=128), ["blocksize"], True),
            ("fp4", lambda o: state(o, quant_type="fp4"), ["fp4"], True),
            ("codes short", lambda o: o.update({w: o[w][:-1].copy()}), ["U8"], True),
            ("shape mismatch", lambda o: state(o, shape=[64, 160]), ["shape"], True),
            ("quant_state not JSON", lambda o: o.update({w + ".quant_state.bitsandbytes__nf4":
                                                         np.frombuffer(b"{nope", dtype=np.uint8)}), ["JSON"], True),
        ]
        for i, (what, mut, words, info_too) in enumerate(cases):
            d = build(f"bad{i}", mut)
            for cmd in ([qalign, "forward", "--model", d, "--ids", ids],) + (([qalign, "info", d],) if info_too else ()):
                rc, out = run(cmd)
                ok = rc != 0 and w in out and all(x in out for x in words) and "Sanitizer" not in out
                ck(ok, f"{what}: `{' '.join(os.path.basename(c) for c in cmd[:2])}` fails naming {w}: rc {rc}: {out.strip()[-300:]}")
                print(f"  {what:30s} {cmd[1]:8s} -> {out.strip().splitlines()[-1] if out.strip() else ''}")

        # --quant nf4 on a float model whose k_proj size is not a multiple of 64
        d = os.path.join(tmp, "odd")
        os.makedirs(d)
        H, nh, kvh, F, V, L = 40, 4, 2, 64, 64, 1
        hd = H // nh
        rng = np.random.default_rng(1)
        t = {"model.embed_tokens.weight": rng.standard_normal((V, H), dtype=np.float32),
             "model.norm.weight": np.ones(H, np.float32), "lm_head.weight": rng.standard_normal((V, H), dtype=np.float32)}
        shapes = {"self_attn.q_proj": (nh * hd, H), "self_attn.k_proj": (kvh * hd, H), "self_attn.v_proj": (kvh * hd, H),
                  "self_attn.o_proj": (H, nh * hd), "mlp.gate_proj": (F, H), "mlp.up_proj": (F, H), "mlp.down_proj": (H, F)}
        for p, s in shapes.items():
            t[f"model.layers.0.{p}.weight"] = rng.standard_normal(s, dtype=np.float32) * 0.1
        t["model.layers.0.input_layernorm.weight"] = np.ones(H, np.float32)
        t["model.layers.0.post_attention_layernorm.weight"] = np.ones(H, np.float32)
        save_file(t, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        json.dump(dict(cfg, hidden_size=H, num_attention_heads=nh, num_key_value_heads=kvh, intermediate_size=F,
                       vocab_size=V, num_hidden_layers=L, head_dim=hd), open(os.path.join(d, "config.json"), "w"))
        rc, out = run([qalign, "forward", "--model", d, "--ids", "1,2"])
        ck(rc == 0, f"the odd-sized float model loads without --quant: {out[-300:]}")
        rc, out = run([qalign, "forward", "--model", d, "--ids", "1,2", "--quant", "nf4"])
        ck(rc != 0 and "model.layers.0.self_attn.k_proj.weight" in out and "64" in out,
           f"--quant nf4 on a k_proj of 800 elements fails naming it: {out.strip()[-300:]}")
        print(f"  {'k_proj of 800 elements':30s} --quant  -> {out.strip().splitlines()[-1] if out.strip() else ''}")
        shutil.rmtree(d)
    ck.finish(need_one=True)


if __name__ == "__main__":
    main()
