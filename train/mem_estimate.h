/* mem_estimate.h — the per-rank memory estimate of LoRA training that `qalign train --dry-run`
 * prints (launch/cmd_train.c), as a function: base weights (2 bytes per parameter, as stored),
 * the LoRA state (f32 parameter, gradient, AdamW m and v), activations kept for backward, the
 * attention probabilities, logits and their gradient — for micro-batch rows of T tokens. The
 * sweep sizes its jobs with it (sweep/resources.c), so an improved estimate lands in both. */
#ifndef QA_MEM_ESTIMATE_H
#define QA_MEM_ESTIMATE_H
#include "io/hf_config.h"
#include "train/train_config.h"

#include <stdint.h>

typedef struct qa_train_mem {
    double weights, adapter, activations, attention, logits, total; /* bytes */
    int64_t params, lora_params;
} qa_train_mem;

/* tc: a finished config (lora.targets, lora.r, train.micro_batch); c: the model's config.json. */
void qa_train_mem_estimate(const qa_train_config *tc, const qa_hf_config *c, int T, qa_train_mem *m);
#endif
