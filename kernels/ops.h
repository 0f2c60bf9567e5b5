/* ops.h — the compute kernels of qalign behind one backend boundary.
 *
 * A backend is a table of function pointers (qa_ops). qa_ops_cpu() returns the CPU table
 * (kernels/cpu: its own blocked GEMM and a thread pool per stream); qa_ops_emu() the emulated device
 * (kernels/emu: the CPU kernels behind device memory); a CUDA build provides the same table
 * (kernels/cuda, qa_ops_cuda(e) and its fp32 variant, reached through qa_ops_get / qa_ops_open).
 * Every pointer passed to an op is a pointer into that backend's memory ("device pointer",
 * allocated with ops->alloc); on the CPU it is ordinary host memory (ops->host_memory == 1).
 * Every op takes a qa_stream: the execution context of the backend (CUDA: stream + cuBLAS
 * handle + scratch; CPU: its thread pool, whose size is the stream's, set at stream_create from
 * qa_stream_opts.threads — no process-wide thread setting). A CPU op given a NULL stream runs on
 * the calling thread alone.
 *
 * Conventions
 *   - Row-major, C order. N = number of tokens (B*T flattened), D = hidden size, F = MLP
 *     intermediate size, V = vocabulary, H = query heads, Hk = KV heads, hd = head_dim.
 *   - Activations cross the interface as fp32. Frozen weights are typed views (qa_weight):
 *     BF16 or F32 (NF4 too, as the W of the linear slots); a backend converts BF16 and dequantizes
 *     NF4 on the fly (CPU: one block at a time while its GEMM packs it) and never needs a second
 *     full-size copy.
 *   - Backward ops *accumulate* into gradients of trainable parameters (lora_bwd's dA, dB). An
 *     activation gradient is, as each slot says, overwritten (attention_bwd, swiglu_bwd), added
 *     to (lora_bwd's dx) or combined through a `beta` (dx = beta*dx + ...: rmsnorm_bwd,
 *     linear_bwd; 0 = overwrite, 1 = add).
 *   - Ops do not fail on valid input: shape/index validation is the caller's job (model/). A
 *     device backend records what fails inside an op (scratch memory, a launch) on the stream and
 *     reports it at the next sync. Kernels know no files and no ranks.
 *   - Every pointer argument carries its shape in a comment ([N, D]: floats unless said otherwise;
 *     "backend memory" is implied for every pointer unless a comment says host).
 */
#ifndef QA_OPS_H
#define QA_OPS_H
#include "common/qa_dtype.h"
#include "common/qa_err.h"
#include "common/qa_rng.h"
#include <stddef.h>
#include <stdint.h>

typedef struct qa_stream qa_stream; /* backend execution context; opaque */

/* How a stream is made (stream_create; NULL: every field 0). */
typedef struct qa_stream_opts {
    int threads;                /* CPU backend (and the emulated device, which runs the CPU kernels): threads of
                                   the stream's pool, the caller included; 0 = one per online core; at most
                                   QA_CPU_MAX_THREADS (64). Results do not depend on it. CUDA ignores it. */
} qa_stream_opts;

/* A frozen tensor in backend memory: BF16, F32 or NF4. data == NULL means "absent" (no bias).
 * NF4 (kernels/nf4.h), only as W of linear_fwd / linear_bwd / linear_multi_fwd / swiglu_linear_fwd: data is
 * one block holding the packed codes [M*K/2 bytes] followed by the fp32 absmax [M*K/64] (qa_nf4_absmax);
 * the op dequantizes 64-blocks itself and never makes a full-precision copy. */
typedef struct qa_weight {
    qa_dtype dtype;     /* QA_DT_F32, QA_DT_BF16 or QA_DT_NF4 */
    const void *data;
} qa_weight;

/* Which keys a query may see. Query i (row index inside its sequence) sees key j iff
 *   j <= i                               (causal)
 *   && (window == 0 || j > i - window)   (sliding window: the `window` most recent, incl. i)
 *   && key_mask[b,j] != 0                (padding keys are never attended)
 *   && segment[b,i] == segment[b,j]      (packed examples do not see each other)
 * A query that sees no key gets output 0 (and no gradient). */
typedef struct qa_attn_desc {
    int B, T;                   /* batch, sequence length */
    int n_heads, n_kv_heads;    /* H, Hk; query head h reads KV head h / (H / Hk) */
    int head_dim;               /* hd */
    int window;                 /* 0 = full attention */
    float scale;                /* score scale, 1/sqrt(hd) */
    const int32_t *key_mask;    /* [B,T] 1 = real token; NULL = all real */
    const int32_t *segment;     /* [B,T] packed-example id; NULL = one example per row */
} qa_attn_desc;

/* Inference attention over a cached prefix (evaluation): row b continues a prefix whose keys and
 * values (after RoPE) are cached once for all rows; it sees the first ctx[b] cached positions. Its
 * query i sits at absolute position ctx[b] + i and sees
 *   cached key j   iff j < ctx[b]  && (window == 0 || j > ctx[b] + i - window)
 *   own key t      iff t <= i      && (window == 0 || t > i - window)
 * Rows are right-padded: a real query never sees a later (padding) key, so no key mask is needed. */
typedef struct qa_attn_prefix_desc {
    int B, T;                   /* rows, padded suffix length */
    int n_heads, n_kv_heads;    /* H, Hk */
    int head_dim;               /* hd */
    int window;                 /* 0 = full attention; on absolute positions */
    float scale;                /* 1/sqrt(hd) */
    int cache_len;              /* Tc: positions held by the cache (>= every ctx[b]) */
    const int32_t *ctx;         /* [B] backend memory: cached positions row b continues from */
} qa_attn_prefix_desc;

typedef struct qa_ops {
    const char *name;           /* "cpu", "emu", "cuda" or "cuda-fp32" */
    int host_memory;            /* 1: backend pointers are host pointers (CPU backend); 0: emu, cuda */

    /* ---- device (optional: NULL on backends with one device, cpu and emu) --------------- */
    /* Make device `ordinal` modulo the visible devices current for this thread (before stream_create and
     * alloc). 0, or -1 + error (no device, driver too old, a GPU these kernels were not built for). */
    int (*select_device)(int ordinal,             /* a rank's node-local index; taken modulo the devices */
                         char *desc,              /* [desc_n] host, or NULL: "GPU i of n: name, X GiB" */
                         size_t desc_n, qa_err *e);

    /* ---- context and memory ------------------------------------------------------------ */
    int (*stream_create)(qa_stream **s,           /* [1] host: the new stream */
                         const qa_stream_opts *o, /* host; NULL: defaults (every field 0) */
                         qa_err *e);
    void (*stream_destroy)(qa_stream *s);         /* waits for queued work; NULL ok */
    /* Wait for queued work. 0, or -1 + error (device: the first failure recorded on the stream since the
     * last report; with e NULL it stays recorded for the next sync). CUDA: s NULL waits for the device. */
    int (*sync)(qa_stream *s, qa_err *e);
    void *(*alloc)(size_t bytes, qa_err *e);      /* [bytes], 64-byte aligned or better; NULL + error when
                                                     out of memory */
    void (*free)(void *p);                        /* a pointer from alloc, or NULL */
    /* Copies of `bytes` bytes between buffers that do not overlap. */
    void (*memcpy_h2d)(qa_stream *s,
                       void *dst,                 /* [bytes] backend memory */
                       const void *src,           /* [bytes] host; read when the copy runs (CUDA: queued, keep
                                                     it unchanged until the next sync) */
                       size_t bytes);
    void (*memcpy_d2h)(qa_stream *s,              /* synchronous: dst is filled on return */
                       void *dst,                 /* [bytes] host */
                       const void *src,           /* [bytes] backend memory */
                       size_t bytes);
    void (*memcpy_d2d)(qa_stream *s,
                       void *dst,                 /* [bytes] */
                       const void *src,           /* [bytes] */
                       size_t bytes);
    void (*memset0)(qa_stream *s,
                    void *dst,                    /* [bytes] set to 0 */
                    size_t bytes);

    /* ---- generic f32 algebra ----------------------------------------------------------- */
    /* y += alpha * x */
    void (*axpy)(qa_stream *s, size_t n, float alpha,
                 const float *x,   /* [n] */
                 float *y);        /* [n] */
    /* dst[i,:] = src[idx[i],:] */
    void (*gather_rows)(qa_stream *s, int M, int D,
                        const float *src,    /* [*, D] */
                        const int32_t *idx,  /* [M] row indices into src */
                        float *dst);         /* [M, D] */
    /* dst[idx[i],:] += src[i,:] (indices must be distinct) */
    void (*scatter_add_rows)(qa_stream *s, int M, int D,
                             const float *src,    /* [M, D] */
                             const int32_t *idx,  /* [M] */
                             float *dst);         /* [*, D] */

    /* ---- embedding (frozen table; its backward is the caller's d(embeddings)) ----------- */
    void (*embedding_fwd)(qa_stream *s, int N, int D,
                          qa_weight table,        /* [V, D] BF16 or F32 */
                          const int32_t *ids,     /* [N], each in [0, V) */
                          float *out);            /* [N, D] */

    /* ---- RMSNorm: y = x * rsqrt(mean(x²) + eps) * w  (HF: plain w, not 1 + w) ----------- */
    void (*rmsnorm_fwd)(qa_stream *s, int N, int D, float eps,
                        const float *x,           /* [N, D] */
                        qa_weight w,              /* [D] BF16 or F32 */
                        float *y,                 /* [N, D] (may alias x) */
                        float *rstd);             /* [N] saved 1/rms, or NULL */
    void (*rmsnorm_bwd)(qa_stream *s, int N, int D, float beta,
                        const float *x,           /* [N, D] the forward input */
                        qa_weight w,              /* [D] BF16 or F32 */
                        const float *rstd,        /* [N] from rmsnorm_fwd */
                        const float *dy,          /* [N, D] */
                        float *dx);               /* [N, D] dx = beta*dx + d(loss)/dx */

    /* ---- RoPE, HF rotate_half (dim i pairs with i + hd/2), in place --------------------- *
     * inv_freq[i] = 1 / theta^(2i/hd) and angle = pos * inv_freq[i] in fp32, as HF.        */
    void (*rope_fwd)(qa_stream *s, int N, int H, int hd, float theta,
                     const int32_t *pos,          /* [N] position of each token */
                     float *x);                   /* [N, H, hd] rotated in place */
    void (*rope_bwd)(qa_stream *s, int N, int H, int hd, float theta,
                     const int32_t *pos,          /* [N] */
                     float *dx);                  /* [N, H, hd] gradient, rotated back in place */

    /* ---- attention: softmax(q kᵀ * scale + mask) v, GQA, fp32 softmax ------------------- */
    void (*attention_fwd)(qa_stream *s,
                          const qa_attn_desc *d,  /* host; its key_mask / segment [B, T] backend memory */
                          const float *q,         /* [B, T, H, hd]  (after RoPE) */
                          const float *k,         /* [B, T, Hk, hd] (after RoPE) */
                          const float *v,         /* [B, T, Hk, hd] */
                          float *o,               /* [B, T, H, hd] */
                          float *lse);            /* [B, H, T] saved log-sum-exp (-inf: no key) */
    void (*attention_bwd)(qa_stream *s,
                          const qa_attn_desc *d,  /* host; as attention_fwd's */
                          const float *q,         /* [B, T, H, hd] */
                          const float *k,         /* [B, T, Hk, hd] */
                          const float *v,         /* [B, T, Hk, hd] */
                          const float *o,         /* [B, T, H, hd] forward output */
                          const float *lse,       /* [B, H, T] */
                          const float *dout,      /* [B, T, H, hd] */
                          float *dq,              /* [B, T, H, hd]  overwritten */
                          float *dk,              /* [B, T, Hk, hd] overwritten */
                          float *dv);             /* [B, T, Hk, hd] overwritten */

    /* ---- SwiGLU: out = silu(g) * u ------------------------------------------------------- */
    void (*swiglu_fwd)(qa_stream *s, size_t n,
                       const float *g,            /* [n] gate_proj output */
                       const float *u,            /* [n] up_proj output */
                       float *out);               /* [n] */
    void (*swiglu_bwd)(qa_stream *s, size_t n,
                       const float *g,            /* [n] */
                       const float *u,            /* [n] */
                       const float *dout,         /* [n] */
                       float *dg,                 /* [n] overwritten (may alias dout) */
                       float *du);                /* [n] overwritten */

    /* ---- frozen linear: y = x Wᵀ + b ----------------------------------------------------- */
    void (*linear_fwd)(qa_stream *s, int N, int K, int M, float beta,
                       const float *x,            /* [N, K] */
                       qa_weight W,               /* [M, K] BF16, F32 or NF4 */
                       qa_weight bias,            /* [M] BF16 or F32, or data NULL */
                       float *y);                 /* [N, M], y = beta*y + x Wᵀ + b */
    /* dx = beta*dx + dy W (W frozen: no dW) */
    void (*linear_bwd)(qa_stream *s, int N, int K, int M, float beta,
                       const float *dy,           /* [N, M] */
                       qa_weight W,               /* [M, K] BF16, F32 or NF4 */
                       float *dx);                /* [N, K] dx = beta*dx + dy W */

    /* ---- LoRA: y += scale * (drop(x) Aᵀ) Bᵀ ---------------------------------------------- *
     * Dropout (p > 0) keeps x[n,k] with probability 1-p and scales it by 1/(1-p); the mask *
     * is a pure function of (key, n, k) (counter-based), so backward recomputes it.        */
    void (*lora_fwd)(qa_stream *s, int N, int K, int M, int r, float scale, float p, uint64_t key,
                     const float *x,              /* [N, K] module input */
                     const float *A,              /* [r, K] lora_A */
                     const float *Bm,             /* [M, r] lora_B */
                     float *xa,                   /* [N, r] overwritten: drop(x) Aᵀ (unscaled), for lora_bwd */
                     float *y);                   /* [N, M] accumulated into (y += ...) */
    void (*lora_bwd)(qa_stream *s, int N, int K, int M, int r, float scale, float p, uint64_t key,
                     const float *x,              /* [N, K] module input */
                     const float *A,              /* [r, K] */
                     const float *Bm,             /* [M, r] */
                     const float *xa,             /* [N, r] from lora_fwd */
                     const float *dy,             /* [N, M] */
                     float *dA,                   /* [r, K] accumulated into */
                     float *dB,                   /* [M, r] accumulated into */
                     float *dx);                  /* [N, K] accumulated into, or NULL */

    /* ---- cross-entropy over the rows given (the caller gathers labelled positions) ------ */
    void (*cross_entropy_fwd)(qa_stream *s, int M, int V,
                              const float *logits,   /* [M, V] */
                              const int32_t *target, /* [M] in [0, V) */
                              float *loss,           /* [M] -log softmax(logits)[target] */
                              float *lse);           /* [M] saved log-sum-exp */
    /* dlogits = scale * (softmax(logits) - onehot(target)); dlogits may alias logits */
    void (*cross_entropy_bwd)(qa_stream *s, int M, int V, float scale,
                              const float *logits,   /* [M, V] */
                              const int32_t *target, /* [M] */
                              const float *lse,      /* [M] */
                              float *dlogits);       /* [M, V] */

    /* ---- AdamW, torch semantics (decoupled weight decay, bias correction) --------------- *
     * p *= 1 - lr*wd; m += (1-b1) (g - m) (torch's lerp); v = b2 v + (1-b2) g²;             *
     * p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)                                  */
    void (*adamw_step)(qa_stream *s, size_t n, float lr, float beta1, float beta2, float eps,
                       float wd, int64_t step,    /* step t >= 1 (after increment) */
                       float *p,                  /* [n] parameters */
                       const float *g,            /* [n] gradients */
                       float *m,                  /* [n] first moment */
                       float *v);                 /* [n] second moment */

    /* ---- the LoRA state's optimizer step on its flat blocks (model/lora.c: qa_lora_step) ---- */
    /* out[0] = sum of x[i]^2 accumulated in double in a fixed order (the same value on every call with
     * the same x; CPU: i ascending); non-finite when any x[i] is. out is backend memory. */
    void (*sumsq)(qa_stream *s, size_t n,
                  const float *x,                 /* [n] */
                  double *out);                   /* [1] backend memory */
    /* x[i] = (float)(x[i] * alpha), the product in double (gradient clipping) */
    void (*scale)(qa_stream *s, size_t n, double alpha,
                  float *x);                      /* [n] in place */

    /* ---- inference only (appended; a backend may leave these NULL) ----------------------- */
    /* Attention of suffix rows over a shared cached prefix + their own keys (see
     * qa_attn_prefix_desc). NULL: the evaluation runs without a prefix cache (every prompt in full
     * through attention_fwd) and qa_model_infer refuses a row with ctx > 0. */
    void (*attention_prefix_fwd)(qa_stream *s,
                                 const qa_attn_prefix_desc *d, /* host; its ctx [B] backend memory */
                                 const float *q,   /* [B, T, H, hd]  (after RoPE) */
                                 const float *kc,  /* [Tc, Hk, hd] cached keys (after RoPE), shared */
                                 const float *vc,  /* [Tc, Hk, hd] cached values */
                                 const float *k,   /* [B, T, Hk, hd] the rows' own keys (after RoPE) */
                                 const float *v,   /* [B, T, Hk, hd] */
                                 float *o);        /* [B, T, H, hd] */

    /* ---- fused forms (appended; a backend may leave these NULL: callers then use the ops above;
     *      NULL on cuda-fp32, and attention_rows_fwd on cuda) ------------------------------------ */
    /* Several frozen linears of one input in one pass (q,k,v; gate,up): y_i = x W_iᵀ + b_i, i < n,
     * 1 <= n <= 4. The arrays M, W, bias and y are host memory; what W[i].data, bias[i].data and y[i]
     * point to is backend memory. */
    void (*linear_multi_fwd)(qa_stream *s, int N, int K, int n,
                             const float *x,        /* [N, K] */
                             const int *M,          /* [n] host: output sizes M_i */
                             const qa_weight *W,    /* [n] host: each [M_i, K] BF16, F32 or NF4 */
                             const qa_weight *bias, /* [n] host: each [M_i] or data NULL */
                             float *const *y);      /* [n] host: each [N, M_i], overwritten */
    /* Attention of R single queries (inference): query r is token qrow[r] = b*T + t of the batch and sees
     * the keys of row b that attention_fwd would let token t see (d: causal, window, key_mask, segment);
     * o[r] is bitwise the row attention_fwd computes for that token. */
    void (*attention_rows_fwd)(qa_stream *s,
                               const qa_attn_desc *d, /* host; B, T and the masks of the whole batch */
                               int R,
                               const int32_t *qrow,  /* [R] backend memory: flat b*T + t */
                               const float *q,       /* [R, H, hd] (after RoPE) */
                               const float *k,       /* [B, T, Hk, hd] (after RoPE) */
                               const float *v,       /* [B, T, Hk, hd] */
                               float *o);            /* [R, H, hd] */
    /* y = beta*y + (silu(g) * u) Wᵀ + b: swiglu_fwd then linear_fwd, without the SwiGLU output in memory */
    void (*swiglu_linear_fwd)(qa_stream *s, int N, int K, int M, float beta,
                              const float *g,       /* [N, K] gate_proj output */
                              const float *u,       /* [N, K] up_proj output */
                              qa_weight W,          /* [M, K] BF16, F32 or NF4 */
                              qa_weight bias,       /* [M] or data NULL */
                              float *y);            /* [N, M] y = beta*y + ... */
} qa_ops;

/* The CPU backend (always available). */
const qa_ops *qa_ops_cpu(void);
/* The emulated device (kernels/emu): the CPU kernels behind a device's discipline (host_memory 0, memory
 * inaccessible to the host outside ops, every op pointer checked to be device memory). Tests and CI. */
const qa_ops *qa_ops_emu(void);
/* A backend by name: "cpu", "cuda", "cuda-fp32" (the CUDA kernels with fp32 GEMMs and attention: the
 * verification mode) or "emu" (NULL + error when not compiled in / no device). */
const qa_ops *qa_ops_get(const char *name, qa_err *e);
/* The backend for a device as users name it (model.device, --device): "cpu", "cuda", "cuda-fp32", "emu", or
 * "auto" (cuda when this build has it and a GPU is usable, else cpu), with device `ordinal` (a rank's node-local index)
 * selected where the backend has several. desc (may be NULL) gets a line for logs, e.g. "cuda (GPU 1 of 4:
 * NVIDIA H200, 139.8 GiB)". NULL + error naming the cause and what to change. */
const qa_ops *qa_ops_open(const char *device, int ordinal, char *desc, size_t desc_n, qa_err *e);

/* Counter-based dropout mask shared by all backends: 1 if element (n,k) of call `key` is
 * kept at drop probability p. Pure function; identical on every backend (QA_HD: also compiled
 * as device code by nvcc, kernels/cuda). */
#if defined(__CUDACC__)
#define QA_HD __host__ __device__
#else
#define QA_HD
#endif
static inline QA_HD uint64_t qa_ops_hash64(uint64_t z) { return qa_mix64(z + QA_SPLITMIX_GAMMA); }
static inline QA_HD int qa_dropout_keep(uint64_t key, uint64_t n, uint64_t k, float p) {
    uint64_t h = qa_ops_hash64(key ^ qa_ops_hash64((n << 32) ^ k));
    return (float)((h >> 40) * (1.0 / 16777216.0)) >= p;
}
#endif
