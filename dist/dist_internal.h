/* dist_internal.h — shared by the backend-neutral core of dist/ (dist_core.c) and its MPI and NCCL backends
 * (dist_mpi.c, dist_nccl.c). Not for other layers. */
#ifndef QA_DIST_INTERNAL_H
#define QA_DIST_INTERNAL_H

#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>

#include "dist/dist.h"
#include "common/qa_clock.h"

#define QA_DIST_EXIT_MPI 71      /* an MPI call failed */
#define QA_DIST_EXIT_TIMEOUT 124 /* the watchdog fired (as timeout(1)) */
#define QA_DIST_EXIT_NCCL 72     /* an NCCL/CUDA call failed */
#define QA_DIST_PHASE 64

/* Every MPI call goes through this: on failure print file:line, the rank, the call, the phase and
 * what to do, then MPI_Abort the job. The communicators use MPI_ERRORS_RETURN so errors get here. */
#define QA_MPI_CHECK(d, phase, call) do { int _qa_rc = (call); \
    if (_qa_rc != MPI_SUCCESS) qa_dist__mpi_fail((d), (phase), #call, _qa_rc, __FILE__, __LINE__); } while (0)
_Noreturn void qa_dist__mpi_fail(const qa_dist *d, const char *phase, const char *call, int rc,
                                 const char *file, int line);

/* One communicator interface, two backends (vtable). */
struct qa_comm {
    const char *backend;  /* "mpi" / "nccl" */
    int on_device;
    qa_dist *d;
    void (*allreduce_sum)(qa_comm *c, void *buf, size_t n, qa_dtype dt, const char *phase);
    void (*barrier)(qa_comm *c, const char *phase);
    void (*destroy)(qa_comm *c);
    void *impl;
};

/* The control plane (host buffers) when MPI cannot carry it (env_bootstrap: MPI world of 1 under
 * srun without PMIx): the NCCL backend installs these. */
typedef struct qa_ctl_ops {
    void *ctx;
    void (*bcast)(void *ctx, void *buf, size_t nbytes, int root, const char *phase);
    /* host buffer of F32 / F64 / I64; SUM of F32/F64 follows the mode */
    void (*allreduce)(void *ctx, void *buf, size_t n, qa_dtype dt, qa_dist_op op, const char *phase);
} qa_ctl_ops;

struct qa_dist {
    int rank, size, local_rank, local_size;
    char ident[96];
    int mpi_up;            /* MPI_Init_thread was called (0 under srun without PMI in env_bootstrap mode) */
    int mpi_world;         /* 1: MPI carries collectives over all ranks (0 in env_bootstrap mode) */
    int thread_level;      /* what MPI_Init_thread provided */
    MPI_Comm comm;         /* collectives (a dup of MPI_COMM_WORLD) */
    MPI_Comm ctl;          /* watchdog status queries (another dup) */
    qa_dist_mode mode;
    qa_comm host;          /* the "mpi" backend on host buffers */
    qa_ctl_ops ctl_ops;    /* set by the NCCL backend in env_bootstrap mode */

    /* graceful stop */
    volatile sig_atomic_t stop_sig;
    int handlers_installed;
    struct sigaction old_usr1, old_term;

    /* watchdog: the state of the current collective, guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t wd_thread;
    int wd_running, wd_quit, wd_fired;
    double deadline_s;
    double probe_s;        /* liveness probe period while a collective waits */
    int in_coll;
    double coll_start, note_start;
    uint64_t seq;          /* collectives started so far */
    char phase[QA_DIST_PHASE];
    char note[QA_DIST_PHASE];
    MPI_Request q_req;     /* pending receive of a status query (watchdog thread only) */
    int q_buf[2];
    int q_posted;
    int q_send[2];         /* the query this rank sends when it probes (rank, probe number) */
    int probe_no;

    /* what to do before MPI_Abort (ncclCommAbort of every live NCCL communicator) */
    void (*abort_hook)(void *ctx);
    void *abort_ctx;

    /* scratch for the deterministic reductions */
    void *scratch;
    size_t scratch_bytes;
};

/* ---- dist_core.c */
int qa_dist__env_int(const char *name, int dflt); /* an integer environment variable, dflt when unset or bad */
/* The context without a backend: rank -1, mutex and condition (monotonic clock), mode, deadline, probe
 * period, note "startup". qa_dist__free undoes it (and the scratch). */
qa_dist *qa_dist__new(const qa_dist_opts *opts);
void qa_dist__free(qa_dist *d);
/* Once the backend knows the ranks: the stop-signal handlers (opts->handle_signals) and the watchdog thread;
 * qa_dist__stop joins the thread and restores the handlers, before the backend shuts down. */
void qa_dist__start(qa_dist *d, const qa_dist_opts *opts);
void qa_dist__stop(qa_dist *d);
/* Mark the start / end of a collective for the watchdog (the NCCL backend calls these too). */
void qa_dist__coll_begin(qa_dist *d, const char *phase);
void qa_dist__coll_end(qa_dist *d);
void *qa_dist__scratch(qa_dist *d, size_t bytes);
/* Print "qalign: rank R: <msg>" once and abort the job (hook, then MPI_Abort). */
_Noreturn void qa_dist__abort_msg(qa_dist *d, int code, const char *msg);
void qa_dist__host_comm_setup(qa_comm *c);
/* Strided variants of qa_dist_tree_sum_f32/f64: part i starts at parts + i*stride, length len. */
void qa_dist__tree_sum_f32s(float *parts, int p, size_t len, size_t stride);
void qa_dist__tree_sum_f64s(double *parts, int p, size_t len, size_t stride);

/* What a rank tells a peer whose watchdog probes it. */
typedef struct qa_dist_status {
    int32_t rank, in_coll;
    int32_t probe, pad;  /* the prober's probe number, echoed */
    uint64_t seq;
    double secs;  /* in the current collective, or since the last one ended / the note was set */
    char phase[QA_DIST_PHASE];
    char note[QA_DIST_PHASE];
} qa_dist_status;
void qa_dist__snapshot(qa_dist *d, qa_dist_status *s);

/* ---- dist_mpi.c */
/* The watchdog's liveness probes over the ctl communicator (watchdog thread only). can_probe: a world of
 * several MPI ranks with MPI_THREAD_MULTIPLE. probe_peers asks every peer for its status and waits up to
 * window s: got[i] = 1 for those that answered, rep[i] their status; returns how many did not answer.
 * serve_probes answers pending queries; probes_close withdraws the pending receive. */
int qa_dist__can_probe(const qa_dist *d);
int qa_dist__probe_peers(qa_dist *d, qa_dist_status *rep, int *got, double window);
void qa_dist__serve_probes(qa_dist *d);
void qa_dist__probes_close(qa_dist *d);
/* MPI_COMM_WORLD's rank (-1 before MPI_Init or after MPI_Finalize); MPI_Abort when MPI is up. */
int qa_dist__mpi_world_rank(void);
void qa_dist__mpi_abort(int code);

#endif
