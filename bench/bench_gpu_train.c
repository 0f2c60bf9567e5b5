/* bench_gpu_train.c — LoRA training and evaluation throughput of a model of a real shape with random
 * BF16 weights built straight in backend memory (no checkpoint files: a 7B model is ready in seconds),
 * printed beside the Hugging Face + PEFT anchor of the same shape (bench/gpu/anchors.json: measured on an H200).
 *
 *   bench_gpu_train [--device cuda|cpu] [--shape mistral-7b|qwen1.5-1.8b|tiny] [--batch B] [--seq T]
 *                   [--mode train|forward|eval] [--steps n] [--warmup n] [--anchor tokens/s]
 *                   [--lora-r r] [--lora-modules qv|all] [--peak-tflops F] [--json FILE]
 *                   eval only: [--prefix P] [--suffix S] [--rows R] [--prompts n] [--groups g] [--batches n]
 *
 * train: LoRA (default q,v r=8, as the anchor) forward+backward+AdamW; labels on the second half of
 *        each sequence (as the anchor); tokens/s = B*T / step time; MFU with the "4N" convention
 *        (2N FLOPs per token forward + 2N backward through the frozen weights, attention ignored).
 * forward: the base model forward with all logits (2N convention).
 * eval:  the paper's evaluation workload, few-shot prompts as one cached prefix per (task, language)
 *        group: `groups` prefills of `prefix` tokens, then rows of `suffix` tokens (lengths spread over
 *        [suffix/2, suffix]) continuing the prefix, logits of 3 label tokens at the last position.
 *        Measures `batches` batches of `rows` rows and one prefill, and extrapolates to `prompts`
 *        prompts (stated as such in the output).
 * Timing: wall clock around synchronized steps, after warm-up; the median step is reported. */
#include "model/model.h"
#include "common/qa_mem.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
/* a JSON number, or null for NaN/Inf (JSON has neither) */
static const char *jnum(char buf[32], double v) {
    if (isfinite(v)) snprintf(buf, 32, "%.6f", v);
    else snprintf(buf, 32, "null");
    return buf;
}
static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmpd);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Random BF16 weights for every tensor of m->cfg, in one backend block (m->owned). Values come from
 * one host pool of random bf16 (uniform, std ~ 0.02 like an initialized model), each tensor a slice
 * at its own offset; norms are 1. */
static int build_model(qa_model *m, const qa_ops *ops, qa_err *e) {
    const qa_hf_config *c = &m->cfg;
    const size_t D = c->hidden, F = c->intermediate, V = c->vocab, Q = (size_t)c->n_heads * c->head_dim,
                 KV = (size_t)c->n_kv_heads * c->head_dim;
    m->ops = ops;
    if (ops->stream_create(&m->stream, NULL, e)) return -1;
    m->layers = qa_calloc((size_t)c->n_layers, sizeof *m->layers);
    /* sizes in elements: embed, [lm_head], final norm, per layer 2 norms + 7 matrices + biases */
    size_t per_layer = 2 * D + Q * D + 2 * KV * D + D * Q + 3 * F * D + (c->qkv_bias ? Q + 2 * KV : 0);
    size_t total = V * D * (c->tie_embeddings ? 1 : 2) + D + (size_t)c->n_layers * per_layer +
                   32 * (3 + 12 * (size_t)c->n_layers); /* each tensor starts at a multiple of 32 */
    m->owned_bytes = total * 2 + 64 * 64;
    m->owned = ops->alloc(m->owned_bytes, e);
    if (!m->owned) return -1;
    const size_t pool_n = (size_t)1 << 26; /* 64 Mi values */
    uint16_t *pool = qa_malloc(pool_n * 2), *ones = NULL;
    uint64_t r = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < pool_n; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        float u = (float)((r >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
        pool[i] = qa_f32_to_bf16(0.035f * u);
    }
    size_t maxd = D > F ? D : F;
    if (Q > maxd) maxd = Q;
    ones = qa_malloc(2 * maxd);
    for (size_t i = 0; i < maxd; i++) ones[i] = qa_f32_to_bf16(1.0f);
    size_t off = 0, pick = 0;
    uint8_t *base = (uint8_t *)m->owned;
#define PUT(dst, n, src_ones) do { \
        size_t _n = (n); \
        (dst) = (qa_weight){QA_DT_BF16, base + off * 2}; \
        for (size_t _d = 0; _d < _n;) { \
            size_t _k = _n - _d; \
            const uint16_t *_s; \
            if (src_ones) _s = ones; \
            else { pick = (pick * 2654435761u + 12345) % (pool_n / 2); _s = pool + pick; \
                   if (_k > pool_n - pick) _k = pool_n - pick; } \
            if (src_ones && _k > maxd) _k = maxd; \
            ops->memcpy_h2d(m->stream, base + (off + _d) * 2, _s, _k * 2); \
            _d += _k; \
        } \
        off += (_n + 31) / 32 * 32; \
    } while (0)
    PUT(m->embed, V * D, 0);
    if (c->tie_embeddings) m->lm_head = m->embed;
    else PUT(m->lm_head, V * D, 0);
    PUT(m->final_norm, D, 1);
    for (int l = 0; l < c->n_layers; l++) {
        qa_layer_weights *w = &m->layers[l];
        PUT(w->attn_norm, D, 1);
        PUT(w->mlp_norm, D, 1);
        PUT(w->wq, Q * D, 0);
        PUT(w->wk, KV * D, 0);
        PUT(w->wv, KV * D, 0);
        PUT(w->wo, D * Q, 0);
        PUT(w->wgate, F * D, 0);
        PUT(w->wup, F * D, 0);
        PUT(w->wdown, D * F, 0);
        if (c->qkv_bias) {
            PUT(w->bq, Q, 0);
            PUT(w->bk, KV, 0);
            PUT(w->bv, KV, 0);
        }
        ops->sync(m->stream, NULL); /* pageable copies: keep the queue short */
    }
#undef PUT
    int rc = ops->sync(m->stream, e);
    free(pool);
    free(ones);
    return rc;
}

static void set_shape(qa_hf_config *c, const char *shape) {
    if (!strcmp(shape, "qwen1.5-1.8b")) {
        qa_hf_config_defaults(c, QA_ARCH_QWEN2);
        c->hidden = 2048, c->intermediate = 5504, c->n_layers = 24, c->n_heads = 16, c->n_kv_heads = 16;
        c->vocab = 151936, c->rope_theta = 1e6, c->rms_eps = 1e-6, c->tie_embeddings = 0;
    } else if (!strcmp(shape, "tiny")) {
        qa_hf_config_defaults(c, QA_ARCH_MISTRAL);
        c->hidden = 256, c->intermediate = 688, c->n_layers = 2, c->n_heads = 8, c->n_kv_heads = 2;
        c->vocab = 1000, c->rope_theta = 10000, c->rms_eps = 1e-5, c->tie_embeddings = 0;
    } else { /* mistral-7b (v0.1) */
        qa_hf_config_defaults(c, QA_ARCH_MISTRAL);
        c->hidden = 4096, c->intermediate = 14336, c->n_layers = 32, c->n_heads = 32, c->n_kv_heads = 8;
        c->vocab = 32000, c->rope_theta = 10000, c->rms_eps = 1e-5, c->tie_embeddings = 0;
    }
    c->head_dim = 0;
    qa_hf_config_finish(c);
    for (int i = 0; i < QA_MAX_LAYERS; i++) c->window[i] = 0;
}

int main(int argc, char **argv) {
    const char *backend = "cuda", *shape = "mistral-7b", *mode = "train", *json = NULL, *mods = "qv";
    int B = 16, T = 512, steps = 6, warmup = 2, lora_r = 8;
    int prefix = 350, suffix = 65, rows = 64, prompts = 32000, groups = 60, batches = 12;
    double anchor = 0, peak = 989.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: bench_gpu_train [--device cuda|cpu] [--shape mistral-7b|qwen1.5-1.8b|tiny] [--batch B]\n"
                   "  [--seq T] [--mode train|forward|eval] [--steps n] [--warmup n] [--anchor tokens/s]\n"
                   "  [--lora-r r] [--lora-modules qv|all] [--peak-tflops F] [--json FILE]\n"
                   "  eval: [--prefix P] [--suffix S] [--rows R] [--prompts n] [--groups g] [--batches n]\n");
            return 0;
        }
#define ARG(flag, dst, conv) else if (more && !strcmp(a, flag)) dst = conv(argv[++i])
#define STR(x) (x)
        if (0) {}
        ARG("--device", backend, STR); ARG("--backend", backend, STR); ARG("--shape", shape, STR); ARG("--mode", mode, STR);
        ARG("--json", json, STR); ARG("--lora-modules", mods, STR);
        ARG("--batch", B, atoi); ARG("--seq", T, atoi); ARG("--steps", steps, atoi); ARG("--warmup", warmup, atoi);
        ARG("--lora-r", lora_r, atoi); ARG("--prefix", prefix, atoi); ARG("--suffix", suffix, atoi);
        ARG("--rows", rows, atoi); ARG("--prompts", prompts, atoi); ARG("--groups", groups, atoi);
        ARG("--batches", batches, atoi); ARG("--anchor", anchor, atof); ARG("--peak-tflops", peak, atof);
        else { fprintf(stderr, "bench_gpu_train: unknown or incomplete option %s (see --help)\n", a); return 2; }
#undef ARG
#undef STR
    }
    if (steps < 1) steps = 1;
    qa_err e = {0};
    const qa_ops *ops = qa_ops_get(backend, &e);
    if (!ops) { qa_err_print(&e); return 1; }
    qa_model m;
    memset(&m, 0, sizeof m);
    set_shape(&m.cfg, shape);
    const qa_hf_config *c = &m.cfg;
    double t0 = now();
    if (build_model(&m, ops, &e)) { qa_err_print(&e); qa_model_free(&m); return 1; }
    double t_build = now() - t0;
    const double Np = (double)qa_hf_config_param_count(c);
    printf("%s (%s backend): %.2f B parameters, hidden %d, %d layers, heads %d/%d, F %d, vocab %d; weights ready "
           "in %.1f s\n", shape, ops->name, Np * 1e-9, c->hidden, c->n_layers, c->n_heads, c->n_kv_heads,
           c->intermediate, c->vocab, t_build);
    const int V = c->vocab;
    FILE *jf = json ? fopen(json, "w") : NULL;
    int rc = 0;

    if (!strcmp(mode, "train") || !strcmp(mode, "forward")) {
        const int train = !strcmp(mode, "train"), N = B * T;
        qa_lora l;
        memset(&l, 0, sizeof l);
        unsigned mask = !strcmp(mods, "all") ? QA_LORA_MASK_ALL : QA_LORA_MASK_QV;
        if (train) {
            if (qa_lora_init(&l, &m, mask, lora_r, 2.0f * lora_r, 0.05f, &e)) { qa_err_print(&e); return 1; }
            qa_lora_init_params(&l, 1);
        }
        int32_t *ids = qa_malloc(4 * (size_t)N), *labels = qa_malloc(4 * (size_t)N);
        int labelled = 0;
        for (int i = 0; i < N; i++) {
            ids[i] = (int32_t)(((uint64_t)i * 7919u + 17) % (uint64_t)V);
            labels[i] = i % T < T / 2 ? -100 : ids[i];
            if (i % T > 0 && labels[i] != -100) labelled++;
        }
        qa_acts a;
        if (qa_acts_alloc(&a, &m, train ? &l : NULL, B, T, train ? QA_ACTS_TRAIN : QA_ACTS_INFER,
                          train ? labelled : 0, &e)) {
            qa_err_print(&e);
            return 1;
        }
        qa_batch b = {B, T, ids, NULL, NULL, NULL, labels};
        qa_adamw opt = {1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f};
        qa_train_opts to = {.grad_scale = 1.0f, .dropout_key = 0, .want_embed_grad = 0};
        qa_fwd_opts fo = {QA_LOGITS_ALL, NULL, 0};
        qa_loss loss = {0};
        double *dt = qa_malloc(sizeof(double) * (size_t)steps);
        for (int s = 0; s < warmup + steps; s++) {
            double s0 = now();
            if (train) {
                qa_lora_zero_grad(&l);
                to.dropout_key = (uint64_t)s + 1;
                if (qa_model_forward_backward(&m, &l, &a, &b, &to, &loss, &e)) { qa_err_print(&e); return 1; }
                qa_lora_adamw(&l, &opt);
                if (ops->sync(m.stream, &e)) { qa_err_print(&e); return 1; }
            } else if (qa_model_forward(&m, NULL, &a, &b, &fo, &e)) {
                qa_err_print(&e);
                return 1;
            }
            if (s >= warmup) dt[s - warmup] = now() - s0;
        }
        double med = median(dt, steps), tps = N / med;
        char lossbuf[32];
        double flops_tok = (train ? 4.0 : 2.0) * Np, tflops = tps * flops_tok * 1e-12;
        printf("%s %s %dx%d: step %.1f ms (median of %d), %.0f tokens/s, %.0f TFLOP/s (%s), MFU %.1f%% of %.0f "
               "TFLOP/s%s", mode, shape, B, T, med * 1e3, steps, tps, tflops, train ? "4N" : "2N",
               100.0 * tflops / peak, peak, train ? "" : "\n");
        if (train) printf(", loss %.4f over %lld tokens\n", loss.loss, (long long)loss.n_tokens);
        if (anchor > 0)
            printf("  anchor (HF + PEFT, H200): %.0f tokens/s -> ratio %.2fx\n", anchor, tps / anchor);
        if (jf)
            fprintf(jf, "{\"mode\": \"%s\", \"shape\": \"%s\", \"backend\": \"%s\", \"batch\": %d, \"seq\": %d, "
                        "\"step_ms\": %.3f, \"tokens_per_s\": %.1f, \"tflops\": %.1f, \"mfu_pct\": %.2f, "
                        "\"peak_tflops\": %.1f, \"anchor_tokens_per_s\": %.1f, \"ratio_to_anchor\": %.3f, "
                        "\"loss\": %s}\n", mode, shape, ops->name, B, T, med * 1e3, tps, tflops,
                    100.0 * tflops / peak, peak, anchor, anchor > 0 ? tps / anchor : 0.0, jnum(lossbuf, loss.loss));
        free(dt);
        free(ids);
        free(labels);
        qa_acts_free(&a);
        if (train) qa_lora_free(&l);
    } else if (!strcmp(mode, "eval")) {
        const int Tmax = suffix;
        qa_kv_cache cache;
        qa_infer_ws w;
        qa_head_rows head;
        int32_t label_ids[3] = {100, 200, 300};
        if (qa_kv_cache_alloc(&cache, &m, prefix, &e) ||
            qa_infer_ws_alloc(&w, &m, NULL, rows, rows * Tmax > prefix ? rows * Tmax : prefix, 3, &e) ||
            qa_head_rows_init(&head, &m, label_ids, 3, &e)) {
            qa_err_print(&e);
            return 1;
        }
        int32_t *pids = qa_malloc(4 * (size_t)prefix), one = prefix;
        for (int i = 0; i < prefix; i++) pids[i] = (int32_t)((i * 31 + 5) % V);
        float out[3];
        qa_infer_batch pb = {1, prefix, pids, &one, NULL};
        double tp = 0;
        for (int rep = 0; rep < 2; rep++) { /* the first warms up */
            double s0 = now();
            cache.len = 0;
            if (qa_model_infer(&m, NULL, &w, NULL, &pb, &cache, &head, out, &e)) { qa_err_print(&e); return 1; }
            tp = now() - s0;
        }
        int32_t *ids = qa_malloc(4 * (size_t)rows * Tmax), *len = qa_malloc(4 * (size_t)rows),
                *ctx = qa_malloc(4 * (size_t)rows);
        float *lo = qa_malloc(sizeof(float) * 3 * (size_t)rows);
        for (int r = 0; r < rows; r++) {
            len[r] = Tmax / 2 + (r * 7) % (Tmax - Tmax / 2 + 1);
            ctx[r] = prefix;
            for (int t = 0; t < Tmax; t++) ids[(size_t)r * Tmax + t] = (int32_t)((r * 131 + t * 17 + 3) % V);
        }
        qa_infer_batch bb = {rows, Tmax, ids, len, ctx};
        double *dt = qa_malloc(sizeof(double) * (size_t)(batches > 0 ? batches : 1));
        for (int s = 0; s < 2 + batches; s++) {
            double s0 = now();
            if (qa_model_infer(&m, NULL, &w, &cache, &bb, NULL, &head, lo, &e)) { qa_err_print(&e); return 1; }
            if (s >= 2) dt[s - 2] = now() - s0;
        }
        double med = median(dt, batches > 0 ? batches : 1);
        double n_batches = ceil((double)prompts / rows);
        double total = groups * tp + n_batches * med;
        double mean_len = prefix + 0.75 * suffix;
        printf("eval %s: prefill %d tokens %.1f ms; batch of %d rows x %d suffix tokens (ctx %d) %.1f ms (median of "
               "%d) = %.0f prompts/s\n", shape, prefix, tp * 1e3, rows, Tmax, prefix, med * 1e3, batches,
               rows / med);
        printf("  extrapolated: %d prompts (~%.0f tokens each) in %d prefix groups: %d prefills + %.0f batches = "
               "%.1f s (%.2f min); anchor (HF, batches of 16): ~18 min\n", prompts, mean_len, groups, groups,
               n_batches, total, total / 60);
        if (jf)
            fprintf(jf, "{\"mode\": \"eval\", \"shape\": \"%s\", \"backend\": \"%s\", \"prefix\": %d, \"suffix\": %d, "
                        "\"rows\": %d, \"prefill_ms\": %.3f, \"batch_ms\": %.3f, \"prompts_per_s\": %.1f, "
                        "\"prompts\": %d, \"groups\": %d, \"extrapolated_total_s\": %.2f}\n", shape, ops->name,
                    prefix, suffix, rows, tp * 1e3, med * 1e3, rows / med, prompts, groups, total);
        free(pids); free(ids); free(len); free(ctx); free(lo); free(dt);
        qa_head_rows_free(&head);
        qa_infer_ws_free(&w);
        qa_kv_cache_free(&cache);
    } else {
        fprintf(stderr, "bench_gpu_train: --mode must be train, forward or eval\n");
        rc = 2;
    }
    if (jf) fclose(jf);
    qa_model_free(&m);
    return rc;
}
