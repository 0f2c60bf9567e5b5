/* test_ops.c — every kernel of the CPU backend: forward against a plain double-precision
 * reference, backward against central finite differences of the forward. */
#include "kernels/ops.h"
#include "common/qa_mem.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const qa_ops *O;
static qa_stream *S;

/* deterministic normal-ish numbers */
static uint64_t rng = 12345;
static float frand(void) { return qt_frand(&rng); }
static float *rvec(size_t n, float s) { return qt_rvec(&rng, n, s); }
static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}
static double rel(const float *a, const double *b, size_t n) { return qt_rel_err_f32_f64(a, b, n); }

/* Central differences of f(x) = <w, op(x)> for a scalar projection w; fills g [n]. */
typedef double (*scalar_fn)(void *ctx);
static void fd_grad(float *x, size_t n, scalar_fn f, void *ctx, double *g, float h) {
    for (size_t i = 0; i < n; i++) {
        float x0 = x[i];
        x[i] = x0 + h;
        double fp = f(ctx);
        x[i] = x0 - h;
        double fm = f(ctx);
        x[i] = x0;
        g[i] = (fp - fm) / (2.0 * h);
    }
}

/* ---- rmsnorm ---------------------------------------------------------------------------- */
typedef struct { int N, D; float *x, *w, *y, *wout; } rms_ctx;
static double rms_f(void *p) {
    rms_ctx *c = p;
    O->rmsnorm_fwd(S, c->N, c->D, 1e-5f, c->x, (qa_weight){QA_DT_F32, c->w}, c->y, NULL);
    return dot(c->y, c->wout, (size_t)c->N * c->D);
}
static void test_rmsnorm(void) {
    rms_ctx c = {5, 24, NULL, NULL, NULL, NULL};
    size_t n = (size_t)c.N * c.D;
    c.x = rvec(n, 1.5f);
    c.w = rvec(c.D, 1.0f);
    c.y = rvec(n, 1);
    c.wout = rvec(n, 1);
    float *rstd = qa_malloc(sizeof(float) * c.N);
    O->rmsnorm_fwd(S, c.N, c.D, 1e-5f, c.x, (qa_weight){QA_DT_F32, c.w}, c.y, rstd);
    double *ref = qa_malloc(sizeof(double) * n);
    for (int i = 0; i < c.N; i++) {
        double ss = 0;
        for (int j = 0; j < c.D; j++) ss += (double)c.x[i * c.D + j] * c.x[i * c.D + j];
        double r = 1 / sqrt(ss / c.D + 1e-5);
        for (int j = 0; j < c.D; j++) ref[i * c.D + j] = c.x[i * c.D + j] * r * c.w[j];
    }
    double fe = rel(c.y, ref, n);
    QT_CHECK(fe < 1e-6, "rmsnorm fwd rel err %.2e", fe);
    float *dx = rvec(n, 1), *dx0 = qt_fcopy(dx, n);
    O->rmsnorm_bwd(S, c.N, c.D, 1, c.x, (qa_weight){QA_DT_F32, c.w}, rstd, c.wout, dx); /* beta 1: accumulate */
    fd_grad(c.x, n, rms_f, &c, ref, 1e-3f);
    for (size_t i = 0; i < n; i++) ref[i] += dx0[i];
    double be = rel(dx, ref, n);
    QT_CHECK(be < 2e-3, "rmsnorm bwd (beta=1) vs finite differences: rel err %.2e", be);
    /* bf16 weights give the same as their f32 values */
    uint16_t *wb = qa_malloc(2 * c.D);
    float *wf = qa_malloc(4 * c.D);
    for (int j = 0; j < c.D; j++) { wb[j] = qa_f32_to_bf16(c.w[j]); wf[j] = qa_bf16_to_f32(wb[j]); }
    float *y1 = qa_malloc(4 * n), *y2 = qa_malloc(4 * n);
    O->rmsnorm_fwd(S, c.N, c.D, 1e-5f, c.x, (qa_weight){QA_DT_BF16, wb}, y1, NULL);
    O->rmsnorm_fwd(S, c.N, c.D, 1e-5f, c.x, (qa_weight){QA_DT_F32, wf}, y2, NULL);
    QT_CHECK(!memcmp(y1, y2, 4 * n), "rmsnorm bf16 weight == its f32 value");
    free(wb); free(wf); free(y1); free(y2);
    free(c.x); free(c.w); free(c.y); free(c.wout); free(rstd); free(ref); free(dx); free(dx0);
}

/* ---- rope -------------------------------------------------------------------------------- */
typedef struct { int N, H, hd; int32_t *pos; float *x, *y, *wout; } rope_ctx;
static double rope_f(void *p) {
    rope_ctx *c = p;
    size_t n = (size_t)c->N * c->H * c->hd;
    memcpy(c->y, c->x, n * 4);
    O->rope_fwd(S, c->N, c->H, c->hd, 10000.0f, c->pos, c->y);
    return dot(c->y, c->wout, n);
}
static void test_rope(void) {
    rope_ctx c = {6, 3, 16, NULL, NULL, NULL, NULL};
    size_t n = (size_t)c.N * c.H * c.hd;
    int32_t pos[6] = {0, 1, 2, 7, 0, 300};
    c.pos = pos;
    c.x = rvec(n, 1);
    c.y = qa_malloc(4 * n);
    c.wout = rvec(n, 1);
    rope_f(&c);
    double *ref = qa_malloc(sizeof(double) * n);
    int half = c.hd / 2;
    for (int t = 0; t < c.N; t++)
        for (int h = 0; h < c.H; h++)
            for (int i = 0; i < half; i++) {
                double a = pos[t] * pow(10000.0, -2.0 * i / c.hd);
                const float *v = c.x + ((size_t)t * c.H + h) * c.hd;
                ref[((size_t)t * c.H + h) * c.hd + i] = v[i] * cos(a) - v[i + half] * sin(a);
                ref[((size_t)t * c.H + h) * c.hd + i + half] = v[i + half] * cos(a) + v[i] * sin(a);
            }
    double fe = rel(c.y, ref, n);
    QT_CHECK(fe < 1e-5, "rope fwd (rotate_half) rel err %.2e", fe);
    float *dx = qt_fcopy(c.wout, n);
    O->rope_bwd(S, c.N, c.H, c.hd, 10000.0f, c.pos, dx);
    fd_grad(c.x, n, rope_f, &c, ref, 1e-2f);
    double be = rel(dx, ref, n);
    QT_CHECK(be < 1e-3, "rope bwd vs finite differences: rel err %.2e", be);
    free(c.x); free(c.y); free(c.wout); free(ref); free(dx);
}

/* ---- attention --------------------------------------------------------------------------- */
typedef struct {
    qa_attn_desc d;
    float *q, *k, *v, *o, *lse, *wout;
} att_ctx;
static double att_f(void *p) {
    att_ctx *c = p;
    O->attention_fwd(S, &c->d, c->q, c->k, c->v, c->o, c->lse);
    return dot(c->o, c->wout, (size_t)c->d.B * c->d.T * c->d.n_heads * c->d.head_dim);
}
static void att_ref(const att_ctx *c, double *o) {
    const qa_attn_desc *d = &c->d;
    int T = d->T, H = d->n_heads, Hk = d->n_kv_heads, hd = d->head_dim;
    double *s = qa_malloc(sizeof(double) * T);
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / Hk);
            for (int i = 0; i < T; i++) {
                double mx = -INFINITY;
                for (int j = 0; j < T; j++) {
                    int vis = j <= i && (!d->window || j > i - d->window) &&
                              (!d->key_mask || d->key_mask[b * T + j]) &&
                              (!d->segment || d->segment[b * T + i] == d->segment[b * T + j]);
                    if (!vis) { s[j] = -INFINITY; continue; }
                    double acc = 0;
                    for (int e = 0; e < hd; e++)
                        acc += (double)c->q[((size_t)(b * T + i) * H + h) * hd + e] * c->k[((size_t)(b * T + j) * Hk + g) * hd + e];
                    s[j] = acc * d->scale;
                    if (s[j] > mx) mx = s[j];
                }
                double sum = 0;
                for (int j = 0; j < T; j++) { s[j] = s[j] == -INFINITY ? 0 : exp(s[j] - mx); sum += s[j]; }
                for (int e = 0; e < hd; e++) {
                    double acc = 0;
                    for (int j = 0; j < T; j++)
                        if (s[j] != 0) acc += s[j] / sum * c->v[((size_t)(b * T + j) * Hk + g) * hd + e];
                    o[((size_t)(b * T + i) * H + h) * hd + e] = sum > 0 ? acc : 0;
                }
            }
        }
    free(s);
}
static void test_attention_case(const char *what, int B, int T, int H, int Hk, int hd, int window, int use_mask,
                                int use_seg) {
    att_ctx c;
    memset(&c, 0, sizeof c);
    int32_t *mask = qa_malloc(4 * (size_t)B * T), *seg = qa_malloc(4 * (size_t)B * T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            mask[b * T + t] = !(b == 1 && t >= T - 3) && !(b == 0 && t == 2); /* right padding + a hole */
            seg[b * T + t] = t < T / 3 ? 0 : (t < T / 2 ? 1 : 2);
        }
    if (B > 2) mask[2 * T] = 0; /* key 0 of row 2 masked: query 0 there sees nothing */
    c.d = (qa_attn_desc){B, T, H, Hk, hd, window, 1.0f / sqrtf((float)hd), use_mask ? mask : NULL,
                         use_seg ? seg : NULL};
    size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * T * Hk * hd;
    c.q = rvec(nq, 1.5f);
    c.k = rvec(nk, 1.5f);
    c.v = rvec(nk, 1);
    c.o = qa_malloc(4 * nq);
    c.lse = qa_malloc(4 * (size_t)B * H * T);
    c.wout = rvec(nq, 1);
    att_f(&c);
    double *ref = qa_malloc(sizeof(double) * (nq > nk ? nq : nk));
    att_ref(&c, ref);
    double fe = rel(c.o, ref, nq);
    QT_CHECK(fe < 1e-5, "attention fwd %s: rel err vs naive %.2e", what, fe);
    float *dq = qa_malloc(4 * nq), *dk = qa_malloc(4 * nk), *dv = qa_malloc(4 * nk);
    O->attention_bwd(S, &c.d, c.q, c.k, c.v, c.o, c.lse, c.wout, dq, dk, dv);
    fd_grad(c.q, nq, att_f, &c, ref, 1e-2f);
    double e1 = rel(dq, ref, nq);
    fd_grad(c.k, nk, att_f, &c, ref, 1e-2f);
    double e2 = rel(dk, ref, nk);
    fd_grad(c.v, nk, att_f, &c, ref, 1e-2f);
    double e3 = rel(dv, ref, nk);
    QT_CHECK(e1 < 2e-3 && e2 < 2e-3 && e3 < 2e-3, "attention bwd %s vs finite differences: dq %.2e dk %.2e dv %.2e",
             what, e1, e2, e3);
    free(c.q); free(c.k); free(c.v); free(c.o); free(c.lse); free(c.wout); free(ref);
    free(dq); free(dk); free(dv); free(mask); free(seg);
}

/* ---- swiglu ------------------------------------------------------------------------------ */
typedef struct { size_t n; float *g, *u, *y, *wout; } sw_ctx;
static double sw_f(void *p) {
    sw_ctx *c = p;
    O->swiglu_fwd(S, c->n, c->g, c->u, c->y);
    return dot(c->y, c->wout, c->n);
}
static void test_swiglu(void) {
    sw_ctx c = {50, rvec(50, 3), rvec(50, 2), qa_malloc(200), rvec(50, 1)};
    sw_f(&c);
    double ref[50];
    for (int i = 0; i < 50; i++) ref[i] = c.g[i] / (1 + exp(-(double)c.g[i])) * c.u[i];
    double fe = rel(c.y, ref, 50);
    QT_CHECK(fe < 1e-6, "swiglu fwd rel err %.2e", fe);
    float dg[50], du[50];
    O->swiglu_bwd(S, 50, c.g, c.u, c.wout, dg, du);
    fd_grad(c.g, 50, sw_f, &c, ref, 1e-3f);
    double e1 = rel(dg, ref, 50);
    fd_grad(c.u, 50, sw_f, &c, ref, 1e-3f);
    double e2 = rel(du, ref, 50);
    QT_CHECK(e1 < 1e-3 && e2 < 1e-3, "swiglu bwd vs finite differences: dg %.2e du %.2e", e1, e2);
    free(c.g); free(c.u); free(c.y); free(c.wout);
}

/* ---- linear (BF16 panels and F32) ---------------------------------------------------------- */
static void test_linear(int N, int K, int M) {
    size_t nw = (size_t)M * K;
    float *x = rvec((size_t)N * K, 1), *wf = rvec(nw, 0.1f), *b = rvec(M, 1);
    uint16_t *wb = qa_malloc(2 * nw);
    for (size_t i = 0; i < nw; i++) { wb[i] = qa_f32_to_bf16(wf[i]); wf[i] = qa_bf16_to_f32(wb[i]); }
    float *y1 = rvec((size_t)N * M, 1), *y2 = qt_fcopy(y1, (size_t)N * M), *y0 = qt_fcopy(y1, (size_t)N * M);
    O->linear_fwd(S, N, K, M, 1, x, (qa_weight){QA_DT_BF16, wb}, (qa_weight){QA_DT_F32, b}, y1);
    O->linear_fwd(S, N, K, M, 1, x, (qa_weight){QA_DT_F32, wf}, (qa_weight){QA_DT_F32, b}, y2);
    double *ref = qa_malloc(sizeof(double) * (size_t)N * (M > K ? M : K));
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            double acc = y0[(size_t)n * M + m] + b[m];
            for (int k = 0; k < K; k++) acc += (double)x[(size_t)n * K + k] * wf[(size_t)m * K + k];
            ref[(size_t)n * M + m] = acc;
        }
    double e1 = rel(y1, ref, (size_t)N * M), e2 = rel(y2, ref, (size_t)N * M);
    QT_CHECK(e1 < 1e-5 && e2 < 1e-5, "linear fwd [%d,%d]x[%d,%d]ᵀ bf16 %.2e f32 %.2e", N, K, M, K, e1, e2);
    float *dy = rvec((size_t)N * M, 1), *dx1 = rvec((size_t)N * K, 1), *dx2 = qa_malloc(4 * (size_t)N * K);
    O->linear_bwd(S, N, K, M, 0, dy, (qa_weight){QA_DT_BF16, wb}, dx1);
    O->linear_bwd(S, N, K, M, 0, dy, (qa_weight){QA_DT_F32, wf}, dx2);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double acc = 0;
            for (int m = 0; m < M; m++) acc += (double)dy[(size_t)n * M + m] * wf[(size_t)m * K + k];
            ref[(size_t)n * K + k] = acc;
        }
    e1 = rel(dx1, ref, (size_t)N * K);
    e2 = rel(dx2, ref, (size_t)N * K);
    QT_CHECK(e1 < 1e-5 && e2 < 1e-5, "linear bwd dx = dy W, bf16 %.2e f32 %.2e", e1, e2);
    free(x); free(wf); free(b); free(wb); free(y0); free(y1); free(y2); free(ref); free(dy); free(dx1); free(dx2);
}

/* ---- lora --------------------------------------------------------------------------------- */
typedef struct { int N, K, M, r; float scale, p; uint64_t key; float *x, *A, *B, *xa, *y, *wout; } lora_ctx;
static double lora_f(void *pp) {
    lora_ctx *c = pp;
    memset(c->y, 0, 4 * (size_t)c->N * c->M);
    O->lora_fwd(S, c->N, c->K, c->M, c->r, c->scale, c->p, c->key, c->x, c->A, c->B, c->xa, c->y);
    return dot(c->y, c->wout, (size_t)c->N * c->M);
}
static void test_lora(float p) {
    lora_ctx c = {7, 12, 9, 3, 2.5f, p, 0xabcdef, NULL, NULL, NULL, NULL, NULL, NULL};
    size_t nx = (size_t)c.N * c.K, na = (size_t)c.r * c.K, nb = (size_t)c.M * c.r, ny = (size_t)c.N * c.M;
    c.x = rvec(nx, 1); c.A = rvec(na, 1); c.B = rvec(nb, 1); c.xa = qa_malloc(4 * (size_t)c.N * c.r);
    c.y = qa_malloc(4 * ny); c.wout = rvec(ny, 1);
    lora_f(&c);
    double *ref = qa_malloc(sizeof(double) * (nx + na + nb));
    int kept = 0;
    for (int n = 0; n < c.N; n++)
        for (int m = 0; m < c.M; m++) {
            double acc = 0;
            for (int j = 0; j < c.r; j++) {
                double xa = 0;
                for (int k = 0; k < c.K; k++) {
                    int keep = p > 0 ? qa_dropout_keep(c.key, n, k, p) : 1;
                    if (m == 0 && j == 0) kept += keep;
                    xa += keep ? (double)c.x[n * c.K + k] / (1 - p) * c.A[j * c.K + k] : 0;
                }
                acc += c.B[m * c.r + j] * xa;
            }
            ref[n * c.M + m] = c.scale * acc;
        }
    double fe = rel(c.y, ref, ny);
    QT_CHECK(fe < 1e-5, "lora fwd p=%.2f rel err %.2e (kept %d of %zu)", p, fe, kept, nx);
    if (p > 0) QT_CHECK(kept > 0 && kept < (int)nx, "dropout keeps some and drops some (%d of %zu)", kept, nx);
    float *dA = rvec(na, 1), *dB = rvec(nb, 1), *dx = rvec(nx, 1);
    float *dA0 = qt_fcopy(dA, na), *dB0 = qt_fcopy(dB, nb), *dx0 = qt_fcopy(dx, nx);
    O->lora_bwd(S, c.N, c.K, c.M, c.r, c.scale, c.p, c.key, c.x, c.A, c.B, c.xa, c.wout, dA, dB, dx);
    for (size_t i = 0; i < na; i++) dA[i] -= dA0[i];
    for (size_t i = 0; i < nb; i++) dB[i] -= dB0[i];
    for (size_t i = 0; i < nx; i++) dx[i] -= dx0[i];
    fd_grad(c.A, na, lora_f, &c, ref, 1e-2f);
    double e1 = rel(dA, ref, na);
    fd_grad(c.B, nb, lora_f, &c, ref, 1e-2f);
    double e2 = rel(dB, ref, nb);
    fd_grad(c.x, nx, lora_f, &c, ref, 1e-2f);
    double e3 = rel(dx, ref, nx);
    QT_CHECK(e1 < 1e-3 && e2 < 1e-3 && e3 < 1e-3, "lora bwd p=%.2f (accumulating) vs finite differences: dA %.2e dB %.2e dx %.2e",
             p, e1, e2, e3);
    free(c.x); free(c.A); free(c.B); free(c.xa); free(c.y); free(c.wout); free(ref);
    free(dA); free(dB); free(dx); free(dA0); free(dB0); free(dx0);
}

/* ---- cross-entropy ------------------------------------------------------------------------- */
typedef struct { int M, V; float *x; int32_t *t; float *loss, *lse; } ce_ctx;
static double ce_f(void *p) {
    ce_ctx *c = p;
    O->cross_entropy_fwd(S, c->M, c->V, c->x, c->t, c->loss, c->lse);
    double s = 0;
    for (int i = 0; i < c->M; i++) s += c->loss[i] * (i + 1);
    return s;
}
static void test_ce(void) {
    ce_ctx c = {4, 30, rvec(120, 4), NULL, qa_malloc(16), qa_malloc(16)};
    int32_t t[4] = {0, 29, 7, 7};
    c.t = t;
    ce_f(&c);
    double ref[120];
    for (int i = 0; i < 4; i++) {
        double mx = -1e30, s = 0;
        for (int j = 0; j < 30; j++) mx = fmax(mx, c.x[i * 30 + j]);
        for (int j = 0; j < 30; j++) s += exp(c.x[i * 30 + j] - mx);
        ref[i] = mx + log(s) - c.x[i * 30 + t[i]];
    }
    double fe = rel(c.loss, ref, 4);
    QT_CHECK(fe < 1e-6, "cross-entropy fwd rel err %.2e", fe);
    float d[120];
    /* per-row weights i+1: run the bwd row by row with its scale */
    for (int i = 0; i < 4; i++)
        O->cross_entropy_bwd(S, 1, 30, (float)(i + 1), c.x + i * 30, t + i, c.lse + i, d + i * 30);
    fd_grad(c.x, 120, ce_f, &c, ref, 1e-2f);
    double be = rel(d, ref, 120);
    QT_CHECK(be < 1e-3, "cross-entropy bwd vs finite differences: rel err %.2e", be);
    /* in place */
    float *x2 = qt_fcopy(c.x, 120);
    O->cross_entropy_bwd(S, 1, 30, 1.0f, x2, t, c.lse, x2);
    QT_CHECK(fabsf(x2[0] - d[0]) < 1e-6f, "cross-entropy bwd in place");
    free(x2); free(c.x); free(c.loss); free(c.lse);
}

/* ---- adamw ---------------------------------------------------------------------------------- */
static void test_adamw(void) {
    enum { n = 40 };
    float *p = rvec(n, 1), *g = rvec(n, 1), m[n] = {0}, v[n] = {0};
    double pr[n], mr[n] = {0}, vr[n] = {0};
    for (int i = 0; i < n; i++) pr[i] = p[i];
    const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01;
    for (int step = 1; step <= 3; step++) {
        O->adamw_step(S, n, (float)lr, (float)b1, (float)b2, (float)eps, (float)wd, step, p, g, m, v);
        for (int i = 0; i < n; i++) {
            pr[i] *= 1 - lr * wd;
            mr[i] = b1 * mr[i] + (1 - b1) * g[i];
            vr[i] = b2 * vr[i] + (1 - b2) * (double)g[i] * g[i];
            double mh = mr[i] / (1 - pow(b1, step)), vh = vr[i] / (1 - pow(b2, step));
            pr[i] -= lr * mh / (sqrt(vh) + eps);
        }
        for (int i = 0; i < n; i++) g[i] = 0.5f * g[i] + 0.1f * frand();
    }
    double e = rel(p, pr, n);
    QT_CHECK(e < 1e-6, "adamw 3 steps vs double reference: rel err %.2e", e);
    free(p); free(g);
}

/* ---- embedding, gather/scatter ------------------------------------------------------------ */
static void test_misc(void) {
    float tab[4 * 3];
    uint16_t tb[12];
    for (int i = 0; i < 12; i++) { tb[i] = qa_f32_to_bf16(i * 0.5f - 2); tab[i] = qa_bf16_to_f32(tb[i]); }
    int32_t ids[3] = {3, 0, 3};
    float o1[9], o2[9];
    O->embedding_fwd(S, 3, 3, (qa_weight){QA_DT_BF16, tb}, ids, o1);
    O->embedding_fwd(S, 3, 3, (qa_weight){QA_DT_F32, tab}, ids, o2);
    QT_CHECK(!memcmp(o1, o2, sizeof o1) && o1[0] == tab[9] && o1[3] == tab[0], "embedding bf16/f32 rows");
    int32_t idx[2] = {2, 0};
    float g[6], dst[9] = {0};
    O->gather_rows(S, 2, 3, o2, idx, g);
    O->scatter_add_rows(S, 2, 3, g, idx, dst);
    QT_CHECK(g[0] == o2[6] && dst[6] == o2[6] && dst[0] == o2[0] && dst[3] == 0, "gather / scatter_add rows");
}

int main(void) {
    O = qa_ops_cpu();
    qa_err e = {0};
    QT_CHECK(O->stream_create(&S, NULL, &e) == 0, "cpu stream");
    test_rmsnorm();
    test_rope();
    test_attention_case("causal", 2, 9, 4, 2, 8, 0, 0, 0);
    test_attention_case("padding mask", 3, 9, 4, 2, 8, 0, 1, 0);
    test_attention_case("window 3 + mask", 3, 9, 2, 1, 8, 3, 1, 0);
    test_attention_case("segments + mask", 3, 12, 4, 4, 4, 0, 1, 1);
    test_attention_case("blocked T=150 window 70", 1, 150, 2, 1, 4, 70, 0, 0);
    test_swiglu();
    test_linear(3, 40, 17);
    test_linear(3, 8192, 300); /* several BF16 panels */
    test_lora(0);
    test_lora(0.3f);
    test_ce();
    test_adamw();
    test_misc();
    /* without a stream, scratch is per call */
    qa_stream *keep = S;
    S = NULL;
    test_attention_case("no stream", 2, 9, 4, 2, 8, 0, 1, 0);
    test_linear(2, 8192, 100);
    S = keep;
    O->stream_destroy(S);
    return qt_finish();
}
