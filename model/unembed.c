/* unembed.c — lm_head(final_norm(h)) of host vectors (model/unembed.h). */
#include "model/unembed.h"

#define CHUNK 64 /* rows per backend call: [64, V] logits */

int qa_model_unembed(qa_model *m, const float *h, int n, int apply_norm, float *logits, qa_err *e) {
    const qa_hf_config *c = &m->cfg;
    const int D = c->hidden, V = c->vocab;
    if (n <= 0) return 0;
    const int rows = n < CHUNK ? n : CHUNK;
    float *x = m->ops->alloc(sizeof(float) * (size_t)rows * D, e);
    if (!x) return qa_err_prefix(e, "logit lens: %d x %d hidden states", rows, D);
    float *y = m->ops->alloc(sizeof(float) * (size_t)rows * V, e);
    if (!y) {
        m->ops->free(x);
        return qa_err_prefix(e, "logit lens: %d x %d logits", rows, V);
    }
    int rc = 0;
    for (int i0 = 0; i0 < n && !rc; i0 += rows) {
        const int k = n - i0 < rows ? n - i0 : rows;
        m->ops->memcpy_h2d(m->stream, x, h + (size_t)i0 * D, sizeof(float) * (size_t)k * D);
        if (apply_norm) m->ops->rmsnorm_fwd(m->stream, k, D, (float)c->rms_eps, x, m->final_norm, x, NULL);
        m->ops->linear_fwd(m->stream, k, D, V, 0, x, m->lm_head, (qa_weight){0}, y);
        m->ops->memcpy_d2h(m->stream, logits + (size_t)i0 * V, y, sizeof(float) * (size_t)k * V);
        rc = m->ops->sync(m->stream, e);
    }
    m->ops->free(x);
    m->ops->free(y);
    return rc;
}
