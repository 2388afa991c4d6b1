/* Scalar reference dequantizers, spec/quant-types.md §2-3.
 *
 * Every float expression follows the evaluation order written in the spec (which is also
 * the order of the gguf Python package), compiled with -ffp-contract=off, so results are
 * bit-identical to gguf.quants.dequantize. Fields are read bytewise: blocks are not
 * aligned (§0). */
#include "quant/quant.h"
#include "quant/iq_tables.h"

#include <string.h>

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline float rdh(const uint8_t *p) { return quant_fp16_to_f32(rd16(p)); }

float quant_fp16_to_f32(uint16_t h) {
    /* §2.1: exact conversion of IEEE binary16, including subnormals, inf and NaN
     * (NaN payload kept, as numpy does). */
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
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
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float quant_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float quant_e8m0_to_f32_half(uint8_t e) {
    /* §2.4: 2^(e-128), built from its bit pattern (subnormal for e < 2). */
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float ue4m3_to_f32_half(uint8_t x) {
    /* §2.5: half of the unsigned E4M3 value; 0x00 and 0x7F decode to 0. Every step is exact. */
    if (x == 0 || x == 0x7f) return 0.0f;
    int exp = (x >> 3) & 0xf;
    float man = (float)(x & 7);
    float raw;
    if (exp == 0) {
        raw = man * 0x1p-9f;
    } else {
        float p = 1.0f;
        for (int i = exp - 7; i > 0; i--) p *= 2.0f;
        for (int i = exp - 7; i < 0; i++) p *= 0.5f;
        raw = (1.0f + man / 8.0f) * p;
    }
    return raw * 0.5f;
}

/* ---- 32-element legacy types, §3.2-3.3 ---- */

static void dq_q4_0(const uint8_t *b, float *y) {
    float d = rdh(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((b[2 + j] & 0x0f) - 8);
        y[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
    }
}

static void dq_q4_1(const uint8_t *b, float *y) {
    float d = rdh(b), m = rdh(b + 2);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(b[4 + j] & 0x0f) + m;
        y[j + 16] = d * (float)(b[4 + j] >> 4) + m;
    }
}

static void dq_q5_0(const uint8_t *b, float *y) {
    float d = rdh(b);
    uint32_t h = rd32(b + 2);
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0x0f) | (int)(((h >> j) & 1) << 4);
        int hi = (qs[j] >> 4) | (int)(((h >> (j + 16)) & 1) << 4);
        y[j] = d * (float)(lo - 16);
        y[j + 16] = d * (float)(hi - 16);
    }
}

static void dq_q5_1(const uint8_t *b, float *y) {
    float d = rdh(b), m = rdh(b + 2);
    uint32_t h = rd32(b + 4);
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0x0f) | (int)(((h >> j) & 1) << 4);
        int hi = (qs[j] >> 4) | (int)(((h >> (j + 16)) & 1) << 4);
        y[j] = d * (float)lo + m;
        y[j + 16] = d * (float)hi + m;
    }
}

static void dq_q8_0(const uint8_t *b, float *y) {
    float d = rdh(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

static void dq_q8_1(const uint8_t *b, float *y) {
    float d = rdh(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[4 + j] * d;
}

static void dq_iq4_nl(const uint8_t *b, float *y) {
    float d = rdh(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)quant_kvalues_iq4nl[b[2 + j] & 0x0f];
        y[j + 16] = d * (float)quant_kvalues_iq4nl[b[2 + j] >> 4];
    }
}

static void dq_mxfp4(const uint8_t *b, float *y) {
    float d = quant_e8m0_to_f32_half(b[0]);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)quant_kvalues_mxfp4[b[1 + j] & 0x0f];
        y[j + 16] = d * (float)quant_kvalues_mxfp4[b[1 + j] >> 4];
    }
}

static void dq_nvfp4(const uint8_t *b, float *y) {
    /* §3.7: four 16-element sub-blocks with a UE4M3 scale each. */
    for (int s = 0; s < 4; s++) {
        float d = ue4m3_to_f32_half(b[s]);
        const uint8_t *qs = b + 4 + 8 * s;
        for (int j = 0; j < 8; j++) {
            y[16 * s + j] = d * (float)quant_kvalues_mxfp4[qs[j] & 0x0f];
            y[16 * s + 8 + j] = d * (float)quant_kvalues_mxfp4[qs[j] >> 4];
        }
    }
}

static void dq_q1_0(const uint8_t *b, float *y) {
    float d = rdh(b);
    for (int j = 0; j < 128; j++) y[j] = ((b[2 + j / 8] >> (j % 8)) & 1) ? d : -d;
}

static void dq_q2_0(const uint8_t *b, float *y) {
    float d = rdh(b);
    for (int j = 0; j < 64; j++) y[j] = (float)((int)((b[2 + j / 4] >> (2 * (j % 4))) & 3) - 1) * d;
}

/* ---- K-quants, §3.4 ---- */

/* §3.4.2: the 12-byte packing of eight 6-bit scales and mins. */
void quant_get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void dq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *scales = b, *qs = b + 16;
    float d = rdh(b + 80), dmin = rdh(b + 82);
    for (int e = 0; e < 256; e++) {
        int h = e / 128, r = e % 128, s = r / 32, l = r % 32, j = e / 16;
        int q = (qs[32 * h + l] >> (2 * s)) & 3;
        float dl = d * (float)(scales[j] & 0x0f);
        float ml = dmin * (float)(scales[j] >> 4);
        y[e] = dl * (float)q - ml;
    }
}

/* §3.4 Q3_K: 16 signed 6-bit scales. */
void quant_q3_k_scales(const uint8_t *b, int8_t *sc) {
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? (b[j] & 0x0f) : (b[j - 8] >> 4);
        int hi = (b[8 + (j % 4)] >> (2 * (j / 4))) & 3;
        sc[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

static void dq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hmask = b, *qs = b + 32;
    float d = rdh(b + 108);
    int8_t sc[16];
    quant_q3_k_scales(b + 96, sc);
    for (int e = 0; e < 256; e++) {
        int h = e / 128, r = e % 128, s = r / 32, l = r % 32;
        int lo = (qs[32 * h + l] >> (2 * s)) & 3;
        int hb = (hmask[e % 32] >> (e / 32)) & 1;
        int q = lo - (hb ? 0 : 4);
        float dl = d * (float)sc[e / 16];
        y[e] = dl * (float)q;
    }
}

static void dq_q4_k(const uint8_t *b, float *y) {
    float d = rdh(b), dmin = rdh(b + 2);
    const uint8_t *qs = b + 16;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        quant_get_scale_min_k4(j, b + 4, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        const uint8_t *q = qs + 32 * (j / 2);
        int shift = 4 * (j % 2);
        for (int l = 0; l < 32; l++) y[32 * j + l] = d1 * (float)((q[l] >> shift) & 0x0f) - m1;
    }
}

static void dq_q5_k(const uint8_t *b, float *y) {
    float d = rdh(b), dmin = rdh(b + 2);
    const uint8_t *qh = b + 16, *qs = b + 48;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        quant_get_scale_min_k4(j, b + 4, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        const uint8_t *q = qs + 32 * (j / 2);
        int shift = 4 * (j % 2);
        for (int l = 0; l < 32; l++) {
            int v = ((q[l] >> shift) & 0x0f) | (((qh[l] >> j) & 1) << 4);
            y[32 * j + l] = d1 * (float)v - m1;
        }
    }
}

static void dq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *scales = (const int8_t *)(b + 192);
    float d = rdh(b + 208);
    for (int e = 0; e < 256; e++) {
        int h = e / 128, g = (e % 128) / 32, l = e % 32;
        int lo = g == 0 ? (ql[64 * h + l] & 0x0f)
               : g == 1 ? (ql[64 * h + 32 + l] & 0x0f)
               : g == 2 ? (ql[64 * h + l] >> 4)
                        : (ql[64 * h + 32 + l] >> 4);
        int hi = (qh[32 * h + l] >> (2 * g)) & 3;
        int q = (lo | (hi << 4)) - 32;
        float dl = d * (float)scales[e / 16];
        y[e] = dl * (float)q;
    }
}

static void dq_q8_k(const uint8_t *b, float *y) {
    float d;
    memcpy(&d, b, 4);
    for (int e = 0; e < 256; e++) y[e] = d * (float)(int8_t)b[4 + e];
}

/* ---- I-quants, §3.5 ---- */

static inline int grid8(uint64_t entry, int k) { return (int)((entry >> (8 * k)) & 0xff); }

static void dq_iq2_xxs(const uint8_t *b, float *y) {
    float d = rdh(b);
    for (int ib = 0; ib < 8; ib++) {
        uint32_t a = rd32(b + 2 + 8 * ib), s = rd32(b + 6 + 8 * ib);
        float db = (d * (0.5f + (float)(s >> 28))) * 0.25f;
        for (int l = 0; l < 4; l++) {
            uint64_t g = quant_iq2xxs_grid[(a >> (8 * l)) & 0xff];
            uint8_t signs = quant_ksigns_iq2xs[(s >> (7 * l)) & 127];
            for (int k = 0; k < 8; k++)
                y[32 * ib + 8 * l + k] = (db * (float)grid8(g, k)) * ((signs >> k) & 1 ? -1.0f : 1.0f);
        }
    }
}

static void dq_iq2_xs(const uint8_t *b, float *y) {
    float d = rdh(b);
    const uint8_t *scales = b + 66;
    for (int g = 0; g < 32; g++) {
        uint16_t w = rd16(b + 2 + 2 * g);
        int ib = g / 4, l = g % 4;
        int nib = l < 2 ? (scales[ib] & 0x0f) : (scales[ib] >> 4);
        float db = (d * (0.5f + (float)nib)) * 0.25f;
        uint64_t e = quant_iq2xs_grid[w & 511];
        uint8_t signs = quant_ksigns_iq2xs[w >> 9];
        for (int k = 0; k < 8; k++) y[8 * g + k] = (db * (float)grid8(e, k)) * ((signs >> k) & 1 ? -1.0f : 1.0f);
    }
}

static void dq_iq2_s(const uint8_t *b, float *y) {
    float d = rdh(b);
    const uint8_t *qs = b + 2, *signs = b + 34, *qh = b + 66, *scales = b + 74;
    for (int g = 0; g < 32; g++) {
        int ib = g / 4, l = g % 4;
        int idx = qs[g] | (((qh[ib] >> (2 * l)) & 3) << 8);
        int nib = l < 2 ? (scales[ib] & 0x0f) : (scales[ib] >> 4);
        float db = (d * (0.5f + (float)nib)) * 0.25f;
        uint64_t e = quant_iq2s_grid[idx];
        for (int k = 0; k < 8; k++) y[8 * g + k] = (db * (float)grid8(e, k)) * ((signs[g] >> k) & 1 ? -1.0f : 1.0f);
    }
}

static void dq_iq3_xxs(const uint8_t *b, float *y) {
    float d = rdh(b);
    const uint8_t *qs = b + 2;
    for (int ib = 0; ib < 8; ib++) {
        uint32_t w = rd32(b + 66 + 4 * ib);
        float db = (d * (0.5f + (float)(w >> 28))) * 0.5f;
        for (int l = 0; l < 4; l++) {
            uint8_t signs = quant_ksigns_iq2xs[(w >> (7 * l)) & 127];
            uint32_t g1 = quant_iq3xxs_grid[qs[8 * ib + 2 * l]], g2 = quant_iq3xxs_grid[qs[8 * ib + 2 * l + 1]];
            float *o = y + 32 * ib + 8 * l;
            for (int k = 0; k < 4; k++) {
                o[k] = (db * (float)grid8(g1, k)) * ((signs >> k) & 1 ? -1.0f : 1.0f);
                o[k + 4] = (db * (float)grid8(g2, k)) * ((signs >> (k + 4)) & 1 ? -1.0f : 1.0f);
            }
        }
    }
}

static void dq_iq3_s(const uint8_t *b, float *y) {
    float d = rdh(b);
    const uint8_t *qs = b + 2, *qh = b + 66, *signs = b + 74, *scales = b + 106;
    for (int ib = 0; ib < 8; ib++) {
        int s = ib % 2 ? (scales[ib / 2] >> 4) : (scales[ib / 2] & 0x0f);
        float db = d * (float)(1 + 2 * s);
        for (int k = 0; k < 8; k++) {
            int idx = qs[8 * ib + k] | (((qh[ib] >> k) & 1) << 8);
            uint32_t g = quant_iq3s_grid[idx];
            uint8_t sg = signs[4 * ib + k / 2];
            int sh = 4 * (k % 2);
            for (int v = 0; v < 4; v++)
                y[32 * ib + 4 * k + v] = (db * (float)grid8(g, v)) * ((sg >> (sh + v)) & 1 ? -1.0f : 1.0f);
        }
    }
}

static void dq_iq1_s(const uint8_t *b, float *y) {
    float d = rdh(b);
    const uint8_t *qs = b + 2;
    for (int ib = 0; ib < 8; ib++) {
        uint16_t h = rd16(b + 34 + 2 * ib);
        float dl = d * (float)(2 * ((h >> 12) & 7) + 1);
        float delta = (h & 0x8000) ? -0.125f : 0.125f;
        for (int l = 0; l < 4; l++) {
            int g = 4 * ib + l;
            uint64_t e = quant_iq1s_grid[qs[g] | (((h >> (3 * l)) & 7) << 8)];
            for (int k = 0; k < 8; k++) y[8 * g + k] = dl * ((float)(int8_t)grid8(e, k) + delta);
        }
    }
}

static void dq_iq1_m(const uint8_t *b, float *y) {
    const uint8_t *qs = b, *qh = b + 32;
    uint16_t w[4];
    for (int i = 0; i < 4; i++) w[i] = rd16(b + 48 + 2 * i);
    uint16_t dbits = (uint16_t)((w[0] >> 12) | ((w[1] >> 8) & 0x00f0) | ((w[2] >> 4) & 0x0f00) | (w[3] & 0xf000));
    float d = quant_fp16_to_f32(dbits);
    for (int g = 0; g < 32; g++) {
        int ib = g / 4;
        int sw = w[ib / 2] >> (6 * (ib % 2));
        int s = (g % 4) < 2 ? (sw & 7) : ((sw >> 3) & 7);
        float dl = d * (float)(2 * s + 1);
        int nib = (qh[g / 2] >> (4 * (g % 2))) & 0x0f;
        float delta = (nib & 8) ? -0.125f : 0.125f;
        uint64_t e = quant_iq1s_grid[qs[g] | ((nib & 7) << 8)];
        for (int k = 0; k < 8; k++) y[8 * g + k] = dl * ((float)(int8_t)grid8(e, k) + delta);
    }
}

static void dq_iq4_xs(const uint8_t *b, float *y) {
    float d = rdh(b);
    uint16_t sh = rd16(b + 2);
    const uint8_t *sl = b + 4, *qs = b + 8;
    for (int ib = 0; ib < 8; ib++) {
        int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 0x0f) | (((sh >> (2 * ib)) & 3) << 4);
        float dl = d * (float)(ls - 32);
        for (int j = 0; j < 16; j++) {
            y[32 * ib + j] = dl * (float)quant_kvalues_iq4nl[qs[16 * ib + j] & 0x0f];
            y[32 * ib + 16 + j] = dl * (float)quant_kvalues_iq4nl[qs[16 * ib + j] >> 4];
        }
    }
}

/* ---- ternary, §3.6 ---- */

static inline int trit(uint8_t byte, int n) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    uint8_t q = (uint8_t)(byte * pow3[n]);
    return (int)(((uint16_t)q * 3) >> 8);
}

static void dq_tq1_0(const uint8_t *b, float *y) {
    const uint8_t *qs = b, *qh = b + 48;
    float d = rdh(b + 52);
    for (int n = 0; n < 5; n++)
        for (int m = 0; m < 32; m++) y[32 * n + m] = d * (float)(trit(qs[m], n) - 1);
    for (int n = 0; n < 5; n++)
        for (int m = 0; m < 16; m++) y[160 + 16 * n + m] = d * (float)(trit(qs[32 + m], n) - 1);
    for (int n = 0; n < 4; n++)
        for (int m = 0; m < 4; m++) y[240 + 4 * n + m] = d * (float)(trit(qh[m], n) - 1);
}

static void dq_tq2_0(const uint8_t *b, float *y) {
    float d = rdh(b + 64);
    for (int c = 0; c < 2; c++)
        for (int l = 0; l < 4; l++)
            for (int m = 0; m < 32; m++)
                y[128 * c + 32 * l + m] = d * (float)((int)((b[32 * c + m] >> (2 * l)) & 3) - 1);
}

typedef void (*dq_block_fn)(const uint8_t *b, float *y);

static dq_block_fn block_dequantizer(uint32_t type) {
    switch (type) {
    case K2_TYPE_Q4_0: return dq_q4_0;
    case K2_TYPE_Q4_1: return dq_q4_1;
    case K2_TYPE_Q5_0: return dq_q5_0;
    case K2_TYPE_Q5_1: return dq_q5_1;
    case K2_TYPE_Q8_0: return dq_q8_0;
    case K2_TYPE_Q8_1: return dq_q8_1;
    case K2_TYPE_Q2_K: return dq_q2_k;
    case K2_TYPE_Q3_K: return dq_q3_k;
    case K2_TYPE_Q4_K: return dq_q4_k;
    case K2_TYPE_Q5_K: return dq_q5_k;
    case K2_TYPE_Q6_K: return dq_q6_k;
    case K2_TYPE_Q8_K: return dq_q8_k;
    case K2_TYPE_IQ2_XXS: return dq_iq2_xxs;
    case K2_TYPE_IQ2_XS: return dq_iq2_xs;
    case K2_TYPE_IQ2_S: return dq_iq2_s;
    case K2_TYPE_IQ3_XXS: return dq_iq3_xxs;
    case K2_TYPE_IQ3_S: return dq_iq3_s;
    case K2_TYPE_IQ1_S: return dq_iq1_s;
    case K2_TYPE_IQ1_M: return dq_iq1_m;
    case K2_TYPE_IQ4_NL: return dq_iq4_nl;
    case K2_TYPE_IQ4_XS: return dq_iq4_xs;
    case K2_TYPE_TQ1_0: return dq_tq1_0;
    case K2_TYPE_TQ2_0: return dq_tq2_0;
    case K2_TYPE_MXFP4: return dq_mxfp4;
    case K2_TYPE_NVFP4: return dq_nvfp4;
    case K2_TYPE_Q1_0: return dq_q1_0;
    case K2_TYPE_Q2_0: return dq_q2_0;
    default: return NULL;
    }
}

bool quant_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    switch (type) {
    case K2_TYPE_F32:
        memcpy(dst, src, (size_t)n * 4);
        return true;
    case K2_TYPE_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = rdh(p + 2 * i);
        return true;
    case K2_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = quant_bf16_to_f32(rd16(p + 2 * i));
        return true;
    default:
        break;
    }
    dq_block_fn fn = block_dequantizer(type);
    const quant_type_info *t = quant_type_info_get(type);
    if (!fn || !t || t->block_size <= 0) return false;
    int64_t nb = n / t->block_size;
    for (int64_t i = 0; i < nb; i++) fn(p + i * t->block_bytes, dst + i * t->block_size);
    return true;
}
