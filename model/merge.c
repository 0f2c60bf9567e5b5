/* merge.c — a merged model directory: W' = W + (alpha/r)·B·A on every LoRA-targeted projection,
 * every other tensor copied bit for bit, written tensor by tensor (memory: one 32 MiB chunk). */
#include "model/model.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct merge_ctx {
    const qa_model *m;
    const qa_lora *l;
    const qa_st_tensor **src;   /* [n] source tensor of each entry */
    int *layer, *mod;           /* [n] LoRA target of each entry, mod -1 when none */
    float *row;                 /* [max in] scratch */
} merge_ctx;

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
    int max_in = 1, merged = 0;
    for (size_t i = 0; i < n; i++) {
        const qa_st_tensor *t = &st->tensors[i];
        c.src[i] = t;
        ents[i].name = t->name;
        ents[i].ndim = t->ndim;
        memcpy(ents[i].shape, t->shape, sizeof t->shape);
        ents[i].dtype = t->dtype;
        ents[i].dtype_name = t->dtype == QA_DT_OTHER ? t->dtype_name : NULL;
        lora_target_of(l, t->name, &c.layer[i], &c.mod[i]);
        if (c.mod[i] >= 0) {
            if (t->dtype != QA_DT_BF16 && t->dtype != QA_DT_F32 && t->dtype != QA_DT_F16 && t->dtype != QA_DT_F64) {
                free(ents); free(c.src); free(c.layer); free(c.mod);
                return QA_ERR(e, "merge: %s is stored as %s; only float weights can be merged", t->name, t->dtype_name);
            }
            ents[i].dtype = out_dtype == QA_DT_INVALID ? t->dtype : out_dtype;
            if (t->shape[1] > max_in) max_in = (int)t->shape[1];
            merged++;
        }
    }
    int expected = 0;
    for (int li = 0; li < l->n_layers; li++)
        for (int mod = 0; mod < QA_LORA_N_MODULES; mod++) expected += qa_lora_at(l, li, mod)->present;
    int rc = 0;
    if (merged != expected) {
        rc = QA_ERR(e, "merge: the adapter targets %d projections but %d were found in %s", expected, merged, model_dir);
    } else {
        c.row = qa_malloc((size_t)max_in * sizeof *c.row);
        char *path = qa_path_join(out_dir, "model.safetensors");
        const char *meta[] = {"format", "pt", NULL};
        rc = qa_st_write_stream(path, ents, n, meta, fill, &c, e);
        free(path);
        free(c.row);
        if (!rc) rc = copy_side_file(model_dir, out_dir, "config.json", e);
        if (!rc) rc = copy_side_file(model_dir, out_dir, "generation_config.json", e);
        if (!rc) rc = copy_side_file(model_dir, out_dir, "tokenizer.json", e);
        if (!rc) rc = copy_side_file(model_dir, out_dir, "tokenizer_config.json", e);
        if (!rc) rc = copy_side_file(model_dir, out_dir, "special_tokens_map.json", e);
    }
    free(ents); free(c.src); free(c.layer); free(c.mod);
    return rc;
}
