/* dist.h — ranks, collectives, failure handling (MPI on host buffers; NCCL on device buffers).
 *
 * A leaf layer: it knows nothing of models or files. One context per process, owned by the
 * caller (no globals hold run state; the one static is the signal-handler flag pointer, see
 * qa_dist_opts.handle_signals).
 *
 *   qa_dist_opts o; qa_dist_opts_default(&o);
 *   qa_dist *d; qa_err e = {0};
 *   if (qa_dist_init(&d, &argc, &argv, &o, &e)) { qa_err_print(&e); return 1; }
 *   ... qa_dist_allreduce_sum_f32(d, grads, n, "grads");      // one flat buffer per step
 *   ... if (qa_dist_agree_stop(d)) { checkpoint; break; }      // at step boundaries
 *   if (qa_dist_is_coordinator(d)) { log, write results }
 *   qa_dist_finalize(d);
 *
 * Launch: `mpirun -np N prog`, `srun --mpi=pmix -n N prog`, or plain `prog` (one rank, MPI
 * singleton). As root in a container: mpirun --allow-run-as-root --oversubscribe (docs/distributed.md).
 *
 * Failure contract
 *  - Collectives do not return errors. A failed MPI/NCCL call prints
 *    "qalign: fatal: rank R: <call> failed in '<phase>': <why> (file:line); <what to do>" and
 *    aborts the whole job (MPI_Abort), because the other ranks cannot continue without it.
 *  - A rank that hits an application error calls qa_dist_abort(d, code, "cause"): it prints
 *    "qalign: rank R: cause" and MPI_Abort()s the job; mpirun/srun exit non-zero.
 *  - A rank that dies (SIGKILL, exit without finalize): mpirun (Open MPI 4.1) and
 *    srun --kill-on-bad-exit=1 tear down the other ranks (tests/dist: about 1-2 s).
 *  - A collective that waits longer than probe_s (10 s) makes the watchdog check that every peer is
 *    alive; one that does not answer aborts the job at once, naming it (srun without -K, SIGSTOP, a
 *    rank whose SIGTERM handler delays its death).
 *  - A collective that does not complete within the deadline (default 600 s; $QALIGN_DIST_DEADLINE_S)
 *    makes the watchdog thread of a waiting rank ask every peer what it is doing, print
 *    "rank R: collective '<phase>' exceeded N s (a peer may have died or be stuck); rank P: ..."
 *    and MPI_Abort the job.
 *
 * Determinism contract (QA_DIST_DETERMINISTIC, the default): every f32/f64 sum is computed in a
 * fixed pairwise tree over ranks, ((r0 + r1) + (r2 + r3)) ..., the same on every rank and
 * independent of timing; the result is bitwise identical on all ranks. Combined with
 * qa_dist_tree (pairwise accumulation of micro-batch buffers inside a rank), the total over
 * K micro-batches split in rank order is bitwise the same for every world size P such that
 * K/P is a power of two (e.g. K = 8: P = 1, 2, 4, 8).
 * QA_DIST_FAST uses MPI_Allreduce (ring/tree chosen by Open MPI: same bytes, fewer copies, no
 * such guarantee across world sizes).
 */
#ifndef QA_DIST_H
#define QA_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "common/qa_dtype.h"
#include "common/qa_err.h"

#define QA_DIST_DEFAULT_DEADLINE_S 600.0

typedef enum qa_dist_mode {
    QA_DIST_DETERMINISTIC = 0, /* fixed-order sums (reduce-scatter by alltoall + ordered sum + allgather) */
    QA_DIST_FAST = 1,          /* MPI_Allreduce / ncclAllReduce */
} qa_dist_mode;

typedef enum qa_dist_op { QA_DIST_SUM = 0, QA_DIST_MAX = 1, QA_DIST_MIN = 2 } qa_dist_op;

typedef struct qa_dist_opts {
    double deadline_s;  /* per-collective deadline in seconds; <= 0 disables the watchdog */
    double probe_s;     /* while a collective waits longer than this, ask the peers every probe_s seconds
                         * whether they are alive; one that does not answer within 3 s is dead: abort
                         * at once instead of at the deadline (default 10; every 2 s after SIGTERM/SIGUSR1) */
    qa_dist_mode mode;  /* reduction mode of f32/f64 sums */
    int handle_signals; /* 1: SIGUSR1 and SIGTERM set the stop flag (qa_dist_stop_requested) instead of
                         * killing the process. The handler reaches the flag (a sig_atomic_t inside
                         * qa_dist) through one file-static pointer: the only static in this layer,
                         * written by init/finalize and read only by the handler. */
    int env_bootstrap;  /* srun without a PMI plugin (--mpi=none; Slurm without PMIx), where MPI cannot form the
                         * job: 1 = run without MPI, rank/size/local rank from SLURM_PROCID/SLURM_NTASKS/
                         * SLURM_LOCALID; only an NCCL communicator (qa_dist_nccl_comm, id exchanged through
                         * a file) can then carry collectives. 0 = qa_dist_init fails with what to do. */
    int quiet;          /* 1: no informational line from rank 0 at init */
} qa_dist_opts;

/* Defaults, then the environment: QALIGN_DIST_DEADLINE_S (seconds, 0 = off), QALIGN_DIST_PROBE_S,
 * QALIGN_DIST_MODE (deterministic|fast), QALIGN_DIST_ENV_BOOTSTRAP (0|1). handle_signals = 1. */
void qa_dist_opts_default(qa_dist_opts *o);

typedef struct qa_dist qa_dist;

/* MPI_Init_thread(MPI_THREAD_MULTIPLE), errors return to the caller (MPI_ERRORS_RETURN), a private
 * duplicate of MPI_COMM_WORLD, the node-local rank, the watchdog thread and signal handlers.
 * Works without a launcher (one rank). Returns 0, or -1 with e filled (e.g. srun without PMIx). */
int qa_dist_init(qa_dist **out, int *argc, char ***argv, const qa_dist_opts *o, qa_err *e);
/* Stop the watchdog, restore signal handlers, free the communicators, MPI_Finalize, free d. NULL ok. */
void qa_dist_finalize(qa_dist *d);

int qa_dist_rank(const qa_dist *d);
int qa_dist_size(const qa_dist *d);
int qa_dist_local_rank(const qa_dist *d); /* rank among the ranks on this node: picks the GPU */
int qa_dist_local_size(const qa_dist *d);
/* CPU threads per rank: requested when > 0, else the node's online cores split over the ranks on this node
 * (at least 1; d NULL: one rank). What --threads 0 / train.threads 0 mean. */
int qa_dist_cpu_threads(const qa_dist *d, int requested);
int qa_dist_is_coordinator(const qa_dist *d); /* rank 0: the only rank that logs and writes files */
/* How rank/size/local rank were found: "mpi" (+ "/shared-comm" or "/env:VAR" for the local rank),
 * "slurm-env (no MPI)" (env_bootstrap), "singleton". */
const char *qa_dist_identity_source(const qa_dist *d);
qa_dist_mode qa_dist_get_mode(const qa_dist *d);
void qa_dist_set_mode(qa_dist *d, qa_dist_mode m);
/* Change the per-collective deadline (e.g. around a long rank-0-only phase). <= 0 disables. */
void qa_dist_set_deadline(qa_dist *d, double seconds);
double qa_dist_get_deadline(const qa_dist *d);
/* Label what this rank does between collectives ("forward", "save checkpoint"); copied, shown by
 * the watchdog report of a peer that timed out. */
void qa_dist_note(qa_dist *d, const char *activity);

/* ---- collectives: every rank calls them in the same order with the same sizes, from one thread per
 * rank (the watchdog thread uses its own communicator). phase names the call in watchdog and error
 * messages (copied; at most 63 characters are kept). ---- */
void qa_dist_barrier(qa_dist *d, const char *phase);
void qa_dist_bcast(qa_dist *d, void *buf /* [nbytes] */, size_t nbytes, int root, const char *phase);
/* In-place sum of one flat f32 buffer (all LoRA gradients of a step). Deterministic mode: bytes
 * sent per rank 2*(P-1)/P * 4n (as a ring all-reduce), extra host memory 4n. */
void qa_dist_allreduce_sum_f32(qa_dist *d, float *buf /* [n] */, size_t n, const char *phase);
/* In-place reductions of small host arrays: loss sums, token counts, finite flags. f64 SUM follows
 * the mode; i64 and MAX/MIN are exact. */
void qa_dist_allreduce_f64(qa_dist *d, double *buf /* [n] */, size_t n, qa_dist_op op, const char *phase);
void qa_dist_allreduce_i64(qa_dist *d, int64_t *buf /* [n] */, size_t n, qa_dist_op op, const char *phase);
/* 1 if ok is non-zero on every rank (e.g. "all gradients finite"). */
int qa_dist_all_true(qa_dist *d, int ok, const char *phase);

/* Variable-size byte blobs gathered to rank 0 in rank order (evaluation results). */
typedef struct qa_dist_blobs {
    int count;       /* world size on rank 0, 0 elsewhere */
    char *data;      /* concatenation, rank 0 first (NUL-terminated for convenience) */
    size_t *offset;  /* [count] start of rank i's blob in data */
    size_t *len;     /* [count] length of rank i's blob */
} qa_dist_blobs;
void qa_dist_gather_blobs(qa_dist *d, const void *buf /* [n] */, size_t n, qa_dist_blobs *out, const char *phase);
void qa_dist_blobs_free(qa_dist_blobs *b);

/* ---- graceful stop (SIGUSR1 / SIGTERM, see hpc.md §4) ---- */
/* The signal number that arrived on this rank (or that qa_dist_request_stop set), else 0. Local. */
int qa_dist_stop_requested(const qa_dist *d);
void qa_dist_request_stop(qa_dist *d, int why);
/* Collective (allreduce-max of the local flag): 1 on every rank if any rank was asked to stop.
 * Call at step boundaries, then commit a checkpoint and exit 0. */
int qa_dist_agree_stop(qa_dist *d);

/* ---- failure ---- */
/* Print "qalign: rank R: <cause>" on stderr and abort the whole job with exit code `code`
 * (MPI_Abort; ncclCommAbort first when an NCCL communicator exists). Works with d == NULL. */
_Noreturn void qa_dist_abort(qa_dist *d, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- one communicator interface, two backends ----
 * "mpi": host buffers, always available (qa_dist_host_comm; owned by d).
 * "nccl": device buffers, CUDA builds only (one GPU per rank: cudaSetDevice(local_rank); the
 * ncclUniqueId goes from rank 0 over MPI, or through a file with env_bootstrap). */
typedef struct qa_comm qa_comm;
qa_comm *qa_dist_host_comm(qa_dist *d);
/* Create the NCCL communicator (collective over all ranks). -1 with e filled on CPU builds. */
int qa_dist_nccl_comm(qa_dist *d, qa_comm **out, qa_err *e);
/* In-place sum of a flat buffer of F32 or BF16 (BF16: summed in f32, rounded once), per the mode. */
void qa_comm_allreduce_sum(qa_comm *c, void *buf /* [n] */, size_t n, qa_dtype dt, const char *phase);
void qa_comm_barrier(qa_comm *c, const char *phase);
const char *qa_comm_backend(const qa_comm *c); /* "mpi", "nccl" or "staged" */
int qa_comm_on_device(const qa_comm *c);       /* 1: buffers must be device pointers */
/* A communicator on device buffers without NCCL: each collective copies the buffer to the host (d2h),
 * runs the "mpi" backend's collective (same deterministic tree, same bits), and copies it back (h2d).
 * The device-buffer interface of "nccl" for backends or builds without NCCL (the emulated device of the
 * tests; a CUDA build without NCCL). Staging buffer: n floats, grown on demand. Backend name "staged". */
typedef struct qa_comm_stage {
    void *ctx;
    void (*d2h)(void *ctx, void *host, const void *dev, size_t bytes); /* synchronous */
    void (*h2d)(void *ctx, void *dev, const void *host, size_t bytes); /* done before the next d2h */
} qa_comm_stage;
int qa_dist_staged_comm(qa_dist *d, const qa_comm_stage *stage, qa_comm **out, qa_err *e);
/* Free a communicator from qa_dist_nccl_comm before qa_dist_finalize (collective: flushes, then
 * ncclCommFinalize + ncclCommDestroy). The host comm belongs to d: ignored. NULL ok. */
void qa_comm_free(qa_comm *c);

/* ---- pairwise accumulation of micro-batch buffers (the in-rank half of the determinism contract) ----
 * push(x0), push(x1), ... keeps the partial sums of a binary counter; result() folds them into the
 * same tree qa_dist_tree_sum_f32 builds over K parts: ((x0+x1)+(x2+x3)) + ... for any K. Hence a
 * rank that pushes its K/P micro-batches and then all-reduces (deterministic mode) produces the
 * bits one rank pushing all K would, when K/P is a power of two. Memory: (log2 K + 1) * n floats. */
/* Where the tree's buffers live: host memory by default; a device backend passes its allocator and
 * its copy / add (a[i] = a[i] + b[i], exact as the host's) / zero on its own memory. */
typedef struct qa_dist_tree_mem {
    void *ctx;
    void *(*alloc)(void *ctx, size_t bytes);          /* never NULL (abort on failure) */
    void (*release)(void *ctx, void *p);
    void (*copy)(void *ctx, float *dst, const float *src, size_t n);
    void (*add)(void *ctx, float *a, const float *b, size_t n);
    void (*zero)(void *ctx, float *dst, size_t n);
} qa_dist_tree_mem;
typedef struct qa_dist_tree {
    size_t n;          /* floats per buffer */
    float *level[48];  /* level[l]: a partial sum of 2^l consecutive pushes when used[l] */
    int used[48];
    long pushes;
    qa_dist_tree_mem mem;
} qa_dist_tree;
void qa_dist_tree_init(qa_dist_tree *t, size_t n);
/* The same tree on other memory (mem copied; NULL = host). */
void qa_dist_tree_init_mem(qa_dist_tree *t, size_t n, const qa_dist_tree_mem *mem);
void qa_dist_tree_push(qa_dist_tree *t, const float *x /* [n] */);
/* Write the total into out [n] (zeros after no push) and reset the tree for the next step. */
void qa_dist_tree_result(qa_dist_tree *t, float *out /* [n] */);
void qa_dist_tree_free(qa_dist_tree *t);

/* Reference: the fixed pairwise tree over p contributions, used by both backends.
 * parts [p][n] is overwritten; the result is in parts[0..n). */
void qa_dist_tree_sum_f32(float *parts /* [p, n] */, int p, size_t n);
void qa_dist_tree_sum_f64(double *parts /* [p, n] */, int p, size_t n);

#endif
