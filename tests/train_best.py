#!/usr/bin/env python3
"""train_best.py QALIGN ASSETS TMP — best-checkpoint selection and the training curve, end to end.

A tiny random Qwen2 model is trained on the paper's zh SNLI question file with a validation pass after
every step and a learning rate large enough for the validation loss to rise again, checkpoint.keep_last 1,
in two invocations (8 steps, the second resuming the first's 5). Independently of qalign, this script
reads metrics.jsonl (json) and takes the step of the lowest validation loss (the earliest on ties); then:
  - RUN/best/best.json and the one checkpoint in RUN/best/checkpoints name that step, although
    checkpoint.keep_last 1 removed it from RUN/checkpoints (the best is not the last step);
  - RUN/adapter-best (written at the end) holds exactly the /lora tensors of that checkpoint (h5py vs
    safetensors) and differs from RUN/adapter (the last step);
  - `qalign export-peft RUN OUT --best` says that step and writes the same tensors; `qalign eval --adapter
    RUN/best` evaluates it;
  - on copies with edited metrics.jsonl: the fallback to RUN/checkpoints, ties (the earliest step), NaN
    lines ignored, a line without a readable step refused naming file and line, no validation at all,
    a best step whose checkpoint is gone;
  - checkpoint.keep_best false keeps nothing;
  - temporaries an interrupted pin left in RUN/best are removed by the resume;
  - `qalign loss-curve RUN --out DIR`: loss.csv equals metrics.jsonl row for row, the best column marks the
    step, PNG and SVG are written.
Exit 77 (skipped) without numpy, h5py or safetensors."""
import json
import math
import os
import shutil
import subprocess
import sys

try:
    import h5py
    import numpy as np
    from safetensors.numpy import load_file
except ImportError as ex:
    print("SKIP: %s" % ex)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qtcheck import Checks  # noqa: E402

check = Checks()
Q, ASSETS, TMP = sys.argv[1], sys.argv[2], sys.argv[3]
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", ASAN_OPTIONS="detect_leaks=0")


def run(*args):
    r = subprocess.run([Q] + list(args), capture_output=True, text=True, env=ENV)
    return r.returncode, r.stdout + r.stderr


def val_lines(path):
    out = []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if "val_loss" in r:
                out.append((r["step"], r["val_loss"]))
    return out


def argmin_first(vals):
    best = None
    for s, v in vals:
        if math.isfinite(v) and (best is None or v < best[1]):
            best = (s, v)
    return best


def lora_of_ckpt(path):
    with h5py.File(path, "r") as f:
        return int(f.attrs["step"]), {k: f["lora"][k][()] for k in f["lora"]}


def same_tensors(a, b):
    return set(a) == set(b) and all(a[k].shape == b[k].shape and np.array_equal(a[k], b[k]) for k in a)


def ckpt_steps(d):
    if not os.path.isdir(d):
        return []
    return sorted(int(n[5:13]) for n in os.listdir(d) if n.startswith("step_") and n.endswith(".h5"))


shutil.rmtree(TMP, ignore_errors=True)
os.makedirs(TMP)
model = os.path.join(TMP, "m")
rc, out = run("init-model", "--arch", "qwen2", "--tokenizer", os.path.join(ASSETS, "tokenizers/qwen1_5-qwen2.tokenizer.json"),
              "--hidden", "32", "--layers", "1", "--heads", "2", "--kv-heads", "1", "--intermediate", "64", "--seed", "3",
              "--out", model)
check(rc == 0, "init-model: %s" % out)
cfg = os.path.join(TMP, "c.yaml")
with open(cfg, "w") as f:
    f.write("""model: {path: %s}
data:
  files: [%s/paper-data/snli/snli_zh10k_train_question.json]
  max_examples: 40
  val_fraction: 0.2
  template: qwen
  cutoff: 128
train: {max_steps: 8, micro_batch: 2, grad_accum: 2, lr: 3.0, warmup_ratio: 0.5, schedule: constant, eval_every: 1,
        log_every: 4, threads: 1}
checkpoint: {dir: %s/run, every: 3, keep_last: 1}
""" % (model, ASSETS, TMP))
R = os.path.join(TMP, "run")

# ---- two invocations: 5 steps, then resumed to 8 --------------------------------------------------------
rc, out = run("train", "--config", cfg, "--set", "train.max_steps=5")
check(rc == 0, "train 5 steps: %s" % out[-3000:])
# temporaries of a pin interrupted by SIGKILL (random names, as qalign makes them): gone after the restart
stale = []
if os.path.isdir(os.path.join(R, "best", "checkpoints")):
    stale = [os.path.join(R, "best", "checkpoints", "step_3.h5.tmp.0123456789ab"),
             os.path.join(R, "best", "checkpoints", "step_3.h5.crc32c.tmp.ba9876543210"),
             os.path.join(R, "best", "best.json.tmp.00aa11bb22cc")]
    for p in stale:
        with open(p, "w") as f:
            f.write("partial")
check(stale != [], "the first invocation kept a best checkpoint in RUN/best/checkpoints")
rc, out = run("train", "--config", cfg)
check(rc == 0 and "resumed" in out, "train resumed to 8 steps: %s" % out[-3000:])
check(not any(os.path.exists(p) for p in stale), "the resume removed the temporaries of an interrupted pin in RUN/best")
check("best adapter written" in out, "the run's end says it wrote adapter-best")
vals = val_lines(os.path.join(R, "metrics.jsonl"))
check([s for s, _ in vals] == list(range(1, 9)), "a validation loss per step 1..8 (%s)" % [s for s, _ in vals])
best_step, best_val = argmin_first(vals)
print("metrics.jsonl: validation losses %s; lowest at step %d" % (["%.5f" % v for _, v in vals], best_step))
check(best_step != 8, "the best step is not the last (else the test cannot tell them apart)")
check("from step %d," % best_step in out, "the end names the best step")

bj = json.load(open(os.path.join(R, "best", "best.json")))
check(bj["step"] == best_step and abs(bj["val_loss"] - best_val) <= 1e-12 * abs(best_val), "best.json: step %d" % bj["step"])
check(bj["validation_pass"] == best_step, "best.json: validation pass %d (one per step)" % bj["validation_pass"])
check(ckpt_steps(os.path.join(R, "best", "checkpoints")) == [best_step], "best/checkpoints holds only step %d" % best_step)
check(best_step not in ckpt_steps(os.path.join(R, "checkpoints")),
      "checkpoint.keep_last 1 removed step %d from checkpoints/ (%s)" % (best_step, ckpt_steps(os.path.join(R, "checkpoints"))))
bpath = os.path.join(R, "best", bj["checkpoint"])
step, best_lora = lora_of_ckpt(bpath)
check(step == best_step, "the kept checkpoint is of step %d" % step)
ab = load_file(os.path.join(R, "adapter-best", "adapter_model.safetensors"))
last = load_file(os.path.join(R, "adapter", "adapter_model.safetensors"))
check(same_tensors(ab, best_lora), "adapter-best = the /lora tensors of the best checkpoint")
check(not same_tensors(ab, last), "adapter-best differs from adapter (the last step)")
check(json.load(open(os.path.join(R, "adapter-best", "best.json")))["step"] == best_step, "adapter-best/best.json")

# ---- qalign export-peft --best, qalign eval --adapter RUN/best ------------------------------------------
rc, out = run("export-peft", R, os.path.join(TMP, "exp"), "--best")
check(rc == 0 and ("best: step %d," % best_step) in out, "export-peft --best says step %d: %s" % (best_step, out))
if rc == 0:
    check(same_tensors(load_file(os.path.join(TMP, "exp", "adapter_model.safetensors")), best_lora),
          "export-peft --best writes the best checkpoint's tensors")
rc, out = run("eval", "--model", model, "--adapter", os.path.join(R, "best"), "--data", os.path.join(ASSETS, "paper-data"),
              "--tasks", "emotion", "--langs", "en", "--limit", "1", "--out", os.path.join(TMP, "ev"))
check(rc == 0, "eval --adapter RUN/best: %s" % out[-2000:])
if rc == 0:
    check("step %d" % best_step in json.load(open(os.path.join(TMP, "ev", "results.json")))["adapter"],
          "the evaluation names the best step's checkpoint")

# ---- finished runs with edited metrics.jsonl ----------------------------------------------------------------
def variant(name, lines, keep_best_dir=False):
    d = os.path.join(TMP, name)
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(R, d)
    if not keep_best_dir:
        shutil.rmtree(os.path.join(d, "best"))
    if lines is not None:
        with open(os.path.join(d, "metrics.jsonl"), "w") as f:
            f.write("".join(l + "\n" for l in lines))
    return d


train_lines = [l.rstrip("\n") for l in open(os.path.join(R, "metrics.jsonl")) if '"val_loss"' not in l]
d = variant("no_best_dir", None)
rc, out = run("export-peft", d, os.path.join(TMP, "x1"), "--best")
check(rc == 1 and ("step %d" % best_step) in out and "keep_best" in out,
      "best step gone from checkpoints/ and no best/: refused naming the step: %s" % out)
vl = ['{"step":%d,"val_loss":%s,"val_tokens":1}' % (s, "1.0" if s == 8 else ("nan" if s == 3 else "5.0")) for s in range(1, 9)]
d = variant("last_best", train_lines + vl)
rc, out = run("export-peft", d, os.path.join(TMP, "x2"), "--best")
check(rc == 0 and "best: step 8," in out, "lowest at the last step: found in checkpoints/ (NaN line ignored): %s" % out)
vl = ['{"step":%d,"val_loss":%s,"val_tokens":1}' % (s, "1.0" if s in (6, 8) else "5.0") for s in range(1, 9)]
d = variant("tie", train_lines + vl)
rc, out = run("export-peft", d, os.path.join(TMP, "x3"), "--best")
check(rc == 1 and "step 6" in out, "a tie between steps 6 and 8: the earliest (6), whose checkpoint is gone: %s" % out)
d = variant("malformed", train_lines[:3] + ['{"step":"x","val_loss":1.0}'])
rc, out = run("export-peft", d, os.path.join(TMP, "x4"), "--best")
check(rc == 1 and "metrics.jsonl line 4" in out, "a validation line without a step: refused naming the line: %s" % out)
d = variant("no_val", train_lines)
rc, out = run("export-peft", d, os.path.join(TMP, "x5"), "--best")
check(rc == 1 and "no validation loss" in out, "no validation lines: refused: %s" % out)
rc, out = run("export-peft", os.path.join(R, "best", bj["checkpoint"]), os.path.join(TMP, "x6"), "--best")
check(rc == 2 and "run directory" in out, "--best with a file: usage error: %s" % out)

# ---- checkpoint.keep_best false ------------------------------------------------------------------------------
rc, out = run("train", "--config", cfg, "--set", "train.max_steps=3", "--set", "checkpoint.dir=%s/run_nobest" % TMP,
              "--set", "checkpoint.keep_best=false")
check(rc == 0 and not os.path.exists(os.path.join(TMP, "run_nobest", "best")) and
      not os.path.exists(os.path.join(TMP, "run_nobest", "adapter-best")), "keep_best false: no best/, no adapter-best")

# ---- qalign loss-curve ----------------------------------------------------------------------------------------
L = os.path.join(TMP, "loss")
rc, out = run("loss-curve", R, "--out", L)
check(rc == 0 and ("the lowest %.6f at step %d" % (best_val, best_step)) in out, "loss-curve: %s" % out)
rows = [l.rstrip("\n").split(",") for l in open(os.path.join(L, "loss.csv"))]
check(rows[0] == ["step", "loss", "lr", "val_loss", "best"], "loss.csv header")
metrics = [json.loads(l) for l in open(os.path.join(R, "metrics.jsonl"))]
tr = {m["step"]: m for m in metrics if "loss" in m}
va = {m["step"]: m["val_loss"] for m in metrics if "val_loss" in m}
ok = len(rows) - 1 == len(set(tr) | set(va))
for r in rows[1:]:
    s = int(r[0])
    ok = ok and abs(float(r[1]) - tr[s]["loss"]) <= 1e-8 * abs(tr[s]["loss"]) and \
        abs(float(r[2]) - tr[s]["lr"]) <= 1e-8 * max(abs(tr[s]["lr"]), 1e-30) and \
        abs(float(r[3]) - va[s]) <= 1e-8 * abs(va[s]) and r[4] == ("1" if s == best_step else "0")
check(ok, "loss.csv = metrics.jsonl row for row, best marked at step %d" % best_step)
png = open(os.path.join(L, "loss.png"), "rb").read(8) if os.path.exists(os.path.join(L, "loss.png")) else b""
check(png == b"\x89PNG\r\n\x1a\n", "loss.png is a PNG")
check(os.path.exists(os.path.join(L, "loss.svg")) and b"<svg" in open(os.path.join(L, "loss.svg"), "rb").read(400),
      "loss.svg is an SVG")
rc, out = run("loss-curve", os.path.join(TMP, "nowhere"), "--out", L)
check(rc == 1 and "nowhere" in out, "loss-curve of a missing run: exit 1 naming it: %s" % out)
rc, out = run("loss-curve", R, "--out", L, "--format", "gif")
check(rc == 2, "loss-curve --format gif: usage error")
rc, out = run("loss-curve", "--help")
check(rc == 0 and "usage: qalign loss-curve" in out, "loss-curve --help")
check.finish()
