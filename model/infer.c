/* infer.c — inference with a cached prefix (model.h "inference with a cached prefix"): the prefix
 * KV cache, lm_head row subsets and a forward that continues cached rows and returns only the
 * logits of each row's last real token. Same math as forward.c (HF semantics); no dropout, nothing
 * kept for a backward. */
#include "model/model.h"
#include "model/model_internal.h"
#include "common/qa_mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- KV cache ----------------------------------------------------------------------------- */
int qa_kv_cache_alloc(qa_kv_cache *c, const qa_model *m, int cap, qa_err *e) {
    memset(c, 0, sizeof *c);
    if (cap <= 0) return QA_ERR(e, "kv cache: capacity %d must be positive", cap);
    c->n_layers = m->cfg.n_layers;
    c->cap = cap;
    c->kv_dim = m->cfg.n_kv_heads * m->cfg.head_dim;
    c->ops = m->ops;
    size_t n = (size_t)c->n_layers * cap * c->kv_dim;
    c->k = m->ops->alloc(sizeof(float) * n * 2, e);
    if (!c->k) return qa_err_prefix(e, "kv cache for %d positions", cap);
    c->v = c->k + n;
    return 0;
}

void qa_kv_cache_free(qa_kv_cache *c) {
    if (!c) return;
    if (c->k && c->ops) c->ops->free(c->k);
    memset(c, 0, sizeof *c);
}

/* ---- lm_head rows ------------------------------------------------------------------------- */
int qa_head_rows_init(qa_head_rows *h, const qa_model *m, const int32_t *ids, int n, qa_err *e) {
    memset(h, 0, sizeof *h);
    const int D = m->cfg.hidden, V = m->cfg.vocab;
    if (n <= 0) return QA_ERR(e, "head rows: no token ids given");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return QA_ERR(e, "head rows: token id %d is outside the model's vocabulary [0, %d)", ids[i], V);
    const qa_weight W = m->lm_head;
    const size_t es = W.dtype == QA_DT_BF16 ? 2 : 4;
    float *host = qa_malloc(sizeof(float) * (size_t)n * D);
    uint8_t *raw = qa_malloc(es * (size_t)D);
    for (int i = 0; i < n; i++) {
        /* one row of backend memory to the host (a plain copy on the CPU) */
        m->ops->memcpy_d2h(m->stream, raw, (const uint8_t *)W.data + (size_t)ids[i] * D * es, es * (size_t)D);
        float *dst = host + (size_t)i * D;
        if (W.dtype == QA_DT_BF16)
            for (int j = 0; j < D; j++) dst[j] = qa_bf16_to_f32(((const uint16_t *)raw)[j]);
        else
            memcpy(dst, raw, sizeof(float) * D);
    }
    free(raw);
    h->w = m->ops->alloc(sizeof(float) * (size_t)n * D, e);
    if (!h->w) { free(host); return qa_err_prefix(e, "head rows (%d x %d)", n, D); }
    m->ops->memcpy_h2d(m->stream, h->w, host, sizeof(float) * (size_t)n * D);
    m->ops->sync(m->stream, NULL);
    free(host);
    h->n = n;
    h->D = D;
    h->ids = qa_malloc(sizeof(int32_t) * n);
    memcpy(h->ids, ids, sizeof(int32_t) * n);
    h->ops = m->ops;
    return 0;
}

void qa_head_rows_free(qa_head_rows *h) {
    if (!h) return;
    if (h->w && h->ops) h->ops->free(h->w);
    free(h->ids);
    memset(h, 0, sizeof *h);
}

/* ---- workspace ---------------------------------------------------------------------------- */
static void ws_layout(qa_infer_ws *w, const qa_model *m, qa_carve *cv) {
    const qa_hf_config *c = &m->cfg;
    const size_t N = (size_t)w->max_tokens, R = (size_t)w->max_rows, D = c->hidden, F = c->intermediate;
    const size_t Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    w->x = TAKEF(cv, N * D);
    w->h = TAKEF(cv, N * D);
    w->xn = TAKEF(cv, N * D);
    w->q = TAKEF(cv, N * Q);
    w->att = TAKEF(cv, N * Q);
    w->k = TAKEF(cv, N * KV);
    w->v = TAKEF(cv, N * KV);
    w->lse = TAKEF(cv, N * c->n_heads);
    w->g = TAKEF(cv, N * F);
    w->u = TAKEF(cv, N * F);
    w->act = TAKEF(cv, N * F);
    w->xa = w->lora_r > 0 ? TAKEF(cv, N * w->lora_r) : NULL;
    w->rowbuf = TAKEF(cv, R * D);
    w->out = TAKEF(cv, R * w->max_out);
    w->ids = TAKEI(cv, N);
    w->pos = TAKEI(cv, N);
    w->ctx = TAKEI(cv, R);
    w->rows = TAKEI(cv, R);
}

int qa_infer_ws_alloc(qa_infer_ws *w, const qa_model *m, const qa_lora *l, int max_rows, int max_tokens,
                      int max_out, qa_err *e) {
    memset(w, 0, sizeof *w);
    if (max_rows <= 0 || max_tokens < max_rows || max_out <= 0)
        return QA_ERR(e, "inference workspace: rows %d, tokens %d, outputs %d (need rows >= 1, tokens >= rows, "
                         "outputs >= 1)", max_rows, max_tokens, max_out);
    w->max_rows = max_rows;
    w->max_tokens = max_tokens;
    w->max_out = max_out;
    w->lora_r = l ? l->r : 0;
    w->ops = m->ops;
    qa_carve cv = {0, NULL};
    ws_layout(w, m, &cv);
    w->bytes = cv.off;
    w->block = m->ops->alloc(w->bytes, e);
    if (!w->block) {
        qa_err_prefix(e, "inference workspace for %d rows / %d tokens (%.1f MiB)", max_rows, max_tokens,
                      w->bytes / 1048576.0);
        memset(w, 0, sizeof *w);
        return -1;
    }
    cv = (qa_carve){0, w->block};
    ws_layout(w, m, &cv);
    w->pos_host = qa_malloc(sizeof(int32_t) * (size_t)max_tokens);
    w->rows_host = qa_malloc(sizeof(int32_t) * (size_t)max_rows);
    return 0;
}

void qa_infer_ws_free(qa_infer_ws *w) {
    if (!w) return;
    if (w->block && w->ops) w->ops->free(w->block);
    free(w->pos_host);
    free(w->rows_host);
    memset(w, 0, sizeof *w);
}

/* ---- forward ------------------------------------------------------------------------------ */
static const qa_lora_mat *lmat(const qa_lora *l, int layer, int mod) {
    if (!l) return NULL;
    const qa_lora_mat *t = qa_lora_at(l, layer, mod);
    return t->present ? t : NULL;
}

/* y = beta*y + x Wᵀ + b (+ LoRA) */
static void proj(const qa_model *m, const qa_lora *l, qa_infer_ws *w, int layer, int mod, int N, int K, int M,
                 float beta, const float *x, qa_weight W, qa_weight bias, float *y) {
    m->ops->linear_fwd(m->stream, N, K, M, beta, x, W, bias, y);
    const qa_lora_mat *t = lmat(l, layer, mod);
    if (t) m->ops->lora_fwd(m->stream, N, K, M, l->r, l->scale, 0.0f, 0, x, t->A, t->B, w->xa, y);
}

/* y_i = x W_iᵀ + b_i (+ LoRA) for n projections of one input, in one pass when the backend can */
static void projs(const qa_model *m, const qa_lora *l, qa_infer_ws *w, int layer, int n, const int *mods, int N, int K,
                  const int *M, const float *x, const qa_weight *W, const qa_weight *bias, float *const *y) {
    if (m->ops->linear_multi_fwd) m->ops->linear_multi_fwd(m->stream, N, K, n, x, M, W, bias, y);
    else for (int i = 0; i < n; i++) m->ops->linear_fwd(m->stream, N, K, M[i], 0, x, W[i], bias[i], y[i]);
    for (int i = 0; i < n; i++) {
        const qa_lora_mat *t = lmat(l, layer, mods[i]);
        if (t) m->ops->lora_fwd(m->stream, N, K, M[i], l->r, l->scale, 0.0f, 0, x, t->A, t->B, w->xa, y[i]);
    }
}

static int check_batch(const qa_model *m, const qa_lora *l, const qa_infer_ws *w, const qa_kv_cache *cache,
                       const qa_infer_batch *b, const qa_kv_cache *store, const qa_head_rows *head, int *any_ctx,
                       qa_err *e) {
    const int V = m->cfg.vocab;
    if (!b->ids || !b->len) return QA_ERR(e, "infer: batch needs ids and len");
    if (b->B <= 0 || b->T <= 0 || b->B > w->max_rows || (int64_t)b->B * b->T > w->max_tokens)
        return QA_ERR(e, "infer: batch [%d, %d] does not fit the workspace (%d rows, %d tokens)", b->B, b->T,
                      w->max_rows, w->max_tokens);
    if (l && (l->r > w->lora_r || l->ops != m->ops || l->n_layers != m->cfg.n_layers))
        return QA_ERR(e, "infer: the workspace was sized for LoRA r=%d of this model; pass the adapter to "
                         "qa_infer_ws_alloc", w->lora_r);
    int nout = head ? head->n : V;
    if (nout > w->max_out)
        return QA_ERR(e, "infer: %d outputs per row exceed the workspace's %d (size it with max_out = %d)", nout,
                      w->max_out, nout);
    if (head && (head->D != m->cfg.hidden || head->ops != m->ops))
        return QA_ERR(e, "infer: head rows were made for another model or backend");
    *any_ctx = 0;
    for (int i = 0; i < b->B; i++) {
        if (b->len[i] < 1 || b->len[i] > b->T)
            return QA_ERR(e, "infer: row %d has %d real tokens, outside [1, %d]", i, b->len[i], b->T);
        int c = b->ctx ? b->ctx[i] : 0;
        if (c < 0 || (c > 0 && (!cache || c > cache->len)))
            return QA_ERR(e, "infer: row %d continues from %d cached positions but the cache holds %d", i, c,
                          cache ? cache->len : 0);
        if (c > 0) *any_ctx = 1;
        for (int t = 0; t < b->T; t++) {
            int32_t id = b->ids[(size_t)i * b->T + t];
            if (id < 0 || id >= V)
                return QA_ERR(e, "infer: ids[%d][%d] = %d is outside the vocabulary [0, %d)", i, t, id, V);
        }
    }
    if (*any_ctx) {
        if (!m->ops->attention_prefix_fwd)
            return QA_ERR(e, "infer: backend '%s' has no attention_prefix_fwd; run without a prefix cache",
                          m->ops->name);
        if (cache->n_layers != m->cfg.n_layers || cache->ops != m->ops ||
            cache->kv_dim != m->cfg.n_kv_heads * m->cfg.head_dim)
            return QA_ERR(e, "infer: the kv cache was made for another model or backend");
    }
    if (store) {
        if (b->B != 1 || (b->ctx && b->ctx[0] != 0))
            return QA_ERR(e, "infer: a prefill (store) takes one row without cached context");
        if (b->len[0] > store->cap)
            return QA_ERR(e, "infer: prefill of %d tokens exceeds the cache capacity %d", b->len[0], store->cap);
        if (store->n_layers != m->cfg.n_layers || store->ops != m->ops ||
            store->kv_dim != m->cfg.n_kv_heads * m->cfg.head_dim)
            return QA_ERR(e, "infer: the kv cache to fill was made for another model or backend");
    }
    return 0;
}

int qa_model_infer(qa_model *m, const qa_lora *lora, qa_infer_ws *w, const qa_kv_cache *cache,
                   const qa_infer_batch *b, qa_kv_cache *store, const qa_head_rows *head, float *out, qa_err *e) {
    const qa_ops *ops = m->ops;
    qa_stream *st = m->stream;
    const qa_hf_config *c = &m->cfg;
    const int B = b->B, T = b->T, N = B * T, D = c->hidden, F = c->intermediate, L = c->n_layers;
    const int H = c->n_heads, Hk = c->n_kv_heads, hd = c->head_dim, Q = H * hd, KV = Hk * hd;
    const float eps = (float)c->rms_eps, theta = (float)c->rope_theta;
    int any_ctx = 0;
    QA_TRY(check_batch(m, lora, w, cache, b, store, head, &any_ctx, e));

    /* ids, positions (ctx[b] + t), ctx */
    for (int i = 0; i < B; i++) {
        int c0 = b->ctx ? b->ctx[i] : 0;
        for (int t = 0; t < T; t++) w->pos_host[(size_t)i * T + t] = c0 + t;
        w->rows_host[i] = i * T + b->len[i] - 1;
    }
    ops->memcpy_h2d(st, w->ids, b->ids, sizeof(int32_t) * (size_t)N);
    ops->memcpy_h2d(st, w->pos, w->pos_host, sizeof(int32_t) * (size_t)N);
    ops->memcpy_h2d(st, w->rows, w->rows_host, sizeof(int32_t) * (size_t)B);
    if (any_ctx) ops->memcpy_h2d(st, w->ctx, b->ctx, sizeof(int32_t) * (size_t)B);
    ops->sync(st, NULL); /* the host staging buffers are reused by the next call */
    /* last layer without a prefix cache: queries of the last real positions only (their positions in w->ctx,
     * which serves the cache otherwise) */
    const int rows_attn = !any_ctx && ops->attention_rows_fwd;
    if (rows_attn) {
        for (int i = 0; i < B; i++) w->pos_host[i] = b->len[i] - 1;
        ops->memcpy_h2d(st, w->ctx, w->pos_host, sizeof(int32_t) * (size_t)B);
        ops->sync(st, NULL);
    }

    ops->embedding_fwd(st, N, D, m->embed, w->ids, w->x);
    for (int li = 0; li < L; li++) {
        const qa_layer_weights *lw = &m->layers[li];
        const int last = li == L - 1, qrows = last && rows_attn; /* queries of the last positions only */
        ops->rmsnorm_fwd(st, N, D, eps, w->x, lw->attn_norm, w->xn, NULL);
        if (qrows) {
            const int mods[2] = {QA_LORA_K, QA_LORA_V}, Ms[2] = {KV, KV};
            const qa_weight Ws[2] = {lw->wk, lw->wv}, Bs[2] = {lw->bk, lw->bv};
            float *const ys[2] = {w->k, w->v};
            projs(m, lora, w, li, 2, mods, N, D, Ms, w->xn, Ws, Bs, ys);
            ops->gather_rows(st, B, D, w->xn, w->rows, w->rowbuf);
            proj(m, lora, w, li, QA_LORA_Q, B, D, Q, 0, w->rowbuf, lw->wq, lw->bq, w->q);
            ops->rope_fwd(st, B, H, hd, theta, w->ctx, w->q);
        } else {
            const int mods[3] = {QA_LORA_Q, QA_LORA_K, QA_LORA_V}, Ms[3] = {Q, KV, KV};
            const qa_weight Ws[3] = {lw->wq, lw->wk, lw->wv}, Bs[3] = {lw->bq, lw->bk, lw->bv};
            float *const ys[3] = {w->q, w->k, w->v};
            projs(m, lora, w, li, 3, mods, N, D, Ms, w->xn, Ws, Bs, ys);
            ops->rope_fwd(st, N, H, hd, theta, w->pos, w->q);
        }
        ops->rope_fwd(st, N, Hk, hd, theta, w->pos, w->k);
        if (store) {
            size_t off = (size_t)li * store->cap * KV, n = sizeof(float) * (size_t)b->len[0] * KV;
            ops->memcpy_d2d(st, store->k + off, w->k, n);
            ops->memcpy_d2d(st, store->v + off, w->v, n);
        }
        if (any_ctx) {
            qa_attn_prefix_desc d = {
                .B = B, .T = T, .n_heads = H, .n_kv_heads = Hk, .head_dim = hd, .window = c->window[li],
                .scale = (float)(1.0 / sqrt((double)hd)), .cache_len = cache->len, .ctx = w->ctx,
            };
            size_t off = (size_t)li * cache->cap * KV;
            ops->attention_prefix_fwd(st, &d, w->q, cache->k + off, cache->v + off, w->k, w->v, w->att);
        } else {
            qa_attn_desc d = {
                .B = B, .T = T, .n_heads = H, .n_kv_heads = Hk, .head_dim = hd, .window = c->window[li],
                .scale = (float)(1.0 / sqrt((double)hd)), .key_mask = NULL, .segment = NULL,
            };
            if (qrows) ops->attention_rows_fwd(st, &d, B, w->rows, w->q, w->k, w->v, w->att);
            else ops->attention_fwd(st, &d, w->q, w->k, w->v, w->att, w->lse);
        }
        /* Only the last real position of each row reaches the head: in the last layer (its keys and values
         * done above) o_proj and the MLP run on those B rows alone (w->q, free now, holds their attention
         * output). Each row's result is the same as with all rows: a row of a product does not depend on
         * the rows computed with it. */
        const int nr = last ? B : N;
        const float *att = w->att;
        float *x = w->x; /* the residual stream, updated in place (nothing is kept for a backward) */
        if (last) {
            if (!qrows) { /* attention output of the last positions */
                ops->gather_rows(st, B, Q, w->att, w->rows, w->q);
                att = w->q;
            }
            ops->gather_rows(st, B, D, w->x, w->rows, w->h);
            x = w->h;
        }
        proj(m, lora, w, li, QA_LORA_O, nr, Q, D, 1, att, lw->wo, lw->bo, x);
        ops->rmsnorm_fwd(st, nr, D, eps, x, lw->mlp_norm, w->xn, NULL);
        {
            const int mods[2] = {QA_LORA_GATE, QA_LORA_UP}, Ms[2] = {F, F};
            const qa_weight Ws[2] = {lw->wgate, lw->wup}, Bs[2] = {lw->bgate, lw->bup};
            float *const ys[2] = {w->g, w->u};
            projs(m, lora, w, li, 2, mods, nr, D, Ms, w->xn, Ws, Bs, ys);
        }
        if (ops->swiglu_linear_fwd && !lmat(lora, li, QA_LORA_DOWN)) { /* silu(g) * u only inside the product */
            ops->swiglu_linear_fwd(st, nr, F, D, 1, w->g, w->u, lw->wdown, lw->bdown, x);
        } else {
            ops->swiglu_fwd(st, (size_t)nr * F, w->g, w->u, w->act);
            proj(m, lora, w, li, QA_LORA_DOWN, nr, F, D, 1, w->act, lw->wdown, lw->bdown, x);
        }
    }
    if (store) store->len = b->len[0];
    /* the last layer left the last real position of each row in w->h rows 0..B-1 -> final norm -> head */
    ops->memcpy_d2d(st, w->rowbuf, w->h, sizeof(float) * (size_t)B * D);
    ops->rmsnorm_fwd(st, B, D, eps, w->rowbuf, m->final_norm, w->rowbuf, NULL);
    int nout;
    if (head) {
        nout = head->n;
        ops->linear_fwd(st, B, D, nout, 0, w->rowbuf, (qa_weight){QA_DT_F32, head->w}, (qa_weight){0}, w->out);
    } else {
        nout = c->vocab;
        ops->linear_fwd(st, B, D, nout, 0, w->rowbuf, m->lm_head, (qa_weight){0}, w->out);
    }
    ops->memcpy_d2h(st, out, w->out, sizeof(float) * (size_t)B * nout);
    return ops->sync(st, e);
}
