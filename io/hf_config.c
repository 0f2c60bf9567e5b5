/* hf_config.c — config.json of llama / mistral / qwen2 checkpoints (see docs: formats §2). */
#include "io/hf_config.h"
#include "io/bnb4.h"
#include "io/safetensors.h"
#include "io/hf_json.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { qa_arch a; const char *name, *cls; } ARCHS[] = {
    {QA_ARCH_LLAMA, "llama", "LlamaForCausalLM"},
    {QA_ARCH_MISTRAL, "mistral", "MistralForCausalLM"},
    {QA_ARCH_QWEN2, "qwen2", "Qwen2ForCausalLM"},
};

const char *qa_arch_name(qa_arch a) {
    for (size_t i = 0; i < 3; i++) if (ARCHS[i].a == a) return ARCHS[i].name;
    return "?";
}
const char *qa_arch_class(qa_arch a) {
    for (size_t i = 0; i < 3; i++) if (ARCHS[i].a == a) return ARCHS[i].cls;
    return "?";
}
int qa_arch_from_name(const char *s) {
    for (size_t i = 0; i < 3; i++) if (!strcmp(ARCHS[i].name, s)) return (int)ARCHS[i].a;
    return -1;
}

void qa_hf_config_defaults(qa_hf_config *c, qa_arch arch) {
    memset(c, 0, sizeof *c);
    c->arch = arch;
    snprintf(c->model_type, sizeof c->model_type, "%s", qa_arch_name(arch));
    c->hidden = 64;
    c->intermediate = 172;
    c->n_layers = 2;
    c->n_heads = 4;
    c->n_kv_heads = 2;
    c->head_dim = 0;
    c->vocab = 0;
    c->rms_eps = arch == QA_ARCH_QWEN2 ? 1e-6 : 1e-5;
    c->rope_theta = arch == QA_ARCH_QWEN2 ? 1000000.0 : 10000.0;
    c->tie_embeddings = 0;
    c->qkv_bias = arch == QA_ARCH_QWEN2;
    c->max_positions = arch == QA_ARCH_LLAMA ? 4096 : 32768;
    c->bos_token_id = c->eos_token_id = -1;
    snprintf(c->dtype_hint, sizeof c->dtype_hint, "bfloat16");
}

void qa_hf_config_finish(qa_hf_config *c) {
    if (c->n_kv_heads <= 0) c->n_kv_heads = c->n_heads;
    if (c->head_dim <= 0 && c->n_heads > 0) c->head_dim = c->hidden / c->n_heads;
    if (c->arch == QA_ARCH_QWEN2) { c->qkv_bias = 1; c->o_bias = 0; c->mlp_bias = 0; }
    if (c->arch == QA_ARCH_MISTRAL) { c->qkv_bias = c->o_bias = c->mlp_bias = 0; }
}

/* ---------------------------------------------------------------- parsing */

/* integer value of key (absent/null -> dflt; dflt < 0 and absent -> error "required") */
static int get_int(json_t *root, const char *key, int64_t dflt, int64_t lo, int64_t hi, int64_t *out, const char *file,
                   qa_err *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (dflt == INT64_MIN) return QA_ERR(e, "%s: key \"%s\" is required", file, key);
        *out = dflt;
        return 0;
    }
    int64_t x;
    if (json_is_integer(v)) x = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 9e15)
        x = (int64_t)json_real_value(v);
    else return QA_ERR(e, "%s: key \"%s\" must be an integer", file, key);
    if (x < lo || x > hi) return QA_ERR(e, "%s: key \"%s\" = %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]",
                                        file, key, x, lo, hi);
    *out = x;
    return 0;
}
static int get_num(json_t *o, const char *key, int *present, double *out, const char *file, const char *ctx,
                   qa_err *e) {
    json_t *v = json_object_get(o, key);
    *present = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return QA_ERR(e, "%s: key \"%s%s\" must be a number", file, ctx, key);
    *out = json_number_value(v);
    *present = 1;
    return 0;
}
static int get_bool(json_t *root, const char *key, int dflt, int *out, const char *file, qa_err *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) { *out = dflt; return 0; }
    if (!json_is_boolean(v)) return QA_ERR(e, "%s: key \"%s\" must be true or false", file, key);
    *out = json_is_true(v);
    return 0;
}
static int get_token_id(json_t *root, const char *key, int *out, const char *file, qa_err *e) {
    json_t *v = json_object_get(root, key);
    *out = -1;
    if (!v || json_is_null(v)) return 0;
    if (json_is_array(v)) v = json_array_size(v) ? json_array_get(v, 0) : NULL;  /* eos lists: the first */
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
        return QA_ERR(e, "%s: key \"%s\" must be a token id, a list of ids, or null", file, key);
    *out = (int)json_integer_value(v);
    return 0;
}

/* One rope parameter dict (rope_parameters or rope_scaling): accept only the default type. */
static int check_rope_dict(json_t *d, const char *file, const char *key, double *theta, int *have_theta, qa_err *e) {
    if (!json_is_object(d)) return QA_ERR(e, "%s: key \"%s\" must be an object or null", file, key);
    json_t *t = json_object_get(d, "rope_type");
    const char *tk = "rope_type";
    if (!t || json_is_null(t)) { t = json_object_get(d, "type"); tk = "type"; }
    if (t && !json_is_null(t)) {
        if (!json_is_string(t)) return QA_ERR(e, "%s: key \"%s.%s\" must be a string", file, key, tk);
        if (strcmp(json_string_value(t), "default"))
            return QA_ERR(e, "%s: key \"%s.%s\" = \"%s\": only the \"default\" RoPE is implemented", file, key, tk,
                          json_string_value(t));
    } else {
        /* no type: a dict that only sets rope_theta is the default RoPE; scaling parameters without a type
         * (Transformers rejects them) are not silently dropped */
        const char *k;
        json_t *v;
        json_object_foreach(d, k, v) {
            if (!strcmp(k, "rope_theta") || json_is_null(v)) continue;
            return QA_ERR(e, "%s: key \"%s.%s\" is given without a \"rope_type\": only the default RoPE (no scaling) is "
                          "implemented", file, key, k);
        }
    }
    char ctx[96];
    snprintf(ctx, sizeof ctx, "%s.", key);
    QA_TRY(get_num(d, "rope_theta", have_theta, theta, file, ctx, e));
    return 0;
}

static int parse_root(qa_hf_config *c, json_t *root, const char *file, qa_err *e) {
    memset(c, 0, sizeof *c);
    if (!json_is_object(root)) return QA_ERR(e, "%s: not a JSON object", file);
    json_t *mt = json_object_get(root, "model_type");
    if (!json_is_string(mt)) return QA_ERR(e, "%s: key \"model_type\" is missing or not a string", file);
    int a = qa_arch_from_name(json_string_value(mt));
    if (a < 0)
        return QA_ERR(e, "%s: key \"model_type\" = \"%.64s\" is not supported (qalign reads llama, mistral, qwen2)", file,
                      json_string_value(mt));
    c->arch = (qa_arch)a;
    snprintf(c->model_type, sizeof c->model_type, "%s", qa_arch_name(c->arch));
    int64_t v;
    const int64_t BIG = INT32_MAX;
    QA_TRY(get_int(root, "hidden_size", INT64_MIN, 1, BIG, &v, file, e)); c->hidden = (int)v;
    QA_TRY(get_int(root, "intermediate_size", INT64_MIN, 1, BIG, &v, file, e)); c->intermediate = (int)v;
    QA_TRY(get_int(root, "num_hidden_layers", INT64_MIN, 1, QA_MAX_LAYERS, &v, file, e)); c->n_layers = (int)v;
    QA_TRY(get_int(root, "num_attention_heads", INT64_MIN, 1, BIG, &v, file, e)); c->n_heads = (int)v;
    QA_TRY(get_int(root, "vocab_size", INT64_MIN, 1, BIG, &v, file, e)); c->vocab = (int)v;
    QA_TRY(get_int(root, "num_key_value_heads", c->n_heads, 1, c->n_heads, &v, file, e)); c->n_kv_heads = (int)v;
    if (c->n_heads % c->n_kv_heads)
        return QA_ERR(e, "%s: key \"num_key_value_heads\" = %d does not divide num_attention_heads = %d", file,
                      c->n_kv_heads, c->n_heads);
    json_t *hd = json_object_get(root, "head_dim");
    if ((!hd || json_is_null(hd)) && c->hidden % c->n_heads)
        return QA_ERR(e, "%s: key \"head_dim\" is absent and hidden_size %d is not a multiple of num_attention_heads %d",
                      file, c->hidden, c->n_heads);
    QA_TRY(get_int(root, "head_dim", c->hidden / c->n_heads, 1, BIG, &v, file, e)); c->head_dim = (int)v;
    if (c->head_dim % 2) return QA_ERR(e, "%s: key \"head_dim\" = %d must be even for RoPE", file, c->head_dim);
    /* every product the model forms from these sizes must fit its int / int64 arithmetic */
    if ((int64_t)c->n_heads * c->head_dim > BIG || (int64_t)c->n_kv_heads * c->head_dim > BIG)
        return QA_ERR(e, "%s: num_attention_heads %d x head_dim %d (or num_key_value_heads %d x head_dim) exceeds %d: "
                      "not a model qalign can hold", file, c->n_heads, c->head_dim, c->n_kv_heads, INT32_MAX);
    {
        double H = c->hidden, q = (double)c->n_heads * c->head_dim, kv = (double)c->n_kv_heads * c->head_dim,
               I = c->intermediate, V = c->vocab;
        double params = 2 * V * H + c->n_layers * (2 * H * q + 2 * H * kv + 3 * H * I + 2 * H);
        if (params > 1e14)
            return QA_ERR(e, "%s: the sizes (hidden %d, heads %d x %d, intermediate %d, vocab %d, %d layers) give %.3g "
                          "parameters: not a model qalign can hold", file, c->hidden, c->n_heads, c->head_dim,
                          c->intermediate, c->vocab, c->n_layers, params);
    }
    int present;
    QA_TRY(get_num(root, "rms_norm_eps", &present, &c->rms_eps, file, "", e));
    if (!present) return QA_ERR(e, "%s: key \"rms_norm_eps\" is required", file);
    if (!(c->rms_eps >= 0)) return QA_ERR(e, "%s: key \"rms_norm_eps\" must be >= 0", file);
    json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act) && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return QA_ERR(e, "%s: key \"hidden_act\" = %s: only \"silu\" is implemented", file,
                      json_is_string(act) ? json_string_value(act) : "(not a string)");
    QA_TRY(get_bool(root, "tie_word_embeddings", 0, &c->tie_embeddings, file, e));
    if (c->arch == QA_ARCH_LLAMA) {
        int ab, mb;
        QA_TRY(get_bool(root, "attention_bias", 0, &ab, file, e));
        QA_TRY(get_bool(root, "mlp_bias", 0, &mb, file, e));
        c->qkv_bias = c->o_bias = ab;
        c->mlp_bias = mb;
    } else if (c->arch == QA_ARCH_QWEN2) {
        c->qkv_bias = 1;
    }
    QA_TRY(get_int(root, "max_position_embeddings", 0, 0, INT32_MAX, &v, file, e)); c->max_positions = (int)v;
    QA_TRY(get_token_id(root, "bos_token_id", &c->bos_token_id, file, e));
    QA_TRY(get_token_id(root, "eos_token_id", &c->eos_token_id, file, e));
    json_t *dt = json_object_get(root, "dtype");
    if (!json_is_string(dt)) dt = json_object_get(root, "torch_dtype");
    if (json_is_string(dt)) snprintf(c->dtype_hint, sizeof c->dtype_hint, "%s", json_string_value(dt));

    /* RoPE: rope_parameters.rope_theta -> rope_theta -> 10000 */
    double theta = 10000.0, t;
    int have = 0;
    json_t *rp = json_object_get(root, "rope_parameters");
    if (rp && !json_is_null(rp)) {
        if (!json_is_object(rp)) return QA_ERR(e, "%s: key \"rope_parameters\" must be an object", file);
        /* either one dict, or one dict per layer type ({"full_attention": {...}, ...}) */
        const char *k; json_t *sub;
        int nested = 0, flat = 0;
        json_object_foreach(rp, k, sub) { if (json_is_object(sub)) nested = 1; else flat = 1; }
        if (nested && !flat) {
            int first = 1;
            json_object_foreach(rp, k, sub) {
                char key[128];
                snprintf(key, sizeof key, "rope_parameters.%s", k);
                int h;
                QA_TRY(check_rope_dict(sub, file, key, &t, &h, e));
                if (h) {
                    if (!first && have && t != theta)
                        return QA_ERR(e, "%s: key \"%s.rope_theta\": per-layer-type RoPE thetas differ; not implemented",
                                      file, key);
                    theta = t; have = 1;
                }
                first = 0;
            }
        } else {
            QA_TRY(check_rope_dict(rp, file, "rope_parameters", &t, &have, e));
            if (have) theta = t;
        }
    }
    json_t *rs = json_object_get(root, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        int h;
        QA_TRY(check_rope_dict(rs, file, "rope_scaling", &t, &h, e));
        if (h && !have) { theta = t; have = 1; }
    }
    if (!have) {
        QA_TRY(get_num(root, "rope_theta", &have, &t, file, "", e));
        if (have) theta = t;
    }
    if (!(theta > 0) || !isfinite(theta)) return QA_ERR(e, "%s: key \"rope_theta\" must be a finite number > 0", file);
    c->rope_theta = theta;

    /* sliding window */
    if (c->arch == QA_ARCH_MISTRAL) {
        json_t *sw = json_object_get(root, "sliding_window");
        int64_t w = 0;
        if (!sw) w = 4096;   /* MistralConfig default when the key is absent */
        else QA_TRY(get_int(root, "sliding_window", 0, 0, INT32_MAX, &w, file, e));
        for (int l = 0; l < c->n_layers; l++) c->window[l] = (int)w;
    } else if (c->arch == QA_ARCH_QWEN2) {
        int use;
        int64_t w, mwl;
        QA_TRY(get_bool(root, "use_sliding_window", 0, &use, file, e));
        /* Qwen2Config defaults: sliding_window 4096 when absent (null = none), max_window_layers 28 */
        QA_TRY(get_int(root, "sliding_window", json_object_get(root, "sliding_window") ? 0 : 4096, 0, INT32_MAX, &w,
                       file, e));
        QA_TRY(get_int(root, "max_window_layers", 28, 0, INT32_MAX, &mwl, file, e));
        if (!use) w = 0;
        json_t *lt = json_object_get(root, "layer_types");
        if (lt && !json_is_null(lt)) {
            if (!json_is_array(lt) || json_array_size(lt) != (size_t)c->n_layers)
                return QA_ERR(e, "%s: key \"layer_types\" must be a list of %d strings", file, c->n_layers);
            for (int l = 0; l < c->n_layers; l++) {
                json_t *s = json_array_get(lt, (size_t)l);
                const char *sv = json_is_string(s) ? json_string_value(s) : "";
                if (!strcmp(sv, "sliding_attention")) c->window[l] = (int)w;
                else if (!strcmp(sv, "full_attention")) c->window[l] = 0;
                else return QA_ERR(e, "%s: key \"layer_types[%d]\" = \"%s\" is not full_attention or sliding_attention",
                                   file, l, sv);
            }
        } else {
            for (int l = 0; l < c->n_layers; l++) c->window[l] = (l >= mwl) ? (int)w : 0;
        }
    }
    return 0;
}

int qa_hf_config_parse(qa_hf_config *c, const char *json_text, const char *name, qa_err *e) {
    json_error_t jerr;
    json_t *root = json_loads(json_text, 0, &jerr);
    if (!root) return QA_ERR(e, "%s: not valid JSON: %s (line %d column %d)", name, jerr.text, jerr.line, jerr.column);
    int rc = parse_root(c, root, name, e);
    json_decref(root);
    return rc;
}

int qa_hf_config_load(qa_hf_config *c, const char *path, qa_err *e) {
    char *text;
    QA_TRY(qa_read_file(path, 16u << 20, &text, NULL, e));
    int rc = qa_hf_config_parse(c, text, path, e);
    free(text);
    return rc;
}

/* ---------------------------------------------------------------- writing */

static int uniform_window(const qa_hf_config *c, int *w) {
    *w = c->window[0];
    for (int l = 1; l < c->n_layers; l++) if (c->window[l] != *w) return 0;
    return 1;
}

int qa_hf_config_write(const qa_hf_config *c, const char *path, qa_err *e) {
    /* JSON has no Inf / NaN: such a value would be dropped from the file without a word */
    if (!isfinite(c->rope_theta) || !(c->rope_theta > 0) || !isfinite(c->rms_eps) || c->rms_eps < 0)
        return QA_ERR(e, "%s: rope_theta %g / rms_norm_eps %g cannot be written (finite, positive values only)", path,
                      c->rope_theta, c->rms_eps);
    json_t *o = json_object();
    json_t *arch = json_array();
    json_array_append_new(arch, json_string(qa_arch_class(c->arch)));
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "attention_dropout", json_real(0.0));
    json_object_set_new(o, "bos_token_id", c->bos_token_id >= 0 ? json_integer(c->bos_token_id) : json_null());
    json_object_set_new(o, "eos_token_id", c->eos_token_id >= 0 ? json_integer(c->eos_token_id) : json_null());
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden));
    json_object_set_new(o, "initializer_range", json_real(0.02));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_positions));
    json_object_set_new(o, "model_type", json_string(qa_arch_name(c->arch)));
    json_object_set_new(o, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->n_kv_heads));
    json_object_set_new(o, "pad_token_id", json_null());
    json_object_set_new(o, "rms_norm_eps", json_real(c->rms_eps));
    json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_embeddings));
    json_object_set_new(o, "torch_dtype", json_string(c->dtype_hint[0] ? c->dtype_hint : "bfloat16"));
    json_object_set_new(o, "transformers_version", json_string("4.46.0"));  /* the layout written is 4.46's */
    json_object_set_new(o, "use_cache", json_true());
    json_object_set_new(o, "vocab_size", json_integer(c->vocab));
    int default_hd = c->n_heads > 0 && c->hidden % c->n_heads == 0 && c->head_dim == c->hidden / c->n_heads;
    int w, uni = uniform_window(c, &w);
    switch (c->arch) {
    case QA_ARCH_LLAMA:
        if (c->qkv_bias != c->o_bias) { json_decref(o); return QA_ERR(e, "%s: llama attention_bias covers q,k,v and o together", path); }
        json_object_set_new(o, "attention_bias", json_boolean(c->qkv_bias));
        json_object_set_new(o, "head_dim", json_integer(c->head_dim));
        json_object_set_new(o, "mlp_bias", json_boolean(c->mlp_bias));
        json_object_set_new(o, "pretraining_tp", json_integer(1));
        json_object_set_new(o, "rope_scaling", json_null());
        if (!uni || w) { json_decref(o); return QA_ERR(e, "%s: llama has no sliding-window attention", path); }
        break;
    case QA_ARCH_MISTRAL:
        json_object_set_new(o, "head_dim", json_integer(c->head_dim));
        if (!uni) { json_decref(o); return QA_ERR(e, "%s: mistral applies one sliding window to every layer", path); }
        json_object_set_new(o, "sliding_window", w ? json_integer(w) : json_null());
        break;
    case QA_ARCH_QWEN2: {
        if (!default_hd) json_object_set_new(o, "head_dim", json_integer(c->head_dim));
        json_object_set_new(o, "rope_scaling", json_null());
        /* window: none, or W on layers >= max_window_layers, or an explicit layer_types list */
        int W = 0, first = c->n_layers, ok = 1;
        for (int l = 0; l < c->n_layers; l++)
            if (c->window[l]) { if (W && c->window[l] != W) ok = 0; W = c->window[l]; if (first == c->n_layers) first = l; }
        if (!ok) { json_decref(o); return QA_ERR(e, "%s: qwen2 uses one sliding window size for all windowed layers", path); }
        int tail = 1;
        for (int l = first; l < c->n_layers; l++) if (!c->window[l]) tail = 0;
        json_object_set_new(o, "use_sliding_window", json_boolean(W > 0));
        json_object_set_new(o, "sliding_window", W ? json_integer(W) : json_null());
        json_object_set_new(o, "max_window_layers", json_integer(W ? first : c->n_layers));
        if (W && !tail) {
            json_t *lt = json_array();
            for (int l = 0; l < c->n_layers; l++)
                json_array_append_new(lt, json_string(c->window[l] ? "sliding_attention" : "full_attention"));
            json_object_set_new(o, "layer_types", lt);
        }
        if (c->o_bias || c->mlp_bias || !c->qkv_bias) {
            json_decref(o);
            return QA_ERR(e, "%s: qwen2 has q/k/v biases only", path);
        }
        break;
    }
    }
    int rc = qa_json_write_py(path, o, e);
    json_decref(o);
    return rc;
}

/* ---------------------------------------------------------------- tensors */

int64_t qa_hf_config_param_count(const qa_hf_config *c) {
    int64_t H = c->hidden, I = c->intermediate, V = c->vocab, q = (int64_t)c->n_heads * c->head_dim,
            kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t layer = H * q + 2 * H * kv + q * H + 3 * H * I + 2 * H;
    if (c->qkv_bias) layer += q + 2 * kv;
    if (c->o_bias) layer += H;
    if (c->mlp_bias) layer += 2 * I + H;
    return V * H * (c->tie_embeddings ? 1 : 2) + (int64_t)c->n_layers * layer + H;
}

static void add_spec(qa_hf_tensor_spec *s, size_t *n, const char *name, int ndim, int64_t d0, int64_t d1, int is_norm,
                     int is_bias) {
    qa_hf_tensor_spec *t = &s[(*n)++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->is_norm = is_norm;
    t->is_bias = is_bias;
}

size_t qa_hf_tensor_specs(const qa_hf_config *c, qa_hf_tensor_spec **out) {
    size_t cap = 3 + (size_t)c->n_layers * 20, n = 0;
    qa_hf_tensor_spec *s = qa_calloc(cap, sizeof *s);
    int64_t H = c->hidden, I = c->intermediate, V = c->vocab, q = (int64_t)c->n_heads * c->head_dim,
            kv = (int64_t)c->n_kv_heads * c->head_dim;
    char nm[96];
    add_spec(s, &n, "model.embed_tokens.weight", 2, V, H, 0, 0);
    for (int l = 0; l < c->n_layers; l++) {
        static const char *proj[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
        int64_t outs[4] = {q, kv, kv, H}, ins[4] = {H, H, H, q};
        for (int p = 0; p < 4; p++) {
            snprintf(nm, sizeof nm, "model.layers.%d.self_attn.%s.weight", l, proj[p]);
            add_spec(s, &n, nm, 2, outs[p], ins[p], 0, 0);
            if ((p < 3 && c->qkv_bias) || (p == 3 && c->o_bias)) {
                snprintf(nm, sizeof nm, "model.layers.%d.self_attn.%s.bias", l, proj[p]);
                add_spec(s, &n, nm, 1, outs[p], 0, 0, 1);
            }
        }
        static const char *mlp[3] = {"gate_proj", "up_proj", "down_proj"};
        int64_t mo[3] = {I, I, H}, mi[3] = {H, H, I};
        for (int p = 0; p < 3; p++) {
            snprintf(nm, sizeof nm, "model.layers.%d.mlp.%s.weight", l, mlp[p]);
            add_spec(s, &n, nm, 2, mo[p], mi[p], 0, 0);
            if (c->mlp_bias) {
                snprintf(nm, sizeof nm, "model.layers.%d.mlp.%s.bias", l, mlp[p]);
                add_spec(s, &n, nm, 1, mo[p], 0, 0, 1);
            }
        }
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        add_spec(s, &n, nm, 1, H, 0, 1, 0);
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
        add_spec(s, &n, nm, 1, H, 0, 1, 0);
    }
    add_spec(s, &n, "model.norm.weight", 1, H, 0, 1, 0);
    if (!c->tie_embeddings) add_spec(s, &n, "lm_head.weight", 2, V, H, 0, 0);
    *out = s;
    return n;
}

static int cmp_spec_name(const void *a, const void *b) {
    return strcmp(((const qa_hf_tensor_spec *)a)->name, ((const qa_hf_tensor_spec *)b)->name);
}

/* tensors a checkpoint may carry that HF ignores on load */
static int ignorable(const qa_hf_config *c, const qa_st_tensor *t) {
    const char *n = t->name, *suf = ".self_attn.rotary_emb.inv_freq";
    size_t ln = strlen(n), ls = strlen(suf);
    if (ln > ls && !strcmp(n + ln - ls, suf) && !strncmp(n, "model.layers.", 13)) return 1;
    /* a tied model saved with its (identical) lm_head: HF re-ties it on load */
    if (c->tie_embeddings && !strcmp(n, "lm_head.weight") && t->ndim == 2 && t->shape[0] == c->vocab &&
        t->shape[1] == c->hidden) return 1;
    return 0;
}

int qa_hf_check_tensors(const qa_hf_config *c, const qa_safetensors *st, qa_err *e) {
    qa_hf_tensor_spec *s;
    size_t n = qa_hf_tensor_specs(c, &s);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (qa_bnb4_is_quantized(st, s[i].name)) { /* a 4-bit weight (io/bnb4.h): validated there */
            qa_bnb4_tensor q;
            rc = qa_bnb4_get(st, s[i].name, s[i].ndim, s[i].shape, &q, e);
            continue;
        }
        const qa_st_tensor *t = qa_st_find(st, s[i].name);
        char want[64];
        if (s[i].ndim == 2) snprintf(want, sizeof want, "[%" PRId64 ", %" PRId64 "]", s[i].shape[0], s[i].shape[1]);
        else snprintf(want, sizeof want, "[%" PRId64 "]", s[i].shape[0]);
        if (!t) {
            rc = QA_ERR(e, "%s: tensor '%s' is missing (config.json of this %s model implies shape %s)",
                        qa_st_file_of(st, NULL), s[i].name, c->model_type, want);
            break;
        }
        int ok = t->ndim == s[i].ndim;
        for (int k = 0; ok && k < s[i].ndim; k++) ok = t->shape[k] == s[i].shape[k];
        if (!ok) {
            char have[160] = "[";
            for (int k = 0; k < t->ndim; k++)
                snprintf(have + strlen(have), sizeof have - strlen(have), k ? ", %" PRId64 : "%" PRId64, t->shape[k]);
            strcat(have, "]");
            rc = QA_ERR(e, "%s: tensor '%s' has shape %s but config.json (hidden %d, heads %d, kv heads %d, head_dim %d, "
                        "intermediate %d, vocab %d) implies %s", qa_st_file_of(st, t), s[i].name, have, c->hidden,
                        c->n_heads, c->n_kv_heads, c->head_dim, c->intermediate, c->vocab, want);
            break;
        }
        if (t->dtype != QA_DT_BF16 && t->dtype != QA_DT_F32 && t->dtype != QA_DT_F16) {
            rc = QA_ERR(e, "%s: tensor '%s' has dtype %s; model weights must be BF16, F16 or F32", qa_st_file_of(st, t),
                        s[i].name, t->dtype_name);
            break;
        }
    }
    if (!rc) {
        qsort(s, n, sizeof *s, cmp_spec_name);
        for (size_t i = 0; i < st->n_tensors && !rc; i++) {
            qa_hf_tensor_spec key;
            snprintf(key.name, sizeof key.name, "%s", st->tensors[i].name);
            if (strlen(st->tensors[i].name) >= sizeof key.name ||
                !bsearch(&key, s, n, sizeof *s, cmp_spec_name)) {
                if (ignorable(c, &st->tensors[i]) || qa_bnb4_is_companion(st, st->tensors[i].name)) continue;
                rc = QA_ERR(e, "%s: unexpected tensor '%s' (not part of a %s model with this config.json)",
                            qa_st_file_of(st, &st->tensors[i]), st->tensors[i].name, c->model_type);
            }
        }
    }
    free(s);
    return rc;
}
