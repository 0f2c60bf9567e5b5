/* peft.c — PEFT LoRA adapter directories (docs: formats §4). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "io/peft.h"
#include "io/safetensors.h"
#include "io/hf_json.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- adapter_config.json */

/* The module key PEFT matches against: "model.layers.{l}.{self_attn|mlp}.{name}". */
static void module_key(char *buf, size_t n, int layer, int m) {
    snprintf(buf, n, "model.layers.%d.%s.%s", layer, qa_lora_module_parent(m), qa_lora_module_name(m));
}
static int suffix_match(const char *key, const char *t) {
    size_t lk = strlen(key), lt = strlen(t);
    if (lk == lt) return !strcmp(key, t);
    return lk > lt && key[lk - lt - 1] == '.' && !strcmp(key + lk - lt, t);
}

/* Representative layer count for pattern checks: targets are resolved per layer and must agree. */
#define QA_PEFT_PATTERN_LAYERS 64

static int targets_from_list(json_t *tm, unsigned *mask, const char *file, qa_err *e) {
    char key[128];
    *mask = 0;
    for (size_t i = 0; i < json_array_size(tm); i++) {
        json_t *s = json_array_get(tm, i);
        if (!json_is_string(s)) return QA_ERR(e, "%s: key \"target_modules[%zu]\" is not a string", file, i);
        const char *t = json_string_value(s);
        unsigned first = 0, any = 0;
        for (int l = 0; l < QA_PEFT_PATTERN_LAYERS; l++) {
            unsigned lm = 0;
            for (int m = 0; m < QA_LORA_N_MODULES; m++) {
                module_key(key, sizeof key, l, m);
                if (suffix_match(key, t)) lm |= QA_LORA_BIT(m);
            }
            if (l == 0) first = lm;
            else if (lm != first)
                return QA_ERR(e, "%s: key \"target_modules\": entry \"%s\" selects some layers only; per-layer targets "
                              "are not implemented", file, t);
            any |= lm;
        }
        if (!any)
            return QA_ERR(e, "%s: key \"target_modules\": entry \"%s\" names no linear projection qalign implements "
                          "(q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)", file, t);
        *mask |= any;
    }
    return 0;
}

static int targets_from_regex(const char *re, unsigned *mask, const char *file, qa_err *e) {
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &errcode, &erroff, NULL);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        return QA_ERR(e, "%s: key \"target_modules\" regex \"%s\" does not compile: %s at offset %zu", file, re,
                      (const char *)msg, (size_t)erroff);
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
    char key[128];
    unsigned first = 0;
    int rc = 0;
    for (int l = 0; l < QA_PEFT_PATTERN_LAYERS && !rc; l++) {
        unsigned lm = 0;
        for (int m = 0; m < QA_LORA_N_MODULES; m++) {
            module_key(key, sizeof key, l, m);
            /* Python re.fullmatch: anchored at both ends */
            int r = pcre2_match(code, (PCRE2_SPTR)key, strlen(key), 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED, md, NULL);
            if (r >= 0) lm |= QA_LORA_BIT(m);
        }
        if (l == 0) first = lm;
        else if (lm != first)
            rc = QA_ERR(e, "%s: key \"target_modules\" regex \"%s\" selects some layers only; per-layer targets are not "
                        "implemented", file, re);
    }
    pcre2_match_data_free(md);
    pcre2_code_free(code);
    if (rc) return -1;
    if (!first) return QA_ERR(e, "%s: key \"target_modules\" regex \"%s\" matches no linear projection", file, re);
    *mask = first;
    return 0;
}

/* a key that must be absent, null, false, empty, or equal to its default */
static int reject_nondefault(json_t *root, const char *key, const char *file, qa_err *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v) || json_is_false(v)) return 0;
    if ((json_is_object(v) && json_object_size(v) == 0) || (json_is_array(v) && json_array_size(v) == 0)) return 0;
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    QA_ERR(e, "%s: key \"%s\" = %.80s is not implemented by qalign (remove it or use the default)", file, key,
           s ? s : "?");
    free(s);
    return -1;
}

int qa_peft_config_parse(qa_peft_config *cfg, const char *text, const char *file, qa_err *e) {
    memset(cfg, 0, sizeof *cfg);
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (!root) return QA_ERR(e, "%s: not valid JSON: %s (line %d column %d)", file, jerr.text, jerr.line, jerr.column);
    int rc = 0;
#define FAIL(...) do { rc = QA_ERR(e, __VA_ARGS__); goto done; } while (0)
    if (!json_is_object(root)) FAIL("%s: not a JSON object", file);
    json_t *v = json_object_get(root, "peft_type");
    if (!json_is_string(v) || strcmp(json_string_value(v), "LORA"))
        FAIL("%s: key \"peft_type\" must be \"LORA\"", file);
    v = json_object_get(root, "task_type");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || strcmp(json_string_value(v), "CAUSAL_LM"))
            FAIL("%s: key \"task_type\" must be \"CAUSAL_LM\" (or null)", file);
    }
    snprintf(cfg->task_type, sizeof cfg->task_type, "CAUSAL_LM");
    v = json_object_get(root, "r");
    cfg->r = 8;
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65536)
            FAIL("%s: key \"r\" must be a positive integer", file);
        cfg->r = (int)json_integer_value(v);
    }
    v = json_object_get(root, "lora_alpha");
    cfg->alpha = 8;
    if (v && !json_is_null(v)) {
        if (!json_is_number(v)) FAIL("%s: key \"lora_alpha\" must be a number", file);
        cfg->alpha = json_number_value(v);
        /* the scale alpha / r multiplies every LoRA update; past 1e6 it can only overflow to Inf / NaN */
        if (!isfinite(cfg->alpha) || fabs(cfg->alpha) > 1e6)
            FAIL("%s: key \"lora_alpha\" = %g is outside [-1e6, 1e6]", file, cfg->alpha);
    }
    v = json_object_get(root, "lora_dropout");
    if (v && !json_is_null(v)) {
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) >= 1)
            FAIL("%s: key \"lora_dropout\" must be a number in [0, 1)", file);
        cfg->dropout = json_number_value(v);
    }
    v = json_object_get(root, "bias");
    if (v && !json_is_null(v) && (!json_is_string(v) || strcmp(json_string_value(v), "none")))
        FAIL("%s: key \"bias\" = %s is not implemented by qalign (only \"none\")", file,
             json_is_string(v) ? json_string_value(v) : "(not a string)");
    static const char *unsupported[] = {"rank_pattern", "alpha_pattern", "use_dora", "use_rslora",
                                        "layers_to_transform", "fan_in_fan_out", "modules_to_save", "exclude_modules",
                                        "layer_replication", "lora_bias", "target_parameters", "trainable_token_indices",
                                        "use_qalora", "use_bdlora", "alora_invocation_tokens", NULL};
    for (int i = 0; unsupported[i]; i++)
        if ((rc = reject_nondefault(root, unsupported[i], file, e))) goto done;
    v = json_object_get(root, "target_modules");
    if (!v || json_is_null(v)) {
        cfg->module_mask = QA_LORA_MASK_QV;  /* PEFT's default for llama / mistral / qwen2 */
    } else if (json_is_string(v)) {
        if ((rc = targets_from_regex(json_string_value(v), &cfg->module_mask, file, e))) goto done;
    } else if (json_is_array(v)) {
        if (json_array_size(v) == 0) FAIL("%s: key \"target_modules\" is empty", file);
        if ((rc = targets_from_list(v, &cfg->module_mask, file, e))) goto done;
    } else {
        FAIL("%s: key \"target_modules\" must be a list of module names or a regex string", file);
    }
    v = json_object_get(root, "base_model_name_or_path");
    if (json_is_string(v)) snprintf(cfg->base_model, sizeof cfg->base_model, "%s", json_string_value(v));
#undef FAIL
done:
    json_decref(root);
    return rc ? -1 : 0;
}

int qa_peft_config_load(qa_peft_config *cfg, const char *path, qa_err *e) {
    char *text;
    QA_TRY(qa_read_file(path, 16u << 20, &text, NULL, e));
    int rc = qa_peft_config_parse(cfg, text, path, e);
    free(text);
    return rc;
}

/* ---------------------------------------------------------------- adapters */

int qa_peft_alloc(qa_peft_adapter *a, const qa_peft_shape *sh, const qa_peft_config *cfg, qa_err *e) {
    memset(a, 0, sizeof *a);
    if (cfg->r < 1) return QA_ERR(e, "LoRA rank r = %d must be >= 1", cfg->r);
    if (!(cfg->module_mask & QA_LORA_MASK_ALL)) return QA_ERR(e, "LoRA adapter targets no module");
    a->cfg = *cfg;
    a->cfg.module_mask &= QA_LORA_MASK_ALL;
    a->n_layers = sh->n_layers;
    size_t n = 0;
    for (int m = 0; m < QA_LORA_N_MODULES; m++) {
        a->in_features[m] = sh->in_features[m];
        a->out_features[m] = sh->out_features[m];
        if (a->cfg.module_mask & QA_LORA_BIT(m))
            n += (size_t)cfg->r * ((size_t)a->in_features[m] + (size_t)a->out_features[m]);
    }
    a->n_params = n * (size_t)sh->n_layers;
    a->params = qa_calloc(a->n_params, sizeof(float));
    a->A = qa_calloc((size_t)sh->n_layers * QA_LORA_N_MODULES, sizeof *a->A);
    a->B = qa_calloc((size_t)sh->n_layers * QA_LORA_N_MODULES, sizeof *a->B);
    float *p = a->params;
    for (int l = 0; l < sh->n_layers; l++)
        for (int m = 0; m < QA_LORA_N_MODULES; m++) {
            if (!(a->cfg.module_mask & QA_LORA_BIT(m))) continue;
            a->A[l * QA_LORA_N_MODULES + m] = p;
            p += (size_t)cfg->r * a->in_features[m];
            a->B[l * QA_LORA_N_MODULES + m] = p;
            p += (size_t)a->out_features[m] * cfg->r;
        }
    return 0;
}

void qa_peft_free(qa_peft_adapter *a) {
    if (!a) return;
    free(a->params);
    free(a->A);
    free(a->B);
    memset(a, 0, sizeof *a);
}

static void tensor_name(char *buf, size_t n, int layer, int m, char ab) {
    snprintf(buf, n, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer, qa_lora_module_parent(m),
             qa_lora_module_name(m), ab);
}

int qa_peft_load(qa_peft_adapter *a, const char *dir, const qa_peft_shape *sh, qa_err *e) {
    memset(a, 0, sizeof *a);
    char *cfg_path = qa_path_join(dir, "adapter_config.json");
    char *st_path = qa_path_join(dir, "adapter_model.safetensors");
    qa_peft_config cfg;
    qa_safetensors st;
    int rc = qa_peft_config_load(&cfg, cfg_path, e);
    if (!rc && !qa_path_exists(st_path)) {
        char *bin = qa_path_join(dir, "adapter_model.bin");
        rc = QA_ERR(e, "%s: adapter_model.safetensors is missing%s", dir,
                    qa_path_exists(bin) ? " (adapter_model.bin, the pickle format, is not supported: re-save with "
                                          "safe_serialization=True)" : "");
        free(bin);
    }
    if (!rc) rc = qa_st_open(&st, st_path, e);
    if (rc) { free(cfg_path); free(st_path); return -1; }
    rc = qa_peft_alloc(a, sh, &cfg, e);
    char name[160];
    size_t used = 0;
    for (int l = 0; l < sh->n_layers && !rc; l++)
        for (int m = 0; m < QA_LORA_N_MODULES && !rc; m++) {
            if (!(a->cfg.module_mask & QA_LORA_BIT(m))) continue;
            for (int k = 0; k < 2 && !rc; k++) {
                const qa_st_tensor *t;
                int64_t shape[2];
                if (k == 0) { shape[0] = cfg.r; shape[1] = a->in_features[m]; }
                else { shape[0] = a->out_features[m]; shape[1] = cfg.r; }
                tensor_name(name, sizeof name, l, m, k ? 'B' : 'A');
                rc = qa_st_get(&st, name, 2, shape, &t, e);
                if (rc) {
                    if (!qa_st_find(&st, name))
                        qa_err_prefix(e, "adapter targets %s (r = %d) in every layer", qa_lora_module_name(m), cfg.r);
                    break;
                }
                float *dst = k ? qa_peft_B(a, l, m) : qa_peft_A(a, l, m);
                rc = qa_st_read_f32(&st, t, dst, e);
                for (int64_t i = 0; !rc && i < t->numel; i++)
                    if (!isfinite(dst[i]))
                        rc = QA_ERR(e, "%s: tensor '%s' element %lld is %s: the adapter holds non-finite weights",
                                    st_path, name, (long long)i, isnan(dst[i]) ? "NaN" : "infinite");
                used++;
            }
        }
    if (!rc && used != st.n_tensors) {
        for (size_t i = 0; i < st.n_tensors; i++) {
            int known = 0;
            for (int l = 0; l < sh->n_layers && !known; l++)
                for (int m = 0; m < QA_LORA_N_MODULES && !known; m++)
                    for (int k = 0; k < 2 && !known; k++) {
                        if (!(a->cfg.module_mask & QA_LORA_BIT(m))) continue;
                        tensor_name(name, sizeof name, l, m, k ? 'B' : 'A');
                        known = !strcmp(name, st.tensors[i].name);
                    }
            if (!known) {
                rc = QA_ERR(e, "%s: unexpected tensor '%s' (not a LoRA A/B of the targeted modules of a %d-layer model)",
                            st_path, st.tensors[i].name, sh->n_layers);
                break;
            }
        }
    }
    qa_st_close(&st);
    free(cfg_path);
    free(st_path);
    if (rc) { qa_peft_free(a); return -1; }
    return 0;
}

static char *config_json(const qa_peft_adapter *a) {
    json_t *o = json_object();
    json_object_set_new(o, "alpha_pattern", json_object());
    json_object_set_new(o, "auto_mapping", json_null());
    json_object_set_new(o, "base_model_name_or_path", a->cfg.base_model[0] ? json_string(a->cfg.base_model) : json_null());
    json_object_set_new(o, "bias", json_string("none"));
    json_object_set_new(o, "fan_in_fan_out", json_false());
    json_object_set_new(o, "inference_mode", json_true());
    json_object_set_new(o, "init_lora_weights", json_true());
    json_object_set_new(o, "layers_pattern", json_null());
    json_object_set_new(o, "layers_to_transform", json_null());
    double al = a->cfg.alpha;
    json_object_set_new(o, "lora_alpha", al == floor(al) && fabs(al) < 1e15 ? json_integer((json_int_t)al) : json_real(al));
    json_object_set_new(o, "lora_dropout", json_real(a->cfg.dropout));
    json_object_set_new(o, "modules_to_save", json_null());
    json_object_set_new(o, "peft_type", json_string("LORA"));
    json_object_set_new(o, "r", json_integer(a->cfg.r));
    json_object_set_new(o, "rank_pattern", json_object());
    json_object_set_new(o, "revision", json_null());
    json_t *tm = json_array();
    for (int m = 0; m < QA_LORA_N_MODULES; m++)
        if (a->cfg.module_mask & QA_LORA_BIT(m)) json_array_append_new(tm, json_string(qa_lora_module_name(m)));
    json_object_set_new(o, "target_modules", tm);
    json_object_set_new(o, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(o, "use_dora", json_false());
    json_object_set_new(o, "use_rslora", json_false());
    char *s = qa_json_dumps_py(o);
    json_decref(o);
    return s;
}

/* The two files of an adapter, each committed atomically into dir (which exists). */
static int save_files(const qa_peft_adapter *a, const char *dir, qa_err *e) {
    size_t n = 0;
    qa_st_entry *ents = qa_calloc((size_t)a->n_layers * QA_LORA_N_MODULES * 2 + 1, sizeof *ents);
    char (*names)[160] = qa_calloc((size_t)a->n_layers * QA_LORA_N_MODULES * 2 + 1, sizeof *names);
    for (int l = 0; l < a->n_layers; l++)
        for (int m = 0; m < QA_LORA_N_MODULES; m++) {
            if (!(a->cfg.module_mask & QA_LORA_BIT(m))) continue;
            for (int k = 0; k < 2; k++) {
                tensor_name(names[n], sizeof names[n], l, m, k ? 'B' : 'A');
                qa_st_entry *en = &ents[n];
                en->name = names[n];
                en->dtype = QA_DT_F32;
                en->ndim = 2;
                en->shape[0] = k ? a->out_features[m] : a->cfg.r;
                en->shape[1] = k ? a->cfg.r : a->in_features[m];
                en->data = k ? qa_peft_B(a, l, m) : qa_peft_A(a, l, m);
                n++;
            }
        }
    static const char *const meta[] = {"format", "pt", NULL};
    char *p1 = qa_path_join(dir, "adapter_model.safetensors"), *p2 = qa_path_join(dir, "adapter_config.json");
    int rc = qa_st_write(p1, ents, n, meta, e);
    if (!rc) {
        char *js = config_json(a);
        rc = qa_write_file_atomic(p2, js, strlen(js), e);
        free(js);
    }
    free(p1); free(p2); free(ents); free(names);
    return rc;
}

int qa_peft_check_dir(const char *dir, qa_err *e) {
    struct stat st;
    if (lstat(dir, &st) < 0) {
        if (errno == ENOENT) return 0;
        return QA_ERRNO(e, errno, "cannot inspect %s", dir);
    }
    if (!S_ISDIR(st.st_mode) && !(S_ISLNK(st.st_mode) && qa_is_dir(dir)))
        return QA_ERR(e, "%s exists and is not a directory: choose a new or empty directory for the adapter", dir);
    DIR *d = opendir(dir);
    if (!d) return QA_ERRNO(e, errno, "cannot list %s", dir);
    int adapter = 0;
    char other[256] = "";
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        if (!strcmp(nm, ".") || !strcmp(nm, "..")) continue;
        if (!strcmp(nm, "adapter_config.json")) adapter = 1;
        else if (strcmp(nm, "adapter_model.safetensors") && strcmp(nm, "README.md") && !strstr(nm, ".tmp.") && !other[0])
            snprintf(other, sizeof other, "%s", nm);
    }
    closedir(d);
    if (adapter || !other[0]) return 0;
    return QA_ERR(e, "%s holds files that are not a PEFT adapter (e.g. '%s'); qalign never removes what it did not "
                  "write: choose a new or empty directory (export-peft --force writes the two adapter files into it "
                  "and touches nothing else)", dir, other);
}

int qa_peft_save(const qa_peft_adapter *a, const char *dir, qa_err *e) {
    size_t nl = strlen(dir);
    while (nl > 1 && dir[nl - 1] == '/') nl--;
    char *d = qa_strndup(dir, nl);
    int rc = qa_peft_check_dir(d, e);
    if (!rc && qa_is_dir(d)) {
        /* an adapter directory (or an empty one): replace the adapter files only, each atomically */
        rc = save_files(a, d, e);
    } else if (!rc) {
        /* a new directory: built in a private staging directory, renamed into place complete */
        char *stage = qa_stage_dir_create(d, e);
        rc = stage ? save_files(a, stage, e) : -1;
        if (!rc) rc = qa_stage_dir_commit(stage, d, e);
        if (stage) qa_rm_tree(stage);  /* gone after the rename; left only after a failure */
        free(stage);
    }
    free(d);
    return rc;
}
