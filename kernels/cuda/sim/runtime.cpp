/* runtime.cpp — the CUDA simulator's runtime: one simulated device on host memory, and kernel launches
 * that run every block and every thread with real barrier and warp-collective semantics.
 *
 * Memory. cudaMalloc maps fresh pages for every allocation: the block ends 256-byte aligned right before
 * a PROT_NONE guard page (an access past the end faults and is reported with the kernel, block and thread),
 * its bytes are poisoned (0xff: NaN as fp32 and bf16, -1 as an integer) unless QASIM_POISON=0, and
 * cudaFree unmaps it (a later access faults). Copies and memsets check that device ranges lie inside one
 * allocation and that the direction matches the pointers.
 *
 * Launches. Blocks run one after another (QASIM_ORDER=reverse: last block first, and threads scheduled
 * from the last). Inside a block every thread is a fiber with its own stack; a fiber runs until it reaches
 * a barrier or a warp collective or ends. __syncthreads() releases when every thread that has not exited
 * has arrived (from the same source line: a barrier in divergent code is a fault); a warp collective
 * completes when every lane named in its mask has arrived with the same kind and mask (a lane that exits
 * first, a lane that does not exist, a shuffle that reads a lane outside the mask: faults). Shared memory
 * is per block and poisoned when the block starts. A fault stops the launch and leaves a sticky error
 * (cudaErrorLaunchFailure; the message on stderr names the kernel, launch site, block and thread), as a
 * device-side failure does on a GPU. QASIM_ABORT=1 aborts at the first fault instead (for a debugger).
 *
 * Streams and events exist as handles (validated); work runs at once on the calling thread, so a stream is
 * always idle. Launches are serialized by a mutex. */
#include "sim_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#if !defined(__x86_64__) && !defined(__aarch64__)
#define QASIM_UCONTEXT 1
#include <ucontext.h>
#endif

/* the built-in variables */
uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace qasim {

/* ---- settings ------------------------------------------------------------------------------------- */
static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}
struct settings {
    int devices, poison, reverse, greedy, abort_on_fault, verbose, sm;
    size_t mem_bytes;
    settings() {
        devices = env_int("QASIM_DEVICE_COUNT", 1);
        poison = env_int("QASIM_POISON", 1);
        const char *o = getenv("QASIM_ORDER");
        reverse = o && !strcmp(o, "reverse");
        greedy = o && !strcmp(o, "greedy");
        abort_on_fault = env_int("QASIM_ABORT", 0);
        verbose = env_int("QASIM_VERBOSE", 0);
        sm = env_int("QASIM_SM", 90);
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        size_t phys = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz : (size_t)16 << 30;
        size_t dflt = phys / 2 < ((size_t)80 << 30) ? phys / 2 : ((size_t)80 << 30);
        int mib = env_int("QASIM_MEM_MIB", 0);
        mem_bytes = mib > 0 ? (size_t)mib << 20 : dflt;
    }
};
static settings &S() {
    static settings s;
    return s;
}

void note(const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "qasim: %s\n", buf);
    fflush(stderr);
}

/* ---- errors --------------------------------------------------------------------------------------- */
static std::mutex g_mu; /* allocations, streams, events, the sticky error */
static cudaError_t g_sticky = cudaSuccess;
static thread_local cudaError_t t_last = cudaSuccess;
static thread_local int t_device = 0;

cudaError_t sticky() {
    std::lock_guard<std::mutex> lk(g_mu);
    return g_sticky;
}
cudaError_t api_error(cudaError_t e) {
    cudaError_t st = sticky();
    if (st != cudaSuccess) e = st;
    if (e != cudaSuccess) t_last = e;
    return e;
}
void device_fault(cudaError_t e, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    note("%s: %s (sticky: every later CUDA call fails)", cudaGetErrorName(e), buf);
    if (S().abort_on_fault) abort();
    std::lock_guard<std::mutex> lk(g_mu);
    if (g_sticky == cudaSuccess) g_sticky = e;
}

/* ---- memory --------------------------------------------------------------------------------------- */
struct alloc_rec {
    size_t size;     /* as asked */
    size_t body;     /* size rounded to 256 */
    char *map;       /* mmap base (device) or NULL (pinned host: malloc) */
    size_t maplen;
    int kind;
};
/* registries are built on first use: translated sources register launch bounds from static initializers */
static std::map<uintptr_t, alloc_rec> &allocs() { /* by start address */
    static std::map<uintptr_t, alloc_rec> m;
    return m;
}
#define g_allocs allocs()
static size_t g_dev_used;
static size_t page_size() {
    static size_t p = (size_t)sysconf(_SC_PAGESIZE);
    return p;
}

/* the allocation containing p (caller holds g_mu); end() if none */
static std::map<uintptr_t, alloc_rec>::iterator lookup(const void *p) {
    uintptr_t a = (uintptr_t)p;
    auto it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin()) return g_allocs.end();
    --it;
    size_t len = it->second.size ? it->second.size : 1;
    return a < it->first + len ? it : g_allocs.end();
}
int find_alloc(const void *p, uintptr_t *start, size_t *size) {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = lookup(p);
    if (it == g_allocs.end()) return MEM_NONE;
    if (start) *start = it->first;
    if (size) *size = it->second.size;
    return it->second.kind;
}
bool device_range(const void *p, size_t bytes) {
    uintptr_t s;
    size_t n;
    if (find_alloc(p, &s, &n) != MEM_DEVICE) return false;
    return (uintptr_t)p - s + bytes <= n;
}
void describe_ptr(const void *p, char *buf, size_t n) {
    uintptr_t s;
    size_t sz;
    int k = find_alloc(p, &s, &sz);
    if (k == MEM_DEVICE)
        snprintf(buf, n, "%p (offset %zu of a device allocation of %zu bytes)", p, (size_t)((uintptr_t)p - s), sz);
    else if (k == MEM_HOST_PINNED)
        snprintf(buf, n, "%p (pinned host memory)", p);
    else
        snprintf(buf, n, "%p (not device memory)", p);
}

static void install_fault_handler();

static void *dev_alloc(size_t bytes) {
    const size_t pg = page_size();
    size_t body = (bytes + 255) / 256 * 256;
    if (!body) body = 256;
    size_t maplen = (body + pg - 1) / pg * pg + pg;
    {
        std::lock_guard<std::mutex> lk(g_mu);
        if (g_dev_used + body > S().mem_bytes) return NULL;
    }
    char *m = (char *)mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return NULL;
    if (mprotect(m + maplen - pg, pg, PROT_NONE)) {
        munmap(m, maplen);
        return NULL;
    }
    char *p = m + maplen - pg - body;
    if (S().poison) memset(p, 0xff, body);
    std::lock_guard<std::mutex> lk(g_mu);
    g_allocs[(uintptr_t)p] = alloc_rec{bytes, body, m, maplen, MEM_DEVICE};
    g_dev_used += body;
    return p;
}

/* ---- streams and events --------------------------------------------------------------------------- */
struct stream_rec {
    unsigned flags;
};
struct event_rec {
    unsigned flags;
    int recorded;
    double t;
};
static std::set<const void *> &streams() {
    static std::set<const void *> s;
    return s;
}
static std::set<const void *> &events() {
    static std::set<const void *> s;
    return s;
}
#define g_streams streams()
#define g_events events()
bool stream_valid(cudaStream_t s) {
    if (!s || s == cudaStreamLegacy || s == cudaStreamPerThread) return true;
    std::lock_guard<std::mutex> lk(g_mu);
    return g_streams.count((const void *)s) != 0;
}
static bool event_valid(cudaEvent_t e) {
    std::lock_guard<std::mutex> lk(g_mu);
    return e && g_events.count((const void *)e) != 0;
}
static double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
long long clock64() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* ---- fibers --------------------------------------------------------------------------------------- */
struct fiber {
#ifdef QASIM_UCONTEXT
    ucontext_t uc;
#else
    void *sp;
#endif
};
#ifndef QASIM_UCONTEXT
extern "C" void qasim_ctx_switch(void **save_sp, void *to_sp);
#if defined(__x86_64__)
/* the callee-saved registers on the stack, the stack pointer in *save_sp (kernels never change the FP control
 * state: MXCSR and the x87 control word are left alone, as fast fiber libraries do) */
__asm__(".text\n"
        ".globl qasim_ctx_switch\n"
        ".hidden qasim_ctx_switch\n"
        ".type qasim_ctx_switch,@function\n"
        "qasim_ctx_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size qasim_ctx_switch, .-qasim_ctx_switch\n"
        ".section .note.GNU-stack,\"\",@progbits\n"
        ".text\n");
#elif defined(__aarch64__)
__asm__(".text\n"
        ".globl qasim_ctx_switch\n"
        ".hidden qasim_ctx_switch\n"
        ".type qasim_ctx_switch,%function\n"
        "qasim_ctx_switch:\n"
        "  sub sp, sp, #176\n"
        "  stp x19, x20, [sp, #0]\n  stp x21, x22, [sp, #16]\n  stp x23, x24, [sp, #32]\n"
        "  stp x25, x26, [sp, #48]\n  stp x27, x28, [sp, #64]\n  stp x29, x30, [sp, #80]\n"
        "  stp d8, d9, [sp, #96]\n  stp d10, d11, [sp, #112]\n  stp d12, d13, [sp, #128]\n  stp d14, d15, [sp, #144]\n"
        "  mov x2, sp\n  str x2, [x0]\n"
        "  mov sp, x1\n"
        "  ldp x19, x20, [sp, #0]\n  ldp x21, x22, [sp, #16]\n  ldp x23, x24, [sp, #32]\n"
        "  ldp x25, x26, [sp, #48]\n  ldp x27, x28, [sp, #64]\n  ldp x29, x30, [sp, #80]\n"
        "  ldp d8, d9, [sp, #96]\n  ldp d10, d11, [sp, #112]\n  ldp d12, d13, [sp, #128]\n  ldp d14, d15, [sp, #144]\n"
        "  add sp, sp, #176\n"
        "  ret\n"
        ".size qasim_ctx_switch, .-qasim_ctx_switch\n"
        ".section .note.GNU-stack,\"\",%progbits\n"
        ".text\n");
#endif
#endif

static void fiber_entry();
static const size_t STACK = (size_t)128 << 10; /* per GPU thread */
static char *g_stacks;                          /* 1024 stacks, each above a guard page */
static fiber g_sched;                           /* the scheduler's context */

static char *stack_top(unsigned i) { return g_stacks + (size_t)(i + 1) * (STACK + page_size()); }
static bool stacks_init() {
    if (g_stacks) return true;
    const size_t pg = page_size(), one = STACK + pg;
    char *m = (char *)mmap(NULL, one * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                           -1, 0);
    if (m == MAP_FAILED) return false;
    for (unsigned i = 0; i < 1024; i++) mprotect(m + (size_t)i * one, pg, PROT_NONE);
    g_stacks = m;
    return true;
}
/* free stacks, most recently released last: a thread that runs to its end without blocking hands a cache-hot
 * stack to the next */
static unsigned g_free_stacks[1024], g_nfree;
static void fiber_init(fiber *f, unsigned i) {
    char *top = stack_top(i);
#ifdef QASIM_UCONTEXT
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = top - STACK;
    f->uc.uc_stack.ss_size = STACK;
    f->uc.uc_link = NULL;
    makecontext(&f->uc, fiber_entry, 0);
#elif defined(__x86_64__)
    /* six registers, the entry as return address, a zero return address for it (entered like a call) */
    uint64_t *sp = (uint64_t *)(top - 64);
    memset(sp, 0, 64);
    sp[6] = (uint64_t)(uintptr_t)&fiber_entry;
    f->sp = sp;
#else
    uint64_t *sp = (uint64_t *)(top - 176);
    memset(sp, 0, 176);
    sp[11] = (uint64_t)(uintptr_t)&fiber_entry; /* x30 */
    f->sp = sp;
#endif
}
static inline void fiber_switch(fiber *from, fiber *to) {
#ifdef QASIM_UCONTEXT
    swapcontext(&from->uc, &to->uc);
#else
    qasim_ctx_switch(&from->sp, to->sp);
#endif
}

/* ---- the launch ----------------------------------------------------------------------------------- */
enum { T_NEW, T_READY, T_RUN, T_BAR, T_WARP, T_DONE };
struct gthread {
    fiber f;
    int state;
    unsigned lin, stack;
    uint3 tid;
    /* a pending warp collective */
    int wkind, warg, wwidth;
    unsigned wmask;
    uint64_t wval, wres;
    int bres; /* barrier result (__syncthreads_count/and/or) */
};
struct pending {
    unsigned mask, arrived;
    int kind;
    const char *what;
};
struct gwarp {
    unsigned exist, exited;
    int np;
    pending p[32]; /* a lane waits in at most one */
};
struct svar {
    const void *key;
    size_t off, bytes;
};
static const size_t SMEM_STATIC_MAX = 48u << 10, SMEM_OPTIN_MAX = 227u << 10;
struct launch_state {
    const launch_cfg *cfg;
    void (*body)(void *);
    void *ctx;
    std::vector<gthread> th;
    std::vector<gwarp> warps;
    unsigned n, alive;
    gthread *cur;
    bool abort;
    /* the block barrier */
    unsigned bar_arrived;
    int bar_kind, bar_count, bar_and, bar_or;
    const char *bar_file;
    int bar_line;
    /* shared memory: static variables from the bottom of the arena, dynamic at its top (a guard page above) */
    char *smem;
    size_t smem_used, smem_limit, dyn;
    std::vector<svar> svars;
    /* when the fault handler needs to say where it was */
    const char *fault_context;
};
static launch_state L;
static int g_reverse, g_greedy, g_poison; /* settings, read once per launch */
static std::recursive_mutex &launch_mu() {
    static std::recursive_mutex m;
    return m;
}
#define g_launch_mu launch_mu()
static bool g_in_kernel;
static std::map<const void *, int> &max_dyn_smem() { /* per kernel: cudaFuncSetAttribute */
    static std::map<const void *, int> m;
    return m;
}
static std::map<const void *, int> &launch_bounds() { /* per kernel: __launch_bounds__ */
    static std::map<const void *, int> m;
    return m;
}
#define g_max_dyn_smem max_dyn_smem()
#define g_launch_bounds launch_bounds()
static char *g_smem_arena;                                        /* SMEM_OPTIN_MAX + a guard page */

void set_fault_context(const char *what) { L.fault_context = what; }

static void where(char *buf, size_t n) {
    if (L.cur)
        snprintf(buf, n, "kernel %s (launched at %s:%d) block (%u,%u,%u) thread (%u,%u,%u)", L.cfg->name,
                 L.cfg->file, L.cfg->line, blockIdx.x, blockIdx.y, blockIdx.z, L.cur->tid.x, L.cur->tid.y,
                 L.cur->tid.z);
    else if (L.cfg && g_in_kernel)
        snprintf(buf, n, "kernel %s (launched at %s:%d) block (%u,%u,%u)", L.cfg->name, L.cfg->file, L.cfg->line,
                 blockIdx.x, blockIdx.y, blockIdx.z);
    else
        snprintf(buf, n, "host code");
}

void kernel_fault(const char *fmt, ...) {
    char msg[1536], w[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    where(w, sizeof w);
    if (!g_in_kernel || !L.cur) {
        note("fatal: %s: %s", w, msg);
        abort();
    }
    device_fault(cudaErrorLaunchFailure, "%s: %s", w, msg);
    L.abort = true;
    gthread *t = L.cur;
    t->state = T_DONE;
    fiber_switch(&t->f, &g_sched); /* never resumed */
    abort();
}

/* The run queue: threads that may run (new, or released by a barrier or collective), in the order they became
 * runnable; each thread is in it at most once. A thread that blocks or ends hands over to the next one
 * directly; the scheduler's context is entered only when the queue is empty (block done, or deadlock). */
static std::vector<unsigned> g_rq; /* a ring of L.n entries */
static unsigned g_rq_head, g_rq_count;
static inline void rq_push_back(unsigned i) { g_rq[(g_rq_head + g_rq_count++) % L.n] = i; }
static inline void rq_push_front(unsigned i) {
    g_rq_head = (g_rq_head + L.n - 1) % L.n;
    g_rq[g_rq_head] = i;
    g_rq_count++;
}
static inline unsigned rq_pop() {
    unsigned i = g_rq[g_rq_head];
    g_rq_head = (g_rq_head + 1) % L.n;
    g_rq_count--;
    return i;
}
static inline void make_ready(gthread *t) {
    t->state = T_READY;
    rq_push_back(t->lin);
}
/* t stops running (state: waiting or done); the next runnable thread continues */
static void switch_away(gthread *t, int state) {
    t->state = state;
    if (g_rq_count) {
        gthread *u = &L.th[rq_pop()];
        if (u->state == T_NEW) {
            u->stack = g_free_stacks[--g_nfree];
            fiber_init(&u->f, u->stack);
        }
        if (state == T_DONE) g_free_stacks[g_nfree++] = t->stack; /* no one runs on it before the switch */
        u->state = T_RUN;
        L.cur = u;
        threadIdx = u->tid;
        fiber_switch(&t->f, &u->f);
    } else {
        if (state == T_DONE) g_free_stacks[g_nfree++] = t->stack;
        L.cur = NULL;
        fiber_switch(&t->f, &g_sched);
    }
}

static void release_barrier() {
    int res = L.bar_kind == SYNC_COUNT ? L.bar_count : L.bar_kind == SYNC_AND ? L.bar_and
                                                      : L.bar_kind == SYNC_OR ? L.bar_or : 0;
    for (unsigned ii = 0; ii < L.n; ii++) {
        gthread *t = &L.th[g_reverse ? L.n - 1 - ii : ii];
        if (t->state == T_BAR) {
            t->bres = res;
            make_ready(t);
        }
    }
    L.bar_arrived = 0;
    L.cur->bres = res;
}

static int barrier_at(int kind, int pred, const char *file, int line) {
    if (!g_in_kernel || !L.cur) kernel_fault("__syncthreads() outside a kernel");
    if (L.bar_arrived == 0) {
        L.bar_kind = kind;
        L.bar_file = file;
        L.bar_line = line;
        L.bar_count = 0;
        L.bar_and = 1;
        L.bar_or = 0;
    } else if (line != L.bar_line || (file != L.bar_file && strcmp(file, L.bar_file))) {
        kernel_fault("reaches the barrier at %s:%d while %u thread(s) of its block wait at the barrier at %s:%d: "
                     "__syncthreads() in divergent code", file, line, L.bar_arrived, L.bar_file, L.bar_line);
    } else if (kind != L.bar_kind) {
        kernel_fault("different __syncthreads variants meet at %s:%d", file, line);
    }
    L.bar_arrived++;
    L.bar_count += pred != 0;
    L.bar_and &= pred != 0;
    L.bar_or |= pred != 0;
    if (L.bar_arrived == L.alive) {
        release_barrier();
        return L.cur->bres;
    }
    gthread *t = L.cur;
    switch_away(t, T_BAR);
    return t->bres;
}

/* every lane of p has arrived: compute each lane's result and wake the others */
static void complete(unsigned w, const pending &p) {
    gthread *lanes = &L.th[(size_t)w * 32];
    const unsigned mask = p.mask;
    uint64_t all = 0;
    bool all_eq = true;
    int first = __builtin_ctz(mask);
    int64_t sadd = 0, smin = INT64_MAX, smax = INT64_MIN;
    uint32_t umin = UINT32_MAX, umax = 0, uand = ~0u, uor = 0, uxor = 0;
    for (unsigned l = 0; l < 32 && p.kind >= W_BALLOT; l++) {
        if (!(mask >> l & 1)) continue;
        const gthread &x = lanes[l];
        if (x.wval) all |= 1u << l;
        if (x.wval != lanes[first].wval) all_eq = false;
        int32_t sv = (int32_t)(uint32_t)x.wval;
        uint32_t uv = (uint32_t)x.wval;
        sadd += uv;
        if (sv < smin) smin = sv;
        if (sv > smax) smax = sv;
        if (uv < umin) umin = uv;
        if (uv > umax) umax = uv;
        uand &= uv;
        uor |= uv;
        uxor ^= uv;
    }
    for (unsigned l0 = 0; l0 < 32; l0++) {
        const unsigned l = g_greedy ? 31 - l0 : l0; /* greedy: pushed to the front in reverse, run in lane order */
        if (!(mask >> l & 1)) continue;
        gthread &x = lanes[l];
        uint64_t r = 0;
        switch (p.kind) {
        case W_SYNC: break;
        case W_SHFL_IDX: case W_SHFL_UP: case W_SHFL_DOWN: case W_SHFL_XOR: {
            const int width = x.wwidth, seg = (int)l & ~(width - 1);
            long src;
            if (p.kind == W_SHFL_IDX) src = seg + (x.warg & (width - 1));
            else if (p.kind == W_SHFL_UP) { src = (long)l - (unsigned)x.warg; if (src < seg) src = l; }
            else if (p.kind == W_SHFL_DOWN) { src = (long)l + (unsigned)x.warg; if (src >= seg + width) src = l; }
            else { src = (long)(l ^ (unsigned)x.warg); if (src >= seg + width || src > 31) src = l; }
            if (!(mask >> src & 1)) {
                L.cur = &x;
                kernel_fault("%s: lane %u reads lane %ld, which is not in the mask 0x%08x (undefined on the GPU)",
                             p.what, l, src, mask);
            }
            r = lanes[src].wval;
            break;
        }
        case W_BALLOT: r = all; break;
        case W_ALL: r = all == mask; break;
        case W_ANY: r = all != 0; break;
        case W_UNI: r = all == mask || all == 0; break;
        case W_MATCH_ANY: {
            uint32_t m = 0;
            for (unsigned j = 0; j < 32; j++)
                if ((mask >> j & 1) && lanes[j].wval == x.wval) m |= 1u << j;
            r = m;
            break;
        }
        case W_MATCH_ALL: r = all_eq ? mask : 0; break;
        case W_RED_ADD: r = (uint32_t)sadd; break;
        case W_RED_MIN: r = (uint64_t)smin; break;
        case W_RED_MAX: r = (uint64_t)smax; break;
        case W_RED_UMIN: r = umin; break;
        case W_RED_UMAX: r = umax; break;
        case W_RED_AND: r = uand; break;
        case W_RED_OR: r = uor; break;
        case W_RED_XOR: r = uxor; break;
        }
        x.wres = r;
        if (&x != L.cur) {
            x.state = T_READY;
            if (g_greedy) rq_push_front(x.lin);
            else rq_push_back(x.lin);
        }
    }
}

uint64_t warp_collective(int kind, unsigned mask, uint64_t value, int arg, int width, const char *what) {
    if (!g_in_kernel || !L.cur) kernel_fault("%s outside a kernel", what);
    gthread *t = L.cur;
    const unsigned lane = t->lin & 31, w = t->lin >> 5;
    gwarp &W = L.warps[w];
    if (!(mask >> lane & 1)) kernel_fault("%s: the calling lane %u is not in its mask 0x%08x", what, lane, mask);
    if (mask & ~W.exist)
        kernel_fault("%s: mask 0x%08x names lanes that do not exist (the block has %u threads: warp %u has lanes "
                     "0x%08x)", what, mask, L.n, w, W.exist);
    if (mask & W.exited)
        kernel_fault("%s: mask 0x%08x names lane %d, which has exited", what, mask, __builtin_ctz(mask & W.exited));
    if (kind >= W_SHFL_IDX && kind <= W_SHFL_XOR && (width < 1 || width > 32 || (width & (width - 1))))
        kernel_fault("%s: width %d is not a power of 2 in [1, 32]", what, width);
    /* the lanes of mask meet in the same collective (kind and mask); collectives of other masks may be pending at
     * once (lanes 0-15 in one of mask 0xffff while lanes 16-31 wait in a full-warp one for them): lanes that
     * never meet end in a deadlock, which the scheduler reports with every pending collective */
    pending *p = NULL;
    for (int i = 0; i < W.np; i++)
        if (W.p[i].mask == mask && W.p[i].kind == kind) {
            p = &W.p[i];
            break;
        }
    if (!p) {
        p = &W.p[W.np++];
        *p = pending{mask, 0, kind, what};
    }
    t->wkind = kind;
    t->wmask = mask;
    t->wval = value;
    t->warg = arg;
    t->wwidth = width;
    p->arrived |= 1u << lane;
    if (p->arrived == mask) {
        pending done = *p;
        *p = W.p[--W.np];
        complete(w, done);
        return t->wres;
    }
    switch_away(t, T_WARP);
    return t->wres;
}

unsigned active_mask() {
    if (!g_in_kernel || !L.cur) return 0;
    const gwarp &W = L.warps[L.cur->lin >> 5];
    return W.exist & ~W.exited;
}

static void thread_exit() {
    gthread *t = L.cur;
    const unsigned lane = t->lin & 31, w = t->lin >> 5;
    gwarp &W = L.warps[w];
    for (int i = 0; i < W.np; i++)
        if ((W.p[i].mask >> lane & 1) && !(W.p[i].arrived >> lane & 1))
            kernel_fault("exits while lanes 0x%08x of its warp wait for it in %s (mask 0x%08x)", W.p[i].arrived,
                         W.p[i].what, W.p[i].mask);
    W.exited |= 1u << lane;
    L.alive--;
    if (L.bar_arrived && L.bar_arrived == L.alive) release_barrier();
    switch_away(t, T_DONE); /* never resumed */
    abort();
}

static void fiber_entry() {
    L.body(L.ctx);
    thread_exit();
}

void *shared_var(const void *key, size_t bytes, size_t align) {
    if (!g_in_kernel) kernel_fault("__shared__ variable outside a kernel");
    for (const svar &v : L.svars)
        if (v.key == key) return L.smem + v.off;
    size_t off = (L.smem_used + align - 1) / align * align;
    if (off + bytes > SMEM_STATIC_MAX || off + bytes + L.dyn > L.smem_limit)
        kernel_fault("__shared__ variables of %zu bytes (+%zu dynamic) exceed the shared memory of a block (%zu static, "
                     "%zu in all)", off + bytes, L.dyn, SMEM_STATIC_MAX, L.smem_limit);
    if (g_poison) memset(L.smem + off, 0xff, bytes);
    L.smem_used = off + bytes;
    L.svars.push_back(svar{key, off, bytes});
    return L.smem + off;
}
void *dynamic_shared(size_t align) {
    if (!g_in_kernel) kernel_fault("extern __shared__ outside a kernel");
    (void)align; /* the dynamic block ends at a page boundary and starts 16-byte aligned */
    return g_smem_arena + SMEM_OPTIN_MAX - ((L.dyn + 15) / 16 * 16);
}

static void run_block() {
    const unsigned n = L.n;
    L.alive = n;
    L.bar_arrived = 0;
    L.smem = g_smem_arena;
    L.smem_used = 0;
    L.svars.clear();
    if (L.dyn && g_poison) memset(dynamic_shared(16), 0xff, L.dyn);
    for (unsigned i = 0; i < n; i++) L.th[i].state = T_NEW;
    for (auto &w : L.warps) {
        w.exited = 0;
        w.np = 0;
    }
    if (g_nfree != 1024) { /* after an aborted block: every stack is free again */
        for (unsigned i = 0; i < 1024; i++) g_free_stacks[i] = 1023 - i;
        g_nfree = 1024;
    }
    if (g_rq.size() < n) g_rq.resize(n);
    g_rq_head = g_rq_count = 0;
    for (unsigned ii = 0; ii < n; ii++) rq_push_back(g_reverse ? n - 1 - ii : ii);
    {
        /* the threads run until the queue is empty */
        gthread *t = &L.th[rq_pop()];
        t->stack = g_free_stacks[--g_nfree];
        fiber_init(&t->f, t->stack);
        t->state = T_RUN;
        L.cur = t;
        threadIdx = t->tid;
        fiber_switch(&g_sched, &t->f);
        L.cur = NULL;
        if (L.abort || L.alive == 0) return;
        {
            char msg[1024];
            int k = snprintf(msg, sizeof msg, "deadlock: %u thread(s) alive", L.alive);
            if (L.bar_arrived)
                k += snprintf(msg + k, sizeof msg - k, ", %u wait at the barrier at %s:%d", L.bar_arrived, L.bar_file,
                              L.bar_line);
            for (size_t w = 0; w < L.warps.size(); w++)
                for (int i = 0; i < L.warps[w].np && k < (int)sizeof msg - 100; i++)
                    k += snprintf(msg + k, sizeof msg - k, ", warp %zu: lanes 0x%08x wait in %s (mask 0x%08x)", w,
                                  L.warps[w].p[i].arrived, L.warps[w].p[i].what, L.warps[w].p[i].mask);
            char w[512];
            where(w, sizeof w);
            device_fault(cudaErrorLaunchFailure, "%s: %s", w, msg);
            L.abort = true;
            return;
        }
    }
}

static void on_fault(int sig, siginfo_t *si, void *uc);
static struct sigaction g_old_segv, g_old_bus;
static void install_fault_handler() {
    static bool done;
    if (done) return;
    done = true;
    stack_t ss;
    ss.ss_size = 1 << 16;
    ss.ss_sp = malloc(ss.ss_size);
    ss.ss_flags = 0;
    if (ss.ss_sp) sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_old_segv);
    sigaction(SIGBUS, &sa, &g_old_bus);
}

/* a fault while a kernel (or a cuBLAS call) runs: say which thread touched what, then die of the signal */
static void on_fault(int sig, siginfo_t *si, void *uc) {
    if (!g_in_kernel && !L.fault_context) {
        struct sigaction *old = sig == SIGSEGV ? &g_old_segv : &g_old_bus;
        if ((old->sa_flags & SA_SIGINFO) && old->sa_sigaction) {
            old->sa_sigaction(sig, si, uc);
            return;
        }
        if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
            old->sa_handler(sig);
            return;
        }
        signal(sig, SIG_DFL);
        return;
    }
    char w[512], what[512];
    if (L.fault_context && !g_in_kernel) snprintf(w, sizeof w, "%s", L.fault_context);
    else where(w, sizeof w);
    uintptr_t a = (uintptr_t)si->si_addr;
    snprintf(what, sizeof what, "an invalid address");
    for (auto &kv : g_allocs) { /* no lock: the process is about to die */
        const alloc_rec &r = kv.second;
        if (r.kind != MEM_DEVICE) continue;
        uintptr_t end = kv.first + r.body;
        if (a >= end && a < end + page_size()) {
            snprintf(what, sizeof what, "%zu bytes past the end of a device allocation of %zu bytes at %p",
                     (size_t)(a - kv.first) - r.size, r.size, (void *)kv.first);
            break;
        }
    }
    if (g_stacks && a >= (uintptr_t)g_stacks && a < (uintptr_t)g_stacks + 1024 * (STACK + page_size()))
        snprintf(what, sizeof what, "the guard page of a GPU thread's stack (stack overflow: %zu KiB per thread)",
                 STACK >> 10);
    if (g_smem_arena && a >= (uintptr_t)g_smem_arena + SMEM_OPTIN_MAX &&
        a < (uintptr_t)g_smem_arena + SMEM_OPTIN_MAX + page_size())
        snprintf(what, sizeof what, "past the end of the block's %zu bytes of dynamic shared memory", L.dyn);
    char buf[1400];
    int k = snprintf(buf, sizeof buf, "qasim: %s: %s at %p: %s (cudaErrorIllegalAddress on a GPU)\n", w,
                     sig == SIGSEGV ? "SIGSEGV" : "SIGBUS", si->si_addr, what);
    if (k > 0) {
        ssize_t r = write(2, buf, (size_t)k < sizeof buf ? (size_t)k : sizeof buf);
        (void)r;
    }
    signal(sig, SIG_DFL);
}

cudaError_t func_set_attribute(const void *fn, int attr, int value) {
    if (!fn) return api_error(cudaErrorInvalidDeviceFunction);
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value < 0 || (size_t)value > SMEM_OPTIN_MAX) return api_error(cudaErrorInvalidValue);
        std::lock_guard<std::recursive_mutex> lk(g_launch_mu);
        g_max_dyn_smem[fn] = value;
        return cudaSuccess;
    }
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
    return api_error(cudaErrorInvalidValue);
}
launch_bounds_reg::launch_bounds_reg(const void *fn, const char *name, int max_threads, int min_blocks,
                                     int max_cluster) {
    (void)name;
    (void)min_blocks;
    (void)max_cluster;
    std::lock_guard<std::recursive_mutex> lk(g_launch_mu);
    g_launch_bounds[fn] = max_threads;
}

/* QASIM_VERBOSE=1: totals at exit; 2: per kernel */
struct kstat {
    unsigned long long launches, blocks, threads;
    double seconds;
};
static struct launch_stats {
    kstat all;
    std::map<std::string, kstat> per;
    void add(const char *name, unsigned long long blocks, unsigned long long threads, double s) {
        for (kstat *k : {&all, &per[name]}) {
            k->launches++;
            k->blocks += blocks;
            k->threads += threads;
            k->seconds += s;
        }
    }
    ~launch_stats() {
        if (S().verbose >= 2)
            for (auto &kv : per)
                note("%-24s %8llu launches %10llu blocks %12llu threads %8.3f s", kv.first.c_str(), kv.second.launches,
                     kv.second.blocks, kv.second.threads, kv.second.seconds);
        if (S().verbose)
            note("%llu launches, %llu blocks, %llu threads, %.2f s in kernels", all.launches, all.blocks, all.threads,
                 all.seconds);
    }
} g_stats;

void run_launch(const launch_cfg &c, void (*body)(void *), void *ctx) {
    std::lock_guard<std::recursive_mutex> lk(g_launch_mu);
    if (g_in_kernel) kernel_fault("launches kernel %s: dynamic parallelism is not simulated", c.name);
    if (api_error(cudaSuccess) != cudaSuccess) return; /* sticky: the launch fails with it */
    if (!stream_valid(c.stream)) {
        api_error(cudaErrorInvalidResourceHandle);
        return;
    }
    const dim3 g = c.grid, b = c.block;
    const unsigned long long nthreads = (unsigned long long)b.x * b.y * b.z;
    if (!b.x || !b.y || !b.z || b.x > 1024 || b.y > 1024 || b.z > 64 || nthreads > 1024 || !g.x || !g.y || !g.z ||
        g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
        if (S().verbose)
            note("launch of %s at %s:%d: grid (%u,%u,%u) block (%u,%u,%u): invalid configuration", c.name, c.file,
                 c.line, g.x, g.y, g.z, b.x, b.y, b.z);
        api_error(cudaErrorInvalidConfiguration);
        return;
    }
    auto lb = g_launch_bounds.find(c.fn);
    if (lb != g_launch_bounds.end() && nthreads > (unsigned long long)lb->second) {
        if (S().verbose)
            note("launch of %s at %s:%d: %llu threads per block > __launch_bounds__(%d)", c.name, c.file, c.line,
                 nthreads, lb->second);
        api_error(cudaErrorLaunchOutOfResources);
        return;
    }
    auto md = g_max_dyn_smem.find(c.fn);
    size_t max_dyn = md != g_max_dyn_smem.end() ? (size_t)md->second : SMEM_STATIC_MAX;
    if (c.shmem > max_dyn) {
        if (S().verbose)
            note("launch of %s at %s:%d: %zu bytes of dynamic shared memory > %zu", c.name, c.file, c.line, c.shmem,
                 max_dyn);
        api_error(cudaErrorInvalidValue);
        return;
    }
    if (!stacks_init()) {
        api_error(cudaErrorMemoryAllocation);
        return;
    }
    if (!g_smem_arena) {
        const size_t pg = page_size(), len = (SMEM_OPTIN_MAX + pg - 1) / pg * pg + pg;
        char *m = (char *)mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            api_error(cudaErrorMemoryAllocation);
            return;
        }
        /* the arena's end (the end of dynamic shared memory) abuts the guard page */
        g_smem_arena = m + len - pg - SMEM_OPTIN_MAX;
        mprotect(m + len - pg, pg, PROT_NONE);
    }
    install_fault_handler();
    g_reverse = S().reverse;
    g_greedy = S().greedy;
    g_poison = S().poison;
    double t0 = now_s();
    L.cfg = &c;
    L.body = body;
    L.ctx = ctx;
    L.n = (unsigned)nthreads;
    L.th.resize(L.n);
    L.warps.assign((L.n + 31) / 32, gwarp());
    for (unsigned i = 0; i < L.n; i++) {
        gthread &t = L.th[i];
        t.lin = i;
        t.tid = uint3{i % b.x, (i / b.x) % b.y, i / (b.x * b.y)};
        L.warps[i >> 5].exist |= 1u << (i & 31);
    }
    L.abort = false;
    L.cur = NULL;
    L.dyn = c.shmem;
    L.smem_limit = max_dyn > SMEM_STATIC_MAX ? max_dyn : SMEM_STATIC_MAX;
    gridDim = g;
    blockDim = b;
    g_in_kernel = true;
    const unsigned long long nblocks = (unsigned long long)g.x * g.y * g.z;
    for (unsigned long long i = 0; i < nblocks && !L.abort; i++) {
        unsigned long long bi = g_reverse ? nblocks - 1 - i : i;
        blockIdx = uint3{(unsigned)(bi % g.x), (unsigned)(bi / g.x % g.y), (unsigned)(bi / ((unsigned long long)g.x * g.y))};
        run_block();
    }
    g_in_kernel = false;
    L.cur = NULL;
    L.cfg = NULL;
    if (S().verbose) g_stats.add(c.name, nblocks, nblocks * nthreads, now_s() - t0);
}

} // namespace qasim

using namespace qasim;

/* ---- barriers (source line of the call: a barrier reached from two lines at once is divergent) ------ */
int qasim_syncthreads_at(int kind, int pred, const char *file, int line) {
    return barrier_at(kind, pred, file, line);
}

/* ---- the runtime API ------------------------------------------------------------------------------ */
const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
#define N(x) case x: return #x;
    N(cudaSuccess) N(cudaErrorInvalidValue) N(cudaErrorMemoryAllocation) N(cudaErrorInitializationError)
    N(cudaErrorCudartUnloading) N(cudaErrorInvalidConfiguration) N(cudaErrorInvalidPitchValue)
    N(cudaErrorInvalidSymbol) N(cudaErrorInvalidDevicePointer) N(cudaErrorInvalidMemcpyDirection)
    N(cudaErrorInsufficientDriver) N(cudaErrorInvalidDeviceFunction) N(cudaErrorNoDevice) N(cudaErrorInvalidDevice)
    N(cudaErrorInvalidKernelImage) N(cudaErrorNoKernelImageForDevice) N(cudaErrorInvalidResourceHandle)
    N(cudaErrorNotReady) N(cudaErrorIllegalAddress) N(cudaErrorLaunchOutOfResources) N(cudaErrorLaunchTimeout)
    N(cudaErrorAssert) N(cudaErrorIllegalInstruction) N(cudaErrorMisalignedAddress) N(cudaErrorLaunchFailure)
    N(cudaErrorNotSupported) N(cudaErrorUnknown)
#undef N
    }
    return "cudaErrorUnknown";
}
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorCudartUnloading: return "driver shutting down";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidPitchValue: return "invalid pitch argument";
    case cudaErrorInvalidSymbol: return "invalid device symbol";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidKernelImage: return "device kernel image is invalid";
    case cudaErrorNoKernelImageForDevice: return "no kernel image is available for execution on the device";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchTimeout: return "the launch timed out and was terminated";
    case cudaErrorAssert: return "device-side assert triggered";
    case cudaErrorIllegalInstruction: return "an illegal instruction was encountered";
    case cudaErrorMisalignedAddress: return "misaligned address";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
    default: return "unknown error";
    }
}
cudaError_t cudaGetLastError(void) {
    cudaError_t st = sticky();
    if (st != cudaSuccess) return st;
    cudaError_t e = t_last;
    t_last = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) {
    cudaError_t st = sticky();
    return st != cudaSuccess ? st : t_last;
}

/* ---- devices -------------------------------------------------------------------------------------- */
cudaError_t cudaGetDeviceCount(int *count) {
    if (!count) return api_error(cudaErrorInvalidValue);
    if (S().devices <= 0) {
        *count = 0;
        return api_error(cudaErrorNoDevice);
    }
    *count = S().devices;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *device) {
    if (!device) return api_error(cudaErrorInvalidValue);
    if (S().devices <= 0) return api_error(cudaErrorNoDevice);
    *device = t_device;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
    if (S().devices <= 0) return api_error(cudaErrorNoDevice);
    if (device < 0 || device >= S().devices) return api_error(cudaErrorInvalidDevice);
    t_device = device;
    return api_error(cudaSuccess);
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device) {
    if (!p) return api_error(cudaErrorInvalidValue);
    if (S().devices <= 0) return api_error(cudaErrorNoDevice);
    if (device < 0 || device >= S().devices) return api_error(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CUDA simulator (sm_%d, kernels/cuda/sim)", S().sm);
    p->totalGlobalMem = S().mem_bytes;
    p->sharedMemPerBlock = SMEM_STATIC_MAX;
    p->sharedMemPerBlockOptin = SMEM_OPTIN_MAX;
    p->sharedMemPerMultiprocessor = 228u << 10;
    p->regsPerBlock = p->regsPerMultiprocessor = 65536;
    p->warpSize = 32;
    p->memPitch = (size_t)1 << 31;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647;
    p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->clockRate = 1980000;
    p->totalConstMem = 65536;
    p->major = S().sm / 10;
    p->minor = S().sm % 10;
    p->textureAlignment = 512;
    p->multiProcessorCount = 132;
    p->concurrentKernels = 1;
    p->pciBusID = device;
    p->asyncEngineCount = 2;
    p->unifiedAddressing = 1;
    p->l2CacheSize = 50 << 20;
    p->maxThreadsPerMultiProcessor = 2048;
    p->managedMemory = 1;
    p->maxBlocksPerMultiProcessor = 32;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, device);
    if (e != cudaSuccess) return e;
    if (!value) return api_error(cudaErrorInvalidValue);
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *value = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxBlockDimY: *value = p.maxThreadsDim[1]; break;
    case cudaDevAttrMaxBlockDimZ: *value = p.maxThreadsDim[2]; break;
    case cudaDevAttrMaxGridDimX: *value = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: *value = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: *value = p.maxGridSize[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)p.sharedMemPerBlockOptin; break;
    default: return api_error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) { return api_error(cudaSuccess); }
cudaError_t cudaDeviceReset(void) {
    std::lock_guard<std::mutex> lk(g_mu);
    g_sticky = cudaSuccess;
    t_last = cudaSuccess;
    return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *v) {
    if (!v) return api_error(cudaErrorInvalidValue);
    *v = 13000;
    return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *v) {
    if (!v) return api_error(cudaErrorInvalidValue);
    *v = 13000;
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    if (!free_bytes || !total_bytes) return api_error(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lk(g_mu);
    *total_bytes = S().mem_bytes;
    *free_bytes = S().mem_bytes - g_dev_used;
    return g_sticky != cudaSuccess ? (t_last = g_sticky) : cudaSuccess;
}

/* ---- memory --------------------------------------------------------------------------------------- */
cudaError_t cudaMalloc(void **ptr, size_t bytes) {
    if (!ptr) return api_error(cudaErrorInvalidValue);
    if (sticky() != cudaSuccess) return api_error(cudaSuccess);
    if (!bytes) {
        *ptr = NULL;
        return cudaSuccess;
    }
    void *p = dev_alloc(bytes);
    if (!p) return api_error(cudaErrorMemoryAllocation);
    *ptr = p;
    return cudaSuccess;
}
cudaError_t cudaFree(void *ptr) {
    if (!ptr) return api_error(cudaSuccess);
    alloc_rec r;
    {
        std::lock_guard<std::mutex> lk(g_mu);
        auto it = g_allocs.find((uintptr_t)ptr);
        if (it == g_allocs.end() || it->second.kind != MEM_DEVICE) {
            t_last = cudaErrorInvalidValue;
            return cudaErrorInvalidValue;
        }
        r = it->second;
        g_allocs.erase(it);
        g_dev_used -= r.body;
    }
    munmap(r.map, r.maplen);
    return api_error(cudaSuccess);
}
cudaError_t cudaMallocHost(void **ptr, size_t bytes) {
    if (!ptr) return api_error(cudaErrorInvalidValue);
    void *p = malloc(bytes ? bytes : 1);
    if (!p) return api_error(cudaErrorMemoryAllocation);
    std::lock_guard<std::mutex> lk(g_mu);
    g_allocs[(uintptr_t)p] = alloc_rec{bytes, bytes, NULL, 0, MEM_HOST_PINNED};
    *ptr = p;
    return cudaSuccess;
}
cudaError_t cudaHostAlloc(void **ptr, size_t bytes, unsigned int flags) {
    (void)flags;
    return cudaMallocHost(ptr, bytes);
}
cudaError_t cudaFreeHost(void *ptr) {
    if (!ptr) return cudaSuccess;
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = g_allocs.find((uintptr_t)ptr);
    if (it == g_allocs.end() || it->second.kind != MEM_HOST_PINNED) return t_last = cudaErrorInvalidValue;
    g_allocs.erase(it);
    free(ptr);
    return cudaSuccess;
}
cudaError_t cudaHostRegister(void *ptr, size_t bytes, unsigned int flags) {
    (void)flags;
    if (!ptr || !bytes) return api_error(cudaErrorInvalidValue);
    return cudaSuccess;
}
cudaError_t cudaHostUnregister(void *ptr) { return ptr ? cudaSuccess : api_error(cudaErrorInvalidValue); }
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *attr, const void *ptr) {
    if (!attr) return api_error(cudaErrorInvalidValue);
    memset(attr, 0, sizeof *attr);
    int k = find_alloc(ptr, NULL, NULL);
    attr->type = k == MEM_DEVICE ? cudaMemoryTypeDevice : k == MEM_HOST_PINNED ? cudaMemoryTypeHost
                                                                                : cudaMemoryTypeUnregistered;
    attr->device = t_device;
    if (k == MEM_DEVICE) attr->devicePointer = (void *)ptr;
    else attr->hostPointer = (void *)ptr;
    return cudaSuccess;
}

/* the pointers of a copy agree with its direction; [p, p+n) of a device side inside one allocation */
static cudaError_t check_side(const char *fn, const char *which, const void *p, size_t n, bool device) {
    int k = find_alloc(p, NULL, NULL);
    if (device) {
        if (k != MEM_DEVICE || !device_range(p, n)) {
            char d[256];
            describe_ptr(p, d, sizeof d);
            note("%s: %s %s + %zu bytes is not inside one device allocation", fn, which, d, n);
            return cudaErrorInvalidValue;
        }
    } else if (k == MEM_DEVICE) {
        note("%s: %s %p is device memory but the copy's direction says host", fn, which, p);
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}
static cudaError_t do_copy(const char *fn, void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                           cudaStream_t st) {
    if (sticky() != cudaSuccess) return api_error(cudaSuccess);
    if (!stream_valid(st)) return api_error(cudaErrorInvalidResourceHandle);
    if (!bytes) return cudaSuccess;
    if (!dst || !src) return api_error(cudaErrorInvalidValue);
    if ((unsigned)kind > cudaMemcpyDefault) return api_error(cudaErrorInvalidMemcpyDirection);
    bool dd, sd;
    if (kind == cudaMemcpyDefault) {
        dd = find_alloc(dst, NULL, NULL) == MEM_DEVICE;
        sd = find_alloc(src, NULL, NULL) == MEM_DEVICE;
    } else {
        dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
        sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    }
    cudaError_t e = check_side(fn, "destination", dst, bytes, dd);
    if (e == cudaSuccess) e = check_side(fn, "source", src, bytes, sd);
    if (e != cudaSuccess) return api_error(e);
    memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind) {
    return do_copy("cudaMemcpy", dst, src, bytes, kind, 0);
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind, cudaStream_t s) {
    return do_copy("cudaMemcpyAsync", dst, src, bytes, kind, s);
}
cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                              enum cudaMemcpyKind kind, cudaStream_t s) {
    if (width > dpitch || width > spitch) return api_error(cudaErrorInvalidPitchValue);
    for (size_t r = 0; r < height; r++) {
        cudaError_t e = do_copy("cudaMemcpy2D", (char *)dst + r * dpitch, (const char *)src + r * spitch, width, kind, s);
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}
cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, size_t height,
                         enum cudaMemcpyKind kind) {
    return cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, kind, 0);
}
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t s) {
    if (sticky() != cudaSuccess) return api_error(cudaSuccess);
    if (!stream_valid(s)) return api_error(cudaErrorInvalidResourceHandle);
    if (!bytes) return cudaSuccess;
    cudaError_t e = check_side("cudaMemset", "destination", dst, bytes, true);
    if (e != cudaSuccess) return api_error(e);
    memset(dst, value, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemset(void *dst, int value, size_t bytes) { return cudaMemsetAsync(dst, value, bytes, 0); }

/* ---- streams and events --------------------------------------------------------------------------- */
cudaError_t cudaStreamCreateWithPriority(cudaStream_t *s, unsigned int flags, int priority) {
    (void)priority;
    if (!s) return api_error(cudaErrorInvalidValue);
    if (S().devices <= 0) return api_error(cudaErrorNoDevice);
    if (sticky() != cudaSuccess) return api_error(cudaSuccess);
    stream_rec *r = new stream_rec{flags};
    std::lock_guard<std::mutex> lk(g_mu);
    g_streams.insert(r);
    *s = (cudaStream_t)r;
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags) {
    return cudaStreamCreateWithPriority(s, flags, 0);
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithPriority(s, 0, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (!s || s == cudaStreamLegacy || s == cudaStreamPerThread) return api_error(cudaErrorInvalidResourceHandle);
    std::lock_guard<std::mutex> lk(g_mu);
    if (!g_streams.erase((const void *)s)) return t_last = cudaErrorInvalidResourceHandle;
    delete (stream_rec *)s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (!stream_valid(s)) return api_error(cudaErrorInvalidResourceHandle);
    return api_error(cudaSuccess);
}
cudaError_t cudaStreamQuery(cudaStream_t s) { return cudaStreamSynchronize(s); }
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t ev, unsigned int flags) {
    (void)flags;
    if (!stream_valid(s) || !event_valid(ev)) return api_error(cudaErrorInvalidResourceHandle);
    return api_error(cudaSuccess);
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *ev, unsigned int flags) {
    if (!ev) return api_error(cudaErrorInvalidValue);
    event_rec *r = new event_rec{flags, 0, 0};
    std::lock_guard<std::mutex> lk(g_mu);
    g_events.insert(r);
    *ev = (cudaEvent_t)r;
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *ev) { return cudaEventCreateWithFlags(ev, 0); }
cudaError_t cudaEventDestroy(cudaEvent_t ev) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!ev || !g_events.erase((const void *)ev)) return t_last = cudaErrorInvalidResourceHandle;
    delete (event_rec *)ev;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t ev, cudaStream_t s) {
    if (!event_valid(ev) || !stream_valid(s)) return api_error(cudaErrorInvalidResourceHandle);
    event_rec *r = (event_rec *)ev;
    r->recorded = 1;
    r->t = now_s();
    return api_error(cudaSuccess);
}
cudaError_t cudaEventSynchronize(cudaEvent_t ev) {
    if (!event_valid(ev)) return api_error(cudaErrorInvalidResourceHandle);
    return api_error(cudaSuccess);
}
cudaError_t cudaEventQuery(cudaEvent_t ev) { return cudaEventSynchronize(ev); }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    if (!ms) return api_error(cudaErrorInvalidValue);
    if (!event_valid(a) || !event_valid(b)) return api_error(cudaErrorInvalidResourceHandle);
    const event_rec *x = (const event_rec *)a, *y = (const event_rec *)b;
    if ((x->flags | y->flags) & cudaEventDisableTiming) return api_error(cudaErrorInvalidResourceHandle);
    if (!x->recorded || !y->recorded) return api_error(cudaErrorInvalidResourceHandle);
    *ms = (float)((y->t - x->t) * 1e3);
    return api_error(cudaSuccess);
}
