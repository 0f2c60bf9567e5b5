/* bench_model.c — CPU forward and forward+backward of a synthetic BF16 model, as a ratio to its
 * peer measured in the same run: the same projections + lm_head as plain sgemm calls on F32
 * weights (the matmul floor). Ratio ~1 means the graph adds little beyond the matmuls
 * (BF16 panel conversion, attention, norms, RoPE, SwiGLU, LoRA).
 *
 *   bench_model [hidden layers heads kv_heads intermediate vocab B T]
 *   default:     1024   4      16    4        2816         32000 2 256
 */
#include "model/model.h"
#include "common/qa_mem.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
static uint64_t rs = 1;
static float frand(void) {
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rs >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static qa_weight bf16(size_t n, float scale, float offset) {
    uint16_t *w = qa_malloc(2 * n);
    for (size_t i = 0; i < n; i++) w[i] = qa_f32_to_bf16(offset + scale * frand());
    return (qa_weight){QA_DT_BF16, w};
}

int main(int argc, char **argv) {
    int a[8] = {1024, 4, 16, 4, 2816, 32000, 2, 256};
    for (int i = 1; i < argc && i <= 8; i++) a[i - 1] = atoi(argv[i]);
    qa_model m;
    memset(&m, 0, sizeof m);
    qa_hf_config *c = &m.cfg;
    c->arch = QA_ARCH_LLAMA;
    strcpy(c->model_type, "llama");
    c->hidden = a[0]; c->n_layers = a[1]; c->n_heads = a[2]; c->n_kv_heads = a[3]; c->intermediate = a[4];
    c->vocab = a[5]; c->head_dim = c->hidden / c->n_heads; c->rms_eps = 1e-5; c->rope_theta = 10000;
    const int B = a[6], T = a[7], N = B * T, D = c->hidden, F = c->intermediate, V = c->vocab;
    const int Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim;
    m.ops = qa_ops_cpu();
    qa_err e = {0};
    m.ops->stream_create(&m.stream, NULL, &e);
    float s = 0.5f / (float)D;
    m.embed = bf16((size_t)V * D, 1.0f, 0);
    m.lm_head = bf16((size_t)V * D, s * 20, 0);
    m.final_norm = bf16(D, 0.05f, 1);
    m.layers = qa_calloc(c->n_layers, sizeof *m.layers);
    for (int l = 0; l < c->n_layers; l++) {
        qa_layer_weights *w = &m.layers[l];
        w->attn_norm = bf16(D, 0.05f, 1); w->mlp_norm = bf16(D, 0.05f, 1);
        w->wq = bf16((size_t)Q * D, s * 20, 0); w->wk = bf16((size_t)KV * D, s * 20, 0);
        w->wv = bf16((size_t)KV * D, s * 20, 0); w->wo = bf16((size_t)D * Q, s * 20, 0);
        w->wgate = bf16((size_t)F * D, s * 20, 0); w->wup = bf16((size_t)F * D, s * 20, 0);
        w->wdown = bf16((size_t)D * F, s * 20, 0);
    }
    qa_lora l;
    if (qa_lora_init(&l, &m, QA_LORA_MASK_QV, 8, 16, 0, &e)) { qa_err_print(&e); return 1; }
    qa_lora_init_params(&l, 1);
    qa_acts act;
    if (qa_acts_alloc(&act, &m, &l, B, T, QA_ACTS_TRAIN, 0, &e)) { qa_err_print(&e); return 1; }
    int32_t *ids = qa_malloc(4 * (size_t)N), *labels = qa_malloc(4 * (size_t)N);
    for (int i = 0; i < N; i++) { ids[i] = (int32_t)((i * 7919) % V); labels[i] = i % T < T / 2 ? -100 : ids[i]; }
    qa_batch b = {B, T, ids, NULL, NULL, NULL, labels};
    qa_fwd_opts fo = {QA_LOGITS_ALL, NULL, 0};
    qa_train_opts to = {.grad_scale = 1, .dropout_key = 0, .want_embed_grad = 0};
    qa_loss loss;

    /* peer: the same matmuls as plain sgemm on F32 weights */
    size_t wmax = (size_t)V * D > (size_t)F * D ? (size_t)V * D : (size_t)F * D;
    float *W = qa_malloc(4 * wmax), *x = qa_malloc(4 * (size_t)N * (F > D ? F : D)), *y = qa_malloc(4 * (size_t)N * (V > F ? V : F));
    for (size_t i = 0; i < wmax; i++) W[i] = s * frand();
    for (size_t i = 0; i < (size_t)N * (F > D ? F : D); i++) x[i] = frand();
    int shapes[7][2] = {{Q, D}, {KV, D}, {KV, D}, {D, Q}, {F, D}, {F, D}, {D, F}};
    double best_peer = 1e30, best_fwd = 1e30, best_fb = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        for (int li = 0; li < c->n_layers; li++)
            for (int k = 0; k < 7; k++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, shapes[k][0], shapes[k][1], 1, x, shapes[k][1],
                            W, shapes[k][1], 0, y, shapes[k][0]);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, V, D, 1, x, D, W, D, 0, y, V);
        double t1 = now();
        if (qa_model_forward(&m, &l, &act, &b, &fo, &e)) { qa_err_print(&e); return 1; }
        double t2 = now();
        if (qa_model_forward_backward(&m, &l, &act, &b, &to, &loss, &e)) { qa_err_print(&e); return 1; }
        double t3 = now();
        if (t1 - t0 < best_peer) best_peer = t1 - t0;
        if (t2 - t1 < best_fwd) best_fwd = t2 - t1;
        if (t3 - t2 < best_fb) best_fb = t3 - t2;
    }
    double flops = 2.0 * N * ((double)c->n_layers * (D * (double)(Q + 2 * KV) + (double)Q * D + 3.0 * D * F) + (double)D * V);
    printf("model: hidden %d, %d layers, heads %d/%d, F %d, vocab %d; batch [%d, %d]; LoRA q,v r=8\n", D, c->n_layers,
           c->n_heads, c->n_kv_heads, F, V, B, T);
    printf("peer  sgemm F32 (same matmuls)   %8.3f s  %6.1f GFLOP/s\n", best_peer, flops / best_peer * 1e-9);
    printf("forward (BF16, all logits)       %8.3f s  ratio %.2f x peer\n", best_fwd, best_fwd / best_peer);
    printf("forward+backward (loss, LoRA)    %8.3f s  ratio %.2f x peer (matmul floor ~2-3x: half the rows labelled)\n",
           best_fb, best_fb / best_peer);
    printf("workspace %.1f MiB, loss %.4f over %lld tokens\n", act.bytes / 1048576.0, loss.loss, (long long)loss.n_tokens);
    return 0;
}
