"""nf4_oracle.py — the NF4 fixture models against transformers + bitsandbytes + PEFT (label nf4).

usage: nf4_oracle.py TEST_GOLDEN FIXTURES_ROOT [TOLERANCE [TOLERANCE_STEPS_F64 [TOLERANCE_STEPS_FP32]]]

For every fixture directory and both absmax variants (bnb_4bit_use_double_quant off / on), transformers loads
the model 4-bit on the CPU (load_in_4bit, nf4, blocks of 64) and computes on the fixture's batch what
golden.safetensors holds for the float model: logits, every hidden state, the logit lens, the loss,
d loss / d inputs_embeds, and for every adapter_<tag>_init/ (PEFT LoRA on the NF4 base: QLoRA) the logits,
the loss, every LoRA gradient, the loss after one AdamW step and the LoRA weights after two (torch AdamW,
lr 1e-2, betas 0.9/0.999, eps 1e-8, weight decay 0.01). Two references:
  - float64: every Linear4bit multiplies by bitsandbytes' dequantize_4bit of its weight (fp32, exact in
    float64) and everything else runs in float64, as the float fixtures were made; against
      (a) the float checkpoint quantized by qalign at load (QALIGN_QUANT=nf4 / nf4-dq) and
      (b) the 4-bit checkpoint that transformers saved (save_pretrained of the quantized model);
  - fp32: the stack as users run it (Linear4bit with bnb_4bit_compute_dtype float32, fp32 PEFT and AdamW),
    against (a).
Tolerances (relative error ||out - ref|| / ||ref||, losses absolute): TOLERANCE (default 1e-4, the float
fixtures' bound) for logits, hidden states, lens, loss and gradients against both references; the LoRA
weights after two AdamW steps TOLERANCE_STEPS_F64 (default 3e-4) and TOLERANCE_STEPS_FP32 (default 5e-4):
AdamW's m / sqrt(v) turns the rounding of near-zero gradients into whole steps of lr.
Golden files of the same layout go to a temporary fixture root and tests/test_golden.c runs on it.
Exit 77 (skipped) when torch / bitsandbytes / transformers / peft are not installed."""
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qtcheck import Checks, hf_fixtures  # noqa: E402

try:
    import torch
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbF
    from peft import PeftModel
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    from transformers.utils import logging as hf_logging
except ImportError as exc:
    print(f"SKIP: {exc} (pip install torch bitsandbytes transformers peft into .venv)")
    sys.exit(77)


_dequantize_4bit = bnbF.dequantize_4bit


def _dequantize_4bit_rows(A, quant_state=None, *args, **kwargs):
    """bitsandbytes 0.50.2's CPU dequantize_4bit, given a 2-D shape whose rows are not a multiple of 64 long,
    takes the absmax of the wrong block (seen on a CPU with AVX512; the fixtures' down_proj has K = 160): the
    same codes and absmax dequantized with the flat shape, then reshaped. Identical wherever the rows are
    whole blocks, as in every real model."""
    st = quant_state
    if (st is not None and A.device.type == "cpu" and len(st.shape) == 2 and st.shape[-1] % st.blocksize
            and not getattr(st, "packing_format_for_cpu", False)):
        flat = copy.copy(st)
        flat.shape = torch.Size([st.shape.numel()])
        return _dequantize_4bit(A, flat, *args, **kwargs).reshape(st.shape)
    return _dequantize_4bit(A, quant_state, *args, **kwargs)


bnbF.dequantize_4bit = _dequantize_4bit_rows


def load4(model_dir, dq):
    cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=dq,
                             bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=cfg, dtype=torch.float32,
                                                 device_map="cpu")
    # On CPUs with AVX512-BF16, bitsandbytes 0.50.2 repacks a Linear4bit's weight for its own CPU GEMM in
    # no-grad inference; that layout needs in_features % 64 == 0 (it fails on the fixtures' down_proj, K = 160)
    # and has numerics of its own: the reference keeps the portable path. Its CPU gemm_4bit shares the
    # dequantize bug above for such rows, so those layers (down_proj here; no real model has one) multiply by
    # the dequantized weight in the compute dtype: what the portable path computes.
    for mod in model.modules():
        if isinstance(mod, bnb.nn.Linear4bit):
            mod.support_avx512bf16_for_cpu = False
            if mod.in_features % 64:
                mod.forward = (lambda m: lambda x: torch.nn.functional.linear(
                    x, bnbF.dequantize_4bit(m.weight.data, m.weight.quant_state).to(x.dtype), m.bias))(mod)
    return model


def exact_f64(model):
    """every Linear4bit multiplies by bitsandbytes' dequantized weight in float64"""
    for mod in model.modules():
        if isinstance(mod, bnb.nn.Linear4bit):
            w = bnbF.dequantize_4bit(mod.weight.data, mod.weight.quant_state).to(torch.float64)
            mod.forward = (lambda w, m: lambda x: torch.nn.functional.linear(
                x, w, None if m.bias is None else m.bias.to(torch.float64)))(w, mod)
    return to_f64(model)


def to_f64(model):
    """float parameters to float64"""
    for mod in model.modules():
        for p in mod.parameters(recurse=False):
            if p.dtype in (torch.float32, torch.bfloat16, torch.float16):
                p.data = p.data.double()
    return model


def base_outputs(model, ids, mask, labels):
    out = {}
    with torch.no_grad():
        o = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    out["logits"] = o.logits
    hs = o.hidden_states
    for i, h in enumerate(hs):
        out[f"hidden_states.{i}"] = h
    inner = model.model
    with torch.no_grad():
        for i in range(len(hs) - 1):   # layers 0 .. L-1 (the lens of layer L is the logits)
            out[f"logit_lens.{i}"] = model.lm_head(inner.norm(hs[i]))
    emb = inner.embed_tokens(ids).detach().requires_grad_(True)
    o = model(inputs_embeds=emb, attention_mask=mask, labels=labels)
    o.loss.backward()
    out["loss"] = o.loss.detach().reshape(1)
    out["grad.inputs_embeds"] = emb.grad
    return out


def lora_outputs(model, adapter_dir, tag, ids, mask, labels, f64):
    out = {}
    pm = PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)
    if f64:
        to_f64(pm)
    params = [(n, p) for n, p in pm.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW([p for _, p in params], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    for step in (1, 2):
        opt.zero_grad()
        o = pm(input_ids=ids, attention_mask=mask, labels=labels)
        o.loss.backward()
        if step == 1:
            out[f"lora_{tag}.logits"] = o.logits.detach()
            out[f"lora_{tag}.loss"] = o.loss.detach().reshape(1)
            for n, p in params:
                out[f"lora_{tag}.grad.{n}"] = p.grad.detach().clone()
        else:
            out[f"lora_{tag}.loss_after_step1"] = o.loss.detach().reshape(1)
        opt.step()
    for n, p in params:
        out[f"lora_{tag}.after2steps.{n}"] = p.detach().clone()
    pm.unload()   # the base model without LoRA layers, for the next adapter
    return out


def main():
    golden_bin, root = sys.argv[1], hf_fixtures(sys.argv[2])
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
    steps64 = float(sys.argv[4]) if len(sys.argv) > 4 else 3e-4
    steps32 = float(sys.argv[5]) if len(sys.argv) > 5 else 5e-4
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    ck = Checks()
    fixtures = sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "golden.safetensors")))
    with tempfile.TemporaryDirectory() as tmp:
        def fixture_dir(kind, fx, out, model_dir, src, adapters):
            d = os.path.join(tmp, kind, fx)
            os.makedirs(d)
            save_file(out, os.path.join(d, "golden.safetensors"))
            os.symlink(os.path.abspath(model_dir), os.path.join(d, "model"))
            for a in adapters:
                os.symlink(os.path.abspath(os.path.join(src, a)), os.path.join(d, a))

        for dq, variant in ((False, "nf4"), (True, "nf4-dq")):
            for fx in fixtures:
                src = os.path.join(root, fx)
                g = load_file(os.path.join(src, "golden.safetensors"))
                ids, mask, labels = g["input_ids"].long(), g["attention_mask"].long(), g["labels"].long()
                adapters = sorted(a for a in os.listdir(src) if re.fullmatch(r"adapter_(.+)_init", a))
                model = load4(os.path.join(src, "model"), dq)
                saved = os.path.join(tmp, "checkpoints", f"{fx}-{variant}")
                model.save_pretrained(saved)
                for f64 in (False, True):
                    if f64:
                        exact_f64(model)
                    out = {"input_ids": g["input_ids"], "attention_mask": g["attention_mask"], "labels": g["labels"]}
                    out.update(base_outputs(model, ids, mask, labels))
                    for a in adapters:
                        tag = a[len("adapter_"):-len("_init")]
                        out.update(lora_outputs(model, os.path.join(src, a), tag, ids, mask, labels, f64))
                    out = {k: v.contiguous() for k, v in out.items()}
                    if f64:
                        fixture_dir(f"f64-at-load-{variant}", fx, out, os.path.join(src, "model"), src, adapters)
                        fixture_dir(f"f64-saved-{variant}", fx, out, saved, src, adapters)
                    else:
                        fixture_dir(f"fp32-at-load-{variant}", fx, out, os.path.join(src, "model"), src, adapters)
                del model
            keep = os.environ.get("QALIGN_NF4_KEEP")  # a copy of the float64 fixtures (e.g. for a GPU run)
            if keep:
                shutil.copytree(os.path.join(tmp, f"f64-at-load-{variant}"), os.path.join(keep, variant),
                                dirs_exist_ok=True)
            for ref, kind, ts in (("f64", "at-load", steps64), ("f64", "saved", steps64), ("fp32", "at-load", steps32)):
                env = dict(os.environ, QALIGN_FIXTURES=os.path.join(tmp, f"{ref}-{kind}-{variant}"),
                           QALIGN_GOLDEN_TOL=str(tol), QALIGN_GOLDEN_TOL_STEPS=str(ts))
                env.pop("QALIGN_QUANT", None)
                if kind == "at-load":
                    env["QALIGN_QUANT"] = variant
                r = subprocess.run([golden_bin], env=env, capture_output=True, text=True)
                what = (f"{variant}, {'quantized by qalign at load' if kind == 'at-load' else 'the saved 4-bit checkpoint'}"
                        f" vs the {ref} reference")
                worst = re.search(r"max relative error (\S+), max loss error (\S+) .*AdamW steps (\S+)", r.stdout)
                counts = re.search(r"(\d+) passed, (\d+) failed", r.stdout)
                ok = r.returncode == 0 and counts and int(counts.group(2)) == 0 and int(counts.group(1)) > 0
                if not ok:
                    print("\n".join(l for l in r.stdout.splitlines() if "FAIL" in l) or r.stdout[-3000:], r.stderr[-2000:])
                ck(ok, f"{what}: test_golden")
                w = worst.groups() if worst else ("?", "?", "?")
                print(f"{what}: {counts.group(1) if counts else '?'} checks, max relative error {w[0]} (tolerance "
                      f"{tol:g}), loss {w[1]}, LoRA after 2 AdamW steps {w[2]} (tolerance {ts:g})")
    ck.finish(need_one=True)


if __name__ == "__main__":
    main()
