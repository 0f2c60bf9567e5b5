"""nf4_bnb.py — qalign's NF4 quantization against bitsandbytes, bit for bit (label nf4).

usage: nf4_bnb.py TEST_NF4_BINARY FIXTURES_ROOT

Tensors: random ones (normal, uniform, heavy-tailed, tiny and huge scales, all-zero and constant blocks, values
on the code table and on its midpoints, BF16 and F32, 1 to 262144 blocks) and every weight of every fixture
model. For each, `test_nf4 quantize` writes qalign's codes, absmax, dequantized values and double-quantized
absmax; bitsandbytes' functional.quantize_4bit (blocksize 64, nf4; compress_statistics off and on),
dequantize_4bit and dequantize_blockwise give the reference. Equal means equal bytes. torch runs one thread:
the double-quantization offset is torch's fp32 mean, whose summation order depends on the thread count.
Exit 77 (skipped) when torch / bitsandbytes are not installed."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qtcheck import Checks, hf_fixtures  # noqa: E402

try:
    import torch
    import bitsandbytes.functional as F
    from safetensors.torch import load_file, save_file
except ImportError as exc:
    print(f"SKIP: {exc} (pip install torch bitsandbytes safetensors into .venv)")
    sys.exit(77)


def random_tensors():
    g = torch.Generator().manual_seed(19)
    t = {}
    t["normal_f32"] = torch.randn(64 * 1000, generator=g) * 0.05
    t["normal_bf16"] = (torch.randn(64 * 777, generator=g) * 0.02).to(torch.bfloat16)
    t["uniform"] = torch.rand(64 * 500, generator=g) * 2 - 1
    t["heavy"] = torch.randn(64 * 300, generator=g) ** 5
    t["tiny"] = torch.randn(64 * 50, generator=g) * 1e-30
    t["huge"] = torch.randn(64 * 50, generator=g) * 1e30
    z = torch.randn(64 * 40, generator=g)
    z[64 * 3:64 * 4] = 0
    z[64 * 7:64 * 8] = -2.5
    z[64 * 9:64 * 10] = 0.75
    t["zero_const_blocks"] = z
    code = F.get_4bit_type("nf4", device="cpu")
    mid = (code[:-1] + code[1:]) / 2
    onc = code[torch.randint(0, 16, (64 * 64,), generator=g)] * 3.0
    onc[::64] = 3.0                           # absmax 3: x / absmax lands on the code values
    t["on_codes"] = onc
    onm = mid[torch.randint(0, 15, (64 * 64,), generator=g)].clone()
    onm[::64] = 1.0                           # absmax 1: exactly on the midpoints (ties go down)
    t["on_midpoints"] = onm
    for n in (1, 7, 33, 4096, 262144):        # block counts around torch's summation edges
        t[f"blocks_{n}"] = torch.randn(64 * n, generator=g) * 0.03
    return {k: v.contiguous() for k, v in t.items()}


def fixture_weights(root):
    out = {}
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "model", "model.safetensors")
        if not os.path.isfile(path):
            continue
        for k, v in load_file(path).items():
            if v.numel() % 64 == 0 and v.dtype in (torch.bfloat16, torch.float32):
                out[f"{name}/{k}"] = v.contiguous()
    return out


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(torch.uint8) if a.dtype != torch.uint8 else a,
                                                                      b.view(torch.uint8) if b.dtype != torch.uint8 else b)


def main():
    tool, root = sys.argv[1], hf_fixtures(sys.argv[2])
    torch.set_num_threads(1)
    tens = random_tensors()
    nrand = len(tens)
    tens.update(fixture_weights(root))
    ck = Checks()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
        save_file(tens, src)
        subprocess.run([tool, "quantize", src, dst], check=True)
        ours = load_file(dst)
    ck(torch.equal(ours["table.nf4_code"], F.get_4bit_type("nf4", device="cpu")), "NF4 code table")
    ck(torch.equal(ours["table.dq_code"], F.create_dynamic_map()), "double-quant dynamic map")
    worst = {}
    bnb_self = []  # tensors whose bf16 dequantize in bitsandbytes disagrees with its own fp32 one
    for name, w in tens.items():
        q, st = F.quantize_4bit(w, blocksize=64, quant_type="nf4")
        ck(same(ours[name + ".codes"], q.reshape(-1)), f"{name}: codes")
        ck(same(ours[name + ".absmax"], st.absmax), f"{name}: absmax")
        deq = F.dequantize_4bit(q, st)  # in the input's dtype
        # the fp32 values: code[q] * absmax before that cast
        ref32 = torch.ops.bitsandbytes.dequantize_4bit.default(q, st.absmax, 64, "nf4", [w.numel()], torch.float32)
        ck(same(ours[name + ".dequant"], ref32.reshape(-1)), f"{name}: dequantized (fp32)")
        if w.dtype == torch.bfloat16:
            # bitsandbytes' own bf16 dequantize should be its fp32 values rounded to nearest even. Its 0.50.2 CPU
            # dequantize_4bit, given a 2-D shape whose rows are not a multiple of 64 long (the fixtures' down_proj,
            # K = 160), takes the absmax of the wrong block (seen on a CPU with AVX512; the flat-shape fp32 values
            # above are right): then qalign is held to the fp32 values rounded, and the disagreement of
            # bitsandbytes with itself is reported, not counted against qalign.
            if torch.equal(ref32.reshape(-1).to(torch.bfloat16), deq.reshape(-1)):
                ck(torch.equal(ours[name + ".dequant"].to(torch.bfloat16), deq.reshape(-1)),
                   f"{name}: dequantized, rounded to the input's bf16")
            else:
                bnb_self.append(name)
                ck(torch.equal(ours[name + ".dequant"].to(torch.bfloat16), ref32.reshape(-1).to(torch.bfloat16)),
                   f"{name}: dequantized, rounded to bf16 (bitsandbytes' fp32 values rounded)")
        q2, st2 = F.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
        ck(same(ours[name + ".codes"], q2.reshape(-1)), f"{name}: codes (double quant)")
        ck(same(ours[name + ".dq_absmax"], st2.absmax), f"{name}: 8-bit absmax")
        ck(same(ours[name + ".dq_nested_absmax"], st2.state2.absmax), f"{name}: nested absmax")
        ck(same(ours[name + ".dq_offset"], st2.offset.reshape(1).float()), f"{name}: offset "
           f"{ours[name + '.dq_offset'].item()!r} vs {st2.offset.item()!r}")
        dec = F.dequantize_blockwise(st2.absmax, st2.state2) + st2.offset
        ck(same(ours[name + ".dq_decoded"], dec.float()), f"{name}: decoded absmax")
        rel = ((ours[name + ".dequant"] - w.float().reshape(-1)).norm() / w.float().norm().clamp(min=1e-300)).item()
        worst[name] = rel
    print(f"{nrand} random tensors and {len(tens) - nrand} fixture weights: codes, absmax, dequantized values, "
          f"8-bit absmax, nested absmax, offset and decoded absmax compared byte for byte")
    if bnb_self:
        print(f"note: bitsandbytes' bf16 dequantize_4bit disagrees with its own fp32 dequantize (rounded) on "
              f"{len(bnb_self)} tensors ({', '.join(bnb_self[:3])}{', ...' if len(bnb_self) > 3 else ''}): rows not a "
              f"multiple of 64 long; compared with the fp32 values rounded instead")
    fw = [v for k, v in worst.items() if "/" in k]
    if fw:
        print(f"NF4 quantization error of the fixture weights: ||deq - w|| / ||w|| max {max(fw):.4f}")
    ck.finish(need_one=True)


if __name__ == "__main__":
    main()
