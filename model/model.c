/* model.c — checkpoint loading (weight views into the mmap). */
#include "model/model.h"
#include "common/qa_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- loading ------------------------------------------------------------------------- */
typedef struct wreq {
    qa_weight *dst;
    const qa_st_tensor *t;
    qa_dtype use;           /* dtype of the view */
    int convert;            /* 1: converted into the owned block */
    size_t off;             /* byte offset in the owned / uploaded block */
} wreq;

static int want(qa_model *m, wreq *r, size_t *n, qa_weight *dst, const char *name, int ndim, int64_t d0, int64_t d1,
                qa_err *e) {
    int64_t shape[2] = {d0, d1};
    const qa_st_tensor *t;
    QA_TRY(qa_st_get(&m->st, name, ndim, shape, &t, e));
    if (t->dtype != QA_DT_BF16 && t->dtype != QA_DT_F32 && t->dtype != QA_DT_F16 && t->dtype != QA_DT_F64)
        return QA_ERR(e, "tensor %s has dtype %s; qalign computes with BF16/F32/F16/F64 weights only", name,
                      t->dtype_name);
    r[*n].dst = dst;
    r[*n].t = t;
    (*n)++;
    return 0;
}

void qa_model_to_host(const qa_model *m, float *host_dst, const float *dev_src, size_t n) {
    m->ops->memcpy_d2h(m->stream, host_dst, dev_src, n * sizeof(float));
}

/* The tensors of m->cfg that the model reads, each with the view it fills (m->embed, m->layers[i].wq, ...);
 * m->st open, m->layers allocated. *out: heap array of *n requests. */
static int weight_requests(qa_model *m, wreq **out, size_t *n_out, qa_err *e) {
    const qa_hf_config *c = &m->cfg;
    const int D = c->hidden, F = c->intermediate, V = c->vocab, Q = c->n_heads * c->head_dim,
              KV = c->n_kv_heads * c->head_dim;
    size_t cap = 4 + (size_t)c->n_layers * 16, n = 0;
    wreq *req = qa_calloc(cap, sizeof *req);
    char nm[256];
#define WANT(dst, name, nd, a, b) do { if (want(m, req, &n, dst, name, nd, a, b, e)) goto fail; } while (0)
    WANT(&m->embed, "model.embed_tokens.weight", 2, V, D);
    WANT(&m->final_norm, "model.norm.weight", 1, D, 0);
    if (!c->tie_embeddings) WANT(&m->lm_head, "lm_head.weight", 2, V, D);
    for (int i = 0; i < c->n_layers; i++) {
        qa_layer_weights *L = &m->layers[i];
#define LW(dst, suffix, nd, a, b) do { snprintf(nm, sizeof nm, "model.layers.%d.%s", i, suffix); \
                                       WANT(dst, nm, nd, a, b); } while (0)
        LW(&L->attn_norm, "input_layernorm.weight", 1, D, 0);
        LW(&L->mlp_norm, "post_attention_layernorm.weight", 1, D, 0);
        LW(&L->wq, "self_attn.q_proj.weight", 2, Q, D);
        LW(&L->wk, "self_attn.k_proj.weight", 2, KV, D);
        LW(&L->wv, "self_attn.v_proj.weight", 2, KV, D);
        LW(&L->wo, "self_attn.o_proj.weight", 2, D, Q);
        LW(&L->wgate, "mlp.gate_proj.weight", 2, F, D);
        LW(&L->wup, "mlp.up_proj.weight", 2, F, D);
        LW(&L->wdown, "mlp.down_proj.weight", 2, D, F);
        if (c->qkv_bias) {
            LW(&L->bq, "self_attn.q_proj.bias", 1, Q, 0);
            LW(&L->bk, "self_attn.k_proj.bias", 1, KV, 0);
            LW(&L->bv, "self_attn.v_proj.bias", 1, KV, 0);
        }
        if (c->o_bias) LW(&L->bo, "self_attn.o_proj.bias", 1, D, 0);
        if (c->mlp_bias) {
            LW(&L->bgate, "mlp.gate_proj.bias", 1, F, 0);
            LW(&L->bup, "mlp.up_proj.bias", 1, F, 0);
            LW(&L->bdown, "mlp.down_proj.bias", 1, D, 0);
        }
#undef LW
    }
#undef WANT
    *out = req;
    *n_out = n;
    return 0;
fail:
    free(req);
    return -1;
}

/* How the backend holds each tensor. Views: BF16/F32 with natural alignment stay in the mmap (host
 * memory backend); F16/F64/misaligned are converted once to F32 into the owned block. A device backend
 * uploads everything once into the owned block. Returns the owned block's bytes; *mapped (may be NULL)
 * gets the bytes of the views left in the mmap. */
static size_t weight_plan(wreq *req, size_t n, int host, size_t *mapped) {
    size_t owned = 0, map = 0;
    for (size_t i = 0; i < n; i++) {
        wreq *r = &req[i];
        const qa_st_tensor *t = r->t;
        size_t al = t->dtype == QA_DT_BF16 ? 2 : 4;
        int aligned = ((uintptr_t)t->data % al) == 0;
        r->use = (t->dtype == QA_DT_BF16 && aligned) ? QA_DT_BF16 : QA_DT_F32;
        r->convert = !(aligned && (t->dtype == QA_DT_BF16 || t->dtype == QA_DT_F32));
        if (!host || r->convert) {
            owned = (owned + 63) / 64 * 64;
            r->off = owned;
            owned += (size_t)t->numel * qa_dtype_size(r->use);
        } else {
            map += t->nbytes;
        }
    }
    if (mapped) *mapped = map;
    return owned;
}

static int check_shape(const qa_hf_config *c, const char *what, qa_err *e) {
    if (c->n_layers <= 0 || c->n_layers > QA_MAX_LAYERS || c->head_dim % 2 || c->n_kv_heads <= 0 ||
        c->n_heads % c->n_kv_heads)
        return QA_ERR(e, "%s: unsupported shape (layers %d, heads %d, kv heads %d, head_dim %d)", what, c->n_layers,
                      c->n_heads, c->n_kv_heads, c->head_dim);
    return 0;
}

int qa_model_load(qa_model *m, const char *dir, const qa_ops *ops, qa_err *e) {
    return qa_model_load_opts(m, dir, ops, NULL, e);
}

int qa_model_load_opts(qa_model *m, const char *dir, const qa_ops *ops, const qa_stream_opts *so, qa_err *e) {
    memset(m, 0, sizeof *m);
    m->ops = ops ? ops : qa_ops_cpu();
    char *cfgpath = qa_path_join(dir, "config.json");
    int rc = qa_hf_config_load(&m->cfg, cfgpath, e);
    if (!rc) rc = check_shape(&m->cfg, cfgpath, e);
    free(cfgpath);
    if (rc) return -1;
    const qa_hf_config *c = &m->cfg;
    if (qa_st_open_dir(&m->st, dir, e)) return -1;
    if (m->ops->stream_create(&m->stream, so, e)) goto fail;

    m->layers = qa_calloc((size_t)c->n_layers, sizeof *m->layers);
    size_t n = 0;
    wreq *req = NULL;
    if (weight_requests(m, &req, &n, e)) goto fail;
    const int host = m->ops->host_memory;
    size_t owned = weight_plan(req, n, host, NULL);
    if (owned) {
        m->owned_bytes = owned;
        m->owned = host ? qa_aligned_alloc(64, owned) : m->ops->alloc(owned, e);
        if (!m->owned) goto fail_req;
    }
    for (size_t i = 0; i < n; i++) {
        wreq *r = &req[i];
        const qa_st_tensor *t = r->t;
        r->dst->dtype = r->use;
        if (host && !r->convert) { r->dst->data = t->data; continue; }
        uint8_t *dst = (uint8_t *)m->owned + r->off;
        if (host) {
            qa_convert_to_f32((float *)dst, t->data, t->dtype, (size_t)t->numel);
        } else if (!r->convert) {
            m->ops->memcpy_h2d(m->stream, dst, t->data, t->nbytes);
        } else {
            float *tmp = qa_malloc((size_t)t->numel * sizeof(float));
            qa_convert_to_f32(tmp, t->data, t->dtype, (size_t)t->numel);
            m->ops->memcpy_h2d(m->stream, dst, tmp, (size_t)t->numel * sizeof(float));
            m->ops->sync(m->stream, NULL);
            free(tmp);
        }
        r->dst->data = dst;
    }
    if (c->tie_embeddings) m->lm_head = m->embed;
    free(req);
    if (m->ops->sync(m->stream, e)) goto fail;
    return 0;
fail_req:
    free(req);
fail:
    qa_err_prefix(e, "loading model %s", dir);
    qa_model_free(m);
    return -1;
}

void qa_model_free(qa_model *m) {
    if (!m) return;
    if (m->owned) {
        if (m->ops && !m->ops->host_memory) m->ops->free(m->owned);
        else free(m->owned);
    }
    if (m->stream && m->ops) m->ops->stream_destroy(m->stream);
    free(m->layers);
    qa_st_close(&m->st);
    memset(m, 0, sizeof *m);
}

/* ---- memory ------------------------------------------------------------------------------ */
int qa_model_memory_estimate(const qa_hf_config *c, const qa_safetensors *st, const qa_ops *ops,
                             const qa_mem_shape *s, qa_mem_estimate *out, qa_err *e) {
    memset(out, 0, sizeof *out);
    const qa_ops *o = ops ? ops : qa_ops_cpu();
    QA_TRY(check_shape(c, "memory estimate", e));
    if (s->B <= 0 || s->T <= 0 || (int64_t)s->B * s->T > (1 << 30))
        return QA_ERR(e, "memory estimate: batch [%d, %d] must be positive and at most 2^30 tokens", s->B, s->T);
    const int r = s->lora_modules ? s->lora_r : 0;
    if (r < 0 || (s->lora_modules & ~QA_LORA_MASK_ALL))
        return QA_ERR(e, "memory estimate: LoRA r=%d modules 0x%x", s->lora_r, s->lora_modules);
    if (st) { /* the views qa_model_load would make, on this backend */
        qa_model m;
        memset(&m, 0, sizeof m);
        m.cfg = *c;
        m.st = *st;                              /* read only: the caller's open checkpoint */
        m.layers = qa_calloc((size_t)c->n_layers, sizeof *m.layers);
        wreq *req = NULL;
        size_t n = 0, mapped = 0;
        int rc = weight_requests(&m, &req, &n, e);
        free(m.layers);
        if (rc) return -1;
        out->weights = weight_plan(req, n, o->host_memory, &mapped) + mapped;
        out->weights_mapped = mapped;
        free(req);
    }
    if (r > 0) {
        out->optimizer = 2 * qa_lora_n_params(c, s->lora_modules, r) * sizeof(float);
        out->lora = qa_lora_bytes(c, s->lora_modules, r) - out->optimizer;
    }
    if (s->train) {
        out->activations = qa_acts_bytes(c, s->lora_modules, r, s->B, s->T, QA_ACTS_TRAIN, s->max_logit_rows);
    } else {
        out->activations = qa_infer_ws_bytes(c, r, s->B, s->B * s->T, s->max_out > 0 ? s->max_out : c->vocab);
        if (s->kv_cap > 0) out->kv_cache = qa_kv_cache_bytes(c, s->kv_cap);
    }
    out->total = out->weights + out->lora + out->optimizer + out->activations + out->kv_cache;
    return 0;
}
