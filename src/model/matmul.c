/* Weight x activation products (spec §1.1: y[o] = row o of W . x).
 *
 * Exact mode: each weight row is dequantized once into per-thread scratch (F32 rows are used
 * in place) and dotted with every token of the batch in f32. Output rows are split across the
 * pool's threads; a row's arithmetic never depends on the split. */
#include "model/model.h"
#include "quant/quant.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool model_type_supported(uint32_t type) {
    static const uint8_t zeros[512];
    float tmp[256];
    int64_t bs = k2_type_block_size(type);
    if (bs <= 0 || bs > 256 || k2_type_block_bytes(type) > (int64_t)sizeof zeros) return false;
    return quant_dequantize_row(type, zeros, tmp, bs);
}

/* Exact rows [row0, row1) of one product: dequantize each row once, dot with every token. */
static void exact_rows(float *buf, const model_mm *mm, int64_t row0, int64_t row1) {
    const model_weight *w = &mm->w;
    for (int64_t o = row0; o < row1; o++) {
        const uint8_t *src = w->data + (size_t)o * w->row_bytes;
        const float *row;
        if (w->type == K2_TYPE_F32 && ((uintptr_t)src & 3) == 0) {
            row = (const float *)(const void *)src;
        } else {
            quant_dequantize_row(w->type, src, buf, w->cols);
            row = buf;
        }
        for (int64_t t = 0; t < mm->n_tok; t++) mm->y[t * mm->ldy + o] = model_dot_f32(row, mm->x + t * mm->ldx, w->cols);
    }
}

/* Row kernels for tokens [t0, t1) and weight rows [row0, row1): the activations were
 * converted to the weight type's activation format (spec §7.1: Q8_0, Q8_1, Q8_K, f16,
 * bf16) once per token; each row uses the dot kernel, as llama.cpp's CPU backend does,
 * or the multi-token kernel (each weight block decoded once for a group of tokens;
 * bit-identical to vec_dot). */
static void row_kernels(const model_mm *mm, const quant_type_traits *tr, const uint8_t *act, size_t ab, int64_t t0,
                        int64_t t1, int64_t row0, int64_t row1) {
    const model_weight *w = &mm->w;
    if (t1 - t0 > 1 && tr->matmul) {
        tr->matmul(w->cols, w->data + (size_t)row0 * w->row_bytes, w->row_bytes, row1 - row0, act + (size_t)t0 * ab, ab,
                   t1 - t0, mm->y + t0 * mm->ldy + row0, (size_t)mm->ldy);
        return;
    }
    for (int64_t o = row0; o < row1; o++) {
        const uint8_t *row = w->data + (size_t)o * w->row_bytes;
        for (int64_t t = t0; t < t1; t++) tr->vec_dot(w->cols, &mm->y[t * mm->ldy + o], row, act + (size_t)t * ab);
    }
}

/* Fast rows [row0, row1) of one product: its first ng tokens (packed) on the panel GEMM,
 * which shares each weight block's unpacking and scale work across 16 rows and up to 128
 * tokens; weight rows past the last whole panel and the other tokens on the row kernels. */
static void fast_rows(const model_mm *mm, const quant_type_traits *tr, const uint8_t *act, size_t ab,
                      const uint8_t *packed, int64_t ng, int64_t row0, int64_t row1) {
    const model_weight *w = &mm->w;
    if (packed && ng > 0) {
        int64_t full = (row1 - row0) - (row1 - row0) % QUANT_GEMM_ROWS;
        if (full > 0)
            tr->gemm(w->cols, w->data + (size_t)row0 * w->row_bytes, w->row_bytes, full, packed, ng, mm->y + row0,
                     (size_t)mm->ldy);
        if (full < row1 - row0) row_kernels(mm, tr, act, ab, 0, ng, row0 + full, row1);
        if (ng < mm->n_tok) row_kernels(mm, tr, act, ab, ng, mm->n_tok, row0, row1);
        return;
    }
    row_kernels(mm, tr, act, ab, 0, mm->n_tok, row0, row1);
}

/* The fast-mode traits for w, or NULL when the exact path applies (exact mode, F32 weights,
 * no kernel, or a row length that is not a whole number of activation blocks). */
static const quant_type_traits *fast_traits(const k2_context *ctx, const model_weight *w) {
    if (ctx->exact || w->type == K2_TYPE_F32) return NULL;
    const quant_type_traits *tr = quant_traits(w->type);
    if (!tr || !tr->vec_dot || !tr->quantize_act) return NULL;
    int64_t bs = k2_type_block_size(tr->vec_dot_type);
    if (bs <= 0 || w->cols % bs != 0) return NULL;
    return tr;
}

/* Leading token rows of product mm that run on the panel GEMM (packed activations). */
static int64_t gemm_tokens(const k2_context *ctx, const model_mm *mm, const quant_type_traits *tr) {
    if (!tr || !tr->gemm || tr->vec_dot_type != K2_TYPE_Q8_K || mm->w.rows < QUANT_GEMM_ROWS || mm->w.cols % 256 != 0)
        return 0;
    int64_t n = mm->gemm_set ? mm->n_gemm : mm->n_tok == ctx->batch_rows ? ctx->gemm_rows : 0;
    return K2_MIN(n, mm->n_tok);
}

/* Activation conversion of several tokens, split across the pool: item i is token
 * i - qfirst[k] of product qg[k]. */
typedef struct quant_job {
    const model_mm *mm;
    const quant_type_traits **tr;
    const size_t *act_off, *act_bytes;
    uint8_t *act;
    const int *qg;
    const int64_t *qfirst;
    int nq;
} quant_job;

static void quant_task(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    quant_job *j = arg;
    int k = 0;
    for (int64_t i = b; i < e; i++) {
        while (k + 1 < j->nq && j->qfirst[k + 1] <= i) k++;
        int g = j->qg[k];
        int64_t t = i - j->qfirst[k];
        j->tr[g]->quantize_act(j->mm[g].x + t * j->mm[g].ldx, j->act + j->act_off[g] + (size_t)t * j->act_bytes[g],
                               j->mm[g].w.cols);
    }
}

typedef struct multi_job {
    k2_context *ctx;
    const model_mm *mm;
    int n;
    const int64_t *first;              /* first flattened row of each product; first[n] = total */
    const quant_type_traits **tr;      /* NULL: exact rows */
    const size_t *act_off, *act_bytes;
    const size_t *pack_off;            /* packed activations of GEMM products, SIZE_MAX: none */
    const int64_t *pack_ng;            /* how many leading tokens they hold */
} multi_job;

/* Packing for the GEMM, split across the pool: item i is group i - pfirst[k] of product pg[k]. */
typedef struct pack_job {
    const model_mm *mm;
    const size_t *act_off, *act_bytes, *pack_off;
    const int64_t *pack_ng;
    uint8_t *act;
    const int *pg;
    const int64_t *pfirst;
    int np;
} pack_job;

static void pack_task(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    pack_job *j = arg;
    int k = 0;
    while (k + 1 < j->np && j->pfirst[k + 1] <= b) k++;
    for (int64_t i = b; i < e;) {
        while (k + 1 < j->np && j->pfirst[k + 1] <= i) k++;
        int g = j->pg[k];
        int64_t stop = K2_MIN(e, j->pfirst[k + 1]);
        quant_gemm_pack(j->mm[g].w.cols, j->act + j->act_off[g], j->act_bytes[g], j->pack_ng[g], i - j->pfirst[k],
                        stop - j->pfirst[k], j->act + j->pack_off[g]);
        i = stop;
    }
}

static void multi_task(void *arg, int64_t b, int64_t e, int tid) {
    multi_job *j = arg;
    /* the products a chunk overlaps: first[g] <= row < first[g+1] */
    int g = 0, lo = 0, hi = j->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (j->first[mid] <= b) { g = mid; lo = mid + 1; } else { hi = mid - 1; }
    }
    for (; g < j->n && j->first[g] < e; g++) {
        int64_t r0 = K2_MAX(b, j->first[g]) - j->first[g], r1 = K2_MIN(e, j->first[g + 1]) - j->first[g];
        r1 = K2_MIN(r1, j->mm[g].w.rows); /* the padding rows of the last panel (set) */
        if (r0 >= r1) continue;
        if (j->tr[g])
            fast_rows(&j->mm[g], j->tr[g], j->ctx->act + j->act_off[g], j->act_bytes[g],
                      j->pack_off[g] != SIZE_MAX ? j->ctx->act + j->pack_off[g] : NULL, j->pack_ng[g], r0, r1);
        else
            exact_rows(j->ctx->scratch[tid].row, &j->mm[g], r0, r1);
    }
}

#define MULTI_MAX 1024

void model_matmul_multi(k2_context *ctx, const model_mm *mm, int n) {
    int64_t first[MULTI_MAX + 1];
    const quant_type_traits *tr[MULTI_MAX];
    size_t act_off[MULTI_MAX], act_bytes[MULTI_MAX], pack_off[MULTI_MAX];
    int64_t pack_ng[MULTI_MAX];
    for (int base = 0; base < n; base += MULTI_MAX) {
        int cnt = K2_MIN(n - base, MULTI_MAX);
        const model_mm *m = mm + base;
        size_t need = 0;
        int same[MULTI_MAX]; /* an earlier product whose quantized activations g reuses, or -1 */
        first[0] = 0;
        bool any_gemm = false;
        for (int g = 0; g < cnt; g++) {
            tr[g] = m[g].n_tok > 0 ? fast_traits(ctx, &m[g].w) : NULL;
            /* whole panels per product, so chunks (multiples of 16 rows) split no GEMM panel;
             * whole sets of three panels for products on the GEMM, so that chunks (then
             * multiples of 48 rows) give it full sets */
            pack_ng[g] = gemm_tokens(ctx, &m[g], tr[g]);
            int64_t align = pack_ng[g] > 0 ? QUANT_GEMM_ROWS_SET : QUANT_GEMM_ROWS;
            any_gemm |= align == QUANT_GEMM_ROWS_SET;
            first[g + 1] = first[g] + (m[g].n_tok > 0 ? (m[g].w.rows + align - 1) / align * align : 0);
            act_bytes[g] = tr[g] ? (size_t)k2_type_row_bytes(tr[g]->vec_dot_type, m[g].w.cols) : 0;
            same[g] = -1;
            /* products reading the same input (gate/up, q_a/kv_a) share one conversion */
            for (int h = g - 1; h >= 0 && tr[g] && same[g] < 0; h--)
                if (tr[h] && m[h].x == m[g].x && m[h].ldx == m[g].ldx && m[h].n_tok == m[g].n_tok &&
                    m[h].w.cols == m[g].w.cols && tr[h]->vec_dot_type == tr[g]->vec_dot_type &&
                    tr[h]->quantize_act == tr[g]->quantize_act)
                    same[g] = same[h] >= 0 ? same[h] : h;
            act_off[g] = same[g] >= 0 ? act_off[same[g]] : need;
            if (same[g] < 0) need += act_bytes[g] * (size_t)m[g].n_tok;
        }
        /* packed copies for the GEMM products, after the converted rows; products that
         * share a conversion share its packing too */
        int pg[MULTI_MAX], np = 0;
        int64_t pfirst[MULTI_MAX + 1];
        pfirst[0] = 0;
        for (int g = 0; g < cnt; g++) {
            pack_off[g] = SIZE_MAX;
            if (pack_ng[g] <= 0) continue;
            for (int h = 0; h < g && pack_off[g] == SIZE_MAX; h++)
                /* equal offsets = one shared conversion (distinct inputs never share one) */
                if (pack_off[h] != SIZE_MAX && act_off[h] == act_off[g] && pack_ng[h] == pack_ng[g])
                    pack_off[g] = pack_off[h];
            if (pack_off[g] != SIZE_MAX) continue;
            need = (need + 63) & ~(size_t)63;
            pack_off[g] = need;
            need += quant_gemm_pack_bytes(m[g].w.cols, pack_ng[g]);
            pg[np] = g;
            pfirst[np + 1] = pfirst[np] + (pack_ng[g] + 7) / 8;
            np++;
        }
        if (need > ctx->act_cap) {
            uint8_t *na = realloc(ctx->act, need);
            if (na) {
                ctx->act = na;
                ctx->act_cap = need;
            } else {
                /* no memory for quantized activations: compute these products exactly */
                for (int g = 0; g < cnt; g++) tr[g] = NULL, pack_off[g] = SIZE_MAX;
                np = 0;
            }
        }
        int qg[MULTI_MAX], nq = 0;
        int64_t qfirst[MULTI_MAX + 1];
        qfirst[0] = 0;
        for (int g = 0; g < cnt; g++)
            if (tr[g] && same[g] < 0) {
                qg[nq] = g;
                qfirst[nq + 1] = qfirst[nq] + m[g].n_tok;
                nq++;
            }
        quant_job qj = {m, tr, act_off, act_bytes, ctx->act, qg, qfirst, nq};
        if (nq > 0) {
            /* decode converts one row per input on the caller; prefill rows go to all threads */
            int64_t nrow = qfirst[nq];
            if (nrow >= 4 * (int64_t)ctx->n_threads)
                model_pool_for(ctx->pool, nrow, 4, quant_task, &qj);
            else
                quant_task(&qj, 0, nrow, 0);
        }
        if (np > 0) {
            pack_job pj = {m, act_off, act_bytes, pack_off, pack_ng, ctx->act, pg, pfirst, np};
            if (pfirst[np] >= 2 * (int64_t)ctx->n_threads)
                model_pool_for(ctx->pool, pfirst[np], 1, pack_task, &pj);
            else
                pack_task(&pj, 0, pfirst[np], 0);
        }
        multi_job j = {ctx, m, cnt, first, tr, act_off, act_bytes, pack_off, pack_ng};
        /* ~64 chunks per thread, taken dynamically: a row's cost depends on its product's
         * type, width and token count (experts get different numbers of tokens in prefill),
         * and a few large chunks left one thread idle ~5% of a prefill (measured) */
        int64_t max_tok = 0;
        for (int g = 0; g < cnt; g++) max_tok = K2_MAX(max_tok, m[g].n_tok);
        int64_t min_grain = max_tok > 1 ? 16 : 4;
        int64_t grain = K2_MAX(min_grain, first[cnt] / (64 * (int64_t)ctx->n_threads));
        if (max_tok > 1) {
            int64_t align = any_gemm ? QUANT_GEMM_ROWS_SET : QUANT_GEMM_ROWS;
            grain = (grain + align - 1) / align * align;
        }
        model_pool_for(ctx->pool, first[cnt], grain, multi_task, &j);
    }
}

void model_matmul(k2_context *ctx, const model_weight *w, const float *x, int64_t ldx, float *y,
                  int64_t ldy, int64_t n_tok) {
    model_mm mm = {*w, x, ldx, y, ldy, n_tok, 0, false};
    model_matmul_multi(ctx, &mm, 1);
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
