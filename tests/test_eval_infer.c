/* test_eval_infer.c — model/infer.c against the plain forward (model/forward.c) on every fixture
 * model (llama, mistral with an active sliding window, qwen2 with biases and tied head), with and
 * without a LoRA adapter: prefill + cached suffixes (full, truncated and empty cache use), batched
 * and one by one, full-vocab and label-row heads must give the last-position logits of the uncached
 * full forward to 1e-5 relative. Also: the inference op against a naive reference, bad arguments. */
#include "testutil.h"
#include "model/model.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x1234567;
static uint32_t rnd(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* last-position logits of ids[0..T) by the plain forward */
static int ref_logits(qa_model *m, const qa_lora *l, const int32_t *ids, int T, float *out) {
    qa_acts a;
    qa_err e = {0};
    if (qa_acts_alloc(&a, m, l, 1, T, QA_ACTS_INFER, 1, &e)) { qa_err_print(&e); return -1; }
    qa_batch b = {1, T, ids, NULL, NULL, NULL, NULL};
    qa_fwd_opts o = {QA_LOGITS_LAST, NULL, 0};
    int rc = qa_model_forward(m, l, &a, &b, &o, &e);
    if (rc) qa_err_print(&e);
    else qa_model_to_host(m, out, a.logits, m->cfg.vocab);
    qa_acts_free(&a);
    return rc;
}

static double rel(const float *a, const float *b, int n) { return qt_rel_err_f32(a, b, (size_t)n); }

static void check_model(const char *dir, const char *adapter) {
    qa_model m;
    qa_lora l;
    qa_err e = {0};
    if (qa_model_load(&m, dir, NULL, &e)) { QT_CHECK(0, "load %s: %s", dir, e.msg); return; }
    const qa_lora *lp = NULL;
    if (adapter) {
        if (qa_lora_load_peft(&l, &m, adapter, &e)) { QT_CHECK(0, "adapter %s: %s", adapter, e.msg); qa_model_free(&m); return; }
        lp = &l;
    }
    const int V = m.cfg.vocab;
    enum { NROW = 5, P = 13, MAXT = 27 };
    /* a shared prefix and rows that continue it; row r's tokens agree with the prefix on its first
     * ctx[r] tokens only (a tokenization that diverges near the boundary) */
    int32_t prefix[P], full[NROW][MAXT];
    int flen[NROW] = {P + 9, P + 3, P + 14, P + 1, 11}, ctxv[NROW] = {P, P - 1, P - 4, P, 0};
    for (int t = 0; t < P; t++) prefix[t] = (int32_t)(rnd() % V);
    for (int r = 0; r < NROW; r++)
        for (int t = 0; t < flen[r]; t++)
            full[r][t] = t < ctxv[r] ? prefix[t] : (int32_t)(rnd() % V);
    float *ref = qa_malloc(sizeof(float) * NROW * V), *got = qa_malloc(sizeof(float) * NROW * V);
    for (int r = 0; r < NROW; r++) if (ref_logits(&m, lp, full[r], flen[r], ref + (size_t)r * V)) goto out;

    qa_kv_cache kv;
    qa_infer_ws w;
    QT_CHECK(qa_kv_cache_alloc(&kv, &m, P + 2, &e) == 0, "kv alloc: %s", e.msg);
    QT_CHECK(qa_infer_ws_alloc(&w, &m, lp, NROW, NROW * MAXT, V, &e) == 0, "ws alloc: %s", e.msg);
    /* prefill */
    int32_t plen = P;
    qa_infer_batch pb = {1, P, prefix, &plen, NULL};
    float *tmp = qa_malloc(sizeof(float) * V);
    int rc = qa_model_infer(&m, lp, &w, NULL, &pb, &kv, NULL, tmp, &e);
    QT_CHECK(rc == 0 && kv.len == P, "prefill: %s", e.msg);
    {   /* the prefill's own logits = the forward of the prefix */
        float *pr = qa_malloc(sizeof(float) * V);
        if (!ref_logits(&m, lp, prefix, P, pr))
            QT_CHECK(rel(tmp, pr, V) < 1e-5, "%s%s: prefill logits rel err %.2e", dir, adapter ? " +lora" : "",
                     rel(tmp, pr, V));
        free(pr);
    }
    /* batched suffixes over the cache */
    int T = 0;
    int32_t lens[NROW];
    for (int r = 0; r < NROW; r++) { lens[r] = flen[r] - ctxv[r]; if (lens[r] > T) T = lens[r]; }
    int32_t *ids = qa_calloc((size_t)NROW * T, sizeof(int32_t));
    for (int r = 0; r < NROW; r++)
        for (int t = 0; t < T; t++) ids[(size_t)r * T + t] = t < lens[r] ? full[r][ctxv[r] + t] : 7 % V;
    qa_infer_batch sb = {NROW, T, ids, lens, ctxv};
    rc = qa_model_infer(&m, lp, &w, &kv, &sb, NULL, NULL, got, &e);
    QT_CHECK(rc == 0, "suffix batch: %s", e.msg);
    for (int r = 0; r < NROW && rc == 0; r++)
        QT_CHECK(rel(got + (size_t)r * V, ref + (size_t)r * V, V) < 1e-5,
                 "%s%s: cached row %d (ctx %d, %d suffix tokens) rel err %.2e", dir, adapter ? " +lora" : "", r,
                 ctxv[r], lens[r], rel(got + (size_t)r * V, ref + (size_t)r * V, V));
    /* one by one */
    for (int r = 0; r < NROW; r++) {
        qa_infer_batch one = {1, lens[r], full[r] + ctxv[r], &lens[r], &ctxv[r]};
        rc = qa_model_infer(&m, lp, &w, &kv, &one, NULL, NULL, tmp, &e);
        QT_CHECK(rc == 0 && rel(tmp, ref + (size_t)r * V, V) < 1e-5, "%s: row %d alone: %s rel %.2e", dir, r,
                 rc ? e.msg : "", rel(tmp, ref + (size_t)r * V, V));
    }
    /* label rows only: the same numbers at the chosen ids */
    int32_t sel[4] = {3 % V, 11 % V, (V - 1), 5 % V};
    qa_head_rows hr;
    QT_CHECK(qa_head_rows_init(&hr, &m, sel, 4, &e) == 0, "head rows: %s", e.msg);
    float sub[NROW * 4];
    rc = qa_model_infer(&m, lp, &w, &kv, &sb, NULL, &hr, sub, &e);
    QT_CHECK(rc == 0, "head rows infer: %s", e.msg);
    double worst = 0;
    for (int r = 0; r < NROW; r++) {
        double scale = 0; /* relative to the row's largest logit */
        for (int j = 0; j < V; j++) if (fabs(got[(size_t)r * V + j]) > scale) scale = fabs(got[(size_t)r * V + j]);
        for (int j = 0; j < 4; j++) {
            double d = fabs(sub[r * 4 + j] - got[(size_t)r * V + sel[j]]) / scale;
            if (d > worst) worst = d;
        }
    }
    QT_CHECK(worst < 1e-5, "%s: label-row logits vs full logits: worst rel %.2e", dir, worst);
    /* no cache at all: full sequences batched, right-padded */
    {
        int Tf = 0;
        int32_t fl[NROW];
        for (int r = 0; r < NROW; r++) { fl[r] = flen[r]; if (fl[r] > Tf) Tf = fl[r]; }
        int32_t *fid = qa_calloc((size_t)NROW * Tf, sizeof(int32_t));
        for (int r = 0; r < NROW; r++)
            for (int t = 0; t < Tf; t++) fid[(size_t)r * Tf + t] = t < fl[r] ? full[r][t] : 0;
        qa_infer_batch nb = {NROW, Tf, fid, fl, NULL};
        rc = qa_model_infer(&m, lp, &w, NULL, &nb, NULL, NULL, got, &e);
        QT_CHECK(rc == 0, "uncached batch: %s", e.msg);
        for (int r = 0; r < NROW && rc == 0; r++)
            QT_CHECK(rel(got + (size_t)r * V, ref + (size_t)r * V, V) < 1e-5, "%s: uncached padded row %d rel %.2e",
                     dir, r, rel(got + (size_t)r * V, ref + (size_t)r * V, V));
        free(fid);
    }
    /* bad arguments: clear errors, no crash */
    {
        int32_t badctx[NROW] = {P + 1, 0, 0, 0, 0};
        qa_infer_batch bb = sb;
        bb.ctx = badctx;
        rc = qa_model_infer(&m, lp, &w, &kv, &bb, NULL, NULL, got, &e);
        QT_CHECK(rc != 0 && strstr(e.msg, "cache holds"), "ctx beyond the cache rejected: %s", e.msg);
        int32_t badlen[NROW] = {0, 1, 1, 1, 1};
        bb = sb;
        bb.len = badlen;
        rc = qa_model_infer(&m, lp, &w, &kv, &bb, NULL, NULL, got, &e);
        QT_CHECK(rc != 0 && strstr(e.msg, "real tokens"), "empty row rejected: %s", e.msg);
        qa_infer_batch big = {NROW + 1, 2, ids, lens, NULL};
        rc = qa_model_infer(&m, lp, &w, NULL, &big, NULL, NULL, got, &e);
        QT_CHECK(rc != 0 && strstr(e.msg, "does not fit"), "oversized batch rejected: %s", e.msg);
        int32_t badid = V;
        int32_t one = 1;
        qa_infer_batch bi = {1, 1, &badid, &one, NULL};
        rc = qa_model_infer(&m, lp, &w, NULL, &bi, NULL, NULL, got, &e);
        QT_CHECK(rc != 0 && strstr(e.msg, "vocabulary"), "bad id rejected: %s", e.msg);
        int32_t badsel = V;
        qa_head_rows h2;
        QT_CHECK(qa_head_rows_init(&h2, &m, &badsel, 1, &e) != 0 && strstr(e.msg, "vocabulary"),
                 "head row outside the vocabulary rejected: %s", e.msg);
    }
    qa_head_rows_free(&hr);
    free(ids);
    free(tmp);
    qa_infer_ws_free(&w);
    qa_kv_cache_free(&kv);
out:
    free(ref);
    free(got);
    if (lp) qa_lora_free(&l);
    qa_model_free(&m);
}

/* the op against a direct O(T^2) reference with windows; T > 64 crosses query blocks */
static float frand(float div) { return (float)((int)(rnd() % 2001) - 1000) / div; }
static void check_op(int window, int T, int TC) {
    const qa_ops *O = qa_ops_cpu();
    enum { B = 3, H = 4, Hk = 2, hd = 8 };
    const size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * Hk * hd, nc = (size_t)TC * Hk * hd;
    float *q = qa_malloc(4 * nq), *k = qa_malloc(4 * nk), *v = qa_malloc(4 * nk), *kc = qa_malloc(4 * nc),
          *vc = qa_malloc(4 * nc), *o = qa_malloc(4 * nq), *r = qa_malloc(4 * nq);
    double *s = qa_malloc(sizeof(double) * (size_t)(TC + T));
    for (size_t i = 0; i < nq; i++) q[i] = frand(700);
    for (size_t i = 0; i < nk; i++) { k[i] = frand(700); v[i] = frand(900); }
    for (size_t i = 0; i < nc; i++) { kc[i] = frand(700); vc[i] = frand(900); }
    int32_t ctx[B] = {TC, TC / 2, 0};
    qa_attn_prefix_desc d = {B, T, H, Hk, hd, window, 0.35f, TC, ctx};
    O->attention_prefix_fwd(NULL, &d, q, kc, vc, k, v, o);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                int g = h / (H / Hk), C = ctx[b], p = C + i, n = 0;
                double mx = -1e30, sum = 0;
                for (int j = 0; j < C + T; j++) {
                    int vis = j <= p && (window <= 0 || j > p - window);
                    const float *kk = j < C ? kc + ((size_t)j * Hk + g) * hd : k + (((size_t)b * T + j - C) * Hk + g) * hd;
                    double dot = 0;
                    for (int c = 0; c < hd; c++) dot += (double)q[(((size_t)b * T + i) * H + h) * hd + c] * kk[c];
                    s[n++] = vis ? dot * 0.35 : -1e300;
                    if (vis && s[n - 1] > mx) mx = s[n - 1];
                }
                for (int j = 0; j < n; j++) { s[j] = s[j] < -1e299 ? 0 : exp(s[j] - mx); sum += s[j]; }
                for (int c = 0; c < hd; c++) {
                    double acc = 0;
                    for (int j = 0; j < n; j++) {
                        const float *vv = j < C ? vc + ((size_t)j * Hk + g) * hd : v + (((size_t)b * T + j - C) * Hk + g) * hd;
                        acc += s[j] / sum * vv[c];
                    }
                    r[(((size_t)b * T + i) * H + h) * hd + c] = (float)acc;
                }
            }
    double worst = rel(o, r, (int)nq);
    QT_CHECK(worst < 1e-5, "attention_prefix_fwd T=%d cache %d window %d vs naive: rel err %.2e", T, TC, window, worst);
    free(q); free(k); free(v); free(kc); free(vc); free(o); free(r); free(s);
}

int main(void) {
    check_op(0, 6, 9);
    check_op(3, 6, 9);
    check_op(11, 6, 9);
    check_op(0, 150, 70);
    check_op(90, 150, 70);
    check_op(0, 65, 0);
    const char *root = qt_env_or("QALIGN_FIXTURES", getenv("QALIGN_FIXTURES_DEFAULT"));
    if (!root) { fprintf(stderr, "set QALIGN_FIXTURES to the fixtures/hf directory\n"); return 2; }
    DIR *dp = opendir(root);
    QT_CHECK(dp != NULL, "fixtures directory %s", root);
    int n = 0;
    struct dirent *de;
    char names[16][256];
    while (dp && (de = readdir(dp)) && n < 16)
        if (de->d_name[0] != '.') snprintf(names[n++], 256, "%s", de->d_name);
    if (dp) closedir(dp);
    QT_CHECK(n > 0, "at least one fixture model under %s", root);
    for (int i = 0; i < n; i++) {
        char dir[4400], ad[4500];
        snprintf(dir, sizeof dir, "%s/%s/model", root, names[i]);
        if (!qa_is_dir(dir)) continue;
        check_model(dir, NULL);
        snprintf(ad, sizeof ad, "%s/%s/adapter_all_after2steps", root, names[i]);
        if (qa_is_dir(ad)) check_model(dir, ad);
        snprintf(ad, sizeof ad, "%s/%s/adapter_qv_after2steps", root, names[i]);
        if (qa_is_dir(ad)) check_model(dir, ad);
    }
    return qt_finish();
}
