/* mem_estimate.h — the per-rank memory of LoRA training that `qalign train --dry-run` prints
 * (launch/cmd_train.c) and the sweep sizes its jobs with (sweep/resources.c): the bytes the run's
 * allocations make (model/ qa_model_memory_estimate: the frozen weights as the backend holds them, the
 * LoRA block with AdamW m and v, the activation workspace carved dry) for the micro-batch shape the
 * trainer allocates (qa_data_batch_shape_of, qa_train_logit_rows). */
#ifndef QA_MEM_ESTIMATE_H
#define QA_MEM_ESTIMATE_H
#include "common/qa_err.h"
#include "io/hf_config.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "train/train_config.h"

#include <stdint.h>

typedef struct qa_train_mem {
    qa_mem_estimate est;             /* bytes, per rank; est.total the sum */
    int B, T, logit_rows;            /* the micro-batch the trainer allocates */
    unsigned lora_modules;
    qa_quant quant;                  /* model.quant */
    int64_t lora_params;
} qa_train_mem;

/* tc: a finished config (model.path, model.quant, lora.*, train.micro_batch, data.padding_free); c: the model's
 * config.json; row_len: tokens per row (the pack length, or the longest example); world: ranks (the rows of a
 * pass with train.fuse_micro_batches; 1 gives the largest); ops: the backend (NULL: CPU).
 * The weights come from the checkpoint header at model.path when there is one, else from c
 * (est.weights_from_config). 0, or -1 + error (a bad model.quant, an unsupported shape). */
int qa_train_mem_estimate(const qa_train_config *tc, const qa_hf_config *c, int row_len, int world,
                          const qa_ops *ops, qa_train_mem *m, qa_err *e);
#endif
