/* Activation quantizers and float conversions, spec/quant-types.md §2.2-2.3, §4.2-4.4.
 *
 * k2's choice for Q8_0/Q8_1 (§4.2 leaves it to the engine): the x86 rule, because the
 * reference outputs (fixtures/golden) come from llama.cpp built for x86 with AVX2; the
 * portable reference rule is kept as quant_quantize_row_q8_*_ref for comparison. Both
 * are scalar and deterministic, independent of the SIMD level chosen for the kernels. */
#include "quant/quant.h"

#include <math.h>
#include <string.h>

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

uint16_t quant_f32_to_fp16(float f) {
    /* §2.2: round to nearest even; subnormal results are rounded, |x| >= 65520 gives inf,
     * NaN gives sign | 0x7E00. */
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffff;
    if (ax > 0x7f800000) return (uint16_t)(sign | 0x7e00);
    if (ax >= 0x477ff000) return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000) {
        /* below 2^-14: a half subnormal (unit 2^-24) or zero */
        uint32_t e = ax >> 23;
        if (e < 102) return (uint16_t)sign; /* below 2^-25: rounds to 0 (2^-25 itself ties to 0) */
        uint32_t m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ax - 0x38000000u; /* rebias the exponent from 127 to 15 */
    uint32_t h = r >> 13, rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

uint16_t quant_f32_to_bf16(float f) {
    /* §2.3 */
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x0040);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

/* §2.6 nearest_int: half to even via the 1.5*2^23 trick; valid for |v| <= 4194303. */
static inline int nearest_int(float v) {
    float val = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &val, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* x86 rule of §4.2: round half to even, then a saturating int8 conversion that maps
 * out-of-range and NaN products (possible only for subnormal amax) like cvtps2dq+packs. */
static inline int8_t round_even_sat8(float v) {
    if (!(v > -2147483648.0f && v < 2147483648.0f)) return -128;
    if (v >= 127.0f) return 127;
    if (v <= -128.0f) return -128;
    return (int8_t)nearest_int(v);
}

/* Reference rule: roundf (half away from zero); non-finite products are clamped. */
static inline int8_t round_away_sat8(float v) {
    if (v != v) return 0;
    if (v >= 127.0f) return 127;
    if (v <= -128.0f) return -128;
    return (int8_t)roundf(v);
}

static inline void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

static inline float block_amax(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) {
        float v = fabsf(x[j]);
        if (v > amax) amax = v;
    }
    return amax;
}

/* One 32-element block of Q8_0 codes; returns the unrounded f32 scale d. */
static float q8_block(const float *x, int8_t *qs, bool x86) {
    float amax = block_amax(x, 32);
    float d = amax / 127.0f;
    if (x86) {
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        for (int j = 0; j < 32; j++) qs[j] = round_even_sat8(x[j] * id);
    } else {
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 32; j++) qs[j] = round_away_sat8(x[j] * id);
    }
    return d;
}

static void q8_0_row(const float *x, void *vy, int64_t n, bool x86) {
    uint8_t *y = vy;
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += 34) {
        int8_t qs[32];
        float d = q8_block(x, qs, x86);
        wr16(y, quant_f32_to_fp16(d));
        memcpy(y + 2, qs, 32);
    }
}

static void q8_1_row(const float *x, void *vy, int64_t n, bool x86) {
    uint8_t *y = vy;
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += 36) {
        int8_t qs[32];
        float d = q8_block(x, qs, x86);
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += qs[j];
        wr16(y, quant_f32_to_fp16(d));
        wr16(y + 2, quant_f32_to_fp16((float)sum * d));
        memcpy(y + 4, qs, 32);
    }
}

void quant_quantize_row_q8_0(const float *x, void *y, int64_t n) { q8_0_row(x, y, n, true); }
void quant_quantize_row_q8_0_ref(const float *x, void *y, int64_t n) { q8_0_row(x, y, n, false); }
void quant_quantize_row_q8_1(const float *x, void *y, int64_t n) { q8_1_row(x, y, n, true); }
void quant_quantize_row_q8_1_ref(const float *x, void *y, int64_t n) { q8_1_row(x, y, n, false); }

void quant_quantize_row_q8_k(const float *x, void *vy, int64_t n) {
    uint8_t *y = vy;
    for (int64_t b = 0; b < n / 256; b++, x += 256, y += 292) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 256; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        int8_t qs[256];
        int16_t bsums[16];
        float d;
        if (amax == 0.0f) {
            d = 0.0f;
            memset(qs, 0, sizeof qs);
        } else {
            float iscale = -127.0f / max;
            for (int j = 0; j < 256; j++) {
                float v = iscale * x[j];
                /* |v| <= 127 up to rounding for finite iscale; guard the conversion anyway */
                int q = (v > -4194303.0f && v < 4194303.0f) ? nearest_int(v) : (v > 0 ? 127 : -128);
                qs[j] = (int8_t)(q < 127 ? (q > -128 ? q : -128) : 127);
            }
            d = 1.0f / iscale;
        }
        for (int k = 0; k < 16; k++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += qs[16 * k + j];
            bsums[k] = (int16_t)s;
        }
        memcpy(y, &d, 4);
        memcpy(y + 4, qs, 256);
        for (int k = 0; k < 16; k++) wr16(y + 260 + 2 * k, (uint16_t)bsums[k]);
    }
}

void quant_quantize_row_bf16(const float *x, void *vy, int64_t n) {
    uint8_t *y = vy;
    for (int64_t i = 0; i < n; i++) wr16(y + 2 * i, quant_f32_to_bf16(x[i]));
}

void quant_quantize_row_f16(const float *x, void *vy, int64_t n) {
    uint8_t *y = vy;
    for (int64_t i = 0; i < n; i++) wr16(y + 2 * i, quant_f32_to_fp16(x[i]));
}

void quant_quantize_row_f32(const float *x, void *y, int64_t n) { memcpy(y, x, (size_t)n * sizeof(float)); }

bool quant_quantize_row(uint32_t type, const float *x, void *y, int64_t n) {
    switch (type) {
    case K2_TYPE_F32: quant_quantize_row_f32(x, y, n); return true;
    case K2_TYPE_F16: quant_quantize_row_f16(x, y, n); return true;
    case K2_TYPE_BF16: quant_quantize_row_bf16(x, y, n); return true;
    case K2_TYPE_Q8_0: quant_quantize_row_q8_0(x, y, n); return true;
    case K2_TYPE_Q8_1: quant_quantize_row_q8_1(x, y, n); return true;
    case K2_TYPE_Q8_K: quant_quantize_row_q8_k(x, y, n); return true;
    default: return false;
    }
}
