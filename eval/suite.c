/* suite.c — tasks.json and the test files: selection, validation, gold labels, prompts. */
#include "eval/eval_internal.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_JSON_BYTES ((size_t)1 << 30)

const char *qa_eval_gold_name(qa_eval_gold g) { return g == QA_EVAL_GOLD_PAPER ? "paper" : "corrected"; }

int qa_eval_gold_parse(const char *s, qa_eval_gold *g, qa_err *e) {
    if (!strcmp(s, "corrected")) *g = QA_EVAL_GOLD_CORRECTED;
    else if (!strcmp(s, "paper")) *g = QA_EVAL_GOLD_PAPER;
    else return QA_ERR(e, "gold mode '%s' is unknown (use corrected or paper)", s);
    return 0;
}

const char *qa_eval_prompt_variant_name(qa_eval_prompt_variant p) {
    return p == QA_EVAL_PROMPT_TARGET_LABELS       ? "target-labels"
           : p == QA_EVAL_PROMPT_IRRELEVANT_LABELS ? "irrelevant-labels"
                                                   : "english-labels";
}

int qa_eval_prompt_variant_parse(const char *s, qa_eval_prompt_variant *p, qa_err *e) {
    if (!strcmp(s, "english-labels")) *p = QA_EVAL_PROMPT_ENGLISH_LABELS;
    else if (!strcmp(s, "target-labels")) *p = QA_EVAL_PROMPT_TARGET_LABELS;
    else if (!strcmp(s, "irrelevant-labels")) *p = QA_EVAL_PROMPT_IRRELEVANT_LABELS;
    else return QA_ERR(e, "prompt variant '%s' is unknown (use english-labels, target-labels or irrelevant-labels)", s);
    return 0;
}

/* ---- small helpers ------------------------------------------------------------------------ */
/* the next comma-separated item of *p into buf; 0 at the end */
static int next_item(const char **p, char *buf, size_t cap) {
    const char *s = *p;
    while (*s == ',' || *s == ' ') s++;
    if (!*s) return 0;
    size_t n = 0;
    while (s[n] && s[n] != ',') n++;
    size_t k = n;
    while (k > 0 && s[k - 1] == ' ') k--;
    if (k >= cap) k = cap - 1;
    memcpy(buf, s, k);
    buf[k] = 0;
    *p = s + n;
    return 1;
}

static const char *obj_str(json_t *o, const char *key, size_t *len) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) return NULL;
    if (len) *len = json_string_length(v);
    return json_string_value(v);
}

/* ---- tasks.json --------------------------------------------------------------------------- */
static int task_order_cmp(const void *a, const void *b) {
    static const char *known[] = {"emotion", "snli", "paws"};
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    int ix = 3, iy = 3;
    for (int i = 0; i < 3; i++) {
        if (!strcmp(x, known[i])) ix = i;
        if (!strcmp(y, known[i])) iy = i;
    }
    return ix != iy ? ix - iy : strcmp(x, y);
}

static int str_array(json_t *a, char **out, int cap, int *n, const char *what, qa_err *e) {
    if (!json_is_array(a) || json_array_size(a) == 0)
        return QA_ERR(e, "%s must be a non-empty array of strings", what);
    if ((int)json_array_size(a) > cap)
        return QA_ERR(e, "%s has %zu entries; at most %d are supported", what, json_array_size(a), cap);
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_string(v)) return QA_ERR(e, "%s[%zu] is not a string", what, i);
        out[i] = qa_strdup(json_string_value(v));
    }
    *n = (int)json_array_size(a);
    return 0;
}

/* one task definition restricted to the selected languages */
static int load_taskdef(qa_eval_suite *s, json_t *tj, const char *name, const char *path, qa_eval_taskdef *td,
                        qa_err *e) {
    char what[256];
    td->name = qa_strdup(name);
    if (!json_is_object(tj)) return QA_ERR(e, "%s: tasks.%s is not an object", path, name);
    const char *tf = obj_str(tj, "test_file", NULL);
    if (!tf) return QA_ERR(e, "%s: task '%s': key \"test_file\" is missing or not a string", path, name);
    if (!strstr(tf, "{lang}"))
        return QA_ERR(e, "%s: task '%s': test_file \"%s\" has no {lang} placeholder", path, name, tf);
    td->test_file = qa_strdup(tf);
    json_t *sh = json_object_get(tj, "shots");
    td->shots = json_is_integer(sh) ? (int)json_integer_value(sh) : -1;
    snprintf(what, sizeof what, "%s: task '%s': \"fields\"", path, name);
    QA_TRY(str_array(json_object_get(tj, "fields"), td->fields, QA_EVAL_MAX_FIELDS, &td->n_fields, what, e));
    snprintf(what, sizeof what, "%s: task '%s': \"labels\"", path, name);
    QA_TRY(str_array(json_object_get(tj, "labels"), td->labels, QA_EVAL_MAX_LABELS, &td->n_labels, what, e));
    if (td->n_labels < 2) return QA_ERR(e, "%s: task '%s': needs at least 2 labels", path, name);
    json_t *elw = json_object_get(tj, "english_label_words");
    if (!json_is_object(elw))
        return QA_ERR(e, "%s: task '%s': key \"english_label_words\" is missing or not an object", path, name);
    for (int c = 0; c < td->n_labels; c++) {
        const char *w = obj_str(elw, td->labels[c], NULL);
        if (!w || !*w)
            return QA_ERR(e, "%s: task '%s': english_label_words has no (non-empty) word for label '%s'", path,
                          name, td->labels[c]);
        td->label_words[c] = qa_strdup(w);
    }
    const int tgt_prefix = s->prompt != QA_EVAL_PROMPT_ENGLISH_LABELS; /* target- and irrelevant-labels */
    const char *pre_key = tgt_prefix ? "prefix_target_labels" : "prefix_english_labels";
    json_t *pre = json_object_get(tj, pre_key), *qry = json_object_get(tj, "query"),
           *tlw = json_object_get(tj, "target_label_words");
    if (!json_is_object(pre) && tgt_prefix)
        return QA_ERR(e, "%s: task '%s' has no \"prefix_target_labels\": the %s prompt exists for the "
                         "tasks that define it (emotion in the paper's data); select those tasks or use the "
                         "english-labels prompt and scoring", path, name, qa_eval_prompt_variant_name(s->prompt));
    if (!json_is_object(pre))
        return QA_ERR(e, "%s: task '%s': key \"%s\" is missing or not an object", path, name, pre_key);
    if (!json_is_object(qry)) return QA_ERR(e, "%s: task '%s': key \"query\" is missing or not an object", path, name);
    if (!json_is_object(tlw))
        return QA_ERR(e, "%s: task '%s': key \"target_label_words\" is missing or not an object", path, name);
    const int nl = s->n_langs;
    td->prefix = qa_calloc(nl, sizeof *td->prefix);
    td->prefix_len = qa_calloc(nl, sizeof *td->prefix_len);
    td->query = qa_calloc(nl, sizeof *td->query);
    td->query_len = qa_calloc(nl, sizeof *td->query_len);
    td->target_words = qa_calloc((size_t)nl * td->n_labels, sizeof *td->target_words);
    for (int l = 0; l < nl; l++) {
        const char *L = s->langs[l];
        td->prefix[l] = obj_str(pre, L, &td->prefix_len[l]);
        if (!td->prefix[l])
            return QA_ERR(e, "%s: task '%s', language '%s': %s has no string for it", path, name, L, pre_key);
        td->query[l] = obj_str(qry, L, &td->query_len[l]);
        if (!td->query[l])
            return QA_ERR(e, "%s: task '%s', language '%s': query has no string for it", path, name, L);
        json_t *tw = json_object_get(tlw, L);
        if (!json_is_object(tw))
            return QA_ERR(e, "%s: task '%s', language '%s': target_label_words has no object for it", path, name, L);
        for (int c = 0; c < td->n_labels; c++) {
            const char *w = obj_str(tw, td->labels[c], NULL);
            if (!w)
                return QA_ERR(e, "%s: task '%s', language '%s': target_label_words has no word for label '%s'",
                              path, name, L, td->labels[c]);
            td->target_words[(size_t)l * td->n_labels + c] = w;
        }
    }
    return qa_eval_scoring_setup(s, td, path, e);
}

/* ---- test files --------------------------------------------------------------------------- */
static char *test_path(const qa_eval_suite *s, const qa_eval_taskdef *td, const char *lang) {
    const char *ph = strstr(td->test_file, "{lang}");
    size_t n = strlen(s->data_dir) + strlen(td->test_file) + strlen(lang) + 2;
    char *p = qa_malloc(n);
    snprintf(p, n, "%s/%.*s%s%s", s->data_dir, (int)(ph - td->test_file), td->test_file, lang, ph + 6);
    return p;
}

static int load_file(const qa_eval_suite *s, const qa_eval_taskdef *td, const char *lang, qa_eval_cellsrc *c,
                     qa_err *e) {
    c->path = test_path(s, td, lang);
    if (!qa_path_exists(c->path))
        return QA_ERR(e, "task '%s', language '%s': test file %s does not exist (is the language in the data "
                         "directory? run scripts/fetch-assets.sh)", td->name, lang, c->path);
    char *txt = NULL;
    size_t len = 0;
    if (qa_read_file(c->path, MAX_JSON_BYTES, &txt, &len, e))
        return qa_err_prefix(e, "task '%s', language '%s'", td->name, lang);
    json_error_t je;
    c->root = json_loadb(txt, len, JSON_REJECT_DUPLICATES, &je);
    free(txt);
    if (!c->root)
        return QA_ERR(e, "task '%s', language '%s': %s: invalid JSON at line %d column %d: %s", td->name, lang,
                      c->path, je.line, je.column, je.text);
    if (!json_is_array(c->root))
        return QA_ERR(e, "task '%s', language '%s': %s: expected a JSON array of records", td->name, lang, c->path);
    c->n_file = (int)json_array_size(c->root);
    if (c->n_file == 0) return QA_ERR(e, "task '%s', language '%s': %s has no records", td->name, lang, c->path);
    c->vals = qa_calloc((size_t)c->n_file * td->n_fields, sizeof *c->vals);
    c->lens = qa_calloc((size_t)c->n_file * td->n_fields, sizeof *c->lens);
    c->answer = qa_calloc(c->n_file, sizeof *c->answer);
    c->gold = qa_calloc(c->n_file, sizeof *c->gold);
    for (int i = 0; i < c->n_file; i++) {
        json_t *r = json_array_get(c->root, i);
        if (!json_is_object(r))
            return QA_ERR(e, "task '%s', language '%s': %s: record %d is not an object", td->name, lang, c->path, i);
        for (int f = 0; f <= td->n_fields; f++) {
            const char *key = f < td->n_fields ? td->fields[f] : "answer";
            json_t *v = json_object_get(r, key);
            if (!v)
                return QA_ERR(e, "task '%s', language '%s': %s: record %d has no field \"%s\"", td->name, lang,
                              c->path, i, key);
            if (!json_is_string(v))
                return QA_ERR(e, "task '%s', language '%s': %s: record %d: field \"%s\" is not a string", td->name,
                              lang, c->path, i, key);
            if (f < td->n_fields) {
                c->vals[(size_t)i * td->n_fields + f] = json_string_value(v);
                c->lens[(size_t)i * td->n_fields + f] = json_string_length(v);
            } else {
                c->answer[i] = json_string_value(v);
            }
        }
    }
    c->n = s->limit > 0 && s->limit < c->n_file ? s->limit : c->n_file;
    return 0;
}

static void cellsrc_free(qa_eval_cellsrc *c) {
    free(c->path);
    if (c->root) json_decref(c->root);
    free(c->vals);
    free(c->lens);
    free(c->answer);
    free(c->gold);
    memset(c, 0, sizeof *c);
}

/* gold classes of one cell; en = the English cell (corrected mode) */
static int set_gold(const qa_eval_suite *s, const qa_eval_taskdef *td, int l, qa_eval_cellsrc *c,
                    const qa_eval_cellsrc *en, const char *const *en_words, qa_err *e) {
    const int K = td->n_labels;
    if (s->gold == QA_EVAL_GOLD_PAPER) {
        for (int i = 0; i < c->n_file; i++) {
            c->gold[i] = -1;
            for (int k = 0; k < K && c->gold[i] < 0; k++)
                if (!strcmp(c->answer[i], td->target_words[(size_t)l * K + k])) c->gold[i] = k;
        }
        return 0;
    }
    if (en->n_file != c->n_file)
        return QA_ERR(e, "task '%s', language '%s': %s has %d records but the English file %s has %d; corrected "
                         "gold labels need index-parallel files (or use --gold paper)", td->name, s->langs[l],
                      c->path, c->n_file, en->path, en->n_file);
    for (int i = 0; i < c->n_file; i++) {
        c->gold[i] = -1;
        for (int k = 0; k < K && c->gold[i] < 0; k++)
            if (!strcmp(en->answer[i], en_words[k])) c->gold[i] = k;
        if (c->gold[i] < 0)
            return QA_ERR(e, "task '%s', language 'en': %s: record %d: answer \"%s\" is none of the English label "
                             "words of tasks.json", td->name, en->path, i, en->answer[i]);
    }
    return 0;
}

static int suite_load(qa_eval_suite *s, const qa_eval_selection *sel, qa_err *e) {
    char *path = qa_path_join(sel->data_dir, "tasks.json");
    char *txt = NULL;
    size_t len = 0;
    if (!qa_path_exists(path)) {
        QA_ERR(e, "%s does not exist (pass the paper-data directory; scripts/fetch-assets.sh unpacks it into "
                  "assets/paper-data)", path);
        free(path);
        return -1;
    }
    if (qa_read_file(path, MAX_JSON_BYTES, &txt, &len, e)) { free(path); return -1; }
    json_error_t je;
    s->tasks_json = json_loadb(txt, len, JSON_REJECT_DUPLICATES, &je);
    free(txt);
    int rc = -1;
    char item[128];
    if (!s->tasks_json) {
        QA_ERR(e, "%s: invalid JSON at line %d column %d: %s", path, je.line, je.column, je.text);
        goto out;
    }
    json_t *langs = json_object_get(s->tasks_json, "languages"), *tasks = json_object_get(s->tasks_json, "tasks");
    if (!json_is_array(langs) || !json_is_object(tasks)) {
        QA_ERR(e, "%s: needs \"languages\" (array) and \"tasks\" (object)", path);
        goto out;
    }
    /* languages */
    int nall = (int)json_array_size(langs);
    s->langs = qa_calloc(nall > 0 ? nall : 1, sizeof *s->langs);
    if (!sel->langs || !strcmp(sel->langs, "all")) {
        for (int i = 0; i < nall; i++) {
            json_t *v = json_array_get(langs, i);
            if (!json_is_string(v)) { QA_ERR(e, "%s: languages[%d] is not a string", path, i); goto out; }
            s->langs[s->n_langs++] = qa_strdup(json_string_value(v));
        }
    } else {
        const char *p = sel->langs;
        while (next_item(&p, item, sizeof item)) {
            int found = 0;
            for (int i = 0; i < nall; i++)
                if (json_is_string(json_array_get(langs, i)) && !strcmp(json_string_value(json_array_get(langs, i)), item))
                    found = 1;
            if (!found) {
                char list[512] = "";
                for (int i = 0; i < nall; i++)
                    if (json_is_string(json_array_get(langs, i))) {
                        strncat(list, json_string_value(json_array_get(langs, i)), sizeof list - strlen(list) - 2);
                        if (i + 1 < nall) strncat(list, ",", sizeof list - strlen(list) - 1);
                    }
                QA_ERR(e, "language '%s' is not in %s (languages: %s)", item, path, list);
                goto out;
            }
            int dup = 0;
            for (int i = 0; i < s->n_langs; i++) if (!strcmp(s->langs[i], item)) dup = 1;
            if (dup) continue;
            if (s->n_langs >= nall) break;
            s->langs[s->n_langs++] = qa_strdup(item);
        }
    }
    if (s->n_langs == 0) { QA_ERR(e, "no language selected"); goto out; }
    /* tasks */
    const char *names[64];
    int nt = 0;
    const char *key;
    json_t *val;
    json_object_foreach(tasks, key, val) if (nt < 64) names[nt++] = key;
    (void)val;
    qsort(names, nt, sizeof names[0], task_order_cmp);
    const char *chosen[64];
    int nc = 0;
    if (!sel->tasks || !strcmp(sel->tasks, "all")) {
        for (int i = 0; i < nt; i++) chosen[nc++] = names[i];
    } else {
        const char *p = sel->tasks;
        while (next_item(&p, item, sizeof item)) {
            int found = -1;
            for (int i = 0; i < nt; i++) if (!strcmp(names[i], item)) found = i;
            if (found < 0) {
                char list[512] = "";
                for (int i = 0; i < nt; i++) {
                    strncat(list, names[i], sizeof list - strlen(list) - 2);
                    if (i + 1 < nt) strncat(list, ",", sizeof list - strlen(list) - 1);
                }
                QA_ERR(e, "task '%s' is not in %s (tasks: %s)", item, path, list);
                goto out;
            }
            int dup = 0;
            for (int i = 0; i < nc; i++) if (chosen[i] == names[found]) dup = 1;
            if (!dup && nc < 64) chosen[nc++] = names[found];
        }
        qsort(chosen, nc, sizeof chosen[0], task_order_cmp);
    }
    if (nc == 0) { QA_ERR(e, "no task selected"); goto out; }
    s->n_tasks = nc;
    s->tasks = qa_calloc(nc, sizeof *s->tasks);
    s->cells = qa_calloc((size_t)nc * s->n_langs, sizeof *s->cells);
    for (int t = 0; t < nc; t++)
        if (load_taskdef(s, json_object_get(tasks, chosen[t]), chosen[t], path, &s->tasks[t], e)) goto out;
    /* test files */
    for (int t = 0; t < nc; t++) {
        qa_eval_taskdef *td = &s->tasks[t];
        qa_eval_cellsrc en = {0};
        const char *en_words[QA_EVAL_MAX_LABELS];
        int own_en = 0;
        const qa_eval_cellsrc *enp = NULL;
        for (int l = 0; l < s->n_langs; l++)
            if (load_file(s, td, s->langs[l], qa_eval_cellsrc_at(s, t, l), e)) goto out;
        if (s->gold == QA_EVAL_GOLD_CORRECTED) {
            /* the English words of the file: target_label_words.en, else english_label_words */
            json_t *tlw = json_object_get(json_object_get(tasks, chosen[t]), "target_label_words");
            json_t *enw = json_object_get(tlw, "en");
            for (int k = 0; k < td->n_labels; k++) {
                const char *w = json_is_object(enw) ? obj_str(enw, td->labels[k], NULL) : NULL;
                en_words[k] = w ? w : td->label_words[k];
            }
            for (int l = 0; l < s->n_langs; l++) if (!strcmp(s->langs[l], "en")) enp = qa_eval_cellsrc_at(s, t, l);
            if (!enp) {
                if (load_file(s, td, "en", &en, e)) {
                    qa_err_prefix(e, "corrected gold labels need the English file");
                    cellsrc_free(&en);
                    goto out;
                }
                own_en = 1;
                enp = &en;
            }
        }
        for (int l = 0; l < s->n_langs; l++)
            if (set_gold(s, td, l, qa_eval_cellsrc_at(s, t, l), enp, en_words, e)) {
                if (own_en) cellsrc_free(&en);
                goto out;
            }
        if (own_en) cellsrc_free(&en);
    }
    rc = 0;
out:
    free(path);
    return rc;
}

int qa_eval_suite_load(qa_eval_suite **out, const qa_eval_selection *sel, qa_err *e) {
    *out = NULL;
    if (!sel || !sel->data_dir) return QA_ERR(e, "evaluation: no data directory given");
    if (sel->limit < 0) return QA_ERR(e, "evaluation: limit %d must be >= 0", sel->limit);
    qa_eval_suite *s = qa_calloc(1, sizeof *s);
    s->data_dir = qa_strdup(sel->data_dir);
    s->gold = sel->gold;
    s->scoring = sel->scoring;
    s->prompt = sel->scoring == QA_EVAL_SCORING_TARGET       ? QA_EVAL_PROMPT_TARGET_LABELS
                : sel->scoring == QA_EVAL_SCORING_IRRELEVANT ? QA_EVAL_PROMPT_IRRELEVANT_LABELS
                                                             : sel->prompt;
    s->limit = sel->limit;
    if (suite_load(s, sel, e)) {
        qa_eval_suite_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void qa_eval_suite_free(qa_eval_suite *s) {
    if (!s) return;
    if (s->cells)
        for (int i = 0; i < s->n_tasks * s->n_langs; i++) cellsrc_free(&s->cells[i]);
    free(s->cells);
    for (int t = 0; t < s->n_tasks; t++) {
        qa_eval_taskdef *td = &s->tasks[t];
        qa_eval_scoring_free(s, td);
        free(td->name);
        free(td->test_file);
        for (int f = 0; f < td->n_fields; f++) free(td->fields[f]);
        for (int k = 0; k < td->n_labels; k++) { free(td->labels[k]); free(td->label_words[k]); }
        free(td->prefix);
        free(td->prefix_len);
        free(td->query);
        free(td->query_len);
        free(td->target_words);
    }
    free(s->tasks);
    for (int l = 0; l < s->n_langs; l++) free(s->langs[l]);
    free(s->langs);
    if (s->tasks_json) json_decref(s->tasks_json);
    free(s->data_dir);
    free(s);
}

/* ---- accessors ---------------------------------------------------------------------------- */
int qa_eval_n_tasks(const qa_eval_suite *s) { return s->n_tasks; }
const char *qa_eval_task_name(const qa_eval_suite *s, int t) { return s->tasks[t].name; }
int qa_eval_task_n_labels(const qa_eval_suite *s, int t) { return s->tasks[t].n_labels; }
const char *qa_eval_task_label(const qa_eval_suite *s, int t, int k) { return s->tasks[t].labels[k]; }
const char *qa_eval_task_label_word(const qa_eval_suite *s, int t, int k) { return s->tasks[t].label_words[k]; }
int qa_eval_n_langs(const qa_eval_suite *s) { return s->n_langs; }
const char *qa_eval_lang(const qa_eval_suite *s, int l) { return s->langs[l]; }
int qa_eval_n_items(const qa_eval_suite *s, int t, int l) { return qa_eval_cellsrc_at(s, t, l)->n; }
const char *qa_eval_prefix(const qa_eval_suite *s, int t, int l) { return s->tasks[t].prefix[l]; }
qa_eval_prompt_variant qa_eval_prompt_variant_of(const qa_eval_suite *s) { return s->prompt; }
qa_eval_gold qa_eval_gold_of(const qa_eval_suite *s) { return s->gold; }
int qa_eval_item_gold(const qa_eval_suite *s, int t, int l, int i) { return qa_eval_cellsrc_at(s, t, l)->gold[i]; }
const char *qa_eval_item_gold_text(const qa_eval_suite *s, int t, int l, int i) {
    return qa_eval_cellsrc_at(s, t, l)->answer[i];
}
const char *qa_eval_task_target_word(const qa_eval_suite *s, int t, int l, int label) {
    return s->tasks[t].target_words[(size_t)l * s->tasks[t].n_labels + label];
}

/* ---- prompts ------------------------------------------------------------------------------ */
/* Fill the query template: "{field}" for a field of the task is replaced by the record's value, every
 * other byte (other braces included) is copied. out NULL: only count. */
static size_t fill_query(const qa_eval_taskdef *td, const qa_eval_cellsrc *c, int l, int i, char *out) {
    const char *q = td->query[l];
    size_t n = td->query_len[l], k = 0;
    for (size_t p = 0; p < n;) {
        if (q[p] == '{') {
            int hit = -1;
            size_t fl = 0;
            for (int f = 0; f < td->n_fields && hit < 0; f++) {
                fl = strlen(td->fields[f]);
                if (p + fl + 1 < n && !memcmp(q + p + 1, td->fields[f], fl) && q[p + 1 + fl] == '}') hit = f;
            }
            if (hit >= 0) {
                size_t vl = c->lens[(size_t)i * td->n_fields + hit];
                if (out) memcpy(out + k, c->vals[(size_t)i * td->n_fields + hit], vl);
                k += vl;
                p += fl + 2;
                continue;
            }
        }
        if (out) out[k] = q[p];
        k++;
        p++;
    }
    return k;
}

char *qa_eval_prompt(const qa_eval_suite *s, int t, int l, int i, size_t *len) {
    const qa_eval_taskdef *td = &s->tasks[t];
    const qa_eval_cellsrc *c = qa_eval_cellsrc_at(s, t, l);
    size_t pl = td->prefix_len[l], ql = fill_query(td, c, l, i, NULL);
    char *p = qa_malloc(pl + ql + 1);
    memcpy(p, td->prefix[l], pl);
    fill_query(td, c, l, i, p + pl);
    p[pl + ql] = 0;
    if (len) *len = pl + ql;
    return p;
}

int qa_eval_dump_prompts(const qa_eval_suite *s, const char *path, qa_err *e) {
    size_t cap = 1 << 20, n = 0;
    char *buf = qa_malloc(cap);
    for (int t = 0; t < s->n_tasks; t++)
        for (int l = 0; l < s->n_langs; l++)
            for (int i = 0; i < qa_eval_n_items(s, t, l); i++) {
                size_t len;
                char *p = qa_eval_prompt(s, t, l, i, &len);
                json_t *js = json_stringn(p, len);
                free(p);
                char *line = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
                json_decref(js);
                if (!line) {
                    free(buf);
                    return QA_ERR(e, "task '%s', language '%s', record %d: the prompt is not valid UTF-8",
                                  s->tasks[t].name, s->langs[l], i);
                }
                size_t ll = strlen(line);
                while (n + ll + 2 > cap) buf = qa_realloc(buf, cap *= 2);
                memcpy(buf + n, line, ll);
                n += ll;
                buf[n++] = '\n';
                free(line);
            }
    int rc = qa_write_file_atomic(path, buf, n, e);
    free(buf);
    return rc;
}
