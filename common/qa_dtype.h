/* qa_dtype.h — element types shared by formats and kernels, and scalar conversions. */
#ifndef QA_DTYPE_H
#define QA_DTYPE_H
#include <stdint.h>
#include <string.h>
#include <stddef.h>

typedef enum qa_dtype {
    QA_DT_INVALID = 0,
    QA_DT_F32, QA_DT_BF16, QA_DT_F16, QA_DT_F64,
    QA_DT_I32, QA_DT_I64, QA_DT_U8, QA_DT_I8, QA_DT_I16, QA_DT_U16, QA_DT_U32, QA_DT_U64, QA_DT_BOOL,
    QA_DT_OTHER, /* a valid safetensors dtype qalign does not compute with (F8_*, C64, ...) */
    QA_DT_NF4    /* bitsandbytes NF4 4-bit weights (kernels/nf4.h): a qa_weight dtype, never a file's */
} qa_dtype;

size_t qa_dtype_size(qa_dtype t);        /* bytes per element (0 for INVALID/OTHER/NF4) */
const char *qa_dtype_name(qa_dtype t);    /* safetensors spelling: "BF16", ... */

static inline float qa_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f;
}
static inline uint16_t qa_f32_to_bf16(float f) {   /* round to nearest even; NaN stays NaN */
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
float qa_f16_to_f32(uint16_t h);
uint16_t qa_f32_to_f16(float f);
/* Index of the first element of v[0..n) that is NaN or infinite, n when all are finite. */
size_t qa_first_nonfinite_f32(const float *v, size_t n);
/* Convert n elements of type t at src to f32 (F32, BF16, F16, F64). */
void qa_convert_to_f32(float *dst, const void *src, qa_dtype t, size_t n);
#endif
