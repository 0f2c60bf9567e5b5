/* test_cpu_kernels.c — the CPU backend's blocked GEMM and thread pool: products against a double
 * reference over shapes that cross every blocking edge (MR, NR, KC, NC, the few-row and column-split
 * paths), BF16 and F32 operands, all transposes, alpha / beta; the fused ops against the unfused ones
 * (bitwise); and every op run on streams of 1, 2 and 3 threads and without a stream: results must be
 * bitwise identical (work is split so that each output is computed by one thread in a fixed order).
 * Then the same for a whole model: forward, forward_backward (LoRA grads, dropout, padding, packed
 * segments) and the inference forward of the first fixture model, 1 thread vs 3 threads. A stream made with
 * qa_stream_opts.threads = n starts n-1 pool threads (the caller is the n-th), whatever else runs. */
#include "kernels/ops.h"
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
static const char *SNAME[NS] = {"no stream", "1 thread", "2 threads", "3 threads"};

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
        O->gemm(SS[s], ta, tb, M, N, K, alpha, A, lda, Bm, ldb, beta, C[s], ldc);
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

/* ---- linear fwd / bwd with BF16 and F32 weights over the product paths -------------------------- */
static void test_linear_case(int N, int K, int M) {
    size_t nw = (size_t)M * K;
    float *x = rvec((size_t)N * K, 1), *wf = rvec(nw, 0.1f), *b = rvec(M, 1), *dy = rvec((size_t)N * M, 1);
    uint16_t *wb = tobf16(wf, nw);
    double *ref = qa_malloc(sizeof(double) * (size_t)N * (M > K ? M : K));
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            double acc = b[m];
            for (int k = 0; k < K; k++) acc += (double)x[(size_t)n * K + k] * wf[(size_t)m * K + k];
            ref[(size_t)n * M + m] = acc;
        }
    float *y[NS], *yf = qa_malloc(sizeof(float) * (size_t)N * M);
    int same = 1;
    for (int s = 0; s < NS; s++) {
        y[s] = qa_malloc(sizeof(float) * (size_t)N * M);
        O->linear_fwd(SS[s], N, K, M, 0, x, (qa_weight){QA_DT_BF16, wb}, (qa_weight){QA_DT_F32, b}, y[s]);
        same &= !memcmp(y[s], y[0], sizeof(float) * (size_t)N * M);
    }
    O->linear_fwd(SS[2], N, K, M, 0, x, (qa_weight){QA_DT_F32, wf}, (qa_weight){QA_DT_F32, b}, yf);
    double e1 = qt_rel_err_f32_f64(y[0], ref, (size_t)N * M), e2 = qt_rel_err_f32_f64(yf, ref, (size_t)N * M);
    QT_CHECK(e1 < 2e-6 && e2 < 2e-6 && same && !memcmp(yf, y[0], sizeof(float) * (size_t)N * M),
             "linear fwd [%d,%d]x[%d,%d]ᵀ: bf16 %.2e f32 %.2e, streams bitwise equal %d, bf16 == f32 view", N, K, M, K,
             e1, e2, same);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double acc = 0;
            for (int m = 0; m < M; m++) acc += (double)dy[(size_t)n * M + m] * wf[(size_t)m * K + k];
            ref[(size_t)n * K + k] = acc;
        }
    float *dx[NS];
    same = 1;
    for (int s = 0; s < NS; s++) {
        dx[s] = qa_malloc(sizeof(float) * (size_t)N * K);
        O->linear_bwd(SS[s], N, K, M, 0, dy, (qa_weight){QA_DT_BF16, wb}, dx[s]);
        same &= !memcmp(dx[s], dx[0], sizeof(float) * (size_t)N * K);
    }
    e1 = qt_rel_err_f32_f64(dx[0], ref, (size_t)N * K);
    QT_CHECK(e1 < 2e-6 && same, "linear bwd [%d,%d]x[%d,%d]: rel err %.2e, streams bitwise equal %d", N, M, M, K, e1,
             same);
    for (int s = 0; s < NS; s++) { free(y[s]); free(dx[s]); }
    free(x); free(wf); free(b); free(dy); free(wb); free(ref); free(yf);
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
    O->gemm(SS[3], 0, 1, N, M, K, 0.5f, x, K, wf, K, -0.75f, c1, M);
    for (int i = 0; i < N; i++) O->gemm(SS[1], 0, 1, 1, M, K, 0.5f, x + (size_t)i * K, K, wf, K, -0.75f, c2 + (size_t)i * M, M);
    QT_CHECK(!memcmp(c1, c2, sizeof(float) * (size_t)N * M), "gemm alpha 0.5 beta -0.75: all rows == row by row, bitwise");
    free(x); free(wf); free(bias); free(wb); free(all); free(part); free(c0); free(c1); free(c2);
}

/* ---- fused ops == unfused ops, bitwise ---------------------------------------------------------- */
static void test_fused(int N) {
    const int K = 72, Ms[3] = {40, 17, 33}, F = 90, D = 24;
    float *x = rvec((size_t)N * K, 1);
    qa_weight W[3], Bs[3];
    float *y1[3], *y2[3];
    for (int i = 0; i < 3; i++) {
        float *wf = rvec((size_t)Ms[i] * K, 0.2f);
        W[i] = (qa_weight){QA_DT_BF16, tobf16(wf, (size_t)Ms[i] * K)};
        free(wf);
        Bs[i] = i == 1 ? (qa_weight){QA_DT_F32, rvec(Ms[i], 1)} : (qa_weight){0};
        y1[i] = qa_malloc(sizeof(float) * (size_t)N * Ms[i]);
        y2[i] = qa_malloc(sizeof(float) * (size_t)N * Ms[i]);
    }
    int same = 1;
    for (int s = 0; s < NS; s++) {
        O->linear_multi_fwd(SS[s], N, K, 3, x, Ms, W, Bs, y1);
        for (int i = 0; i < 3; i++) {
            O->linear_fwd(SS[1], N, K, Ms[i], 0, x, W[i], Bs[i], y2[i]);
            same &= !memcmp(y1[i], y2[i], sizeof(float) * (size_t)N * Ms[i]);
        }
    }
    QT_CHECK(same, "linear_multi_fwd (%d rows, outputs 40/17/33, one with bias) == linear_fwd each, bitwise, all streams",
             N);
    float *g = rvec((size_t)N * F, 3), *u = rvec((size_t)N * F, 1), *act = qa_malloc(sizeof(float) * (size_t)N * F);
    float *wdf = rvec((size_t)D * F, 0.2f);
    qa_weight Wd = {QA_DT_BF16, tobf16(wdf, (size_t)D * F)};
    float *r0 = rvec((size_t)N * D, 1), *ra = qt_fcopy(r0, (size_t)N * D), *rb = qa_malloc(sizeof(float) * (size_t)N * D);
    O->swiglu_fwd(SS[1], (size_t)N * F, g, u, act);
    O->linear_fwd(SS[1], N, F, D, 1, act, Wd, (qa_weight){0}, ra);
    same = 1;
    for (int s = 0; s < NS; s++) {
        memcpy(rb, r0, sizeof(float) * (size_t)N * D);
        O->swiglu_linear_fwd(SS[s], N, F, D, 1, g, u, Wd, (qa_weight){0}, rb);
        same &= !memcmp(ra, rb, sizeof(float) * (size_t)N * D);
    }
    QT_CHECK(same, "swiglu_linear_fwd (%d rows, beta 1) == swiglu_fwd + linear_fwd, bitwise, all streams", N);
    for (int i = 0; i < 3; i++) { free((void *)W[i].data); free((void *)Bs[i].data); free(y1[i]); free(y2[i]); }
    free(x); free(g); free(u); free(act); free(wdf); free((void *)Wd.data); free(r0); free(ra); free(rb);
}

/* ---- every other op: bitwise equal over the streams --------------------------------------------- */
#define SAME_OVER_STREAMS(what, n, out, ...)                                                        \
    do {                                                                                            \
        float *ref_ = NULL;                                                                         \
        int same_ = 1;                                                                              \
        for (int s_ = 0; s_ < NS; s_++) {                                                           \
            qa_stream *S = SS[s_];                                                                  \
            __VA_ARGS__;                                                                            \
            if (!ref_) ref_ = qt_fcopy(out, n);                                                         \
            else if (memcmp(ref_, out, sizeof(float) * (n))) { same_ = 0; printf("  %s differs on %s\n", what, SNAME[s_]); } \
        }                                                                                           \
        QT_CHECK(same_, "%s: bitwise equal without a stream and on 1, 2, 3 threads", what);         \
        free(ref_);                                                                                 \
    } while (0)

static void test_ops_threads(void) {
    const int N = 301, D = 40, H = 4, Hk = 2, hd = 8, V = 1111, Bt = 3, T = 130;
    float *x = rvec((size_t)N * D, 2), *w = rvec(D, 1), *y = qa_malloc(sizeof(float) * (size_t)N * D);
    float *rstd = qa_malloc(sizeof(float) * N), *dy = rvec((size_t)N * D, 1), *dx = qa_malloc(sizeof(float) * (size_t)N * D);
    SAME_OVER_STREAMS("rmsnorm_fwd", (size_t)N * D, y, O->rmsnorm_fwd(S, N, D, 1e-5f, x, (qa_weight){QA_DT_F32, w}, y, rstd));
    SAME_OVER_STREAMS("rmsnorm_bwd", (size_t)N * D, dx,
                      memcpy(dx, x, sizeof(float) * (size_t)N * D);
                      O->rmsnorm_bwd(S, N, D, 0.5f, x, (qa_weight){QA_DT_F32, w}, rstd, dy, dx));
    /* rope: positions beyond the table's first size, repeated positions */
    int32_t *pos = qa_malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) pos[i] = (i * 13) % 5000;
    float *qx = rvec((size_t)N * H * hd, 1), *qr = qa_malloc(sizeof(float) * (size_t)N * H * hd);
    SAME_OVER_STREAMS("rope_fwd + rope_bwd", (size_t)N * H * hd, qr,
                      memcpy(qr, qx, sizeof(float) * (size_t)N * H * hd);
                      O->rope_fwd(S, N, H, hd, 10000.0f, pos, qr); O->rope_bwd(S, N, H, hd, 500000.0f, pos, qr));
    /* swiglu: a length that is not a multiple of the vector width or of the thread split */
    const size_t ns = 100003;
    float *g = rvec(ns, 6), *u = rvec(ns, 1), *o = qa_malloc(sizeof(float) * ns), *dg = qa_malloc(sizeof(float) * ns),
          *du = qa_malloc(sizeof(float) * ns), *both = qa_malloc(sizeof(float) * 2 * ns);
    SAME_OVER_STREAMS("swiglu_fwd", ns, o, O->swiglu_fwd(S, ns, g, u, o));
    SAME_OVER_STREAMS("swiglu_bwd", 2 * ns, both, O->swiglu_bwd(S, ns, g, u, o, dg, du);
                      memcpy(both, dg, sizeof(float) * ns); memcpy(both + ns, du, sizeof(float) * ns));
    /* cross-entropy */
    const int Mr = 37;
    float *lg = rvec((size_t)Mr * V, 8), *loss = qa_malloc(sizeof(float) * 2 * Mr), *dl = qa_malloc(sizeof(float) * (size_t)Mr * V);
    int32_t *tg = qa_malloc(sizeof(int32_t) * Mr);
    for (int i = 0; i < Mr; i++) tg[i] = (i * 101) % V;
    SAME_OVER_STREAMS("cross_entropy_fwd", 2 * (size_t)Mr, loss, O->cross_entropy_fwd(S, Mr, V, lg, tg, loss, loss + Mr));
    SAME_OVER_STREAMS("cross_entropy_bwd", (size_t)Mr * V, dl, O->cross_entropy_bwd(S, Mr, V, 0.25f, lg, tg, loss + Mr, dl));
    /* attention: padding, window, packed segments; forward and backward */
    int32_t *mask = qa_malloc(sizeof(int32_t) * Bt * T), *seg = qa_malloc(sizeof(int32_t) * Bt * T);
    for (int i = 0; i < Bt * T; i++) { mask[i] = !(i / T == 2 && i % T > T - 20); seg[i] = (i % T) / 50; }
    const size_t nq = (size_t)Bt * T * H * hd, nk = (size_t)Bt * T * Hk * hd;
    float *q = rvec(nq, 1), *k = rvec(nk, 1), *v = rvec(nk, 1), *ao = qa_malloc(sizeof(float) * nq),
          *lse = qa_malloc(sizeof(float) * Bt * H * T), *dout = rvec(nq, 1);
    float *grads = qa_malloc(sizeof(float) * (nq + 2 * nk));
    for (int variant = 0; variant < 3; variant++) {
        qa_attn_desc d = {Bt, T, H, Hk, hd, variant == 1 ? 37 : 0, 0.35f, variant ? mask : NULL, variant == 2 ? seg : NULL};
        char what[96];
        snprintf(what, sizeof what, "attention fwd+bwd (%s)", variant == 0 ? "causal" : variant == 1 ? "window, padding" : "segments, padding");
        SAME_OVER_STREAMS(what, nq + 2 * nk, grads, O->attention_fwd(S, &d, q, k, v, ao, lse);
                          O->attention_bwd(S, &d, q, k, v, ao, lse, dout, grads, grads + nq, grads + nq + nk);
                          for (size_t i = 0; i < 16; i++) grads[i] += ao[i * 97 % nq]);
    }
    /* single-query attention == the rows of the full attention, bitwise */
    {
        const int R = 7;
        int32_t qrow[7] = {0, 5, T - 1, T + 37, 2 * T + 64, 2 * T + 63, 3 * T - 1};
        float *qr7 = qa_malloc(sizeof(float) * R * H * hd), *or7 = qa_malloc(sizeof(float) * R * H * hd);
        for (int variant = 0; variant < 3; variant++) {
            qa_attn_desc d = {Bt, T, H, Hk, hd, variant == 1 ? 37 : 0, 0.35f, variant ? mask : NULL, variant == 2 ? seg : NULL};
            O->attention_fwd(SS[1], &d, q, k, v, ao, lse);
            for (int r = 0; r < R; r++) memcpy(qr7 + (size_t)r * H * hd, q + (size_t)qrow[r] * H * hd, sizeof(float) * H * hd);
            int same = 1;
            for (int st = 0; st < NS; st++) {
                O->attention_rows_fwd(SS[st], &d, R, qrow, qr7, k, v, or7);
                for (int r = 0; r < R; r++) same &= !memcmp(or7 + (size_t)r * H * hd, ao + (size_t)qrow[r] * H * hd, sizeof(float) * H * hd);
            }
            QT_CHECK(same, "attention_rows_fwd == rows of attention_fwd (%s), bitwise, all streams",
                     variant == 0 ? "causal" : variant == 1 ? "window, padding" : "segments, padding");
        }
        free(qr7); free(or7);
    }
    /* lora with dropout, adamw, big copies */
    const int r = 8, Kl = 40, Ml = 56;
    float *A = rvec((size_t)r * Kl, 1), *Bl = rvec((size_t)Ml * r, 1), *xa = qa_malloc(sizeof(float) * N * r);
    float *xl = rvec((size_t)N * Kl, 1), *yl = qa_malloc(sizeof(float) * (size_t)N * Ml), *dyl = rvec((size_t)N * Ml, 1);
    float *lg2 = qa_malloc(sizeof(float) * ((size_t)r * Kl + (size_t)Ml * r + (size_t)N * Kl));
    SAME_OVER_STREAMS("lora_fwd + lora_bwd (dropout 0.1)", (size_t)r * Kl + (size_t)Ml * r + (size_t)N * Kl, lg2,
                      memset(yl, 0, sizeof(float) * (size_t)N * Ml); memset(lg2, 0, sizeof(float) * ((size_t)r * Kl + (size_t)Ml * r + (size_t)N * Kl));
                      O->lora_fwd(S, N, Kl, Ml, r, 2.0f, 0.1f, 99, xl, A, Bl, xa, yl);
                      O->lora_bwd(S, N, Kl, Ml, r, 2.0f, 0.1f, 99, xl, A, Bl, xa, dyl, lg2, lg2 + r * Kl, lg2 + r * Kl + Ml * r));
    const size_t na = 300001;
    float *p0 = rvec(na, 1), *pg = rvec(na, 1), *pm = qa_malloc(sizeof(float) * na * 3);
    SAME_OVER_STREAMS("adamw_step x2", 3 * na, pm, memset(pm, 0, sizeof(float) * na * 3); memcpy(pm, p0, sizeof(float) * na);
                      O->adamw_step(S, na, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, pm, pg, pm + na, pm + 2 * na);
                      O->adamw_step(S, na, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 2, pm, pg, pm + na, pm + 2 * na));
    float *big = qa_malloc(sizeof(float) * 2 * na);
    SAME_OVER_STREAMS("memcpy / memset0 (1.2 MB)", 2 * na, big, O->memset0(S, big, sizeof(float) * 2 * na);
                      O->memcpy_d2d(S, big + 7, p0, sizeof(float) * (na - 11)));
    free(x); free(w); free(y); free(rstd); free(dy); free(dx); free(pos); free(qx); free(qr);
    free(g); free(u); free(o); free(dg); free(du); free(both); free(lg); free(loss); free(dl); free(tg);
    free(mask); free(seg); free(q); free(k); free(v); free(ao); free(lse); free(dout); free(grads);
    free(A); free(Bl); free(xa); free(xl); free(yl); free(dyl); free(lg2); free(p0); free(pg); free(pm); free(big);
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
    qa_train_opts to = {1.0f, 1234, 1};
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
    qa_err e = {0};
    for (int s = 1; s < NS; s++) {
        const qa_stream_opts so = {.threads = s};
        const int before = process_threads();
        QT_CHECK(O->stream_create(&SS[s], &so, &e) == 0, "cpu stream with %d threads", s);
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
    const int lin[][3] = {{2, 64, 5000}, {4, 520, 3500}, {9, 300, 777}, {120, 264, 40}, {200, 1030, 300}, {513, 96, 3100}};
    for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++) test_linear_case(lin[i][0], lin[i][1], lin[i][2]);
    test_row_independence();
    test_fused(3);
    test_fused(250);
    test_ops_threads();
    test_model_threads();
    for (int s = 1; s < NS; s++) O->stream_destroy(SS[s]);
    return qt_finish();
}
