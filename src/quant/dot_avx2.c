/* AVX2 dot-product kernels (compiled with -mavx2 -mfma -mf16c, see module.cmake; only
 * called after a run-time CPU check). Integer parts are exact (the same integers as the
 * scalar kernels, regrouped); the f32 combination uses vector lanes and FMA, so results
 * differ from the scalar order in the last bits, as spec/quant-types.md §4.7 allows.
 *
 * _mm256_maddubs_epi16 multiplies unsigned by signed bytes and adds pairs into int16 with
 * saturation; every use below keeps |pair sum| <= 2*63*127 (Q6_K codes) or uses the sign
 * trick with |w|, |a| <= 128, 127, so nothing saturates. Signed codes are made unsigned by
 * an offset, corrected with the Q8_K bsums (§4.6). */
#include "quant/kernels.h"
#include "quant/iq_tables.h"

#if defined(__x86_64__)
#include <immintrin.h>

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* F16C conversion: exact for every non-NaN fp16 (§2.1), and much cheaper than the
 * portable bit manipulation on this hot path. */
static inline float fp16(const uint8_t *p) { return _cvtsh_ss(qk_rd16(p)); }

/* sign_mask[s]: byte k = 0xFF when bit k of s is set (value k negated), else 0. Derived
 * data, filled once by quant_kernels_avx2. */
static uint64_t sign_mask[256];

static inline __m256i signs4(uint8_t s0, uint8_t s1, uint8_t s2, uint8_t s3) {
    return _mm256_set_epi64x((long long)sign_mask[s3], (long long)sign_mask[s2], (long long)sign_mask[s1],
                             (long long)sign_mask[s0]);
}
/* a with the lanes selected by mask (0xFF bytes) negated. */
static inline __m256i apply_signs(__m256i a, __m256i mask) {
    return _mm256_sub_epi8(_mm256_xor_si256(a, mask), mask);
}

static inline __m256i loadu(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Two int16 scale values, one per 16-element half of a 32-element run. */
static inline __m256i scale_pair(int lo, int hi) {
    return _mm256_set_m128i(_mm_set1_epi16((short)hi), _mm_set1_epi16((short)lo));
}

/* ---- Q8_0 x Q8_0 ---- */
static void dot_q8_0(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < n / 32; b++, x += 34, y += 34) {
        __m256i qx = loadu(x + 2), qy = loadu(y + 2);
        __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
        __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x) * fp16(y)), f, acc);
    }
    *s = hsum_ps(acc);
}

/* ---- Q4_0 x Q8_0 ---- */
static void dot_q4_0(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0f), off = _mm256_set1_epi8(8);
    for (int64_t b = 0; b < n / 32; b++, x += 18, y += 34) {
        __m128i raw = _mm_loadu_si128((const __m128i *)(x + 2));
        __m256i q = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
        q = _mm256_sub_epi8(_mm256_and_si256(q, m4), off);
        __m256i qy = loadu(y + 2);
        __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(qy, q));
        __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x) * fp16(y)), f, acc);
    }
    *s = hsum_ps(acc);
}

/* ---- IQ4_NL x Q8_0 ---- */
static void dot_iq4_nl(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0f);
    const __m128i kv128 = _mm_loadu_si128((const __m128i *)quant_kvalues_iq4nl);
    const __m256i kv = _mm256_set_m128i(kv128, kv128);
    for (int64_t b = 0; b < n / 32; b++, x += 18, y += 34) {
        __m128i raw = _mm_loadu_si128((const __m128i *)(x + 2));
        __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4);
        q = _mm256_shuffle_epi8(kv, q);
        __m256i qy = loadu(y + 2);
        __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(qy, q));
        __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x) * fp16(y)), f, acc);
    }
    *s = hsum_ps(acc);
}

/* ---- K-quants x Q8_K ---- */

static inline int bsum(const uint8_t *y, int j) { return (int16_t)qk_rd16(y + 260 + 2 * j); }

static void dot_q2_k(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    float summ = 0.0f;
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t b = 0; b < n / 256; b++, x += 84, y += QK_Q8K_BYTES) {
        const uint8_t *sc = x, *qs = x + 16;
        const int8_t *q8 = (const int8_t *)(y + 4);
        int summs = 0;
        for (int j = 0; j < 16; j++) summs += bsum(y, j) * (sc[j] >> 4);
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q = loadu(qs + 32 * h);
            for (int sh = 0; sh < 4; sh++) {
                __m256i qv = _mm256_and_si256(_mm256_srli_epi16(q, 2 * sh), m3);
                __m256i p = _mm256_maddubs_epi16(qv, loadu(q8 + 128 * h + 32 * sh));
                int j = 8 * h + 2 * sh;
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale_pair(sc[j] & 15, sc[j + 1] & 15)));
            }
        }
        float ad = qk_f32(y);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(ad * fp16(x + 80)), _mm256_cvtepi32_ps(isum), acc);
        summ += (ad * fp16(x + 82)) * (float)summs;
    }
    *s = hsum_ps(acc) - summ;
}

static void dot_q3_k(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    for (int64_t b = 0; b < n / 256; b++, x += 110, y += QK_Q8K_BYTES) {
        const uint8_t *qs = x + 32;
        const int8_t *q8 = (const int8_t *)(y + 4);
        int8_t sc[16];
        quant_q3_k_scales(x + 96, sc);
        int corr = 0; /* codes are stored as q+4 here: subtract 4 * sc * bsum */
        for (int j = 0; j < 16; j++) corr += sc[j] * bsum(y, j);
        __m256i hm = loadu(x);
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q = loadu(qs + 32 * h);
            for (int sh = 0; sh < 4; sh++) {
                int plane = 4 * h + sh;
                __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * sh), m3);
                __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, plane), one);
                __m256i qv = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 2)); /* 0..7 = q + 4 */
                __m256i p = _mm256_maddubs_epi16(qv, loadu(q8 + 128 * h + 32 * sh));
                int j = 8 * h + 2 * sh;
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale_pair(sc[j], sc[j + 1])));
            }
        }
        isum = _mm256_add_epi32(isum, _mm256_setr_epi32(-4 * corr, 0, 0, 0, 0, 0, 0, 0));
        float dd = fp16(x + 108) * qk_f32(y);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = hsum_ps(acc);
}

static inline void dot_q45_k(int64_t n, float *s, const uint8_t *x, const uint8_t *y, bool q5) {
    __m256 acc = _mm256_setzero_ps();
    float summ = 0.0f;
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    const int bytes = q5 ? 176 : 144;
    for (int64_t b = 0; b < n / 256; b++, x += bytes, y += QK_Q8K_BYTES) {
        uint8_t S[8], M[8];
        for (int j = 0; j < 8; j++) quant_get_scale_min_k4(j, x + 4, &S[j], &M[j]);
        int mins = 0;
        for (int j = 0; j < 16; j++) mins += bsum(y, j) * M[j / 2];
        const uint8_t *qs = x + (q5 ? 48 : 16);
        const int8_t *q8 = (const int8_t *)(y + 4);
        __m256i qh = q5 ? loadu(x + 16) : _mm256_setzero_si256();
        __m256i isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i q = loadu(qs + 32 * c);
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (q5) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4));
            }
            __m256i plo = _mm256_maddubs_epi16(lo, loadu(q8 + 64 * c));
            __m256i phi = _mm256_maddubs_epi16(hi, loadu(q8 + 64 * c + 32));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(plo, _mm256_set1_epi16(S[2 * c])));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(phi, _mm256_set1_epi16(S[2 * c + 1])));
        }
        float ad = qk_f32(y);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x) * ad), _mm256_cvtepi32_ps(isum), acc);
        summ += (fp16(x + 2) * ad) * (float)mins;
    }
    *s = hsum_ps(acc) - summ;
}

static void dot_q4_k(int64_t n, float *s, const void *w, const void *a) { dot_q45_k(n, s, w, a, false); }
static void dot_q5_k(int64_t n, float *s, const void *w, const void *a) { dot_q45_k(n, s, w, a, true); }

static void dot_q6_k(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
    for (int64_t b = 0; b < n / 256; b++, x += 210, y += QK_Q8K_BYTES) {
        const int8_t *sc = (const int8_t *)(x + 192);
        const int8_t *q8 = (const int8_t *)(y + 4);
        int corr = 0; /* codes are used unsigned (q + 32): subtract 32 * sc * bsum */
        for (int j = 0; j < 16; j++) corr += sc[j] * bsum(y, j);
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i l0 = loadu(x + 64 * h), l1 = loadu(x + 64 * h + 32), qh = loadu(x + 128 + 32 * h);
            __m256i q[4];
            q[0] = _mm256_and_si256(l0, m4);
            q[1] = _mm256_and_si256(l1, m4);
            q[2] = _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4);
            q[3] = _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4);
            for (int g = 0; g < 4; g++) {
                __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), m3);
                __m256i qv = _mm256_or_si256(q[g], _mm256_slli_epi16(hb, 4));
                __m256i p = _mm256_maddubs_epi16(qv, loadu(q8 + 128 * h + 32 * g));
                int j = 8 * h + 2 * g;
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale_pair(sc[j], sc[j + 1])));
            }
        }
        isum = _mm256_add_epi32(isum, _mm256_setr_epi32(-32 * corr, 0, 0, 0, 0, 0, 0, 0));
        float dd = fp16(x + 208) * qk_f32(y);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = hsum_ps(acc);
}

/* ---- IQ4_XS x Q8_K ---- */
static void dot_iq4_xs(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0f);
    const __m128i kv128 = _mm_loadu_si128((const __m128i *)quant_kvalues_iq4nl);
    const __m256i kv = _mm256_set_m128i(kv128, kv128);
    for (int64_t b = 0; b < n / 256; b++, x += 136, y += QK_Q8K_BYTES) {
        uint16_t sh = qk_rd16(x + 2);
        const uint8_t *sl = x + 4, *qs = x + 8;
        const int8_t *q8 = (const int8_t *)(y + 4);
        __m256i isum = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 0x0f) | (((sh >> (2 * ib)) & 3) << 4);
            __m128i raw = _mm_loadu_si128((const __m128i *)(qs + 16 * ib));
            __m256i q = _mm256_shuffle_epi8(kv, _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4));
            __m256i qy = loadu(q8 + 32 * ib);
            __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(qy, q));
            __m256i p32 = _mm256_madd_epi16(p, ones);
            isum = _mm256_add_epi32(isum, _mm256_mullo_epi32(p32, _mm256_set1_epi32(ls - 32)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x) * qk_f32(y)), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = hsum_ps(acc);
}

/* ---- grid I-quants x Q8_K (§3.5, §4.5) ---- */

static void dot_iq2_xxs(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 256; b++, x += 66, y += QK_Q8K_BYTES) {
        const int8_t *q8 = (const int8_t *)(y + 4);
        __m256i isum = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            uint32_t ga = qk_rd32(x + 2 + 8 * ib), sw = qk_rd32(x + 6 + 8 * ib);
            __m256i g = _mm256_set_epi64x((long long)quant_iq2xxs_grid[ga >> 24], (long long)quant_iq2xxs_grid[(ga >> 16) & 0xff],
                                          (long long)quant_iq2xxs_grid[(ga >> 8) & 0xff], (long long)quant_iq2xxs_grid[ga & 0xff]);
            __m256i m = signs4(quant_ksigns_iq2xs[sw & 127], quant_ksigns_iq2xs[(sw >> 7) & 127],
                               quant_ksigns_iq2xs[(sw >> 14) & 127], quant_ksigns_iq2xs[(sw >> 21) & 127]);
            __m256i p = _mm256_maddubs_epi16(g, apply_signs(loadu(q8 + 32 * ib), m));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, _mm256_set1_epi16((short)(2 * (sw >> 28) + 1))));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x) * qk_f32(y)), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = 0.125f * hsum_ps(acc);
}

static void dot_iq3_xxs(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 256; b++, x += 98, y += QK_Q8K_BYTES) {
        const int8_t *q8 = (const int8_t *)(y + 4);
        const uint8_t *qs = x + 2;
        __m256i isum = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = qs + 8 * ib;
            uint32_t sw = qk_rd32(x + 66 + 4 * ib);
            __m256i g = _mm256_set_epi32((int)quant_iq3xxs_grid[q[7]], (int)quant_iq3xxs_grid[q[6]], (int)quant_iq3xxs_grid[q[5]],
                                         (int)quant_iq3xxs_grid[q[4]], (int)quant_iq3xxs_grid[q[3]], (int)quant_iq3xxs_grid[q[2]],
                                         (int)quant_iq3xxs_grid[q[1]], (int)quant_iq3xxs_grid[q[0]]);
            __m256i m = signs4(quant_ksigns_iq2xs[sw & 127], quant_ksigns_iq2xs[(sw >> 7) & 127],
                               quant_ksigns_iq2xs[(sw >> 14) & 127], quant_ksigns_iq2xs[(sw >> 21) & 127]);
            __m256i p = _mm256_maddubs_epi16(g, apply_signs(loadu(q8 + 32 * ib), m));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, _mm256_set1_epi16((short)(2 * (sw >> 28) + 1))));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x) * qk_f32(y)), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = 0.25f * hsum_ps(acc);
}

static void dot_iq3_s(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 256; b++, x += 110, y += QK_Q8K_BYTES) {
        const int8_t *q8 = (const int8_t *)(y + 4);
        const uint8_t *qs = x + 2, *qh = x + 66, *sg = x + 74, *scales = x + 106;
        __m256i isum = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = qs + 8 * ib;
            int h = qh[ib];
#define G3(k) (int)quant_iq3s_grid[q[k] | (((h >> (k)) & 1) << 8)]
            __m256i g = _mm256_set_epi32(G3(7), G3(6), G3(5), G3(4), G3(3), G3(2), G3(1), G3(0));
#undef G3
            const uint8_t *sb = sg + 4 * ib;
            __m256i m = signs4(sb[0], sb[1], sb[2], sb[3]);
            int sc = ib % 2 ? (scales[ib / 2] >> 4) : (scales[ib / 2] & 0x0f);
            __m256i p = _mm256_maddubs_epi16(g, apply_signs(loadu(q8 + 32 * ib), m));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, _mm256_set1_epi16((short)(2 * sc + 1))));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x) * qk_f32(y)), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = hsum_ps(acc);
}

static void dot_iq1_s(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    float dacc = 0.0f;
    const __m256i one8 = _mm256_set1_epi8(1);
    for (int64_t b = 0; b < n / 256; b++, x += 50, y += QK_Q8K_BYTES) {
        const int8_t *q8 = (const int8_t *)(y + 4);
        const uint8_t *qs = x + 2;
        __m256i isum = _mm256_setzero_si256();
        int sumi1 = 0, corr = 0;
        for (int ib = 0; ib < 8; ib++) {
            uint16_t h = qk_rd16(x + 34 + 2 * ib);
            const uint8_t *q = qs + 4 * ib;
            __m256i g = _mm256_set_epi64x((long long)quant_iq1s_grid[q[3] | (((h >> 9) & 7) << 8)],
                                          (long long)quant_iq1s_grid[q[2] | (((h >> 6) & 7) << 8)],
                                          (long long)quant_iq1s_grid[q[1] | (((h >> 3) & 7) << 8)],
                                          (long long)quant_iq1s_grid[q[0] | ((h & 7) << 8)]);
            g = _mm256_add_epi8(g, one8); /* -1,0,1 -> 0,1,2; corrected by the block sum below */
            int ls = 2 * ((h >> 12) & 7) + 1;
            int bs = bsum(y, 2 * ib) + bsum(y, 2 * ib + 1);
            __m256i p = _mm256_maddubs_epi16(g, loadu(q8 + 32 * ib));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, _mm256_set1_epi16((short)ls)));
            corr += ls * bs;
            sumi1 += (h & 0x8000) ? -ls * bs : ls * bs;
        }
        isum = _mm256_add_epi32(isum, _mm256_setr_epi32(-corr, 0, 0, 0, 0, 0, 0, 0));
        float dd = fp16(x) * qk_f32(y);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(isum), acc);
        dacc += dd * (0.125f * (float)sumi1);
    }
    *s = hsum_ps(acc) + dacc;
}

void quant_kernels_avx2(quant_kernel_table *t) {
    for (int s = 0; s < 256; s++) {
        uint64_t m = 0;
        for (int k = 0; k < 8; k++)
            if ((s >> k) & 1) m |= 0xffULL << (8 * k);
        sign_mask[s] = m;
    }
    t->dot[K2_TYPE_IQ2_XXS] = dot_iq2_xxs;
    t->dot[K2_TYPE_IQ3_XXS] = dot_iq3_xxs;
    t->dot[K2_TYPE_IQ3_S] = dot_iq3_s;
    t->dot[K2_TYPE_IQ1_S] = dot_iq1_s;
    t->dot[K2_TYPE_Q8_0] = dot_q8_0;
    t->dot[K2_TYPE_Q4_0] = dot_q4_0;
    t->dot[K2_TYPE_IQ4_NL] = dot_iq4_nl;
    t->dot[K2_TYPE_Q2_K] = dot_q2_k;
    t->dot[K2_TYPE_Q3_K] = dot_q3_k;
    t->dot[K2_TYPE_Q4_K] = dot_q4_k;
    t->dot[K2_TYPE_Q5_K] = dot_q5_k;
    t->dot[K2_TYPE_Q6_K] = dot_q6_k;
    t->dot[K2_TYPE_IQ4_XS] = dot_iq4_xs;
}
#endif
