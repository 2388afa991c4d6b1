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

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define NT_MAX QUANT_MM_TOKENS

/* ---- Q8_0 x Q8_0 ---- */
ALWAYS_INLINE void q8_0_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    __m256 acc[NT_MAX];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < n / 32; b++, x += 34, a += 34) {
        qk_prefetch(x, 34);
        __m256i qx = loadu(x + 2);
        __m256i ax = _mm256_sign_epi8(qx, qx);
        float dx = fp16(x);
        for (int t = 0; t < nt; t++) {
            const uint8_t *y = a + (size_t)t * ab;
            __m256i p = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(loadu(y + 2), qx));
            __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx * fp16(y)), f, acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[(size_t)t * os] = hsum_ps(acc[t]);
}
QUANT_DEFINE_DOT_MM(q8_0)

/* ---- Q4_0 x Q8_0 ---- */
static void dot_q4_0(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0f), off = _mm256_set1_epi8(8);
    for (int64_t b = 0; b < n / 32; b++, x += 18, y += 34) {
        qk_prefetch(x, 18);
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
        qk_prefetch(x, 18);
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
        qk_prefetch(x, 84);
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
        qk_prefetch(x, 110);
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

ALWAYS_INLINE void q45k_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os,
                             bool q5) {
    __m256 acc[NT_MAX];
    float summ[NT_MAX];
    for (int t = 0; t < nt; t++) { acc[t] = _mm256_setzero_ps(); summ[t] = 0.0f; }
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    const __m128i dup = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const int bytes = q5 ? 176 : 144;
    for (int64_t b = 0; b < n / 256; b++, x += bytes, a += QK_Q8K_BYTES) {
        qk_prefetch(x, bytes);
        uint64_t S, M;
        quant_k4_scales(x + 4, &S, &M);
        __m256i m16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_cvtsi64_si128((long long)M), dup));
        const uint8_t *qs = x + (q5 ? 48 : 16);
        __m256i qh = q5 ? loadu(x + 16) : _mm256_setzero_si256();
        __m256i L[4], H[4];
        for (int c = 0; c < 4; c++) {
            __m256i q = loadu(qs + 32 * c);
            L[c] = _mm256_and_si256(q, m4);
            H[c] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (q5) {
                L[c] = _mm256_or_si256(L[c], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4));
                H[c] = _mm256_or_si256(H[c], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4));
            }
        }
        float d = fp16(x), dmin = fp16(x + 2);
        for (int t = 0; t < nt; t++) {
            const uint8_t *y = a + (size_t)t * ab;
            const int8_t *q8 = (const int8_t *)(y + 4);
            __m256i isum = _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                __m256i plo = _mm256_maddubs_epi16(L[c], loadu(q8 + 64 * c));
                __m256i phi = _mm256_maddubs_epi16(H[c], loadu(q8 + 64 * c + 32));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(plo, _mm256_set1_epi16((short)((S >> (16 * c)) & 0xff))));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(phi, _mm256_set1_epi16((short)((S >> (16 * c + 8)) & 0xff))));
            }
            float ad = qk_f32(y);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * ad), _mm256_cvtepi32_ps(isum), acc[t]);
            __m256i mins = _mm256_madd_epi16(loadu(y + 260), m16);
            __m256 mf = _mm256_mul_ps(_mm256_set1_ps(dmin * ad), _mm256_cvtepi32_ps(mins));
            summ[t] += hsum_ps(mf);
        }
    }
    for (int t = 0; t < nt; t++) out[(size_t)t * os] = hsum_ps(acc[t]) - summ[t];
}
ALWAYS_INLINE void q4_k_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    q45k_rowx(n, x, a, ab, nt, out, os, false);
}
ALWAYS_INLINE void q5_k_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    q45k_rowx(n, x, a, ab, nt, out, os, true);
}
QUANT_DEFINE_DOT_MM(q4_k)
QUANT_DEFINE_DOT_MM(q5_k)

ALWAYS_INLINE void q6_k_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    __m256 acc[NT_MAX];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
    for (int64_t b = 0; b < n / 256; b++, x += 210, a += QK_Q8K_BYTES) {
        qk_prefetch(x, 210);
        const int8_t *sc = (const int8_t *)(x + 192);
        /* codes are used unsigned (q + 32): subtract 32 * sc * bsum, from the bsums */
        __m256i corr16 = _mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc)), 5);
        __m256i Q[8];
        for (int h = 0; h < 2; h++) {
            __m256i l0 = loadu(x + 64 * h), l1 = loadu(x + 64 * h + 32), qh = loadu(x + 128 + 32 * h);
            __m256i q[4];
            q[0] = _mm256_and_si256(l0, m4);
            q[1] = _mm256_and_si256(l1, m4);
            q[2] = _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4);
            q[3] = _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4);
            for (int g = 0; g < 4; g++) {
                __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), m3);
                Q[4 * h + g] = _mm256_or_si256(q[g], _mm256_slli_epi16(hb, 4));
            }
        }
        float d = fp16(x + 208);
        for (int t = 0; t < nt; t++) {
            const uint8_t *y = a + (size_t)t * ab;
            const int8_t *q8 = (const int8_t *)(y + 4);
            __m256i isum = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(loadu(y + 260), corr16));
            for (int k = 0; k < 8; k++) {
                __m256i p = _mm256_maddubs_epi16(Q[k], loadu(q8 + 32 * k));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale_pair(sc[2 * k], sc[2 * k + 1])));
            }
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * qk_f32(y)), _mm256_cvtepi32_ps(isum), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[(size_t)t * os] = hsum_ps(acc[t]);
}
QUANT_DEFINE_DOT_MM(q6_k)

/* ---- IQ4_XS x Q8_K ---- */
ALWAYS_INLINE void iq4_xs_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    __m256 acc[NT_MAX];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0f);
    const __m128i kv128 = _mm_loadu_si128((const __m128i *)quant_kvalues_iq4nl);
    const __m256i kv = _mm256_set_m128i(kv128, kv128);
    for (int64_t b = 0; b < n / 256; b++, x += 136, a += QK_Q8K_BYTES) {
        qk_prefetch(x, 136);
        uint16_t sh = qk_rd16(x + 2);
        const uint8_t *sl = x + 4, *qs = x + 8;
        __m256i Q[8], S[8];
        int LS[8];
        for (int ib = 0; ib < 8; ib++) {
            LS[ib] = (((sl[ib / 2] >> (4 * (ib % 2))) & 0x0f) | (((sh >> (2 * ib)) & 3) << 4)) - 32;
            __m128i raw = _mm_loadu_si128((const __m128i *)(qs + 16 * ib));
            __m256i q = _mm256_shuffle_epi8(kv, _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4));
            Q[ib] = _mm256_sign_epi8(q, q);
            S[ib] = q;
        }
        float d = fp16(x);
        for (int t = 0; t < nt; t++) {
            const uint8_t *y = a + (size_t)t * ab;
            const int8_t *q8 = (const int8_t *)(y + 4);
            __m256i isum = _mm256_setzero_si256();
            for (int ib = 0; ib < 8; ib++) {
                __m256i p = _mm256_maddubs_epi16(Q[ib], _mm256_sign_epi8(loadu(q8 + 32 * ib), S[ib]));
                __m256i p32 = _mm256_madd_epi16(p, ones);
                isum = _mm256_add_epi32(isum, _mm256_mullo_epi32(p32, _mm256_set1_epi32(LS[ib])));
            }
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * qk_f32(y)), _mm256_cvtepi32_ps(isum), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[(size_t)t * os] = hsum_ps(acc[t]);
}
QUANT_DEFINE_DOT_MM(iq4_xs)

/* ---- grid I-quants x Q8_K (§3.5, §4.5) ---- */

static void dot_iq2_xxs(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 256; b++, x += 66, y += QK_Q8K_BYTES) {
        qk_prefetch(x, 66);
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

ALWAYS_INLINE void iq3_xxs_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    __m256 acc[NT_MAX];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 256; b++, x += 98, a += QK_Q8K_BYTES) {
        qk_prefetch(x, 98);
        const uint8_t *qs = x + 2;
        __m256i G[8], M[8], SC[8];
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = qs + 8 * ib;
            uint32_t sw = qk_rd32(x + 66 + 4 * ib);
            G[ib] = _mm256_set_epi32((int)quant_iq3xxs_grid[q[7]], (int)quant_iq3xxs_grid[q[6]], (int)quant_iq3xxs_grid[q[5]],
                                     (int)quant_iq3xxs_grid[q[4]], (int)quant_iq3xxs_grid[q[3]], (int)quant_iq3xxs_grid[q[2]],
                                     (int)quant_iq3xxs_grid[q[1]], (int)quant_iq3xxs_grid[q[0]]);
            M[ib] = signs4(quant_ksigns_iq2xs[sw & 127], quant_ksigns_iq2xs[(sw >> 7) & 127],
                           quant_ksigns_iq2xs[(sw >> 14) & 127], quant_ksigns_iq2xs[(sw >> 21) & 127]);
            SC[ib] = _mm256_set1_epi16((short)(2 * (sw >> 28) + 1));
        }
        float d = fp16(x);
        for (int t = 0; t < nt; t++) {
            const uint8_t *y = a + (size_t)t * ab;
            const int8_t *q8 = (const int8_t *)(y + 4);
            __m256i isum = _mm256_setzero_si256();
            for (int ib = 0; ib < 8; ib++) {
                __m256i p = _mm256_maddubs_epi16(G[ib], apply_signs(loadu(q8 + 32 * ib), M[ib]));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, SC[ib]));
            }
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * qk_f32(y)), _mm256_cvtepi32_ps(isum), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[(size_t)t * os] = 0.25f * hsum_ps(acc[t]);
}
QUANT_DEFINE_DOT_MM(iq3_xxs)

ALWAYS_INLINE void iq3_s_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    __m256 acc[NT_MAX];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 256; b++, x += 110, a += QK_Q8K_BYTES) {
        qk_prefetch(x, 110);
        const uint8_t *qs = x + 2, *qh = x + 66, *sg = x + 74, *scales = x + 106;
        __m256i G[8], M[8], SC[8];
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = qs + 8 * ib;
            int h = qh[ib];
#define G3(k) (int)quant_iq3s_grid[q[k] | (((h >> (k)) & 1) << 8)]
            G[ib] = _mm256_set_epi32(G3(7), G3(6), G3(5), G3(4), G3(3), G3(2), G3(1), G3(0));
#undef G3
            const uint8_t *sb = sg + 4 * ib;
            M[ib] = signs4(sb[0], sb[1], sb[2], sb[3]);
            int sc = ib % 2 ? (scales[ib / 2] >> 4) : (scales[ib / 2] & 0x0f);
            SC[ib] = _mm256_set1_epi16((short)(2 * sc + 1));
        }
        float d = fp16(x);
        for (int t = 0; t < nt; t++) {
            const uint8_t *y = a + (size_t)t * ab;
            const int8_t *q8 = (const int8_t *)(y + 4);
            __m256i isum = _mm256_setzero_si256();
            for (int ib = 0; ib < 8; ib++) {
                __m256i p = _mm256_maddubs_epi16(G[ib], apply_signs(loadu(q8 + 32 * ib), M[ib]));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, SC[ib]));
            }
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * qk_f32(y)), _mm256_cvtepi32_ps(isum), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[(size_t)t * os] = hsum_ps(acc[t]);
}
QUANT_DEFINE_DOT_MM(iq3_s)

static void dot_iq1_s(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    float dacc = 0.0f;
    const __m256i one8 = _mm256_set1_epi8(1);
    for (int64_t b = 0; b < n / 256; b++, x += 50, y += QK_Q8K_BYTES) {
        qk_prefetch(x, 50);
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


/* ---- 32-element types with an extra bit or a min (§3.2) ---- */

/* 32 bytes: 0xFF where bit e of the 32-bit word is set. */
static inline __m256i bits_to_bytes(uint32_t bits) {
    const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,
                                          3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), pick);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}
/* The 32 codes of a 4-bit block: low nibbles (elements 0-15), then high nibbles. */
static inline __m256i nibbles32(const uint8_t *qs) {
    __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0f));
}

static void dot_q5_0(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1), m10 = _mm256_set1_epi8(0x10);
    for (int64_t b = 0; b < n / 32; b++, x += 22, y += 34) {
        qk_prefetch(x, 22);
        /* q = nibble | bit << 4, minus 16 = nibble - 16 where the bit is clear */
        __m256i q = _mm256_sub_epi8(nibbles32(x + 6), _mm256_andnot_si256(bits_to_bytes(qk_rd32(x + 2)), m10));
        __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(loadu(y + 2), q));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x) * fp16(y)), _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones)), acc);
    }
    *s = hsum_ps(acc);
}

static void dot_q4_1(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    float summ = 0.0f;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < n / 32; b++, x += 20, y += 36) {
        qk_prefetch(x, 20);
        __m256i p = _mm256_maddubs_epi16(nibbles32(x + 4), loadu(y + 4));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x) * fp16(y)), _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones)), acc);
        summ += fp16(x + 2) * fp16(y + 2);
    }
    *s = hsum_ps(acc) + summ;
}

static void dot_q5_1(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    float summ = 0.0f;
    const __m256i ones = _mm256_set1_epi16(1), m10 = _mm256_set1_epi8(0x10);
    for (int64_t b = 0; b < n / 32; b++, x += 24, y += 36) {
        qk_prefetch(x, 24);
        __m256i q = _mm256_or_si256(nibbles32(x + 8), _mm256_and_si256(bits_to_bytes(qk_rd32(x + 4)), m10));
        __m256i p = _mm256_maddubs_epi16(q, loadu(y + 4));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x) * fp16(y)), _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones)), acc);
        summ += fp16(x + 2) * fp16(y + 2);
    }
    *s = hsum_ps(acc) + summ;
}

/* ---- plain floats: four accumulators of 8 lanes, FMA (exact bf16 x bf16 products) ---- */

static inline __m256 bf16x8(const uint8_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

#define FLOAT_DOT(name, esize, load)                                                        \
    static void dot_##name(int64_t n, float *s, const void *w, const void *a) {            \
        const uint8_t *x = w, *y = a;                                                       \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),    \
                         _mm256_setzero_ps()};                                              \
        int64_t i = 0;                                                                      \
        for (; i + 32 <= n; i += 32)                                                        \
            for (int k = 0; k < 4; k++)                                                     \
                acc[k] = _mm256_fmadd_ps(load(x + (i + 8 * k) * esize), load(y + (i + 8 * k) * esize), acc[k]); \
        for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(load(x + i * esize), load(y + i * esize), acc[0]); \
        float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))); \
        for (; i < n; i++) sum += scalar_##name(x + i * esize) * scalar_##name(y + i * esize); \
        *s = sum;                                                                           \
    }
static inline __m256 f32x8(const uint8_t *p) { return _mm256_loadu_ps((const float *)p); }
static inline __m256 f16x8(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline float scalar_f32(const uint8_t *p) { return qk_f32(p); }
static inline float scalar_f16(const uint8_t *p) { return fp16(p); }
static inline float scalar_bf16(const uint8_t *p) { return quant_bf16_to_f32(qk_rd16(p)); }
FLOAT_DOT(f32, 4, f32x8)
FLOAT_DOT(f16, 2, f16x8)
FLOAT_DOT(bf16, 2, bf16x8)

/* ---- IQ2_XS, IQ2_S, IQ1_M x Q8_K ---- */

static void dot_iq2_xs(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 256; b++, x += 74, y += QK_Q8K_BYTES) {
        qk_prefetch(x, 74);
        const int8_t *q8 = (const int8_t *)(y + 4);
        const uint8_t *scales = x + 66;
        __m256i isum = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *p = x + 2 + 8 * ib;
            uint16_t v0 = qk_rd16(p), v1 = qk_rd16(p + 2), v2 = qk_rd16(p + 4), v3 = qk_rd16(p + 6);
            __m256i g = _mm256_set_epi64x((long long)quant_iq2xs_grid[v3 & 511], (long long)quant_iq2xs_grid[v2 & 511],
                                          (long long)quant_iq2xs_grid[v1 & 511], (long long)quant_iq2xs_grid[v0 & 511]);
            __m256i m = signs4(quant_ksigns_iq2xs[v0 >> 9], quant_ksigns_iq2xs[v1 >> 9], quant_ksigns_iq2xs[v2 >> 9],
                               quant_ksigns_iq2xs[v3 >> 9]);
            __m256i pr = _mm256_maddubs_epi16(g, apply_signs(loadu(q8 + 32 * ib), m));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(pr, scale_pair(2 * (scales[ib] & 0x0f) + 1, 2 * (scales[ib] >> 4) + 1)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x) * qk_f32(y)), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = 0.125f * hsum_ps(acc);
}

static void dot_iq2_s(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 256; b++, x += 82, y += QK_Q8K_BYTES) {
        qk_prefetch(x, 82);
        const int8_t *q8 = (const int8_t *)(y + 4);
        const uint8_t *qs = x + 2, *sg = x + 34, *qh = x + 66, *scales = x + 74;
        __m256i isum = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = qs + 4 * ib;
            int h = qh[ib];
            __m256i g = _mm256_set_epi64x((long long)quant_iq2s_grid[q[3] | ((h << 2) & 0x300)],
                                          (long long)quant_iq2s_grid[q[2] | ((h << 4) & 0x300)],
                                          (long long)quant_iq2s_grid[q[1] | ((h << 6) & 0x300)],
                                          (long long)quant_iq2s_grid[q[0] | ((h << 8) & 0x300)]);
            const uint8_t *sb = sg + 4 * ib;
            __m256i m = signs4(sb[0], sb[1], sb[2], sb[3]);
            __m256i pr = _mm256_maddubs_epi16(g, apply_signs(loadu(q8 + 32 * ib), m));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(pr, scale_pair(2 * (scales[ib] & 0x0f) + 1, 2 * (scales[ib] >> 4) + 1)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x) * qk_f32(y)), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = 0.125f * hsum_ps(acc);
}

/* IQ1_M: weight 8 * grid + delta (delta = +-1 per group of 8) used as that plus 9 (0..18),
 * corrected with 9 * scale * bsum; the result is 1/8 of the integer sum. */
static void dot_iq1_m(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    const __m256i one8 = _mm256_set1_epi8(1);
    for (int64_t b = 0; b < n / 256; b++, x += 56, y += QK_Q8K_BYTES) {
        qk_prefetch(x, 56);
        const int8_t *q8 = (const int8_t *)(y + 4);
        const uint8_t *qs = x, *qh = x + 32;
        uint16_t sw[4];
        for (int i = 0; i < 4; i++) sw[i] = qk_rd16(x + 48 + 2 * i);
        uint16_t dbits = (uint16_t)((sw[0] >> 12) | ((sw[1] >> 8) & 0x00f0) | ((sw[2] >> 4) & 0x0f00) | (sw[3] & 0xf000));
        __m256i isum = _mm256_setzero_si256();
        int corr = 0;
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = qs + 4 * ib;
            int h0 = qh[2 * ib], h1 = qh[2 * ib + 1];
            __m256i g = _mm256_set_epi64x((long long)quant_iq1s_grid[q[3] | ((h1 << 4) & 0x700)],
                                          (long long)quant_iq1s_grid[q[2] | ((h1 << 8) & 0x700)],
                                          (long long)quant_iq1s_grid[q[1] | ((h0 << 4) & 0x700)],
                                          (long long)quant_iq1s_grid[q[0] | ((h0 << 8) & 0x700)]);
            /* 1 + delta: 2 where the delta bit (bit 3 of the nibble) is clear, else 0 */
            __m256i dl = _mm256_set_epi64x(h1 & 0x80 ? 0 : 0x0202020202020202LL, h1 & 0x08 ? 0 : 0x0202020202020202LL,
                                           h0 & 0x80 ? 0 : 0x0202020202020202LL, h0 & 0x08 ? 0 : 0x0202020202020202LL);
            __m256i wv = _mm256_add_epi8(_mm256_slli_epi16(_mm256_add_epi8(g, one8), 3), dl);
            int scw = sw[ib / 2] >> (6 * (ib % 2));
            int ls0 = 2 * (scw & 7) + 1, ls1 = 2 * ((scw >> 3) & 7) + 1;
            corr += ls0 * bsum(y, 2 * ib) + ls1 * bsum(y, 2 * ib + 1);
            __m256i pr = _mm256_maddubs_epi16(wv, loadu(q8 + 32 * ib));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(pr, scale_pair(ls0, ls1)));
        }
        isum = _mm256_add_epi32(isum, _mm256_setr_epi32(-9 * corr, 0, 0, 0, 0, 0, 0, 0));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(quant_fp16_to_f32(dbits) * qk_f32(y)), _mm256_cvtepi32_ps(isum), acc);
    }
    *s = 0.125f * hsum_ps(acc);
}

/* ---- activation quantizers, bit-identical to quantize.c ----
 * The products x * scale are the same single f32 multiplications; _mm256_cvtps_epi32
 * rounds half to even like nearest_int, and gives INT_MIN for NaN and out-of-range values,
 * which the saturating packs then map exactly like the scalar rules (§4.2, §4.4). */

/* 32 int32 -> 32 saturated int8 in element order. */
static inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
static inline float hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
static inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

static void quantize_q8_0(const float *x, void *vy, int64_t n) {
    uint8_t *y = vy;
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += 34) {
        __m256 v[4], mx = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            mx = _mm256_max_ps(abs_ps(v[k]), mx); /* a NaN element leaves mx unchanged, like `v > amax` */
        }
        float amax = hmax_ps(mx);
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++) q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], vid));
        uint16_t h = quant_f32_to_fp16(amax / 127.0f);
        y[0] = (uint8_t)h;
        y[1] = (uint8_t)(h >> 8);
        _mm256_storeu_si256((__m256i *)(y + 2), pack32(q[0], q[1], q[2], q[3]));
    }
}

static void quantize_q8_k(const float *x, void *vy, int64_t n) {
    uint8_t *y = vy;
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < n / 256; b++, x += 256, y += 292) {
        __m256 mx = _mm256_setzero_ps();
        for (int k = 0; k < 32; k++) mx = _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + 8 * k)), mx);
        float amax = hmax_ps(mx);
        if (amax == 0.0f) {
            memset(y, 0, 292);
            continue;
        }
        /* max = the first element whose |x| is amax (the scalar loop keeps the first) */
        float max = 0.0f;
        __m256 va = _mm256_set1_ps(amax);
        for (int k = 0; k < 32; k++) {
            int m = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + 8 * k)), va, _CMP_EQ_OQ));
            if (m) { max = x[8 * k + __builtin_ctz((unsigned)m)]; break; }
        }
        float iscale = -127.0f / max;
        __m256 vs = _mm256_set1_ps(iscale);
        /* min(4194304, v): +inf and huge values saturate to 127 as in the scalar guard; NaN stays NaN -> -128 */
        __m256 big = _mm256_set1_ps(4194304.0f);
        int32_t part[8][8];
        for (int c = 0; c < 8; c++) {
            __m256i q[4];
            for (int k = 0; k < 4; k++)
                q[k] = _mm256_cvtps_epi32(_mm256_min_ps(big, _mm256_mul_ps(vs, _mm256_loadu_ps(x + 32 * c + 8 * k))));
            __m256i q8 = pack32(q[0], q[1], q[2], q[3]);
            _mm256_storeu_si256((__m256i *)(y + 4 + 32 * c), q8);
            /* sums of 4 consecutive codes; a bsum is 4 of them */
            _mm256_storeu_si256((__m256i *)part[c], _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q8), ones16));
        }
        float d = 1.0f / iscale;
        memcpy(y, &d, 4);
        for (int k = 0; k < 16; k++) {
            const int32_t *p = &part[k / 2][4 * (k % 2)];
            int s = p[0] + p[1] + p[2] + p[3];
            y[260 + 2 * k] = (uint8_t)s;
            y[261 + 2 * k] = (uint8_t)((unsigned)s >> 8);
        }
    }
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
    t->mm[K2_TYPE_Q8_0] = mm_q8_0;
    t->mm[K2_TYPE_Q4_K] = mm_q4_k;
    t->mm[K2_TYPE_Q5_K] = mm_q5_k;
    t->mm[K2_TYPE_Q6_K] = mm_q6_k;
    t->mm[K2_TYPE_IQ3_XXS] = mm_iq3_xxs;
    t->mm[K2_TYPE_IQ3_S] = mm_iq3_s;
    t->mm[K2_TYPE_IQ4_XS] = mm_iq4_xs;
    t->dot[K2_TYPE_Q5_0] = dot_q5_0;
    t->dot[K2_TYPE_Q4_1] = dot_q4_1;
    t->dot[K2_TYPE_Q5_1] = dot_q5_1;
    t->dot[K2_TYPE_F32] = dot_f32;
    t->dot[K2_TYPE_F16] = dot_f16;
    t->dot[K2_TYPE_BF16] = dot_bf16;
    t->dot[K2_TYPE_IQ2_XS] = dot_iq2_xs;
    t->dot[K2_TYPE_IQ2_S] = dot_iq2_s;
    t->dot[K2_TYPE_IQ1_M] = dot_iq1_m;
    t->quant[K2_TYPE_Q8_0] = quantize_q8_0;
    t->quant[K2_TYPE_Q8_K] = quantize_q8_k;
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
