/* bnb4.c — bitsandbytes 4-bit quantized weights in a transformers checkpoint (io/bnb4.h). */
#include "io/bnb4.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char *SUFFIXES[] = {".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map",
                                 ".quant_state.bitsandbytes__nf4", ".quant_state.bitsandbytes__fp4"};

static const qa_st_tensor *companion(const qa_safetensors *st, const char *name, const char *suffix) {
    char nm[512];
    if (snprintf(nm, sizeof nm, "%s%s", name, suffix) >= (int)sizeof nm) return NULL;
    return qa_st_find(st, nm);
}

int qa_bnb4_is_quantized(const qa_safetensors *st, const char *name) {
    return companion(st, name, SUFFIXES[4]) || companion(st, name, SUFFIXES[5]);
}

int qa_bnb4_is_companion(const qa_safetensors *st, const char *name) {
    const size_t n = strlen(name);
    for (size_t i = 0; i < sizeof SUFFIXES / sizeof SUFFIXES[0]; i++) {
        const size_t ls = strlen(SUFFIXES[i]);
        if (n <= ls || strcmp(name + n - ls, SUFFIXES[i])) continue;
        char base[512];
        if (n - ls >= sizeof base) return 0;
        memcpy(base, name, n - ls);
        base[n - ls] = 0;
        if (qa_bnb4_is_quantized(st, base)) return 1;
    }
    return 0;
}

void qa_bnb4_copy_f32(const qa_st_tensor *t, float *dst) { memcpy(dst, t->data, (size_t)t->numel * sizeof(float)); }

/* a companion of the expected dtype and 1-D length */
static int need(const qa_safetensors *st, const char *name, const char *suffix, qa_dtype dt, int64_t len,
                const qa_st_tensor **out, qa_err *e) {
    const qa_st_tensor *t = companion(st, name, suffix);
    if (!t)
        return QA_ERR(e, "%s: quantized weight '%s' has no '%s%s' tensor (a bitsandbytes 4-bit checkpoint holds it)",
                      qa_st_file_of(st, NULL), name, name, suffix);
    if (t->dtype != dt || t->numel != len || (t->ndim != 1 && !(t->ndim == 2 && t->shape[1] == 1)))
        return QA_ERR(e, "%s: tensor '%s%s' is %s with %" PRId64 " elements in %d dims; quantized weight '%s' needs "
                      "%s [%" PRId64 "]", qa_st_file_of(st, t), name, suffix, t->dtype_name, t->numel, t->ndim, name,
                      qa_dtype_name(dt), len);
    *out = t;
    return 0;
}

int qa_bnb4_get(const qa_safetensors *st, const char *name, int ndim, const int64_t *shape, qa_bnb4_tensor *out,
                qa_err *e) {
    memset(out, 0, sizeof *out);
    const char *file = qa_st_file_of(st, NULL);
    if (companion(st, name, SUFFIXES[5]))
        return QA_ERR(e, "%s: weight '%s' is quantized as FP4; qalign reads NF4 (bnb_4bit_quant_type=\"nf4\") only",
                      file, name);
    const qa_st_tensor *qs = companion(st, name, SUFFIXES[4]);
    if (!qs) return QA_ERR(e, "%s: weight '%s' is not 4-bit quantized", file, name);
    if (qs->dtype != QA_DT_U8)
        return QA_ERR(e, "%s: tensor '%s%s' must be U8 (JSON bytes), not %s", qa_st_file_of(st, qs), name,
                      SUFFIXES[4], qs->dtype_name);
    json_error_t jerr;
    json_t *js = json_loadb(qs->data, (size_t)qs->numel, JSON_REJECT_DUPLICATES, &jerr);
    if (!js || !json_is_object(js)) {
        json_decref(js);
        return QA_ERR(e, "%s: tensor '%s%s' is not a JSON object (%s)", qa_st_file_of(st, qs), name, SUFFIXES[4],
                      jerr.text);
    }
    int rc = 0;
    const char *qt = json_string_value(json_object_get(js, "quant_type"));
    json_t *bs = json_object_get(js, "blocksize"), *sh = json_object_get(js, "shape");
    const char *dt = json_string_value(json_object_get(js, "dtype"));
    if (!qt || strcmp(qt, "nf4")) {
        rc = QA_ERR(e, "%s: weight '%s' has quant_type %s; qalign reads \"nf4\" only", file, name, qt ? qt : "(none)");
    } else if (!json_is_integer(bs) || json_integer_value(bs) != 64) {
        rc = QA_ERR(e, "%s: weight '%s' was quantized with blocksize %" JSON_INTEGER_FORMAT "; qalign reads blocks of 64 "
                    "(bnb_4bit default)", file, name, json_is_integer(bs) ? json_integer_value(bs) : (json_int_t)-1);
    } else if (!json_is_array(sh) || json_array_size(sh) < 1 || json_array_size(sh) > 2) {
        rc = QA_ERR(e, "%s: weight '%s': quant_state has no 1- or 2-dimensional \"shape\"", file, name);
    }
    if (!rc) {
        out->ndim = (int)json_array_size(sh);
        out->numel = 1;
        for (int i = 0; i < out->ndim && !rc; i++) {
            json_t *d = json_array_get(sh, (size_t)i);
            if (!json_is_integer(d) || json_integer_value(d) <= 0 || json_integer_value(d) > ((int64_t)1 << 40))
                rc = QA_ERR(e, "%s: weight '%s': quant_state shape[%d] is not a positive integer", file, name, i);
            else out->numel *= (out->shape[i] = json_integer_value(d));
        }
        snprintf(out->dtype, sizeof out->dtype, "%s", dt ? dt : "");
    }
    if (!rc && ndim > 0) {
        int ok = out->ndim == ndim;
        for (int i = 0; ok && i < ndim; i++) ok = out->shape[i] == shape[i];
        if (!ok)
            rc = QA_ERR(e, "%s: quantized weight '%s' has shape [%" PRId64 "%s%.0" PRId64 "] but config.json implies [%"
                        PRId64 "%s%.0" PRId64 "]", file, name, out->shape[0], out->ndim > 1 ? ", " : "",
                        out->ndim > 1 ? out->shape[1] : 0, shape[0], ndim > 1 ? ", " : "", ndim > 1 ? shape[1] : 0);
    }
    if (!rc && out->numel % 64)
        rc = QA_ERR(e, "%s: quantized weight '%s' has %" PRId64 " elements, not a multiple of the 64-element block",
                    file, name, out->numel);
    const int64_t nb = out->numel / 64;
    if (!rc) {
        const qa_st_tensor *w = qa_st_find(st, name);
        if (!w)
            rc = QA_ERR(e, "%s: quantized weight '%s' (its codes) is missing", file, name);
        else if (w->dtype != QA_DT_U8 || w->numel != out->numel / 2)
            rc = QA_ERR(e, "%s: quantized weight '%s' is %s with %" PRId64 " elements; its %" PRId64 " 4-bit codes need "
                        "U8 [%" PRId64 ", 1]", qa_st_file_of(st, w), name, w->dtype_name, w->numel, out->numel,
                        out->numel / 2);
        else out->codes = w->data;
    }
    if (!rc) rc = need(st, name, SUFFIXES[1], QA_DT_F32, 16, &out->quant_map, e);
    if (!rc) {
        json_t *nb_ = json_object_get(js, "nested_blocksize"), *no = json_object_get(js, "nested_offset");
        out->nested = nb_ != NULL || companion(st, name, SUFFIXES[2]) != NULL;
        if (!out->nested) {
            rc = need(st, name, SUFFIXES[0], QA_DT_F32, nb, &out->absmax, e);
        } else if (!json_is_integer(nb_) || json_integer_value(nb_) != 256 || !json_is_number(no)) {
            rc = QA_ERR(e, "%s: weight '%s': double-quantized absmax needs quant_state nested_blocksize 256 and a "
                        "numeric nested_offset", file, name);
        } else {
            out->nested_offset = (float)json_number_value(no);
            rc = need(st, name, SUFFIXES[0], QA_DT_U8, nb, &out->absmax, e);
            if (!rc) rc = need(st, name, SUFFIXES[2], QA_DT_F32, (nb + 255) / 256, &out->nested_absmax, e);
            if (!rc) rc = need(st, name, SUFFIXES[3], QA_DT_F32, 256, &out->nested_quant_map, e);
        }
    }
    json_decref(js);
    return rc;
}
