/* test_io_write.c — helper for tests/io_compat.py (the Python safetensors reference checks our bytes).
 *   test_io_write write OUT          deterministic tensors of every numpy dtype, metadata format=pt
 *   test_io_write dump IN            one line per tensor: name dtype shape fnv1a64(bytes), sorted by name
 *   test_io_write adapter MODEL OUT  a deterministic r=4 q/v adapter for MODEL/config.json, saved with qa_peft_save */
#include "io/hf_config.h"
#include "io/peft.h"
#include "model/model.h"
#include "io/safetensors.h"
#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the adapter shapes of a base config (model/: io/peft.h knows no graph) */
static const qa_peft_shape *shape_of(const qa_hf_config *c, qa_peft_shape *sh) { qa_lora_peft_shape(c, sh); return sh; }
#define SHAPE(c) shape_of((c), &(qa_peft_shape){0})

/* value of element i of tensor k: small integers that every dtype represents exactly */
static double val(int k, int64_t i) { return (double)((i * 7 + k * 3) % 13) - 6.0; }

static int do_write(const char *out) {
    static const char *names[] = {"F64", "F32", "F16", "I64", "U64", "I32", "U32", "I16", "U16", "I8", "U8", "BOOL"};
    static const qa_dtype dts[] = {QA_DT_F64, QA_DT_F32, QA_DT_F16, QA_DT_I64, QA_DT_U64, QA_DT_I32, QA_DT_U32,
                                   QA_DT_I16, QA_DT_U16, QA_DT_I8, QA_DT_U8, QA_DT_BOOL};
    const int nt = 12;
    qa_st_entry en[24];
    void *bufs[24];
    char nm[24][32];
    int n = 0;
    for (int k = 0; k < nt; k++)
        for (int v = 0; v < 2; v++) {
            int64_t d0 = v ? 3 : 5, d1 = v ? 1 : 7, numel = d0 * d1;
            size_t es = qa_dtype_size(dts[k]);
            uint8_t *b = qa_malloc((size_t)numel * es);
            for (int64_t i = 0; i < numel; i++) {
                double x = val(k, i);
                if (dts[k] == QA_DT_U8 || dts[k] == QA_DT_U16 || dts[k] == QA_DT_U32 || dts[k] == QA_DT_U64) x += 6;
                switch (dts[k]) {
                case QA_DT_F64: ((double *)b)[i] = x; break;
                case QA_DT_F32: ((float *)b)[i] = (float)x; break;
                case QA_DT_F16: ((uint16_t *)b)[i] = qa_f32_to_f16((float)x); break;
                case QA_DT_I64: ((int64_t *)b)[i] = (int64_t)x; break;
                case QA_DT_U64: ((uint64_t *)b)[i] = (uint64_t)x; break;
                case QA_DT_I32: ((int32_t *)b)[i] = (int32_t)x; break;
                case QA_DT_U32: ((uint32_t *)b)[i] = (uint32_t)x; break;
                case QA_DT_I16: ((int16_t *)b)[i] = (int16_t)x; break;
                case QA_DT_U16: ((uint16_t *)b)[i] = (uint16_t)x; break;
                case QA_DT_I8: ((int8_t *)b)[i] = (int8_t)x; break;
                case QA_DT_U8: ((uint8_t *)b)[i] = (uint8_t)x; break;
                case QA_DT_BOOL: b[i] = x > 0; break;
                default: break;
                }
            }
            snprintf(nm[n], sizeof nm[n], "%s.%s", v ? "col" : "mat", names[k]);
            en[n] = (qa_st_entry){.name = nm[n], .dtype = dts[k], .ndim = 2, .shape = {d0, d1}, .data = b};
            bufs[n++] = b;
        }
    static const char *const meta[] = {"format", "pt", NULL};
    qa_err e = {0};
    int rc = qa_st_write(out, en, (size_t)n, meta, &e);
    if (rc) qa_err_print(&e);
    for (int i = 0; i < n; i++) free(bufs[i]);
    return rc ? 1 : 0;
}

static int do_dump(const char *in) {
    qa_err e = {0};
    qa_safetensors st;
    if (qa_st_open(&st, in, &e)) { qa_err_print(&e); return 1; }
    for (size_t i = 0; i < st.n_tensors; i++) {
        const qa_st_tensor *t = &st.tensors[i];
        printf("%s %s [", t->name, t->dtype_name);
        for (int k = 0; k < t->ndim; k++) printf(k ? ",%" PRId64 : "%" PRId64, t->shape[k]);
        printf("] %016" PRIx64 "\n", qa_fnv1a64(0, t->data, t->nbytes));
    }
    if (st.metadata_json) printf("__metadata__ %s\n", st.metadata_json);
    qa_st_close(&st);
    return 0;
}

static int do_adapter(const char *model, const char *out) {
    qa_err e = {0};
    qa_hf_config c;
    char *p = qa_path_join(model, "config.json");
    int rc = qa_hf_config_load(&c, p, &e);
    free(p);
    if (rc) { qa_err_print(&e); return 1; }
    qa_peft_config pc = {.r = 4, .alpha = 8, .module_mask = QA_LORA_MASK_QV};
    qa_peft_adapter a;
    if (qa_peft_alloc(&a, SHAPE(&c), &pc, &e)) { qa_err_print(&e); return 1; }
    /* A(l,m)[i] = B(l,m)[i] = (l * 10 + m) + i / 1024 */
    for (int l = 0; l < a.n_layers; l++)
        for (int m = 0; m < QA_LORA_N_MODULES; m++) {
            if (!qa_peft_A(&a, l, m)) continue;
            size_t na = (size_t)pc.r * a.in_features[m], nb = (size_t)a.out_features[m] * pc.r;
            for (size_t i = 0; i < na; i++) qa_peft_A(&a, l, m)[i] = (float)(l * 10 + m) + (float)i / 1024.0f;
            for (size_t i = 0; i < nb; i++) qa_peft_B(&a, l, m)[i] = -(float)(l * 10 + m) - (float)i / 1024.0f;
        }
    rc = qa_peft_save(&a, out, &e);
    if (rc) qa_err_print(&e);
    qa_peft_free(&a);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "write")) return do_write(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "dump")) return do_dump(argv[2]);
    if (argc >= 4 && !strcmp(argv[1], "adapter")) return do_adapter(argv[2], argv[3]);
    fprintf(stderr, "usage: test_io_write write OUT | dump IN | adapter MODEL_DIR OUT_DIR\n");
    return 2;
}
