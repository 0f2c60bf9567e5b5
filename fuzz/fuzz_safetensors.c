/* fuzz_safetensors.c — the safetensors reader (io/safetensors.c): header length, JSON header, dtypes,
 * shapes, offsets, then every tensor read as f32 and checked for non-finite values. */
#include "fuzz_util.h"
#include "io/safetensors.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fz_file(0, data, size);
    qa_safetensors st;
    qa_err e = {0};
    if (qa_st_open(&st, p, &e)) return 0;
    for (size_t i = 0; i < st.n_tensors; i++) {
        const qa_st_tensor *t = &st.tensors[i];
        qa_st_check_finite(&st, t, &e);
        if (t->numel > 0 && t->numel <= (1 << 20)) {
            float *dst = malloc(sizeof(float) * (size_t)t->numel);
            qa_st_read_f32(&st, t, dst, &e);
            free(dst);
        }
        qa_st_find(&st, t->name);
    }
    qa_st_close(&st);
    return 0;
}
