/* test_eval.c — eval/: prompts against hand-checked strings, gold modes and the paper's defects,
 * batched vs one-by-one vs uncached evaluation, results files and the CLI, bad input.
 *
 * usage: test_eval DATA_DIR TOKENIZER_DIR MISTRAL_MODEL QWEN_MODEL QALIGN TMP_DIR [part]
 *   part: prompts | gold | run | adapter | cli | badinput | all (default)
 * The two models are tiny random ones (qalign init-model) with the real tokenizers. */
#include "testutil.h"
#include "eval/eval.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "io/checkpoint.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *DATA, *TOKDIR, *MISTRAL, *QWEN, *TMP;
/* the qalign command; Open MPI keeps allocations until exit (unsymbolizable "leaks" under ASan) */
static char QALIGN[2048];

/* a record's field straight from the file (independent of eval/suite.c) */
static char *field(const char *rel, int index, const char *key) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", DATA, rel);
    json_error_t je;
    json_t *a = json_load_file(path, 0, &je);
    if (!a) return NULL;
    const char *v = json_string_value(json_object_get(json_array_get(a, index), key));
    char *r = v ? qa_strdup(v) : NULL;
    json_decref(a);
    return r;
}

static char *cat(const char *a, const char *b, const char *c, const char *d, const char *e2, const char *f) {
    const char *p[6] = {a, b, c, d, e2, f};
    size_t n = 1;
    for (int i = 0; i < 6; i++) if (p[i]) n += strlen(p[i]);
    char *s = qa_malloc(n);
    s[0] = 0;
    for (int i = 0; i < 6; i++) if (p[i]) strcat(s, p[i]);
    return s;
}

static int find_idx(const char *const *names, int n, const char *want) {
    for (int i = 0; i < n; i++) if (!strcmp(names[i], want)) return i;
    return -1;
}
static int task_idx(const qa_eval_suite *s, const char *name) {
    for (int t = 0; t < qa_eval_n_tasks(s); t++) if (!strcmp(qa_eval_task_name(s, t), name)) return t;
    return -1;
}
static int lang_idx(const qa_eval_suite *s, const char *name) {
    for (int l = 0; l < qa_eval_n_langs(s); l++) if (!strcmp(qa_eval_lang(s, l), name)) return l;
    return -1;
}

/* ---- prompts ------------------------------------------------------------------------------- */
static void test_prompts(void) {
    qa_err e = {0};
    qa_eval_suite *s = NULL;
    qa_eval_selection sel = {DATA, NULL, "en,zh,nl,de,hi", 0, QA_EVAL_GOLD_CORRECTED, QA_EVAL_PROMPT_ENGLISH_LABELS, QA_EVAL_SCORING_ENGLISH};
    if (qa_eval_suite_load(&s, &sel, &e)) { QT_CHECK(0, "suite: %s", e.msg); return; }
    const int te = task_idx(s, "emotion"), ts = task_idx(s, "snli"), tp = task_idx(s, "paws");
    const int en = lang_idx(s, "en"), zh = lang_idx(s, "zh"), nl = lang_idx(s, "nl"), de = lang_idx(s, "de");
    QT_CHECK(te == 0 && ts == 1 && tp == 2, "task order emotion, snli, paws (%d %d %d)", te, ts, tp);
    QT_CHECK(qa_eval_n_langs(s) == 5 && en == 0 && zh == 1, "languages in selection order");

    /* emotion, en: line 2 of the prefix ends with 13 spaces */
    const char *sp13 = "             ";
    QT_CHECK(strlen(sp13) == 13, "13 spaces");
    char *pre = cat("It starts off a bit slow, but once the product placement jokes start it takes off.\n"
                    "Emotion: \"positive\"", sp13,
                    "\nI've read this book with much expectation, it was very boring all through out the book\n"
                    "Emotion: \"negative\"", NULL, NULL, NULL);
    char *in0 = field("ap_emotion/emotion_en500_test.json", 0, "input");
    QT_CHECK(in0 && !strncmp(in0, "My lovely Pat has one of the GREAT voices", 41), "emotion en item 0 is the Pat review");
    char *want = cat(pre, "\n", in0, "\nEmotion: \"", NULL, NULL);
    size_t len;
    char *got = qa_eval_prompt(s, te, en, 0, &len);
    QT_CHECK(!strcmp(got, want) && len == strlen(want), "emotion/en prompt 0 byte-exact");
    QT_CHECK(strstr(got, "\"positive\"             \nI've") != NULL, "the 13 trailing spaces are kept");
    free(got); free(want); free(in0); free(pre);

    /* SNLI, zh: demo 5 has full-width colons */
    const char *zh_pre =
        "前提: 孩子们对着镜头微笑并挥手\n假设: 有孩子在场\n答案: \"entailment\"\n"
        "前提: 一个人骑在马上跳过一架故障的飞机。\n假设: 一个人正在训练他的马参加比赛。\n答案: \"neutral\"\n"
        "前提: 两个金发女郎互相拥抱。\n假设: 女人们正在睡觉。\n答案: \"contradiction\"\n"
        "前提: 一对情侣手牵手走在街上。\n假设: 人们手牵着手行走。\n答案: \"entailment\"\n"
        "前提：骑自行车的人在十字路口等待。\n假设：骑自行车的人等待汽车通过。\n答案: \"neutral\"\n"
        "前提: 湿漉漉的棕色狗游向镜头。\n假设: 狗正在床上睡觉。\n答案: \"contradiction\"";
    QT_CHECK(!strcmp(qa_eval_prefix(s, ts, zh), zh_pre), "snli/zh prefix byte-exact (full-width colons of demo 5)");
    for (int i = 0; i < 3; i++) {
        char *p = field("snli/snli_zh600_test.json", i, "premise"), *h = field("snli/snli_zh600_test.json", i, "hypothesis");
        want = cat(zh_pre, "\n前提: ", p, "\n假设: ", h, "\n答案: \"");
        got = qa_eval_prompt(s, ts, zh, i, &len);
        QT_CHECK(p && h && !strcmp(got, want), "snli/zh prompt %d byte-exact", i);
        free(got); free(want); free(p); free(h);
    }
    QT_CHECK(strstr(qa_eval_prefix(s, ts, nl), "\nLocatie: ") != NULL, "snli/nl demo 5 starts with Locatie:");

    /* PAWS, de and en */
    {
        char *a = field("paws/paws_de500_test.json", 7, "sentence1"), *b = field("paws/paws_de500_test.json", 7, "sentence2");
        char *tail = cat("\nSatz 1: ", a, "\nSatz 2: ", b, "\nAntwort: \"", NULL);
        got = qa_eval_prompt(s, tp, de, 7, &len);
        size_t tl = strlen(tail), pl = strlen(qa_eval_prefix(s, tp, de));
        QT_CHECK(len == pl + tl && !memcmp(got + pl, tail, tl) && !memcmp(got, qa_eval_prefix(s, tp, de), pl),
                 "paws/de prompt 7 = prefix + query");
        QT_CHECK(!strncmp(qa_eval_prefix(s, tp, de), "Satz 1: ", 8), "paws/de prefix starts with a German demo");
        free(got); free(tail); free(a); free(b);
        QT_CHECK(!strncmp(qa_eval_prefix(s, tp, en),
                          "Sentence 1: The 2005 North Indian Ocean cyclone season was weak to southern India despite "
                          "the destructive and deadly storms .\nSentence 2: The North Indian Ocean cyclone season in "
                          "2005 , despite the destructive and lethal storms , was weak to southern India .\nAnswer: "
                          "\"same\"\nSentence 1: ", 277), "paws/en prefix demo 1");
    }
    /* emotion demos are test items #99 and #20 of the same language (checklist §11), all languages */
    qa_eval_suite_free(s);
    sel.langs = "all";
    sel.tasks = "emotion";
    if (qa_eval_suite_load(&s, &sel, &e)) { QT_CHECK(0, "suite: %s", e.msg); return; }
    QT_CHECK(qa_eval_n_langs(s) == 20, "20 languages");
    int demos_ok = 0;
    for (int l = 0; l < qa_eval_n_langs(s); l++) {
        char rel[256];
        snprintf(rel, sizeof rel, "ap_emotion/emotion_%s500_test.json", qa_eval_lang(s, l));
        char *r99 = field(rel, 99, "input"), *r20 = field(rel, 20, "input");
        const char *p = qa_eval_prefix(s, 0, l);
        const char *nl1 = strchr(p, '\n'), *nl2 = nl1 ? strchr(nl1 + 1, '\n') : NULL, *nl3 = nl2 ? strchr(nl2 + 1, '\n') : NULL;
        if (r99 && r20 && nl3 && (size_t)(nl1 - p) == strlen(r99) && !strncmp(p, r99, strlen(r99)) &&
            (size_t)(nl3 - nl2 - 1) == strlen(r20) && !strncmp(nl2 + 1, r20, strlen(r20)))
            demos_ok++;
        else
            QT_CHECK(0, "emotion/%s: prefix lines 1 and 3 are records 99 and 20", qa_eval_lang(s, l));
        free(r99);
        free(r20);
    }
    QT_CHECK(demos_ok == 20, "emotion prefixes of all 20 languages hold records 99 and 20 (%d)", demos_ok);
    QT_CHECK(qa_eval_n_items(s, 0, 0) == 500, "500 emotion items");
    qa_eval_suite_free(s);
}

/* ---- gold modes (data only) ----------------------------------------------------------------- */
static void test_gold(void) {
    qa_err e = {0};
    qa_eval_suite *sc = NULL, *sp = NULL;
    qa_eval_selection sel = {DATA, "snli,paws", "en,ja,bn,no,de", 0, QA_EVAL_GOLD_CORRECTED,
                             QA_EVAL_PROMPT_ENGLISH_LABELS, QA_EVAL_SCORING_ENGLISH};
    QT_CHECK(qa_eval_suite_load(&sc, &sel, &e) == 0, "corrected suite: %s", e.msg);
    sel.gold = QA_EVAL_GOLD_PAPER;
    QT_CHECK(qa_eval_suite_load(&sp, &sel, &e) == 0, "paper suite: %s", e.msg);
    if (!sc || !sp) goto out;
    qa_eval_gold g;
    QT_CHECK(qa_eval_gold_parse("paper", &g, &e) == 0 && g == QA_EVAL_GOLD_PAPER, "parse paper");
    QT_CHECK(qa_eval_gold_parse("nope", &g, &e) != 0 && strstr(e.msg, "corrected or paper"), "bad gold mode: %s", e.msg);
out:
    qa_eval_suite_free(sc);
    qa_eval_suite_free(sp);
}

/* ---- running with a model ----------------------------------------------------------------- */
typedef struct loaded {
    qa_model m;
    qa_tokenizer *tok;
    int ok;
} loaded;

static int load(loaded *L, const char *dir) {
    qa_err e = {0};
    memset(L, 0, sizeof *L);
    if (qa_model_load(&L->m, dir, NULL, &e)) { QT_CHECK(0, "model %s: %s", dir, e.msg); return -1; }
    char *tp = qa_path_join(dir, "tokenizer.json");
    int rc = qa_tok_load(&L->tok, tp, &e);
    free(tp);
    if (rc) { QT_CHECK(0, "tokenizer: %s", e.msg); qa_model_free(&L->m); return -1; }
    L->ok = 1;
    return 0;
}
static void unload(loaded *L) {
    if (!L->ok) return;
    qa_tok_free(L->tok);
    qa_model_free(&L->m);
}

static int run(const qa_eval_suite *s, loaded *L, int rows, int cache, int full, qa_eval_results *r) {
    qa_err e = {0};
    qa_eval_run_opts o;
    qa_eval_run_opts_default(&o);
    o.batch_rows = rows;
    o.prefix_cache = cache;
    o.full_vocab = full;
    o.model_id = "tiny";
    int rc = qa_eval_run(s, &L->m, NULL, L->tok, NULL, &o, r, &e);
    QT_CHECK(rc == 0, "eval run (rows %d, cache %d, full %d): %s", rows, cache, full, e.msg);
    return rc;
}

/* same predictions; log masses within 1e-5 relative */
static void same_preds(const qa_eval_results *a, const qa_eval_results *b, const char *what) {
    int diff = 0;
    double worst = 0;
    for (int i = 0; i < a->n_items && i < b->n_items; i++) {
        const qa_eval_pred *x = &a->preds[i], *y = &b->preds[i];
        if (x->pred != y->pred || x->index != y->index || x->task != y->task || x->lang != y->lang) diff++;
        for (int k = 0; k < qa_eval_task_n_labels(a->suite, x->task); k++) {
            double d = fabs(x->log_mass[k] - y->log_mass[k]) / fmax(fabs(y->log_mass[k]), 1e-3);
            if (d > worst) worst = d;
        }
    }
    QT_CHECK(a->n_items == b->n_items && a->n_items > 0, "%s: %d vs %d items", what, a->n_items, b->n_items);
    QT_CHECK(diff == 0, "%s: %d predictions differ", what, diff);
    QT_CHECK(worst < 1e-5, "%s: label log-masses agree to %.2e relative", what, worst);
}

static void test_run_model(const char *dir, const char *langs) {
    loaded L;
    if (load(&L, dir)) return;
    qa_err e = {0};
    qa_eval_suite *s = NULL;
    qa_eval_selection sel = {DATA, NULL, langs, 5, QA_EVAL_GOLD_CORRECTED, QA_EVAL_PROMPT_ENGLISH_LABELS, QA_EVAL_SCORING_ENGLISH};
    if (qa_eval_suite_load(&s, &sel, &e)) { QT_CHECK(0, "suite: %s", e.msg); unload(&L); return; }
    qa_eval_results rb, r1, rn, rf;
    if (!run(s, &L, 16, 1, 0, &rb) && !run(s, &L, 1, 1, 0, &r1) && !run(s, &L, 7, 0, 0, &rn) &&
        !run(s, &L, 3, 1, 1, &rf)) {
        char what[256];
        snprintf(what, sizeof what, "%s: batched vs one by one", dir);
        same_preds(&rb, &r1, what);
        snprintf(what, sizeof what, "%s: prefix cache vs full prompts", dir);
        same_preds(&rb, &rn, what);
        snprintf(what, sizeof what, "%s: label-only vs full-vocabulary logits", dir);
        same_preds(&rb, &rf, what);
        /* the cache was used: most prompt tokens came from it; without it none */
        long cached = 0, tokens = 0, cached_off = 0;
        for (int i = 0; i < rb.n_items; i++) { cached += rb.preds[i].n_cached; tokens += rb.preds[i].n_tokens; }
        for (int i = 0; i < rn.n_items; i++) cached_off += rn.preds[i].n_cached;
        QT_CHECK(cached > tokens / 3 && cached_off == 0, "%s: %ld of %ld prompt tokens from the cache (off: %ld)", dir,
                 cached, tokens, cached_off);
        /* the cached part is a token prefix of each prompt: at least all but a few prefix tokens */
        int bad_lcp = 0;
        for (int k = 0; k < rb.n_cells; k++)
            if (rb.cells[k].mean_cached < rb.cells[k].prefix_tokens - 2) bad_lcp++;
        QT_CHECK(bad_lcp == 0, "%s: items reuse the prefix up to its last token or two (%d cells do not)", dir, bad_lcp);
        /* masses: full-vocab run has probabilities that sum to <= 1 and agree with the log masses */
        int bad_mass = 0;
        for (int i = 0; i < rf.n_items; i++) {
            double sum = 0;
            for (int k = 0; k < qa_eval_task_n_labels(s, rf.preds[i].task); k++) sum += rf.preds[i].mass[k];
            if (!(sum > 0 && sum <= 3.0 + 1e-9) || !isnan(rb.preds[i].mass[0])) bad_mass++;
        }
        QT_CHECK(bad_mass == 0, "%s: softmax masses only with full-vocab logits (%d bad)", dir, bad_mass);
        /* accounting */
        int n = 0, correct = 0;
        for (int k = 0; k < rb.n_cells; k++) { n += rb.cells[k].n; correct += rb.cells[k].correct; }
        int c2 = 0;
        for (int i = 0; i < rb.n_items; i++) c2 += rb.preds[i].correct;
        QT_CHECK(n == rb.n_items && n == 5 * rb.n_cells && correct == c2, "counts add up (%d items, %d correct)", n,
                 correct);
        QT_CHECK(rb.gold == QA_EVAL_GOLD_CORRECTED && rb.ties == 0, "gold mode recorded, no exact ties");
    }
    qa_eval_results_free(&rb);
    qa_eval_results_free(&r1);
    qa_eval_results_free(&rn);
    qa_eval_results_free(&rf);
    qa_eval_suite_free(s);
    unload(&L);
}

/* --gold paper: SNLI ja neutral and bn entailment items are never correct; no is scored swapped */
static void test_paper_gold(void) {
    loaded L;
    if (load(&L, MISTRAL)) return;
    qa_err e = {0};
    qa_eval_suite *sc = NULL, *sp = NULL;
    qa_eval_selection sel = {DATA, "snli", "en,ja,bn,no,de", 30, QA_EVAL_GOLD_CORRECTED, QA_EVAL_PROMPT_ENGLISH_LABELS, QA_EVAL_SCORING_ENGLISH};
    QT_CHECK(qa_eval_suite_load(&sc, &sel, &e) == 0, "corrected: %s", e.msg);
    sel.gold = QA_EVAL_GOLD_PAPER;
    QT_CHECK(qa_eval_suite_load(&sp, &sel, &e) == 0, "paper: %s", e.msg);
    qa_eval_results rc, rp;
    memset(&rc, 0, sizeof rc);
    memset(&rp, 0, sizeof rp);
    if (sc && sp && !run(sc, &L, 16, 1, 0, &rc) && !run(sp, &L, 16, 1, 0, &rp)) {
        const int ja = lang_idx(sp, "ja"), bn = lang_idx(sp, "bn"), no = lang_idx(sp, "no");
        int n_ja_neu = 0, n_bn_ent = 0, ja_neu_ok = 0, bn_ent_ok = 0, no_swapped = 0, no_items = 0, other_diff = 0;
        int pred_diff = 0, ja_neu_pred = 0;
        for (int i = 0; i < rp.n_items; i++) {
            const qa_eval_pred *p = &rp.preds[i], *c = &rc.preds[i];
            int en_gold = c->gold; /* corrected = English class */
            if (p->pred != c->pred) pred_diff++;
            if (p->lang == ja && en_gold == 1) {
                n_ja_neu++;
                ja_neu_ok += p->correct;
                ja_neu_pred += p->pred == 1;
                QT_CHECK(p->gold == -1 && !strcmp(p->gold_text, "中性"), "ja neutral gold is 中性, no label word");
            } else if (p->lang == bn && en_gold == 0) {
                n_bn_ent++;
                bn_ent_ok += p->correct;
                QT_CHECK(p->gold == -1, "bn entailment gold (%s) is no label word", p->gold_text);
            } else if (p->lang == no) {
                no_items++;
                int swapped = en_gold == 1 ? 2 : en_gold == 2 ? 1 : 0;
                no_swapped += p->gold == swapped;
                QT_CHECK(p->correct == (p->pred == swapped), "no item %d scored against the swapped gold", p->index);
            } else {
                if (p->correct != c->correct || p->gold != c->gold) other_diff++;
            }
        }
        QT_CHECK(n_ja_neu >= 5 && n_bn_ent >= 5, "the first 30 SNLI items hold neutral and entailment items (ja neutral %d, bn entailment %d)",
                 n_ja_neu, n_bn_ent);
        QT_CHECK(ja_neu_ok == 0 && bn_ent_ok == 0, "paper gold: ja neutral / bn entailment never correct (%d, %d)",
                 ja_neu_ok, bn_ent_ok);
        QT_CHECK(no_swapped == no_items && no_items == 30, "no: paper gold = swapped English class (%d of %d)",
                 no_swapped, no_items);
        QT_CHECK(other_diff == 0, "en, de and the remaining ja/bn items agree between the modes (%d differ)",
                 other_diff);
        QT_CHECK(pred_diff == 0, "the gold mode does not change predictions (%d differ)", pred_diff);
        QT_CHECK(rp.gold == QA_EVAL_GOLD_PAPER, "results record the paper gold mode");
        (void)ja_neu_pred;
    }
    qa_eval_results_free(&rc);
    qa_eval_results_free(&rp);
    qa_eval_suite_free(sc);
    qa_eval_suite_free(sp);
    unload(&L);
}

/* ---- adapters: PEFT directory, checkpoint file and run directory give the same evaluation ---- */
static void test_adapter(void) {
    loaded L;
    if (load(&L, MISTRAL)) return;
    qa_err e = {0};
    qa_lora l;
    QT_CHECK(qa_lora_init(&l, &L.m, QA_LORA_MASK_QV, 4, 8.0f, 0.0f, &e) == 0, "lora init: %s", e.msg);
    qa_lora_init_params(&l, 11);
    /* B = 0 after init: give B values so the adapter changes the outputs */
    uint64_t st = 99;
    for (int layer = 0; layer < l.n_layers; layer++)
        for (int mod = 0; mod < QA_LORA_N_MODULES; mod++) {
            qa_lora_mat *t = qa_lora_at(&l, layer, mod);
            if (!t->present) continue;
            float *b = qa_malloc(sizeof(float) * (size_t)t->out * l.r);
            for (int i = 0; i < t->out * l.r; i++) {
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                b[i] = (float)((int)(st >> 40) % 2001 - 1000) / 400.0f;
            }
            qa_lora_set(&l, layer, mod, 1, b);
            free(b);
        }
    char peft[2048], rundir[2048], ckfile[4096];
    snprintf(peft, sizeof peft, "%s/eval_adapter_peft", TMP);
    snprintf(rundir, sizeof rundir, "%s/eval_adapter_run", TMP);
    QT_CHECK(qa_lora_save_peft(&l, &L.m, peft, &e) == 0, "save peft: %s", e.msg);
    /* the same adapter as a training checkpoint (PEFT names under /lora) */
    int nt = 0;
    qa_ckpt_tensor tens[64];
    char names[64][160];
    for (int layer = 0; layer < l.n_layers; layer++)
        for (int mod = 0; mod < QA_LORA_N_MODULES; mod++) {
            qa_lora_mat *t = qa_lora_at(&l, layer, mod);
            if (!t->present) continue;
            for (int isB = 0; isB < 2 && nt < 64; isB++, nt++) {
                qa_lora_peft_name(names[nt], sizeof names[nt], layer, mod, isB);
                tens[nt] = (qa_ckpt_tensor){names[nt], QA_CKPT_F32, 2,
                                            {isB ? t->out : l.r, isB ? l.r : t->in}, isB ? t->B : t->A, NULL};
            }
        }
    const char *mods[2] = {"q_proj", "v_proj"};
    qa_ckpt_meta meta = {.step = 12, .lora_r = 4, .lora_alpha = 8.0, .target_modules = mods, .n_target_modules = 2,
                         .base_model = MISTRAL, .base_model_id = "tiny", .config_yaml = "", .qalign_version = "test",
                         .world_size = 1};
    qa_ckpt_state cs = {.lora = tens, .n_lora = (size_t)nt};
    char cmd[4200], out[4096];
    snprintf(cmd, sizeof cmd, "rm -rf %s", rundir);
    qt_run(cmd, out, sizeof out);
    QT_CHECK(qa_ckpt_save(rundir, &meta, &cs, NULL, ckfile, sizeof ckfile, &e) == 0, "save checkpoint: %s", e.msg);
    qa_eval_suite *s = NULL;
    qa_eval_selection sel = {DATA, "snli,emotion", "en,zh", 3, QA_EVAL_GOLD_CORRECTED, QA_EVAL_PROMPT_ENGLISH_LABELS, QA_EVAL_SCORING_ENGLISH};
    QT_CHECK(qa_eval_suite_load(&s, &sel, &e) == 0, "suite: %s", e.msg);
    const char *paths[3] = {peft, ckfile, rundir};
    qa_eval_results r[4];
    memset(r, 0, sizeof r);
    int ok = s != NULL;
    for (int i = 0; i < 3 && ok; i++) {
        qa_lora la;
        char id[1200];
        if (qa_eval_load_adapter(&la, &L.m, paths[i], id, sizeof id, &e)) {
            QT_CHECK(0, "load adapter %s: %s", paths[i], e.msg);
            ok = 0;
            break;
        }
        QT_CHECK(strstr(id, i == 0 ? "peft:" : "ckpt:") && (i == 0 || strstr(id, "step 12")), "adapter id: %s", id);
        qa_eval_run_opts o;
        qa_eval_run_opts_default(&o);
        o.adapter_id = id;
        QT_CHECK(qa_eval_run(s, &L.m, &la, L.tok, NULL, &o, &r[i], &e) == 0, "eval with %s: %s", paths[i], e.msg);
        QT_CHECK(!strcmp(r[i].adapter_id, id), "adapter id recorded");
        qa_lora_free(&la);
    }
    if (ok) {
        QT_CHECK(run(s, &L, 16, 1, 0, &r[3]) == 0, "base run");
        same_preds(&r[0], &r[1], "PEFT dir vs checkpoint file");
        same_preds(&r[0], &r[2], "PEFT dir vs run directory");
        double moved = 0;
        for (int i = 0; i < r[0].n_items; i++) moved = fmax(moved, fabs(r[0].preds[i].log_mass[0] - r[3].preds[i].log_mass[0]));
        QT_CHECK(moved > 1e-3, "the adapter changes the label masses (max change %.3g)", moved);
    }
    for (int i = 0; i < 4; i++) qa_eval_results_free(&r[i]);
    /* an adapter that does not fit: a checkpoint of rank 4 read for a model with other shapes is caught by
     * the shape check; here a run directory without checkpoints and a file that is no checkpoint */
    qa_lora lb;
    snprintf(cmd, sizeof cmd, "mkdir -p %s/eval_adapter_empty/checkpoints", TMP);
    qt_run(cmd, out, sizeof out);
    snprintf(peft, sizeof peft, "%s/eval_adapter_empty", TMP);
    QT_CHECK(qa_eval_load_adapter(&lb, &L.m, peft, NULL, 0, &e) != 0 && strstr(e.msg, "no checkpoint"),
             "empty run directory: %s", e.msg);
    snprintf(peft, sizeof peft, "%s/tasks.json", DATA);
    QT_CHECK(qa_eval_load_adapter(&lb, &L.m, peft, NULL, 0, &e) != 0 && strstr(e.msg, "tasks.json"),
             "not a checkpoint: %s", e.msg);
    qa_eval_suite_free(s);
    qa_lora_free(&l);
    unload(&L);
}

/* ---- the CLI: results files, dump-prompts ------------------------------------------------- */
static void test_cli(void) {
    char cmd[8192], out[65536], dir[2048], dump[2048];
    snprintf(dir, sizeof dir, "%s/eval_cli_out", TMP);
    snprintf(dump, sizeof dump, "%s/eval_cli_prompts.jsonl", TMP);
    snprintf(cmd, sizeof cmd,
             "OPENBLAS_NUM_THREADS=1 %s eval --model %s --data %s --tasks snli,emotion --langs en,zh,sw --limit 4 "
             "--gold paper --seed 3 --out %s --dump-prompts %s 2>&1",
             QALIGN, MISTRAL, DATA, dir, dump);
    int rc = qt_run(cmd, out, sizeof out);
    QT_CHECK(rc == 0, "qalign eval exits 0: %s", out);
    char path[4096];
    snprintf(path, sizeof path, "%s/results.json", dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    QT_CHECK(j != NULL, "results.json parses: %s", je.text);
    if (j) {
        QT_CHECK(!strcmp(json_string_value(json_object_get(j, "gold")), "paper"), "results.json gold = paper");
        QT_CHECK(json_integer_value(json_object_get(j, "seed")) == 3, "seed recorded");
        QT_CHECK(json_is_integer(json_object_get(j, "ties")), "tie count recorded");
        QT_CHECK(json_is_string(json_object_get(j, "precision")) && json_is_string(json_object_get(j, "model")),
                 "precision and model recorded");
        json_t *proto = json_object_get(j, "protocol");
        QT_CHECK(json_integer_value(json_object_get(proto, "version")) == QA_EVAL_PROTOCOL_VERSION, "protocol version");
        json_t *acc = json_object_get(json_object_get(j, "accuracy"), "snli");
        QT_CHECK(json_is_real(json_object_get(acc, "sw")), "accuracy.snli.sw present");
        QT_CHECK(json_integer_value(json_object_get(json_object_get(json_object_get(j, "n"), "emotion"), "zh")) == 4,
                 "n.emotion.zh = 4");
        QT_CHECK(json_is_real(json_object_get(json_object_get(j, "averages"), "all")), "averages.all");
        QT_CHECK(json_array_size(json_object_get(j, "tasks")) == 2 &&
                 !strcmp(json_string_value(json_array_get(json_object_get(j, "tasks"), 0)), "emotion"),
                 "tasks in tasks.json order");
        json_decref(j);
    }
    snprintf(path, sizeof path, "%s/predictions.jsonl", dir);
    char *txt = NULL;
    size_t len = 0;
    qa_err e = {0};
    int lines = 0, good = 0;
    if (qa_read_file(path, 1 << 26, &txt, &len, &e) == 0) {
        for (char *p = txt; p && *p;) {
            char *nl = strchr(p, '\n');
            if (!nl) break;
            json_t *x = json_loadb(p, (size_t)(nl - p), 0, &je);
            lines++;
            if (x && json_is_string(json_object_get(x, "pred")) && json_is_object(json_object_get(x, "log_mass")) &&
                json_is_integer(json_object_get(x, "index")) && json_object_get(x, "gold") &&
                json_is_string(json_object_get(x, "gold_text")))
                good++;
            if (lines == 1)
                QT_CHECK(x && !strcmp(json_string_value(json_object_get(x, "task")), "emotion") &&
                         !strcmp(json_string_value(json_object_get(x, "lang")), "en") &&
                         json_integer_value(json_object_get(x, "index")) == 0, "first prediction is emotion/en/0");
            json_decref(x);
            p = nl + 1;
        }
    }
    free(txt);
    QT_CHECK(lines == 24 && good == 24, "predictions.jsonl: %d lines, %d complete (want 24)", lines, good);
    snprintf(path, sizeof path, "%s/results.md", dir);
    txt = NULL;
    if (qa_read_file(path, 1 << 20, &txt, &len, &e) == 0)
        QT_CHECK(strstr(txt, "| task | en | zh | sw | Avg |") && strstr(txt, "| snli (6-shot) |") && strstr(txt, "paper"),
                 "results.md: languages as columns, gold mode named");
    else
        QT_CHECK(0, "results.md: %s", e.msg);
    free(txt);
    /* --dump-prompts: one JSON string per line, task, language, index order, equal to the prompts */
    qa_eval_suite *s = NULL;
    qa_eval_selection sel = {DATA, "snli,emotion", "en,zh,sw", 4, QA_EVAL_GOLD_PAPER, QA_EVAL_PROMPT_ENGLISH_LABELS, QA_EVAL_SCORING_ENGLISH};
    txt = NULL;
    if (qa_eval_suite_load(&s, &sel, &e) == 0 && qa_read_file(dump, 1 << 26, &txt, &len, &e) == 0) {
        int k = 0, same = 0;
        char *p = txt;
        for (int t = 0; t < qa_eval_n_tasks(s); t++)
            for (int l = 0; l < qa_eval_n_langs(s); l++)
                for (int i = 0; i < qa_eval_n_items(s, t, l); i++) {
                    char *nl = strchr(p, '\n');
                    if (!nl) break;
                    json_t *x = json_loadb(p, (size_t)(nl - p), JSON_DECODE_ANY, &je);
                    size_t pl;
                    char *want = qa_eval_prompt(s, t, l, i, &pl);
                    if (x && json_is_string(x) && json_string_length(x) == pl && !memcmp(json_string_value(x), want, pl))
                        same++;
                    free(want);
                    json_decref(x);
                    p = nl + 1;
                    k++;
                }
        QT_CHECK(k == 24 && same == 24 && *p == 0, "dump-prompts: %d of %d lines equal the prompts", same, k);
    } else {
        QT_CHECK(0, "dump-prompts: %s", e.msg);
    }
    free(txt);
    qa_eval_suite_free(s);
    /* model-free dump and --help */
    snprintf(cmd, sizeof cmd, "%s eval --data %s --tasks paws --langs de --limit 2 --dump-prompts %s.2 2>&1 && wc -l < %s.2",
             QALIGN, DATA, dump, dump);
    rc = qt_run(cmd, out, sizeof out);
    QT_CHECK(rc == 0 && atoi(out) == 2, "dump without a model: %s", out);
    snprintf(cmd, sizeof cmd, "%s eval --help 2>&1 && %s label-tokens --help 2>&1", QALIGN, QALIGN);
    rc = qt_run(cmd, out, sizeof out);
    QT_CHECK(rc == 0 && strstr(out, "--gold") && strstr(out, "--tokenizer"), "--help");
}

/* ---- bad input --------------------------------------------------------------------------- */
static void write_text(const char *path, const char *text) {
    qa_err e = {0};
    QT_CHECK(qa_write_file_atomic(path, text, strlen(text), &e) == 0, "write %s: %s", path, e.msg);
}

/* a copy of the data dir's tasks.json + the en/de SNLI and PAWS files, with edits */
static void make_data(const char *dir, const char *label_word) {
    char cmd[8192], out[4096];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s/snli %s/paws && cp %s/snli/snli_en600_test.json "
             "%s/snli/snli_de600_test.json %s/snli/ && cp %s/paws/paws_en500_test.json %s/paws/",
             dir, dir, dir, DATA, DATA, dir, DATA, dir);
    QT_CHECK(qt_run(cmd, out, sizeof out) == 0, "copy data: %s", out);
    char path[4096];
    snprintf(path, sizeof path, "%s/tasks.json", DATA);
    json_error_t je;
    json_t *t = json_load_file(path, 0, &je);
    if (label_word)
        json_object_set_new(json_object_get(json_object_get(json_object_get(t, "tasks"), "snli"), "english_label_words"),
                            "neutral", json_string(label_word));
    snprintf(path, sizeof path, "%s/tasks.json", dir);
    json_dump_file(t, path, JSON_INDENT(1));
    json_decref(t);
}

static void expect_load_error(const char *dir, const char *tasks, const char *langs, qa_eval_gold g, const char *what,
                              const char *must1, const char *must2, const char *must3) {
    qa_err e = {0};
    qa_eval_suite *s = NULL;
    qa_eval_selection sel = {dir, tasks, langs, 0, g, QA_EVAL_PROMPT_ENGLISH_LABELS, QA_EVAL_SCORING_ENGLISH};
    int rc = qa_eval_suite_load(&s, &sel, &e);
    QT_CHECK(rc != 0 && s == NULL, "%s: rejected", what);
    QT_CHECK((!must1 || strstr(e.msg, must1)) && (!must2 || strstr(e.msg, must2)) && (!must3 || strstr(e.msg, must3)),
             "%s: message names it: %s", what, e.msg);
    qa_eval_suite_free(s);
}

static void test_badinput(void) {
    char dir[2048], path[4096];
    snprintf(dir, sizeof dir, "%s/eval_bad_data", TMP);
    make_data(dir, NULL);
    /* a missing language file */
    expect_load_error(dir, "snli", "en,fr", QA_EVAL_GOLD_CORRECTED, "missing language file", "task 'snli'",
                      "language 'fr'", "snli_fr600_test.json");
    /* the English file is needed for corrected gold */
    expect_load_error(dir, "paws", "de", QA_EVAL_GOLD_CORRECTED, "missing English file (corrected gold)", "'paws'",
                      "paws_de500_test.json", NULL);
    /* unknown task / language, missing tasks.json */
    expect_load_error(dir, "snli,xnli", "en", QA_EVAL_GOLD_CORRECTED, "unknown task", "task 'xnli'", "emotion", NULL);
    expect_load_error(dir, "snli", "en,xx", QA_EVAL_GOLD_CORRECTED, "unknown language", "language 'xx'", "zh", NULL);
    expect_load_error("/nonexistent-qalign-data", NULL, NULL, QA_EVAL_GOLD_CORRECTED, "no tasks.json", "tasks.json",
                      "does not exist", NULL);
    /* a record missing a field, a field that is not a string, a broken file */
    snprintf(path, sizeof path, "%s/snli/snli_de600_test.json", dir);
    write_text(path, "[{\"premise\": \"a\", \"hypothesis\": \"b\", \"answer\": \"neutral\"},\n"
                     " {\"premise\": \"a\", \"answer\": \"neutral\"}]");
    expect_load_error(dir, "snli", "de", QA_EVAL_GOLD_PAPER, "record missing a field", "language 'de'", "record 1",
                      "\"hypothesis\"");
    write_text(path, "[{\"premise\": \"a\", \"hypothesis\": 7, \"answer\": \"neutral\"}]");
    expect_load_error(dir, "snli", "de", QA_EVAL_GOLD_PAPER, "field not a string", "record 0", "not a string", "'de'");
    write_text(path, "[{\"premise\": \"a\", \"hypothesis\": \"b\", \"answer\": \"neutral\"}]");
    expect_load_error(dir, "snli", "de,en", QA_EVAL_GOLD_CORRECTED, "parallel files of different lengths", "'de'",
                      "index-parallel", NULL);
    write_text(path, "[{\"premise\": \"a\", ");
    expect_load_error(dir, "snli", "de", QA_EVAL_GOLD_PAPER, "truncated JSON", "snli_de600_test.json", "invalid JSON",
                      "'de'");
    /* a label word with no token in the vocabulary ("\t\t" has none with the Mistral tokenizer) */
    make_data(dir, "\t\t");
    loaded L;
    if (load(&L, MISTRAL) == 0) {
        qa_err e = {0};
        qa_eval_suite *s = NULL;
        qa_eval_selection sel = {dir, "snli", "en", 2, QA_EVAL_GOLD_CORRECTED, QA_EVAL_PROMPT_ENGLISH_LABELS, QA_EVAL_SCORING_ENGLISH};
        QT_CHECK(qa_eval_suite_load(&s, &sel, &e) == 0, "suite with an odd label word loads: %s", e.msg);
        qa_eval_results r;
        qa_eval_run_opts o;
        qa_eval_run_opts_default(&o);
        int rc = s ? qa_eval_run(s, &L.m, NULL, L.tok, NULL, &o, &r, &e) : 0;
        QT_CHECK(rc != 0 && strstr(e.msg, "task 'snli'") && strstr(e.msg, "label 'neutral'") &&
                 strstr(e.msg, "no token"), "label word without a token: %s", e.msg);
        if (rc == 0) qa_eval_results_free(&r);
        qa_eval_suite_free(s);
        unload(&L);
    }
    /* the CLI: exit codes and messages */
    char cmd[16384], out[65536];
    snprintf(cmd, sizeof cmd, "%s eval --model %s --data %s --tasks snli --langs en --out %s/o 2>&1", QALIGN, MISTRAL,
             dir, dir);
    int rc = qt_run(cmd, out, sizeof out);
    QT_CHECK(rc == 1 && strstr(out, "no token") && strstr(out, "'snli'"), "CLI: label word without a token (rc %d): %s",
             rc, out);
    snprintf(cmd, sizeof cmd, "%s eval --model %s --data %s --tasks snli --langs en,fr --out %s/o 2>&1", QALIGN, MISTRAL,
             dir, dir);
    rc = qt_run(cmd, out, sizeof out);
    QT_CHECK(rc == 1 && strstr(out, "language 'fr'"), "CLI: missing language file (rc %d): %s", rc, out);
    snprintf(cmd, sizeof cmd, "%s eval --model %s --out %s/o --limit -3 2>&1; %s eval --model %s 2>&1; "
             "%s eval --model %s --out x --gold maybe 2>&1", QALIGN, MISTRAL, dir, QALIGN, MISTRAL, QALIGN, MISTRAL);
    rc = qt_run(cmd, out, sizeof out);
    QT_CHECK(rc == 2 && strstr(out, "--limit") && strstr(out, "--out DIR is required") && strstr(out, "maybe"),
             "CLI usage errors exit 2: %s", out);
    snprintf(cmd, sizeof cmd, "%s eval --model /nonexistent-model --data %s --tasks snli --langs en --out %s/o 2>&1",
             QALIGN, DATA, dir);
    rc = qt_run(cmd, out, sizeof out);
    QT_CHECK(rc == 1 && strstr(out, "nonexistent-model"), "CLI: missing model (rc %d): %s", rc, out);
    snprintf(cmd, sizeof cmd, "%s eval --model %s --adapter %s/nope --data %s --tasks snli --langs en --out %s/o 2>&1",
             QALIGN, MISTRAL, dir, DATA, dir);
    rc = qt_run(cmd, out, sizeof out);
    QT_CHECK(rc == 1 && strstr(out, "nope"), "CLI: missing adapter (rc %d): %s", rc, out);
    snprintf(cmd, sizeof cmd, "%s label-tokens --tokenizer %s/nope.json x 2>&1; %s label-tokens --tokenizer %s/mistral-7b-v0.1.tokenizer.json 2>&1",
             QALIGN, TOKDIR, QALIGN, TOKDIR);
    rc = qt_run(cmd, out, sizeof out);
    QT_CHECK(rc == 2 && strstr(out, "nope.json") && strstr(out, "at least one word"), "label-tokens errors: %s", out);
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: test_eval DATA_DIR TOKENIZER_DIR MISTRAL_MODEL QWEN_MODEL QALIGN TMP_DIR [part]\n");
        return 2;
    }
    DATA = argv[1];
    TOKDIR = argv[2];
    MISTRAL = argv[3];
    QWEN = argv[4];
    snprintf(QALIGN, sizeof QALIGN, "ASAN_OPTIONS=detect_leaks=0 %s", argv[5]);
    TMP = argv[6];
    const char *part = argc > 7 ? argv[7] : "all";
    int all = !strcmp(part, "all");
    if (all || !strcmp(part, "prompts")) test_prompts();
    if (all || !strcmp(part, "gold")) { test_gold(); test_paper_gold(); }
    if (all || !strcmp(part, "run")) {
        test_run_model(MISTRAL, "en,zh,hi,ja");
        test_run_model(QWEN, "en,th,ru");
    }
    if (all || !strcmp(part, "adapter")) test_adapter();
    if (all || !strcmp(part, "cli")) test_cli();
    if (all || !strcmp(part, "badinput")) test_badinput();
    (void)find_idx;
    return qt_finish();
}
