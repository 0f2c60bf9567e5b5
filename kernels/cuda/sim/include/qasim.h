/* qasim.h — the CUDA simulator's view of CUDA for C++ code translated from .cu (kernels/cuda/sim).
 *
 * What a .cu file sees under nvcc, rebuilt for g++ on the host:
 *   - the runtime API subset qalign uses (memory, streams, events, devices, errors) on host memory;
 *   - the device language: __global__/__device__/__shared__, threadIdx/blockIdx/blockDim/gridDim, vector
 *     types, barriers (__syncthreads*), warp collectives (__shfl*_sync, __ballot_sync, ...), atomics, math
 *     and conversion intrinsics;
 *   - kernel launches: translate.py rewrites `k<<<g, b, shmem, stream>>>(args)` into
 *     `::qasim::launcher_for((k), "k", __FILE__, __LINE__, g, b, shmem, stream)(args)`, and function-scope
 *     `__shared__ T x[N];` into a reference to per-block storage (::qasim::shared_var).
 * runtime.cpp runs every block of a launch, one after another, and inside a block every thread as a fiber
 * that is switched only at barriers and warp collectives (real barrier and lockstep-collective semantics).
 * C++17 only: the rest of qalign never includes this. */
#ifndef QASIM_H
#define QASIM_H

#ifndef __cplusplus
#error "kernels/cuda/sim is C++: .cu sources are compiled through kernels/cuda/sim/translate.py"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tuple>
#include <type_traits>
#include <utility>

#define QALIGN_CUDA_SIM 1
#define CUDART_VERSION 13000
#define __CUDART_API_VERSION 13000

/* ---- the device language: qualifiers ----------------------------------------------------------- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __constant__
#define __managed__
#define __grid_constant__
/* function-scope __shared__ declarations are rewritten by translate.py; what is left (namespace scope)
 * becomes ordinary static storage */
#define __shared__ static

/* ---- vector types ------------------------------------------------------------------------------- */
#define QASIM_VEC1(T, N, A) struct alignas(A) N##1 { T x; }; \
    static inline N##1 make_##N##1(T x) { N##1 r; r.x = x; return r; }
#define QASIM_VEC2(T, N, A) struct alignas(A) N##2 { T x, y; }; \
    static inline N##2 make_##N##2(T x, T y) { N##2 r; r.x = x; r.y = y; return r; }
#define QASIM_VEC3(T, N) struct N##3 { T x, y, z; }; \
    static inline N##3 make_##N##3(T x, T y, T z) { N##3 r; r.x = x; r.y = y; r.z = z; return r; }
#define QASIM_VEC4(T, N, A) struct alignas(A) N##4 { T x, y, z, w; }; \
    static inline N##4 make_##N##4(T x, T y, T z, T w) { N##4 r; r.x = x; r.y = y; r.z = z; r.w = w; return r; }
#define QASIM_VECS(T, N, S) QASIM_VEC1(T, N, S) QASIM_VEC2(T, N, 2 * S) QASIM_VEC3(T, N) \
    QASIM_VEC4(T, N, (4 * S > 16 ? 16 : 4 * S))
QASIM_VECS(signed char, char, 1)
QASIM_VECS(unsigned char, uchar, 1)
QASIM_VECS(short, short, 2)
QASIM_VECS(unsigned short, ushort, 2)
QASIM_VECS(int, int, 4)
QASIM_VECS(unsigned int, uint, 4)
QASIM_VECS(long, long, 8)
QASIM_VECS(unsigned long, ulong, 8)
QASIM_VECS(long long, longlong, 8)
QASIM_VECS(unsigned long long, ulonglong, 8)
QASIM_VECS(float, float, 4)
QASIM_VECS(double, double, 8)
#undef QASIM_VEC1
#undef QASIM_VEC2
#undef QASIM_VEC3
#undef QASIM_VEC4
#undef QASIM_VECS

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

/* built-in variables: set by the scheduler before it switches to a thread (runtime.cpp) */
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
constexpr int warpSize = 32;

/* ---- runtime API types -------------------------------------------------------------------------- */
enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorCudartUnloading = 4,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidPitchValue = 12,
    cudaErrorInvalidSymbol = 13,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInsufficientDriver = 35,
    cudaErrorInvalidDeviceFunction = 98,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidKernelImage = 200,
    cudaErrorNoKernelImageForDevice = 209,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchTimeout = 702,
    cudaErrorAssert = 710,
    cudaErrorIllegalInstruction = 715,
    cudaErrorMisalignedAddress = 716,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorUnknown = 999
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4
};

enum cudaDataType_t {
    CUDA_R_16F = 2, CUDA_C_16F = 6, CUDA_R_16BF = 14, CUDA_C_16BF = 15,
    CUDA_R_32F = 0, CUDA_C_32F = 4, CUDA_R_64F = 1, CUDA_C_64F = 5,
    CUDA_R_4I = 16, CUDA_C_4I = 17, CUDA_R_4U = 18, CUDA_C_4U = 19,
    CUDA_R_8I = 3, CUDA_C_8I = 7, CUDA_R_8U = 8, CUDA_C_8U = 9,
    CUDA_R_16I = 20, CUDA_C_16I = 21, CUDA_R_16U = 22, CUDA_C_16U = 23,
    CUDA_R_32I = 10, CUDA_C_32I = 11, CUDA_R_32U = 12, CUDA_C_32U = 13,
    CUDA_R_64I = 24, CUDA_C_64I = 25, CUDA_R_64U = 26, CUDA_C_64U = 27,
    CUDA_R_8F_E4M3 = 28, CUDA_R_8F_E5M2 = 29
};
typedef enum cudaDataType_t cudaDataType;

struct CUstream_st;
struct CUevent_st;
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00
#define cudaHostRegisterDefault 0x00

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9
};
enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxBlockDimX = 2,
    cudaDevAttrMaxBlockDimY = 3,
    cudaDevAttrMaxBlockDimZ = 4,
    cudaDevAttrMaxGridDimX = 5,
    cudaDevAttrMaxGridDimY = 6,
    cudaDevAttrMaxGridDimZ = 7,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97
};
enum cudaMemoryType { cudaMemoryTypeUnregistered = 0, cudaMemoryTypeHost = 1, cudaMemoryTypeDevice = 2,
                      cudaMemoryTypeManaged = 3 };
struct cudaPointerAttributes {
    enum cudaMemoryType type;
    int device;
    void *devicePointer;
    void *hostPointer;
};

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    int regsPerBlock;
    int warpSize;
    size_t memPitch;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int clockRate;
    size_t totalConstMem;
    int major;
    int minor;
    size_t textureAlignment;
    int multiProcessorCount;
    int integrated;
    int canMapHostMemory;
    int concurrentKernels;
    int ECCEnabled;
    int pciBusID;
    int pciDeviceID;
    int pciDomainID;
    int asyncEngineCount;
    int unifiedAddressing;
    int memoryClockRate;
    int memoryBusWidth;
    int l2CacheSize;
    int maxThreadsPerMultiProcessor;
    size_t sharedMemPerMultiprocessor;
    int regsPerMultiprocessor;
    int managedMemory;
    int isMultiGpuBoard;
    int multiGpuBoardGroupID;
    size_t sharedMemPerBlockOptin;
    int maxBlocksPerMultiProcessor;
    int reservedSharedMemPerBlock;
};

/* ---- runtime API -------------------------------------------------------------------------------- */
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);

cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaDeviceReset(void);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);

cudaError_t cudaMalloc(void **ptr, size_t bytes);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMallocHost(void **ptr, size_t bytes);
cudaError_t cudaHostAlloc(void **ptr, size_t bytes, unsigned int flags);
cudaError_t cudaFreeHost(void *ptr);
cudaError_t cudaHostRegister(void *ptr, size_t bytes, unsigned int flags);
cudaError_t cudaHostUnregister(void *ptr);
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *attr, const void *ptr);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                            cudaStream_t stream = 0);
cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                         enum cudaMemcpyKind kind);
cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                              size_t height, enum cudaMemcpyKind kind, cudaStream_t stream = 0);
cudaError_t cudaMemset(void *dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream = 0);

cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags);
cudaError_t cudaStreamCreateWithPriority(cudaStream_t *s, unsigned int flags, int priority);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t ev, unsigned int flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t *ev);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *ev, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t ev);
cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t ev);
cudaError_t cudaEventQuery(cudaEvent_t ev);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);

/* ---- the simulator's own interface (runtime.cpp) -------------------------------------------------- */
namespace qasim {
struct launch_cfg {
    const void *fn;        /* the kernel (function attributes, launch bounds) */
    const char *name;      /* as written at the launch */
    const char *file;      /* launch site */
    int line;
    dim3 grid, block;
    size_t shmem;
    cudaStream_t stream;
};
/* run every block and thread of a launch; body(ctx) runs the kernel for the current thread */
void run_launch(const launch_cfg &c, void (*body)(void *), void *ctx);
cudaError_t func_set_attribute(const void *fn, int attr, int value);
struct launch_bounds_reg {
    launch_bounds_reg(const void *fn, const char *name, int max_threads, int min_blocks = 0, int max_cluster = 0);
};

template <class... P>
struct launcher {
    void (*k)(P...);
    launch_cfg c;
    template <class... A>
    void operator()(A &&...a) const {
        static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
        typedef std::tuple<typename std::decay<P>::type...> args_t;
        args_t args(std::forward<A>(a)...); /* converted as a kernel call converts them */
        struct ctx_t {
            void (*k)(P...);
            args_t *args;
        } ctx{k, &args};
        /* each thread gets its own copies of the by-value parameters (as on the GPU) */
        run_launch(c, [](void *p) { ctx_t *x = (ctx_t *)p; std::apply(x->k, *x->args); }, &ctx);
    }
};
template <class... P>
launcher<P...> launcher_for(void (*k)(P...), const char *name, const char *file, int line, dim3 grid, dim3 block,
                            size_t shmem = 0, cudaStream_t stream = 0) {
    launcher<P...> l;
    l.k = k;
    l.c = launch_cfg{(const void *)k, name, file, line, grid, block, shmem, stream};
    return l;
}

/* function-scope __shared__: the block's storage for the variable identified by key (poisoned when the
 * block starts: reading shared memory before writing it gives NaN / all-ones, not zeros) */
void *shared_var(const void *key, size_t bytes, size_t align);
/* extern __shared__ T x[]: the launch's dynamic shared memory of this block */
void *dynamic_shared(size_t align);

/* collectives of the threads of a block or a warp (runtime.cpp) */
enum { SYNC_PLAIN = 0, SYNC_COUNT, SYNC_AND, SYNC_OR };
enum { W_SYNC = 0, W_SHFL_IDX, W_SHFL_UP, W_SHFL_DOWN, W_SHFL_XOR, W_BALLOT, W_ALL, W_ANY, W_UNI, W_MATCH_ANY,
       W_MATCH_ALL, W_RED_ADD, W_RED_MIN, W_RED_MAX, W_RED_UMIN, W_RED_UMAX, W_RED_AND, W_RED_OR, W_RED_XOR };
/* one warp collective: every lane named in mask must arrive with the same kind and mask; returns the
 * lane's result (shuffles: the source lane's value bits) */
uint64_t warp_collective(int kind, unsigned mask, uint64_t value, int arg, int width, const char *what);
unsigned active_mask();
/* __trap(), and any misuse the simulator detects inside a kernel: the launch stops, the error is sticky */
[[noreturn]] void kernel_fault(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
long long clock64();

template <class T>
static inline uint64_t to_bits(const T &v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp shuffles move up to 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof(T));
    return u;
}
template <class T>
static inline T from_bits(uint64_t u) {
    T v;
    memcpy(&v, &u, sizeof(T));
    return v;
}
template <class T>
static inline uint64_t red_bits(T v) { /* integer reductions: sign-extended */
    return (uint64_t)(int64_t)v;
}
} // namespace qasim

/* ---- barriers and warp collectives ---------------------------------------------------------------- */
/* the source line identifies the barrier: threads of one block waiting at two lines at once is a fault
 * (__syncthreads() in divergent code) */
int qasim_syncthreads_at(int kind, int pred, const char *file, int line);
#define __syncthreads() ((void)qasim_syncthreads_at(::qasim::SYNC_PLAIN, 0, __FILE__, __LINE__))
#define __syncthreads_count(pred) qasim_syncthreads_at(::qasim::SYNC_COUNT, (pred), __FILE__, __LINE__)
#define __syncthreads_and(pred) qasim_syncthreads_at(::qasim::SYNC_AND, (pred), __FILE__, __LINE__)
#define __syncthreads_or(pred) qasim_syncthreads_at(::qasim::SYNC_OR, (pred), __FILE__, __LINE__)
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)::qasim::warp_collective(::qasim::W_SYNC, mask, 0, 0, 32, "__syncwarp");
}
template <class T>
static inline T __shfl_sync(unsigned mask, T var, int src, int width = 32) {
    return ::qasim::from_bits<T>(::qasim::warp_collective(::qasim::W_SHFL_IDX, mask, ::qasim::to_bits(var), src,
                                                          width, "__shfl_sync"));
}
template <class T>
static inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    return ::qasim::from_bits<T>(::qasim::warp_collective(::qasim::W_SHFL_UP, mask, ::qasim::to_bits(var),
                                                          (int)delta, width, "__shfl_up_sync"));
}
template <class T>
static inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
    return ::qasim::from_bits<T>(::qasim::warp_collective(::qasim::W_SHFL_DOWN, mask, ::qasim::to_bits(var),
                                                          (int)delta, width, "__shfl_down_sync"));
}
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
    return ::qasim::from_bits<T>(::qasim::warp_collective(::qasim::W_SHFL_XOR, mask, ::qasim::to_bits(var),
                                                          lane_mask, width, "__shfl_xor_sync"));
}
static inline unsigned __ballot_sync(unsigned mask, int pred) {
    return (unsigned)::qasim::warp_collective(::qasim::W_BALLOT, mask, pred != 0, 0, 32, "__ballot_sync");
}
static inline int __all_sync(unsigned mask, int pred) {
    return (int)::qasim::warp_collective(::qasim::W_ALL, mask, pred != 0, 0, 32, "__all_sync");
}
static inline int __any_sync(unsigned mask, int pred) {
    return (int)::qasim::warp_collective(::qasim::W_ANY, mask, pred != 0, 0, 32, "__any_sync");
}
static inline int __uni_sync(unsigned mask, int pred) {
    return (int)::qasim::warp_collective(::qasim::W_UNI, mask, pred != 0, 0, 32, "__uni_sync");
}
static inline unsigned __activemask() { return ::qasim::active_mask(); }
template <class T>
static inline unsigned __match_any_sync(unsigned mask, T value) {
    return (unsigned)::qasim::warp_collective(::qasim::W_MATCH_ANY, mask, ::qasim::to_bits(value), 0, 32,
                                              "__match_any_sync");
}
template <class T>
static inline unsigned __match_all_sync(unsigned mask, T value, int *pred) {
    uint64_t r = ::qasim::warp_collective(::qasim::W_MATCH_ALL, mask, ::qasim::to_bits(value), 0, 32,
                                          "__match_all_sync");
    *pred = r != 0;
    return (unsigned)r;
}
#define QASIM_REDUCE(name, kind, T) \
    static inline T name(unsigned mask, T value) { \
        return (T)::qasim::warp_collective(kind, mask, ::qasim::red_bits(value), 0, 32, #name); \
    }
QASIM_REDUCE(__reduce_add_sync, ::qasim::W_RED_ADD, unsigned)
QASIM_REDUCE(__reduce_add_sync, ::qasim::W_RED_ADD, int)
QASIM_REDUCE(__reduce_min_sync, ::qasim::W_RED_UMIN, unsigned)
QASIM_REDUCE(__reduce_min_sync, ::qasim::W_RED_MIN, int)
QASIM_REDUCE(__reduce_max_sync, ::qasim::W_RED_UMAX, unsigned)
QASIM_REDUCE(__reduce_max_sync, ::qasim::W_RED_MAX, int)
QASIM_REDUCE(__reduce_and_sync, ::qasim::W_RED_AND, unsigned)
QASIM_REDUCE(__reduce_or_sync, ::qasim::W_RED_OR, unsigned)
QASIM_REDUCE(__reduce_xor_sync, ::qasim::W_RED_XOR, unsigned)
#undef QASIM_REDUCE

/* memory fences: fibers run on one host thread, switched only at the collectives above */
static inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
[[noreturn]] static inline void __trap() { ::qasim::kernel_fault("__trap()"); }
static inline void __brkpt() { ::qasim::kernel_fault("__brkpt()"); }
static inline long long clock64() { return ::qasim::clock64(); }
static inline void __nanosleep(unsigned) {}

/* ---- atomics (one host thread runs a launch; fibers switch only at collectives: plain RMW is atomic) -- */
#define QASIM_ATOMIC_OP(name, T, expr) \
    static inline T name(T *address, T val) { T old = *address; *address = (expr); return old; }
QASIM_ATOMIC_OP(atomicAdd, int, old + val)
QASIM_ATOMIC_OP(atomicAdd, unsigned int, old + val)
QASIM_ATOMIC_OP(atomicAdd, unsigned long long, old + val)
QASIM_ATOMIC_OP(atomicAdd, float, old + val)
QASIM_ATOMIC_OP(atomicAdd, double, old + val)
QASIM_ATOMIC_OP(atomicSub, int, old - val)
QASIM_ATOMIC_OP(atomicSub, unsigned int, old - val)
QASIM_ATOMIC_OP(atomicExch, int, val)
QASIM_ATOMIC_OP(atomicExch, unsigned int, val)
QASIM_ATOMIC_OP(atomicExch, unsigned long long, val)
QASIM_ATOMIC_OP(atomicExch, float, val)
QASIM_ATOMIC_OP(atomicMin, int, val < old ? val : old)
QASIM_ATOMIC_OP(atomicMin, unsigned int, val < old ? val : old)
QASIM_ATOMIC_OP(atomicMin, long long, val < old ? val : old)
QASIM_ATOMIC_OP(atomicMin, unsigned long long, val < old ? val : old)
QASIM_ATOMIC_OP(atomicMax, int, val > old ? val : old)
QASIM_ATOMIC_OP(atomicMax, unsigned int, val > old ? val : old)
QASIM_ATOMIC_OP(atomicMax, long long, val > old ? val : old)
QASIM_ATOMIC_OP(atomicMax, unsigned long long, val > old ? val : old)
QASIM_ATOMIC_OP(atomicAnd, int, old & val)
QASIM_ATOMIC_OP(atomicAnd, unsigned int, old & val)
QASIM_ATOMIC_OP(atomicAnd, unsigned long long, old & val)
QASIM_ATOMIC_OP(atomicOr, int, old | val)
QASIM_ATOMIC_OP(atomicOr, unsigned int, old | val)
QASIM_ATOMIC_OP(atomicOr, unsigned long long, old | val)
QASIM_ATOMIC_OP(atomicXor, int, old ^ val)
QASIM_ATOMIC_OP(atomicXor, unsigned int, old ^ val)
QASIM_ATOMIC_OP(atomicXor, unsigned long long, old ^ val)
QASIM_ATOMIC_OP(atomicInc, unsigned int, old >= val ? 0u : old + 1u)
QASIM_ATOMIC_OP(atomicDec, unsigned int, (old == 0u || old > val) ? val : old - 1u)
#undef QASIM_ATOMIC_OP
#define QASIM_ATOMIC_CAS(T) \
    static inline T atomicCAS(T *address, T compare, T val) { \
        T old = *address; if (old == compare) *address = val; return old; }
QASIM_ATOMIC_CAS(int)
QASIM_ATOMIC_CAS(unsigned int)
QASIM_ATOMIC_CAS(unsigned long long)
QASIM_ATOMIC_CAS(unsigned short)
#undef QASIM_ATOMIC_CAS

/* ---- math ------------------------------------------------------------------------------------------ *
 * libm's correctly rounded (or nearly) functions stand in for CUDA's, the fast intrinsics included: the
 * simulator does not reproduce the GPU's approximation errors (__expf, __fdividef, ... are exact here). */
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
/* glibc's math.h declares __expf & co. itself: CUDA's names map to libm's */
#define __expf(x) expf(x)
#define __exp10f(x) powf(10.0f, (x))
#define __logf(x) logf(x)
#define __log2f(x) log2f(x)
#define __log10f(x) log10f(x)
#define __powf(x, y) powf((x), (y))
#define __sinf(x) sinf(x)
#define __cosf(x) cosf(x)
#define __tanf(x) tanf(x)
#define __sincosf(x, s, c) sincosf((x), (s), (c))
static inline float __fdividef(float a, float b) { return a / b; }
static inline float fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return x != x ? 0.0f : x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
/* single-rounding operations: never contracted into an FMA (volatile keeps the compiler from fusing) */
static inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
static inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
static inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
static inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
static inline float __frcp_rn(float a) { volatile float r = 1.0f / a; return r; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __frsqrt_rn(float a) { return 1.0f / sqrtf(a); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline double __dadd_rn(double a, double b) { volatile double r = a + b; return r; }
static inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
static inline float sinpif(float x) { return sinf((float)M_PI * x); }
static inline float cospif(float x) { return cosf((float)M_PI * x); }
static inline void sincospif(float x, float *s, float *c) { *s = sinpif(x); *c = cospif(x); }

/* CUDA's global min/max overloads */
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
static inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
static inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }

/* bit reinterpretation, conversions, integer intrinsics */
static inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
static inline unsigned int __float_as_uint(float x) { unsigned int i; memcpy(&i, &x, 4); return i; }
static inline float __int_as_float(int i) { float x; memcpy(&x, &i, 4); return x; }
static inline float __uint_as_float(unsigned int i) { float x; memcpy(&x, &i, 4); return x; }
static inline long long __double_as_longlong(double x) { long long i; memcpy(&i, &x, 8); return i; }
static inline double __longlong_as_double(long long i) { double x; memcpy(&x, &i, 8); return x; }
static inline int __float2int_rn(float x) { return (int)rintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline int __float2int_rd(float x) { return (int)floorf(x); }
static inline int __float2int_ru(float x) { return (int)ceilf(x); }
static inline unsigned int __float2uint_rn(float x) { return (unsigned int)rintf(x); }
static inline long long __float2ll_rn(float x) { return (long long)rintf(x); }
static inline float __int2float_rn(int i) { return (float)i; }
static inline float __uint2float_rn(unsigned int i) { return (float)i; }
static inline float __ll2float_rn(long long i) { return (float)i; }
static inline float __double2float_rn(double x) { return (float)x; }
static inline int __double2int_rn(double x) { return (int)rint(x); }
static inline int __popc(unsigned int x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned int __brev(unsigned int x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
    return (x >> 16) | (x << 16);
}
static inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
static inline unsigned int __umulhi(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a * b) >> 32);
}
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
static inline int __mul24(int a, int b) { /* the low 24 bits of each, as signed 24-bit integers */
    return (int)((unsigned)((int)((unsigned)a << 8) >> 8) * (unsigned)((int)((unsigned)b << 8) >> 8));
}
static inline unsigned int __funnelshift_l(unsigned int lo, unsigned int hi, unsigned int s) {
    s &= 31; return s ? (hi << s) | (lo >> (32 - s)) : hi;
}
static inline unsigned int __funnelshift_r(unsigned int lo, unsigned int hi, unsigned int s) {
    s &= 31; return s ? (lo >> s) | (hi << (32 - s)) : lo;
}

/* loads and stores with cache hints: plain accesses */
template <class T> static inline T __ldg(const T *p) { return *p; }
template <class T> static inline T __ldca(const T *p) { return *p; }
template <class T> static inline T __ldcg(const T *p) { return *p; }
template <class T> static inline T __ldcs(const T *p) { return *p; }
template <class T> static inline T __ldlu(const T *p) { return *p; }
template <class T> static inline T __ldcv(const T *p) { return *p; }
template <class T> static inline void __stwb(T *p, T v) { *p = v; }
template <class T> static inline void __stcg(T *p, T v) { *p = v; }
template <class T> static inline void __stcs(T *p, T v) { *p = v; }
template <class T> static inline void __stwt(T *p, T v) { *p = v; }

template <class T>
static inline cudaError_t cudaFuncSetAttribute(T *entry, enum cudaFuncAttribute attr, int value) {
    return ::qasim::func_set_attribute((const void *)entry, (int)attr, value);
}

#endif
