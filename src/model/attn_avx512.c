/* AVX-512 + FMA versions of the two attention loops (absorbed MLA, spec §4.5 steps 2
 * and 4) for fast mode only: fused multiply-adds and 16-lane partial sums round
 * differently from the portable loops (exact mode keeps those, bit for bit), so these
 * agree with them to float rounding (~1e-6 relative), which fast mode allows. Also fast
 * mode's expanded prefill form (§4.6: decompression, scores against transposed keys,
 * transpose, softmax) and SwiGLU, the last two with a vector exp.
 *
 * Why: at long contexts the attention is compute-bound (576 multiply-adds per head, key
 * and token in the absorbed form), and the exact-mode AVX2 loops issue a separate
 * multiply and add per 8 lanes; these issue one fma per 16 lanes. Compiled with
 * AVX-512F and FMA (module.cmake); called after a CPU check. */
#include "model/model.h"

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>
#include <math.h>

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

/* ---- expanded (non-absorbed) attention for prefill, spec §4.6 ---- */

/* out[u * ldo + j] = sum over c < n_in of a[u * lda + c] * b[c * n_out + j], for u < nk and
 * j < n_out (a multiple of 64): the per-head decompression of cached latents into keys or
 * values. Tiles of 4 rows x 64 columns: per c, 4 loads of b and 4 broadcasts feed 16 fma,
 * ~30 multiply-adds per cycle (measured; a version that allowed partial column tiles
 * branched in the inner loop and ran at a third of that). */
void model_attn_expand_avx512(const float *a, int64_t lda, int64_t nk, const float *b, int64_t n_in, int64_t n_out,
                              float *out, int64_t ldo) {
    for (int64_t j0 = 0; j0 + 64 <= n_out; j0 += 64)
        for (int64_t u = 0; u < nk; u += 4) {
            int un = nk - u < 4 ? (int)(nk - u) : 4;
            const float *a0 = a + u * lda, *a1 = a + (u + (un > 1)) * lda, *a2 = a + (u + 2 * (un > 2)) * lda,
                        *a3 = a + (u + 3 * (un > 3)) * lda;
            __m512 acc[4][4];
            for (int i = 0; i < 4; i++)
                for (int v = 0; v < 4; v++) acc[i][v] = _mm512_setzero_ps();
            for (int64_t c = 0; c < n_in; c++) {
                const float *bc = b + c * n_out + j0;
                __m512 b0 = _mm512_loadu_ps(bc), b1 = _mm512_loadu_ps(bc + 16), b2 = _mm512_loadu_ps(bc + 32),
                       b3 = _mm512_loadu_ps(bc + 48);
#define EXPAND_ROW(i, ai)                                                                                              \
    do {                                                                                                               \
        __m512 x = _mm512_set1_ps(ai[c]);                                                                              \
        acc[i][0] = _mm512_fmadd_ps(x, b0, acc[i][0]);                                                                 \
        acc[i][1] = _mm512_fmadd_ps(x, b1, acc[i][1]);                                                                 \
        acc[i][2] = _mm512_fmadd_ps(x, b2, acc[i][2]);                                                                 \
        acc[i][3] = _mm512_fmadd_ps(x, b3, acc[i][3]);                                                                 \
    } while (0)
                EXPAND_ROW(0, a0);
                EXPAND_ROW(1, a1);
                EXPAND_ROW(2, a2);
                EXPAND_ROW(3, a3);
#undef EXPAND_ROW
            }
            for (int i = 0; i < un; i++)
                for (int v = 0; v < 4; v++) _mm512_storeu_ps(out + (u + i) * ldo + j0 + 16 * v, acc[i][v]);
        }
}

/* z[i * ldz + u] = scale * sum over c < n of q[i * ldq + c] * kt[c * ldkt + u], for i < nq
 * and u < nk <= 64: the keys in lanes (kt is the key block transposed), so no horizontal
 * sums; tiles of 4 queries x 64 keys. */
void model_attn_scores_t_avx512(const float *q, int64_t ldq, int64_t nq, const float *kt, int64_t ldkt, int64_t nk,
                                int64_t n, float scale, float *z, int64_t ldz) {
    __mmask16 km[4];
    for (int v = 0; v < 4; v++) {
        int64_t left = nk - 16 * v;
        km[v] = left >= 16 ? 0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
    }
    const __m512 sc = _mm512_set1_ps(scale);
    for (int64_t i0 = 0; i0 < nq; i0 += 4) {
        int qn = nq - i0 < 4 ? (int)(nq - i0) : 4;
        const float *qr[4];
        for (int i = 0; i < 4; i++) qr[i] = q + (i0 + (i < qn ? i : 0)) * ldq;
        __m512 acc[4][4];
        for (int i = 0; i < 4; i++)
            for (int v = 0; v < 4; v++) acc[i][v] = _mm512_setzero_ps();
        for (int64_t c = 0; c < n; c++) {
            const float *kc = kt + c * ldkt;
            __m512 kv[4];
            for (int v = 0; v < 4; v++) kv[v] = _mm512_maskz_loadu_ps(km[v], kc + 16 * v);
            for (int i = 0; i < 4; i++) {
                __m512 x = _mm512_set1_ps(qr[i][c]);
                for (int v = 0; v < 4; v++) acc[i][v] = _mm512_fmadd_ps(x, kv[v], acc[i][v]);
            }
        }
        for (int i = 0; i < qn; i++)
            for (int v = 0; v < 4; v++)
                _mm512_mask_storeu_ps(z + (i0 + i) * ldz + 16 * v, km[v], _mm512_mul_ps(acc[i][v], sc));
    }
}

/* e^x (fast mode): x = n ln2 + r with |r| <= ln2/2 (ln2 split in two parts), a degree-7
 * Taylor polynomial in r (truncation < 6e-9 relative) and 2^n by vscalefps, which flushes
 * to 0 far below the float range and gives +inf above it. */
static inline __m512 exp_neg512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-150.0f)), _mm512_set1_ps(100.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* z[0..n) = softmax(z[0..n)), z[n..end) = 0 (fast mode). */
void model_softmax_avx512(float *z, int64_t n, int64_t end) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    int64_t u = 0;
    for (; u + 16 <= n; u += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(z + u));
    __mmask16 tail = (__mmask16)((1u << (n - u)) - 1);
    if (tail) mx = _mm512_mask_max_ps(mx, tail, mx, _mm512_maskz_loadu_ps(tail, z + u));
    __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx)), sum = _mm512_setzero_ps();
    for (u = 0; u + 16 <= n; u += 16) {
        __m512 e = exp_neg512(_mm512_sub_ps(_mm512_loadu_ps(z + u), m));
        _mm512_storeu_ps(z + u, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (tail) {
        __m512 e = _mm512_maskz_mov_ps(tail, exp_neg512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, z + u), m)));
        _mm512_mask_storeu_ps(z + u, tail, e);
        sum = _mm512_add_ps(sum, e);
    }
    __m512 inv = _mm512_set1_ps((float)(1.0 / (double)_mm512_reduce_add_ps(sum)));
    for (u = 0; u + 16 <= n; u += 16) _mm512_storeu_ps(z + u, _mm512_mul_ps(_mm512_loadu_ps(z + u), inv));
    if (tail) _mm512_mask_storeu_ps(z + u, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, z + u), inv));
    for (u = n; u < end; u++) z[u] = 0.0f;
}

/* u[i] = silu(u[i]) * v[i] = u / (1 + e^-u) * v (fast mode; u -> -inf gives -0). */
void model_swiglu_avx512(float *u, const float *v, int64_t n) {
    int64_t i = 0;
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(u + i);
        __m512 s = _mm512_div_ps(x, _mm512_add_ps(one, exp_neg512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
        _mm512_storeu_ps(u + i, _mm512_mul_ps(s, _mm512_loadu_ps(v + i)));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(m, u + i);
        __m512 s = _mm512_div_ps(x, _mm512_add_ps(one, exp_neg512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
        _mm512_mask_storeu_ps(u + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, v + i)));
    }
}

/* dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols (both multiples of 16): 16x16
 * blocks transposed in registers (unpacks and lane shuffles), where a scalar loop spent
 * a third of the expanded attention's own time (measured). */
void model_transpose_avx512(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst, int64_t ldd) {
    for (int64_t i0 = 0; i0 < rows; i0 += 16)
        for (int64_t j0 = 0; j0 < cols; j0 += 16) {
            __m512 r[16], t[16];
            for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + (i0 + i) * lds + j0);
            /* 2x2 blocks of floats, then of pairs, then 128-bit lanes */
            for (int i = 0; i < 16; i += 2) {
                t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int i = 0; i < 16; i += 4) {
                r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
                r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
                r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
                r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
            }
            for (int i = 0; i < 8; i++) {
                int a = (i / 4) * 8 + i % 4; /* rows 0-3 with 4-7, 8-11 with 12-15 */
                t[a] = _mm512_shuffle_f32x4(r[a], r[a + 4], 0x88);
                t[a + 4] = _mm512_shuffle_f32x4(r[a], r[a + 4], 0xdd);
            }
            for (int i = 0; i < 8; i++) {
                r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
                r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
            }
            /* r[k] now holds column j0 + k */
            for (int k = 0; k < 16; k++) _mm512_storeu_ps(dst + (j0 + k) * ldd + i0, r[k]);
        }
}

#else
typedef int model_attn_avx512_unused; /* ISO C: no empty translation unit */
#endif
