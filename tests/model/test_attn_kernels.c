/* The fast-mode AVX-512 attention loops (src/model/attn_avx512.c) against an f64
 * reference: scores and latent sums within 1e-5 of sum|terms| (they use fma and 16-lane
 * partial sums, so not bit for bit), for head and key counts that are and are not
 * multiples of the tiles, row lengths with and without a partial vector (576 = Kimi's
 * d_c + d_r, 512 = d_c, 100), and strided rows; likewise the two loops of the expanded
 * (non-absorbed) prefill form: the per-head decompression (out = a x b) and the scores
 * against a transposed key block, the 16x16 transpose, and the softmax and SwiGLU with the
 * vector exp (within 1e-6 relative of f64). Skips where the CPU lacks AVX-512. */
#include "testutil.h"
#include "model/model.h"
#include "quant/quant.h"

#include <math.h>
#include <stdlib.h>

static uint64_t rs = 0x2545f4914f6cdd1dULL;
static float frand(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((double)(rs >> 11) * 0x1p-53 * 2.0 - 1.0);
}

/* sum over c < n of x[c * sx] * y[c * sy] in f64, and the sum of the terms' magnitudes */
static double ref_dot(const float *x, int64_t sx, const float *y, int64_t sy, int64_t n, double *sabs) {
    double ref = 0;
    *sabs = 0;
    for (int64_t c = 0; c < n; c++) {
        ref += (double)x[c * sx] * y[c * sy];
        *sabs += fabs((double)x[c * sx] * y[c * sy]);
    }
    return ref;
}

int main(void) {
    if (quant_cpu_level_supported() < QUANT_CPU_AVX512) {
        fprintf(stderr, "no AVX-512 on this CPU: skipping\n");
        return 77;
    }
    const int64_t heads[] = {1, 4, 7, 16}, keys[] = {1, 3, 4, 64, 65}, widths[] = {576, 512, 100};
    for (size_t hi = 0; hi < K2_ARRAY_LEN(heads); hi++)
        for (size_t ki = 0; ki < K2_ARRAY_LEN(keys); ki++)
            for (size_t wi = 0; wi < K2_ARRAY_LEN(widths); wi++) {
                int64_t nh = heads[hi], nk = keys[ki], n = widths[wi];
                int64_t ldq = n + 3, ldk = n + 5, ldz = nk + 2, ldl = n + 1;
                float *q = malloc(sizeof(float) * (size_t)(nh * ldq)), *k = malloc(sizeof(float) * (size_t)(nk * ldk));
                float *z = malloc(sizeof(float) * (size_t)(nh * ldz)), *lat = malloc(sizeof(float) * (size_t)(nh * ldl));
                float *lat0 = malloc(sizeof(float) * (size_t)(nh * ldl));
                for (int64_t i = 0; i < nh * ldq; i++) q[i] = frand();
                for (int64_t i = 0; i < nk * ldk; i++) k[i] = frand();
                for (int64_t i = 0; i < nh * ldl; i++) lat[i] = lat0[i] = frand();
                model_attn_scores_avx512(q, ldq, nh, k, ldk, nk, n, 0.125f, z, ldz);
                for (int64_t h = 0; h < nh; h++)
                    for (int64_t u = 0; u < nk; u++) {
                        double ref = 0, sabs = 0;
                        for (int64_t c = 0; c < n; c++) {
                            ref += (double)q[h * ldq + c] * k[u * ldk + c];
                            sabs += fabs((double)q[h * ldq + c] * k[u * ldk + c]);
                        }
                        ref *= 0.125;
                        CHECK_MSG(fabs(z[h * ldz + u] - ref) <= 1e-5 * 0.125 * sabs, "scores nh=%lld nk=%lld n=%lld [%lld][%lld]: %.8g vs %.8g",
                                  (long long)nh, (long long)nk, (long long)n, (long long)h, (long long)u, z[h * ldz + u], ref);
                    }
                /* latent: weights = the scores rows (ldz apart) */
                model_attn_latent_avx512(z, ldz, nh, k, ldk, nk, n, lat, ldl);
                for (int64_t h = 0; h < nh; h++) {
                    for (int64_t c = 0; c < n; c++) {
                        double ref = lat0[h * ldl + c], sabs = fabs(ref);
                        for (int64_t u = 0; u < nk; u++) {
                            ref += (double)z[h * ldz + u] * k[u * ldk + c];
                            sabs += fabs((double)z[h * ldz + u] * k[u * ldk + c]);
                        }
                        CHECK_MSG(fabs(lat[h * ldl + c] - ref) <= 1e-5 * sabs, "latent nh=%lld nk=%lld n=%lld [%lld][%lld]",
                                  (long long)nh, (long long)nk, (long long)n, (long long)h, (long long)c);
                    }
                    CHECK(lat[h * ldl + n] == lat0[h * ldl + n]); /* padding untouched */
                }
                free(q); free(k); free(z); free(lat); free(lat0);
            }
    /* expanded form: out = a x b (rows of a lda apart, out rows ldo apart) */
    const int64_t rows[] = {1, 3, 4, 63, 64}, outs[] = {128, 64, 192};
    for (size_t ri = 0; ri < K2_ARRAY_LEN(rows); ri++)
        for (size_t oi = 0; oi < K2_ARRAY_LEN(outs); oi++) {
            int64_t nk = rows[ri], n_in = 512, n_out = outs[oi], lda = 576, ldo = n_out + 64;
            float *a = malloc(sizeof(float) * (size_t)(nk * lda)), *b = malloc(sizeof(float) * (size_t)(n_in * n_out));
            float *out = malloc(sizeof(float) * (size_t)(nk * ldo));
            for (int64_t i = 0; i < nk * lda; i++) a[i] = frand();
            for (int64_t i = 0; i < n_in * n_out; i++) b[i] = frand();
            for (int64_t i = 0; i < nk * ldo; i++) out[i] = 7.0f;
            model_attn_expand_avx512(a, lda, nk, b, n_in, n_out, out, ldo);
            for (int64_t u = 0; u < nk; u++) {
                for (int64_t j = 0; j < n_out; j++) {
                    double sabs, ref = ref_dot(a + u * lda, 1, b + j, n_out, n_in, &sabs);
                    CHECK_MSG(fabs(out[u * ldo + j] - ref) <= 1e-5 * sabs, "expand nk=%lld n_out=%lld [%lld][%lld]",
                              (long long)nk, (long long)n_out, (long long)u, (long long)j);
                }
                CHECK(out[u * ldo + n_out] == 7.0f); /* padding untouched */
            }
            /* scores against the transposed block: queries x keys (<= 64), width 192 */
            int64_t nq = rows[ri] + 2, n = 192, ldq = n + 8, ldkt = 64, ldz = 80;
            float *q = malloc(sizeof(float) * (size_t)(nq * ldq)), *kt = malloc(sizeof(float) * (size_t)(n * ldkt));
            float *z = malloc(sizeof(float) * (size_t)(nq * ldz));
            for (int64_t i = 0; i < nq * ldq; i++) q[i] = frand();
            for (int64_t i = 0; i < n * ldkt; i++) kt[i] = frand();
            for (int64_t i = 0; i < nq * ldz; i++) z[i] = 7.0f;
            model_attn_scores_t_avx512(q, ldq, nq, kt, ldkt, nk, n, 0.125f, z, ldz);
            for (int64_t i = 0; i < nq; i++) {
                for (int64_t u = 0; u < nk; u++) {
                    double sabs, ref = ref_dot(q + i * ldq, 1, kt + u, ldkt, n, &sabs);
                    CHECK_MSG(fabs(z[i * ldz + u] - 0.125 * ref) <= 1e-5 * 0.125 * sabs, "scores_t nq=%lld nk=%lld [%lld][%lld]",
                              (long long)nq, (long long)nk, (long long)i, (long long)u);
                }
                for (int64_t u = nk; u < ldz; u++) CHECK(z[i * ldz + u] == 7.0f);
            }
            free(a); free(b); free(out); free(q); free(kt); free(z);
        }
    /* transpose (16x16 register blocks) */
    {
        int64_t tr = 48, tc = 32, lds = 40, ldd = 56;
        float *src = malloc(sizeof(float) * (size_t)(tr * lds)), *dst = malloc(sizeof(float) * (size_t)(tc * ldd));
        for (int64_t i = 0; i < tr * lds; i++) src[i] = frand();
        for (int64_t i = 0; i < tc * ldd; i++) dst[i] = 7.0f;
        model_transpose_avx512(src, lds, tr, tc, dst, ldd);
        for (int64_t i = 0; i < tr; i++)
            for (int64_t j = 0; j < tc; j++) CHECK(dst[j * ldd + i] == src[i * lds + j]);
        for (int64_t j = 0; j < tc; j++) CHECK(dst[j * ldd + tr] == 7.0f);
        free(src); free(dst);
    }
    /* softmax: vector exp against expf/f64, masked tails, zeroed rest, large negative gaps */
    const int64_t lens[] = {1, 5, 16, 17, 100, 513};
    for (size_t li = 0; li < K2_ARRAY_LEN(lens); li++) {
        int64_t n = lens[li], end = n + 20;
        float *z = malloc(sizeof(float) * (size_t)end), *z0 = malloc(sizeof(float) * (size_t)end);
        for (int64_t u = 0; u < end; u++) z[u] = z0[u] = 30.0f * frand() - (u % 7 == 3 ? 200.0f : 0.0f);
        model_softmax_avx512(z, n, end);
        double mx = -INFINITY, sum = 0;
        for (int64_t u = 0; u < n; u++) mx = fmax(mx, z0[u]);
        for (int64_t u = 0; u < n; u++) sum += exp((double)z0[u] - mx);
        for (int64_t u = 0; u < n; u++) {
            /* z - max is rounded to float first (as expf(z - max) would be): relative error
             * up to ~6e-8 |z - max| from that alone */
            double x = (double)z0[u] - mx, ref = exp(x) / sum;
            CHECK_MSG(fabs(z[u] - ref) <= (1e-6 + 1e-7 * fabs(x)) * ref + 1e-37, "softmax n=%lld [%lld]: %.9g vs %.9g",
                      (long long)n, (long long)u, z[u], ref);
        }
        for (int64_t u = n; u < end; u++) CHECK(z[u] == 0.0f);
        free(z); free(z0);
    }
    /* swiglu with the vector exp: silu(u) * v within 1e-6 relative (+ tiny absolute) of f64,
     * including |u| far outside exp's range and a masked tail */
    {
        int64_t n = 133;
        float *u = malloc(sizeof(float) * (size_t)n), *v = malloc(sizeof(float) * (size_t)n), *u0 = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) {
            u[i] = u0[i] = (i % 11 == 5 ? 300.0f : 20.0f) * frand();
            v[i] = frand();
        }
        model_swiglu_avx512(u, v, n);
        for (int64_t i = 0; i < n; i++) {
            double x = u0[i], ref = x / (1.0 + exp(-x)) * v[i];
            CHECK_MSG(fabs(u[i] - ref) <= 1e-6 * fabs(ref) + 1e-30 && !isnan(u[i]), "swiglu [%lld] u=%g: %.9g vs %.9g",
                      (long long)i, u0[i], u[i], ref);
        }
        free(u); free(v); free(u0);
    }
    return k2t_finish("model.test_attn_kernels");
}
