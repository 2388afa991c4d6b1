/* Weight x activation products (spec §1.1: y[o] = row o of W . x).
 *
 * Exact mode: each weight row is dequantized once into per-thread scratch (F32 rows are used
 * in place) and dotted with every token of the batch in f32. Output rows are split across the
 * pool's threads; a row's arithmetic never depends on the split. */
#include "model/model.h"
#include "quant/quant.h"

#include <string.h>

bool model_type_supported(uint32_t type) {
    static const uint8_t zeros[512];
    float tmp[256];
    int64_t bs = k2_type_block_size(type);
    if (bs <= 0 || bs > 256 || k2_type_block_bytes(type) > (int64_t)sizeof zeros) return false;
    return quant_dequantize_row(type, zeros, tmp, bs);
}

/* f32 dot product with 8 independent partial sums (vectorizes without fast-math). */
static inline float dot_f32(const float *a, const float *b, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void model_matmul_serial(k2_context *ctx, int tid, const model_weight *w, const float *x,
                         int64_t ldx, float *y, int64_t ldy, int64_t n_tok, int64_t row0,
                         int64_t row1) {
    float *buf = ctx->scratch[tid].row;
    for (int64_t o = row0; o < row1; o++) {
        const uint8_t *src = w->data + (size_t)o * w->row_bytes;
        const float *row;
        if (w->type == K2_TYPE_F32 && ((uintptr_t)src & 3) == 0) {
            row = (const float *)(const void *)src;
        } else {
            quant_dequantize_row(w->type, src, buf, w->cols);
            row = buf;
        }
        for (int64_t t = 0; t < n_tok; t++) y[t * ldy + o] = dot_f32(row, x + t * ldx, w->cols);
    }
}

typedef struct matmul_job {
    k2_context *ctx;
    const model_weight *w;
    const float *x;
    int64_t ldx;
    float *y;
    int64_t ldy, n_tok;
} matmul_job;

static void matmul_task(void *arg, int64_t b, int64_t e, int tid) {
    matmul_job *j = arg;
    model_matmul_serial(j->ctx, tid, j->w, j->x, j->ldx, j->y, j->ldy, j->n_tok, b, e);
}

void model_matmul(k2_context *ctx, const model_weight *w, const float *x, int64_t ldx, float *y,
                  int64_t ldy, int64_t n_tok) {
    matmul_job j = {ctx, w, x, ldx, y, ldy, n_tok};
    int64_t grain = w->rows / (4 * (int64_t)ctx->n_threads);
    if (grain < 4) grain = 4;
    model_pool_for(ctx->pool, w->rows, grain, matmul_task, &j);
}

/* IEEE binary16 conversions (round to nearest even), for the f16 cache. */
uint16_t model_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx >= 0x7f800000) return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0));
    if (absx >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (absx < 0x38800000) {                                     /* subnormal or zero */
        if (absx < 0x33000000) return (uint16_t)sign;            /* < 2^-25: rounds to 0 */
        uint32_t mant = (absx & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(absx >> 23);                     /* 14 + (113 - e) */
        uint32_t v = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (v & 1))) v++;
        return (uint16_t)(sign | v);
    }
    uint32_t v = ((absx >> 13) - (112u << 10));
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (v & 1))) v++;
    return (uint16_t)(sign | v);
}

float model_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {
            int e = -1;
            do { mant <<= 1; e++; } while (!(mant & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
