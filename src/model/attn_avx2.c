/* AVX2 versions of the two attention loops of forward.c (absorbed MLA, spec §4.5 steps 2
 * and 4), bit-identical to the portable ones: every dot product keeps model_dot_f32's
 * eight partial sums (lane k of one ymm = acc[k]) and its final pairing, every latent
 * element is summed over the cache rows in order, and no multiply-add is fused. Tiles of
 * 4 heads x 2 rows (scores) and 4 heads x 16 columns (latent) keep the operands in
 * registers and L1. Compiled with -mavx2 only (module.cmake); called after a CPU check. */
#include "model/model.h"

#if defined(__x86_64__) && defined(__AVX2__)
#include <immintrin.h>

/* model_dot_f32's final pairing: ((a0+a4)+(a1+a5)) + ((a2+a6)+(a3+a7)) */
static inline float reduce8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_hadd_ps(s, s); /* [s0+s1, s2+s3, ...] */
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

static inline float tail_dot(float s, const float *a, const float *b, int64_t i, int64_t n) {
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void model_attn_scores_avx2(const float *q, int64_t ldq, int64_t nh, const float *k, int64_t ldk, int64_t nk,
                            int64_t n, float scale, float *z, int64_t ldz) {
    int64_t n8 = n & ~(int64_t)7;
    int64_t h = 0;
    for (; h + 4 <= nh; h += 4) {
        const float *q0 = q + h * ldq, *q1 = q0 + ldq, *q2 = q1 + ldq, *q3 = q2 + ldq;
        int64_t u = 0;
        for (; u + 2 <= nk; u += 2) {
            const float *k0 = k + u * ldk, *k1 = k0 + ldk;
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00,
                   a31 = a00;
            for (int64_t i = 0; i < n8; i += 8) {
                __m256 x0 = _mm256_loadu_ps(k0 + i), x1 = _mm256_loadu_ps(k1 + i), y;
                y = _mm256_loadu_ps(q0 + i);
                a00 = _mm256_add_ps(a00, _mm256_mul_ps(y, x0));
                a01 = _mm256_add_ps(a01, _mm256_mul_ps(y, x1));
                y = _mm256_loadu_ps(q1 + i);
                a10 = _mm256_add_ps(a10, _mm256_mul_ps(y, x0));
                a11 = _mm256_add_ps(a11, _mm256_mul_ps(y, x1));
                y = _mm256_loadu_ps(q2 + i);
                a20 = _mm256_add_ps(a20, _mm256_mul_ps(y, x0));
                a21 = _mm256_add_ps(a21, _mm256_mul_ps(y, x1));
                y = _mm256_loadu_ps(q3 + i);
                a30 = _mm256_add_ps(a30, _mm256_mul_ps(y, x0));
                a31 = _mm256_add_ps(a31, _mm256_mul_ps(y, x1));
            }
            z[(h + 0) * ldz + u] = tail_dot(reduce8(a00), q0, k0, n8, n) * scale;
            z[(h + 0) * ldz + u + 1] = tail_dot(reduce8(a01), q0, k1, n8, n) * scale;
            z[(h + 1) * ldz + u] = tail_dot(reduce8(a10), q1, k0, n8, n) * scale;
            z[(h + 1) * ldz + u + 1] = tail_dot(reduce8(a11), q1, k1, n8, n) * scale;
            z[(h + 2) * ldz + u] = tail_dot(reduce8(a20), q2, k0, n8, n) * scale;
            z[(h + 2) * ldz + u + 1] = tail_dot(reduce8(a21), q2, k1, n8, n) * scale;
            z[(h + 3) * ldz + u] = tail_dot(reduce8(a30), q3, k0, n8, n) * scale;
            z[(h + 3) * ldz + u + 1] = tail_dot(reduce8(a31), q3, k1, n8, n) * scale;
        }
        for (; u < nk; u++)
            for (int64_t j = 0; j < 4; j++) {
                const float *qj = q + (h + j) * ldq, *ku = k + u * ldk;
                __m256 a = _mm256_setzero_ps();
                for (int64_t i = 0; i < n8; i += 8)
                    a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(qj + i), _mm256_loadu_ps(ku + i)));
                z[(h + j) * ldz + u] = tail_dot(reduce8(a), qj, ku, n8, n) * scale;
            }
    }
    for (; h < nh; h++)
        for (int64_t u = 0; u < nk; u++) {
            const float *qh = q + h * ldq, *ku = k + u * ldk;
            __m256 a = _mm256_setzero_ps();
            for (int64_t i = 0; i < n8; i += 8)
                a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_loadu_ps(qh + i), _mm256_loadu_ps(ku + i)));
            z[h * ldz + u] = tail_dot(reduce8(a), qh, ku, n8, n) * scale;
        }
}

void model_attn_latent_avx2(const float *w, int64_t ldw, int64_t nh, const float *k, int64_t ldk, int64_t nk,
                            int64_t n, float *lat, int64_t ldl) {
    int64_t n16 = n & ~(int64_t)15;
    int64_t h = 0;
    for (; h + 4 <= nh; h += 4) {
        const float *w0 = w + h * ldw, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;
        float *l0 = lat + h * ldl, *l1 = l0 + ldl, *l2 = l1 + ldl, *l3 = l2 + ldl;
        for (int64_t c = 0; c < n16; c += 16) {
            __m256 a00 = _mm256_loadu_ps(l0 + c), a01 = _mm256_loadu_ps(l0 + c + 8);
            __m256 a10 = _mm256_loadu_ps(l1 + c), a11 = _mm256_loadu_ps(l1 + c + 8);
            __m256 a20 = _mm256_loadu_ps(l2 + c), a21 = _mm256_loadu_ps(l2 + c + 8);
            __m256 a30 = _mm256_loadu_ps(l3 + c), a31 = _mm256_loadu_ps(l3 + c + 8);
            for (int64_t u = 0; u < nk; u++) {
                const float *ku = k + u * ldk + c;
                __m256 x0 = _mm256_loadu_ps(ku), x1 = _mm256_loadu_ps(ku + 8), y;
                y = _mm256_broadcast_ss(w0 + u);
                a00 = _mm256_add_ps(a00, _mm256_mul_ps(y, x0));
                a01 = _mm256_add_ps(a01, _mm256_mul_ps(y, x1));
                y = _mm256_broadcast_ss(w1 + u);
                a10 = _mm256_add_ps(a10, _mm256_mul_ps(y, x0));
                a11 = _mm256_add_ps(a11, _mm256_mul_ps(y, x1));
                y = _mm256_broadcast_ss(w2 + u);
                a20 = _mm256_add_ps(a20, _mm256_mul_ps(y, x0));
                a21 = _mm256_add_ps(a21, _mm256_mul_ps(y, x1));
                y = _mm256_broadcast_ss(w3 + u);
                a30 = _mm256_add_ps(a30, _mm256_mul_ps(y, x0));
                a31 = _mm256_add_ps(a31, _mm256_mul_ps(y, x1));
            }
            _mm256_storeu_ps(l0 + c, a00);
            _mm256_storeu_ps(l0 + c + 8, a01);
            _mm256_storeu_ps(l1 + c, a10);
            _mm256_storeu_ps(l1 + c + 8, a11);
            _mm256_storeu_ps(l2 + c, a20);
            _mm256_storeu_ps(l2 + c + 8, a21);
            _mm256_storeu_ps(l3 + c, a30);
            _mm256_storeu_ps(l3 + c + 8, a31);
        }
        for (int64_t c = n16; c < n; c++)
            for (int64_t u = 0; u < nk; u++) {
                float x = k[u * ldk + c];
                l0[c] += w0[u] * x;
                l1[c] += w1[u] * x;
                l2[c] += w2[u] * x;
                l3[c] += w3[u] * x;
            }
    }
    for (; h < nh; h++)
        for (int64_t u = 0; u < nk; u++) {
            float a = w[h * ldw + u];
            const float *ku = k + u * ldk;
            float *lh = lat + h * ldl;
            for (int64_t c = 0; c < n; c++) lh[c] += a * ku[c];
        }
}

/* f16 cache rows -> f32 (exact conversion, so any method gives the same values) */
void model_f16_row_avx2(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

#else
typedef int model_attn_avx2_unused; /* ISO C: no empty translation unit */
#endif
