/* test_nf4.c — NF4 4-bit weights in the kernels (kernels/nf4.h, kernels/cpu/gemm.c).
 *
 *   test_nf4 ops            the format (code order, nibble order, block scale) on constructed blocks, and every
 *                           op that multiplies by a frozen weight (linear_fwd / linear_bwd / linear_multi_fwd /
 *                           swiglu_linear_fwd) with an NF4 weight: bitwise equal to the same op with the F32
 *                           dequantized copy, over the GEMM's paths (few rows, column split, row split, K-blocks,
 *                           rows that straddle 64-blocks, runs that are not 8-aligned) on 1, 2 and 3 threads.
 *   test_nf4 quantize IN OUT  every F32/BF16 tensor of IN.safetensors (numel % 64 == 0) quantized by qalign into
 *                           OUT.safetensors: <name>.codes (U8), .absmax (F32), .dequant (F32), and the double-
 *                           quantized absmax .dq_absmax (U8), .dq_nested_absmax (F32), .dq_offset (F32 [1]),
 *                           .dq_decoded (F32), and the tables table.nf4_code, table.dq_code. tests/nf4_bnb.py
 *                           compares them with bitsandbytes bit for bit. */
#include "kernels/nf4.h"
#include "kernels/ops.h"
#include "io/safetensors.h"
#include "common/qa_mem.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const qa_ops *O;
enum { NS = 4 };
static qa_stream *SS[NS]; /* NULL, 1, 2, 3 threads */
static uint64_t rng = 4242;

/* an NF4 weight [M, K] quantized from random values, and its dequantized F32 copy */
typedef struct nf4w {
    void *blk;     /* codes then absmax */
    float *deq;    /* [M*K] */
} nf4w;
static nf4w make_w(int M, int K, float scale) {
    size_t n = (size_t)M * K;
    float *w = qt_rvec(&rng, n, scale);
    for (size_t i = 0; i < n; i += 97) w[i] *= 4; /* some outliers: varied block scales */
    nf4w r;
    r.blk = qa_aligned_alloc(64, qa_nf4_bytes(n));
    qa_nf4_quantize(w, QA_DT_F32, n, r.blk, (float *)qa_nf4_absmax(r.blk, n));
    r.deq = qa_malloc(sizeof(float) * n);
    qa_nf4_dequantize(r.blk, qa_nf4_absmax(r.blk, n), n, r.deq);
    free(w);
    return r;
}
static void free_w(nf4w *w) { free(w->blk); free(w->deq); }

static int same(const float *a, const float *b, size_t n) { return !memcmp(a, b, sizeof(float) * n); }

/* ---- the format on constructed blocks -------------------------------------------------------------- */
static void test_format(void) {
    /* x = code[q] * 2.5 for a known pattern of q (q = 15 present: absmax = 2.5, x / absmax = code[q]) */
    enum { n = 128 };
    float x[n], d[n];
    uint8_t q[n], codes[n / 2];
    float am[2];
    for (int i = 0; i < n; i++) {
        q[i] = (uint8_t)((i * 7 + i / 16) % 16);
        if (i % 64 == 5) q[i] = 15;
        x[i] = qa_nf4_code[q[i]] * (i < 64 ? 2.5f : 0.125f);
    }
    qa_nf4_quantize(x, QA_DT_F32, n, codes, am);
    int ok = am[0] == 2.5f && am[1] == 0.125f;
    for (int i = 0; i < n && ok; i += 2) ok = codes[i / 2] == (uint8_t)(q[i] << 4 | q[i + 1]);
    QT_CHECK(ok, "NF4: absmax per 64-block, code of x = code[q] * absmax is q, element 2i in the high nibble");
    qa_nf4_dequantize(codes, am, n, d);
    QT_CHECK(same(d, x, n), "NF4: dequantize(quantize(code[q] * a)) == code[q] * a exactly");
    ok = 1;
    for (int i = 0; i < n; i++) ok &= qa_nf4_get(codes, am, i) == d[i];
    QT_CHECK(ok, "NF4: qa_nf4_get == qa_nf4_dequantize");
    /* BF16 input quantizes like its F32 value; zero blocks give code 7 (0.0) and absmax 0 */
    uint16_t xb[n];
    float xr[n];
    for (int i = 0; i < n; i++) { xb[i] = qa_f32_to_bf16(x[i] * 1.37f); xr[i] = qa_bf16_to_f32(xb[i]); }
    uint8_t c1[n / 2], c2[n / 2];
    float a1[2], a2[2];
    qa_nf4_quantize(xb, QA_DT_BF16, n, c1, a1);
    qa_nf4_quantize(xr, QA_DT_F32, n, c2, a2);
    QT_CHECK(!memcmp(c1, c2, sizeof c1) && !memcmp(a1, a2, sizeof a1), "NF4: BF16 input == its F32 value");
    memset(x, 0, sizeof x);
    qa_nf4_quantize(x, QA_DT_F32, 64, c1, a1);
    ok = a1[0] == 0;
    for (int i = 0; i < 32; i++) ok &= c1[i] == 0x77;
    QT_CHECK(ok, "NF4: an all-zero block has absmax 0 and code 7 (0.0)");
    /* quantization error: |x - deq| <= absmax * half the widest gap of the table (0.1519...) */
    float *r = qt_rvec(&rng, 64 * 50, 3.0f), *rd = qa_malloc(sizeof(float) * 64 * 50);
    uint8_t *rc = qa_malloc(32 * 50);
    float ra[50];
    qa_nf4_quantize(r, QA_DT_F32, 64 * 50, rc, ra);
    qa_nf4_dequantize(rc, ra, 64 * 50, rd);
    double worst = 0;
    for (int i = 0; i < 64 * 50; i++) worst = fmax(worst, fabs(r[i] - rd[i]) / ra[i / 64]);
    double gap = 0;
    for (int i = 0; i < 15; i++) gap = fmax(gap, qa_nf4_code[i + 1] - qa_nf4_code[i]);
    QT_CHECK(worst <= gap / 2 + 1e-6, "NF4: error / absmax %.4f <= half the widest code gap %.4f", worst, gap / 2);
    /* double quantization: decoding the 8-bit absmax lands within one code step of the fp32 absmax */
    uint8_t q2[50];
    float a2n[1], dec[50];
    float off = qa_nf4_dq_offset(ra, 50);
    qa_nf4_dq_quantize(ra, 50, off, q2, a2n);
    qa_nf4_dq_decode(q2, a2n, qa_nf4_dq_code, off, 50, dec);
    worst = 0;
    for (int i = 0; i < 50; i++) worst = fmax(worst, fabs(dec[i] - ra[i]) / a2n[0]);
    QT_CHECK(worst < 0.02, "NF4 double quant: |decoded - absmax| / nested absmax = %.4f < 0.02", worst);
    free(r); free(rd); free(rc);
}

/* ---- ops with NF4 weights == ops with the dequantized F32 weights, bitwise ---------------------- */
static void test_linear(int N, int K, int M) {
    nf4w w = make_w(M, K, 0.1f);
    float *x = qt_rvec(&rng, (size_t)N * K, 1), *b = qt_rvec(&rng, M, 1), *dy = qt_rvec(&rng, (size_t)N * M, 1);
    float *y4 = qa_malloc(sizeof(float) * (size_t)N * M), *yf = qa_malloc(sizeof(float) * (size_t)N * M);
    float *dx4 = qa_malloc(sizeof(float) * (size_t)N * K), *dxf = qa_malloc(sizeof(float) * (size_t)N * K);
    const qa_weight W4 = {QA_DT_NF4, w.blk}, WF = {QA_DT_F32, w.deq}, B = {QA_DT_F32, b};
    int eq_f = 1, eq_b = 1;
    for (int s = 0; s < NS; s++) {
        for (size_t i = 0; i < (size_t)N * M; i++) y4[i] = yf[i] = 0.5f;
        O->linear_fwd(SS[s], N, K, M, 0.25f, x, W4, B, y4);
        O->linear_fwd(SS[s], N, K, M, 0.25f, x, WF, B, yf);
        eq_f &= same(y4, yf, (size_t)N * M);
        O->linear_bwd(SS[s], N, K, M, 0, dy, W4, dx4);
        O->linear_bwd(SS[s], N, K, M, 0, dy, WF, dxf);
        eq_b &= same(dx4, dxf, (size_t)N * K);
    }
    /* against double on the dequantized weights */
    double num = 0, den = 0;
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            double acc = 0.125 + b[m];
            for (int k = 0; k < K; k++) acc += (double)x[(size_t)n * K + k] * w.deq[(size_t)m * K + k];
            num += (y4[(size_t)n * M + m] - acc) * (y4[(size_t)n * M + m] - acc);
            den += acc * acc;
        }
    QT_CHECK(eq_f && eq_b && sqrt(num / den) < 2e-6,
             "NF4 linear [N %d, K %d, M %d]: fwd == F32 dequantized %d, bwd == %d (4 streams), rel err vs double %.1e",
             N, K, M, eq_f, eq_b, sqrt(num / den));
    free(x); free(b); free(dy); free(y4); free(yf); free(dx4); free(dxf);
    free_w(&w);
}

static void test_multi(int N, int K, int F, int D) {
    nf4w q = make_w(F, K, 0.1f), k = make_w(F / 2, K, 0.1f), v = make_w(F, K, 0.1f), d = make_w(D, F, 0.1f);
    float *x = qt_rvec(&rng, (size_t)N * K, 1), *bias = qt_rvec(&rng, F, 1);
    const int Ms[3] = {F, F / 2, F};
    const qa_weight W4[3] = {{QA_DT_NF4, q.blk}, {QA_DT_NF4, k.blk}, {QA_DT_NF4, v.blk}};
    const qa_weight WF[3] = {{QA_DT_F32, q.deq}, {QA_DT_F32, k.deq}, {QA_DT_F32, v.deq}};
    const qa_weight Bs[3] = {{QA_DT_F32, NULL}, {QA_DT_F32, bias}, {QA_DT_F32, NULL}};
    float *y4[3], *yf[3];
    for (int i = 0; i < 3; i++) {
        y4[i] = qa_malloc(sizeof(float) * (size_t)N * Ms[i]);
        yf[i] = qa_malloc(sizeof(float) * (size_t)N * Ms[i]);
    }
    int eq_m = 1, eq_s = 1;
    float *r4 = qa_malloc(sizeof(float) * (size_t)N * D), *rf = qa_malloc(sizeof(float) * (size_t)N * D);
    for (int s = 0; s < NS; s++) {
        O->linear_multi_fwd(SS[s], N, K, 3, x, Ms, W4, Bs, y4);
        O->linear_multi_fwd(SS[s], N, K, 3, x, Ms, WF, Bs, yf);
        for (int i = 0; i < 3; i++) eq_m &= same(y4[i], yf[i], (size_t)N * Ms[i]);
        for (size_t i = 0; i < (size_t)N * D; i++) r4[i] = rf[i] = 1.0f;
        O->swiglu_linear_fwd(SS[s], N, F, D, 1, y4[0], y4[2], (qa_weight){QA_DT_NF4, d.blk}, (qa_weight){0}, r4);
        O->swiglu_linear_fwd(SS[s], N, F, D, 1, yf[0], yf[2], (qa_weight){QA_DT_F32, d.deq}, (qa_weight){0}, rf);
        eq_s &= same(r4, rf, (size_t)N * D);
    }
    QT_CHECK(eq_m && eq_s, "NF4 linear_multi_fwd [N %d, K %d -> %d, %d, %d] == F32 %d; swiglu_linear_fwd [F %d -> D %d] == F32 %d",
             N, K, F, F / 2, F, eq_m, F, D, eq_s);
    for (int i = 0; i < 3; i++) { free(y4[i]); free(yf[i]); }
    free(x); free(bias); free(r4); free(rf);
    free_w(&q); free_w(&k); free_w(&v); free_w(&d);
}

static int run_ops(void) {
    O = qa_ops_cpu();
    qa_err e = {0};
    SS[0] = NULL;
    for (int s = 1; s < NS; s++) {
        const qa_stream_opts so = {.threads = s};
        if (O->stream_create(&SS[s], &so, &e)) { printf("stream: %s\n", e.msg); return 1; }
    }
    test_format();
    /* (N, K, M): few rows (no packing), rows split, column split, K over several 256-blocks, rows of 160 or
     * 40 (64-blocks straddle rows; 8-runs aligned) and of 36 (8-runs not aligned: the scalar path) */
    static const int cases[][3] = {{1, 64, 48}, {3, 160, 64}, {4, 36, 32}, {7, 64, 96}, {20, 160, 64},
                                   {40, 40, 80}, {50, 36, 48}, {3, 64, 1100}, {60, 576, 1040}, {200, 320, 96},
                                   {130, 36, 112}, {257, 1024, 40}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_linear(cases[i][0], cases[i][1], cases[i][2]);
    test_multi(5, 64, 160, 64);
    test_multi(120, 64, 160, 64);
    test_multi(200, 128, 352, 96);
    for (int s = 1; s < NS; s++) O->stream_destroy(SS[s]);
    return qt_finish();
}

/* ---- quantize a safetensors file for the bitsandbytes comparison -------------------------------- */
static int run_quantize(const char *in, const char *out) {
    qa_err e = {0};
    qa_safetensors st;
    if (qa_st_open(&st, in, &e)) { qa_err_print(&e); return 1; }
    size_t cap = st.n_tensors * 7 + 2, ne = 0;
    qa_st_entry *ents = qa_calloc(cap, sizeof *ents);
    char **names = qa_calloc(cap, sizeof *names);
    void **bufs = qa_calloc(cap, sizeof *bufs);
    for (size_t i = 0; i < st.n_tensors; i++) {
        const qa_st_tensor *t = &st.tensors[i];
        if ((t->dtype != QA_DT_F32 && t->dtype != QA_DT_BF16) || t->numel % QA_NF4_BLOCK || !t->numel) continue;
        const size_t n = (size_t)t->numel, nb = n / QA_NF4_BLOCK, nb2 = (nb + QA_NF4_DQ_BLOCK - 1) / QA_NF4_DQ_BLOCK;
        uint8_t *codes = qa_malloc(n / 2), *q2 = qa_malloc(nb);
        float *am = qa_malloc(sizeof(float) * nb), *deq = qa_malloc(sizeof(float) * n);
        float *am2 = qa_malloc(sizeof(float) * nb2), *dec = qa_malloc(sizeof(float) * nb), *off = qa_malloc(sizeof(float));
        qa_nf4_quantize(t->data, t->dtype, n, codes, am);
        qa_nf4_dequantize(codes, am, n, deq);
        *off = qa_nf4_dq_offset(am, nb);
        qa_nf4_dq_quantize(am, nb, *off, q2, am2);
        qa_nf4_dq_decode(q2, am2, qa_nf4_dq_code, *off, nb, dec);
        struct { const char *suf; qa_dtype dt; int64_t len; void *p; } parts[] = {
            {"codes", QA_DT_U8, (int64_t)n / 2, codes}, {"absmax", QA_DT_F32, (int64_t)nb, am},
            {"dequant", QA_DT_F32, (int64_t)n, deq},     {"dq_absmax", QA_DT_U8, (int64_t)nb, q2},
            {"dq_nested_absmax", QA_DT_F32, (int64_t)nb2, am2}, {"dq_offset", QA_DT_F32, 1, off},
            {"dq_decoded", QA_DT_F32, (int64_t)nb, dec}};
        for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
            size_t len = strlen(t->name) + strlen(parts[k].suf) + 2;
            names[ne] = qa_malloc(len);
            snprintf(names[ne], len, "%s.%s", t->name, parts[k].suf);
            ents[ne] = (qa_st_entry){names[ne], parts[k].dt, 1, {parts[k].len}, parts[k].p, NULL};
            bufs[ne++] = parts[k].p;
        }
    }
    ents[ne++] = (qa_st_entry){"table.nf4_code", QA_DT_F32, 1, {16}, qa_nf4_code, NULL};
    ents[ne++] = (qa_st_entry){"table.dq_code", QA_DT_F32, 1, {256}, qa_nf4_dq_code, NULL};
    const char *meta[] = {"format", "pt", NULL};
    int rc = qa_st_write(out, ents, ne, meta, &e);
    ne -= 2;
    if (rc) qa_err_print(&e);
    else printf("quantized %zu tensors of %s into %s\n", ne / 7, in, out);
    for (size_t i = 0; i < ne; i++) { free(names[i]); free(bufs[i]); }
    free(ents); free(names); free(bufs);
    qa_st_close(&st);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "quantize")) return run_quantize(argv[2], argv[3]);
    if (argc <= 1 || !strcmp(argv[1], "ops")) return run_ops();
    fprintf(stderr, "usage: test_nf4 [ops] | quantize IN.safetensors OUT.safetensors\n");
    return 2;
}
