/* pool.c — the CPU stream's thread pool: n-1 workers plus the calling thread run one function
 * together (SPMD); the caller returns when every thread is done. Workers spin briefly after a job
 * (ops come back to back) and then sleep on a condition variable, so an idle pool costs nothing. */
#include "kernels/cpu/cpu_internal.h"
#include "common/qa_clock.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

struct qa_pool {
    int n;
    pthread_t th[QA_CPU_MAX_THREADS];
    qa_pool_fn fn;
    void *ctx;
    _Atomic unsigned gen;      /* job generation: bumped per qa_pool_run */
    _Atomic int done;          /* workers finished with the current job */
    _Atomic int quit;
    _Atomic int sleepers;      /* workers blocked on cv */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic int bar_count;     /* barrier */
    _Atomic unsigned bar_gen;
};

typedef struct { qa_pool *p; int tid; } worker_arg;


/* spin on *v != old: pause, then yield after a while (another process may need the core) */
static void wait_change(_Atomic unsigned *v, unsigned old) {
    for (int i = 0; atomic_load_explicit(v, memory_order_acquire) == old; i++) {
        if (i < 4096) CPU_RELAX();
        else sched_yield();
    }
}

static void *worker(void *arg) {
    qa_pool *p = ((worker_arg *)arg)->p;
    const int tid = ((worker_arg *)arg)->tid;
    free(arg);
    unsigned seen = 0;
    for (;;) {
        /* spin up to ~1 ms for the next job (ops come back to back), then sleep */
        double t0 = 0;
        for (int i = 0; atomic_load(&p->gen) == seen && !atomic_load(&p->quit); i++) {
            CPU_RELAX();
            if ((i & 1023) == 1023) {
                double t = qa_now_s();
                if (t0 == 0) t0 = t;
                else if (t - t0 > 1e-3) break;
            }
        }
        if (atomic_load(&p->gen) == seen && !atomic_load(&p->quit)) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) return NULL;
        seen = atomic_load(&p->gen);
        p->fn(p->ctx, tid, p->n);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

qa_pool *qa_pool_create(int n) {
    if (n < 2) return NULL;
    if (n > QA_CPU_MAX_THREADS) n = QA_CPU_MAX_THREADS;
    qa_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 1; i < n; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (a) { a->p = p; a->tid = i; }
        if (!a || pthread_create(&p->th[i], NULL, worker, a)) {
            free(a);
            p->n = i;                /* shut down the ones started */
            qa_pool_destroy(p);
            return NULL;
        }
    }
    return p;
}

void qa_pool_destroy(qa_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

void qa_pool_run(qa_pool *p, qa_pool_fn fn, void *ctx) {
    if (!p) { fn(ctx, 0, 1); return; }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->done, 0);
    atomic_fetch_add(&p->gen, 1);              /* seq_cst: pairs with the workers' sleepers check */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(ctx, 0, p->n);
    for (int i = 0; atomic_load_explicit(&p->done, memory_order_acquire) < p->n - 1; i++) {
        if (i < 4096) CPU_RELAX();
        else sched_yield();
    }
}

void qa_pool_barrier(qa_pool *p) {
    if (!p) return;
    unsigned g = atomic_load(&p->bar_gen);
    if (atomic_fetch_add(&p->bar_count, 1) == p->n - 1) {
        atomic_store(&p->bar_count, 0);
        atomic_fetch_add(&p->bar_gen, 1);
    } else {
        wait_change(&p->bar_gen, g);
    }
}
