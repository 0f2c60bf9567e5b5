#!/usr/bin/env python3
"""peft_peer.py — the peer measured beside bench_gpu_train in the same GPU run: Hugging Face transformers +
PEFT, bf16 weights, SDPA attention, random weights of the real shapes, LoRA r=8 (alpha 16, dropout 0.05)
on q_proj and v_proj, AdamW; labels on the second half of each sequence (as bench_gpu_train).
Mean of --steps steps after --warmup warm-up steps, each synchronized.

    python3 bench/gpu/peft_peer.py --runs mistral-7b:train:16x512,mistral-7b:forward:16x512 [--json F]

Prints one JSON line per measurement (and appends it to --json). Needs torch (CUDA), transformers, peft:
a benchmark peer only, never a dependency of qalign.
"""
import argparse
import json
import sys
import time

SHAPES = {
    # the shapes bench_gpu_train builds (model/model.c set_shape), as transformers configs
    "mistral-7b": dict(arch="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, vocab_size=32000, rms_norm_eps=1e-5,
                       rope_theta=10000.0, max_position_embeddings=32768, tie_word_embeddings=False),
    "qwen1.5-1.8b": dict(arch="qwen2", hidden_size=2048, intermediate_size=5504, num_hidden_layers=24,
                         num_attention_heads=16, num_key_value_heads=16, vocab_size=151936, rms_norm_eps=1e-6,
                         rope_theta=1000000.0, max_position_embeddings=32768, tie_word_embeddings=False),
}


def parse_runs(spec):
    """'mistral-7b:train:16x512,qwen1.5-1.8b:forward:16x512' -> [(shape, mode, B, T)]"""
    out = []
    for item in spec.split(","):
        shape, mode, bt = item.split(":")
        b, t = bt.split("x")
        if shape not in SHAPES or mode not in ("train", "forward"):
            raise SystemExit(f"peft_peer.py: bad run '{item}' (shapes {sorted(SHAPES)}, modes train|forward)")
        out.append((shape, mode, int(b), int(t)))
    return out


def timed(model, step, ids, labels, opt, n_warm, n_steps, torch):
    times = []
    for i in range(n_warm + n_steps):
        torch.cuda.synchronize()
        s0 = time.perf_counter()
        if opt is not None:
            out = model(input_ids=ids, labels=labels)
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                model(input_ids=ids)
        torch.cuda.synchronize()
        if i >= n_warm:
            times.append(time.perf_counter() - s0)
    return sum(times) / len(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="mistral-7b:train:16x512",
                    help="comma-separated shape:mode:BxT (one model build per shape; forward runs first)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    runs = parse_runs(a.runs)
    try:
        import torch
        import transformers
        import peft
    except ImportError as ex:
        print(json.dumps({"peer": "hf+peft", "error": f"import failed: {ex}"}))
        return 3
    if not torch.cuda.is_available():
        print(json.dumps({"peer": "hf+peft", "error": "no CUDA device visible to torch"}))
        return 3
    dev = torch.device("cuda")
    rc = 0
    for shape in dict.fromkeys(r[0] for r in runs):
        s = dict(SHAPES[shape])
        arch = s.pop("arch")
        cfg_cls = transformers.MistralConfig if arch == "mistral" else transformers.Qwen2Config
        cfg = cfg_cls(**s)
        cfg._attn_implementation = "sdpa"
        torch.manual_seed(0)
        t0 = time.time()
        with dev:
            try:
                model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
            except TypeError:  # transformers < 4.56
                model = transformers.AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16)
        n_params = sum(p.numel() for p in model.parameters())
        build_s = time.time() - t0
        mine = sorted((r for r in runs if r[0] == shape), key=lambda r: r[1] != "forward")
        wrapped = False
        opt = None
        for _, mode, B, T in mine:
            if mode == "train" and not wrapped:
                lc = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                                     task_type="CAUSAL_LM")
                model = peft.get_peft_model(model, lc)
                model.train()
                opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
                wrapped = True
            elif mode == "forward":
                model.eval()
            ids = torch.randint(0, cfg.vocab_size, (B, T), device=dev)
            labels = ids.clone()
            labels[:, : T // 2] = -100
            torch.cuda.reset_peak_memory_stats()
            try:
                step = timed(model, mode, ids, labels, opt if mode == "train" else None, a.warmup, a.steps, torch)
            except torch.cuda.OutOfMemoryError as ex:
                print(json.dumps({"peer": "hf+peft", "shape": shape, "mode": mode, "batch": B, "seq": T,
                                  "error": f"out of memory: {ex}"[:300]}))
                rc = 1
                torch.cuda.empty_cache()
                continue
            tps = B * T / step
            flops_tok = (4.0 if mode == "train" else 2.0) * n_params
            rec = {"peer": "hf+peft", "torch": torch.__version__, "transformers": transformers.__version__,
                   "peft": peft.__version__, "device": torch.cuda.get_device_name(0), "shape": shape, "mode": mode,
                   "batch": B, "seq": T, "params": n_params, "build_s": round(build_s, 2), "step_s": step,
                   "tokens_per_s": tps, "tflops": tps * flops_tok * 1e-12,
                   "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9, "steps": a.steps, "warmup": a.warmup}
            line = json.dumps(rec)
            print(line, flush=True)
            if a.json:
                with open(a.json, "a") as f:
                    f.write(line + "\n")
        del model, opt
        torch.cuda.empty_cache()
    return rc


if __name__ == "__main__":
    sys.exit(main())
