/* test_eval_scoring.c — the scoring modes of eval/scoring.c against hand-checked values:
 *   prompts    the control's and the target-labels prompts byte for byte (strings copied from the paper's
 *              emotion_eval_2shot_irrelative.py / emotion_eval_2shot.py), every language's structure
 *   words      the scored words, prediction words and shared-prefix suffix of every language and mode
 *              (Thai alone is scored in two steps), the token ids appended for Thai (ids of
 *              tokenizer("เชิง") from Hugging Face), the control's label sets without the Qwen rule
 *   correct    the correctness rule of each mode on hand-made records (startswith vs equality)
 *   cli        qalign eval --scoring: results say the mode, pred_word, usage errors, refusals
 * usage: test_eval_scoring DATA_DIR TOKENIZER_DIR MISTRAL_MODEL QALIGN TMP_DIR [part] */
#include "testutil.h"
#include "eval/eval.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *DATA, *TOKDIR, *MISTRAL, *TMP;
static char QALIGN[2048];

static char *record(const char *lang, int index) {
    char path[2048];
    snprintf(path, sizeof path, "%s/ap_emotion/emotion_%s500_test.json", DATA, lang);
    json_error_t je;
    json_t *a = json_load_file(path, 0, &je);
    const char *v = a ? json_string_value(json_object_get(json_array_get(a, index), "input")) : NULL;
    char *r = qa_strdup(v ? v : "");
    json_decref(a);
    return r;
}

static qa_eval_suite *load(const char *data, const char *langs, qa_eval_scoring m, qa_eval_gold g) {
    qa_err e = {0};
    qa_eval_suite *s = NULL;
    qa_eval_selection sel = {.data_dir = data, .tasks = "emotion", .langs = langs, .gold = g, .scoring = m};
    QT_CHECK(qa_eval_suite_load(&s, &sel, &e) == 0, "suite (%s): %s", qa_eval_scoring_name(m), e.msg);
    return s;
}

static int lang_idx(const qa_eval_suite *s, const char *name) {
    for (int l = 0; l < qa_eval_n_langs(s); l++) if (!strcmp(qa_eval_lang(s, l), name)) return l;
    return -1;
}

/* ---- prompts ---------------------------------------------------------------------------------- */
static void check_prompt(const qa_eval_suite *s, const char *lang, const char *prefix, const char *field) {
    char *r0 = record(lang, 0);
    size_t n = strlen(prefix) + strlen(r0) + strlen(field) + 8;
    char *want = qa_malloc(n);
    snprintf(want, n, "%s\n%s\n%s: \"", prefix, r0, field);
    size_t len;
    char *got = qa_eval_prompt(s, 0, lang_idx(s, lang), 0, &len);
    QT_CHECK(!strcmp(got, want) && len == strlen(want), "%s prompt of %s item 0 byte-exact",
             qa_eval_prompt_variant_name(qa_eval_prompt_variant_of(s)), lang);
    free(got);
    free(want);
    free(r0);
}

static void test_prompts(void) {
    qa_eval_suite *s = load(DATA, "all", QA_EVAL_SCORING_IRRELEVANT, QA_EVAL_GOLD_PAPER);
    if (!s) return;
    QT_CHECK(qa_eval_prompt_variant_of(s) == QA_EVAL_PROMPT_IRRELEVANT_LABELS, "the control sets its prompt");
    /* prompt_prefix of emotion_eval_2shot_irrelative.py (en keeps the 13 spaces after the first label) */
    check_prompt(s, "en",
                 "It starts off a bit slow, but once the product placement jokes start it takes off.\n"
                 "Emotion: \"ox\"             \n"
                 "I've read this book with much expectation, it was very boring all through out the book\n"
                 "Emotion: \"horse\"",
                 "Emotion");
    check_prompt(s, "zh", "一开始有点慢，但一旦植入式笑话开始，它就会起飞。\n情感: \"ox\"\n"
                          "我带着很大的期待读了这本书，整本书都很无聊\n情感: \"horse\"", "情感");
    check_prompt(s, "th", "มันเริ่มต้นช้านิดหน่อย แต่เมื่อเรื่องตลกเกี่ยวกับการจัดวางผลิตภัณฑ์เริ่มต้นขึ้น\n"
                          "อารมณ์: \"ox\"\n"
                          "ฉันอ่านหนังสือเล่มนี้ด้วยความคาดหวังมาก มันน่าเบื่อมากตลอดทั้งเล่ม\n"
                          "อารมณ์: \"horse\"", "อารมณ์");
    check_prompt(s, "fr", "Cela commence un peu lentement, mais une fois que les blagues sur le placement de produit "
                          "commencent, cela décolle.\nÉmotion: \"ox\"\nJ'ai lu ce livre avec beaucoup d'attente, "
                          "c'était très ennuyeux tout au long du livre\nÉmotion: \"horse\"", "Émotion");
    /* every language: records 99 and 20, then "<field>: "ox"" and "<field>: "horse"" (no label word left) */
    int ok = 0;
    for (int l = 0; l < qa_eval_n_langs(s); l++) {
        const char *L = qa_eval_lang(s, l), *p = qa_eval_prefix(s, 0, l);
        char *r99 = record(L, 99), *r20 = record(L, 20);
        const char *a = strchr(p, '\n'), *b = a ? strchr(a + 1, '\n') : NULL, *c = b ? strchr(b + 1, '\n') : NULL;
        int good = a && b && c && (size_t)(a - p) == strlen(r99) && !strncmp(p, r99, strlen(r99)) &&
                   (size_t)(c - b - 1) == strlen(r20) && !strncmp(b + 1, r20, strlen(r20));
        const char *want2 = !strcmp(L, "en") ? ": \"ox\"             " : ": \"ox\"";
        good = good && (size_t)(b - a - 1) > strlen(want2) && !strncmp(b - strlen(want2), want2, strlen(want2));
        good = good && strlen(c) > 9 && !strcmp(c + strlen(c) - 9, ": \"horse\"");
        good = good && !strstr(p, qa_eval_task_target_word(s, 0, l, 0)) && !strstr(p, qa_eval_task_target_word(s, 0, l, 1));
        QT_CHECK(good, "control prefix of %s: records 99/20, demo labels ox/horse only", L);
        ok += good;
        free(r99);
        free(r20);
    }
    QT_CHECK(ok == 20, "control prefixes of all 20 languages (%d)", ok);
    qa_eval_suite_free(s);

    s = load(DATA, "th,en", QA_EVAL_SCORING_TARGET, QA_EVAL_GOLD_PAPER);
    if (!s) return;
    QT_CHECK(qa_eval_prompt_variant_of(s) == QA_EVAL_PROMPT_TARGET_LABELS, "target-labels scoring sets its prompt");
    check_prompt(s, "th", "มันเริ่มต้นช้านิดหน่อย แต่เมื่อเรื่องตลกเกี่ยวกับการจัดวางผลิตภัณฑ์เริ่มต้นขึ้น\n"
                          "อารมณ์: \"เชิงบวก\"\n"
                          "ฉันอ่านหนังสือเล่มนี้ด้วยความคาดหวังมาก มันน่าเบื่อมากตลอดทั้งเล่ม\n"
                          "อารมณ์: \"เชิงลบ\"", "อารมณ์");
    check_prompt(s, "en",
                 "It starts off a bit slow, but once the product placement jokes start it takes off.\n"
                 "Emotion: \"positive\"             \n"
                 "I've read this book with much expectation, it was very boring all through out the book\n"
                 "Emotion: \"negative\"",
                 "Emotion");
    qa_eval_suite_free(s);
}

/* ---- scored words, suffix, tokens ------------------------------------------------------------- */
static int same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

static void check_th_tokens(const qa_eval_suite *s, const char *tokfile, const int32_t *tail, size_t nt) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", TOKDIR, tokfile);
    qa_err e = {0};
    qa_tokenizer *tok = NULL;
    if (qa_tok_load(&tok, path, &e)) { QT_CHECK(0, "tokenizer %s: %s", path, e.msg); return; }
    for (int l = 0; l < qa_eval_n_langs(s); l++) {
        size_t plen, np = 0, ni = 0;
        int32_t *pid = NULL, *ids = NULL;
        char *p = qa_eval_prompt(s, 0, l, 1, &plen);
        int rc = qa_tok_encode(tok, p, plen, 1, &pid, &np, &e) || qa_eval_item_tokens(s, tok, 0, l, 1, &ids, &ni, &e);
        QT_CHECK(rc == 0, "%s: tokens: %s", tokfile, e.msg);
        const int th = !strcmp(qa_eval_lang(s, l), "th");
        if (!rc && th)
            QT_CHECK(ni == np + nt && same_ids(ids, np, pid, np) && same_ids(ids + np, nt, tail, nt),
                     "%s, th: the prompt's ids + tokenizer(\"เชิง\") ids (%zu + %zu tokens)", tokfile, np, ni - np);
        else if (!rc)
            QT_CHECK(same_ids(ids, ni, pid, np), "%s, %s: the prompt's ids only", tokfile, qa_eval_lang(s, l));
        free(p);
        free(pid);
        free(ids);
    }
    qa_tok_free(tok);
}

static void test_words(void) {
    qa_eval_suite *s = load(DATA, "all", QA_EVAL_SCORING_TARGET, QA_EVAL_GOLD_PAPER);
    if (!s) return;
    int others = 0;
    for (int l = 0; l < qa_eval_n_langs(s); l++) {
        const char *L = qa_eval_lang(s, l);
        if (!strcmp(L, "th")) {
            QT_CHECK(qa_eval_score_suffix(s, 0, l) && !strcmp(qa_eval_score_suffix(s, 0, l), "เชิง"),
                     "th: the shared prefix เชิง is appended");
            QT_CHECK(!strcmp(qa_eval_scored_word(s, 0, l, 0), "บวก") && !strcmp(qa_eval_scored_word(s, 0, l, 1), "ลบ"),
                     "th: บวก vs ลบ scored");
            QT_CHECK(!strcmp(qa_eval_pred_word(s, 0, l, 0), "เชิงบวก") && !strcmp(qa_eval_pred_word(s, 0, l, 1), "เชิงลบ"),
                     "th: predictions are the whole words");
        } else {
            others += !qa_eval_score_suffix(s, 0, l) &&
                      !strcmp(qa_eval_scored_word(s, 0, l, 0), qa_eval_task_target_word(s, 0, l, 0)) &&
                      !strcmp(qa_eval_scored_word(s, 0, l, 1), qa_eval_task_target_word(s, 0, l, 1));
        }
    }
    QT_CHECK(others == 19, "the 19 other languages score their whole target words in one step (%d)", others);
    int zh = lang_idx(s, "zh"), ja = lang_idx(s, "ja");
    QT_CHECK(!strcmp(qa_eval_scored_word(s, 0, zh, 0), "积极") && !strcmp(qa_eval_scored_word(s, 0, ja, 1), "ネガティブ"),
             "zh positive = 积极, ja negative = ネガティブ");
    QT_CHECK(qa_eval_label_token_flags(s) == 0, "target-labels keeps the Qwen first-token rule");
    /* tokenizer("เชิง")["input_ids"] (transformers): Mistral adds <s> and the dummy ▁, Qwen nothing */
    const int32_t mis[] = {1, 28705, 29301, 29851, 29568, 29285}, qw[] = {124095, 124736};
    check_th_tokens(s, "mistral-7b-v0.1.tokenizer.json", mis, 6);
    check_th_tokens(s, "qwen1_5-qwen2.tokenizer.json", qw, 2);
    qa_eval_suite_free(s);

    s = load(DATA, "all", QA_EVAL_SCORING_IRRELEVANT, QA_EVAL_GOLD_PAPER);
    if (!s) return;
    int ctl = 0;
    for (int l = 0; l < qa_eval_n_langs(s); l++)
        ctl += !qa_eval_score_suffix(s, 0, l) && !strcmp(qa_eval_scored_word(s, 0, l, 0), "ox") &&
               !strcmp(qa_eval_scored_word(s, 0, l, 1), "horse") && !strcmp(qa_eval_pred_word(s, 0, l, 0), "ox");
    QT_CHECK(ctl == 20, "the control scores ox / horse in all 20 languages (%d)", ctl);
    QT_CHECK(qa_eval_label_token_flags(s) == QA_EVAL_LT_NO_FIRST_TOKEN, "the control drops the Qwen first-token rule");
    qa_eval_suite_free(s);

    s = load(DATA, "en,zh", QA_EVAL_SCORING_ENGLISH, QA_EVAL_GOLD_PAPER);
    if (!s) return;
    QT_CHECK(!strcmp(qa_eval_scored_word(s, 0, 1, 0), "positive") && !strcmp(qa_eval_pred_word(s, 0, 1, 1), "negative") &&
             !qa_eval_score_suffix(s, 0, 1), "english-labels scores the English words in zh");
    qa_eval_suite_free(s);

    /* the first-token rule on and off: Qwen's 积极 has no vocab key of its own (byte-level keys), so its set is
     * the first ids of encoding 积 and 积极 (99263, 99666) with the rule and empty without it */
    char path[2048];
    snprintf(path, sizeof path, "%s/qwen1_5-qwen2.tokenizer.json", TOKDIR);
    qa_err e = {0};
    qa_tokenizer *tok = NULL;
    if (qa_tok_load(&tok, path, &e)) { QT_CHECK(0, "%s", e.msg); return; }
    int32_t *ids = NULL;
    int n = 0;
    QT_CHECK(qa_eval_label_tokens_opt(tok, "积极", 0, &ids, &n, &e) == 0 && n == 2 && ids[0] == 99263 && ids[1] == 99666,
             "积极 with the rule: [99263, 99666]");
    free(ids);
    QT_CHECK(qa_eval_label_tokens_opt(tok, "积极", QA_EVAL_LT_NO_FIRST_TOKEN, &ids, &n, &e) == 0 && n == 0,
             "积极 without the rule: empty (%d)", n);
    free(ids);
    QT_CHECK(qa_eval_label_tokens_opt(tok, "ox", QA_EVAL_LT_NO_FIRST_TOKEN, &ids, &n, &e) == 0 && n == 2 &&
             ids[0] == qa_tok_token_to_id(tok, "o") && ids[1] == qa_tok_token_to_id(tok, "ox"),
             "ox without the rule: the vocab keys o and ox");
    free(ids);
    qa_tok_free(tok);
}

/* ---- correctness rules ----------------------------------------------------------------------- */
/* a data dir with the emotion en file replaced by hand-made records: gold strings "positive", "posit"
 * (a prefix of positive), "negative", "nega" */
static void make_data(const char *dir) {
    char cmd[8192], out[4096];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s/ap_emotion && cp %s/tasks.json %s/", dir, dir, DATA, dir);
    QT_CHECK(qt_run(cmd, out, sizeof out) == 0, "copy data: %s", out);
    const char *recs = "[{\"input\": \"great\", \"answer\": \"positive\"}, {\"input\": \"fine\", \"answer\": \"posit\"},"
                       " {\"input\": \"awful\", \"answer\": \"negative\"}, {\"input\": \"bad\", \"answer\": \"nega\"}]";
    char path[4096];
    snprintf(path, sizeof path, "%s/ap_emotion/emotion_en500_test.json", dir);
    qa_err e = {0};
    QT_CHECK(qa_write_file_atomic(path, recs, strlen(recs), &e) == 0, "write %s: %s", path, e.msg);
}

static void test_correct(void) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/scoring_data", TMP);
    make_data(dir);
    /* item, prediction (0 positive, 1 negative), correct under target-labels / english-labels / control */
    static const int cases[][5] = {
        {0, 0, 1, 1, 1}, {0, 1, 0, 0, 0}, /* gold "positive" */
        {1, 0, 1, 0, 0}, {1, 1, 0, 0, 0}, /* gold "posit": "positive".startswith("posit") only in target-labels */
        {2, 1, 1, 1, 1}, {2, 0, 0, 0, 0}, /* gold "negative" */
        {3, 1, 1, 0, 0}, {3, 0, 0, 0, 0}, /* gold "nega" */
    };
    const qa_eval_scoring modes[3] = {QA_EVAL_SCORING_TARGET, QA_EVAL_SCORING_ENGLISH, QA_EVAL_SCORING_IRRELEVANT};
    for (int m = 0; m < 3; m++) {
        qa_eval_suite *s = load(dir, "en", modes[m], QA_EVAL_GOLD_PAPER);
        if (!s) continue;
        int ok = 0;
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            ok += qa_eval_item_correct(s, 0, 0, cases[c][0], cases[c][1]) == cases[c][2 + m];
        QT_CHECK(ok == 8, "%s, paper gold: the script's correctness on 8 hand-made cases (%d)",
                 qa_eval_scoring_name(modes[m]), ok);
        qa_eval_suite_free(s);
    }
    /* corrected gold needs every English gold string to be a label word: "posit" is refused */
    qa_err e = {0};
    qa_eval_suite *s = NULL;
    qa_eval_selection sel = {.data_dir = dir, .tasks = "emotion", .langs = "en", .gold = QA_EVAL_GOLD_CORRECTED,
                             .scoring = QA_EVAL_SCORING_TARGET};
    QT_CHECK(qa_eval_suite_load(&s, &sel, &e) != 0 && strstr(e.msg, "posit"), "corrected gold refuses \"posit\": %s",
             e.msg);
    qa_eval_suite_free(s);
    /* the control needs the demo label words in prefix_target_labels */
    char path[4096];
    snprintf(path, sizeof path, "%s/tasks.json", dir);
    json_error_t je;
    json_t *t = json_load_file(path, 0, &je);
    json_object_set_new(json_object_get(json_object_get(json_object_get(json_object_get(t, "tasks"), "emotion"),
                                                        "target_label_words"), "en"),
                        "negative", json_string("adverse"));
    json_dump_file(t, path, JSON_INDENT(1));
    json_decref(t);
    sel.gold = QA_EVAL_GOLD_PAPER;
    sel.scoring = QA_EVAL_SCORING_IRRELEVANT;
    s = NULL;
    QT_CHECK(qa_eval_suite_load(&s, &sel, &e) != 0 && strstr(e.msg, "adverse") && strstr(e.msg, "tasks.json") &&
             strstr(e.msg, "horse"), "control without the demo label in the prefix: %s", e.msg);
    qa_eval_suite_free(s);
}

/* ---- the command line ---------------------------------------------------------------------------- */
static void test_cli(void) {
    char cmd[8192], out[65536], dir[2048], path[4096];
    for (int m = 0; m < 3; m++) {
        const char *mode = qa_eval_scoring_name((qa_eval_scoring)m);
        snprintf(dir, sizeof dir, "%s/scoring_cli_%s", TMP, mode);
        snprintf(cmd, sizeof cmd, "OPENBLAS_NUM_THREADS=1 %s eval --model %s --data %s --tasks emotion --langs en,th "
                 "--limit 2 --gold paper --scoring %s --out %s 2>&1", QALIGN, MISTRAL, DATA, mode, dir);
        int rc = qt_run(cmd, out, sizeof out);
        QT_CHECK(rc == 0, "eval --scoring %s exits 0: %s", mode, out);
        snprintf(path, sizeof path, "%s/results.json", dir);
        json_error_t je;
        json_t *j = json_load_file(path, 0, &je);
        json_t *proto = json_object_get(j, "protocol");
        QT_CHECK(j && !strcmp(json_string_value(json_object_get(j, "scoring")), mode) &&
                 !strcmp(json_string_value(json_object_get(proto, "scoring")), mode) &&
                 !strcmp(json_string_value(json_object_get(proto, "name")), qa_eval_scoring_protocol((qa_eval_scoring)m)),
                 "results.json says scoring %s", mode);
        json_decref(j);
        snprintf(path, sizeof path, "%s/results.md", dir);
        char *md = NULL;
        size_t len;
        qa_err e = {0};
        QT_CHECK(qa_read_file(path, 1 << 20, &md, &len, &e) == 0 && strstr(md, mode) &&
                 strstr(md, qa_eval_scoring_protocol((qa_eval_scoring)m)), "results.md names %s and its protocol", mode);
        free(md);
        snprintf(path, sizeof path, "%s/predictions.jsonl", dir);
        char *txt = NULL;
        int lines = 0, words = 0;
        if (qa_read_file(path, 1 << 20, &txt, &len, &e) == 0)
            for (char *p = txt; *p;) {
                char *nl = strchr(p, '\n');
                if (!nl) break;
                json_t *x = json_loadb(p, (size_t)(nl - p), 0, &je);
                const char *w = json_string_value(json_object_get(x, "pred_word"));
                const char *lang = json_string_value(json_object_get(x, "lang"));
                const int pos = !strcmp(json_string_value(json_object_get(x, "pred")), "positive");
                const char *want = m == QA_EVAL_SCORING_IRRELEVANT ? (pos ? "ox" : "horse")
                                   : m == QA_EVAL_SCORING_TARGET && !strcmp(lang, "th") ? (pos ? "เชิงบวก" : "เชิงลบ")
                                   : pos ? "positive" : "negative";
                words += w && !strcmp(w, want);
                lines++;
                json_decref(x);
                p = nl + 1;
            }
        free(txt);
        QT_CHECK(lines == 4 && words == 4, "%s: 4 predictions with the mode's pred_word (%d, %d)", mode, lines, words);
    }
    char a[2048], b[2048];
    snprintf(a, sizeof a, "%s/scoring_cli_english-labels", TMP);
    snprintf(b, sizeof b, "%s/scoring_cli_target-labels", TMP);
    snprintf(cmd, sizeof cmd, "%s eval-compare %s %s 2>&1", QALIGN, a, b);
    int rc = qt_run(cmd, out, sizeof out);
    QT_CHECK(rc != 0 && strstr(out, "scoring"), "eval-compare refuses different scoring modes: %s", out);
    snprintf(cmd, sizeof cmd, "%s eval --model %s --scoring target-labels --prompt english-labels --out %s/x 2>&1",
             QALIGN, MISTRAL, TMP);
    rc = qt_run(cmd, out, sizeof out);
    QT_CHECK(rc == 2 && strstr(out, "--prompt"), "--scoring target-labels with --prompt english-labels: usage error: %s",
             out);
    snprintf(cmd, sizeof cmd, "%s eval --model %s --scoring target --out %s/x 2>&1", QALIGN, MISTRAL, TMP);
    rc = qt_run(cmd, out, sizeof out);
    QT_CHECK(rc == 2 && strstr(out, "irrelevant-labels"), "unknown scoring mode: usage error listing the modes: %s", out);
    snprintf(cmd, sizeof cmd, "%s eval --model %s --data %s --tasks snli --langs en --limit 1 --scoring irrelevant-labels "
             "--out %s/x 2>&1", QALIGN, MISTRAL, DATA, TMP);
    rc = qt_run(cmd, out, sizeof out);
    QT_CHECK(rc == 1 && strstr(out, "snli") && strstr(out, "prefix_target_labels"),
             "the control for SNLI is refused naming the task and the key: %s", out);
    snprintf(cmd, sizeof cmd, "%s eval --help", QALIGN);
    rc = qt_run(cmd, out, sizeof out);
    QT_CHECK(rc == 0 && strstr(out, "--scoring MODE"), "eval --help lists --scoring");
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: test_eval_scoring DATA_DIR TOKENIZER_DIR MISTRAL_MODEL QALIGN TMP_DIR [part]\n");
        return 2;
    }
    DATA = argv[1];
    TOKDIR = argv[2];
    MISTRAL = argv[3];
    snprintf(QALIGN, sizeof QALIGN, "ASAN_OPTIONS=detect_leaks=0 %s", argv[4]);
    TMP = argv[5];
    const char *part = argc > 6 ? argv[6] : "all";
    int all = !strcmp(part, "all");
    if (all || !strcmp(part, "prompts")) test_prompts();
    if (all || !strcmp(part, "words")) test_words();
    if (all || !strcmp(part, "correct")) test_correct();
    if (all || !strcmp(part, "cli")) test_cli();
    return qt_finish();
}
