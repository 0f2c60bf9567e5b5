/* test_dist.c — the worker of the dist tests, run under mpirun at np = 1, 2, 4 (tests/dist.cmake).
 *
 *   test_dist check                correctness of every collective (default)
 *   test_dist fail-abort RANK      RANK calls qa_dist_abort while the others wait in an all-reduce
 *   test_dist fail-kill RANK       RANK SIGKILLs itself while the others wait in an all-reduce
 *   test_dist fail-exit RANK       RANK exits 5 without finalize while the others wait
 *   test_dist fail-stall RANK      RANK sleeps 60 s (note 'sleeping') before collective 'stall-test'
 *   test_dist fail-freeze RANK     RANK SIGSTOPs itself (watchdog included) while the others wait
 *   test_dist stop-loop READYFILE  step loop until an agreed stop (SIGUSR1 via mpirun); exit 0
 *   test_dist env-probe            print rank/size/local rank and their source, then try a barrier
 *                                  (under srun -n N>1 --mpi=none with QALIGN_DIST_ENV_BOOTSTRAP=1 it must
 *                                  abort with "needs a communicator"; at N=1 every collective is a no-op)
 *
 * Values are generated from (rank, index) so every rank can compute the serial reference itself.
 */
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/qa_mem.h"
#include "dist/dist.h"
#include "testutil.h"

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
/* values with mixed signs and magnitudes so that the summation order matters */
static float gen(uint64_t seed, int who, size_t i) {
    uint64_t h = mix(seed * 1000003u + (uint64_t)who * 7919u + i);
    double u = (double)(h >> 11) / 9007199254740992.0 - 0.5;
    int ex = (int)((h >> 3) % 16) - 8;
    return (float)ldexp(u, ex);
}

static uint64_t hash_bytes(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* 1 if the 64-bit value is the same on every rank */
static int same_everywhere(qa_dist *d, uint64_t h) {
    int64_t hi[2] = {(int64_t)(h >> 1), -(int64_t)(h >> 1)};
    qa_dist_allreduce_i64(d, hi, 2, QA_DIST_MAX, "hash-eq");
    return hi[0] == (int64_t)(h >> 1) && -hi[1] == (int64_t)(h >> 1);
}

static void check_sum_f32(qa_dist *d, size_t n, qa_dist_mode mode) {
    int p = qa_dist_size(d), r = qa_dist_rank(d);
    float *buf = qa_malloc((n ? n : 1) * sizeof(float));
    float *parts = qa_malloc((size_t)p * (n ? n : 1) * sizeof(float));
    for (int q = 0; q < p; q++)
        for (size_t i = 0; i < n; i++) parts[(size_t)q * n + i] = gen(1, q, i);
    memcpy(buf, parts + (size_t)r * n, n * sizeof(float));
    double *ref64 = qa_calloc(n ? n : 1, sizeof(double));
    for (int q = 0; q < p; q++)
        for (size_t i = 0; i < n; i++) ref64[i] += parts[(size_t)q * n + i];
    qa_dist_tree_sum_f32(parts, p, n); /* serial reference in the fixed tree order */
    qa_dist_set_mode(d, mode);
    qa_dist_allreduce_sum_f32(d, buf, n, mode == QA_DIST_FAST ? "sum-fast" : "sum-det");
    qa_dist_set_mode(d, QA_DIST_DETERMINISTIC);
    int eq_ranks = same_everywhere(d, hash_bytes(buf, n * sizeof(float)));
    if (mode == QA_DIST_DETERMINISTIC) {
        QT_CHECK(memcmp(buf, parts, n * sizeof(float)) == 0, "np=%d n=%zu: deterministic sum == serial tree sum, bitwise", p, n);
        QT_CHECK(eq_ranks, "np=%d n=%zu: deterministic sum bitwise identical on all ranks", p, n);
    } else if (r == 0 && !eq_ranks) {
        printf("  note: np=%d n=%zu: MPI_Allreduce results differ between ranks (allowed in fast mode)\n", p, n);
    }
    double err = n ? qt_rel_err_f32_f64(buf, ref64, n) : 0;
    QT_CHECK(err < 1e-6, "np=%d n=%zu mode=%d: relative error vs double sum %.3g < 1e-6", p, n, (int)mode, err);
    free(buf);
    free(parts);
    free(ref64);
}

/* K micro-batches split over the ranks in order: the total is the same bits for every world size P
 * with K/P a power of two. */
static void check_tree_contract(qa_dist *d) {
    const int K = 8;
    const size_t n = 10007;
    int p = qa_dist_size(d), r = qa_dist_rank(d);
    if (K % p) return;
    float *x = qa_malloc(n * sizeof(float)), *mine = qa_malloc(n * sizeof(float)), *all = qa_malloc(n * sizeof(float));
    qa_dist_tree t, t1;
    qa_dist_tree_init(&t, n);
    qa_dist_tree_init(&t1, n);
    for (int k = 0; k < K; k++) {
        for (size_t i = 0; i < n; i++) x[i] = gen(7, k, i);
        qa_dist_tree_push(&t1, x);
        if (k / (K / p) == r) qa_dist_tree_push(&t, x);
    }
    qa_dist_tree_result(&t1, all); /* one rank doing all K */
    qa_dist_tree_result(&t, mine);
    qa_dist_allreduce_sum_f32(d, mine, n, "tree-contract");
    QT_CHECK(memcmp(mine, all, n * sizeof(float)) == 0,
             "np=%d: K=%d micro-batches (tree push + deterministic all-reduce) == single-rank total, bitwise", p, K);
    /* the streaming tree equals the fixed tree over K parts for any K, not only powers of two */
    for (int KK = 1; KK <= 9; KK++) {
        float *parts = qa_malloc((size_t)KK * n * sizeof(float));
        for (int k = 0; k < KK; k++) {
            for (size_t i = 0; i < n; i++) parts[(size_t)k * n + i] = gen(9, k, i);
            qa_dist_tree_push(&t1, parts + (size_t)k * n);
        }
        qa_dist_tree_result(&t1, all);
        qa_dist_tree_sum_f32(parts, KK, n);
        QT_CHECK(memcmp(all, parts, n * sizeof(float)) == 0, "tree push of K=%d parts == fixed tree sum", KK);
        free(parts);
    }
    qa_dist_tree_free(&t);
    qa_dist_tree_free(&t1);
    free(x);
    free(mine);
    free(all);
}

static int run_check(qa_dist *d) {
    int p = qa_dist_size(d), r = qa_dist_rank(d);
    QT_CHECK(p >= 1 && r >= 0 && r < p, "rank %d of %d", r, p);
    QT_CHECK(qa_dist_local_rank(d) >= 0 && qa_dist_local_rank(d) < qa_dist_local_size(d),
             "local rank %d of %d [%s]", qa_dist_local_rank(d), qa_dist_local_size(d), qa_dist_identity_source(d));
    const char *env_local = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (env_local) QT_CHECK(atoi(env_local) == qa_dist_local_rank(d), "local rank %d == OMPI_COMM_WORLD_LOCAL_RANK %s",
                            qa_dist_local_rank(d), env_local);
    QT_CHECK(qa_dist_is_coordinator(d) == (r == 0), "coordinator is rank 0");
    qa_dist_barrier(d, "barrier");

    size_t sizes[] = {0, 1, 3, 5, 1000, 65537, (size_t)1 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        check_sum_f32(d, sizes[k], QA_DIST_DETERMINISTIC);
        check_sum_f32(d, sizes[k], QA_DIST_FAST);
    }
    check_tree_contract(d);

    /* f64 sums (deterministic: same tree), max/min; i64 */
    {
        const size_t n = 33;
        double *v = qa_malloc(n * sizeof(double)), *parts = qa_malloc((size_t)p * n * sizeof(double));
        for (int q = 0; q < p; q++)
            for (size_t i = 0; i < n; i++) parts[(size_t)q * n + i] = (double)gen(3, q, i) * 1e3 + 1e-9 * (double)q;
        memcpy(v, parts + (size_t)r * n, n * sizeof(double));
        qa_dist_allreduce_f64(d, v, n, QA_DIST_SUM, "f64-sum");
        qa_dist_tree_sum_f64(parts, p, n);
        QT_CHECK(memcmp(v, parts, n * sizeof(double)) == 0, "np=%d: f64 sum == serial tree sum, bitwise", p);
        double mx = -1e300, mn = 1e300;
        for (int q = 0; q < p; q++) { double x = gen(4, q, 0); if (x > mx) mx = x; if (x < mn) mn = x; }
        double a = gen(4, r, 0), b = a;
        qa_dist_allreduce_f64(d, &a, 1, QA_DIST_MAX, "f64-max");
        qa_dist_allreduce_f64(d, &b, 1, QA_DIST_MIN, "f64-min");
        QT_CHECK(a == mx && b == mn, "np=%d: f64 max %g min %g", p, a, b);
        int64_t iv[3] = {r + 1, r * 10, 1000 - r};
        qa_dist_allreduce_i64(d, iv, 1, QA_DIST_SUM, "i64-sum");
        qa_dist_allreduce_i64(d, iv + 1, 1, QA_DIST_MAX, "i64-max");
        qa_dist_allreduce_i64(d, iv + 2, 1, QA_DIST_MIN, "i64-min");
        QT_CHECK(iv[0] == (int64_t)p * (p + 1) / 2 && iv[1] == (int64_t)(p - 1) * 10 && iv[2] == 1000 - (p - 1),
                 "np=%d: i64 sum %lld max %lld min %lld", p, (long long)iv[0], (long long)iv[1], (long long)iv[2]);
        QT_CHECK(qa_dist_all_true(d, 1, "finite") == 1, "all_true(all 1)");
        QT_CHECK(qa_dist_all_true(d, r != p - 1, "finite") == 0, "all_true(last rank 0) == 0");
        free(v);
        free(parts);
    }

    /* bcast of bytes from the last rank */
    {
        size_t n = 1000003;
        unsigned char *b = qa_malloc(n);
        for (size_t i = 0; i < n; i++) b[i] = r == p - 1 ? (unsigned char)(mix(i) & 0xff) : 0;
        qa_dist_bcast(d, b, n, p - 1, "bcast");
        int ok = 1;
        for (size_t i = 0; i < n; i++) ok &= b[i] == (unsigned char)(mix(i) & 0xff);
        QT_CHECK(ok, "np=%d: bcast of %zu bytes from rank %d", p, n, p - 1);
        free(b);
    }

    /* gather of variable-size blobs to rank 0 */
    {
        size_t n = (size_t)r * 100 + 12;
        char *blob = qa_malloc(n);
        for (size_t i = 0; i < n; i++) blob[i] = (char)('a' + (r + (int)i) % 26);
        qa_dist_blobs g;
        qa_dist_gather_blobs(d, blob, n, &g, "gather");
        if (r == 0) {
            int ok = g.count == p;
            for (int q = 0; ok && q < p; q++) {
                ok &= g.len[q] == (size_t)q * 100 + 12;
                for (size_t i = 0; ok && i < g.len[q]; i++) ok &= g.data[g.offset[q] + i] == (char)('a' + (q + (int)i) % 26);
            }
            QT_CHECK(ok, "np=%d: gather of blobs of 12 + 100*rank bytes in rank order", p);
        } else {
            QT_CHECK(g.count == 0 && g.data == NULL, "non-root gets no blobs");
        }
        qa_dist_blobs_free(&g);
        free(blob);
    }

    /* the "mpi" communicator: f32 and bf16 */
    {
        qa_comm *c = qa_dist_host_comm(d);
        QT_CHECK(!strcmp(qa_comm_backend(c), "mpi") && !qa_comm_on_device(c), "host comm is mpi on host buffers");
        uint16_t h[4];
        for (int i = 0; i < 4; i++) h[i] = qa_f32_to_bf16(0.5f * (float)(i + 1));
        qa_comm_allreduce_sum(c, h, 4, QA_DT_BF16, "bf16");
        int ok = 1;
        for (int i = 0; i < 4; i++) ok &= qa_bf16_to_f32(h[i]) == 0.5f * (float)(i + 1) * (float)p;
        QT_CHECK(ok, "np=%d: bf16 sum via the host comm", p);
        qa_comm_barrier(c, "comm-barrier");
#ifndef QALIGN_HAVE_NCCL
        qa_comm *nc = NULL;
        qa_err e = {0};
        QT_CHECK(qa_dist_nccl_comm(d, &nc, &e) == -1 && strstr(e.msg, "NCCL"), "CPU build: nccl comm refused: %s", e.msg);
#endif
    }

    /* graceful stop: local flag, agreed stop */
    {
        QT_CHECK(qa_dist_agree_stop(d) == 0, "no stop requested");
        if (r == p - 1) raise(SIGUSR1);
        QT_CHECK(qa_dist_stop_requested(d) == (r == p - 1 ? SIGUSR1 : 0), "SIGUSR1 sets the local flag only");
        QT_CHECK(qa_dist_agree_stop(d) == 1, "agreed stop on every rank");
        if (r == 0) raise(SIGTERM);
        QT_CHECK(r != 0 || qa_dist_stop_requested(d) == SIGTERM, "SIGTERM sets the flag (process still alive)");
    }
    qa_dist_barrier(d, "end");
    return 0;
}

static void wait_peers(qa_dist *d, const char *phase) {
    float x[1024] = {0};
    qa_dist_allreduce_sum_f32(d, x, 1024, phase);
}

int main(int argc, char **argv) {
    qa_dist_opts o;
    qa_dist_opts_default(&o);
    const char *mode = argc > 1 ? argv[1] : "check";
    int who = argc > 2 ? atoi(argv[2]) : 1;
    if (!strcmp(mode, "fail-stall")) o.deadline_s = 3;
    qa_dist *d;
    qa_err e = {0};
    if (qa_dist_init(&d, &argc, &argv, &o, &e)) { qa_err_print(&e); return 2; }
    int r = qa_dist_rank(d);
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (!strcmp(mode, "check")) {
        run_check(d);
        /* every rank's verdict reaches rank 0 */
        int64_t failed = qt_failed;
        qa_dist_allreduce_i64(d, &failed, 1, QA_DIST_SUM, "verdict");
        if (r != 0 && qt_failed == 0) { qa_dist_finalize(d); return 0; }
        if (r == 0 && failed && !qt_failed) QT_CHECK(0, "%lld check(s) failed on other ranks", (long long)failed);
        int rc = qt_finish();
        qa_dist_finalize(d);
        return rc;
    }
    if (!strcmp(mode, "fail-abort")) {
        qa_dist_barrier(d, "before");
        if (r == who) qa_dist_abort(d, 3, "injected error: batch 17 has NaN loss");
        wait_peers(d, "grads");
        fprintf(stderr, "rank %d: unexpectedly completed\n", r);
        qa_dist_finalize(d);
        return 0;
    }
    if (!strcmp(mode, "fail-kill")) {
        qa_dist_barrier(d, "before");
        if (r == who) raise(SIGKILL);
        wait_peers(d, "grads");
        qa_dist_finalize(d);
        return 0;
    }
    if (!strcmp(mode, "fail-exit")) {
        qa_dist_barrier(d, "before");
        if (r == who) exit(5);
        wait_peers(d, "grads");
        qa_dist_finalize(d);
        return 0;
    }
    if (!strcmp(mode, "fail-stall")) {
        qa_dist_barrier(d, "before");
        if (r == who) { qa_dist_note(d, "sleeping"); sleep(60); }
        wait_peers(d, "stall-test");
        qa_dist_finalize(d);
        return 0;
    }
    if (!strcmp(mode, "fail-freeze")) {
        qa_dist_barrier(d, "before");
        if (r == who) raise(SIGSTOP);
        wait_peers(d, "grads");
        qa_dist_finalize(d);
        return 0;
    }
    if (!strcmp(mode, "stop-loop")) {
        qa_dist_barrier(d, "ready");
        if (r == 0 && argc > 2) { FILE *f = fopen(argv[2], "w"); if (f) fclose(f); }
        for (long step = 0; step < 600; step++) {
            wait_peers(d, "grads");
            if (qa_dist_agree_stop(d)) {
                if (r == 0) printf("agreed stop at step %ld (signal %d on rank 0)\n", step, qa_dist_stop_requested(d));
                qa_dist_finalize(d);
                return 0;
            }
            usleep(100 * 1000);
        }
        if (r == 0) printf("no stop within 60 s\n");
        qa_dist_finalize(d);
        return 1;
    }
    if (!strcmp(mode, "env-probe")) {
        printf("rank %d of %d, local %d of %d [%s]\n", r, qa_dist_size(d), qa_dist_local_rank(d),
               qa_dist_local_size(d), qa_dist_identity_source(d));
        qa_dist_barrier(d, "probe");
        printf("rank %d: barrier passed\n", r);
        qa_dist_finalize(d);
        return 0;
    }
    qa_dist_abort(d, 2, "unknown mode '%s'", mode);
}
