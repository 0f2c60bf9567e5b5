/* attn_cuda.cu — attention of the CUDA backend (kernels/ops.h attention_fwd / attention_bwd /
 * attention_prefix_fwd), blocked over queries so that no T x T matrix is ever held.
 *
 * For every block of QB query rows [i0, i1) and every (row b, query head h) in a chunk of rows, the
 * block sees keys [j0, i1) (j0 > 0 with a sliding window). One batched cuBLAS product (pointer
 * arrays: any GQA grouping) gives the scores S = scale Q Kᵀ [QB, nk] in fp32 from bf16 operands; one
 * kernel applies the mask (causal, window, key padding, packed segments), the fp32 softmax (saving
 * the log-sum-exp) and writes P in bf16; one more batched product gives O = P V with fp32
 * accumulation. On a "cuda-fp32" stream every operand (Q, K, V, P, dO, dS) stays fp32 (no tensor cores):
 * the verification mode whose results match the CPU backend to fp32 rounding. The backward recomputes P from the saved log-sum-exp (flash-attention style):
 * dP = dO Vᵀ, dS = P (dP - rowsum(O dO)), dV += Pᵀ dO, dQ = scale dS K, dK += scale dSᵀ Q, with dK/dV
 * accumulated per query head and summed over the GQA group at the end (no atomics: deterministic).
 * Scratch per block is chunk_rows x H x QB x keys, bounded (ATT_BUDGET) by shrinking the chunk. */
#include "kernels/cuda/cuda_internal.cuh"

#include <math.h>

#define ATT_QB 128                     /* query rows per block */
#define ATT_BUDGET ((size_t)768 << 20) /* bytes of score/probability scratch per block */

/* where operand z = b*H + h of a batched product starts: base + esz*(b*sb + (h/hdiv)*sh + z*sz) */
typedef struct pspec {
    const char *base;
    long long sb, sh, sz;
    int hdiv, esz;
} pspec;
static pspec ps(const void *base, int esz, long long sb, long long sh, int hdiv, long long sz) {
    pspec p;
    p.base = (const char *)base;
    p.esz = esz;
    p.sb = sb;
    p.sh = sh;
    p.hdiv = hdiv;
    p.sz = sz;
    return p;
}
/* fill 3 pointer arrays for Z = nb*H products (rows b0 .. b0+nb-1) */
__global__ void k_ptrs(int Z, int H, int b0, pspec a, pspec b, pspec c, const void **pa, const void **pb, void **pc) {
    for (int z = blockIdx.x * blockDim.x + threadIdx.x; z < Z; z += gridDim.x * blockDim.x) {
        const long long bb = b0 + z / H, h = z % H;
        pa[z] = a.base + (size_t)a.esz * (size_t)(bb * a.sb + (h / a.hdiv) * a.sh + z * a.sz);
        pb[z] = b.base + (size_t)b.esz * (size_t)(bb * b.sb + (h / b.hdiv) * b.sh + z * b.sz);
        pc[z] = (void *)(c.base + (size_t)c.esz * (size_t)(bb * c.sb + (h / c.hdiv) * c.sh + z * c.sz));
    }
}
/* pointer arrays of one product: 3 x Z pointers */
typedef struct parr {
    const void **a, **b;
    void **c;
} parr;
static parr parr_carve(char **cur, int Z) {
    parr p;
    p.a = (const void **)qa_cuda_carve(cur, sizeof(void *) * (size_t)Z);
    p.b = (const void **)qa_cuda_carve(cur, sizeof(void *) * (size_t)Z);
    p.c = (void **)qa_cuda_carve(cur, sizeof(void *) * (size_t)Z);
    return p;
}
static void fill_ptrs(qa_stream *s, int Z, int H, int b0, pspec a, pspec b, pspec c, parr p) {
    k_ptrs<<<(Z + 127) / 128, 128, 0, s->st>>>(Z, H, b0, a, b, c, p.a, p.b, p.c);
    QC_LAUNCH(s);
}

/* query rows per block and rows per chunk so that the block scratch stays within the budget */
static void plan(int B, int H, int T, int keys, size_t bytes_per_score, int *qb, int *bc) {
    int q = T < ATT_QB ? T : ATT_QB;
    size_t per_row = (size_t)H * q * (size_t)keys * bytes_per_score;
    int c = per_row ? (int)(ATT_BUDGET / per_row) : B;
    while (c < 1 && q > 16) {
        q /= 2;
        per_row = (size_t)H * q * (size_t)keys * bytes_per_score;
        c = (int)(ATT_BUDGET / per_row);
    }
    if (c < 1) c = 1;
    if (c > B) c = B;
    *qb = q;
    *bc = c;
}

/* score rows are padded to 8 elements so that every operand of the batched products is 16-byte
 * aligned (bf16 and fp32) */
static inline int pad8(int n) { return (n + 7) / 8 * 8; }

/* Operands of the batched products: bf16 copies (the default, tensor cores) or, on a "cuda-fp32" stream,
 * the fp32 tensors themselves (and fp32 P / dS), so that attention is fp32 end to end. */
__device__ __forceinline__ void st_op(float *p, float v) { *p = v; }
__device__ __forceinline__ void st_op(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }
static inline int op_esz(const qa_stream *s) { return s->fp32 ? 4 : 2; }
static inline cudaDataType_t op_type(const qa_stream *s) { return s->fp32 ? CUDA_R_32F : CUDA_R_16BF; }
/* the operand copy of x [n] (bf16 into *cur), or x itself in fp32 mode */
static const void *operand(qa_stream *s, char **cur, const float *x, size_t n) {
    if (s->fp32) return x;
    __nv_bfloat16 *b = (__nv_bfloat16 *)qa_cuda_carve(cur, 2 * n);
    qa_cuda_to_bf16(s, b, x, n);
    return b;
}
/* scratch bytes of an operand copy of n elements */
static inline size_t op_bytes(const qa_stream *s, size_t n) { return s->fp32 ? 0 : qa_cuda_round(2 * n); }
/* One block of queries [i0, i1) and the keys [j0, i1) it sees (j0 > 0 with a sliding window); score rows
 * padded to ld = pad8(nk) elements, blk = nq * ld elements per product. */
typedef struct qblock {
    int i0, i1, nq, j0, nk, ld;
    long long blk;
} qblock;
static qblock qblock_at(int i0, int QB, int T, int window) {
    qblock k;
    k.i0 = i0;
    k.i1 = i0 + QB < T ? i0 + QB : T;
    k.nq = k.i1 - i0;
    k.j0 = window > 0 && i0 - window + 1 > 0 ? i0 - window + 1 : 0;
    k.nk = k.i1 - k.j0;
    k.ld = pad8(k.nk);
    k.blk = (long long)k.nq * k.ld;
    return k;
}
/* S_z = scale Q_z[i0:i1] K_z[j0:i1]ᵀ in fp32 for the Z = nb * H products of rows b0 .. b0+nb-1 (qb, kb: the
 * operand copies of q and k; S offsets relative to the chunk: z * blk) */
static void block_scores(qa_stream *s, const qa_attn_desc *d, int Z, int b0, const qblock *k, const char *qb,
                         const char *kb, float *S, parr p) {
    const int H = d->n_heads, hd = d->head_dim, grp = H / d->n_kv_heads, ldq = H * hd, ldk = d->n_kv_heads * hd;
    const int es = op_esz(s);
    const cudaDataType_t et = op_type(s);
    fill_ptrs(s, Z, H, b0, ps(qb + (size_t)es * k->i0 * ldq, es, (long long)d->T * ldq, hd, 1, 0),
              ps(kb + (size_t)es * k->j0 * ldk, es, (long long)d->T * ldk, hd, grp, 0), ps(S, 4, 0, 0, 1, k->blk), p);
    qa_cuda_gemm_rm_batched(s, 0, 1, k->nq, k->nk, hd, d->scale, p.a, et, ldq, p.b, et, ldk, 0.0f, p.c, CUDA_R_32F,
                            k->ld, Z);
}
/* The batched products take operands 16-byte aligned at every head offset: head_dim a multiple of 8. */
static int head_dim_ok(qa_stream *s, int hd, const char *op) {
    if (hd % 8 == 0) return 1;
    QC_FAIL(s, "%s: head_dim %d is not a multiple of 8, which the CUDA attention needs (16-byte aligned heads); "
            "run this model with --device cpu", op, hd);
    return 0;
}

__device__ __forceinline__ int visible(int window, const int32_t *km, const int32_t *seg, int i, int j) {
    if (j > i) return 0;
    if (window > 0 && j <= i - window) return 0;
    if (km && !km[j]) return 0;
    if (seg && seg[i] != seg[j]) return 0;
    return 1;
}

/* one warp per score row: mask, softmax, P (the operand type: bf16, or fp32) and lse. S rows: [Z][nq][nk]. */
template <typename TP>
__global__ void k_softmax_fwd(int Z, int H, int b0, int T, int i0, int nq, int j0, int nk, int ld, int window,
                              const int32_t *__restrict__ key_mask, const int32_t *__restrict__ segment,
                              const float *__restrict__ S, TP *__restrict__ P, float *__restrict__ lse) {
    const int lane = threadIdx.x & 31;
    const long long rows = (long long)Z * nq;
    for (long long r = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
         r += (long long)gridDim.x * (blockDim.x >> 5)) {
        const int z = (int)(r / nq), i = i0 + (int)(r % nq), b = b0 + z / H, h = z % H;
        const int32_t *km = key_mask ? key_mask + (size_t)b * T : NULL;
        const int32_t *sg = segment ? segment + (size_t)b * T : NULL;
        const float *srow = S + (size_t)r * ld;
        TP *prow = P + (size_t)r * ld;
        float mx = -INFINITY;
        for (int c = lane; c < nk; c += 32)
            if (visible(window, km, sg, i, j0 + c)) mx = fmaxf(mx, srow[c]);
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        float sum = 0;
        if (mx != -INFINITY)
            for (int c = lane; c < nk; c += 32)
                if (visible(window, km, sg, i, j0 + c)) sum += expf(srow[c] - mx);
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        const float inv = mx == -INFINITY ? 0.0f : 1.0f / sum;
        for (int c = lane; c < nk; c += 32) {
            float p = (mx != -INFINITY && visible(window, km, sg, i, j0 + c)) ? expf(srow[c] - mx) * inv : 0.0f;
            st_op(prow + c, p);
        }
        if (lane == 0) lse[((size_t)b * H + h) * T + i] = mx == -INFINITY ? -INFINITY : mx + logf(sum);
    }
}

void qa_cuda_attention_fwd(qa_stream *s, const qa_attn_desc *d, const float *q, const float *k, const float *v,
                           float *o, float *lse) {
    const int B = d->B, T = d->T, H = d->n_heads, Hk = d->n_kv_heads, hd = d->head_dim, grp = H / Hk;
    const int ldq = H * hd, ldk = Hk * hd;
    if (B <= 0 || T <= 0 || !head_dim_ok(s, hd, "attention_fwd")) return;
    const size_t N = (size_t)B * T;
    const int es = op_esz(s);
    const cudaDataType_t et = op_type(s);
    int QB, BC;
    plan(B, H, T, pad8(T), sizeof(float) + es, &QB, &BC);
    const int Zmax = BC * H;
    const size_t sc = (size_t)Zmax * QB * pad8(T);
    size_t need = op_bytes(s, N * ldq) + 2 * op_bytes(s, N * ldk) + qa_cuda_round(4 * sc) +
                  qa_cuda_round((size_t)es * sc) + 6 * qa_cuda_round(sizeof(void *) * (size_t)Zmax);
    char *cur = (char *)qa_cuda_scratch(s, need);
    if (!cur) return;
    const char *qb = (const char *)operand(s, &cur, q, N * ldq);
    const char *kb = (const char *)operand(s, &cur, k, N * ldk);
    const char *vb = (const char *)operand(s, &cur, v, N * ldk);
    float *S = (float *)qa_cuda_carve(&cur, 4 * sc);
    char *P = (char *)qa_cuda_carve(&cur, (size_t)es * sc);
    parr p1 = parr_carve(&cur, Zmax), p2 = parr_carve(&cur, Zmax);
    const long long Tq = (long long)T * ldq, Tk = (long long)T * ldk;
    for (int b0 = 0; b0 < B; b0 += BC) {
        const int nb = B - b0 < BC ? B - b0 : BC, Z = nb * H;
        for (int i0 = 0; i0 < T; i0 += QB) {
            const qblock blkq = qblock_at(i0, QB, T, d->window);
            const int nq = blkq.nq, j0 = blkq.j0, nk = blkq.nk, ld = blkq.ld;
            const long long blk = blkq.blk;
            block_scores(s, d, Z, b0, &blkq, qb, kb, S, p1); /* S/P offsets are relative to the chunk: z * blk */
            if (s->fp32)
                k_softmax_fwd<float><<<qa_cuda_blocks((size_t)Z * nq, 8), 256, 0, s->st>>>(
                    Z, H, b0, T, i0, nq, j0, nk, ld, d->window, d->key_mask, d->segment, S, (float *)P, lse);
            else
                k_softmax_fwd<__nv_bfloat16><<<qa_cuda_blocks((size_t)Z * nq, 8), 256, 0, s->st>>>(
                    Z, H, b0, T, i0, nq, j0, nk, ld, d->window, d->key_mask, d->segment, S, (__nv_bfloat16 *)P, lse);
            QC_LAUNCH(s);
            /* O_z[i0:i1] = P_z V_z[j0:i1] */
            fill_ptrs(s, Z, H, b0, ps(P, es, 0, 0, 1, blk), ps(vb + (size_t)es * j0 * ldk, es, Tk, hd, grp, 0),
                      ps(o + (size_t)i0 * ldq, 4, Tq, hd, 1, 0), p2);
            qa_cuda_gemm_rm_batched(s, 0, 0, nq, hd, nk, 1.0f, p2.a, et, ld, p2.b, et, ldk, 0.0f, p2.c, CUDA_R_32F, ldq,
                                    Z);
        }
    }
}

/* Di[b,h,t] = sum_c o[b,t,h,c] dout[b,t,h,c]: one warp per (token, head) */
__global__ void k_rowdot(int B, int T, int H, int hd, const float *__restrict__ o, const float *__restrict__ dout,
                         float *__restrict__ Di) {
    const int lane = threadIdx.x & 31;
    const long long rows = (long long)B * T * H;
    for (long long r = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
         r += (long long)gridDim.x * (blockDim.x >> 5)) {
        const float *a = o + (size_t)r * hd, *g = dout + (size_t)r * hd;
        float acc = 0;
        for (int c = lane; c < hd; c += 32) acc += a[c] * g[c];
        for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
        if (lane == 0) {
            const long long bt = r / H, h = r % H, b = bt / T, t = bt % T;
            Di[((size_t)b * H + h) * T + t] = acc;
        }
    }
}

/* P = exp(S - lse) on visible keys; dS = P (dP - Di); both as operands (bf16, or fp32). One warp per row. */
template <typename TP>
__global__ void k_softmax_bwd(int Z, int H, int b0, int T, int i0, int nq, int j0, int nk, int ld, int window,
                              const int32_t *__restrict__ key_mask, const int32_t *__restrict__ segment,
                              const float *__restrict__ S, const float *__restrict__ dP, const float *__restrict__ lse,
                              const float *__restrict__ Di, TP *__restrict__ P, TP *__restrict__ dS) {
    const int lane = threadIdx.x & 31;
    const long long rows = (long long)Z * nq;
    for (long long r = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
         r += (long long)gridDim.x * (blockDim.x >> 5)) {
        const int z = (int)(r / nq), i = i0 + (int)(r % nq), b = b0 + z / H, h = z % H;
        const int32_t *km = key_mask ? key_mask + (size_t)b * T : NULL;
        const int32_t *sg = segment ? segment + (size_t)b * T : NULL;
        const size_t li = ((size_t)b * H + h) * T + i;
        const float L = lse[li], D = Di[li];
        for (int c = lane; c < nk; c += 32) {
            const size_t e = (size_t)r * ld + c;
            float p = (L != -INFINITY && visible(window, km, sg, i, j0 + c)) ? expf(S[e] - L) : 0.0f;
            st_op(P + e, p);
            st_op(dS + e, p * (dP[e] - D));
        }
    }
}

/* out[b,t,g,:] = sum_{j<grp} per_head[b,t,g*grp+j,:] */
__global__ void k_group_sum(size_t NHk, int grp, int hd, const float *__restrict__ per_head, float *__restrict__ out) {
    const size_t n = NHk * hd;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t row = i / hd, c = i % hd; /* row = (b*T + t)*Hk + g */
        const float *src = per_head + row * (size_t)grp * hd + c;
        float acc = 0;
        for (int j = 0; j < grp; j++) acc += src[(size_t)j * hd];
        out[i] = acc;
    }
}

void qa_cuda_attention_bwd(qa_stream *s, const qa_attn_desc *d, const float *q, const float *k, const float *v,
                           const float *o, const float *lse, const float *dout, float *dq, float *dk, float *dv) {
    const int B = d->B, T = d->T, H = d->n_heads, Hk = d->n_kv_heads, hd = d->head_dim, grp = H / Hk;
    const int ldq = H * hd, ldk = Hk * hd;
    if (B <= 0 || T <= 0 || !head_dim_ok(s, hd, "attention_bwd")) return;
    const size_t N = (size_t)B * T;
    const int es = op_esz(s);
    const cudaDataType_t et = op_type(s);
    int QB, BC;
    plan(B, H, T, pad8(T), 2 * sizeof(float) + 2 * es, &QB, &BC);
    const int Zmax = BC * H;
    const size_t sc = (size_t)Zmax * QB * pad8(T);
    size_t need = 2 * op_bytes(s, N * ldq) + 2 * op_bytes(s, N * ldk) + 2 * qa_cuda_round(4 * N * ldq) +
                  qa_cuda_round(4 * N * H) + 2 * qa_cuda_round(4 * sc) + 2 * qa_cuda_round((size_t)es * sc) +
                  15 * qa_cuda_round(sizeof(void *) * (size_t)Zmax);
    char *cur = (char *)qa_cuda_scratch(s, need);
    if (!cur) return;
    const char *qb = (const char *)operand(s, &cur, q, N * ldq);
    const char *gb = (const char *)operand(s, &cur, dout, N * ldq);
    const char *kb = (const char *)operand(s, &cur, k, N * ldk);
    const char *vb = (const char *)operand(s, &cur, v, N * ldk);
    float *dKh = (float *)qa_cuda_carve(&cur, 4 * N * ldq); /* per query head [B,T,H,hd] */
    float *dVh = (float *)qa_cuda_carve(&cur, 4 * N * ldq);
    float *Di = (float *)qa_cuda_carve(&cur, 4 * N * H);
    float *S = (float *)qa_cuda_carve(&cur, 4 * sc);
    float *dP = (float *)qa_cuda_carve(&cur, 4 * sc);
    char *P = (char *)qa_cuda_carve(&cur, (size_t)es * sc);
    char *dS = (char *)qa_cuda_carve(&cur, (size_t)es * sc);
    parr pS = parr_carve(&cur, Zmax), pdP = parr_carve(&cur, Zmax), pdV = parr_carve(&cur, Zmax),
         pdQ = parr_carve(&cur, Zmax), pdK = parr_carve(&cur, Zmax);
    QC_CUDA(s, cudaMemsetAsync(dKh, 0, 4 * N * ldq, s->st));
    QC_CUDA(s, cudaMemsetAsync(dVh, 0, 4 * N * ldq, s->st));
    k_rowdot<<<qa_cuda_blocks(N * H, 8), 256, 0, s->st>>>(B, T, H, hd, o, dout, Di);
    QC_LAUNCH(s);
    const long long Tq = (long long)T * ldq, Tk = (long long)T * ldk;
    for (int b0 = 0; b0 < B; b0 += BC) {
        const int nb = B - b0 < BC ? B - b0 : BC, Z = nb * H;
        for (int i0 = 0; i0 < T; i0 += QB) {
            const qblock blkq = qblock_at(i0, QB, T, d->window);
            const int nq = blkq.nq, j0 = blkq.j0, nk = blkq.nk, ld = blkq.ld;
            const long long blk = blkq.blk;
            /* S = scale Q Kᵀ ; dP = dO Vᵀ */
            block_scores(s, d, Z, b0, &blkq, qb, kb, S, pS);
            fill_ptrs(s, Z, H, b0, ps(gb + (size_t)es * i0 * ldq, es, Tq, hd, 1, 0),
                      ps(vb + (size_t)es * j0 * ldk, es, Tk, hd, grp, 0), ps(dP, 4, 0, 0, 1, blk), pdP);
            qa_cuda_gemm_rm_batched(s, 0, 1, nq, nk, hd, 1.0f, pdP.a, et, ldq, pdP.b, et, ldk, 0.0f, pdP.c, CUDA_R_32F,
                                    ld, Z);
            if (s->fp32)
                k_softmax_bwd<float><<<qa_cuda_blocks((size_t)Z * nq, 8), 256, 0, s->st>>>(
                    Z, H, b0, T, i0, nq, j0, nk, ld, d->window, d->key_mask, d->segment, S, dP, lse, Di, (float *)P,
                    (float *)dS);
            else
                k_softmax_bwd<__nv_bfloat16><<<qa_cuda_blocks((size_t)Z * nq, 8), 256, 0, s->st>>>(
                    Z, H, b0, T, i0, nq, j0, nk, ld, d->window, d->key_mask, d->segment, S, dP, lse, Di,
                    (__nv_bfloat16 *)P, (__nv_bfloat16 *)dS);
            QC_LAUNCH(s);
            /* dVh_z[j0:i1] += P_zᵀ dO_z[i0:i1] */
            fill_ptrs(s, Z, H, b0, ps(P, es, 0, 0, 1, blk), ps(gb + (size_t)es * i0 * ldq, es, Tq, hd, 1, 0),
                      ps(dVh + (size_t)j0 * ldq, 4, Tq, hd, 1, 0), pdV);
            qa_cuda_gemm_rm_batched(s, 1, 0, nk, hd, nq, 1.0f, pdV.a, et, ld, pdV.b, et, ldq, 1.0f, pdV.c, CUDA_R_32F,
                                    ldq, Z);
            /* dQ_z[i0:i1] = scale dS_z K_z[j0:i1] */
            fill_ptrs(s, Z, H, b0, ps(dS, es, 0, 0, 1, blk), ps(kb + (size_t)es * j0 * ldk, es, Tk, hd, grp, 0),
                      ps(dq + (size_t)i0 * ldq, 4, Tq, hd, 1, 0), pdQ);
            qa_cuda_gemm_rm_batched(s, 0, 0, nq, hd, nk, d->scale, pdQ.a, et, ld, pdQ.b, et, ldk, 0.0f, pdQ.c,
                                    CUDA_R_32F, ldq, Z);
            /* dKh_z[j0:i1] += scale dS_zᵀ Q_z[i0:i1] */
            fill_ptrs(s, Z, H, b0, ps(dS, es, 0, 0, 1, blk), ps(qb + (size_t)es * i0 * ldq, es, Tq, hd, 1, 0),
                      ps(dKh + (size_t)j0 * ldq, 4, Tq, hd, 1, 0), pdK);
            qa_cuda_gemm_rm_batched(s, 1, 0, nk, hd, nq, d->scale, pdK.a, et, ld, pdK.b, et, ldq, 1.0f, pdK.c,
                                    CUDA_R_32F, ldq, Z);
        }
    }
    k_group_sum<<<qa_cuda_blocks(N * Hk * hd, 256), 256, 0, s->st>>>(N * Hk, grp, hd, dKh, dk);
    QC_LAUNCH(s);
    k_group_sum<<<qa_cuda_blocks(N * Hk * hd, 256), 256, 0, s->st>>>(N * Hk, grp, hd, dVh, dv);
    QC_LAUNCH(s);
}

/* ---- prefix attention (evaluation) --------------------------------------------------------- */
/* Score row r = (z, i), stride ld: columns [0, Tc) the cached keys, [Tc, Tcp) padding, [Tcp, Tcp + nown)
 * the row's own keys 0..nown-1. Absolute position of cached c is c (visible iff c < ctx[b]); of own key
 * t it is ctx[b] + t. The query sits at p = ctx[b] + i and sees positions [max(0, p-W+1), p]. */
template <typename TP>
__global__ void k_softmax_prefix(int Z, int H, int b0, int i0, int nq, int Tc, int Tcp, int nown, int ld, int window,
                                 const int32_t *__restrict__ ctx, const float *__restrict__ S, TP *__restrict__ P) {
    const int lane = threadIdx.x & 31, nc = Tcp + nown;
    const long long rows = (long long)Z * nq;
    for (long long r = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows;
         r += (long long)gridDim.x * (blockDim.x >> 5)) {
        const int z = (int)(r / nq), i = i0 + (int)(r % nq), b = b0 + z / H;
        const int C = ctx[b], p = C + i;
        const int lo = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
        const float *srow = S + (size_t)r * ld;
        TP *prow = P + (size_t)r * ld;
#define QA_ABSPOS(c) ((c) < Tc ? ((c) < C ? (c) : -1) : (c) < Tcp ? -1 : C + (c) - Tcp)
        float mx = -INFINITY;
        for (int c = lane; c < nc; c += 32) {
            const int a = QA_ABSPOS(c);
            if (a >= lo && a <= p) mx = fmaxf(mx, srow[c]);
        }
        for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        float sum = 0;
        for (int c = lane; c < nc; c += 32) {
            const int a = QA_ABSPOS(c);
            if (a >= lo && a <= p) sum += expf(srow[c] - mx);
        }
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        const float inv = 1.0f / sum; /* the query's own key is always visible: sum >= 1 */
        for (int c = lane; c < nc; c += 32) {
            const int a = QA_ABSPOS(c);
            st_op(prow + c, a >= lo && a <= p ? expf(srow[c] - mx) * inv : 0.0f);
        }
#undef QA_ABSPOS
    }
}

void qa_cuda_attention_prefix_fwd(qa_stream *s, const qa_attn_prefix_desc *d, const float *q, const float *kc,
                                  const float *vc, const float *k, const float *v, float *o) {
    const int B = d->B, T = d->T, H = d->n_heads, Hk = d->n_kv_heads, hd = d->head_dim, grp = H / Hk;
    const int ldq = H * hd, ldk = Hk * hd, Tc = d->cache_len, Tcp = pad8(Tc);
    if (B <= 0 || T <= 0 || !head_dim_ok(s, hd, "attention_prefix_fwd")) return;
    const size_t N = (size_t)B * T;
    const int es = op_esz(s);
    const cudaDataType_t et = op_type(s);
    int QB, BC;
    plan(B, H, T, pad8(Tcp + T), sizeof(float) + es, &QB, &BC);
    const int Zmax = BC * H;
    const size_t sc = (size_t)Zmax * QB * (size_t)pad8(Tcp + T);
    size_t need = op_bytes(s, N * ldq) + 2 * op_bytes(s, N * ldk) + 2 * op_bytes(s, (size_t)Tc * ldk) +
                  qa_cuda_round(4 * sc) + qa_cuda_round((size_t)es * sc) + 12 * qa_cuda_round(sizeof(void *) * (size_t)Zmax);
    char *cur = (char *)qa_cuda_scratch(s, need);
    if (!cur) return;
    const char *qb = (const char *)operand(s, &cur, q, N * ldq);
    const char *kb = (const char *)operand(s, &cur, k, N * ldk);
    const char *vb = (const char *)operand(s, &cur, v, N * ldk);
    const char *kcb = (const char *)operand(s, &cur, kc, (size_t)Tc * ldk);
    const char *vcb = (const char *)operand(s, &cur, vc, (size_t)Tc * ldk);
    float *S = (float *)qa_cuda_carve(&cur, 4 * sc);
    char *P = (char *)qa_cuda_carve(&cur, (size_t)es * sc);
    parr p1 = parr_carve(&cur, Zmax), p2 = parr_carve(&cur, Zmax), p3 = parr_carve(&cur, Zmax),
         p4 = parr_carve(&cur, Zmax);
    const long long Tq = (long long)T * ldq, Tk = (long long)T * ldk;
    for (int b0 = 0; b0 < B; b0 += BC) {
        const int nb = B - b0 < BC ? B - b0 : BC, Z = nb * H;
        for (int i0 = 0; i0 < T; i0 += QB) {
            const int i1 = i0 + QB < T ? i0 + QB : T, nq = i1 - i0, ld = pad8(Tcp + i1);
            const long long blk = (long long)nq * ld;
            /* S[:, 0:Tc] = scale Q Kcᵀ (the cache is shared by all rows: sb = 0) */
            if (Tc > 0) {
                fill_ptrs(s, Z, H, b0, ps(qb + (size_t)es * i0 * ldq, es, Tq, hd, 1, 0), ps(kcb, es, 0, hd, grp, 0),
                          ps(S, 4, 0, 0, 1, blk), p1);
                qa_cuda_gemm_rm_batched(s, 0, 1, nq, Tc, hd, d->scale, p1.a, et, ldq, p1.b, et, ldk, 0.0f, p1.c,
                                        CUDA_R_32F, ld, Z);
            }
            /* S[:, Tcp:Tcp+i1] = scale Q K[0:i1]ᵀ */
            fill_ptrs(s, Z, H, b0, ps(qb + (size_t)es * i0 * ldq, es, Tq, hd, 1, 0), ps(kb, es, Tk, hd, grp, 0),
                      ps(S + Tcp, 4, 0, 0, 1, blk), p2);
            qa_cuda_gemm_rm_batched(s, 0, 1, nq, i1, hd, d->scale, p2.a, et, ldq, p2.b, et, ldk, 0.0f, p2.c, CUDA_R_32F,
                                    ld, Z);
            if (s->fp32)
                k_softmax_prefix<float><<<qa_cuda_blocks((size_t)Z * nq, 8), 256, 0, s->st>>>(
                    Z, H, b0, i0, nq, Tc, Tcp, i1, ld, d->window, d->ctx, S, (float *)P);
            else
                k_softmax_prefix<__nv_bfloat16><<<qa_cuda_blocks((size_t)Z * nq, 8), 256, 0, s->st>>>(
                    Z, H, b0, i0, nq, Tc, Tcp, i1, ld, d->window, d->ctx, S, (__nv_bfloat16 *)P);
            QC_LAUNCH(s);
            /* O = P[:, 0:Tc] Vc + P[:, Tcp:Tcp+i1] V[0:i1] */
            if (Tc > 0) {
                fill_ptrs(s, Z, H, b0, ps(P, es, 0, 0, 1, blk), ps(vcb, es, 0, hd, grp, 0),
                          ps(o + (size_t)i0 * ldq, 4, Tq, hd, 1, 0), p3);
                qa_cuda_gemm_rm_batched(s, 0, 0, nq, hd, Tc, 1.0f, p3.a, et, ld, p3.b, et, ldk, 0.0f, p3.c, CUDA_R_32F,
                                        ldq, Z);
            }
            fill_ptrs(s, Z, H, b0, ps(P + (size_t)es * Tcp, es, 0, 0, 1, blk), ps(vb, es, Tk, hd, grp, 0),
                      ps(o + (size_t)i0 * ldq, 4, Tq, hd, 1, 0), p4);
            qa_cuda_gemm_rm_batched(s, 0, 0, nq, hd, i1, 1.0f, p4.a, et, ld, p4.b, et, ldk, Tc > 0 ? 1.0f : 0.0f, p4.c,
                                    CUDA_R_32F, ldq, Z);
        }
    }
}
