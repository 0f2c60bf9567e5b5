/* model.c — checkpoint loading (weight views into the mmap) and the activations workspace. */
#include "model/model.h"
#include "model/model_internal.h"
#include "common/qa_mem.h"
#include "io/bnb4.h"
#include "kernels/nf4.h"

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
                qa_err *e) {
    int64_t shape[2] = {d0, d1};
    const qa_st_tensor *t;
    if (qa_bnb4_is_quantized(&m->st, name))
        return QA_ERR(e, "%s: tensor %s is stored 4-bit quantized; qalign reads quantized q/k/v/o/gate/up/down "
                      "projections only (embeddings, norms and lm_head stay float, as bitsandbytes keeps them)",
                      qa_st_file_of(&m->st, NULL), name);
    QA_TRY(qa_st_get(&m->st, name, ndim, shape, &t, e));
    QA_TRY(qa_st_check_finite(&m->st, t, e));
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

int qa_model_load(qa_model *m, const char *dir, const qa_ops *ops, qa_err *e) {
    return qa_model_load_quant(m, dir, ops, QA_QUANT_NONE, e);
}

int qa_model_load_quant(qa_model *m, const char *dir, const qa_ops *ops, qa_quant quant, qa_err *e) {
    memset(m, 0, sizeof *m);
    m->ops = ops ? ops : qa_ops_cpu();
    char *cfgpath = qa_path_join(dir, "config.json");
    int rc = qa_hf_config_load(&m->cfg, cfgpath, e);
    free(cfgpath);
    if (rc) return -1;
    const qa_hf_config *c = &m->cfg;
    if (c->n_layers <= 0 || c->n_layers > QA_MAX_LAYERS || c->head_dim % 2 || c->n_kv_heads <= 0 ||
        c->n_heads % c->n_kv_heads || (int64_t)c->n_heads * c->head_dim > INT32_MAX)
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
#define WANTP(dst, name, a, b) do { size_t n0 = n; if (want_proj(m, req, &n, dst, name, a, b, quant, e)) goto fail_req; \
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
    /* Views: BF16/F32 with natural alignment stay in the mmap (CPU); F16/F64/misaligned are
     * converted once to F32 into the owned block. A device backend uploads everything once. */
    const int host = m->ops->host_memory;
    size_t owned = 0;
    for (size_t i = 0; i < n; i++) {
        wreq *r = &req[i];
        const qa_st_tensor *t = r->t;
        if (r->nf4) { /* NF4: always in the owned block */
            r->use = QA_DT_NF4;
            owned = (owned + 63) / 64 * 64;
            r->off = owned;
            owned += qa_nf4_bytes((size_t)r->numel);
            m->nf4_bytes += qa_nf4_bytes((size_t)r->numel);
            if (r->nf4 == 2 && m->quant == QA_QUANT_NONE) m->quant = r->bnb.nested ? QA_QUANT_NF4_DQ : QA_QUANT_NF4;
            if (r->nf4 == 1) m->quant = quant;
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

/* ---- workspace ----------------------------------------------------------------------- */
static void layout(qa_acts *a, const qa_model *m, qa_carve *cv) {
    const qa_hf_config *c = &m->cfg;
    qa_acts_int *in = a->in;
    const size_t N = (size_t)a->N, D = c->hidden, F = c->intermediate, V = c->vocab;
    const size_t Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    const size_t R = (size_t)a->max_logit_rows;
    const int L = c->n_layers;
    in->ids = TAKEI(cv, N);
    in->pos = TAKEI(cv, N);
    in->mask = TAKEI(cv, N);
    in->seg = TAKEI(cv, N);
    in->rows = TAKEI(cv, R);
    in->targets = TAKEI(cv, R);
    in->row_loss = TAKEF(cv, R);
    in->row_lse = TAKEF(cv, R);
    for (int l = 0; l <= L; l++) a->hidden[l] = TAKEF(cv, N * D);
    in->xL = TAKEF(cv, N * D);
    in->rstd_f = TAKEF(cv, N);
    a->logits = TAKEF(cv, R * V);
    in->rowbuf = TAKEF(cv, R * D);
    in->xn = TAKEF(cv, N * D);
    in->act = TAKEF(cv, N * F);
    int nsets = a->mode == QA_ACTS_TRAIN ? L : 1;
    for (int l = 0; l < nsets; l++) {
        qa_layer_acts *s = &in->layer[l];
        s->rstd1 = TAKEF(cv, N);
        s->rstd2 = TAKEF(cv, N);
        s->q = TAKEF(cv, N * Q);
        s->k = TAKEF(cv, N * KV);
        s->v = TAKEF(cv, N * KV);
        s->att = TAKEF(cv, N * Q);
        s->lse = TAKEF(cv, N * c->n_heads);
        s->h = TAKEF(cv, N * D);
        s->g = TAKEF(cv, N * F);
        s->u = TAKEF(cv, N * F);
        for (int mod = 0; mod < QA_LORA_N_MODULES; mod++)
            s->xa[mod] = (in->lora_modules & QA_LORA_BIT(mod)) ? TAKEF(cv, N * in->lora_r) : NULL;
    }
    if (a->mode == QA_ACTS_TRAIN) {
        in->dx = TAKEF(cv, N * D);
        in->dh = TAKEF(cv, N * D);
        in->dxn = TAKEF(cv, N * D);
        in->da = TAKEF(cv, N * F);
        in->dg = TAKEF(cv, N * F);
        in->du = TAKEF(cv, N * F);
        in->datt = TAKEF(cv, N * Q);
        in->dq = TAKEF(cv, N * Q);
        in->dk = TAKEF(cv, N * KV);
        in->dv = TAKEF(cv, N * KV);
        a->d_embeds = in->dx;
    }
}

int qa_acts_alloc(qa_acts *a, const qa_model *m, const qa_lora *l, int B, int T, int mode, int max_logit_rows,
                  qa_err *e) {
    memset(a, 0, sizeof *a);
    if (B <= 0 || T <= 0) return QA_ERR(e, "workspace: batch shape [%d, %d] must be positive", B, T);
    if ((int64_t)B * T > (1 << 30)) return QA_ERR(e, "workspace: batch [%d, %d] too large", B, T);
    const int L = m->cfg.n_layers;
    a->B = B;
    a->T = T;
    a->N = B * T;
    a->mode = mode;
    a->max_logit_rows = max_logit_rows > 0 ? max_logit_rows : a->N;
    a->hidden = qa_calloc((size_t)L + 1, sizeof *a->hidden);
    a->logit_rows_host = qa_calloc((size_t)a->max_logit_rows, sizeof(int32_t));
    a->in = qa_calloc(1, sizeof *a->in);
    a->in->layer = qa_calloc((size_t)L, sizeof *a->in->layer);
    a->in->rows_host = qa_calloc((size_t)a->N, sizeof(int32_t));
    a->in->targets_host = qa_calloc((size_t)a->N, sizeof(int32_t));
    a->in->loss_host = qa_calloc((size_t)a->max_logit_rows, sizeof(float));
    if (l) {
        a->in->lora_r = l->r;
        a->in->lora_modules = l->modules;
    }
    qa_carve cv = {0, NULL};
    layout(a, m, &cv);
    a->bytes = cv.off;
    a->block = m->ops->alloc(a->bytes, e);
    if (!a->block) {
        qa_err_prefix(e, "workspace for batch [%d, %d] (%.1f MiB)", B, T, a->bytes / 1048576.0);
        qa_acts_free(a);
        return -1;
    }
    cv = (qa_carve){0, a->block};
    layout(a, m, &cv);
    a->in->ops = m->ops;
    return 0;
}

void qa_acts_free(qa_acts *a) {
    if (!a) return;
    if (a->block && a->in && a->in->ops) a->in->ops->free(a->block);
    if (a->in) {
        free(a->in->layer);
        free(a->in->rows_host);
        free(a->in->targets_host);
        free(a->in->loss_host);
        free(a->in);
    }
    free(a->hidden);
    free(a->logit_rows_host);
    memset(a, 0, sizeof *a);
}
