#!/usr/bin/env python3
"""extrapolate.py METRICS_JSONL PLAN_TXT [NAME] — the paper's recipe from a few timed steps: the mean step time of the
steps after the first two (warm-up) times the recipe's step count (from `qalign train --dry-run`). One JSON line,
printed as an extrapolation (bench NAME, default paper_recipe_mistral7b). Standard library only."""
import json
import re
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if '"loss"' in line]
plan = open(sys.argv[2]).read()
total = int(re.search(r"total steps\s+(\d+)", plan).group(1))
steady = rows[2:] or rows
step = sum(r["step_time_s"] for r in steady) / len(steady)
tok = sum(r["tokens"] for r in steady) / len(steady)
name = sys.argv[3] if len(sys.argv) > 3 else "paper_recipe_mistral7b"
print(json.dumps({"bench": name, "measured_steps": len(steady), "step_s": step,
                  "tokens_per_s": tok / step, "recipe_steps": total, "extrapolated_total_s": step * total,
                  "target_s": 480, "hf_peft_llamafactory_s": 51 * 60}))
