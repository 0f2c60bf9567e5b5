/* merge.c — a merged model directory: W' = W + (alpha/r)·B·A on every LoRA-targeted projection,
 * written tensor by tensor (memory: one 32 MiB chunk). With an output dtype every floating tensor is
 * converted to it (one dtype for the whole directory) and config.json's torch_dtype / dtype say so;
 * without one ("same") every other tensor is copied bit for bit and config.json as it is.
 * An NF4 base (quantized at load or read from a 4-bit checkpoint) is merged as PEFT merges into a
 * dequantized base: every projection is written dequantized (code * absmax), plus the LoRA delta where
 * targeted, as BF16 (or the output dtype); the 4-bit companion tensors and config.json's
 * quantization_config go. */
#include "model/model.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "io/bnb4.h"
#include "io/hf_json.h"
#include "io/safetensors.h"
#include "kernels/nf4.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct merge_ctx {
    const qa_model *m;
    const qa_lora *l;
    const qa_st_tensor **src;   /* [n] source tensor of each entry */
    int *layer, *mod;           /* [n] LoRA target of each entry; mod -1: copied, -2: converted */
    const qa_weight **nf4;      /* [n] the model's NF4 weight of a projection entry, or NULL */
    int64_t *cols;              /* [n] row length of an NF4 entry */
    float *row;                 /* [max_in] scratch */
    int max_in;
} merge_ctx;

/* the model weight of projection `name` (model.layers.N.<parent>.<module>.weight), or NULL */
static const qa_weight *proj_weight(const qa_model *m, const char *name, int64_t *rows, int64_t *cols) {
    int li;
    char tail[128];
    if (sscanf(name, "model.layers.%d.%127s", &li, tail) != 2 || li < 0 || li >= m->cfg.n_layers) return NULL;
    const qa_layer_weights *L = &m->layers[li];
    const qa_weight *w[QA_LORA_N_MODULES] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->wgate, &L->wup, &L->wdown};
    for (int mod = 0; mod < QA_LORA_N_MODULES; mod++) {
        char want[128];
        snprintf(want, sizeof want, "%s.%s.weight", qa_lora_module_parent(mod), qa_lora_module_name(mod));
        if (strcmp(tail, want)) continue;
        int in, out;
        qa_lora_module_dims(&m->cfg, mod, &in, &out);
        *rows = out;
        *cols = in;
        return w[mod];
    }
    return NULL;
}

/* Which (layer, module) a tensor name is, if it is a targeted projection weight. */
static void lora_target_of(const qa_lora *l, const char *name, int *layer, int *mod) {
    *layer = -1;
    *mod = -1;
    int li;
    char tail[128];
    if (sscanf(name, "model.layers.%d.%127s", &li, tail) != 2 || li < 0 || li >= l->n_layers) return;
    for (int m = 0; m < QA_LORA_N_MODULES; m++) {
        char want[128];
        snprintf(want, sizeof want, "%s.%s.weight", qa_lora_module_parent(m), qa_lora_module_name(m));
        if (!strcmp(tail, want) && qa_lora_at(l, li, m)->present) { *layer = li; *mod = m; return; }
    }
}

static void store(void *dst, size_t i, qa_dtype dt, float v) {
    switch (dt) {
    case QA_DT_BF16: ((uint16_t *)dst)[i] = qa_f32_to_bf16(v); break;
    case QA_DT_F16: ((uint16_t *)dst)[i] = qa_f32_to_f16(v); break;
    case QA_DT_F64: ((double *)dst)[i] = v; break;
    default: ((float *)dst)[i] = v; break;
    }
}

static int fill(void *vctx, const qa_st_entry *ent, size_t index, uint64_t first, uint64_t count, void *dst, qa_err *e) {
    merge_ctx *c = vctx;
    const qa_st_tensor *t = c->src[index];
    if (c->mod[index] == -2) { /* converted to the output dtype, in pieces of the row scratch */
        size_t es = qa_dtype_size(t->dtype);
        for (uint64_t k = 0; k < count;) {
            uint64_t n = count - k < (uint64_t)c->max_in ? count - k : (uint64_t)c->max_in;
            qa_convert_to_f32(c->row, (const uint8_t *)t->data + (first + k) * es, t->dtype, n);
            for (uint64_t j = 0; j < n; j++) store(dst, k + j, ent->dtype, c->row[j]);
            k += n;
        }
        return 0;
    }
    const qa_weight *w4 = c->nf4[index];
    if (w4) { /* NF4 projection: dequantized (+ the LoRA delta below) */
        const size_t numel = (size_t)ent->shape[0] * (size_t)ent->shape[1];
        const float *am = qa_nf4_absmax(w4->data, numel);
        const qa_lora_mat *lm = c->mod[index] >= 0 ? qa_lora_at(c->l, c->layer[index], c->mod[index]) : NULL;
        const int in = (int)c->cols[index], r = c->l->r;
        float *A = NULL, *B = NULL;
        if (lm) {
            A = qa_malloc((size_t)r * in * sizeof *A);
            B = qa_malloc((size_t)lm->out * r * sizeof *B);
            qa_model_to_host(c->m, A, lm->A, (size_t)r * in);
            qa_model_to_host(c->m, B, lm->B, (size_t)lm->out * r);
        }
        for (uint64_t k = 0; k < count; k++) {
            const uint64_t flat = first + k, row = flat / (uint64_t)in, col = flat % (uint64_t)in;
            double v = qa_nf4_get(w4->data, am, flat);
            if (lm) {
                double acc = 0;
                for (int q = 0; q < r; q++) acc += (double)B[row * r + q] * A[(size_t)q * in + col];
                v = (float)v + (float)(c->l->scale * acc);
            }
            store(dst, k, ent->dtype, (float)v);
        }
        free(A);
        free(B);
        return 0;
    }
    if (c->mod[index] < 0) { /* copied as is */
        size_t es = qa_dtype_size(ent->dtype) ? qa_dtype_size(ent->dtype) : (size_t)(t->nbytes / (t->numel ? t->numel : 1));
        memcpy(dst, (const uint8_t *)t->data + first * es, count * es);
        return 0;
    }
    const qa_lora *l = c->l;
    const qa_lora_mat *lm = qa_lora_at(l, c->layer[index], c->mod[index]);
    const int in = lm->in, r = l->r;
    float *A = qa_malloc((size_t)r * in * sizeof *A), *B = qa_malloc((size_t)lm->out * r * sizeof *B);
    qa_model_to_host(c->m, A, lm->A, (size_t)r * in);
    qa_model_to_host(c->m, B, lm->B, (size_t)lm->out * r);
    for (uint64_t k = 0; k < count;) {
        uint64_t flat = first + k, row = flat / (uint64_t)in, col = flat % (uint64_t)in;
        uint64_t n = (uint64_t)in - col;
        if (n > count - k) n = count - k;
        qa_convert_to_f32(c->row, (const uint8_t *)t->data + (row * in + col) * qa_dtype_size(t->dtype), t->dtype, n);
        for (uint64_t j = 0; j < n; j++) {
            double acc = 0;
            for (int q = 0; q < r; q++) acc += (double)B[row * r + q] * A[(size_t)q * in + col + j];
            store(dst, k + j, ent->dtype, c->row[j] + (float)(l->scale * acc));
        }
        k += n;
    }
    free(A);
    free(B);
    (void)e;
    return 0;
}

static int copy_side_file(const char *src_dir, const char *dst_dir, const char *name, qa_err *e) {
    char *s = qa_path_join(src_dir, name), *d = qa_path_join(dst_dir, name);
    int rc = qa_path_exists(s) ? qa_copy_file(s, d, e) : 0;
    free(s);
    free(d);
    return rc;
}

/* config.json for the merged directory: with an output dtype, torch_dtype (and dtype, where the file has
 * that newer key) = that dtype, so that transformers loads the tensors in the dtype they were written in;
 * drop_quant (an NF4 base): without quantization_config (the merged weights are float). */
static int write_config(const char *src_dir, const char *dst_dir, qa_dtype dt, int drop_quant, qa_err *e) {
    char *src = qa_path_join(src_dir, "config.json"), *dst = qa_path_join(dst_dir, "config.json");
    json_error_t je;
    json_t *j = json_load_file(src, 0, &je);
    int rc = 0;
    if (!j || !json_is_object(j)) {
        rc = QA_ERR(e, "merge: %s: %s (line %d)", src, j ? "not a JSON object" : je.text, j ? 0 : je.line);
    } else {
        if (drop_quant) json_object_del(j, "quantization_config");
        if (dt != QA_DT_INVALID) {
            const char *name = dt == QA_DT_F32 ? "float32" : dt == QA_DT_F16 ? "float16" : "bfloat16";
            json_object_set_new(j, "torch_dtype", json_string(name));
            if (json_object_get(j, "dtype")) json_object_set_new(j, "dtype", json_string(name));
        }
        rc = qa_json_write_py(dst, j, e);
    }
    json_decref(j);
    free(src);
    free(dst);
    return rc;
}

int qa_model_merge_lora(const qa_model *m, const qa_lora *l, const char *model_dir, const char *out_dir,
                        qa_dtype out_dtype, qa_err *e) {
    if (out_dtype != QA_DT_INVALID && out_dtype != QA_DT_BF16 && out_dtype != QA_DT_F32 && out_dtype != QA_DT_F16)
        return QA_ERR(e, "merge: output dtype %s is not supported (use BF16, F16 or F32)", qa_dtype_name(out_dtype));
    if (!m->ops->host_memory)
        return QA_ERR(e, "merge reads the base weights on the host: load the model with the cpu backend (qa_model_load "
                      "with ops NULL); qalign merge always does");
    QA_TRY(qa_mkdir_p(out_dir, e));
    const qa_safetensors *st = &m->st;
    size_t n = st->n_tensors;
    qa_st_entry *ents = qa_calloc(n, sizeof *ents);
    merge_ctx c = {.m = m, .l = l};
    c.src = qa_calloc(n, sizeof *c.src);
    c.layer = qa_calloc(n, sizeof *c.layer);
    c.mod = qa_calloc(n, sizeof *c.mod);
    c.nf4 = qa_calloc(n, sizeof *c.nf4);
    c.cols = qa_calloc(n, sizeof *c.cols);
    int max_in = 1, merged = 0;
    size_t ne = 0;
    for (size_t k = 0; k < n; k++) {
        const qa_st_tensor *t = &st->tensors[k];
        if (qa_bnb4_is_companion(st, t->name)) continue; /* absmax, quant_map, quant_state: gone with the 4 bits */
        const size_t i = ne++;
        c.src[i] = t;
        int64_t rows = 0, cols = 0;
        const qa_weight *pw = m->quant != QA_QUANT_NONE ? proj_weight(m, t->name, &rows, &cols) : NULL;
        if (pw && pw->dtype == QA_DT_NF4) {
            c.nf4[i] = pw;
            c.cols[i] = cols;
            ents[i].name = t->name;
            ents[i].ndim = 2;
            ents[i].shape[0] = rows;
            ents[i].shape[1] = cols;
            ents[i].dtype = out_dtype == QA_DT_INVALID ? QA_DT_BF16 : out_dtype;
            lora_target_of(l, t->name, &c.layer[i], &c.mod[i]);
            merged += c.mod[i] >= 0;
            continue;
        }
        ents[i].name = t->name;
        ents[i].ndim = t->ndim;
        memcpy(ents[i].shape, t->shape, sizeof t->shape);
        ents[i].dtype = t->dtype;
        ents[i].dtype_name = t->dtype == QA_DT_OTHER ? t->dtype_name : NULL;
        lora_target_of(l, t->name, &c.layer[i], &c.mod[i]);
        int is_float = t->dtype == QA_DT_BF16 || t->dtype == QA_DT_F32 || t->dtype == QA_DT_F16 || t->dtype == QA_DT_F64;
        if (c.mod[i] < 0 && is_float && out_dtype != QA_DT_INVALID && t->dtype != out_dtype) {
            c.mod[i] = -2;
            ents[i].dtype = out_dtype;
        }
        if (c.mod[i] >= 0) {
            if (t->dtype != QA_DT_BF16 && t->dtype != QA_DT_F32 && t->dtype != QA_DT_F16 && t->dtype != QA_DT_F64) {
                free(ents); free(c.src); free(c.layer); free(c.mod); free(c.nf4); free(c.cols);
                return QA_ERR(e, "merge: %s is stored as %s; only float weights can be merged", t->name, t->dtype_name);
            }
            ents[i].dtype = out_dtype == QA_DT_INVALID ? t->dtype : out_dtype;
            if (t->shape[1] > max_in) max_in = (int)t->shape[1];
            merged++;
        }
    }
    n = ne;
    int expected = 0;
    for (int li = 0; li < l->n_layers; li++)
        for (int mod = 0; mod < QA_LORA_N_MODULES; mod++) expected += qa_lora_at(l, li, mod)->present;
    int rc = 0;
    if (merged != expected) {
        rc = QA_ERR(e, "merge: the adapter targets %d projections but %d were found in %s", expected, merged, model_dir);
    } else {
        if (max_in < 4096) max_in = 4096;
        c.max_in = max_in;
        c.row = qa_malloc((size_t)max_in * sizeof *c.row);
        char *path = qa_path_join(out_dir, "model.safetensors");
        const char *meta[] = {"format", "pt", NULL};
        rc = qa_st_write_stream(path, ents, n, meta, fill, &c, e);
        free(path);
        free(c.row);
        if (!rc) rc = out_dtype == QA_DT_INVALID && m->quant == QA_QUANT_NONE
                          ? copy_side_file(model_dir, out_dir, "config.json", e)
                          : write_config(model_dir, out_dir, out_dtype, m->quant != QA_QUANT_NONE, e);
        if (!rc) rc = copy_side_file(model_dir, out_dir, "generation_config.json", e);
        if (!rc) rc = copy_side_file(model_dir, out_dir, "tokenizer.json", e);
        if (!rc) rc = copy_side_file(model_dir, out_dir, "tokenizer_config.json", e);
        if (!rc) rc = copy_side_file(model_dir, out_dir, "special_tokens_map.json", e);
    }
    free(ents); free(c.src); free(c.layer); free(c.mod); free(c.nf4); free(c.cols);
    return rc;
}
