/* report.c — results.json, results.md (the paper's Table 1 layout) and predictions.jsonl. */
#include "eval/eval_internal.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "common/qa_sbuf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static json_t *num_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }
static json_t *str_or_null(const char *s) { return s && *s ? json_string(s) : json_null(); }

static int write_json(const char *dir, const char *name, json_t *j, qa_err *e) {
    char *txt = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    if (!txt) return QA_ERR(e, "%s/%s: could not serialize the results", dir, name);
    char *path = qa_path_join(dir, name);
    size_t n = strlen(txt);
    txt = qa_realloc(txt, n + 2);
    txt[n] = '\n';
    int rc = qa_write_file_atomic(path, txt, n + 1, e);
    free(path);
    free(txt);
    return rc;
}

/* the tokenizer as scored: the control's label sets never get the Qwen first-token rule */
static const char *tokenizer_desc(const qa_eval_results *r) {
    if (r->suite->scoring == QA_EVAL_SCORING_IRRELEVANT && strstr(r->tokenizer_kind, "byte-level"))
        return "byte-level (no first-token rule: the control)";
    return r->tokenizer_kind;
}

static json_t *results_json(const qa_eval_results *r) {
    const qa_eval_suite *s = r->suite;
    json_t *j = json_object();
    json_t *proto = json_object();
    json_object_set_new(proto, "name", json_string(qa_eval_scoring_protocol(s->scoring)));
    json_object_set_new(proto, "version", json_integer(QA_EVAL_PROTOCOL_VERSION));
    json_object_set_new(proto, "prompt", json_string(s->prompt == QA_EVAL_PROMPT_TARGET_LABELS
                                                          ? "prefix_target_labels[L] + query[L] (tasks.json), "
                                                            "tokenized whole with add_special_tokens=True"
                                                      : s->prompt == QA_EVAL_PROMPT_IRRELEVANT_LABELS
                                                          ? "prefix_target_labels[L] with the demo label words "
                                                            "replaced by \"ox\" / \"horse\" + query[L] (tasks.json), "
                                                            "tokenized whole with add_special_tokens=True"
                                                          : "prefix_english_labels[L] + query[L] (tasks.json), "
                                                            "tokenized whole with add_special_tokens=True"));
    json_object_set_new(proto, "prompt_variant", json_string(qa_eval_prompt_variant_name(s->prompt)));
    json_object_set_new(proto, "scoring", json_string(qa_eval_scoring_name(s->scoring)));
    json_object_set_new(proto, "score", json_string(
        s->scoring == QA_EVAL_SCORING_TARGET
            ? "per label: logsumexp of the next-token logits over the process_tokens set of its target-language "
              "word (labels sharing a prefix: the prefix's ids appended to the prompt, the remainders scored); the "
              "largest wins; paper gold: correct iff the predicted word starts with the gold string; seeded coin "
              "on exact ties"
        : s->scoring == QA_EVAL_SCORING_IRRELEVANT
            ? "per label: logsumexp of the next-token logits over the process_tokens set (no first-token rule) of "
              "its control word (positive: ox, negative: horse); the largest wins; seeded coin on exact ties"
            : "per label: logsumexp of the next-token logits over its process_tokens set; the largest wins; "
              "seeded coin on exact ties"));
    json_object_set_new(j, "protocol", proto);
    json_object_set_new(j, "scoring", json_string(qa_eval_scoring_name(s->scoring)));
    time_t now = time(NULL);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    json_object_set_new(j, "created_utc", json_string(ts));
    json_object_set_new(j, "model", str_or_null(r->model_id));
    json_object_set_new(j, "adapter", str_or_null(r->adapter_id));
    json_object_set_new(j, "precision", json_string(r->precision));
    json_object_set_new(j, "tokenizer", json_string(tokenizer_desc(r)));
    json_object_set_new(j, "gold", json_string(qa_eval_gold_name(r->gold)));
    json_object_set_new(j, "seed", json_integer((json_int_t)r->seed));
    json_object_set_new(j, "ties", json_integer(r->ties));
    json_object_set_new(j, "prefix_cache", json_boolean(r->prefix_cache));
    json_object_set_new(j, "label_only_logits", json_boolean(!r->full_vocab));
    json_object_set_new(j, "world_size", json_integer(r->world_size));
    json_object_set_new(j, "data_dir", json_string(s->data_dir));
    json_object_set_new(j, "limit", json_integer(s->limit));
    json_object_set_new(j, "n_items", json_integer(r->n_items));
    json_object_set_new(j, "seconds", json_real(r->seconds));
    json_object_set_new(j, "items_per_s", json_real(r->items_per_s));
    json_object_set_new(j, "tokens_computed", json_integer(r->tokens_computed));
    json_object_set_new(j, "tokens_padded", json_integer(r->tokens_padded));
    json_t *tasks = json_array(), *langs = json_array();
    for (int t = 0; t < s->n_tasks; t++) json_array_append_new(tasks, json_string(s->tasks[t].name));
    for (int l = 0; l < s->n_langs; l++) json_array_append_new(langs, json_string(s->langs[l]));
    json_object_set_new(j, "tasks", tasks);
    json_object_set_new(j, "languages", langs);
    json_t *acc = json_object(), *ns = json_object(), *cells = json_array();
    for (int t = 0; t < s->n_tasks; t++) {
        json_t *a = json_object(), *n = json_object();
        for (int l = 0; l < s->n_langs; l++) {
            const qa_eval_cell *c = &r->cells[(size_t)t * s->n_langs + l];
            json_object_set_new(a, s->langs[l], json_real(c->accuracy));
            json_object_set_new(n, s->langs[l], json_integer(c->n));
            json_t *cj = json_object();
            json_object_set_new(cj, "task", json_string(s->tasks[t].name));
            json_object_set_new(cj, "lang", json_string(s->langs[l]));
            json_object_set_new(cj, "n", json_integer(c->n));
            json_object_set_new(cj, "correct", json_integer(c->correct));
            json_object_set_new(cj, "accuracy", json_real(c->accuracy));
            json_object_set_new(cj, "ties", json_integer(c->ties));
            json_object_set_new(cj, "prefix_tokens", json_integer(c->prefix_tokens));
            json_object_set_new(cj, "mean_cached_tokens", num_or_null(r->preds ? c->mean_cached : NAN));
            json_object_set_new(cj, "mean_suffix_tokens", num_or_null(r->preds ? c->mean_suffix : NAN));
            json_array_append_new(cells, cj);
        }
        json_object_set_new(acc, s->tasks[t].name, a);
        json_object_set_new(ns, s->tasks[t].name, n);
    }
    json_object_set_new(j, "accuracy", acc);
    json_object_set_new(j, "n", ns);
    json_t *avg = json_object();
    for (int t = 0; t < s->n_tasks; t++) json_object_set_new(avg, s->tasks[t].name, json_real(r->task_avg[t]));
    json_object_set_new(avg, "all", json_real(r->avg));
    json_object_set_new(j, "averages", avg);
    json_object_set_new(j, "cells", cells);
    return j;
}

static char *results_md(const qa_eval_results *r) {
    const qa_eval_suite *s = r->suite;
    qa_sbuf b = {0};
    qa_sb_printf(&b, "# qalign evaluation\n\n");
    qa_sb_printf(&b, "- model: `%s`\n- adapter: %s%s%s\n", r->model_id[0] ? r->model_id : "?",
              r->adapter_id[0] ? "`" : "", r->adapter_id[0] ? r->adapter_id : "none (base model)",
              r->adapter_id[0] ? "`" : "");
    qa_sb_printf(&b, "- gold labels: **%s**%s\n", qa_eval_gold_name(r->gold),
              r->gold == QA_EVAL_GOLD_PAPER ? " (the original scripts: SNLI ja/bn capped at 66.7%, no scored swapped)"
                                            : " (gold of item i = the English record i)");
    qa_sb_printf(&b, "- precision: %s; tokenizer: %s; seed %llu; exact ties: %d\n", r->precision, tokenizer_desc(r),
              (unsigned long long)r->seed, r->ties);
    qa_sb_printf(&b, "- protocol: %s v%d; %d items%s\n", qa_eval_scoring_protocol(s->scoring),
              QA_EVAL_PROTOCOL_VERSION, r->n_items, s->limit > 0 ? " (--limit)" : "");
    qa_sb_printf(&b, "- scoring: **%s** (%s)\n", qa_eval_scoring_name(s->scoring),
              s->scoring == QA_EVAL_SCORING_TARGET
                  ? "target-language demo labels and label words, emotion_eval_2shot.py"
              : s->scoring == QA_EVAL_SCORING_IRRELEVANT
                  ? "the irrelevant-label control: demo labels ox / horse, emotion_eval_2shot_irrelative.py"
                  : "English label words, the enout scripts");
    if (s->prompt != QA_EVAL_PROMPT_ENGLISH_LABELS && s->scoring == QA_EVAL_SCORING_ENGLISH)
        qa_sb_printf(&b, "- prompt: **%s** demonstrations (scored on the English label words)\n",
                  qa_eval_prompt_variant_name(s->prompt));
    qa_sb_printf(&b, "\n");
    qa_sb_printf(&b, "Accuracy (%%):\n\n| task |");
    for (int l = 0; l < s->n_langs; l++) qa_sb_printf(&b, " %s |", s->langs[l]);
    qa_sb_printf(&b, " Avg |\n|---|");
    for (int l = 0; l <= s->n_langs; l++) qa_sb_printf(&b, "---:|");
    qa_sb_printf(&b, "\n");
    for (int t = 0; t < s->n_tasks; t++) {
        if (s->tasks[t].shots > 0) qa_sb_printf(&b, "| %s (%d-shot) |", s->tasks[t].name, s->tasks[t].shots);
        else qa_sb_printf(&b, "| %s |", s->tasks[t].name);
        for (int l = 0; l < s->n_langs; l++)
            qa_sb_printf(&b, " %.1f |", 100.0 * r->cells[(size_t)t * s->n_langs + l].accuracy);
        qa_sb_printf(&b, " %.1f |\n", 100.0 * r->task_avg[t]);
    }
    if (s->n_tasks > 1) qa_sb_printf(&b, "\nAverage over tasks: %.2f%%\n", 100.0 * r->avg);
    qa_sb_printf(&b, "\nItems per cell:");
    for (int t = 0; t < s->n_tasks; t++) {
        int lo = r->cells[(size_t)t * s->n_langs].n, hi = lo;
        for (int l = 0; l < s->n_langs; l++) {
            int n = r->cells[(size_t)t * s->n_langs + l].n;
            if (n < lo) lo = n;
            if (n > hi) hi = n;
        }
        if (lo == hi) qa_sb_printf(&b, " %s %d%s", s->tasks[t].name, lo, t + 1 < s->n_tasks ? ";" : "");
        else qa_sb_printf(&b, " %s %d-%d%s", s->tasks[t].name, lo, hi, t + 1 < s->n_tasks ? ";" : "");
    }
    qa_sb_printf(&b, ".\n");
    return b.p;
}

static int write_predictions(const qa_eval_results *r, const char *dir, qa_err *e) {
    const qa_eval_suite *s = r->suite;
    qa_sbuf b = {0};
    qa_sb_put(&b, "", 0);
    for (int i = 0; i < r->n_items; i++) {
        const qa_eval_pred *p = &r->preds[i];
        const qa_eval_taskdef *td = &s->tasks[p->task];
        json_t *j = json_object();
        json_object_set_new(j, "task", json_string(td->name));
        json_object_set_new(j, "lang", json_string(s->langs[p->lang]));
        json_object_set_new(j, "index", json_integer(p->index));
        json_object_set_new(j, "pred", json_string(td->labels[p->pred]));
        json_object_set_new(j, "pred_word", json_string(qa_eval_pred_word(s, p->task, p->lang, p->pred)));
        json_object_set_new(j, "gold", p->gold >= 0 ? json_string(td->labels[p->gold]) : json_null());
        json_object_set_new(j, "gold_text", json_string(p->gold_text));
        json_object_set_new(j, "correct", json_boolean(p->correct));
        json_object_set_new(j, "tie", json_boolean(p->tie));
        json_t *lm = json_object(), *ms = json_object();
        for (int k = 0; k < td->n_labels; k++) {
            json_object_set_new(lm, td->labels[k], num_or_null(p->log_mass[k]));
            if (r->full_vocab) json_object_set_new(ms, td->labels[k], num_or_null(p->mass[k]));
        }
        json_object_set_new(j, "log_mass", lm);
        if (r->full_vocab) json_object_set_new(j, "mass", ms);
        else json_decref(ms);
        json_object_set_new(j, "tokens", json_integer(p->n_tokens));
        json_object_set_new(j, "cached_tokens", json_integer(p->n_cached));
        char *line = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
        json_decref(j);
        if (!line) { free(b.p); return QA_ERR(e, "predictions: could not serialize item %d", i); }
        qa_sb_put(&b, line, strlen(line));
        qa_sb_put(&b, "\n", 1);
        free(line);
    }
    char *path = qa_path_join(dir, "predictions.jsonl");
    int rc = qa_write_file_atomic(path, b.p, b.n, e);
    free(path);
    free(b.p);
    return rc;
}

int qa_eval_write(const qa_eval_results *r, const char *out_dir, qa_err *e) {
    if (!r->suite || !r->cells) return QA_ERR(e, "eval results are empty (run qa_eval_run first)");
    QA_TRY(qa_mkdir_p(out_dir, e));
    json_t *j = results_json(r);
    int rc = write_json(out_dir, "results.json", j, e);
    json_decref(j);
    QA_TRY(rc);
    char *md = results_md(r);
    char *path = qa_path_join(out_dir, "results.md");
    rc = qa_write_file_atomic(path, md, strlen(md), e);
    free(path);
    free(md);
    QA_TRY(rc);
    if (r->preds) QA_TRY(write_predictions(r, out_dir, e));
    return 0;
}
