/* model.c — checkpoint loading (weight views into the mmap, NF4 projections) and the memory estimate. */
#include "model/model.h"
#include "common/qa_mem.h"
#include "io/bnb4.h"
#include "kernels/nf4.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

/* ---- loading ------------------------------------------------------------------------- */
typedef struct wreq {
    qa_weight *dst;
    const qa_st_tensor *t;  /* the float tensor (NULL for a 4-bit checkpoint's weight) */
    qa_dtype use;           /* dtype of the view */
    int convert;            /* 1: converted into the owned block */
    size_t off;             /* byte offset in the owned / uploaded block */
    int nf4;                /* 0; 1: quantized here from t; 2: read from the checkpoint's 4-bit form (bnb) */
    int64_t numel;
    qa_bnb4_tensor bnb;
    char name[96];
} wreq;

/* a projection weight: quantized at load when quant asks for it, read as NF4 when the checkpoint holds it so */
static int want_proj(qa_model *m, wreq *r, size_t *n, qa_weight *dst, const char *name, int64_t d0, int64_t d1,
                     qa_quant quant, qa_err *e) {
    int64_t shape[2] = {d0, d1};
    wreq *q = &r[*n];
    memset(q, 0, sizeof *q);
    snprintf(q->name, sizeof q->name, "%s", name);
    q->numel = d0 * d1;
    if (qa_bnb4_is_quantized(&m->st, name)) {
        QA_TRY(qa_bnb4_get(&m->st, name, 2, shape, &q->bnb, e));
        q->nf4 = 2;
    } else {
        QA_TRY(qa_st_get(&m->st, name, 2, shape, &q->t, e));
        if (quant == QA_QUANT_NONE) { q->t = NULL; return 0; } /* not taken: the caller asks want() */
        if (q->t->dtype != QA_DT_BF16 && q->t->dtype != QA_DT_F32 && q->t->dtype != QA_DT_F16 &&
            q->t->dtype != QA_DT_F64)
            return QA_ERR(e, "tensor %s has dtype %s; NF4 quantizes BF16/F32/F16/F64 weights only", name,
                          q->t->dtype_name);
        if (q->numel % QA_NF4_BLOCK)
            return QA_ERR(e, "tensor %s [%lld, %lld] has %lld elements, not a multiple of the %d-element NF4 block; "
                          "load this model without --quant %s", name, (long long)d0, (long long)d1, (long long)q->numel,
                          QA_NF4_BLOCK, qa_quant_name(quant));
        q->nf4 = 1;
    }
    q->dst = dst;
    (*n)++;
    return 0;
}

static int want(qa_model *m, wreq *r, size_t *n, qa_weight *dst, const char *name, int ndim, int64_t d0, int64_t d1,
                int check_finite, qa_err *e) {
    int64_t shape[2] = {d0, d1};
    const qa_st_tensor *t;
    if (qa_bnb4_is_quantized(&m->st, name))
        return QA_ERR(e, "%s: tensor %s is stored 4-bit quantized; qalign reads quantized q/k/v/o/gate/up/down "
                      "projections only (embeddings, norms and lm_head stay float, as bitsandbytes keeps them)",
                      qa_st_file_of(&m->st, NULL), name);
    QA_TRY(qa_st_get(&m->st, name, ndim, shape, &t, e));
    if (check_finite) QA_TRY(qa_st_check_finite(&m->st, t, e));
    if (t->dtype != QA_DT_BF16 && t->dtype != QA_DT_F32 && t->dtype != QA_DT_F16 && t->dtype != QA_DT_F64)
        return QA_ERR(e, "tensor %s has dtype %s; qalign computes with BF16/F32/F16/F64 weights only", name,
                      t->dtype_name);
    memset(&r[*n], 0, sizeof r[*n]);
    r[*n].dst = dst;
    r[*n].t = t;
    r[*n].numel = t->numel;
    (*n)++;
    return 0;
}

int64_t qa_model_proj_params(const qa_hf_config *c) {
    int64_t p = 0;
    for (int mod = 0; mod < QA_LORA_N_MODULES; mod++) {
        int in, out;
        qa_lora_module_dims(c, mod, &in, &out);
        p += (int64_t)in * out;
    }
    return p * c->n_layers;
}
double qa_model_proj_nf4_bytes(const qa_hf_config *c) {
    double b = 0;
    for (int mod = 0; mod < QA_LORA_N_MODULES; mod++) {
        int in, out;
        qa_lora_module_dims(c, mod, &in, &out);
        b += (double)qa_nf4_bytes((size_t)in * (size_t)out);
    }
    return b * c->n_layers;
}

int qa_quant_parse(const char *s, qa_quant *q, qa_err *e) {
    if (!s || !*s || !strcmp(s, "none")) *q = QA_QUANT_NONE;
    else if (!strcmp(s, "nf4")) *q = QA_QUANT_NF4;
    else if (!strcmp(s, "nf4-dq")) *q = QA_QUANT_NF4_DQ;
    else return QA_ERR(e, "quantization '%s' is not known (use none, nf4 or nf4-dq)", s);
    return 0;
}
const char *qa_quant_name(qa_quant q) {
    return q == QA_QUANT_NF4 ? "nf4" : q == QA_QUANT_NF4_DQ ? "nf4-dq" : "none";
}

/* the source pages of a tensor leave this process's resident set once quantized (they stay in the page cache) */
static void drop_pages(const void *p, size_t bytes) {
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + pg - 1) / pg * pg, b = ((uintptr_t)p + bytes) / pg * pg;
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Fill one NF4 block (codes, then fp32 absmax) at dst for request r. */
static int fill_nf4(const qa_safetensors *st, const wreq *r, qa_quant quant, uint8_t *dst, qa_err *e) {
    const size_t n = (size_t)r->numel, nb = n / QA_NF4_BLOCK;
    float *am = (float *)(dst + n / 2);
    if (r->nf4 == 1) {
        const qa_st_tensor *t = r->t;
        const size_t es = qa_dtype_size(t->dtype);
        const int direct = (t->dtype == QA_DT_BF16 || t->dtype == QA_DT_F32) && (uintptr_t)t->data % es == 0;
        enum { CH = 64 * 1024 };
        float *tmp = direct ? NULL : qa_malloc(sizeof(float) * CH);
        for (size_t i = 0; i < n; i += CH) {
            const size_t k = n - i < CH ? n - i : CH;
            const uint8_t *src = (const uint8_t *)t->data + i * es;
            if (direct) {
                qa_nf4_quantize(src, t->dtype, k, dst + i / 2, am + i / QA_NF4_BLOCK);
            } else {
                qa_convert_to_f32(tmp, src, t->dtype, k);
                qa_nf4_quantize(tmp, QA_DT_F32, k, dst + i / 2, am + i / QA_NF4_BLOCK);
            }
        }
        free(tmp);
        if (quant == QA_QUANT_NF4_DQ) {
            uint8_t *q2 = qa_malloc(nb);
            float *a2 = qa_malloc(sizeof(float) * ((nb + QA_NF4_DQ_BLOCK - 1) / QA_NF4_DQ_BLOCK));
            const float off = qa_nf4_dq_offset(am, nb);
            qa_nf4_dq_quantize(am, nb, off, q2, a2);
            qa_nf4_dq_decode(q2, a2, qa_nf4_dq_code, off, nb, am);
            free(q2);
            free(a2);
        }
        return 0;
    }
    const qa_bnb4_tensor *b = &r->bnb;
    float map[16];
    qa_bnb4_copy_f32(b->quant_map, map);
    if (memcmp(map, qa_nf4_code, sizeof map))
        return QA_ERR(e, "%s: tensor %s.quant_map is not bitsandbytes' NF4 table", qa_st_file_of(st, b->quant_map),
                      r->name);
    memcpy(dst, b->codes, n / 2);
    if (!b->nested) {
        qa_bnb4_copy_f32(b->absmax, am);
        return 0;
    }
    float *code2 = qa_malloc(sizeof(float) * 256), *a2 = qa_malloc(sizeof(float) * (size_t)b->nested_absmax->numel);
    qa_bnb4_copy_f32(b->nested_quant_map, code2);
    qa_bnb4_copy_f32(b->nested_absmax, a2);
    qa_nf4_dq_decode(b->absmax->data, a2, code2, b->nested_offset, nb, am);
    free(code2);
    free(a2);
    return 0;
}

void qa_model_to_host(const qa_model *m, float *host_dst, const float *dev_src, size_t n) {
    m->ops->memcpy_d2h(m->stream, host_dst, dev_src, n * sizeof(float));
}

/* The tensors of m->cfg that the model reads, each with the view it fills (m->embed, m->layers[i].wq, ...);
 * the projections as NF4 where quant asks for it or the checkpoint holds them 4-bit. m->st open, m->layers
 * allocated. check_finite: every float tensor read once for NaN/Inf (a load; not a memory estimate).
 * *out: heap array of *n requests. */
static int weight_requests(qa_model *m, qa_quant quant, int check_finite, wreq **out, size_t *n_out, qa_err *e) {
    const qa_hf_config *c = &m->cfg;
    const int D = c->hidden, F = c->intermediate, V = c->vocab, Q = c->n_heads * c->head_dim,
              KV = c->n_kv_heads * c->head_dim;
    size_t cap = 4 + (size_t)c->n_layers * 16, n = 0;
    wreq *req = qa_calloc(cap, sizeof *req);
    char nm[256];
#define WANT(dst, name, nd, a, b) do { if (want(m, req, &n, dst, name, nd, a, b, check_finite, e)) goto fail; } while (0)
#define WANTP(dst, name, a, b) do { size_t n0 = n; if (want_proj(m, req, &n, dst, name, a, b, quant, e)) goto fail; \
                                    if (n == n0) WANT(dst, name, 2, a, b); } while (0)
    WANT(&m->embed, "model.embed_tokens.weight", 2, V, D);
    WANT(&m->final_norm, "model.norm.weight", 1, D, 0);
    if (!c->tie_embeddings) WANT(&m->lm_head, "lm_head.weight", 2, V, D);
    for (int i = 0; i < c->n_layers; i++) {
        qa_layer_weights *L = &m->layers[i];
#define LW(dst, suffix, nd, a, b) do { snprintf(nm, sizeof nm, "model.layers.%d.%s", i, suffix); \
                                       WANT(dst, nm, nd, a, b); } while (0)
#define LP(dst, suffix, a, b) do { snprintf(nm, sizeof nm, "model.layers.%d.%s", i, suffix); \
                                   WANTP(dst, nm, a, b); } while (0)
        LW(&L->attn_norm, "input_layernorm.weight", 1, D, 0);
        LW(&L->mlp_norm, "post_attention_layernorm.weight", 1, D, 0);
        LP(&L->wq, "self_attn.q_proj.weight", Q, D);
        LP(&L->wk, "self_attn.k_proj.weight", KV, D);
        LP(&L->wv, "self_attn.v_proj.weight", KV, D);
        LP(&L->wo, "self_attn.o_proj.weight", D, Q);
        LP(&L->wgate, "mlp.gate_proj.weight", F, D);
        LP(&L->wup, "mlp.up_proj.weight", F, D);
        LP(&L->wdown, "mlp.down_proj.weight", D, F);
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
#undef LP
    }
#undef WANT
#undef WANTP
    *out = req;
    *n_out = n;
    return 0;
fail:
    free(req);
    return -1;
}

/* How the backend holds each tensor. NF4 projections: always in the owned block (codes + fp32 absmax).
 * Views: BF16/F32 with natural alignment stay in the mmap (host memory backend); F16/F64/misaligned are
 * converted once to F32 into the owned block. A device backend uploads everything once into the owned
 * block. Returns the owned block's bytes; *mapped (may be NULL) gets the bytes of the views left in the
 * mmap, *nf4 (may be NULL) the bytes of the NF4 projections. */
static size_t weight_plan(wreq *req, size_t n, int host, size_t *mapped, size_t *nf4) {
    size_t owned = 0, map = 0, q4 = 0;
    for (size_t i = 0; i < n; i++) {
        wreq *r = &req[i];
        const qa_st_tensor *t = r->t;
        if (r->nf4) {
            r->use = QA_DT_NF4;
            owned = (owned + 63) / 64 * 64;
            r->off = owned;
            owned += qa_nf4_bytes((size_t)r->numel);
            q4 += qa_nf4_bytes((size_t)r->numel);
            continue;
        }
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
    if (nf4) *nf4 = q4;
    return owned;
}

static int check_shape(const qa_hf_config *c, const char *what, qa_err *e) {
    if (c->n_layers <= 0 || c->n_layers > QA_MAX_LAYERS || c->head_dim % 2 || c->n_kv_heads <= 0 ||
        c->n_heads % c->n_kv_heads || (int64_t)c->n_heads * c->head_dim > INT32_MAX)
        return QA_ERR(e, "%s: unsupported shape (layers %d, heads %d, kv heads %d, head_dim %d)", what, c->n_layers,
                      c->n_heads, c->n_kv_heads, c->head_dim);
    return 0;
}

int qa_model_load(qa_model *m, const char *dir, const qa_ops *ops, qa_err *e) {
    return qa_model_load_ex(m, dir, ops, NULL, QA_QUANT_NONE, e);
}
int qa_model_load_opts(qa_model *m, const char *dir, const qa_ops *ops, const qa_stream_opts *so, qa_err *e) {
    return qa_model_load_ex(m, dir, ops, so, QA_QUANT_NONE, e);
}
int qa_model_load_quant(qa_model *m, const char *dir, const qa_ops *ops, qa_quant quant, qa_err *e) {
    return qa_model_load_ex(m, dir, ops, NULL, quant, e);
}

int qa_model_load_ex(qa_model *m, const char *dir, const qa_ops *ops, const qa_stream_opts *so, qa_quant quant,
                     qa_err *e) {
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
    if (weight_requests(m, quant, 1, &req, &n, e)) goto fail;
    const int host = m->ops->host_memory;
    size_t owned = weight_plan(req, n, host, NULL, &m->nf4_bytes);
    for (size_t i = 0; i < n; i++) {
        const wreq *r = &req[i];
        if (r->nf4 == 2 && m->quant == QA_QUANT_NONE) m->quant = r->bnb.nested ? QA_QUANT_NF4_DQ : QA_QUANT_NF4;
        if (r->nf4 == 1) m->quant = quant;
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
        if (r->nf4) {
            uint8_t *dst = (uint8_t *)m->owned + r->off;
            const size_t bytes = qa_nf4_bytes((size_t)r->numel);
            uint8_t *blk = host ? dst : qa_aligned_alloc(64, bytes);
            int frc = fill_nf4(&m->st, r, quant, blk, e);
            if (!frc && !host) {
                m->ops->memcpy_h2d(m->stream, dst, blk, bytes);
                m->ops->sync(m->stream, NULL);
            }
            if (!host) free(blk);
            if (frc) goto fail_req;
            if (r->nf4 == 1) drop_pages(t->data, t->nbytes);
            r->dst->data = dst;
            continue;
        }
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
        int rc = weight_requests(&m, (qa_quant)s->quant, 0, &req, &n, e);
        free(m.layers);
        if (rc) return -1;
        out->weights = weight_plan(req, n, o->host_memory, &mapped, NULL) + mapped;
        out->weights_mapped = mapped;
        free(req);
    } else {
        const int64_t params = qa_hf_config_param_count(c);
        out->weights_from_config = 1;
        out->weights = s->quant != QA_QUANT_NONE
                           ? (size_t)(params - qa_model_proj_params(c)) * 2 + (size_t)qa_model_proj_nf4_bytes(c)
                           : (size_t)params * 2;
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
