/* dist_mpi.c — the MPI backend of qa_dist: MPI init and finalize, identity, host collectives, the "mpi"
 * communicator, the watchdog's liveness probes, MPI_Abort. The backend-neutral rest is dist_core.c.
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

/* ---------------------------------------------------------------- failure */

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

void qa_dist__mpi_abort(int code) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Abort(MPI_COMM_WORLD, code);
}

int qa_dist__mpi_world_rank(void) {
    int rank = -1, init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
}

/* ---------------------------------------------------------------- the watchdog's liveness probes */

int qa_dist__can_probe(const qa_dist *d) {
    return d->mpi_world && d->size > 1 && d->thread_level == MPI_THREAD_MULTIPLE;
}

/* Answer pending status queries (watchdog thread only). Best effort: MPI errors are ignored here, since
 * queries only come from a rank that suspects a failure. */
void qa_dist__serve_probes(qa_dist *d) {
    for (int guard = 0; guard < 64; guard++) {
        if (!d->q_posted) {
            if (MPI_Irecv(d->q_buf, 2, MPI_INT, MPI_ANY_SOURCE, TAG_QUERY, d->ctl, &d->q_req) != MPI_SUCCESS) return;
            d->q_posted = 1;
        }
        int done = 0;
        MPI_Status st;
        if (MPI_Test(&d->q_req, &done, &st) != MPI_SUCCESS || !done) return;
        d->q_posted = 0;
        qa_dist_status s;
        qa_dist__snapshot(d, &s);
        s.probe = d->q_buf[1];
        MPI_Send(&s, (int)sizeof s, MPI_BYTE, st.MPI_SOURCE, TAG_REPLY, d->ctl);
    }
}

/* Ask every peer what it is doing; wait up to `window` s. got[i] = 1 for peers that answered, rep[i]
 * their status. Returns the number of peers that did not answer. */
int qa_dist__probe_peers(qa_dist *d, qa_dist_status *rep, int *got, double window) {
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
    double t0 = qa_now_s();
    int pending = p - 1;
    while (pending > 0 && qa_now_s() - t0 < window) {
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
        qa_dist__serve_probes(d); /* peers that probe too ask us */
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

void qa_dist__probes_close(qa_dist *d) {
    if (!d->q_posted) return;
    MPI_Cancel(&d->q_req);
    MPI_Wait(&d->q_req, MPI_STATUS_IGNORE);
    d->q_posted = 0;
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
    qa_dist *d = qa_dist__new(opts);
    d->comm = d->ctl = MPI_COMM_NULL;

    /* srun without a PMI plugin (--mpi=none, or Slurm without PMIx): Open MPI cannot start (it refuses a
     * direct launch without PMI), and other MPIs start N singletons. Decide before MPI_Init. */
    int step_tasks = qa_dist__env_int("SLURM_STEP_NUM_TASKS", qa_dist__env_int("SLURM_NTASKS", 1));
    int in_step = getenv("SLURM_STEP_ID") != NULL && getenv("SLURM_PROCID") != NULL;
    int has_pmi = getenv("PMIX_RANK") || getenv("PMI_FD") || getenv("PMI_RANK") || getenv("OMPI_COMM_WORLD_SIZE");
    int env_mode = 0;
    if (in_step && !has_pmi) {
        if (!opts->env_bootstrap) {
            qa_dist__free(d);
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
                qa_dist__free(d);
                return QA_ERR(e, "srun started %d tasks but MPI sees a world of 1 (Slurm without PMIx?): launch with "
                              "`srun --mpi=pmix` (see `srun --mpi=list`) or mpirun, or set QALIGN_DIST_ENV_BOOTSTRAP=1 "
                              "to bootstrap NCCL from SLURM_PROCID/SLURM_NTASKS", step_tasks);
            }
            env_mode = 1;
        }
    }
    if (env_mode) {
        d->mpi_world = 0;
        d->rank = qa_dist__env_int("SLURM_PROCID", 0);
        d->size = step_tasks;
        d->local_rank = qa_dist__env_int("SLURM_LOCALID", 0);
        d->local_size = qa_dist__env_int("SLURM_STEP_TASKS_PER_NODE", qa_dist__env_int("SLURM_NTASKS_PER_NODE", 1));
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
                    d->local_rank = qa_dist__env_int(vars[i], 0);
                    d->local_size = qa_dist__env_int(sizes[i], 1);
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

    qa_dist__start(d, opts);

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
    qa_dist__stop(d);
    if (d->comm != MPI_COMM_NULL) QA_MPI_CHECK(d, "finalize", MPI_Comm_free(&d->comm));
    if (d->ctl != MPI_COMM_NULL) QA_MPI_CHECK(d, "finalize", MPI_Comm_free(&d->ctl));
    if (d->mpi_up) QA_MPI_CHECK(d, "finalize", MPI_Finalize());
    qa_dist__free(d);
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
        if (is_f64) qa_dist__tree_sum_f64s(parts, p, (size_t)cnt[me], chunk);
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

