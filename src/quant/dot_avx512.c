/* AVX-512 (F/BW/VL + VNNI) dot-product kernels (compiled with per-file ISA flags, see
 * module.cmake; only called after a run-time CPU check).
 *
 * Each type has one "row kernel": one weight row against up to 4 activation rows. The
 * weights of a super-block are unpacked once into registers (codes, scale vectors) and
 * then used for every token, so quant_matmul reads and decodes each weight block once
 * per 4 tokens. vec_dot is the same row kernel with one token, which makes every
 * quant_matmul result bit-identical to vec_dot: the per-(row, token) operations and
 * their order do not depend on how many tokens share the weight decode.
 *
 * Integer parts are exact (_mm512_maddubs_epi16 pair sums stay below 2^15: unsigned
 * codes <= 63 or |w| <= 127 with the sign moved onto the activation, whose codes are
 * never -128, §4.2-4.4); scales are applied with VNNI _mm512_dpwssd_epi32 (int16 x int16
 * accumulated into int32) or _mm512_dpbusd_epi32, and the f32 combination uses lanes and
 * FMA, as §4.7 allows. */
#include "quant/kernels.h"
#include "quant/iq_tables.h"
#include "quant/iq_avx512.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define NT_MAX QUANT_MM_TOKENS
#define DEFINE_DOT_MM(name) QUANT_DEFINE_DOT_MM(name)

static inline float fp16(const uint8_t *p) { return _cvtsh_ss(qk_rd16(p)); }
static inline __m512i load512(const void *p) { return _mm512_loadu_si512(p); }
static inline __m256i load256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline __m128i load128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float hsum512(__m512 v) {
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return hsum256(_mm256_add_ps(lo, hi));
}
static inline __m512i zext256(__m256i v) { return _mm512_inserti64x4(_mm512_setzero_si512(), v, 0); }

/* Q8_K activation pieces (§3.4): f32 d at 0, int8 qs[256] at 4, int16 bsums[16] at 260. */
static inline __m256i q8k_bsums(const uint8_t *y) { return load256(y + 260); }

/* Word scale vector for 64 consecutive elements in 16-element groups: lane L (8 words)
 * of vector k holds s16[4k + L]. */
static inline __m512i group16_scales(__m256i s16, int k) {
    const long long u = 0x0001000100010001LL;
    const __m512i idx = _mm512_set_epi64(u * (4 * k + 3), u * (4 * k + 3), u * (4 * k + 2), u * (4 * k + 2),
                                         u * (4 * k + 1), u * (4 * k + 1), u * (4 * k), u * (4 * k));
    return _mm512_permutexvar_epi16(idx, zext256(s16));
}

/* The same from the 16 scale bytes broadcast to every 128-bit lane (sb): one byte shuffle
 * (and for signed scales an arithmetic shift) instead of vpermw, which is two port-5
 * uops; while 512-bit code runs only ports 0 and 5 execute vector instructions. */
static inline __m512i group16_scales_b(__m512i sb, int k, bool is_signed) {
    uint64_t c[4];
    for (int l = 0; l < 4; l++) {
        uint64_t b = (uint64_t)(4 * k + l);
        c[l] = is_signed ? 0x0080008000800080ULL | (0x0100010001000100ULL * b)
                         : 0x8000800080008000ULL | (0x0001000100010001ULL * b);
    }
    __m512i ctl = _mm512_set_epi64((long long)c[3], (long long)c[3], (long long)c[2], (long long)c[2],
                                   (long long)c[1], (long long)c[1], (long long)c[0], (long long)c[0]);
    __m512i v = _mm512_shuffle_epi8(sb, ctl);
    return is_signed ? _mm512_srai_epi16(v, 8) : v;
}

/* ---- Q4_K / Q5_K x Q8_K (§3.4) ----
 * Vector work is what bounds these kernels: while 512-bit code runs only ports 0 and 5
 * execute vector instructions, so the per-block setup avoids multi-uop shuffles: the
 * scale words come from one broadcast of the 8 scale bytes and one byte shuffle per
 * 64 elements (vpermw is two port-5 uops), and d / dmin are converted together from
 * memory and multiplied by the activation scale once (measured: Q4_K row kernel +16%
 * in cache, +4% from RAM). */
ALWAYS_INLINE void q45k_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os,
                             bool q5) {
    __m512 acc[NT_MAX];
    __m256 accm[NT_MAX];
    for (int t = 0; t < nt; t++) { acc[t] = _mm512_setzero_ps(); accm[t] = _mm256_setzero_ps(); }
    const __m512i m4 = _mm512_set1_epi8(0x0f), m10 = _mm512_set1_epi8(0x10);
    const __m128i dup = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    /* byte shuffles of the broadcast scale bytes S: words = scale of 32-element sub-block
     * 2k in the low 256 bits, 2k+1 in the high 256 bits (high bytes zero) */
    __m512i sctl[4];
    for (int k = 0; k < 4; k++) {
        long long lo = (long long)(0x8000800080008000ULL | (0x0001000100010001ULL * (uint64_t)(2 * k)));
        long long hi = (long long)(0x8000800080008000ULL | (0x0001000100010001ULL * (uint64_t)(2 * k + 1)));
        sctl[k] = _mm512_set_epi64(hi, hi, hi, hi, lo, lo, lo, lo);
    }
    const int bytes = q5 ? 176 : 144;
    for (int64_t b = 0; b < n / 256; b++, x += bytes, a += QK_Q8K_BYTES) {
        qk_prefetch(x, bytes);
        uint64_t S, M;
        quant_k4_scales(x + 4, &S, &M);
        __m512i sb = _mm512_set1_epi64((long long)S);
        __m256i m16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_cvtsi64_si128((long long)M), dup));
        const uint8_t *qs = x + (q5 ? 48 : 16);
        /* W[j]: codes of elements 64j..64j+63 (sub-blocks 2j, 2j+1) */
        __m512i W[4], SC[4];
        __m512i qh = q5 ? _mm512_inserti64x4(_mm512_castsi256_si512(load256(x + 16)),
                                             _mm256_srli_epi16(load256(x + 16), 2), 1)
                        : _mm512_setzero_si512();
        for (int k = 0; k < 2; k++) {
            __m512i z = load512(qs + 64 * k);
            __m512i lo = _mm512_and_si512(z, m4), hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
            if (q5) {
                /* lo half j=2k (qh bit 4k), high half j=2k+1 (bit 4k+2, pre-shifted by 2) */
                __m512i hlo = k ? qh : _mm512_slli_epi16(qh, 4);
                __m512i hhi = k ? _mm512_srli_epi16(qh, 1) : _mm512_slli_epi16(qh, 3);
                lo = _mm512_ternarylogic_epi32(lo, hlo, m10, 0xf8); /* lo | (hlo & 0x10) */
                hi = _mm512_ternarylogic_epi32(hi, hhi, m10, 0xf8);
            }
            W[2 * k] = _mm512_shuffle_i64x2(lo, hi, 0x44);
            W[2 * k + 1] = _mm512_shuffle_i64x2(lo, hi, 0xee);
        }
        for (int j = 0; j < 4; j++) SC[j] = _mm512_shuffle_epi8(sb, sctl[j]);
        /* [d, dmin] of the block as f32 (the 8-byte load stays inside the block) */
        __m128 dd = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(const void *)x));
        for (int t = 0; t < nt; t++) {
            const uint8_t *y = a + (size_t)t * ab;
            const uint8_t *q8 = y + 4;
            __m512i isum = _mm512_setzero_si512();
            for (int j = 0; j < 4; j++)
                isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(W[j], load512(q8 + 64 * j)), SC[j]);
            __m128 f = _mm_mul_ps(dd, _mm_broadcast_ss((const float *)(const void *)y));
            acc[t] = _mm512_fmadd_ps(_mm512_broadcastss_ps(f), _mm512_cvtepi32_ps(isum), acc[t]);
            __m256i mins = _mm256_madd_epi16(q8k_bsums(y), m16);
            accm[t] = _mm256_fmadd_ps(_mm256_permutexvar_ps(_mm256_set1_epi32(1), _mm256_castps128_ps256(f)),
                                      _mm256_cvtepi32_ps(mins), accm[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[(size_t)t * os] = hsum512(acc[t]) - hsum256(accm[t]);
}

ALWAYS_INLINE void q4_k_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    q45k_rowx(n, x, a, ab, nt, out, os, false);
}
ALWAYS_INLINE void q5_k_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    q45k_rowx(n, x, a, ab, nt, out, os, true);
}
DEFINE_DOT_MM(q4_k)
DEFINE_DOT_MM(q5_k)

/* ---- Q6_K x Q8_K ---- */
ALWAYS_INLINE void q6_k_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    __m512 acc[NT_MAX];
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    for (int64_t b = 0; b < n / 256; b++, x += 210, a += QK_Q8K_BYTES) {
        qk_prefetch(x, 210);
        __m256i s16 = _mm256_cvtepi8_epi16(load128(x + 192));
        __m256i corr16 = _mm256_slli_epi16(s16, 5); /* codes are q + 32 */
        __m512i W[4], SC[4];
        for (int h = 0; h < 2; h++) {
            __m512i z = load512(x + 64 * h);
            __m512i qh = _mm512_broadcast_i64x4(load256(x + 128 + 32 * h));
            /* groups 0,1 (bits 0-1, 2-3 of qh) and 2,3 (bits 4-5, 6-7), moved to bits 4-5 */
            __m512i h01 = _mm512_mask_slli_epi16(_mm512_slli_epi16(qh, 4), 0xffff0000u, qh, 2);
            __m512i h23 = _mm512_mask_srli_epi16(qh, 0xffff0000u, qh, 2);
            __m512i lo = _mm512_and_si512(z, m4), hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
            W[2 * h] = _mm512_ternarylogic_epi32(lo, h01, m30, 0xf8);
            W[2 * h + 1] = _mm512_ternarylogic_epi32(hi, h23, m30, 0xf8);
        }
        __m512i sb = _mm512_broadcast_i32x4(load128(x + 192));
        for (int j = 0; j < 4; j++) SC[j] = group16_scales_b(sb, j, true);
        float d = fp16(x + 208);
        for (int t = 0; t < nt; t++) {
            const uint8_t *y = a + (size_t)t * ab;
            const uint8_t *q8 = y + 4;
            __m512i isum = zext256(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(q8k_bsums(y), corr16)));
            for (int j = 0; j < 4; j++)
                isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(W[j], load512(q8 + 64 * j)), SC[j]);
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(d * qk_f32(y)), _mm512_cvtepi32_ps(isum), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[(size_t)t * os] = hsum512(acc[t]);
}
DEFINE_DOT_MM(q6_k)

/* ---- Q2_K / Q3_K x Q8_K: 2-bit planes over 128-halves ---- */

/* W[j] = 2-bit codes of elements 64j..64j+63 from the 64 qs bytes. */
ALWAYS_INLINE void planes2(const uint8_t *qs, __m512i W[4]) {
    const __m512i m3 = _mm512_set1_epi8(3);
    __m512i z = load512(qs);
    __m512i v0 = _mm512_and_si512(z, m3), v1 = _mm512_and_si512(_mm512_srli_epi16(z, 2), m3);
    __m512i v2 = _mm512_and_si512(_mm512_srli_epi16(z, 4), m3), v3 = _mm512_and_si512(_mm512_srli_epi16(z, 6), m3);
    W[0] = _mm512_shuffle_i64x2(v0, v1, 0x44);
    W[1] = _mm512_shuffle_i64x2(v2, v3, 0x44);
    W[2] = _mm512_shuffle_i64x2(v0, v1, 0xee);
    W[3] = _mm512_shuffle_i64x2(v2, v3, 0xee);
}

ALWAYS_INLINE void q2_k_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    __m512 acc[NT_MAX];
    __m256 accm[NT_MAX];
    for (int t = 0; t < nt; t++) { acc[t] = _mm512_setzero_ps(); accm[t] = _mm256_setzero_ps(); }
    const __m128i m4 = _mm_set1_epi8(0x0f);
    for (int64_t b = 0; b < n / 256; b++, x += 84, a += QK_Q8K_BYTES) {
        qk_prefetch(x, 84);
        __m128i sc = load128(x);
        __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), m4));
        __m512i W[4], SC[4];
        planes2(x + 16, W);
        __m512i sb = _mm512_and_si512(_mm512_broadcast_i32x4(sc), _mm512_set1_epi8(0x0f));
        for (int j = 0; j < 4; j++) SC[j] = group16_scales_b(sb, j, false);
        float d = fp16(x + 80), dmin = fp16(x + 82);
        for (int t = 0; t < nt; t++) {
            const uint8_t *y = a + (size_t)t * ab;
            const uint8_t *q8 = y + 4;
            __m512i isum = _mm512_setzero_si512();
            for (int j = 0; j < 4; j++)
                isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(W[j], load512(q8 + 64 * j)), SC[j]);
            float ad = qk_f32(y);
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(ad * d), _mm512_cvtepi32_ps(isum), acc[t]);
            __m256i mins = _mm256_madd_epi16(q8k_bsums(y), m16);
            accm[t] = _mm256_fmadd_ps(_mm256_set1_ps(ad * dmin), _mm256_cvtepi32_ps(mins), accm[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[(size_t)t * os] = hsum512(acc[t]) - hsum256(accm[t]);
}
DEFINE_DOT_MM(q2_k)

/* §3.4 Q3_K: the 16 signed scales, as 16 int8 in an xmm. */
ALWAYS_INLINE __m128i q3k_scales(const uint8_t *p) {
    uint32_t a0 = qk_rd32(p), a1 = qk_rd32(p + 4), a2 = qk_rd32(p + 8);
    uint32_t w0 = (a0 & 0x0f0f0f0fu) | ((a2 & 0x03030303u) << 4);
    uint32_t w1 = (a1 & 0x0f0f0f0fu) | (((a2 >> 2) & 0x03030303u) << 4);
    uint32_t w2 = ((a0 >> 4) & 0x0f0f0f0fu) | (((a2 >> 4) & 0x03030303u) << 4);
    uint32_t w3 = ((a1 >> 4) & 0x0f0f0f0fu) | (((a2 >> 6) & 0x03030303u) << 4);
    return _mm_sub_epi8(_mm_setr_epi32((int)w0, (int)w1, (int)w2, (int)w3), _mm_set1_epi8(32));
}

ALWAYS_INLINE void q3_k_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    __m512 acc[NT_MAX];
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    const __m512i m4b = _mm512_set1_epi8(4);
    for (int64_t b = 0; b < n / 256; b++, x += 110, a += QK_Q8K_BYTES) {
        qk_prefetch(x, 110);
        __m128i s8 = q3k_scales(x + 96);
        __m256i corr16 = _mm256_slli_epi16(_mm256_cvtepi8_epi16(s8), 2); /* codes are q + 4 */
        __m512i W[4], SC[4];
        planes2(x + 32, W);
        /* plane p = 2j (low half of W[j]) / 2j+1 (high half) takes hmask bit p */
        __m256i hm = load256(x);
        __m512i hm2 = _mm512_inserti64x4(_mm512_castsi256_si512(hm), _mm256_srli_epi16(hm, 1), 1);
        W[0] = _mm512_ternarylogic_epi32(W[0], _mm512_slli_epi16(hm2, 2), m4b, 0xf8);
        W[1] = _mm512_ternarylogic_epi32(W[1], hm2, m4b, 0xf8);
        W[2] = _mm512_ternarylogic_epi32(W[2], _mm512_srli_epi16(hm2, 2), m4b, 0xf8);
        W[3] = _mm512_ternarylogic_epi32(W[3], _mm512_srli_epi16(hm2, 4), m4b, 0xf8);
        __m512i sb = _mm512_broadcast_i32x4(s8);
        for (int j = 0; j < 4; j++) SC[j] = group16_scales_b(sb, j, true);
        float d = fp16(x + 108);
        for (int t = 0; t < nt; t++) {
            const uint8_t *y = a + (size_t)t * ab;
            const uint8_t *q8 = y + 4;
            __m512i isum = zext256(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(q8k_bsums(y), corr16)));
            for (int j = 0; j < 4; j++)
                isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(W[j], load512(q8 + 64 * j)), SC[j]);
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(d * qk_f32(y)), _mm512_cvtepi32_ps(isum), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[(size_t)t * os] = hsum512(acc[t]);
}
DEFINE_DOT_MM(q3_k)

/* ---- Q8_0 x Q8_0: one block per ymm with VNNI (a zmm pair layout measured slower: the
 * per-block fp16 scales dominate, and 256-bit ops keep the core's full clock) ---- */
ALWAYS_INLINE void q8_0_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    __m256 acc[NT_MAX];
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 32; b++, x += 34, a += 34) {
        qk_prefetch(x, 34);
        __m256i q = load256(x + 2);
        __m256i aq = _mm256_abs_epi8(q);
        float dx = fp16(x);
        for (int t = 0; t < nt; t++) {
            const uint8_t *y = a + (size_t)t * ab;
            __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), aq, _mm256_sign_epi8(load256(y + 2), q));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx * fp16(y)), _mm256_cvtepi32_ps(p), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[(size_t)t * os] = hsum256(acc[t]);
}
DEFINE_DOT_MM(q8_0)

/* ---- IQ4_XS x Q8_K ---- */
ALWAYS_INLINE void iq4_xs_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    __m512 acc[NT_MAX];
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i kv = _mm512_broadcast_i32x4(load128(quant_kvalues_iq4nl));
    /* W[m] = (lo, hi of sub-block 2m, lo, hi of 2m+1) from the nibble planes of 4 sub-blocks */
    const __m512i pidx0 = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0), pidx1 = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
    const __m256i sh_lo = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28), sh_hi = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const __m512i didx[4] = {_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                             _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2),
                             _mm512_set_epi32(5, 5, 5, 5, 5, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4, 4),
                             _mm512_set_epi32(7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, 6, 6)};
    for (int64_t b = 0; b < n / 256; b++, x += 136, a += QK_Q8K_BYTES) {
        qk_prefetch(x, 136);
        /* ls[ib] = low nibble from scales_l, 2 high bits from scales_h (§3.5 IQ4_XS), minus 32 */
        __m256i lo4 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)qk_rd32(x + 4)), sh_lo), _mm256_set1_epi32(0x0f));
        __m256i hi2 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)qk_rd16(x + 2) << 4), sh_hi), _mm256_set1_epi32(0x30));
        __m256i ls = _mm256_sub_epi32(_mm256_or_si256(lo4, hi2), _mm256_set1_epi32(32));
        /* each dword = (ls, ls) as two int16 for dpwssd */
        __m512i ls2 = zext256(_mm256_or_si256(_mm256_and_si256(ls, _mm256_set1_epi32(0xffff)), _mm256_slli_epi32(ls, 16)));
        __m512i W[4], SC[4];
        __mmask64 NEG[4];
        for (int k = 0; k < 2; k++) {
            __m512i z = load512(x + 8 + 64 * k);
            __m512i lo = _mm512_shuffle_epi8(kv, _mm512_and_si512(z, m4));
            __m512i hi = _mm512_shuffle_epi8(kv, _mm512_and_si512(_mm512_srli_epi16(z, 4), m4));
            __m512i w0 = _mm512_permutex2var_epi64(lo, pidx0, hi), w1 = _mm512_permutex2var_epi64(lo, pidx1, hi);
            NEG[2 * k] = _mm512_movepi8_mask(w0);
            NEG[2 * k + 1] = _mm512_movepi8_mask(w1);
            W[2 * k] = _mm512_abs_epi8(w0);
            W[2 * k + 1] = _mm512_abs_epi8(w1);
        }
        for (int j = 0; j < 4; j++) SC[j] = _mm512_permutexvar_epi32(didx[j], ls2);
        float d = fp16(x);
        for (int t = 0; t < nt; t++) {
            const uint8_t *y = a + (size_t)t * ab;
            const uint8_t *q8 = y + 4;
            __m512i isum = _mm512_setzero_si512();
            for (int j = 0; j < 4; j++) {
                __m512i qy = load512(q8 + 64 * j);
                qy = _mm512_mask_sub_epi8(qy, NEG[j], _mm512_setzero_si512(), qy);
                isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(W[j], qy), SC[j]);
            }
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(d * qk_f32(y)), _mm512_cvtepi32_ps(isum), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[(size_t)t * os] = hsum512(acc[t]);
}
DEFINE_DOT_MM(iq4_xs)


/* ---- grid I-quants x Q8_K (§3.5): 64 elements (two 32-element sub-blocks) per zmm ---- */

/* Grid rows by index. Measured on Cascade Lake (quant_bench): a 16-dword gather beats 16
 * scalar loads, but an 8-qword gather loses to 8 scalar loads, so the 64-bit grids are
 * read with scalar loads. */
ALWAYS_INLINE __m512i grid64x8(const uint64_t *tab, __m256i idx) {
    uint32_t i[8];
    _mm256_storeu_si256((__m256i *)i, idx);
    return _mm512_set_epi64((long long)tab[i[7]], (long long)tab[i[6]], (long long)tab[i[5]], (long long)tab[i[4]],
                            (long long)tab[i[3]], (long long)tab[i[2]], (long long)tab[i[1]], (long long)tab[i[0]]);
}
ALWAYS_INLINE __m512i grid32x16(const uint32_t *tab, __m512i idx) {
    return _mm512_i32gather_epi32(idx, (const void *)tab, 4);
}

/* Element e of a 64-element run is negated when bit e of the mask is set. */
static inline __m512i neg_where(__m512i y, __mmask64 m) { return _mm512_mask_sub_epi8(y, m, _mm512_setzero_si512(), y); }
/* int16 scale s0 for the low 32 elements, s1 for the high 32. */
static inline __m512i scale2(int s0, int s1) {
    return _mm512_mask_set1_epi16(_mm512_set1_epi16((short)s0), 0xffff0000u, (short)s1);
}



/* ---- IQ2_XXS / IQ3_XXS x Q8_K (§3.5): two sub-blocks per vector ----
 * The grid magnitudes, sign masks and scales of a block come from the vector decoders of
 * iq_avx512.h; the signs negate the activation bytes (so the grid values stay the unsigned
 * dpbusd operand); 4-element sums stay below 2^15 (|grid| <= 62, |q8| <= 127), so the
 * scales (2s + 1, one per 8 lanes) are applied with dpwssd on the low words. */
uint16_t quant_iq2xxs_codes[256] __attribute__((aligned(64)));
uint16_t quant_iq3xxs_codes[256] __attribute__((aligned(64)));

static int value_code(const uint8_t *vals, int nv, uint8_t v) {
    for (int i = 0; i < nv; i++)
        if (vals[i] == v) return i;
    return 0; /* not reached: the grids only hold these values (test_dot checks the kernels) */
}

void quant_iq_codes_init(void) {
    static const uint8_t v2[3] = {8, 25, 43}, v3[8] = {4, 12, 20, 28, 36, 44, 52, 62};
    for (int i = 0; i < 256; i++) {
        uint64_t g = quant_iq2xxs_grid[i];
        unsigned w = 0;
        for (int m = 0; m < 4; m++) {
            w |= (unsigned)value_code(v2, 3, (uint8_t)(g >> (16 * m))) << (2 * m);
            w |= (unsigned)value_code(v2, 3, (uint8_t)(g >> (16 * m + 8))) << (8 + 2 * m);
        }
        quant_iq2xxs_codes[i] = (uint16_t)w;
        uint32_t h = quant_iq3xxs_grid[i];
        quant_iq3xxs_codes[i] = (uint16_t)(value_code(v3, 8, (uint8_t)h) | value_code(v3, 8, (uint8_t)(h >> 16)) << 4 |
                                           value_code(v3, 8, (uint8_t)(h >> 8)) << 8 |
                                           value_code(v3, 8, (uint8_t)(h >> 24)) << 12);
    }
}

ALWAYS_INLINE void iq23_xxs_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os,
                                 bool iq3) {
    __m512 acc[NT_MAX];
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    iq_code_table T;
    iq_code_table_load(&T, iq3 ? quant_iq3xxs_codes : quant_iq2xxs_codes);
    const int bytes = iq3 ? 98 : 66;
    for (int64_t b = 0; b < n / 256; b++, x += bytes, a += QK_Q8K_BYTES) {
        qk_prefetch(x, bytes);
        __m512i G[4], SC[4];
        uint64_t sg[4];
        if (iq3)
            iq3xxs_decode(x, &T, G, sg, SC, NULL);
        else
            iq2xxs_decode(x, &T, G, sg, SC, NULL);
        float d = fp16(x);
        for (int t = 0; t < nt; t++) {
            const uint8_t *y = a + (size_t)t * ab;
            __m512i isum = _mm512_setzero_si512();
            for (int c = 0; c < 4; c++) {
                __m512i av = load512(y + 4 + 64 * c);
                av = _mm512_mask_sub_epi8(av, _load_mask64((__mmask64 *)&sg[c]), _mm512_setzero_si512(), av);
                isum = _mm512_dpwssd_epi32(isum, _mm512_dpbusd_epi32(_mm512_setzero_si512(), G[c], av), SC[c]);
            }
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(d * qk_f32(y)), _mm512_cvtepi32_ps(isum), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[(size_t)t * os] = (iq3 ? 0.25f : 0.125f) * hsum512(acc[t]);
}
ALWAYS_INLINE void iq2_xxs_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    iq23_xxs_rowx(n, x, a, ab, nt, out, os, false);
}
ALWAYS_INLINE void iq3_xxs_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    iq23_xxs_rowx(n, x, a, ab, nt, out, os, true);
}
DEFINE_DOT_MM(iq2_xxs)
DEFINE_DOT_MM(iq3_xxs)

ALWAYS_INLINE void iq3_s_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    __m512 acc[NT_MAX];
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    const __m512i b8 = _mm512_set1_epi32(256);
    for (int64_t b = 0; b < n / 256; b++, x += 110, a += QK_Q8K_BYTES) {
        qk_prefetch(x, 110);
        __m512i G[4], SC[4];
        __mmask64 NEG[4];
        for (int m = 0; m < 4; m++) {
            __m512i idx = _mm512_cvtepu8_epi32(load128(x + 2 + 16 * m));
            idx = _mm512_mask_add_epi32(idx, (__mmask16)qk_rd16(x + 66 + 2 * m), idx, b8); /* qh: bit 8 */
            G[m] = grid32x16(quant_iq3s_grid, idx);
            uint64_t sg;
            memcpy(&sg, x + 74 + 8 * m, 8);
            NEG[m] = _cvtu64_mask64(sg);
            int sc = x[106 + m];
            SC[m] = scale2(2 * (sc & 0x0f) + 1, 2 * (sc >> 4) + 1);
        }
        float d = fp16(x);
        for (int t = 0; t < nt; t++) {
            const uint8_t *y = a + (size_t)t * ab;
            __m512i isum = _mm512_setzero_si512();
            for (int m = 0; m < 4; m++)
                isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(G[m], neg_where(load512(y + 4 + 64 * m), NEG[m])), SC[m]);
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(d * qk_f32(y)), _mm512_cvtepi32_ps(isum), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[(size_t)t * os] = hsum512(acc[t]);
}
DEFINE_DOT_MM(iq3_s)

/* IQ1_M: the weight of element e is 8 * grid + delta (delta = +-1 per group of 8), used as
 * that plus 9 (0..18) and corrected with the bsums; the result is 1/8 of the sum. */
ALWAYS_INLINE void iq1_m_rowx(int64_t n, const uint8_t *x, const uint8_t *a, size_t ab, int nt, float *out, size_t os) {
    __m512 acc[NT_MAX];
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    const __m512i one8 = _mm512_set1_epi8(1), two8 = _mm512_set1_epi8(2);
    const __m256i sh4 = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    const __m128i dup = _mm_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3);
    const __m256i sh3 = _mm256_setr_epi16(0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9);
    for (int64_t b = 0; b < n / 256; b++, x += 56, a += QK_Q8K_BYTES) {
        qk_prefetch(x, 56);
        uint16_t sw[4];
        for (int i = 0; i < 4; i++) sw[i] = qk_rd16(x + 48 + 2 * i);
        uint16_t dbits = (uint16_t)((sw[0] >> 12) | ((sw[1] >> 8) & 0x00f0) | ((sw[2] >> 4) & 0x0f00) | (sw[3] & 0xf000));
        /* ls of 16-element group j: 3 bits at 3 * (j % 4) of sw[j / 4] */
        __m128i swv = _mm_loadl_epi64((const __m128i *)(x + 48));
        __m256i ls16 = _mm256_set_m128i(_mm_shuffle_epi8(_mm_srli_si128(swv, 4), dup), _mm_shuffle_epi8(swv, dup));
        ls16 = _mm256_and_si256(_mm256_srlv_epi16(ls16, sh3), _mm256_set1_epi16(7));
        ls16 = _mm256_add_epi16(_mm256_add_epi16(ls16, ls16), _mm256_set1_epi16(1));
        __m256i corr16 = _mm256_mullo_epi16(ls16, _mm256_set1_epi16(9));
        __m512i G[4], SC[4];
        for (int m = 0; m < 4; m++) {
            /* groups 8m..8m+7: nibbles of qh[4m..4m+3] */
            __m256i nib = _mm256_srlv_epi32(_mm256_set1_epi32((int)qk_rd32(x + 32 + 4 * m)), sh4);
            __mmask8 dneg = _mm256_test_epi32_mask(nib, _mm256_set1_epi32(8));
            __m256i hb = _mm256_slli_epi32(_mm256_and_si256(nib, _mm256_set1_epi32(7)), 8);
            __m256i idx = _mm256_or_si256(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(x + 8 * m))), hb);
            __m512i g = _mm512_slli_epi16(_mm512_add_epi8(grid64x8(quant_iq1s_grid, idx), one8), 3); /* 8 * (grid + 1) */
            /* + 1 + delta: 2 where delta = +1, 0 where -1 */
            G[m] = _mm512_add_epi8(g, _mm512_maskz_mov_epi64((__mmask8)~dneg, two8));
            SC[m] = group16_scales(ls16, m);
        }
        float d = quant_fp16_to_f32(dbits);
        for (int t = 0; t < nt; t++) {
            const uint8_t *y = a + (size_t)t * ab;
            __m512i isum = zext256(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(q8k_bsums(y), corr16)));
            for (int m = 0; m < 4; m++)
                isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(G[m], load512(y + 4 + 64 * m)), SC[m]);
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(d * qk_f32(y)), _mm512_cvtepi32_ps(isum), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++) out[(size_t)t * os] = 0.125f * hsum512(acc[t]);
}
DEFINE_DOT_MM(iq1_m)

void quant_kernels_avx512(quant_kernel_table *t) {
    quant_iq_codes_init();
#define REG(T, name) (t->dot[K2_TYPE_##T] = dot_##name, t->mm[K2_TYPE_##T] = mm_##name)
    REG(Q4_K, q4_k);
    REG(Q5_K, q5_k);
    REG(Q6_K, q6_k);
    REG(Q2_K, q2_k);
    REG(Q3_K, q3_k);
    REG(Q8_0, q8_0);
    REG(IQ4_XS, iq4_xs);
    REG(IQ3_S, iq3_s);
    REG(IQ1_M, iq1_m);
    REG(IQ2_XXS, iq2_xxs);
    REG(IQ3_XXS, iq3_xxs);
    /* The IQ2_XS, IQ2_S and IQ1_S zmm kernels (commit "AVX-512 kernels for the grid
     * I-quants") measured slower than AVX2 on Cascade Lake (table lookups dominate), so
     * those types stay on AVX2. IQ2_XXS/IQ3_XXS above: 1.2-1.3x AVX2 (quant_bench). */
#undef REG
}
#endif
