/* attn_prefix.c — CPU attention_prefix_fwd (kernels/ops.h): suffix rows attending to a shared
 * cached prefix plus their own keys. Per (row, head): one score block [T, ctx + T] from two sgemms,
 * a masked fp32 softmax per query row, and two sgemms back into the output. */
#include "kernels/ops.h"
#include "common/qa_mem.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

void qa_cpu_attention_prefix_fwd(qa_stream *s, const qa_attn_prefix_desc *d, const float *q, const float *kc,
                                 const float *vc, const float *k, const float *v, float *o);

void qa_cpu_attention_prefix_fwd(qa_stream *s, const qa_attn_prefix_desc *d,
                                 const float *q,   /* [B, T, H, hd] */
                                 const float *kc,  /* [Tc, Hk, hd] */
                                 const float *vc,  /* [Tc, Hk, hd] */
                                 const float *k,   /* [B, T, Hk, hd] */
                                 const float *v,   /* [B, T, Hk, hd] */
                                 float *o) {       /* [B, T, H, hd] */
    (void)s;
    const int T = d->T, H = d->n_heads, Hk = d->n_kv_heads, hd = d->head_dim, grp = H / Hk, W = d->window;
    const int ldq = H * hd, ldk = Hk * hd;
    int cmax = 0;
    for (int b = 0; b < d->B; b++) if (d->ctx[b] > cmax) cmax = d->ctx[b];
    float *S = qa_aligned_alloc(64, sizeof(float) * ((size_t)T * (size_t)(cmax + T) + 1));
    for (int b = 0; b < d->B; b++) {
        const int C = d->ctx[b], ld = C + T;
        for (int h = 0; h < H; h++) {
            const int g = h / grp;
            const float *Q = q + (size_t)b * T * ldq + (size_t)h * hd;
            const float *K = k + (size_t)b * T * ldk + (size_t)g * hd;
            const float *Vv = v + (size_t)b * T * ldk + (size_t)g * hd;
            const float *Kc = kc + (size_t)g * hd, *Vc = vc + (size_t)g * hd;
            float *O = o + (size_t)b * T * ldq + (size_t)h * hd;
            /* S[:, 0:C] = scale Q Kcᵀ ; S[:, C:C+T] = scale Q Kᵀ */
            if (C > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, C, hd, d->scale, Q, ldq, Kc, ldk, 0.0f, S,
                            ld);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, d->scale, Q, ldq, K, ldk, 0.0f, S + C, ld);
            for (int i = 0; i < T; i++) {
                float *row = S + (size_t)i * ld;
                const int p = C + i; /* absolute position of the query */
                float mx = -INFINITY;
                for (int j = 0; j < C + T; j++) {
                    /* absolute key position: j (cached) or C + (j - C) = j (own): the same index */
                    int vis = j <= p && (W <= 0 || j > p - W);
                    if (vis) { if (row[j] > mx) mx = row[j]; }
                    else row[j] = -INFINITY;
                }
                if (mx == -INFINITY) { /* no visible key (cannot happen for real queries): output 0 */
                    for (int j = 0; j < C + T; j++) row[j] = 0;
                    continue;
                }
                double sum = 0;
                for (int j = 0; j < C + T; j++) {
                    float e = row[j] == -INFINITY ? 0.0f : expf(row[j] - mx);
                    row[j] = e;
                    sum += e;
                }
                float inv = (float)(1.0 / sum);
                for (int j = 0; j < C + T; j++) row[j] *= inv;
            }
            /* O = P[:, 0:C] Vc + P[:, C:] V */
            if (C > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, C, 1.0f, S, ld, Vc, ldk, 0.0f, O, ldq);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, S + C, ld, Vv, ldk,
                        C > 0 ? 1.0f : 0.0f, O, ldq);
        }
    }
    free(S);
}
