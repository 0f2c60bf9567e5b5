/* nf4_cuda.cu — frozen linears with NF4 weights (kernels/nf4.h) on the GPU: dequantize-then-cuBLAS with a
 * bounded scratch. The weight's rows are taken in chunks of at most NF4_CHUNK elements; each chunk is
 * dequantized into bf16 (code[q] * absmax in fp32, rounded to nearest even) and multiplied on the tensor
 * cores like a BF16 weight (bf16 x bf16, fp32 accumulation, fp32 output). Scratch: the bf16 activations
 * (as the BF16 path) + one chunk (32 MiB), never a full-size copy of the weight. */
#include "kernels/cuda/cuda_internal.cuh"

extern "C" {
#include "kernels/nf4.h"
}

enum { NF4_CHUNK = 16 << 20 }; /* elements of W dequantized at a time (32 MiB of bf16) */

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

/* rows of W per chunk: whole rows, an even number of elements (K odd: an even number of rows) */
static int chunk_rows(int M, int K) {
    int r = (int)(NF4_CHUNK / (size_t)K);
    if (r < 1) r = 1;
    if (r > M) r = M;
    if ((K & 1) && (r & 1) && r < M) r = r > 1 ? r - 1 : 2;
    return r;
}

static void dequant(qa_stream *s, const void *w, size_t numel, size_t first, size_t n, __nv_bfloat16 *dst) {
    const uint8_t *codes = (const uint8_t *)w;
    const float *am = qa_nf4_absmax(w, numel);
    k_nf4_to_bf16<<<qa_cuda_blocks(n / 2, 256), 256, 0, s->st>>>(codes, am, first, n, dst);
    QC_LAUNCH(s);
}

/* y [N, M] = beta * y + x [N, K] Wᵀ (W NF4 [M, K]; no bias: the caller adds it) */
void qa_cuda_nf4_linear_fwd(qa_stream *s, int N, int K, int M, float beta, const float *x, const void *w, float *y) {
    const int R = chunk_rows(M, K);
    const size_t xb_bytes = qa_cuda_round(sizeof(__nv_bfloat16) * (size_t)N * K);
    char *cur = (char *)qa_cuda_scratch(s, xb_bytes + sizeof(__nv_bfloat16) * (size_t)R * K);
    if (!cur) return;
    __nv_bfloat16 *xb = (__nv_bfloat16 *)qa_cuda_carve(&cur, sizeof(__nv_bfloat16) * (size_t)N * K);
    __nv_bfloat16 *wb = (__nv_bfloat16 *)cur;
    qa_cuda_to_bf16(s, xb, x, (size_t)N * K);
    for (int m0 = 0; m0 < M; m0 += R) {
        const int r = M - m0 < R ? M - m0 : R;
        dequant(s, w, (size_t)M * K, (size_t)m0 * K, (size_t)r * K, wb);
        qa_cuda_gemm_rm(s, 0, 1, N, r, K, 1.0f, xb, CUDA_R_16BF, K, wb, CUDA_R_16BF, K, beta, y + m0, CUDA_R_32F, M);
    }
}

/* dx [N, K] = beta * dx + dy [N, M] W (W NF4 [M, K]) */
void qa_cuda_nf4_linear_bwd(qa_stream *s, int N, int K, int M, float beta, const float *dy, const void *w, float *dx) {
    const int R = chunk_rows(M, K);
    const size_t db_bytes = qa_cuda_round(sizeof(__nv_bfloat16) * (size_t)N * M);
    char *cur = (char *)qa_cuda_scratch(s, db_bytes + sizeof(__nv_bfloat16) * (size_t)R * K);
    if (!cur) return;
    __nv_bfloat16 *db = (__nv_bfloat16 *)qa_cuda_carve(&cur, sizeof(__nv_bfloat16) * (size_t)N * M);
    __nv_bfloat16 *wb = (__nv_bfloat16 *)cur;
    qa_cuda_to_bf16(s, db, dy, (size_t)N * M);
    for (int m0 = 0; m0 < M; m0 += R) {
        const int r = M - m0 < R ? M - m0 : R;
        dequant(s, w, (size_t)M * K, (size_t)m0 * K, (size_t)r * K, wb);
        qa_cuda_gemm_rm(s, 0, 0, N, K, r, 1.0f, db + m0, CUDA_R_16BF, M, wb, CUDA_R_16BF, K, m0 == 0 ? beta : 1.0f, dx,
                        CUDA_R_32F, K);
    }
}
