/* test_cpu_kernels.c — the CPU backend's own GEMM (kernels/cpu/gemm.c, called directly: it is no qa_ops slot)
 * and its thread pool: products against a double reference over shapes that cross every blocking edge (MR, NR,
 * KC, NC, the few-row and column-split paths), all transposes, alpha / beta, bitwise equal without a stream and on
 * 1, 2, 3 threads; a row of a product does not depend on the rows computed with it; then a whole model: forward,
 * forward_backward (LoRA grads, dropout, padding, packed segments) and the inference forward of the first fixture
 * model, 1 thread vs 3 threads. A stream made with qa_stream_opts.threads = n starts n - 1 pool threads (the caller
 * is the n-th), whatever else runs. Every op on its own, on every backend and thread count: tests/test_ops.c. */
#include "kernels/ops.h"
#include "kernels/cpu/cpu_internal.h"
#include "cpu_stream.h"
#include "model/model.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const qa_ops *O;
enum { NS = 4 };
static qa_stream *SS[NS]; /* NULL, 1, 2, 3 threads */

static uint64_t rng = 777;
static float *rvec(size_t n, float s) { return qt_rvec(&rng, n, s); }
static uint16_t *tobf16(float *w, size_t n) { /* w rounded to bf16 in place; returns the bf16 copy */
    uint16_t *b = qa_malloc(2 * (n ? n : 1));
    for (size_t i = 0; i < n; i++) { b[i] = qa_f32_to_bf16(w[i]); w[i] = qa_bf16_to_f32(b[i]); }
    return b;
}

/* ---- gemm: every transpose, alpha / beta, against double; bitwise equal over the streams -------- */
static void test_gemm_case(int M, int N, int K, int ta, int tb, float alpha, float beta) {
    const int lda = ta ? M + 3 : K + 1, ldb = tb ? K + 2 : N + 5, ldc = N + 7;
    float *A = rvec((size_t)(ta ? K : M) * lda, 1), *Bm = rvec((size_t)(tb ? N : K) * ldb, 1);
    float *C0 = rvec((size_t)M * ldc, 1);
    double *ref = qa_malloc(sizeof(double) * (size_t)M * N);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0;
            for (int k = 0; k < K; k++)
                acc += (double)(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
                       (tb ? Bm[(size_t)j * ldb + k] : Bm[(size_t)k * ldb + j]);
            ref[(size_t)i * N + j] = alpha * acc + (beta == 0 ? 0 : beta * C0[(size_t)i * ldc + j]);
        }
    float *C[NS];
    float *got = qa_malloc(sizeof(float) * (size_t)M * N);
    for (int s = 0; s < NS; s++) {
        C[s] = qt_fcopy(C0, (size_t)M * ldc);
        if (beta == 0) for (size_t i = 0; i < (size_t)M * ldc; i++) C[s][i] = NAN; /* beta 0: C is not read */
        qa_gemm(SS[s], ta, M, N, K, alpha, A, lda, (qa_gemm_b){Bm, QA_DT_F32, ldb, tb, NULL, 0}, beta, C[s], ldc);
    }
    for (int i = 0; i < M; i++) memcpy(got + (size_t)i * N, C[1] + (size_t)i * ldc, sizeof(float) * N);
    double e = qt_rel_err_f32_f64(got, ref, (size_t)M * N);
    int same = 1;
    for (int s = 0; s < NS; s++)
        for (int i = 0; i < M && same; i++)
            same = !memcmp(C[s] + (size_t)i * ldc, C[1] + (size_t)i * ldc, sizeof(float) * N);
    QT_CHECK(e < 2e-6 && same, "gemm [%d,%d,%d] ta=%d tb=%d alpha %.1f beta %.1f: rel err %.2e, streams bitwise equal %d",
             M, N, K, ta, tb, alpha, beta, e, same);
    for (int s = 0; s < NS; s++) free(C[s]);
    free(A); free(Bm); free(C0); free(ref); free(got);
}

/* ---- a row of a product does not depend on the rows computed with it ----------------------------- */
static void test_row_independence(void) {
    const int N = 113, K = 600, M = 1300;
    float *x = rvec((size_t)N * K, 1), *wf = rvec((size_t)M * K, 0.1f), *bias = rvec(M, 1);
    uint16_t *wb = tobf16(wf, (size_t)M * K);
    float *all = qa_malloc(sizeof(float) * (size_t)N * M), *part = qa_malloc(sizeof(float) * (size_t)N * M);
    O->linear_fwd(SS[2], N, K, M, 0, x, (qa_weight){QA_DT_BF16, wb}, (qa_weight){QA_DT_F32, bias}, all);
    const int groups[] = {1, 2, 3, 4, 5, 7, 6, 13, 40, 32};
    int r0 = 0, gi = 0;
    while (r0 < N) {
        int g = groups[gi++ % 10];
        if (g > N - r0) g = N - r0;
        O->linear_fwd(SS[gi % NS], g, K, M, 0, x + (size_t)r0 * K, (qa_weight){QA_DT_BF16, wb},
                      (qa_weight){QA_DT_F32, bias}, part + (size_t)r0 * M);
        r0 += g;
    }
    QT_CHECK(!memcmp(all, part, sizeof(float) * (size_t)N * M),
             "linear_fwd: %d rows at once == in groups of 1..40 rows on mixed streams, bitwise", N);
    /* general beta: full and partial tiles round the same way */
    float *c0 = rvec((size_t)N * M, 1), *c1 = qt_fcopy(c0, (size_t)N * M), *c2 = qt_fcopy(c0, (size_t)N * M);
    const qa_gemm_b wt = {wf, QA_DT_F32, K, 1, NULL, 0};
    qa_gemm(SS[3], 0, N, M, K, 0.5f, x, K, wt, -0.75f, c1, M);
    for (int i = 0; i < N; i++) qa_gemm(SS[1], 0, 1, M, K, 0.5f, x + (size_t)i * K, K, wt, -0.75f, c2 + (size_t)i * M, M);
    QT_CHECK(!memcmp(c1, c2, sizeof(float) * (size_t)N * M), "gemm alpha 0.5 beta -0.75: all rows == row by row, bitwise");
    free(x); free(wf); free(bias); free(wb); free(all); free(part); free(c0); free(c1); free(c2);
}

/* ---- a whole model: 1 thread vs 3 threads ------------------------------------------------------- */

typedef struct { double loss; float *grads, *logits, *infer; size_t ng, nl, ni; } model_run;

static int run_model(const char *dir, int threads, model_run *r) {
    qa_err e = {0};
    qa_model m;
    const qa_stream_opts so = {.threads = threads};
    if (qa_model_load_opts(&m, dir, NULL, &so, &e)) { printf("  load: %s\n", e.msg); return -1; }
    const int B = 3, T = 70, N = B * T, V = m.cfg.vocab;
    int32_t *ids = qa_malloc(sizeof(int32_t) * N), *mask = qa_malloc(sizeof(int32_t) * N),
            *seg = qa_malloc(sizeof(int32_t) * N), *pos = qa_malloc(sizeof(int32_t) * N),
            *lab = qa_malloc(sizeof(int32_t) * N), *len = qa_malloc(sizeof(int32_t) * B);
    for (int i = 0; i < N; i++) {
        ids[i] = (int32_t)((i * 131 + 7) % V);
        mask[i] = !(i / T == 1 && i % T >= T - 9);
        seg[i] = i / T == 2 ? (i % T) / 30 : 0;
        pos[i] = i / T == 2 ? (i % T) % 30 : i % T;
        lab[i] = (i % T < 10 || !mask[i]) ? -100 : ids[i];
    }
    for (int b = 0; b < B; b++) len[b] = T - 3 * b;
    qa_lora l;
    int rc = qa_lora_init(&l, &m, QA_LORA_MASK_ALL, 4, 8.0f, 0.1f, &e);
    if (!rc) qa_lora_init_params(&l, 5);
    for (size_t i = 0; !rc && i < l.n_params; i++) l.params[i] += 0.01f * (float)((i * 7) % 13); /* B != 0 */
    qa_acts a;
    if (!rc) rc = qa_acts_alloc(&a, &m, &l, B, T, QA_ACTS_TRAIN, 50, &e);
    qa_batch b = {B, T, ids, mask, pos, seg, lab};
    qa_train_opts to = {.grad_scale = 1.0f, .dropout_key = 1234, .want_embed_grad = 1};
    qa_loss out;
    if (!rc) rc = qa_model_forward_backward(&m, &l, &a, &b, &to, &out, &e);
    if (!rc) {
        r->loss = out.loss;
        r->ng = l.n_params + (size_t)N * m.cfg.hidden;
        r->grads = qa_malloc(sizeof(float) * r->ng);
        memcpy(r->grads, l.grads, sizeof(float) * l.n_params);
        memcpy(r->grads + l.n_params, a.d_embeds, sizeof(float) * (size_t)N * m.cfg.hidden);
        int32_t rows[N / 5];
        for (int i = 0; i < N / 5; i++) rows[i] = 5 * i + 2;
        qa_fwd_opts fo = {QA_LOGITS_ROWS, rows, N / 5};
        rc = qa_model_forward(&m, &l, &a, &(qa_batch){B, T, ids, mask, NULL, NULL, NULL}, &fo, &e);
        r->nl = (size_t)a.n_logit_rows * V;
        r->logits = rc ? NULL : qt_fcopy(a.logits, r->nl);
    }
    if (!rc) {
        qa_infer_ws w;
        rc = qa_infer_ws_alloc(&w, &m, &l, B, N, V, &e);
        r->ni = (size_t)B * V;
        r->infer = qa_malloc(sizeof(float) * r->ni);
        qa_infer_batch ib = {B, T, ids, len, NULL};
        if (!rc) rc = qa_model_infer(&m, &l, &w, NULL, &ib, NULL, NULL, r->infer, &e);
        /* full rows: the inference forward (last layer on the last positions only) == the training graph's
         * forward, bitwise */
        if (!rc) {
            for (int i = 0; i < B; i++) len[i] = T;
            float *inf = qa_malloc(sizeof(float) * r->ni);
            qa_fwd_opts fl = {QA_LOGITS_LAST, NULL, 0};
            rc = qa_model_infer(&m, &l, &w, NULL, &ib, NULL, NULL, inf, &e);
            if (!rc) rc = qa_model_forward(&m, &l, &a, &(qa_batch){B, T, ids, NULL, NULL, NULL, NULL}, &fl, &e);
            if (!rc)
                QT_CHECK(a.n_logit_rows == B && !memcmp(inf, a.logits, sizeof(float) * r->ni),
                         "%d threads: qa_model_infer == qa_model_forward (last positions), bitwise", threads);
            free(inf);
        }
        if (!rc) qa_infer_ws_free(&w);
    }
    if (rc) printf("  model run: %s\n", e.msg);
    qa_acts_free(&a);
    qa_lora_free(&l);
    qa_model_free(&m);
    free(ids); free(mask); free(seg); free(pos); free(lab); free(len);
    return rc;
}

static void test_model_threads(void) {
    char dir[1200];
    const char *root = qt_env_or("QALIGN_FIXTURES", getenv("QALIGN_FIXTURES_DEFAULT"));
    if (!root || qt_first_fixture(root, dir, sizeof dir)) {
        QT_CHECK(0, "no fixture model under %s (QALIGN_FIXTURES)", root ? root : "(unset)");
        return;
    }
    model_run r1 = {0}, r3 = {0};
    int ok = !run_model(dir, 1, &r1) && !run_model(dir, 3, &r3);
    QT_CHECK(ok, "model runs on 1 and 3 threads (%s)", dir);
    if (!ok) return;
    QT_CHECK(r1.loss == r3.loss && !memcmp(r1.grads, r3.grads, sizeof(float) * r1.ng),
             "forward_backward (LoRA all modules, dropout, padding, segments): loss %.9f vs %.9f and every LoRA / "
             "embedding gradient bitwise equal on 1 and 3 threads", r1.loss, r3.loss);
    QT_CHECK(r1.nl == r3.nl && !memcmp(r1.logits, r3.logits, sizeof(float) * r1.nl),
             "forward logits bitwise equal on 1 and 3 threads");
    QT_CHECK(!memcmp(r1.infer, r3.infer, sizeof(float) * r1.ni), "inference forward bitwise equal on 1 and 3 threads");
    free(r1.grads); free(r3.grads); free(r1.logits); free(r3.logits); free(r1.infer); free(r3.infer);
}

/* threads of this process (Linux: /proc/self/task) */
static int process_threads(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));) n += de->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

int main(void) {
    O = qa_ops_cpu();
    for (int s = 1; s < NS; s++) {
        const int before = process_threads();
        SS[s] = qt_cpu_stream(s);
        QT_CHECK(process_threads() - before == s - 1, "a stream of %d threads starts %d pool threads (started %d)", s,
                 s - 1, process_threads() - before);
    }
    /* shapes across MR (6), NR (16), KC (256), NC (3072), the few-row (<= 4), column-split and row-split paths */
    const int shapes[][3] = {{1, 1, 1}, {3, 17, 5}, {4, 700, 300}, {5, 33, 257}, {7, 1100, 40}, {13, 9, 600},
                             {95, 48, 31}, {96, 3100, 70}, {150, 161, 513}, {301, 37, 9}, {97, 16, 1000}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int t = 0; t < 4; t++)
            test_gemm_case(shapes[i][0], shapes[i][1], shapes[i][2], t & 1, t >> 1, t == 3 ? 0.5f : 1.0f,
                           t == 0 ? 0.0f : t == 1 ? 1.0f : -0.75f);
    test_row_independence();
    test_model_threads();
    for (int s = 1; s < NS; s++) O->stream_destroy(SS[s]);
    return qt_finish();
}
