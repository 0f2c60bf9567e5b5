/* bnb4.h — weights that transformers saved quantized with bitsandbytes 4-bit (load_in_4bit, quant_type
 * "nf4"): for a weight W the checkpoint holds
 *   W                                   U8 [numel/2, 1]  the packed codes (two per byte)
 *   W.absmax                            F32 [numel/64], or U8 [numel/64] when double-quantized, with
 *   W.nested_absmax, W.nested_quant_map F32 [ceil(nb/256)], F32 [256]
 *   W.quant_map                         F32 [16] the code table
 *   W.quant_state.bitsandbytes__nf4     U8: JSON {"quant_type", "blocksize", "dtype", "shape",
 *                                       ["nested_blocksize", "nested_dtype", "nested_offset"]}
 * This reads and validates them (knows no graph; the values are turned into compute form by model/).
 * Errors name the file and the tensor. */
#ifndef QA_BNB4_H
#define QA_BNB4_H
#include "io/safetensors.h"
#include <stdint.h>

typedef struct qa_bnb4_tensor {
    int ndim;
    int64_t shape[2];               /* the weight's shape (quant_state "shape") */
    int64_t numel;                  /* multiple of 64 */
    const uint8_t *codes;           /* [numel/2] */
    const qa_st_tensor *absmax;     /* F32 [nb] or (nested) U8 [nb] */
    const qa_st_tensor *quant_map;  /* F32 [16] */
    int nested;                     /* double-quantized absmax */
    const qa_st_tensor *nested_absmax;    /* F32 [ceil(nb / 256)] */
    const qa_st_tensor *nested_quant_map; /* F32 [256] */
    float nested_offset;
    char dtype[16];                 /* the dtype the weight had before quantization ("bfloat16", ...) */
} qa_bnb4_tensor;

/* 1 when the checkpoint holds `name` 4-bit quantized (a "<name>.quant_state.bitsandbytes__*" tensor exists). */
int qa_bnb4_is_quantized(const qa_safetensors *st, const char *name);
/* Read and validate quantized weight `name`; ndim/shape: what the config implies (ndim 0: anything). */
int qa_bnb4_get(const qa_safetensors *st, const char *name, int ndim, const int64_t *shape, qa_bnb4_tensor *out,
                qa_err *e);
/* 1 when `name` is a companion tensor (absmax, quant_map, nested_*, quant_state.*) of a quantized weight. */
int qa_bnb4_is_companion(const qa_safetensors *st, const char *name);
/* Copy an F32 tensor (any alignment) into dst. */
void qa_bnb4_copy_f32(const qa_st_tensor *t, float *dst);
#endif
