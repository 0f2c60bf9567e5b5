/* peft.h — PEFT LoRA adapters on disk: adapter_config.json + adapter_model.safetensors.
 *
 * In memory an adapter is one contiguous f32 block (`params`) with typed views: for every layer
 * l and every targeted module m, A(l,m) is [r, in_features(m)] and B(l,m) is [out_features(m), r],
 * row-major, exactly the shapes PEFT stores. Untargeted modules have NULL views. The math is
 *     y = W x (+ b) + scaling * B (A x),   scaling = alpha / r.
 * On disk tensors are named
 *     base_model.model.model.layers.{l}.{self_attn|mlp}.{q_proj|...}.lora_{A|B}.weight
 * Reading accepts F32 / F64 / BF16 / F16 tensors (converted to f32) and checks that every targeted
 * module of every layer has both A and B with the shapes the base config implies, and that the file
 * holds nothing else. adapter_config.json: unknown keys are ignored; non-default values of features
 * qalign does not implement (rank/alpha patterns, DoRA, rsLoRA, layers_to_transform, bias,
 * fan_in_fan_out, modules_to_save, ...) are rejected naming the key.
 */
#ifndef QA_PEFT_H
#define QA_PEFT_H
#include "common/qa_err.h"
#include "io/hf_config.h"
#include <stddef.h>

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
/* in / out features of projection m under config c (q: hidden -> n_heads*head_dim, ...). */
void qa_lora_module_dims(const qa_hf_config *c, int m, int *in_features, int *out_features);
/* Parse a comma-separated list "q_proj,v_proj" (or "all") into a module mask; -1 on error. */
int qa_lora_parse_modules(const char *list, unsigned *mask, qa_err *e);

/* The adapter_config.json fields qalign uses. */
typedef struct qa_peft_config {
    int r;                          /* rank */
    double alpha;                   /* lora_alpha */
    double dropout;                 /* lora_dropout (training only) */
    unsigned module_mask;           /* QA_LORA_BIT(m) for every targeted module */
    char base_model[512];           /* base_model_name_or_path; "" = null */
    char task_type[32];             /* "CAUSAL_LM" */
} qa_peft_config;

typedef struct qa_peft_adapter {
    qa_peft_config cfg;
    int n_layers;
    int in_features[QA_LORA_N_MODULES], out_features[QA_LORA_N_MODULES];
    float *params;                  /* [n_params], all A and B matrices, one block */
    size_t n_params;
    /* views into params, indexed [layer * QA_LORA_N_MODULES + module]; NULL when not targeted */
    float **A;                      /* each [r, in_features[m]] */
    float **B;                      /* each [out_features[m], r] */
} qa_peft_adapter;

static inline float *qa_peft_A(const qa_peft_adapter *a, int layer, int m) { return a->A[layer * QA_LORA_N_MODULES + m]; }
static inline float *qa_peft_B(const qa_peft_adapter *a, int layer, int m) { return a->B[layer * QA_LORA_N_MODULES + m]; }
static inline double qa_peft_scaling(const qa_peft_adapter *a) { return a->cfg.alpha / a->cfg.r; }

/* Read and validate adapter_config.json (path to the file). */
int qa_peft_config_load(qa_peft_config *cfg, const char *path, qa_err *e);
int qa_peft_config_parse(qa_peft_config *cfg, const char *json_text, const char *name_for_errors, qa_err *e);

/* Allocate a zero-filled adapter for base config c (params zeroed; initialization is the caller's). */
int qa_peft_alloc(qa_peft_adapter *a, const qa_hf_config *c, const qa_peft_config *cfg, qa_err *e);
/* Read an adapter directory (adapter_config.json + adapter_model.safetensors) for base config c. */
int qa_peft_load(qa_peft_adapter *a, const char *dir, const qa_hf_config *c, qa_err *e);
/* Write an adapter directory PEFT can load (F32 tensors, metadata format=pt). A new dir is built in a
 * private staging directory and renamed into place complete. An existing adapter directory (it holds
 * adapter_config.json) or an empty one gets its two adapter files replaced, each atomically; nothing
 * else in it is touched. Any other existing directory or file is refused (qa_peft_check_dir). */
int qa_peft_save(const qa_peft_adapter *a, const char *dir, qa_err *e);
/* 0 when dir does not exist, is empty, or is a PEFT adapter directory; otherwise an error naming a
 * file in it that qalign did not write. */
int qa_peft_check_dir(const char *dir, qa_err *e);
void qa_peft_free(qa_peft_adapter *a);
#endif
