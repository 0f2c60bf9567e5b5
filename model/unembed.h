/* unembed.h — the logit lens on stored hidden states: lm_head(final_norm(h)) for host vectors
 * (activation dumps), without a forward. */
#ifndef QA_UNEMBED_H
#define QA_UNEMBED_H
#include "model/model.h"

/* logits [n, V] (host) = lm_head(apply_norm ? final_norm(h) : h) for h [n, D] (host), in chunks on
 * the model's backend. apply_norm = 0 for states that already went through the final norm (the
 * last entry of HF's hidden_states). */
int qa_model_unembed(qa_model *m, const float *h, int n, int apply_norm, float *logits, qa_err *e);
#endif
