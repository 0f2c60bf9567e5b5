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

int qa_model_load(qa_model *m, const char *dir, const qa_ops *ops, qa_err *e) {
    memset(m, 0, sizeof *m);
    m->ops = ops ? ops : qa_ops_cpu();
    char *cfgpath = qa_path_join(dir, "config.json");
    int rc = qa_hf_config_load(&m->cfg, cfgpath, e);
    free(cfgpath);
    if (rc) return -1;
    const qa_hf_config *c = &m->cfg;
    if (c->n_layers <= 0 || c->n_layers > QA_MAX_LAYERS || c->head_dim % 2 || c->n_kv_heads <= 0 ||
        c->n_heads % c->n_kv_heads)
        return QA_ERR(e, "%s/config.json: unsupported shape (layers %d, heads %d, kv heads %d, head_dim %d)", dir,
                      c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim);
    if (qa_st_open_dir(&m->st, dir, e)) return -1;
    if (m->ops->stream_create(&m->stream, e)) goto fail;

    const int D = c->hidden, F = c->intermediate, V = c->vocab, Q = c->n_heads * c->head_dim,
              KV = c->n_kv_heads * c->head_dim;
    m->layers = qa_calloc((size_t)c->n_layers, sizeof *m->layers);
    size_t cap = 4 + (size_t)c->n_layers * 16, n = 0;
    wreq *req = qa_calloc(cap, sizeof *req);
    char nm[256];
#define WANT(dst, name, nd, a, b) do { if (want(m, req, &n, dst, name, nd, a, b, e)) goto fail_req; } while (0)
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
    /* Views: BF16/F32 with natural alignment stay in the mmap (CPU); F16/F64/misaligned are
     * converted once to F32 into the owned block. A device backend uploads everything once. */
    const int host = m->ops->host_memory;
    size_t owned = 0;
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
        }
    }
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
