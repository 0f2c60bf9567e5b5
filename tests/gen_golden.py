"""gen_golden.py --out DIR [--check-against ROOT] — the golden fixtures of `ctest -L golden`, made with
Hugging Face transformers + PEFT on the CPU in float64 (docs/testing.md says what each file holds):

  DIR/{llama,mistral,qwen2}/
    model/                      a tiny random model as save_pretrained writes it (config.json in that
                                architecture's layout, model.safetensors in BF16, generation_config.json):
                                hidden 64, 3 layers, 4 query / 2 KV heads, head_dim 16, intermediate 160,
                                vocab 384. llama: the legacy config layout (top-level rope_theta); mistral: the
                                newer one (rope_parameters, dtype) with sliding_window 8 (active at T=20);
                                qwen2: q/k/v biases, tied embeddings, sliding_window 4 with
                                use_sliding_window false (the window must not be applied)
    golden.safetensors          input_ids / attention_mask / labels [3, 20] (rows 1, 2 right-padded by 5
                                and 2, labels -100 on the 8 prompt positions and on padding) and the float64
                                reference outputs stored as float32: logits, loss, hidden_states.{0..3},
                                logit_lens.{0..2}, grad.inputs_embeds, and for two LoRA adapters (lora_qv:
                                r=4 alpha=8 on q,v; lora_all: r=2 alpha=6 on all seven projections, A and B
                                random, dropout 0) their logits, loss, gradients, the loss after one torch
                                AdamW step and the matrices after two (lr 1e-2, betas 0.9/0.999, eps 1e-8,
                                weight decay 0.01)
    adapter_{qv,all}_{init,after2steps}/   those adapters as PEFT's save_pretrained writes them

The weights, inputs and adapter initializations come from a seeded generator (--seed), so two runs
write the same numbers. With --check-against ROOT the weights, inputs and initial adapters are taken
from ROOT's fixtures instead and every reference tensor written is compared with ROOT's golden.safetensors
(relative error; the same check `ctest -L golden` applies to qalign): a way to confirm that this script
computes what an earlier set of fixtures holds.

Needs torch, transformers and peft (scripts/setup.sh installs them into .venv-hf); exit 77 without them.
Example:  .venv-hf/bin/python tests/gen_golden.py --out build/fixtures/hf"""
import argparse
import json
import os
import shutil
import sys
import tempfile

try:
    import numpy as np
    import torch
    import transformers
    import peft
    from peft import LoraConfig, get_peft_model
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM
except Exception as ex:
    print(f"gen_golden: cannot run: {ex!r}; install torch, transformers and peft (scripts/setup.sh makes .venv-hf)")
    sys.exit(77)

B, T, PROMPT = 3, 20, 8
PADS = [0, 5, 2]
SHAPE = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=384, max_position_embeddings=256)
LORAS = {"qv": dict(r=4, alpha=8, targets=["q_proj", "v_proj"]),
         "all": dict(r=2, alpha=6, targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])}
ADAMW = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)


def arch_config(arch):
    """(the transformers config object, the config.json written: that architecture's on-disk layout)"""
    common = {"attention_dropout": 0.0, "hidden_act": "silu", "initializer_range": 0.02, "pad_token_id": None,
              "use_cache": True, **SHAPE}
    if arch == "llama":
        j = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "bos_token_id": 1, "eos_token_id": 2,
             "mlp_bias": False, "model_type": "llama", "pretraining_tp": 1, "rms_norm_eps": 1e-5,
             "tie_word_embeddings": False, "transformers_version": "4.38.2", "rope_theta": 10000.0,
             "rope_scaling": None, "torch_dtype": "bfloat16", **common}
        cfg = LlamaConfig(**{k: v for k, v in j.items() if k not in ("architectures", "transformers_version", "torch_dtype", "model_type")})
    elif arch == "mistral":
        j = {"architectures": ["MistralForCausalLM"], "bos_token_id": 1, "dtype": "bfloat16", "eos_token_id": 2,
             "head_dim": 16, "model_type": "mistral", "rms_norm_eps": 1e-5,
             "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}, "sliding_window": 8,
             "tie_word_embeddings": False, "transformers_version": "5.17.0", **common}
        cfg = MistralConfig(rope_theta=10000.0, **{k: v for k, v in j.items() if k not in (
            "architectures", "transformers_version", "dtype", "model_type", "rope_parameters")})
    elif arch == "qwen2":
        j = {"architectures": ["Qwen2ForCausalLM"], "bos_token_id": None, "eos_token_id": None, "max_window_layers": 2,
             "model_type": "qwen2", "rms_norm_eps": 1e-6, "sliding_window": 4, "tie_word_embeddings": True,
             "transformers_version": "4.37.0", "use_sliding_window": False, "rope_theta": 1000000.0,
             "torch_dtype": "bfloat16", **common}
        cfg = Qwen2Config(**{k: v for k, v in j.items() if k not in ("architectures", "transformers_version", "torch_dtype", "model_type")})
    else:
        raise ValueError(arch)
    cfg._attn_implementation = "eager"  # the plain softmax path, with the sliding window where the config asks
    return cfg, dict(sorted(j.items()))


def model_class(arch):
    return {"llama": LlamaForCausalLM, "mistral": MistralForCausalLM, "qwen2": Qwen2ForCausalLM}[arch]


def random_weights(model, gen):
    """norm weights near 1, everything else N(0, 0.08); all rounded to bf16 (what the file stores)"""
    sd = {}
    for name, p in model.state_dict().items():
        if name == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        if name.endswith("norm.weight"):
            v = 1.0 + 0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64)
        else:
            v = 0.08 * torch.randn(p.shape, generator=gen, dtype=torch.float64)
        sd[name] = v.to(torch.bfloat16)
    return sd


def inputs(gen, vocab):
    ids = torch.randint(1, vocab, (B, T), generator=gen, dtype=torch.int64)
    mask = torch.ones(B, T, dtype=torch.int64)
    for b, n in enumerate(PADS):
        if n:
            ids[b, T - n:] = 0
            mask[b, T - n:] = 0
    labels = ids.clone()
    labels[:, :PROMPT] = -100
    labels[mask == 0] = -100
    return ids, mask, labels


def read_st(path):
    with safe_open(path, "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def peft_model(base, spec):
    cfg = LoraConfig(r=spec["r"], lora_alpha=spec["alpha"], target_modules=spec["targets"], lora_dropout=0.0,
                     bias="none", task_type="CAUSAL_LM", init_lora_weights=False)
    return get_peft_model(base, cfg)


def save_adapter(pm, d):
    """PEFT's save_pretrained: adapter_config.json + adapter_model.safetensors (its model card dropped)"""
    pm.save_pretrained(d)
    if os.path.exists(os.path.join(d, "README.md")):
        os.remove(os.path.join(d, "README.md"))


def lora_params(pm):
    return {n: p for n, p in pm.named_parameters() if "lora_" in n}


def make_fixture(arch, out, seed, like):
    cfg, cfg_json = arch_config(arch)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = model_class(arch)(cfg).to(torch.float64).eval()
    if like:
        sd16 = read_st(os.path.join(like, arch, "model", "model.safetensors"))
        g = read_st(os.path.join(like, arch, "golden.safetensors"))
        ids, mask, labels = (g[k].to(torch.int64) for k in ("input_ids", "attention_mask", "labels"))
    else:
        sd16 = random_weights(model, gen)
        ids, mask, labels = inputs(gen, cfg.vocab_size)
    missing, unexpected = model.load_state_dict({k: v.to(torch.float64) for k, v in sd16.items()}, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    if cfg.tie_word_embeddings:
        model.tie_weights()

    mdir = os.path.join(out, arch, "model")
    os.makedirs(mdir, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd16.items()}, os.path.join(mdir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(cfg_json, f, indent=2)
        f.write("\n")
    with open(os.path.join(mdir, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": True, "bos_token_id": cfg_json["bos_token_id"],
                   "eos_token_id": cfg_json["eos_token_id"], "transformers_version": cfg_json["transformers_version"],
                   "use_cache": True}, f, indent=2)
        f.write("\n")

    ref = {"input_ids": ids.to(torch.int32), "attention_mask": mask.to(torch.int32), "labels": labels.to(torch.int32)}
    L = cfg.num_hidden_layers
    with torch.no_grad():
        o = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    ref["logits"] = o.logits
    ref["loss"] = o.loss.reshape(1)
    for i, h in enumerate(o.hidden_states):
        ref[f"hidden_states.{i}"] = h
    with torch.no_grad():
        for i in range(L):
            ref[f"logit_lens.{i}"] = model.lm_head(model.model.norm(o.hidden_states[i]))
    emb = model.model.embed_tokens(ids).detach().requires_grad_(True)
    model(inputs_embeds=emb, attention_mask=mask, labels=labels).loss.backward()
    ref["grad.inputs_embeds"] = emb.grad
    model.zero_grad(set_to_none=True)

    for tag, spec in LORAS.items():
        pm = peft_model(model, spec)
        params = lora_params(pm)
        if like:
            init = read_st(os.path.join(like, arch, f"adapter_{tag}_init", "adapter_model.safetensors"))
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(init[n.replace(".default", "")].to(torch.float64))
        else:
            with torch.no_grad():
                for n in sorted(params):
                    params[n].copy_(0.05 * torch.randn(params[n].shape, generator=gen, dtype=torch.float64))
        adir = os.path.join(out, arch, f"adapter_{tag}_init")
        save_adapter(pm, adir)
        opt = torch.optim.AdamW([params[n] for n in sorted(params)], **ADAMW)
        o = pm(input_ids=ids, attention_mask=mask, labels=labels)
        ref[f"lora_{tag}.logits"] = o.logits.detach()
        ref[f"lora_{tag}.loss"] = o.loss.detach().reshape(1)
        o.loss.backward()
        for n in sorted(params):
            ref[f"lora_{tag}.grad.{n}"] = params[n].grad.detach().clone()
        opt.step()
        opt.zero_grad(set_to_none=True)
        o = pm(input_ids=ids, attention_mask=mask, labels=labels)
        ref[f"lora_{tag}.loss_after_step1"] = o.loss.detach().reshape(1)
        o.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        for n in sorted(params):
            ref[f"lora_{tag}.after2steps.{n}"] = params[n].detach().clone()
        save_adapter(pm, os.path.join(out, arch, f"adapter_{tag}_after2steps"))
        model = pm.unload()  # the base model without LoRA layers, for the next adapter
        model.zero_grad(set_to_none=True)

    meta = {"arch": arch, "B": str(B), "T": str(T), "dtype_of_reference": "float64",
            "hidden_states": "HF output_hidden_states: [0]=embeddings, [i]=after layer i, last one after final norm",
            "logit_lens.i": "lm_head(norm(hidden_states[i])) for i < num_layers",
            "loss": "mean CE over positions t whose label[t+1] != -100 (HF shift)",
            "lora_qv": "r=4 alpha=8 targets q_proj,v_proj", "lora_all": "r=2 alpha=6 all linear",
            "adamw": "lr=1e-2 betas=(0.9,0.999) eps=1e-8 weight_decay=0.01 (torch AdamW, decoupled)",
            "generator": f"tests/gen_golden.py: torch {torch.__version__}, transformers {transformers.__version__}, "
                         f"peft {peft.__version__}, seed {seed}" + (f", inputs and weights of {like}" if like else "")}
    out_t = {k: (v.detach().to(torch.float32) if v.is_floating_point() else v).contiguous() for k, v in ref.items()}
    save_file(out_t, os.path.join(out, arch, "golden.safetensors"), metadata=meta)
    return out_t


def compare(arch, mine, like):
    """relative error of every reference tensor against like/<arch>/golden.safetensors; returns the worst"""
    theirs = read_st(os.path.join(like, arch, "golden.safetensors"))
    worst = 0.0
    ok = True
    for k, v in sorted(theirs.items()):
        if k not in mine:
            print(f"  {arch}: {k} missing from the generated set")
            ok = False
            continue
        a, b = mine[k].to(torch.float64), v.to(torch.float64)
        if k in ("input_ids", "attention_mask", "labels"):
            ok &= bool(torch.equal(a, b))
            continue
        if k.startswith(("logits", "hidden_states", "logit_lens", "lora_qv.logits", "lora_all.logits")) or k in ("grad.inputs_embeds",):
            m = theirs["attention_mask"].to(torch.bool)
            if a.dim() == 3:
                a, b = a[m], b[m]
        err = float(torch.linalg.norm(a - b) / max(float(torch.linalg.norm(b)), 1e-300))
        if k.endswith("loss") or "loss_after" in k:
            err = float((a - b).abs().max())
        worst = max(worst, err)
        if err > 1e-5:
            print(f"  {arch}: {k}: {err:.2e}")
            ok = False
    extra = sorted(set(mine) - set(theirs))
    if extra:
        print(f"  {arch}: not in {like}: {extra[:4]}")
    return ok, worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="the fixture root to write (…/hf)")
    ap.add_argument("--seed", type=int, default=20240517)
    ap.add_argument("--arch", default="llama,mistral,qwen2")
    ap.add_argument("--check-against", metavar="ROOT", help="take weights, inputs and adapter inits from ROOT and "
                    "compare every reference tensor with ROOT's")
    a = ap.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    out = os.path.abspath(a.out)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".gen_golden.", dir=os.path.dirname(out) or ".")
    try:
        status = 0
        for arch in a.arch.split(","):
            mine = make_fixture(arch, tmp, a.seed, a.check_against)
            if a.check_against:
                ok, worst = compare(arch, mine, a.check_against)
                print(f"gen_golden: {arch}: {'agrees with' if ok else 'DIFFERS from'} {a.check_against} "
                      f"(worst relative error {worst:.1e})")
                status |= 0 if ok else 1
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
    print(f"gen_golden: wrote {out} ({a.arch}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"peft {peft.__version__})")
    return status


if __name__ == "__main__":
    sys.exit(main())
