/* Kernel dispatch: which activation type each weight type is dotted with (§4.1) and
 * which implementation runs, chosen once from the CPU's features and K2_CPU. */
#include "quant/kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static quant_type_traits g_traits[QUANT_CPU_LEVELS][K2_TYPE_COUNT];
static quant_cpu_level g_supported = QUANT_CPU_SCALAR;
static quant_cpu_level g_active = QUANT_CPU_SCALAR;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
/* CPUID + XGETBV directly: __builtin_cpu_supports lacks some feature names (f16c)
 * in older clang, and neither checks that the OS saves the wide registers. */
static quant_cpu_level detect_cpu(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return QUANT_CPU_SCALAR;
    bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!osxsave || !avx) return QUANT_CPU_SCALAR;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    bool ymm_os = (xlo & 0x6) == 0x6, zmm_os = (xlo & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return QUANT_CPU_SCALAR;
    bool avx2 = ymm_os && fma && f16c && (b & (1u << 5));
    bool avx512 = avx2 && zmm_os && (b & (1u << 16)) /* F */ && (b & (1u << 30)) /* BW */ &&
                  (b & (1u << 31)) /* VL */ && (c & (1u << 11)) /* VNNI */ && (b & (1u << 8)) /* BMI2 */;
    return avx512 ? QUANT_CPU_AVX512 : avx2 ? QUANT_CPU_AVX2 : QUANT_CPU_SCALAR;
}
#else
static quant_cpu_level detect_cpu(void) { return QUANT_CPU_SCALAR; }
#endif

static void init_once(void) {
    quant_kernel_table tab[QUANT_CPU_LEVELS];
    memset(tab, 0, sizeof tab);
    tab[0].dot[K2_TYPE_F32] = quant_dot_f32_scalar;
    tab[0].dot[K2_TYPE_F16] = quant_dot_f16_scalar;
    tab[0].dot[K2_TYPE_BF16] = quant_dot_bf16_scalar;
    tab[0].dot[K2_TYPE_Q4_0] = quant_dot_q4_0_scalar;
    tab[0].dot[K2_TYPE_Q4_1] = quant_dot_q4_1_scalar;
    tab[0].dot[K2_TYPE_Q5_0] = quant_dot_q5_0_scalar;
    tab[0].dot[K2_TYPE_Q5_1] = quant_dot_q5_1_scalar;
    tab[0].dot[K2_TYPE_Q8_0] = quant_dot_q8_0_scalar;
    tab[0].dot[K2_TYPE_IQ4_NL] = quant_dot_iq4_nl_scalar;
    tab[0].dot[K2_TYPE_MXFP4] = quant_dot_mxfp4_scalar;
    tab[0].dot[K2_TYPE_Q2_K] = quant_dot_q2_k_scalar;
    tab[0].dot[K2_TYPE_Q3_K] = quant_dot_q3_k_scalar;
    tab[0].dot[K2_TYPE_Q4_K] = quant_dot_q4_k_scalar;
    tab[0].dot[K2_TYPE_Q5_K] = quant_dot_q5_k_scalar;
    tab[0].dot[K2_TYPE_Q6_K] = quant_dot_q6_k_scalar;
    tab[0].dot[K2_TYPE_IQ2_XXS] = quant_dot_iq2_xxs_scalar;
    tab[0].dot[K2_TYPE_IQ2_XS] = quant_dot_iq2_xs_scalar;
    tab[0].dot[K2_TYPE_IQ2_S] = quant_dot_iq2_s_scalar;
    tab[0].dot[K2_TYPE_IQ3_XXS] = quant_dot_iq3_xxs_scalar;
    tab[0].dot[K2_TYPE_IQ3_S] = quant_dot_iq3_s_scalar;
    tab[0].dot[K2_TYPE_IQ1_S] = quant_dot_iq1_s_scalar;
    tab[0].dot[K2_TYPE_IQ1_M] = quant_dot_iq1_m_scalar;
    tab[0].dot[K2_TYPE_IQ4_XS] = quant_dot_iq4_xs_scalar;
    tab[0].dot[K2_TYPE_TQ1_0] = quant_dot_tq1_0_scalar;
    tab[0].dot[K2_TYPE_TQ2_0] = quant_dot_tq2_0_scalar;

    g_supported = detect_cpu();
#if defined(__x86_64__)
    if (g_supported >= QUANT_CPU_AVX2) quant_kernels_avx2(&tab[QUANT_CPU_AVX2]);
    if (g_supported >= QUANT_CPU_AVX512) {
        quant_kernels_avx512(&tab[QUANT_CPU_AVX512]);
        quant_gemm_avx512(&tab[QUANT_CPU_AVX512]);
    }
#endif

    for (int lvl = 0; lvl < QUANT_CPU_LEVELS; lvl++) {
        for (uint32_t t = 0; t < K2_TYPE_COUNT; t++) {
            quant_type_traits *tr = &g_traits[lvl][t];
            tr->type = t;
            const quant_type_info *info = quant_type_info_get(t);
            if (!info || info->block_size <= 0) continue;
            switch (t) {
            case K2_TYPE_F32: tr->vec_dot_type = K2_TYPE_F32; tr->quantize_act = quant_quantize_row_f32; break;
            case K2_TYPE_F16: tr->vec_dot_type = K2_TYPE_F16; tr->quantize_act = quant_quantize_row_f16; break;
            case K2_TYPE_BF16: tr->vec_dot_type = K2_TYPE_BF16; tr->quantize_act = quant_quantize_row_bf16; break;
            case K2_TYPE_Q4_1: case K2_TYPE_Q5_1:
                tr->vec_dot_type = K2_TYPE_Q8_1; tr->quantize_act = quant_quantize_row_q8_1; break;
            case K2_TYPE_Q4_0: case K2_TYPE_Q5_0: case K2_TYPE_Q8_0: case K2_TYPE_IQ4_NL:
            case K2_TYPE_MXFP4: case K2_TYPE_NVFP4: case K2_TYPE_Q1_0: case K2_TYPE_Q2_0:
                tr->vec_dot_type = K2_TYPE_Q8_0; tr->quantize_act = quant_quantize_row_q8_0; break;
            case K2_TYPE_Q2_K: case K2_TYPE_Q3_K: case K2_TYPE_Q4_K: case K2_TYPE_Q5_K: case K2_TYPE_Q6_K:
            case K2_TYPE_IQ1_S: case K2_TYPE_IQ1_M: case K2_TYPE_IQ2_XXS: case K2_TYPE_IQ2_XS:
            case K2_TYPE_IQ2_S: case K2_TYPE_IQ3_XXS: case K2_TYPE_IQ3_S: case K2_TYPE_IQ4_XS:
            case K2_TYPE_TQ1_0: case K2_TYPE_TQ2_0:
                tr->vec_dot_type = K2_TYPE_Q8_K; tr->quantize_act = quant_quantize_row_q8_k; break;
            default:
                continue; /* integer types, F64, activation-only types: no kernel */
            }
            /* the best activation quantizer at or below this level (all are bit-identical) */
            for (int l = lvl; l > 0; l--) {
                if (tab[l].quant[tr->vec_dot_type]) { tr->quantize_act = tab[l].quant[tr->vec_dot_type]; break; }
            }
            /* the panel GEMM of this level or below (independent of the row kernel's level:
             * some types have an AVX-512 GEMM but keep their AVX2 row kernel) */
            for (int l = lvl; l >= 0 && !tr->gemm; l--) tr->gemm = tab[l].gemm[t];
            /* the best kernel at or below this level */
            for (int l = lvl; l >= 0; l--) {
                if (tab[l].dot[t]) {
                    tr->vec_dot = tab[l].dot[t];
                    tr->matmul = tab[l].mm[t];
                    tr->level = (quant_cpu_level)l;
                    break;
                }
            }
        }
    }

    g_active = g_supported;
    const char *env = getenv("K2_CPU");
    if (env && *env) {
        quant_cpu_level want = g_active;
        if (strcmp(env, "scalar") == 0) want = QUANT_CPU_SCALAR;
        else if (strcmp(env, "avx2") == 0) want = QUANT_CPU_AVX2;
        else if (strcmp(env, "avx512") == 0) want = QUANT_CPU_AVX512;
        if (want < g_active) g_active = want;
    }
}

quant_cpu_level quant_cpu_level_supported(void) { pthread_once(&g_once, init_once); return g_supported; }
quant_cpu_level quant_cpu_level_active(void) { pthread_once(&g_once, init_once); return g_active; }

const char *quant_cpu_level_name(quant_cpu_level level) {
    switch (level) {
    case QUANT_CPU_SCALAR: return "scalar";
    case QUANT_CPU_AVX2: return "avx2";
    case QUANT_CPU_AVX512: return "avx512";
    default: return "unknown";
    }
}

const quant_type_traits *quant_traits_at(uint32_t type, quant_cpu_level level) {
    pthread_once(&g_once, init_once);
    const quant_type_info *info = quant_type_info_get(type);
    if (!info || info->block_size <= 0) return NULL;
    if ((int)level < 0) level = QUANT_CPU_SCALAR;
    if (level > g_supported) level = g_supported;
    return &g_traits[level][type];
}

const quant_type_traits *quant_traits(uint32_t type) {
    pthread_once(&g_once, init_once);
    return quant_traits_at(type, g_active);
}

bool quant_matvec(uint32_t wtype, const void *w, size_t row_bytes, int64_t n_rows, int64_t n_cols,
                  const void *act_q, float *out) {
    const quant_type_traits *tr = quant_traits(wtype);
    if (!tr || !tr->vec_dot) return false;
    if (k2_type_row_bytes(wtype, n_cols) < 0 || k2_type_row_bytes(tr->vec_dot_type, n_cols) < 0) return false;
    const uint8_t *p = w;
    for (int64_t r = 0; r < n_rows; r++) tr->vec_dot(n_cols, &out[r], p + (size_t)r * row_bytes, act_q);
    return true;
}

bool quant_matmul_at(quant_cpu_level level, uint32_t wtype, const void *w, size_t row_bytes, int64_t n_rows,
                     int64_t n_cols, const void *act_q, size_t act_row_bytes, int64_t n_tok, float *out) {
    const quant_type_traits *tr = quant_traits_at(wtype, level);
    if (!tr || !tr->vec_dot || n_rows < 0 || n_tok < 0) return false;
    int64_t wb = k2_type_row_bytes(wtype, n_cols), ab = k2_type_row_bytes(tr->vec_dot_type, n_cols);
    if (wb < 0 || ab < 0 || (n_rows > 1 && row_bytes < (size_t)wb) || (n_tok > 1 && act_row_bytes < (size_t)ab))
        return false;
    if (tr->matmul) {
        tr->matmul(n_cols, w, row_bytes, n_rows, act_q, act_row_bytes, n_tok, out, (size_t)n_rows);
        return true;
    }
    const uint8_t *p = w, *a = act_q;
    for (int64_t r = 0; r < n_rows; r++) /* weight row stays in L1 across the tokens */
        for (int64_t t = 0; t < n_tok; t++)
            tr->vec_dot(n_cols, &out[t * n_rows + r], p + (size_t)r * row_bytes, a + (size_t)t * act_row_bytes);
    return true;
}

bool quant_matmul(uint32_t wtype, const void *w, size_t row_bytes, int64_t n_rows, int64_t n_cols,
                  const void *act_q, size_t act_row_bytes, int64_t n_tok, float *out) {
    return quant_matmul_at(quant_cpu_level_active(), wtype, w, row_bytes, n_rows, n_cols, act_q, act_row_bytes, n_tok, out);
}

size_t quant_gemm_pack_bytes(int64_t n, int64_t n_tok) {
    return (size_t)((n_tok + 7) / 8) * (size_t)(n / 256) * QUANT_GEMM_PACK_BLOCK;
}

void quant_gemm_pack(int64_t n, const void *act, size_t act_row_bytes, int64_t n_tok, int64_t g0, int64_t g1,
                     void *packed) {
    const int64_t nb = n / 256;
    const uint8_t *a = act;
    for (int64_t g = g0; g < g1; g++) {
        uint8_t *P = (uint8_t *)packed + (size_t)g * (size_t)nb * QUANT_GEMM_PACK_BLOCK;
        for (int64_t b = 0; b < nb; b++, P += QUANT_GEMM_PACK_BLOCK) {
            for (int u = 0; u < 8; u++) {
                int64_t t = 8 * g + u;
                if (t >= n_tok) {
                    /* padding token: d = 0, zero values (0x80) and sums contribute nothing */
                    memset(P + 4 * u, 0, 4);
                    for (int k = 0; k < 64; k++) memset(P + 32 + 32 * k + 4 * u, 0x80, 4);
                    for (int k = 0; k < 16; k++) memset(P + QUANT_GEMM_PACK_BSUM16 + 32 * k + 4 * u, 0, 4);
                    for (int k = 0; k < 8; k++) memset(P + QUANT_GEMM_PACK_BSUM32 + 32 * k + 4 * u, 0, 4);
                    continue;
                }
                const uint8_t *y = a + (size_t)t * act_row_bytes + (size_t)b * QK_Q8K_BYTES;
                memcpy(P + 4 * u, y, 4);
                for (int k = 0; k < 64; k++) {
                    uint32_t q;
                    memcpy(&q, y + 4 + 4 * k, 4);
                    q ^= 0x80808080u; /* int8 a -> unsigned a + 128 */
                    memcpy(P + 32 + 32 * k + 4 * u, &q, 4);
                }
                int16_t bs[16];
                memcpy(bs, y + 260, sizeof bs);
                for (int k = 0; k < 16; k++) {
                    float f = (float)bs[k];
                    memcpy(P + QUANT_GEMM_PACK_BSUM16 + 32 * k + 4 * u, &f, 4);
                }
                for (int k = 0; k < 8; k++) {
                    float f = (float)(bs[2 * k] + bs[2 * k + 1]);
                    memcpy(P + QUANT_GEMM_PACK_BSUM32 + 32 * k + 4 * u, &f, 4);
                }
            }
        }
    }
}

bool quant_gemm_at(quant_cpu_level level, uint32_t wtype, const void *w, size_t row_bytes, int64_t n_rows,
                   int64_t n_cols, const void *act_q, size_t act_row_bytes, int64_t n_tok, float *out) {
    const quant_type_traits *tr = quant_traits_at(wtype, level);
    if (!tr || !tr->gemm || n_rows < 0 || n_tok < 0) return false;
    int64_t wb = k2_type_row_bytes(wtype, n_cols), ab = k2_type_row_bytes(tr->vec_dot_type, n_cols);
    if (wb < 0 || ab < 0 || row_bytes < (size_t)wb || act_row_bytes < (size_t)ab) return false;
    int64_t full = n_rows - n_rows % QUANT_GEMM_ROWS;
    const uint8_t *p = w;
    if (full > 0 && n_tok > 0) {
        void *packed = malloc(quant_gemm_pack_bytes(n_cols, n_tok));
        if (!packed) return false;
        quant_gemm_pack(n_cols, act_q, act_row_bytes, n_tok, 0, (n_tok + 7) / 8, packed);
        tr->gemm(n_cols, p, row_bytes, full, packed, n_tok, out, (size_t)n_rows);
        free(packed);
    }
    const uint8_t *a = act_q;
    for (int64_t r = full; r < n_rows; r++)
        for (int64_t t = 0; t < n_tok; t++)
            tr->vec_dot(n_cols, &out[t * n_rows + r], p + (size_t)r * row_bytes, a + (size_t)t * act_row_bytes);
    return true;
}
