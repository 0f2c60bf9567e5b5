/* test_cudasim.cu — the CUDA simulator itself (kernels/cuda/sim), compiled through translate.py like
 * the .cu files of kernels/cuda: block barriers, warp collectives, shared memory, atomics, bf16 conversions, launch
 * configuration errors, memory checks, and the CPU cuBLAS (results against a double-precision reference,
 * argument checks and status codes). What must fault on a GPU must fault here: each such case runs in a
 * forked child (a fault is sticky for the process) whose exit and stderr are checked. */
extern "C" {
#include "testutil.h"
}
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CK(call) do { cudaError_t _e = (call); if (_e != cudaSuccess) { \
    fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(_e)); exit(3); } } while (0)

template <class T>
static T *dev(size_t n) {
    void *p = NULL;
    CK(cudaMalloc(&p, n * sizeof(T)));
    return (T *)p;
}
template <class T>
static void h2d(T *d, const T *h, size_t n) { CK(cudaMemcpy(d, h, n * sizeof(T), cudaMemcpyHostToDevice)); }
template <class T>
static void d2h(T *h, const T *d, size_t n) { CK(cudaMemcpy(h, d, n * sizeof(T), cudaMemcpyDeviceToHost)); }

/* run fn in a child; its exit status and what it wrote on stderr */
struct child { int exited, code, signaled; char err[8192]; };
static child in_child(void (*fn)()) {
    child c;
    memset(&c, 0, sizeof c);
    int fd[2];
    if (pipe(fd)) { perror("pipe"); exit(1); }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        fn();
        fflush(stderr);
        _exit(0);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(fd[0], c.err + n, sizeof c.err - 1 - n)) > 0) n += (size_t)r;
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    c.exited = WIFEXITED(st);
    c.code = c.exited ? WEXITSTATUS(st) : -1;
    c.signaled = WIFSIGNALED(st);
    return c;
}
/* a child that must end with a sticky launch failure whose message names `what` */
static void expect_fault(const char *name, void (*fn)(), cudaError_t want, const char *what) {
    child c = in_child(fn);
    char tag[96];
    snprintf(tag, sizeof tag, "child sees %s", cudaGetErrorName(want));
    QT_CHECK(c.exited && c.code == 10 && strstr(c.err, tag) && strstr(c.err, what),
             "%s: fault %s naming '%s' (child exit %d, stderr: %.300s)", name, cudaGetErrorName(want), what, c.code,
             c.err);
}
/* end of a fault child: sync, say the error, exit 10 when every later call reports it (sticky) */
static void fault_exit() {
    cudaError_t a = cudaDeviceSynchronize(), b = cudaGetLastError(), c = cudaMemset(NULL, 0, 0);
    fprintf(stderr, "child sees %s\n", cudaGetErrorName(a));
    fflush(stderr);
    _exit(a == b && b == c ? 10 : 2);
}

/* ---- block barriers --------------------------------------------------------------------------------- */
/* each thread reads its neighbour's value after a barrier: right only with real barrier semantics */
__global__ void k_rotate(const float *in, float *out, int sync) {
    __shared__ float s[256];
    const int t = threadIdx.x, n = blockDim.x;
    s[t] = in[blockIdx.x * n + t];
    if (sync) __syncthreads();
    out[blockIdx.x * n + t] = s[(t + 1) % n];
}
/* tree reduction (the pattern of kernels/cuda's block_sum_d) */
__global__ void k_tree(const float *in, float *out) {
    __shared__ float s[128];
    const int t = threadIdx.x;
    s[t] = in[blockIdx.x * 128 + t];
    __syncthreads();
    for (int w = 64; w > 0; w >>= 1) {
        if (t < w) s[t] += s[t + w];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = s[0];
}
__global__ void k_sync_variants(int *out) {
    const int t = threadIdx.x;
    int c = __syncthreads_count(t % 3 == 0);
    int a = __syncthreads_and(t < 1000);
    int o = __syncthreads_or(t == 77);
    int z = __syncthreads_and(t != 5);
    if (t == 0) { out[0] = c; out[1] = a; out[2] = o; out[3] = z; }
}
/* threads that exit early do not hold a barrier up */
__global__ void k_early_exit(float *out, int n) {
    __shared__ float s[64];
    const int t = threadIdx.x;
    if (t >= n) return;
    s[t] = (float)t;
    __syncthreads();
    out[t] = s[n - 1 - t];
}
static void t_barriers() {
    const int B = 3, N = 256;
    float h[B * N], o[B * N];
    for (int i = 0; i < B * N; i++) h[i] = (float)i;
    float *d = dev<float>(B * N), *e = dev<float>(B * N);
    h2d(d, h, B * N);
    k_rotate<<<B, N>>>(d, e, 1);
    CK(cudaGetLastError());
    d2h(o, e, B * N);
    int ok = 1;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < N; t++) ok &= o[b * N + t] == h[b * N + (t + 1) % N];
    QT_CHECK(ok, "__syncthreads: every thread sees its neighbour's shared value");
    /* without the barrier the last thread reads its neighbour's slot before it is written: poison (NaN) */
    k_rotate<<<B, N>>>(d, e, 0);
    d2h(o, e, B * N);
    int nans = 0;
    for (int i = 0; i < B * N; i++) nans += isnan(o[i]);
    QT_CHECK(nans > 0, "no __syncthreads: reads before the neighbour's write see poisoned shared memory (%d NaN)", nans);
    float tin[4 * 128], tout[4];
    for (int i = 0; i < 4 * 128; i++) tin[i] = (float)(i % 17) - 3.0f;
    float *di = dev<float>(4 * 128), *dout = dev<float>(4);
    h2d(di, tin, 4 * 128);
    k_tree<<<4, 128>>>(di, dout);
    d2h(tout, dout, 4);
    ok = 1;
    for (int b = 0; b < 4; b++) {
        double s = 0;
        for (int i = 0; i < 128; i++) s += tin[b * 128 + i];
        ok &= tout[b] == (float)s;
    }
    QT_CHECK(ok, "tree reduction over shared memory with a barrier per level");
    int *dv = dev<int>(4), v[4];
    k_sync_variants<<<1, 300>>>(dv);
    d2h(v, dv, 4);
    QT_CHECK(v[0] == 100 && v[1] == 1 && v[2] == 1 && v[3] == 0, "__syncthreads_count/and/or: %d %d %d %d", v[0],
             v[1], v[2], v[3]);
    float eo[64];
    k_early_exit<<<1, 64>>>(e, 40);
    CK(cudaDeviceSynchronize());
    d2h(eo, e, 40);
    ok = 1;
    for (int t = 0; t < 40; t++) ok &= eo[t] == (float)(39 - t);
    QT_CHECK(ok, "threads that returned before __syncthreads do not block it");
    CK(cudaFree(d)); CK(cudaFree(e)); CK(cudaFree(di)); CK(cudaFree(dout)); CK(cudaFree(dv));
}

__global__ void k_divergent_barrier(float *out) {
    if (threadIdx.x < 32) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}
static void f_divergent_barrier() {
    float *o = dev<float>(64);
    k_divergent_barrier<<<1, 64>>>(o);
    fault_exit();
}
__global__ void k_deadlock(float *out) {
    /* lane 0 waits at a block barrier while lanes 1..31 wait for it in a shuffle */
    float v = (float)threadIdx.x;
    if (threadIdx.x == 0) __syncthreads();
    else v = __shfl_xor_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}
static void f_deadlock() {
    float *o = dev<float>(32);
    k_deadlock<<<1, 32>>>(o);
    fault_exit();
}

/* ---- warp collectives --------------------------------------------------------------------------------- */
__global__ void k_warp(const int *in, int *out) {
    const int t = threadIdx.x, lane = t & 31;
    int v = in[t];
    int *o = out + t * 12;
    o[0] = __shfl_xor_sync(0xffffffffu, v, 5);
    o[1] = __shfl_up_sync(0xffffffffu, v, 3);
    o[2] = __shfl_down_sync(0xffffffffu, v, 7);
    o[3] = __shfl_sync(0xffffffffu, v, 29);
    o[4] = __shfl_down_sync(0xffffffffu, v, 2, 8);    /* segments of 8 */
    o[5] = __shfl_sync(0xffffffffu, v, lane + 3, 16); /* index modulo the segment */
    o[6] = (int)__ballot_sync(0xffffffffu, v & 1);
    o[7] = __any_sync(0xffffffffu, v == 1000 + 9) + 2 * __all_sync(0xffffffffu, v >= 1000);
    o[8] = (int)__match_any_sync(0xffffffffu, v % 3);
    o[9] = (int)__reduce_add_sync(0xffffffffu, (unsigned)v);
    o[10] = __reduce_max_sync(0xffffffffu, -v);
    /* a collective of half the warp: the other half does not take part */
    o[11] = lane < 16 ? __shfl_xor_sync(0x0000ffffu, v, 8) : -1;
    double d = __shfl_xor_sync(0xffffffffu, (double)v * 0.5, 1); /* 8-byte values move whole */
    if (d != (double)in[t ^ 1] * 0.5) o[0] = -999;
}
static void t_warp() {
    const int N = 64;
    int h[N], o[N * 12];
    for (int i = 0; i < N; i++) h[i] = 1000 + i * 7 % 61;
    int *d = dev<int>(N), *e = dev<int>(N * 12);
    h2d(d, h, N);
    k_warp<<<1, N>>>(d, e);
    CK(cudaGetLastError());
    d2h(o, e, N * 12);
    int bad = 0;
    for (int t = 0; t < N; t++) {
        const int l = t & 31, w = t - l;
        const int *r = o + t * 12;
        unsigned bal = 0, mat = 0;
        int sum = 0, mx = -(1 << 30), any = 0, all = 1;
        for (int j = 0; j < 32; j++) {
            int v = h[w + j];
            bal |= (unsigned)(v & 1) << j;
            if (v % 3 == h[t] % 3) mat |= 1u << j;
            sum += v;
            if (-v > mx) mx = -v;
            any |= v == 1009;
            all &= v >= 1000;
        }
        int want[12] = {h[w + (l ^ 5)], l >= 3 ? h[t - 3] : h[t], l + 7 < 32 ? h[t + 7] : h[t], h[w + 29],
                        (l & 7) + 2 < 8 ? h[t + 2] : h[t], h[w + (l & 16) + ((l + 3) & 15)], (int)bal, any + 2 * all,
                        (int)mat, sum, mx, l < 16 ? h[w + (l ^ 8)] : -1};
        for (int k = 0; k < 12; k++)
            if (r[k] != want[k]) {
                if (bad++ < 5) printf("  warp: thread %d result %d: %d, want %d\n", t, k, r[k], want[k]);
            }
    }
    QT_CHECK(bad == 0, "warp collectives (shfl xor/up/down/idx with widths, ballot, any/all, match, reduce, half-warp "
             "masks, 8-byte shuffles): %d wrong", bad);
    CK(cudaFree(d)); CK(cudaFree(e));
}
__global__ void k_shfl_exited(float *out) {
    if (threadIdx.x == 3) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}
static void f_shfl_exited() {
    float *o = dev<float>(32);
    k_shfl_exited<<<1, 32>>>(o);
    fault_exit();
}
__global__ void k_shfl_partial_warp(float *out) { out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1); }
static void f_shfl_partial_warp() {
    float *o = dev<float>(48);
    k_shfl_partial_warp<<<1, 48>>>(o); /* warp 1 has lanes 0..15 only */
    fault_exit();
}
__global__ void k_shfl_outside(float *out) {
    if (threadIdx.x < 16) out[threadIdx.x] = __shfl_sync(0x0000ffffu, 1.0f, 20);
}
static void f_shfl_outside() {
    float *o = dev<float>(32);
    k_shfl_outside<<<1, 32>>>(o);
    fault_exit();
}

/* ---- shared memory, atomics --------------------------------------------------------------------------- */
__global__ void k_dyn(const float *in, float *out, int n) {
    extern __shared__ __align__(16) float buf[];
    const int t = threadIdx.x;
    for (int i = t; i < n; i += blockDim.x) buf[i] = in[i] * 2.0f;
    __syncthreads();
    if (t == 0) {
        float s = 0;
        for (int i = 0; i < n; i++) s += buf[i];
        out[blockIdx.x] = s;
    }
}
__global__ void k_atomics(unsigned *cnt, float *fsum, int *mx) {
    atomicAdd(cnt, 1u);
    atomicAdd(fsum, 0.5f);
    atomicMax(mx, (int)(blockIdx.x * blockDim.x + threadIdx.x));
}
static void t_shared_atomics() {
    const int n = 1000;
    float h[n], o[3];
    for (int i = 0; i < n; i++) h[i] = (float)(i % 10);
    float *d = dev<float>(n), *e = dev<float>(3);
    h2d(d, h, n);
    k_dyn<<<3, 96, n * sizeof(float)>>>(d, e, n);
    CK(cudaGetLastError());
    d2h(o, e, 3);
    QT_CHECK(o[0] == 9000.0f && o[2] == 9000.0f, "dynamic shared memory sized by the launch (%g)", o[0]);
    /* more than 48 KiB needs the attribute, as on the GPU */
    k_dyn<<<1, 32, 64 << 10>>>(d, e, n);
    cudaError_t r1 = cudaGetLastError();
    CK(cudaFuncSetAttribute(k_dyn, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 << 10));
    k_dyn<<<1, 32, 64 << 10>>>(d, e, n);
    cudaError_t r2 = cudaGetLastError();
    QT_CHECK(r1 == cudaErrorInvalidValue && r2 == cudaSuccess, "64 KiB of dynamic shared memory: %s without the "
             "attribute, %s with it", cudaGetErrorName(r1), cudaGetErrorName(r2));
    unsigned *c = dev<unsigned>(1);
    float *fs = dev<float>(1);
    int *m = dev<int>(1);
    CK(cudaMemset(c, 0, 4));
    CK(cudaMemset(fs, 0, 4));
    CK(cudaMemset(m, 0, 4));
    k_atomics<<<37, 128>>>(c, fs, m);
    unsigned hc;
    float hf;
    int hm;
    d2h(&hc, c, 1);
    d2h(&hf, fs, 1);
    d2h(&hm, m, 1);
    QT_CHECK(hc == 37 * 128 && hf == 37 * 64.0f && hm == 37 * 128 - 1, "atomics: %u %g %d", hc, hf, hm);
    CK(cudaFree(d)); CK(cudaFree(e)); CK(cudaFree(c)); CK(cudaFree(fs)); CK(cudaFree(m));
}
static void f_dyn_overflow() {
    float *d = dev<float>(64), *e = dev<float>(1);
    k_dyn<<<1, 32, 16 * sizeof(float)>>>(d, e, 2000); /* writes 2000 floats into 16 */
    fault_exit();
}
__global__ void k_oob(float *p, int n) { p[n + 100 + threadIdx.x] = 1.0f; } /* bytes 800.. of a 400-byte allocation */
static void f_oob_write() {
    float *d = dev<float>(100);
    k_oob<<<1, 32>>>(d, 100);
    fault_exit();
}
__global__ void k_misaligned(const float *p, float *out) {
    float4 v = *(const float4 *)(p + 1);
    out[0] = v.x;
}
static void f_misaligned() {
    float *d = dev<float>(16), *e = dev<float>(1);
    CK(cudaMemset(d, 0, 64));
    k_misaligned<<<1, 1>>>(d, e);
    fault_exit();
}

/* ---- launches, memory, streams ---------------------------------------------------------------------- */
__global__ void __launch_bounds__(128) k_bounded(float *out) { out[threadIdx.x] = (float)threadIdx.x; }
__global__ void k_fill(float *out, float v, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = v;
}
__global__ void k_ids(int *out) {
    const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    out[b * blockDim.x * blockDim.y * blockDim.z + t] = b * 10000 + t;
}
static void t_launch_memory() {
    float *d = dev<float>(1024);
    k_fill<<<dim3(1, 1, 1), dim3(1025, 1, 1)>>>(d, 1.0f, 1);
    cudaError_t a = cudaGetLastError();
    k_fill<<<dim3(1, 65536, 1), 32>>>(d, 1.0f, 1);
    cudaError_t b = cudaGetLastError();
    k_fill<<<dim3(1, 1, 1), dim3(8, 8, 65)>>>(d, 1.0f, 1);
    cudaError_t c = cudaGetLastError();
    k_bounded<<<1, 256>>>(d);
    cudaError_t lb = cudaGetLastError();
    k_bounded<<<1, 128>>>(d);
    cudaError_t lb2 = cudaGetLastError();
    QT_CHECK(a == cudaErrorInvalidConfiguration && b == cudaErrorInvalidConfiguration &&
             c == cudaErrorInvalidConfiguration && cudaGetLastError() == cudaSuccess,
             "invalid launch configurations fail with cudaErrorInvalidConfiguration, not sticky (%s %s %s)",
             cudaGetErrorName(a), cudaGetErrorName(b), cudaGetErrorName(c));
    QT_CHECK(lb == cudaErrorLaunchOutOfResources && lb2 == cudaSuccess,
             "__launch_bounds__(128): 256 threads fail (%s), 128 run", cudaGetErrorName(lb));
    int *ids = dev<int>(2 * 3 * 2 * 4 * 2 * 3), hid[2 * 3 * 2 * 4 * 2 * 3];
    k_ids<<<dim3(2, 3, 2), dim3(4, 2, 3)>>>(ids);
    d2h(hid, ids, 2 * 3 * 2 * 4 * 2 * 3);
    int ok = 1;
    for (int b2 = 0; b2 < 12; b2++)
        for (int t = 0; t < 24; t++) ok &= hid[b2 * 24 + t] == b2 * 10000 + t;
    QT_CHECK(ok, "3-D grids and blocks: blockIdx/threadIdx/gridDim/blockDim");
    /* fresh device memory is poisoned: NaN as floats */
    float *p = dev<float>(10), hp[10];
    d2h(hp, p, 10);
    QT_CHECK(isnan(hp[0]) && isnan(hp[9]), "cudaMalloc'd memory reads as NaN until written");
    float big[200];
    cudaError_t m1 = cudaMemcpy(p, big, sizeof big, cudaMemcpyHostToDevice);
    cudaError_t m2 = cudaMemcpy(big, p, 40, cudaMemcpyHostToDevice); /* direction does not match the pointers */
    cudaError_t m3 = cudaFree(p + 1);
    CK(cudaFree(p));
    cudaError_t m4 = cudaFree(p);
    (void)cudaGetLastError();
    QT_CHECK(m1 == cudaErrorInvalidValue && m2 == cudaErrorInvalidValue && m3 == cudaErrorInvalidValue &&
             m4 == cudaErrorInvalidValue, "copies past an allocation, against the pointers' direction, frees of "
             "non-allocations and double frees: cudaErrorInvalidValue (%d %d %d %d)", m1, m2, m3, m4);
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventRecord(e0, s));
    k_fill<<<64, 256, 0, s>>>(d, 2.0f, 1024);
    CK(cudaEventRecord(e1, s));
    float ms = -1;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    QT_CHECK(cudaStreamQuery(s) == cudaSuccess && ms >= 0, "streams run work at once (query: idle), events time it");
    CK(cudaStreamDestroy(s));
    k_fill<<<1, 32, 0, s>>>(d, 3.0f, 1024);
    cudaError_t st = cudaGetLastError();
    QT_CHECK(st == cudaErrorInvalidResourceHandle && cudaStreamDestroy(s) == cudaErrorInvalidResourceHandle,
             "a destroyed stream is an invalid handle (%s)", cudaGetErrorName(st));
    (void)cudaGetLastError();
    int n = 0;
    cudaDeviceProp prop;
    CK(cudaGetDeviceCount(&n));
    CK(cudaGetDeviceProperties(&prop, 0));
    QT_CHECK(n == 1 && prop.major == 9 && prop.minor == 0 && prop.warpSize == 32 &&
             cudaSetDevice(1) == cudaErrorInvalidDevice && cudaGetLastError() == cudaErrorInvalidDevice &&
             cudaGetLastError() == cudaSuccess, "one simulated sm_90 device");
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    CK(cudaFree(d));
}

/* ---- bf16 ------------------------------------------------------------------------------------------ */
static uint16_t ref_bf16(float f) { /* round to nearest even in double arithmetic; NaN -> 0x7fff */
    if (f != f) return 0x7fff;
    if (isinf(f)) return f > 0 ? 0x7f80 : 0xff80;
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
    float a, b;
    memcpy(&a, &lo, 4);
    memcpy(&b, &hi, 4);
    double da = fabs((double)a - f), db = fabs((double)b - f);
    if ((u & 0x7fffffffu) >= 0x7f7f8000u && (u & 0x7fffffffu) < 0x7f800000u) /* rounds to inf or max */
        return (u & 0xffffu) > 0x8000u || ((u & 0xffffu) == 0x8000u && ((u >> 16) & 1)) ? (uint16_t)((u >> 16) + 1)
                                                                                      : (uint16_t)(u >> 16);
    if (da < db || (da == db && !((lo >> 16) & 1))) return (uint16_t)(lo >> 16);
    return (uint16_t)(hi >> 16);
}
__global__ void k_bf16(const float *in, __nv_bfloat16 *out, __nv_bfloat162 *out2, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        out[i] = __float2bfloat16_rn(in[i]);
        if (i % 2 == 0 && i + 1 < n) out2[i / 2] = __floats2bfloat162_rn(in[i], in[i + 1]);
    }
}
static void t_bf16() {
    /* every 97th bit pattern plus the edges: ties, subnormals, the largest finite values, inf, NaN */
    const size_t n = ((size_t)1 << 32) / 4099 + 32;
    float *h = (float *)malloc(n * 4);
    size_t k = 0;
    for (uint64_t u = 0; u < ((uint64_t)1 << 32) && k < n - 32; u += 4099) {
        uint32_t v = (uint32_t)u;
        memcpy(&h[k++], &v, 4);
    }
    const uint32_t edge[] = {0x3f808000u, 0x3f818000u, 0xbf808000u, 0x00008000u, 0x00018000u, 0x0000ffffu,
                             0x7f7f7fffu, 0x7f7f8000u, 0x7f7fffffu, 0xff7fffffu, 0x7f800000u, 0xff800000u,
                             0x7fc00000u, 0xffc00001u, 0x7f800001u, 0x80000000u, 0x00000000u, 0x3f800001u};
    for (uint32_t v : edge) memcpy(&h[k++], &v, 4);
    float *d = dev<float>(k);
    __nv_bfloat16 *o = dev<__nv_bfloat16>(k);
    __nv_bfloat162 *o2 = dev<__nv_bfloat162>(k / 2 + 1);
    h2d(d, h, k);
    k_bf16<<<256, 256>>>(d, o, o2, k);
    uint16_t *r = (uint16_t *)malloc(k * 2), *r2 = (uint16_t *)malloc(k * 2 + 4);
    CK(cudaMemcpy(r, o, k * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(r2, o2, (k / 2) * 4, cudaMemcpyDeviceToHost));
    size_t bad = 0;
    for (size_t i = 0; i < k; i++) {
        uint16_t want = ref_bf16(h[i]);
        if (r[i] != want && bad++ < 5) printf("  bf16(%08x) = %04x, want %04x\n", *(uint32_t *)&h[i], r[i], want);
        if (i < k / 2 * 2 && r2[i] != r[i] && bad++ < 5) printf("  bf162 element %zu: %04x, want %04x\n", i, r2[i], r[i]);
    }
    QT_CHECK(bad == 0, "__float2bfloat16_rn / __floats2bfloat162_rn: round to nearest even, NaN 0x7fff, overflow to "
             "inf, on %zu values: %zu wrong", k, bad);
    __nv_bfloat16 x = __float2bfloat16_rz(1.00390625f * 1.5f), y = __float2bfloat16_ru(1.0f + 1e-7f),
                  z = __float2bfloat16_rd(-1.0f - 1e-7f);
    QT_CHECK(__bfloat16_as_ushort(x) == 0x3fc0 && __bfloat16_as_ushort(y) == 0x3f81 &&
             __bfloat16_as_ushort(z) == 0xbf81 && (float)__double2bfloat16(1.0 + 1.0 / 256 + 1e-12) == 1.0078125f &&
             (float)__double2bfloat16(1.0 + 1.0 / 256) == 1.0f && __bfloat162float(__float2bfloat16(-2.5f)) == -2.5f,
             "bf16 _rz/_ru/_rd and double -> bf16 with a single rounding");
    free(h); free(r); free(r2);
    CK(cudaFree(d)); CK(cudaFree(o)); CK(cudaFree(o2));
}

/* ---- cuBLAS ---------------------------------------------------------------------------------------- */
static uint64_t rng = 12345;
static void fill(float *x, size_t n) { for (size_t i = 0; i < n; i++) x[i] = qt_frand(&rng); }
static float bfr(float f) { return (float)__float2bfloat16_rn(f); }
/* column-major reference in double of op(A) op(B) */
static double refc(int ta, int tb, int i, int j, int k, const float *A, int lda, const float *B, int ldb, int bf) {
    double s = 0;
    for (int l = 0; l < k; l++) {
        float a = ta ? A[l + (size_t)i * lda] : A[i + (size_t)l * lda], b = tb ? B[j + (size_t)l * ldb] : B[l + (size_t)j * ldb];
        if (bf) { a = bfr(a); b = bfr(b); }
        s += (double)a * b;
    }
    return s;
}
static void t_cublas() {
    cublasHandle_t h;
    QT_CHECK(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
    const int m = 37, n = 29, k = 45;
    const float alpha = 0.75f, beta = -0.5f;
    int worst_ok = 1;
    for (int bf = 0; bf < 2; bf++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int lda = (ta ? k : m) + 3, ldb = (tb ? n : k) + 1, ldc = m + 2;
                size_t na = (size_t)lda * (ta ? m : k), nb = (size_t)ldb * (tb ? k : n), nc = (size_t)ldc * n;
                float *A = (float *)malloc(na * 4), *B = (float *)malloc(nb * 4), *C = (float *)malloc(nc * 4),
                      *R = (float *)malloc(nc * 4);
                fill(A, na); fill(B, nb); fill(C, nc);
                void *dA, *dB;
                float *dC = dev<float>(nc);
                if (bf) {
                    __nv_bfloat16 *a16 = (__nv_bfloat16 *)malloc(na * 2), *b16 = (__nv_bfloat16 *)malloc(nb * 2);
                    for (size_t i = 0; i < na; i++) a16[i] = __float2bfloat16_rn(A[i]);
                    for (size_t i = 0; i < nb; i++) b16[i] = __float2bfloat16_rn(B[i]);
                    dA = dev<__nv_bfloat16>(na);
                    dB = dev<__nv_bfloat16>(nb);
                    h2d((__nv_bfloat16 *)dA, a16, na);
                    h2d((__nv_bfloat16 *)dB, b16, nb);
                    free(a16); free(b16);
                } else {
                    dA = dev<float>(na);
                    dB = dev<float>(nb);
                    h2d((float *)dA, A, na);
                    h2d((float *)dB, B, nb);
                }
                h2d(dC, C, nc);
                cudaDataType t = bf ? CUDA_R_16BF : CUDA_R_32F;
                cublasStatus_t s = cublasGemmEx(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n,
                                                k, &alpha, dA, t, lda, dB, t, ldb, &beta, dC, CUDA_R_32F, ldc,
                                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
                d2h(R, dC, nc);
                double worst = 0;
                for (int j = 0; j < n; j++)
                    for (int i = 0; i < ldc; i++) {
                        size_t c = (size_t)i + (size_t)j * ldc;
                        if (i >= m) { /* padding rows untouched */
                            if (R[c] != C[c]) worst = 1;
                            continue;
                        }
                        double want = alpha * refc(ta, tb, i, j, k, A, lda, B, ldb, bf) + (double)beta * C[c];
                        double e = fabs(R[c] - want) / (fabs(want) + 1);
                        if (e > worst) worst = e;
                    }
                worst_ok &= s == CUBLAS_STATUS_SUCCESS && worst < 1e-5;
                if (!(s == CUBLAS_STATUS_SUCCESS && worst < 1e-5))
                    printf("  gemm bf=%d ta=%d tb=%d: status %d, error %.3e\n", bf, ta, tb, s, worst);
                free(A); free(B); free(C); free(R);
                CK(cudaFree(dA)); CK(cudaFree(dB)); CK(cudaFree(dC));
            }
    QT_CHECK(worst_ok, "cublasGemmEx column-major, every op, padded leading dimensions, fp32 and bf16 operands");

    /* argument checks */
    float *X = dev<float>(4096), one = 1, zero = 0;
    const cublasOperation_t N_ = CUBLAS_OP_N, T_ = CUBLAS_OP_T;
#define GE(ta, tb, m, n, k, lda, ldb, ldc, at) cublasGemmEx(h, ta, tb, m, n, k, &one, X, at, lda, X, at, ldb, &zero, X, \
    CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)
    QT_CHECK(GE(N_, N_, 8, 4, 6, 7, 6, 8, CUDA_R_32F) == CUBLAS_STATUS_INVALID_VALUE, "lda < m (op N): INVALID_VALUE");
    QT_CHECK(GE(T_, N_, 8, 4, 6, 6, 6, 8, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
             GE(T_, N_, 8, 4, 6, 5, 6, 8, CUDA_R_32F) == CUBLAS_STATUS_INVALID_VALUE, "lda >= k for op T");
    QT_CHECK(GE(N_, T_, 8, 4, 6, 8, 3, 8, CUDA_R_32F) == CUBLAS_STATUS_INVALID_VALUE, "ldb < n (op T): INVALID_VALUE");
    QT_CHECK(GE(N_, N_, 8, 4, 6, 8, 6, 7, CUDA_R_32F) == CUBLAS_STATUS_INVALID_VALUE, "ldc < m: INVALID_VALUE");
    QT_CHECK(GE(N_, N_, 0, 4, 6, 0, 6, 0, CUDA_R_32F) == CUBLAS_STATUS_INVALID_VALUE &&
             GE(N_, N_, 0, 4, 6, 1, 6, 1, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS, "leading dimensions >= 1 even when m == 0");
    QT_CHECK(GE(N_, N_, -1, 4, 6, 8, 6, 8, CUDA_R_32F) == CUBLAS_STATUS_INVALID_VALUE &&
             GE((cublasOperation_t)7, N_, 8, 4, 6, 8, 6, 8, CUDA_R_32F) == CUBLAS_STATUS_INVALID_VALUE,
             "negative sizes, unknown ops: INVALID_VALUE");
    QT_CHECK(cublasGemmEx(h, N_, N_, 8, 4, 6, &one, X, CUDA_R_32F, 8, X, CUDA_R_16BF, 6, &zero, X, CUDA_R_32F, 8,
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED &&
             cublasGemmEx(h, N_, N_, 8, 4, 6, &one, X, CUDA_R_16BF, 8, X, CUDA_R_16BF, 6, &zero, X, CUDA_R_16BF, 8,
                          CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED,
             "mixed A/B types, bf16 under a FAST_TF32 compute type: NOT_SUPPORTED");
    QT_CHECK(cublasSetWorkspace(h, (char *)X + 16, 1024) == CUBLAS_STATUS_INVALID_VALUE &&
             cublasSetWorkspace(h, X, 4096) == CUBLAS_STATUS_SUCCESS, "cublasSetWorkspace: 256-byte alignment");
    QT_CHECK(cublasSetMathMode(h, (cublasMath_t)9) == CUBLAS_STATUS_INVALID_VALUE, "unknown math mode");
    /* beta == 0: C is not read (NaN stays out); TF32 math rounds fp32 inputs */
    float hx[64], r1[4], r2[4];
    for (int i = 0; i < 64; i++) hx[i] = 1.0f + 3.0f / 4096 + (float)i / 1048576; /* TF32 rounds each up by 2^-12 */
    h2d(X, hx, 64);
    float *Cn = dev<float>(4);
    QT_CHECK(cublasGemmEx(h, T_, N_, 2, 2, 16, &one, X, CUDA_R_32F, 16, X + 32, CUDA_R_32F, 16, &zero, Cn, CUDA_R_32F,
                          2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS, "gemm");
    d2h(r1, Cn, 4);
    CK(cudaMemset(Cn, 0xff, 16));
    cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH);
    cublasGemmEx(h, T_, N_, 2, 2, 16, &one, X, CUDA_R_32F, 16, X + 32, CUDA_R_32F, 16, &zero, Cn, CUDA_R_32F, 2,
                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    d2h(r2, Cn, 4);
    cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
    double exact = 0, tf = 0;
    for (int l = 0; l < 16; l++) {
        exact += (double)hx[l] * hx[32 + l];
        float a = hx[l], b = hx[32 + l];
        uint32_t ua, ub;
        memcpy(&ua, &a, 4); memcpy(&ub, &b, 4);
        ua = (ua + 0x1000u) & ~0x1fffu; ub = (ub + 0x1000u) & ~0x1fffu;
        memcpy(&a, &ua, 4); memcpy(&b, &ub, 4);
        tf += (double)a * b;
    }
    QT_CHECK(!isnan(r1[0]) && fabs(r1[0] - exact) < 1e-5 * exact && fabs(r2[0] - tf) < 1e-5 * tf &&
             fabs(r2[0] - exact) > 1e-4 * exact, "fp32 by default (%.7g vs %.7g), TF32 under CUBLAS_TF32_TENSOR_OP_MATH "
             "(%.7g vs %.7g)", r1[0], exact, r2[0], tf);
    /* strided batched == loop of single products; AxpyEx in bf16 */
    float *Cs = dev<float>(3 * 4);
    QT_CHECK(cublasGemmStridedBatchedEx(h, T_, N_, 2, 2, 4, &one, X, CUDA_R_32F, 4, 8, X + 32, CUDA_R_32F, 4, 4,
                                        &zero, Cs, CUDA_R_32F, 2, 4, 3, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) ==
                 CUBLAS_STATUS_SUCCESS, "strided batched");
    float hs[12];
    d2h(hs, Cs, 12);
    int sok = 1;
    for (int b = 0; b < 3; b++)
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < 2; i++) {
                double s = 0;
                for (int l = 0; l < 4; l++) s += (double)hx[b * 8 + i * 4 + l] * hx[32 + b * 4 + j * 4 + l];
                sok &= fabs(hs[b * 4 + j * 2 + i] - s) < 1e-5 * s;
            }
    QT_CHECK(sok, "cublasGemmStridedBatchedEx: batch b reads A + b*strideA, B + b*strideB");
    __nv_bfloat16 bx[3] = {__float2bfloat16_rn(1.0f), __float2bfloat16_rn(0.00390625f), __float2bfloat16_rn(-2.0f)},
                  by[3] = {__float2bfloat16_rn(1.0f), __float2bfloat16_rn(256.0f), __float2bfloat16_rn(3.0f)}, br[3];
    __nv_bfloat16 *dx = dev<__nv_bfloat16>(3), *dy = dev<__nv_bfloat16>(3);
    h2d(dx, bx, 3);
    h2d(dy, by, 3);
    QT_CHECK(cublasAxpyEx(h, 3, &one, CUDA_R_32F, dx, CUDA_R_16BF, 1, dy, CUDA_R_16BF, 1, CUDA_R_32F) ==
                 CUBLAS_STATUS_SUCCESS, "AxpyEx");
    d2h(br, dy, 3);
    QT_CHECK((float)br[0] == 2.0f && (float)br[1] == 256.0f && (float)br[2] == 1.0f,
             "cublasAxpyEx bf16: y = x + y rounded to bf16 (%g %g %g)", (float)br[0], (float)br[1], (float)br[2]);
    QT_CHECK(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS && cublasDestroy(h) == CUBLAS_STATUS_NOT_INITIALIZED &&
             GE(N_, N_, 8, 4, 6, 8, 6, 8, CUDA_R_32F) == CUBLAS_STATUS_NOT_INITIALIZED, "a destroyed handle");
#undef GE
    CK(cudaFree(X)); CK(cudaFree(Cn)); CK(cudaFree(Cs)); CK(cudaFree(dx)); CK(cudaFree(dy));
}
static void f_blas_extent() {
    cublasHandle_t h;
    cublasCreate(&h);
    float *A = dev<float>(100), one = 1, zero = 0;
    /* A is 10 x 11 with lda 10: 110 floats, but the allocation holds 100 */
    cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 10, 10, 11, &one, A, CUDA_R_32F, 10, A, CUDA_R_32F, 11,
                                    &zero, A, CUDA_R_32F, 10, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) _exit(4);
    fault_exit();
}
static void f_blas_host_ptrs() {
    cublasHandle_t h;
    cublasCreate(&h);
    float *A = dev<float>(100), one = 1, zero = 0;
    const void *pa[1] = {A};
    void *pc[1] = {A};
    cublasGemmBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, pa, CUDA_R_32F, 4, pa, CUDA_R_32F, 4, &zero, pc,
                        CUDA_R_32F, 4, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    fault_exit();
}

int main() {
    static_assert(sizeof(float4) == 16 && alignof(float4) == 16 && alignof(float2) == 8 && sizeof(__nv_bfloat16) == 2 &&
                  alignof(__nv_bfloat162) == 4 && alignof(double2) == 16 && sizeof(dim3) == 12, "vector types");
    t_barriers();
    t_warp();
    t_shared_atomics();
    t_launch_memory();
    t_bf16();
    t_cublas();
    expect_fault("__syncthreads in divergent code", f_divergent_barrier, cudaErrorLaunchFailure, "divergent");
    expect_fault("a lane at a barrier, its warp at a shuffle", f_deadlock, cudaErrorLaunchFailure, "deadlock");
    expect_fault("shuffle naming an exited lane", f_shfl_exited, cudaErrorLaunchFailure, "exit");
    expect_fault("full mask in a warp of 16 threads", f_shfl_partial_warp, cudaErrorLaunchFailure, "do not exist");
    expect_fault("shuffle reading a lane outside its mask", f_shfl_outside, cudaErrorLaunchFailure, "not in the mask");
    expect_fault("cuBLAS operand past its allocation", f_blas_extent, cudaErrorIllegalAddress, "not all inside");
    expect_fault("cuBLAS pointer arrays in host memory", f_blas_host_ptrs, cudaErrorIllegalAddress, "not device memory");
    child c = in_child(f_oob_write);
    QT_CHECK(c.signaled && strstr(c.err, "past the end of a device allocation of 400 bytes") && strstr(c.err, "k_oob"),
             "a kernel writing past its allocation dies of SIGSEGV naming the kernel and the allocation (%.300s)", c.err);
    c = in_child(f_dyn_overflow);
    QT_CHECK(c.signaled && strstr(c.err, "dynamic shared memory"), "writing past dynamic shared memory faults (%.300s)",
             c.err);
#ifdef QASIM_UBSAN
    c = in_child(f_misaligned);
    QT_CHECK(!c.exited || c.code != 0 ? strstr(c.err, "misaligned") != NULL : 0,
             "a float4 load from a 4-byte aligned address is reported (cudaErrorMisalignedAddress on a GPU): %.300s",
             c.err);
#endif
    return qt_finish();
}
