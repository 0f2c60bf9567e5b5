#!/usr/bin/env python3
"""Differential test: `qalign tokenize` against Hugging Face `tokenizers` on seeded random and
adversarial strings (mixed scripts, whitespace runs, emoji, combining marks, special-token
look-alikes, invalid UTF-8 bytes, lone surrogate escapes).

For every tokenizer.json given, the same strings are encoded by both (with and without special
tokens) and the ids must be identical; the ids are then decoded by both and the texts must be
identical, also for random id sequences (byte tokens in any order, special tokens, skipped ones).

Invalid UTF-8: the line holds raw invalid bytes inside the JSON string; qalign reads them as
U+FFFD per maximal invalid subsequence, so the reference is HF on bytes.decode("utf-8", "replace").
Lone surrogate escapes ("\\ud800") are read as U+FFFD as well.

With --variants, derived tokenizer.json files are written to a temporary directory and checked
the same way (fewer strings): the non-legacy Llama layout (Metaspace prepend_scheme "first",
no normalizer), Metaspace with split and its decoder, extra added tokens (lstrip, rstrip,
normalized, non-special, prefixes of others, content already in the vocab), the GPT-2 ByteLevel
regex with add_prefix_space, ignore_merges, and every Split behaviour with invert.

usage: tokenizer_diff.py --qalign BIN --tokenizers DIR [--n 2500] [--seed 1234] [--variants] [FILE ...]
Exit 0: all equal; 1: a difference (the first ones are printed); 77: `tokenizers` unavailable.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata


def import_tokenizers():
    try:
        import tokenizers  # noqa: F401
        return tokenizers
    except ImportError:
        pass
    print("tokenizer_diff: installing the `tokenizers` package with pip", flush=True)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "tokenizers"])
    if r.returncode != 0:
        return None
    try:
        import tokenizers  # noqa: F401
        return tokenizers
    except ImportError:
        return None


# ---- string generation ------------------------------------------------------------------------
WS = [" ", " ", " ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x85", "\xa0", "\u1680", "\u2000", "\u2003",
      "\u2009", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u180e", "\u200b", "\ufeff",
      "\x1c", "\x1d", "\x1e", "\x1f", "\u00ad", "\u200d", "\u200c", "\u2060"]
SPECIAL_LIKE = ["<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>",
                "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|im_start", "im_end|>", "<<s>>", "<s", "s>",
                "</s", "<|", "|>", "<0x0A>", "<0xFF>", "<0x41>", "▁", "▁▁", "▁a", "Ġ", "Ċ", "<S>", "<|IM_START|>",
                "<|im_start|><|im_end|>", "<s></s>", "<<|im_end|>>", "<|endoftext|", "< s >", "<pad>", "<mask>",
                " <mask> ", "<R>  ", "<N>", "<extra>", "<|im", "hello", "world", "x", "a", "9.5,1"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'LL", "'D", "'ſ", "'K",
                "'\u212a", "’s", "''s", "'", "''"]
EMOJI = ["😀", "👍", "👍🏽", "👨\u200d👩\u200d👧", "🇩🇪", "🇯🇵", "1\ufe0f\u20e3", "❤\ufe0f", "🏳\ufe0f\u200d🌈",
         "🦙", "🤗", "\U0001f9d1\u200d\U0001f4bb", "☺", "✔", "🀄", "\U0001faf6"]
WORDS = ["Hello", "world", "the", "question", "answer", "Antwort", "réponse", "respuesta", "ответ", "答案", "問題",
         "こんにちは", "안녕하세요", "สวัสดี", "नमस्ते", "উত্তর", "jibu", "svar", "odpowiedź", "отговор", "spurning",
         "jawapan", "risposta", "antwoord", "odgovor", "Καλημέρα", "مرحبا", "שלום", "ქართული", "Ünïcödé", "naïve",
         "ǅemal", "ﬁle", "Ⅻ", "²³", "½", "١٢٣", "１２３", "ＡＢＣ", "İstanbul", "straße", "ß", "ΣΑΣ"]
COMBINING = ["\u0300", "\u0301", "\u0302", "\u0303", "\u0308", "\u030a", "\u0327", "\u0328", "\u0323", "\u0331",
             "\u0345", "\u05b4", "\u064b", "\u093c", "\u094d", "\u0e31", "\u0e48", "\u1dc0", "\u20d7", "\u3099",
             "\u309a", "\ufe20", "\u0344", "\u0340"]
# blocks to draw random characters from (start, end)
BLOCKS = [(0x20, 0x7E), (0xA0, 0x24F), (0x250, 0x2FF), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x52F),
          (0x530, 0x58F), (0x590, 0x5FF), (0x600, 0x6FF), (0x900, 0x97F), (0x980, 0x9FF), (0xE00, 0xE7F),
          (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1E00, 0x1EFF), (0x1F00, 0x1FFF), (0x2000, 0x206F),
          (0x2070, 0x209F), (0x20A0, 0x20CF), (0x2100, 0x218F), (0x2190, 0x23FF), (0x2460, 0x24FF),
          (0x2500, 0x27BF), (0x3000, 0x303F), (0x3040, 0x30FF), (0x3130, 0x318F), (0x4E00, 0x9FFF),
          (0xA960, 0xA97F), (0xAC00, 0xD7A3), (0xD7B0, 0xD7FF), (0xF900, 0xFAFF), (0xFB00, 0xFB4F),
          (0xFE00, 0xFE6F), (0xFF00, 0xFFEF), (0xFFF0, 0xFFFD), (0x10000, 0x1007F), (0x1D400, 0x1D7FF),
          (0x1F300, 0x1FAFF), (0x20000, 0x2A6DF), (0xE0000, 0xE007F), (0xF0000, 0xF0010)]


def rand_char(r):
    a, b = r.choice(BLOCKS)
    while True:
        cp = r.randint(a, b)
        if not (0xD800 <= cp <= 0xDFFF):
            return chr(cp)


def rand_piece(r):
    k = r.random()
    if k < 0.14:
        return r.choice(WORDS)
    if k < 0.26:
        return "".join(r.choice(WS) for _ in range(r.randint(1, 6)))
    if k < 0.36:
        return r.choice(SPECIAL_LIKE)
    if k < 0.42:
        return r.choice(CONTRACTIONS)
    if k < 0.50:
        return r.choice(EMOJI)
    if k < 0.58:  # base + combining marks, NFD forms, Hangul jamo
        base = r.choice("aeiouAEOnNcCsSzZ가ㄱᄀ" + "אबক")
        return base + "".join(r.choice(COMBINING) for _ in range(r.randint(1, 3)))
    if k < 0.63:
        return unicodedata.normalize(r.choice(["NFD", "NFKD", "NFC", "NFKC"]), r.choice(WORDS))
    if k < 0.68:
        return "\u1100\u1161" + r.choice(["", "\u11a8", "\u11a8\u0301"])  # conjoining jamo -> NFC syllable
    if k < 0.76:
        return str(r.randint(0, 10 ** r.randint(1, 12)))
    if k < 0.84:
        return "".join(rand_char(r) for _ in range(r.randint(1, 8)))
    if k < 0.90:
        return r.choice(".,;:!?-—()[]{}\"'`~@#$%^&*_+=|\\/<>") * r.randint(1, 4)
    if k < 0.95:
        return "".join(chr(r.randint(0, 0x7F)) for _ in range(r.randint(1, 6)))
    return chr(r.choice([0, 1, 7, 8, 0x7F, 0x80, 0x9F, 0xAD])) * r.randint(1, 3)


INVALID = [b"\x80", b"\xbf", b"\xc0", b"\xc1\x81", b"\xc2", b"\xe0\x80\x80", b"\xe0\xa0", b"\xed\xa0\x80",
           b"\xed\xbf\xbf", b"\xef\xbf", b"\xf0\x8f\xbf\xbf", b"\xf0\x90", b"\xf0\x90\x80", b"\xf4\x90\x80\x80",
           b"\xf5", b"\xf8\x88\x80\x80\x80", b"\xfe", b"\xff", b"\xff\xfe", b"\xe2\x82", b"\xc3\x28",
           b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc"]


def make_case(r, i):
    """returns (json line as bytes, the text HF should see)"""
    pieces = []
    n = r.choice([1, 1, 2, 3, 4, 6, 10, 20, 40]) if i % 50 else r.randint(100, 400)
    for _ in range(n):
        pieces.append(rand_piece(r))
    # some whole-string shapes
    shape = r.random()
    if shape < 0.05:
        pieces = [" " * r.randint(1, 40)] + pieces
    elif shape < 0.08:
        pieces = pieces + [r.choice(WS) * r.randint(2, 30)]
    elif shape < 0.10:
        pieces = [r.choice(SPECIAL_LIKE)] + pieces + [r.choice(SPECIAL_LIKE)]
    if i % 7 == 3:  # raw invalid UTF-8 bytes inside the JSON string
        raw, seen = b"", b""
        for p in pieces:
            enc = json.dumps(p, ensure_ascii=False)[1:-1].encode("utf-8")
            raw += enc
            seen += p.encode("utf-8")
            if r.random() < 0.4:
                bad = r.choice(INVALID)
                raw += bad
                seen += bad
        return b'"' + raw + b'"', seen.decode("utf-8", "replace")
    text = "".join(pieces)
    if i % 23 == 5:  # lone surrogate escapes -> U+FFFD
        at = r.randint(0, len(text))
        sur = r.choice(["\\ud800", "\\udfff", "\\udbff", "\\udc00"])
        enc = json.dumps(text[:at], ensure_ascii=False)[1:-1] + sur + json.dumps(text[at:], ensure_ascii=False)[1:-1]
        return ('"' + enc + '"').encode("utf-8"), text[:at] + "\ufffd" + text[at:]
    return json.dumps(text, ensure_ascii=r.random() < 0.3).encode("utf-8"), text


def make_variants(src_dir, out_dir):
    """derived tokenizer files: name -> path"""
    out = {}

    def load(name):
        with open(os.path.join(src_dir, name), encoding="utf-8") as f:
            return json.load(f)

    def save(name, j):
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False)
        out[name] = path

    def added(j, content, **kw):
        tok = {"id": 0, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
               "normalized": False, "special": False}
        tok.update(kw)
        ids = [t["id"] for t in j["added_tokens"]] + list(j["model"]["vocab"].values())
        tok["id"] = j["model"]["vocab"].get(content, max(ids) + 1)
        j["added_tokens"].append(tok)

    m = "mistral-7b-v0.1.tokenizer.json"
    q = "qwen1_5-qwen2.tokenizer.json"
    if os.path.exists(os.path.join(src_dir, m)):
        j = load(m)  # transformers LlamaConverter with legacy=False
        j["normalizer"] = None
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
        save("variant-mistral-nonlegacy.json", j)
        j = load(m)
        j["normalizer"] = None
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
        j["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
        save("variant-mistral-metaspace-split.json", j)
        j = load(m)
        added(j, "<mask>", lstrip=True, special=True)
        added(j, "<R>", rstrip=True)
        added(j, "<extra>", normalized=True)
        added(j, "<|im")
        added(j, "world")
        save("variant-mistral-added.json", j)
    if os.path.exists(os.path.join(src_dir, q)):
        j = load(q)
        added(j, "<mask>", lstrip=True, special=True)
        added(j, "<R>", rstrip=True, special=True)
        added(j, "<N>", normalized=True)
        added(j, "<|im")
        added(j, "hello")
        save("variant-qwen-added.json", j)
        j = load(q)  # GPT-2 / RoBERTa style
        j["normalizer"] = None
        j["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
        save("variant-qwen-gpt2.json", j)
        j = load(q)  # Llama-3 style
        j["model"]["ignore_merges"] = True
        save("variant-qwen-ignore-merges.json", j)
        j = load(q)
        j["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "MergedWithPrevious", "invert": False},
            {"type": "Split", "pattern": {"String": "a"}, "behavior": "MergedWithNext", "invert": False},
            {"type": "Split", "pattern": {"Regex": "\\d"}, "behavior": "Contiguous", "invert": False},
            {"type": "Split", "pattern": {"Regex": "[.,]"}, "behavior": "Removed", "invert": False},
            {"type": "Split", "pattern": {"Regex": "x+"}, "behavior": "Isolated", "invert": True},
            {"type": "Split", "pattern": {"Regex": "o?"}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
        save("variant-qwen-split-behaviours.json", j)
    return out


def run_qalign(qalign, path, lines, extra):
    if not lines:
        return []
    p = subprocess.run([qalign, "tokenize", "--tokenizer", path] + extra, input=b"\n".join(lines) + b"\n",
                       capture_output=True)
    if p.returncode != 0:
        raise SystemExit("qalign tokenize %s failed (rc %d): %s" % (" ".join(extra), p.returncode,
                                                                    p.stderr.decode(errors="replace")[-2000:]))
    out = p.stdout.decode("utf-8").split("\n")
    if out and out[-1] == "":
        out.pop()
    if len(out) != len(lines):
        raise SystemExit("qalign tokenize wrote %d lines for %d inputs" % (len(out), len(lines)))
    return [json.loads(x) for x in out]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qalign", required=True)
    ap.add_argument("--tokenizers", required=True, help="directory with the *.tokenizer.json files")
    ap.add_argument("--n", type=int, default=2500, help="random strings per tokenizer")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--variants", action="store_true", help="also check derived tokenizer files")
    ap.add_argument("--variant-n", type=int, default=500, help="random strings per derived tokenizer")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    tk = import_tokenizers()
    if tk is None:
        print("tokenizer_diff: SKIP: the `tokenizers` package is not installed and pip could not install it")
        return 77
    files = a.files or sorted(f for f in os.listdir(a.tokenizers) if f.endswith(".json"))
    if not files:
        print("tokenizer_diff: no tokenizer files in", a.tokenizers)
        return 1
    jobs = [(f, os.path.join(a.tokenizers, f), a.n) for f in files]
    tmpdir = None
    if a.variants:
        tmpdir = tempfile.mkdtemp(prefix="qa_tok_variants.")
        jobs += [(name, path, a.variant_n) for name, path in sorted(make_variants(a.tokenizers, tmpdir).items())]
    total_fail = 0
    t0 = time.time()
    for f, path, n_cases in jobs:
        hf = tk.Tokenizer.from_file(path)
        r = random.Random("%d:%s" % (a.seed, f))
        cases = [make_case(r, i) for i in range(n_cases)]
        lines = [c[0] for c in cases]
        texts = [c[1] for c in cases]
        fails = []
        n_checked = 0
        for special in (False, True):
            got = run_qalign(a.qalign, path, lines, ["--add-special-tokens"] if special else [])
            want = [e.ids for e in hf.encode_batch(texts, add_special_tokens=special)]
            for i, (g, w) in enumerate(zip(got, want)):
                n_checked += 1
                if g != w:
                    fails.append("encode(add_special_tokens=%s) %r:\n      hf     %s\n      qalign %s"
                                 % (special, texts[i][:200], w[:40], g[:40]))
            if not special:
                enc_ids = want
        # decode: the encoded ids, plus random id sequences
        vs = hf.get_vocab_size(with_added_tokens=True)
        specials = [hf.token_to_id(t) for t in ("<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>", "<think>")]
        specials = [s for s in specials if s is not None]
        rand_ids = []
        for i in range(max(100, n_cases // 5)):
            seq = []
            for _ in range(r.randint(0, 30)):
                k = r.random()
                if k < 0.3:
                    seq.append(r.randint(0, min(vs, 300)))  # byte tokens of Llama, single bytes of Qwen
                elif k < 0.4 and specials:
                    seq.append(r.choice(specials))
                elif k < 0.42:
                    seq.append(vs + r.randint(0, 100))  # no such token: skipped
                else:
                    seq.append(r.randint(0, vs - 1))
            rand_ids.append(seq)
        id_lines = [json.dumps(x).encode() for x in enc_ids + rand_ids]
        for skip in (False, True):
            got = run_qalign(a.qalign, path, id_lines, ["--decode"] + (["--skip-special-tokens"] if skip else []))
            for ids, g in zip(enc_ids + rand_ids, got):
                n_checked += 1
                w = hf.decode(ids, skip_special_tokens=skip)
                if g != w:
                    fails.append("decode(skip_special_tokens=%s) %s:\n      hf     %r\n      qalign %r"
                                 % (skip, ids[:40], w[:200], g[:200]))
        print("%-40s %6d checks, %d differ" % (f, n_checked, len(fails)), flush=True)
        for x in fails[:8]:
            print("   ", x)
        total_fail += len(fails)
    if tmpdir:
        shutil.rmtree(tmpdir, ignore_errors=True)
    print("tokenizer_diff: %s in %.1f s" % ("all equal" if not total_fail else "%d differences" % total_fail,
                                            time.time() - t0))
    return 1 if total_fail else 0


if __name__ == "__main__":
    sys.exit(main())
