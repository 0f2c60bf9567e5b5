#!/usr/bin/env python3
"""Label-token sets: `qalign label-tokens` against an independent Python reference of the paper's
process_tokens (paper-protocol.md §6.4), built on the Hugging Face `tokenizers` package
(get_vocab() and encode()), for every label word of tasks.json (English and target-language words)
and every tokenizer given. Exit 77 (skip) when `tokenizers` is not importable."""
import argparse
import json
import subprocess
import sys

try:
    from tokenizers import Tokenizer
except ImportError:
    print("the `tokenizers` package is not installed: skipping", file=sys.stderr)
    sys.exit(77)


def token_prefixes(token_str):
    return [token_str[:i] for i in range(1, len(token_str) + 1)]


def unicode_prefix_key(zh_char):
    # the scripts' unicode_prefix_tokid, verbatim logic
    if not zh_char.encode().__str__()[2:-1].startswith('\\x'):
        return None
    start = zh_char.encode().__str__()[2:-1].split('\\x')[1]
    return '<0x%s>' % start.upper()


def process_tokens(word, tok, vocab, is_qwen):
    with_prefixes = token_prefixes(word)
    candidates = list(set(['\u2581' + t for t in with_prefixes] + with_prefixes))
    out = [vocab[c] for c in candidates if c in vocab]
    key = unicode_prefix_key(word[0])
    if key is not None and key in vocab:
        out.append(vocab[key])
    if is_qwen:  # "Qwen" in model_size
        for p in set(with_prefixes):
            out.append(tok.encode(p).ids[0])
    return sorted(set(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qalign", required=True)
    ap.add_argument("--tasks-json", required=True)
    ap.add_argument("--tokenizer", action="append", required=True,
                    help="tokenizer.json; the Qwen rule applies when 'qwen' is in the file name")
    a = ap.parse_args()
    tasks = json.load(open(a.tasks_json, encoding="utf-8"))
    words = []
    for task in tasks["tasks"].values():
        words += list(task["english_label_words"].values())
        for per_lang in task["target_label_words"].values():
            words += list(per_lang.values())
    # edge cases of the construction: a non-ASCII letter after an ASCII first one, a control character
    words += ["ox", "horse", "négatif", "Öl", "\x7fdel", "ধারণ করে"]
    words = sorted(set(words))
    failed = 0
    for tf in a.tokenizer:
        tok = Tokenizer.from_file(tf)
        vocab = tok.get_vocab(with_added_tokens=True)
        is_qwen = "qwen" in tf.lower()
        res = subprocess.run([a.qalign, "label-tokens", "--tokenizer", tf, "--"] + words,
                             capture_output=True, text=True, encoding="utf-8")
        if res.returncode != 0:
            print(f"FAIL {tf}: qalign label-tokens exited {res.returncode}: {res.stderr.strip()}")
            failed += 1
            continue
        lines = res.stdout.splitlines()
        if len(lines) != len(words):
            print(f"FAIL {tf}: {len(lines)} lines for {len(words)} words")
            failed += 1
            continue
        n_ok = 0
        for w, line in zip(words, lines):
            got = json.loads(line)
            ref = process_tokens(w, tok, vocab, is_qwen)
            if got != ref:
                failed += 1
                print(f"FAIL {tf}: {w!r}: qalign {got} reference {ref}")
            else:
                n_ok += 1
        print(f"{tf}: {n_ok}/{len(words)} label words agree (qwen rule {'on' if is_qwen else 'off'})")
    print(f"{'FAILED' if failed else 'ok'}: {failed} mismatches")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
