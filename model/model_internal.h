/* model_internal.h — workspace internals shared by the model/ sources (not part of the API). */
#ifndef QA_MODEL_INTERNAL_H
#define QA_MODEL_INTERNAL_H
#include "model/model.h"

#include <stdint.h>

/* Carving one backend block into 64-byte-aligned typed views: a dry pass (base NULL) only sums the
 * offsets, which sizes the block; the second pass over the allocated block hands out the views. */
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

/* what one layer's forward leaves for its backward (train: one set per layer; infer: one set) */
typedef struct qa_layer_acts {
    float *rstd1, *rstd2;            /* [N] */
    float *q, *att;                  /* [N, H*hd] q after RoPE, attention output */
    float *k, *v;                    /* [N, Hk*hd] k after RoPE */
    float *lse;                      /* [B, H, T] */
    float *h;                        /* [N, D] residual after attention */
    float *g, *u;                    /* [N, F] gate_proj / up_proj outputs */
    float *xa[QA_LORA_N_MODULES];    /* [N, r] LoRA drop(x) Aᵀ, NULL when not targeted */
} qa_layer_acts;

typedef struct qa_acts_int {
    const qa_ops *ops;
    int lora_r;                      /* LoRA the workspace was sized for */
    unsigned lora_modules;
    int32_t *ids, *pos, *mask, *seg; /* [N] backend copies of the batch */
    int32_t *rows, *targets;         /* [max_logit_rows] */
    float *row_loss, *row_lse;       /* [max_logit_rows] */
    float *xL;                       /* [N, D] last layer output before the final norm */
    float *rstd_f;                   /* [N] */
    float *rowbuf;                   /* [max_logit_rows, D] */
    float *xn;                       /* [N, D] normed layer input (scratch) */
    float *act;                      /* [N, F] silu(g)*u (scratch) */
    qa_layer_acts *layer;            /* [L] */
    float *dx, *dh, *dxn;            /* [N, D] (train) */
    float *da, *dg, *du;             /* [N, F] */
    float *datt, *dq;                /* [N, H*hd] */
    float *dk, *dv;                  /* [N, Hk*hd] */
    int32_t *rows_host, *targets_host; /* [N] host */
    float *loss_host;                /* [max_logit_rows] host */
    int cur_B, cur_T;                /* shape of the last batch */
} qa_acts_int;
#endif
