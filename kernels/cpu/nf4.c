/* nf4.c — the bitsandbytes NF4 format on the host: quantize, dequantize, double-quantized absmax
 * (kernels/nf4.h). Every step is the fp32 operation bitsandbytes 0.50 performs on the CPU, in the same
 * order, so codes and absmax are equal bit for bit (tests/nf4_bnb.py checks them against bitsandbytes). */
#include "kernels/nf4.h"

#include <math.h>
#include <string.h>

/* bitsandbytes' NF4 values as fp32 (the hex of its float32 table) */
const float qa_nf4_code[16] = {
    -0x1p+0f,        -0x1.647362p-1f, -0x1.0cd66p-1f,  -0x1.94654p-2f,  -0x1.23449ap-2f, -0x1.7a6a7ep-3f,
    -0x1.74f0e2p-4f, 0x0p+0f,         0x1.45f5fep-4f,  0x1.4995c6p-3f,  0x1.f809bap-3f,  0x1.5a0674p-2f,
    0x1.c3497p-2f,   0x1.200f56p-1f,  0x1.722766p-1f,  0x1p+0f,
};

/* bitsandbytes functional.create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8) as fp32 */
const float qa_nf4_dq_code[256] = {
    -0x1.fc6666p-1f, -0x1.f53334p-1f, -0x1.eep-1f, -0x1.e6ccccp-1f, -0x1.df999ap-1f, -0x1.d86666p-1f,
    -0x1.d13334p-1f, -0x1.cap-1f, -0x1.c2ccccp-1f, -0x1.bb999ap-1f, -0x1.b46666p-1f, -0x1.ad3334p-1f,
    -0x1.a6p-1f, -0x1.9eccccp-1f, -0x1.97999ap-1f, -0x1.906666p-1f, -0x1.893334p-1f, -0x1.82p-1f,
    -0x1.7accccp-1f, -0x1.73999ap-1f, -0x1.6c6668p-1f, -0x1.653334p-1f, -0x1.5ep-1f, -0x1.56ccccp-1f,
    -0x1.4f999ap-1f, -0x1.486668p-1f, -0x1.413334p-1f, -0x1.3ap-1f, -0x1.32ccccp-1f, -0x1.2b999ap-1f,
    -0x1.246668p-1f, -0x1.1d3334p-1f, -0x1.16p-1f, -0x1.0eccccp-1f, -0x1.079998p-1f, -0x1.006666p-1f,
    -0x1.f26664p-2f, -0x1.e4p-2f, -0x1.d59998p-2f, -0x1.c73334p-2f, -0x1.b8ccccp-2f, -0x1.aa6666p-2f,
    -0x1.9cp-2f, -0x1.8d9998p-2f, -0x1.7f3334p-2f, -0x1.70ccccp-2f, -0x1.626666p-2f, -0x1.54p-2f,
    -0x1.459998p-2f, -0x1.373334p-2f, -0x1.28ccccp-2f, -0x1.1a6668p-2f, -0x1.0cp-2f, -0x1.fb3332p-3f,
    -0x1.de6666p-3f, -0x1.c1999ap-3f, -0x1.a4ccccp-3f, -0x1.88p-3f, -0x1.6b3334p-3f, -0x1.4e6666p-3f,
    -0x1.31999ap-3f, -0x1.14ccccp-3f, -0x1.fp-4f, -0x1.b66668p-4f, -0x1.93d70ap-4f, -0x1.8851eep-4f,
    -0x1.7ccccep-4f, -0x1.7147aep-4f, -0x1.65c29p-4f, -0x1.5a3d7p-4f, -0x1.4eb854p-4f, -0x1.433334p-4f,
    -0x1.37ae14p-4f, -0x1.2c28f6p-4f, -0x1.20a3d6p-4f, -0x1.151ebap-4f, -0x1.09999ap-4f, -0x1.fc28f6p-5f,
    -0x1.e51ebap-5f, -0x1.ce147ap-5f, -0x1.b70a3ep-5f, -0x1.ap-5f, -0x1.88f5c2p-5f, -0x1.71eb86p-5f,
    -0x1.5ae146p-5f, -0x1.43d70ap-5f, -0x1.2ccccep-5f, -0x1.15c29p-5f, -0x1.fd70a4p-6f, -0x1.cf5c2ap-6f,
    -0x1.a147aep-6f, -0x1.733334p-6f, -0x1.451ebap-6f, -0x1.170a3ep-6f, -0x1.d1eb86p-7f, -0x1.75c29p-7f,
    -0x1.3e76c8p-7f, -0x1.2c083p-7f, -0x1.19999ap-7f, -0x1.072b02p-7f, -0x1.e978d4p-8f, -0x1.c49ba6p-8f,
    -0x1.9fbe76p-8f, -0x1.7ae148p-8f, -0x1.56041ap-8f, -0x1.3126e8p-8f, -0x1.0c49bap-8f, -0x1.ced914p-9f,
    -0x1.851eb8p-9f, -0x1.3b645ap-9f, -0x1.e353f8p-10f, -0x1.4fdf3ap-10f, -0x1.eecbfep-11f, -0x1.b3d07cp-11f,
    -0x1.78d5p-11f, -0x1.3dd982p-11f, -0x1.02de02p-11f, -0x1.8fc506p-12f, -0x1.19ce0ap-12f, -0x1.47ae16p-13f,
    -0x1.743e96p-14f, -0x1.15df66p-14f, -0x1.6f0068p-15f, -0x1.64840cp-16f, -0x1.040bfep-17f, -0x1.b43528p-19f,
    -0x1.27476ep-21f, 0x0.0p+0f, 0x1.27476ep-21f, 0x1.b43528p-19f, 0x1.040bfep-17f, 0x1.64840cp-16f,
    0x1.6f0068p-15f, 0x1.15df66p-14f, 0x1.743e96p-14f, 0x1.47ae16p-13f, 0x1.19ce0ap-12f, 0x1.8fc506p-12f,
    0x1.02de02p-11f, 0x1.3dd982p-11f, 0x1.78d5p-11f, 0x1.b3d07cp-11f, 0x1.eecbfep-11f, 0x1.4fdf3ap-10f,
    0x1.e353f8p-10f, 0x1.3b645ap-9f, 0x1.851eb8p-9f, 0x1.ced914p-9f, 0x1.0c49bap-8f, 0x1.3126e8p-8f,
    0x1.56041ap-8f, 0x1.7ae148p-8f, 0x1.9fbe76p-8f, 0x1.c49ba6p-8f, 0x1.e978d4p-8f, 0x1.072b02p-7f,
    0x1.19999ap-7f, 0x1.2c083p-7f, 0x1.3e76c8p-7f, 0x1.75c29p-7f, 0x1.d1eb86p-7f, 0x1.170a3ep-6f,
    0x1.451ebap-6f, 0x1.733334p-6f, 0x1.a147aep-6f, 0x1.cf5c2ap-6f, 0x1.fd70a4p-6f, 0x1.15c29p-5f,
    0x1.2ccccep-5f, 0x1.43d70ap-5f, 0x1.5ae146p-5f, 0x1.71eb86p-5f, 0x1.88f5c2p-5f, 0x1.ap-5f,
    0x1.b70a3ep-5f, 0x1.ce147ap-5f, 0x1.e51ebap-5f, 0x1.fc28f6p-5f, 0x1.09999ap-4f, 0x1.151ebap-4f,
    0x1.20a3d6p-4f, 0x1.2c28f6p-4f, 0x1.37ae14p-4f, 0x1.433334p-4f, 0x1.4eb854p-4f, 0x1.5a3d7p-4f,
    0x1.65c29p-4f, 0x1.7147aep-4f, 0x1.7ccccep-4f, 0x1.8851eep-4f, 0x1.93d70ap-4f, 0x1.b66668p-4f,
    0x1.fp-4f, 0x1.14ccccp-3f, 0x1.31999ap-3f, 0x1.4e6666p-3f, 0x1.6b3334p-3f, 0x1.88p-3f,
    0x1.a4ccccp-3f, 0x1.c1999ap-3f, 0x1.de6666p-3f, 0x1.fb3332p-3f, 0x1.0cp-2f, 0x1.1a6668p-2f,
    0x1.28ccccp-2f, 0x1.373334p-2f, 0x1.459998p-2f, 0x1.54p-2f, 0x1.626666p-2f, 0x1.70ccccp-2f,
    0x1.7f3334p-2f, 0x1.8d9998p-2f, 0x1.9cp-2f, 0x1.aa6666p-2f, 0x1.b8ccccp-2f, 0x1.c73334p-2f,
    0x1.d59998p-2f, 0x1.e4p-2f, 0x1.f26664p-2f, 0x1.006666p-1f, 0x1.079998p-1f, 0x1.0eccccp-1f,
    0x1.16p-1f, 0x1.1d3334p-1f, 0x1.246668p-1f, 0x1.2b999ap-1f, 0x1.32ccccp-1f, 0x1.3ap-1f,
    0x1.413334p-1f, 0x1.486668p-1f, 0x1.4f999ap-1f, 0x1.56ccccp-1f, 0x1.5ep-1f, 0x1.653334p-1f,
    0x1.6c6668p-1f, 0x1.73999ap-1f, 0x1.7accccp-1f, 0x1.82p-1f, 0x1.893334p-1f, 0x1.906666p-1f,
    0x1.97999ap-1f, 0x1.9eccccp-1f, 0x1.a6p-1f, 0x1.ad3334p-1f, 0x1.b46666p-1f, 0x1.bb999ap-1f,
    0x1.c2ccccp-1f, 0x1.cap-1f, 0x1.d13334p-1f, 0x1.d86666p-1f, 0x1.df999ap-1f, 0x1.e6ccccp-1f,
    0x1.eep-1f, 0x1.f53334p-1f, 0x1.fc6666p-1f, 0x1.0p+0f,
};

/* quantize_4bit (backends/default/ops.py): s = clamp(x * (1 / max(absmax, 1e-38)), -1, 1) in fp32, then
 * q = the number of midpoints (code[i] + code[i+1]) / 2 strictly below s (torch.bucketize, right=False) */
void qa_nf4_quantize(const void *src, qa_dtype dt, size_t n, uint8_t *codes, float *absmax) {
    float mid[15];
    for (int i = 0; i < 15; i++) mid[i] = (qa_nf4_code[i] + qa_nf4_code[i + 1]) / 2.0f;
    const float tiny = 1e-38f;
    float x[QA_NF4_BLOCK];
    for (size_t b0 = 0; b0 < n; b0 += QA_NF4_BLOCK) {
        if (dt == QA_DT_BF16)
            for (int i = 0; i < QA_NF4_BLOCK; i++) x[i] = qa_bf16_to_f32(((const uint16_t *)src)[b0 + i]);
        else
            for (int i = 0; i < QA_NF4_BLOCK; i++) x[i] = ((const float *)src)[b0 + i];
        float am = 0.0f;
        for (int i = 0; i < QA_NF4_BLOCK; i++) am = fmaxf(am, fabsf(x[i]));
        absmax[b0 / QA_NF4_BLOCK] = am;
        const float r = 1.0f / (am > tiny ? am : tiny);
        uint8_t q[QA_NF4_BLOCK];
        for (int i = 0; i < QA_NF4_BLOCK; i++) {
            float s = x[i] * r;
            s = s < -1.0f ? -1.0f : s > 1.0f ? 1.0f : s;
            int k = 0; /* the midpoints ascend: counting those below s is the search, without branches */
            for (int j = 0; j < 15; j++) k += mid[j] < s;
            q[i] = (uint8_t)k;
        }
        for (int i = 0; i < QA_NF4_BLOCK; i += 2) codes[(b0 + i) / 2] = (uint8_t)(q[i] << 4 | q[i + 1]);
    }
}

void qa_nf4_dequantize(const uint8_t *codes, const float *absmax, size_t n, float *dst) {
    for (size_t i = 0; i < n; i += 2) {
        const uint8_t b = codes[i / 2];
        const float a = absmax[i / QA_NF4_BLOCK];
        dst[i] = qa_nf4_code[b >> 4] * a;
        dst[i + 1] = qa_nf4_code[b & 15] * a;
    }
}

/* torch's fp32 mean on the CPU (aten SumKernel cascade_sum -> vectorized_inner_sum -> row_sum ->
 * multi_row_sum, then sum / n), in its summation order for one thread and 8-lane vectors (AVX2): lane-wise
 * fp32 sums over 4 interleaved rows of vectors, cascaded over 4 levels of 2^max(4, ceil(log2(rows)) / 4)
 * steps; the vectors left over, then the scalar tail and the 8 lanes added in order. Fewer than 8 values take
 * torch's scalar loop: the same cascade with one lane. */
enum { TL = 8, TILP = 4, TLEVELS = 4 };
static int64_t ceil_log2(int64_t x) {
    if (x <= 2) return 1;
    int64_t b = 63;
    while (!(((uint64_t)(x - 1) >> b) & 1)) b--;
    return b + 1;
}
float qa_nf4_dq_offset(const float *x, size_t nb) {
    if (!nb) return 0.0f;
    const int64_t n = (int64_t)nb, nl = n >= TL ? TL : 1;
    const int64_t vec_size = n / nl, size = vec_size / TILP; /* rows of TILP vectors of nl lanes */
    float acc[TLEVELS][TILP][TL];
    memset(acc, 0, sizeof acc);
    const int64_t lp = ceil_log2(size) / TLEVELS > 4 ? ceil_log2(size) / TLEVELS : 4;
    const int64_t step = (int64_t)1 << lp, mask0 = step - 1;
    int64_t i = 0;
    for (; i + step <= size;) {
        for (int64_t j = 0; j < step; ++j, ++i)
            for (int k = 0; k < TILP; k++)
                for (int l = 0; l < nl; l++) acc[0][k][l] += x[(i * TILP + k) * nl + l];
        for (int j = 1; j < TLEVELS; ++j) {
            for (int k = 0; k < TILP; k++)
                for (int l = 0; l < nl; l++) { acc[j][k][l] += acc[j - 1][k][l]; acc[j - 1][k][l] = 0.0f; }
            if (i & (mask0 << (j * lp))) break;
        }
    }
    for (; i < size; ++i)
        for (int k = 0; k < TILP; k++)
            for (int l = 0; l < nl; l++) acc[0][k][l] += x[(i * TILP + k) * nl + l];
    for (int j = 1; j < TLEVELS; ++j)
        for (int k = 0; k < TILP; k++)
            for (int l = 0; l < nl; l++) acc[0][k][l] += acc[j][k][l];
    float v[TL];
    for (int l = 0; l < nl; l++) v[l] = acc[0][0][l];
    for (int64_t r = size * TILP; r < vec_size; r++)     /* vectors past the last full row */
        for (int l = 0; l < nl; l++) v[l] += x[r * nl + l];
    for (int k = 1; k < TILP; k++)
        for (int l = 0; l < nl; l++) v[l] += acc[0][k][l];
    float sum = 0.0f;
    for (int64_t r = vec_size * nl; r < n; r++) sum += x[r];
    for (int l = 0; l < nl; l++) sum += v[l];
    return sum / (float)n;
}

/* quantize_blockwise on the CPU (bitsandbytes 0.50 csrc/cpu_ops.cpp quantize_cpu_impl): per block of 256,
 * m = max |v| (0 for an all-zero block: every code 0), s = clamp(v * (1 / m), -1, 1), then a 65536-bin
 * lookup: bin i = (uint16)((s + 1) * 0.5 * 65535 + 0.5) (fused into one multiply-add as the compiler does;
 * the tests could not tell the unfused form apart), code = the number of midpoints 0.5 * (code[j] + code[j+1])
 * below the bin's value -1 + 2i / 65535. */
static int dq_code_of(float s, const float *mid) {
    s = s < -1.0f ? -1.0f : s > 1.0f ? 1.0f : s;
    const uint16_t bin = (uint16_t)fmaf((s + 1.0f) * 0.5f, 65535.0f, 0.5f);
    const float val = -1.0f + (2.0f * (float)bin) / 65535.0f;
    int lo = 0, hi = 255; /* midpoints below val: the first index whose midpoint is >= val */
    while (lo < hi) {
        const int m = (lo + hi) / 2;
        if (mid[m] < val) lo = m + 1; else hi = m;
    }
    return lo;
}
void qa_nf4_dq_quantize(const float *absmax, size_t nb, float offset, uint8_t *q2, float *absmax2) {
    float mid[256];
    for (int i = 0; i < 255; i++) mid[i] = 0.5f * (qa_nf4_dq_code[i] + qa_nf4_dq_code[i + 1]);
    mid[255] = INFINITY;
    for (size_t b0 = 0; b0 < nb; b0 += QA_NF4_DQ_BLOCK) {
        const size_t end = nb - b0 < QA_NF4_DQ_BLOCK ? nb : b0 + QA_NF4_DQ_BLOCK;
        float m = 0.0f;
        for (size_t i = b0; i < end; i++) m = fmaxf(m, fabsf(absmax[i] - offset));
        absmax2[b0 / QA_NF4_DQ_BLOCK] = m;
        const float inv = m != 0.0f ? 1.0f / m : 0.0f;
        for (size_t i = b0; i < end; i++) q2[i] = m == 0.0f ? 0 : (uint8_t)dq_code_of((absmax[i] - offset) * inv, mid);
    }
}

void qa_nf4_dq_decode(const uint8_t *q2, const float *absmax2, const float *code2, float offset, size_t nb,
                      float *absmax) {
    for (size_t i = 0; i < nb; i++) {
        const float v = code2[q2[i]] * absmax2[i / QA_NF4_DQ_BLOCK];
        absmax[i] = v + offset;
    }
}
