/* ops_emu.c — the emulated device ("emu"): the CPU kernels behind a device's discipline, so that every
 * device code path of model/, train/, eval/ and analysis/ runs in CI without a GPU and gives the CPU
 * backend's results bit for bit.
 *
 *   - host_memory = 0: callers must treat every pointer from alloc as device memory (weights are uploaded,
 *     results come back through memcpy_d2h), exactly as with the CUDA backend.
 *   - Device memory: each allocation is a memory file mapped twice: the address alloc returns (the "device
 *     view") is PROT_NONE for good, and a second, readable and writable mapping of the same pages (the
 *     "kernel view") is what the CPU kernels get. Every op translates each pointer it receives from the
 *     device view to the kernel view, and refuses a pointer that is not device memory (a host pointer
 *     works on the CPU backend but faults on a GPU). A host read or write of device memory anywhere else
 *     faults at once; the fault handler names the allocation and the rule broken, then lets the process
 *     die with SIGSEGV.
 *   - Ops run on the calling thread's CPU stream (its thread pool) with the CPU backend's code: the same
 *     thread count gives the same bits.
 * The allocation table is process-wide, as a GPU driver's is: it is the emulated device's memory, shared by
 * every stream, and guarded by a mutex. Nothing else in the backend is global.
 * Use: --device emu, model.device: emu, QALIGN_BACKEND=emu (tests). Not a product backend, but as fast as
 * the CPU one: no system call per op. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "kernels/ops.h"
#include "common/qa_mem.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct emu_alloc {
    char *base;    /* the device view (PROT_NONE) */
    char *kern;    /* the kernel view of the same pages */
    size_t len;    /* mapped bytes (whole pages) */
    size_t bytes;  /* asked for */
} emu_alloc;

/* the emulated device's memory table */
static struct {
    pthread_mutex_t mu;
    emu_alloc *a;
    size_t n, cap;
    int handler_installed;
    struct sigaction prev;
} DEV = {.mu = PTHREAD_MUTEX_INITIALIZER};

struct qa_stream {
    qa_stream *cpu;              /* the CPU stream (thread pool) the kernels run on */
};

#define EMU_CHECK(call, what) do { if ((call) != 0) { int _en = errno; \
    fprintf(stderr, "qalign: fatal: emulated device: %s failed: %s (kernels/emu/ops_emu.c:%d); the process " \
            "cannot continue (address space or mapping limits? see ulimit -v, vm.max_map_count)\n", what, \
            strerror(_en), __LINE__); abort(); } } while (0)

/* The kernel view of a device pointer; NULL stays NULL. A pointer outside every allocation is a host pointer
 * handed to an op: fatal, with the op and argument named. */
static void *kv(const void *p, const char *arg, const char *op) {
    if (!p) return NULL;
    const char *c = p;
    pthread_mutex_lock(&DEV.mu);
    for (size_t i = 0; i < DEV.n; i++)
        if (c >= DEV.a[i].base && c < DEV.a[i].base + DEV.a[i].len) {
            char *k = DEV.a[i].kern + (c - DEV.a[i].base);
            pthread_mutex_unlock(&DEV.mu);
            return k;
        }
    pthread_mutex_unlock(&DEV.mu);
    fprintf(stderr, "qalign: fatal: emulated device: %s got a host pointer for '%s' (%p): every pointer an op "
            "takes must come from ops->alloc (upload host data with ops->memcpy_h2d first)\n", op, arg, p);
    abort();
}

/* A fault inside device memory outside an op: a host access the code must not make. */
static void on_segv(int sig, siginfo_t *si, void *uc) {
    char *addr = si ? (char *)si->si_addr : NULL;
    for (size_t i = 0; addr && i < DEV.n; i++) {
        if (addr >= DEV.a[i].base && addr < DEV.a[i].base + DEV.a[i].len) {
            char msg[512];
            int len = snprintf(msg, sizeof msg,
                               "qalign: fatal: host access to emulated device memory at %p (offset %zu of an allocation of "
                               "%zu bytes at %p): device memory is read with ops->memcpy_d2h and written with "
                               "ops->memcpy_h2d or an op (kernels/ops.h)\n",
                               (void *)addr, (size_t)(addr - DEV.a[i].base), DEV.a[i].bytes, (void *)DEV.a[i].base);
            if (len > 0) {
                ssize_t w = write(2, msg, (size_t)(len < (int)sizeof msg ? len : (int)sizeof msg - 1));
                (void)w;
            }
            break;
        }
    }
    /* hand the fault to whoever had it before (a sanitizer's handler) or to the default action */
    if (DEV.prev.sa_flags & SA_SIGINFO) {
        if (DEV.prev.sa_sigaction) { DEV.prev.sa_sigaction(sig, si, uc); return; }
    } else if (DEV.prev.sa_handler != SIG_DFL && DEV.prev.sa_handler != SIG_IGN && DEV.prev.sa_handler) {
        DEV.prev.sa_handler(sig);
        return;
    }
    signal(SIGSEGV, SIG_DFL); /* returning re-executes the access, which now kills the process */
}

static void *emu_alloc_(size_t bytes, qa_err *e) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t len = ((bytes ? bytes : 1) + page - 1) / page * page;
    int fd = memfd_create("qalign-emu", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)len) != 0) {
        int en = errno;
        if (fd >= 0) close(fd);
        QA_ERR(e, "out of emulated device memory allocating %.1f MiB: %s", bytes / 1048576.0, strerror(en));
        return NULL;
    }
    void *dv = mmap(NULL, len, PROT_NONE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    void *kw = dv == MAP_FAILED ? MAP_FAILED : mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int en = errno;
    close(fd); /* the mappings keep the memory */
    if (kw == MAP_FAILED) {
        if (dv != MAP_FAILED) munmap(dv, len);
        QA_ERR(e, "out of emulated device memory mapping %.1f MiB: %s", bytes / 1048576.0, strerror(en));
        return NULL;
    }
    pthread_mutex_lock(&DEV.mu);
    if (!DEV.handler_installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        EMU_CHECK(sigaction(SIGSEGV, &sa, &DEV.prev), "sigaction(SIGSEGV)");
        DEV.handler_installed = 1;
    }
    if (DEV.n == DEV.cap) {
        DEV.cap = DEV.cap ? 2 * DEV.cap : 64;
        DEV.a = qa_realloc(DEV.a, DEV.cap * sizeof *DEV.a);
    }
    DEV.a[DEV.n++] = (emu_alloc){dv, kw, len, bytes};
    pthread_mutex_unlock(&DEV.mu);
    return dv;
}

static void emu_free(void *p) {
    if (!p) return;
    pthread_mutex_lock(&DEV.mu);
    for (size_t i = 0; i < DEV.n; i++) {
        if (DEV.a[i].base != p) continue;
        EMU_CHECK(munmap(DEV.a[i].base, DEV.a[i].len), "munmap");
        EMU_CHECK(munmap(DEV.a[i].kern, DEV.a[i].len), "munmap");
        DEV.a[i] = DEV.a[--DEV.n];
        pthread_mutex_unlock(&DEV.mu);
        return;
    }
    pthread_mutex_unlock(&DEV.mu);
    fprintf(stderr, "qalign: fatal: emulated device: free of %p, which is not a device allocation (a host pointer, "
            "or freed twice)\n", p);
    abort();
}

static const qa_ops *CPU(void) { return qa_ops_cpu(); }

static int emu_stream_create(qa_stream **out, const qa_stream_opts *o, qa_err *e) {
    qa_stream *s = qa_calloc(1, sizeof *s);
    if (CPU()->stream_create(&s->cpu, o, e)) { free(s); return -1; }
    *out = s;
    return 0;
}
static void emu_stream_destroy(qa_stream *s) {
    if (!s) return;
    CPU()->stream_destroy(s->cpu);
    free(s);
}
static int emu_sync(qa_stream *s, qa_err *e) { (void)s; (void)e; return 0; }

#define S(s) ((s) ? (s)->cpu : NULL)
#define KV(p) kv((p), #p, __func__ + 4)
/* the copies check both ends: src of h2d and dst of d2h must be host memory, the others device memory */
static int is_dev(const void *p) {
    const char *c = p;
    int r = 0;
    pthread_mutex_lock(&DEV.mu);
    for (size_t i = 0; i < DEV.n && !r; i++) r = c >= DEV.a[i].base && c < DEV.a[i].base + DEV.a[i].len;
    pthread_mutex_unlock(&DEV.mu);
    return r;
}
static void host_only(const void *p, const char *arg, const char *op) {
    if (!p || !is_dev(p)) return;
    fprintf(stderr, "qalign: fatal: emulated device: %s got device memory for the host pointer '%s' (%p): use "
            "memcpy_d2d between device buffers\n", op, arg, p);
    abort();
}
static void emu_h2d(qa_stream *s, void *dst, const void *src, size_t n) {
    (void)s;
    host_only(src, "src", "memcpy_h2d");
    if (n) memcpy(KV(dst), src, n);
}
static void emu_d2h(qa_stream *s, void *dst, const void *src, size_t n) {
    (void)s;
    host_only(dst, "dst", "memcpy_d2h");
    if (n) memcpy(dst, KV(src), n);
}
static void emu_d2d(qa_stream *s, void *dst, const void *src, size_t n) { (void)s; if (n) memmove(KV(dst), KV(src), n); }
static void emu_memset0(qa_stream *s, void *dst, size_t n) { (void)s; if (n) memset(KV(dst), 0, n); }

static qa_attn_desc kdesc(const qa_attn_desc *d, const char *op) {
    qa_attn_desc k = *d;
    k.key_mask = kv(d->key_mask, "desc.key_mask", op);
    k.segment = kv(d->segment, "desc.segment", op);
    return k;
}
static qa_attn_prefix_desc kpdesc(const qa_attn_prefix_desc *d, const char *op) {
    qa_attn_prefix_desc k = *d;
    k.ctx = kv(d->ctx, "desc.ctx", op);
    return k;
}

/* Every op: its pointers translated to the kernel view (each checked to be device memory), then the CPU
 * kernel on the stream's CPU context. The parameter lists are those of kernels/ops.h (shapes there). */
#define OP(name, params, translate, args) \
    static void emu_##name params { translate; CPU()->name args; }

OP(axpy, (qa_stream *s, size_t n, float a, const float *x, float *y), x = KV(x); y = KV(y);,
   (S(s), n, a, x, y))
OP(gather_rows, (qa_stream *s, int M, int D, const float *src, const int32_t *idx, float *dst), src = KV(src); idx = KV(idx); dst = KV(dst);,
   (S(s), M, D, src, idx, dst))
OP(scatter_add_rows, (qa_stream *s, int M, int D, const float *src, const int32_t *idx, float *dst), src = KV(src); idx = KV(idx); dst = KV(dst);,
   (S(s), M, D, src, idx, dst))
OP(embedding_fwd, (qa_stream *s, int N, int D, qa_weight t, const int32_t *ids, float *out), t.data = KV(t.data); ids = KV(ids); out = KV(out);,
   (S(s), N, D, t, ids, out))
OP(rmsnorm_fwd, (qa_stream *s, int N, int D, float eps, const float *x, qa_weight w, float *y, float *rstd), x = KV(x); w.data = KV(w.data); y = KV(y); rstd = KV(rstd);,
   (S(s), N, D, eps, x, w, y, rstd))
OP(rmsnorm_bwd, (qa_stream *s, int N, int D, float beta, const float *x, qa_weight w, const float *rstd,
                 const float *dy, float *dx), x = KV(x); w.data = KV(w.data); rstd = KV(rstd); dy = KV(dy); dx = KV(dx);,
   (S(s), N, D, beta, x, w, rstd, dy, dx))
OP(rope_fwd, (qa_stream *s, int N, int H, int hd, float theta, const int32_t *pos, float *x), pos = KV(pos); x = KV(x);,
   (S(s), N, H, hd, theta, pos, x))
OP(rope_bwd, (qa_stream *s, int N, int H, int hd, float theta, const int32_t *pos, float *dx), pos = KV(pos); dx = KV(dx);,
   (S(s), N, H, hd, theta, pos, dx))
OP(attention_fwd, (qa_stream *s, const qa_attn_desc *d, const float *q, const float *k, const float *v, float *o,
                   float *lse), qa_attn_desc kd_ = kdesc(d, "attention_fwd"); d = &kd_; q = KV(q); k = KV(k); v = KV(v); o = KV(o); lse = KV(lse);,
   (S(s), d, q, k, v, o, lse))
OP(attention_bwd, (qa_stream *s, const qa_attn_desc *d, const float *q, const float *k, const float *v,
                   const float *o, const float *lse, const float *dout, float *dq, float *dk, float *dv), qa_attn_desc kd_ = kdesc(d, "attention_bwd"); d = &kd_; q = KV(q); k = KV(k); v = KV(v); o = KV(o); lse = KV(lse); dout = KV(dout); dq = KV(dq); dk = KV(dk); dv = KV(dv);,
   (S(s), d, q, k, v, o, lse, dout, dq, dk, dv))
OP(swiglu_fwd, (qa_stream *s, size_t n, const float *g, const float *u, float *out), g = KV(g); u = KV(u); out = KV(out);,
   (S(s), n, g, u, out))
OP(swiglu_bwd, (qa_stream *s, size_t n, const float *g, const float *u, const float *dout, float *dg, float *du), g = KV(g); u = KV(u); dout = KV(dout); dg = KV(dg); du = KV(du);,
   (S(s), n, g, u, dout, dg, du))
OP(linear_fwd, (qa_stream *s, int N, int K, int M, float beta, const float *x, qa_weight W, qa_weight b, float *y), x = KV(x); W.data = KV(W.data); b.data = KV(b.data); y = KV(y);,
   (S(s), N, K, M, beta, x, W, b, y))
OP(linear_bwd, (qa_stream *s, int N, int K, int M, float beta, const float *dy, qa_weight W, float *dx), dy = KV(dy); W.data = KV(W.data); dx = KV(dx);,
   (S(s), N, K, M, beta, dy, W, dx))
OP(lora_fwd, (qa_stream *s, int N, int K, int M, int r, float scale, float p, uint64_t key, const float *x,
              const float *A, const float *Bm, float *xa, float *y), x = KV(x); A = KV(A); Bm = KV(Bm); xa = KV(xa); y = KV(y);,
   (S(s), N, K, M, r, scale, p, key, x, A, Bm, xa, y))
OP(lora_bwd, (qa_stream *s, int N, int K, int M, int r, float scale, float p, uint64_t key, const float *x,
              const float *A, const float *Bm, const float *xa, const float *dy, float *dA, float *dB, float *dx), x = KV(x); A = KV(A); Bm = KV(Bm); xa = KV(xa); dy = KV(dy); dA = KV(dA); dB = KV(dB); dx = KV(dx);,
   (S(s), N, K, M, r, scale, p, key, x, A, Bm, xa, dy, dA, dB, dx))
OP(cross_entropy_fwd, (qa_stream *s, int M, int V, const float *logits, const int32_t *t, float *loss, float *lse), logits = KV(logits); t = KV(t); loss = KV(loss); lse = KV(lse);,
   (S(s), M, V, logits, t, loss, lse))
OP(cross_entropy_bwd, (qa_stream *s, int M, int V, float scale, const float *logits, const int32_t *t,
                       const float *lse, float *dl), logits = KV(logits); t = KV(t); lse = KV(lse); dl = KV(dl);,
   (S(s), M, V, scale, logits, t, lse, dl))
OP(adamw_step, (qa_stream *s, size_t n, float lr, float b1, float b2, float eps, float wd, int64_t step, float *p,
                const float *g, float *m, float *v), p = KV(p); g = KV(g); m = KV(m); v = KV(v);,
   (S(s), n, lr, b1, b2, eps, wd, step, p, g, m, v))
OP(sumsq, (qa_stream *s, size_t n, const float *x, double *out), x = KV(x); out = KV(out);,
   (S(s), n, x, out))
OP(scale, (qa_stream *s, size_t n, double a, float *x), x = KV(x);,
   (S(s), n, a, x))
OP(attention_prefix_fwd, (qa_stream *s, const qa_attn_prefix_desc *d, const float *q, const float *kc,
                          const float *vc, const float *k, const float *v, float *o), qa_attn_prefix_desc kd_ = kpdesc(d, "attention_prefix_fwd"); d = &kd_; q = KV(q); kc = KV(kc); vc = KV(vc); k = KV(k); v = KV(v); o = KV(o);,
   (S(s), d, q, kc, vc, k, v, o))
OP(linear_multi_fwd, (qa_stream *s, int N, int K, int n, const float *x, const int *M, const qa_weight *W,
                      const qa_weight *b, float *const *y), x = KV(x); qa_weight kW_[4]; qa_weight kb_[4]; for (int i_ = 0; i_ < n; i_++) { kW_[i_] = W[i_]; kW_[i_].data = KV(W[i_].data); kb_[i_] = b[i_]; kb_[i_].data = KV(b[i_].data); } W = kW_; b = kb_; float *ky_[4]; for (int i_ = 0; i_ < n; i_++) ky_[i_] = KV(y[i_]); y = ky_;,
   (S(s), N, K, n, x, M, W, b, y))
OP(attention_rows_fwd, (qa_stream *s, const qa_attn_desc *d, int R, const int32_t *qrow, const float *q,
                        const float *k, const float *v, float *o), qa_attn_desc kd_ = kdesc(d, "attention_rows_fwd"); d = &kd_; qrow = KV(qrow); q = KV(q); k = KV(k); v = KV(v); o = KV(o);,
   (S(s), d, R, qrow, q, k, v, o))
OP(swiglu_linear_fwd, (qa_stream *s, int N, int K, int M, float beta, const float *g, const float *u, qa_weight W,
                       qa_weight b, float *y), g = KV(g); u = KV(u); W.data = KV(W.data); b.data = KV(b.data); y = KV(y);,
   (S(s), N, K, M, beta, g, u, W, b, y))
#undef OP
#undef KV

static const qa_ops EMU_OPS = {
    .name = "emu",
    .host_memory = 0,
    .stream_create = emu_stream_create,
    .stream_destroy = emu_stream_destroy,
    .sync = emu_sync,
    .alloc = emu_alloc_,
    .free = emu_free,
    .memcpy_h2d = emu_h2d,
    .memcpy_d2h = emu_d2h,
    .memcpy_d2d = emu_d2d,
    .memset0 = emu_memset0,
    .axpy = emu_axpy,
    .gather_rows = emu_gather_rows,
    .scatter_add_rows = emu_scatter_add_rows,
    .embedding_fwd = emu_embedding_fwd,
    .rmsnorm_fwd = emu_rmsnorm_fwd,
    .rmsnorm_bwd = emu_rmsnorm_bwd,
    .rope_fwd = emu_rope_fwd,
    .rope_bwd = emu_rope_bwd,
    .attention_fwd = emu_attention_fwd,
    .attention_bwd = emu_attention_bwd,
    .swiglu_fwd = emu_swiglu_fwd,
    .swiglu_bwd = emu_swiglu_bwd,
    .linear_fwd = emu_linear_fwd,
    .linear_bwd = emu_linear_bwd,
    .lora_fwd = emu_lora_fwd,
    .lora_bwd = emu_lora_bwd,
    .cross_entropy_fwd = emu_cross_entropy_fwd,
    .cross_entropy_bwd = emu_cross_entropy_bwd,
    .adamw_step = emu_adamw_step,
    .sumsq = emu_sumsq,
    .scale = emu_scale,
    .attention_prefix_fwd = emu_attention_prefix_fwd,
    .linear_multi_fwd = emu_linear_multi_fwd,
    .attention_rows_fwd = emu_attention_rows_fwd,
    .swiglu_linear_fwd = emu_swiglu_linear_fwd,
};

const qa_ops *qa_ops_emu(void) { return &EMU_OPS; }
