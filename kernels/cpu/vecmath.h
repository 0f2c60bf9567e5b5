/* vecmath.h — AVX2 loops of the CPU backend's elementwise kernels (swiglu, cross-entropy, softmax).
 * qa_exp8 is qa_expf (fastmath.h) on 8 lanes with the same operations in the same order (no FMA
 * contraction), so a vector loop and its scalar tail give bitwise the same values. Callers check
 * qa_cpu_have_avx2() and fall back to the scalar loops. */
#ifndef QA_VECMATH_H
#define QA_VECMATH_H
#include "kernels/cpu/fastmath.h"

/* CPU features: libgcc fills __cpu_model before main, so this is two loads */
static inline int qa_cpu_have_avx2(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

#if defined(__x86_64__)
#include <immintrin.h>
#define QA_VEC __attribute__((target("avx2,fma")))

QA_VEC static inline __m256 qa_exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x);
    x = _mm256_max_ps(_mm256_set1_ps(-87.3365478515625f), x);
    const __m256 big = _mm256_set1_ps(12582912.0f);
    __m256 n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), big), big);
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(0.693359375f)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(-2.12194440e-4f)));
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, r2), r), _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

/* out = g / (1 + exp(-g)) * u over [0, n8), n8 a multiple of 8 */
QA_VEC static inline void qa_swiglu_fwd8(long n8, const float *g, const float *u, float *out) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    for (long i = 0; i < n8; i += 8) {
        __m256 gv = _mm256_loadu_ps(g + i);
        __m256 e = qa_exp8(_mm256_xor_ps(sign, gv));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
}
/* sg = 1 / (1 + exp(-g)); du = d * (g * sg); dg = d * u * sg * (1 + g * (1 - sg)) (dg may alias dout) */
QA_VEC static inline void qa_swiglu_bwd8(long n8, const float *g, const float *u, const float *dout, float *dg,
                                         float *du) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    for (long i = 0; i < n8; i += 8) {
        __m256 gv = _mm256_loadu_ps(g + i), d = _mm256_loadu_ps(dout + i), uv = _mm256_loadu_ps(u + i);
        __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, qa_exp8(_mm256_xor_ps(sign, gv))));
        __m256 t = _mm256_add_ps(one, _mm256_mul_ps(gv, _mm256_sub_ps(one, sg)));
        _mm256_storeu_ps(du + i, _mm256_mul_ps(d, _mm256_mul_ps(gv, sg)));
        _mm256_storeu_ps(dg + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(d, uv), sg), t));
    }
}
/* acc[q] += exp(x[b + q] - mx) for 16 lanes over [0, n16) (n16 a multiple of 16), as the scalar loop */
QA_VEC static inline void qa_sumexp16(long n16, const float *x, float mx, float acc[16]) {
    __m256 a0 = _mm256_loadu_ps(acc), a1 = _mm256_loadu_ps(acc + 8), m = _mm256_set1_ps(mx);
    for (long b = 0; b < n16; b += 16) {
        a0 = _mm256_add_ps(a0, qa_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + b), m)));
        a1 = _mm256_add_ps(a1, qa_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + b + 8), m)));
    }
    _mm256_storeu_ps(acc, a0);
    _mm256_storeu_ps(acc + 8, a1);
}
/* max of x[0, n8) with the lanes' running max (NaN-ignoring like `x > mx ? x : mx`) */
QA_VEC static inline float qa_max8(long n8, const float *x, float mx) {
    __m256 m = _mm256_set1_ps(mx);
    for (long j = 0; j < n8; j += 8) m = _mm256_max_ps(_mm256_loadu_ps(x + j), m);
    float t[8];
    _mm256_storeu_ps(t, m);
    for (int q = 0; q < 8; q++) mx = t[q] > mx ? t[q] : mx;
    return mx;
}
/* row[j] = exp(row[j] - mx), acc[q] += row[8i + q] over [0, n8) */
QA_VEC static inline void qa_exp_acc8(long n8, float *row, float mx, float acc[8]) {
    __m256 a = _mm256_loadu_ps(acc), m = _mm256_set1_ps(mx);
    for (long j = 0; j < n8; j += 8) {
        __m256 e = qa_exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), m));
        _mm256_storeu_ps(row + j, e);
        a = _mm256_add_ps(a, e);
    }
    _mm256_storeu_ps(acc, a);
}
/* d[j] = scale * exp(x[j] - l) over [0, n8) */
QA_VEC static inline void qa_scaled_exp8(long n8, const float *x, float l, float scale, float *d) {
    const __m256 lv = _mm256_set1_ps(l), sv = _mm256_set1_ps(scale);
    for (long j = 0; j < n8; j += 8) _mm256_storeu_ps(d + j, _mm256_mul_ps(sv, qa_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), lv))));
}
#endif
#endif
