"""tensorboard_check.py QALIGN ASSETS — the TensorBoard event files qalign writes (io/tfevents.c), read back by
TensorBoard's own reader (tensorboard.backend.event_processing.event_accumulator.EventAccumulator):

  1. training (log.tensorboard: true) on a tiny random Qwen2-shaped model with the real tokenizer and the
     paper's zh SNLI question data, validation every step and the multilingual evaluation during and after
     training: every number of every metrics.jsonl line (loss, lr, grad_norm, tokens_per_s, val_loss,
     eval averages, ...) is a scalar at that line's step, equal to the line's value in float32, and there
     is no scalar that metrics.jsonl does not have besides the evaluations' per-language accuracies,
     which equal results.json of eval/step_N; the evaluation table is text equal to results.md;
  2. `qalign eval --tensorboard`: accuracy/<task>/<lang> equal results.json, results.md as text.
Exit 77 (skipped) when tensorboard is not installed or the assets are missing."""
import glob
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qtcheck import Checks  # noqa: E402

try:
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
except ImportError as ex:
    print(f"tensorboard_check: skipped: {ex} (pip install tensorboard into .venv; scripts/setup.sh does)")
    sys.exit(77)

Q, ASSETS = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
TOK = os.path.join(ASSETS, "tokenizers", "qwen1_5-qwen2.tokenizer.json")
DATA = os.path.join(ASSETS, "paper-data")
TPL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "templates", "qwen.yaml")
if not os.path.exists(TOK) or not os.path.exists(os.path.join(DATA, "tasks.json")):
    print(f"tensorboard_check: skipped: no {TOK} or {DATA}/tasks.json (run scripts/fetch-assets.sh)")
    sys.exit(77)

ck = Checks()
f32 = lambda x: float(np.float32(x))  # noqa: E731


def run(*args):
    p = subprocess.run([Q, *args], capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stdout[-3000:], p.stderr[-3000:])
        sys.exit(f"qalign {args[0]} failed ({p.returncode})")
    return p


def framing(path):
    """every TFRecord: the length and data CRCs are TensorBoard's masked_crc32c; no trailing bytes"""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
    import struct
    b = open(path, "rb").read()
    off = n = 0
    while off < len(b):
        hdr = b[off:off + 12]
        ln, = struct.unpack("<Q", hdr[:8])
        data = b[off + 12:off + 12 + ln]
        ok = (len(hdr) == 12 and struct.unpack("<I", hdr[8:])[0] == masked_crc32c(hdr[:8]) and len(data) == ln and
              struct.unpack("<I", b[off + 12 + ln:off + 16 + ln])[0] == masked_crc32c(data))
        ck(ok, f"{path}: record {n} at byte {off}: length and data CRC32C")
        if not ok:
            return
        off += 16 + ln
        n += 1


def load(dirpath):
    files = glob.glob(os.path.join(dirpath, "events.out.tfevents.*"))
    ck(len(files) == 1, f"one event file in {dirpath}: {files}")
    for f in files:
        framing(f)
    acc = EventAccumulator(dirpath, size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(acc):
    """tag -> {step: value}; a step logged twice under one tag is a failure"""
    out = {}
    for tag in acc.Tags()["scalars"]:
        d = {}
        for ev in acc.Scalars(tag):
            ck(ev.step not in d, f"{tag}: step {ev.step} logged once")
            d[ev.step] = ev.value
        out[tag] = d
    return out


def text_of(acc, tag):
    return {ev.step: ev.tensor_proto.string_val[0].decode() for ev in acc.Tensors(tag)}


def check_eval(sc, txt, step, res_dir, what):
    res = json.load(open(os.path.join(res_dir, "results.json")))
    n = 0
    for task, per_lang in res["accuracy"].items():
        for lang, a in per_lang.items():
            got = sc.get(f"accuracy/{task}/{lang}", {}).get(step)
            ck(got == f32(a), f"{what}: accuracy/{task}/{lang} at step {step}: {got} == results.json {a}")
            n += 1
        got = sc.get(f"accuracy/{task}/avg", {}).get(step)
        ck(got == f32(res["averages"][task]), f"{what}: accuracy/{task}/avg at step {step}")
    ck(sc.get("accuracy/avg", {}).get(step) == f32(res["averages"]["all"]), f"{what}: accuracy/avg at step {step}")
    md = open(os.path.join(res_dir, "results.md")).read()
    ck(txt.get(step) == md, f"{what}: text 'results' at step {step} is results.md")
    return n


with tempfile.TemporaryDirectory() as T:
    os.chdir(T)
    run("init-model", "--arch", "qwen2", "--tokenizer", TOK, "--seed", "3", "--out", "model")
    train_file = os.path.join(DATA, "snli", "snli_zh10k_train_question.json")
    run("train", "--set", "model.path=model", "--set", f"data.files={train_file}", "--set", "data.max_examples=40",
        "--set", "data.cutoff=96", "--set", f"data.template={TPL}", "--set", "data.val_fraction=0.2",
        "--set", "train.micro_batch=2", "--set", "train.grad_accum=1", "--set", "train.epochs=1",
        "--set", "train.lr=1e-2", "--set", "train.eval_every=1", "--set", "train.threads=1",
        "--set", "eval.every=3", "--set", "eval.at_end=true", "--set", "eval.tasks=emotion,snli",
        "--set", "eval.langs=en,zh,sw", "--set", "eval.limit=2", "--set", f"eval.data_dir={DATA}",
        "--set", "checkpoint.dir=run", "--set", "checkpoint.every=0", "--set", "log.tensorboard=true")
    acc = load("run/tensorboard")
    sc = scalars(acc)
    lines = [json.loads(x) for x in open("run/metrics.jsonl")]
    want = {}
    for ln in lines:
        def walk(prefix, o):
            for k, v in o.items():
                if prefix == "" and k == "step":
                    continue
                if isinstance(v, bool) or v is None or isinstance(v, str):
                    continue
                if isinstance(v, (int, float)):
                    ck((prefix + k, ln["step"]) not in want, f"{prefix + k} once at step {ln['step']} in metrics.jsonl")
                    want[(prefix + k, ln["step"])] = v
                elif isinstance(v, dict):
                    walk(prefix + k + "/", v)
        walk("", ln)
    kinds = {k for k, _ in want}
    for must in ("loss", "lr", "grad_norm", "tokens_per_s", "val_loss", "eval/emotion", "eval/snli"):
        ck(must in kinds, f"metrics.jsonl has {must}")
    for (tag, step), v in sorted(want.items()):
        got = sc.get(tag, {}).get(step)
        ck(got == f32(v), f"scalar {tag} at step {step}: {got} == float32({v})")
    extra = [(t, s) for t, d in sc.items() for s in d if (t, s) not in want and not t.startswith("accuracy/")]
    ck(not extra, f"no scalar without a metrics.jsonl value: {extra[:5]}")
    txt = text_of(acc, "results")
    eval_steps = sorted(ln["step"] for ln in lines if "eval" in ln)
    ck(len(eval_steps) >= 2, f"evaluations during and after training: steps {eval_steps}")
    n_acc = 0
    for s in eval_steps:
        n_acc += check_eval(sc, txt, s, os.path.join("run", "eval", "step_%08d" % s), "training")
    ck(sorted(txt) == eval_steps, f"one results text per evaluation: {sorted(txt)} vs {eval_steps}")
    print(f"training: {len(want)} metrics.jsonl numbers and {n_acc} per-language accuracies read back by EventAccumulator")

    run("eval", "--model", "model", "--data", DATA, "--tasks", "emotion,paws", "--langs", "en,de,ja", "--limit", "2",
        "--out", "ev", "--tensorboard")
    acc = load("ev/tensorboard")
    sc = scalars(acc)
    n = check_eval(sc, text_of(acc, "results"), 0, "ev", "qalign eval")
    ck(n == 6, f"6 per-language accuracies ({n})")
    ck(len(sc) == 6 + 2 + 1, f"scalars: 6 cells, 2 task averages, 1 average ({len(sc)})")
ck.finish(need_one=True)
