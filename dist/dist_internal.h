/* dist_internal.h — shared between the MPI and NCCL backends of dist/. Not for other layers. */
#ifndef QA_DIST_INTERNAL_H
#define QA_DIST_INTERNAL_H

#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>

#include "dist/dist.h"

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

double qa_dist__now(void);
/* Mark the start / end of a collective for the watchdog (the NCCL backend calls these too). */
void qa_dist__coll_begin(qa_dist *d, const char *phase);
void qa_dist__coll_end(qa_dist *d);
void *qa_dist__scratch(qa_dist *d, size_t bytes);
/* Print "qalign: rank R: <msg>" once and abort the job (hook, then MPI_Abort). */
_Noreturn void qa_dist__abort_msg(qa_dist *d, int code, const char *msg);
void qa_dist__host_comm_setup(qa_comm *c);
/* Strided variant of qa_dist_tree_sum_f32: part i starts at parts + i*stride, length len. */
void qa_dist__tree_sum_f32s(float *parts, int p, size_t len, size_t stride);

#endif
