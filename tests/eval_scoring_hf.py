#!/usr/bin/env python3
"""eval_scoring_hf.py — the three emotion scoring modes of `qalign eval` against an independent
re-implementation of the paper's scripts:

  english-labels     emotion_eval_2shot_enout.py
  target-labels      emotion_eval_2shot.py        (Thai: tokenizer("เชิง") ids appended, บวก vs ลบ)
  irrelevant-labels  emotion_eval_2shot_irrelative.py (demo labels ox / horse, no Qwen first-token rule)

For every model given (tiny random models with the real tokenizers) and mode, qalign evaluates every
language (--gold paper, the scripts' rule; --full-vocab) and this script redoes each item as the script
does: the prompt built the script's way (prompt_prefix[L] = test record #99, the field name, the demo
label, 13 trailing spaces in English only, record #20; then "\\n" + review + "\\n" + field + ': "'),
tokenizer(prompt) with special tokens, one forward, the label sets of process_tokens (the Qwen rule when
the model is a Qwen2 one, except in the control), the sums at the last position, the decision and the
script's correctness test. It checks per item the log-masses (logsumexp of the set's logits), the
prediction (items whose two log-masses are closer than 1e-4 are only counted) and `correct`, and the
accuracy per language.

The forward: Hugging Face transformers (CPU, float32) when torch and transformers are importable;
otherwise a NumPy float64 re-implementation of the Llama/Mistral/Qwen2 decoder read straight from
model.safetensors (RMSNorm, RoPE as rotate_half, grouped-query causal attention with the sliding
window, SwiGLU, Qwen2's q/k/v biases), with the Hugging Face `tokenizers` package as the tokenizer.
Exit 77 (skip) when neither numpy nor tokenizers is importable."""
import argparse
import json
import math
import os
import re
import subprocess
import sys

try:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    BACKEND = 'transformers'
except ImportError:
    torch = None
    BACKEND = 'numpy'
try:
    import numpy as np
    from tokenizers import Tokenizer
except ImportError as ex:
    if BACKEND == 'numpy':
        print("SKIP: neither torch/transformers nor numpy/tokenizers importable (%s)" % ex)
        sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qtcheck import Checks  # noqa: E402

check = Checks()
TIE_MARGIN = 1e-4
LOG_TOL = 2e-4


# ---- the model: transformers, or NumPy from the safetensors -----------------------------------------
class HFModel:
    """AutoTokenizer + AutoModelForCausalLM, as the scripts load them (float32 here instead of NF4)"""

    def __init__(self, mdir):
        torch.set_num_threads(1)
        self.tok = AutoTokenizer.from_pretrained(mdir)
        self.vocab = self.tok.get_vocab()
        self.model = AutoModelForCausalLM.from_pretrained(mdir, dtype=torch.float32)
        self.model.eval()

    def encode(self, text):
        return self.tok(text)['input_ids']

    def last_logits(self, ids):
        with torch.no_grad():
            return self.model(torch.tensor([ids]), logits_to_keep=1).logits[0, -1].double().numpy()


def st_tensors(path):
    """every tensor of a safetensors file as float64 (BF16/F16/F32)"""
    raw = open(path, 'rb').read()
    n = int.from_bytes(raw[:8], 'little')
    hdr, base, out = json.loads(raw[8:8 + n]), 8 + n, {}
    for name, meta in hdr.items():
        if name == '__metadata__':
            continue
        lo, hi = meta['data_offsets']
        b = raw[base + lo:base + hi]
        if meta['dtype'] == 'BF16':
            x = (np.frombuffer(b, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            x = np.frombuffer(b, {'F32': np.float32, 'F16': np.float16}[meta['dtype']])
        out[name] = x.astype(np.float64).reshape(meta['shape'])
    return out


class NumpyModel:
    """the Hugging Face decoder (LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM, eager attention)
    in float64, and tokenizer.json through the `tokenizers` package (what AutoTokenizer's fast tokenizers run)"""

    def __init__(self, mdir):
        self.cfg = c = json.load(open(os.path.join(mdir, 'config.json')))
        self.tok = Tokenizer.from_file(os.path.join(mdir, 'tokenizer.json'))
        self.vocab = self.tok.get_vocab(with_added_tokens=True)
        self.w = st_tensors(os.path.join(mdir, 'model.safetensors'))
        self.L, self.H = c['num_hidden_layers'], c['num_attention_heads']
        self.KV = c.get('num_key_value_heads') or self.H
        self.hd = c.get('head_dim') or c['hidden_size'] // self.H
        self.eps = c['rms_norm_eps']
        self.theta = c.get('rope_theta', 10000.0)
        if c.get('rope_scaling'):
            raise SystemExit('%s: rope_scaling is not re-implemented here' % mdir)
        win = c.get('sliding_window')
        self.window = win if win and c.get('use_sliding_window', c['model_type'] == 'mistral') else None
        if 'lm_head.weight' not in self.w:
            self.w['lm_head.weight'] = self.w['model.embed_tokens.weight']

    def encode(self, text):
        return self.tok.encode(text, add_special_tokens=True).ids

    def rms(self, x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * w

    def lin(self, x, name):
        y = x @ self.w[name + '.weight'].T
        b = self.w.get(name + '.bias')
        return y if b is None else y + b

    def last_logits(self, ids):
        T, hd, W = len(ids), self.hd, self.w
        x = W['model.embed_tokens.weight'][np.asarray(ids)]
        inv = 1.0 / (self.theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
        ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]
        cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

        def rope(t):  # [heads, T, hd]
            h = hd // 2
            return t * cos + np.concatenate([-t[..., h:], t[..., :h]], -1) * sin

        i, j = np.arange(T)[:, None], np.arange(T)[None, :]
        masked = j > i
        if self.window:
            masked |= (i - j) >= self.window
        for layer in range(self.L):
            p = 'model.layers.%d.' % layer
            h = self.rms(x, W[p + 'input_layernorm.weight'])
            q = rope(self.lin(h, p + 'self_attn.q_proj').reshape(T, self.H, hd).transpose(1, 0, 2))
            k = rope(self.lin(h, p + 'self_attn.k_proj').reshape(T, self.KV, hd).transpose(1, 0, 2))
            v = self.lin(h, p + 'self_attn.v_proj').reshape(T, self.KV, hd).transpose(1, 0, 2)
            rep = self.H // self.KV
            k, v = np.repeat(k, rep, 0), np.repeat(v, rep, 0)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
            s[:, masked] = -np.inf
            s = np.exp(s - s.max(-1, keepdims=True))
            a = (s / s.sum(-1, keepdims=True)) @ v
            x = x + self.lin(a.transpose(1, 0, 2).reshape(T, self.H * hd), p + 'self_attn.o_proj')
            h = self.rms(x, W[p + 'post_attention_layernorm.weight'])
            g = self.lin(h, p + 'mlp.gate_proj')
            x = x + self.lin(g / (1.0 + np.exp(-g)) * self.lin(h, p + 'mlp.up_proj'), p + 'mlp.down_proj')
        return W['lm_head.weight'] @ self.rms(x[-1], W['model.norm.weight'])


def logsumexp(v):
    m = v.max()
    return float(m + np.log(np.exp(v - m).sum()))


# ---- the scripts' process_tokens ------------------------------------------------------------------
def token_prefixes(token_str):
    return [token_str[:i] for i in range(1, len(token_str) + 1)]


def unicode_prefix_tokid(zh_char, vocab):
    if not zh_char.encode().__str__()[2:-1].startswith('\\x'):
        return None
    start = zh_char.encode().__str__()[2:-1].split('\\x')[1]
    key = '<0x%s>' % start.upper()
    return vocab.get(key)


def process_tokens(token_str, model, vocab, qwen_rule):
    with_prefixes = token_prefixes(token_str)
    with_spaces = ['\u2581' + t for t in with_prefixes] + with_prefixes
    final = [vocab[t] for t in set(with_spaces) if t in vocab]
    tokid = unicode_prefix_tokid(token_str[0], vocab)
    if tokid is not None:
        final.append(tokid)
    if qwen_rule:
        for tok in set(with_prefixes):
            final.append(model.encode(tok)[0])  # the script: tokenizer(tok)['input_ids'][0]
    return sorted(set(final))


# ---- the scripts' prompts ---------------------------------------------------------------------------
def prompt_prefix(records, field, pos, neg, lang):
    return (records[99]['input'] + '\n' + field + ': "' + pos + '"' + (' ' * 13 if lang == 'en' else '') + '\n' +
            records[20]['input'] + '\n' + field + ': "' + neg + '"')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--qalign', required=True)
    ap.add_argument('--data', required=True)
    ap.add_argument('--model', action='append', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--limit', type=int, default=4)
    a = ap.parse_args()
    tasks = json.load(open(os.path.join(a.data, 'tasks.json'), encoding='utf-8'))
    emo = tasks['tasks']['emotion']
    langs = tasks['languages']
    os.makedirs(a.out, exist_ok=True)
    print('the scripts re-implemented on %s' % ('Hugging Face transformers (float32)' if BACKEND == 'transformers' else
                                                 'NumPy (float64) and the tokenizers package'))
    for mdir in a.model:
        cfg = json.load(open(os.path.join(mdir, 'config.json')))
        is_qwen = cfg['model_type'].startswith('qwen')
        model = HFModel(mdir) if BACKEND == 'transformers' else NumpyModel(mdir)
        vocab = model.vocab
        name = os.path.basename(os.path.normpath(mdir))
        for mode in ['english-labels', 'target-labels', 'irrelevant-labels']:
            out = os.path.join(a.out, '%s-%s' % (name, mode))
            cmd = [a.qalign, 'eval', '--model', mdir, '--data', a.data, '--tasks', 'emotion', '--langs', 'all',
                   '--limit', str(a.limit), '--gold', 'paper', '--full-vocab', '--scoring', mode, '--out', out]
            r = subprocess.run(cmd, capture_output=True, text=True)
            check(r.returncode == 0, '%s: qalign eval exits 0 (%s)' % (out, r.stderr[-2000:]))
            if r.returncode:
                continue
            res = json.load(open(os.path.join(out, 'results.json'), encoding='utf-8'))
            check(res['scoring'] == mode and res['protocol']['scoring'] == mode, '%s: results.json says %s' % (name, mode))
            preds = {}
            with open(os.path.join(out, 'predictions.jsonl'), encoding='utf-8') as f:
                for line in f:
                    p = json.loads(line)
                    preds[(p['lang'], p['index'])] = p
            worst, near, compared, th_items = 0.0, 0, 0, 0
            for lang in langs:
                records = json.load(open(os.path.join(a.data, emo['test_file'].replace('{lang}', lang)),
                                         encoding='utf-8'))
                field = re.fullmatch(r'\n\{input\}\n(.*): "', emo['query'][lang], re.S).group(1)
                tw = emo['target_label_words'][lang]
                pos_t, neg_t = tw['positive'], tw['negative']
                qwen_rule = is_qwen
                if mode == 'english-labels':
                    demo = ('positive', 'negative')
                    pos_w, neg_w = 'positive', 'negative'
                elif mode == 'target-labels':
                    demo = (pos_t, neg_t)
                    pos_w, neg_w = pos_t, neg_t
                else:
                    demo = ('ox', 'horse')
                    pos_w, neg_w = 'ox', 'horse'
                    qwen_rule = False  # emotion_eval_2shot_irrelative.py has no Qwen step
                two_step = mode == 'target-labels' and lang == 'th'
                if two_step:  # the script's Thai branch, literally
                    pos_w, neg_w = 'บวก', 'ลบ'
                prefix = prompt_prefix(records, field, demo[0], demo[1], lang)
                pos_ids = process_tokens(pos_w, model, vocab, qwen_rule)
                neg_ids = process_tokens(neg_w, model, vocab, qwen_rule)
                correct, near_here = 0, 0
                n = min(a.limit, len(records))
                for i in range(n):
                    prompt = prefix + '\n' + records[i]['input'] + '\n' + field + ': "'
                    ids = model.encode(prompt)  # the script: tokenizer(prompt)['input_ids']
                    if two_step:
                        ids = ids + model.encode('เชิง')  # tokenizer("เชิง")['input_ids'], special tokens and all
                        th_items += 1
                    logits = model.last_logits(ids)
                    lp, ln = logsumexp(logits[pos_ids]), logsumexp(logits[neg_ids])
                    lz = logsumexp(logits)
                    sp, sn = math.exp(lp - lz), math.exp(ln - lz)
                    pred = 'positive' if sp > sn else 'negative'   # no exact tie in float64 here
                    answer = records[i]['answer']
                    if mode == 'target-labels':   # output = the target-language word; startswith(gold)
                        word = pos_t if pred == 'positive' else neg_t
                        ok = word.startswith(answer)
                    elif mode == 'english-labels':
                        ok = answer == (pos_t if pred == 'positive' else neg_t)
                    else:
                        ok = answer == (pos_t if pred == 'positive' else neg_t)
                    correct += ok
                    q = preds.get((lang, i))
                    check(q is not None, '%s %s %s #%d: predicted' % (name, mode, lang, i))
                    if q is None:
                        continue
                    d = max(abs(q['log_mass']['positive'] - lp), abs(q['log_mass']['negative'] - ln))
                    worst = max(worst, d)
                    check(d < LOG_TOL, '%s %s %s #%d: log-masses %s vs %.6f/%.6f' % (name, mode, lang, i, q['log_mass'],
                                                                                   lp, ln))
                    check(abs(q['mass']['positive'] - sp) <= 1e-4 * max(sp, 1e-30) + 1e-12,
                          '%s %s %s #%d: mass %g vs %g' % (name, mode, lang, i, q['mass']['positive'], sp))
                    if abs(lp - ln) < TIE_MARGIN:
                        near += 1
                        near_here += 1
                        continue
                    compared += 1
                    check(q['pred'] == pred, '%s %s %s #%d: prediction %s vs the script %s' % (name, mode, lang, i,
                                                                                         q['pred'], pred))
                    check(q['correct'] == ok, '%s %s %s #%d: correct %s vs the script %s' % (name, mode, lang, i,
                                                                                       q['correct'], ok))
                    check(q['pred_word'] == ({'positive': demo[0], 'negative': demo[1]}[pred]),
                          '%s %s %s #%d: pred_word %s' % (name, mode, lang, i, q['pred_word']))
                if near_here == 0:
                    cell = [c for c in res['cells'] if c['task'] == 'emotion' and c['lang'] == lang][0]
                    check(cell['correct'] == correct and cell['n'] == n,
                          '%s %s %s: %d of %d correct vs the script %d' % (name, mode, lang, cell['correct'], cell['n'],
                                                                          correct))
            print('%s %s: %d items compared with the script, %d near ties, worst log-mass difference %.2e%s' %
                  (name, mode, compared, near, worst, ', %d Thai items two-step' % th_items if th_items else ''))
            check(compared >= len(langs) * a.limit * 3 // 4, '%s %s: most items decided (%d)' % (name, mode, compared))
    check.finish(need_one=True)


if __name__ == '__main__':
    main()
