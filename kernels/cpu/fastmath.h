/* fastmath.h — branch-free float exp for the CPU kernels: vectorizes (AVX2/AVX-512 with -O3),
 * max relative error ~2e-7 over [-87, 88] (Cephes polynomial, Cody-Waite range reduction).
 * Inputs are clamped to [-87.34, 88.38]: exp(-inf) gives 1.2e-38, not 0 (callers pass x - max <= 0);
 * NaN in gives NaN out, with no undefined behaviour: the exponent is built from
 * an integer that is 0 for NaN (converting NaN to an integer is UB in C), and shifted unsigned.
 * Needs -fno-trapping-math to vectorize (set for the whole project). */
#ifndef QA_FASTMATH_H
#define QA_FASTMATH_H
#include <stdint.h>
#include <string.h>

static inline float qa_expf(float x) {
    x = x > 88.3762626647949f ? 88.3762626647949f : x;
    x = x < -87.3365478515625f ? -87.3365478515625f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest integer */
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    n = n == n ? n : 0.0f;                                /* NaN: the polynomial p carries it through */
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;  /* n in [-126, 128]: a biased exponent 1..255 */
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}
#endif
