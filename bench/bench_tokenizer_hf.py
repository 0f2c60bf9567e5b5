#!/usr/bin/env python3
"""The peer of bench_tokenizer: Hugging Face `tokenizers` on the same strings, one thread.

usage: bench_tokenizer_hf.py TOKENIZER_JSON STRINGS_JSON REPEATS
Prints "HF seconds S cpu C ids N sum H": the fastest of REPEATS runs (wall and process CPU time) of encode_batch (serial: run with
TOKENIZERS_PARALLELISM=false) over all strings with add_special_tokens=False, the number of ids
and the same per-string checksum as bench_tokenizer.c, so both can be compared.
"""
import json
import os
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("RAYON_RS_NUM_CPUS", "1")
try:
    from tokenizers import Tokenizer
except ImportError:
    print("the `tokenizers` package is not installed (pip install tokenizers)")
    sys.exit(0)

tok = Tokenizer.from_file(sys.argv[1])
with open(sys.argv[2], encoding="utf-8") as f:
    strings = json.load(f)
reps = int(sys.argv[3])
best = best_cpu = float("inf")
for _ in range(reps):
    t0, c0 = time.perf_counter(), time.process_time()
    enc = tok.encode_batch(strings, add_special_tokens=False)
    best = min(best, time.perf_counter() - t0)
    best_cpu = min(best_cpu, time.process_time() - c0)
M = (1 << 64) - 1
n, total = 0, 0
for e in enc:
    h = 0
    for i in e.ids:
        h = (h * 1000003 + i + 1) & M
    total = (total + h) & M
    n += len(e.ids)
print("HF seconds %.6f cpu %.6f ids %d sum %d" % (best, best_cpu, n, total))
