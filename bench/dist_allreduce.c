/* bench_dist_allreduce — time of the one flat all-reduce of all LoRA gradients per optimizer step.
 *
 *   mpirun -np P bench_dist_allreduce [--iters N] [--quick] [--nccl]
 *   (as root: mpirun --allow-run-as-root --oversubscribe -np 2 ...)
 * --nccl (CUDA builds): the "nccl" communicator on device buffers, F32 and BF16; at world size 1
 * set QALIGN_NCCL_FORCE_COLLECTIVES=1 to time the full path (self send/recv, tree, all-gather).
 *
 * For each LoRA configuration: parameters, f32 bytes, bytes each rank sends (2 (P-1)/P * bytes in
 * both modes), and the median time of the deterministic mode and of the fast mode (MPI_Allreduce)
 * measured in the same run, with their ratio. --quick: only Mistral-7B r=8 q,v.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/qa_mem.h"
#include "dist/dist.h"
#ifdef QALIGN_HAVE_NCCL
#include <cuda_runtime.h>
#endif

typedef struct model_shape {
    const char *name;
    long hidden, inter, layers, heads, kv_heads;
} model_shape;

/* LoRA parameters r * (d_in + d_out) per targeted projection, summed over the layers */
static long lora_params(const model_shape *m, long r, int all7) {
    long hd = m->hidden / m->heads, kv = m->kv_heads * hd;
    long q = m->hidden + m->hidden, k = m->hidden + kv, v = m->hidden + kv, o = m->hidden + m->hidden;
    long gate = m->hidden + m->inter, up = gate, down = gate;
    long per = all7 ? q + k + v + o + gate + up + down : q + v;
    return r * per * m->layers;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* median over iters of the slowest rank's time; comm NULL: qa_dist_allreduce_sum_f32 on host */
static double time_mode(qa_dist *d, qa_comm *comm, qa_dtype dt, void *buf, size_t n, int iters, qa_dist_mode mode) {
    qa_dist_set_mode(d, mode);
    double *t = qa_malloc((size_t)iters * sizeof(double));
    for (int w = 0; w < 2; w++) {
        if (comm) qa_comm_allreduce_sum(comm, buf, n, dt, "warmup");
        else qa_dist_allreduce_sum_f32(d, buf, n, "warmup");
    }
    for (int i = 0; i < iters; i++) {
        qa_dist_barrier(d, "bench");
        double t0 = now();
        if (comm) qa_comm_allreduce_sum(comm, buf, n, dt, "grads"); /* returns when the stream is done */
        else qa_dist_allreduce_sum_f32(d, buf, n, "grads");
        double dt = now() - t0;
        qa_dist_set_mode(d, QA_DIST_FAST); /* MAX is exact either way */
        qa_dist_allreduce_f64(d, &dt, 1, QA_DIST_MAX, "bench-max");
        qa_dist_set_mode(d, mode);
        t[i] = dt;
    }
    qsort(t, (size_t)iters, sizeof *t, cmp_d);
    double med = t[iters / 2];
    free(t);
    return med;
}

int main(int argc, char **argv) {
    qa_dist_opts o;
    qa_dist_opts_default(&o);
    o.quiet = 1;
    qa_dist *d;
    qa_err e = {0};
    if (qa_dist_init(&d, &argc, &argv, &o, &e)) { qa_err_print(&e); return 1; }
    int iters = 15, quick = 0, use_nccl = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--nccl")) use_nccl = 1;
        else if (!strcmp(argv[i], "--help")) {
            if (qa_dist_is_coordinator(d)) printf("usage: mpirun -np P bench_dist_allreduce [--iters N] [--quick]\n");
            qa_dist_finalize(d);
            return 0;
        }
    }
    if (iters < 1) iters = 1;
    const model_shape mistral = {"Mistral-7B", 4096, 14336, 32, 32, 8};
    const model_shape qwen14 = {"Qwen1.5-14B", 5120, 13696, 40, 40, 40};
    struct { const model_shape *m; long r; int all7; } cfg[] = {
        {&mistral, 8, 0}, {&mistral, 64, 0}, {&mistral, 8, 1}, {&qwen14, 8, 0}, {&qwen14, 64, 0},
    };
    int ncfg = quick ? 1 : (int)(sizeof cfg / sizeof *cfg);
    int p = qa_dist_size(d);
    qa_comm *comm = NULL;
    if (use_nccl) {
#ifdef QALIGN_HAVE_NCCL
        if (qa_dist_nccl_comm(d, &comm, &e)) qa_dist_abort(d, 1, "%s", e.msg);
#else
        qa_dist_abort(d, 1, "--nccl: this build has no NCCL backend (configure with -DQALIGN_CUDA=ON)");
#endif
    }
    if (qa_dist_is_coordinator(d))
        printf("# np=%d, %s; times: median of %d, slowest rank; sent/rank = 2(P-1)/P * bytes%s\n"
               "%-12s %3s %-5s %-4s %11s %11s %11s %11s %11s %7s %9s\n",
               p, comm ? "nccl, device buffers" : "mpi, host buffers", iters,
               p == 1 ? " (np=1: nothing is sent, the call returns at once)" : "", "model", "r", "tgt", "type", "params",
               "bytes", "sent/rank", "det_us", "fast_us", "det/fast", "sent_GB/s");
    for (int c = 0; c < ncfg; c++) {
        long np_ = lora_params(cfg[c].m, cfg[c].r, cfg[c].all7);
        size_t n = (size_t)np_;
        float *buf = qa_malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) buf[i] = 1e-3f * (float)((i * 2654435761u) % 1000);
        int it = n > 50000000 ? (iters + 2) / 3 : iters;
        for (int ti = 0; ti < (comm ? 2 : 1); ti++) {
            qa_dtype dt = ti ? QA_DT_BF16 : QA_DT_F32;
            size_t es = ti ? 2 : 4;
            void *b = buf;
#ifdef QALIGN_HAVE_NCCL
            if (comm) {
                if (cudaMalloc(&b, n * es) != cudaSuccess) qa_dist_abort(d, 1, "cudaMalloc of %zu bytes failed", n * es);
                cudaMemset(b, 0, n * es);
            }
#endif
            double tf = time_mode(d, comm, dt, b, n, it, QA_DIST_FAST);
            double td = time_mode(d, comm, dt, b, n, it, QA_DIST_DETERMINISTIC);
#ifdef QALIGN_HAVE_NCCL
            if (comm) cudaFree(b);
#endif
            double bytes = (double)es * (double)n, sent = p > 1 ? 2.0 * (p - 1) / p * bytes : 0;
            if (qa_dist_is_coordinator(d))
                printf("%-12s %3ld %-5s %-4s %11ld %11.0f %11.0f %11.1f %11.1f %7.2f %9.2f\n", cfg[c].m->name,
                       cfg[c].r, cfg[c].all7 ? "all7" : "q,v", ti ? "bf16" : "f32", np_, bytes, sent, td * 1e6,
                       tf * 1e6, tf > 0 ? td / tf : 0, td > 0 && sent > 0 ? sent / td * 1e-9 : 0);
        }
        free(buf);
    }
    qa_comm_free(comm);
    qa_dist_finalize(d);
    return 0;
}
