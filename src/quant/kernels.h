/* Internal to src/quant: the dot-product kernels of each CPU level and the helpers
 * they share. Everything else uses quant_traits() / quant_matvec() from quant.h. */
#ifndef K2_QUANT_KERNELS_H
#define K2_QUANT_KERNELS_H

#include "quant/quant.h"

#include <string.h>

static inline uint16_t qk_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t qk_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline float qk_fp16(const uint8_t *p) { return quant_fp16_to_f32(qk_rd16(p)); }
static inline float qk_f32(const uint8_t *p) { float f; memcpy(&f, p, 4); return f; }

/* Software prefetch of the weight stream, QK_PREFETCH_AHEAD bytes ahead of the block at x:
 * the hardware prefetcher stops at 4 KiB pages, and a decode step is one long weight
 * stream per thread (measured, quant_bench "ram": Q4_K 7.7 -> 10.1 GB/s per thread). */
#define QK_PREFETCH_AHEAD 2048
static inline void qk_prefetch(const uint8_t *x, int bytes) {
    for (int o = 0; o < bytes; o += 64) __builtin_prefetch(x + QK_PREFETCH_AHEAD + o);
}

#if defined(__BMI2__)
#include <immintrin.h>
/* The sign bytes of two IQ2_XXS/IQ3_XXS sub-blocks as one 64-bit mask (bit 8l + k = sign
 * of element k of group l), from their words' 4 x 7-bit sign fields: pdep spreads the
 * fields into bytes and the 8th bit is the fields' parity (§3.5, the ksigns table). */
static inline uint64_t qk_iq_signs64(uint32_t sw0, uint32_t sw1) {
    uint64_t f = (uint64_t)(sw0 & 0x0fffffffu) | ((uint64_t)(sw1 & 0x0fffffffu) << 28);
    uint64_t x = _pdep_u64(f, 0x7f7f7f7f7f7f7f7fULL);
    uint64_t p = x ^ (x >> 4);
    p ^= p >> 2;
    p ^= p >> 1;
    return x | ((p & 0x0101010101010101ULL) << 7);
}
#endif

#if defined(__AVX512F__)
#include "quant/iq_tables.h"
/* The grid rows of two IQ2_XXS sub-blocks (64 unsigned magnitudes), from the 8 index bytes
 * at q[0..3] and q[8..11]. Scalar loads, not vpgather: gathers are slow under the Gather
 * Data Sampling microcode of the AVX-512 CPUs measured (1.6x slower tile builds). */
static inline __m512i qk_iq2xxs_rows(const uint8_t *q) {
    const uint64_t *g = quant_iq2xxs_grid;
    return _mm512_set_epi64((long long)g[q[11]], (long long)g[q[10]], (long long)g[q[9]], (long long)g[q[8]],
                            (long long)g[q[3]], (long long)g[q[2]], (long long)g[q[1]], (long long)g[q[0]]);
}
/* The same for IQ3_XXS: 16 index bytes q[0..15], 4 magnitudes each. */
static inline __m512i qk_iq3xxs_rows(const uint8_t *q) {
    const uint32_t *g = quant_iq3xxs_grid;
    return _mm512_set_epi32((int)g[q[15]], (int)g[q[14]], (int)g[q[13]], (int)g[q[12]], (int)g[q[11]], (int)g[q[10]],
                            (int)g[q[9]], (int)g[q[8]], (int)g[q[7]], (int)g[q[6]], (int)g[q[5]], (int)g[q[4]],
                            (int)g[q[3]], (int)g[q[2]], (int)g[q[1]], (int)g[q[0]]);
}
#endif

/* Q8_K activation block (§3.4): f32 d at 0, int8 qs[256] at 4, int16 bsums[16] at 260. */
#define QK_Q8K_BYTES 292
#define QK_Q8_0_BYTES 34
#define QK_Q8_1_BYTES 36

/* One entry per weight type and level; NULL where the level has no own kernel. */
#define QUANT_KERNEL_LIST(X) \
    X(f32) X(f16) X(bf16) X(q4_0) X(q4_1) X(q5_0) X(q5_1) X(q8_0) X(iq4_nl) X(mxfp4) \
    X(q2_k) X(q3_k) X(q4_k) X(q5_k) X(q6_k) X(iq2_xxs) X(iq2_xs) X(iq2_s) X(iq3_xxs) \
    X(iq3_s) X(iq1_s) X(iq1_m) X(iq4_xs) X(tq1_0) X(tq2_0)

#define QUANT_DECLARE_SCALAR(name) void quant_dot_##name##_scalar(int64_t n, float *s, const void *w, const void *a);
QUANT_KERNEL_LIST(QUANT_DECLARE_SCALAR)
#undef QUANT_DECLARE_SCALAR

/* A level's kernel table: index = k2_type id, NULL = use the next lower level. */
typedef struct quant_kernel_table {
    quant_vec_dot_fn dot[K2_TYPE_COUNT];
    quant_matmul_fn mm[K2_TYPE_COUNT]; /* used only together with dot[] of the same level */
    quant_quantize_fn quant[K2_TYPE_COUNT]; /* by activation type; bit-identical to the scalar one */
    quant_gemm_fn gemm[K2_TYPE_COUNT]; /* panel GEMM (see quant_type_traits.gemm) */
} quant_kernel_table;

/* Filled by dot_avx2.c / dot_avx512.c (compiled with per-file ISA flags). */
void quant_kernels_avx2(quant_kernel_table *t);
void quant_kernels_avx512(quant_kernel_table *t);
void quant_gemm_avx512(quant_kernel_table *t); /* gemm_avx512.c */

/* §3.4.2: the 8 six-bit scales and mins of the 12-byte Q4_K/Q5_K packing, one per byte
 * (byte j = sub-block j), computed four at a time. */
static inline void quant_k4_scales(const uint8_t *p, uint64_t *S, uint64_t *M) {
    uint32_t u0 = qk_rd32(p), u1 = qk_rd32(p + 4), u2 = qk_rd32(p + 8);
    uint32_t s_lo = u0 & 0x3f3f3f3fu, m_lo = u1 & 0x3f3f3f3fu;
    uint32_t s_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
    uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
    *S = (uint64_t)s_lo | ((uint64_t)s_hi << 32);
    *M = (uint64_t)m_lo | ((uint64_t)m_hi << 32);
}

/* Multi-token kernels. A SIMD file defines name##_rowx(n, x, a, ab, nt, out, os): one
 * weight row x against nt <= QUANT_MM_TOKENS activation rows (ab bytes apart), writing
 * out[t * os]; the weights of each block are unpacked once for all nt tokens, and the
 * per-token operations do not depend on nt. This macro then defines dot_##name (nt = 1)
 * and mm_##name (rows in L2-sized chunks, tokens in groups, each (row, group) one rowx
 * call with a compile-time nt), so quant_matmul equals vec_dot bit for bit. */
#define QUANT_MM_TOKENS 4
#define QUANT_DEFINE_DOT_MM(name)                                                                                    \
    static void dot_##name(int64_t n, float *s, const void *w, const void *a) {                                     \
        name##_rowx(n, (const uint8_t *)w, (const uint8_t *)a, 0, 1, s, 0);                                         \
    }                                                                                                                \
    static void mm_##name(int64_t n, const void *w, size_t rb, int64_t nr, const void *a, size_t ab, int64_t nt,     \
                          float *out, size_t os) {                                                                   \
        const uint8_t *W = w, *A = a;                                                                                \
        int64_t chunk = rb ? (int64_t)((256u << 10) / rb) : nr;                                                      \
        if (chunk < 1) chunk = 1;                                                                                    \
        for (int64_t r0 = 0; r0 < nr; r0 += chunk) {                                                                 \
            int64_t r1 = nr - r0 < chunk ? nr : r0 + chunk;                                                          \
            for (int64_t t = 0; t < nt; t += QUANT_MM_TOKENS) {                                                      \
                int64_t m = nt - t < QUANT_MM_TOKENS ? nt - t : QUANT_MM_TOKENS;                                     \
                for (int64_t r = r0; r < r1; r++) {                                                                  \
                    const uint8_t *x = W + (size_t)r * rb, *y = A + (size_t)t * ab;                                  \
                    float *o = out + (size_t)t * os + r;                                                             \
                    switch (m) {                                                                                     \
                    case 1: name##_rowx(n, x, y, ab, 1, o, os); break;                                               \
                    case 2: name##_rowx(n, x, y, ab, 2, o, os); break;                                               \
                    case 3: name##_rowx(n, x, y, ab, 3, o, os); break;                                               \
                    default: name##_rowx(n, x, y, ab, 4, o, os); break;                                              \
                    }                                                                                                \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }

#endif
