/* gemm.c — the CPU backend's matrix product (BLIS-style blocking): op(B) is packed in [KC x NC]
 * blocks of NR-wide panels (BF16 converted to f32 while packing: no converted copy of a weight ever
 * exists outside this L3-sized block), op(A) in [MC x KC] blocks of MR-row panels, and an MR x NR
 * register-tile microkernel (AVX2+FMA when the CPU has it, plain C otherwise) runs over the blocks.
 * NF4 weights (kernels/nf4.h) are dequantized the same way, 8 codes at a time into the packed block
 * (code[q] * absmax, the fp32 product bitsandbytes computes): a product with an NF4 B is bitwise the
 * product with its dequantized F32 copy, which never exists.
 *
 * Threads: rows of C are split statically over the pool's threads, which pack each B block together
 * (barrier) and their own A blocks; when C has few rows its columns are split instead. Each element of
 * C is accumulated by one thread in the same K order whatever the thread count: results are bitwise
 * independent of scheduling and of the number of threads. */
#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/vecmath.h"
#include "kernels/nf4.h"
#include "common/qa_mem.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define QA_HAVE_X86 1
#endif

enum { MR = QA_GEMM_MR, NR = QA_GEMM_NR, KC = QA_GEMM_KC, MC = QA_GEMM_MC, NC = QA_GEMM_NC };

/* ---- workspaces ----------------------------------------------------------------------------- */
void qa_cpu_tws_init(qa_cpu_tws *w) {
    w->pa = qa_aligned_alloc(64, sizeof(float) * (MC * KC + 16)); /* + slack: pack_an_panel_avx2 */
    w->pb = qa_aligned_alloc(64, sizeof(float) * (size_t)KC * NC);
    w->tmp = NULL;
    w->tmp_cap = 0;
}
void qa_cpu_tws_free(qa_cpu_tws *w) {
    free(w->pa);
    free(w->pb);
    free(w->tmp);
    memset(w, 0, sizeof *w);
}
float *qa_cpu_tws_tmp(qa_cpu_tws *w, size_t n) {
    if (w->tmp_cap < n) {
        free(w->tmp);
        w->tmp = qa_aligned_alloc(64, (n ? n : 1) * sizeof(float));
        w->tmp_cap = n;
    }
    return w->tmp;
}

/* ---- packing -------------------------------------------------------------------------------- */
/* CPU features: libgcc fills __cpu_model before main, so this is two loads */
static inline int have_avx2(void) {
#ifdef QA_HAVE_X86
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}
#ifdef QA_HAVE_X86
__attribute__((target("avx2"))) static void pack_an_panel_avx2(float *d, const float *const *r, size_t lda, int kc,
                                                               float alpha);
#endif
/* op(A) rows [i0, i0+mc) x cols [p0, p0+kc) -> MR-row panels, k-major, alpha applied, zero rows past mc */
static void pack_a(float *dst, int ta, const float *A, int lda, int i0, int mc, int p0, int kc, float alpha) {
    for (int ip = 0; ip < mc; ip += MR) {
        const int mr = mc - ip < MR ? mc - ip : MR;
        float *d = dst + (size_t)ip * kc;
        if (!ta) {
            const float *r[MR];
            for (int q = 0; q < MR; q++) r[q] = A + (size_t)(i0 + ip + (q < mr ? q : 0)) * lda + p0;
            if (mr == MR) {
#ifdef QA_HAVE_X86
                if (have_avx2()) { pack_an_panel_avx2(d, r, (size_t)lda, kc, alpha); continue; }
#endif
                for (int k = 0; k < kc; k++)
                    for (int q = 0; q < MR; q++) d[k * MR + q] = alpha * r[q][k];
            } else {
                for (int k = 0; k < kc; k++)
                    for (int q = 0; q < MR; q++) d[k * MR + q] = q < mr ? alpha * r[q][k] : 0.0f;
            }
        } else {
            for (int k = 0; k < kc; k++) {
                const float *s = A + (size_t)(p0 + k) * lda + i0 + ip;
                for (int q = 0; q < MR; q++) d[k * MR + q] = q < mr ? alpha * s[q] : 0.0f;
            }
        }
    }
}

static inline float bf(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
/* stored element (r, c) of B, any dtype */
static inline float bget(const qa_gemm_b *B, size_t r, size_t c) {
    switch (B->dt) {
    case QA_DT_BF16: return bf(((const uint16_t *)B->p)[r * B->ld + c]);
    case QA_DT_NF4: return qa_nf4_get(B->p, B->absmax, B->off + r * B->ld + c);
    default: return ((const float *)B->p)[r * B->ld + c];
    }
}
/* NF4 rows can be read 8 at a time when every 8-run starts on a multiple of 8 (a run never straddles a
 * 64-block then): the row stride and the first element of the panel are multiples of 8 */
static inline int nf4_runs8(const qa_gemm_b *B, size_t first) { return B->ld % 8 == 0 && first % 8 == 0; }

#ifdef QA_HAVE_X86
/* 16 rows x 8 bf16 (row stride ld elements) -> 8 k-rows of 16 floats: two 8x8 transposes */
__attribute__((target("avx2"))) static inline void tr8x8(__m256 r0, __m256 r1, __m256 r2, __m256 r3, __m256 r4,
                                                          __m256 r5, __m256 r6, __m256 r7, float *d, int ds) {
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_store_ps(d + 0 * ds, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_store_ps(d + 1 * ds, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_store_ps(d + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_store_ps(d + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_store_ps(d + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_store_ps(d + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_store_ps(d + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_store_ps(d + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}
__attribute__((target("avx2"))) static inline __m256 ld8_bf16(const uint16_t *s) {
    __m128i h = _mm_loadu_si128((const __m128i *)s);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
/* NF4 elements i .. i+7 (i % 8 == 0): 4 bytes, high nibble first; two 8-entry table lookups blended on
 * bit 3 of the code, times the block's absmax */
__attribute__((target("avx2"))) static inline __m256 ld8_nf4(const uint8_t *codes, const float *absmax, size_t i) {
    uint32_t u;
    memcpy(&u, codes + i / 2, 4);
    const __m256i q = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)u),
                                                         _mm256_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24)),
                                       _mm256_set1_epi32(15));
    const __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(qa_nf4_code), q);
    const __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(qa_nf4_code + 8), q);
    const __m256 c = _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(q, 28)));
    return _mm256_mul_ps(c, _mm256_set1_ps(absmax[i / QA_NF4_BLOCK]));
}
/* NF4 panels: the same layouts as pack_bn_panel_avx2 / pack_bt_panel_avx2 (nf4_runs8 holds) */
__attribute__((target("avx2"))) static void pack_bn_panel_nf4(float *d, const qa_gemm_b *B, size_t first, int kc) {
    const uint8_t *c = B->p;
    for (int k = 0; k < kc; k++, first += (size_t)B->ld, d += NR) {
        _mm256_store_ps(d, ld8_nf4(c, B->absmax, first));
        _mm256_store_ps(d + 8, ld8_nf4(c, B->absmax, first + 8));
    }
}
__attribute__((target("avx2"))) static void pack_bt_panel_nf4(float *d, const qa_gemm_b *B, size_t first, int kc) {
    const uint8_t *c = B->p;
    const size_t ld = (size_t)B->ld;
    int k = 0;
    for (; k + 8 <= kc; k += 8)
        for (int h = 0; h < 2; h++) {
            const size_t f = first + (size_t)(8 * h) * ld + k;
            tr8x8(ld8_nf4(c, B->absmax, f), ld8_nf4(c, B->absmax, f + ld), ld8_nf4(c, B->absmax, f + 2 * ld),
                  ld8_nf4(c, B->absmax, f + 3 * ld), ld8_nf4(c, B->absmax, f + 4 * ld),
                  ld8_nf4(c, B->absmax, f + 5 * ld), ld8_nf4(c, B->absmax, f + 6 * ld),
                  ld8_nf4(c, B->absmax, f + 7 * ld), d + (size_t)k * NR + 8 * h, NR);
        }
    for (; k < kc; k++)
        for (int r = 0; r < NR; r++) d[(size_t)k * NR + r] = qa_nf4_get(c, B->absmax, first + (size_t)r * ld + k);
}
/* one full NR panel of a row-major operand: row k holds the panel's NR values at src + k*ld */
__attribute__((target("avx2"))) static void pack_bn_panel_avx2(float *d, const void *src, qa_dtype dt, size_t ld,
                                                               int kc) {
    if (dt == QA_DT_BF16) {
        const uint16_t *s = src;
        for (int k = 0; k < kc; k++, s += ld, d += NR) {
            _mm_prefetch((const char *)(s + 16 * ld), _MM_HINT_T0);
            _mm256_store_ps(d, ld8_bf16(s));
            _mm256_store_ps(d + 8, ld8_bf16(s + 8));
        }
    } else {
        const float *s = src;
        for (int k = 0; k < kc; k++, s += ld, d += NR) {
            _mm_prefetch((const char *)(s + 16 * ld), _MM_HINT_T0);
            _mm256_store_ps(d, _mm256_loadu_ps(s));
            _mm256_store_ps(d + 8, _mm256_loadu_ps(s + 8));
        }
    }
}
/* one full MR panel of a row-major A: rows r[0..MR), k in [0, kc), times alpha. Each 8-k step
 * transposes an 8x8 block (rows 6, 7 repeat row 5) and stores the 6 valid lanes of each k-row; the
 * 2 extra lanes spill into the next k-row (rewritten next) or past the panel (the buffer has slack). */
__attribute__((target("avx2"))) static void pack_an_panel_avx2(float *d, const float *const *r, size_t lda, int kc,
                                                               float alpha) {
    const __m256 al = _mm256_set1_ps(alpha);
    int k = 0;
    float t[8 * 8] __attribute__((aligned(32)));
    for (; k + 8 <= kc; k += 8) {
        if ((k & 15) == 0) /* the next panel's rows */
            for (int q = 0; q < MR; q++) _mm_prefetch((const char *)(r[q] + MR * lda + k), _MM_HINT_T0);
        __m256 a0 = _mm256_mul_ps(al, _mm256_loadu_ps(r[0] + k)), a1 = _mm256_mul_ps(al, _mm256_loadu_ps(r[1] + k));
        __m256 a2 = _mm256_mul_ps(al, _mm256_loadu_ps(r[2] + k)), a3 = _mm256_mul_ps(al, _mm256_loadu_ps(r[3] + k));
        __m256 a4 = _mm256_mul_ps(al, _mm256_loadu_ps(r[4] + k)), a5 = _mm256_mul_ps(al, _mm256_loadu_ps(r[5] + k));
        tr8x8(a0, a1, a2, a3, a4, a5, a5, a5, t, 8);
        for (int q = 0; q < 8; q++) _mm256_storeu_ps(d + (size_t)(k + q) * MR, _mm256_load_ps(t + 8 * q));
    }
    for (; k < kc; k++)
        for (int q = 0; q < MR; q++) d[(size_t)k * MR + q] = alpha * r[q][k];
}
/* one full NR panel of a transposed operand: rows j (NR of them, stride ld), k in [0, kc) */
__attribute__((target("avx2"))) static void pack_bt_panel_avx2(float *d, const void *src, qa_dtype dt, size_t ld,
                                                               int kc) {
    int k = 0;
    if (dt == QA_DT_BF16) {
        const uint16_t *s = src, *next = s + (size_t)NR * ld; /* the next panel's rows: prefetched */
        for (; k + 8 <= kc; k += 8) {
            if ((k & 31) == 0)
                for (int r = 0; r < NR; r++) _mm_prefetch((const char *)(next + (size_t)r * ld + k), _MM_HINT_T0);
            for (int h = 0; h < 2; h++) {
                const uint16_t *b = s + (size_t)(8 * h) * ld + k;
                tr8x8(ld8_bf16(b), ld8_bf16(b + ld), ld8_bf16(b + 2 * ld), ld8_bf16(b + 3 * ld), ld8_bf16(b + 4 * ld),
                      ld8_bf16(b + 5 * ld), ld8_bf16(b + 6 * ld), ld8_bf16(b + 7 * ld), d + (size_t)k * NR + 8 * h, NR);
            }
        }
        for (; k < kc; k++)
            for (int c = 0; c < NR; c++) d[(size_t)k * NR + c] = bf(s[(size_t)c * ld + k]);
    } else {
        const float *s = src, *next = s + (size_t)NR * ld;
        for (; k + 8 <= kc; k += 8) {
            if ((k & 15) == 0)
                for (int r = 0; r < NR; r++) _mm_prefetch((const char *)(next + (size_t)r * ld + k), _MM_HINT_T0);
            for (int h = 0; h < 2; h++) {
                const float *b = s + (size_t)(8 * h) * ld + k;
                tr8x8(_mm256_loadu_ps(b), _mm256_loadu_ps(b + ld), _mm256_loadu_ps(b + 2 * ld),
                      _mm256_loadu_ps(b + 3 * ld), _mm256_loadu_ps(b + 4 * ld), _mm256_loadu_ps(b + 5 * ld),
                      _mm256_loadu_ps(b + 6 * ld), _mm256_loadu_ps(b + 7 * ld), d + (size_t)k * NR + 8 * h, NR);
            }
        }
        for (; k < kc; k++)
            for (int c = 0; c < NR; c++) d[(size_t)k * NR + c] = s[(size_t)c * ld + k];
    }
}
#endif


/* op(B) rows [p0, p0+kc) x cols [j0+jp0, j0+jp1) (jp multiples of NR) -> NR-wide panels, zero past n */
static void pack_b(float *dst, qa_gemm_b B, int p0, int kc, int j0, int n, int jp0, int jp1) {
    for (int jp = jp0; jp < jp1; jp += NR) {
        const int nr = n - jp < NR ? n - jp : NR;
        float *d = dst + (size_t)jp * kc;
        const int j = j0 + jp;
        if (B.trans) { /* op(B)(k, j) = B[j, k] */
#ifdef QA_HAVE_X86
            if (B.dt == QA_DT_NF4) {
                const size_t first = B.off + (size_t)j * B.ld + p0;
                if (nr == NR && have_avx2() && nf4_runs8(&B, first)) { pack_bt_panel_nf4(d, &B, first, kc); continue; }
            } else if (nr == NR && have_avx2()) {
                size_t es = B.dt == QA_DT_BF16 ? 2 : 4;
                pack_bt_panel_avx2(d, (const char *)B.p + ((size_t)j * B.ld + p0) * es, B.dt, (size_t)B.ld, kc);
                continue;
            }
#endif
            for (int c = 0; c < NR; c++) {
                if (c >= nr) { for (int k = 0; k < kc; k++) d[(size_t)k * NR + c] = 0.0f; continue; }
                if (B.dt == QA_DT_BF16) {
                    const uint16_t *s = (const uint16_t *)B.p + (size_t)(j + c) * B.ld + p0;
                    for (int k = 0; k < kc; k++) d[(size_t)k * NR + c] = bf(s[k]);
                } else if (B.dt == QA_DT_NF4) {
                    for (int k = 0; k < kc; k++) d[(size_t)k * NR + c] = bget(&B, (size_t)(j + c), (size_t)(p0 + k));
                } else {
                    const float *s = (const float *)B.p + (size_t)(j + c) * B.ld + p0;
                    for (int k = 0; k < kc; k++) d[(size_t)k * NR + c] = s[k];
                }
            }
        } else {         /* op(B)(k, j) = B[k, j] */
#ifdef QA_HAVE_X86
            if (B.dt == QA_DT_NF4) {
                const size_t first = B.off + (size_t)p0 * B.ld + j;
                if (nr == NR && have_avx2() && nf4_runs8(&B, first)) { pack_bn_panel_nf4(d, &B, first, kc); continue; }
            } else if (nr == NR && have_avx2()) {
                size_t es = B.dt == QA_DT_BF16 ? 2 : 4;
                pack_bn_panel_avx2(d, (const char *)B.p + ((size_t)p0 * B.ld + j) * es, B.dt, (size_t)B.ld, kc);
                continue;
            }
#endif
            for (int k = 0; k < kc; k++) {
                float *dk = d + (size_t)k * NR;
                if (B.dt == QA_DT_BF16) {
                    const uint16_t *s = (const uint16_t *)B.p + (size_t)(p0 + k) * B.ld + j;
                    for (int c = 0; c < nr; c++) dk[c] = bf(s[c]);
                } else if (B.dt == QA_DT_NF4) {
                    for (int c = 0; c < nr; c++) dk[c] = bget(&B, (size_t)(p0 + k), (size_t)(j + c));
                } else {
                    const float *s = (const float *)B.p + (size_t)(p0 + k) * B.ld + j;
                    for (int c = 0; c < nr; c++) dk[c] = s[c];
                }
                for (int c = nr; c < NR; c++) dk[c] = 0.0f;
            }
        }
    }
}

/* ---- microkernels: C[mr, nr] = acc + beta C over one A panel and one B panel ------------------ */
/* fused: general beta rounds once (beta * C + acc), like the AVX2 full tile */
static void store_tile(const float *acc, float *C, int ldc, int mr, int nr, float beta, int fused) {
    for (int i = 0; i < mr; i++) {
        float *c = C + (size_t)i * ldc;
        const float *a = acc + i * NR;
        if (beta == 0) for (int j = 0; j < nr; j++) c[j] = a[j];
        else if (beta == 1) for (int j = 0; j < nr; j++) c[j] += a[j];
        else if (fused) for (int j = 0; j < nr; j++) c[j] = fmaf(beta, c[j], a[j]);
        else for (int j = 0; j < nr; j++) c[j] = beta * c[j] + a[j];
    }
}

static void ukr_c(int kc, const float *a, const float *b, float *C, int ldc, int mr, int nr, float beta) {
    float acc[MR * NR];
    memset(acc, 0, sizeof acc);
    for (int k = 0; k < kc; k++)
        for (int i = 0; i < MR; i++) {
            const float ai = a[k * MR + i];
            for (int j = 0; j < NR; j++) acc[i * NR + j] += ai * b[k * NR + j];
        }
    store_tile(acc, C, ldc, mr, nr, beta, 0);
}

#ifdef QA_HAVE_X86
__attribute__((target("avx2,fma"))) static void ukr_avx2(int kc, const float *a, const float *b, float *C, int ldc,
                                                         int mr, int nr, float beta) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(C + (size_t)i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + (size_t)i * ldc + 15), _MM_HINT_T0);
    }
    for (int k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        __m256 t = _mm256_broadcast_ss(a);
        c00 = _mm256_fmadd_ps(t, b0, c00); c01 = _mm256_fmadd_ps(t, b1, c01);
        t = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(t, b0, c10); c11 = _mm256_fmadd_ps(t, b1, c11);
        t = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(t, b0, c20); c21 = _mm256_fmadd_ps(t, b1, c21);
        t = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(t, b0, c30); c31 = _mm256_fmadd_ps(t, b1, c31);
        t = _mm256_broadcast_ss(a + 4);
        c40 = _mm256_fmadd_ps(t, b0, c40); c41 = _mm256_fmadd_ps(t, b1, c41);
        t = _mm256_broadcast_ss(a + 5);
        c50 = _mm256_fmadd_ps(t, b0, c50); c51 = _mm256_fmadd_ps(t, b1, c51);
        a += MR;
        b += NR;
    }
    if (mr == MR && nr == NR) {
        __m256 r[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
        if (beta == 0) {
            for (int i = 0; i < MR; i++) {
                _mm256_storeu_ps(C + (size_t)i * ldc, r[2 * i]);
                _mm256_storeu_ps(C + (size_t)i * ldc + 8, r[2 * i + 1]);
            }
        } else if (beta == 1) {
            for (int i = 0; i < MR; i++) {
                float *c = C + (size_t)i * ldc;
                _mm256_storeu_ps(c, _mm256_add_ps(_mm256_loadu_ps(c), r[2 * i]));
                _mm256_storeu_ps(c + 8, _mm256_add_ps(_mm256_loadu_ps(c + 8), r[2 * i + 1]));
            }
        } else {
            const __m256 bv = _mm256_set1_ps(beta);
            for (int i = 0; i < MR; i++) {
                float *c = C + (size_t)i * ldc;
                _mm256_storeu_ps(c, _mm256_fmadd_ps(bv, _mm256_loadu_ps(c), r[2 * i]));
                _mm256_storeu_ps(c + 8, _mm256_fmadd_ps(bv, _mm256_loadu_ps(c + 8), r[2 * i + 1]));
            }
        }
        return;
    }
    float acc[MR * NR] __attribute__((aligned(32)));
    _mm256_store_ps(acc + 0, c00); _mm256_store_ps(acc + 8, c01);
    _mm256_store_ps(acc + 16, c10); _mm256_store_ps(acc + 24, c11);
    _mm256_store_ps(acc + 32, c20); _mm256_store_ps(acc + 40, c21);
    _mm256_store_ps(acc + 48, c30); _mm256_store_ps(acc + 56, c31);
    _mm256_store_ps(acc + 64, c40); _mm256_store_ps(acc + 72, c41);
    _mm256_store_ps(acc + 80, c50); _mm256_store_ps(acc + 88, c51);
    store_tile(acc, C, ldc, mr, nr, beta, 1);
}
#endif

typedef void (*ukr_fn)(int, const float *, const float *, float *, int, int, int, float);
static ukr_fn pick_ukr(void) {
#ifdef QA_HAVE_X86
    if (have_avx2()) return ukr_avx2;
#endif
    return ukr_c;
}

/* C[mc, nc] (=|+=) packed A block x packed B block */
static void macro(ukr_fn uk, int mc, int nc, int kc, const float *pa, const float *pb, float *C, int ldc, float beta) {
    for (int jr = 0; jr < nc; jr += NR) {
        const int nr = nc - jr < NR ? nc - jr : NR;
        for (int ir = 0; ir < mc; ir += MR) {
            const int mr = mc - ir < MR ? mc - ir : MR;
            uk(kc, pa + (size_t)ir * kc, pb + (size_t)jr * kc, C + (size_t)ir * ldc + jr, ldc, mr, nr, beta);
        }
    }
}

static void scale_c(int M, int N, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0) memset(c, 0, sizeof(float) * N);
        else if (beta != 1) for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

/* ---- few rows against a transposed B (lm_head of a few positions): no packing ------------------ *
 * Each B row is read once; 8 of them are transposed in registers and every output lane takes the same
 * steps as in the microkernel (alpha folded into A, one FMA per k in order, a fresh accumulator per
 * KC block added to C), so the result is bitwise the one of the packed path: a row of C does not depend
 * on how many rows are computed with it. */
enum { GEMV_MAX_M = 4 };
#ifdef QA_HAVE_X86
/* 8 consecutive k of the 8 B rows j.. (rows past nj read as 0) -> t[q] = lanes j, k + q (NF4: nf4_runs8) */
__attribute__((target("avx2,fma"))) static inline void ld8x8(const qa_gemm_b *B, int j, int nj, size_t k, float t[64]) {
    __m256 r[8];
    const size_t ld = (size_t)B->ld;
    for (int q = 0; q < 8; q++)
        r[q] = q >= nj ? _mm256_setzero_ps()
             : B->dt == QA_DT_BF16 ? ld8_bf16((const uint16_t *)B->p + (size_t)(j + q) * ld + k)
             : B->dt == QA_DT_NF4 ? ld8_nf4(B->p, B->absmax, B->off + (size_t)(j + q) * ld + k)
                                   : _mm256_loadu_ps((const float *)B->p + (size_t)(j + q) * ld + k);
    tr8x8(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], t, 8);
}
__attribute__((target("avx2,fma"))) static void gemv_bt(int M, int j0, int j1, int K, float alpha, const float *A,
                                                        int lda, qa_gemm_b B, float beta, float *C, int ldc) {
    float t[64] __attribute__((aligned(32)));
    const int fast = B.dt != QA_DT_NF4 || nf4_runs8(&B, B.off + (size_t)j0 * B.ld);
    for (int j = j0; j < j1; j += 8) {
        const int nj = j1 - j < 8 ? j1 - j : 8;
        for (int pc = 0; pc < K; pc += KC) {
            const int kc = K - pc < KC ? K - pc : KC;
            const float be = pc == 0 ? beta : 1.0f;
            __m256 acc[GEMV_MAX_M];
            for (int i = 0; i < M; i++) acc[i] = _mm256_setzero_ps();
            int k = 0;
            for (; k + 8 <= kc; k += 8) {
                if (fast) {
                    ld8x8(&B, j, nj, (size_t)(pc + k), t);
                } else {
                    for (int q = 0; q < 8; q++)
                        for (int c = 0; c < 8; c++) t[8 * q + c] = c < nj ? bget(&B, (size_t)(j + c), (size_t)(pc + k + q)) : 0.0f;
                }
                for (int q = 0; q < 8; q++) {
                    const __m256 bq = _mm256_load_ps(t + 8 * q);
                    for (int i = 0; i < M; i++)
                        acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(alpha * A[(size_t)i * lda + pc + k + q]), bq, acc[i]);
                }
            }
            for (; k < kc; k++) {
                float bk[8] = {0};
                for (int q = 0; q < nj; q++) bk[q] = bget(&B, (size_t)(j + q), (size_t)(pc + k));
                const __m256 bq = _mm256_loadu_ps(bk);
                for (int i = 0; i < M; i++)
                    acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(alpha * A[(size_t)i * lda + pc + k]), bq, acc[i]);
            }
            for (int i = 0; i < M; i++) {
                float r[8];
                _mm256_storeu_ps(r, acc[i]);
                float *c = C + (size_t)i * ldc + j;
                for (int q = 0; q < nj; q++)
                    c[q] = be == 0 ? r[q] : be == 1 ? c[q] + r[q] : fmaf(be, c[q], r[q]);
            }
        }
    }
}
#endif
static int use_gemv(int ta, int M, qa_gemm_b B) {
#ifdef QA_HAVE_X86
    return !ta && B.trans && M <= GEMV_MAX_M && have_avx2();
#else
    (void)ta; (void)M; (void)B;
    return 0;
#endif
}

/* ---- drivers ----------------------------------------------------------------------------------- */
void qa_gemm_st(qa_cpu_tws *w, int ta, int M, int N, int K, float alpha, const float *A, int lda, qa_gemm_b B,
                float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { scale_c(M, N, beta, C, ldc); return; }
#ifdef QA_HAVE_X86
    if (use_gemv(ta, M, B)) { gemv_bt(M, 0, N, K, alpha, A, lda, B, beta, C, ldc); return; }
#endif
    ukr_fn uk = pick_ukr();
    for (int jc = 0; jc < N; jc += NC) {
        const int nc = N - jc < NC ? N - jc : NC;
        for (int pc = 0; pc < K; pc += KC) {
            const int kc = K - pc < KC ? K - pc : KC;
            const float be = pc == 0 ? beta : 1.0f;
            pack_b(w->pb, B, pc, kc, jc, nc, 0, nc);
            for (int ic = 0; ic < M; ic += MC) {
                const int mc = M - ic < MC ? M - ic : MC;
                pack_a(w->pa, ta, A, lda, ic, mc, pc, kc, alpha);
                macro(uk, mc, nc, kc, w->pa, w->pb, C + (size_t)ic * ldc + jc, ldc, be);
            }
        }
    }
}

void qa_gemm_st_batch(qa_cpu_tws *w, int nA, int ta, int M, int N, int K, float alpha, const float *const *A, int lda,
                      qa_gemm_b B, float beta, float *const *C, int ldc) {
    if (M <= 0 || N <= 0 || nA <= 0) return;
    if (K <= 0 || use_gemv(ta, M, B)) {
        for (int i = 0; i < nA; i++) qa_gemm_st(w, ta, M, N, K, alpha, A[i], lda, B, beta, C[i], ldc);
        return;
    }
    ukr_fn uk = pick_ukr();
    for (int jc = 0; jc < N; jc += NC) {
        const int nc = N - jc < NC ? N - jc : NC;
        for (int pc = 0; pc < K; pc += KC) {
            const int kc = K - pc < KC ? K - pc : KC;
            const float be = pc == 0 ? beta : 1.0f;
            pack_b(w->pb, B, pc, kc, jc, nc, 0, nc);
            for (int i = 0; i < nA; i++)
                for (int ic = 0; ic < M; ic += MC) {
                    const int mc = M - ic < MC ? M - ic : MC;
                    pack_a(w->pa, ta, A[i], lda, ic, mc, pc, kc, alpha);
                    macro(uk, mc, nc, kc, w->pa, w->pb, C[i] + (size_t)ic * ldc + jc, ldc, be);
                }
        }
    }
}

/* ---- A with a SwiGLU prologue: A(i, k) = silu(g[i, k]) * u[i, k], computed while packing -------- */
static inline float swiglu1(float g, float u) { return g / (1.0f + qa_expf(-g)) * u; }
#ifdef QA_HAVE_X86
__attribute__((target("avx2,fma"))) static inline __m256 swiglu8(__m256 g, __m256 u) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, qa_exp8(_mm256_xor_ps(_mm256_set1_ps(-0.0f), g)))), u);
}
__attribute__((target("avx2,fma"))) static void pack_aswi_panel_avx2(float *d, const float *const *r,
                                                                     const float *const *ru, int kc, float alpha) {
    const __m256 al = _mm256_set1_ps(alpha);
    float t[8 * 8] __attribute__((aligned(32)));
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 a[MR];
        for (int q = 0; q < MR; q++)
            a[q] = _mm256_mul_ps(al, swiglu8(_mm256_loadu_ps(r[q] + k), _mm256_loadu_ps(ru[q] + k)));
        tr8x8(a[0], a[1], a[2], a[3], a[4], a[5], a[5], a[5], t, 8);
        for (int q = 0; q < 8; q++) _mm256_storeu_ps(d + (size_t)(k + q) * MR, _mm256_load_ps(t + 8 * q));
    }
    for (; k < kc; k++)
        for (int q = 0; q < MR; q++) d[(size_t)k * MR + q] = alpha * swiglu1(r[q][k], ru[q][k]);
}
#endif
static void pack_a_op(float *dst, qa_gemm_a A, int i0, int mc, int p0, int kc, float alpha) {
    if (!A.u) { pack_a(dst, A.ta, A.p, A.ld, i0, mc, p0, kc, alpha); return; }
    for (int ip = 0; ip < mc; ip += MR) {
        const int mr = mc - ip < MR ? mc - ip : MR;
        float *d = dst + (size_t)ip * kc;
        const float *r[MR], *ru[MR];
        for (int q = 0; q < MR; q++) {
            size_t off = (size_t)(i0 + ip + (q < mr ? q : 0)) * A.ld + p0;
            r[q] = A.p + off;
            ru[q] = A.u + off;
        }
#ifdef QA_HAVE_X86
        if (mr == MR && have_avx2()) { pack_aswi_panel_avx2(d, r, ru, kc, alpha); continue; }
#endif
        for (int k = 0; k < kc; k++)
            for (int q = 0; q < MR; q++) d[k * MR + q] = q < mr ? alpha * swiglu1(r[q][k], ru[q][k]) : 0.0f;
    }
}

/* Threaded products. Work is handed out in chunks through atomic counters (rows of C in the row
 * split, B panels while packing, columns of C in the column split): a thread slowed down by other
 * processes does fewer chunks. Every element of C is still computed by one thread in the fixed K order,
 * so the result does not depend on which thread takes which chunk. */
enum { ROW_CHUNK = 8 * MR, PANEL_CHUNK = 4, COL_CHUNK = 16 * NR };

/* Output segments side by side in a virtual column space, each starting on a panel boundary: segment
 * i covers virtual columns [vs[i], vs[i] + n_i) and panels never straddle two segments. */
typedef struct gemm_job {
    qa_stream *s;
    int M, K, nseg, NV;                      /* NV: virtual columns (panel-padded) */
    float alpha, beta;
    qa_gemm_a A;
    qa_gemm_seg seg[QA_GEMM_MAX_SEG];
    int vs[QA_GEMM_MAX_SEG + 1];
    _Atomic int *ctr;                        /* rows: [2 per (jc, pc) block]; cols: [1] */
} gemm_job;

static inline int seg_of(const gemm_job *j, int jv) {
    int i = 0;
    while (i + 1 < j->nseg && jv >= j->vs[i + 1]) i++;
    return i;
}

/* packed panels of virtual columns [q0, q1) of block (jc, pc) */
static void pack_b_virt(float *pb, const gemm_job *j, int jc, int pc, int kc, int q0, int q1) {
    for (int jp = q0; jp < q1; jp += NR) {
        const int jv = jc + jp, i = seg_of(j, jv), local = jv - j->vs[i];
        pack_b(pb + (size_t)jp * kc, j->seg[i].B, pc, kc, local, j->seg[i].n - local, 0, NR);
    }
}

/* C (=|+=) packed A rows x packed B block of virtual columns [jc, jc + nc) */
static void macro_virt(ukr_fn uk, const gemm_job *j, int i0, int mc, int jc, int nc, int kc, const float *pa,
                       const float *pb, float beta) {
    for (int jr = 0; jr < nc; jr += NR) {
        const int jv = jc + jr, i = seg_of(j, jv), local = jv - j->vs[i];
        const int nr = j->seg[i].n - local < NR ? j->seg[i].n - local : NR;
        float *C = j->seg[i].C + (size_t)i0 * j->seg[i].ldc + local;
        const int ldc = j->seg[i].ldc;
        for (int ir = 0; ir < mc; ir += MR) {
            const int mr = mc - ir < MR ? mc - ir : MR;
            uk(kc, pa + (size_t)ir * kc, pb + (size_t)jr * kc, C + (size_t)ir * ldc, ldc, mr, nr, beta);
        }
    }
}

/* rows split: the (jc, pc) blocks of B are packed by all threads together into one of two shared
 * buffers (double buffered: one barrier per block), then row chunks of C are taken one at a time */
static void gemm_rows_task(void *ctx, int tid, int nt) {
    (void)nt;
    gemm_job *j = ctx;
    qa_stream *s = j->s;
    qa_cpu_tws *w = &s->tws[tid];
    ukr_fn uk = pick_ukr();
    const int nrc = (j->M + ROW_CHUNK - 1) / ROW_CHUNK;
    int blk = 0;
    for (int jc = 0; jc < j->NV; jc += NC) {
        const int nc = j->NV - jc < NC ? j->NV - jc : NC;
        const int np = (nc + NR - 1) / NR, nbc = (np + PANEL_CHUNK - 1) / PANEL_CHUNK;
        for (int pc = 0; pc < j->K; pc += KC, blk++) {
            const int kc = j->K - pc < KC ? j->K - pc : KC;
            const float be = pc == 0 ? j->beta : 1.0f;
            float *pb = s->pb_shared[blk & 1];
            for (int c; (c = atomic_fetch_add_explicit(&j->ctr[2 * blk], 1, memory_order_relaxed)) < nbc;) {
                int q0 = c * PANEL_CHUNK * NR, q1 = q0 + PANEL_CHUNK * NR;
                pack_b_virt(pb, j, jc, pc, kc, q0, q1 < nc ? q1 : nc);
            }
            qa_pool_barrier(s->pool);      /* block packed; every thread is done with block blk-1 */
            for (int c; (c = atomic_fetch_add_explicit(&j->ctr[2 * blk + 1], 1, memory_order_relaxed)) < nrc;) {
                const int i0 = c * ROW_CHUNK, mc = j->M - i0 < ROW_CHUNK ? j->M - i0 : ROW_CHUNK;
                pack_a_op(w->pa, j->A, i0, mc, pc, kc, j->alpha);
                macro_virt(uk, j, i0, mc, jc, nc, kc, w->pa, pb, be);
            }
        }
    }
}

/* columns split (few rows, one segment, plain A): each thread multiplies all of A by the column chunks
 * it takes */
static void gemm_cols_task(void *ctx, int tid, int nt) {
    (void)nt;
    gemm_job *j = ctx;
    const qa_gemm_seg *g = &j->seg[0];
    const int ncc = (g->n + COL_CHUNK - 1) / COL_CHUNK;
    const size_t es = g->B.dt == QA_DT_BF16 ? 2 : 4;
    for (int c; (c = atomic_fetch_add_explicit(&j->ctr[0], 1, memory_order_relaxed)) < ncc;) {
        const int c0 = c * COL_CHUNK, n = g->n - c0 < COL_CHUNK ? g->n - c0 : COL_CHUNK;
        qa_gemm_b B = g->B;
        const size_t first = B.trans ? (size_t)c0 * B.ld : (size_t)c0;
        if (B.dt == QA_DT_NF4) B.off += first; /* codes and absmax stay the tensor's */
        else B.p = (const char *)B.p + first * es;
        qa_gemm_st(&j->s->tws[tid], j->A.ta, j->M, n, j->K, j->alpha, j->A.p, j->A.ld, B, j->beta, g->C + c0, g->ldc);
    }
}

/* A with a prologue materialized (few rows: the column split packs A per chunk) */
static void materialize_a(const qa_gemm_a *A, int M, int K, float *dst) {
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) {
            size_t o = (size_t)i * A->ld + k;
            dst[(size_t)i * K + k] = swiglu1(A->p[o], A->u[o]);
        }
}

void qa_gemm_ex(qa_stream *s, int M, int K, float alpha, qa_gemm_a A, int nseg, const qa_gemm_seg *seg,
                float beta) {
    if (M <= 0 || nseg <= 0) return;
    if (nseg > QA_GEMM_MAX_SEG) {
        for (int i = 0; i < nseg; i += QA_GEMM_MAX_SEG)
            qa_gemm_ex(s, M, K, alpha, A, nseg - i < QA_GEMM_MAX_SEG ? nseg - i : QA_GEMM_MAX_SEG, seg + i, beta);
        return;
    }
    int NV = 0;
    for (int i = 0; i < nseg; i++) NV += (seg[i].n + NR - 1) / NR * NR;
    if (NV <= 0) return;
    const double flops = 2.0 * M * NV * (K > 0 ? K : 1);
    if (!s || K <= 0 || flops < 4e5 || M < 2 * ROW_CHUNK) {
        /* one segment at a time on the plain paths (A materialized when it has a prologue) */
        float *buf = NULL;
        qa_gemm_a a = A;
        if (A.u && K > 0) {
            buf = qa_malloc(sizeof(float) * (size_t)M * K);
            materialize_a(&A, M, K, buf);
            a = (qa_gemm_a){buf, K, 0, NULL};
        }
        for (int i = 0; i < nseg; i++) qa_gemm(s, a.ta, M, seg[i].n, K, alpha, a.p, a.ld, seg[i].B, beta, seg[i].C, seg[i].ldc);
        free(buf);
        return;
    }
    gemm_job j;
    memset(&j, 0, sizeof j);
    j.s = s; j.M = M; j.K = K; j.nseg = nseg; j.NV = NV; j.alpha = alpha; j.beta = beta; j.A = A;
    for (int i = 0; i < nseg; i++) {
        j.seg[i] = seg[i];
        j.vs[i + 1] = j.vs[i] + (seg[i].n + NR - 1) / NR * NR;
    }
    const int nblk = ((NV + NC - 1) / NC) * ((K + KC - 1) / KC);
    _Atomic int local[256];
    j.ctr = 2 * nblk <= 256 ? local : qa_malloc(sizeof(_Atomic int) * 2 * (size_t)nblk);
    for (int i = 0; i < 2 * nblk; i++) atomic_init(&j.ctr[i], 0);
    qa_pool_run(s->pool, gemm_rows_task, &j);
    if (j.ctr != local) free((void *)j.ctr);
}

void qa_gemm(qa_stream *s, int ta, int M, int N, int K, float alpha, const float *A, int lda, qa_gemm_b B, float beta,
             float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { scale_c(M, N, beta, C, ldc); return; }
    if (!s) {
        qa_cpu_tws w;
        qa_cpu_tws_init(&w);
        qa_gemm_st(&w, ta, M, N, K, alpha, A, lda, B, beta, C, ldc);
        qa_cpu_tws_free(&w);
        return;
    }
    const int nt = s->nt;
    const double flops = 2.0 * M * N * K;
    if (nt == 1 || flops < 4e5) {
        qa_gemm_st(&s->tws[0], ta, M, N, K, alpha, A, lda, B, beta, C, ldc);
    } else if (M >= 2 * ROW_CHUNK) {
        qa_gemm_seg g = {B, N, C, ldc};
        qa_gemm_ex(s, M, K, alpha, (qa_gemm_a){A, lda, ta, NULL}, 1, &g, beta);
    } else if (N >= 2 * COL_CHUNK) {
        gemm_job j;
        memset(&j, 0, sizeof j);
        j.s = s; j.M = M; j.K = K; j.nseg = 1; j.alpha = alpha; j.beta = beta;
        j.A = (qa_gemm_a){A, lda, ta, NULL};
        j.seg[0] = (qa_gemm_seg){B, N, C, ldc};
        _Atomic int c0;
        atomic_init(&c0, 0);
        j.ctr = &c0;
        qa_pool_run(s->pool, gemm_cols_task, &j);
    } else {
        qa_gemm_st(&s->tws[0], ta, M, N, K, alpha, A, lda, B, beta, C, ldc);
    }
}
