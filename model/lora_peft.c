/* lora_peft.c — qa_lora <-> PEFT adapter directories, through io/peft.h; the projections' shapes under a config. */
#include "model/model.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <limits.h>

#include <stdlib.h>
#include <string.h>

void qa_lora_module_dims(const qa_hf_config *c, int m, int *in, int *out) {
    int H = c->hidden, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim, I = c->intermediate;
    switch (m) {
    case QA_LORA_Q: *in = H; *out = q; break;
    case QA_LORA_K: case QA_LORA_V: *in = H; *out = kv; break;
    case QA_LORA_O: *in = q; *out = H; break;
    case QA_LORA_GATE: case QA_LORA_UP: *in = H; *out = I; break;
    case QA_LORA_DOWN: *in = I; *out = H; break;
    default: *in = *out = 0;
    }
}

void qa_lora_peft_shape(const qa_hf_config *c, qa_peft_shape *sh) {
    memset(sh, 0, sizeof *sh);
    sh->n_layers = c->n_layers;
    for (int m = 0; m < QA_LORA_N_MODULES; m++) qa_lora_module_dims(c, m, &sh->in_features[m], &sh->out_features[m]);
}

int qa_lora_load_peft(qa_lora *l, const qa_model *m, const char *dir, qa_err *e) {
    qa_peft_adapter ad;
    memset(&ad, 0, sizeof ad);
    qa_peft_shape sh;
    qa_lora_peft_shape(&m->cfg, &sh);
    QA_TRY(qa_peft_load(&ad, dir, &sh, e));
    if (qa_lora_init(l, m, ad.cfg.module_mask, ad.cfg.r, (float)ad.cfg.alpha, (float)ad.cfg.dropout, e)) {
        qa_peft_free(&ad);
        return qa_err_prefix(e, "adapter %s", dir);
    }
    for (int i = 0; i < l->n_layers; i++)
        for (int mod = 0; mod < QA_LORA_N_MODULES; mod++) {
            if (!qa_lora_at(l, i, mod)->present) continue;
            qa_lora_set(l, i, mod, 0, qa_peft_A(&ad, i, mod));
            qa_lora_set(l, i, mod, 1, qa_peft_B(&ad, i, mod));
        }
    qa_peft_free(&ad);
    return 0;
}

int qa_lora_save_peft(const qa_lora *l, const qa_model *m, const char *dir, qa_err *e) {
    return qa_lora_save_peft_base(l, m, NULL, dir, e);
}

int qa_lora_save_peft_base(const qa_lora *l, const qa_model *m, const char *base_model, const char *dir, qa_err *e) {
    qa_peft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (base_model && *base_model) {
        char abs[PATH_MAX];
        const char *b = qa_is_dir(base_model) && realpath(base_model, abs) ? abs : base_model;
        if (strlen(b) >= sizeof cfg.base_model)
            return QA_ERR(e, "base model path %s is longer than %zu bytes (adapter_config.json base_model_name_or_path)",
                          b, sizeof cfg.base_model - 1);
        snprintf(cfg.base_model, sizeof cfg.base_model, "%s", b);
    }
    cfg.r = l->r;
    cfg.alpha = l->alpha;
    cfg.dropout = l->dropout;
    cfg.module_mask = l->modules;
    strcpy(cfg.task_type, "CAUSAL_LM");
    qa_peft_adapter ad;
    memset(&ad, 0, sizeof ad);
    qa_peft_shape sh;
    qa_lora_peft_shape(&m->cfg, &sh);
    QA_TRY(qa_peft_alloc(&ad, &sh, &cfg, e));
    for (int i = 0; i < l->n_layers; i++)
        for (int mod = 0; mod < QA_LORA_N_MODULES; mod++) {
            const qa_lora_mat *t = qa_lora_at(l, i, mod);
            if (!t->present) continue;
            qa_model_to_host(m, qa_peft_A(&ad, i, mod), t->A, (size_t)l->r * t->in);
            qa_model_to_host(m, qa_peft_B(&ad, i, mod), t->B, (size_t)t->out * l->r);
        }
    int rc = qa_peft_save(&ad, dir, e);
    qa_peft_free(&ad);
    return rc;
}
