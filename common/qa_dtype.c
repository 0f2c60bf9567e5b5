#include "common/qa_dtype.h"
#include "common/qa_err.h"

#include <stdint.h>

size_t qa_dtype_size(qa_dtype t) {
    switch (t) {
    case QA_DT_F32: case QA_DT_I32: case QA_DT_U32: return 4;
    case QA_DT_BF16: case QA_DT_F16: case QA_DT_I16: case QA_DT_U16: return 2;
    case QA_DT_F64: case QA_DT_I64: case QA_DT_U64: return 8;
    case QA_DT_U8: case QA_DT_I8: case QA_DT_BOOL: return 1;
    default: return 0;
    }
}
const char *qa_dtype_name(qa_dtype t) {
    static const char *names[] = {"INVALID", "F32", "BF16", "F16", "F64", "I32", "I64", "U8", "I8",
                                  "I16", "U16", "U32", "U64", "BOOL", "OTHER"};
    if (t == QA_DT_NF4) return "NF4";
    return (unsigned)t <= QA_DT_OTHER ? names[t] : "INVALID";
}
float qa_f16_to_f32(uint16_t h) {
    uint32_t s = (uint32_t)(h & 0x8000) << 16, ex = (h >> 10) & 0x1f, m = h & 0x3ff, u;
    if (ex == 0) {
        if (m == 0) u = s;
        else { ex = 127 - 15 + 1; while (!(m & 0x400)) { m <<= 1; ex--; } m &= 0x3ff; u = s | (ex << 23) | (m << 13); }
    } else if (ex == 31) u = s | 0x7f800000u | (m << 13);
    else u = s | ((ex + 127 - 15) << 23) | (m << 13);
    float f; memcpy(&f, &u, 4); return f;
}
uint16_t qa_f32_to_f16(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    uint32_t s = (u >> 16) & 0x8000; int ex = (int)((u >> 23) & 0xff) - 127 + 15; uint32_t m = u & 0x7fffff;
    if (((u >> 23) & 0xff) == 0xff) return (uint16_t)(s | 0x7c00 | (m ? 0x200 : 0));
    if (ex >= 31) return (uint16_t)(s | 0x7c00);
    if (ex <= 0) {
        if (ex < -10) return (uint16_t)s;
        m |= 0x800000; int shift = 14 - ex; uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(s | r);
    }
    uint32_t r = m >> 13, rem = m & 0x1fff;
    uint16_t h = (uint16_t)(s | ((uint32_t)ex << 10) | r);
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) h++;
    return h;
}
/* src may have any alignment (a safetensors header whose length is not a multiple of 8 shifts every
 * tensor): elements are loaded with memcpy, which compiles to plain (unaligned) loads. */
void qa_convert_to_f32(float *dst, const void *src, qa_dtype t, size_t n) {
    const uint8_t *b = src;
    switch (t) {
    case QA_DT_F32: memcpy(dst, src, n * 4); break;
    case QA_DT_BF16:
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, b + 2 * i, 2); dst[i] = qa_bf16_to_f32(h); }
        break;
    case QA_DT_F16:
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, b + 2 * i, 2); dst[i] = qa_f16_to_f32(h); }
        break;
    case QA_DT_F64:
        for (size_t i = 0; i < n; i++) { double d; memcpy(&d, b + 8 * i, 8); dst[i] = (float)d; }
        break;
    default: QA_DIE("qa_convert_to_f32: unsupported dtype %s", qa_dtype_name(t));
    }
}

size_t qa_first_nonfinite_f32(const float *v, size_t n) {
    for (size_t b = 0; b < n; b += 4096) {   /* a branch-free pass per block (vectorized), then the search */
        size_t m = n - b < 4096 ? n - b : 4096;
        uint32_t bad = 0;
        for (size_t i = 0; i < m; i++) {
            uint32_t u;
            memcpy(&u, v + b + i, 4);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (!bad) continue;
        for (size_t i = 0; i < m; i++) {
            uint32_t u;
            memcpy(&u, v + b + i, 4);
            if ((u & 0x7f800000u) == 0x7f800000u) return b + i;
        }
    }
    return n;
}
