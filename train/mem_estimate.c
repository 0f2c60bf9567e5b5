/* mem_estimate.c — see mem_estimate.h. */
#include "train/mem_estimate.h"

#include "io/peft.h"
#include "io/safetensors.h"
#include "train/data.h"
#include "train/train.h"

#include <string.h>

int qa_train_mem_estimate(const qa_train_config *tc, const qa_hf_config *c, int row_len, int world,
                          const qa_ops *ops, qa_train_mem *m, qa_err *e) {
    memset(m, 0, sizeof *m);
    QA_TRY(qa_quant_parse(tc->model.quant, &m->quant, e));
    for (int i = 0; i < (int)tc->lora.targets.n; i++) {
        int mod = qa_lora_module_from_name(tc->lora.targets.v[i]);
        if (mod >= 0) m->lora_modules |= QA_LORA_BIT(mod);
    }
    m->lora_params = (int64_t)qa_lora_n_params(c, m->lora_modules, tc->lora.r);
    qa_data_batch_shape_of(tc->data.padding_free, qa_train_rows_per_pass(tc, world), row_len, &m->B, &m->T);
    m->logit_rows = qa_train_logit_rows(m->B, m->T);
    const qa_mem_shape s = {.train = 1, .B = m->B, .T = m->T, .max_logit_rows = m->logit_rows,
                            .lora_modules = m->lora_modules, .lora_r = tc->lora.r, .quant = m->quant};
    qa_safetensors st;
    qa_err ignore = {0}; /* no checkpoint (a model planned from its config.json): weights from c */
    const int have_st = tc->model.path && tc->model.path[0] && qa_st_open_dir(&st, tc->model.path, &ignore) == 0;
    int rc = qa_model_memory_estimate(c, have_st ? &st : NULL, ops, &s, &m->est, e);
    if (have_st) qa_st_close(&st);
    return rc;
}
