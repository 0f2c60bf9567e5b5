/* cpu_vs_torch.c — the qalign side of bench/cpu_vs_torch.sh (run by hand, never by ctest).
 *
 *   bench_cpu_vs_torch MODEL_DIR train|eval|ceiling [--threads N] [--batch B] [--seq T] [--steps S]
 *                      [--logit-rows R] [--labels half|all]
 *
 * train: the LoRA step of bench/cpu_vs_torch.py — q,v r=8 alpha 16, no dropout, forward + loss +
 *        backward + AdamW — on the BF16 checkpoint as qalign loads it (mmap'd, no converted copy). Labels:
 *        half = the second half of each row (the first half is the prompt, -100), all = every position;
 *        t predicts ids[t+1]. R = rows of the logits buffer (the loss is chunked over it; default
 *        min(B*T, 2048) as `qalign train` sizes it).
 * eval:  the evaluation forward (qa_model_infer, no prefix cache): next-token logits over the full
 *        vocabulary at the last position of each row.
 * ceiling: OpenBLAS sgemm [2048 x 2048] x [2048 x 2048] with the same threads (the machine's matmul
 *        ceiling for this run).
 * The batch is ids[i] = (i * 7919 + 13) % V, as in the PyTorch peer. Each mode prints one line:
 *   qalign MODE sec=<best wall seconds per step> cpu_sec=<its process CPU seconds> flops=<model FLOPs per
 *   step> peak_rss_kb=<ru_maxrss> base_rss_kb=<after setup> loss=<first step loss>
 * Model FLOPs count the work the step needs, the same count for both sides: 2 per multiply-add of
 * every projection, the LoRA products, lm_head on the rows that need logits, and causal attention (the
 * visible half of QKᵀ and PV); backward adds dX of every frozen projection above the lowest LoRA module
 * (not q,k,v of layer 0: no gradient flows to the embeddings), the LoRA gradients, attention backward
 * (4 products over the visible keys) and dX of lm_head. The evaluation forward needs, in its last
 * layer, only the keys and values of every position and the rest for the last positions. */
#include "model/model.h"
#include "common/qa_mem.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double wall(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
static double cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
static long rss_kb(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss;
}
static void die(const char *what, qa_err *e) {
    fprintf(stderr, "bench_cpu_vs_torch: %s: ", what);
    qa_err_print(e);
    exit(1);
}

/* model FLOPs of one step (see the header): 2 per multiply-add the step needs */
static double model_flops(const qa_hf_config *c, int B, int T, int r, int train, double rows) {
    const double D = c->hidden, F = c->intermediate, V = c->vocab, Q = (double)c->n_heads * c->head_dim,
                 KV = (double)c->n_kv_heads * c->head_dim, L = c->n_layers, N = (double)B * T, H = c->n_heads;
    const double proj = D * (Q + 2 * KV) + Q * D + 3 * D * F;           /* MACs per token and layer */
    const double attn = 2.0 * B * H * ((double)T * (T + 1) / 2) * c->head_dim; /* QKᵀ + PV, visible pairs */
    double macs;
    if (train) {
        const double lora = r * (2 * D + Q + KV);                       /* q and v: x Aᵀ and (x Aᵀ) Bᵀ */
        macs = N * L * (proj + lora) + L * attn + rows * D * V          /* forward; lm_head: labelled rows */
             + N * (L * proj - D * (Q + 2 * KV))                          /* dX of the frozen projections */
             + N * L * 2 * lora                                           /* dA, dB, d(xa), dX of LoRA */
             + L * 2 * attn                                               /* dV, dP, dQ, dK */
             + rows * D * V;                                              /* dX of lm_head */
    } else {
        /* next-token logits at the last position (rows = B): the last layer needs keys and values of
         * every position, but queries, o_proj and the MLP of the last positions only */
        macs = N * (L - 1) * proj + (L - 1) * attn + N * D * 2 * KV
             + rows * (D * Q + Q * D + 3 * D * F) + rows * H * (double)T * c->head_dim * 2 + rows * D * V;
    }
    return 2 * macs;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_cpu_vs_torch MODEL_DIR train|eval|ceiling [--threads N] [--batch B] [--seq T] "
                        "[--steps S] [--logit-rows R] [--labels half|all]\n");
        return 2;
    }
    const char *dir = argv[1], *mode = argv[2];
    int threads = 2, B = 4, T = 256, steps = 5, logit_rows = 0, half = 1;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--logit-rows")) logit_rows = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--labels")) half = !strcmp(argv[i + 1], "half");
        else { fprintf(stderr, "bench_cpu_vs_torch: unknown option %s\n", argv[i]); return 2; }
    }
    if (logit_rows <= 0) logit_rows = B * T < 2048 ? B * T : 2048; /* as qalign train sizes it */
    openblas_set_num_threads(threads); /* the ceiling's sgemm; the backend's pool gets its count from the stream */
    const qa_stream_opts so = {.threads = threads};
    if (!strcmp(mode, "ceiling")) {
        const int n = 2048;
        float *a = qa_malloc(sizeof(float) * n * n), *b = qa_malloc(sizeof(float) * n * n),
              *c = qa_malloc(sizeof(float) * n * n);
        for (size_t i = 0; i < (size_t)n * n; i++) { a[i] = (float)(i % 13) * 0.01f; b[i] = (float)(i % 7) * 0.01f; }
        double best = 1e30;
        for (int r = 0; r < 3 * steps + 2; r++) {
            double t = wall();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
            t = wall() - t;
            if (r > 0 && t < best) best = t;
        }
        printf("qalign ceiling openblas_sgemm sec=%.6f gflops=%.1f\n", best, 2.0 * n * n * n / best * 1e-9);
        return 0;
    }
    int train = !strcmp(mode, "train");
    if (!train && strcmp(mode, "eval")) { fprintf(stderr, "bench_cpu_vs_torch: mode %s?\n", mode); return 2; }

    qa_err e = {0};
    qa_model m;
    if (qa_model_load_opts(&m, dir, NULL, &so, &e)) die("model", &e);
    const int V = m.cfg.vocab, N = B * T;
    qa_lora l;
    if (qa_lora_init(&l, &m, QA_LORA_MASK_QV, 8, 16, 0, &e)) die("lora", &e);
    qa_lora_init_params(&l, 1);
    int32_t *ids = qa_malloc(sizeof(int32_t) * N), *labels = qa_malloc(sizeof(int32_t) * N),
            *len = qa_malloc(sizeof(int32_t) * B);
    for (int i = 0; i < N; i++) {
        ids[i] = (int32_t)(((int64_t)i * 7919 + 13) % V);
        labels[i] = half && i % T < T / 2 ? -100 : ids[i];
    }
    for (int i = 0; i < B; i++) len[i] = T;
    qa_batch b = {B, T, ids, NULL, NULL, NULL, labels};
    const double rows = train ? (double)qa_batch_count_labels(&b) : B;
    qa_acts a;
    qa_infer_ws w;
    float *out = NULL;
    if (train) {
        if (qa_acts_alloc(&a, &m, &l, B, T, QA_ACTS_TRAIN, logit_rows, &e)) die("workspace", &e);
    } else {
        if (qa_infer_ws_alloc(&w, &m, NULL, B, N, V, &e)) die("workspace", &e);
        out = qa_malloc(sizeof(float) * (size_t)B * V);
    }
    qa_infer_batch ib = {B, T, ids, len, NULL};
    qa_adamw opt = {1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f};
    qa_train_opts to = {.grad_scale = 1, .dropout_key = 0, .want_embed_grad = 0};
    long base = rss_kb();
    double best = 1e30, best_cpu = 1e30, first_loss = 0;
    for (int s = 0; s <= steps; s++) {
        double t0 = wall(), c0 = cpu();
        if (train) {
            qa_loss loss;
            qa_lora_zero_grad(&l);
            if (qa_model_forward_backward(&m, &l, &a, &b, &to, &loss, &e)) die("forward_backward", &e);
            qa_lora_adamw(&l, &opt);
            if (s == 0) first_loss = loss.loss;
        } else {
            if (qa_model_infer(&m, NULL, &w, NULL, &ib, NULL, NULL, out, &e)) die("infer", &e);
        }
        double t = wall() - t0, tc = cpu() - c0;
        if (s == 0 && !train) { /* cross-check with the peer: mean over rows of -log p(ids[b, 0]) */
            double sum = 0;
            for (int i = 0; i < B; i++) {
                const float *x = out + (size_t)i * V;
                double mx = x[0], z = 0;
                for (int j = 1; j < V; j++) mx = x[j] > mx ? x[j] : mx;
                for (int j = 0; j < V; j++) z += exp(x[j] - mx);
                sum += mx + log(z) - x[ids[i * T]];
            }
            first_loss = sum / B;
        }
        if (s > 0 && t < best) best = t;
        if (s > 0 && tc < best_cpu) best_cpu = tc;
    }
    printf("qalign %s sec=%.6f cpu_sec=%.6f flops=%.6e peak_rss_kb=%ld base_rss_kb=%ld loss=%.6f\n", mode, best,
           best_cpu, model_flops(&m.cfg, B, T, 8, train, rows), rss_kb(), base, first_loss);
    free(ids);
    free(labels);
    free(len);
    free(out);
    if (train) qa_acts_free(&a);
    else qa_infer_ws_free(&w);
    qa_lora_free(&l);
    qa_model_free(&m);
    return 0;
}
