/* dist_core.c — the backend-neutral part of qa_dist: the stop flag and its signal handlers, abort, options
 * and identity accessors, the collective watchdog (deadline, report, abort), the fixed-order tree sums,
 * the "staged" communicator and the qa_comm interface. No MPI or NCCL call here: the backends
 * (dist_mpi.c, dist_nccl.c) create the context, carry the collectives and answer the watchdog's probes.
 */
#include "dist/dist_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/qa_mem.h"

/* The only static of dist/: the address of the stop flag (a sig_atomic_t inside the qa_dist that
 * installed the handlers). Written by qa_dist__start / qa_dist__stop, read only by the handler,
 * which has no other way to find the context. */
static volatile sig_atomic_t *volatile g_stop_flag;

static void on_stop_signal(int sig) {
    volatile sig_atomic_t *f = g_stop_flag;
    if (f) *f = sig;
}

/* ---------------------------------------------------------------- failure */

void qa_dist__abort_msg(qa_dist *d, int code, const char *msg) {
    int rank = d ? d->rank : -1;
    if (rank < 0) rank = qa_dist__mpi_world_rank();
    if (rank >= 0) fprintf(stderr, "qalign: rank %d: %s\n", rank, msg);
    else fprintf(stderr, "qalign: %s\n", msg);
    fflush(stderr);
    fflush(stdout);
    if (d && d->abort_hook) d->abort_hook(d->abort_ctx);
    qa_dist__mpi_abort(code ? code : 1);
    _exit(code ? code : 1);
}

void qa_dist_abort(qa_dist *d, int code, const char *fmt, ...) {
    char msg[QA_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    qa_dist__abort_msg(d, code, msg);
}

int qa_dist__env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < INT_MIN || x > INT_MAX) return dflt;
    return (int)x;
}

void qa_dist_opts_default(qa_dist_opts *o) {
    memset(o, 0, sizeof *o);
    o->deadline_s = QA_DIST_DEFAULT_DEADLINE_S;
    o->mode = QA_DIST_DETERMINISTIC;
    o->handle_signals = 1;
    const char *v = getenv("QALIGN_DIST_DEADLINE_S");
    if (v && *v) {
        char *end;
        double s = strtod(v, &end);
        if (!*end) o->deadline_s = s;
    }
    o->probe_s = 10.0;
    v = getenv("QALIGN_DIST_PROBE_S");
    if (v && *v) {
        char *end;
        double s = strtod(v, &end);
        if (!*end && s > 0) o->probe_s = s;
    }
    v = getenv("QALIGN_DIST_MODE");
    if (v && !strcmp(v, "fast")) o->mode = QA_DIST_FAST;
    o->env_bootstrap = qa_dist__env_int("QALIGN_DIST_ENV_BOOTSTRAP", 0);
}

int qa_dist_rank(const qa_dist *d) { return d->rank; }
int qa_dist_size(const qa_dist *d) { return d->size; }
int qa_dist_local_rank(const qa_dist *d) { return d->local_rank; }
int qa_dist_local_size(const qa_dist *d) { return d->local_size; }
int qa_dist_cpu_threads(const qa_dist *d, int requested) {
    if (requested > 0) return requested;
    long cores = sysconf(_SC_NPROCESSORS_ONLN), local = d && d->local_size > 0 ? d->local_size : 1;
    return cores / local > 1 ? (int)(cores / local) : 1;
}
int qa_dist_is_coordinator(const qa_dist *d) { return d->rank == 0; }
const char *qa_dist_identity_source(const qa_dist *d) { return d->ident; }
qa_dist_mode qa_dist_get_mode(const qa_dist *d) { return d->mode; }
void qa_dist_set_mode(qa_dist *d, qa_dist_mode m) { d->mode = m; }

void qa_dist_set_deadline(qa_dist *d, double s) {
    pthread_mutex_lock(&d->mu);
    d->deadline_s = s;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}
double qa_dist_get_deadline(const qa_dist *d) { return d->deadline_s; }

void qa_dist_note(qa_dist *d, const char *activity) {
    pthread_mutex_lock(&d->mu);
    snprintf(d->note, sizeof d->note, "%s", activity ? activity : "");
    d->note_start = qa_now_s();
    pthread_mutex_unlock(&d->mu);
}

/* ---------------------------------------------------------------- watchdog
 *
 * A thread per rank wakes a few times a second: a collective waiting longer than the deadline probes
 * the peers (when the backend can: qa_dist__probe_peers), names what each one does and aborts the job;
 * a collective waiting probe_s (2 s after a stop signal) probes early and aborts as soon as a peer does
 * not answer. */

void qa_dist__coll_begin(qa_dist *d, const char *phase) {
    pthread_mutex_lock(&d->mu);
    d->in_coll = 1;
    d->seq++;
    d->coll_start = qa_now_s();
    snprintf(d->phase, sizeof d->phase, "%s", phase ? phase : "?");
    pthread_mutex_unlock(&d->mu);
}

void qa_dist__coll_end(qa_dist *d) {
    pthread_mutex_lock(&d->mu);
    d->in_coll = 0;
    d->note_start = qa_now_s();
    pthread_mutex_unlock(&d->mu);
}

void qa_dist__snapshot(qa_dist *d, qa_dist_status *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&d->mu);
    s->rank = d->rank;
    s->in_coll = d->in_coll;
    s->seq = d->seq;
    double now = qa_now_s();
    s->secs = d->in_coll ? now - d->coll_start : now - d->note_start;
    memcpy(s->phase, d->phase, sizeof s->phase);
    memcpy(s->note, d->note, sizeof s->note);
    pthread_mutex_unlock(&d->mu);
}

/* One line: headline, then the peers that are not waiting in the same collective. Aborts the job. */
_Noreturn static void wd_report_abort(qa_dist *d, const qa_dist_status *me, const char *headline, const qa_dist_status *rep,
                                      const int *got, double window) {
    char msg[QA_ERR_MSG];
    size_t off = 0;
#define APPEND(...) do { if (off < sizeof msg) { int _n = snprintf(msg + off, sizeof msg - off, __VA_ARGS__); \
    if (_n > 0) off += (size_t)_n; } } while (0)
    APPEND("%s", headline);
    if (rep) {
        int waiting = 0, listed = 0;
        APPEND(";");
        for (int i = 0; i < d->size; i++) {
            if (i == d->rank) continue;
            const qa_dist_status *s = &rep[i];
            if (got[i] && s->in_coll && s->seq == me->seq && !strcmp(s->phase, me->phase)) { waiting++; continue; }
            if (listed++ >= 16) continue;
            if (!got[i])
                APPEND(" rank %d: no answer within %.0f s (dead, or its process is stopped);", i, window);
            else if (s->in_coll && s->seq == me->seq)
                APPEND(" rank %d: in a different collective '%s' (mismatched calls);", i, s->phase);
            else if (s->in_coll)
                APPEND(" rank %d: in collective '%s' #%llu for %.1f s (collective counts differ);", i, s->phase,
                       (unsigned long long)s->seq, s->secs);
            else
                APPEND(" rank %d: not in a collective for %.1f s, doing '%s', last collective '%s' #%llu "
                       "(late: this rank is the slow one);",
                       i, s->secs, s->note[0] ? s->note : "-", s->phase[0] ? s->phase : "-",
                       (unsigned long long)s->seq);
        }
        if (listed > 16) APPEND(" ... %d more;", listed - 16);
        APPEND(" %d other rank(s) waiting in the same collective.", waiting);
    }
    APPEND(" (QALIGN_DIST_DEADLINE_S sets the deadline; docs/distributed.md \"Failures\")");
#undef APPEND
    qa_dist__abort_msg(d, QA_DIST_EXIT_TIMEOUT, msg);
}

/* The deadline passed: probe the peers, report, abort. */
_Noreturn static void wd_fire(qa_dist *d, const qa_dist_status *me, double deadline) {
    char head[512];
    snprintf(head, sizeof head, "collective '%s' (#%llu) exceeded %.0f s (a peer may have died or be stuck)",
             me->phase, (unsigned long long)me->seq, deadline);
    if (!qa_dist__can_probe(d)) wd_report_abort(d, me, head, NULL, NULL, 0);
    int p = d->size;
    qa_dist_status *rep = qa_calloc((size_t)p, sizeof *rep);
    int *got = qa_calloc((size_t)p, sizeof *got);
    qa_dist__probe_peers(d, rep, got, 3.0);
    wd_report_abort(d, me, head, rep, got, 3.0);
}

/* A collective is taking long (or SIGTERM arrived while waiting): are all peers alive? A peer that does
 * not answer while this rank still waits in the same collective has died: abort now, not at the deadline. */
static void wd_check_peers(qa_dist *d, const qa_dist_status *me) {
    int p = d->size;
    qa_dist_status *rep = qa_calloc((size_t)p, sizeof *rep);
    int *got = qa_calloc((size_t)p, sizeof *got);
    int missing = qa_dist__probe_peers(d, rep, got, 3.0);
    pthread_mutex_lock(&d->mu);
    int same = d->in_coll && d->seq == me->seq;
    pthread_mutex_unlock(&d->mu);
    if (missing > 0 && same) {
        char head[512];
        snprintf(head, sizeof head, "collective '%s' (#%llu) waiting for %.0f s and %d peer(s) do not answer%s",
                 me->phase, (unsigned long long)me->seq, me->secs + 3.0, missing,
                 d->stop_sig ? " (after a stop signal)" : "");
        wd_report_abort(d, me, head, rep, got, 3.0);
    }
    free(rep);
    free(got);
}

static void *wd_main(void *arg) {
    qa_dist *d = arg;
    int serve = qa_dist__can_probe(d);
    double last_probe = 0;
    pthread_mutex_lock(&d->mu);
    while (!d->wd_quit) {
        double dl = d->deadline_s;
        double period = dl > 0 ? dl / 20 : 0.25;
        if (period < 0.05) period = 0.05;
        if (period > 0.25) period = 0.25;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double t = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec + period;
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&d->cv, &d->mu, &ts);
        if (d->wd_quit) break;
        double now = qa_now_s(), waited = d->in_coll ? now - d->coll_start : 0;
        if (d->in_coll && d->deadline_s > 0 && waited > d->deadline_s && !d->wd_fired) {
            d->wd_fired = 1;
            double dl2 = d->deadline_s;
            pthread_mutex_unlock(&d->mu);
            qa_dist_status me;
            qa_dist__snapshot(d, &me);
            wd_fire(d, &me, dl2); /* does not return */
        }
        /* liveness: every probe_s of waiting in one collective, every 2 s after a stop signal */
        double every = d->stop_sig && d->probe_s > 2.0 ? 2.0 : d->probe_s;
        int probe = serve && d->in_coll && waited >= every && now - last_probe >= every;
        pthread_mutex_unlock(&d->mu);
        if (probe) {
            qa_dist_status me;
            qa_dist__snapshot(d, &me);
            wd_check_peers(d, &me);
            last_probe = qa_now_s();
        }
        if (serve) qa_dist__serve_probes(d);
        pthread_mutex_lock(&d->mu);
    }
    pthread_mutex_unlock(&d->mu);
    qa_dist__probes_close(d); /* the world is still alive (finalize waits for us) */
    return NULL;
}

/* ---------------------------------------------------------------- life cycle (the backend's init calls these) */

qa_dist *qa_dist__new(const qa_dist_opts *opts) {
    qa_dist *d = qa_calloc(1, sizeof *d);
    d->rank = -1;
    pthread_mutex_init(&d->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    d->mode = opts->mode;
    d->deadline_s = opts->deadline_s;
    d->probe_s = opts->probe_s > 0 ? opts->probe_s : 10.0;
    d->note_start = qa_now_s();
    snprintf(d->note, sizeof d->note, "startup");
    return d;
}

void qa_dist__start(qa_dist *d, const qa_dist_opts *opts) {
    if (opts->handle_signals) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        g_stop_flag = &d->stop_sig;
        sigaction(SIGUSR1, &sa, &d->old_usr1);
        sigaction(SIGTERM, &sa, &d->old_term);
        d->handlers_installed = 1;
    }

    if (pthread_create(&d->wd_thread, NULL, wd_main, d) == 0) d->wd_running = 1;
    else fprintf(stderr, "qalign: rank %d: warning: no watchdog thread (%s): collectives have no deadline\n",
                 d->rank, strerror(errno));
}

void qa_dist__stop(qa_dist *d) {
    if (d->wd_running) {
        pthread_mutex_lock(&d->mu);
        d->wd_quit = 1;
        pthread_cond_signal(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->wd_thread, NULL);
        d->wd_running = 0;
    }
    if (d->handlers_installed) {
        sigaction(SIGUSR1, &d->old_usr1, NULL);
        sigaction(SIGTERM, &d->old_term, NULL);
        if (g_stop_flag == &d->stop_sig) g_stop_flag = NULL;
    }
}

void qa_dist__free(qa_dist *d) {
    free(d->scratch);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

void *qa_dist__scratch(qa_dist *d, size_t bytes) {
    if (bytes > d->scratch_bytes) {
        free(d->scratch);
        d->scratch = qa_malloc(bytes);
        d->scratch_bytes = bytes;
    }
    return d->scratch;
}

/* ---------------------------------------------------------------- fixed-order sums */

void qa_dist__tree_sum_f32s(float *parts, int p, size_t len, size_t stride) {
    for (int s = 1; s < p; s *= 2)
        for (int i = 0; i + s < p; i += 2 * s) {
            float *a = parts + (size_t)i * stride;
            const float *b = parts + (size_t)(i + s) * stride;
            for (size_t k = 0; k < len; k++) a[k] = a[k] + b[k];
        }
}

void qa_dist_tree_sum_f32(float *parts, int p, size_t n) { qa_dist__tree_sum_f32s(parts, p, n, n); }

void qa_dist__tree_sum_f64s(double *parts, int p, size_t len, size_t stride) {
    for (int s = 1; s < p; s *= 2)
        for (int i = 0; i + s < p; i += 2 * s) {
            double *a = parts + (size_t)i * stride;
            const double *b = parts + (size_t)(i + s) * stride;
            for (size_t k = 0; k < len; k++) a[k] = a[k] + b[k];
        }
}

void qa_dist_tree_sum_f64(double *parts, int p, size_t n) { qa_dist__tree_sum_f64s(parts, p, n, n); }

static void *host_alloc(void *ctx, size_t bytes) { (void)ctx; return qa_malloc(bytes); }
static void host_release(void *ctx, void *p) { (void)ctx; free(p); }
static void host_copy(void *ctx, float *dst, const float *src, size_t n) { (void)ctx; memcpy(dst, src, n * sizeof(float)); }
static void host_add(void *ctx, float *a, const float *b, size_t n) {
    (void)ctx;
    for (size_t k = 0; k < n; k++) a[k] = a[k] + b[k];
}
static void host_zero(void *ctx, float *dst, size_t n) { (void)ctx; memset(dst, 0, n * sizeof(float)); }

void qa_dist_tree_init_mem(qa_dist_tree *t, size_t n, const qa_dist_tree_mem *mem) {
    memset(t, 0, sizeof *t);
    t->n = n;
    if (mem) t->mem = *mem;
    else t->mem = (qa_dist_tree_mem){NULL, host_alloc, host_release, host_copy, host_add, host_zero};
}
void qa_dist_tree_init(qa_dist_tree *t, size_t n) { qa_dist_tree_init_mem(t, n, NULL); }

void qa_dist_tree_push(qa_dist_tree *t, const float *x) {
    size_t n = t->n;
    const qa_dist_tree_mem *M = &t->mem;
    if (!t->level[0]) t->level[0] = M->alloc(M->ctx, n * sizeof(float));
    t->pushes++;
    if (!t->used[0]) {
        M->copy(M->ctx, t->level[0], x, n);
        t->used[0] = 1;
        return;
    }
    M->add(M->ctx, t->level[0], x, n);
    t->used[0] = 0; /* the carry lives in level[l-1] from here on */
    for (int l = 1; l < 48; l++) {
        if (!t->level[l]) t->level[l] = M->alloc(M->ctx, n * sizeof(float));
        if (!t->used[l]) {
            float *tmp = t->level[l];
            t->level[l] = t->level[l - 1];
            t->level[l - 1] = tmp;
            t->used[l] = 1;
            return;
        }
        M->add(M->ctx, t->level[l], t->level[l - 1], n);
        t->used[l] = 0;
    }
    QA_ASSERT(0, "qa_dist_tree: more than 2^48 pushes");
}

void qa_dist_tree_result(qa_dist_tree *t, float *out) {
    size_t n = t->n;
    const qa_dist_tree_mem *M = &t->mem;
    int have = 0;
    for (int l = 0; l < 48; l++) {
        if (!t->used[l]) continue;
        if (!have) M->copy(M->ctx, out, t->level[l], n);
        else M->add(M->ctx, out, t->level[l], n); /* older (higher) + out: IEEE addition commutes */
        have = 1;
        t->used[l] = 0;
    }
    if (!have) M->zero(M->ctx, out, n);
    t->pushes = 0;
}

void qa_dist_tree_free(qa_dist_tree *t) {
    for (int l = 0; l < 48; l++)
        if (t->level[l]) t->mem.release(t->mem.ctx, t->level[l]);
    memset(t, 0, sizeof *t);
}

int qa_dist_all_true(qa_dist *d, int ok, const char *phase) {
    int64_t v = ok ? 1 : 0;
    qa_dist_allreduce_i64(d, &v, 1, QA_DIST_MIN, phase);
    return v != 0;
}

/* ---------------------------------------------------------------- graceful stop */

int qa_dist_stop_requested(const qa_dist *d) { return (int)d->stop_sig; }
void qa_dist_request_stop(qa_dist *d, int why) { d->stop_sig = why ? why : -1; }

int qa_dist_agree_stop(qa_dist *d) {
    int64_t v = d->stop_sig != 0;
    qa_dist_allreduce_i64(d, &v, 1, QA_DIST_MAX, "agree-stop");
    return v != 0;
}

/* ---------------------------------------------------------------- the "staged" communicator */

typedef struct staged_impl {
    qa_comm_stage st;
    void *buf;
    size_t cap;
} staged_impl;

static void staged_allreduce_sum(qa_comm *c, void *buf, size_t n, qa_dtype dt, const char *phase) {
    staged_impl *x = c->impl;
    if (c->d->size == 1 || n == 0) return; /* a sum over one rank: nothing to move */
    size_t bytes = n * qa_dtype_size(dt);
    if (x->cap < bytes) {
        free(x->buf);
        x->buf = qa_malloc(bytes);
        x->cap = bytes;
    }
    x->st.d2h(x->st.ctx, x->buf, buf, bytes);
    c->d->host.allreduce_sum(&c->d->host, x->buf, n, dt, phase);
    x->st.h2d(x->st.ctx, buf, x->buf, bytes);
}
static void staged_barrier(qa_comm *c, const char *phase) { qa_dist_barrier(c->d, phase); }
static void staged_destroy(qa_comm *c) {
    staged_impl *x = c->impl;
    free(x->buf);
    free(x);
    free(c);
}

int qa_dist_staged_comm(qa_dist *d, const qa_comm_stage *stage, qa_comm **out, qa_err *e) {
    *out = NULL;
    if (!stage || !stage->d2h || !stage->h2d) return QA_ERR(e, "qa_dist_staged_comm: a stage needs d2h and h2d");
    qa_comm *c = qa_calloc(1, sizeof *c);
    staged_impl *x = qa_calloc(1, sizeof *x);
    x->st = *stage;
    c->backend = "staged";
    c->on_device = 1;
    c->d = d;
    c->allreduce_sum = staged_allreduce_sum;
    c->barrier = staged_barrier;
    c->destroy = staged_destroy;
    c->impl = x;
    *out = c;
    return 0;
}

/* ---------------------------------------------------------------- one communicator interface */

void qa_comm_allreduce_sum(qa_comm *c, void *buf, size_t n, qa_dtype dt, const char *phase) {
    c->allreduce_sum(c, buf, n, dt, phase);
}
void qa_comm_barrier(qa_comm *c, const char *phase) { c->barrier(c, phase); }
const char *qa_comm_backend(const qa_comm *c) { return c->backend; }
int qa_comm_on_device(const qa_comm *c) { return c->on_device; }
void qa_comm_free(qa_comm *c) {
    if (c && c->destroy) c->destroy(c);
}

#ifndef QALIGN_HAVE_NCCL
int qa_dist_nccl_comm(qa_dist *d, qa_comm **out, qa_err *e) {
    (void)d;
    *out = NULL;
    return QA_ERR(e, "this build has no NCCL backend: it needs a CUDA build with NCCL (configure with -DQALIGN_CUDA=ON on a machine with the CUDA "
                  "toolkit and NCCL); use qa_dist_host_comm for host buffers");
}
#endif
