/* forward.c — the decoder graph: forward, logit lens, loss and backward to LoRA and embeddings. */
#include "model/model.h"
#include "model/model_internal.h"
#include "common/qa_mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t qa_batch_count_labels(const qa_batch *b) {
    int64_t n = 0;
    if (!b->labels) return 0;
    for (int i = 0; i < b->B; i++)
        for (int t = 0; t + 1 < b->T; t++)
            if (b->labels[(size_t)i * b->T + t + 1] != -100) n++;
    return n;
}

/* dropout key of (call, layer, module) */
static uint64_t drop_key(uint64_t call, int layer, int mod) {
    return qa_ops_hash64(call ^ qa_ops_hash64(((uint64_t)layer << 8) | (uint64_t)(mod + 1)));
}

/* Validate the batch and copy ids / positions / mask / segments to the backend. */
static int upload_batch(const qa_model *m, qa_acts *a, const qa_batch *b, qa_err *e) {
    const qa_ops *ops = m->ops;
    qa_acts_int *in = a->in;
    if (!b->input_ids) return QA_ERR(e, "batch has no input_ids");
    if (b->B <= 0 || b->T <= 0 || (int64_t)b->B * b->T > a->N)
        return QA_ERR(e, "batch [%d, %d] does not fit the workspace sized for %d tokens ([%d, %d])", b->B, b->T, a->N,
                      a->B, a->T);
    const int N = b->B * b->T;
    int32_t *tmp = qa_malloc(sizeof(int32_t) * (size_t)N);
    for (int i = 0; i < N; i++) {
        int32_t id = b->input_ids[i];
        if (id < 0 || id >= m->cfg.vocab) {
            free(tmp);
            return QA_ERR(e, "input_ids[%d][%d] = %d is outside the vocabulary [0, %d)", i / b->T, i % b->T, id,
                          m->cfg.vocab);
        }
    }
    ops->memcpy_h2d(m->stream, in->ids, b->input_ids, sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) {
        int32_t p = b->positions ? b->positions[i] : i % b->T;
        if (p < 0) { free(tmp); return QA_ERR(e, "positions[%d][%d] = %d is negative", i / b->T, i % b->T, p); }
        tmp[i] = p;
    }
    ops->memcpy_h2d(m->stream, in->pos, tmp, sizeof(int32_t) * N);
    ops->sync(m->stream, NULL);
    for (int i = 0; i < N; i++) tmp[i] = b->attention_mask ? (b->attention_mask[i] != 0) : 1;
    ops->memcpy_h2d(m->stream, in->mask, tmp, sizeof(int32_t) * N);
    ops->sync(m->stream, NULL);
    if (b->segment_ids) ops->memcpy_h2d(m->stream, in->seg, b->segment_ids, sizeof(int32_t) * N);
    ops->sync(m->stream, NULL);
    free(tmp);
    in->cur_B = b->B;
    in->cur_T = b->T;
    return 0;
}

static qa_attn_desc attn_desc(const qa_model *m, const qa_acts *a, const qa_batch *b, int layer) {
    const qa_hf_config *c = &m->cfg;
    qa_attn_desc d = {
        .B = b->B, .T = b->T, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim,
        .window = c->window[layer], .scale = (float)(1.0 / sqrt((double)c->head_dim)),
        .key_mask = b->attention_mask ? a->in->mask : NULL, .segment = b->segment_ids ? a->in->seg : NULL,
    };
    return d;
}

/* LoRA matrices of (layer, mod) when the adapter targets it */
static const qa_lora_mat *lmat(const qa_lora *l, int layer, int mod) {
    if (!l) return NULL;
    const qa_lora_mat *t = qa_lora_at(l, layer, mod);
    return t->present ? t : NULL;
}

/* y += LoRA of (layer, mod) when the adapter targets it */
static void lora_part(const qa_model *m, const qa_lora *l, qa_layer_acts *s, int layer, int mod, int N, int K, int M,
                      const float *x, float *y, float p, uint64_t call) {
    const qa_lora_mat *t = lmat(l, layer, mod);
    if (t)
        m->ops->lora_fwd(m->stream, N, K, M, l->r, l->scale, p, drop_key(call, layer, mod), x, t->A, t->B, s->xa[mod],
                         y);
}

/* y = x Wᵀ + b (+ LoRA) */
static void proj_fwd(const qa_model *m, const qa_lora *l, qa_layer_acts *s, int layer, int mod, int N, int K, int M,
                     float beta, const float *x, qa_weight W, qa_weight bias, float *y, float p, uint64_t call) {
    m->ops->linear_fwd(m->stream, N, K, M, beta, x, W, bias, y);
    lora_part(m, l, s, layer, mod, N, K, M, x, y, p, call);
}

/* y_i = x W_iᵀ + b_i (+ LoRA) for n projections of one input (mods[i]), in one pass when the backend can */
static void projs_fwd(const qa_model *m, const qa_lora *l, qa_layer_acts *s, int layer, int n, const int *mods, int N,
                      int K, const int *M, const float *x, const qa_weight *W, const qa_weight *bias, float *const *y,
                      float p, uint64_t call) {
    if (m->ops->linear_multi_fwd) m->ops->linear_multi_fwd(m->stream, N, K, n, x, M, W, bias, y);
    else for (int i = 0; i < n; i++) m->ops->linear_fwd(m->stream, N, K, M[i], 0, x, W[i], bias[i], y[i]);
    for (int i = 0; i < n; i++) lora_part(m, l, s, layer, mods[i], N, K, M[i], x, y[i], p, call);
}

/* One decoder layer: x_out = layer(x_in); saves into s what the backward needs. */
static void layer_fwd(const qa_model *m, const qa_lora *l, qa_acts *a, const qa_batch *b, int li, qa_layer_acts *s,
                      const float *x_in, float *x_out, float p, uint64_t call) {
    const qa_ops *ops = m->ops;
    qa_stream *st = m->stream;
    const qa_hf_config *c = &m->cfg;
    const qa_layer_weights *w = &m->layers[li];
    const int N = b->B * b->T, D = c->hidden, F = c->intermediate, Q = c->n_heads * c->head_dim,
              KV = c->n_kv_heads * c->head_dim;
    const float eps = (float)c->rms_eps, theta = (float)c->rope_theta;
    float *xn = a->in->xn, *act = a->in->act;

    ops->rmsnorm_fwd(st, N, D, eps, x_in, w->attn_norm, xn, s->rstd1);
    {
        const int mods[3] = {QA_LORA_Q, QA_LORA_K, QA_LORA_V}, Ms[3] = {Q, KV, KV};
        const qa_weight Ws[3] = {w->wq, w->wk, w->wv}, Bs[3] = {w->bq, w->bk, w->bv};
        float *const ys[3] = {s->q, s->k, s->v};
        projs_fwd(m, l, s, li, 3, mods, N, D, Ms, xn, Ws, Bs, ys, p, call);
    }
    ops->rope_fwd(st, N, c->n_heads, c->head_dim, theta, a->in->pos, s->q);
    ops->rope_fwd(st, N, c->n_kv_heads, c->head_dim, theta, a->in->pos, s->k);
    qa_attn_desc d = attn_desc(m, a, b, li);
    ops->attention_fwd(st, &d, s->q, s->k, s->v, s->att, s->lse);
    ops->memcpy_d2d(st, s->h, x_in, sizeof(float) * (size_t)N * D);
    proj_fwd(m, l, s, li, QA_LORA_O, N, Q, D, 1, s->att, w->wo, w->bo, s->h, p, call);

    ops->rmsnorm_fwd(st, N, D, eps, s->h, w->mlp_norm, xn, s->rstd2);
    {
        const int mods[2] = {QA_LORA_GATE, QA_LORA_UP}, Ms[2] = {F, F};
        const qa_weight Ws[2] = {w->wgate, w->wup}, Bs[2] = {w->bgate, w->bup};
        float *const ys[2] = {s->g, s->u};
        projs_fwd(m, l, s, li, 2, mods, N, D, Ms, xn, Ws, Bs, ys, p, call);
    }
    ops->memcpy_d2d(st, x_out, s->h, sizeof(float) * (size_t)N * D);
    if (ops->swiglu_linear_fwd && !lmat(l, li, QA_LORA_DOWN)) { /* silu(g) * u only inside the product */
        ops->swiglu_linear_fwd(st, N, F, D, 1, s->g, s->u, w->wdown, w->bdown, x_out);
    } else {
        ops->swiglu_fwd(st, (size_t)N * F, s->g, s->u, act);
        proj_fwd(m, l, s, li, QA_LORA_DOWN, N, F, D, 1, act, w->wdown, w->bdown, x_out, p, call);
    }
}

static int check_lora(const qa_model *m, const qa_lora *l, const qa_acts *a, qa_err *e) {
    if (!l) return 0;
    if (l->n_layers != m->cfg.n_layers || l->ops != m->ops)
        return QA_ERR(e, "LoRA adapter was made for another model (%d layers) or backend", l->n_layers);
    if ((l->modules & ~a->in->lora_modules) || l->r > a->in->lora_r)
        return QA_ERR(e, "workspace was sized for LoRA r=%d modules 0x%x, adapter has r=%d modules 0x%x "
                         "(pass the adapter to qa_acts_alloc)", a->in->lora_r, a->in->lora_modules, l->r, l->modules);
    return 0;
}

/* Embeddings + all layers + final norm; hidden[0..L] and xL filled. */
static int run_layers(qa_model *m, const qa_lora *l, qa_acts *a, const qa_batch *b, float p, uint64_t call,
                      qa_err *e) {
    const qa_hf_config *c = &m->cfg;
    const int N = b->B * b->T, D = c->hidden, L = c->n_layers;
    QA_TRY(check_lora(m, l, a, e));
    QA_TRY(upload_batch(m, a, b, e));
    m->ops->embedding_fwd(m->stream, N, D, m->embed, a->in->ids, a->hidden[0]);
    for (int li = 0; li < L; li++) {
        qa_layer_acts *s = &a->in->layer[a->mode == QA_ACTS_TRAIN ? li : 0];
        float *out = li + 1 < L ? a->hidden[li + 1] : a->in->xL;
        layer_fwd(m, l, a, b, li, s, a->hidden[li], out, p, call);
    }
    m->ops->rmsnorm_fwd(m->stream, N, D, (float)c->rms_eps, a->in->xL, m->final_norm, a->hidden[L], a->in->rstd_f);
    return 0;
}

/* logits of the rows in a->logit_rows_host[0..M): lm_head(norm?(src[row])) */
static void rows_to_logits(qa_model *m, qa_acts *a, const float *src, int M, int apply_norm) {
    const qa_hf_config *c = &m->cfg;
    qa_acts_int *in = a->in;
    if (M <= 0) { a->n_logit_rows = 0; return; }
    m->ops->memcpy_h2d(m->stream, in->rows, a->logit_rows_host, sizeof(int32_t) * (size_t)M);
    m->ops->gather_rows(m->stream, M, c->hidden, src, in->rows, in->rowbuf);
    if (apply_norm)
        m->ops->rmsnorm_fwd(m->stream, M, c->hidden, (float)c->rms_eps, in->rowbuf, m->final_norm, in->rowbuf, NULL);
    m->ops->linear_fwd(m->stream, M, c->hidden, c->vocab, 0, in->rowbuf, m->lm_head, (qa_weight){0}, a->logits);
    a->n_logit_rows = M;
}

int qa_model_forward(qa_model *m, const qa_lora *lora, qa_acts *a, const qa_batch *b, const qa_fwd_opts *opts,
                     qa_err *e) {
    a->n_logit_rows = 0;
    QA_TRY(run_layers(m, lora, a, b, 0.0f, 0, e));
    qa_logits_mode mode = opts ? opts->logits : QA_LOGITS_ALL;
    const int N = b->B * b->T;
    int M = 0;
    if (mode == QA_LOGITS_ALL) {
        if (N > a->max_logit_rows)
            return QA_ERR(e, "logits for all %d positions exceed the workspace's %d logit rows", N, a->max_logit_rows);
        for (int i = 0; i < N; i++) a->logit_rows_host[M++] = i;
    } else if (mode == QA_LOGITS_LAST) {
        if (b->B > a->max_logit_rows)
            return QA_ERR(e, "logits for %d rows exceed the workspace's %d logit rows", b->B, a->max_logit_rows);
        for (int i = 0; i < b->B; i++) {
            int t = b->T - 1;
            if (b->attention_mask)
                while (t > 0 && !b->attention_mask[(size_t)i * b->T + t]) t--;
            a->logit_rows_host[M++] = i * b->T + t;
        }
    } else if (mode == QA_LOGITS_ROWS) {
        if (opts->n_rows > a->max_logit_rows)
            return QA_ERR(e, "%d logit rows requested, the workspace holds %d", opts->n_rows, a->max_logit_rows);
        for (int i = 0; i < opts->n_rows; i++) {
            if (opts->rows[i] < 0 || opts->rows[i] >= N)
                return QA_ERR(e, "logit row %d = %d is outside the batch [0, %d)", i, opts->rows[i], N);
            a->logit_rows_host[M++] = opts->rows[i];
        }
    }
    rows_to_logits(m, a, a->hidden[m->cfg.n_layers], M, 0);
    return m->ops->sync(m->stream, e);
}

int qa_model_logit_lens(qa_model *m, qa_acts *a, int layer, const int32_t *rows, int n_rows, qa_err *e) {
    const int L = m->cfg.n_layers, N = a->in->cur_B * a->in->cur_T;
    if (N <= 0) return QA_ERR(e, "logit lens: run qa_model_forward first");
    if (layer < 0 || layer > L) return QA_ERR(e, "logit lens: layer %d outside [0, %d]", layer, L);
    int M = rows ? n_rows : N;
    if (M > a->max_logit_rows)
        return QA_ERR(e, "logit lens: %d rows exceed the workspace's %d logit rows", M, a->max_logit_rows);
    for (int i = 0; i < M; i++) {
        int r = rows ? rows[i] : i;
        if (r < 0 || r >= N) return QA_ERR(e, "logit lens: row %d = %d outside the batch [0, %d)", i, r, N);
        a->logit_rows_host[i] = r;
    }
    rows_to_logits(m, a, layer < L ? a->hidden[layer] : a->in->xL, M, 1);
    return m->ops->sync(m->stream, e);
}

/* ---- backward -------------------------------------------------------------------------- */
static void proj_bwd(const qa_model *m, qa_lora *l, const qa_layer_acts *s, int layer, int mod, int N, int K, int M,
                     float beta, const float *x, qa_weight W, const float *dy, float *dx, float p, uint64_t call) {
    m->ops->linear_bwd(m->stream, N, K, M, beta, dy, W, dx);
    const qa_lora_mat *t = lmat(l, layer, mod);
    if (t)
        m->ops->lora_bwd(m->stream, N, K, M, l->r, l->scale, p, drop_key(call, layer, mod), x, t->A, t->B, s->xa[mod],
                         dy, t->dA, t->dB, dx);
}

static int has(const qa_lora *l, int layer, int mod) { return lmat(l, layer, mod) != NULL; }

/* in: in->dx = d loss / d x_out (layer output); out: in->dx = d loss / d x_in when need_dx (otherwise only the
 * LoRA gradients of the layer are produced: the dX of q/k/v and of the input norm are skipped) */
static void layer_bwd(qa_model *m, qa_lora *l, qa_acts *a, const qa_batch *b, int li, const float *x_in, float p,
                      uint64_t call, int need_dx) {
    const qa_ops *ops = m->ops;
    qa_stream *st = m->stream;
    const qa_hf_config *c = &m->cfg;
    const qa_layer_weights *w = &m->layers[li];
    qa_acts_int *in = a->in;
    qa_layer_acts *s = &in->layer[li];
    const int N = b->B * b->T, D = c->hidden, F = c->intermediate, Q = c->n_heads * c->head_dim,
              KV = c->n_kv_heads * c->head_dim;
    const float eps = (float)c->rms_eps, theta = (float)c->rope_theta;
    const size_t nd = sizeof(float) * (size_t)N * D;

    /* MLP block: x_out = h + down(silu(g) * u) */
    if (has(l, li, QA_LORA_DOWN)) ops->swiglu_fwd(st, (size_t)N * F, s->g, s->u, in->act);
    proj_bwd(m, l, s, li, QA_LORA_DOWN, N, F, D, 0, in->act, w->wdown, in->dx, in->da, p, call);
    ops->swiglu_bwd(st, (size_t)N * F, s->g, s->u, in->da, in->dg, in->du);
    if (has(l, li, QA_LORA_GATE) || has(l, li, QA_LORA_UP))
        ops->rmsnorm_fwd(st, N, D, eps, s->h, w->mlp_norm, in->xn, NULL);
    proj_bwd(m, l, s, li, QA_LORA_GATE, N, D, F, 0, in->xn, w->wgate, in->dg, in->dxn, p, call);
    proj_bwd(m, l, s, li, QA_LORA_UP, N, D, F, 1, in->xn, w->wup, in->du, in->dxn, p, call);
    ops->memcpy_d2d(st, in->dh, in->dx, nd);
    ops->rmsnorm_bwd(st, N, D, 1, s->h, w->mlp_norm, s->rstd2, in->dxn, in->dh);

    /* attention block: h = x_in + o(attn(rope(q), rope(k), v)) */
    proj_bwd(m, l, s, li, QA_LORA_O, N, Q, D, 0, s->att, w->wo, in->dh, in->datt, p, call);
    qa_attn_desc d = attn_desc(m, a, b, li);
    ops->attention_bwd(st, &d, s->q, s->k, s->v, s->att, s->lse, in->datt, in->dq, in->dk, in->dv);
    ops->rope_bwd(st, N, c->n_heads, c->head_dim, theta, in->pos, in->dq);
    ops->rope_bwd(st, N, c->n_kv_heads, c->head_dim, theta, in->pos, in->dk);
    if (has(l, li, QA_LORA_Q) || has(l, li, QA_LORA_K) || has(l, li, QA_LORA_V))
        ops->rmsnorm_fwd(st, N, D, eps, x_in, w->attn_norm, in->xn, NULL);
    if (!need_dx) { /* the lowest trained layer: only dA, dB of its q/k/v adapters */
        const int mods[3] = {QA_LORA_Q, QA_LORA_K, QA_LORA_V}, outs[3] = {Q, KV, KV};
        float *dys[3] = {in->dq, in->dk, in->dv};
        for (int i = 0; i < 3; i++) {
            const qa_lora_mat *t = lmat(l, li, mods[i]);
            if (t)
                ops->lora_bwd(st, N, D, outs[i], l->r, l->scale, p, drop_key(call, li, mods[i]), in->xn, t->A, t->B,
                              s->xa[mods[i]], dys[i], t->dA, t->dB, NULL);
        }
        return;
    }
    proj_bwd(m, l, s, li, QA_LORA_Q, N, D, Q, 0, in->xn, w->wq, in->dq, in->dxn, p, call);
    proj_bwd(m, l, s, li, QA_LORA_K, N, D, KV, 1, in->xn, w->wk, in->dk, in->dxn, p, call);
    proj_bwd(m, l, s, li, QA_LORA_V, N, D, KV, 1, in->xn, w->wv, in->dv, in->dxn, p, call);
    ops->memcpy_d2d(st, in->dx, in->dh, nd);
    ops->rmsnorm_bwd(st, N, D, 1, x_in, w->attn_norm, s->rstd1, in->dxn, in->dx);
}

int qa_model_forward_backward(qa_model *m, qa_lora *lora, qa_acts *a, const qa_batch *b, const qa_train_opts *opts,
                              qa_loss *out, qa_err *e) {
    const qa_hf_config *c = &m->cfg;
    const qa_ops *ops = m->ops;
    qa_stream *st = m->stream;
    qa_acts_int *in = a->in;
    memset(out, 0, sizeof *out);
    a->n_logit_rows = 0;
    if (a->mode != QA_ACTS_TRAIN) return QA_ERR(e, "forward_backward needs a workspace allocated with QA_ACTS_TRAIN");
    if (!b->labels) return QA_ERR(e, "forward_backward: batch has no labels");
    const int N = b->B * b->T, D = c->hidden, V = c->vocab, L = c->n_layers;
    if (N > a->N) return QA_ERR(e, "batch [%d, %d] does not fit the workspace ([%d, %d])", b->B, b->T, a->B, a->T);
    /* labelled positions: t predicts labels[t+1] */
    int M = 0;
    for (int i = 0; i < b->B; i++)
        for (int t = 0; t + 1 < b->T; t++) {
            int32_t y = b->labels[(size_t)i * b->T + t + 1];
            if (y == -100) continue;
            if (y < 0 || y >= V)
                return QA_ERR(e, "labels[%d][%d] = %d is outside the vocabulary [0, %d) (use -100 to ignore)", i,
                              t + 1, y, V);
            in->rows_host[M] = i * b->T + t;
            in->targets_host[M] = y;
            M++;
        }
    float p = lora ? lora->dropout : 0.0f;
    uint64_t call = opts ? opts->dropout_key : 0;
    float gscale = opts && opts->grad_scale != 0 ? opts->grad_scale : 1.0f;
    QA_TRY(run_layers(m, lora, a, b, p, call, e));
    out->n_tokens = M;

    /* loss and d(final hidden), over chunks of the logits buffer */
    ops->memset0(st, in->dxn, sizeof(float) * (size_t)N * D);
    double sum = 0;
    const int C = a->max_logit_rows;
    for (int r0 = 0; r0 < M; r0 += C) {
        int nr = M - r0 < C ? M - r0 : C;
        ops->memcpy_h2d(st, in->rows, in->rows_host + r0, sizeof(int32_t) * nr);
        ops->memcpy_h2d(st, in->targets, in->targets_host + r0, sizeof(int32_t) * nr);
        ops->gather_rows(st, nr, D, a->hidden[L], in->rows, in->rowbuf);
        ops->linear_fwd(st, nr, D, V, 0, in->rowbuf, m->lm_head, (qa_weight){0}, a->logits);
        ops->cross_entropy_fwd(st, nr, V, a->logits, in->targets, in->row_loss, in->row_lse);
        ops->memcpy_d2h(st, in->loss_host, in->row_loss, sizeof(float) * nr);
        for (int i = 0; i < nr; i++) sum += in->loss_host[i];
        ops->cross_entropy_bwd(st, nr, V, gscale / (float)M, a->logits, in->targets, in->row_lse, a->logits);
        ops->linear_bwd(st, nr, D, V, 0, a->logits, m->lm_head, in->rowbuf);
        ops->scatter_add_rows(st, nr, D, in->rowbuf, in->rows, in->dxn);
    }
    out->loss_sum = sum;
    out->loss = M ? sum / M : 0;
    if (M == 0) {   /* nothing labelled: zero gradients contribution */
        if (opts && opts->want_embed_grad) ops->memset0(st, in->dx, sizeof(float) * (size_t)N * D);
        return ops->sync(st, e);
    }
    ops->rmsnorm_bwd(st, N, D, 0, in->xL, m->final_norm, in->rstd_f, in->dxn, in->dx);
    /* below the lowest LoRA layer only d_embeds needs the backward */
    int lowest = 0;
    if (!(opts && opts->want_embed_grad)) {
        lowest = L;
        for (int li = 0; li < L && lora; li++)
            for (int mod = 0; mod < QA_LORA_N_MODULES; mod++)
                if (has(lora, li, mod) && li < lowest) lowest = li;
    }
    const int need_embed = opts && opts->want_embed_grad;
    for (int li = L - 1; li >= lowest; li--)
        layer_bwd(m, lora, a, b, li, a->hidden[li], p, call, need_embed || li > lowest);
    return ops->sync(st, e);
}
