#!/usr/bin/env python3
"""cpu_vs_torch.py — the PyTorch peer of bench_cpu_vs_torch: the same Llama model (weights read from the
qalign model directory, BF16 -> fp32), the same batch, the same LoRA training step (q,v r=8 alpha 16, no
dropout; forward, loss on the labelled positions, backward, AdamW) and the same evaluation forward (no grad,
next-token logits at the last position of each row, as HF's logits_to_keep=1). Idiomatic eager PyTorch: nn.Linear modules with frozen fp32 weights,
F.scaled_dot_product_attention(is_causal=True, enable_gqa=True), HF RMSNorm / rotate_half RoPE,
torch.optim.AdamW over the LoRA parameters, no Python loops over tokens or heads.

usage: cpu_vs_torch.py MODEL_DIR MODE [--threads N] [--batch B] [--seq T] [--steps S] [--dtype fp32|bf16]
                       [--labels half|all]
  MODE train | eval | mm   (mm: torch.mm GFLOP/s on a [2048,2048]x[2048,2048] product)
Prints one line: `torch MODE dtype=.. sec=<best seconds per step> peak_rss_kb=<ru_maxrss> base_rss_kb=<after
setup, before the first step> loss=<first step loss>`.
"""
import argparse, json, os, resource, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file


def rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class RMSNorm(nn.Module):
    def __init__(self, w, eps):
        super().__init__()
        self.weight = nn.Parameter(w, requires_grad=False)
        self.eps = eps

    def forward(self, x):  # HF LlamaRMSNorm
        dt = x.dtype
        x = x.float()
        var = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(var + self.eps)
        return self.weight * x.to(dt)


def linear(w):
    m = nn.Linear(w.shape[1], w.shape[0], bias=False)
    m.weight = nn.Parameter(w, requires_grad=False)
    return m


class LoraLinear(nn.Module):
    """PEFT LoRA: y = x Wᵀ + (alpha/r) (x Aᵀ) Bᵀ; A Kaiming-uniform, B = 0 (as PEFT)."""
    def __init__(self, w, r, alpha, gen):
        super().__init__()
        self.base = linear(w)
        bound = 1.0 / (w.shape[1] ** 0.5)
        self.lora_A = nn.Parameter((torch.rand(r, w.shape[1], generator=gen) * 2 - 1) * bound)
        self.lora_B = nn.Parameter(torch.zeros(w.shape[0], r))
        self.scale = alpha / r

    def forward(self, x):
        return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Layer(nn.Module):
    def __init__(self, sd, i, cfg, r, alpha, gen):
        super().__init__()
        p = f"model.layers.{i}."
        eps = cfg["rms_norm_eps"]
        self.H, self.Hk = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.hd = cfg.get("head_dim") or cfg["hidden_size"] // self.H
        self.n1 = RMSNorm(sd[p + "input_layernorm.weight"], eps)
        self.n2 = RMSNorm(sd[p + "post_attention_layernorm.weight"], eps)
        self.q = LoraLinear(sd[p + "self_attn.q_proj.weight"], r, alpha, gen)
        self.k = linear(sd[p + "self_attn.k_proj.weight"])
        self.v = LoraLinear(sd[p + "self_attn.v_proj.weight"], r, alpha, gen)
        self.o = linear(sd[p + "self_attn.o_proj.weight"])
        self.gate = linear(sd[p + "mlp.gate_proj.weight"])
        self.up = linear(sd[p + "mlp.up_proj.weight"])
        self.down = linear(sd[p + "mlp.down_proj.weight"])

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        h = self.n1(x)
        q = self.q(h).view(B, T, self.H, self.hd).transpose(1, 2)
        k = self.k(h).view(B, T, self.Hk, self.hd).transpose(1, 2)
        v = self.v(h).view(B, T, self.Hk, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.o(a.transpose(1, 2).reshape(B, T, -1))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, d, r=8, alpha=16, seed=1):
        super().__init__()
        cfg = json.load(open(os.path.join(d, "config.json")))
        sd = {k: v.float() for k, v in load_file(os.path.join(d, "model.safetensors")).items()}
        gen = torch.Generator().manual_seed(seed)
        self.embed = nn.Embedding.from_pretrained(sd["model.embed_tokens.weight"], freeze=True)
        self.layers = nn.ModuleList(Layer(sd, i, cfg, r, alpha, gen) for i in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(sd["model.norm.weight"], cfg["rms_norm_eps"])
        self.lm_head = linear(sd["lm_head.weight"])
        hd = self.layers[0].hd
        self.theta = cfg.get("rope_theta", 10000.0)
        self.register_buffer("inv_freq", 1.0 / (self.theta ** (torch.arange(0, hd, 2).float() / hd)), persistent=False)

    def forward(self, ids, last_only=False):
        B, T = ids.shape
        pos = torch.arange(T, dtype=torch.float32)
        f = torch.outer(pos, self.inv_freq)
        emb = torch.cat((f, f), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        h = self.norm(x)
        return self.lm_head(h[:, -1:] if last_only else h)  # HF logits_to_keep=1 for the evaluation


def batch(B, T, V):
    i = torch.arange(B * T, dtype=torch.int64)
    return ((i * 7919 + 13) % V).view(B, T)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("mode", choices=["train", "eval", "mm"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--labels", choices=["all", "half"], default="half",
                    help="train: positions with a label: every one, or the second half of each row (the first half "
                         "is the prompt, -100)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.mode == "mm":
        x, y = torch.randn(2048, 2048), torch.randn(2048, 2048)
        best = 1e30
        for _ in range(3 * a.steps + 2):
            t = time.perf_counter(); torch.mm(x, y); best = min(best, time.perf_counter() - t)
        print(f"torch mm sec={best:.6f} gflops={2 * 2048 ** 3 / best * 1e-9:.1f}")
        return
    model = Llama(a.model)
    V = model.lm_head.weight.shape[0]
    ids = batch(a.batch, a.seq, V)
    use_ac = a.dtype == "bf16"
    base = rss_kb()
    times, cpus, first_loss = [], [], None
    if a.mode == "train":
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
        labels = ids.clone()  # position t predicts labels[t+1] (HF shift); -100 = no loss
        if a.labels == "half":
            labels[:, : a.seq // 2] = -100
        for s in range(a.steps + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_ac):
                logits = model(ids)
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, V).float(), labels[:, 1:].reshape(-1), ignore_index=-100)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            lv = loss.item()
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            if first_loss is None: first_loss = lv
            del logits, loss
    else:
        with torch.inference_mode():
            for s in range(a.steps + 1):
                t0, c0 = time.perf_counter(), time.process_time()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_ac):
                    logits = model(ids, last_only=True)
                # cross-check value: mean over rows of -log p(ids[b, 0]) at the last position
                lv = F.cross_entropy(logits[:, -1].float(), ids[:, 0]).item() if first_loss is None else 0.0
                times.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                if first_loss is None: first_loss = lv
                del logits
    best = min(times[1:]) if len(times) > 1 else times[0]
    cpu = min(cpus[1:]) if len(cpus) > 1 else cpus[0]
    print(f"torch {a.mode} dtype={a.dtype} sec={best:.6f} cpu_sec={cpu:.6f} peak_rss_kb={rss_kb()} base_rss_kb={base} loss={first_loss:.6f}")


if __name__ == "__main__":
    main()
