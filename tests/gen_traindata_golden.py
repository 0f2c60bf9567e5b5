#!/usr/bin/env python3
"""Expected training token sequences for tests/test_traindata.c, computed with HF `tokenizers`
the way LLaMA-Factory@6ebde4f builds them (template.py: each element encoded on its own with
add_special_tokens=False; bos/eos inserted as ids; data/utils.py infer_max_len for the cut).

    python3 tests/gen_traindata_golden.py ASSETS_DIR > tests/data/traindata_golden.json

ASSETS_DIR holds tokenizers/*.json and paper-data/ (scripts/fetch-assets.sh)."""
import json
import sys

from tokenizers import Tokenizer

assets = sys.argv[1] if len(sys.argv) > 1 else "assets"


def load(name):
    with open(f"{assets}/paper-data/snli/{name}", encoding="utf-8") as f:
        return json.load(f)


records = load("snli_zh10k_train_question.json")[:3] + load("snli_es10k_train_question.json")[:3]
records += [
    {"input": "", "answer": "x"},
    {"input": "  leading and trailing  ", "answer": " emoji \U0001F999 and\ttab\n"},
    {"input": "literal </s> and <s> inside", "answer": "<|im_end|> literal <|endoftext|>"},
    {"input": "Ünïcödé ﬁ NFC e\u0301", "answer": "日本語のテキスト。"},
]


def infer_max_len(source_len, target_len, max_len, reserved_label_len=1):
    max_target_len = int(max_len * (target_len / (source_len + target_len)))
    max_target_len = max(max_target_len, reserved_label_len)
    max_source_len = max_len - max_target_len
    return max_source_len, max_target_len


def qwen(tok, inp, ans):
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids
    im_end = tok.token_to_id("<|im_end|>")
    src = enc("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    src += enc("<|im_start|>user\n" + inp + "<|im_end|>\n<|im_start|>assistant\n")
    return src, enc(ans) + [im_end]


def mistral(tok, inp, ans):
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids if s else []
    return [tok.token_to_id("<s>")] + enc("[INST] " + inp + " [/INST]"), enc(ans) + [tok.token_to_id("</s>")]


def vanilla(eos):
    def f(tok, inp, ans):
        enc = lambda s: tok.encode(s, add_special_tokens=False).ids if s else []
        return enc(inp), enc(ans) + [eos]
    return f


cases = []
specs = [
    ("qwen1_5-qwen2.tokenizer.json", "qwen", qwen, -1),
    ("mistral-7b-v0.1.tokenizer.json", "mistral", mistral, 2),
    ("qwen1_5-qwen2.tokenizer.json", "vanilla", vanilla(151643), 151643),
    ("mistral-7b-v0.1.tokenizer.json", "vanilla", vanilla(2), 2),
]
for tokfile, tpl, fn, eos in specs:
    tok = Tokenizer.from_file(f"{assets}/tokenizers/{tokfile}")
    for cutoff in (0, 24):
        srcs, tgts = [], []
        for r in records:
            s, t = fn(tok, r["input"], r["answer"])
            if cutoff:
                ms, mt = infer_max_len(len(s), len(t), cutoff)
                s, t = s[:ms], t[:mt]
            srcs.append(s)
            tgts.append(t)
        cases.append({"tokenizer": tokfile, "template": tpl, "eos": eos, "cutoff": cutoff, "src": srcs, "tgt": tgts})

trunc = []
for (s, t, c) in [(10, 10, 8), (100, 3, 16), (3, 100, 16), (1000, 1, 64), (1, 1000, 64), (2047, 2, 2048),
                  (4000, 100, 2048), (5, 5, 10), (7, 9, 5), (0, 5, 3), (50, 50, 1), (7, 15, 22)]:
    ms, mt = infer_max_len(s, t, c)
    trunc.append([s, t, c, min(s, ms), min(t, mt)])

json.dump({"records": records, "cases": cases, "truncation": trunc}, sys.stdout, ensure_ascii=False)
sys.stdout.write("\n")
