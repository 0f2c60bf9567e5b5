"""hf_roundtrip.py QALIGN — qalign's outputs loaded by Hugging Face transformers + PEFT (CPU, float64 oracle):

  1. a tiny random Llama made by transformers (save_pretrained, BF16); `qalign forward --logits-out` of every
     position (.npy and %.9g text, the two identical) equals the transformers logits (rel 1e-4);
  2. `qalign train` (pre-tokenized data, LoRA q,v) writes adapter/ with base_model_name_or_path = the base
     directory (absolute), and so does `qalign export-peft --model`: AutoPeftModelForCausalLM.from_pretrained
     (adapter_dir) alone loads base + adapter, and its logits equal `qalign forward --adapter`;
  3. `qalign merge --dtype f32`: every tensor F32, config.json torch_dtype float32, transformers loads it as
     float32 (torch_dtype="auto", the default of transformers 5) and its logits equal base + adapter in
     float64 to float32 rounding (a bf16 merge or a bf16 load would miss by ~1e-3); `--dtype same` keeps
     the base's config and dtypes.
Exit 77 (skipped) when torch / transformers / peft cannot be imported (scripts/setup.sh: .venv-hf)."""
import json
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qtcheck import Checks  # noqa: E402

try:
    import numpy as np
    import torch
    import transformers
    import peft
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
    from peft import AutoPeftModelForCausalLM
except Exception as ex:  # ImportError, or a torch build that cannot load
    print(f"hf_roundtrip: skipped: {ex!r} (scripts/setup.sh installs torch, transformers, peft into .venv-hf)")
    sys.exit(77)

Q = os.path.abspath(sys.argv[1])
ck = Checks()
print(f"hf_roundtrip: torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")


def run(*args):
    p = subprocess.run([Q, *args], capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stdout[-3000:], p.stderr[-3000:])
        sys.exit(f"qalign {args[0]} failed ({p.returncode})")
    return p.stdout


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def st_dtypes(path):
    with open(path, "rb") as f:
        n, = struct.unpack("<Q", f.read(8))
        h = json.loads(f.read(n))
    return {k: v["dtype"] for k, v in h.items() if k != "__metadata__"}


def qa_logits(model, ids, adapter=None, out="lg.npy"):
    args = ["forward", "--model", model, "--ids", ",".join(map(str, ids)), "--logits-out", out]
    if adapter:
        args += ["--adapter", adapter]
    run(*args)
    return np.load(out)


with tempfile.TemporaryDirectory() as T:
    os.chdir(T)
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=256, max_position_embeddings=128, rms_norm_eps=1e-5,
                      tie_word_embeddings=False)
    m = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.08)
    m.to(torch.bfloat16).save_pretrained("base", safe_serialization=True)
    base = os.path.abspath("base")
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 256, (17,), generator=g).tolist()

    # 1. forward --logits-out: all positions, full precision
    ref = AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.float64)
    with torch.no_grad():
        want = ref(torch.tensor([ids])).logits[0].numpy()
    got = qa_logits(base, ids)
    ck(got.shape == want.shape and got.dtype == np.float32, f"forward --logits-out .npy: {got.shape} {got.dtype}")
    r = rel(got, want)
    ck(r <= 1e-4, f"forward logits of all {len(ids)} positions vs transformers float64: rel {r:.2e}")
    run("forward", "--model", base, "--ids", ",".join(map(str, ids)), "--logits-out", "lg.txt")
    txt = np.loadtxt("lg.txt", dtype=np.float32, ndmin=2)
    ck(txt.shape == got.shape and np.array_equal(txt, got), "forward --logits-out text (%.9g) == .npy bit for bit")

    # 2. an adapter trained by qalign, loaded by AutoPeftModelForCausalLM from its directory alone
    with open("data.json", "w") as f:
        recs = []
        for i in range(24):
            seq = torch.randint(3, 256, (20,), generator=g).tolist()
            recs.append({"input_ids": seq, "labels": [-100] * 8 + seq[8:]})
        json.dump(recs, f)
    run("train", "--set", f"model.path={base}", "--set", "data.files=data.json", "--set", "data.template=none",
        "--set", "lora.targets=q_proj,v_proj", "--set", "lora.r=4", "--set", "lora.alpha=8",
        "--set", "train.micro_batch=4", "--set", "train.grad_accum=1", "--set", "train.epochs=1",
        "--set", "train.lr=2e-2", "--set", "train.warmup_ratio=0", "--set", "train.eval_every=0",
        "--set", "train.threads=1", "--set", "data.val_fraction=0", "--set", "checkpoint.dir=run",
        "--set", "checkpoint.every=0")
    for ad in ("run/adapter", "exported"):
        if ad == "exported":
            run("export-peft", "run", "exported", "--model", base)
        c = json.load(open(os.path.join(ad, "adapter_config.json")))
        ck(c.get("base_model_name_or_path") == base, f"{ad}: base_model_name_or_path {c.get('base_model_name_or_path')!r} == {base!r}")
        pm = AutoPeftModelForCausalLM.from_pretrained(os.path.abspath(ad), torch_dtype=torch.float64)
        with torch.no_grad():
            want_ad = pm(input_ids=torch.tensor([ids])).logits[0].numpy()
        got_ad = qa_logits(base, ids, adapter=ad)
        r = rel(got_ad, want_ad)
        ck(r <= 1e-4, f"{ad}: AutoPeftModelForCausalLM(dir) logits == qalign forward --adapter: rel {r:.2e}")
        moved = rel(want_ad, want)
        ck(moved > 1e-3, f"{ad}: the adapter changes the logits (rel {moved:.2e} from the base)")

    # 3. merge --dtype f32: one dtype, config to match, loaded as float32
    run("merge", "--model", base, "--adapter", "run/adapter", "--out", "merged", "--dtype", "f32")
    dts = set(st_dtypes("merged/model.safetensors").values())
    ck(dts == {"F32"}, f"merge --dtype f32: every tensor F32 ({dts})")
    mc = json.load(open("merged/config.json"))
    ck(mc.get("torch_dtype") == "float32" and mc.get("dtype", "float32") == "float32",
       f"merged config.json torch_dtype/dtype float32 ({mc.get('torch_dtype')}, {mc.get('dtype')})")
    mm = AutoModelForCausalLM.from_pretrained(os.path.abspath("merged"), torch_dtype="auto")
    pdt = {p.dtype for p in mm.parameters()}
    ck(pdt == {torch.float32}, f"transformers loads the f32 merge as float32 ({pdt})")
    with torch.no_grad():
        got_m = mm(torch.tensor([ids])).logits[0].double().numpy()
    r = rel(got_m, want_ad)
    ck(r <= 2e-5, f"merged f32 logits (transformers) == base + adapter float64: rel {r:.2e}")
    run("merge", "--model", base, "--adapter", "run/adapter", "--out", "merged_same")
    ck(open("merged_same/config.json").read() == open("base/config.json").read(), "merge --dtype same: config.json copied")
    sd, bd = st_dtypes("merged_same/model.safetensors"), st_dtypes("base/model.safetensors")
    ck(sd == bd, "merge --dtype same: every tensor keeps its dtype")
ck.finish(need_one=True)
