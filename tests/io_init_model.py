#!/usr/bin/env python3
"""io_init_model.py — `qalign init-model` writes a model directory in the Hugging Face layout that the
reference safetensors implementation validates, that `qalign info` reads, with N(0, 0.02) weights, unit
norms, zero biases, deterministic per seed and independent of sharding.
usage: io_init_model.py QALIGN FIXTURES_HF_ROOT      (exit 77 = skipped: no safetensors/numpy)"""
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from safetensors import safe_open
except ImportError as ex:  # pragma: no cover
    print(f"skipped: {ex}")
    sys.exit(77)

from qtcheck import Checks, hf_fixtures

qalign, fixtures = sys.argv[1], hf_fixtures(sys.argv[2])
check = Checks()


def run(*args, ok=True):
    r = subprocess.run([qalign, *args], capture_output=True, text=True)
    if ok and r.returncode != 0:
        print("command failed:", args, r.stdout, r.stderr)
    return r


def raw_tensors(paths):
    """name -> (dtype, shape, bytes) parsed with struct/json (numpy has no bfloat16)."""
    out = {}
    for p in paths:
        b = open(p, "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        h = json.loads(b[8:8 + n])
        h.pop("__metadata__", None)
        for k, v in h.items():
            s, e = v["data_offsets"]
            out[k] = (v["dtype"], v["shape"], b[8 + n + s:8 + n + e])
    return out


def bf16(b):
    return (np.frombuffer(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def expected_names(cfg):
    names = {"model.embed_tokens.weight": [cfg["vocab_size"], cfg["hidden_size"]],
             "model.norm.weight": [cfg["hidden_size"]]}
    H, I = cfg["hidden_size"], cfg["intermediate_size"]
    hd = cfg.get("head_dim") or H // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    if not cfg["tie_word_embeddings"]:
        names["lm_head.weight"] = [cfg["vocab_size"], H]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        for m, shp in (("q_proj", [q, H]), ("k_proj", [kv, H]), ("v_proj", [kv, H]), ("o_proj", [H, q])):
            names[p + f"self_attn.{m}.weight"] = shp
            if cfg["model_type"] == "qwen2" and m != "o_proj":
                names[p + f"self_attn.{m}.bias"] = [shp[0]]
        for m, shp in (("gate_proj", [I, H]), ("up_proj", [I, H]), ("down_proj", [H, I])):
            names[p + f"mlp.{m}.weight"] = shp
        names[p + "input_layernorm.weight"] = [H]
        names[p + "post_attention_layernorm.weight"] = [H]
    return names


with tempfile.TemporaryDirectory() as tmp:
    tok = os.path.join(tmp, "tokenizer.json")
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"w{i}": i for i in range(3, 251)})
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for i, c in ((0, "<unk>"), (1, "<s>"), (2, "</s>"), (299, "<extra_299>"))]
    json.dump({"version": "1.0", "added_tokens": added, "model": {"type": "BPE", "vocab": vocab, "merges": []}},
              open(tok, "w"))

    r = run("init-model", "--help")
    check(r.returncode == 0 and "--arch" in r.stdout, "init-model --help")
    r = run("init-model", "--arch", "llama", "--seed", "1", "--out", os.path.join(tmp, "x"), ok=False)
    check(r.returncode == 2, "missing --tokenizer is a usage error")
    r = run("init-model", "--arch", "gpt2", "--tokenizer", tok, "--seed", "1", "--out", os.path.join(tmp, "x"), ok=False)
    check(r.returncode == 2 and "gpt2" in r.stderr, "unknown --arch named")

    for arch, extra in (("llama", []), ("mistral", ["--sliding-window", "16"]), ("qwen2", []),
                        ("llama", ["--tie", "--hidden", "96", "--heads", "6", "--kv-heads", "3", "--layers", "3"])):
        tag = arch + ("_tied" if "--tie" in extra else "")
        out = os.path.join(tmp, tag)
        r = run("init-model", "--arch", arch, "--tokenizer", tok, "--seed", "7", "--out", out, *extra)
        check(r.returncode == 0, f"{tag}: init-model runs")
        if r.returncode:
            continue
        for f in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                  "tokenizer_config.json"):
            check(os.path.exists(os.path.join(out, f)), f"{tag}: {f} written")
        check(open(os.path.join(out, "tokenizer.json"), "rb").read() == open(tok, "rb").read(), f"{tag}: tokenizer copied")
        text = open(os.path.join(out, "config.json")).read()
        cfg = json.loads(text)
        check(text == json.dumps(cfg, indent=2, sort_keys=True) + "\n", f"{tag}: config.json formatted as transformers")
        check(cfg["model_type"] == arch and cfg["vocab_size"] == 300, f"{tag}: model_type, vocab = max id + 1")
        check(cfg["architectures"] == [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                                        "qwen2": "Qwen2ForCausalLM"}[arch]], f"{tag}: architectures")
        if "--tie" not in extra:
            check((cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
                   cfg["intermediate_size"]) == (64, 2, 4, 2, 172), f"{tag}: demo defaults")
        if arch == "mistral":
            check(cfg["sliding_window"] == 16, f"{tag}: sliding_window")
        fx = os.path.join(fixtures, arch, "model", "config.json")
        if os.path.exists(fx):
            theirs = json.load(open(fx))
            rename = {"rope_parameters": "rope_theta", "dtype": "torch_dtype"}
            missing = {rename.get(k, k) for k in theirs} - set(cfg)
            check(not missing, f"{tag}: keys transformers writes are present (missing {missing})")
        gen = json.load(open(os.path.join(out, "generation_config.json")))
        check(gen.get("_from_model_config") is True and gen.get("eos_token_id") == 2, f"{tag}: generation_config")
        path = os.path.join(out, "model.safetensors")
        with safe_open(path, "numpy") as f:   # the reference validates the whole header here
            check(f.metadata() == {"format": "pt"}, f"{tag}: metadata format=pt")
            keys = set(f.keys())
            want = expected_names(cfg)
            check(keys == set(want), f"{tag}: tensor names ({sorted(keys ^ set(want))[:4]})")
            check(all(f.get_slice(k).get_dtype() == "BF16" and f.get_slice(k).get_shape() == want[k] for k in keys),
                  f"{tag}: BF16 with the config's shapes")
        raw = raw_tensors([path])
        ok_norm = ok_stat = ok_bias = True
        for k, (dt, shp, b) in raw.items():
            x = bf16(b)
            if k.endswith("norm.weight"):
                ok_norm &= bool(np.all(x == 1.0))
            elif k.endswith(".bias"):
                ok_bias &= bool(np.all(x == 0.0))
            elif x.size >= 4096:
                ok_stat &= abs(float(x.std()) - 0.02) < 0.002 and abs(float(x.mean())) < 5 * 0.02 / np.sqrt(x.size)
        check(ok_norm, f"{tag}: norm weights are 1")
        check(ok_bias, f"{tag}: biases are 0")
        check(ok_stat, f"{tag}: weights ~ N(0, 0.02)")
        r = run("info", out)
        check(r.returncode == 0 and "parameters" in r.stdout, f"{tag}: qalign info reads it")
        r = run("info", "--json", out)
        j = json.loads(r.stdout) if r.returncode == 0 else {}
        check(j.get("params_config") == j.get("params_tensors") and j.get("params_config", 0) > 0
              and j.get("model_type") == arch, f"{tag}: info --json parameter counts agree")
        # determinism, seeds, shards
        if tag == "llama":
            r = run("init-model", "--arch", arch, "--tokenizer", tok, "--seed", "7", "--out", out, ok=False)
            check(r.returncode == 1 and "--force" in r.stderr, "existing output refused without --force")
            again = os.path.join(tmp, "again")
            run("init-model", "--arch", arch, "--tokenizer", tok, "--seed", "7", "--out", again)
            check(open(os.path.join(again, "model.safetensors"), "rb").read() == open(path, "rb").read(),
                  "same seed, same bytes")
            run("init-model", "--arch", arch, "--tokenizer", tok, "--seed", "8", "--out", again, "--force")
            other = raw_tensors([os.path.join(again, "model.safetensors")])
            check(other["model.embed_tokens.weight"][2] != raw["model.embed_tokens.weight"][2], "another seed differs")
            sh = os.path.join(tmp, "sharded")
            run("init-model", "--arch", arch, "--tokenizer", tok, "--seed", "7", "--out", sh, "--max-shard-size", "60000")
            idx = json.load(open(os.path.join(sh, "model.safetensors.index.json")))
            shards = sorted(set(idx["weight_map"].values()))
            check(len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors",
                  f"sharded: {len(shards)} shards named like save_pretrained")
            check(not os.path.exists(os.path.join(sh, "model.safetensors")), "sharded: no model.safetensors")
            check(idx["metadata"]["total_size"] == sum(len(v[2]) for v in raw.values()), "sharded: total_size")
            sraw = raw_tensors([os.path.join(sh, s) for s in shards])
            check(sraw == raw, "sharded tensors identical to the single file")
            for s in shards:
                with safe_open(os.path.join(sh, s), "numpy") as f:
                    check(all(idx["weight_map"][k] == s for k in f.keys()), f"{s}: matches the weight_map")
            r = run("info", sh)
            check(r.returncode == 0 and "2 files" not in r.stdout and f"{len(shards)} files" in r.stdout,
                  "qalign info reads the sharded model")

    # a real tokenizer, when the assets are unpacked
    assets = os.environ.get("QALIGN_ASSETS", "")
    for name, v in (("mistral-7b-v0.1.tokenizer.json", 32000), ("qwen1_5-qwen2.tokenizer.json", 151646)):
        p = os.path.join(assets, "tokenizers", name)
        if assets and os.path.exists(p):
            out = os.path.join(tmp, name)
            run("init-model", "--arch", "qwen2" if "qwen" in name else "mistral", "--tokenizer", p, "--seed", "1",
                "--out", out, "--hidden", "32", "--layers", "1", "--intermediate", "32")
            check(json.load(open(os.path.join(out, "config.json")))["vocab_size"] == v, f"{name}: vocab_size {v}")

check.finish(need_one=True)
