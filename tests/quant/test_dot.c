/* Dot-product kernels (spec/quant-types.md §4.5) at every CPU level this machine has:
 * each equals the f64 dot of the dequantized weight row with the dequantized quantized
 * activation row to 1e-5 of sum|w*a|, SIMD levels agree with the scalar kernels, and
 * quant_matvec equals per-row dots. Weight rows are random bytes with finite fp16 scale
 * fields of realistic magnitude. */
#include "testutil.h"
#include "quant/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double urand(void) { return (double)(rnd() >> 11) * 0x1p-53; }
static float nrand(void) {
    double u = urand() + 1e-300, v = urand();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static void put_fp16(uint8_t *p, float v) {
    uint16_t h = quant_f32_to_fp16(v);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* fp16 field offsets inside a weight block (§3), -1 terminated. */
static const int *fp16_fields(uint32_t t) {
    static const int at0[] = {0, -1}, at01[] = {0, 2, -1}, q2k[] = {80, 82, -1}, q3k[] = {108, -1},
                     q6k[] = {208, -1}, tq1[] = {52, -1}, tq2[] = {64, -1}, none[] = {-1};
    switch (t) {
    case K2_TYPE_Q4_0: case K2_TYPE_Q5_0: case K2_TYPE_Q8_0: case K2_TYPE_IQ4_NL: case K2_TYPE_IQ2_XXS:
    case K2_TYPE_IQ2_XS: case K2_TYPE_IQ2_S: case K2_TYPE_IQ3_XXS: case K2_TYPE_IQ3_S: case K2_TYPE_IQ1_S:
    case K2_TYPE_IQ4_XS:
        return at0;
    case K2_TYPE_Q4_1: case K2_TYPE_Q5_1: case K2_TYPE_Q4_K: case K2_TYPE_Q5_K: return at01;
    case K2_TYPE_Q2_K: return q2k;
    case K2_TYPE_Q3_K: return q3k;
    case K2_TYPE_Q6_K: return q6k;
    case K2_TYPE_TQ1_0: return tq1;
    case K2_TYPE_TQ2_0: return tq2;
    default: return none;
    }
}

static void random_row(uint32_t t, uint8_t *row, int64_t n) {
    int64_t bs = k2_type_block_size(t), bb = k2_type_block_bytes(t);
    if (t == K2_TYPE_F32) {
        for (int64_t i = 0; i < n; i++) { float v = nrand(); memcpy(row + 4 * i, &v, 4); }
        return;
    }
    if (t == K2_TYPE_F16 || t == K2_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            float v = nrand();
            uint16_t h = t == K2_TYPE_F16 ? quant_f32_to_fp16(v) : quant_f32_to_bf16(v);
            row[2 * i] = (uint8_t)h;
            row[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return;
    }
    for (int64_t b = 0; b < n / bs; b++) {
        uint8_t *blk = row + b * bb;
        for (int64_t i = 0; i < bb; i++) blk[i] = (uint8_t)rnd();
        for (const int *f = fp16_fields(t); *f >= 0; f++) put_fp16(blk + *f, (float)(0.001 + 0.05 * urand()) * (rnd() & 1 ? -1.0f : 1.0f));
        if (t == K2_TYPE_IQ1_M) {
            uint16_t d = quant_f32_to_fp16((float)(0.001 + 0.05 * urand()));
            for (int k = 0; k < 4; k++) blk[48 + 2 * k + 1] = (uint8_t)((blk[48 + 2 * k + 1] & 0x0f) | (((d >> (4 * k)) & 0xf) << 4));
        }
        if (t == K2_TYPE_MXFP4) blk[0] = (uint8_t)(118 + rnd() % 12);
    }
}

static const uint32_t TYPES[] = {
    K2_TYPE_F32, K2_TYPE_F16, K2_TYPE_BF16, K2_TYPE_Q4_0, K2_TYPE_Q4_1, K2_TYPE_Q5_0, K2_TYPE_Q5_1,
    K2_TYPE_Q8_0, K2_TYPE_IQ4_NL, K2_TYPE_MXFP4, K2_TYPE_Q2_K, K2_TYPE_Q3_K, K2_TYPE_Q4_K, K2_TYPE_Q5_K,
    K2_TYPE_Q6_K, K2_TYPE_IQ2_XXS, K2_TYPE_IQ2_XS, K2_TYPE_IQ2_S, K2_TYPE_IQ3_XXS, K2_TYPE_IQ3_S,
    K2_TYPE_IQ1_S, K2_TYPE_IQ1_M, K2_TYPE_IQ4_XS, K2_TYPE_TQ1_0, K2_TYPE_TQ2_0,
};

#define ROWS 12
#define TOKS 6

/* quant_matmul_at at every level = that level's vec_dot on every (row, token) pair, bit for
 * bit; rows and activation rows are given padded strides to catch stride mix-ups. */
static void check_matmul(uint32_t t, int64_t n) {
    const quant_type_traits *tr0 = quant_traits_at(t, QUANT_CPU_SCALAR);
    int64_t wbytes = k2_type_row_bytes(t, n), abytes = k2_type_row_bytes(tr0->vec_dot_type, n);
    size_t rs = (size_t)wbytes + 3, as = (size_t)abytes + 5;
    uint8_t *w = malloc(rs * ROWS), *aq = malloc(as * TOKS);
    float *x = malloc(sizeof(float) * (size_t)n), *mm = malloc(sizeof(float) * ROWS * TOKS);
    for (int r = 0; r < ROWS; r++) random_row(t, w + r * rs, n);
    for (int k = 0; k < TOKS; k++) {
        for (int64_t i = 0; i < n; i++) x[i] = nrand() * (k + 1);
        tr0->quantize_act(x, aq + k * as, n);
    }
    for (int lvl = 0; lvl <= (int)quant_cpu_level_supported(); lvl++) {
        const quant_type_traits *tr = quant_traits_at(t, (quant_cpu_level)lvl);
        for (int nt = 0; nt <= TOKS; nt++) {
            int nr = nt == 2 ? 1 : ROWS;
            for (int i = 0; i < ROWS * TOKS; i++) mm[i] = -1.0f;
            CHECK(quant_matmul_at((quant_cpu_level)lvl, t, w, rs, nr, n, aq, as, nt, mm));
            for (int k = 0; k < nt; k++)
                for (int r = 0; r < nr; r++) {
                    float s;
                    tr->vec_dot(n, &s, w + r * rs, aq + k * as);
                    CHECK_MSG(memcmp(&s, &mm[k * nr + r], 4) == 0, "%s n=%lld level %s matmul n_tok=%d [%d][%d]: %.9g vs vec_dot %.9g",
                              k2_type_name(t), (long long)n, quant_cpu_level_name((quant_cpu_level)lvl), nt, k, r,
                              mm[k * nr + r], s);
                }
            CHECK(nr * nt == ROWS * TOKS || mm[nr * nt] == -1.0f);
        }
    }
    CHECK(!quant_matmul(t, w, (size_t)wbytes - 1, 2, n, aq, as, 1, mm));
    CHECK(!quant_matmul(t, w, rs, 1, n, aq, (size_t)abytes - 1, 2, mm));
    free(w); free(aq); free(x); free(mm);
}

/* quant_gemm_at (panel GEMM, where a type has one) = the f64 dot of the dequantized weight
 * and activation rows to 1e-5 of sum|w*a|, for row counts with and without a partial
 * panel, token counts below, at and above the register and scratch tiles, padded strides,
 * and activation rows of very different magnitudes (per-token scales). */
static void check_gemm(uint32_t t, int64_t n) {
    enum { GR = 101, GT = 300 };
    int lvl = (int)quant_cpu_level_supported();
    const quant_type_traits *tr = quant_traits_at(t, (quant_cpu_level)lvl);
    if (!tr || !tr->gemm) return;
    int64_t wbytes = k2_type_row_bytes(t, n), abytes = k2_type_row_bytes(tr->vec_dot_type, n);
    size_t rs = (size_t)wbytes + 7, as = (size_t)abytes + 5;
    uint8_t *w = malloc(rs * GR), *aq = malloc(as * GT);
    float *x = malloc(sizeof(float) * (size_t)n), *out = malloc(sizeof(float) * GR * GT);
    double *wd = malloc(sizeof(double) * (size_t)n * GR), *ad = malloc(sizeof(double) * (size_t)n * GT);
    float *tmp = malloc(sizeof(float) * (size_t)n);
    for (int r = 0; r < GR; r++) {
        random_row(t, w + r * rs, n);
        CHECK(quant_dequantize_row(t, w + r * rs, tmp, n));
        for (int64_t i = 0; i < n; i++) wd[r * n + i] = tmp[i];
    }
    for (int k = 0; k < GT; k++) {
        float sc = (k % 5 == 0) ? 1e-3f : (float)(k % 7 + 1);
        for (int64_t i = 0; i < n; i++) x[i] = nrand() * sc;
        tr->quantize_act(x, aq + k * as, n);
        CHECK(quant_dequantize_row(tr->vec_dot_type, aq + k * as, tmp, n));
        for (int64_t i = 0; i < n; i++) ad[k * n + i] = tmp[i];
    }
    /* 1, 2 and 3 panels per tile set, several sets, a partial panel */
    const int rows_cases[] = {16, 37, 32, 48, 64, 80, 101}, tok_cases[] = {1, 3, 4, 5, 8, 13, 131, 300};
    double worst = 0.0;
    for (size_t rc = 0; rc < K2_ARRAY_LEN(rows_cases); rc++)
        for (size_t tc = 0; tc < K2_ARRAY_LEN(tok_cases); tc++) {
            int nr = rows_cases[rc], nt = tok_cases[tc];
            for (int i = 0; i < GR * GT; i++) out[i] = NAN;
            CHECK(quant_gemm_at((quant_cpu_level)lvl, t, w, rs, nr, n, aq, as, nt, out));
            for (int k = 0; k < nt; k++)
                for (int r = 0; r < nr; r++) {
                    double ref = 0.0, sabs = 0.0;
                    for (int64_t i = 0; i < n; i++) {
                        double p = wd[r * n + i] * ad[k * n + i];
                        ref += p;
                        sabs += fabs(p);
                    }
                    double err = fabs((double)out[k * nr + r] - ref) / (sabs + 1e-30);
                    if (err > worst) worst = err;
                    CHECK_MSG(err <= 1e-5, "%s n=%lld gemm rows=%d toks=%d [%d][%d]: got %.9g want %.9g (rel %.3g)",
                              k2_type_name(t), (long long)n, nr, nt, k, r, out[k * nr + r], ref, err);
                }
        }
    fprintf(stderr, "%-8s gemm (%s) worst rel err %.2g\n", k2_type_name(t), quant_cpu_level_name((quant_cpu_level)lvl), worst);
    CHECK(!quant_gemm_at((quant_cpu_level)lvl, t, w, (size_t)wbytes - 1, 16, n, aq, as, 2, out));
    free(w); free(aq); free(x); free(out); free(wd); free(ad); free(tmp);
}

/* The activation quantizers of every level (traits->quantize_act) write the same bytes as
 * the scalar quant_quantize_row_q8_0 / _q8_k, on ordinary rows and on the edge cases:
 * rounding ties, +-amax ties, zero, subnormal, huge, infinite and NaN elements. */
static void check_quantizers(void) {
    enum { N = 7168 };
    float *x = malloc(sizeof(float) * N);
    uint8_t *ref = malloc(N * 2), *got = malloc(N * 2);
    const uint32_t wt[2] = {K2_TYPE_Q8_0, K2_TYPE_Q4_K};
    for (int trial = 0; trial < 40; trial++) {
        for (int i = 0; i < N; i++) {
            float v = nrand() * (trial % 3 == 0 ? 1e-3f : 7.0f);
            switch (trial % 8) {
            case 1: v = (float)((int)(rnd() % 255) - 127) + 0.5f; break;       /* halves: ties at scale 1 */
            case 2: v = (i % 256 == 5) ? 127.0f : (i % 256 == 3 ? -127.0f : v); break; /* +-amax, first wins */
            case 3: v = (i / 256) % 3 == 0 ? 0.0f : v; break;                 /* all-zero blocks */
            case 4: v = v * 1e-41f; break;                                     /* subnormals */
            case 5: v = (rnd() % 97 == 0) ? (rnd() & 1 ? INFINITY : -INFINITY) : v; break;
            case 6: v = (rnd() % 89 == 0) ? NAN : v; break;
            case 7: v = (rnd() % 50 == 0) ? (rnd() & 1 ? 3e38f : -3e38f) : v * 1e-30f; break;
            default: break;
            }
            x[i] = v;
        }
        if (trial % 8 == 1) { x[0] = 127.0f; x[32] = -127.0f; }
        for (int k = 0; k < 2; k++) {
            const quant_type_traits *t0 = quant_traits_at(wt[k], QUANT_CPU_SCALAR);
            int64_t bytes = k2_type_row_bytes(t0->vec_dot_type, N);
            if (k == 0) quant_quantize_row_q8_0(x, ref, N);
            else quant_quantize_row_q8_k(x, ref, N);
            for (int lvl = 0; lvl <= (int)quant_cpu_level_supported(); lvl++) {
                const quant_type_traits *tr = quant_traits_at(wt[k], (quant_cpu_level)lvl);
                memset(got, 0xa5, (size_t)bytes);
                tr->quantize_act(x, got, N);
                int64_t at = -1;
                for (int64_t i = 0; i < bytes && at < 0; i++) if (ref[i] != got[i]) at = i;
                CHECK_MSG(at < 0, "quantize %s level %s trial %d: byte %lld differs (%02x vs scalar %02x)",
                          k2_type_name(t0->vec_dot_type), quant_cpu_level_name((quant_cpu_level)lvl), trial,
                          (long long)at, at >= 0 ? got[at] : 0, at >= 0 ? ref[at] : 0);
            }
        }
    }
    free(x); free(ref); free(got);
}

int main(void) {
    check_quantizers();
    quant_cpu_level top = quant_cpu_level_supported();
    fprintf(stderr, "cpu levels: supported %s, active %s\n", quant_cpu_level_name(top),
            quant_cpu_level_name(quant_cpu_level_active()));
    const int64_t sizes[] = {2048, 7168};
    for (size_t ti = 0; ti < K2_ARRAY_LEN(TYPES); ti++) {
        uint32_t t = TYPES[ti];
        const quant_type_traits *tr0 = quant_traits_at(t, QUANT_CPU_SCALAR);
        CHECK_MSG(tr0 && tr0->vec_dot && tr0->quantize_act, "%s has no scalar kernel", k2_type_name(t));
        if (!tr0 || !tr0->vec_dot) continue;
        double worst[QUANT_CPU_LEVELS] = {0};
        for (size_t si = 0; si < K2_ARRAY_LEN(sizes); si++) {
            int64_t n = sizes[si];
            int64_t wbytes = k2_type_row_bytes(t, n), abytes = k2_type_row_bytes(tr0->vec_dot_type, n);
            uint8_t *w = malloc((size_t)wbytes * ROWS), *aq = malloc((size_t)abytes);
            float *x = malloc(sizeof(float) * (size_t)n), *wd = malloc(sizeof(float) * (size_t)n);
            float *ad = malloc(sizeof(float) * (size_t)n), *mv = malloc(sizeof(float) * ROWS);
            float scale = si ? 3.0f : 0.02f;
            for (int64_t i = 0; i < n; i++) x[i] = nrand() * scale + (i % 97 == 0 ? 5.0f * scale : 0.0f);
            for (int r = 0; r < ROWS; r++) random_row(t, w + r * wbytes, n);
            tr0->quantize_act(x, aq, n);
            CHECK(quant_dequantize_row(tr0->vec_dot_type, aq, ad, n));
            for (int r = 0; r < ROWS; r++) {
                CHECK(quant_dequantize_row(t, w + r * wbytes, wd, n));
                double ref = 0.0, sabs = 0.0;
                for (int64_t i = 0; i < n; i++) {
                    double p = (double)wd[i] * (double)ad[i];
                    ref += p;
                    sabs += fabs(p);
                }
                float s0 = NAN;
                for (int lvl = 0; lvl <= (int)top; lvl++) {
                    const quant_type_traits *tr = quant_traits_at(t, (quant_cpu_level)lvl);
                    float s = NAN;
                    tr->vec_dot(n, &s, w + r * wbytes, aq);
                    if (lvl == 0) s0 = s;
                    double err = fabs((double)s - ref) / (sabs + 1e-30);
                    if (err > worst[lvl]) worst[lvl] = err;
                    CHECK_MSG(err <= 1e-5, "%s n=%lld row %d level %s (kernel %s): got %.9g want %.9g (rel %.3g of sum|terms| %.6g)",
                              k2_type_name(t), (long long)n, r, quant_cpu_level_name((quant_cpu_level)lvl),
                              quant_cpu_level_name(tr->level), s, ref, err, sabs);
                    CHECK_MSG(fabs((double)s - (double)s0) <= 1e-5 * sabs, "%s level %s vs scalar: %.9g vs %.9g",
                              k2_type_name(t), quant_cpu_level_name((quant_cpu_level)lvl), s, s0);
                    CHECK(tr->vec_dot_type == tr0->vec_dot_type);
                }
            }
            /* quant_matvec = per-row dots at the active level */
            CHECK(quant_matvec(t, w, (size_t)wbytes, ROWS, n, aq, mv));
            const quant_type_traits *tra = quant_traits(t);
            for (int r = 0; r < ROWS; r++) {
                float s;
                tra->vec_dot(n, &s, w + r * wbytes, aq);
                CHECK(memcmp(&s, &mv[r], 4) == 0);
            }
            free(w); free(aq); free(x); free(wd); free(ad); free(mv);
        }
        check_matmul(t, 2048);
        check_gemm(t, 1024);
        if (k2_type_block_size(t) == 32) check_matmul(t, 96); /* odd block count (Q8_0 pairs) */
        fprintf(stderr, "%-8s act %-5s worst rel err:", k2_type_name(t), k2_type_name(tr0->vec_dot_type));
        for (int lvl = 0; lvl <= (int)top; lvl++) {
            const quant_type_traits *tr = quant_traits_at(t, (quant_cpu_level)lvl);
            fprintf(stderr, " %s=%.2g%s", quant_cpu_level_name((quant_cpu_level)lvl), worst[lvl],
                    tr->level != (quant_cpu_level)lvl ? "(fallback)" : "");
        }
        fputc('\n', stderr);
    }
    /* bad arguments */
    float o;
    uint8_t z[64] = {0};
    CHECK(!quant_matvec(K2_TYPE_Q4_K, z, 144, 1, 100, z, &o));
    CHECK(!quant_matvec(K2_TYPE_I32, z, 16, 1, 4, z, &o));
    CHECK(quant_traits(4) == NULL && quant_traits(K2_TYPE_COUNT) == NULL);
    CHECK(quant_traits(K2_TYPE_Q4_K)->vec_dot_type == K2_TYPE_Q8_K);
    CHECK(quant_traits(K2_TYPE_Q4_1)->vec_dot_type == K2_TYPE_Q8_1);
    CHECK(quant_traits(K2_TYPE_Q5_0)->vec_dot_type == K2_TYPE_Q8_0);
    CHECK(quant_traits(K2_TYPE_BF16)->vec_dot_type == K2_TYPE_BF16);
    return k2t_finish("quant.test_dot");
}
