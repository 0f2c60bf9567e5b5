/* lora.c — LoRA adapter blocks (params / grads / AdamW m, v), views, init and AdamW. */
#include "model/model.h"
#include "common/qa_mem.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *MOD_NAME[QA_LORA_N_MODULES] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                  "gate_proj", "up_proj", "down_proj"};

int qa_lora_peft_name(char *buf, size_t n, int layer, int mod, int is_B) {
    if (mod < 0 || mod >= QA_LORA_N_MODULES) return -1;
    int w = snprintf(buf, n, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer,
                     mod <= QA_LORA_O ? "self_attn" : "mlp", MOD_NAME[mod], is_B ? 'B' : 'A');
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

/* in / out features of a projection */
static void mod_dims(const qa_hf_config *c, int mod, int *in, int *out) {
    int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    switch (mod) {
    case QA_LORA_Q: *in = c->hidden; *out = q; break;
    case QA_LORA_K: case QA_LORA_V: *in = c->hidden; *out = kv; break;
    case QA_LORA_O: *in = q; *out = c->hidden; break;
    case QA_LORA_GATE: case QA_LORA_UP: *in = c->hidden; *out = c->intermediate; break;
    default: *in = c->intermediate; *out = c->hidden; break;
    }
}

/* The adapter's layout on config c: layer-major, modules in enum order, A then B; fills mats (may be NULL)
 * and returns the floats per block. */
static size_t lora_layout(const qa_hf_config *c, unsigned modules, int r, qa_lora_mat *mats) {
    size_t off = 0;
    for (int i = 0; i < c->n_layers; i++)
        for (int mod = 0; mod < QA_LORA_N_MODULES; mod++) {
            if (!(modules & QA_LORA_BIT(mod))) continue;
            qa_lora_mat tmp, *t = mats ? &mats[(size_t)i * QA_LORA_N_MODULES + mod] : &tmp;
            t->present = 1;
            mod_dims(c, mod, &t->in, &t->out);
            t->off_A = off;
            off += (size_t)r * t->in;
            t->off_B = off;
            off += (size_t)t->out * r;
        }
    return off;
}

/* four blocks, then 16 floats: the double the norm reduction writes (qa_lora_step) */
static size_t block_bytes(size_t n_params) { return (4 * n_params + 16) * sizeof(float); }

size_t qa_lora_n_params(const qa_hf_config *c, unsigned modules, int r) {
    return r > 0 ? lora_layout(c, modules & QA_LORA_MASK_ALL, r, NULL) : 0;
}

size_t qa_lora_bytes(const qa_hf_config *c, unsigned modules, int r) {
    return r > 0 && (modules & QA_LORA_MASK_ALL) ? block_bytes(qa_lora_n_params(c, modules, r)) : 0;
}

int qa_lora_init(qa_lora *l, const qa_model *m, unsigned modules, int r, float alpha, float dropout, qa_err *e) {
    memset(l, 0, sizeof *l);
    if (r <= 0) return QA_ERR(e, "LoRA rank r must be positive (got %d)", r);
    if (!(modules & QA_LORA_MASK_ALL) || (modules & ~QA_LORA_MASK_ALL))
        return QA_ERR(e, "LoRA target modules mask 0x%x names no/unknown projection (use q,k,v,o,gate,up,down)", modules);
    if (!(dropout >= 0 && dropout < 1)) return QA_ERR(e, "LoRA dropout must be in [0, 1) (got %g)", dropout);
    const qa_hf_config *c = &m->cfg;
    l->ops = m->ops;
    l->stream = m->stream;
    l->modules = modules;
    l->r = r;
    l->alpha = alpha;
    l->scale = alpha / (float)r;
    l->dropout = dropout;
    l->n_layers = c->n_layers;
    l->mats = qa_calloc((size_t)c->n_layers * QA_LORA_N_MODULES, sizeof *l->mats);
    const size_t off = lora_layout(c, modules, r, l->mats);
    l->n_params = off;
    float *block = l->ops->alloc(block_bytes(off), e);
    if (!block) { free(l->mats); l->mats = NULL; return qa_err_prefix(e, "allocating LoRA blocks"); }
    l->ops->memset0(m->stream, block, block_bytes(off));
    l->red = (double *)(block + 4 * off);
    l->params = block;
    l->grads = block + off;
    l->m = block + 2 * off;
    l->v = block + 3 * off;
    for (size_t i = 0; i < (size_t)c->n_layers * QA_LORA_N_MODULES; i++) {
        qa_lora_mat *t = &l->mats[i];
        if (!t->present) continue;
        t->A = l->params + t->off_A;
        t->B = l->params + t->off_B;
        t->dA = l->grads + t->off_A;
        t->dB = l->grads + t->off_B;
    }
    return 0;
}

void qa_lora_free(qa_lora *l) {
    if (!l) return;
    if (l->params && l->ops) l->ops->free(l->params);
    free(l->mats);
    memset(l, 0, sizeof *l);
}

/* uniform in [0,1) from a counter */
static double u01(uint64_t seed, uint64_t i) { return (double)(qa_ops_hash64(seed ^ qa_ops_hash64(i)) >> 11) * (1.0 / 9007199254740992.0); }

void qa_lora_init_params(qa_lora *l, uint64_t seed) {
    float *host = qa_calloc(l->n_params ? l->n_params : 1, sizeof(float));
    for (size_t i = 0; i < (size_t)l->n_layers * QA_LORA_N_MODULES; i++) {
        qa_lora_mat *t = &l->mats[i];
        if (!t->present) continue;
        double bound = 1.0 / sqrt((double)t->in);
        for (size_t j = 0; j < (size_t)l->r * t->in; j++)
            host[t->off_A + j] = (float)((2.0 * u01(seed, t->off_A + j) - 1.0) * bound);
    }
    l->ops->memcpy_h2d(l->stream, l->params, host, l->n_params * sizeof(float));
    l->ops->sync(l->stream, NULL);
    free(host);
}

void qa_lora_set(qa_lora *l, int layer, int mod, int is_B, const float *host) {
    qa_lora_mat *t = qa_lora_at(l, layer, mod);
    if (!t->present) return;
    size_t n = (size_t)l->r * (is_B ? t->out : t->in);
    l->ops->memcpy_h2d(l->stream, is_B ? t->B : t->A, host, n * sizeof(float));
    l->ops->sync(l->stream, NULL);
}

void qa_lora_zero_grad(qa_lora *l) {
    l->ops->memset0(l->stream, l->grads, l->n_params * sizeof(float));
}

void qa_lora_adamw(qa_lora *l, const qa_adamw *o) {
    l->step++;
    l->ops->adamw_step(l->stream, l->n_params, o->lr, o->beta1, o->beta2, o->eps, o->weight_decay, l->step, l->params,
                       l->grads, l->m, l->v);
}

int qa_lora_step(qa_lora *l, const qa_adamw *opt, double max_grad_norm, int loss_finite, double *gnorm, qa_err *e) {
    double ss = 0;
    l->ops->sumsq(l->stream, l->n_params, l->grads, l->red);
    l->ops->memcpy_d2h(l->stream, &ss, l->red, sizeof ss);
    if (l->ops->sync(l->stream, e)) return qa_err_prefix(e, "LoRA gradient norm");
    *gnorm = sqrt(ss);
    if (!loss_finite || !isfinite(ss)) return 0;
    if (max_grad_norm > 0) {
        double coef = max_grad_norm / (*gnorm + 1e-6);
        if (coef < 1.0) l->ops->scale(l->stream, l->n_params, coef, l->grads);
    }
    qa_lora_adamw(l, opt);
    return 1;
}
