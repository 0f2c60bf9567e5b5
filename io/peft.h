/* peft.h — PEFT LoRA adapters on disk: adapter_config.json + adapter_model.safetensors.
 *
 * In memory an adapter is one contiguous f32 block (`params`) with typed views: for every layer
 * l and every targeted module m, A(l,m) is [r, in_features(m)] and B(l,m) is [out_features(m), r],
 * row-major, exactly the shapes PEFT stores. Untargeted modules have NULL views. The math is
 *     y = W x (+ b) + scaling * B (A x),   scaling = alpha / r.
 * On disk tensors are named
 *     base_model.model.model.layers.{l}.{self_attn|mlp}.{q_proj|...}.lora_{A|B}.weight
 * Reading accepts F32 / F64 / BF16 / F16 tensors (converted to f32) and checks that every targeted
 * module of every layer has both A and B with the shapes of the base model (qa_peft_shape), and that
 * the file holds nothing else. adapter_config.json: unknown keys are ignored; non-default values of features
 * qalign does not implement (rank/alpha patterns, DoRA, rsLoRA, layers_to_transform, bias,
 * fan_in_fan_out, modules_to_save, ...) are rejected naming the key.
 */
#ifndef QA_PEFT_H
#define QA_PEFT_H
#include "common/qa_err.h"
#include "common/qa_lora_modules.h"
#include <stddef.h>

/* The shapes an adapter has for one base model: n_layers, and per module m (common/qa_lora_modules.h)
 * A(l,m) is [r, in_features[m]], B(l,m) [out_features[m], r]. The caller computes them from the base
 * config (qa_lora_peft_shape, model/model.h): this format knows names and shapes, not the graph. */
typedef struct qa_peft_shape {
    int n_layers;
    int in_features[QA_LORA_N_MODULES], out_features[QA_LORA_N_MODULES];
} qa_peft_shape;

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

/* Allocate a zero-filled adapter of shape sh (params zeroed; initialization is the caller's). */
int qa_peft_alloc(qa_peft_adapter *a, const qa_peft_shape *sh, const qa_peft_config *cfg, qa_err *e);
/* Read an adapter directory (adapter_config.json + adapter_model.safetensors) for a base model of shape sh. */
int qa_peft_load(qa_peft_adapter *a, const char *dir, const qa_peft_shape *sh, qa_err *e);
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
