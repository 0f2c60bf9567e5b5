#!/usr/bin/env python3
"""compare_eval.py A B [--margin M] — two `qalign eval` output directories of the same model and items (for
example the CPU and the CUDA backend): per item, the largest difference of the label log-masses, and the
items whose prediction differs although the reference's margin between its best two labels exceeds M
(default 0.02: bf16 rounding can flip near-ties, nothing else). Prints one JSON line; exit 1 on such an item
or a different item set. Standard library only."""
import json
import sys


def load(d):
    out = {}
    with open(f"{d}/predictions.jsonl") as f:
        for line in f:
            r = json.loads(line)
            out[(r["task"], r["lang"], r["index"])] = r
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    margin = 0.02
    if "--margin" in sys.argv:
        margin = float(sys.argv[sys.argv.index("--margin") + 1])
        args = [a for a in args if a != str(sys.argv[sys.argv.index("--margin") + 1])]
    a, b = load(args[0]), load(args[1])
    if set(a) != set(b):
        print(json.dumps({"compare": "eval", "error": f"item sets differ: {len(a)} vs {len(b)}"}))
        return 1
    max_d, flips, near = 0.0, [], 0
    for k, ra in a.items():
        rb = b[k]
        for lab, v in ra["log_mass"].items():
            max_d = max(max_d, abs(v - rb["log_mass"][lab]))
        if ra["pred"] != rb["pred"]:
            m = sorted(ra["log_mass"].values(), reverse=True)
            gap = m[0] - m[1] if len(m) > 1 else 0.0
            if gap > margin:
                flips.append({"item": list(k), "a": ra["pred"], "b": rb["pred"], "gap": gap})
            else:
                near += 1
    rec = {"compare": "eval", "items": len(a), "max_abs_log_mass_diff": max_d, "near_tie_flips": near,
           "flips_beyond_margin": len(flips), "margin": margin, "examples": flips[:5]}
    print(json.dumps(rec))
    return 1 if flips else 0


if __name__ == "__main__":
    sys.exit(main())
