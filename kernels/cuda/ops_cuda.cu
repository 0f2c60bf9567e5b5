/* ops_cuda.cu — the CUDA backend of kernels/ops.h (NVIDIA GPUs, built for sm_90: H100 / H200).
 *
 * Same table and semantics as kernels/cpu/ops_cpu.c; every pointer is device memory.
 *   - NF4 weights (kernels/nf4.h): kernels/cuda/nf4_cuda.cu dequantizes chunks of rows into bf16 and runs the
 *     same bf16 GEMM (bounded scratch); the fp32 table dequantizes into fp32 and runs an fp32 GEMM.
 *   - Frozen BF16 weights are used as they are: the fp32 activations of the interface are converted
 *     to bf16 into stream scratch and multiplied by cuBLAS on the tensor cores (bf16 x bf16, fp32
 *     accumulation and fp32 output, CUBLAS_COMPUTE_32F). F32 weights and the generic gemm stay fp32.
 *   - Two tables: "cuda" (the above) and "cuda-fp32", the verification mode: its streams convert BF16
 *     weights to fp32 in bounded row blocks and multiply in fp32 (cuBLAS pedantic math: no TF32), and the
 *     attention keeps fp32 operands; the Hugging Face goldens hold at the CPU's 1e-4 there.
 *   - LoRA (tiny rank) runs in fp32 through cuBLAS; dropout recomputes the counter-based mask of
 *     qa_dropout_keep on the device (same hash as the CPU).
 *   - Norm, RoPE, SwiGLU, embedding, gather/scatter, cross-entropy and AdamW are one kernel each,
 *     fp32 arithmetic (reductions in fp32 per thread, combined in double where the CPU uses double).
 *   - Attention: kernels/cuda/attn_cuda.cu.
 * Errors: ops record the first failure in the stream; sync returns it. */
#include "kernels/cuda/cuda_internal.cuh"
#include "common/qa_clock.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- errors, stream, scratch --------------------------------------------------------------- */
void qa_cuda_fail(qa_stream *s, const char *file, int line, const char *fmt, ...) {
    if (!s || s->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof s->err)
        snprintf(s->err + n, sizeof s->err - (size_t)n, " (%s:%d)", file, line);
    s->failed = 1;
}

/* ---- the launch profiler ----------------------------------------------------------------------- */
#define PROF_MAX 2048
typedef struct prof_entry {
    const char *file;
    int line;
    char label[72];
    long long calls;
    double sec;
} prof_entry;
struct qa_cuda_prof {
    double last;     /* time of the previous mark */
    double t0;
    int n;
    prof_entry e[PROF_MAX];
};
void qa_cuda_prof_mark(qa_stream *s, const char *file, int line, const char *label) {
    struct qa_cuda_prof *p = s->prof;
    if (!p) return;
    (void)cudaStreamSynchronize(s->st); /* a failure shows at the next checked sync */
    double t = qa_now_s(), dt = t - p->last;
    p->last = t;
    const char *lb = label ? label : "";
    int i = 0;
    for (; i < p->n; i++)
        if (p->e[i].line == line && !strcmp(p->e[i].file, file) && !strcmp(p->e[i].label, lb)) break;
    if (i == p->n) {
        if (p->n == PROF_MAX) i = PROF_MAX - 1, lb = "(other)";
        else p->n++;
        p->e[i].file = file;
        p->e[i].line = line;
        snprintf(p->e[i].label, sizeof p->e[i].label, "%s", lb);
    }
    p->e[i].calls++;
    p->e[i].sec += dt;
}
static int prof_cmp(const void *a, const void *b) {
    double x = ((const prof_entry *)a)->sec, y = ((const prof_entry *)b)->sec;
    return x < y ? 1 : x > y ? -1 : 0;
}
void qa_cuda_prof_report(qa_stream *s) {
    struct qa_cuda_prof *p = s->prof;
    if (!p || !p->n) return;
    double tot = 0;
    for (int i = 0; i < p->n; i++) tot += p->e[i].sec;
    qsort(p->e, (size_t)p->n, sizeof p->e[0], prof_cmp);
    fprintf(stderr, "cuda profile (%s): %.3f s in %d call sites over %.3f s of stream life\n",
            s->fp32 ? "cuda-fp32" : "cuda", tot, p->n, qa_now_s() - p->t0);
    fprintf(stderr, "  %8s %7s %10s %9s  %s\n", "ms", "%", "calls", "us/call", "site");
    for (int i = 0; i < p->n && i < 60; i++) {
        const char *f = strrchr(p->e[i].file, '/');
        fprintf(stderr, "  %8.1f %6.2f%% %10lld %9.1f  %s:%d %s\n", 1e3 * p->e[i].sec, 100.0 * p->e[i].sec / tot,
                p->e[i].calls, 1e6 * p->e[i].sec / (double)p->e[i].calls, f ? f + 1 : p->e[i].file, p->e[i].line,
                p->e[i].label);
    }
}

static int stream_create_mode(qa_stream **out, int fp32, qa_err *e) {
    qa_stream *s = (qa_stream *)calloc(1, sizeof *s);
    if (!s) return QA_ERR(e, "out of host memory creating a CUDA stream");
    cudaError_t r = cudaGetDevice(&s->device);
    if (r == cudaSuccess) r = cudaStreamCreateWithFlags(&s->st, cudaStreamNonBlocking);
    if (r != cudaSuccess) {
        free(s);
        return QA_ERR(e, "CUDA stream: %s (is a GPU visible? check nvidia-smi / CUDA_VISIBLE_DEVICES)",
                      cudaGetErrorString(r));
    }
    cublasStatus_t b = cublasCreate(&s->blas);
    if (b != CUBLAS_STATUS_SUCCESS) {
        cudaStreamDestroy(s->st);
        free(s);
        return QA_ERR(e, "cuBLAS handle: %s", cublasGetStatusString(b));
    }
    s->fp32 = fp32;
    b = cublasSetStream(s->blas, s->st);
    if (b == CUBLAS_STATUS_SUCCESS) b = cublasSetMathMode(s->blas, fp32 ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH);
    s->blas_ws_bytes = (size_t)32 << 20; /* Hopper: cuBLAS recommends 32 MiB */
    if (b == CUBLAS_STATUS_SUCCESS && cudaMalloc(&s->blas_ws, s->blas_ws_bytes) == cudaSuccess)
        b = cublasSetWorkspace(s->blas, s->blas_ws, s->blas_ws_bytes);
    else
        s->blas_ws = NULL, s->blas_ws_bytes = 0, (void)cudaGetLastError();
    if (b != CUBLAS_STATUS_SUCCESS) {
        if (s->blas_ws) cudaFree(s->blas_ws);
        cublasDestroy(s->blas);
        cudaStreamDestroy(s->st);
        free(s);
        return QA_ERR(e, "cuBLAS stream/workspace set-up: %s (check the CUDA/cuBLAS installation)",
                      cublasGetStatusString(b));
    }
    const char *pe = getenv("QALIGN_CUDA_PROFILE");
    if (pe && *pe && strcmp(pe, "0")) {
        s->prof = (struct qa_cuda_prof *)calloc(1, sizeof *s->prof);
        if (s->prof) s->prof->last = s->prof->t0 = qa_now_s();
    }
    *out = s;
    return 0;
}

/* qa_stream_opts: nothing to choose (one CUDA stream; threads are the CPU backend's) */
static int cu_stream_create(qa_stream **out, const qa_stream_opts *o, qa_err *e) {
    (void)o;
    return stream_create_mode(out, 0, e);
}
static int cu_stream_create_fp32(qa_stream **out, const qa_stream_opts *o, qa_err *e) {
    (void)o;
    return stream_create_mode(out, 1, e);
}

static void cu_stream_destroy(qa_stream *s) {
    if (!s) return;
    cudaStreamSynchronize(s->st);
    qa_cuda_prof_report(s);
    free(s->prof);
    cublasDestroy(s->blas);
    if (s->blas_ws) cudaFree(s->blas_ws);
    if (s->scratch) cudaFree(s->scratch);
    cudaStreamDestroy(s->st);
    free(s);
}

static int cu_sync(qa_stream *s, qa_err *e) {
    if (!s) {
        cudaError_t r = cudaDeviceSynchronize();
        if (r != cudaSuccess) return QA_ERR(e, "CUDA: %s", cudaGetErrorString(r));
        return 0;
    }
    cudaError_t r = cudaStreamSynchronize(s->st);
    if (r != cudaSuccess) QC_FAIL(s, "CUDA stream: %s", cudaGetErrorString(r));
    if (s->failed) {
        /* reported once, to a caller that takes the error (e != NULL); a sync without one keeps it recorded
         * for the next. A sticky device error shows up again at the next sync anyway. */
        if (e) {
            QA_ERR(e, "CUDA backend: %s", s->err);
            s->failed = 0;
        }
        return -1;
    }
    return 0;
}

void *qa_cuda_scratch(qa_stream *s, size_t bytes) {
    if (bytes == 0) bytes = 256;
    if (s->cap >= bytes) return s->scratch;
    if (s->scratch) {
        cudaStreamSynchronize(s->st); /* queued work may still read the old block */
        cudaFree(s->scratch);
        s->scratch = NULL;
        s->cap = 0;
    }
    size_t want = bytes + bytes / 8;
    if (cudaMalloc(&s->scratch, want) != cudaSuccess) {
        (void)cudaGetLastError();
        if (cudaMalloc(&s->scratch, bytes) != cudaSuccess) {
            (void)cudaGetLastError();
            s->scratch = NULL;
            QC_FAIL(s, "out of GPU memory: %zu bytes of scratch (reduce the batch size or sequence length)", bytes);
            return NULL;
        }
        want = bytes;
    }
    s->cap = want;
    return s->scratch;
}

static void *cu_alloc(size_t bytes, qa_err *e) {
    void *p = NULL;
    cudaError_t r = cudaMalloc(&p, bytes ? bytes : 256);
    if (r != cudaSuccess) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        QA_ERR(e, "out of GPU memory allocating %.1f MiB (%.1f of %.1f MiB free): %s", bytes / 1048576.0,
               fr / 1048576.0, tot / 1048576.0, cudaGetErrorString(r));
        return NULL;
    }
    return p;
}
static void cu_free(void *p) { if (p) cudaFree(p); }
static void cu_memcpy_h2d(qa_stream *s, void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    QC_CUDA(s, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s->st));
    if (s->prof) qa_cuda_prof_mark(s, __FILE__, __LINE__, "memcpy h2d");
}
static void cu_memcpy_d2h(qa_stream *s, void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    QC_CUDA(s, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s->st));
    QC_CUDA(s, cudaStreamSynchronize(s->st));
    if (s->prof) qa_cuda_prof_mark(s, __FILE__, __LINE__, "memcpy d2h");
}
static void cu_memcpy_d2d(qa_stream *s, void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return;
    QC_CUDA(s, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s->st));
    if (s->prof) qa_cuda_prof_mark(s, __FILE__, __LINE__, "memcpy d2d");
}
static void cu_memset0(qa_stream *s, void *dst, size_t bytes) {
    if (!bytes) return;
    QC_CUDA(s, cudaMemsetAsync(dst, 0, bytes, s->st));
    if (s->prof) qa_cuda_prof_mark(s, __FILE__, __LINE__, "memset");
}

/* ---- conversions and cuBLAS helpers ---------------------------------------------------------- */
__global__ void k_to_bf16(__nv_bfloat16 *__restrict__ dst, const float *__restrict__ src, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t n4 = n / 4;
    const float4 *s4 = (const float4 *)src;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
        float4 v = s4[i];
        __nv_bfloat162 a = __floats2bfloat162_rn(v.x, v.y), b = __floats2bfloat162_rn(v.z, v.w);
        ((__nv_bfloat162 *)dst)[2 * i] = a;
        ((__nv_bfloat162 *)dst)[2 * i + 1] = b;
    }
    for (size_t i = n4 * 4 + (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = __float2bfloat16_rn(src[i]);
}
__global__ void k_to_bf16_scalar(__nv_bfloat16 *__restrict__ dst, const float *__restrict__ src, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}
void qa_cuda_to_bf16(qa_stream *s, __nv_bfloat16 *dst, const float *src, size_t n) {
    if (!n) return;
    if (((uintptr_t)src % 16) == 0 && ((uintptr_t)dst % 8) == 0)
        k_to_bf16<<<qa_cuda_blocks(n / 4 + 1, 256), 256, 0, s->st>>>(dst, src, n);
    else
        k_to_bf16_scalar<<<qa_cuda_blocks(n, 256), 256, 0, s->st>>>(dst, src, n);
    QC_LAUNCH(s);
}

/* Row-major C[M,Nc] = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ: swap the operands. */
void qa_cuda_gemm_rm(qa_stream *s, int ta, int tb, int M, int Nc, int K, float alpha, const void *A,
                     cudaDataType_t at, int lda, const void *B, cudaDataType_t bt, int ldb, float beta, void *C,
                     cudaDataType_t ct, int ldc) {
    if (M <= 0 || Nc <= 0) return;
    QC_BLAS(s, cublasGemmEx(s->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, Nc, M, K,
                            &alpha, B, bt, ldb, A, at, lda, &beta, C, ct, ldc, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
    if (s->prof) {
        char lb[72];
        snprintf(lb, sizeof lb, "gemm %c%c %dx%dx%d %s", ta ? 'T' : 'N', tb ? 'T' : 'N', M, Nc, K,
                 at == CUDA_R_16BF && bt == CUDA_R_16BF ? "bf16" : at == CUDA_R_32F && bt == CUDA_R_32F ? "f32" : "mixed");
        qa_cuda_prof_mark(s, __FILE__, __LINE__, lb);
    }
}
void qa_cuda_gemm_rm_batched(qa_stream *s, int ta, int tb, int M, int Nc, int K, float alpha, const void *const *A,
                             cudaDataType_t at, int lda, const void *const *B, cudaDataType_t bt, int ldb, float beta,
                             void *const *C, cudaDataType_t ct, int ldc, int count) {
    if (M <= 0 || Nc <= 0 || count <= 0) return;
    QC_BLAS(s, cublasGemmBatchedEx(s->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, Nc, M,
                                   K, &alpha, B, bt, ldb, A, at, lda, &beta, C, ct, ldc, count,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (s->prof) {
        char lb[72];
        snprintf(lb, sizeof lb, "gemm batched %c%c %dx%dx%d x%d", ta ? 'T' : 'N', tb ? 'T' : 'N', M, Nc, K, count);
        qa_cuda_prof_mark(s, __FILE__, __LINE__, lb);
    }
}

/* ---- generic f32 algebra ------------------------------------------------------------------- */
__global__ void k_scale_mat(int M, int Nc, float beta, float *C, int ldc) {
    size_t n = (size_t)M * Nc;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float *c = C + (i / Nc) * (size_t)ldc + i % Nc;
        *c = beta == 0.0f ? 0.0f : beta * *c;
    }
}
__global__ void k_axpy(size_t n, float alpha, const float *__restrict__ x, float *__restrict__ y) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] += alpha * x[i];
}
static void cu_axpy(qa_stream *s, size_t n, float alpha, const float *x, float *y) {
    if (!n) return;
    k_axpy<<<qa_cuda_blocks(n, 256), 256, 0, s->st>>>(n, alpha, x, y);
    QC_LAUNCH(s);
}

/* one block per row (grid-stride over rows), threads over columns */
__global__ void k_gather_rows(int M, int D, const float *__restrict__ src, const int32_t *__restrict__ idx,
                              float *__restrict__ dst) {
    for (int i = blockIdx.x; i < M; i += gridDim.x) {
        const float *r = src + (size_t)idx[i] * D;
        float *o = dst + (size_t)i * D;
        for (int j = threadIdx.x; j < D; j += blockDim.x) o[j] = r[j];
    }
}
static void cu_gather_rows(qa_stream *s, int M, int D, const float *src, const int32_t *idx, float *dst) {
    if (M <= 0 || D <= 0) return;
    k_gather_rows<<<M < 65535 ? M : 65535, 256, 0, s->st>>>(M, D, src, idx, dst);
    QC_LAUNCH(s);
}
__global__ void k_scatter_add_rows(int M, int D, const float *__restrict__ src, const int32_t *__restrict__ idx,
                                   float *__restrict__ dst) {
    for (int i = blockIdx.x; i < M; i += gridDim.x) {
        float *d = dst + (size_t)idx[i] * D;
        const float *r = src + (size_t)i * D;
        for (int j = threadIdx.x; j < D; j += blockDim.x) d[j] += r[j];
    }
}
static void cu_scatter_add_rows(qa_stream *s, int M, int D, const float *src, const int32_t *idx, float *dst) {
    if (M <= 0 || D <= 0) return;
    k_scatter_add_rows<<<M < 65535 ? M : 65535, 256, 0, s->st>>>(M, D, src, idx, dst);
    QC_LAUNCH(s);
}

/* ---- embedding ------------------------------------------------------------------------------ */
__device__ __forceinline__ float wload(qa_dtype dt, const void *w, size_t i) {
    return dt == QA_DT_BF16 ? __bfloat162float(((const __nv_bfloat16 *)w)[i]) : ((const float *)w)[i];
}
__global__ void k_embedding(int N, int D, qa_dtype dt, const void *__restrict__ table, const int32_t *__restrict__ ids,
                            float *__restrict__ out) {
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        size_t base = (size_t)ids[n] * D;
        float *o = out + (size_t)n * D;
        for (int j = threadIdx.x; j < D; j += blockDim.x) o[j] = wload(dt, table, base + j);
    }
}
static void cu_embedding_fwd(qa_stream *s, int N, int D, qa_weight table, const int32_t *ids, float *out) {
    if (N <= 0) return;
    k_embedding<<<N < 65535 ? N : 65535, 256, 0, s->st>>>(N, D, table.dtype, table.data, ids, out);
    QC_LAUNCH(s);
}

/* ---- block reductions (blockDim.x a multiple of 32, <= 1024) ---------------------------------- */
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* sum over the block, returned to every thread; red: __shared__ float[32] */
__device__ float block_sum(float v, float *red) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* red may still be read by a previous reduction */
    if (lane == 0) red[w] = v;
    __syncthreads();
    float t = lane < nw ? red[lane] : 0.0f;
    return warp_sum(t);
}
__device__ float block_max(float v, float *red) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    float t = lane < nw ? red[lane] : -INFINITY;
    return warp_max(t);
}

/* ---- RMSNorm: one block per row -------------------------------------------------------------- */
__global__ void k_rmsnorm_fwd(int N, int D, float eps, const float *x, qa_dtype wdt, const void *__restrict__ w,
                              float *y, float *__restrict__ rstd) {
    __shared__ float red[32];
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const float *xr = x + (size_t)n * D;
        float *yr = y + (size_t)n * D;
        float ss = 0;
        for (int j = threadIdx.x; j < D; j += blockDim.x) ss += xr[j] * xr[j];
        ss = block_sum(ss, red);
        float r = (float)(1.0 / sqrt((double)ss / D + (double)eps));
        for (int j = threadIdx.x; j < D; j += blockDim.x) yr[j] = (xr[j] * r) * wload(wdt, w, j);
        if (rstd && threadIdx.x == 0) rstd[n] = r;
    }
}
static void cu_rmsnorm_fwd(qa_stream *s, int N, int D, float eps, const float *x, qa_weight w, float *y, float *rstd) {
    if (N <= 0) return;
    k_rmsnorm_fwd<<<N < 65535 ? N : 65535, 256, 0, s->st>>>(N, D, eps, x, w.dtype, w.data, y, rstd);
    QC_LAUNCH(s);
}
__global__ void k_rmsnorm_bwd(int N, int D, float beta, const float *__restrict__ x, qa_dtype wdt,
                              const void *__restrict__ w, const float *__restrict__ rstd, const float *dy, float *dx) {
    __shared__ float red[32];
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const float *xr = x + (size_t)n * D, *dyr = dy + (size_t)n * D;
        float *dxr = dx + (size_t)n * D;
        const float r = rstd[n];
        float dot = 0;
        for (int j = threadIdx.x; j < D; j += blockDim.x) dot += dyr[j] * wload(wdt, w, j) * xr[j];
        dot = block_sum(dot, red);
        float c = (float)((double)dot * r * r * r / D);
        for (int j = threadIdx.x; j < D; j += blockDim.x) {
            float g = r * dyr[j] * wload(wdt, w, j) - xr[j] * c;
            dxr[j] = beta == 0.0f ? g : beta * dxr[j] + g;
        }
    }
}
static void cu_rmsnorm_bwd(qa_stream *s, int N, int D, float beta, const float *x, qa_weight w, const float *rstd,
                           const float *dy, float *dx) {
    if (N <= 0) return;
    k_rmsnorm_bwd<<<N < 65535 ? N : 65535, 256, 0, s->st>>>(N, D, beta, x, w.dtype, w.data, rstd, dy, dx);
    QC_LAUNCH(s);
}

/* ---- RoPE: one thread per (token, head, pair) ------------------------------------------------ */
__global__ void k_rope(int N, int H, int hd, float theta, const int32_t *__restrict__ pos, float *x, float sign) {
    const int half = hd / 2;
    const size_t total = (size_t)N * H * half;
    for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(t % half);
        const size_t nh = t / half;
        const int n = (int)(nh / H);
        /* HF: inv_freq = 1 / base^(arange(0, dim, 2) / dim) in fp32; angle = pos * inv_freq in fp32 */
        float inv = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
        float a = (float)pos[n] * inv;
        double sd, cd;
        sincos((double)a, &sd, &cd);
        float cs = (float)cd, sn = sign * (float)sd;
        float *v = x + nh * hd;
        float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * cs - x1 * sn;
        v[i + half] = x1 * cs + x0 * sn;
    }
}
static void cu_rope_fwd(qa_stream *s, int N, int H, int hd, float theta, const int32_t *pos, float *x) {
    if (N <= 0) return;
    k_rope<<<qa_cuda_blocks((size_t)N * H * (hd / 2), 256), 256, 0, s->st>>>(N, H, hd, theta, pos, x, 1.0f);
    QC_LAUNCH(s);
}
static void cu_rope_bwd(qa_stream *s, int N, int H, int hd, float theta, const int32_t *pos, float *dx) {
    if (N <= 0) return;
    k_rope<<<qa_cuda_blocks((size_t)N * H * (hd / 2), 256), 256, 0, s->st>>>(N, H, hd, theta, pos, dx, -1.0f);
    QC_LAUNCH(s);
}

/* ---- SwiGLU ------------------------------------------------------------------------------- */
__global__ void k_swiglu_fwd(size_t n, const float *__restrict__ g, const float *__restrict__ u, float *out) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}
__global__ void k_swiglu_bwd(size_t n, const float *__restrict__ g, const float *__restrict__ u, const float *dout,
                             float *dg, float *__restrict__ du) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i], sg = 1.0f / (1.0f + expf(-gi)), d = dout[i];
        du[i] = d * (gi * sg);
        dg[i] = d * u[i] * sg * (1.0f + gi * (1.0f - sg));
    }
}
static void cu_swiglu_fwd(qa_stream *s, size_t n, const float *g, const float *u, float *out) {
    if (!n) return;
    k_swiglu_fwd<<<qa_cuda_blocks(n, 256), 256, 0, s->st>>>(n, g, u, out);
    QC_LAUNCH(s);
}
static void cu_swiglu_bwd(qa_stream *s, size_t n, const float *g, const float *u, const float *dout, float *dg,
                          float *du) {
    if (!n) return;
    k_swiglu_bwd<<<qa_cuda_blocks(n, 256), 256, 0, s->st>>>(n, g, u, dout, dg, du);
    QC_LAUNCH(s);
}

/* ---- frozen linear ------------------------------------------------------------------------ */
__global__ void k_bf16_to_f32(size_t n, const __nv_bfloat16 *__restrict__ src, float *__restrict__ dst) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}
#define FP32_W_BLOCK ((size_t)64 << 20) /* bytes of fp32 weight rows converted at a time (fp32 mode) */
/* fp32 mode, W BF16 [M, K]: forward y[:, m0:m1] = beta y + x W[m0:m1]ᵀ, backward dx = beta dx + Σ_blocks
 * dy[:, m0:m1] W[m0:m1] — W converted exactly to fp32 one row block at a time (bounded scratch). */
static void linear_fp32_rows(qa_stream *s, int bwd, int N, int K, int M, float beta, const float *in, const void *W,
                             float *out) {
    int rows = (int)(FP32_W_BLOCK / (sizeof(float) * (size_t)K));
    if (rows < 1) rows = 1;
    if (rows > M) rows = M;
    float *wf = (float *)qa_cuda_scratch(s, sizeof(float) * (size_t)rows * K);
    if (!wf) return;
    for (int m0 = 0; m0 < M; m0 += rows) {
        const int mb = M - m0 < rows ? M - m0 : rows;
        const size_t n = (size_t)mb * K;
        k_bf16_to_f32<<<qa_cuda_blocks(n, 256), 256, 0, s->st>>>(n, (const __nv_bfloat16 *)W + (size_t)m0 * K, wf);
        QC_LAUNCH(s);
        if (!bwd) /* y[:, m0:m0+mb] (ldc M) = x [N,K] wfᵀ */
            qa_cuda_gemm_rm(s, 0, 1, N, mb, K, 1.0f, in, CUDA_R_32F, K, wf, CUDA_R_32F, K, beta, out + m0, CUDA_R_32F, M);
        else /* dx [N,K] (+)= dy[:, m0:m0+mb] (lda M) wf */
            qa_cuda_gemm_rm(s, 0, 0, N, K, mb, 1.0f, in + m0, CUDA_R_32F, M, wf, CUDA_R_32F, K, m0 ? 1.0f : beta, out,
                            CUDA_R_32F, K);
    }
}
__global__ void k_add_bias(int N, int M, qa_dtype dt, const void *__restrict__ b, float *y) {
    size_t n = (size_t)N * M;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] += wload(dt, b, i % M);
}
/* The frozen linear's two products, W [M, K]: forward out [N, M] = beta * out + in [N, K] Wᵀ, backward
 * out [N, K] = beta * out + in [N, M] W. BF16 W: in converted to bf16 for the tensor cores (fp32 rows on a
 * cuda-fp32 stream); NF4 W: dequantized in chunks (nf4_cuda.cu); F32 W: an fp32 GEMM. */
static void linear_product(qa_stream *s, int bwd, int N, int K, int M, float beta, const float *in, qa_weight W,
                           float *out) {
    const int I = bwd ? M : K, O = bwd ? K : M; /* in [N, I], out [N, O] */
    if (N <= 0 || O <= 0) return;
    if (I <= 0) {
        k_scale_mat<<<qa_cuda_blocks((size_t)N * O, 256), 256, 0, s->st>>>(N, O, beta, out, O);
        QC_LAUNCH(s);
    } else if (W.dtype == QA_DT_NF4) {
        qa_cuda_nf4_linear(s, bwd, N, K, M, beta, in, W.data, out);
    } else if (W.dtype == QA_DT_BF16 && s->fp32) {
        linear_fp32_rows(s, bwd, N, K, M, beta, in, W.data, out);
    } else if (W.dtype == QA_DT_BF16) {
        __nv_bfloat16 *ib = (__nv_bfloat16 *)qa_cuda_scratch(s, sizeof(__nv_bfloat16) * (size_t)N * I);
        if (!ib) return;
        qa_cuda_to_bf16(s, ib, in, (size_t)N * I);
        qa_cuda_gemm_rm(s, 0, !bwd, N, O, I, 1.0f, ib, CUDA_R_16BF, I, W.data, CUDA_R_16BF, K, beta, out, CUDA_R_32F, O);
    } else {
        qa_cuda_gemm_rm(s, 0, !bwd, N, O, I, 1.0f, in, CUDA_R_32F, I, W.data, CUDA_R_32F, K, beta, out, CUDA_R_32F, O);
    }
}
static void cu_linear_fwd(qa_stream *s, int N, int K, int M, float beta, const float *x, qa_weight W, qa_weight bias,
                          float *y) {
    linear_product(s, 0, N, K, M, beta, x, W, y);
    if (bias.data && N > 0 && M > 0) {
        k_add_bias<<<qa_cuda_blocks((size_t)N * M, 256), 256, 0, s->st>>>(N, M, bias.dtype, bias.data, y);
        QC_LAUNCH(s);
    }
}
static void cu_linear_bwd(qa_stream *s, int N, int K, int M, float beta, const float *dy, qa_weight W, float *dx) {
    linear_product(s, 1, N, K, M, beta, dy, W, dx);
}

/* ---- fused forms (kernels/ops.h): fewer passes over the fp32 activations ------------------------- */
/* q,k,v (or gate,up) of one input: x converted to bf16 once for all n products (instead of once each) */
static void cu_linear_multi_fwd(qa_stream *s, int N, int K, int n, const float *x, const int *M, const qa_weight *W,
                                const qa_weight *bias, float *const *y) {
    if (N <= 0) return;
    int all_16 = K > 0; /* BF16 and NF4 weights share the bf16 operand */
    size_t chunk = 0;   /* the largest NF4 dequantization chunk */
    for (int i = 0; i < n; i++) {
        all_16 = all_16 && (W[i].dtype == QA_DT_BF16 || W[i].dtype == QA_DT_NF4);
        if (W[i].dtype == QA_DT_NF4 && M[i] > 0) {
            const size_t c = qa_cuda_nf4_chunk_bytes(M[i], K, 0);
            if (c > chunk) chunk = c;
        }
    }
    if (!all_16) { /* F32 weights: the plain op per product */
        for (int i = 0; i < n; i++) cu_linear_fwd(s, N, K, M[i], 0.0f, x, W[i], bias[i], y[i]);
        return;
    }
    char *cur = (char *)qa_cuda_scratch(s, qa_cuda_round(sizeof(__nv_bfloat16) * (size_t)N * K) + chunk);
    if (!cur) return;
    __nv_bfloat16 *xb = (__nv_bfloat16 *)qa_cuda_carve(&cur, sizeof(__nv_bfloat16) * (size_t)N * K);
    __nv_bfloat16 *wc = (__nv_bfloat16 *)cur;
    qa_cuda_to_bf16(s, xb, x, (size_t)N * K);
    for (int i = 0; i < n; i++) {
        if (M[i] <= 0) continue;
        if (W[i].dtype == QA_DT_NF4)
            qa_cuda_nf4_gemm_bf16(s, N, K, M[i], 0.0f, xb, W[i].data, wc, y[i]);
        else
            qa_cuda_gemm_rm(s, 0, 1, N, M[i], K, 1.0f, xb, CUDA_R_16BF, K, W[i].data, CUDA_R_16BF, K, 0.0f, y[i],
                            CUDA_R_32F, M[i]);
        if (bias[i].data) {
            k_add_bias<<<qa_cuda_blocks((size_t)N * M[i], 256), 256, 0, s->st>>>(N, M[i], bias[i].dtype, bias[i].data,
                                                                                y[i]);
            QC_LAUNCH(s);
        }
    }
}
/* silu(g) * u written straight as the bf16 operand of the down projection (never as fp32) */
__global__ void k_swiglu_bf16(size_t n, const float *__restrict__ g, const float *__restrict__ u,
                              __nv_bfloat16 *__restrict__ out) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16_rn(g[i] / (1.0f + expf(-g[i])) * u[i]);
}
static void cu_swiglu_linear_fwd(qa_stream *s, int N, int K, int M, float beta, const float *g, const float *u,
                                 qa_weight W, qa_weight bias, float *y) {
    if (N <= 0 || M <= 0) return;
    const size_t n = (size_t)N * K;
    if (K <= 0 || (W.dtype != QA_DT_BF16 && W.dtype != QA_DT_NF4)) {
        /* F32 weights: fp32 act in scratch, then the plain op (no scratch) */
        float *act = (float *)qa_cuda_scratch(s, sizeof(float) * (n ? n : 1));
        if (!act) return;
        if (n) {
            k_swiglu_fwd<<<qa_cuda_blocks(n, 256), 256, 0, s->st>>>(n, g, u, act);
            QC_LAUNCH(s);
        }
        cu_linear_fwd(s, N, K, M, beta, act, W, bias, y);
        return;
    }
    /* the bf16 operand, then (NF4) the dequantization chunk, in one scratch request */
    const size_t chunk = W.dtype == QA_DT_NF4 ? qa_cuda_nf4_chunk_bytes(M, K, 0) : 0;
    char *cur = (char *)qa_cuda_scratch(s, qa_cuda_round(sizeof(__nv_bfloat16) * n) + chunk);
    if (!cur) return;
    __nv_bfloat16 *ab = (__nv_bfloat16 *)qa_cuda_carve(&cur, sizeof(__nv_bfloat16) * n);
    k_swiglu_bf16<<<qa_cuda_blocks(n, 256), 256, 0, s->st>>>(n, g, u, ab);
    QC_LAUNCH(s);
    if (W.dtype == QA_DT_NF4)
        qa_cuda_nf4_gemm_bf16(s, N, K, M, beta, ab, W.data, (__nv_bfloat16 *)cur, y);
    else
        qa_cuda_gemm_rm(s, 0, 1, N, M, K, 1.0f, ab, CUDA_R_16BF, K, W.data, CUDA_R_16BF, K, beta, y, CUDA_R_32F, M);
    if (bias.data) {
        k_add_bias<<<qa_cuda_blocks((size_t)N * M, 256), 256, 0, s->st>>>(N, M, bias.dtype, bias.data, y);
        QC_LAUNCH(s);
    }
}

/* ---- LoRA ------------------------------------------------------------------------------------ */
__global__ void k_dropout(int N, int K, float p, uint64_t key, const float *__restrict__ x, float *__restrict__ out) {
    const float keep = 1.0f / (1.0f - p);
    size_t n = (size_t)N * K;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = qa_dropout_keep(key, (uint64_t)(i / K), (uint64_t)(i % K), p) ? x[i] * keep : 0.0f;
}
/* dx += mask(tmp) / (1-p) */
__global__ void k_dropout_add(int N, int K, float p, uint64_t key, const float *__restrict__ tmp, float *__restrict__ dx) {
    const float keep = 1.0f / (1.0f - p);
    size_t n = (size_t)N * K;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        if (qa_dropout_keep(key, (uint64_t)(i / K), (uint64_t)(i % K), p)) dx[i] += tmp[i] * keep;
}
static void cu_lora_fwd(qa_stream *s, int N, int K, int M, int r, float scale, float p, uint64_t key, const float *x,
                        const float *A, const float *Bm, float *xa, float *y) {
    if (N <= 0) return;
    const float *xd = x;
    if (p > 0) {
        float *buf = (float *)qa_cuda_scratch(s, sizeof(float) * (size_t)N * K);
        if (!buf) return;
        k_dropout<<<qa_cuda_blocks((size_t)N * K, 256), 256, 0, s->st>>>(N, K, p, key, x, buf);
        QC_LAUNCH(s);
        xd = buf;
    }
    /* xa = drop(x) Aᵀ ; y += scale xa Bᵀ */
    qa_cuda_gemm_rm(s, 0, 1, N, r, K, 1.0f, xd, CUDA_R_32F, K, A, CUDA_R_32F, K, 0.0f, xa, CUDA_R_32F, r);
    qa_cuda_gemm_rm(s, 0, 1, N, M, r, scale, xa, CUDA_R_32F, r, Bm, CUDA_R_32F, r, 1.0f, y, CUDA_R_32F, M);
}
static void cu_lora_bwd(qa_stream *s, int N, int K, int M, int r, float scale, float p, uint64_t key, const float *x,
                        const float *A, const float *Bm, const float *xa, const float *dy, float *dA, float *dB,
                        float *dx) {
    if (N <= 0) return;
    size_t need = qa_cuda_round(sizeof(float) * (size_t)N * r) +
                  (p > 0 ? 2 * qa_cuda_round(sizeof(float) * (size_t)N * K) : 0);
    char *cur = (char *)qa_cuda_scratch(s, need);
    if (!cur) return;
    float *dxa = (float *)qa_cuda_carve(&cur, sizeof(float) * (size_t)N * r);
    float *xdb = p > 0 ? (float *)qa_cuda_carve(&cur, sizeof(float) * (size_t)N * K) : NULL;
    float *tmp = p > 0 ? (float *)qa_cuda_carve(&cur, sizeof(float) * (size_t)N * K) : NULL;
    /* dB += scale dyᵀ xa ; dxa = scale dy B */
    qa_cuda_gemm_rm(s, 1, 0, M, r, N, scale, dy, CUDA_R_32F, M, xa, CUDA_R_32F, r, 1.0f, dB, CUDA_R_32F, r);
    qa_cuda_gemm_rm(s, 0, 0, N, r, M, scale, dy, CUDA_R_32F, M, Bm, CUDA_R_32F, r, 0.0f, dxa, CUDA_R_32F, r);
    const float *xd = x;
    if (p > 0) {
        k_dropout<<<qa_cuda_blocks((size_t)N * K, 256), 256, 0, s->st>>>(N, K, p, key, x, xdb);
        QC_LAUNCH(s);
        xd = xdb;
    }
    /* dA += dxaᵀ drop(x) */
    qa_cuda_gemm_rm(s, 1, 0, r, K, N, 1.0f, dxa, CUDA_R_32F, r, xd, CUDA_R_32F, K, 1.0f, dA, CUDA_R_32F, K);
    if (dx) {
        if (p <= 0) {
            qa_cuda_gemm_rm(s, 0, 0, N, K, r, 1.0f, dxa, CUDA_R_32F, r, A, CUDA_R_32F, K, 1.0f, dx, CUDA_R_32F, K);
        } else {
            qa_cuda_gemm_rm(s, 0, 0, N, K, r, 1.0f, dxa, CUDA_R_32F, r, A, CUDA_R_32F, K, 0.0f, tmp, CUDA_R_32F, K);
            k_dropout_add<<<qa_cuda_blocks((size_t)N * K, 256), 256, 0, s->st>>>(N, K, p, key, tmp, dx);
            QC_LAUNCH(s);
        }
    }
}

/* ---- cross-entropy: one block per row ---------------------------------------------------------- */
#define CE_THREADS 512
__global__ void __launch_bounds__(CE_THREADS) k_ce_fwd(int M, int V, const float *__restrict__ logits,
                                                       const int32_t *__restrict__ target, float *__restrict__ loss,
                                                       float *__restrict__ lse) {
    __shared__ float red[32];
    for (int i = blockIdx.x; i < M; i += gridDim.x) {
        const float *x = logits + (size_t)i * V;
        float mx = -INFINITY;
        for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, x[j]);
        mx = block_max(mx, red);
        float sum = 0;
        for (int j = threadIdx.x; j < V; j += blockDim.x) sum += expf(x[j] - mx);
        sum = block_sum(sum, red);
        if (threadIdx.x == 0) {
            double l = (double)mx + log((double)sum);
            lse[i] = (float)l;
            loss[i] = (float)(l - x[target[i]]);
        }
    }
}
__global__ void k_ce_bwd(int M, int V, float scale, const float *logits, const int32_t *__restrict__ target,
                         const float *__restrict__ lse, float *dlogits) {
    for (int i = blockIdx.y; i < M; i += gridDim.y) {
        const float *x = logits + (size_t)i * V;
        float *d = dlogits + (size_t)i * V;
        const float l = lse[i];
        const int t = target[i];
        for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < V; j += gridDim.x * blockDim.x) {
            float g = scale * expf(x[j] - l);
            d[j] = j == t ? g - scale : g;
        }
    }
}
static void cu_cross_entropy_fwd(qa_stream *s, int M, int V, const float *logits, const int32_t *target, float *loss,
                                 float *lse) {
    if (M <= 0) return;
    k_ce_fwd<<<M < 65535 ? M : 65535, CE_THREADS, 0, s->st>>>(M, V, logits, target, loss, lse);
    QC_LAUNCH(s);
}
static void cu_cross_entropy_bwd(qa_stream *s, int M, int V, float scale, const float *logits, const int32_t *target,
                                 const float *lse, float *dlogits) {
    if (M <= 0) return;
    dim3 grid((unsigned)((V + 1023) / 1024 < 64 ? (V + 1023) / 1024 : 64), M < 65535 ? M : 65535);
    k_ce_bwd<<<grid, 256, 0, s->st>>>(M, V, scale, logits, target, lse, dlogits);
    QC_LAUNCH(s);
}

/* ---- AdamW ------------------------------------------------------------------------------------ */
__global__ void k_adamw(size_t n, float beta1, float beta2, float eps, float step_size, float bc2_sqrt, float decay,
                        float *__restrict__ p, const float *__restrict__ g, float *__restrict__ m,
                        float *__restrict__ v) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i], pi = p[i] * decay, mi = m[i], vi = v[i];
        mi += (gi - mi) * (1.0f - beta1);
        vi = vi * beta2 + (1.0f - beta2) * gi * gi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi - step_size * mi / denom;
        m[i] = mi;
        v[i] = vi;
    }
}
static void cu_adamw_step(qa_stream *s, size_t n, float lr, float beta1, float beta2, float eps, float wd, int64_t step,
                          float *p, const float *g, float *m, float *v) {
    if (!n) return;
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), decay = 1.0f - lr * wd;
    k_adamw<<<qa_cuda_blocks(n, 256), 256, 0, s->st>>>(n, beta1, beta2, eps, step_size, bc2_sqrt, decay, p, g, m, v);
    QC_LAUNCH(s);
}

/* ---- the LoRA state: global squared norm (deterministic two-pass reduction in double) and scale ---- */
#define SUMSQ_BLOCKS 1024
#define SUMSQ_THREADS 256
__device__ static double block_sum_d(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    return sh[0];
}
__global__ void k_sumsq_partial(size_t n, const float *__restrict__ x, double *__restrict__ part) {
    __shared__ double sh[SUMSQ_THREADS];
    double acc = 0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        acc += (double)x[i] * x[i];
    double b = block_sum_d(acc, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = b;
}
__global__ void k_sumsq_final(int nparts, const double *__restrict__ part, double *__restrict__ out) {
    __shared__ double sh[SUMSQ_THREADS];
    double acc = 0;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x) acc += part[i];
    double b = block_sum_d(acc, sh);
    if (threadIdx.x == 0) *out = b;
}
static void cu_sumsq(qa_stream *s, size_t n, const float *x, double *out) {
    double *part = (double *)qa_cuda_scratch(s, SUMSQ_BLOCKS * sizeof(double));
    if (!part) return;
    k_sumsq_partial<<<SUMSQ_BLOCKS, SUMSQ_THREADS, 0, s->st>>>(n, x, part);
    QC_LAUNCH(s);
    k_sumsq_final<<<1, SUMSQ_THREADS, 0, s->st>>>(SUMSQ_BLOCKS, part, out);
    QC_LAUNCH(s);
}
__global__ void k_scale(size_t n, double alpha, float *__restrict__ x) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = (float)(x[i] * alpha);
}
static void cu_scale(qa_stream *s, size_t n, double alpha, float *x) {
    if (!n) return;
    k_scale<<<qa_cuda_blocks(n, 256), 256, 0, s->st>>>(n, alpha, x);
    QC_LAUNCH(s);
}

/* ---- the device ------------------------------------------------------------------------------ */
static int cu_select_device(int ordinal, char *desc, size_t desc_n, qa_err *e) {
    int n = 0;
    cudaError_t r = cudaGetDeviceCount(&n);
    if (r != cudaSuccess || n <= 0) {
        (void)cudaGetLastError();
        return QA_ERR(e, "no usable GPU (%s)%s; use --device cpu", r != cudaSuccess ? cudaGetErrorString(r) : "0 devices",
                      r == cudaErrorInsufficientDriver ? ": the NVIDIA driver is older than this CUDA runtime (CUDA 13 "
                      "needs driver 580 or newer): update it" : "");
    }
    int dev = ordinal % n;
    cudaDeviceProp p;
    if ((r = cudaGetDeviceProperties(&p, dev)) != cudaSuccess)
        return QA_ERR(e, "GPU %d: %s (check nvidia-smi)", dev, cudaGetErrorString(r));
    if (p.major < 8)
        return QA_ERR(e, "GPU %d (%s) has compute capability %d.%d, but qalign's CUDA kernels need 8.0 or newer (bf16 "
                      "tensor cores: A100, H100, H200): use --device cpu", dev, p.name, p.major, p.minor);
    if ((r = cudaSetDevice(dev)) != cudaSuccess)
        return QA_ERR(e, "cudaSetDevice(%d): %s (CUDA_VISIBLE_DEVICES, exclusive-process mode?)", dev,
                      cudaGetErrorString(r));
    if (desc && desc_n)
        snprintf(desc, desc_n, "GPU %d of %d: %s, %.1f GiB", dev, n, p.name, p.totalGlobalMem / 1073741824.0);
    return 0;
}

/* ---- the table -------------------------------------------------------------------------------- */
static qa_ops make_ops(void) {
    qa_ops o;
    memset(&o, 0, sizeof o);
    o.name = "cuda";
    o.host_memory = 0;
    o.select_device = cu_select_device;
    o.stream_create = cu_stream_create;
    o.stream_destroy = cu_stream_destroy;
    o.sync = cu_sync;
    o.alloc = cu_alloc;
    o.free = cu_free;
    o.memcpy_h2d = cu_memcpy_h2d;
    o.memcpy_d2h = cu_memcpy_d2h;
    o.memcpy_d2d = cu_memcpy_d2d;
    o.memset0 = cu_memset0;
    o.axpy = cu_axpy;
    o.gather_rows = cu_gather_rows;
    o.scatter_add_rows = cu_scatter_add_rows;
    o.embedding_fwd = cu_embedding_fwd;
    o.rmsnorm_fwd = cu_rmsnorm_fwd;
    o.rmsnorm_bwd = cu_rmsnorm_bwd;
    o.rope_fwd = cu_rope_fwd;
    o.rope_bwd = cu_rope_bwd;
    o.attention_fwd = qa_cuda_attention_fwd;
    o.attention_bwd = qa_cuda_attention_bwd;
    o.swiglu_fwd = cu_swiglu_fwd;
    o.swiglu_bwd = cu_swiglu_bwd;
    o.linear_multi_fwd = cu_linear_multi_fwd;
    o.swiglu_linear_fwd = cu_swiglu_linear_fwd;
    o.linear_fwd = cu_linear_fwd;
    o.linear_bwd = cu_linear_bwd;
    o.lora_fwd = cu_lora_fwd;
    o.lora_bwd = cu_lora_bwd;
    o.cross_entropy_fwd = cu_cross_entropy_fwd;
    o.cross_entropy_bwd = cu_cross_entropy_bwd;
    o.adamw_step = cu_adamw_step;
    o.sumsq = cu_sumsq;
    o.scale = cu_scale;
    o.attention_prefix_fwd = qa_cuda_attention_prefix_fwd;
    return o;
}
static qa_ops make_ops_fp32(void) {
    qa_ops o = make_ops();
    o.name = "cuda-fp32";
    o.stream_create = cu_stream_create_fp32;
    o.linear_multi_fwd = NULL; /* the fused forms are bf16-operand shortcuts: fp32 runs the plain ops */
    o.swiglu_linear_fwd = NULL;
    return o;
}
static const qa_ops CUDA_OPS = make_ops();
static const qa_ops CUDA_FP32_OPS = make_ops_fp32();

/* The CUDA table; NULL + error when no device is usable. */
extern "C" const qa_ops *qa_ops_cuda(qa_err *e);
extern "C" const qa_ops *qa_ops_cuda(qa_err *e) {
    int n = 0;
    cudaError_t r = cudaGetDeviceCount(&n);
    if (r != cudaSuccess || n <= 0) {
        (void)cudaGetLastError();
        QA_ERR(e, "backend 'cuda': no usable GPU (%s)%s; use --device cpu",
               r != cudaSuccess ? cudaGetErrorString(r) : "no device",
               r == cudaErrorInsufficientDriver ? ": the NVIDIA driver is older than this CUDA runtime (CUDA 13 needs "
               "driver 580 or newer)" : "");
        return NULL;
    }
    return &CUDA_OPS;
}
/* The verification mode: the same table with fp32 streams. */
extern "C" const qa_ops *qa_ops_cuda_fp32(qa_err *e);
extern "C" const qa_ops *qa_ops_cuda_fp32(qa_err *e) { return qa_ops_cuda(e) ? &CUDA_FP32_OPS : NULL; }
