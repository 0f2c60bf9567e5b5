/* ops_cpu.c — the CPU backend of kernels/ops.h. Matmuls go through the backend's own blocked GEMM
 * (gemm.c: BF16 weights converted while packing, never as a whole); every op splits its work
 * statically over the stream's thread pool (pool.c). With a NULL stream an op runs on the calling
 * thread with per-call buffers. */
#include "kernels/ops.h"
#include "kernels/cpu/cpu_internal.h"
#include "kernels/nf4.h"
#include "kernels/cpu/fastmath.h"
#include "kernels/cpu/vecmath.h"
#include "common/qa_mem.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- context ---------------------------------------------------------------------------------- */
static int cpu_stream_create(qa_stream **s, const qa_stream_opts *o, qa_err *e) {
    (void)e;
    qa_stream *st = qa_calloc(1, sizeof *st);
    int n = o && o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > QA_CPU_MAX_THREADS) n = QA_CPU_MAX_THREADS;
    st->pool = n > 1 ? qa_pool_create(n) : NULL;
    st->nt = st->pool ? n : 1;
    for (int i = 0; i < st->nt; i++) qa_cpu_tws_init(&st->tws[i]);
    for (int i = 0; i < 2; i++) st->pb_shared[i] = qa_aligned_alloc(64, sizeof(float) * (size_t)QA_GEMM_KC * QA_GEMM_NC);
    *s = st;
    return 0;
}
static void cpu_stream_destroy(qa_stream *s) {
    if (!s) return;
    qa_pool_destroy(s->pool);
    for (int i = 0; i < s->nt; i++) qa_cpu_tws_free(&s->tws[i]);
    free(s->pb_shared[0]);
    free(s->pb_shared[1]);
    free(s->rope_cs);
    free(s->scratch);
    free(s);
}
static int cpu_sync(qa_stream *s, qa_err *e) { (void)s; (void)e; return 0; }

/* Scratch of n floats for the calling thread: from the stream when there is one (valid until the
 * next call on it), else a fresh block that the caller releases with scratch_done. */
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

/* ---- parallel loops ------------------------------------------------------------------------- */
/* fn(ctx, lo, hi, w) over a static split of [0, n) into contiguous ranges (multiples of align), one
 * per thread; w is the thread's workspace. Small n (< min_par) runs on the calling thread. */
typedef void (*range_fn)(void *ctx, long lo, long hi, qa_cpu_tws *w);
typedef struct { range_fn fn; void *ctx; long n, align; qa_stream *s; } range_job;
static void range_task(void *p, int tid, int nt) {
    range_job *j = p;
    long lo, hi;
    qa_split(j->n, tid, nt, j->align, &lo, &hi);
    if (hi > lo) j->fn(j->ctx, lo, hi, &j->s->tws[tid]);
}
static void par_range(qa_stream *s, long n, long align, long min_par, range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (!s) {
        qa_cpu_tws w;
        qa_cpu_tws_init(&w);
        fn(ctx, 0, n, &w);
        qa_cpu_tws_free(&w);
        return;
    }
    if (s->nt == 1 || n < min_par) { fn(ctx, 0, n, &s->tws[0]); return; }
    range_job j = {fn, ctx, n, align, s};
    qa_pool_run(s->pool, range_task, &j);
}

typedef struct { qa_cpu_task_fn fn; void *ctx; long n; qa_stream *s; _Atomic long next; } task_job;
static void task_run(void *p, int tid, int nt) {
    (void)nt;
    task_job *j = p;
    for (long t; (t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->n;) j->fn(j->ctx, t, &j->s->tws[tid]);
}
void qa_cpu_par_tasks(qa_stream *s, long n, qa_cpu_task_fn fn, void *ctx) {
    if (n <= 0) return;
    if (!s || s->nt == 1 || n == 1) {
        qa_cpu_tws w, *wp = s ? &s->tws[0] : &w;
        if (!s) qa_cpu_tws_init(&w);
        for (long t = 0; t < n; t++) fn(ctx, t, wp);
        if (!s) qa_cpu_tws_free(&w);
        return;
    }
    task_job j = {fn, ctx, n, s, 0};
    atomic_init(&j.next, 0);
    qa_pool_run(s->pool, task_run, &j);
}
#define par_tasks qa_cpu_par_tasks

/* ---- memory ----------------------------------------------------------------------------------- */
/* large copies and clears are split over the threads (the source and destination do not overlap
 * unless they are equal: backend buffers are distinct views) */
typedef struct { char *dst; const char *src; } mem_ctx;
static void copy_range(void *p, long lo, long hi, qa_cpu_tws *w) {
    (void)w;
    mem_ctx *c = p;
    memcpy(c->dst + lo, c->src + lo, (size_t)(hi - lo));
}
static void zero_range(void *p, long lo, long hi, qa_cpu_tws *w) {
    (void)w;
    mem_ctx *c = p;
    memset(c->dst + lo, 0, (size_t)(hi - lo));
}
static void cpu_memcpy(qa_stream *s, void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return;
    const char *d = dst, *sc = src;
    if (!s || s->nt == 1 || bytes < (1u << 18) || (d < sc + bytes && sc < d + bytes)) { memmove(dst, src, bytes); return; }
    mem_ctx c = {dst, src};
    par_range(s, (long)bytes, 4096, 0, copy_range, &c);
}
static void cpu_memset0(qa_stream *s, void *dst, size_t bytes) {
    if (!bytes) return;
    if (!s || s->nt == 1 || bytes < (1u << 18)) { memset(dst, 0, bytes); return; }
    mem_ctx c = {dst, NULL};
    par_range(s, (long)bytes, 4096, 0, zero_range, &c);
}

/* ---- helpers -------------------------------------------------------------------------------- */
static inline float wget(qa_weight w, size_t i) {
    return w.dtype == QA_DT_BF16 ? qa_bf16_to_f32(((const uint16_t *)w.data)[i]) : ((const float *)w.data)[i];
}
/* a [n] weight as f32: the data itself or converted into buf */
static const float *wvec(qa_weight w, size_t n, float *buf) {
    if (w.dtype == QA_DT_F32) return w.data;
    for (size_t i = 0; i < n; i++) buf[i] = qa_bf16_to_f32(((const uint16_t *)w.data)[i]);
    return buf;
}
static qa_gemm_b gb_f32(const float *p, int ld, int trans) { return (qa_gemm_b){p, QA_DT_F32, ld, trans, NULL, 0}; }
/* a frozen weight W [M, K] as the B operand (NF4: codes and absmax of its block) */
static qa_gemm_b gb_w(qa_weight W, int M, int K, int trans) {
    const float *am = W.dtype == QA_DT_NF4 ? qa_nf4_absmax(W.data, (size_t)M * K) : NULL;
    return (qa_gemm_b){W.data, W.dtype, K, trans, am, 0};
}

typedef struct { float alpha; const float *x; float *y; } axpy_ctx;
static void axpy_range(void *p, long lo, long hi, qa_cpu_tws *w) {
    (void)w;
    axpy_ctx *c = p;
    for (long i = lo; i < hi; i++) c->y[i] += c->alpha * c->x[i];
}
static void cpu_axpy(qa_stream *s, size_t n, float alpha, const float *x, float *y) {
    axpy_ctx c = {alpha, x, y};
    par_range(s, (long)n, 1024, 1 << 16, axpy_range, &c);
}

typedef struct { int D; const float *src; const int32_t *idx; float *dst; } rows_ctx;
static void gather_range(void *p, long lo, long hi, qa_cpu_tws *w) {
    (void)w;
    rows_ctx *c = p;
    for (long i = lo; i < hi; i++) memcpy(c->dst + (size_t)i * c->D, c->src + (size_t)c->idx[i] * c->D, sizeof(float) * c->D);
}
static void scatter_range(void *p, long lo, long hi, qa_cpu_tws *w) {
    (void)w;
    rows_ctx *c = p;
    for (long i = lo; i < hi; i++) {
        float *d = c->dst + (size_t)c->idx[i] * c->D;
        const float *r = c->src + (size_t)i * c->D;
        for (int j = 0; j < c->D; j++) d[j] += r[j];
    }
}
static void cpu_gather_rows(qa_stream *s, int M, int D, const float *src, const int32_t *idx, float *dst) {
    rows_ctx c = {D, src, idx, dst};
    par_range(s, M, 1, 64, gather_range, &c);
}
/* indices are distinct: rows can be split over threads */
static void cpu_scatter_add_rows(qa_stream *s, int M, int D, const float *src, const int32_t *idx, float *dst) {
    rows_ctx c = {D, src, idx, dst};
    par_range(s, M, 1, 64, scatter_range, &c);
}

/* ---- embedding ------------------------------------------------------------------------ */
typedef struct { int D; qa_weight table; const int32_t *ids; float *out; } emb_ctx;
static void emb_range(void *p, long lo, long hi, qa_cpu_tws *w) {
    (void)w;
    emb_ctx *c = p;
    const int D = c->D;
    for (long n = lo; n < hi; n++) {
        float *o = c->out + (size_t)n * D;
        size_t base = (size_t)c->ids[n] * D;
        if (c->table.dtype == QA_DT_F32) memcpy(o, (const float *)c->table.data + base, sizeof(float) * D);
        else for (int j = 0; j < D; j++) o[j] = qa_bf16_to_f32(((const uint16_t *)c->table.data)[base + j]);
    }
}
static void cpu_embedding_fwd(qa_stream *s, int N, int D, qa_weight table, const int32_t *ids, float *out) {
    emb_ctx c = {D, table, ids, out};
    par_range(s, N, 1, 64, emb_range, &c);
}

/* ---- RMSNorm -------------------------------------------------------------------------- */
/* sum of a[j] * b[j] in double (8 lanes: vectorizes) */
static inline double dot_d(const float *a, const float *b, int n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int q = 0; q < 8; q++) acc[q] += (double)a[j + q] * (double)b[j + q];
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; j < n; j++) s += (double)a[j] * b[j];
    return s;
}
typedef struct { int D; float eps, beta; const float *x; qa_weight w; const float *rstd, *dy; float *y, *r; } rms_ctx;
static void rms_fwd_range(void *p, long lo, long hi, qa_cpu_tws *ws) {
    rms_ctx *c = p;
    const int D = c->D;
    const float *w = wvec(c->w, D, qa_cpu_tws_tmp(ws, D));
    for (long n = lo; n < hi; n++) {
        const float *xr = c->x + (size_t)n * D;
        float *yr = c->y + (size_t)n * D;
        float r = (float)(1.0 / sqrt(dot_d(xr, xr, D) / D + c->eps));
        for (int j = 0; j < D; j++) yr[j] = (xr[j] * r) * w[j];
        if (c->r) c->r[n] = r;
    }
}
static void cpu_rmsnorm_fwd(qa_stream *s, int N, int D, float eps, const float *x, qa_weight w, float *y,
                            float *rstd) {
    rms_ctx c = {D, eps, 0, x, w, NULL, NULL, y, rstd};
    par_range(s, N, 1, 16, rms_fwd_range, &c);
}
static void rms_bwd_range(void *p, long lo, long hi, qa_cpu_tws *ws) {
    rms_ctx *c = p;
    const int D = c->D;
    float *buf = qa_cpu_tws_tmp(ws, 2 * (size_t)D);
    const float *w = wvec(c->w, D, buf);
    float *t = buf + D;
    for (long n = lo; n < hi; n++) {
        const float *xr = c->x + (size_t)n * D, *dyr = c->dy + (size_t)n * D;
        float *dxr = c->y + (size_t)n * D;
        const float r = c->rstd[n];
        for (int j = 0; j < D; j++) t[j] = dyr[j] * w[j];
        float cc = (float)(dot_d(t, xr, D) * r * r * r / D);
        if (c->beta == 0)
            for (int j = 0; j < D; j++) dxr[j] = r * dyr[j] * w[j] - xr[j] * cc;
        else
            for (int j = 0; j < D; j++) dxr[j] = c->beta * dxr[j] + (r * dyr[j] * w[j] - xr[j] * cc);
    }
}
static void cpu_rmsnorm_bwd(qa_stream *s, int N, int D, float beta, const float *x, qa_weight w, const float *rstd,
                            const float *dy, float *dx) {
    rms_ctx c = {D, 0, beta, x, w, rstd, dy, dx, NULL};
    par_range(s, N, 1, 16, rms_bwd_range, &c);
}

/* ---- RoPE ----------------------------------------------------------------------------- */
/* HF: inv_freq = 1.0 / (base ** (arange(0, dim, 2).float() / dim)), angle = pos * inv_freq, all fp32 */
static void rope_row(int hd, float theta, int32_t pos, float *cs /* [hd/2] cos, then [hd/2] sin */) {
    const int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float a = (float)pos * (1.0f / powf(theta, (float)(2 * i) / (float)hd));
        cs[i] = (float)cos((double)a);
        cs[half + i] = (float)sin((double)a);
    }
}
typedef struct { int hd; float theta; float *tab; } ropetab_ctx;
static void ropetab_range(void *p, long lo, long hi, qa_cpu_tws *w) {
    (void)w;
    ropetab_ctx *c = p;
    for (long t = lo; t < hi; t++) rope_row(c->hd, c->theta, (int32_t)t, c->tab + (size_t)t * c->hd);
}
/* the stream's table for positions [0, len) (rebuilt when theta / hd change or len grows) */
static const float *rope_table(qa_stream *s, int hd, float theta, int len) {
    if (s->rope_cs && s->rope_hd == hd && s->rope_theta == theta && s->rope_len >= len) return s->rope_cs;
    int cap = len < 4096 ? 4096 : len;
    free(s->rope_cs);
    s->rope_cs = qa_aligned_alloc(64, sizeof(float) * (size_t)cap * hd);
    s->rope_hd = hd;
    s->rope_theta = theta;
    s->rope_len = cap;
    ropetab_ctx c = {hd, theta, s->rope_cs};
    par_range(s, cap, 16, 64, ropetab_range, &c);
    return s->rope_cs;
}
typedef struct { int H, hd; float theta, sign; const int32_t *pos; const float *tab; float *x; } rope_ctx;
static void rope_range(void *p, long lo, long hi, qa_cpu_tws *w) {
    rope_ctx *c = p;
    const int half = c->hd / 2;
    float *own = c->tab ? NULL : qa_cpu_tws_tmp(w, (size_t)c->hd);
    for (long n = lo; n < hi; n++) {
        const float *cs;
        if (c->tab) cs = c->tab + (size_t)c->pos[n] * c->hd;
        else { rope_row(c->hd, c->theta, c->pos[n], own); cs = own; }
        const float *sn = cs + half;
        const float sg = c->sign;
        for (int h = 0; h < c->H; h++) {
            float *v = c->x + ((size_t)n * c->H + h) * c->hd;
            for (int i = 0; i < half; i++) {
                float x0 = v[i], x1 = v[i + half], si = sg * sn[i];
                v[i] = x0 * cs[i] - x1 * si;
                v[i + half] = x1 * cs[i] + x0 * si;
            }
        }
    }
}
static void rope_apply(qa_stream *s, int N, int H, int hd, float theta, const int32_t *pos, float *x, float sign) {
    int pmax = 0;
    for (int n = 0; n < N; n++) pmax = pos[n] > pmax ? pos[n] : pmax;
    rope_ctx c = {H, hd, theta, sign, pos, NULL, x};
    if (s && pmax < (1 << 20)) c.tab = rope_table(s, hd, theta, pmax + 1);
    par_range(s, N, 1, 16, rope_range, &c);
}
static void cpu_rope_fwd(qa_stream *s, int N, int H, int hd, float theta, const int32_t *pos, float *x) {
    rope_apply(s, N, H, hd, theta, pos, x, 1.0f);
}
/* the rotation is orthogonal: its transpose is the rotation by -a */
static void cpu_rope_bwd(qa_stream *s, int N, int H, int hd, float theta, const int32_t *pos, float *dx) {
    rope_apply(s, N, H, hd, theta, pos, dx, -1.0f);
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
/* keys [lo, hi) that causality and the window leave to query i (absolute key indices) */
static inline void att_range(const qa_attn_desc *d, int i, int *lo, int *hi) {
    int l = d->window > 0 ? i - d->window + 1 : 0;
    *lo = l < 0 ? 0 : l;
    *hi = i + 1;
}

/* row = scores of keys [j0, j0+nk) for query i of row b -> exp(score - max) (0 where not visible), *inv =
 * 1 / their sum (the caller scales the output row: P V = (E V) * inv); returns the log-sum-exp, -inf when no
 * key is visible (row all 0, *inv 0). */
static float softmax_row(const qa_attn_desc *d, int b, int i, int j0, int nk, float *row, float *inv) {
    *inv = 0.0f;
    int lo, hi;
    att_range(d, i, &lo, &hi);
    lo -= j0;
    hi -= j0;
    if (lo < 0) lo = 0;
    for (int j = 0; j < lo; j++) row[j] = 0;
    for (int j = hi; j < nk; j++) row[j] = 0;
    const int masked = d->key_mask || d->segment;
    if (masked)
        for (int j = lo; j < hi; j++)
            if (!att_visible(d, b, i, j0 + j)) row[j] = -INFINITY;
    float mx = -INFINITY;
    int jm = lo;
#ifdef QA_VEC
    if (qa_cpu_have_avx2()) { jm = lo + (hi - lo) / 8 * 8; mx = qa_max8(jm - lo, row + lo, mx); }
#endif
    for (int j = jm; j < hi; j++) mx = row[j] > mx ? row[j] : mx;
    if (mx == -INFINITY) {
        for (int j = lo; j < hi; j++) row[j] = 0;
        return -INFINITY;
    }
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = lo;
    if (masked) {
        for (; j + 8 <= hi; j += 8)
            for (int q = 0; q < 8; q++) {
                float v = row[j + q], e = qa_expf(v - mx);
                e = v == -INFINITY ? 0.0f : e;
                row[j + q] = e;
                acc[q] += e;
            }
    } else {
#ifdef QA_VEC
        if (qa_cpu_have_avx2()) {
            long n8 = (hi - j) / 8 * 8;
            qa_exp_acc8(n8, row + j, mx, acc);
            j += (int)n8;
        }
#endif
        for (; j + 8 <= hi; j += 8)
            for (int q = 0; q < 8; q++) {
                float e = qa_expf(row[j + q] - mx);
                row[j + q] = e;
                acc[q] += e;
            }
    }
    double sum = ((double)acc[0] + acc[1]) + ((double)acc[2] + acc[3]) + (((double)acc[4] + acc[5]) + ((double)acc[6] + acc[7]));
    for (; j < hi; j++) {
        float v = row[j], e = v == -INFINITY ? 0.0f : qa_expf(v - mx);
        row[j] = e;
        sum += e;
    }
    *inv = (float)(1.0 / sum);
    return mx + (float)log(sum);
}

typedef struct {
    const qa_attn_desc *d;
    const float *q, *k, *v, *o, *lse, *dout;
    float *out, *lse_out, *dq, *dk, *dv;
    int nqb;                                  /* query blocks per row */
} att_ctx;

/* rows [i0, i0+nq) of the grp query heads of KV head g (row b), stacked: dst[hh*nq + i] = src[b, i0+i, g*grp+hh] */
static void att_gather(const qa_attn_desc *d, const float *src, int b, int g, int i0, int nq, float *dst) {
    const int H = d->n_heads, hd = d->head_dim, grp = H / d->n_kv_heads;
    for (int hh = 0; hh < grp; hh++)
        for (int i = 0; i < nq; i++)
            memcpy(dst + ((size_t)hh * nq + i) * hd, src + (((size_t)b * d->T + i0 + i) * H + g * grp + hh) * hd,
                   sizeof(float) * hd);
}
static void att_scatter(const qa_attn_desc *d, const float *src, int b, int g, int i0, int nq, float *dst) {
    const int H = d->n_heads, hd = d->head_dim, grp = H / d->n_kv_heads;
    for (int hh = 0; hh < grp; hh++)
        for (int i = 0; i < nq; i++)
            memcpy(dst + (((size_t)b * d->T + i0 + i) * H + g * grp + hh) * hd, src + ((size_t)hh * nq + i) * hd,
                   sizeof(float) * hd);
}

/* forward: one task per (query block, b, kv head g), the latest (costliest) query blocks first. The grp
 * query heads that share g go through one product against g's keys and one against its values, each
 * packing those once (qa_gemm_st_batch). */
enum { ATT_HCHUNK = 16 }; /* query heads per batch of products */
static void att_fwd_task(void *p, long task, qa_cpu_tws *w) {
    att_ctx *c = p;
    const qa_attn_desc *d = c->d;
    const int T = d->T, H = d->n_heads, Hk = d->n_kv_heads, hd = d->head_dim, grp = H / Hk;
    const int ldq = H * hd, ldk = Hk * hd;
    const int qb = c->nqb - 1 - (int)(task / ((long)d->B * Hk)), bg = (int)(task % ((long)d->B * Hk));
    const int b = bg / Hk, g = bg % Hk;
    const int i0 = qb * ATT_QB, i1 = i0 + ATT_QB < T ? i0 + ATT_QB : T, nq = i1 - i0;
    const int j0 = att_key_start(d, i0), nk = i1 - j0;
    const int nh = grp < ATT_HCHUNK ? grp : ATT_HCHUNK;
    float *S = qa_cpu_tws_tmp(w, (size_t)nh * nq * (nk + 1)), *inv = S + (size_t)nh * nq * nk;
    const float *K = c->k + ((size_t)b * T + j0) * ldk + (size_t)g * hd;
    const float *Vv = c->v + ((size_t)b * T + j0) * ldk + (size_t)g * hd;
    for (int h0 = 0; h0 < grp; h0 += nh) {
        const int n = grp - h0 < nh ? grp - h0 : nh;
        const float *Qh[ATT_HCHUNK], *Ph[ATT_HCHUNK];
        float *Sh[ATT_HCHUNK], *Oh[ATT_HCHUNK];
        for (int x = 0; x < n; x++) {
            const size_t qo = ((size_t)b * T + i0) * ldq + (size_t)(g * grp + h0 + x) * hd;
            Qh[x] = c->q + qo;
            Oh[x] = c->out + qo;
            Sh[x] = S + (size_t)x * nq * nk;
            Ph[x] = Sh[x];
        }
        /* S_h = scale * Q_h K_[j0,i1)ᵀ */
        qa_gemm_st_batch(w, n, 0, nq, nk, hd, d->scale, Qh, ldq, gb_f32(K, ldk, 1), 0.0f, Sh, nk);
        for (int r = 0; r < n * nq; r++) {
            const int h = g * grp + h0 + r / nq, i = i0 + r % nq;
            c->lse_out[((size_t)b * H + h) * T + i] = softmax_row(d, b, i, j0, nk, S + (size_t)r * nk, inv + r);
        }
        /* O_h = (E_h V_[j0,i1)) * inv */
        qa_gemm_st_batch(w, n, 0, nq, hd, nk, 1.0f, Ph, nk, gb_f32(Vv, ldk, 0), 0.0f, Oh, ldq);
        for (int r = 0; r < n * nq; r++) {
            float *o = Oh[r / nq] + (size_t)(r % nq) * ldq;
            const float s = inv[r];
            for (int e = 0; e < hd; e++) o[e] *= s;
        }
    }
}
/* single queries: one task per (query, kv head g); the same steps as att_fwd_task for that row */
typedef struct { const qa_attn_desc *d; const int32_t *qrow; const float *q, *k, *v; float *o; } attrows_ctx;
static void att_rows_task(void *p, long task, qa_cpu_tws *w) {
    const attrows_ctx *c = p;
    const qa_attn_desc *d = c->d;
    const int T = d->T, H = d->n_heads, Hk = d->n_kv_heads, hd = d->head_dim, grp = H / Hk, ldk = Hk * hd;
    const int r = (int)(task / Hk), g = (int)(task % Hk), b = c->qrow[r] / T, i = c->qrow[r] % T;
    /* the key range of i's query block in attention_fwd, cut at i: the same columns, minus trailing zeros */
    const int j0 = att_key_start(d, i / ATT_QB * ATT_QB), nk = i + 1 - j0;
    float *S = qa_cpu_tws_tmp(w, (size_t)grp * (nk + 1)), *inv = S + (size_t)grp * nk;
    const float *K = c->k + ((size_t)b * T + j0) * ldk + (size_t)g * hd;
    const float *Vv = c->v + ((size_t)b * T + j0) * ldk + (size_t)g * hd;
    const float *Q = c->q + ((size_t)r * H + (size_t)g * grp) * hd; /* the grp heads of g: rows of hd */
    float *O = c->o + ((size_t)r * H + (size_t)g * grp) * hd;
    for (int h = 0; h < grp; h++) {
        /* row by row, as attention_fwd's products compute each row on its own */
        qa_gemm_st(w, 0, 1, nk, hd, d->scale, Q + (size_t)h * hd, hd, gb_f32(K, ldk, 1), 0.0f, S + (size_t)h * nk, nk);
        softmax_row(d, b, i, j0, nk, S + (size_t)h * nk, inv + h);
        qa_gemm_st(w, 0, 1, hd, nk, 1.0f, S + (size_t)h * nk, nk, gb_f32(Vv, ldk, 0), 0.0f, O + (size_t)h * hd, hd);
        for (int e = 0; e < hd; e++) O[(size_t)h * hd + e] *= inv[h];
    }
}
static void cpu_attention_rows_fwd(qa_stream *s, const qa_attn_desc *d, int R, const int32_t *qrow, const float *q,
                                   const float *k, const float *v, float *o) {
    attrows_ctx c = {d, qrow, q, k, v, o};
    par_tasks(s, (long)R * d->n_kv_heads, att_rows_task, &c);
}

static void cpu_attention_fwd(qa_stream *s, const qa_attn_desc *d, const float *q, const float *k, const float *v,
                              float *o, float *lse) {
    const int nqb = (d->T + ATT_QB - 1) / ATT_QB;
    att_ctx c = {d, q, k, v, NULL, NULL, NULL, o, lse, NULL, NULL, NULL, nqb};
    par_tasks(s, (long)nqb * d->B * d->n_kv_heads, att_fwd_task, &c);
}

/* backward: one task per (b, kv head g): it owns dK, dV of g and covers the grp query heads of the group,
 * stacked per query block as in the forward */
static void att_bwd_task(void *p, long task, qa_cpu_tws *w) {
    att_ctx *c = p;
    const qa_attn_desc *d = c->d;
    const int T = d->T, H = d->n_heads, Hk = d->n_kv_heads, hd = d->head_dim, grp = H / Hk, ldk = Hk * hd;
    const int b = (int)(task / Hk), g = (int)(task % Hk), Mx = grp * ATT_QB;
    float *Qs = qa_cpu_tws_tmp(w, (size_t)Mx * (4 * hd + 2 * T + 1));
    float *Os = Qs + (size_t)Mx * hd, *dOs = Os + (size_t)Mx * hd, *dQs = dOs + (size_t)Mx * hd;
    float *P = dQs + (size_t)Mx * hd, *dP = P + (size_t)Mx * T, *Di = dP + (size_t)Mx * T;
    const size_t koff = (size_t)b * T * ldk + (size_t)g * hd;
    const float *K = c->k + koff, *Vv = c->v + koff;
    float *dK = c->dk + koff, *dV = c->dv + koff;
    for (int t = 0; t < T; t++) {
        memset(dK + (size_t)t * ldk, 0, sizeof(float) * hd);
        memset(dV + (size_t)t * ldk, 0, sizeof(float) * hd);
    }
    for (int i0 = 0; i0 < T; i0 += ATT_QB) {
        const int i1 = i0 + ATT_QB < T ? i0 + ATT_QB : T, nq = i1 - i0;
        const int j0 = att_key_start(d, i0), nk = i1 - j0, M = grp * nq;
        att_gather(d, c->q, b, g, i0, nq, Qs);
        att_gather(d, c->o, b, g, i0, nq, Os);
        att_gather(d, c->dout, b, g, i0, nq, dOs);
        const float *Kb = K + (size_t)j0 * ldk, *Vb = Vv + (size_t)j0 * ldk;
        qa_gemm_st(w, 0, M, nk, hd, d->scale, Qs, hd, gb_f32(Kb, ldk, 1), 0.0f, P, nk);
        /* dP = dOs V_[j0,i1)ᵀ */
        qa_gemm_st(w, 0, M, nk, hd, 1.0f, dOs, hd, gb_f32(Vb, ldk, 1), 0.0f, dP, nk);
        for (int r = 0; r < M; r++) {
            const int h = g * grp + r / nq, i = i0 + r % nq;
            const float Li = c->lse[((size_t)b * H + h) * T + i];
            Di[r] = (float)dot_d(Os + (size_t)r * hd, dOs + (size_t)r * hd, hd);
            float *prow = P + (size_t)r * nk, *dprow = dP + (size_t)r * nk;
            int klo, khi;
            att_range(d, i, &klo, &khi);
            klo -= j0;
            khi -= j0;
            if (klo < 0) klo = 0;
            if (Li == -INFINITY) klo = khi = 0;
            for (int j = 0; j < klo; j++) prow[j] = dprow[j] = 0;
            for (int j = khi; j < nk; j++) prow[j] = dprow[j] = 0;
            for (int j = klo; j < khi; j++) {
                float pj = qa_expf(prow[j] - Li);
                prow[j] = pj;
                /* dS (scale folded into the gemms below) */
                dprow[j] = pj * (dprow[j] - Di[r]);
            }
            if (d->key_mask || d->segment)
                for (int j = klo; j < khi; j++)
                    if (!att_visible(d, b, i, j0 + j)) prow[j] = dprow[j] = 0;
        }
        /* dV_[j0,i1) += Pᵀ dOs */
        qa_gemm_st(w, 1, nk, hd, M, 1.0f, P, nk, gb_f32(dOs, hd, 0), 1.0f, dV + (size_t)j0 * ldk, ldk);
        /* dQs = scale * dS K_[j0,i1) */
        qa_gemm_st(w, 0, M, hd, nk, d->scale, dP, nk, gb_f32(Kb, ldk, 0), 0.0f, dQs, hd);
        att_scatter(d, dQs, b, g, i0, nq, c->dq);
        /* dK_[j0,i1) += scale * dSᵀ Qs */
        qa_gemm_st(w, 1, nk, hd, M, d->scale, dP, nk, gb_f32(Qs, hd, 0), 1.0f, dK + (size_t)j0 * ldk, ldk);
    }
}
static void cpu_attention_bwd(qa_stream *s, const qa_attn_desc *d, const float *q, const float *k, const float *v,
                              const float *o, const float *lse, const float *dout, float *dq, float *dk, float *dv) {
    att_ctx c = {d, q, k, v, o, lse, dout, NULL, NULL, dq, dk, dv, 0};
    par_tasks(s, (long)d->B * d->n_kv_heads, att_bwd_task, &c);
}

/* ---- SwiGLU --------------------------------------------------------------------------- */
typedef struct { const float *g, *u, *dout; float *out, *dg, *du; } swiglu_ctx;
static void swiglu_fwd_range(void *p, long lo, long hi, qa_cpu_tws *w) {
    (void)w;
    swiglu_ctx *c = p;
    const float *g = c->g, *u = c->u;
    float *out = c->out;
#ifdef QA_VEC
    if (qa_cpu_have_avx2()) {
        long n8 = (hi - lo) / 8 * 8;
        qa_swiglu_fwd8(n8, g + lo, u + lo, out + lo);
        lo += n8;
    }
#endif
    for (long i = lo; i < hi; i++) out[i] = g[i] / (1.0f + qa_expf(-g[i])) * u[i];
}
static void cpu_swiglu_fwd(qa_stream *s, size_t n, const float *g, const float *u, float *out) {
    swiglu_ctx c = {g, u, NULL, out, NULL, NULL};
    par_range(s, (long)n, 64, 1 << 14, swiglu_fwd_range, &c);
}
static void swiglu_bwd_range(void *p, long lo, long hi, qa_cpu_tws *w) {
    (void)w;
    swiglu_ctx *c = p;
    const float *g = c->g, *u = c->u, *dout = c->dout;
    float *dg = c->dg, *du = c->du;
#ifdef QA_VEC
    if (qa_cpu_have_avx2()) {
        long n8 = (hi - lo) / 8 * 8;
        qa_swiglu_bwd8(n8, g + lo, u + lo, dout + lo, dg + lo, du + lo);
        lo += n8;
    }
#endif
    for (long i = lo; i < hi; i++) {
        float sg = 1.0f / (1.0f + qa_expf(-g[i])), d = dout[i];
        float silu = g[i] * sg;
        float ui = u[i];
        du[i] = d * silu;
        dg[i] = d * ui * sg * (1.0f + g[i] * (1.0f - sg));
    }
}
static void cpu_swiglu_bwd(qa_stream *s, size_t n, const float *g, const float *u, const float *dout, float *dg,
                           float *du) {
    swiglu_ctx c = {g, u, dout, NULL, dg, du};
    par_range(s, (long)n, 64, 1 << 14, swiglu_bwd_range, &c);
}

/* ---- frozen linear -------------------------------------------------------------------- */
typedef struct { int M; qa_weight bias; float *y; } bias_ctx;
static void bias_range(void *p, long lo, long hi, qa_cpu_tws *w) {
    bias_ctx *c = p;
    const float *b = wvec(c->bias, c->M, qa_cpu_tws_tmp(w, c->M));
    for (long n = lo; n < hi; n++) {
        float *yr = c->y + (size_t)n * c->M;
        for (int j = 0; j < c->M; j++) yr[j] += b[j];
    }
}
static void cpu_linear_fwd(qa_stream *s, int N, int K, int M, float beta, const float *x, qa_weight W, qa_weight bias,
                           float *y) {
    if (N <= 0 || M <= 0) return;
    qa_gemm(s, 0, N, M, K, 1.0f, x, K, gb_w(W, M, K, 1), beta, y, M);
    if (bias.data) {
        bias_ctx c = {M, bias, y};
        par_range(s, N, 1, 16, bias_range, &c);
    }
}
static void cpu_linear_bwd(qa_stream *s, int N, int K, int M, float beta, const float *dy, qa_weight W, float *dx) {
    if (N <= 0 || K <= 0) return;
    qa_gemm(s, 0, N, K, M, 1.0f, dy, M, gb_w(W, M, K, 0), beta, dx, K);
}

static void cpu_linear_multi_fwd(qa_stream *s, int N, int K, int n, const float *x, const int *M, const qa_weight *W,
                                 const qa_weight *bias, float *const *y) {
    if (N <= 0 || n <= 0) return;
    qa_gemm_seg seg[QA_GEMM_MAX_SEG];
    for (int i0 = 0; i0 < n; i0 += QA_GEMM_MAX_SEG) {
        const int ns = n - i0 < QA_GEMM_MAX_SEG ? n - i0 : QA_GEMM_MAX_SEG;
        for (int i = 0; i < ns; i++)
            seg[i] = (qa_gemm_seg){gb_w(W[i0 + i], M[i0 + i], K, 1), M[i0 + i], y[i0 + i], M[i0 + i]};
        qa_gemm_ex(s, N, K, 1.0f, (qa_gemm_a){x, K, 0, NULL}, ns, seg, 0.0f);
    }
    for (int i = 0; i < n; i++)
        if (bias[i].data) {
            bias_ctx c = {M[i], bias[i], y[i]};
            par_range(s, N, 1, 16, bias_range, &c);
        }
}
static void cpu_swiglu_linear_fwd(qa_stream *s, int N, int K, int M, float beta, const float *g, const float *u,
                                  qa_weight W, qa_weight bias, float *y) {
    if (N <= 0 || M <= 0) return;
    qa_gemm_seg seg = {gb_w(W, M, K, 1), M, y, M};
    qa_gemm_ex(s, N, K, 1.0f, (qa_gemm_a){g, K, 0, u}, 1, &seg, beta);
    if (bias.data) {
        bias_ctx c = {M, bias, y};
        par_range(s, N, 1, 16, bias_range, &c);
    }
}

/* ---- LoRA ----------------------------------------------------------------------------- */
typedef struct { int K; float p, keep; uint64_t key; const float *x; float *buf, *dx; const float *tmp; } drop_ctx;
static void drop_range(void *pp, long lo, long hi, qa_cpu_tws *w) {
    (void)w;
    drop_ctx *c = pp;
    for (long n = lo; n < hi; n++)
        for (int k = 0; k < c->K; k++) {
            size_t i = (size_t)n * c->K + k;
            c->buf[i] = qa_dropout_keep(c->key, (uint64_t)n, (uint64_t)k, c->p) ? c->x[i] * c->keep : 0.0f;
        }
}
static void drop_add_range(void *pp, long lo, long hi, qa_cpu_tws *w) {
    (void)w;
    drop_ctx *c = pp;
    for (long n = lo; n < hi; n++)
        for (int k = 0; k < c->K; k++) {
            size_t i = (size_t)n * c->K + k;
            if (qa_dropout_keep(c->key, (uint64_t)n, (uint64_t)k, c->p)) c->dx[i] += c->tmp[i] * c->keep;
        }
}
/* x with dropout applied (into buf) or x itself when p == 0 */
static const float *lora_input(qa_stream *s, int N, int K, float p, uint64_t key, const float *x, float *buf) {
    if (p <= 0) return x;
    drop_ctx c = {K, p, 1.0f / (1.0f - p), key, x, buf, NULL, NULL};
    par_range(s, N, 1, 16, drop_range, &c);
    return buf;
}
static void cpu_lora_fwd(qa_stream *s, int N, int K, int M, int r, float scale, float p, uint64_t key, const float *x,
                         const float *A, const float *Bm, float *xa, float *y) {
    if (N <= 0) return;
    float *buf = p > 0 ? scratch_get(s, (size_t)N * K) : NULL;
    const float *xd = lora_input(s, N, K, p, key, x, buf);
    qa_gemm(s, 0, N, r, K, 1.0f, xd, K, gb_f32(A, K, 1), 0.0f, xa, r);
    qa_gemm(s, 0, N, M, r, scale, xa, r, gb_f32(Bm, r, 1), 1.0f, y, M);
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
    qa_gemm(s, 1, M, r, N, scale, dy, M, gb_f32(xa, r, 0), 1.0f, dB, r);
    /* dxa = scale * dy B */
    qa_gemm(s, 0, N, r, M, scale, dy, M, gb_f32(Bm, r, 0), 0.0f, dxa, r);
    const float *xd = lora_input(s, N, K, p, key, x, p > 0 ? xdb : NULL);
    /* dA += dxaᵀ drop(x) */
    qa_gemm(s, 1, r, K, N, 1.0f, dxa, r, gb_f32(xd, K, 0), 1.0f, dA, K);
    if (dx) {
        if (p <= 0) {
            qa_gemm(s, 0, N, K, r, 1.0f, dxa, r, gb_f32(A, K, 0), 1.0f, dx, K);
        } else {
            qa_gemm(s, 0, N, K, r, 1.0f, dxa, r, gb_f32(A, K, 0), 0.0f, tmp, K);
            drop_ctx c = {K, p, 1.0f / (1.0f - p), key, NULL, NULL, dx, tmp};
            par_range(s, N, 1, 16, drop_add_range, &c);
        }
    }
    scratch_done(s, buf);
}

/* ---- cross-entropy -------------------------------------------------------------------- */
typedef struct { int V; float scale; const float *logits; const int32_t *target; float *loss, *lse; const float *lse_in; float *d; } ce_ctx;
static void ce_fwd_range(void *p, long lo, long hi, qa_cpu_tws *w) {
    (void)w;
    ce_ctx *c = p;
    const int V = c->V;
    for (long i = lo; i < hi; i++) {
        const float *x = c->logits + (size_t)i * V;
        float mx = -INFINITY;
        int j0 = 0;
#ifdef QA_VEC
        const int vec = qa_cpu_have_avx2();
        if (vec) { j0 = V / 8 * 8; mx = qa_max8(j0, x, mx); }
#endif
        for (int j = j0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        /* 16 float lanes (vectorized) per block of 1024, blocks summed in double: ~1e-7 relative */
        double sum = 0;
        int j = 0;
        for (; j + 1024 <= V; j += 1024) {
            float acc[16] = {0};
#ifdef QA_VEC
            if (vec) qa_sumexp16(1024, x + j, mx, acc);
            else
#endif
            for (int b = 0; b < 1024; b += 16)
                for (int q = 0; q < 16; q++) acc[q] += qa_expf(x[j + b + q] - mx);
            float part = 0;
            for (int q = 0; q < 16; q++) part += acc[q];
            sum += part;
        }
        for (; j < V; j++) sum += qa_expf(x[j] - mx);
        double l = mx + log(sum);
        c->lse[i] = (float)l;
        c->loss[i] = (float)(l - x[c->target[i]]);
    }
}
static void cpu_cross_entropy_fwd(qa_stream *s, int M, int V, const float *logits, const int32_t *target, float *loss,
                                  float *lse) {
    ce_ctx c = {V, 0, logits, target, loss, lse, NULL, NULL};
    par_range(s, M, 1, 2, ce_fwd_range, &c);
}
static void ce_bwd_range(void *p, long lo, long hi, qa_cpu_tws *w) {
    (void)w;
    ce_ctx *c = p;
    const int V = c->V;
    const float scale = c->scale;
    for (long i = lo; i < hi; i++) {
        const float *x = c->logits + (size_t)i * V;
        float *d = c->d + (size_t)i * V;
        const float l = c->lse_in[i];
        int j = 0;
#ifdef QA_VEC
        if (qa_cpu_have_avx2()) { j = V / 8 * 8; qa_scaled_exp8(j, x, l, scale, d); }
#endif
        for (; j < V; j++) d[j] = scale * qa_expf(x[j] - l);
        d[c->target[i]] -= scale;
    }
}
static void cpu_cross_entropy_bwd(qa_stream *s, int M, int V, float scale, const float *logits, const int32_t *target,
                                  const float *lse, float *dlogits) {
    ce_ctx c = {V, scale, logits, target, NULL, NULL, lse, dlogits};
    par_range(s, M, 1, 2, ce_bwd_range, &c);
}

/* ---- AdamW ---------------------------------------------------------------------------- */
typedef struct { float lr, beta1, beta2, eps, step_size, bc2_sqrt, decay; float *p; const float *g; float *m, *v; } adamw_ctx;
static void adamw_range(void *pp, long lo, long hi, qa_cpu_tws *w) {
    (void)w;
    adamw_ctx *c = pp;
    float *p = c->p, *m = c->m, *v = c->v;
    const float *g = c->g;
    for (long i = lo; i < hi; i++) {
        p[i] *= c->decay;
        m[i] += (g[i] - m[i]) * (1.0f - c->beta1);
        v[i] = v[i] * c->beta2 + (1.0f - c->beta2) * g[i] * g[i];
        float denom = sqrtf(v[i]) / c->bc2_sqrt + c->eps;
        p[i] -= c->step_size * m[i] / denom;
    }
}
static void cpu_adamw_step(qa_stream *s, size_t n, float lr, float beta1, float beta2, float eps, float wd,
                           int64_t step, float *p, const float *g, float *m, float *v) {
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    adamw_ctx c = {lr, beta1, beta2, eps, (float)(lr / bc1), (float)sqrt(bc2), 1.0f - lr * wd, p, g, m, v};
    par_range(s, (long)n, 64, 1 << 14, adamw_range, &c);
}

/* the global squared norm: one thread, i ascending, in double (the order fixes the value) */
static void cpu_sumsq(qa_stream *s, size_t n, const float *x, double *out) {
    (void)s;
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    *out = ss;
}
typedef struct { double alpha; float *x; } scale_ctx;
static void scale_range(void *p, long lo, long hi, qa_cpu_tws *w) {
    (void)w;
    scale_ctx *c = p;
    for (long i = lo; i < hi; i++) c->x[i] = (float)(c->x[i] * c->alpha);
}
static void cpu_scale(qa_stream *s, size_t n, double alpha, float *x) {
    scale_ctx c = {alpha, x};
    par_range(s, (long)n, 1024, 1 << 16, scale_range, &c);
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
    .sumsq = cpu_sumsq,
    .scale = cpu_scale,
    .attention_prefix_fwd = qa_cpu_attention_prefix_fwd,
    .linear_multi_fwd = cpu_linear_multi_fwd,
    .attention_rows_fwd = cpu_attention_rows_fwd,
    .swiglu_linear_fwd = cpu_swiglu_linear_fwd,
};

const qa_ops *qa_ops_cpu(void) { return &CPU_OPS; }
