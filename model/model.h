/* model.h — the decoder-only transformer (llama / mistral / qwen2) with LoRA, as HF computes it.
 *
 * Ownership (docs/architecture.md):
 *   qa_model   config + frozen weights as typed views {dtype, data} (model.c). On the CPU backend
 *              BF16/F32 tensors point straight into the safetensors mmap (no second copy); F16/F64
 *              (or misaligned) tensors are converted once into the one owned block (F32); NF4
 *              projections (quantized at load, or read from a 4-bit checkpoint) live in the owned
 *              block too. On a device backend every weight is uploaded once into the owned block,
 *              keeping its dtype (F16/F64/misaligned as F32, NF4 as its block).
 *   qa_lora    LoRA adapter (lora.c): parameters, gradients, AdamW m and v in four matching
 *              contiguous fp32 blocks of n_params floats (flat: all-reduce / checkpoint one buffer),
 *              then the double of the gradient-norm reduction, all one allocation; per-(layer,
 *              module) views A [r, in] and B [out, r] into the params and grads blocks.
 *   qa_acts    training / forward workspace for a (B, T) (workspace.c): one contiguous block with
 *              typed views; holds hidden states, logits, saved tensors for backward and gradients.
 *   qa_infer_ws, qa_kv_cache, qa_head_rows   evaluation (infer.c): its workspace (the same carve as
 *              qa_acts, one layer set), the prefix KV cache and a subset of lm_head rows.
 * All float pointers inside qa_lora / qa_acts / qa_infer_ws / qa_kv_cache / qa_head_rows are backend
 * memory (host memory on the CPU backend) unless marked host; use qa_model_to_host to read them.
 *
 * Semantics (formats.md §3): positions default to 0..T-1 per row regardless of padding;
 * hidden[0] = embeddings, hidden[i] = output of layer i, hidden[L] = after the final norm;
 * loss = mean cross-entropy over positions t whose labels[t+1] != -100 (HF shift).
 */
#ifndef QA_MODEL_H
#define QA_MODEL_H
#include "common/qa_err.h"
#include "io/hf_config.h"
#include "io/peft.h"
#include "io/safetensors.h"
#include "kernels/ops.h"
#include <stddef.h>
#include <stdint.h>

/* ---- model ---------------------------------------------------------------------------- */
typedef struct qa_layer_weights {
    qa_weight attn_norm;                      /* [D]  input_layernorm */
    qa_weight wq, wk, wv, wo;                 /* [H*hd, D], [Hk*hd, D], [Hk*hd, D], [D, H*hd] */
    qa_weight bq, bk, bv, bo;                 /* biases or data NULL */
    qa_weight mlp_norm;                       /* [D]  post_attention_layernorm */
    qa_weight wgate, wup, wdown;              /* [F, D], [F, D], [D, F] */
    qa_weight bgate, bup, bdown;              /* llama mlp_bias, else data NULL */
} qa_layer_weights;

typedef struct qa_model {
    qa_hf_config cfg;
    const qa_ops *ops;                        /* backend */
    qa_stream *stream;                        /* backend context (CPU: the thread pool every op of the
                                                 model, its adapter and workspaces runs on) */
    qa_safetensors st;                        /* the mmap'd checkpoint */
    qa_weight embed;                          /* [V, D] */
    qa_weight final_norm;                     /* [D] */
    qa_weight lm_head;                        /* [V, D] (== embed when tied) */
    qa_layer_weights *layers;                 /* [n_layers] */
    void *owned;                              /* F32 conversions and NF4 projections (host backend) /
                                                 every weight, uploaded (device backend) */
    size_t owned_bytes;
    int quant;                                /* qa_quant of the projections (QA_QUANT_NONE: as stored) */
    size_t nf4_bytes;                         /* bytes of the NF4 projections (codes + fp32 absmax) */
} qa_model;

/* Base-weight quantization at load (kernels/nf4.h): the seven projections of every layer become NF4 (blocks
 * of 64, fp32 absmax; NF4_DQ: the absmax double-quantized as bitsandbytes does, then decoded); embeddings,
 * norms, biases and lm_head stay as stored, as bitsandbytes keeps them. A checkpoint that transformers saved
 * quantized (load_in_4bit, nf4) is read as NF4 whatever is asked. */
typedef enum qa_quant { QA_QUANT_NONE = 0, QA_QUANT_NF4, QA_QUANT_NF4_DQ } qa_quant;
/* "none" | "nf4" | "nf4-dq" (also "" = none); error names the value */
int qa_quant_parse(const char *s, qa_quant *q, qa_err *e);
const char *qa_quant_name(qa_quant q);

/* Parameters of the seven projections of every layer (what NF4 quantizes) and the bytes they take as NF4 in
 * memory (codes + fp32 absmax: 0.5625 bytes per parameter) — for memory estimates (info, --dry-run). */
int64_t qa_model_proj_params(const qa_hf_config *c);
double qa_model_proj_nf4_bytes(const qa_hf_config *c);

/* Load config.json + model.safetensors[.index.json] from dir onto backend ops (NULL = CPU), whose stream
 * is made with so (NULL: defaults; so->threads: the CPU backend's threads, 0 = one per online core), the
 * projections quantized at load when quant != QA_QUANT_NONE. */
int qa_model_load_ex(qa_model *m, const char *dir, const qa_ops *ops, const qa_stream_opts *so, qa_quant quant,
                     qa_err *e);
/* Shorthands of qa_model_load_ex: _opts without quantization, qa_model_load with the default stream and
 * no quantization, _quant with the default stream. */
int qa_model_load_opts(qa_model *m, const char *dir, const qa_ops *ops, const qa_stream_opts *so, qa_err *e);
int qa_model_load(qa_model *m, const char *dir, const qa_ops *ops, qa_err *e);
int qa_model_load_quant(qa_model *m, const char *dir, const qa_ops *ops, qa_quant quant, qa_err *e);
void qa_model_free(qa_model *m);
/* Copy n floats of backend memory to host, synchronously (ops->memcpy_d2h; a plain copy on the CPU). */
void qa_model_to_host(const qa_model *m, float *host_dst, const float *dev_src, size_t n);

/* ---- LoRA ------------------------------------------------------------------------------ */
/* Modules QA_LORA_Q .. QA_LORA_DOWN, QA_LORA_N_MODULES, QA_LORA_BIT, QA_LORA_MASK_QV/ALL and
 * qa_lora_module_name come from common/qa_lora_modules.h (the list as data, shared with io/peft.h). */
/* in / out features of projection m under config c (q: hidden -> n_heads*head_dim, ...). */
void qa_lora_module_dims(const qa_hf_config *c, int m, int *in_features, int *out_features);
/* The shapes of a PEFT adapter for a base model of config c (every module's dims, n_layers). */
void qa_lora_peft_shape(const qa_hf_config *c, qa_peft_shape *sh);
/* PEFT on-disk name: base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight
 * (mlp.{gate,up,down}_proj for the MLP). Returns 0, -1 if buf too small. */
int qa_lora_peft_name(char *buf, size_t n, int layer, int mod, int is_B);

typedef struct qa_lora_mat {
    int present;                              /* module targeted */
    int in, out;                              /* A [r, in], B [out, r] */
    size_t off_A, off_B;                      /* float offsets into each block */
    float *A, *B;                             /* views into params */
    float *dA, *dB;                           /* views into grads */
} qa_lora_mat;

typedef struct qa_lora {
    unsigned modules;                         /* bitmask of QA_LORA_BIT(mod) */
    int r;                                    /* rank */
    float alpha;                              /* lora_alpha; scale = alpha / r */
    float scale;
    float dropout;                            /* on the module input, training only */
    int n_layers;
    size_t n_params;                          /* floats per block */
    float *params, *grads, *m, *v;            /* [n_params] each, backend memory, one allocation */
    double *red;                              /* [1] backend memory after the blocks: the norm reduction */
    qa_lora_mat *mats;                        /* [n_layers * QA_LORA_N_MODULES] */
    int64_t step;                             /* AdamW steps taken */
    const qa_ops *ops;                        /* backend of the model it was made for */
    qa_stream *stream;
} qa_lora;

/* Lay out an adapter for model m (layer-major, modules in enum order, A then B), all four
 * blocks zeroed. */
int qa_lora_init(qa_lora *l, const qa_model *m, unsigned modules, int r, float alpha, float dropout,
                 qa_err *e);
void qa_lora_free(qa_lora *l);
static inline qa_lora_mat *qa_lora_at(const qa_lora *l, int layer, int mod) {
    return &l->mats[(size_t)layer * QA_LORA_N_MODULES + mod];
}
/* Floats per block of an adapter (modules, r) on config c, as qa_lora_init lays it out. */
size_t qa_lora_n_params(const qa_hf_config *c, unsigned modules, int r);
/* Backend bytes qa_lora_init allocates for it: params, grads, m, v and the norm's reduction slot. */
size_t qa_lora_bytes(const qa_hf_config *c, unsigned modules, int r);
/* PEFT init: A Kaiming-uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0; seeded. */
void qa_lora_init_params(qa_lora *l, uint64_t seed);
/* Initialize l from a PEFT adapter directory (adapter_config.json + adapter_model.safetensors):
 * r, lora_alpha, lora_dropout, target_modules and every A/B (validated by io/peft.c). */
int qa_lora_load_peft(qa_lora *l, const qa_model *m, const char *dir, qa_err *e);
/* Write a PEFT adapter directory (F32, loadable by PEFT) via io/peft.h. */
int qa_lora_save_peft(const qa_lora *l, const qa_model *m, const char *dir, qa_err *e);
/* The same, with adapter_config.json's base_model_name_or_path = base_model (a directory is written as
 * its absolute path, so AutoPeftModelForCausalLM.from_pretrained(dir) finds it; NULL/"" = null). */
int qa_lora_save_peft_base(const qa_lora *l, const qa_model *m, const char *base_model, const char *dir, qa_err *e);
/* Copy host tensors in: set A or B of (layer, mod) from f32 host data. */
void qa_lora_set(qa_lora *l, int layer, int mod, int is_B, const float *host);
void qa_lora_zero_grad(qa_lora *l);

typedef struct qa_adamw {
    float lr, beta1, beta2, eps, weight_decay;
} qa_adamw;
/* One torch-AdamW step on the whole params block with grads (l->step is incremented first
 * and used for bias correction). Grads are not cleared. */
void qa_lora_adamw(qa_lora *l, const qa_adamw *opt);
/* The optimizer step once the gradients are final (summed over micro-batches and ranks), all as ops on
 * the backend's blocks: the global norm ||g|| (sumsq, in double) and the finite check; when both the
 * loss (loss_finite) and the gradients are finite: clipping to max_grad_norm (> 0: g *= max/(||g||+1e-6)
 * when that is < 1, torch's clip_grad_norm_) and AdamW. *gnorm = ||g|| before clipping.
 * Returns 1 (applied), 0 (skipped: non-finite), -1 (backend error, e set). */
int qa_lora_step(qa_lora *l, const qa_adamw *opt, double max_grad_norm, int loss_finite, double *gnorm, qa_err *e);

/* ---- batches and workspace ------------------------------------------------------------- */
typedef struct qa_batch {
    int B, T;
    const int32_t *input_ids;                 /* [B,T] host */
    const int32_t *attention_mask;            /* [B,T] host, 1 = token, 0 = padding; NULL = all 1 */
    const int32_t *positions;                 /* [B,T] host or NULL (0..T-1 in every row) */
    const int32_t *segment_ids;               /* [B,T] host or NULL (one example per row) */
    const int32_t *labels;                    /* [B,T] host, -100 = ignore (forward_backward) */
} qa_batch;
/* Number of positions t with labels[t+1] != -100 (the loss denominator). */
int64_t qa_batch_count_labels(const qa_batch *b);

enum { QA_ACTS_INFER = 0, QA_ACTS_TRAIN = 1 };

typedef struct qa_acts {
    int B, T, N;                              /* capacity; N = B*T */
    int mode;                                 /* QA_ACTS_INFER / QA_ACTS_TRAIN */
    int max_logit_rows;                       /* rows of the logits buffer */
    void *block;                              /* the one allocation (backend memory) */
    size_t bytes;                             /* == qa_acts_bytes(...) of the same shape */
    /* --- results -------------------------------------------------------------------------- */
    float **hidden;                           /* [L+1] views, each [B,T,D] (see top) */
    float *logits;                            /* [max_logit_rows, V] */
    int n_logit_rows;                         /* rows of logits filled by the last call */
    int32_t *logit_rows_host;                 /* [max_logit_rows] host: flat b*T+t of each row */
    float *d_embeds;                          /* [B,T,D] d loss / d input embeddings (train) */
    /* --- internals (views into block) ------------------------------------------------------ */
    struct qa_acts_int *in;
} qa_acts;

/* Size a workspace for batches up to [B,T] on model m with adapter l (NULL: none).
 * max_logit_rows: rows of the logits buffer (0 = B*T); training chunks the loss over it. */
int qa_acts_alloc(qa_acts *a, const qa_model *m, const qa_lora *l, int B, int T, int mode,
                  int max_logit_rows, qa_err *e);
/* Backend bytes qa_acts_alloc allocates for that shape and an adapter of lora_modules / lora_r (0: none):
 * the same carve, run dry. 0 for an invalid shape. */
size_t qa_acts_bytes(const qa_hf_config *c, unsigned lora_modules, int lora_r, int B, int T, int mode,
                     int max_logit_rows);
void qa_acts_free(qa_acts *a);

/* ---- forward ---------------------------------------------------------------------------- */
typedef enum qa_logits_mode {
    QA_LOGITS_NONE = 0,
    QA_LOGITS_ALL,                            /* every position: row b*T+t */
    QA_LOGITS_LAST,                           /* per row, the last position with mask 1 */
    QA_LOGITS_ROWS                            /* the flat rows in opts.rows */
} qa_logits_mode;

typedef struct qa_fwd_opts {
    qa_logits_mode logits;
    const int32_t *rows;                      /* [n_rows] host, flat b*T+t (QA_LOGITS_ROWS) */
    int n_rows;
} qa_fwd_opts;

/* Forward (no dropout). Fills a->hidden[0..L] and, per opts, a->logits [n_logit_rows, V] with
 * a->logit_rows_host naming each row. lora NULL = base model. */
int qa_model_forward(qa_model *m, const qa_lora *lora, qa_acts *a, const qa_batch *b,
                     const qa_fwd_opts *opts, qa_err *e);

/* Logit lens: lm_head(final_norm(h)) where h = residual stream after `layer` layers
 * (0 = embeddings, L = last layer output before the final norm, so lens(L) == logits),
 * at the flat rows given (NULL = all B*T). Uses the hidden states of the last forward;
 * fills a->logits / a->n_logit_rows / a->logit_rows_host. */
int qa_model_logit_lens(qa_model *m, qa_acts *a, int layer, const int32_t *rows, int n_rows, qa_err *e);

/* ---- inference with a cached prefix (evaluation; model/infer.c) ------------------------- *
 * Few-shot evaluation runs one shared prefix per (task, language) and many short suffixes. The
 * prefix runs once and leaves its keys (after RoPE) and values of every layer in a qa_kv_cache;
 * each batch row then continues from the first ctx[b] cached positions (positions ctx[b], ctx[b]+1,
 * ...), attending to [cache[0..ctx[b]) ; its own tokens] causally. Attention to a truncated cache
 * is exact (causal), so a row whose tokenization diverges from the prefix tokens at position c
 * uses ctx = c and feeds the rest as its suffix. Only the last real position of each row goes
 * through the final norm and the head, and the head may be a subset of lm_head rows
 * (qa_head_rows: the label tokens), so logits cost B x n_ids x D instead of B x T x V x D. */
typedef struct qa_kv_cache {
    int n_layers;
    int cap;                                  /* positions it can hold */
    int len;                                  /* positions filled */
    int kv_dim;                               /* Hk * hd */
    float *k, *v;                             /* [L, cap, Hk*hd] each, backend memory; k after RoPE */
    const qa_ops *ops;
} qa_kv_cache;
int qa_kv_cache_alloc(qa_kv_cache *c, const qa_model *m, int cap, qa_err *e);
/* Backend bytes qa_kv_cache_alloc allocates for cap positions. */
size_t qa_kv_cache_bytes(const qa_hf_config *c, int cap);
void qa_kv_cache_free(qa_kv_cache *c);

/* Rows `ids` of lm_head as an F32 [n, D] block in backend memory: logits for those ids only. */
typedef struct qa_head_rows {
    int n, D;
    int32_t *ids;                             /* [n] host */
    float *w;                                 /* [n, D] backend memory */
    const qa_ops *ops;
} qa_head_rows;
int qa_head_rows_init(qa_head_rows *h, const qa_model *m, const int32_t *ids, int n, qa_err *e);
void qa_head_rows_free(qa_head_rows *h);

/* Inference workspace: batches of up to max_rows rows and max_tokens tokens (B*T), LoRA up to the
 * rank of l (NULL: none), heads up to max_out outputs per row (V when full-vocab logits are wanted).
 * One backend block carved like qa_acts's (model/model_internal.h: the structure both share) with one
 * layer set, plus the residual stream. */
typedef struct qa_infer_ws {
    int max_rows, max_tokens, max_out, lora_r;
    void *block;                              /* one backend allocation */
    size_t bytes;                             /* == qa_infer_ws_bytes(cfg, lora_r, max_rows, max_tokens, max_out) */
    struct qa_infer_int *in;                  /* views into block, host staging (model_internal.h) */
    const qa_ops *ops;
} qa_infer_ws;
int qa_infer_ws_alloc(qa_infer_ws *w, const qa_model *m, const qa_lora *l, int max_rows, int max_tokens,
                      int max_out, qa_err *e);
/* Backend bytes qa_infer_ws_alloc allocates for that shape (its carve run dry); 0 for an invalid shape. */
size_t qa_infer_ws_bytes(const qa_hf_config *c, int lora_r, int max_rows, int max_tokens, int max_out);
void qa_infer_ws_free(qa_infer_ws *w);

typedef struct qa_infer_batch {
    int B, T;                                 /* rows, padded length */
    const int32_t *ids;                       /* [B, T] host, right-padded (pad with any valid id) */
    const int32_t *len;                       /* [B] host, real tokens per row, 1..T */
    const int32_t *ctx;                       /* [B] host, cached positions each row continues from
                                                 (<= cache->len); NULL = 0 for every row */
} qa_infer_batch;

/* One forward of b (no dropout). cache: the prefix (NULL when every ctx is 0). store: when not
 * NULL, b must be one row with ctx 0, and its keys/values of every layer are written into store
 * (store->len = len[0]): the prefill. head: logits for its ids only (NULL: the full vocabulary).
 * out [B, head ? head->n : V] host: the logits at each row's last real position. */
int qa_model_infer(qa_model *m, const qa_lora *lora, qa_infer_ws *w, const qa_kv_cache *cache,
                   const qa_infer_batch *b, qa_kv_cache *store, const qa_head_rows *head, float *out,
                   qa_err *e);

/* ---- forward + backward ----------------------------------------------------------------- */
typedef struct qa_train_opts {
    float grad_scale;                         /* grads += grad_scale * d(mean loss)/dθ (0 -> 1) */
    uint64_t dropout_key;                     /* LoRA dropout stream for this call (vary per step) */
    int want_embed_grad;                      /* fill a->d_embeds */
    /* Loss groups (several micro-batches computed as one batch): 0 = one group, the whole batch. Group g
     * holds the labelled positions p = b*T + t (p predicts labels[p+1]) with group_end[g-1] <= p <
     * group_end[g] (group_end[-1] = 0, ascending, the last = B*T); each group's loss is the mean over its
     * own positions, and grads += grad_scale * sum_g d(mean loss of g)/dθ — the gradient the groups give
     * as separate calls, summed. */
    int n_groups;
    const int64_t *group_end;                 /* [n_groups] host */
    double *group_loss_sum;                   /* [n_groups] host, out: sum of CE per group (or NULL) */
    int64_t *group_tokens;                    /* [n_groups] host, out: labelled positions per group (or NULL) */
} qa_train_opts;

typedef struct qa_loss {
    double loss;                              /* mean CE over labelled positions (0 if none) */
    double loss_sum;                          /* sum of CE */
    int64_t n_tokens;                         /* labelled positions (HF shift) */
} qa_loss;

/* Needs a workspace allocated with QA_ACTS_TRAIN. Accumulates LoRA grads into lora->grads
 * (lora may be NULL: then only the loss and, if asked, d_embeds). Hidden states of this
 * forward are left in a->hidden (with dropout applied if any). */
int qa_model_forward_backward(qa_model *m, qa_lora *lora, qa_acts *a, const qa_batch *b,
                              const qa_train_opts *opts, qa_loss *out, qa_err *e);
/* The loss alone: the forward of qa_model_forward_backward (no dropout) and the same cross-entropy sums,
 * no backward, no gradients touched. Needs a QA_ACTS_TRAIN workspace (its logits buffer in chunks). out
 * equals what qa_model_forward_backward reports for the same batch without dropout, bit for bit. */
int qa_model_loss(qa_model *m, const qa_lora *lora, qa_acts *a, const qa_batch *b, qa_loss *out, qa_err *e);
/* ---- memory ----------------------------------------------------------------------------- */
/* What a run holds in backend memory, each figure from the code that allocates it: the weight views
 * qa_model_load makes on that backend, qa_lora_init's block, and the workspace carves run dry
 * (qa_acts_bytes, qa_infer_ws_bytes, qa_kv_cache_bytes). Host-side bookkeeping (a few ints per token)
 * and the trainer's gradient tree / communication buffers are not counted. */
typedef struct qa_mem_shape {
    int train;                                /* 1: LoRA training (qa_acts QA_ACTS_TRAIN); 0: evaluation
                                                 (qa_infer_ws + the prefix KV cache) */
    int B, T;                                 /* rows x tokens per row of a (micro-)batch */
    int max_logit_rows;                       /* train: rows of the logits buffer (0 = B*T) */
    int max_out;                              /* eval: head outputs per row (0 = vocab) */
    int kv_cap;                               /* eval: positions of the prefix KV cache (0: none) */
    unsigned lora_modules;                    /* adapter targets, QA_LORA_BIT(mod) (0: no adapter) */
    int lora_r;
    int quant;                                /* qa_quant of the projections (QA_QUANT_NONE: as stored) */
} qa_mem_shape;

typedef struct qa_mem_estimate {              /* bytes */
    size_t weights;                           /* frozen weights as the backend holds them; without st: from
                                                 config.json at 2 bytes a parameter (BF16/F16 as stored), the
                                                 projections at qa_model_proj_nf4_bytes when quantized */
    int weights_from_config;                  /* 1: no checkpoint header was given (st NULL) */
    size_t weights_mapped;                    /* of which views into the safetensors mmap (host backend) */
    size_t lora;                              /* LoRA params + grads + the norm's reduction slot */
    size_t optimizer;                         /* AdamW m and v */
    size_t activations;                       /* train: the qa_acts block; eval: the qa_infer_ws block */
    size_t kv_cache;                          /* eval: the prefix cache */
    size_t total;
} qa_mem_estimate;

/* The memory estimate every caller uses (qalign info, train --dry-run, sweep planning): model config c,
 * its checkpoint st (open, header only: dtypes and alignment of the views; NULL: a model planned from its
 * config.json alone, weights_from_config), on backend ops (NULL: CPU), for shape s. 0, or -1 + error for an
 * unsupported shape. */
int qa_model_memory_estimate(const qa_hf_config *c, const qa_safetensors *st, const qa_ops *ops,
                             const qa_mem_shape *s, qa_mem_estimate *out, qa_err *e);

/* ---- merge ------------------------------------------------------------------------------ */
/* Write a merged model directory out_dir (merge.c): every tensor of m's checkpoint (model_dir) with
 * W' = W + (alpha/r)·B·A on the projections l targets (B·A in f64, the sum in f32). out_dtype
 * QA_DT_INVALID: each projection keeps its dtype, everything else byte for byte, config.json copied;
 * otherwise every floating tensor is written as out_dtype and config.json's torch_dtype (and dtype)
 * set to match. An NF4 base (m->quant != QA_QUANT_NONE) is merged into its dequantized projections,
 * written BF16 (or out_dtype); the 4-bit companion tensors and config.json's quantization_config go.
 * Plus generation_config.json and the tokenizer files (tokenizer.json, tokenizer_config.json,
 * special_tokens_map.json) where model_dir has them. CPU backend only (m loaded with ops NULL). */
int qa_model_merge_lora(const qa_model *m, const qa_lora *l, const char *model_dir, const char *out_dir,
                        qa_dtype out_dtype, qa_err *e);
#endif
