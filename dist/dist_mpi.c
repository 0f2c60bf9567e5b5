/* dist_mpi.c — the qa_dist context: MPI init, identity, host collectives, watchdog, signals, abort.
 *
 * Deterministic sum of a flat buffer of n elements over P ranks (the default):
 *   1. MPI_Alltoallv: rank j receives chunk j (n/P elements) of every rank's buffer   (P-1)/P * n sent
 *   2. rank j sums its P copies in the fixed tree ((r0+r1)+(r2+r3))...                 no traffic
 *   3. MPI_Allgatherv: every rank receives every summed chunk                          (P-1)/P * n sent
 * Bytes sent per rank: 2 (P-1)/P * n * sizeof(elem), as a ring all-reduce; extra memory n elements.
 * Each element is summed by exactly one rank in an order fixed by rank numbers, so the result is
 * bitwise identical on all ranks and across runs. Buffers larger than 2^26 elements go in slices.
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

#define TAG_QUERY 17
#define TAG_REPLY 18
#define SLICE_ELEMS ((size_t)1 << 26)

/* The only static of dist/: the address of the stop flag (a sig_atomic_t inside the qa_dist that
 * installed the handlers). Written by qa_dist_init / qa_dist_finalize, read only by the handler,
 * which has no other way to find the context. */
static volatile sig_atomic_t *volatile g_stop_flag;

static void on_stop_signal(int sig) {
    volatile sig_atomic_t *f = g_stop_flag;
    if (f) *f = sig;
}

double qa_dist__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------- failure */

void qa_dist__abort_msg(qa_dist *d, int code, const char *msg) {
    int rank = d ? d->rank : -1;
    if (rank < 0) {
        int init = 0, fin = 0;
        MPI_Initialized(&init);
        MPI_Finalized(&fin);
        if (init && !fin) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    }
    if (rank >= 0) fprintf(stderr, "qalign: rank %d: %s\n", rank, msg);
    else fprintf(stderr, "qalign: %s\n", msg);
    fflush(stderr);
    fflush(stdout);
    if (d && d->abort_hook) d->abort_hook(d->abort_ctx);
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
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

void qa_dist__mpi_fail(const qa_dist *d, const char *phase, const char *call, int rc, const char *file, int line) {
    char es[MPI_MAX_ERROR_STRING + 1] = {0};
    int len = 0;
    if (MPI_Error_string(rc, es, &len) != MPI_SUCCESS) snprintf(es, sizeof es, "MPI error %d", rc);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char msg[QA_ERR_MSG];
    snprintf(msg, sizeof msg,
             "fatal: %s failed in '%s': %s (dist/%s:%d); check that every rank calls the same collectives in "
             "the same order with the same sizes and that the launcher/network is healthy (rerun with "
             "OMPI_MCA_btl_base_verbose=100; docs/distributed.md \"Failures\")",
             call, phase ? phase : "-", es, base, line);
    qa_dist__abort_msg((qa_dist *)d, QA_DIST_EXIT_MPI, msg);
}

/* ---------------------------------------------------------------- options, identity */

static int env_int(const char *name, int dflt) {
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
    o->env_bootstrap = env_int("QALIGN_DIST_ENV_BOOTSTRAP", 0);
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
    d->note_start = qa_dist__now();
    pthread_mutex_unlock(&d->mu);
}

/* ---------------------------------------------------------------- watchdog */

void qa_dist__coll_begin(qa_dist *d, const char *phase) {
    pthread_mutex_lock(&d->mu);
    d->in_coll = 1;
    d->seq++;
    d->coll_start = qa_dist__now();
    snprintf(d->phase, sizeof d->phase, "%s", phase ? phase : "?");
    pthread_mutex_unlock(&d->mu);
}

void qa_dist__coll_end(qa_dist *d) {
    pthread_mutex_lock(&d->mu);
    d->in_coll = 0;
    d->note_start = qa_dist__now();
    pthread_mutex_unlock(&d->mu);
}

/* What a rank tells a peer that probes it. */
typedef struct wd_status {
    int32_t rank, in_coll;
    int32_t probe, pad;  /* the prober's probe number, echoed */
    uint64_t seq;
    double secs;  /* in the current collective, or since the last one ended / the note was set */
    char phase[QA_DIST_PHASE];
    char note[QA_DIST_PHASE];
} wd_status;

static void wd_snapshot(qa_dist *d, wd_status *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&d->mu);
    s->rank = d->rank;
    s->in_coll = d->in_coll;
    s->seq = d->seq;
    double now = qa_dist__now();
    s->secs = d->in_coll ? now - d->coll_start : now - d->note_start;
    memcpy(s->phase, d->phase, sizeof s->phase);
    memcpy(s->note, d->note, sizeof s->note);
    pthread_mutex_unlock(&d->mu);
}

static int wd_can_probe(const qa_dist *d) {
    return d->mpi_world && d->size > 1 && d->thread_level == MPI_THREAD_MULTIPLE;
}

/* Answer pending status queries (watchdog thread only). Best effort: MPI errors are ignored here, since
 * queries only come from a rank that suspects a failure. */
static void wd_service(qa_dist *d) {
    for (int guard = 0; guard < 64; guard++) {
        if (!d->q_posted) {
            if (MPI_Irecv(d->q_buf, 2, MPI_INT, MPI_ANY_SOURCE, TAG_QUERY, d->ctl, &d->q_req) != MPI_SUCCESS) return;
            d->q_posted = 1;
        }
        int done = 0;
        MPI_Status st;
        if (MPI_Test(&d->q_req, &done, &st) != MPI_SUCCESS || !done) return;
        d->q_posted = 0;
        wd_status s;
        wd_snapshot(d, &s);
        s.probe = d->q_buf[1];
        MPI_Send(&s, (int)sizeof s, MPI_BYTE, st.MPI_SOURCE, TAG_REPLY, d->ctl);
    }
}

/* Ask every peer what it is doing; wait up to `window` s. got[i] = 1 for peers that answered, rep[i]
 * their status. Returns the number of peers that did not answer. */
static int wd_probe(qa_dist *d, wd_status *rep, int *got, double window) {
    int p = d->size;
    MPI_Request *rr = qa_calloc((size_t)p, sizeof *rr);
    d->probe_no++;
    d->q_send[0] = d->rank;
    d->q_send[1] = d->probe_no;
    for (int i = 0; i < p; i++) {
        rr[i] = MPI_REQUEST_NULL;
        got[i] = i == d->rank;
        if (i == d->rank) continue;
        MPI_Request sr;
        MPI_Irecv(&rep[i], (int)sizeof rep[i], MPI_BYTE, i, TAG_REPLY, d->ctl, &rr[i]);
        if (MPI_Isend(d->q_send, 2, MPI_INT, i, TAG_QUERY, d->ctl, &sr) == MPI_SUCCESS) MPI_Request_free(&sr);
    }
    double t0 = qa_dist__now();
    int pending = p - 1;
    while (pending > 0 && qa_dist__now() - t0 < window) {
        for (int i = 0; i < p; i++) {
            if (got[i]) continue;
            int done = 0;
            if (MPI_Test(&rr[i], &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || !done) continue;
            if (rep[i].probe != d->probe_no) { /* a late answer to an earlier probe: wait for this one */
                MPI_Irecv(&rep[i], (int)sizeof rep[i], MPI_BYTE, i, TAG_REPLY, d->ctl, &rr[i]);
                continue;
            }
            got[i] = 1;
            pending--;
        }
        wd_service(d); /* peers that probe too ask us */
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < p; i++)
        if (!got[i] && rr[i] != MPI_REQUEST_NULL) {
            MPI_Cancel(&rr[i]);
            MPI_Wait(&rr[i], MPI_STATUS_IGNORE);
        }
    free(rr);
    return pending;
}

/* One line: headline, then the peers that are not waiting in the same collective. Aborts the job. */
_Noreturn static void wd_report_abort(qa_dist *d, const wd_status *me, const char *headline, const wd_status *rep,
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
            const wd_status *s = &rep[i];
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
_Noreturn static void wd_fire(qa_dist *d, const wd_status *me, double deadline) {
    char head[512];
    snprintf(head, sizeof head, "collective '%s' (#%llu) exceeded %.0f s (a peer may have died or be stuck)",
             me->phase, (unsigned long long)me->seq, deadline);
    if (!wd_can_probe(d)) wd_report_abort(d, me, head, NULL, NULL, 0);
    int p = d->size;
    wd_status *rep = qa_calloc((size_t)p, sizeof *rep);
    int *got = qa_calloc((size_t)p, sizeof *got);
    wd_probe(d, rep, got, 3.0);
    wd_report_abort(d, me, head, rep, got, 3.0);
}

/* A collective is taking long (or SIGTERM arrived while waiting): are all peers alive? A peer that does
 * not answer while this rank still waits in the same collective has died: abort now, not at the deadline. */
static void wd_check_peers(qa_dist *d, const wd_status *me) {
    int p = d->size;
    wd_status *rep = qa_calloc((size_t)p, sizeof *rep);
    int *got = qa_calloc((size_t)p, sizeof *got);
    int missing = wd_probe(d, rep, got, 3.0);
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
    int serve = wd_can_probe(d);
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
        double now = qa_dist__now(), waited = d->in_coll ? now - d->coll_start : 0;
        if (d->in_coll && d->deadline_s > 0 && waited > d->deadline_s && !d->wd_fired) {
            d->wd_fired = 1;
            double dl2 = d->deadline_s;
            pthread_mutex_unlock(&d->mu);
            wd_status me;
            wd_snapshot(d, &me);
            wd_fire(d, &me, dl2); /* does not return */
        }
        /* liveness: every probe_s of waiting in one collective, every 2 s after a stop signal */
        double every = d->stop_sig && d->probe_s > 2.0 ? 2.0 : d->probe_s;
        int probe = serve && d->in_coll && waited >= every && now - last_probe >= every;
        pthread_mutex_unlock(&d->mu);
        if (probe) {
            wd_status me;
            wd_snapshot(d, &me);
            wd_check_peers(d, &me);
            last_probe = qa_dist__now();
        }
        if (serve) wd_service(d);
        pthread_mutex_lock(&d->mu);
    }
    pthread_mutex_unlock(&d->mu);
    if (d->q_posted) { /* the world is still alive (finalize waits for us): withdraw the receive */
        MPI_Cancel(&d->q_req);
        MPI_Wait(&d->q_req, MPI_STATUS_IGNORE);
        d->q_posted = 0;
    }
    return NULL;
}

/* ---------------------------------------------------------------- init / finalize */

static int mpi_ok_or(qa_dist *d, int rc) { (void)d; return rc == MPI_SUCCESS; }

int qa_dist_init(qa_dist **out, int *argc, char ***argv, const qa_dist_opts *opts, qa_err *e) {
    qa_dist_opts dflt;
    if (!opts) { qa_dist_opts_default(&dflt); opts = &dflt; }
    *out = NULL;
    int init = 0;
    MPI_Initialized(&init);
    if (init) return QA_ERR(e, "qa_dist_init: MPI is already initialized in this process: create one qa_dist per process");
    qa_dist *d = qa_calloc(1, sizeof *d);
    d->rank = -1;
    d->comm = d->ctl = MPI_COMM_NULL;
    pthread_mutex_init(&d->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    d->mode = opts->mode;
    d->deadline_s = opts->deadline_s;
    d->probe_s = opts->probe_s > 0 ? opts->probe_s : 10.0;
    d->note_start = qa_dist__now();
    snprintf(d->note, sizeof d->note, "startup");

    /* srun without a PMI plugin (--mpi=none, or Slurm without PMIx): Open MPI cannot start (it refuses a
     * direct launch without PMI), and other MPIs start N singletons. Decide before MPI_Init. */
    int step_tasks = env_int("SLURM_STEP_NUM_TASKS", env_int("SLURM_NTASKS", 1));
    int in_step = getenv("SLURM_STEP_ID") != NULL && getenv("SLURM_PROCID") != NULL;
    int has_pmi = getenv("PMIX_RANK") || getenv("PMI_FD") || getenv("PMI_RANK") || getenv("OMPI_COMM_WORLD_SIZE");
    int env_mode = 0;
    if (in_step && !has_pmi) {
        if (!opts->env_bootstrap) {
            pthread_cond_destroy(&d->cv);
            pthread_mutex_destroy(&d->mu);
            free(d);
            return QA_ERR(e, "srun started %d task(s) without a PMI plugin (srun --mpi=none, or Slurm without PMIx): MPI "
                          "cannot form the job; launch with `srun --mpi=pmix` (see `srun --mpi=list`) or mpirun, or "
                          "set QALIGN_DIST_ENV_BOOTSTRAP=1 to run without MPI (collectives over NCCL only)", step_tasks);
        }
        env_mode = 1;
    } else {
        QA_MPI_CHECK(d, "init", MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &d->thread_level));
        d->mpi_up = 1;
        QA_MPI_CHECK(d, "init", MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
        int wr = 0, ws = 1;
        QA_MPI_CHECK(d, "init", MPI_Comm_rank(MPI_COMM_WORLD, &wr));
        QA_MPI_CHECK(d, "init", MPI_Comm_size(MPI_COMM_WORLD, &ws));
        d->rank = wr;
        d->size = ws;
        d->mpi_world = 1;
        if (ws == 1 && in_step && step_tasks > 1) { /* an MPI that started N singletons */
            if (!opts->env_bootstrap) {
                MPI_Finalize();
                pthread_cond_destroy(&d->cv);
                pthread_mutex_destroy(&d->mu);
                free(d);
                return QA_ERR(e, "srun started %d tasks but MPI sees a world of 1 (Slurm without PMIx?): launch with "
                              "`srun --mpi=pmix` (see `srun --mpi=list`) or mpirun, or set QALIGN_DIST_ENV_BOOTSTRAP=1 "
                              "to bootstrap NCCL from SLURM_PROCID/SLURM_NTASKS", step_tasks);
            }
            env_mode = 1;
        }
    }
    if (env_mode) {
        d->mpi_world = 0;
        d->rank = env_int("SLURM_PROCID", 0);
        d->size = step_tasks;
        d->local_rank = env_int("SLURM_LOCALID", 0);
        d->local_size = env_int("SLURM_STEP_TASKS_PER_NODE", env_int("SLURM_NTASKS_PER_NODE", 1));
        if (d->local_size < d->local_rank + 1) d->local_size = d->local_rank + 1;
        snprintf(d->ident, sizeof d->ident, "slurm-env%s", d->mpi_up ? "" : " (no MPI)");
    }

    if (d->mpi_up) {
        QA_MPI_CHECK(d, "init", MPI_Comm_dup(MPI_COMM_WORLD, &d->comm));
        QA_MPI_CHECK(d, "init", MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN));
        QA_MPI_CHECK(d, "init", MPI_Comm_dup(MPI_COMM_WORLD, &d->ctl));
        QA_MPI_CHECK(d, "init", MPI_Comm_set_errhandler(d->ctl, MPI_ERRORS_RETURN));
    }

    if (d->mpi_world) {
        /* node-local rank: ranks sharing memory; fall back to launcher variables */
        MPI_Comm local = MPI_COMM_NULL;
        int lr = -1, ls = 0;
        if (mpi_ok_or(d, MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &local)) &&
            local != MPI_COMM_NULL && mpi_ok_or(d, MPI_Comm_rank(local, &lr)) && mpi_ok_or(d, MPI_Comm_size(local, &ls))) {
            d->local_rank = lr;
            d->local_size = ls;
            snprintf(d->ident, sizeof d->ident, "%s", d->size == 1 && !getenv("OMPI_COMM_WORLD_SIZE") ? "singleton" : "mpi/shared-comm");
        } else {
            const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", NULL};
            const char *sizes[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_STEP_TASKS_PER_NODE", NULL};
            d->local_rank = 0;
            d->local_size = 1;
            snprintf(d->ident, sizeof d->ident, "mpi/none(local rank 0)");
            for (int i = 0; vars[i]; i++) {
                if (getenv(vars[i])) {
                    d->local_rank = env_int(vars[i], 0);
                    d->local_size = env_int(sizes[i], 1);
                    snprintf(d->ident, sizeof d->ident, "mpi/env:%s", vars[i]);
                    break;
                }
            }
        }
        if (local != MPI_COMM_NULL) QA_MPI_CHECK(d, "init", MPI_Comm_free(&local));
    }

    d->host.backend = "mpi";
    d->host.on_device = 0;
    d->host.d = d;
    qa_dist__host_comm_setup(&d->host);

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

    if (!opts->quiet && d->rank == 0)
        fprintf(stderr, "qalign: dist: %d rank(s) [%s], mode %s, collective deadline %s%.0f s, MPI thread level %d\n",
                d->size, d->ident, d->mode == QA_DIST_FAST ? "fast" : "deterministic", d->deadline_s > 0 ? "" : "off ",
                d->deadline_s > 0 ? d->deadline_s : 0.0, d->thread_level);
    qa_dist_note(d, "running");
    *out = d;
    return 0;
}

void qa_dist_finalize(qa_dist *d) {
    if (!d) return;
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
    if (d->comm != MPI_COMM_NULL) QA_MPI_CHECK(d, "finalize", MPI_Comm_free(&d->comm));
    if (d->ctl != MPI_COMM_NULL) QA_MPI_CHECK(d, "finalize", MPI_Comm_free(&d->ctl));
    if (d->mpi_up) QA_MPI_CHECK(d, "finalize", MPI_Finalize());
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

static void tree_sum_f64s(double *parts, int p, size_t len, size_t stride) {
    for (int s = 1; s < p; s *= 2)
        for (int i = 0; i + s < p; i += 2 * s) {
            double *a = parts + (size_t)i * stride;
            const double *b = parts + (size_t)(i + s) * stride;
            for (size_t k = 0; k < len; k++) a[k] = a[k] + b[k];
        }
}

void qa_dist_tree_sum_f64(double *parts, int p, size_t n) { tree_sum_f64s(parts, p, n, n); }

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

/* ---------------------------------------------------------------- host collectives */

/* 1 when the collective has nothing to do: a world of one rank without MPI or NCCL (srun -n 1 --mpi=none,
 * or QALIGN_DIST_ENV_BOOTSTRAP=1 at size 1). Otherwise aborts unless MPI or an NCCL control plane spans
 * the ranks. */
static int solo(qa_dist *d, const char *phase) {
    if (d->mpi_world || d->ctl_ops.allreduce) return 0;
    if (d->size == 1) return 1;
    qa_dist_abort(d, 1, "collective '%s' needs a communicator: MPI does not span the %d ranks (srun without PMI, "
                  "QALIGN_DIST_ENV_BOOTSTRAP=1) and no NCCL communicator exists yet; create it first "
                  "(qa_dist_nccl_comm) or launch with srun --mpi=pmix",
                  phase, d->size);
    return 0;
}

/* Deterministic in-place sum (see the top of this file). elem: MPI_FLOAT or MPI_DOUBLE. */
static void det_sum(qa_dist *d, void *buf, size_t n, int is_f64, const char *phase) {
    int p = d->size, me = d->rank;
    size_t es = is_f64 ? 8 : 4;
    MPI_Datatype dt = is_f64 ? MPI_DOUBLE : MPI_FLOAT;
    int *cnt = qa_malloc(4 * (size_t)p * sizeof(int));
    int *dsp = cnt + p, *rcnt = cnt + 2 * p, *rdsp = cnt + 3 * p;
    for (size_t off = 0; off < n; off += SLICE_ELEMS) {
        size_t m = n - off < SLICE_ELEMS ? n - off : SLICE_ELEMS;
        size_t chunk = (m + (size_t)p - 1) / (size_t)p;
        for (int j = 0; j < p; j++) {
            size_t st = (size_t)j * chunk < m ? (size_t)j * chunk : m;
            size_t en = st + chunk < m ? st + chunk : m;
            cnt[j] = (int)(en - st);
            dsp[j] = (int)st;
        }
        for (int i = 0; i < p; i++) { rcnt[i] = cnt[me]; rdsp[i] = (int)((size_t)i * chunk); }
        char *base = (char *)buf + off * es;
        void *parts = qa_dist__scratch(d, (size_t)p * chunk * es + es);
        QA_MPI_CHECK(d, phase, MPI_Alltoallv(base, cnt, dsp, dt, parts, rcnt, rdsp, dt, d->comm));
        if (is_f64) tree_sum_f64s(parts, p, (size_t)cnt[me], chunk);
        else qa_dist__tree_sum_f32s(parts, p, (size_t)cnt[me], chunk);
        memcpy(base + (size_t)dsp[me] * es, parts, (size_t)cnt[me] * es);
        QA_MPI_CHECK(d, phase, MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, base, cnt, dsp, dt, d->comm));
    }
    free(cnt);
}

/* In-place all-reduce of count elements of dt in slices that fit an int count. */
static void mpi_allreduce(qa_dist *d, void *buf, size_t n, MPI_Datatype dt, size_t es, MPI_Op op, const char *phase) {
    for (size_t off = 0; off < n; off += SLICE_ELEMS) {
        size_t m = n - off < SLICE_ELEMS ? n - off : SLICE_ELEMS;
        QA_MPI_CHECK(d, phase, MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * es, (int)m, dt, op, d->comm));
    }
}

static MPI_Op mpi_op(qa_dist_op op) { return op == QA_DIST_MAX ? MPI_MAX : op == QA_DIST_MIN ? MPI_MIN : MPI_SUM; }

void qa_dist_barrier(qa_dist *d, const char *phase) {
    if (solo(d, phase)) return;
    qa_dist__coll_begin(d, phase);
    if (d->mpi_world) {
        QA_MPI_CHECK(d, phase, MPI_Barrier(d->comm));
    } else {
        int64_t one = 1;
        d->ctl_ops.allreduce(d->ctl_ops.ctx, &one, 1, QA_DT_I64, QA_DIST_SUM, phase);
    }
    qa_dist__coll_end(d);
}

void qa_dist_bcast(qa_dist *d, void *buf, size_t nbytes, int root, const char *phase) {
    if (root < 0 || root >= d->size) qa_dist_abort(d, 1, "qa_dist_bcast '%s': root %d outside 0..%d", phase, root, d->size - 1);
    if (solo(d, phase)) return;
    qa_dist__coll_begin(d, phase);
    if (!d->mpi_world) {
        d->ctl_ops.bcast(d->ctl_ops.ctx, buf, nbytes, root, phase);
    } else if (d->size > 1) {
        const size_t step = (size_t)1 << 30;
        for (size_t off = 0; off < nbytes; off += step) {
            size_t m = nbytes - off < step ? nbytes - off : step;
            QA_MPI_CHECK(d, phase, MPI_Bcast((char *)buf + off, (int)m, MPI_BYTE, root, d->comm));
        }
    }
    qa_dist__coll_end(d);
}

void qa_dist_allreduce_sum_f32(qa_dist *d, float *buf, size_t n, const char *phase) {
    if (solo(d, phase)) return;
    qa_dist__coll_begin(d, phase);
    if (!d->mpi_world) d->ctl_ops.allreduce(d->ctl_ops.ctx, buf, n, QA_DT_F32, QA_DIST_SUM, phase);
    else if (d->size > 1) {
        if (d->mode == QA_DIST_FAST) mpi_allreduce(d, buf, n, MPI_FLOAT, 4, MPI_SUM, phase);
        else det_sum(d, buf, n, 0, phase);
    }
    qa_dist__coll_end(d);
}

void qa_dist_allreduce_f64(qa_dist *d, double *buf, size_t n, qa_dist_op op, const char *phase) {
    if (solo(d, phase)) return;
    qa_dist__coll_begin(d, phase);
    if (!d->mpi_world) d->ctl_ops.allreduce(d->ctl_ops.ctx, buf, n, QA_DT_F64, op, phase);
    else if (d->size > 1) {
        if (op == QA_DIST_SUM && d->mode == QA_DIST_DETERMINISTIC) det_sum(d, buf, n, 1, phase);
        else mpi_allreduce(d, buf, n, MPI_DOUBLE, 8, mpi_op(op), phase);
    }
    qa_dist__coll_end(d);
}

void qa_dist_allreduce_i64(qa_dist *d, int64_t *buf, size_t n, qa_dist_op op, const char *phase) {
    if (solo(d, phase)) return;
    qa_dist__coll_begin(d, phase);
    if (!d->mpi_world) d->ctl_ops.allreduce(d->ctl_ops.ctx, buf, n, QA_DT_I64, op, phase);
    else if (d->size > 1) mpi_allreduce(d, buf, n, MPI_INT64_T, 8, mpi_op(op), phase);
    qa_dist__coll_end(d);
}

int qa_dist_all_true(qa_dist *d, int ok, const char *phase) {
    int64_t v = ok ? 1 : 0;
    qa_dist_allreduce_i64(d, &v, 1, QA_DIST_MIN, phase);
    return v != 0;
}

void qa_dist_gather_blobs(qa_dist *d, const void *buf, size_t n, qa_dist_blobs *out, const char *phase) {
    memset(out, 0, sizeof *out);
    int p = d->size, me = d->rank;
    uint64_t mylen = n;
    uint64_t *lens = d->rank == 0 || !d->mpi_world ? qa_calloc((size_t)p, sizeof *lens) : NULL;
    if (!d->mpi_world) {
        /* through the control plane: everyone learns all lengths, then each rank broadcasts its blob */
        int64_t *l = qa_calloc((size_t)p, sizeof *l);
        l[me] = (int64_t)n;
        qa_dist_allreduce_i64(d, l, (size_t)p, QA_DIST_SUM, phase);
        size_t total = 0;
        for (int i = 0; i < p; i++) { lens[i] = (uint64_t)l[i]; total += (size_t)l[i]; }
        char *all = qa_malloc(total + 1);
        size_t off = 0;
        for (int i = 0; i < p; i++) {
            if (i == me && n) memcpy(all + off, buf, n);
            if (lens[i]) qa_dist_bcast(d, all + off, (size_t)lens[i], i, phase);
            off += (size_t)lens[i];
        }
        free(l);
        if (me == 0) {
            out->count = p;
            out->data = all;
            all[total] = 0;
            out->offset = qa_malloc((size_t)p * sizeof(size_t));
            out->len = qa_malloc((size_t)p * sizeof(size_t));
            for (size_t i = 0, o = 0; i < (size_t)p; o += (size_t)lens[i], i++) { out->offset[i] = o; out->len[i] = (size_t)lens[i]; }
        } else free(all);
        free(lens);
        return;
    }
    qa_dist__coll_begin(d, phase);
    QA_MPI_CHECK(d, phase, MPI_Gather(&mylen, 1, MPI_UINT64_T, lens, 1, MPI_UINT64_T, 0, d->comm));
    int *cnt = NULL, *dsp = NULL;
    size_t total = 0;
    if (me == 0) {
        for (int i = 0; i < p; i++) total += (size_t)lens[i];
        if (total > INT_MAX)
            qa_dist_abort(d, 1, "gather '%s': %zu bytes in all exceed the 2 GiB of one MPI_Gatherv: gather in parts",
                          phase, total);
        cnt = qa_malloc(2 * (size_t)p * sizeof(int));
        dsp = cnt + p;
        size_t o = 0;
        for (int i = 0; i < p; i++) { cnt[i] = (int)lens[i]; dsp[i] = (int)o; o += (size_t)lens[i]; }
        out->count = p;
        out->data = qa_malloc(total + 1);
        out->data[total] = 0;
        out->offset = qa_malloc((size_t)p * sizeof(size_t));
        out->len = qa_malloc((size_t)p * sizeof(size_t));
        for (int i = 0; i < p; i++) { out->offset[i] = (size_t)dsp[i]; out->len[i] = (size_t)cnt[i]; }
    }
    if (n > INT_MAX) qa_dist_abort(d, 1, "gather '%s': a blob of %zu bytes exceeds 2 GiB: gather in parts", phase, n);
    QA_MPI_CHECK(d, phase, MPI_Gatherv(buf, (int)n, MPI_BYTE, me == 0 ? out->data : NULL, cnt, dsp, MPI_BYTE, 0, d->comm));
    qa_dist__coll_end(d);
    free(cnt);
    free(lens);
}

void qa_dist_blobs_free(qa_dist_blobs *b) {
    if (!b) return;
    free(b->data);
    free(b->offset);
    free(b->len);
    memset(b, 0, sizeof *b);
}

/* ---------------------------------------------------------------- graceful stop */

int qa_dist_stop_requested(const qa_dist *d) { return (int)d->stop_sig; }
void qa_dist_request_stop(qa_dist *d, int why) { d->stop_sig = why ? why : -1; }

int qa_dist_agree_stop(qa_dist *d) {
    int64_t v = d->stop_sig != 0;
    qa_dist_allreduce_i64(d, &v, 1, QA_DIST_MAX, "agree-stop");
    return v != 0;
}

/* ---------------------------------------------------------------- the "mpi" communicator */

static void host_allreduce_sum(qa_comm *c, void *buf, size_t n, qa_dtype dt, const char *phase) {
    qa_dist *d = c->d;
    if (dt == QA_DT_F32) { qa_dist_allreduce_sum_f32(d, buf, n, phase); return; }
    if (dt == QA_DT_F64) { qa_dist_allreduce_f64(d, buf, n, QA_DIST_SUM, phase); return; }
    if (dt == QA_DT_BF16) { /* sum in f32, round once */
        uint16_t *h = buf;
        float *f = qa_malloc((n ? n : 1) * sizeof(float));
        for (size_t i = 0; i < n; i++) f[i] = qa_bf16_to_f32(h[i]);
        qa_dist_allreduce_sum_f32(d, f, n, phase);
        for (size_t i = 0; i < n; i++) h[i] = qa_f32_to_bf16(f[i]);
        free(f);
        return;
    }
    qa_dist_abort(d, 1, "qa_comm_allreduce_sum '%s': dtype %s is not supported by the mpi backend (F32, BF16, F64)",
                  phase, qa_dtype_name(dt));
}
static void host_barrier(qa_comm *c, const char *phase) { qa_dist_barrier(c->d, phase); }

void qa_dist__host_comm_setup(qa_comm *c) {
    c->allreduce_sum = host_allreduce_sum;
    c->barrier = host_barrier;
    c->destroy = NULL;
    c->impl = NULL;
}

qa_comm *qa_dist_host_comm(qa_dist *d) { return &d->host; }

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
    host_allreduce_sum(&c->d->host, x->buf, n, dt, phase);
    x->st.h2d(x->st.ctx, buf, x->buf, bytes);
}
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
    c->barrier = host_barrier;
    c->destroy = staged_destroy;
    c->impl = x;
    *out = c;
    return 0;
}
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
