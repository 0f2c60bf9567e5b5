/* cpu_internal.h — shared by the CPU backend sources in kernels/cpu; not part of the API.
 *
 * The CPU stream owns a small thread pool (qa_stream_opts.threads threads, the caller included) and
 * per-thread GEMM workspaces. Every op partitions its work statically over the pool's threads, and
 * every output element is computed by exactly one thread in a fixed order, so results do not depend
 * on scheduling — nor on the thread count. The pool is the only source of threads in the backend:
 * OpenBLAS is not called on the hot paths, so its own threads never compete with the pool. */
#ifndef QA_CPU_INTERNAL_H
#define QA_CPU_INTERNAL_H
#include "kernels/ops.h"
#include <stddef.h>

/* ---- thread pool --------------------------------------------------------------------------- */
typedef struct qa_pool qa_pool;
/* fn runs once on every thread of the pool: tid in [0, nt), the caller is tid 0 */
typedef void (*qa_pool_fn)(void *ctx, int tid, int nt);
qa_pool *qa_pool_create(int n);              /* n >= 2 threads including the caller; NULL on failure */
void qa_pool_destroy(qa_pool *p);
void qa_pool_run(qa_pool *p, qa_pool_fn fn, void *ctx); /* p NULL: fn(ctx, 0, 1) */
void qa_pool_barrier(qa_pool *p);            /* inside fn: wait for all nt threads (p NULL: no-op) */

/* static partition of [0, n) into nt contiguous ranges; range of thread tid, aligned to `align` */
static inline void qa_split(long n, int tid, int nt, long align, long *lo, long *hi) {
    long units = (n + align - 1) / align;
    long a = units * tid / nt, b = units * (tid + 1) / nt;
    *lo = a * align < n ? a * align : n;
    *hi = b * align < n ? b * align : n;
}

/* ---- GEMM ------------------------------------------------------------------------------------ */
enum { QA_GEMM_MR = 6, QA_GEMM_NR = 16, QA_GEMM_KC = 256, QA_GEMM_MC = 144, QA_GEMM_NC = 3072 };

/* per-thread workspace: packed A block [MC x KC], private packed B block [KC x NC], scratch */
typedef struct qa_cpu_tws {
    float *pa, *pb;
    float *tmp;
    size_t tmp_cap;                          /* floats */
} qa_cpu_tws;

/* The B operand of a GEMM: f32, bf16 or nf4 (converted / dequantized while packing). */
typedef struct qa_gemm_b {
    const void *p;                           /* F32/BF16: stored element (0, 0); NF4: the tensor's codes */
    qa_dtype dt;                             /* QA_DT_F32, QA_DT_BF16 or QA_DT_NF4 */
    int ld;
    int trans;                               /* op(B) = Bᵀ */
    const float *absmax;                     /* NF4: the tensor's per-64-block absmax */
    size_t off;                              /* NF4: flat index of stored element (0, 0) in the tensor */
} qa_gemm_b;

/* The A operand of qa_gemm_ex: op(A) = A (ta 0) or Aᵀ; with u: A(i, k) = silu(p[i, k]) * u[i, k] (SwiGLU
 * computed while packing; ta 0, u has the same layout as p). */
typedef struct qa_gemm_a {
    const float *p;
    int ld;
    int ta;
    const float *u;
} qa_gemm_a;
/* One output of a multi-output product: C [M, n] (row stride ldc) = alpha op(A) op(B) + beta C. */
typedef struct qa_gemm_seg {
    qa_gemm_b B;
    int n;
    float *C;
    int ldc;
} qa_gemm_seg;
#define QA_GEMM_MAX_SEG 4

/* C = alpha op(A) op(B) + beta C, row-major, op(A) [M,K], op(B) [K,N], C [M,N] (beta 0: C is not read).
 * Single-threaded, on thread workspace w (inside a pool task or with no pool). */
void qa_gemm_st(qa_cpu_tws *w, int ta, int M, int N, int K, float alpha, const float *A, int lda, qa_gemm_b B,
                float beta, float *C, int ldc);
/* nA products against the same B (packed once): C[i] = alpha op(A[i]) op(B) + beta C[i], single-threaded. */
void qa_gemm_st_batch(qa_cpu_tws *w, int nA, int ta, int M, int N, int K, float alpha, const float *const *A, int lda,
                      qa_gemm_b B, float beta, float *const *C, int ldc);
/* The same over all threads of stream s (NULL: single-threaded with per-call buffers). */
void qa_gemm(qa_stream *s, int ta, int M, int N, int K, float alpha, const float *A, int lda, qa_gemm_b B,
             float beta, float *C, int ldc);
/* Several products of the same A (K columns) in one pass: seg[i].C = alpha op(A) op(seg[i].B) + beta seg[i].C.
 * A is packed once per block for all of them. */
void qa_gemm_ex(qa_stream *s, int M, int K, float alpha, qa_gemm_a A, int nseg, const qa_gemm_seg *seg,
                float beta);

/* fn(ctx, task, w) for task in [0, n) over the threads of s (NULL: the caller, per-call workspace), handed
 * out one at a time in order (put the costly tasks first); w is the running thread's workspace. A task's
 * result must not depend on the thread that runs it. Not reentrant: tasks use qa_gemm_st, not qa_gemm. */
typedef void (*qa_cpu_task_fn)(void *ctx, long task, qa_cpu_tws *w);
void qa_cpu_par_tasks(qa_stream *s, long n, qa_cpu_task_fn fn, void *ctx);

/* ---- stream ---------------------------------------------------------------------------------- */
#define QA_CPU_MAX_THREADS 64
struct qa_stream {
    int nt;                                  /* threads (>= 1) */
    qa_pool *pool;                           /* NULL when nt == 1 */
    qa_cpu_tws tws[QA_CPU_MAX_THREADS];      /* per thread */
    float *pb_shared[2];                     /* [KC x NC] B blocks packed by all threads together */
    float *scratch;                          /* growable scratch of the calling thread */
    size_t cap;                              /* floats */
    /* RoPE table: cos then sin of pos * inv_freq[i] for pos in [0, rope_len), i in [0, hd/2) */
    float *rope_cs;
    int rope_len, rope_hd;
    float rope_theta;
};

/* workspace helpers: tws of thread tid (stream s may be NULL: then a per-call workspace) */
void qa_cpu_tws_init(qa_cpu_tws *w);
void qa_cpu_tws_free(qa_cpu_tws *w);
float *qa_cpu_tws_tmp(qa_cpu_tws *w, size_t n); /* n floats, valid until the next call */
#endif
