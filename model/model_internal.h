/* model_internal.h — shared by the model/ sources (not part of the API): the carve of a workspace block, the
 * decoder layer (layer.c) and the workspace structure that training (qa_acts) and inference (qa_infer_ws)
 * have in common. */
#ifndef QA_MODEL_INTERNAL_H
#define QA_MODEL_INTERNAL_H
#include "model/model.h"

#include <stdint.h>

/* Carving one backend block into 64-byte-aligned typed views: a dry pass (base NULL) only sums the
 * offsets, which sizes the block (and is what the memory estimate reports); the second pass over the
 * allocated block hands out the views. */
typedef struct qa_carve {
    size_t off;
    uint8_t *base;                   /* NULL: dry run */
} qa_carve;
static inline void *qa_carve_take(qa_carve *c, size_t bytes) {
    c->off = (c->off + 63) / 64 * 64;
    void *p = c->base ? c->base + c->off : NULL;
    c->off += bytes;
    return p;
}
#define TAKEF(c, n) ((float *)qa_carve_take(c, (size_t)(n) * sizeof(float)))
#define TAKEI(c, n) ((int32_t *)qa_carve_take(c, (size_t)(n) * sizeof(int32_t)))

/* ---- one decoder layer (layer.c) ------------------------------------------------------------------ */
/* What one layer's forward leaves for its backward (training: one set per layer; inference: one set that
 * every layer reuses). */
typedef struct qa_layer_acts {
    float *rstd1, *rstd2;            /* [N] 1/rms of the two norms; NULL when not kept (inference) */
    float *q, *att;                  /* [N, H*hd] q after RoPE, attention output */
    float *k, *v;                    /* [N, Hk*hd] k after RoPE */
    float *lse;                      /* [B, H, T] */
    float *h;                        /* [N, D] residual after attention */
    float *g, *u;                    /* [N, F] gate_proj / up_proj outputs */
    float *xa[QA_LORA_N_MODULES];    /* [N, r] LoRA drop(x) Aᵀ; training: one per targeted module, inference:
                                        one buffer all modules share; NULL without LoRA */
} qa_layer_acts;

/* Scratch of the layer code, one per workspace. */
typedef struct qa_layer_ws {
    float *xn;                       /* [N, D] normed layer input */
    float *act;                      /* [N, F] silu(g)*u */
    /* backward (training; NULL otherwise) */
    float *dx, *dh, *dxn;            /* [N, D] */
    float *da, *dg, *du;             /* [N, F] */
    float *datt, *dq;                /* [N, H*hd] */
    float *dk, *dv;                  /* [N, Hk*hd] */
} qa_layer_ws;

/* A layer call: the model, the adapter (NULL: none) and its dropout for this call. */
typedef struct qa_layer_run {
    const qa_model *m;
    const qa_lora *l;
    float p;                         /* LoRA dropout probability (0: none) */
    uint64_t call;                   /* dropout stream of this call */
} qa_layer_run;

/* The LoRA matrices of (layer, mod) when the adapter targets it, else NULL. */
const qa_lora_mat *qa_layer_lora(const qa_lora *l, int layer, int mod);
/* The attention of layer li over a [B, T] batch (causal, the layer's window, padding keys, segments). */
qa_attn_desc qa_layer_attn_desc(const qa_hf_config *c, int li, int B, int T, const int32_t *key_mask,
                                const int32_t *segment);
/* Attention input of layer li: ws->xn = attn_norm(x_in) (s->rstd1 kept when not NULL); k, v = the k/v
 * projections (+ bias, + LoRA) of xn, k rotated at pos [N]. Queries: nq == 0: s->q for all N rows, rotated
 * at pos; nq > 0: only for the rows qrows [nq] (gathered into gbuf [nq, D]), rotated at qpos [nq]. */
void qa_layer_qkv_fwd(const qa_layer_run *r, int li, qa_layer_acts *s, qa_layer_ws *ws, int N, const float *x_in,
                      const int32_t *pos, int nq, const int32_t *qrows, const int32_t *qpos, float *gbuf);
/* Attention output and MLP of layer li on N rows: h = x_in + o_proj(att); x_out = h + down(silu(gate) * up)
 * of mlp_norm(h) (s->rstd2 kept when not NULL); every projection with its bias and LoRA. h and x_out may
 * alias x_in (inference updates the residual stream in place). */
void qa_layer_out_fwd(const qa_layer_run *r, int li, qa_layer_acts *s, qa_layer_ws *ws, int N, const float *att,
                      const float *x_in, float *h, float *x_out);
/* The whole layer on the batch of d: x_out = layer(x_in), saving into s what qa_layer_bwd needs. */
void qa_layer_fwd(const qa_layer_run *r, int li, qa_layer_acts *s, qa_layer_ws *ws, const qa_attn_desc *d,
                  const int32_t *pos, const float *x_in, float *x_out);
/* Backward of qa_layer_fwd. In: ws->dx = d loss / d x_out; out: ws->dx = d loss / d x_in when need_dx (else
 * only the LoRA gradients of the layer: the dX of q/k/v and of the input norm are skipped). LoRA gradients
 * accumulate into r->l's grads. */
void qa_layer_bwd(const qa_layer_run *r, int li, const qa_layer_acts *s, qa_layer_ws *ws, const qa_attn_desc *d,
                  const int32_t *pos, const float *x_in, int need_dx);

/* ---- the workspace structure training and inference share ----------------------------------------- */
/* Both workspaces are one backend block, carved by qa_ws_core_carve followed by their own views:
 *   ids, pos [N] | rows [R] | rowbuf [R, D] | logits [R, n_out] | xn [N, D], act [N, F] |
 *   layer sets: n_sets x (rstd1, rstd2 (train), q, k, v, att, lse, h, g, u, xa) | train: gradient scratch */
typedef struct qa_ws_shape {
    int N;                           /* tokens (B*T) */
    int R;                           /* rows that go through the head */
    int n_out;                       /* outputs per head row (V, or the head rows of inference) */
    int n_sets;                      /* layer sets: n_layers (training keeps every layer) or 1 */
    int train;                       /* rstd and per-module xa kept, gradient scratch */
    unsigned lora_modules;           /* LoRA the workspace was sized for (train: xa per module) */
    int lora_r;                      /* 0: none */
} qa_ws_shape;

typedef struct qa_ws_core {
    int32_t *ids, *pos;              /* [N] backend copies of the batch */
    int32_t *rows;                   /* [R] flat b*T+t of each head row */
    float *rowbuf;                   /* [R, D] gathered rows */
    float *logits;                   /* [R, n_out] */
    qa_layer_ws lw;
    qa_layer_acts *set;              /* [n_sets] host array of views */
} qa_ws_core;

/* Carve the shared part; core->set must hold sh->n_sets entries. */
void qa_ws_core_carve(qa_carve *cv, const qa_hf_config *c, const qa_ws_shape *sh, qa_ws_core *core);

typedef struct qa_acts_int {
    const qa_ops *ops;
    int lora_r;                      /* LoRA the workspace was sized for */
    unsigned lora_modules;
    qa_ws_core core;                 /* ids, pos, rows, rowbuf, logits, layer scratch and sets */
    int32_t *mask, *seg;             /* [N] backend copies of the batch */
    int32_t *targets;                /* [max_logit_rows] */
    float *row_loss, *row_lse;       /* [max_logit_rows] */
    float *xL;                       /* [N, D] last layer output before the final norm */
    float *rstd_f;                   /* [N] */
    int32_t *rows_host, *targets_host; /* [N] host */
    float *loss_host;                /* [max_logit_rows] host */
    int cur_B, cur_T;                /* shape of the last batch */
} qa_acts_int;

typedef struct qa_infer_int {
    qa_ws_core core;                 /* ids, pos, rows, rowbuf, out (logits), layer scratch and the one set */
    qa_layer_acts set;
    float *x;                        /* [N, D] the residual stream */
    int32_t *ctx;                    /* [R] cached positions of each row (or the query positions) */
    int32_t *pos_host, *rows_host;   /* [max_tokens], [max_rows] host staging */
} qa_infer_int;
#endif
