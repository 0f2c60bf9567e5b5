/* compare.c — a before/after table of two evaluations (results.json of qalign eval), the layout of
 * the paper's Table 1: per task a row for each run and their difference, languages as columns. */
#include "eval/eval.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "common/qa_sbuf.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int load_results(const char *path, json_t **out, qa_err *e) {
    char *p = qa_is_dir(path) ? qa_path_join(path, "results.json") : qa_strdup(path);
    json_error_t je;
    json_t *r = json_load_file(p, 0, &je);
    if (!r) { QA_ERR(e, "%s: %s (line %d)", p, je.text, je.line); free(p); return -1; }
    if (!json_is_object(json_object_get(r, "accuracy")) || !json_is_array(json_object_get(r, "tasks")) ||
        !json_is_array(json_object_get(r, "languages"))) {
        QA_ERR(e, "%s is not a results.json of qalign eval (no accuracy / tasks / languages)", p);
        json_decref(r); free(p); return -1;
    }
    free(p);
    *out = r;
    return 0;
}

static double acc_of(json_t *r, const char *task, const char *lang) {
    json_t *v = json_object_get(json_object_get(json_object_get(r, "accuracy"), task), lang);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static const char *str_of(json_t *r, const char *key) {
    json_t *v = json_object_get(r, key);
    return json_is_string(v) ? json_string_value(v) : "none";
}

/* results written before the scoring modes existed scored the English label words */
static const char *scoring_of(json_t *r) {
    json_t *v = json_object_get(r, "scoring");
    return json_is_string(v) ? json_string_value(v) : "english-labels";
}

int qa_eval_compare_md(const char *before, const char *after, const char *label_before, const char *label_after,
                       char **md, qa_err *e) {
    json_t *a = NULL, *b = NULL;
    if (load_results(before, &a, e)) return -1;
    if (load_results(after, &b, e)) { json_decref(a); return -1; }
    if (strcmp(str_of(a, "gold"), str_of(b, "gold"))) {
        QA_ERR(e, "%s used gold mode '%s' but %s used '%s': compare runs of the same mode", before, str_of(a, "gold"),
               after, str_of(b, "gold"));
        json_decref(a); json_decref(b); return -1;
    }
    if (strcmp(scoring_of(a), scoring_of(b))) {
        QA_ERR(e, "%s used scoring '%s' but %s used '%s': compare runs of the same scoring mode", before,
               scoring_of(a), after, scoring_of(b));
        json_decref(a); json_decref(b); return -1;
    }
    qa_sbuf s = {0};
    json_t *la = json_object_get(a, "limit"), *lb = json_object_get(b, "limit");
    qa_sb_printf(&s, "# Before / after question alignment\n\n");
    qa_sb_printf(&s, "- %s: model `%s`, adapter `%s`\n", label_before, str_of(a, "model"), str_of(a, "adapter"));
    qa_sb_printf(&s, "- %s: model `%s`, adapter `%s`\n", label_after, str_of(b, "model"), str_of(b, "adapter"));
    qa_sb_printf(&s, "- gold labels: %s; scoring: %s; precision: %s\n", str_of(a, "gold"), scoring_of(a),
                 str_of(b, "precision"));
    if (json_is_integer(la) || json_is_integer(lb))
        qa_sb_printf(&s, "- items per task and language: %s %lld, %s %lld (--limit; 0 = all)\n", label_before,
                  (long long)json_integer_value(la), label_after, (long long)json_integer_value(lb));
    qa_sb_printf(&s, "\nAccuracy (%%):\n\n| task | run |");
    json_t *langs = json_object_get(b, "languages"), *tasks = json_object_get(b, "tasks");
    size_t nl = json_array_size(langs);
    for (size_t i = 0; i < nl; i++) qa_sb_printf(&s, " %s |", json_string_value(json_array_get(langs, i)));
    qa_sb_printf(&s, " Avg |\n|---|---|");
    for (size_t i = 0; i <= nl; i++) qa_sb_printf(&s, "---:|");
    qa_sb_printf(&s, "\n");
    for (size_t t = 0; t < json_array_size(tasks); t++) {
        const char *task = json_string_value(json_array_get(tasks, t));
        for (int row = 0; row < 3; row++) {
            qa_sb_printf(&s, "| %s | %s |", row == 0 ? task : "", row == 0 ? label_before : row == 1 ? label_after : "Δ");
            double sum = 0;
            int cnt = 0;
            for (size_t i = 0; i < nl; i++) {
                const char *lang = json_string_value(json_array_get(langs, i));
                double x = acc_of(a, task, lang), y = acc_of(b, task, lang);
                double v = row == 0 ? x : row == 1 ? y : y - x;
                if (isnan(v)) { qa_sb_printf(&s, " – |"); continue; }
                qa_sb_printf(&s, row == 2 ? " %+.1f |" : " %.1f |", 100 * v);
                sum += v;
                cnt++;
            }
            if (cnt) qa_sb_printf(&s, row == 2 ? " %+.1f |\n" : " %.1f |\n", 100 * sum / cnt);
            else qa_sb_printf(&s, " – |\n");
        }
    }
    json_decref(a);
    json_decref(b);
    *md = s.p;
    return 0;
}
