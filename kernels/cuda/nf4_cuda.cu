/* nf4_cuda.cu — frozen linears with NF4 weights (kernels/nf4.h) on the GPU: dequantize-then-cuBLAS with a
 * bounded scratch. The weight's rows are taken in chunks of at most NF4_CHUNK elements; each chunk is
 * dequantized (code[q] * absmax, one fp32 product) and multiplied by cuBLAS:
 *   - "cuda": the chunk rounded to bf16 (nearest even) and multiplied on the tensor cores like a BF16 weight
 *     (bf16 x bf16, fp32 accumulation, fp32 output). Scratch: the bf16 activations (as the BF16 path) + one
 *     chunk (32 MiB).
 *   - "cuda-fp32" (s->fp32, the verification mode): the chunk kept fp32 (the exact dequantized weights, as
 *     the CPU packs them) and an fp32 GEMM with the fp32 activations. Scratch: one chunk (64 MiB).
 * Never a full-size copy of the weight. The fused forward ops (linear_multi_fwd, swiglu_linear_fwd) hand
 * their bf16 operand and a chunk buffer to qa_cuda_nf4_gemm_bf16. */
#include "kernels/cuda/cuda_internal.cuh"

extern "C" {
#include "kernels/nf4.h"
}

enum { NF4_CHUNK = 16 << 20 }; /* elements of W dequantized at a time */

/* kernels/cpu/nf4.c's table (bitsandbytes' NF4 values as fp32); tests/test_ops_cuda.c compares the two backends */
__constant__ float k_nf4_code[16] = {
    -0x1p+0f,        -0x1.647362p-1f, -0x1.0cd66p-1f,  -0x1.94654p-2f,  -0x1.23449ap-2f, -0x1.7a6a7ep-3f,
    -0x1.74f0e2p-4f, 0x0p+0f,         0x1.45f5fep-4f,  0x1.4995c6p-3f,  0x1.f809bap-3f,  0x1.5a0674p-2f,
    0x1.c3497p-2f,   0x1.200f56p-1f,  0x1.722766p-1f,  0x1p+0f,
};

/* dst[i] = bf16(code[q(first + i)] * absmax[(first + i) / 64]) for i in [0, n); first and n even */
__global__ void k_nf4_to_bf16(const uint8_t *__restrict__ codes, const float *__restrict__ absmax, size_t first,
                              size_t n, __nv_bfloat16 *__restrict__ dst) {
    const size_t pairs = n / 2;
    for (size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x; p < pairs; p += (size_t)gridDim.x * blockDim.x) {
        const size_t i = first + 2 * p;
        const uint8_t b = codes[i / 2];
        const float a = absmax[i / QA_NF4_BLOCK];
        ((__nv_bfloat162 *)dst)[p] = __floats2bfloat162_rn(k_nf4_code[b >> 4] * a, k_nf4_code[b & 15] * a);
    }
}
/* the same in fp32: the exact dequantized values */
__global__ void k_nf4_to_f32(const uint8_t *__restrict__ codes, const float *__restrict__ absmax, size_t first,
                             size_t n, float *__restrict__ dst) {
    const size_t pairs = n / 2;
    for (size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x; p < pairs; p += (size_t)gridDim.x * blockDim.x) {
        const size_t i = first + 2 * p;
        const uint8_t b = codes[i / 2];
        const float a = absmax[i / QA_NF4_BLOCK];
        ((float2 *)dst)[p] = make_float2(k_nf4_code[b >> 4] * a, k_nf4_code[b & 15] * a);
    }
}

/* rows of W per chunk: whole rows, an even number of elements (K odd: an even number of rows) */
static int chunk_rows(int M, int K) {
    int r = (int)(NF4_CHUNK / (size_t)K);
    if (r < 1) r = 1;
    if (r > M) r = M;
    if ((K & 1) && (r & 1) && r < M) r = r > 1 ? r - 1 : 2;
    return r;
}

size_t qa_cuda_nf4_chunk_bytes(int M, int K, int fp32) {
    return (fp32 ? sizeof(float) : sizeof(__nv_bfloat16)) * (size_t)chunk_rows(M, K) * (size_t)K;
}

/* out = beta * out + in · W (bwd: in [N, M], out [N, K]) or in · Wᵀ (fwd: in [N, K], out [N, M]), W NF4 [M, K]
 * dequantized chunk by chunk into wc (qa_cuda_nf4_chunk_bytes); in and wc bf16 or (fp32) both fp32 */
static void nf4_gemm(qa_stream *s, int bwd, int fp32, int N, int K, int M, float beta, const void *in, const void *w,
                     void *wc, float *out) {
    const int R = chunk_rows(M, K);
    const size_t numel = (size_t)M * K;
    const uint8_t *codes = (const uint8_t *)w;
    const float *am = qa_nf4_absmax(w, numel);
    const cudaDataType_t t = fp32 ? CUDA_R_32F : CUDA_R_16BF;
    const size_t es = fp32 ? sizeof(float) : sizeof(__nv_bfloat16);
    for (int m0 = 0; m0 < M; m0 += R) {
        const int r = M - m0 < R ? M - m0 : R;
        const size_t first = (size_t)m0 * K, n = (size_t)r * K;
        if (fp32)
            k_nf4_to_f32<<<qa_cuda_blocks(n / 2, 256), 256, 0, s->st>>>(codes, am, first, n, (float *)wc);
        else
            k_nf4_to_bf16<<<qa_cuda_blocks(n / 2, 256), 256, 0, s->st>>>(codes, am, first, n, (__nv_bfloat16 *)wc);
        QC_LAUNCH(s);
        if (!bwd) /* out[:, m0:m0+r] (ldc M) = in [N, K] wcᵀ */
            qa_cuda_gemm_rm(s, 0, 1, N, r, K, 1.0f, in, t, K, wc, t, K, beta, out + m0, CUDA_R_32F, M);
        else /* out [N, K] (+)= in[:, m0:m0+r] (lda M) wc */
            qa_cuda_gemm_rm(s, 0, 0, N, K, r, 1.0f, (const char *)in + es * (size_t)m0, t, M, wc, t, K,
                            m0 == 0 ? beta : 1.0f, out, CUDA_R_32F, K);
    }
}

void qa_cuda_nf4_gemm_bf16(qa_stream *s, int N, int K, int M, float beta, const __nv_bfloat16 *xb, const void *w,
                           __nv_bfloat16 *wc, float *y) {
    nf4_gemm(s, 0, 0, N, K, M, beta, xb, w, wc, y);
}

/* W NF4 [M, K]: forward out [N, M] = beta * out + in [N, K] Wᵀ (no bias: the caller adds it), backward
 * out [N, K] = beta * out + in [N, M] W; in converted to bf16 (fp32 on a cuda-fp32 stream) */
void qa_cuda_nf4_linear(qa_stream *s, int bwd, int N, int K, int M, float beta, const float *in, const void *w,
                        float *out) {
    if (s->fp32) {
        void *wc = qa_cuda_scratch(s, qa_cuda_nf4_chunk_bytes(M, K, 1));
        if (wc) nf4_gemm(s, bwd, 1, N, K, M, beta, in, w, wc, out);
        return;
    }
    const size_t n_in = (size_t)N * (bwd ? M : K);
    char *cur = (char *)qa_cuda_scratch(s, qa_cuda_round(sizeof(__nv_bfloat16) * n_in) + qa_cuda_nf4_chunk_bytes(M, K, 0));
    if (!cur) return;
    __nv_bfloat16 *ib = (__nv_bfloat16 *)qa_cuda_carve(&cur, sizeof(__nv_bfloat16) * n_in);
    qa_cuda_to_bf16(s, ib, in, n_in);
    nf4_gemm(s, bwd, 0, N, K, M, beta, ib, w, cur, out);
}
