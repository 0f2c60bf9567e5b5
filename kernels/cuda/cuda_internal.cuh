/* cuda_internal.cuh — what the CUDA sources of kernels/cuda share (not part of any API).
 *
 * The stream (qa_stream) holds one cudaStream_t, one cuBLAS handle with its workspace, a growable
 * device scratch buffer, its precision mode (bf16 tensor cores, or fp32 for verification) and the first
 * error seen by an op (ops return void: a failed launch or library call is recorded here and reported by
 * the next sync). */
#ifndef QA_CUDA_INTERNAL_CUH
#define QA_CUDA_INTERNAL_CUH

#ifdef __cplusplus
#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#endif
extern "C" {
#endif
#include "kernels/ops.h"
#ifdef __cplusplus
}
#endif

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

struct qa_stream {
    cudaStream_t st;
    cublasHandle_t blas;
    void *blas_ws;          /* cuBLAS workspace */
    size_t blas_ws_bytes;
    void *scratch;          /* device scratch, valid until the next op on this stream */
    size_t cap;             /* bytes */
    int device;
    int fp32;               /* the "cuda-fp32" table: fp32 GEMMs (no TF32, pedantic math) and fp32 attention */
    int failed;             /* an op failed: err holds the first message */
    char err[512];
    struct qa_cuda_prof *prof; /* per-launch timing table, only with QALIGN_CUDA_PROFILE=1 (else NULL) */
};

/* The launch profiler (QALIGN_CUDA_PROFILE=1 when the stream is created): after every launch, library
 * call and copy the stream is synchronized and the wall time since the previous mark is added to the
 * entry of that call site (file:line, and a label such as a GEMM's shape); the table, sorted by time,
 * goes to stderr when the stream is destroyed. Each mark costs a synchronization (~10 us): the table
 * shows where the time goes, not the unprofiled speed. */
void qa_cuda_prof_mark(qa_stream *s, const char *file, int line, const char *label);
void qa_cuda_prof_report(qa_stream *s);

/* record the first failure of an op (reported by sync) */
void qa_cuda_fail(qa_stream *s, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define QC_FAIL(s, ...) qa_cuda_fail((s), __FILE__, __LINE__, __VA_ARGS__)
#define QC_CUDA(s, call) do { cudaError_t _r = (call); \
    if (_r != cudaSuccess) QC_FAIL(s, "%s: %s", #call, cudaGetErrorString(_r)); } while (0)
#define QC_BLAS(s, call) do { cublasStatus_t _r = (call); \
    if (_r != CUBLAS_STATUS_SUCCESS) QC_FAIL(s, "%s: %s", #call, cublasGetStatusString(_r)); } while (0)
/* after a kernel launch */
#define QC_LAUNCH(s) do { QC_CUDA(s, cudaGetLastError()); \
    if ((s)->prof) qa_cuda_prof_mark((s), __FILE__, __LINE__, NULL); } while (0)

/* Device scratch of `bytes` (64-byte aligned), valid until the next call that asks for scratch on
 * this stream. An op asks once for everything it needs and carves it with qa_cuda_carve. NULL (and a
 * recorded failure) when the device is out of memory. */
void *qa_cuda_scratch(qa_stream *s, size_t bytes);
static inline size_t qa_cuda_round(size_t b) { return (b + 255) / 256 * 256; }
static inline void *qa_cuda_carve(char **cur, size_t bytes) {
    void *p = *cur;
    *cur += qa_cuda_round(bytes);
    return p;
}

/* grid size for n elements at `threads` per block (capped; kernels use grid-stride loops) */
static inline unsigned qa_cuda_blocks(size_t n, int threads) {
    size_t b = (n + (size_t)threads - 1) / (size_t)threads;
    if (b < 1) b = 1;
    if (b > 65535u * 8u) b = 65535u * 8u;
    return (unsigned)b;
}

/* f32 -> bf16 (round to nearest even), n elements */
void qa_cuda_to_bf16(qa_stream *s, __nv_bfloat16 *dst, const float *src, size_t n);

/* Row-major C = alpha op(A) op(B) + beta C with per-operand data types (CUDA_R_32F / CUDA_R_16BF),
 * fp32 accumulation (CUBLAS_COMPUTE_32F). ta/tb: op = transpose. */
void qa_cuda_gemm_rm(qa_stream *s, int ta, int tb, int M, int Nc, int K, float alpha,
                     const void *A, cudaDataType_t at, int lda,
                     const void *B, cudaDataType_t bt, int ldb, float beta,
                     void *C, cudaDataType_t ct, int ldc);
/* the same over `count` products given by device arrays of pointers */
void qa_cuda_gemm_rm_batched(qa_stream *s, int ta, int tb, int M, int Nc, int K, float alpha,
                             const void *const *A, cudaDataType_t at, int lda,
                             const void *const *B, cudaDataType_t bt, int ldb, float beta,
                             void *const *C, cudaDataType_t ct, int ldc, int count);

/* kernels/cuda/nf4_cuda.cu: frozen linears with an NF4 weight block w [M, K] (codes then fp32 absmax): bwd 0
 * out [N, M] = beta * out + in [N, K] Wᵀ (no bias), bwd 1 out [N, K] = beta * out + in [N, M] W */
void qa_cuda_nf4_linear(qa_stream *s, int bwd, int N, int K, int M, float beta, const float *in, const void *w,
                        float *out);
/* bytes of the chunk buffer the NF4 GEMM dequantizes into (bf16, or fp32 for the fp32 mode) */
size_t qa_cuda_nf4_chunk_bytes(int M, int K, int fp32);
/* y [N, M] = beta * y + xb [N, K] Wᵀ with the bf16 operand already made (the fused forward ops); wc: a scratch
 * buffer of qa_cuda_nf4_chunk_bytes(M, K, 0) that does not overlap xb */
void qa_cuda_nf4_gemm_bf16(qa_stream *s, int N, int K, int M, float beta, const __nv_bfloat16 *xb, const void *w,
                           __nv_bfloat16 *wc, float *y);

/* kernels/cuda/attn_cuda.cu */
void qa_cuda_attention_fwd(qa_stream *s, const qa_attn_desc *d, const float *q, const float *k, const float *v,
                           float *o, float *lse);
void qa_cuda_attention_bwd(qa_stream *s, const qa_attn_desc *d, const float *q, const float *k, const float *v,
                           const float *o, const float *lse, const float *dout, float *dq, float *dk, float *dv);
void qa_cuda_attention_prefix_fwd(qa_stream *s, const qa_attn_prefix_desc *d, const float *q, const float *kc,
                                  const float *vc, const float *k, const float *v, float *o);
#endif
