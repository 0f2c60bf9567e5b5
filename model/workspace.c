/* workspace.c — the activation workspaces' one carve: the structure training (qa_acts) and inference
 * (qa_infer_ws, infer.c) share, the qa_acts layout, and the byte counts of a dry carve. */
#include "model/model.h"
#include "model/model_internal.h"
#include "common/qa_mem.h"

#include <stdlib.h>
#include <string.h>

/* ---- the workspace structure training and inference share ------------------------------------------ */
void qa_ws_core_carve(qa_carve *cv, const qa_hf_config *c, const qa_ws_shape *sh, qa_ws_core *core) {
    const size_t N = (size_t)sh->N, R = (size_t)sh->R, D = c->hidden, F = c->intermediate;
    const size_t Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    core->ids = TAKEI(cv, N);
    core->pos = TAKEI(cv, N);
    core->rows = TAKEI(cv, R);
    core->rowbuf = TAKEF(cv, R * D);
    core->logits = TAKEF(cv, R * (size_t)sh->n_out);
    qa_layer_ws *w = &core->lw;
    w->xn = TAKEF(cv, N * D);
    w->act = TAKEF(cv, N * F);
    for (int l = 0; l < sh->n_sets; l++) {
        qa_layer_acts *s = &core->set[l];
        s->rstd1 = sh->train ? TAKEF(cv, N) : NULL;
        s->rstd2 = sh->train ? TAKEF(cv, N) : NULL;
        s->q = TAKEF(cv, N * Q);
        s->k = TAKEF(cv, N * KV);
        s->v = TAKEF(cv, N * KV);
        s->att = TAKEF(cv, N * Q);
        s->lse = TAKEF(cv, N * c->n_heads);
        s->h = TAKEF(cv, N * D);
        s->g = TAKEF(cv, N * F);
        s->u = TAKEF(cv, N * F);
        /* training keeps drop(x)Aᵀ of every targeted module for the backward; inference reuses one buffer */
        float *shared = !sh->train && sh->lora_r > 0 ? TAKEF(cv, N * sh->lora_r) : NULL;
        for (int mod = 0; mod < QA_LORA_N_MODULES; mod++)
            s->xa[mod] = !sh->train ? shared
                         : (sh->lora_r > 0 && (sh->lora_modules & QA_LORA_BIT(mod))) ? TAKEF(cv, N * sh->lora_r)
                                                                                     : NULL;
    }
    if (sh->train) {
        w->dx = TAKEF(cv, N * D);
        w->dh = TAKEF(cv, N * D);
        w->dxn = TAKEF(cv, N * D);
        w->da = TAKEF(cv, N * F);
        w->dg = TAKEF(cv, N * F);
        w->du = TAKEF(cv, N * F);
        w->datt = TAKEF(cv, N * Q);
        w->dq = TAKEF(cv, N * Q);
        w->dk = TAKEF(cv, N * KV);
        w->dv = TAKEF(cv, N * KV);
    } else {
        w->dx = w->dh = w->dxn = w->da = w->dg = w->du = w->datt = w->dq = w->dk = w->dv = NULL;
    }
}

/* ---- qa_acts ------------------------------------------------------------------------------------------ */
/* Shape, LoRA and the host arrays of views (hidden, layer sets) of a workspace; no backend memory. */
static int acts_shape(qa_acts *a, const qa_hf_config *c, unsigned lora_modules, int lora_r, int B, int T, int mode,
                      int max_logit_rows, qa_err *e) {
    memset(a, 0, sizeof *a);
    if (B <= 0 || T <= 0) return QA_ERR(e, "workspace: batch shape [%d, %d] must be positive", B, T);
    if ((int64_t)B * T > (1 << 30)) return QA_ERR(e, "workspace: batch [%d, %d] too large", B, T);
    if (mode != QA_ACTS_INFER && mode != QA_ACTS_TRAIN) return QA_ERR(e, "workspace: unknown mode %d", mode);
    const int L = c->n_layers;
    a->B = B;
    a->T = T;
    a->N = B * T;
    a->mode = mode;
    a->max_logit_rows = max_logit_rows > 0 ? max_logit_rows : a->N;
    a->hidden = qa_calloc((size_t)L + 1, sizeof *a->hidden);
    a->in = qa_calloc(1, sizeof *a->in);
    a->in->core.set = qa_calloc((size_t)(mode == QA_ACTS_TRAIN ? L : 1), sizeof *a->in->core.set);
    a->in->lora_r = lora_r;
    a->in->lora_modules = lora_r > 0 ? lora_modules : 0;
    return 0;
}

/* the block: the shared structure, then the batch mask and segments, the loss rows, the hidden states */
static void acts_layout(qa_acts *a, const qa_hf_config *c, qa_carve *cv) {
    qa_acts_int *in = a->in;
    const size_t N = (size_t)a->N, D = c->hidden, R = (size_t)a->max_logit_rows;
    const int L = c->n_layers, train = a->mode == QA_ACTS_TRAIN;
    const qa_ws_shape sh = {a->N, a->max_logit_rows, c->vocab, train ? L : 1, train, in->lora_modules, in->lora_r};
    qa_ws_core_carve(cv, c, &sh, &in->core);
    in->mask = TAKEI(cv, N);
    in->seg = TAKEI(cv, N);
    in->targets = TAKEI(cv, R);
    in->row_loss = TAKEF(cv, R);
    in->row_lse = TAKEF(cv, R);
    for (int l = 0; l <= L; l++) a->hidden[l] = TAKEF(cv, N * D);
    in->xL = TAKEF(cv, N * D);
    in->rstd_f = TAKEF(cv, N);
    a->logits = in->core.logits;
    a->d_embeds = in->core.lw.dx; /* training only */
}

size_t qa_acts_bytes(const qa_hf_config *c, unsigned lora_modules, int lora_r, int B, int T, int mode,
                     int max_logit_rows) {
    qa_acts a;
    qa_err e = {0};
    if (acts_shape(&a, c, lora_modules, lora_r, B, T, mode, max_logit_rows, &e)) return 0;
    qa_carve cv = {0, NULL};
    acts_layout(&a, c, &cv);
    qa_acts_free(&a);
    return cv.off;
}

int qa_acts_alloc(qa_acts *a, const qa_model *m, const qa_lora *l, int B, int T, int mode, int max_logit_rows,
                  qa_err *e) {
    QA_TRY(acts_shape(a, &m->cfg, l ? l->modules : 0, l ? l->r : 0, B, T, mode, max_logit_rows, e));
    a->logit_rows_host = qa_calloc((size_t)a->max_logit_rows, sizeof(int32_t));
    a->in->rows_host = qa_calloc((size_t)a->N, sizeof(int32_t));
    a->in->targets_host = qa_calloc((size_t)a->N, sizeof(int32_t));
    a->in->loss_host = qa_calloc((size_t)a->max_logit_rows, sizeof(float));
    qa_carve cv = {0, NULL};
    acts_layout(a, &m->cfg, &cv);
    a->bytes = cv.off;
    a->block = m->ops->alloc(a->bytes, e);
    if (!a->block) {
        qa_err_prefix(e, "workspace for batch [%d, %d] (%.1f MiB)", B, T, a->bytes / 1048576.0);
        qa_acts_free(a);
        return -1;
    }
    cv = (qa_carve){0, a->block};
    acts_layout(a, &m->cfg, &cv);
    a->in->ops = m->ops;
    return 0;
}

void qa_acts_free(qa_acts *a) {
    if (!a) return;
    if (a->block && a->in && a->in->ops) a->in->ops->free(a->block);
    if (a->in) {
        free(a->in->core.set);
        free(a->in->rows_host);
        free(a->in->targets_host);
        free(a->in->loss_host);
        free(a->in);
    }
    free(a->hidden);
    free(a->logit_rows_host);
    memset(a, 0, sizeof *a);
}
