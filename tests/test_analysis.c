/* test_analysis.c — analysis/ and the activation dumps (io/actdump.c, eval/activations.c).
 *
 * usage: test_analysis golden                      lens of the fixture models through a dump vs golden
 *                                                  logit_lens.* (and logits for layer L), rel err <= 1e-4;
 *                                                  the lens quantities vs a direct computation
 *        test_analysis adapter MODEL OUT_DIR       write a random (non-zero) q/v LoRA adapter for MODEL
 *        test_analysis dump DATA MODEL ADAPTER TMP  eval/ dumps vs one-by-one plain forwards (last position,
 *                                                  mean over positions, every layer; base and adapter),
 *                                                  items, labels, attributes; PCA fit vs exact eigenvectors
 *        test_analysis same A B                    two dumps hold identical items and activations (np1 vs np2)
 *        test_analysis badinput DUMP MODEL MODEL_L3 MODEL_D32 TMP
 *                                                  dumps of another model, missing datasets/attributes,
 *                                                  a file that is no dump: clear errors naming file + object
 * Fixtures: $QALIGN_FIXTURES or $QALIGN_FIXTURES_DEFAULT (fixtures/hf). */
#include "testutil.h"
#include "analysis/analysis.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "eval/eval.h"
#include "io/actdump.h"

#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail_err(const char *ctx, const qa_err *e) { QT_CHECK(0, "%s: %s", ctx, e->msg); }

/* ---- golden: the lens through a dump ------------------------------------------------------------ */
static float *st_f32(qa_safetensors *g, const char *name, int64_t want) {
    const qa_st_tensor *t = qa_st_find(g, name);
    if (!t || t->numel != want) return NULL;
    float *v = qa_malloc(sizeof(float) * (size_t)want);
    qa_err e = {0};
    if (qa_st_read_f32(g, t, v, &e)) { free(v); return NULL; }
    return v;
}

static int32_t *st_i32(qa_safetensors *g, const char *name, int *B, int *T) {
    const qa_st_tensor *t = qa_st_find(g, name);
    if (!t || t->dtype != QA_DT_I32 || t->ndim != 2) return NULL;
    *B = (int)t->shape[0];
    *T = (int)t->shape[1];
    int32_t *v = qa_malloc(sizeof(int32_t) * (size_t)t->numel);
    memcpy(v, t->data, sizeof(int32_t) * (size_t)t->numel);
    return v;
}

/* direct lens quantities (reference for qa_lens_quantities) */
static void ref_quantities(const float *x, int V, const qa_lens_sets *s, double *out) {
    double mx = -INFINITY, z = 0;
    for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < V; i++) z += exp(x[i] - mx);
    double h = 0;
    for (int i = 0; i < V; i++) {
        double p = exp(x[i] - mx) / z;
        if (p > 0) h -= p * log2(p);
    }
    for (int q = 0; q < 4; q++) {
        out[q] = 0;
        for (int j = 0; j < s->n[q]; j++) out[q] += exp(x[s->ids[q][j]] - mx) / z;
    }
    out[4] = h;
}

static void golden_fixture(const char *dir, const char *name, const char *tmp) {
    char path[1400];
    qa_err e = {0};
    qa_safetensors g;
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    if (qa_st_open(&g, path, &e)) { fail_err(path, &e); return; }
    qa_model m;
    snprintf(path, sizeof path, "%s/model", dir);
    if (qa_model_load(&m, path, NULL, &e)) { fail_err(path, &e); qa_st_close(&g); return; }
    const int L = m.cfg.n_layers, D = m.cfg.hidden, V = m.cfg.vocab;
    int B = 0, T = 0, B2, T2;
    int32_t *ids = st_i32(&g, "input_ids", &B, &T), *mask = st_i32(&g, "attention_mask", &B2, &T2);
    QT_CHECK(ids && mask, "%s: golden input_ids / attention_mask", name);
    if (!ids || !mask) goto done0;
    /* the model's own hidden states of the golden batch (checked against golden by model_golden) */
    qa_acts a;
    if (qa_acts_alloc(&a, &m, NULL, B, T, QA_ACTS_INFER, 1, &e)) { fail_err("workspace", &e); goto done0; }
    qa_batch b = {B, T, ids, mask, NULL, NULL, NULL};
    qa_fwd_opts fo = {QA_LOGITS_NONE, NULL, 0};
    if (qa_model_forward(&m, NULL, &a, &b, &fo, &e)) { fail_err("forward", &e); qa_acts_free(&a); goto done0; }
    /* items = the positions where the mask is 1; last = mean = hidden[layer] there */
    int N = 0;
    for (int i = 0; i < B * T; i++) N += mask[i] != 0;
    int64_t *pos = qa_malloc(sizeof(int64_t) * (size_t)N);
    for (int i = 0, k = 0; i < B * T; i++) if (mask[i]) pos[k++] = i;
    float *blk = qa_malloc(sizeof(float) * (size_t)N * (L + 1) * D), *h = qa_malloc(sizeof(float) * (size_t)B * T * D);
    for (int l = 0; l <= L; l++) {
        qa_model_to_host(&m, h, a.hidden[l], (size_t)B * T * D);
        for (int k = 0; k < N; k++)
            memcpy(blk + ((size_t)k * (L + 1) + l) * D, h + (size_t)pos[k] * D, sizeof(float) * D);
    }
    qa_acts_free(&a);
    free(h);
    qa_actdump_item *it = qa_calloc(N, sizeof *it);
    for (int k = 0; k < N; k++) it[k] = (qa_actdump_item){"golden", "xx", "", pos[k], -1, 1};
    const char *labels[2] = {"a", "b"}, *langs[1] = {"xx"}, *target[2] = {"a", "b"};
    qa_actdump_labels lb = {"golden", 2, labels, labels, 1, langs, target};
    qa_actdump_info info = {path, NULL, m.cfg.model_type, "test", "", "english-labels", "corrected", "golden", "xx",
                            L, D, V, N, 1, 1};
    char dpath[1400];
    snprintf(dpath, sizeof dpath, "%s/golden_%s.h5", tmp, name);
    qa_actdump_writer *w;
    int ok = qa_actdump_create(&w, dpath, &info, it, &lb, 1, &e) == 0;
    if (ok) ok = qa_actdump_write_rows(w, 0, N, blk, blk, &e) == 0 && qa_actdump_finish(w, &e) == 0;
    QT_CHECK(ok, "%s: dump of the golden batch written (%s)", name, e.msg);
    free(it);
    free(blk);
    qa_actdump d;
    if (!ok || qa_actdump_open(&d, dpath, &e)) { fail_err(dpath, &e); free(pos); goto done0; }
    /* the lens of every layer through analysis/, against golden logit_lens.<i> (i < L) and logits (L) */
    int64_t *rows = qa_malloc(sizeof(int64_t) * (size_t)N);
    for (int k = 0; k < N; k++) rows[k] = k;
    float *out = qa_malloc(sizeof(float) * (size_t)N * V), *ref = qa_malloc(sizeof(float) * (size_t)N * V);
    double worst = 0, worst_q = 0;
    for (int l = 0; l <= L; l++) {
        char gname[64];
        if (l < L) snprintf(gname, sizeof gname, "logit_lens.%d", l);
        else snprintf(gname, sizeof gname, "logits");
        float *gl = st_f32(&g, gname, (int64_t)B * T * V);
        QT_CHECK(gl != NULL, "%s: golden %s [B,T,V]", name, gname);
        if (!gl) continue;
        for (int k = 0; k < N; k++) memcpy(ref + (size_t)k * V, gl + (size_t)pos[k] * V, sizeof(float) * V);
        free(gl);
        if (qa_lens_layer_logits(&m, &d, l, rows, N, out, &e)) { fail_err("lens logits", &e); continue; }
        double err = qt_rel_err_f32(out, ref, (size_t)N * V);
        if (err > worst) worst = err;
        QT_CHECK(err <= 1e-4, "%s: lens layer %d via the dump vs golden %s: rel err %.3e", name, l, gname, err);
        printf("  %-8s lens layer %d (dump -> analysis) vs golden %-13s rel %.3e\n", name, l, gname, err);
        /* quantities: masses of a few sets and the entropy, from our logits vs directly from golden */
        int32_t s0[3] = {1, 5, 7}, s1[2] = {2, 3}, s2[5] = {1, 2, 3, 5, 7}, s3[1] = {V - 1};
        qa_lens_sets sets = {{s0, s1, s2, s3}, {3, 2, 5, 1}};
        for (int k = 0; k < N; k++) {
            double q1[QA_LENS_NQ], q2[QA_LENS_NQ];
            qa_lens_quantities(out + (size_t)k * V, V, &sets, q1);
            ref_quantities(ref + (size_t)k * V, V, &sets, q2);
            for (int q = 0; q < QA_LENS_NQ; q++) {
                double d2 = fabs(q1[q] - q2[q]) / (q == 4 ? fmax(1.0, fabs(q2[q])) : 1.0);
                if (d2 > worst_q) worst_q = d2;
            }
        }
    }
    QT_CHECK(worst_q <= 1e-4, "%s: lens masses and entropy vs direct softmax of the golden logits (max %.2e)", name,
             worst_q);
    printf("  %-8s lens masses/entropy vs golden softmax            max abs %.3e\n", name, worst_q);
    /* the dump from this model must be refused by a model of another shape: checked in badinput */
    free(rows);
    free(out);
    free(ref);
    free(pos);
    qa_actdump_close(&d);
done0:
    free(ids);
    free(mask);
    qa_model_free(&m);
    qa_st_close(&g);
}

static int test_golden(const char *tmp) {
    const char *root = qt_fixtures_root();
    DIR *dd = opendir(root);
    QT_CHECK(dd != NULL, "fixture root %s (set QALIGN_FIXTURES)", root);
    if (!dd) return qt_finish();
    char *names[64];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dd)) && n < 64) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s/golden.safetensors", root, de->d_name);
        if (de->d_name[0] != '.' && qa_path_exists(p)) names[n++] = qa_strdup(de->d_name);
    }
    closedir(dd);
    QT_CHECK(n > 0, "fixture directories under %s", root);
    qa_err e = {0};
    qa_mkdir_p(tmp, &e);
    for (int i = 0; i < n; i++) {
        char dir[1200];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        golden_fixture(dir, names[i], tmp);
        free(names[i]);
    }
    return qt_finish();
}

/* ---- a random adapter ---------------------------------------------------------------------------- */
static int test_adapter(const char *model_dir, const char *out) {
    qa_err e = {0};
    qa_model m;
    if (qa_model_load(&m, model_dir, NULL, &e)) { fail_err(model_dir, &e); return qt_finish(); }
    qa_lora l;
    if (qa_lora_init(&l, &m, QA_LORA_MASK_QV, 4, 16.0f, 0.0f, &e)) { fail_err("lora", &e); qa_model_free(&m); return qt_finish(); }
    qa_lora_init_params(&l, 7);
    uint64_t s = 12345;
    for (int layer = 0; layer < l.n_layers; layer++)
        for (int mod = 0; mod < QA_LORA_N_MODULES; mod++) {
            qa_lora_mat *t = qa_lora_at(&l, layer, mod);
            if (!t->present) continue;
            size_t n = (size_t)t->out * l.r;
            float *B = qa_malloc(sizeof(float) * n);
            for (size_t i = 0; i < n; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                B[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.5f;
            }
            qa_lora_set(&l, layer, mod, 1, B);
            free(B);
        }
    QT_CHECK(qa_lora_save_peft(&l, &m, out, &e) == 0, "adapter written to %s (%s)", out, e.msg);
    qa_lora_free(&l);
    qa_model_free(&m);
    return qt_finish();
}

/* ---- dumps vs one-by-one forwards --------------------------------------------------------------- */
static double rel(const float *a, const float *b, size_t n) { return qt_rel_err_f32(a, b, n); }

static void check_dump_against_forward(const char *path, qa_model *m, const qa_lora *lora, const qa_tokenizer *tok,
                                       const qa_eval_suite *s, const char *what) {
    qa_err e = {0};
    qa_actdump d;
    if (qa_actdump_open(&d, path, &e)) { fail_err(path, &e); return; }
    const int L = m->cfg.n_layers, D = m->cfg.hidden;
    QT_CHECK(d.n_layers == L && d.hidden == D && d.vocab == m->cfg.vocab, "%s: dump shape attributes", what);
    QT_CHECK(!strcmp(d.prompt_variant, "target-labels"), "%s: prompt_variant recorded (%s)", what, d.prompt_variant);
    QT_CHECK((lora != NULL) == (d.adapter[0] != 0), "%s: adapter attribute '%s'", what, d.adapter);
    const qa_actdump_labelset *ls = qa_actdump_labels_of(&d, "emotion");
    QT_CHECK(ls && ls->n_labels == 2 && !strcmp(ls->english[0], "positive") &&
             qa_actdump_target_word(ls, "zh", 0) && !strcmp(qa_actdump_target_word(ls, "zh", 0), "积极"),
             "%s: /labels/emotion: english words and target_zh", what);
    float *last = qa_malloc(sizeof(float) * (size_t)(L + 1) * d.n * D), *mean = qa_malloc(sizeof(float) * (size_t)(L + 1) * d.n * D);
    for (int l = 0; l <= L; l++) {
        if (qa_actdump_read_layer(&d, "last", l, last + (size_t)l * d.n * D, &e) ||
            qa_actdump_read_layer(&d, "mean", l, mean + (size_t)l * d.n * D, &e)) {
            fail_err("read layer", &e);
            goto out;
        }
    }
    int64_t g = 0;
    double worst = 0;
    int items_ok = 1;
    for (int t = 0; t < qa_eval_n_tasks(s); t++)
        for (int li = 0; li < qa_eval_n_langs(s); li++)
            for (int i = 0; i < qa_eval_n_items(s, t, li); i++, g++) {
                if (g >= d.n) { items_ok = 0; continue; }
                items_ok &= !strcmp(d.task[g], qa_eval_task_name(s, t)) && !strcmp(d.lang[g], qa_eval_lang(s, li)) &&
                            d.index[g] == i && d.gold[g] == qa_eval_item_gold(s, t, li, i) &&
                            !strcmp(d.gold_text[g], qa_eval_item_gold_text(s, t, li, i));
                size_t plen, n = 0;
                int32_t *ids = NULL;
                char *p = qa_eval_prompt(s, t, li, i, &plen);
                qa_tok_encode(tok, p, plen, 1, &ids, &n, &e);
                free(p);
                items_ok &= d.n_tokens[g] == (int64_t)n;
                qa_acts a;
                if (qa_acts_alloc(&a, m, lora, 1, (int)n, QA_ACTS_INFER, 1, &e)) { fail_err("acts", &e); free(ids); goto out; }
                qa_batch b = {1, (int)n, ids, NULL, NULL, NULL, NULL};
                qa_fwd_opts fo = {QA_LOGITS_NONE, NULL, 0};
                if (qa_model_forward(m, lora, &a, &b, &fo, &e)) { fail_err("forward", &e); qa_acts_free(&a); free(ids); goto out; }
                float *h = qa_malloc(sizeof(float) * n * D), *mu = qa_malloc(sizeof(float) * D);
                for (int l = 0; l <= L; l++) {
                    qa_model_to_host(m, h, a.hidden[l], n * D);
                    for (int j = 0; j < D; j++) {
                        double acc = 0;
                        for (size_t tt = 0; tt < n; tt++) acc += h[tt * D + j];
                        mu[j] = (float)(acc / n);
                    }
                    double e1 = rel(last + ((size_t)l * d.n + g) * D, h + (n - 1) * D, D);
                    double e2 = rel(mean + ((size_t)l * d.n + g) * D, mu, D);
                    if (e1 > worst) worst = e1;
                    if (e2 > worst) worst = e2;
                }
                free(h);
                free(mu);
                qa_acts_free(&a);
                free(ids);
            }
    QT_CHECK(g == d.n && items_ok, "%s: items (task, lang, index, gold, gold_text, n_tokens) in suite order (%lld of %lld)",
             what, (long long)g, (long long)d.n);
    QT_CHECK(worst <= 1e-5, "%s: last/mean of every layer vs one-by-one forwards: max rel err %.2e", what, worst);
    printf("  %s: %lld items, every layer: max rel err vs one-by-one forward %.2e\n", what, (long long)d.n, worst);
out:
    free(last);
    free(mean);
    qa_actdump_close(&d);
}

/* PCA fit: scores/components are eigenvectors of the covariance; also a case with D <= k + 8 */
static void check_pca_fit(void) {
    const int n = 40, D = 30;
    float *X = qa_malloc(sizeof(float) * n * D);
    uint64_t s = 99;
    for (int i = 0; i < n * D; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        X[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * (1 + (i % D) * 0.3f);
    }
    double sc[80], comp[60], var[2], tot;
    int it;
    qa_err e = {0};
    QT_CHECK(qa_pca_fit(X, n, D, 2, sc, comp, var, &tot, &it, &e) == 0, "pca fit");
    /* C v = λ v with C the covariance (ddof 1) */
    double mu[30] = {0}, worst = 0;
    for (int i = 0; i < n; i++) for (int j = 0; j < D; j++) mu[j] += X[i * D + j] / n;
    for (int k = 0; k < 2; k++) {
        double Cv[30] = {0};
        for (int i = 0; i < n; i++) {
            double proj = 0;
            for (int j = 0; j < D; j++) proj += (X[i * D + j] - mu[j]) * comp[k * D + j];
            worst = fmax(worst, fabs(proj - sc[i * 2 + k]));
            for (int j = 0; j < D; j++) Cv[j] += (X[i * D + j] - mu[j]) * proj / (n - 1);
        }
        for (int j = 0; j < D; j++) worst = fmax(worst, fabs(Cv[j] - var[k] * comp[k * D + j]));
    }
    QT_CHECK(worst < 1e-8 && var[0] >= var[1] && var[1] > 0 && tot > var[0] + var[1],
             "pca: eigen-residual %.2e, variances %.4f >= %.4f, total %.4f, %d iterations", worst, var[0], var[1], tot, it);
    free(X);
}

static int test_dump(const char *data, const char *model_dir, const char *adapter, const char *tmp) {
    qa_err e = {0};
    qa_model m;
    qa_tokenizer *tok = NULL;
    qa_lora l;
    char tp[1200], path[1200];
    snprintf(tp, sizeof tp, "%s/tokenizer.json", model_dir);
    if (qa_model_load(&m, model_dir, NULL, &e) || qa_tok_load(&tok, tp, &e)) { fail_err(model_dir, &e); return qt_finish(); }
    if (qa_eval_load_adapter(&l, &m, adapter, NULL, 0, &e)) { fail_err(adapter, &e); return qt_finish(); }
    qa_eval_selection sel = {data, "emotion", "en,zh,hi,sw", 3, QA_EVAL_GOLD_CORRECTED, QA_EVAL_PROMPT_TARGET_LABELS, QA_EVAL_SCORING_ENGLISH};
    qa_eval_suite *s;
    if (qa_eval_suite_load(&s, &sel, &e)) { fail_err("suite", &e); return qt_finish(); }
    qa_eval_dump_opts o;
    qa_eval_dump_opts_default(&o);
    o.batch_rows = 3; /* padded batches: rows of different lengths share a forward */
    o.model_id = model_dir;
    snprintf(path, sizeof path, "%s/lib_base.h5", tmp);
    QT_CHECK(qa_eval_dump_activations(s, &m, NULL, tok, NULL, &o, path, &e) == 0, "dump (base): %s", e.msg);
    check_dump_against_forward(path, &m, NULL, tok, s, "base dump");
    o.adapter_id = "random q/v adapter";
    snprintf(path, sizeof path, "%s/lib_adapter.h5", tmp);
    QT_CHECK(qa_eval_dump_activations(s, &m, &l, tok, NULL, &o, path, &e) == 0, "dump (adapter): %s", e.msg);
    check_dump_against_forward(path, &m, &l, tok, s, "adapter dump");
    /* the partial file is gone after success; a dump to an unwritable place fails cleanly */
    snprintf(path, sizeof path, "%s/lib_base.h5.partial", tmp);
    QT_CHECK(!qa_path_exists(path), "no .partial file left behind");
    e.msg[0] = 0;
    QT_CHECK(qa_eval_dump_activations(s, &m, NULL, tok, NULL, &o, "/proc/qalign-no/x.h5", &e) != 0 && e.msg[0],
             "dump to an unwritable path fails: %s", e.msg);
    check_pca_fit();
    qa_eval_suite_free(s);
    qa_lora_free(&l);
    qa_tok_free(tok);
    qa_model_free(&m);
    return qt_finish();
}

/* ---- two dumps identical ------------------------------------------------------------------------ */
static int test_same(const char *a, const char *b) {
    qa_err e = {0};
    qa_actdump x, y;
    if (qa_actdump_open(&x, a, &e)) { fail_err(a, &e); return qt_finish(); }
    if (qa_actdump_open(&y, b, &e)) { fail_err(b, &e); qa_actdump_close(&x); return qt_finish(); }
    int same = x.n == y.n && x.n_layers == y.n_layers && x.hidden == y.hidden;
    for (int64_t i = 0; same && i < x.n; i++)
        same = !strcmp(x.task[i], y.task[i]) && !strcmp(x.lang[i], y.lang[i]) && x.index[i] == y.index[i] &&
               x.gold[i] == y.gold[i] && x.n_tokens[i] == y.n_tokens[i];
    QT_CHECK(same, "%s and %s: same items", a, b);
    size_t nf = (size_t)x.n * x.hidden;
    float *p = qa_malloc(sizeof(float) * (nf ? nf : 1)), *q = qa_malloc(sizeof(float) * (nf ? nf : 1));
    int identical = same;
    for (int l = 0; same && l <= x.n_layers; l++)
        for (int k = 0; k < 2; k++) {
            const char *pool = k ? "mean" : "last";
            if (qa_actdump_read_layer(&x, pool, l, p, &e) || qa_actdump_read_layer(&y, pool, l, q, &e)) {
                fail_err("read", &e);
                identical = 0;
                continue;
            }
            identical &= memcmp(p, q, sizeof(float) * nf) == 0;
        }
    QT_CHECK(identical, "%s and %s: bitwise identical activations", a, b);
    free(p);
    free(q);
    qa_actdump_close(&x);
    qa_actdump_close(&y);
    return qt_finish();
}

/* ---- bad input ---------------------------------------------------------------------------------- */
static int copy_and_delete(const char *src, const char *dst, const char *obj, const char *attr) {
    qa_err e = {0};
    if (qa_copy_file(src, dst, &e)) return -1;
    hid_t f = H5Fopen(dst, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return -1;
    herr_t r = attr ? H5Adelete(f, attr) : H5Ldelete(f, obj, H5P_DEFAULT);
    H5Fclose(f);
    return r < 0 ? -1 : 0;
}

static void expect(int rc, const qa_err *e, const char *what, const char *need1, const char *need2) {
    int ok = rc != 0 && strstr(e->msg, need1) && (!need2 || strstr(e->msg, need2));
    QT_CHECK(ok, "%s: error naming '%s'%s%s: got \"%s\"", what, need1, need2 ? " and " : "", need2 ? need2 : "", e->msg);
    if (ok) printf("  %s -> %s\n", what, e->msg);
}

static int test_badinput(const char *dump, const char *model, const char *model_l3, const char *model_d32,
                         const char *tmp) {
    qa_err e = {0};
    qa_model m, m3, m32;
    qa_tokenizer *tok = NULL;
    char tp[1200], p[1200];
    snprintf(tp, sizeof tp, "%s/tokenizer.json", model_l3);
    if (qa_model_load(&m, model, NULL, &e) || qa_model_load(&m3, model_l3, NULL, &e) ||
        qa_model_load(&m32, model_d32, NULL, &e) || qa_tok_load(&tok, tp, &e) || qa_mkdir_p(tmp, &e)) {
        fail_err("models", &e);
        return qt_finish();
    }
    /* a dump of another model: layer count, then width */
    qa_lens_opts o;
    qa_lens_opts_default(&o);
    o.n_series = 1;
    o.dumps[0] = dump;
    snprintf(p, sizeof p, "%s/bad_lens", tmp);
    o.out_dir = p;
    e.msg[0] = 0;
    expect(qa_lens_run(&m3, tok, &o, &e), &e, "lens: dump of a 2-layer model, 3-layer model", dump, "another model");
    e.msg[0] = 0;
    expect(qa_lens_run(&m32, tok, &o, &e), &e, "lens: dump of width 64, model of width 32", dump, "width");
    /* missing datasets and attributes */
    qa_actdump d;
    snprintf(p, sizeof p, "%s/bad_nolayer.h5", tmp);
    QT_CHECK(copy_and_delete(dump, p, "/mean/layer_01", NULL) == 0, "made %s", p);
    qa_pca_opts po;
    qa_pca_opts_default(&po);
    po.dump = p;
    char out[1200];
    snprintf(out, sizeof out, "%s/bad_pca", tmp);
    po.out_dir = out;
    e.msg[0] = 0;
    expect(qa_pca_run(&po, &e), &e, "pca: /mean/layer_01 deleted", "/mean/layer_01", "bad_nolayer.h5");
    snprintf(p, sizeof p, "%s/bad_nogold.h5", tmp);
    QT_CHECK(copy_and_delete(dump, p, "/items/gold", NULL) == 0, "made %s", p);
    e.msg[0] = 0;
    expect(qa_actdump_open(&d, p, &e), &e, "open: /items/gold deleted", "/items/gold", "bad_nogold.h5");
    snprintf(p, sizeof p, "%s/bad_nolast.h5", tmp);
    QT_CHECK(copy_and_delete(dump, p, "/last", NULL) == 0, "made %s", p);
    e.msg[0] = 0;
    o.dumps[0] = p;
    expect(qa_lens_run(&m, tok, &o, &e), &e, "lens: /last deleted", "bad_nolast.h5", "no /last pool");
    snprintf(p, sizeof p, "%s/bad_noattr.h5", tmp);
    QT_CHECK(copy_and_delete(dump, p, NULL, "n_layers") == 0, "made %s", p);
    e.msg[0] = 0;
    expect(qa_actdump_open(&d, p, &e), &e, "open: root attribute n_layers deleted", "n_layers", "bad_noattr.h5");
    snprintf(p, sizeof p, "%s/bad_noformat.h5", tmp);
    QT_CHECK(copy_and_delete(dump, p, NULL, "format") == 0, "made %s", p);
    e.msg[0] = 0;
    expect(qa_actdump_open(&d, p, &e), &e, "open: an HDF5 file that is no dump", "not an activation dump",
           "bad_noformat.h5");
    snprintf(p, sizeof p, "%s/bad_text.h5", tmp);
    qa_write_file_atomic(p, "hello", 5, &e);
    e.msg[0] = 0;
    expect(qa_actdump_open(&d, p, &e), &e, "open: a text file", "bad_text.h5", NULL);
    e.msg[0] = 0;
    expect(qa_actdump_open(&d, "/nonexistent/x.h5", &e), &e, "open: a missing file", "/nonexistent/x.h5",
           "does not exist");
    /* pca options */
    po.dump = dump;
    po.langs = "en,xx";
    e.msg[0] = 0;
    expect(qa_pca_run(&po, &e), &e, "pca: a language not in the dump", "'xx'", dump);
    po.langs = NULL;
    po.layers = "0,99";
    e.msg[0] = 0;
    expect(qa_pca_run(&po, &e), &e, "pca: a layer beyond L", "99", NULL);
    qa_tok_free(tok);
    qa_model_free(&m);
    qa_model_free(&m3);
    qa_model_free(&m32);
    return qt_finish();
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "golden") && argc >= 3) return test_golden(argv[2]);
    if (!strcmp(mode, "adapter") && argc >= 4) return test_adapter(argv[2], argv[3]);
    if (!strcmp(mode, "dump") && argc >= 6) return test_dump(argv[2], argv[3], argv[4], argv[5]);
    if (!strcmp(mode, "same") && argc >= 4) return test_same(argv[2], argv[3]);
    if (!strcmp(mode, "badinput") && argc >= 7) return test_badinput(argv[2], argv[3], argv[4], argv[5], argv[6]);
    fprintf(stderr, "usage: test_analysis golden TMP | adapter MODEL OUT | dump DATA MODEL ADAPTER TMP | same A B | "
                    "badinput DUMP MODEL MODEL_L3 MODEL_D32 TMP\n");
    return 2;
}
