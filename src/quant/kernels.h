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
} quant_kernel_table;

/* Filled by dot_avx2.c / dot_avx512.c (compiled with per-file ISA flags). */
void quant_kernels_avx2(quant_kernel_table *t);
void quant_kernels_avx512(quant_kernel_table *t);

#endif
