/* attn_prefix.c — CPU attention_prefix_fwd (kernels/ops.h): suffix rows attending to a shared
 * cached prefix plus their own keys. Per (row, head) — one task each on the stream's threads — and
 * block of 64 queries [i0, i1): scores against the cache and the row's keys [0, i1) from two products,
 * an fp32 softmax over each query's visible keys (causal, window), and two products back into the output. */
#include "kernels/ops.h"
#include "kernels/cpu/cpu_internal.h"
#include "common/qa_mem.h"

#include <math.h>
#include <stdlib.h>

void qa_cpu_attention_prefix_fwd(qa_stream *s, const qa_attn_prefix_desc *d, const float *q, const float *kc,
                                 const float *vc, const float *k, const float *v, float *o);

typedef struct {
    const qa_attn_prefix_desc *d;
    const float *q, *kc, *vc, *k, *v;
    float *o;
    int cmax;
} prefix_ctx;

static qa_gemm_b f32b(const float *p, int ld, int trans) { return (qa_gemm_b){p, QA_DT_F32, ld, trans, NULL, 0}; }

static void prefix_task(void *p, long task, qa_cpu_tws *w) {
    enum { QB = 64 }; /* query rows per block: keys beyond the block's last query are never scored */
    const prefix_ctx *c = p;
    const qa_attn_prefix_desc *d = c->d;
    const int T = d->T, H = d->n_heads, Hk = d->n_kv_heads, hd = d->head_dim, grp = H / Hk, W = d->window;
    const int ldq = H * hd, ldk = Hk * hd;
    const int b = (int)(task / H), h = (int)(task % H), g = h / grp;
    const int C = d->ctx[b];
    float *S = qa_cpu_tws_tmp(w, (size_t)QB * (size_t)(c->cmax + T) + 1);
    const float *Q = c->q + (size_t)b * T * ldq + (size_t)h * hd;
    const float *K = c->k + (size_t)b * T * ldk + (size_t)g * hd;
    const float *Vv = c->v + (size_t)b * T * ldk + (size_t)g * hd;
    const float *Kc = c->kc + (size_t)g * hd, *Vc = c->vc + (size_t)g * hd;
    float *O = c->o + (size_t)b * T * ldq + (size_t)h * hd;
    for (int i0 = 0; i0 < T; i0 += QB) {
        const int i1 = i0 + QB < T ? i0 + QB : T, nq = i1 - i0, ld = C + i1;
        const float *Qb = Q + (size_t)i0 * ldq;
        /* S[:, 0:C] = scale Q Kcᵀ ; S[:, C:C+i1] = scale Q K[0:i1]ᵀ */
        if (C > 0) qa_gemm_st(w, 0, nq, C, hd, d->scale, Qb, ldq, f32b(Kc, ldk, 1), 0.0f, S, ld);
        qa_gemm_st(w, 0, nq, i1, hd, d->scale, Qb, ldq, f32b(K, ldk, 1), 0.0f, S + C, ld);
        for (int i = i0; i < i1; i++) {
            float *row = S + (size_t)(i - i0) * ld;
            const int pa = C + i; /* absolute position of the query; key j (cached or own) sits at j */
            const int lo = W > 0 && pa - W + 1 > 0 ? pa - W + 1 : 0, hi = pa + 1; /* visible [lo, hi) */
            float mx = -INFINITY;
            for (int j = lo; j < hi; j++) if (row[j] > mx) mx = row[j];
            double sum = 0;
            for (int j = lo; j < hi; j++) {
                float e = expf(row[j] - mx);
                row[j] = e;
                sum += e;
            }
            float inv = (float)(1.0 / sum);
            for (int j = lo; j < hi; j++) row[j] *= inv;
            for (int j = 0; j < lo; j++) row[j] = 0;
            for (int j = hi; j < ld; j++) row[j] = 0;
        }
        /* O = P[:, 0:C] Vc + P[:, C:C+i1] V[0:i1] */
        if (C > 0) qa_gemm_st(w, 0, nq, hd, C, 1.0f, S, ld, f32b(Vc, ldk, 0), 0.0f, O + (size_t)i0 * ldq, ldq);
        qa_gemm_st(w, 0, nq, hd, i1, 1.0f, S + C, ld, f32b(Vv, ldk, 0), C > 0 ? 1.0f : 0.0f, O + (size_t)i0 * ldq, ldq);
    }
}

void qa_cpu_attention_prefix_fwd(qa_stream *s, const qa_attn_prefix_desc *d,
                                 const float *q,   /* [B, T, H, hd] */
                                 const float *kc,  /* [Tc, Hk, hd] */
                                 const float *vc,  /* [Tc, Hk, hd] */
                                 const float *k,   /* [B, T, Hk, hd] */
                                 const float *v,   /* [B, T, Hk, hd] */
                                 float *o) {       /* [B, T, H, hd] */
    int cmax = 0;
    for (int b = 0; b < d->B; b++) if (d->ctx[b] > cmax) cmax = d->ctx[b];
    prefix_ctx c = {d, q, kc, vc, k, v, o, cmax};
    qa_cpu_par_tasks(s, (long)d->B * d->n_heads, prefix_task, &c);
}
