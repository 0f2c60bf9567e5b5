#!/usr/bin/env python3
"""Check a sweep's report (qalign sweep report) against the cells' and base models' evaluations.

    sweep_check.py SWEEP_DIR

Recomputes from every cell's eval/results.json + predictions.jsonl and every base/<model>/ the
numbers of report/results.csv (accuracy, base accuracy, Δ, the paired 95% interval, items), the
per-task tables (<task>.csv, the wide layout) and summary.csv, and compares them (1e-5 pp: the CSV
prints 6 decimals). Exit 0 and "sweep_check: ok (N values)" when all agree.
"""
import csv
import json
import math
import os
import sys


def load_eval(d):
    with open(os.path.join(d, "results.json")) as f:
        r = json.load(f)
    preds = {}
    with open(os.path.join(d, "predictions.jsonl")) as f:
        for line in f:
            p = json.loads(line)
            preds.setdefault((p["task"], p["lang"]), {})[p["index"]] = 1.0 if p["correct"] else 0.0
    return r, preds


def interval(pairs):
    n = len(pairs)
    if n < 2:
        return math.nan
    m = sum(pairs) / n
    var = sum((x - m) ** 2 for x in pairs) / (n - 1)
    return 1.96 * math.sqrt(var) / math.sqrt(n)


def close(a, b, tol=1e-5):
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol


def num(s):
    return math.nan if s == "" else float(s)


def main():
    sd = sys.argv[1]
    with open(os.path.join(sd, "plan.json")) as f:
        plan = json.load(f)
    base = {}
    for m in plan["models"]:
        base[m["name"]] = load_eval(m["base_eval_dir"])
    rows = {}  # (model, mix, axes) -> [cell evals]
    for c in plan["cells"]:
        key = (c["model"], c["mix"], tuple(sorted(c["axes"].items())))
        rows.setdefault(key, []).append(load_eval(os.path.join(c["run_dir"], "eval")))
    any_r = next(iter(rows.values()))[0][0]
    tasks, langs = any_r["tasks"], any_r["languages"]
    want = {}  # (model, mix, task, lang|avg) -> (n, base, acc, delta, half)
    summ = {}
    for (model, mix, axes), evs in rows.items():
        br, bp = base[model]
        all_pairs, task_deltas, task_accs, task_bases, n_all = [], [], [], [], 0
        for t in tasks:
            avg_pairs, deltas, accs, bases, n_tot = [], [], [], [], 0
            for l in langs:
                acc = sum(r["accuracy"][t][l] for r, _ in evs) / len(evs)
                b = br["accuracy"][t][l]
                pairs = []
                for _, p in evs:
                    cp, bpp = p[(t, l)], bp[(t, l)]
                    pairs += [cp[i] - bpp[i] for i in sorted(cp) if i in bpp]
                n = evs[0][0]["n"][t][l]
                want[(model, mix, t, l)] = (n, 100 * b, 100 * acc, 100 * (acc - b), 100 * interval(pairs))
                avg_pairs += pairs
                deltas.append(100 * (acc - b))
                accs.append(acc)
                bases.append(b)
                n_tot += n
            d = sum(deltas) / len(deltas)
            want[(model, mix, t, "avg")] = (n_tot, 100 * sum(bases) / len(bases), 100 * sum(accs) / len(accs), d,
                                            100 * interval(avg_pairs))
            all_pairs += avg_pairs
            task_deltas.append(d)
            task_accs.append(sum(accs) / len(accs))
            task_bases.append(sum(bases) / len(bases))
            n_all += n_tot
        summ[(model, mix)] = (n_all, 100 * sum(task_bases) / len(tasks), 100 * sum(task_accs) / len(tasks),
                              sum(task_deltas) / len(tasks), 100 * interval(all_pairs))
    checked = 0
    bad = []
    rep = os.path.join(sd, "report")
    with open(os.path.join(rep, "results.csv")) as f:
        got = list(csv.DictReader(f))
    if len(got) != len(want):
        bad.append(f"results.csv has {len(got)} rows, the evaluations give {len(want)}")
    for g in got:
        k = (g["model"], g["mix"], g["task"], g["lang"])
        if k not in want:
            bad.append(f"results.csv: unexpected row {k}")
            continue
        n, b, a, d, h = want[k]
        vals = [("n", int(g["n"]), n), ("base_acc", num(g["base_acc"]), b), ("acc", num(g["acc"]), a),
                ("delta", num(g["delta"]), d), ("delta_lo", num(g["delta_lo"]), d - h),
                ("delta_hi", num(g["delta_hi"]), d + h)]
        for name, x, y in vals:
            checked += 1
            if not close(x, y):
                bad.append(f"results.csv {k} {name}: report {x}, evaluations {y}")
    for t in tasks:
        with open(os.path.join(rep, f"{t}.csv")) as f:
            for g in csv.DictReader(f):
                for l in langs + ["avg"]:
                    n, b, a, d, h = want[(g["model"], g["mix"], t, l)]
                    for name, x, y in [(l, num(g[l]), d), (l + "_lo", num(g[l + "_lo"]), d - h),
                                       (l + "_hi", num(g[l + "_hi"]), d + h), (l + "_n", int(g[l + "_n"]), n)]:
                        checked += 1
                        if not close(x, y):
                            bad.append(f"{t}.csv {g['model']}/{g['mix']} {name}: report {x}, evaluations {y}")
        with open(os.path.join(rep, f"{t}.md")) as f:
            md = f.read()
        for (model, mix, tt, l), v in want.items():
            if tt == t and l == "avg":
                cell = f"{v[3]:+.1f} ±{v[4]:.1f}"
                checked += 1
                if f"| {model} | {mix} |" not in md or cell not in md:
                    bad.append(f"{t}.md: no row {model} / {mix} with Avg '{cell}'")
    with open(os.path.join(rep, "summary.csv")) as f:
        for g in csv.DictReader(f):
            n, b, a, d, h = summ[(g["model"], g["mix"])]
            for name, x, y in [("n", int(g["n"]), n), ("base_acc", num(g["base_acc"]), b), ("acc", num(g["acc"]), a),
                               ("delta", num(g["delta"]), d), ("delta_lo", num(g["delta_lo"]), d - h),
                               ("delta_hi", num(g["delta_hi"]), d + h)]:
                checked += 1
                if not close(x, y):
                    bad.append(f"summary.csv {g['model']}/{g['mix']} {name}: report {x}, evaluations {y}")
    for b in bad[:20]:
        print("FAIL:", b)
    if bad:
        print(f"sweep_check: {len(bad)} of {checked} values differ")
        return 1
    print(f"sweep_check: ok ({checked} values of {len(rows)} rows x {len(tasks)} tasks x {len(langs)} languages "
          f"agree with the evaluations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
