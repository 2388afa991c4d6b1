/* Portable dot-product kernels: one weight row against one activation row of its
 * vec_dot_type (spec/quant-types.md §4.1), integer sums inside blocks and the f32
 * combination order of §4.5. These are the reference the SIMD kernels are tested
 * against. n is the row length (a whole number of blocks of both types). */
#include "quant/kernels.h"
#include "quant/iq_tables.h"

static inline int grid8(uint64_t entry, int k) { return (int)((entry >> (8 * k)) & 0xff); }
static inline int sgn(uint8_t signs, int k) { return (signs >> k) & 1 ? -1 : 1; }

/* ---- plain floats (§3.1): products in f32, sum in double ---- */

void quant_dot_f32_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a; /* rows need no alignment: read through memcpy */
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(qk_f32(x + 4 * i) * qk_f32(y + 4 * i));
    *s = (float)sum;
}

void quant_dot_f16_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(qk_fp16(x + 2 * i) * qk_fp16(y + 2 * i));
    *s = (float)sum;
}

void quant_dot_bf16_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(quant_bf16_to_f32(qk_rd16(x + 2 * i)) * quant_bf16_to_f32(qk_rd16(y + 2 * i)));
    *s = (float)sum;
}

/* ---- 32-element types vs Q8_0 / Q8_1 ---- */

void quant_dot_q4_0_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 32; b++, x += 18, y += QK_Q8_0_BYTES) {
        const int8_t *q = (const int8_t *)(y + 2);
        int isum = 0;
        for (int j = 0; j < 16; j++) isum += ((x[2 + j] & 0x0f) - 8) * q[j] + ((x[2 + j] >> 4) - 8) * q[j + 16];
        sumf += ((float)isum * qk_fp16(x)) * qk_fp16(y);
    }
    *s = sumf;
}

void quant_dot_q4_1_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 32; b++, x += 20, y += QK_Q8_1_BYTES) {
        const int8_t *q = (const int8_t *)(y + 4);
        int isum = 0;
        for (int j = 0; j < 16; j++) isum += (x[4 + j] & 0x0f) * q[j] + (x[4 + j] >> 4) * q[j + 16];
        sumf += (qk_fp16(x) * qk_fp16(y)) * (float)isum + qk_fp16(x + 2) * qk_fp16(y + 2);
    }
    *s = sumf;
}

void quant_dot_q5_0_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 32; b++, x += 22, y += QK_Q8_0_BYTES) {
        const int8_t *q = (const int8_t *)(y + 2);
        uint32_t h = qk_rd32(x + 2);
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int lo = ((x[6 + j] & 0x0f) | (int)(((h >> j) & 1) << 4)) - 16;
            int hi = ((x[6 + j] >> 4) | (int)(((h >> (j + 16)) & 1) << 4)) - 16;
            isum += lo * q[j] + hi * q[j + 16];
        }
        sumf += (qk_fp16(x) * qk_fp16(y)) * (float)isum;
    }
    *s = sumf;
}

void quant_dot_q5_1_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 32; b++, x += 24, y += QK_Q8_1_BYTES) {
        const int8_t *q = (const int8_t *)(y + 4);
        uint32_t h = qk_rd32(x + 4);
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            int lo = (x[8 + j] & 0x0f) | (int)(((h >> j) & 1) << 4);
            int hi = (x[8 + j] >> 4) | (int)(((h >> (j + 16)) & 1) << 4);
            isum += lo * q[j] + hi * q[j + 16];
        }
        sumf += (qk_fp16(x) * qk_fp16(y)) * (float)isum + qk_fp16(x + 2) * qk_fp16(y + 2);
    }
    *s = sumf;
}

void quant_dot_q8_0_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 32; b++, x += 34, y += QK_Q8_0_BYTES) {
        const int8_t *p = (const int8_t *)(x + 2), *q = (const int8_t *)(y + 2);
        int isum = 0;
        for (int j = 0; j < 32; j++) isum += p[j] * q[j];
        sumf += (float)isum * (qk_fp16(x) * qk_fp16(y));
    }
    *s = sumf;
}

void quant_dot_iq4_nl_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 32; b++, x += 18, y += QK_Q8_0_BYTES) {
        const int8_t *q = (const int8_t *)(y + 2);
        int isum = 0;
        for (int j = 0; j < 16; j++)
            isum += quant_kvalues_iq4nl[x[2 + j] & 0x0f] * q[j] + quant_kvalues_iq4nl[x[2 + j] >> 4] * q[j + 16];
        sumf += (qk_fp16(y) * qk_fp16(x)) * (float)isum;
    }
    *s = sumf;
}

void quant_dot_mxfp4_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 32; b++, x += 17, y += QK_Q8_0_BYTES) {
        const int8_t *q = (const int8_t *)(y + 2);
        int isum = 0;
        for (int j = 0; j < 16; j++)
            isum += quant_kvalues_mxfp4[x[1 + j] & 0x0f] * q[j] + quant_kvalues_mxfp4[x[1 + j] >> 4] * q[j + 16];
        sumf += (qk_fp16(y) * quant_e8m0_to_f32_half(x[0])) * (float)isum;
    }
    *s = sumf;
}

/* ---- K-quants vs Q8_K ---- */

static inline const int8_t *q8k_qs(const uint8_t *y) { return (const int8_t *)(y + 4); }
static inline int q8k_bsum(const uint8_t *y, int j) { return (int16_t)qk_rd16(y + 260 + 2 * j); }

void quant_dot_q2_k_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 256; b++, x += 84, y += QK_Q8K_BYTES) {
        const uint8_t *sc = x, *qs = x + 16;
        const int8_t *q8 = q8k_qs(y);
        int summs = 0, isum = 0;
        for (int j = 0; j < 16; j++) summs += q8k_bsum(y, j) * (sc[j] >> 4);
        for (int j = 0; j < 16; j++) {
            int sub = 0;
            for (int e = 16 * j; e < 16 * j + 16; e++) {
                int h = e / 128, r = e % 128;
                sub += ((qs[32 * h + r % 32] >> (2 * (r / 32))) & 3) * q8[e];
            }
            isum += (sc[j] & 0x0f) * sub;
        }
        float ad = qk_f32(y);
        sumf += (ad * qk_fp16(x + 80)) * (float)isum - (ad * qk_fp16(x + 82)) * (float)summs;
    }
    *s = sumf;
}

void quant_dot_q3_k_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sums[8] = {0};
    for (int64_t b = 0; b < n / 256; b++, x += 110, y += QK_Q8K_BYTES) {
        const uint8_t *hmask = x, *qs = x + 32;
        int8_t sc[16];
        quant_q3_k_scales(x + 96, sc);
        const int8_t *q8 = q8k_qs(y);
        int acc[8] = {0};
        for (int e = 0; e < 256; e++) {
            int h = e / 128, r = e % 128;
            int lo = (qs[32 * h + r % 32] >> (2 * (r / 32))) & 3;
            int q = lo - (((hmask[e % 32] >> (e / 32)) & 1) ? 0 : 4);
            acc[e % 8] += sc[e / 16] * (q * q8[e]);
        }
        float dd = qk_fp16(x + 108) * qk_f32(y);
        for (int l = 0; l < 8; l++) sums[l] += dd * (float)acc[l];
    }
    float sumf = 0.0f;
    for (int l = 0; l < 8; l++) sumf += sums[l];
    *s = sumf;
}

static void dot_q45_k(int64_t n, float *s, const uint8_t *x, const uint8_t *y, bool q5) {
    float sums[8] = {0};
    float sumf = 0.0f;
    int bytes = q5 ? 176 : 144;
    for (int64_t b = 0; b < n / 256; b++, x += bytes, y += QK_Q8K_BYTES) {
        const uint8_t *qh = x + 16, *qs = x + (q5 ? 48 : 16);
        uint8_t S[8], M[8];
        for (int j = 0; j < 8; j++) quant_get_scale_min_k4(j, x + 4, &S[j], &M[j]);
        const int8_t *q8 = q8k_qs(y);
        int acc[8] = {0};
        for (int e = 0; e < 256; e++) {
            int c = e / 64, r = e % 64;
            int q = r < 32 ? (qs[32 * c + r] & 0x0f) : (qs[32 * c + r - 32] >> 4);
            if (q5) q += 16 * ((qh[e % 32] >> (e / 32)) & 1);
            acc[e % 8] += S[e / 32] * (q * q8[e]);
        }
        int mins = 0;
        for (int j = 0; j < 16; j++) mins += q8k_bsum(y, j) * M[j / 2];
        float ad = qk_f32(y);
        float dd = qk_fp16(x) * ad;
        for (int l = 0; l < 8; l++) sums[l] += dd * (float)acc[l];
        sumf -= (qk_fp16(x + 2) * ad) * (float)mins;
    }
    for (int l = 0; l < 8; l++) sumf += sums[l];
    *s = sumf;
}

void quant_dot_q4_k_scalar(int64_t n, float *s, const void *w, const void *a) { dot_q45_k(n, s, w, a, false); }
void quant_dot_q5_k_scalar(int64_t n, float *s, const void *w, const void *a) { dot_q45_k(n, s, w, a, true); }

void quant_dot_q6_k_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sums[8] = {0};
    for (int64_t b = 0; b < n / 256; b++, x += 210, y += QK_Q8K_BYTES) {
        const uint8_t *ql = x, *qh = x + 128;
        const int8_t *sc = (const int8_t *)(x + 192);
        const int8_t *q8 = q8k_qs(y);
        int acc[8] = {0};
        for (int e = 0; e < 256; e++) {
            int h = e / 128, g = (e % 128) / 32, l = e % 32;
            int lo = (ql[64 * h + 32 * (g & 1) + l] >> (4 * (g >> 1))) & 0x0f;
            int q = (lo | (((qh[32 * h + l] >> (2 * g)) & 3) << 4)) - 32;
            acc[e % 8] += sc[e / 16] * (q * q8[e]);
        }
        float dd = qk_fp16(x + 208) * qk_f32(y);
        for (int l = 0; l < 8; l++) sums[l] += dd * (float)acc[l];
    }
    float sumf = 0.0f;
    for (int l = 0; l < 8; l++) sumf += sums[l];
    *s = sumf;
}

/* ---- I-quants vs Q8_K ---- */

void quant_dot_iq2_xxs_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 256; b++, x += 66, y += QK_Q8K_BYTES) {
        const int8_t *q8 = q8k_qs(y);
        int bsum = 0;
        for (int ib = 0; ib < 8; ib++) {
            uint32_t ga = qk_rd32(x + 2 + 8 * ib), sw = qk_rd32(x + 6 + 8 * ib);
            int isum = 0;
            for (int l = 0; l < 4; l++) {
                uint64_t g = quant_iq2xxs_grid[(ga >> (8 * l)) & 0xff];
                uint8_t signs = quant_ksigns_iq2xs[(sw >> (7 * l)) & 127];
                for (int k = 0; k < 8; k++) isum += grid8(g, k) * sgn(signs, k) * q8[32 * ib + 8 * l + k];
            }
            bsum += isum * (int)(2 * (sw >> 28) + 1);
        }
        sumf += (qk_fp16(x) * qk_f32(y)) * (float)bsum;
    }
    *s = 0.125f * sumf;
}

void quant_dot_iq2_xs_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 256; b++, x += 74, y += QK_Q8K_BYTES) {
        const int8_t *q8 = q8k_qs(y);
        const uint8_t *scales = x + 66;
        int bsum = 0;
        for (int ib = 0; ib < 8; ib++) {
            int half[2] = {0, 0};
            for (int l = 0; l < 4; l++) {
                uint16_t v = qk_rd16(x + 2 + 2 * (4 * ib + l));
                uint64_t g = quant_iq2xs_grid[v & 511];
                uint8_t signs = quant_ksigns_iq2xs[v >> 9];
                for (int k = 0; k < 8; k++) half[l / 2] += grid8(g, k) * sgn(signs, k) * q8[32 * ib + 8 * l + k];
            }
            bsum += half[0] * (2 * (scales[ib] & 0x0f) + 1) + half[1] * (2 * (scales[ib] >> 4) + 1);
        }
        sumf += (qk_fp16(x) * qk_f32(y)) * (float)bsum;
    }
    *s = 0.125f * sumf;
}

void quant_dot_iq2_s_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 256; b++, x += 82, y += QK_Q8K_BYTES) {
        const int8_t *q8 = q8k_qs(y);
        const uint8_t *qs = x + 2, *signs = x + 34, *qh = x + 66, *scales = x + 74;
        int bsum = 0;
        for (int ib = 0; ib < 8; ib++) {
            int half[2] = {0, 0};
            for (int l = 0; l < 4; l++) {
                int gi = 4 * ib + l;
                uint64_t g = quant_iq2s_grid[qs[gi] | (((qh[ib] >> (2 * l)) & 3) << 8)];
                for (int k = 0; k < 8; k++) half[l / 2] += grid8(g, k) * sgn(signs[gi], k) * q8[8 * gi + k];
            }
            bsum += half[0] * (2 * (scales[ib] & 0x0f) + 1) + half[1] * (2 * (scales[ib] >> 4) + 1);
        }
        sumf += (qk_fp16(x) * qk_f32(y)) * (float)bsum;
    }
    *s = 0.125f * sumf;
}

void quant_dot_iq3_xxs_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 256; b++, x += 98, y += QK_Q8K_BYTES) {
        const int8_t *q8 = q8k_qs(y);
        const uint8_t *qs = x + 2;
        int bsum = 0;
        for (int ib = 0; ib < 8; ib++) {
            uint32_t sw = qk_rd32(x + 66 + 4 * ib);
            int isum = 0;
            for (int l = 0; l < 4; l++) {
                uint8_t signs = quant_ksigns_iq2xs[(sw >> (7 * l)) & 127];
                uint32_t g1 = quant_iq3xxs_grid[qs[8 * ib + 2 * l]], g2 = quant_iq3xxs_grid[qs[8 * ib + 2 * l + 1]];
                const int8_t *q = q8 + 32 * ib + 8 * l;
                for (int k = 0; k < 4; k++)
                    isum += grid8(g1, k) * sgn(signs, k) * q[k] + grid8(g2, k) * sgn(signs, k + 4) * q[k + 4];
            }
            bsum += isum * (int)(2 * (sw >> 28) + 1);
        }
        sumf += (qk_fp16(x) * qk_f32(y)) * (float)bsum;
    }
    *s = 0.25f * sumf;
}

void quant_dot_iq3_s_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 256; b++, x += 110, y += QK_Q8K_BYTES) {
        const int8_t *q8 = q8k_qs(y);
        const uint8_t *qs = x + 2, *qh = x + 66, *signs = x + 74, *scales = x + 106;
        int bsum = 0;
        for (int ib = 0; ib < 8; ib++) {
            int isum = 0;
            for (int k = 0; k < 8; k++) {
                uint32_t g = quant_iq3s_grid[qs[8 * ib + k] | (((qh[ib] >> k) & 1) << 8)];
                uint8_t sg = signs[4 * ib + k / 2];
                for (int v = 0; v < 4; v++) isum += grid8(g, v) * sgn(sg, 4 * (k % 2) + v) * q8[32 * ib + 4 * k + v];
            }
            int sc = ib % 2 ? (scales[ib / 2] >> 4) : (scales[ib / 2] & 0x0f);
            bsum += isum * (2 * sc + 1);
        }
        sumf += (qk_fp16(x) * qk_f32(y)) * (float)bsum;
    }
    *s = sumf;
}

void quant_dot_iq1_s_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 256; b++, x += 50, y += QK_Q8K_BYTES) {
        const int8_t *q8 = q8k_qs(y);
        const uint8_t *qs = x + 2;
        int sumi = 0, sumi1 = 0;
        for (int ib = 0; ib < 8; ib++) {
            uint16_t h = qk_rd16(x + 34 + 2 * ib);
            int ls = 2 * ((h >> 12) & 7) + 1;
            int delta = (h & 0x8000) ? -1 : 1;
            int lsum = 0;
            for (int l = 0; l < 4; l++) {
                uint64_t g = quant_iq1s_grid[qs[4 * ib + l] | (((h >> (3 * l)) & 7) << 8)];
                for (int k = 0; k < 8; k++) lsum += (int8_t)grid8(g, k) * q8[32 * ib + 8 * l + k];
            }
            sumi += ls * lsum;
            sumi1 += ls * delta * (q8k_bsum(y, 2 * ib) + q8k_bsum(y, 2 * ib + 1));
        }
        sumf += (qk_fp16(x) * qk_f32(y)) * ((float)sumi + 0.125f * (float)sumi1);
    }
    *s = sumf;
}

void quant_dot_iq1_m_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 256; b++, x += 56, y += QK_Q8K_BYTES) {
        const int8_t *q8 = q8k_qs(y);
        const uint8_t *qs = x, *qh = x + 32;
        uint16_t sw[4];
        for (int i = 0; i < 4; i++) sw[i] = qk_rd16(x + 48 + 2 * i);
        uint16_t dbits = (uint16_t)((sw[0] >> 12) | ((sw[1] >> 8) & 0x00f0) | ((sw[2] >> 4) & 0x0f00) | (sw[3] & 0xf000));
        int sumi1 = 0, sumi2 = 0;
        for (int ib = 0; ib < 8; ib++) {
            int scw = sw[ib / 2] >> (6 * (ib % 2));
            for (int hh = 0; hh < 2; hh++) {
                int ls = 2 * ((scw >> (3 * hh)) & 7) + 1;
                int gsum = 0, dsum = 0;
                for (int l = 2 * hh; l < 2 * hh + 2; l++) {
                    int g = 4 * ib + l;
                    int nib = (qh[g / 2] >> (4 * (g % 2))) & 0x0f;
                    uint64_t e = quant_iq1s_grid[qs[g] | ((nib & 7) << 8)];
                    int asum = 0;
                    for (int k = 0; k < 8; k++) {
                        gsum += (int8_t)grid8(e, k) * q8[8 * g + k];
                        asum += q8[8 * g + k];
                    }
                    dsum += (nib & 8) ? -asum : asum;
                }
                sumi1 += ls * gsum;
                sumi2 += ls * dsum;
            }
        }
        sumf += (quant_fp16_to_f32(dbits) * qk_f32(y)) * ((float)sumi1 + 0.125f * (float)sumi2);
    }
    *s = sumf;
}

void quant_dot_iq4_xs_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 256; b++, x += 136, y += QK_Q8K_BYTES) {
        const int8_t *q8 = q8k_qs(y);
        uint16_t sh = qk_rd16(x + 2);
        const uint8_t *sl = x + 4, *qs = x + 8;
        float dd = qk_fp16(x) * qk_f32(y);
        for (int ib = 0; ib < 8; ib++) {
            int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 0x0f) | (((sh >> (2 * ib)) & 3) << 4);
            int isum = 0;
            for (int j = 0; j < 16; j++)
                isum += quant_kvalues_iq4nl[qs[16 * ib + j] & 0x0f] * q8[32 * ib + j] +
                        quant_kvalues_iq4nl[qs[16 * ib + j] >> 4] * q8[32 * ib + 16 + j];
            float dl = dd * (float)(ls - 32);
            sumf += dl * (float)isum;
        }
    }
    *s = sumf;
}

/* ---- ternary vs Q8_K ---- */

static inline int trit(uint8_t byte, int n) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    uint8_t q = (uint8_t)(byte * pow3[n]);
    return (int)(((uint16_t)q * 3) >> 8);
}

void quant_dot_tq1_0_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 256; b++, x += 54, y += QK_Q8K_BYTES) {
        const int8_t *q8 = q8k_qs(y);
        const uint8_t *qs = x, *qh = x + 48;
        int isum = 0;
        for (int t = 0; t < 5; t++)
            for (int m = 0; m < 32; m++) isum += (trit(qs[m], t) - 1) * q8[32 * t + m];
        for (int t = 0; t < 5; t++)
            for (int m = 0; m < 16; m++) isum += (trit(qs[32 + m], t) - 1) * q8[160 + 16 * t + m];
        for (int t = 0; t < 4; t++)
            for (int m = 0; m < 4; m++) isum += (trit(qh[m], t) - 1) * q8[240 + 4 * t + m];
        sumf += (float)isum * (qk_fp16(x + 52) * qk_f32(y));
    }
    *s = sumf;
}

void quant_dot_tq2_0_scalar(int64_t n, float *s, const void *w, const void *a) {
    const uint8_t *x = w, *y = a;
    float sumf = 0.0f;
    for (int64_t b = 0; b < n / 256; b++, x += 66, y += QK_Q8K_BYTES) {
        const int8_t *q8 = q8k_qs(y);
        int isum = 0;
        for (int c = 0; c < 2; c++)
            for (int l = 0; l < 4; l++)
                for (int m = 0; m < 32; m++)
                    isum += ((int)((x[32 * c + m] >> (2 * l)) & 3) - 1) * q8[128 * c + 32 * l + m];
        sumf += (float)isum * (qk_f32(y) * qk_fp16(x + 64));
    }
    *s = sumf;
}
