/* ops_cpu.c — the CPU backend of kernels/ops.h: OpenBLAS sgemm for every matmul (its own
 * threads), single-threaded C loops for the elementwise ops. BF16 weights are converted in
 * panels of rows into a scratch buffer held by the stream (or a per-call buffer when the
 * stream is NULL), never as a whole. */
#include "kernels/ops.h"
#include "kernels/cpu/fastmath.h"
#include "common/qa_mem.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- context: a growable scratch buffer ------------------------------------------------- */
struct qa_stream {
    float *scratch;
    size_t cap;     /* floats */
};

static int cpu_stream_create(qa_stream **s, qa_err *e) {
    (void)e;
    *s = qa_calloc(1, sizeof **s);
    return 0;
}
static void cpu_stream_destroy(qa_stream *s) {
    if (!s) return;
    free(s->scratch);
    free(s);
}
static int cpu_sync(qa_stream *s, qa_err *e) { (void)s; (void)e; return 0; }

/* Scratch of n floats: from the stream when there is one (valid until the next call on it),
 * else a fresh block that the caller releases with scratch_done. */
static float *scratch_get(qa_stream *s, size_t n) {
    if (!s) return qa_aligned_alloc(64, (n ? n : 1) * sizeof(float));
    if (s->cap < n) {
        free(s->scratch);
        s->scratch = qa_aligned_alloc(64, n * sizeof(float));
        s->cap = n;
    }
    return s->scratch;
}
static void scratch_done(qa_stream *s, float *p) { if (!s) free(p); }

static void *cpu_alloc(size_t bytes, qa_err *e) {
    void *p = aligned_alloc(64, ((bytes ? bytes : 1) + 63) / 64 * 64);
    if (!p) QA_ERR(e, "out of host memory allocating %zu bytes", bytes);
    return p;
}
static void cpu_free(void *p) { free(p); }
static void cpu_memcpy(qa_stream *s, void *dst, const void *src, size_t bytes) {
    (void)s;
    if (bytes && dst != src) memmove(dst, src, bytes);
}
static void cpu_memset0(qa_stream *s, void *dst, size_t bytes) { (void)s; if (bytes) memset(dst, 0, bytes); }

/* ---- helpers -------------------------------------------------------------------------- */
static inline float wget(qa_weight w, size_t i) {
    return w.dtype == QA_DT_BF16 ? qa_bf16_to_f32(((const uint16_t *)w.data)[i]) : ((const float *)w.data)[i];
}
/* rows [r0, r1) of a [*, K] weight as f32: the F32 data itself or a converted panel in buf */
static const float *weight_rows(qa_weight w, int r0, int r1, int K, float *buf) {
    if (w.dtype == QA_DT_F32) return (const float *)w.data + (size_t)r0 * K;
    const uint16_t *src = (const uint16_t *)w.data + (size_t)r0 * K;
    size_t n = (size_t)(r1 - r0) * K;
    for (size_t i = 0; i < n; i++) buf[i] = qa_bf16_to_f32(src[i]);
    return buf;
}
/* rows per BF16 panel: ~4 MiB of f32 */
static int panel_rows(int K, int M) {
    int r = (int)((4u << 20) / (sizeof(float) * (size_t)(K > 0 ? K : 1)));
    if (r < 16) r = 16;
    return r < M ? r : M;
}

static void cpu_gemm(qa_stream *s, int ta, int tb, int M, int Nc, int K, float alpha, const float *A, int lda,
                     const float *Bm, int ldb, float beta, float *C, int ldc) {
    (void)s;
    if (M <= 0 || Nc <= 0) return;
    if (K <= 0) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < Nc; j++) C[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * C[(size_t)i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, Nc, K, alpha, A,
                lda, Bm, ldb, beta, C, ldc);
}
static void cpu_axpy(qa_stream *s, size_t n, float alpha, const float *x, float *y) {
    (void)s;
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}
static void cpu_gather_rows(qa_stream *s, int M, int D, const float *src, const int32_t *idx, float *dst) {
    (void)s;
    for (int i = 0; i < M; i++) memcpy(dst + (size_t)i * D, src + (size_t)idx[i] * D, sizeof(float) * D);
}
static void cpu_scatter_add_rows(qa_stream *s, int M, int D, const float *src, const int32_t *idx, float *dst) {
    (void)s;
    for (int i = 0; i < M; i++) {
        float *d = dst + (size_t)idx[i] * D;
        const float *r = src + (size_t)i * D;
        for (int j = 0; j < D; j++) d[j] += r[j];
    }
}

/* ---- embedding ------------------------------------------------------------------------ */
static void cpu_embedding_fwd(qa_stream *s, int N, int D, qa_weight table, const int32_t *ids, float *out) {
    (void)s;
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * D;
        size_t base = (size_t)ids[n] * D;
        if (table.dtype == QA_DT_F32) memcpy(o, (const float *)table.data + base, sizeof(float) * D);
        else for (int j = 0; j < D; j++) o[j] = qa_bf16_to_f32(((const uint16_t *)table.data)[base + j]);
    }
}

/* ---- RMSNorm -------------------------------------------------------------------------- */
static void cpu_rmsnorm_fwd(qa_stream *s, int N, int D, float eps, const float *x, qa_weight w, float *y,
                            float *rstd) {
    (void)s;
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D;
        float *yr = y + (size_t)n * D;
        double ss = 0;
        for (int j = 0; j < D; j++) ss += (double)xr[j] * xr[j];
        float r = (float)(1.0 / sqrt(ss / D + eps));
        for (int j = 0; j < D; j++) yr[j] = (xr[j] * r) * wget(w, j);
        if (rstd) rstd[n] = r;
    }
}
static void cpu_rmsnorm_bwd(qa_stream *s, int N, int D, float beta, const float *x, qa_weight w, const float *rstd,
                            const float *dy, float *dx) {
    (void)s;
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D, *dyr = dy + (size_t)n * D;
        float *dxr = dx + (size_t)n * D;
        float r = rstd[n];
        double dot = 0;
        for (int j = 0; j < D; j++) dot += (double)dyr[j] * wget(w, j) * xr[j];
        float c = (float)(dot * r * r * r / D);
        for (int j = 0; j < D; j++) {
            float g = r * dyr[j] * wget(w, j) - xr[j] * c;
            dxr[j] = beta == 0 ? g : beta * dxr[j] + g;
        }
    }
}

/* ---- RoPE ----------------------------------------------------------------------------- */
static void rope_apply(int N, int H, int hd, float theta, const int32_t *pos, float *x, float sign) {
    int half = hd / 2;
    float *inv = qa_malloc(sizeof(float) * (size_t)half * 3);
    float *cs = inv + half, *sn = cs + half;
    /* HF: inv_freq = 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all fp32 */
    for (int i = 0; i < half; i++) inv[i] = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
    for (int n = 0; n < N; n++) {
        float p = (float)pos[n];
        for (int i = 0; i < half; i++) {
            float a = p * inv[i];
            cs[i] = (float)cos((double)a);
            sn[i] = sign * (float)sin((double)a);
        }
        for (int h = 0; h < H; h++) {
            float *v = x + ((size_t)n * H + h) * hd;
            for (int i = 0; i < half; i++) {
                float x0 = v[i], x1 = v[i + half];
                v[i] = x0 * cs[i] - x1 * sn[i];
                v[i + half] = x1 * cs[i] + x0 * sn[i];
            }
        }
    }
    free(inv);
}
static void cpu_rope_fwd(qa_stream *s, int N, int H, int hd, float theta, const int32_t *pos, float *x) {
    (void)s;
    rope_apply(N, H, hd, theta, pos, x, 1.0f);
}
/* the rotation is orthogonal: its transpose is the rotation by -a */
static void cpu_rope_bwd(qa_stream *s, int N, int H, int hd, float theta, const int32_t *pos, float *dx) {
    (void)s;
    rope_apply(N, H, hd, theta, pos, dx, -1.0f);
}

/* ---- attention ------------------------------------------------------------------------ */
#define ATT_QB 64   /* query rows per block */

static inline int att_visible(const qa_attn_desc *d, int b, int i, int j) {
    if (j > i) return 0;
    if (d->window > 0 && j <= i - d->window) return 0;
    if (d->key_mask && !d->key_mask[(size_t)b * d->T + j]) return 0;
    if (d->segment && d->segment[(size_t)b * d->T + i] != d->segment[(size_t)b * d->T + j]) return 0;
    return 1;
}
/* key range [*j0, i1) a query block [i0, i1) may see */
static inline int att_key_start(const qa_attn_desc *d, int i0) {
    int j0 = d->window > 0 ? i0 - d->window + 1 : 0;
    return j0 < 0 ? 0 : j0;
}

static void cpu_attention_fwd(qa_stream *s, const qa_attn_desc *d, const float *q, const float *k, const float *v,
                              float *o, float *lse) {
    const int T = d->T, H = d->n_heads, Hk = d->n_kv_heads, hd = d->head_dim, grp = H / Hk;
    const int ldq = H * hd, ldk = Hk * hd;
    float *S = scratch_get(s, (size_t)ATT_QB * T);
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < H; h++) {
            const int g = h / grp;
            const float *Q = q + (size_t)b * T * ldq + (size_t)h * hd;
            const float *K = k + (size_t)b * T * ldk + (size_t)g * hd;
            const float *Vv = v + (size_t)b * T * ldk + (size_t)g * hd;
            float *O = o + (size_t)b * T * ldq + (size_t)h * hd;
            float *L = lse + ((size_t)b * H + h) * T;
            for (int i0 = 0; i0 < T; i0 += ATT_QB) {
                const int i1 = i0 + ATT_QB < T ? i0 + ATT_QB : T, nq = i1 - i0;
                const int j0 = att_key_start(d, i0), nk = i1 - j0;
                /* S = scale * Q_blk K_[j0,i1)ᵀ */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, d->scale, Q + (size_t)i0 * ldq, ldq,
                            K + (size_t)j0 * ldk, ldk, 0.0f, S, nk);
                for (int i = i0; i < i1; i++) {
                    float *row = S + (size_t)(i - i0) * nk;
                    float mx = -INFINITY;
                    for (int j = j0; j < i1; j++) {
                        if (att_visible(d, b, i, j)) { if (row[j - j0] > mx) mx = row[j - j0]; }
                        else row[j - j0] = -INFINITY;
                    }
                    if (mx == -INFINITY) {   /* no visible key: output 0 */
                        for (int j = 0; j < nk; j++) row[j] = 0;
                        L[i] = -INFINITY;
                        continue;
                    }
                    double sum = 0;
                    for (int j = 0; j < nk; j++) {
                        float e = row[j] == -INFINITY ? 0.0f : expf(row[j] - mx);
                        row[j] = e;
                        sum += e;
                    }
                    float inv = (float)(1.0 / sum);
                    for (int j = 0; j < nk; j++) row[j] *= inv;
                    L[i] = mx + (float)log(sum);
                }
                /* O_blk = P V_[j0,i1) */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, S, nk, Vv + (size_t)j0 * ldk,
                            ldk, 0.0f, O + (size_t)i0 * ldq, ldq);
            }
        }
    scratch_done(s, S);
}

static void cpu_attention_bwd(qa_stream *s, const qa_attn_desc *d, const float *q, const float *k, const float *v,
                              const float *o, const float *lse, const float *dout, float *dq, float *dk, float *dv) {
    const int T = d->T, H = d->n_heads, Hk = d->n_kv_heads, hd = d->head_dim, grp = H / Hk;
    const int ldq = H * hd, ldk = Hk * hd;
    memset(dk, 0, sizeof(float) * (size_t)d->B * T * ldk);
    memset(dv, 0, sizeof(float) * (size_t)d->B * T * ldk);
    float *P = scratch_get(s, (size_t)2 * ATT_QB * T + ATT_QB);
    float *dP = P + (size_t)ATT_QB * T, *Di = dP + (size_t)ATT_QB * T;
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < H; h++) {
            const int g = h / grp;
            const size_t qoff = (size_t)b * T * ldq + (size_t)h * hd, koff = (size_t)b * T * ldk + (size_t)g * hd;
            const float *Q = q + qoff, *O = o + qoff, *dO = dout + qoff;
            const float *K = k + koff, *Vv = v + koff;
            float *dQ = dq + qoff, *dK = dk + koff, *dV = dv + koff;
            const float *L = lse + ((size_t)b * H + h) * T;
            for (int i0 = 0; i0 < T; i0 += ATT_QB) {
                const int i1 = i0 + ATT_QB < T ? i0 + ATT_QB : T, nq = i1 - i0;
                const int j0 = att_key_start(d, i0), nk = i1 - j0;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, d->scale, Q + (size_t)i0 * ldq, ldq,
                            K + (size_t)j0 * ldk, ldk, 0.0f, P, nk);
                /* dP = dO_blk V_[j0,i1)ᵀ */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, 1.0f, dO + (size_t)i0 * ldq, ldq,
                            Vv + (size_t)j0 * ldk, ldk, 0.0f, dP, nk);
                for (int i = i0; i < i1; i++) {
                    const float *orow = O + (size_t)i * ldq, *dorow = dO + (size_t)i * ldq;
                    double acc = 0;
                    for (int c = 0; c < hd; c++) acc += (double)orow[c] * dorow[c];
                    Di[i - i0] = (float)acc;
                    float *prow = P + (size_t)(i - i0) * nk, *dprow = dP + (size_t)(i - i0) * nk;
                    for (int j = j0; j < i1; j++) {
                        float p = (L[i] != -INFINITY && att_visible(d, b, i, j)) ? expf(prow[j - j0] - L[i]) : 0.0f;
                        prow[j - j0] = p;
                        /* dS (scale folded into the gemms below) */
                        dprow[j - j0] = p * (dprow[j - j0] - Di[i - i0]);
                    }
                }
                /* dV_[j0,i1) += Pᵀ dO_blk */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f, P, nk, dO + (size_t)i0 * ldq, ldq,
                            1.0f, dV + (size_t)j0 * ldk, ldk);
                /* dQ_blk = scale * dS K_[j0,i1) */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, d->scale, dP, nk,
                            K + (size_t)j0 * ldk, ldk, 0.0f, dQ + (size_t)i0 * ldq, ldq);
                /* dK_[j0,i1) += scale * dSᵀ Q_blk */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, d->scale, dP, nk, Q + (size_t)i0 * ldq,
                            ldq, 1.0f, dK + (size_t)j0 * ldk, ldk);
            }
        }
    scratch_done(s, P);
}

/* ---- SwiGLU --------------------------------------------------------------------------- */
static void cpu_swiglu_fwd(qa_stream *s, size_t n, const float *g, const float *u, float *out) {
    (void)s;
    for (size_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}
static void cpu_swiglu_bwd(qa_stream *s, size_t n, const float *g, const float *u, const float *dout, float *dg,
                           float *du) {
    (void)s;
    for (size_t i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + expf(-g[i])), d = dout[i];
        float silu = g[i] * sg;
        du[i] = d * silu;
        dg[i] = d * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
    }
}

/* ---- frozen linear -------------------------------------------------------------------- */
static void cpu_linear_fwd(qa_stream *s, int N, int K, int M, float beta, const float *x, qa_weight W, qa_weight bias,
                           float *y) {
    if (N <= 0 || M <= 0) return;
    if (W.dtype == QA_DT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, M, K, 1.0f, x, K, W.data, K, beta, y, M);
    } else {
        int pr = panel_rows(K, M);
        float *buf = scratch_get(s, (size_t)pr * K);
        for (int r0 = 0; r0 < M; r0 += pr) {
            int r1 = r0 + pr < M ? r0 + pr : M;
            const float *Wp = weight_rows(W, r0, r1, K, buf);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r1 - r0, K, 1.0f, x, K, Wp, K, beta, y + r0, M);
        }
        scratch_done(s, buf);
    }
    if (bias.data)
        for (int n = 0; n < N; n++) {
            float *yr = y + (size_t)n * M;
            for (int j = 0; j < M; j++) yr[j] += wget(bias, j);
        }
}
static void cpu_linear_bwd(qa_stream *s, int N, int K, int M, float beta, const float *dy, qa_weight W, float *dx) {
    if (N <= 0 || K <= 0) return;
    if (W.dtype == QA_DT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, K, M, 1.0f, dy, M, W.data, K, beta, dx, K);
        return;
    }
    int pr = panel_rows(K, M);
    float *buf = scratch_get(s, (size_t)pr * K);
    for (int r0 = 0; r0 < M; r0 += pr) {
        int r1 = r0 + pr < M ? r0 + pr : M;
        const float *Wp = weight_rows(W, r0, r1, K, buf);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, K, r1 - r0, 1.0f, dy + r0, M, Wp, K,
                    r0 == 0 ? beta : 1.0f, dx, K);
    }
    scratch_done(s, buf);
}

/* ---- LoRA ----------------------------------------------------------------------------- */
/* x with dropout applied (into buf) or x itself when p == 0 */
static const float *lora_input(int N, int K, float p, uint64_t key, const float *x, float *buf) {
    if (p <= 0) return x;
    float keep = 1.0f / (1.0f - p);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            size_t i = (size_t)n * K + k;
            buf[i] = qa_dropout_keep(key, (uint64_t)n, (uint64_t)k, p) ? x[i] * keep : 0.0f;
        }
    return buf;
}
static void cpu_lora_fwd(qa_stream *s, int N, int K, int M, int r, float scale, float p, uint64_t key, const float *x,
                         const float *A, const float *Bm, float *xa, float *y) {
    if (N <= 0) return;
    float *buf = p > 0 ? scratch_get(s, (size_t)N * K) : NULL;
    const float *xd = lora_input(N, K, p, key, x, buf);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, r, K, 1.0f, xd, K, A, K, 0.0f, xa, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, M, r, scale, xa, r, Bm, r, 1.0f, y, M);
    if (buf) scratch_done(s, buf);
}
static void cpu_lora_bwd(qa_stream *s, int N, int K, int M, int r, float scale, float p, uint64_t key, const float *x,
                         const float *A, const float *Bm, const float *xa, const float *dy, float *dA, float *dB,
                         float *dx) {
    if (N <= 0) return;
    /* scratch: dxa [N,r] then (dropout) drop(x) [N,K] and dx_tmp [N,K] */
    size_t need = (size_t)N * r + (p > 0 ? (size_t)2 * N * K : 0);
    float *buf = scratch_get(s, need);
    float *dxa = buf, *xdb = buf + (size_t)N * r, *tmp = xdb + (size_t)N * K;
    /* dB += scale * dyᵀ xa */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, r, N, scale, dy, M, xa, r, 1.0f, dB, r);
    /* dxa = scale * dy B */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, r, M, scale, dy, M, Bm, r, 0.0f, dxa, r);
    const float *xd = lora_input(N, K, p, key, x, p > 0 ? xdb : NULL);
    /* dA += dxaᵀ drop(x) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, K, N, 1.0f, dxa, r, xd, K, 1.0f, dA, K);
    if (dx) {
        if (p <= 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, K, r, 1.0f, dxa, r, A, K, 1.0f, dx, K);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, K, r, 1.0f, dxa, r, A, K, 0.0f, tmp, K);
            float keep = 1.0f / (1.0f - p);
            for (int n = 0; n < N; n++)
                for (int k = 0; k < K; k++)
                    if (qa_dropout_keep(key, (uint64_t)n, (uint64_t)k, p)) dx[(size_t)n * K + k] += tmp[(size_t)n * K + k] * keep;
        }
    }
    scratch_done(s, buf);
}

/* ---- cross-entropy -------------------------------------------------------------------- */
static void cpu_cross_entropy_fwd(qa_stream *s, int M, int V, const float *logits, const int32_t *target, float *loss,
                                  float *lse) {
    (void)s;
    for (int i = 0; i < M; i++) {
        const float *x = logits + (size_t)i * V;
        float mx = -INFINITY;
        for (int j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        /* 16 float lanes (vectorized) per block of 1024, blocks summed in double: ~1e-7 relative */
        double sum = 0;
        int j = 0;
        for (; j + 1024 <= V; j += 1024) {
            float acc[16] = {0};
            for (int b = 0; b < 1024; b += 16)
                for (int q = 0; q < 16; q++) acc[q] += qa_expf(x[j + b + q] - mx);
            float part = 0;
            for (int q = 0; q < 16; q++) part += acc[q];
            sum += part;
        }
        for (; j < V; j++) sum += qa_expf(x[j] - mx);
        double l = mx + log(sum);
        lse[i] = (float)l;
        loss[i] = (float)(l - x[target[i]]);
    }
}
static void cpu_cross_entropy_bwd(qa_stream *s, int M, int V, float scale, const float *logits, const int32_t *target,
                                  const float *lse, float *dlogits) {
    (void)s;
    for (int i = 0; i < M; i++) {
        const float *x = logits + (size_t)i * V;
        float *d = dlogits + (size_t)i * V;
        float l = lse[i];
        for (int j = 0; j < V; j++) d[j] = scale * qa_expf(x[j] - l);
        d[target[i]] -= scale;
    }
}

/* ---- AdamW ---------------------------------------------------------------------------- */
static void cpu_adamw_step(qa_stream *s, size_t n, float lr, float beta1, float beta2, float eps, float wd,
                           int64_t step, float *p, const float *g, float *m, float *v) {
    (void)s;
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), decay = 1.0f - lr * wd;
    for (size_t i = 0; i < n; i++) {
        p[i] *= decay;
        m[i] += (g[i] - m[i]) * (1.0f - beta1);
        v[i] = v[i] * beta2 + (1.0f - beta2) * g[i] * g[i];
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] -= step_size * m[i] / denom;
    }
}

/* kernels/cpu/attn_prefix.c */
void qa_cpu_attention_prefix_fwd(qa_stream *s, const qa_attn_prefix_desc *d, const float *q, const float *kc,
                                 const float *vc, const float *k, const float *v, float *o);

static const qa_ops CPU_OPS = {
    .name = "cpu",
    .host_memory = 1,
    .stream_create = cpu_stream_create,
    .stream_destroy = cpu_stream_destroy,
    .sync = cpu_sync,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memcpy_h2d = cpu_memcpy,
    .memcpy_d2h = cpu_memcpy,
    .memcpy_d2d = cpu_memcpy,
    .memset0 = cpu_memset0,
    .gemm = cpu_gemm,
    .axpy = cpu_axpy,
    .gather_rows = cpu_gather_rows,
    .scatter_add_rows = cpu_scatter_add_rows,
    .embedding_fwd = cpu_embedding_fwd,
    .rmsnorm_fwd = cpu_rmsnorm_fwd,
    .rmsnorm_bwd = cpu_rmsnorm_bwd,
    .rope_fwd = cpu_rope_fwd,
    .rope_bwd = cpu_rope_bwd,
    .attention_fwd = cpu_attention_fwd,
    .attention_bwd = cpu_attention_bwd,
    .swiglu_fwd = cpu_swiglu_fwd,
    .swiglu_bwd = cpu_swiglu_bwd,
    .linear_fwd = cpu_linear_fwd,
    .linear_bwd = cpu_linear_bwd,
    .lora_fwd = cpu_lora_fwd,
    .lora_bwd = cpu_lora_bwd,
    .cross_entropy_fwd = cpu_cross_entropy_fwd,
    .cross_entropy_bwd = cpu_cross_entropy_bwd,
    .adamw_step = cpu_adamw_step,
    .attention_prefix_fwd = qa_cpu_attention_prefix_fwd,
};

const qa_ops *qa_ops_cpu(void) { return &CPU_OPS; }
