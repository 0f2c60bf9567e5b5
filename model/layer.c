/* layer.c — one decoder layer (llama / mistral / qwen2) with LoRA, forward and backward: the q/k/v
 * projections, the attention set-up, o_proj and the MLP block, each projection with its bias and LoRA.
 * The training graph (forward.c) and inference with a prefix cache (infer.c) both run their layers
 * through these functions; every tensor op is a qa_ops call. */
#include "model/model.h"
#include "model/model_internal.h"

#include <math.h>

/* dropout key of (call, layer, module) */
static uint64_t drop_key(uint64_t call, int layer, int mod) {
    return qa_ops_hash64(call ^ qa_ops_hash64(((uint64_t)layer << 8) | (uint64_t)(mod + 1)));
}

const qa_lora_mat *qa_layer_lora(const qa_lora *l, int layer, int mod) {
    if (!l) return NULL;
    const qa_lora_mat *t = qa_lora_at(l, layer, mod);
    return t->present ? t : NULL;
}

/* the frozen weight and bias of projection mod */
static qa_weight weight_of(const qa_layer_weights *w, int mod) {
    const qa_weight ws[QA_LORA_N_MODULES] = {w->wq, w->wk, w->wv, w->wo, w->wgate, w->wup, w->wdown};
    return ws[mod];
}
static qa_weight bias_of(const qa_layer_weights *w, int mod) {
    const qa_weight bs[QA_LORA_N_MODULES] = {w->bq, w->bk, w->bv, w->bo, w->bgate, w->bup, w->bdown};
    return bs[mod];
}

qa_attn_desc qa_layer_attn_desc(const qa_hf_config *c, int li, int B, int T, const int32_t *key_mask,
                                const int32_t *segment) {
    qa_attn_desc d = {
        .B = B, .T = T, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim,
        .window = c->window[li], .scale = (float)(1.0 / sqrt((double)c->head_dim)),
        .key_mask = key_mask, .segment = segment,
    };
    return d;
}

/* y += LoRA of (li, mod) on N rows of x when the adapter targets it */
static void lora_part(const qa_layer_run *r, int li, int mod, const qa_layer_acts *s, int N, int K, int M,
                      const float *x, float *y) {
    const qa_lora_mat *t = qa_layer_lora(r->l, li, mod);
    if (t)
        r->m->ops->lora_fwd(r->m->stream, N, K, M, r->l->r, r->l->scale, r->p, drop_key(r->call, li, mod),
                            x, t->A, t->B, s->xa[mod], y);
}

/* y = beta*y + x Wᵀ + b (+ LoRA) for projection mod of layer li on N rows */
static void proj_fwd(const qa_layer_run *r, int li, int mod, const qa_layer_acts *s, int N, float beta,
                     const float *x, float *y) {
    const qa_layer_weights *w = &r->m->layers[li];
    int K, M;
    qa_lora_module_dims(&r->m->cfg, mod, &K, &M);
    r->m->ops->linear_fwd(r->m->stream, N, K, M, beta, x, weight_of(w, mod), bias_of(w, mod), y);
    lora_part(r, li, mod, s, N, K, M, x, y);
}

/* y_i = x W_iᵀ + b_i (+ LoRA) for n projections mods[i] of one input, in one pass when the backend can */
static void projs_fwd(const qa_layer_run *r, int li, int n, const int *mods, const qa_layer_acts *s, int N,
                      const float *x, float *const *y) {
    const qa_ops *ops = r->m->ops;
    const qa_layer_weights *w = &r->m->layers[li];
    int K = 0, M[4];
    qa_weight W[4], bias[4];
    for (int i = 0; i < n; i++) {
        qa_lora_module_dims(&r->m->cfg, mods[i], &K, &M[i]);
        W[i] = weight_of(w, mods[i]);
        bias[i] = bias_of(w, mods[i]);
    }
    if (ops->linear_multi_fwd) ops->linear_multi_fwd(r->m->stream, N, K, n, x, M, W, bias, y);
    else for (int i = 0; i < n; i++) ops->linear_fwd(r->m->stream, N, K, M[i], 0, x, W[i], bias[i], y[i]);
    for (int i = 0; i < n; i++) lora_part(r, li, mods[i], s, N, K, M[i], x, y[i]);
}

void qa_layer_qkv_fwd(const qa_layer_run *r, int li, qa_layer_acts *s, qa_layer_ws *ws, int N, const float *x_in,
                      const int32_t *pos, int nq, const int32_t *qrows, const int32_t *qpos, float *gbuf) {
    const qa_ops *ops = r->m->ops;
    qa_stream *st = r->m->stream;
    const qa_hf_config *c = &r->m->cfg;
    const float theta = (float)c->rope_theta;
    ops->rmsnorm_fwd(st, N, c->hidden, (float)c->rms_eps, x_in, r->m->layers[li].attn_norm, ws->xn, s->rstd1);
    if (nq > 0) { /* keys and values of every row, queries of the rows asked for */
        const int mods[2] = {QA_LORA_K, QA_LORA_V};
        float *const ys[2] = {s->k, s->v};
        projs_fwd(r, li, 2, mods, s, N, ws->xn, ys);
        ops->gather_rows(st, nq, c->hidden, ws->xn, qrows, gbuf);
        proj_fwd(r, li, QA_LORA_Q, s, nq, 0, gbuf, s->q);
        ops->rope_fwd(st, nq, c->n_heads, c->head_dim, theta, qpos, s->q);
    } else {
        const int mods[3] = {QA_LORA_Q, QA_LORA_K, QA_LORA_V};
        float *const ys[3] = {s->q, s->k, s->v};
        projs_fwd(r, li, 3, mods, s, N, ws->xn, ys);
        ops->rope_fwd(st, N, c->n_heads, c->head_dim, theta, pos, s->q);
    }
    ops->rope_fwd(st, N, c->n_kv_heads, c->head_dim, theta, pos, s->k);
}

void qa_layer_out_fwd(const qa_layer_run *r, int li, qa_layer_acts *s, qa_layer_ws *ws, int N, const float *att,
                      const float *x_in, float *h, float *x_out) {
    const qa_ops *ops = r->m->ops;
    qa_stream *st = r->m->stream;
    const qa_hf_config *c = &r->m->cfg;
    const qa_layer_weights *w = &r->m->layers[li];
    const int D = c->hidden, F = c->intermediate;
    const size_t nd = sizeof(float) * (size_t)N * D;
    if (h != x_in) ops->memcpy_d2d(st, h, x_in, nd);
    proj_fwd(r, li, QA_LORA_O, s, N, 1, att, h);
    ops->rmsnorm_fwd(st, N, D, (float)c->rms_eps, h, w->mlp_norm, ws->xn, s->rstd2);
    {
        const int mods[2] = {QA_LORA_GATE, QA_LORA_UP};
        float *const ys[2] = {s->g, s->u};
        projs_fwd(r, li, 2, mods, s, N, ws->xn, ys);
    }
    if (x_out != h) ops->memcpy_d2d(st, x_out, h, nd);
    if (ops->swiglu_linear_fwd && !qa_layer_lora(r->l, li, QA_LORA_DOWN)) { /* silu(g) * u only inside the product */
        ops->swiglu_linear_fwd(st, N, F, D, 1, s->g, s->u, w->wdown, w->bdown, x_out);
    } else {
        ops->swiglu_fwd(st, (size_t)N * F, s->g, s->u, ws->act);
        proj_fwd(r, li, QA_LORA_DOWN, s, N, 1, ws->act, x_out);
    }
}

void qa_layer_fwd(const qa_layer_run *r, int li, qa_layer_acts *s, qa_layer_ws *ws, const qa_attn_desc *d,
                  const int32_t *pos, const float *x_in, float *x_out) {
    const int N = d->B * d->T;
    qa_layer_qkv_fwd(r, li, s, ws, N, x_in, pos, 0, NULL, NULL, NULL);
    r->m->ops->attention_fwd(r->m->stream, d, s->q, s->k, s->v, s->att, s->lse);
    qa_layer_out_fwd(r, li, s, ws, N, s->att, x_in, s->h, x_out);
}

/* ---- backward -------------------------------------------------------------------------------------- */
/* dx = beta*dx + dy W (+ the LoRA part, whose dA, dB accumulate) for projection mod of layer li; dx NULL:
 * only dA, dB */
static void proj_bwd(const qa_layer_run *r, int li, int mod, const qa_layer_acts *s, int N, float beta,
                     const float *x, const float *dy, float *dx) {
    int K, M;
    qa_lora_module_dims(&r->m->cfg, mod, &K, &M);
    if (dx) r->m->ops->linear_bwd(r->m->stream, N, K, M, beta, dy, weight_of(&r->m->layers[li], mod), dx);
    const qa_lora_mat *t = qa_layer_lora(r->l, li, mod);
    if (t)
        r->m->ops->lora_bwd(r->m->stream, N, K, M, r->l->r, r->l->scale, r->p, drop_key(r->call, li, mod), x, t->A,
                            t->B, s->xa[mod], dy, t->dA, t->dB, dx);
}

static int has(const qa_layer_run *r, int li, int mod) { return qa_layer_lora(r->l, li, mod) != NULL; }

void qa_layer_bwd(const qa_layer_run *r, int li, const qa_layer_acts *s, qa_layer_ws *ws, const qa_attn_desc *d,
                  const int32_t *pos, const float *x_in, int need_dx) {
    const qa_ops *ops = r->m->ops;
    qa_stream *st = r->m->stream;
    const qa_hf_config *c = &r->m->cfg;
    const qa_layer_weights *w = &r->m->layers[li];
    const int N = d->B * d->T, D = c->hidden, F = c->intermediate;
    const float eps = (float)c->rms_eps, theta = (float)c->rope_theta;
    const size_t nd = sizeof(float) * (size_t)N * D;

    /* MLP block: x_out = h + down(silu(g) * u) */
    if (has(r, li, QA_LORA_DOWN)) ops->swiglu_fwd(st, (size_t)N * F, s->g, s->u, ws->act);
    proj_bwd(r, li, QA_LORA_DOWN, s, N, 0, ws->act, ws->dx, ws->da);
    ops->swiglu_bwd(st, (size_t)N * F, s->g, s->u, ws->da, ws->dg, ws->du);
    if (has(r, li, QA_LORA_GATE) || has(r, li, QA_LORA_UP))
        ops->rmsnorm_fwd(st, N, D, eps, s->h, w->mlp_norm, ws->xn, NULL);
    proj_bwd(r, li, QA_LORA_GATE, s, N, 0, ws->xn, ws->dg, ws->dxn);
    proj_bwd(r, li, QA_LORA_UP, s, N, 1, ws->xn, ws->du, ws->dxn);
    ops->memcpy_d2d(st, ws->dh, ws->dx, nd);
    ops->rmsnorm_bwd(st, N, D, 1, s->h, w->mlp_norm, s->rstd2, ws->dxn, ws->dh);

    /* attention block: h = x_in + o(attn(rope(q), rope(k), v)) */
    proj_bwd(r, li, QA_LORA_O, s, N, 0, s->att, ws->dh, ws->datt);
    ops->attention_bwd(st, d, s->q, s->k, s->v, s->att, s->lse, ws->datt, ws->dq, ws->dk, ws->dv);
    ops->rope_bwd(st, N, c->n_heads, c->head_dim, theta, pos, ws->dq);
    ops->rope_bwd(st, N, c->n_kv_heads, c->head_dim, theta, pos, ws->dk);
    if (has(r, li, QA_LORA_Q) || has(r, li, QA_LORA_K) || has(r, li, QA_LORA_V))
        ops->rmsnorm_fwd(st, N, D, eps, x_in, w->attn_norm, ws->xn, NULL);
    /* the lowest trained layer (need_dx 0): only dA, dB of its q/k/v adapters */
    const int mods[3] = {QA_LORA_Q, QA_LORA_K, QA_LORA_V};
    const float *dys[3] = {ws->dq, ws->dk, ws->dv};
    for (int i = 0; i < 3; i++) proj_bwd(r, li, mods[i], s, N, i ? 1 : 0, ws->xn, dys[i], need_dx ? ws->dxn : NULL);
    if (!need_dx) return;
    ops->memcpy_d2d(st, ws->dx, ws->dh, nd);
    ops->rmsnorm_bwd(st, N, D, 1, x_in, w->attn_norm, s->rstd1, ws->dxn, ws->dx);
}
