/* cublas.cpp — the CUDA simulator's cuBLAS: the calls kernels/cuda and dist/ make, computed on the CPU.
 *
 * Semantics as cuBLAS documents them:
 *   - column-major; op(X) = X, Xᵀ (CUBLAS_OP_T; CUBLAS_OP_C is Xᵀ for real types); C = α op(A) op(B) + β C,
 *     C not read when β == 0, A and B not read when α == 0 or k == 0;
 *   - argument checks in cuBLAS's order: a destroyed or NULL handle → CUBLAS_STATUS_NOT_INITIALIZED; an
 *     invalid op, m/n/k/batchCount < 0, lda < max(1, rows of A as stored), ldb likewise, ldc < max(1, m), an
 *     unknown compute type or algorithm, a NULL α/β → CUBLAS_STATUS_INVALID_VALUE; a type combination
 *     cublasGemmEx does not support → CUBLAS_STATUS_NOT_SUPPORTED;
 *   - data types 32F, 64F, 16BF, 16F; accumulation in the compute type (fp32 for CUBLAS_COMPUTE_32F*), each
 *     element's sum taken in k order; inputs rounded to TF32 (nearest, ties away) under
 *     CUBLAS_COMPUTE_32F_FAST_TF32 or CUBLAS_TF32_TENSOR_OP_MATH, to bf16 / fp16 under _FAST_16BF / _FAST_16F;
 *     the result rounded once to C's type;
 *   - pointers: what the GPU would dereference must be device memory covering the whole operand
 *     (ld x columns, and every entry of a batched call's pointer arrays): otherwise an illegal-address fault,
 *     sticky, as the GPU reports it at the next synchronization (the call itself returns success, as the
 *     asynchronous cuBLAS call does).
 * Work runs at once; the workspace is only checked (256-byte alignment). */
#include "sim_internal.h"

#include <cublas_v2.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <vector>

using namespace qasim;

struct cublasContext {
    cudaStream_t stream;
    void *ws;
    size_t ws_bytes;
    cublasMath_t math;
    cublasPointerMode_t pmode;
    cublasAtomicsMode_t atomics;
};
static std::mutex g_hmu;
static std::set<cublasHandle_t> g_handles;
static bool handle_ok(cublasHandle_t h) {
    std::lock_guard<std::mutex> lk(g_hmu);
    return h && g_handles.count(h);
}

const char *cublasGetStatusName(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}
const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "error detected trying to check the license";
    }
    return "unknown error";
}

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
        (void)cudaGetLastError();
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    cublasHandle_t h = new cublasContext{0, NULL, 0, CUBLAS_DEFAULT_MATH, CUBLAS_POINTER_MODE_HOST,
                                         CUBLAS_ATOMICS_NOT_ALLOWED};
    std::lock_guard<std::mutex> lk(g_hmu);
    g_handles.insert(h);
    *handle = h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    std::lock_guard<std::mutex> lk(g_hmu);
    if (!h || !g_handles.erase(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetVersion(cublasHandle_t h, int *version) {
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!version) return CUBLAS_STATUS_INVALID_VALUE;
    *version = 130000;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetStream(cublasHandle_t h, cudaStream_t *s) {
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!s) return CUBLAS_STATUS_INVALID_VALUE;
    *s = h->stream;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes) {
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if ((bytes && !ws) || ((uintptr_t)ws % 256) != 0) return CUBLAS_STATUS_INVALID_VALUE;
    if (bytes && !device_range(ws, bytes)) {
        char d[256];
        describe_ptr(ws, d, sizeof d);
        note("cublasSetWorkspace: %s + %zu bytes is not device memory", d, bytes);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    h->ws = ws;
    h->ws_bytes = bytes;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if ((mode & ~CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION) > CUBLAS_TF32_TENSOR_OP_MATH)
        return CUBLAS_STATUS_INVALID_VALUE;
    h->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetMathMode(cublasHandle_t h, cublasMath_t *mode) {
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
    *mode = h->math;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetPointerMode(cublasHandle_t h, cublasPointerMode_t mode) {
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE) return CUBLAS_STATUS_INVALID_VALUE;
    h->pmode = mode;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetPointerMode(cublasHandle_t h, cublasPointerMode_t *mode) {
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
    *mode = h->pmode;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetAtomicsMode(cublasHandle_t h, cublasAtomicsMode_t mode) {
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode != CUBLAS_ATOMICS_NOT_ALLOWED && mode != CUBLAS_ATOMICS_ALLOWED) return CUBLAS_STATUS_INVALID_VALUE;
    h->atomics = mode;
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- element types -------------------------------------------------------------------------------- */
static float h2f(uint16_t h) {
    uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ffu, u;
    if (e == 0x1f) u = s | 0x7f800000u | (m << 13);
    else if (e) u = s | ((e + 112) << 23) | (m << 13);
    else if (!m) u = s;
    else { /* subnormal */
        e = 113;
        while (!(m & 0x400u)) { m <<= 1; e--; }
        u = s | (e << 23) | ((m & 0x3ffu) << 13);
    }
    return bits_f32(u);
}
static uint16_t f2h(float f) { /* round to nearest even */
    uint32_t x = f32_bits(f), sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) return 0x7fffu;
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520: infinity */
    if (x < 0x33000000u) return (uint16_t)sign;             /* <= 2^-25: zero */
    int e = (int)(x >> 23) - 127;
    uint32_t r, rem, half;
    if (e < -14) {
        uint32_t m = (x & 0x7fffffu) | 0x800000u, sh = (uint32_t)(-1 - e);
        r = m >> sh;
        rem = m & ((1u << sh) - 1);
        half = 1u << (sh - 1);
    } else {
        r = ((uint32_t)(e + 15) << 10) | ((x >> 13) & 0x3ffu);
        rem = x & 0x1fffu;
        half = 0x1000u;
    }
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}
static float round_tf32(float f) { /* 10 explicit mantissa bits, nearest, ties away */
    uint32_t x = f32_bits(f);
    if ((x & 0x7f800000u) == 0x7f800000u) return f;
    x = (x + 0x1000u) & ~0x1fffu;
    return bits_f32(x);
}
static size_t esize(cudaDataType t) {
    switch (t) {
    case CUDA_R_32F: return 4;
    case CUDA_R_64F: return 8;
    case CUDA_R_16BF: case CUDA_R_16F: return 2;
    default: return 0;
    }
}
enum { IN_EXACT, IN_TF32, IN_BF16, IN_F16 };
template <class T>
static inline T load(const void *p, cudaDataType t, size_t i, int round) {
    T v;
    switch (t) {
    case CUDA_R_32F: {
        float f = ((const float *)p)[i];
        if (round == IN_TF32) f = round_tf32(f);
        else if (round == IN_BF16) f = (float)__float2bfloat16_rn(f);
        else if (round == IN_F16) f = h2f(f2h(f));
        v = (T)f;
        break;
    }
    case CUDA_R_64F: v = (T)((const double *)p)[i]; break;
    case CUDA_R_16BF: v = (T)bits_f32((uint32_t)((const uint16_t *)p)[i] << 16); break;
    case CUDA_R_16F: v = (T)h2f(((const uint16_t *)p)[i]); break;
    default: v = 0; break;
    }
    return v;
}
template <class T>
static inline void store(void *p, cudaDataType t, size_t i, T v) {
    switch (t) {
    case CUDA_R_32F: ((float *)p)[i] = (float)v; break;
    case CUDA_R_64F: ((double *)p)[i] = (double)v; break;
    case CUDA_R_16BF:
        ((uint16_t *)p)[i] = sizeof(T) == 8 ? __double2bfloat16((double)v).__x : f32_to_bf16((float)v, 0);
        break;
    case CUDA_R_16F: ((uint16_t *)p)[i] = f2h((float)v); break;
    default: break;
    }
}

/* ---- GEMM ----------------------------------------------------------------------------------------- */
struct operand {
    const char *name;
    cudaDataType type;
    int ld, rows, cols; /* as stored (column-major) */
};
/* a fault for an operand the GPU cannot read or write in full; false after reporting */
static bool check_operand(const char *fn, int batch, const operand &o, const void *p) {
    size_t bytes = ((size_t)o.ld * (size_t)(o.cols - 1) + (size_t)o.rows) * esize(o.type);
    if (p && device_range(p, bytes)) return true;
    char d[256], b[32] = "";
    describe_ptr(p, d, sizeof d);
    if (batch >= 0) snprintf(b, sizeof b, " of batch entry %d", batch);
    device_fault(cudaErrorIllegalAddress,
                 "%s: %s%s = %s: %d x %d elements (ld %d, %zu bytes) are not all inside one device allocation", fn,
                 o.name, b, d, o.rows, o.cols, o.ld, bytes);
    return false;
}

template <class T>
static void gemm_one(int ta, int tb, int m, int n, int k, T alpha, const void *A, cudaDataType at, int lda,
                     const void *B, cudaDataType bt, int ldb, T beta, void *C, cudaDataType ct, int ldc, int round) {
    if (alpha == (T)0 || k == 0) {
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                size_t c = (size_t)i + (size_t)j * ldc;
                store<T>(C, ct, c, beta == (T)0 ? (T)0 : beta * load<T>(C, ct, c, IN_EXACT));
            }
        return;
    }
    const int MB = 128, KB = 256;
    std::vector<T> acc((size_t)(m < MB ? m : MB) * n), ap((size_t)KB * MB), bcol((size_t)KB * 4);
    for (int i0 = 0; i0 < m; i0 += MB) {
        const int mb = m - i0 < MB ? m - i0 : MB;
        std::fill(acc.begin(), acc.begin() + (size_t)mb * n, (T)0);
        for (int l0 = 0; l0 < k; l0 += KB) {
            const int kb = k - l0 < KB ? k - l0 : KB;
            /* op(A)[i0:i0+mb, l0:l0+kb], column l contiguous */
            for (int l = 0; l < kb; l++)
                for (int i = 0; i < mb; i++) {
                    size_t idx = ta ? (size_t)(l0 + l) + (size_t)(i0 + i) * lda : (size_t)(i0 + i) + (size_t)(l0 + l) * lda;
                    ap[(size_t)l * mb + i] = load<T>(A, at, idx, round);
                }
            /* four columns of C at a time (each element still summed in k order) */
            for (int j0 = 0; j0 < n; j0 += 4) {
                const int nj = n - j0 < 4 ? n - j0 : 4;
                for (int jj = 0; jj < 4; jj++)
                    for (int l = 0; l < kb; l++) {
                        const int j = j0 + (jj < nj ? jj : 0);
                        size_t idx = tb ? (size_t)j + (size_t)(l0 + l) * ldb : (size_t)(l0 + l) + (size_t)j * ldb;
                        bcol[(size_t)l * 4 + jj] = load<T>(B, bt, idx, round);
                    }
                if (nj == 4) {
                    T *__restrict__ c0 = &acc[(size_t)j0 * mb], *__restrict__ c1 = c0 + mb, *__restrict__ c2 = c1 + mb,
                                     *__restrict__ c3 = c2 + mb;
                    for (int l = 0; l < kb; l++) {
                        const T b0 = bcol[(size_t)l * 4], b1 = bcol[(size_t)l * 4 + 1], b2 = bcol[(size_t)l * 4 + 2],
                                b3 = bcol[(size_t)l * 4 + 3];
                        const T *__restrict__ a = &ap[(size_t)l * mb];
                        for (int i = 0; i < mb; i++) {
                            const T x = a[i];
                            c0[i] += x * b0;
                            c1[i] += x * b1;
                            c2[i] += x * b2;
                            c3[i] += x * b3;
                        }
                    }
                } else {
                    for (int jj = 0; jj < nj; jj++) {
                        T *__restrict__ c = &acc[(size_t)(j0 + jj) * mb];
                        for (int l = 0; l < kb; l++) {
                            const T b = bcol[(size_t)l * 4 + jj];
                            const T *__restrict__ a = &ap[(size_t)l * mb];
                            for (int i = 0; i < mb; i++) c[i] += a[i] * b;
                        }
                    }
                }
            }
        }
        for (int j = 0; j < n; j++)
            for (int i = 0; i < mb; i++) {
                size_t c = (size_t)(i0 + i) + (size_t)j * ldc;
                T v = alpha * acc[(size_t)j * mb + i];
                if (beta != (T)0) v += beta * load<T>(C, ct, c, IN_EXACT);
                store<T>(C, ct, c, v);
            }
    }
}

/* how the inputs are rounded, and the accumulator: 4 fp32, 8 fp64; 0 = unsupported combination */
static int plan_types(cublasComputeType_t ctype, cublasMath_t math, cudaDataType at, cudaDataType bt,
                      cudaDataType ct, int *round) {
    *round = IN_EXACT;
    switch (ctype) {
    case CUBLAS_COMPUTE_32F:
    case CUBLAS_COMPUTE_32F_PEDANTIC:
        if (at != bt) return 0;
        if (at == CUDA_R_32F && ct == CUDA_R_32F) {
            if (ctype == CUBLAS_COMPUTE_32F && (math & 0xf) == CUBLAS_TF32_TENSOR_OP_MATH) *round = IN_TF32;
            return 4;
        }
        if ((at == CUDA_R_16BF && (ct == CUDA_R_16BF || ct == CUDA_R_32F)) ||
            (at == CUDA_R_16F && (ct == CUDA_R_16F || ct == CUDA_R_32F)))
            return 4;
        return 0;
    case CUBLAS_COMPUTE_32F_FAST_TF32:
    case CUBLAS_COMPUTE_32F_FAST_16BF:
    case CUBLAS_COMPUTE_32F_FAST_16F:
        if (at != CUDA_R_32F || bt != CUDA_R_32F || ct != CUDA_R_32F) return 0;
        *round = ctype == CUBLAS_COMPUTE_32F_FAST_TF32 ? IN_TF32 : ctype == CUBLAS_COMPUTE_32F_FAST_16BF ? IN_BF16 : IN_F16;
        return 4;
    case CUBLAS_COMPUTE_64F:
    case CUBLAS_COMPUTE_64F_PEDANTIC:
        return at == CUDA_R_64F && bt == CUDA_R_64F && ct == CUDA_R_64F ? 8 : 0;
    default:
        return 0; /* 16F and 32I accumulation: not simulated */
    }
}
static bool compute_type_known(int c) {
    return c == CUBLAS_COMPUTE_16F || c == CUBLAS_COMPUTE_16F_PEDANTIC || c == CUBLAS_COMPUTE_32F ||
           c == CUBLAS_COMPUTE_32F_PEDANTIC || c == CUBLAS_COMPUTE_32F_FAST_16F || c == CUBLAS_COMPUTE_32F_FAST_16BF ||
           c == CUBLAS_COMPUTE_32F_FAST_TF32 || c == CUBLAS_COMPUTE_64F || c == CUBLAS_COMPUTE_64F_PEDANTIC ||
           c == CUBLAS_COMPUTE_32I || c == CUBLAS_COMPUTE_32I_PEDANTIC;
}
static bool algo_known(int a) { return (a >= -1 && a <= 23) || (a >= 99 && a <= 115); }
static bool op_ok(int op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; }

/* read α or β of the compute type from host or device memory */
template <class T>
static bool scalar(const char *fn, const char *nm, cublasHandle_t h, const void *p, T *out) {
    if (h->pmode == CUBLAS_POINTER_MODE_DEVICE && !device_range(p, sizeof(T))) {
        char d[256];
        describe_ptr(p, d, sizeof d);
        device_fault(cudaErrorIllegalAddress, "%s: %s = %s under CUBLAS_POINTER_MODE_DEVICE", fn, nm, d);
        return false;
    }
    *out = *(const T *)p;
    return true;
}

enum { BATCH_NONE, BATCH_STRIDED, BATCH_PTRS };
static cublasStatus_t gemm(const char *fn, cublasHandle_t h, cublasOperation_t transa, cublasOperation_t transb,
                           int m, int n, int k, const void *alpha, const void *A, cudaDataType at, int lda,
                           long long sa, const void *B, cudaDataType bt, int ldb, long long sb, const void *beta,
                           void *C, cudaDataType ct, int ldc, long long sc, int batch, int mode,
                           cublasComputeType_t ctype, int algo) {
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    const int ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
    const int arows = ta ? k : m, brows = tb ? n : k;
    if (!op_ok(transa) || !op_ok(transb) || m < 0 || n < 0 || k < 0 || batch < 0 || lda < (arows > 1 ? arows : 1) ||
        ldb < (brows > 1 ? brows : 1) || ldc < (m > 1 ? m : 1) || !compute_type_known(ctype) || !algo_known(algo) ||
        !alpha || !beta) {
        if (getenv("QASIM_VERBOSE"))
            note("%s: CUBLAS_STATUS_INVALID_VALUE (op %d/%d m %d n %d k %d lda %d ldb %d ldc %d batch %d)", fn,
                 transa, transb, m, n, k, lda, ldb, ldc, batch);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    int round;
    const int acc = plan_types(ctype, h->math, at, bt, ct, &round);
    if (!acc) {
        note("%s: types A %d, B %d, C %d with compute type %d: CUBLAS_STATUS_NOT_SUPPORTED", fn, at, bt, ct, ctype);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
    if (sticky() != cudaSuccess || !stream_valid(h->stream)) {
        if (sticky() == cudaSuccess) note("%s: the handle's stream %p was destroyed", fn, (void *)h->stream);
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    double al, be;
    if (acc == 4) {
        float a1, b1;
        if (!scalar(fn, "alpha", h, alpha, &a1) || !scalar(fn, "beta", h, beta, &b1)) return CUBLAS_STATUS_SUCCESS;
        al = a1;
        be = b1;
    } else if (!scalar(fn, "alpha", h, alpha, &al) || !scalar(fn, "beta", h, beta, &be)) {
        return CUBLAS_STATUS_SUCCESS;
    }
    const bool reads_ab = al != 0 && k > 0;
    const operand oa{"A", at, lda, arows, ta ? m : k}, ob{"B", bt, ldb, brows, tb ? k : n}, oc{"C", ct, ldc, m, n};
    if (mode == BATCH_PTRS) {
        const void *arrs[3] = {A, B, C};
        const char *nm[3] = {"Aarray", "Barray", "Carray"};
        for (int i = 0; i < 3; i++)
            if (!device_range(arrs[i], sizeof(void *) * (size_t)batch)) {
                char d[256];
                describe_ptr(arrs[i], d, sizeof d);
                device_fault(cudaErrorIllegalAddress, "%s: %s = %s: %d pointers are not device memory", fn, nm[i], d,
                             batch);
                return CUBLAS_STATUS_SUCCESS;
            }
    }
    set_fault_context(fn);
    for (int b = 0; b < batch; b++) {
        const void *pa, *pb;
        void *pc;
        if (mode == BATCH_PTRS) {
            pa = ((const void *const *)A)[b];
            pb = ((const void *const *)B)[b];
            pc = ((void *const *)C)[b];
        } else {
            pa = (const char *)A + (size_t)(b * sa) * esize(at);
            pb = (const char *)B + (size_t)(b * sb) * esize(bt);
            pc = (char *)C + (size_t)(b * sc) * esize(ct);
        }
        const int bi = mode == BATCH_NONE ? -1 : b;
        if ((reads_ab && (!check_operand(fn, bi, oa, pa) || !check_operand(fn, bi, ob, pb))) ||
            !check_operand(fn, bi, oc, pc)) {
            set_fault_context(NULL);
            return CUBLAS_STATUS_SUCCESS;
        }
        if (acc == 4)
            gemm_one<float>(ta, tb, m, n, k, (float)al, pa, at, lda, pb, bt, ldb, (float)be, pc, ct, ldc, round);
        else
            gemm_one<double>(ta, tb, m, n, k, al, pa, at, lda, pb, bt, ldb, be, pc, ct, ldc, round);
    }
    set_fault_context(NULL);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt,
                            int ldb, const void *beta, void *C, cudaDataType ct, int ldc, cublasComputeType_t ctype,
                            cublasGemmAlgo_t algo) {
    return gemm("cublasGemmEx", h, transa, transb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct, ldc, 0,
                1, BATCH_NONE, ctype, algo);
}
cublasStatus_t cublasGemmBatchedEx(cublasHandle_t h, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                                   int k, const void *alpha, const void *const Aarray[], cudaDataType at, int lda,
                                   const void *const Barray[], cudaDataType bt, int ldb, const void *beta,
                                   void *const Carray[], cudaDataType ct, int ldc, int batch,
                                   cublasComputeType_t ctype, cublasGemmAlgo_t algo) {
    return gemm("cublasGemmBatchedEx", h, transa, transb, m, n, k, alpha, Aarray, at, lda, 0, Barray, bt, ldb, 0, beta,
                (void *)Carray, ct, ldc, 0, batch, BATCH_PTRS, ctype, algo);
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t transa, cublasOperation_t transb, int m,
                                          int n, int k, const void *alpha, const void *A, cudaDataType at, int lda,
                                          long long sa, const void *B, cudaDataType bt, int ldb, long long sb,
                                          const void *beta, void *C, cudaDataType ct, int ldc, long long sc, int batch,
                                          cublasComputeType_t ctype, cublasGemmAlgo_t algo) {
    return gemm("cublasGemmStridedBatchedEx", h, transa, transb, m, n, k, alpha, A, at, lda, sa, B, bt, ldb, sb, beta,
                C, ct, ldc, sc, batch, BATCH_STRIDED, ctype, algo);
}
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc) {
    return gemm("cublasSgemm", h, transa, transb, m, n, k, alpha, A, CUDA_R_32F, lda, 0, B, CUDA_R_32F, ldb, 0, beta, C,
                CUDA_R_32F, ldc, 0, 1, BATCH_NONE, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t transa, cublasOperation_t transb, int m,
                                         int n, int k, const float *alpha, const float *A, int lda, long long sa,
                                         const float *B, int ldb, long long sb, const float *beta, float *C, int ldc,
                                         long long sc, int batch) {
    return gemm("cublasSgemmStridedBatched", h, transa, transb, m, n, k, alpha, A, CUDA_R_32F, lda, sa, B, CUDA_R_32F,
                ldb, sb, beta, C, CUDA_R_32F, ldc, sc, batch, BATCH_STRIDED, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}
cublasStatus_t cublasSgemmBatched(cublasHandle_t h, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                                  int k, const float *alpha, const float *const Aarray[], int lda,
                                  const float *const Barray[], int ldb, const float *beta, float *const Carray[],
                                  int ldc, int batch) {
    return gemm("cublasSgemmBatched", h, transa, transb, m, n, k, alpha, Aarray, CUDA_R_32F, lda, 0, Barray,
                CUDA_R_32F, ldb, 0, beta, (void *)Carray, CUDA_R_32F, ldc, 0, batch, BATCH_PTRS, CUBLAS_COMPUTE_32F,
                CUBLAS_GEMM_DEFAULT);
}
cublasStatus_t cublasDgemm(cublasHandle_t h, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
                           const double *alpha, const double *A, int lda, const double *B, int ldb,
                           const double *beta, double *C, int ldc) {
    return gemm("cublasDgemm", h, transa, transb, m, n, k, alpha, A, CUDA_R_64F, lda, 0, B, CUDA_R_64F, ldb, 0, beta,
                C, CUDA_R_64F, ldc, 0, 1, BATCH_NONE, CUBLAS_COMPUTE_64F, CUBLAS_GEMM_DEFAULT);
}

/* ---- level 1 -------------------------------------------------------------------------------------- */
/* a strided vector of n elements: every element inside one device allocation */
static bool check_vec(const char *fn, const char *nm, const void *p, int n, int inc, cudaDataType t) {
    long long span = (long long)(n - 1) * (inc < 0 ? -(long long)inc : inc) + 1;
    if (p && device_range(p, (size_t)span * esize(t))) return true;
    char d[256];
    describe_ptr(p, d, sizeof d);
    device_fault(cudaErrorIllegalAddress, "%s: %s = %s: %d elements at stride %d are not all inside one device "
                 "allocation", fn, nm, d, n, inc);
    return false;
}
static cublasStatus_t axpy(const char *fn, cublasHandle_t h, int n, const void *alpha, cudaDataType alt,
                           const void *x, cudaDataType xt, int incx, void *y, cudaDataType yt, int incy,
                           cudaDataType exec) {
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!alpha) return CUBLAS_STATUS_INVALID_VALUE;
    bool ok = (alt == CUDA_R_32F && exec == CUDA_R_32F && xt == yt &&
               (xt == CUDA_R_32F || xt == CUDA_R_16BF || xt == CUDA_R_16F)) ||
              (alt == CUDA_R_64F && exec == CUDA_R_64F && xt == CUDA_R_64F && yt == CUDA_R_64F);
    if (!ok) {
        note("%s: alpha %d, x %d, y %d, execution %d: CUBLAS_STATUS_NOT_SUPPORTED", fn, alt, xt, yt, exec);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (n <= 0) return CUBLAS_STATUS_SUCCESS;
    if (sticky() != cudaSuccess || !stream_valid(h->stream)) return CUBLAS_STATUS_EXECUTION_FAILED;
    double a;
    if (exec == CUDA_R_32F) {
        float f;
        if (!scalar(fn, "alpha", h, alpha, &f)) return CUBLAS_STATUS_SUCCESS;
        a = f;
    } else if (!scalar(fn, "alpha", h, alpha, &a)) {
        return CUBLAS_STATUS_SUCCESS;
    }
    if (!check_vec(fn, "x", x, n, incx, xt) || !check_vec(fn, "y", y, n, incy, yt)) return CUBLAS_STATUS_SUCCESS;
    long long ix = incx < 0 ? (long long)(1 - n) * incx : 0, iy = incy < 0 ? (long long)(1 - n) * incy : 0;
    for (int i = 0; i < n; i++, ix += incx, iy += incy) {
        if (exec == CUDA_R_32F)
            store<float>(y, yt, (size_t)iy, (float)a * load<float>(x, xt, (size_t)ix, IN_EXACT) +
                                                load<float>(y, yt, (size_t)iy, IN_EXACT));
        else
            store<double>(y, yt, (size_t)iy, a * load<double>(x, xt, (size_t)ix, IN_EXACT) +
                                                 load<double>(y, yt, (size_t)iy, IN_EXACT));
    }
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasAxpyEx(cublasHandle_t h, int n, const void *alpha, cudaDataType alt, const void *x,
                            cudaDataType xt, int incx, void *y, cudaDataType yt, int incy, cudaDataType exec) {
    return axpy("cublasAxpyEx", h, n, alpha, alt, x, xt, incx, y, yt, incy, exec);
}
cublasStatus_t cublasSaxpy(cublasHandle_t h, int n, const float *alpha, const float *x, int incx, float *y, int incy) {
    return axpy("cublasSaxpy", h, n, alpha, CUDA_R_32F, x, CUDA_R_32F, incx, y, CUDA_R_32F, incy, CUDA_R_32F);
}
cublasStatus_t cublasSscal(cublasHandle_t h, int n, const float *alpha, float *x, int incx) {
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!alpha) return CUBLAS_STATUS_INVALID_VALUE;
    if (n <= 0 || incx <= 0) return CUBLAS_STATUS_SUCCESS;
    if (sticky() != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
    float a;
    if (!scalar("cublasSscal", "alpha", h, alpha, &a) || !check_vec("cublasSscal", "x", x, n, incx, CUDA_R_32F))
        return CUBLAS_STATUS_SUCCESS;
    for (int i = 0; i < n; i++) x[(size_t)i * incx] *= a;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasScopy(cublasHandle_t h, int n, const float *x, int incx, float *y, int incy) {
    if (!handle_ok(h)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (n <= 0) return CUBLAS_STATUS_SUCCESS;
    if (sticky() != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
    if (!check_vec("cublasScopy", "x", x, n, incx, CUDA_R_32F) || !check_vec("cublasScopy", "y", y, n, incy, CUDA_R_32F))
        return CUBLAS_STATUS_SUCCESS;
    long long ix = incx < 0 ? (long long)(1 - n) * incx : 0, iy = incy < 0 ? (long long)(1 - n) * incy : 0;
    for (int i = 0; i < n; i++, ix += incx, iy += incy) y[iy] = x[ix];
    return CUBLAS_STATUS_SUCCESS;
}
