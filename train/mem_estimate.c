/* mem_estimate.c — see mem_estimate.h (the formula of `qalign train --dry-run`). */
#include "train/mem_estimate.h"

#include "model/model.h"

#include <string.h>

void qa_train_mem_estimate(const qa_train_config *tc, const qa_hf_config *c, int T, qa_train_mem *m) {
    memset(m, 0, sizeof *m);
    double H = c->hidden, I = c->intermediate, V = c->vocab, L = c->n_layers;
    double q = (double)c->n_heads * c->head_dim, kv = (double)c->n_kv_heads * c->head_dim, nh = c->n_heads;
    double B = tc->train.micro_batch, r = tc->lora.r;
    m->params = qa_hf_config_param_count(c);
    m->weights = (double)m->params * 2.0;
    unsigned mask = 0;
    for (int i = 0; i < tc->lora.targets.n; i++) {
        int mod = qa_lora_module_from_name(tc->lora.targets.v[i]);
        if (mod < 0 || (mask & QA_LORA_BIT(mod))) continue;
        mask |= QA_LORA_BIT(mod);
        int in, out;
        qa_lora_module_dims(c, mod, &in, &out);
        m->lora_params += (int64_t)tc->lora.r * (in + out);
    }
    m->lora_params *= c->n_layers;
    m->adapter = (double)m->lora_params * 16.0;
    double saved = 4 * H + 2 * q + 2 * kv + 3 * I + r * tc->lora.targets.n;
    m->activations = B * T * L * saved * 4.0;
    m->attention = B * nh * (double)T * T * L * 4.0;
    m->logits = B * T * V * 4.0 * 2.0;
    m->total = m->weights + m->adapter + m->activations + m->attention + m->logits;
}
