/* infer.c — inference with a cached prefix (model.h "inference with a cached prefix"): the prefix
 * KV cache, lm_head row subsets and a forward that continues cached rows and returns only the
 * logits of each row's last real token. The layers are layer.c's, as in training (HF semantics);
 * what is here is inference-specific: positions after the cached context, the cache itself (filled
 * by a prefill, read by attention_prefix_fwd), the residual stream updated in place, and the last
 * layer's o_proj / MLP / head on the last real position of each row only. No dropout, nothing kept
 * for a backward. */
#include "model/model.h"
#include "model/model_internal.h"
#include "common/qa_mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- KV cache ----------------------------------------------------------------------------- */
/* keys then values, [L, cap, Hk*hd] each */
size_t qa_kv_cache_bytes(const qa_hf_config *c, int cap) {
    return cap > 0 ? sizeof(float) * 2 * (size_t)c->n_layers * (size_t)cap * c->n_kv_heads * c->head_dim : 0;
}

int qa_kv_cache_alloc(qa_kv_cache *c, const qa_model *m, int cap, qa_err *e) {
    memset(c, 0, sizeof *c);
    if (cap <= 0) return QA_ERR(e, "kv cache: capacity %d must be positive", cap);
    c->n_layers = m->cfg.n_layers;
    c->cap = cap;
    c->kv_dim = m->cfg.n_kv_heads * m->cfg.head_dim;
    c->ops = m->ops;
    size_t n = (size_t)c->n_layers * cap * c->kv_dim;
    c->k = m->ops->alloc(qa_kv_cache_bytes(&m->cfg, cap), e);
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
/* the shared structure (one layer set: nothing is kept for a backward), then the residual stream and ctx */
static void ws_layout(qa_infer_ws *w, const qa_hf_config *c, qa_carve *cv) {
    qa_infer_int *in = w->in;
    const qa_ws_shape sh = {w->max_tokens, w->max_rows, w->max_out, 1, 0, 0, w->lora_r};
    qa_ws_core_carve(cv, c, &sh, &in->core);
    in->x = TAKEF(cv, (size_t)w->max_tokens * c->hidden);
    in->ctx = TAKEI(cv, w->max_rows);
}

static int ws_shape(qa_infer_ws *w, int lora_r, int max_rows, int max_tokens, int max_out, qa_err *e) {
    memset(w, 0, sizeof *w);
    if (max_rows <= 0 || max_tokens < max_rows || max_out <= 0)
        return QA_ERR(e, "inference workspace: rows %d, tokens %d, outputs %d (need rows >= 1, tokens >= rows, "
                         "outputs >= 1)", max_rows, max_tokens, max_out);
    w->max_rows = max_rows;
    w->max_tokens = max_tokens;
    w->max_out = max_out;
    w->lora_r = lora_r > 0 ? lora_r : 0;
    w->in = qa_calloc(1, sizeof *w->in);
    w->in->core.set = &w->in->set;
    return 0;
}

size_t qa_infer_ws_bytes(const qa_hf_config *c, int lora_r, int max_rows, int max_tokens, int max_out) {
    qa_infer_ws w;
    qa_err e = {0};
    if (ws_shape(&w, lora_r, max_rows, max_tokens, max_out, &e)) return 0;
    qa_carve cv = {0, NULL};
    ws_layout(&w, c, &cv);
    qa_infer_ws_free(&w);
    return cv.off;
}

int qa_infer_ws_alloc(qa_infer_ws *w, const qa_model *m, const qa_lora *l, int max_rows, int max_tokens,
                      int max_out, qa_err *e) {
    QA_TRY(ws_shape(w, l ? l->r : 0, max_rows, max_tokens, max_out, e));
    qa_carve cv = {0, NULL};
    ws_layout(w, &m->cfg, &cv);
    w->bytes = cv.off;
    w->block = m->ops->alloc(w->bytes, e);
    if (!w->block) {
        qa_err_prefix(e, "inference workspace for %d rows / %d tokens (%.1f MiB)", max_rows, max_tokens,
                      w->bytes / 1048576.0);
        qa_infer_ws_free(w);
        return -1;
    }
    w->ops = m->ops;
    cv = (qa_carve){0, w->block};
    ws_layout(w, &m->cfg, &cv);
    w->in->pos_host = qa_malloc(sizeof(int32_t) * (size_t)max_tokens);
    w->in->rows_host = qa_malloc(sizeof(int32_t) * (size_t)max_rows);
    return 0;
}

void qa_infer_ws_free(qa_infer_ws *w) {
    if (!w) return;
    if (w->block && w->ops) w->ops->free(w->block);
    if (w->in) {
        free(w->in->pos_host);
        free(w->in->rows_host);
        free(w->in);
    }
    memset(w, 0, sizeof *w);
}

/* ---- forward ------------------------------------------------------------------------------ */
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
    const int B = b->B, T = b->T, N = B * T, D = c->hidden, L = c->n_layers;
    const int Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim;
    int any_ctx = 0;
    QA_TRY(check_batch(m, lora, w, cache, b, store, head, &any_ctx, e));
    qa_infer_int *in = w->in;
    qa_ws_core *core = &in->core;
    qa_layer_acts *s = &in->set;

    /* ids, positions (ctx[b] + t), ctx */
    for (int i = 0; i < B; i++) {
        int c0 = b->ctx ? b->ctx[i] : 0;
        for (int t = 0; t < T; t++) in->pos_host[(size_t)i * T + t] = c0 + t;
        in->rows_host[i] = i * T + b->len[i] - 1;
    }
    ops->memcpy_h2d(st, core->ids, b->ids, sizeof(int32_t) * (size_t)N);
    ops->memcpy_h2d(st, core->pos, in->pos_host, sizeof(int32_t) * (size_t)N);
    ops->memcpy_h2d(st, core->rows, in->rows_host, sizeof(int32_t) * (size_t)B);
    if (any_ctx) ops->memcpy_h2d(st, in->ctx, b->ctx, sizeof(int32_t) * (size_t)B);
    ops->sync(st, NULL); /* the host staging buffers are reused by the next call */
    /* last layer without a prefix cache: queries of the last real positions only (their positions in in->ctx,
     * which serves the cache otherwise) */
    const int rows_attn = !any_ctx && ops->attention_rows_fwd;
    if (rows_attn) {
        for (int i = 0; i < B; i++) in->pos_host[i] = b->len[i] - 1;
        ops->memcpy_h2d(st, in->ctx, in->pos_host, sizeof(int32_t) * (size_t)B);
        ops->sync(st, NULL);
    }

    const qa_layer_run r = {m, lora, 0.0f, 0};
    ops->embedding_fwd(st, N, D, m->embed, core->ids, in->x);
    for (int li = 0; li < L; li++) {
        const int last = li == L - 1, qrows = last && rows_attn; /* queries of the last positions only */
        qa_layer_qkv_fwd(&r, li, s, &core->lw, N, in->x, core->pos, qrows ? B : 0, core->rows, in->ctx, core->rowbuf);
        if (store) {
            size_t off = (size_t)li * store->cap * KV, n = sizeof(float) * (size_t)b->len[0] * KV;
            ops->memcpy_d2d(st, store->k + off, s->k, n);
            ops->memcpy_d2d(st, store->v + off, s->v, n);
        }
        if (any_ctx) {
            qa_attn_prefix_desc d = {
                .B = B, .T = T, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads, .head_dim = c->head_dim,
                .window = c->window[li], .scale = (float)(1.0 / sqrt((double)c->head_dim)),
                .cache_len = cache->len, .ctx = in->ctx,
            };
            size_t off = (size_t)li * cache->cap * KV;
            ops->attention_prefix_fwd(st, &d, s->q, cache->k + off, cache->v + off, s->k, s->v, s->att);
        } else {
            const qa_attn_desc d = qa_layer_attn_desc(c, li, B, T, NULL, NULL);
            if (qrows) ops->attention_rows_fwd(st, &d, B, core->rows, s->q, s->k, s->v, s->att);
            else ops->attention_fwd(st, &d, s->q, s->k, s->v, s->att, s->lse);
        }
        /* Only the last real position of each row reaches the head: in the last layer (its keys and values
         * done above) o_proj and the MLP run on those B rows alone (s->q, free now, holds their attention
         * output). Each row's result is the same as with all rows: a row of a product does not depend on
         * the rows computed with it. */
        const float *att = s->att;
        float *x = in->x; /* the residual stream, updated in place (nothing is kept for a backward) */
        if (last) {
            if (!qrows) { /* attention output of the last positions */
                ops->gather_rows(st, B, Q, s->att, core->rows, s->q);
                att = s->q;
            }
            ops->gather_rows(st, B, D, in->x, core->rows, s->h);
            x = s->h;
        }
        qa_layer_out_fwd(&r, li, s, &core->lw, last ? B : N, att, x, x, x);
    }
    if (store) store->len = b->len[0];
    /* the last layer left the last real position of each row in s->h rows 0..B-1 -> final norm -> head */
    ops->memcpy_d2d(st, core->rowbuf, s->h, sizeof(float) * (size_t)B * D);
    ops->rmsnorm_fwd(st, B, D, (float)c->rms_eps, core->rowbuf, m->final_norm, core->rowbuf, NULL);
    int nout;
    if (head) {
        nout = head->n;
        ops->linear_fwd(st, B, D, nout, 0, core->rowbuf, (qa_weight){QA_DT_F32, head->w}, (qa_weight){0},
                        core->logits);
    } else {
        nout = c->vocab;
        ops->linear_fwd(st, B, D, nout, 0, core->rowbuf, m->lm_head, (qa_weight){0}, core->logits);
    }
    ops->memcpy_d2h(st, out, core->logits, sizeof(float) * (size_t)B * nout);
    return ops->sync(st, e);
}
