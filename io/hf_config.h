/* hf_config.h — config.json of llama / mistral / qwen2 (Qwen1.5) checkpoints, both the
 * legacy (top-level rope_theta / rope_scaling) and the transformers-5 layout (rope_parameters).
 * Unknown model_type, hidden_act other than silu, or a rope scaling type qalign does not
 * implement are errors naming the file and key. */
#ifndef QA_HF_CONFIG_H
#define QA_HF_CONFIG_H
#include "common/qa_err.h"
#include <stdint.h>

typedef enum qa_arch { QA_ARCH_LLAMA = 1, QA_ARCH_MISTRAL, QA_ARCH_QWEN2 } qa_arch;

#define QA_MAX_LAYERS 512

typedef struct qa_hf_config {
    qa_arch arch;
    char model_type[32];        /* "llama" | "mistral" | "qwen2" */
    int hidden;                 /* hidden_size */
    int intermediate;           /* intermediate_size */
    int n_layers;               /* num_hidden_layers */
    int n_heads;                /* num_attention_heads */
    int n_kv_heads;             /* num_key_value_heads (default n_heads) */
    int head_dim;               /* head_dim (default hidden / n_heads) */
    int vocab;                  /* vocab_size */
    double rms_eps;             /* rms_norm_eps */
    double rope_theta;          /* resolved: rope_parameters.rope_theta > rope_theta > 10000 */
    int tie_embeddings;         /* tie_word_embeddings */
    int qkv_bias;               /* qwen2: always 1; llama: attention_bias */
    int o_bias;                 /* llama attention_bias also adds o_proj bias */
    int mlp_bias;               /* llama mlp_bias */
    int max_positions;          /* max_position_embeddings (informational) */
    /* per layer: 0 = full attention, W > 0 = sliding window of W keys (j > i - W) */
    int window[QA_MAX_LAYERS];
    int bos_token_id, eos_token_id; /* -1 when null/absent */
    char dtype_hint[16];        /* torch_dtype / dtype ("bfloat16"); informational, "" if absent */
} qa_hf_config;

int qa_hf_config_load(qa_hf_config *c, const char *config_json_path, qa_err *e);
int qa_hf_config_parse(qa_hf_config *c, const char *json_text, const char *name_for_errors, qa_err *e);
/* Write config.json in the layout transformers writes for this arch (legacy rope_theta layout). */
int qa_hf_config_write(const qa_hf_config *c, const char *path, qa_err *e);
/* Parameter count of the base model (embeddings, lm_head unless tied, norms, biases). */
int64_t qa_hf_config_param_count(const qa_hf_config *c);
/* Fill c with defaults for arch (hidden 64, 2 layers, 4 heads, 2 KV heads, intermediate 172, ...);
 * the caller then sets what it wants and calls qa_hf_config_finish to derive head_dim etc. */
void qa_hf_config_defaults(qa_hf_config *c, qa_arch arch);
void qa_hf_config_finish(qa_hf_config *c);         /* head_dim, kv heads, biases from the arch */
const char *qa_arch_name(qa_arch a);                /* "llama" */
const char *qa_arch_class(qa_arch a);               /* "LlamaForCausalLM" */
int qa_arch_from_name(const char *model_type);      /* -1 if unknown */

/* The tensors a checkpoint of config c must hold, in state-dict order (embed, layers, norm, lm_head). */
typedef struct qa_hf_tensor_spec {
    char name[96];
    int ndim;
    int64_t shape[2];
    int is_norm;                /* RMSNorm weight (initialized to 1) */
    int is_bias;
} qa_hf_tensor_spec;
/* Returns the number of specs and a heap array in *out (caller frees). */
size_t qa_hf_tensor_specs(const qa_hf_config *c, qa_hf_tensor_spec **out);

struct qa_safetensors;
/* Every tensor config c implies is present with the right shape and a float dtype (F32/BF16/F16),
 * and there is no unexpected tensor. The error names the file and the tensor. */
int qa_hf_check_tensors(const qa_hf_config *c, const struct qa_safetensors *st, qa_err *e);
#endif
