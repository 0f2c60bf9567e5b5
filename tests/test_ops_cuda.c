/* test_ops_cuda.c — every op of the CUDA backend against the CPU backend (the reference semantics)
 * on the same random inputs: fp32 ops to ~1e-5, ops with bf16 operands (frozen linears with BF16
 * weights, attention) to relative error <= 1e-2. Outputs are poisoned with NaN before each GPU call,
 * so an element the GPU does not write fails the comparison. Exits 77 (ctest: skipped) when no GPU. */
#include "kernels/ops.h"
#include "common/qa_dtype.h"
#include "common/qa_mem.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOL32 2e-5
#define TOLBF 1e-2

static const qa_ops *C, *G;
static qa_stream *GS;
static uint64_t rng = 0x5eed;

static float *rvec(size_t n, float s) { return qt_rvec(&rng, n, s); }
/* device copy of host data */
static void *up(const void *h, size_t bytes) {
    qa_err e = {0};
    void *d = G->alloc(bytes ? bytes : 4, &e);
    if (!d) { qa_err_print(&e); exit(1); }
    if (bytes) G->memcpy_h2d(GS, d, h, bytes);
    G->sync(GS, NULL);
    return d;
}
static float *upf(const float *h, size_t n) { return up(h, n * sizeof(float)); }
/* device buffer of n floats filled with NaN */
static float *poison(size_t n) {
    float *h = qa_malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    float *d = upf(h, n);
    free(h);
    return d;
}
static float *down(const float *d, size_t n) {
    float *h = qa_malloc((n ? n : 1) * sizeof(float));
    G->memcpy_d2h(GS, h, d, n * sizeof(float));
    return h;
}
static void gsync(const char *what) {
    qa_err e = {0};
    QT_CHECK(G->sync(GS, &e) == 0, "%s: %s", what, e.msg);
}
/* compare a device result with the CPU reference */
static void cmp(const char *what, const float *dev, const float *ref, size_t n, double tol) {
    float *h = down(dev, n);
    double r = qt_rel_err_f32(h, ref, n);
    QT_CHECK(r <= tol, "%-40s rel err %.3e (tol %.0e)", what, r, tol);
    printf("  %-40s rel %.3e\n", what, r);
    free(h);
}
static uint16_t *to_bf16(const float *x, size_t n) {
    uint16_t *b = qa_malloc((n ? n : 1) * 2);
    for (size_t i = 0; i < n; i++) b[i] = qa_f32_to_bf16(x[i]);
    return b;
}

/* ---- generic algebra ------------------------------------------------------------------- */
static void t_gemm(void) {
    const int M = 37, Nc = 45, K = 29;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int lda = ta ? M + 3 : K + 2, ldb = tb ? K + 1 : Nc + 5, ldc = Nc + 4;
            size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? Nc : K) * ldb, nc = (size_t)M * ldc;
            float *A = rvec(na, 1), *B = rvec(nb, 1), *Cc = rvec(nc, 1);
            float *dA = upf(A, na), *dB = upf(B, nb), *dC = upf(Cc, nc);
            C->gemm(NULL, ta, tb, M, Nc, K, 0.7f, A, lda, B, ldb, 0.5f, Cc, ldc);
            G->gemm(GS, ta, tb, M, Nc, K, 0.7f, dA, lda, dB, ldb, 0.5f, dC, ldc);
            gsync("gemm");
            char nm[64];
            snprintf(nm, sizeof nm, "gemm ta=%d tb=%d", ta, tb);
            cmp(nm, dC, Cc, nc, TOL32);
            free(A); free(B); free(Cc); G->free(dA); G->free(dB); G->free(dC);
        }
}
static void t_rows(void) {
    const int M = 50, D = 70, R = 80;
    float *src = rvec((size_t)R * D, 1), *dst = rvec((size_t)R * D, 1), *x = rvec((size_t)M * D, 1);
    int32_t idx[50];
    for (int i = 0; i < M; i++) idx[i] = (i * 37 + 11) % R; /* distinct: 37 and 80 coprime */
    float *ds = upf(src, (size_t)R * D), *dd = upf(dst, (size_t)R * D), *dx = upf(x, (size_t)M * D);
    int32_t *di = up(idx, sizeof idx);
    float *g = qa_malloc(sizeof(float) * M * D), *dg = poison((size_t)M * D);
    C->gather_rows(NULL, M, D, src, idx, g);
    G->gather_rows(GS, M, D, ds, di, dg);
    C->scatter_add_rows(NULL, M, D, x, idx, dst);
    G->scatter_add_rows(GS, M, D, dx, di, dd);
    C->axpy(NULL, (size_t)M * D, -0.3f, g, x);
    G->axpy(GS, (size_t)M * D, -0.3f, dg, dx);
    gsync("rows");
    cmp("gather_rows", dg, g, (size_t)M * D, 0);
    cmp("scatter_add_rows", dd, dst, (size_t)R * D, 1e-7);
    cmp("axpy", dx, x, (size_t)M * D, 1e-7);
    free(src); free(dst); free(x); free(g);
    G->free(ds); G->free(dd); G->free(dx); G->free(di); G->free(dg);
}

/* ---- embedding, norm, rope, swiglu ---------------------------------------------------------- */
static void t_elementwise(void) {
    const int N = 33, D = 200, V = 60, H = 4, hd = 32;
    /* embedding, BF16 and F32 tables */
    float *tab = rvec((size_t)V * D, 1);
    uint16_t *tabb = to_bf16(tab, (size_t)V * D);
    int32_t ids[33];
    for (int i = 0; i < N; i++) ids[i] = (i * 7) % V;
    int32_t *dids = up(ids, sizeof ids);
    for (int bf = 0; bf < 2; bf++) {
        qa_weight wc = {bf ? QA_DT_BF16 : QA_DT_F32, bf ? (const void *)tabb : tab};
        void *dt = up(wc.data, (size_t)V * D * (bf ? 2 : 4));
        qa_weight wg = {wc.dtype, dt};
        float *o = qa_malloc(sizeof(float) * N * D), *dO = poison((size_t)N * D);
        C->embedding_fwd(NULL, N, D, wc, ids, o);
        G->embedding_fwd(GS, N, D, wg, dids, dO);
        gsync("embedding");
        cmp(bf ? "embedding bf16" : "embedding f32", dO, o, (size_t)N * D, 0);
        free(o); G->free(dO); G->free(dt);
    }
    /* rmsnorm fwd/bwd with a BF16 weight */
    float *x = rvec((size_t)N * D, 2), *w = rvec(D, 1), *dy = rvec((size_t)N * D, 1), *dx = rvec((size_t)N * D, 1);
    uint16_t *wb = to_bf16(w, D);
    qa_weight wc = {QA_DT_BF16, wb}, wg = {QA_DT_BF16, up(wb, (size_t)D * 2)};
    float *dxd = upf(x, (size_t)N * D), *ddy = upf(dy, (size_t)N * D), *ddx = upf(dx, (size_t)N * D);
    float *y = qa_malloc(sizeof(float) * N * D), *rs = qa_malloc(sizeof(float) * N);
    float *dY = poison((size_t)N * D), *dR = poison(N);
    C->rmsnorm_fwd(NULL, N, D, 1e-5f, x, wc, y, rs);
    G->rmsnorm_fwd(GS, N, D, 1e-5f, dxd, wg, dY, dR);
    C->rmsnorm_bwd(NULL, N, D, 1.0f, x, wc, rs, dy, dx);
    G->rmsnorm_bwd(GS, N, D, 1.0f, dxd, wg, dR, ddy, ddx);
    gsync("rmsnorm");
    cmp("rmsnorm_fwd y", dY, y, (size_t)N * D, TOL32);
    cmp("rmsnorm_fwd rstd", dR, rs, N, TOL32);
    cmp("rmsnorm_bwd dx (beta 1)", ddx, dx, (size_t)N * D, TOL32);
    /* rope fwd then bwd on q-shaped data, positions not 0..N-1 */
    int32_t pos[33];
    for (int i = 0; i < N; i++) pos[i] = 3 * i + 100;
    int32_t *dpos = up(pos, sizeof pos);
    float *q = rvec((size_t)N * H * hd, 1);
    float *dq = upf(q, (size_t)N * H * hd);
    C->rope_fwd(NULL, N, H, hd, 10000.0f, pos, q);
    G->rope_fwd(GS, N, H, hd, 10000.0f, dpos, dq);
    gsync("rope");
    cmp("rope_fwd", dq, q, (size_t)N * H * hd, TOL32);
    C->rope_bwd(NULL, N, H, hd, 1e6f, pos, q);
    G->rope_bwd(GS, N, H, hd, 1e6f, dpos, dq);
    gsync("rope_bwd");
    cmp("rope_bwd", dq, q, (size_t)N * H * hd, TOL32);
    /* swiglu */
    size_t n = (size_t)N * D;
    float *g = rvec(n, 4), *u = rvec(n, 2), *dout = rvec(n, 1);
    float *o = qa_malloc(n * 4), *dg = qa_malloc(n * 4), *du = qa_malloc(n * 4);
    float *Dg = upf(g, n), *Du = upf(u, n), *Dd = upf(dout, n), *Do = poison(n), *Ddu = poison(n);
    C->swiglu_fwd(NULL, n, g, u, o);
    G->swiglu_fwd(GS, n, Dg, Du, Do);
    C->swiglu_bwd(NULL, n, g, u, dout, dg, du);
    G->swiglu_bwd(GS, n, Dg, Du, Dd, Dd, Ddu); /* dg aliases dout */
    gsync("swiglu");
    cmp("swiglu_fwd", Do, o, n, TOL32);
    cmp("swiglu_bwd dg (aliasing dout)", Dd, dg, n, TOL32);
    cmp("swiglu_bwd du", Ddu, du, n, TOL32);
    free(tab); free(tabb); free(x); free(w); free(dy); free(dx); free(wb); free(y); free(rs); free(q);
    free(g); free(u); free(dout); free(o); free(dg); free(du);
    G->free(dids); G->free((void *)wg.data); G->free(dxd); G->free(ddy); G->free(ddx); G->free(dY); G->free(dR);
    G->free(dpos); G->free(dq); G->free(Dg); G->free(Du); G->free(Dd); G->free(Do); G->free(Ddu);
}

/* ---- frozen linear, LoRA ------------------------------------------------------------------ */
static void t_linear(void) {
    const int N = 70, K = 96, M = 136;
    float *x = rvec((size_t)N * K, 1), *W = rvec((size_t)M * K, 0.1f), *b = rvec(M, 1), *y0 = rvec((size_t)N * M, 1);
    float *dy = rvec((size_t)N * M, 1), *dx0 = rvec((size_t)N * K, 1);
    uint16_t *Wb = to_bf16(W, (size_t)M * K), *bb = to_bf16(b, M);
    float *Dx = upf(x, (size_t)N * K), *Ddy = upf(dy, (size_t)N * M);
    for (int bf = 0; bf < 2; bf++) {
        qa_weight wc = {bf ? QA_DT_BF16 : QA_DT_F32, bf ? (const void *)Wb : W};
        qa_weight bc = {bf ? QA_DT_BF16 : QA_DT_F32, bf ? (const void *)bb : b};
        qa_weight wg = {wc.dtype, up(wc.data, (size_t)M * K * (bf ? 2 : 4))};
        qa_weight bg = {bc.dtype, up(bc.data, (size_t)M * (bf ? 2 : 4))};
        float *y = qt_fcopy(y0, (size_t)N * M), *Dy = upf(y0, (size_t)N * M);
        C->linear_fwd(NULL, N, K, M, 1.0f, x, wc, bc, y);
        G->linear_fwd(GS, N, K, M, 1.0f, Dx, wg, bg, Dy);
        float *dx = qt_fcopy(dx0, (size_t)N * K), *Ddx = upf(dx0, (size_t)N * K);
        C->linear_bwd(NULL, N, K, M, 0.5f, dy, wc, dx);
        G->linear_bwd(GS, N, K, M, 0.5f, Ddy, wg, Ddx);
        float *y2 = qa_malloc(sizeof(float) * N * M), *Dy2 = poison((size_t)N * M);
        C->linear_fwd(NULL, N, K, M, 0.0f, x, wc, (qa_weight){0}, y2);
        G->linear_fwd(GS, N, K, M, 0.0f, Dx, wg, (qa_weight){0}, Dy2);
        gsync("linear");
        cmp(bf ? "linear_fwd bf16 (beta 1, bias)" : "linear_fwd f32 (beta 1, bias)", Dy, y, (size_t)N * M,
            bf ? TOLBF : TOL32);
        cmp(bf ? "linear_fwd bf16 (beta 0, NaN C)" : "linear_fwd f32 (beta 0, NaN C)", Dy2, y2, (size_t)N * M,
            bf ? TOLBF : TOL32);
        cmp(bf ? "linear_bwd bf16 (beta 0.5)" : "linear_bwd f32 (beta 0.5)", Ddx, dx, (size_t)N * K, bf ? TOLBF : TOL32);
        free(y); free(dx); free(y2);
        G->free(Dy); G->free(Ddx); G->free(Dy2); G->free((void *)wg.data); G->free((void *)bg.data);
    }
    free(x); free(W); free(b); free(y0); free(dy); free(dx0); free(Wb); free(bb);
    G->free(Dx); G->free(Ddy);
}
static void t_lora(void) {
    const int N = 45, K = 80, M = 72, r = 8;
    for (int pi = 0; pi < 2; pi++) {
        float p = pi ? 0.1f : 0.0f;
        uint64_t key = 0x1234567890abcdefull;
        float *x = rvec((size_t)N * K, 1), *A = rvec((size_t)r * K, 0.3f), *B = rvec((size_t)M * r, 0.3f);
        float *y = rvec((size_t)N * M, 1), *dy = rvec((size_t)N * M, 1);
        float *dA = rvec((size_t)r * K, 1), *dB = rvec((size_t)M * r, 1), *dx = rvec((size_t)N * K, 1);
        float *xa = qa_malloc(sizeof(float) * N * r);
        float *Dx = upf(x, (size_t)N * K), *DA = upf(A, (size_t)r * K), *DB = upf(B, (size_t)M * r);
        float *Dy = upf(y, (size_t)N * M), *Ddy = upf(dy, (size_t)N * M), *DdA = upf(dA, (size_t)r * K);
        float *DdB = upf(dB, (size_t)M * r), *Ddx = upf(dx, (size_t)N * K), *Dxa = poison((size_t)N * r);
        C->lora_fwd(NULL, N, K, M, r, 2.0f, p, key, x, A, B, xa, y);
        G->lora_fwd(GS, N, K, M, r, 2.0f, p, key, Dx, DA, DB, Dxa, Dy);
        C->lora_bwd(NULL, N, K, M, r, 2.0f, p, key, x, A, B, xa, dy, dA, dB, dx);
        G->lora_bwd(GS, N, K, M, r, 2.0f, p, key, Dx, DA, DB, Dxa, Ddy, DdA, DdB, Ddx);
        gsync("lora");
        char nm[64];
        snprintf(nm, sizeof nm, "lora_fwd xa (p=%.1f)", p); cmp(nm, Dxa, xa, (size_t)N * r, TOL32);
        snprintf(nm, sizeof nm, "lora_fwd y (p=%.1f)", p); cmp(nm, Dy, y, (size_t)N * M, TOL32);
        snprintf(nm, sizeof nm, "lora_bwd dA (p=%.1f)", p); cmp(nm, DdA, dA, (size_t)r * K, TOL32);
        snprintf(nm, sizeof nm, "lora_bwd dB (p=%.1f)", p); cmp(nm, DdB, dB, (size_t)M * r, TOL32);
        snprintf(nm, sizeof nm, "lora_bwd dx (p=%.1f)", p); cmp(nm, Ddx, dx, (size_t)N * K, TOL32);
        free(x); free(A); free(B); free(y); free(dy); free(dA); free(dB); free(dx); free(xa);
        G->free(Dx); G->free(DA); G->free(DB); G->free(Dy); G->free(Ddy); G->free(DdA); G->free(DdB); G->free(Ddx);
        G->free(Dxa);
    }
}

/* ---- cross-entropy, AdamW ------------------------------------------------------------------- */
static void t_ce_adamw(void) {
    const int M = 9, V = 5003;
    float *lg = rvec((size_t)M * V, 8);
    int32_t tg[9];
    for (int i = 0; i < M; i++) tg[i] = (i * 811) % V;
    float *Dl = upf(lg, (size_t)M * V);
    int32_t *Dt = up(tg, sizeof tg);
    float loss[9], lse[9], *Dloss = poison(M), *Dlse = poison(M);
    C->cross_entropy_fwd(NULL, M, V, lg, tg, loss, lse);
    G->cross_entropy_fwd(GS, M, V, Dl, Dt, Dloss, Dlse);
    C->cross_entropy_bwd(NULL, M, V, 0.25f, lg, tg, lse, lg);
    G->cross_entropy_bwd(GS, M, V, 0.25f, Dl, Dt, Dlse, Dl); /* in place, as the model calls it */
    gsync("cross_entropy");
    cmp("cross_entropy_fwd loss", Dloss, loss, M, TOL32);
    cmp("cross_entropy_fwd lse", Dlse, lse, M, TOL32);
    cmp("cross_entropy_bwd (in place)", Dl, lg, (size_t)M * V, TOL32);
    const size_t n = 10007;
    float *p = rvec(n, 1), *g = rvec(n, 1), *m = rvec(n, 0.1f), *v = rvec(n, 0.1f);
    for (size_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    float *Dp = upf(p, n), *Dg = upf(g, n), *Dm = upf(m, n), *Dv = upf(v, n);
    for (int64_t t = 1; t <= 3; t++) {
        C->adamw_step(NULL, n, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, t, p, g, m, v);
        G->adamw_step(GS, n, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.01f, t, Dp, Dg, Dm, Dv);
    }
    gsync("adamw");
    cmp("adamw p (3 steps)", Dp, p, n, 1e-6);
    cmp("adamw m", Dm, m, n, 1e-6);
    cmp("adamw v", Dv, v, n, 1e-6);
    free(lg); free(p); free(g); free(m); free(v);
    G->free(Dl); G->free(Dt); G->free(Dloss); G->free(Dlse); G->free(Dp); G->free(Dg); G->free(Dm); G->free(Dv);
}

/* ---- attention --------------------------------------------------------------------------- */
/* mode bit 1: key mask (left padding of row 1 + a hole), bit 2: segments (packing) */
static void t_attention(int B, int T, int H, int Hk, int hd, int window, int mode) {
    const size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * Hk * hd;
    float *q = rvec(nq, 1.5f), *k = rvec(nk, 1.5f), *v = rvec(nk, 1), *dO = rvec(nq, 1);
    int32_t *km = qa_malloc(sizeof(int32_t) * B * T), *seg = qa_malloc(sizeof(int32_t) * B * T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            km[b * T + t] = !(b == 1 && t < T / 5) && !(t == T / 2);
            seg[b * T + t] = t < T / 3 ? 0 : t < (2 * T) / 3 ? 1 : 2;
        }
    qa_attn_desc dc = {B, T, H, Hk, hd, window, (float)(1.0 / sqrt((double)hd)), (mode & 1) ? km : NULL,
                       (mode & 2) ? seg : NULL};
    qa_attn_desc dg = dc;
    int32_t *Dkm = up(km, sizeof(int32_t) * B * T), *Dseg = up(seg, sizeof(int32_t) * B * T);
    dg.key_mask = (mode & 1) ? Dkm : NULL;
    dg.segment = (mode & 2) ? Dseg : NULL;
    float *o = qa_malloc(nq * 4), *lse = qa_malloc(sizeof(float) * B * H * T);
    float *dq = qa_malloc(nq * 4), *dk = qa_malloc(nk * 4), *dv = qa_malloc(nk * 4);
    float *Dq = upf(q, nq), *Dk = upf(k, nk), *Dv = upf(v, nk), *DdO = upf(dO, nq);
    float *Do = poison(nq), *Dlse = poison((size_t)B * H * T), *Ddq = poison(nq), *Ddk = poison(nk), *Ddv = poison(nk);
    C->attention_fwd(NULL, &dc, q, k, v, o, lse);
    G->attention_fwd(GS, &dg, Dq, Dk, Dv, Do, Dlse);
    C->attention_bwd(NULL, &dc, q, k, v, o, lse, dO, dq, dk, dv);
    G->attention_bwd(GS, &dg, Dq, Dk, Dv, Do, Dlse, DdO, Ddq, Ddk, Ddv);
    gsync("attention");
    char nm[96];
    snprintf(nm, sizeof nm, "attn B%d T%d H%d/%d hd%d w%d m%d: o", B, T, H, Hk, hd, window, mode);
    cmp(nm, Do, o, nq, TOLBF);
    /* lse: -inf exactly where the CPU has -inf, close elsewhere */
    float *hl = down(Dlse, (size_t)B * H * T);
    double worst = 0;
    int inf_ok = 1;
    for (size_t i = 0; i < (size_t)B * H * T; i++) {
        if (isinf(lse[i]) || isinf(hl[i])) { inf_ok &= isinf(lse[i]) && isinf(hl[i]); continue; }
        double d = fabs((double)hl[i] - lse[i]);
        if (!(d <= worst)) worst = d;
    }
    QT_CHECK(inf_ok && worst < 2e-2, "%s lse: -inf match %d, max abs err %.3e", nm, inf_ok, worst);
    printf("  %-40s lse max abs %.3e\n", "", worst);
    free(hl);
    nm[strlen(nm) - 1] = 0;
    char n2[112];
    snprintf(n2, sizeof n2, "%sdq", nm); cmp(n2, Ddq, dq, nq, TOLBF);
    snprintf(n2, sizeof n2, "%sdk", nm); cmp(n2, Ddk, dk, nk, TOLBF);
    snprintf(n2, sizeof n2, "%sdv", nm); cmp(n2, Ddv, dv, nk, TOLBF);
    free(q); free(k); free(v); free(dO); free(km); free(seg); free(o); free(lse); free(dq); free(dk); free(dv);
    G->free(Dkm); G->free(Dseg); G->free(Dq); G->free(Dk); G->free(Dv); G->free(DdO); G->free(Do); G->free(Dlse);
    G->free(Ddq); G->free(Ddk); G->free(Ddv);
}

static void t_prefix(int B, int T, int Tc, int H, int Hk, int hd, int window) {
    const size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * Hk * hd, nc = (size_t)Tc * Hk * hd;
    float *q = rvec(nq, 1.5f), *k = rvec(nk, 1.5f), *v = rvec(nk, 1), *kc = rvec(nc, 1.5f), *vc = rvec(nc, 1);
    int32_t *ctx = qa_malloc(sizeof(int32_t) * B);
    for (int b = 0; b < B; b++) ctx[b] = b == 0 ? Tc : (b * 13) % (Tc + 1);
    qa_attn_prefix_desc dc = {B, T, H, Hk, hd, window, (float)(1.0 / sqrt((double)hd)), Tc, ctx};
    qa_attn_prefix_desc dg = dc;
    int32_t *Dctx = up(ctx, sizeof(int32_t) * B);
    dg.ctx = Dctx;
    float *o = qa_malloc(nq * 4);
    float *Dq = upf(q, nq), *Dk = upf(k, nk), *Dv = upf(v, nk), *Dkc = upf(kc, nc), *Dvc = upf(vc, nc), *Do = poison(nq);
    C->attention_prefix_fwd(NULL, &dc, q, kc, vc, k, v, o);
    G->attention_prefix_fwd(GS, &dg, Dq, Dkc, Dvc, Dk, Dv, Do);
    gsync("attention_prefix");
    char nm[96];
    snprintf(nm, sizeof nm, "attn_prefix B%d T%d Tc%d H%d/%d hd%d w%d", B, T, Tc, H, Hk, hd, window);
    cmp(nm, Do, o, nq, TOLBF);
    free(q); free(k); free(v); free(kc); free(vc); free(ctx); free(o);
    G->free(Dctx); G->free(Dq); G->free(Dk); G->free(Dv); G->free(Dkc); G->free(Dvc); G->free(Do);
}

int main(void) {
    qa_err e = {0};
    C = qa_ops_cpu();
    G = qa_ops_get("cuda", &e);
    if (!G) {
        printf("SKIP: %s\n", e.msg);
        return 77;
    }
    if (G->stream_create(&GS, NULL, &e)) {
        printf("SKIP: %s\n", e.msg);
        return 77;
    }
    t_gemm();
    t_rows();
    t_elementwise();
    t_linear();
    t_lora();
    t_ce_adamw();
    t_attention(2, 37, 4, 2, 16, 0, 0);
    t_attention(2, 37, 4, 2, 16, 0, 3);
    t_attention(3, 150, 4, 1, 16, 0, 1);
    t_attention(2, 300, 8, 2, 128, 0, 3);
    t_attention(2, 300, 8, 8, 64, 48, 1);
    t_attention(1, 520, 4, 2, 128, 200, 0);
    t_prefix(3, 20, 50, 4, 2, 16, 0);
    t_prefix(4, 70, 333, 8, 2, 128, 0);
    t_prefix(3, 20, 50, 4, 2, 16, 24);
    t_prefix(2, 150, 0, 4, 4, 64, 0);
    G->stream_destroy(GS);
    return qt_finish();
}
