/* cuda_bf16.h (CUDA simulator) — __nv_bfloat16 / __nv_bfloat162 with CUDA's conversions.
 *
 * float -> bf16 rounds to nearest even exactly as sm_80+'s cvt.rn.bf16.f32 (and cuda_bf16.hpp's host
 * path): a NaN becomes the canonical 0x7fff, overflow rounds to infinity, subnormals round like normals.
 * _rz/_rd/_ru round toward zero / down / up. Arithmetic computes in fp32 and rounds once to bf16. */
#ifndef QASIM_CUDA_BF16_H
#define QASIM_CUDA_BF16_H
#include "qasim.h"

namespace qasim {
static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
/* mode: 0 nearest even, 1 toward zero, 2 down (-inf), 3 up (+inf) */
static inline unsigned short f32_to_bf16(float f, int mode) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
    uint32_t hi = x >> 16, rem = x << 16, neg = x >> 31;
    switch (mode) {
    case 0:
        if (rem > 0x80000000u || (rem == 0x80000000u && (hi & 1u))) hi++;
        break;
    case 2:
        if (rem && neg) hi++;
        break;
    case 3:
        if (rem && !neg) hi++;
        break;
    default:
        break;
    }
    return (unsigned short)hi;
}
/* double -> bf16 with one rounding: truncate to float with a sticky bit (round to odd), then round */
static inline unsigned short f64_to_bf16_rn(double d) {
    if (d != d) return 0x7fffu;
    float f = (float)d;
    if (fabs((double)f) > fabs(d)) f = nextafterf(f, 0.0f);
    uint32_t u = f32_bits(f);
    if ((double)f != d) u |= 1u;
    return f32_to_bf16(bits_f32(u), 0);
}
} // namespace qasim

struct __nv_bfloat16_raw {
    unsigned short x;
};
struct alignas(2) __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    constexpr __nv_bfloat16(const __nv_bfloat16_raw &r) : __x(r.x) {}
    __nv_bfloat16(float f) : __x(::qasim::f32_to_bf16(f, 0)) {}
    __nv_bfloat16(double d) : __x(::qasim::f64_to_bf16_rn(d)) {}
    __nv_bfloat16(int i) : __x(::qasim::f64_to_bf16_rn((double)i)) {}
    __nv_bfloat16(unsigned int i) : __x(::qasim::f64_to_bf16_rn((double)i)) {}
    __nv_bfloat16(long long i) : __x(::qasim::f64_to_bf16_rn((double)i)) {}
    __nv_bfloat16(unsigned long long i) : __x(::qasim::f64_to_bf16_rn((double)i)) {}
    __nv_bfloat16(short i) : __x(::qasim::f64_to_bf16_rn((double)i)) {}
    __nv_bfloat16(unsigned short i) : __x(::qasim::f64_to_bf16_rn((double)i)) {}
    __nv_bfloat16 &operator=(const __nv_bfloat16_raw &r) { __x = r.x; return *this; }
    operator __nv_bfloat16_raw() const { __nv_bfloat16_raw r; r.x = __x; return r; }
    operator float() const { return ::qasim::bits_f32((uint32_t)__x << 16); }
};
typedef __nv_bfloat16 nv_bfloat16;
struct __nv_bfloat162_raw {
    unsigned short x, y;
};
struct alignas(4) __nv_bfloat162 {
    __nv_bfloat16 x, y;
    __nv_bfloat162() = default;
    constexpr __nv_bfloat162(const __nv_bfloat16 &a, const __nv_bfloat16 &b) : x(a), y(b) {}
    __nv_bfloat162(const __nv_bfloat162_raw &r) { x.__x = r.x; y.__x = r.y; }
    operator __nv_bfloat162_raw() const { __nv_bfloat162_raw r; r.x = x.__x; r.y = y.__x; return r; }
};
typedef __nv_bfloat162 nv_bfloat162;

static inline __nv_bfloat16 qasim_bf16_bits(unsigned short u) { __nv_bfloat16_raw r; r.x = u; return r; }

/* conversions */
static inline float __bfloat162float(__nv_bfloat16 a) { return (float)a; }
static inline __nv_bfloat16 __float2bfloat16(float a) { return qasim_bf16_bits(::qasim::f32_to_bf16(a, 0)); }
static inline __nv_bfloat16 __float2bfloat16_rn(float a) { return qasim_bf16_bits(::qasim::f32_to_bf16(a, 0)); }
static inline __nv_bfloat16 __float2bfloat16_rz(float a) { return qasim_bf16_bits(::qasim::f32_to_bf16(a, 1)); }
static inline __nv_bfloat16 __float2bfloat16_rd(float a) { return qasim_bf16_bits(::qasim::f32_to_bf16(a, 2)); }
static inline __nv_bfloat16 __float2bfloat16_ru(float a) { return qasim_bf16_bits(::qasim::f32_to_bf16(a, 3)); }
static inline __nv_bfloat16 __double2bfloat16(double a) { return qasim_bf16_bits(::qasim::f64_to_bf16_rn(a)); }
static inline __nv_bfloat162 __float2bfloat162_rn(float a) {
    return __nv_bfloat162(__float2bfloat16_rn(a), __float2bfloat16_rn(a));
}
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
    return __nv_bfloat162(__float2bfloat16_rn(a), __float2bfloat16_rn(b));
}
static inline __nv_bfloat162 __float22bfloat162_rn(float2 a) { return __floats2bfloat162_rn(a.x, a.y); }
static inline float2 __bfloat1622float2(__nv_bfloat162 a) { return make_float2((float)a.x, (float)a.y); }
static inline float __low2float(__nv_bfloat162 a) { return (float)a.x; }
static inline float __high2float(__nv_bfloat162 a) { return (float)a.y; }
static inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 a) { return a.x; }
static inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 a) { return a.y; }
static inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat162(a, b); }
static inline __nv_bfloat162 __bfloat162bfloat162(__nv_bfloat16 a) { return __nv_bfloat162(a, a); }
static inline __nv_bfloat162 __lows2bfloat162(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(a.x, b.x); }
static inline __nv_bfloat162 __highs2bfloat162(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(a.y, b.y); }
static inline __nv_bfloat162 __lowhigh2highlow(__nv_bfloat162 a) { return __nv_bfloat162(a.y, a.x); }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 a) { return a.__x; }
static inline short __bfloat16_as_short(__nv_bfloat16 a) { return (short)a.__x; }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return qasim_bf16_bits(u); }
static inline __nv_bfloat16 __short_as_bfloat16(short u) { return qasim_bf16_bits((unsigned short)u); }
static inline __nv_bfloat16 __int2bfloat16_rn(int i) { return qasim_bf16_bits(::qasim::f64_to_bf16_rn((double)i)); }
static inline int __bfloat162int_rn(__nv_bfloat16 a) { return (int)rintf((float)a); }
static inline int __bfloat162int_rz(__nv_bfloat16 a) { return (int)(float)a; }

/* arithmetic: fp32, rounded once */
static inline __nv_bfloat16 __hadd(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16_rn((float)a + (float)b); }
static inline __nv_bfloat16 __hsub(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16_rn((float)a - (float)b); }
static inline __nv_bfloat16 __hmul(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16_rn((float)a * (float)b); }
static inline __nv_bfloat16 __hdiv(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16_rn((float)a / (float)b); }
static inline __nv_bfloat16 __hfma(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c) {
    return __double2bfloat16((double)(float)a * (double)(float)b + (double)(float)c);
}
static inline __nv_bfloat16 __hneg(__nv_bfloat16 a) { return qasim_bf16_bits((unsigned short)(a.__x ^ 0x8000u)); }
static inline __nv_bfloat16 __habs(__nv_bfloat16 a) { return qasim_bf16_bits((unsigned short)(a.__x & 0x7fffu)); }
static inline __nv_bfloat16 __hmax(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16_rn(fmaxf(a, b)); }
static inline __nv_bfloat16 __hmin(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16_rn(fminf(a, b)); }
static inline bool __hisnan(__nv_bfloat16 a) { return (a.__x & 0x7fffu) > 0x7f80u; }
static inline int __hisinf(__nv_bfloat16 a) { return (a.__x & 0x7fffu) == 0x7f80u ? (a.__x >> 15 ? -1 : 1) : 0; }
static inline bool __heq(__nv_bfloat16 a, __nv_bfloat16 b) { return (float)a == (float)b; }
static inline bool __hne(__nv_bfloat16 a, __nv_bfloat16 b) { return (float)a != (float)b; }
static inline bool __hlt(__nv_bfloat16 a, __nv_bfloat16 b) { return (float)a < (float)b; }
static inline bool __hle(__nv_bfloat16 a, __nv_bfloat16 b) { return (float)a <= (float)b; }
static inline bool __hgt(__nv_bfloat16 a, __nv_bfloat16 b) { return (float)a > (float)b; }
static inline bool __hge(__nv_bfloat16 a, __nv_bfloat16 b) { return (float)a >= (float)b; }
static inline __nv_bfloat162 __hadd2(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(__hadd(a.x, b.x), __hadd(a.y, b.y)); }
static inline __nv_bfloat162 __hsub2(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(__hsub(a.x, b.x), __hsub(a.y, b.y)); }
static inline __nv_bfloat162 __hmul2(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(__hmul(a.x, b.x), __hmul(a.y, b.y)); }
static inline __nv_bfloat162 __h2div(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(__hdiv(a.x, b.x), __hdiv(a.y, b.y)); }
static inline __nv_bfloat162 __hfma2(__nv_bfloat162 a, __nv_bfloat162 b, __nv_bfloat162 c) {
    return __nv_bfloat162(__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y));
}
static inline __nv_bfloat16 operator+(const __nv_bfloat16 &a, const __nv_bfloat16 &b) { return __hadd(a, b); }
static inline __nv_bfloat16 operator-(const __nv_bfloat16 &a, const __nv_bfloat16 &b) { return __hsub(a, b); }
static inline __nv_bfloat16 operator*(const __nv_bfloat16 &a, const __nv_bfloat16 &b) { return __hmul(a, b); }
static inline __nv_bfloat16 operator/(const __nv_bfloat16 &a, const __nv_bfloat16 &b) { return __hdiv(a, b); }
static inline __nv_bfloat16 &operator+=(__nv_bfloat16 &a, const __nv_bfloat16 &b) { return a = __hadd(a, b); }
static inline __nv_bfloat16 &operator-=(__nv_bfloat16 &a, const __nv_bfloat16 &b) { return a = __hsub(a, b); }
static inline __nv_bfloat16 &operator*=(__nv_bfloat16 &a, const __nv_bfloat16 &b) { return a = __hmul(a, b); }
static inline __nv_bfloat16 &operator/=(__nv_bfloat16 &a, const __nv_bfloat16 &b) { return a = __hdiv(a, b); }
static inline __nv_bfloat16 operator-(const __nv_bfloat16 &a) { return __hneg(a); }
static inline bool operator==(const __nv_bfloat16 &a, const __nv_bfloat16 &b) { return __heq(a, b); }
static inline bool operator!=(const __nv_bfloat16 &a, const __nv_bfloat16 &b) { return __hne(a, b); }
static inline bool operator<(const __nv_bfloat16 &a, const __nv_bfloat16 &b) { return __hlt(a, b); }
static inline bool operator<=(const __nv_bfloat16 &a, const __nv_bfloat16 &b) { return __hle(a, b); }
static inline bool operator>(const __nv_bfloat16 &a, const __nv_bfloat16 &b) { return __hgt(a, b); }
static inline bool operator>=(const __nv_bfloat16 &a, const __nv_bfloat16 &b) { return __hge(a, b); }
#endif
