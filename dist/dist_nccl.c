/* dist_nccl.c — the "nccl" communicator: device buffers, one GPU per rank (CUDA builds with NCCL).
 *
 * Bootstrap (hpc.md §5): rank 0 calls ncclGetUniqueId and broadcasts it over MPI; with
 * env_bootstrap (srun without PMIx) it goes through a file instead:
 *   ${QALIGN_NCCL_ID_DIR:-.}/qalign-nccl-id.<SLURM_JOB_ID>.<SLURM_STEP_ID>.<SLURM_RESTART_COUNT>
 * (unique per job step and requeue, so a stale file of an earlier job is never read).
 * Device: cudaSetDevice(local_rank) when the node shows several GPUs; device 0 when the launcher
 * already bound one GPU per task (CUDA_VISIBLE_DEVICES with one entry). Never rank % gpus.
 * The communicator is non-blocking (config.blocking = 0): every NCCL call that answers
 * ncclInProgress is polled with ncclCommGetAsyncError, and every wait for the GPU polls
 * cudaStreamQuery + ncclCommGetAsyncError against the collective deadline; on error or timeout:
 * ncclCommAbort, then MPI_Abort with "rank R: ... '<phase>' ...".
 *
 * Deterministic sum on the device, same tree as the host (dist_mpi.c), per slice of <= 2^26 elements:
 *   ncclSend/ncclRecv of chunk j to rank j (a reduce-scatter by all-to-all), the fixed pairwise tree
 *   with cublasAxpyEx (y = 1*x + y, exact as x + y; BF16 rounds after each pairwise add), then
 *   ncclAllGather. Bytes sent per rank: 2 (P-1)/P * n * elem, as ncclAllReduce's ring.
 *   Device scratch: 2 * n * elem (per slice).
 */
#include "dist/dist_internal.h"

#ifdef QALIGN_HAVE_NCCL

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <errno.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/qa_file.h"
#include "common/qa_mem.h"

#define NCCL_SLICE ((size_t)1 << 26)

typedef struct nccl_impl {
    qa_dist *d;
    ncclComm_t comm;
    cudaStream_t stream;
    cublasHandle_t blas;
    int device;
    void *a, *b;        /* device scratch, each abytes */
    size_t abytes;
    void *host_tmp;     /* device staging for host-buffer control collectives */
    size_t host_tmp_bytes;
    int aborted;
    int force;          /* QALIGN_NCCL_FORCE_COLLECTIVES=1: run the collectives even at world size 1 (tests) */
} nccl_impl;

_Noreturn static void nccl_die(nccl_impl *x, const char *phase, const char *what, const char *why, const char *hint,
                               const char *file, int line) {
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char msg[QA_ERR_MSG];
    snprintf(msg, sizeof msg, "fatal: %s in '%s' on GPU %d: %s (dist/%s:%d); %s", what, phase ? phase : "-",
             x ? x->device : -1, why, base, line, hint);
    qa_dist__abort_msg(x ? x->d : NULL, QA_DIST_EXIT_NCCL, msg);
}

#define QA_CUDA_CHECK(x, phase, call) do { cudaError_t _ce = (call); if (_ce != cudaSuccess) \
    nccl_die((x), (phase), #call " failed", cudaGetErrorString(_ce), \
             "check the GPU (nvidia-smi), that each rank has its own GPU, and CUDA_VISIBLE_DEVICES", __FILE__, __LINE__); \
    } while (0)
#define QA_CUBLAS_CHECK(x, phase, call) do { cublasStatus_t _bs = (call); if (_bs != CUBLAS_STATUS_SUCCESS) { \
    char _w[64]; snprintf(_w, sizeof _w, "cuBLAS status %d", (int)_bs); \
    nccl_die((x), (phase), #call " failed", _w, "check the GPU (nvidia-smi) and the CUDA/cuBLAS installation", \
             __FILE__, __LINE__); } } while (0)
/* NCCL calls on a non-blocking communicator may answer ncclInProgress: wait until the call is done. */
#define QA_NCCL_CHECK(x, phase, call) do { ncclResult_t _nr = (call); \
    if (_nr == ncclInProgress) _nr = nccl_wait_ready((x), (phase)); \
    if (_nr != ncclSuccess) nccl_fail((x), (phase), #call, _nr, __FILE__, __LINE__); } while (0)

static const char *nccl_hint(ncclResult_t r) {
    switch (r) {
    case ncclInvalidUsage:
        return "invalid usage: two ranks on one GPU (\"Duplicate GPU detected\")? run one rank per GPU and pick the "
               "device by local rank";
    case ncclSystemError:
    case ncclRemoteError:
        return "a system/network error or a peer died: check the other ranks' messages, NCCL_DEBUG=INFO, and the "
               "network (NCCL_SOCKET_IFNAME, NCCL_IB_DISABLE)";
    case ncclUnhandledCudaError:
        return "a CUDA error inside NCCL: check the GPU (nvidia-smi) and driver/toolkit versions";
    default:
        return "rerun with NCCL_DEBUG=INFO; see docs/distributed.md \"Failures\"";
    }
}

_Noreturn static void nccl_fail(nccl_impl *x, const char *phase, const char *call, ncclResult_t r, const char *file,
                                int line) {
    char why[1024];
    const char *last = x && x->comm ? ncclGetLastError(x->comm) : NULL;
    snprintf(why, sizeof why, "%s%s%s", ncclGetErrorString(r), last && *last ? ": " : "", last ? last : "");
    char what[256];
    snprintf(what, sizeof what, "%s failed", call);
    nccl_die(x, phase, what, why, nccl_hint(r), file, line);
}

static void nap(double elapsed) {
    /* spin briefly, then sleep: collectives of a few ms must not pay a scheduler tick */
    if (elapsed < 1e-3) return;
    struct timespec ts = {0, elapsed < 0.1 ? 20 * 1000 : 1000 * 1000};
    nanosleep(&ts, NULL);
}

_Noreturn static void nccl_timeout(nccl_impl *x, const char *phase, double dl) {
    char msg[QA_ERR_MSG];
    snprintf(msg, sizeof msg, "collective '%s' on the GPU exceeded %.0f s (a peer may have died or be stuck); "
             "NCCL communicator aborted. Raise the deadline with QALIGN_DIST_DEADLINE_S if this is expected", phase, dl);
    qa_dist__abort_msg(x->d, QA_DIST_EXIT_TIMEOUT, msg); /* the abort hook calls ncclCommAbort */
}

static ncclResult_t nccl_wait_ready(nccl_impl *x, const char *phase) {
    double t0 = qa_now_s(), dl = qa_dist_get_deadline(x->d);
    for (;;) {
        ncclResult_t st = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(x->comm, &st);
        if (r != ncclSuccess) return r;
        if (st != ncclInProgress) return st;
        double el = qa_now_s() - t0;
        if (dl > 0 && el > dl) nccl_timeout(x, phase, dl);
        nap(el);
    }
}

/* Wait until the stream is idle, watching NCCL's asynchronous errors and the deadline. */
static void nccl_wait_stream(nccl_impl *x, const char *phase) {
    double t0 = qa_now_s(), dl = qa_dist_get_deadline(x->d);
    for (;;) {
        cudaError_t ce = cudaStreamQuery(x->stream);
        if (ce == cudaSuccess) return;
        if (ce != cudaErrorNotReady) QA_CUDA_CHECK(x, phase, ce);
        ncclResult_t st = ncclSuccess;
        QA_NCCL_CHECK(x, phase, ncclCommGetAsyncError(x->comm, &st));
        if (st != ncclSuccess && st != ncclInProgress) nccl_fail(x, phase, "asynchronous NCCL operation", st, __FILE__, __LINE__);
        double el = qa_now_s() - t0;
        if (dl > 0 && el > dl) nccl_timeout(x, phase, dl);
        nap(el);
    }
}

static void nccl_abort_hook(void *ctx) {
    nccl_impl *x = ctx;
    if (x && x->comm && !x->aborted) {
        x->aborted = 1;
        ncclCommAbort(x->comm); /* not ncclCommDestroy: that can block forever on a dead peer */
    }
}

static ncclDataType_t nccl_type(nccl_impl *x, qa_dtype dt, const char *phase) {
    switch (dt) {
    case QA_DT_F32: return ncclFloat32;
    case QA_DT_BF16: return ncclBfloat16;
    case QA_DT_F16: return ncclFloat16;
    case QA_DT_F64: return ncclFloat64;
    case QA_DT_I64: return ncclInt64;
    default:
        qa_dist_abort(x->d, 1, "nccl '%s': dtype %s is not supported (F32, BF16, F16, F64, I64)", phase, qa_dtype_name(dt));
    }
}

static cudaDataType cuda_type(qa_dtype dt) {
    return dt == QA_DT_BF16 ? CUDA_R_16BF : dt == QA_DT_F16 ? CUDA_R_16F : dt == QA_DT_F64 ? CUDA_R_64F : CUDA_R_32F;
}

static void ensure_scratch(nccl_impl *x, size_t bytes, const char *phase) {
    if (bytes <= x->abytes) return;
    if (x->a) QA_CUDA_CHECK(x, phase, cudaFree(x->a));
    if (x->b) QA_CUDA_CHECK(x, phase, cudaFree(x->b));
    x->a = x->b = NULL;
    QA_CUDA_CHECK(x, phase, cudaMalloc(&x->a, bytes));
    QA_CUDA_CHECK(x, phase, cudaMalloc(&x->b, bytes));
    x->abytes = bytes;
}

/* Deterministic in-place sum of n elements of dt on the device (enqueued on x->stream). */
static void nccl_det_sum(nccl_impl *x, void *buf, size_t n, qa_dtype dt, const char *phase) {
    qa_dist *d = x->d;
    int p = d->size, me = d->rank;
    size_t es = qa_dtype_size(dt);
    ncclDataType_t nt = nccl_type(x, dt, phase);
    cudaDataType ct = cuda_type(dt);
    const double one_d = 1.0;
    const float one_f = 1.0f;
    const void *one = dt == QA_DT_F64 ? (const void *)&one_d : (const void *)&one_f;
    cudaDataType exec = dt == QA_DT_F64 ? CUDA_R_64F : CUDA_R_32F;
    for (size_t off = 0; off < n; off += NCCL_SLICE) {
        size_t m = n - off < NCCL_SLICE ? n - off : NCCL_SLICE;
        size_t chunk = (m + (size_t)p - 1) / (size_t)p;
        size_t padded = chunk * (size_t)p;
        ensure_scratch(x, padded * es, phase);
        char *src = (char *)buf + off * es, *A = x->a, *B = x->b;
        QA_CUDA_CHECK(x, phase, cudaMemcpyAsync(A, src, m * es, cudaMemcpyDeviceToDevice, x->stream));
        if (padded > m) QA_CUDA_CHECK(x, phase, cudaMemsetAsync(A + m * es, 0, (padded - m) * es, x->stream));
        QA_NCCL_CHECK(x, phase, ncclGroupStart());
        for (int j = 0; j < p; j++) {
            QA_NCCL_CHECK(x, phase, ncclSend(A + (size_t)j * chunk * es, chunk, nt, j, x->comm, x->stream));
            QA_NCCL_CHECK(x, phase, ncclRecv(B + (size_t)j * chunk * es, chunk, nt, j, x->comm, x->stream));
        }
        QA_NCCL_CHECK(x, phase, ncclGroupEnd());
        for (int s = 1; s < p; s *= 2)
            for (int i = 0; i + s < p; i += 2 * s)
                QA_CUBLAS_CHECK(x, phase, cublasAxpyEx(x->blas, (int)chunk, one, exec, B + (size_t)(i + s) * chunk * es,
                                                       ct, 1, B + (size_t)i * chunk * es, ct, 1, exec));
        QA_CUDA_CHECK(x, phase, cudaMemcpyAsync(A + (size_t)me * chunk * es, B, chunk * es, cudaMemcpyDeviceToDevice,
                                                x->stream));
        QA_NCCL_CHECK(x, phase, ncclAllGather(A + (size_t)me * chunk * es, A, chunk, nt, x->comm, x->stream));
        QA_CUDA_CHECK(x, phase, cudaMemcpyAsync(src, A, m * es, cudaMemcpyDeviceToDevice, x->stream));
    }
}

static void nccl_sum(nccl_impl *x, void *buf, size_t n, qa_dtype dt, qa_dist_op op, const char *phase) {
    qa_dist *d = x->d;
    if ((d->size == 1 && !x->force) || n == 0) return;
    int integral = dt == QA_DT_I64;
    if (op == QA_DIST_SUM && !integral && d->mode == QA_DIST_DETERMINISTIC) {
        nccl_det_sum(x, buf, n, dt, phase);
    } else {
        ncclRedOp_t ro = op == QA_DIST_MAX ? ncclMax : op == QA_DIST_MIN ? ncclMin : ncclSum;
        QA_NCCL_CHECK(x, phase, ncclAllReduce(buf, buf, n, nccl_type(x, dt, phase), ro, x->comm, x->stream));
    }
    nccl_wait_stream(x, phase);
}

/* ---- qa_comm vtable ---- */

static void c_allreduce_sum(qa_comm *c, void *buf, size_t n, qa_dtype dt, const char *phase) {
    nccl_impl *x = c->impl;
    qa_dist__coll_begin(x->d, phase);
    nccl_sum(x, buf, n, dt, QA_DIST_SUM, phase);
    qa_dist__coll_end(x->d);
}

static void *stage(nccl_impl *x, size_t bytes, const char *phase);
static void c_barrier(qa_comm *c, const char *phase) {
    nccl_impl *x = c->impl;
    qa_dist__coll_begin(x->d, phase);
    if (x->d->size > 1) {
        void *tmp = stage(x, sizeof(int64_t), phase); /* one int64 of staging, whatever was staged before */
        QA_NCCL_CHECK(x, phase, ncclAllReduce(tmp, tmp, 1, ncclInt64, ncclSum, x->comm, x->stream));
        nccl_wait_stream(x, phase);
    }
    qa_dist__coll_end(x->d);
}

static void c_destroy(qa_comm *c) {
    nccl_impl *x = c->impl;
    qa_dist *d = x->d;
    const char *phase = "nccl-destroy";
    if (d->abort_ctx == x) { d->abort_hook = NULL; d->abort_ctx = NULL; }
    if (d->ctl_ops.ctx == x) memset(&d->ctl_ops, 0, sizeof d->ctl_ops);
    nccl_wait_stream(x, phase);
    QA_NCCL_CHECK(x, phase, ncclCommFinalize(x->comm)); /* flushes; polled against the deadline */
    QA_NCCL_CHECK(x, phase, ncclCommDestroy(x->comm));
    if (x->a) QA_CUDA_CHECK(x, phase, cudaFree(x->a));
    if (x->b) QA_CUDA_CHECK(x, phase, cudaFree(x->b));
    if (x->host_tmp) QA_CUDA_CHECK(x, phase, cudaFree(x->host_tmp));
    QA_CUBLAS_CHECK(x, phase, cublasDestroy(x->blas));
    QA_CUDA_CHECK(x, phase, cudaStreamDestroy(x->stream));
    free(x);
    free(c);
}

/* ---- the control plane over NCCL (env_bootstrap: MPI cannot carry it) ---- */

static void *stage(nccl_impl *x, size_t bytes, const char *phase) {
    if (bytes > x->host_tmp_bytes) {
        if (x->host_tmp) QA_CUDA_CHECK(x, phase, cudaFree(x->host_tmp));
        QA_CUDA_CHECK(x, phase, cudaMalloc(&x->host_tmp, bytes));
        x->host_tmp_bytes = bytes;
    }
    return x->host_tmp;
}

static void ctl_bcast(void *ctx, void *buf, size_t nbytes, int root, const char *phase) {
    nccl_impl *x = ctx;
    if (x->d->size == 1 || nbytes == 0) return;
    void *dv = stage(x, nbytes, phase);
    QA_CUDA_CHECK(x, phase, cudaMemcpyAsync(dv, buf, nbytes, cudaMemcpyHostToDevice, x->stream));
    QA_NCCL_CHECK(x, phase, ncclBroadcast(dv, dv, nbytes, ncclUint8, root, x->comm, x->stream));
    QA_CUDA_CHECK(x, phase, cudaMemcpyAsync(buf, dv, nbytes, cudaMemcpyDeviceToHost, x->stream));
    nccl_wait_stream(x, phase);
}

static void ctl_allreduce(void *ctx, void *buf, size_t n, qa_dtype dt, qa_dist_op op, const char *phase) {
    nccl_impl *x = ctx;
    if (x->d->size == 1 || n == 0) return;
    size_t bytes = n * qa_dtype_size(dt);
    void *dv = stage(x, bytes, phase);
    QA_CUDA_CHECK(x, phase, cudaMemcpyAsync(dv, buf, bytes, cudaMemcpyHostToDevice, x->stream));
    nccl_sum(x, dv, n, dt, op, phase);
    QA_CUDA_CHECK(x, phase, cudaMemcpyAsync(buf, dv, bytes, cudaMemcpyDeviceToHost, x->stream));
    nccl_wait_stream(x, phase);
}

/* ---- bootstrap ---- */

static int id_by_file(qa_dist *d, ncclUniqueId *id, qa_err *e) {
    const char *dir = getenv("QALIGN_NCCL_ID_DIR");
    const char *job = getenv("SLURM_JOB_ID"), *step = getenv("SLURM_STEP_ID"), *rc = getenv("SLURM_RESTART_COUNT");
    if (!job || !step)
        return QA_ERR(e, "NCCL bootstrap by file needs SLURM_JOB_ID and SLURM_STEP_ID (run under srun)");
    char path[4096];
    snprintf(path, sizeof path, "%s/qalign-nccl-id.%s.%s.%s", dir && *dir ? dir : ".", job, step, rc ? rc : "0");
    if (d->rank == 0) {
        if (ncclGetUniqueId(id) != ncclSuccess) return QA_ERR(e, "ncclGetUniqueId failed (is a network interface up?)");
        /* a fresh exclusive temporary, renamed into place: nothing planted in a shared directory is followed */
        if (qa_write_file_atomic(path, id, sizeof *id, e))
            return qa_err_prefix(e, "rank 0: the NCCL id (set QALIGN_NCCL_ID_DIR to a directory all nodes share)");
        return 0;
    }
    double t0 = qa_now_s(), dl = d->deadline_s > 0 ? d->deadline_s : 600;
    qa_err le = {0};
    for (;;) {
        char *buf = NULL;
        size_t len = 0;
        le = (qa_err){0};
        if (qa_path_exists(path) && qa_read_file(path, 4096, &buf, &len, &le) == 0) { /* a regular file only */
            int ok = len == sizeof *id;
            if (ok) memcpy(id, buf, sizeof *id);
            free(buf);
            if (ok) return 0;   /* a shorter file is rank 0's rename not yet seen: wait */
        }
        if (qa_now_s() - t0 > dl)
            return QA_ERR(e, "rank %d: no NCCL id from rank 0 in %s after %.0f s: is QALIGN_NCCL_ID_DIR shared by all "
                          "nodes?%s%s", d->rank, path, dl, le.msg[0] ? " Last error: " : "", le.msg);
        usleep(50 * 1000);
    }
}

int qa_dist_nccl_comm(qa_dist *d, qa_comm **out, qa_err *e) {
    *out = NULL;
    int ndev = 0;
    cudaError_t ce = cudaGetDeviceCount(&ndev);
    if (ce != cudaSuccess || ndev == 0)
        return QA_ERR(e, "rank %d: no CUDA device (%s): the nccl backend needs one GPU per rank", d->rank,
                      ce != cudaSuccess ? cudaGetErrorString(ce) : "0 devices");
    int dev;
    if (ndev == 1) dev = 0; /* the launcher bound one GPU to this task */
    else if (d->local_rank < ndev && d->local_size <= ndev) dev = d->local_rank;
    else
        return QA_ERR(e, "rank %d: local rank %d of %d on this node but %d visible GPUs: run one rank per GPU "
                      "(e.g. srun --gpus-per-task=1, or mpirun -np <gpus per node> per node)",
                      d->rank, d->local_rank, d->local_size, ndev);
    nccl_impl *x = qa_calloc(1, sizeof *x);
    x->d = d;
    x->device = dev;
    x->force = getenv("QALIGN_NCCL_FORCE_COLLECTIVES") && atoi(getenv("QALIGN_NCCL_FORCE_COLLECTIVES")) == 1;
    QA_CUDA_CHECK(x, "nccl-init", cudaSetDevice(dev));

    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (d->mpi_world) {
        if (d->rank == 0) QA_NCCL_CHECK(x, "nccl-init", ncclGetUniqueId(&id));
        qa_dist_bcast(d, &id, sizeof id, 0, "nccl-unique-id");
    } else if (id_by_file(d, &id, e)) {
        free(x);
        return -1;
    }
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    qa_dist__coll_begin(d, "nccl-init");
    ncclResult_t r = ncclCommInitRankConfig(&x->comm, d->size, id, d->rank, &cfg);
    if (r == ncclInProgress || (r == ncclSuccess && x->comm)) r = nccl_wait_ready(x, "nccl-init");
    if (r != ncclSuccess) nccl_fail(x, "nccl-init", "ncclCommInitRankConfig", r, __FILE__, __LINE__);
    qa_dist__coll_end(d);
    d->abort_hook = nccl_abort_hook;
    d->abort_ctx = x;
    if (!d->mpi_world && d->rank == 0) { /* every rank has joined: the id file is no longer needed */
        char path[4096];
        const char *dir = getenv("QALIGN_NCCL_ID_DIR");
        snprintf(path, sizeof path, "%s/qalign-nccl-id.%s.%s.%s", dir && *dir ? dir : ".", getenv("SLURM_JOB_ID"),
                 getenv("SLURM_STEP_ID"), getenv("SLURM_RESTART_COUNT") ? getenv("SLURM_RESTART_COUNT") : "0");
        unlink(path);
    }
    QA_CUDA_CHECK(x, "nccl-init", cudaStreamCreateWithFlags(&x->stream, cudaStreamNonBlocking));
    QA_CUBLAS_CHECK(x, "nccl-init", cublasCreate(&x->blas));
    QA_CUBLAS_CHECK(x, "nccl-init", cublasSetStream(x->blas, x->stream));
    QA_CUBLAS_CHECK(x, "nccl-init", cublasSetPointerMode(x->blas, CUBLAS_POINTER_MODE_HOST));
    if (!d->mpi_world) {
        d->ctl_ops.ctx = x;
        d->ctl_ops.bcast = ctl_bcast;
        d->ctl_ops.allreduce = ctl_allreduce;
    }
    qa_comm *c = qa_calloc(1, sizeof *c);
    c->backend = "nccl";
    c->on_device = 1;
    c->d = d;
    c->allreduce_sum = c_allreduce_sum;
    c->barrier = c_barrier;
    c->destroy = c_destroy;
    c->impl = x;
    *out = c;
    return 0;
}

#endif /* QALIGN_HAVE_NCCL */
