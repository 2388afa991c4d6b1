/* Single-thread throughput of the quant dot kernels: GB/s of weight bytes per type and
 * CPU level, for rows of 7168 elements (Kimi K2's hidden size), once with a weight set
 * that stays in L2 ("cache") and once with one far larger than the L3 ("ram").
 *
 * usage: quant_bench [-t TYPE,TYPE..] [-s SECONDS] [-r RAM_MIB] [-c CACHE_KIB] [-n COLS]
 *                    [-m] [-q]
 *   -m  also time quant_matmul_at for 1, 2, 4 and 8 tokens (weights from RAM)
 *   -g  also time the panel GEMM (quant_gemm_at) against quant_matmul_at for 8, 32 and
 *       128 tokens on 64 rows (weights in cache): ns per (256-element block, token)
 *   -q  also time the Q8_0 / Q8_K activation quantizers
 *   -l LEVEL  skip levels below LEVEL (scalar, avx2, avx512)
 * A level whose kernel falls back to a lower one is printed as "-". */
#include "quant/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Thread CPU time: the machine is shared, and time slices given to other processes
 * must not count against a kernel. */
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x243f6a8885a308d3ULL;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A weight row of random bytes whose fp16 scales are sane; found by trying random blocks
 * until their dequantized values are finite and modest (speed must not depend on NaNs). */
static void random_row(uint32_t t, uint8_t *row, int64_t n) {
    int64_t bs = k2_type_block_size(t), bb = k2_type_block_bytes(t);
    float tmp[256];
    if (t == K2_TYPE_F32 || t == K2_TYPE_F16 || t == K2_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++) {
            float v = (float)((double)(rnd() >> 11) * 0x1p-53 - 0.5);
            uint16_t h = t == K2_TYPE_F16 ? quant_f32_to_fp16(v) : quant_f32_to_bf16(v);
            if (t == K2_TYPE_F32) memcpy(row + 4 * i, &v, 4);
            else { row[2 * i] = (uint8_t)h; row[2 * i + 1] = (uint8_t)(h >> 8); }
        }
        return;
    }
    for (int64_t b = 0; b < n / bs; b++) {
        uint8_t *blk = row + b * bb;
        for (int tries = 0;; tries++) {
            for (int64_t i = 0; i < bb; i++) blk[i] = (uint8_t)rnd();
            /* small positive exponents in every byte pair make fp16 fields modest */
            for (int64_t i = 1; i < bb; i += 2)
                if (tries > 50) blk[i] &= 0x3b;
            quant_dequantize_row(t, blk, tmp, bs);
            bool ok = true;
            for (int64_t i = 0; i < bs; i++) if (!(fabsf(tmp[i]) < 1e4f) || (tmp[i] != 0 && fabsf(tmp[i]) < 1e-30f)) ok = false;
            if (ok) break;
        }
    }
}

static const uint32_t ALL[] = {
    K2_TYPE_Q4_K, K2_TYPE_Q6_K, K2_TYPE_Q8_0, K2_TYPE_Q2_K, K2_TYPE_Q3_K, K2_TYPE_Q5_K, K2_TYPE_IQ4_XS,
    K2_TYPE_IQ2_XXS, K2_TYPE_IQ3_XXS, K2_TYPE_IQ2_S, K2_TYPE_IQ1_M, K2_TYPE_IQ3_S, K2_TYPE_IQ1_S,
    K2_TYPE_IQ2_XS, K2_TYPE_Q4_0, K2_TYPE_Q4_1, K2_TYPE_Q5_0, K2_TYPE_Q5_1, K2_TYPE_IQ4_NL,
    K2_TYPE_MXFP4, K2_TYPE_TQ1_0, K2_TYPE_TQ2_0, K2_TYPE_BF16, K2_TYPE_F16, K2_TYPE_F32,
};

static volatile float g_sink;

/* GB/s of weight bytes for vec_dot over n_rows rows, cycling until `seconds` passed. */
static double time_dot1(quant_vec_dot_fn dot, const uint8_t *w, size_t row_bytes, int64_t n_rows, int64_t n,
                       const void *aq, double seconds) {
    float s, acc = 0;
    int64_t done = 0;
    for (int64_t r = 0; r < n_rows && r < 64; r++) dot(n, &s, w + (size_t)r * row_bytes, aq); /* warm up */
    double t0 = now(), t;
    do {
        for (int64_t r = 0; r < n_rows; r++) {
            dot(n, &s, w + (size_t)r * row_bytes, aq);
            acc += s;
        }
        done += n_rows;
        t = now() - t0;
    } while (t < seconds);
    g_sink = acc;
    return (double)done * (double)row_bytes / t * 1e-9;
}

/* The machine is shared: the best of 5 trials of seconds/5 each. */
static double time_dot(quant_vec_dot_fn dot, const uint8_t *w, size_t row_bytes, int64_t n_rows, int64_t n,
                       const void *aq, double seconds) {
    double best = 0;
    for (int i = 0; i < 5; i++) {
        double g = time_dot1(dot, w, row_bytes, n_rows, n, aq, seconds / 5);
        if (g > best) best = g;
    }
    return best;
}

#ifndef QUANT_BENCH_NO_MATMUL /* for timing older trees that lack quant_matmul_at */
static double time_matmul(uint32_t type, quant_cpu_level lvl, const uint8_t *w, size_t row_bytes, int64_t n_rows,
                          int64_t n, const void *aq, size_t arow, int64_t n_tok, float *out, double seconds) {
    int64_t done = 0;
    double t0 = now(), t;
    do {
        quant_matmul_at(lvl, type, w, row_bytes, n_rows, n, aq, arow, n_tok, out);
        done += n_rows;
        t = now() - t0;
    } while (t < seconds);
    g_sink = out[0];
    return (double)done * (double)row_bytes / t * 1e-9;
}
#endif

int main(int argc, char **argv) {
    double seconds = 0.3;
    int64_t ram_mib = 512, cache_kib = 256, n = 7168;
    bool do_mm = false, do_q = false, do_gemm = false;
    const char *types = NULL;
    int min_level = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "-s") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) ram_mib = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc) cache_kib = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) n = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-m")) do_mm = true;
        else if (!strcmp(argv[i], "-q")) do_q = true;
        else if (!strcmp(argv[i], "-g")) do_gemm = true;
        else if (!strcmp(argv[i], "-l") && i + 1 < argc) {
            const char *l = argv[++i];
            min_level = !strcmp(l, "avx512") ? 2 : !strcmp(l, "avx2") ? 1 : 0;
        }
        else {
            fprintf(stderr, "usage: quant_bench [-t TYPE,..] [-s SECONDS] [-r RAM_MIB] [-c CACHE_KIB] [-n COLS] [-m] [-q] [-l LEVEL]\n");
            return 2;
        }
    }
    if (n <= 0 || n % 256 != 0) { fprintf(stderr, "quant_bench: -n must be a positive multiple of 256\n"); return 2; }
    quant_cpu_level top = quant_cpu_level_supported();
    printf("# quant_bench: rows of %lld elements, single thread, GB/s of weight bytes; cache set %lld KiB, ram set %lld MiB\n",
           (long long)n, (long long)cache_kib, (long long)ram_mib);
    printf("%-8s %-7s %9s %9s\n", "type", "level", "cache", "ram");

    float *x = malloc(sizeof(float) * (size_t)n * 8);
    for (int64_t i = 0; i < n * 8; i++) x[i] = (float)((double)(rnd() >> 11) * 0x1p-53 - 0.5) * 4.0f;
    uint8_t *aq = malloc((size_t)k2_type_row_bytes(K2_TYPE_F32, n) * 8);
    size_t ram_bytes = (size_t)ram_mib << 20;
    uint8_t *big = malloc(ram_bytes);
    float *out = malloc(sizeof(float) * 8 * (ram_bytes / 64 + 1));
    if (!x || !aq || !big || !out) { fprintf(stderr, "quant_bench: out of memory\n"); return 1; }

    for (size_t ti = 0; ti < K2_ARRAY_LEN(ALL); ti++) {
        uint32_t t = ALL[ti];
        const char *name = k2_type_name(t);
        if (types) {
            char pat[64];
            snprintf(pat, sizeof pat, ",%s,", name);
            char list[512];
            snprintf(list, sizeof list, ",%s,", types);
            for (char *p = list; *p; p++) if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
            for (char *p = pat; *p; p++) if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
            if (!strstr(list, pat)) continue;
        }
        const quant_type_traits *tr0 = quant_traits_at(t, QUANT_CPU_SCALAR);
        if (!tr0 || !tr0->vec_dot) continue;
        size_t rb = (size_t)k2_type_row_bytes(t, n), arb = (size_t)k2_type_row_bytes(tr0->vec_dot_type, n);
        int64_t pool = 64;
        uint8_t *rows = malloc(rb * (size_t)pool);
        for (int64_t r = 0; r < pool; r++) random_row(t, rows + rb * (size_t)r, n);
        int64_t ram_rows = (int64_t)(ram_bytes / rb), cache_rows = (int64_t)(((size_t)cache_kib << 10) / rb);
        if (cache_rows < 1) cache_rows = 1;
        if (cache_rows > pool) cache_rows = pool;
        for (int64_t r = 0; r < ram_rows; r++) memcpy(big + rb * (size_t)r, rows + rb * (size_t)(r % pool), rb);
        for (int k = 0; k < 8; k++) tr0->quantize_act(x + n * k, aq + arb * (size_t)k, n);
        for (int lvl = min_level; lvl <= (int)top; lvl++) {
            const quant_type_traits *tr = quant_traits_at(t, (quant_cpu_level)lvl);
            if ((int)tr->level != lvl) { printf("%-8s %-7s %9s %9s\n", name, quant_cpu_level_name((quant_cpu_level)lvl), "-", "-"); continue; }
            double gc = time_dot(tr->vec_dot, rows, rb, cache_rows, n, aq, seconds);
            double gr = time_dot(tr->vec_dot, big, rb, ram_rows, n, aq, seconds);
            printf("%-8s %-7s %9.2f %9.2f\n", name, quant_cpu_level_name((quant_cpu_level)lvl), gc, gr);
            fflush(stdout);
#ifndef QUANT_BENCH_NO_MATMUL
            if (do_mm) {
                for (int64_t nt = 1; nt <= 8; nt *= 2) {
                    double gm = time_matmul(t, (quant_cpu_level)lvl, big, rb, ram_rows, n, aq, arb, nt, out, seconds);
                    double gmc = time_matmul(t, (quant_cpu_level)lvl, rows, rb, cache_rows, n, aq, arb, nt, out, seconds);
                    printf("%-8s %-7s   matmul n_tok=%lld: weight GB/s cache %.2f ram %.2f (x n_tok: %.2f / %.2f)\n", name,
                           quant_cpu_level_name((quant_cpu_level)lvl), (long long)nt, gmc, gm, gmc * (double)nt, gm * (double)nt);
                }
            }
            if (do_gemm && tr->gemm) {
                enum { GT = 128, GR = 64 };
                uint8_t *ga = malloc(arb * GT);
                float *go = malloc(sizeof(float) * GT * GR);
                for (int k = 0; k < GT; k++) tr0->quantize_act(x + n * (k % 8), ga + arb * (size_t)k, n);
                for (int64_t nt = 8; nt <= GT; nt *= 4) {
                    double best[2] = {1e30, 1e30};
                    for (int which = 0; which < 2; which++)
                        for (int rep = 0; rep < 5; rep++) {
                            int64_t calls = 0;
                            double t0 = now(), el;
                            do {
                                if (which) quant_gemm_at((quant_cpu_level)lvl, t, rows, rb, GR, n, ga, arb, nt, go);
                                else quant_matmul_at((quant_cpu_level)lvl, t, rows, rb, GR, n, ga, arb, nt, go);
                                calls++;
                                el = now() - t0;
                            } while (el < seconds / 5);
                            double per = el / ((double)calls * GR * (double)(n / 256) * (double)nt) * 1e9;
                            if (per < best[which]) best[which] = per;
                        }
                    g_sink = go[0];
                    printf("%-8s %-7s   n_tok=%3lld ns per block-token: matmul %.2f gemm %.2f (x%.2f)\n", name,
                           quant_cpu_level_name((quant_cpu_level)lvl), (long long)nt, best[0], best[1], best[0] / best[1]);
                }
                free(ga);
                free(go);
            }
#else
            (void)do_mm;
            (void)do_gemm;
#endif
        }
        free(rows);
    }
    if (do_q) {
        /* activation quantizers: GB/s of f32 input */
        struct { const char *name; quant_quantize_fn fn; } qs[2 * QUANT_CPU_LEVELS];
        int nq = 0;
        for (int lvl = 0; lvl <= (int)top; lvl++) {
            static char names[2 * QUANT_CPU_LEVELS][32];
            snprintf(names[nq], sizeof names[nq], "q8_0 %s", quant_cpu_level_name((quant_cpu_level)lvl));
            qs[nq].name = names[nq];
            qs[nq++].fn = quant_traits_at(K2_TYPE_Q8_0, (quant_cpu_level)lvl)->quantize_act;
            snprintf(names[nq], sizeof names[nq], "q8_k %s", quant_cpu_level_name((quant_cpu_level)lvl));
            qs[nq].name = names[nq];
            qs[nq++].fn = quant_traits_at(K2_TYPE_Q4_K, (quant_cpu_level)lvl)->quantize_act;
        }
        for (int i = 0; i < nq; i++) {
            int64_t done = 0;
            double t0 = now(), t;
            do {
                qs[i].fn(x, aq, n);
                done++;
                t = now() - t0;
            } while (t < seconds);
            printf("quantize %-12s %6.2f GB/s of f32 input (%.2f us per %lld-element row)\n", qs[i].name,
                   (double)done * (double)n * 4 / t * 1e-9, t / (double)done * 1e6, (long long)n);
        }
    }
    free(x); free(aq); free(big); free(out);
    return 0;
}
