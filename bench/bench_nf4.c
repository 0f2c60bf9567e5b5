/* bench_nf4.c — NF4 against BF16 base weights on the CPU, in the same run: the evaluation forward (last-position
 * logits) and a QLoRA / LoRA training step (forward + backward, LoRA q,v r=8) of one synthetic model whose seven
 * projections are BF16 in one copy and NF4 (quantized from the same values) in the other; embeddings, norms and
 * lm_head are shared (BF16, as bitsandbytes keeps them). Rounds alternate the two, best of each is printed with
 * the ratio NF4 / BF16. Where the time goes: the frozen linears alone (the packed GEMM at the batch's rows; the
 * few-row path at 1 row, where weight bytes dominate), NF4 vs BF16, with bytes read and GFLOP/s.
 *
 *   bench_nf4 [hidden layers heads kv_heads intermediate vocab B T rounds]
 *   default:   1024   4      16    4        2816         32000 2 256 3 */
#include "model/model.h"
#include "kernels/nf4.h"
#include "common/qa_mem.h"

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
static qa_weight to_nf4(qa_weight w, size_t n) {
    uint8_t *b = qa_aligned_alloc(64, qa_nf4_bytes(n));
    qa_nf4_quantize(w.data, QA_DT_BF16, n, b, (float *)qa_nf4_absmax(b, n));
    return (qa_weight){QA_DT_NF4, b};
}

int main(int argc, char **argv) {
    int a[9] = {1024, 4, 16, 4, 2816, 32000, 2, 256, 3};
    for (int i = 1; i < argc && i <= 9; i++) a[i - 1] = atoi(argv[i]);
    qa_model m[2]; /* 0: BF16, 1: NF4 */
    memset(m, 0, sizeof m);
    qa_hf_config *c = &m[0].cfg;
    c->arch = QA_ARCH_LLAMA;
    strcpy(c->model_type, "llama");
    c->hidden = a[0]; c->n_layers = a[1]; c->n_heads = a[2]; c->n_kv_heads = a[3]; c->intermediate = a[4];
    c->vocab = a[5]; c->head_dim = c->hidden / c->n_heads; c->rms_eps = 1e-5; c->rope_theta = 10000;
    const int B = a[6], T = a[7], N = B * T, D = c->hidden, F = c->intermediate, V = c->vocab, rounds = a[8];
    const int Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim;
    qa_err e = {0};
    m[0].ops = qa_ops_cpu();
    m[0].ops->stream_create(&m[0].stream, NULL, &e);
    float s = 0.5f / (float)D;
    m[0].embed = bf16((size_t)V * D, 1.0f, 0);
    m[0].lm_head = bf16((size_t)V * D, s * 20, 0);
    m[0].final_norm = bf16(D, 0.05f, 1);
    m[0].layers = qa_calloc(c->n_layers, sizeof *m[0].layers);
    m[1] = m[0];
    m[1].layers = qa_calloc(c->n_layers, sizeof *m[1].layers);
    double bytes_bf16 = 0, bytes_nf4 = 0;
    for (int l = 0; l < c->n_layers; l++) {
        qa_layer_weights *w = &m[0].layers[l], *w4 = &m[1].layers[l];
        w->attn_norm = bf16(D, 0.05f, 1); w->mlp_norm = bf16(D, 0.05f, 1);
        w->wq = bf16((size_t)Q * D, s * 20, 0); w->wk = bf16((size_t)KV * D, s * 20, 0);
        w->wv = bf16((size_t)KV * D, s * 20, 0); w->wo = bf16((size_t)D * Q, s * 20, 0);
        w->wgate = bf16((size_t)F * D, s * 20, 0); w->wup = bf16((size_t)F * D, s * 20, 0);
        w->wdown = bf16((size_t)D * F, s * 20, 0);
        *w4 = *w;
        const size_t n[7] = {(size_t)Q * D, (size_t)KV * D, (size_t)KV * D, (size_t)D * Q, (size_t)F * D, (size_t)F * D,
                             (size_t)D * F};
        qa_weight *src[7] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->wgate, &w->wup, &w->wdown};
        qa_weight *dst[7] = {&w4->wq, &w4->wk, &w4->wv, &w4->wo, &w4->wgate, &w4->wup, &w4->wdown};
        for (int k = 0; k < 7; k++) {
            *dst[k] = to_nf4(*src[k], n[k]);
            bytes_bf16 += 2.0 * n[k];
            bytes_nf4 += (double)qa_nf4_bytes(n[k]);
        }
    }
    qa_lora l[2];
    qa_acts act[2];
    for (int k = 0; k < 2; k++) {
        if (qa_lora_init(&l[k], &m[k], QA_LORA_MASK_QV, 8, 16, 0, &e)) { qa_err_print(&e); return 1; }
        qa_lora_init_params(&l[k], 1);
        if (qa_acts_alloc(&act[k], &m[k], &l[k], B, T, QA_ACTS_TRAIN, 0, &e)) { qa_err_print(&e); return 1; }
    }
    int32_t *ids = qa_malloc(4 * (size_t)N), *labels = qa_malloc(4 * (size_t)N);
    for (int i = 0; i < N; i++) { ids[i] = (int32_t)((i * 7919) % V); labels[i] = i % T < T / 2 ? -100 : ids[i]; }
    qa_batch b = {B, T, ids, NULL, NULL, NULL, labels};
    qa_fwd_opts fo = {QA_LOGITS_LAST, NULL, 0};
    qa_train_opts to = {.grad_scale = 1, .dropout_key = 0, .want_embed_grad = 0};
    qa_loss loss[2];

    /* the frozen linears alone: gate_proj shape [F, D] at N rows and at 1 row */
    float *x = qa_malloc(4 * (size_t)N * F), *y = qa_malloc(4 * (size_t)N * F);
    for (size_t i = 0; i < (size_t)N * F; i++) x[i] = frand();
    double fwd[2] = {1e30, 1e30}, step[2] = {1e30, 1e30}, lin[2] = {1e30, 1e30}, lin1[2] = {1e30, 1e30};
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < 2; k++) {
            const int kk = r % 2 ? 1 - k : k; /* alternate which goes first */
            qa_model *mm = &m[kk];
            double t0 = now();
            if (qa_model_forward(mm, &l[kk], &act[kk], &b, &fo, &e)) { qa_err_print(&e); return 1; }
            double t1 = now();
            qa_lora_zero_grad(&l[kk]);
            if (qa_model_forward_backward(mm, &l[kk], &act[kk], &b, &to, &loss[kk], &e)) { qa_err_print(&e); return 1; }
            double t2 = now();
            for (int li = 0; li < c->n_layers; li++)
                mm->ops->linear_fwd(mm->stream, N, D, F, 0, x, mm->layers[li].wgate, (qa_weight){0}, y);
            double t3 = now();
            for (int rep = 0; rep < 8; rep++)
                for (int li = 0; li < c->n_layers; li++)
                    mm->ops->linear_fwd(mm->stream, 1, D, F, 0, x, mm->layers[li].wgate, (qa_weight){0}, y);
            double t4 = now();
            if (t1 - t0 < fwd[kk]) fwd[kk] = t1 - t0;
            if (t2 - t1 < step[kk]) step[kk] = t2 - t1;
            if (t3 - t2 < lin[kk]) lin[kk] = t3 - t2;
            if ((t4 - t3) / 8 < lin1[kk]) lin1[kk] = (t4 - t3) / 8;
        }
    const double proj = (double)c->n_layers * ((double)D * (Q + 2 * KV) + (double)Q * D + 3.0 * D * F);
    const double gflop_fwd = 2.0 * N * proj * 1e-9, gflop_lin = 2.0 * N * (double)F * D * c->n_layers * 1e-9;
    const double gate_b16 = 2.0 * F * D * c->n_layers, gate_nf4 = (double)qa_nf4_bytes((size_t)F * D) * c->n_layers;
    printf("model: hidden %d, %d layers, heads %d/%d, F %d, vocab %d; batch [%d, %d]; LoRA q,v r=8; %d rounds\n", D,
           c->n_layers, c->n_heads, c->n_kv_heads, F, V, B, T, rounds);
    printf("projection weights: BF16 %.1f MiB, NF4 %.1f MiB (%.2fx fewer bytes)\n", bytes_bf16 / 1048576,
           bytes_nf4 / 1048576, bytes_bf16 / bytes_nf4);
    printf("evaluation forward (last-position logits)  BF16 %8.3f s  NF4 %8.3f s  NF4/BF16 %.3f  (%.1f / %.1f GFLOP/s "
           "in the projections)\n", fwd[0], fwd[1], fwd[1] / fwd[0], gflop_fwd / fwd[0], gflop_fwd / fwd[1]);
    printf("training step (forward+backward, LoRA)     BF16 %8.3f s  NF4 %8.3f s  NF4/BF16 %.3f  (loss %.5f / %.5f)\n",
           step[0], step[1], step[1] / step[0], loss[0].loss, loss[1].loss);
    printf("gate_proj linear x %d layers, %d rows      BF16 %8.4f s  NF4 %8.4f s  NF4/BF16 %.3f  (%.1f / %.1f GFLOP/s)\n",
           c->n_layers, N, lin[0], lin[1], lin[1] / lin[0], gflop_lin / lin[0], gflop_lin / lin[1]);
    printf("gate_proj linear x %d layers, 1 row        BF16 %8.5f s  NF4 %8.5f s  NF4/BF16 %.3f  (%.2f / %.2f GB/s of "
           "weights)\n", c->n_layers, lin1[0], lin1[1], lin1[1] / lin1[0], gate_b16 / lin1[0] * 1e-9,
           gate_nf4 / lin1[1] * 1e-9);
    return 0;
}
