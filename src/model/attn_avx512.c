/* AVX-512 + FMA versions of the two attention loops (absorbed MLA, spec §4.5 steps 2
 * and 4) for fast mode only: fused multiply-adds and 16-lane partial sums round
 * differently from the portable loops (exact mode keeps those, bit for bit), so these
 * agree with them to float rounding (~1e-6 relative), which fast mode allows.
 *
 * Why: at long contexts the attention is compute-bound (576 multiply-adds per head, key
 * and token in the absorbed form), and the exact-mode AVX2 loops issue a separate
 * multiply and add per 8 lanes; these issue one fma per 16 lanes. Compiled with
 * AVX-512F and FMA (module.cmake); called after a CPU check. */
#include "model/model.h"

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

/* z[h * ldz + u] = dot(q row h, k row u) * scale, tiles of 4 heads x 4 keys. */
void model_attn_scores_avx512(const float *q, int64_t ldq, int64_t nh, const float *k, int64_t ldk, int64_t nk,
                              int64_t n, float scale, float *z, int64_t ldz) {
    int64_t n16 = n & ~(int64_t)15;
    __mmask16 tail = (__mmask16)((1u << (n - n16)) - 1);
    int64_t h = 0;
    for (; h < nh; h += 4) {
        int hn = nh - h < 4 ? (int)(nh - h) : 4;
        const float *qr[4];
        for (int i = 0; i < 4; i++) qr[i] = q + (h + (i < hn ? i : 0)) * ldq;
        for (int64_t u = 0; u < nk; u += 4) {
            int un = nk - u < 4 ? (int)(nk - u) : 4;
            const float *kr[4];
            for (int j = 0; j < 4; j++) kr[j] = k + (u + (j < un ? j : 0)) * ldk;
            __m512 acc[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
            for (int64_t c = 0; c < n16; c += 16) {
                __m512 kv[4];
                for (int j = 0; j < 4; j++) kv[j] = _mm512_loadu_ps(kr[j] + c);
                for (int i = 0; i < 4; i++) {
                    __m512 qv = _mm512_loadu_ps(qr[i] + c);
                    for (int j = 0; j < 4; j++) acc[i][j] = _mm512_fmadd_ps(qv, kv[j], acc[i][j]);
                }
            }
            if (tail) {
                __m512 kv[4];
                for (int j = 0; j < 4; j++) kv[j] = _mm512_maskz_loadu_ps(tail, kr[j] + n16);
                for (int i = 0; i < 4; i++) {
                    __m512 qv = _mm512_maskz_loadu_ps(tail, qr[i] + n16);
                    for (int j = 0; j < 4; j++) acc[i][j] = _mm512_fmadd_ps(qv, kv[j], acc[i][j]);
                }
            }
            for (int i = 0; i < hn; i++)
                for (int j = 0; j < un; j++) z[(h + i) * ldz + u + j] = _mm512_reduce_add_ps(acc[i][j]) * scale;
        }
    }
}

/* lat row h += sum over u of w[h * ldw + u] * k row u (first n columns); tiles of hn <= 4
 * heads x 32 columns, accumulators in registers across the keys. */
static inline __attribute__((always_inline)) void latent_tile(const float *w, int64_t ldw, int hn, const float *k,
                                                              int64_t ldk, int64_t nk, int64_t n, float *lat,
                                                              int64_t ldl) {
    for (int64_t c = 0; c < n; c += 32) {
        int64_t left = n - c;
        __mmask16 m0 = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
        __mmask16 m1 = left >= 32 ? 0xffff : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
        __m512 a0[4], a1[4];
        for (int i = 0; i < hn; i++) {
            a0[i] = _mm512_maskz_loadu_ps(m0, lat + i * ldl + c);
            a1[i] = _mm512_maskz_loadu_ps(m1, lat + i * ldl + c + 16);
        }
        for (int64_t u = 0; u < nk; u++) {
            const float *ku = k + u * ldk + c;
            __m512 x0 = _mm512_maskz_loadu_ps(m0, ku), x1 = _mm512_maskz_loadu_ps(m1, ku + 16);
            for (int i = 0; i < hn; i++) {
                __m512 y = _mm512_set1_ps(w[i * ldw + u]);
                a0[i] = _mm512_fmadd_ps(y, x0, a0[i]);
                a1[i] = _mm512_fmadd_ps(y, x1, a1[i]);
            }
        }
        for (int i = 0; i < hn; i++) {
            _mm512_mask_storeu_ps(lat + i * ldl + c, m0, a0[i]);
            _mm512_mask_storeu_ps(lat + i * ldl + c + 16, m1, a1[i]);
        }
    }
}

void model_attn_latent_avx512(const float *w, int64_t ldw, int64_t nh, const float *k, int64_t ldk, int64_t nk,
                              int64_t n, float *lat, int64_t ldl) {
    int64_t h = 0;
    for (; h + 4 <= nh; h += 4) latent_tile(w + h * ldw, ldw, 4, k, ldk, nk, n, lat + h * ldl, ldl);
    switch (nh - h) {
    case 3: latent_tile(w + h * ldw, ldw, 3, k, ldk, nk, n, lat + h * ldl, ldl); break;
    case 2: latent_tile(w + h * ldw, ldw, 2, k, ldk, nk, n, lat + h * ldl, ldl); break;
    case 1: latent_tile(w + h * ldw, ldw, 1, k, ldk, nk, n, lat + h * ldl, ldl); break;
    default: break;
    }
}

#else
typedef int model_attn_avx512_unused; /* ISO C: no empty translation unit */
#endif
