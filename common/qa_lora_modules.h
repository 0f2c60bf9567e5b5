/* qa_lora_modules.h — the seven linear projections of a decoder layer that LoRA can target, as data:
 * their order, Hugging Face names and parent blocks, and module masks. The model (model/) and the
 * PEFT adapter format (io/peft.h) share this list; the projections' shapes under a config are the
 * model's (qa_lora_module_dims, model/model.h). */
#ifndef QA_LORA_MODULES_H
#define QA_LORA_MODULES_H
#include "common/qa_err.h"

/* The seven linear projections of a decoder layer, in a fixed order. */
typedef enum qa_lora_module {
    QA_LORA_Q = 0, QA_LORA_K, QA_LORA_V, QA_LORA_O,   /* self_attn.{q,k,v,o}_proj */
    QA_LORA_GATE, QA_LORA_UP, QA_LORA_DOWN,           /* mlp.{gate,up,down}_proj */
    QA_LORA_N_MODULES
} qa_lora_module;
#define QA_LORA_BIT(m) (1u << (m))
#define QA_LORA_MASK_QV (QA_LORA_BIT(QA_LORA_Q) | QA_LORA_BIT(QA_LORA_V))
#define QA_LORA_MASK_ALL ((1u << QA_LORA_N_MODULES) - 1u)

const char *qa_lora_module_name(int m);    /* "q_proj" ... "down_proj" */
const char *qa_lora_module_parent(int m);  /* "self_attn" or "mlp" */
int qa_lora_module_from_name(const char *name); /* "q_proj" -> QA_LORA_Q; -1 if unknown */
/* Parse a comma-separated list "q_proj,v_proj" (or "all") into a module mask; -1 on error. */
int qa_lora_parse_modules(const char *list, unsigned *mask, qa_err *e);
#endif
