/* forward.c — the decoder graph: embeddings, the layers (layer.c), the final norm and the head; logit
 * lens, loss and backward to LoRA and embeddings. */
#include "model/model.h"
#include "model/model_internal.h"
#include "common/qa_mem.h"

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
    ops->memcpy_h2d(m->stream, in->core.ids, b->input_ids, sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) {
        int32_t p = b->positions ? b->positions[i] : i % b->T;
        if (p < 0) { free(tmp); return QA_ERR(e, "positions[%d][%d] = %d is negative", i / b->T, i % b->T, p); }
        tmp[i] = p;
    }
    ops->memcpy_h2d(m->stream, in->core.pos, tmp, sizeof(int32_t) * N);
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

/* the attention of layer li over batch b (its mask and segments in the workspace) */
static qa_attn_desc attn_desc(const qa_model *m, const qa_acts *a, const qa_batch *b, int li) {
    return qa_layer_attn_desc(&m->cfg, li, b->B, b->T, b->attention_mask ? a->in->mask : NULL,
                              b->segment_ids ? a->in->seg : NULL);
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
    qa_ws_core *core = &a->in->core;
    const qa_layer_run r = {m, l, p, call};
    m->ops->embedding_fwd(m->stream, N, D, m->embed, core->ids, a->hidden[0]);
    for (int li = 0; li < L; li++) {
        qa_layer_acts *s = &core->set[a->mode == QA_ACTS_TRAIN ? li : 0];
        float *out = li + 1 < L ? a->hidden[li + 1] : a->in->xL;
        const qa_attn_desc d = attn_desc(m, a, b, li);
        qa_layer_fwd(&r, li, s, &core->lw, &d, core->pos, a->hidden[li], out);
    }
    m->ops->rmsnorm_fwd(m->stream, N, D, (float)c->rms_eps, a->in->xL, m->final_norm, a->hidden[L], a->in->rstd_f);
    return 0;
}

/* logits of the rows in a->logit_rows_host[0..M): lm_head(norm?(src[row])) */
static void rows_to_logits(qa_model *m, qa_acts *a, const float *src, int M, int apply_norm) {
    const qa_hf_config *c = &m->cfg;
    qa_acts_int *in = a->in;
    if (M <= 0) { a->n_logit_rows = 0; return; }
    m->ops->memcpy_h2d(m->stream, in->core.rows, a->logit_rows_host, sizeof(int32_t) * (size_t)M);
    m->ops->gather_rows(m->stream, M, c->hidden, src, in->core.rows, in->core.rowbuf);
    if (apply_norm)
        m->ops->rmsnorm_fwd(m->stream, M, c->hidden, (float)c->rms_eps, in->core.rowbuf, m->final_norm,
                            in->core.rowbuf, NULL);
    m->ops->linear_fwd(m->stream, M, c->hidden, c->vocab, 0, in->core.rowbuf, m->lm_head, (qa_weight){0}, a->logits);
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

/* ---- loss and backward ----------------------------------------------------------------- */
/* The labelled positions of b (t predicts labels[t+1]) into in->rows_host / targets_host; their count, or
 * -1 + error for a label outside the vocabulary. */
static int64_t labelled_positions(const qa_model *m, qa_acts *a, const qa_batch *b, qa_err *e) {
    qa_acts_int *in = a->in;
    const int V = m->cfg.vocab;
    int M = 0;
    for (int i = 0; i < b->B; i++)
        for (int t = 0; t + 1 < b->T; t++) {
            int32_t y = b->labels[(size_t)i * b->T + t + 1];
            if (y == -100) continue;
            if (y < 0 || y >= V) {
                QA_ERR(e, "labels[%d][%d] = %d is outside the vocabulary [0, %d) (use -100 to ignore)", i, t + 1, y, V);
                return -1;
            }
            in->rows_host[M] = i * b->T + t;
            in->targets_host[M] = y;
            M++;
        }
    return M;
}

static int check_train_batch(const qa_acts *a, const qa_batch *b, const char *what, qa_err *e) {
    if (a->mode != QA_ACTS_TRAIN) return QA_ERR(e, "%s needs a workspace allocated with QA_ACTS_TRAIN", what);
    if (!b->labels) return QA_ERR(e, "%s: batch has no labels", what);
    if ((int64_t)b->B * b->T > a->N)
        return QA_ERR(e, "batch [%d, %d] does not fit the workspace ([%d, %d])", b->B, b->T, a->B, a->T);
    return 0;
}

/* Cross-entropy of the labelled rows [r0, r1) of in->rows_host over chunks of the logits buffer: the sum of
 * the per-row losses (accumulated in row order into *sum); with dscale != 0 also the backward of
 * dscale * sum into ws->dxn (which the caller zeroed). */
static void loss_rows(qa_model *m, qa_acts *a, int r0, int r1, float dscale, double *sum) {
    const qa_hf_config *c = &m->cfg;
    const qa_ops *ops = m->ops;
    qa_stream *st = m->stream;
    qa_acts_int *in = a->in;
    qa_ws_core *core = &in->core;
    const int D = c->hidden, V = c->vocab, L = c->n_layers, C = a->max_logit_rows;
    for (int q0 = r0; q0 < r1; q0 += C) {
        const int nr = r1 - q0 < C ? r1 - q0 : C;
        ops->memcpy_h2d(st, core->rows, in->rows_host + q0, sizeof(int32_t) * nr);
        ops->memcpy_h2d(st, in->targets, in->targets_host + q0, sizeof(int32_t) * nr);
        ops->gather_rows(st, nr, D, a->hidden[L], core->rows, core->rowbuf);
        ops->linear_fwd(st, nr, D, V, 0, core->rowbuf, m->lm_head, (qa_weight){0}, a->logits);
        ops->cross_entropy_fwd(st, nr, V, a->logits, in->targets, in->row_loss, in->row_lse);
        ops->memcpy_d2h(st, in->loss_host, in->row_loss, sizeof(float) * nr);
        for (int i = 0; i < nr; i++) *sum += in->loss_host[i];
        if (dscale == 0.0f) continue;
        ops->cross_entropy_bwd(st, nr, V, dscale, a->logits, in->targets, in->row_lse, a->logits);
        ops->linear_bwd(st, nr, D, V, 0, a->logits, m->lm_head, core->rowbuf);
        ops->scatter_add_rows(st, nr, D, core->rowbuf, core->rows, core->lw.dxn);
    }
}

int qa_model_loss(qa_model *m, const qa_lora *lora, qa_acts *a, const qa_batch *b, qa_loss *out, qa_err *e) {
    memset(out, 0, sizeof *out);
    a->n_logit_rows = 0;
    QA_TRY(check_train_batch(a, b, "qa_model_loss", e));
    const int64_t M = labelled_positions(m, a, b, e);
    if (M < 0) return -1;
    QA_TRY(run_layers(m, lora, a, b, 0.0f, 0, e));
    double sum = 0;
    loss_rows(m, a, 0, (int)M, 0.0f, &sum);
    out->n_tokens = M;
    out->loss_sum = sum;
    out->loss = M ? sum / M : 0;
    return m->ops->sync(m->stream, e);
}

int qa_model_forward_backward(qa_model *m, qa_lora *lora, qa_acts *a, const qa_batch *b, const qa_train_opts *opts,
                              qa_loss *out, qa_err *e) {
    const qa_hf_config *c = &m->cfg;
    const qa_ops *ops = m->ops;
    qa_stream *st = m->stream;
    qa_acts_int *in = a->in;
    memset(out, 0, sizeof *out);
    a->n_logit_rows = 0;
    QA_TRY(check_train_batch(a, b, "forward_backward", e));
    const int N = b->B * b->T, D = c->hidden, L = c->n_layers;
    const int n_groups = opts && opts->n_groups > 0 ? opts->n_groups : 0;
    for (int g = 0; g < n_groups; g++)
        if (!opts->group_end || opts->group_end[g] < (g ? opts->group_end[g - 1] : 0) ||
            (g + 1 == n_groups && opts->group_end[g] != N))
            return QA_ERR(e, "forward_backward: loss group %d of %d ends at %lld: group ends must ascend to the "
                             "batch's %d positions", g, n_groups, opts->group_end ? (long long)opts->group_end[g] : -1LL,
                          N);
    /* labelled positions: t predicts labels[t+1] */
    const int64_t M64 = labelled_positions(m, a, b, e);
    if (M64 < 0) return -1;
    const int M = (int)M64;
    float p = lora ? lora->dropout : 0.0f;
    uint64_t call = opts ? opts->dropout_key : 0;
    float gscale = opts && opts->grad_scale != 0 ? opts->grad_scale : 1.0f;
    QA_TRY(run_layers(m, lora, a, b, p, call, e));
    out->n_tokens = M;

    /* loss and d(final hidden), over chunks of the logits buffer, group by group (one group: the batch) */
    qa_ws_core *core = &in->core;
    qa_layer_ws *ws = &core->lw;
    ops->memset0(st, ws->dxn, sizeof(float) * (size_t)N * D);
    double sum = 0;
    if (!n_groups) {
        loss_rows(m, a, 0, M, gscale / (float)M, &sum);
    } else {
        int r0 = 0;
        for (int g = 0; g < n_groups; g++) {
            int r1 = r0;
            while (r1 < M && in->rows_host[r1] < opts->group_end[g]) r1++;
            double gs = 0;
            if (r1 > r0) loss_rows(m, a, r0, r1, gscale / (float)(r1 - r0), &gs);
            if (opts->group_loss_sum) opts->group_loss_sum[g] = gs;
            if (opts->group_tokens) opts->group_tokens[g] = r1 - r0;
            sum += gs;
            r0 = r1;
        }
    }
    out->loss_sum = sum;
    out->loss = M ? sum / M : 0;
    if (M == 0) {   /* nothing labelled: zero gradients contribution */
        if (opts && opts->want_embed_grad) ops->memset0(st, ws->dx, sizeof(float) * (size_t)N * D);
        return ops->sync(st, e);
    }
    ops->rmsnorm_bwd(st, N, D, 0, in->xL, m->final_norm, in->rstd_f, ws->dxn, ws->dx);
    /* below the lowest LoRA layer only d_embeds needs the backward */
    int lowest = 0;
    if (!(opts && opts->want_embed_grad)) {
        lowest = L;
        for (int li = 0; li < L && lora; li++)
            for (int mod = 0; mod < QA_LORA_N_MODULES; mod++)
                if (qa_layer_lora(lora, li, mod) && li < lowest) lowest = li;
    }
    const int need_embed = opts && opts->want_embed_grad;
    const qa_layer_run r = {m, lora, p, call};
    for (int li = L - 1; li >= lowest; li--) {
        const qa_attn_desc d = attn_desc(m, a, b, li);
        qa_layer_bwd(&r, li, &core->set[li], ws, &d, core->pos, a->hidden[li], need_embed || li > lowest);
    }
    return ops->sync(st, e);
}
