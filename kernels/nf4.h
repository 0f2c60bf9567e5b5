/* nf4.h — the bitsandbytes NF4 4-bit weight format: the host-side math (quantize, dequantize, the
 * double-quantized absmax). The ops dequantize NF4 weights themselves (kernels/cpu/gemm.c while packing,
 * kernels/cuda/nf4_cuda.cu into bf16 tiles); model/ quantizes at load with these functions.
 *
 * Format (bitsandbytes functional.quantize_4bit, quant_type "nf4", blocksize 64):
 *   - the flattened tensor is cut into blocks of QA_NF4_BLOCK = 64 consecutive elements;
 *   - absmax[b] = max |x| over block b (fp32);
 *   - code of x = the index q of the nearest of the 16 NF4 values to x / absmax[b] (qa_nf4_code,
 *     ascending; ties go to the lower value: q = #{midpoints < x * (1 / absmax)});
 *   - two codes per byte: element 2i in the high nibble of byte i, element 2i+1 in the low nibble;
 *   - dequantized value = qa_nf4_code[q] * absmax[b] (one fp32 product).
 * Double quantization (bnb_4bit_use_double_quant): offset = mean(absmax); the values absmax - offset are
 * quantized blockwise (blocks of 256) to 8 bits with the signed dynamic map (qa_nf4_dq_code):
 *   absmax[b] = code2[q2[b]] * absmax2[b / 256] + offset   (an fp32 product, then an fp32 sum).
 * qalign computes with the decoded fp32 absmax (4 bytes per 64 weights: 0.5625 bytes per parameter).
 * In memory (a qa_weight of dtype QA_DT_NF4) one block holds the codes [numel/2 bytes], then the absmax
 * [numel/64 floats]: qa_nf4_bytes(numel) bytes, the absmax at qa_nf4_absmax(data, numel).
 * Pure functions: no files, no state. */
#ifndef QA_NF4_H
#define QA_NF4_H
#include "common/qa_dtype.h"
#include <stddef.h>
#include <stdint.h>

#define QA_NF4_BLOCK 64
#define QA_NF4_DQ_BLOCK 256

extern const float qa_nf4_code[16];     /* bitsandbytes' NF4 table, ascending, [-1, 1] */
extern const float qa_nf4_dq_code[256]; /* bitsandbytes create_dynamic_map(signed=True), ascending */

static inline size_t qa_nf4_bytes(size_t numel) { return numel / 2 + numel / QA_NF4_BLOCK * sizeof(float); }
static inline const float *qa_nf4_absmax(const void *data, size_t numel) {
    return (const float *)((const uint8_t *)data + numel / 2);
}

/* Quantize n values (n % 64 == 0; F32 or BF16 at src) into codes [n/2] and absmax [n/64]. */
void qa_nf4_quantize(const void *src, qa_dtype dt, size_t n, uint8_t *codes, float *absmax);
/* dst[i] = code[q_i] * absmax[i / 64] for i in [0, n) (n even). */
void qa_nf4_dequantize(const uint8_t *codes, const float *absmax, size_t n, float *dst);
/* One element of a packed tensor. */
static inline float qa_nf4_get(const uint8_t *codes, const float *absmax, size_t i) {
    const uint8_t b = codes[i >> 1];
    return qa_nf4_code[(i & 1) ? (b & 15) : (b >> 4)] * absmax[i / QA_NF4_BLOCK];
}

/* Double quantization of nb absmax values: offset = their fp32 mean as torch sums it on the CPU (one thread,
 * 8-lane vectors: bitsandbytes' offset where torch runs one thread on AVX2);
 * q2 [nb] = 8-bit codes of absmax - offset in blocks of 256, absmax2 [ceil(nb/256)] their block maxima. */
float qa_nf4_dq_offset(const float *absmax, size_t nb);
void qa_nf4_dq_quantize(const float *absmax, size_t nb, float offset, uint8_t *q2, float *absmax2);
/* absmax[b] = code2[q2[b]] * absmax2[b / 256] + offset (code2: the map stored with the tensor, or
 * qa_nf4_dq_code). */
void qa_nf4_dq_decode(const uint8_t *q2, const float *absmax2, const float *code2, float offset, size_t nb,
                      float *absmax);
#endif
