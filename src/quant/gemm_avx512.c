/* AVX-512 VNNI panel GEMM for the k-quants (prefill and batched decode).
 *
 * Why a second kernel shape: the row kernels of dot_avx512.c spend most of a block on
 * per-(row, token) work that is not multiplication (scale permutes, a float convert and
 * fma per block and token, the mins term), ~18 cycles per block and token on Cascade
 * Lake. Here the lanes of a vector are 16 weight rows instead of 16 positions of one
 * row, so everything per block that is not a multiply is shared by 16 rows:
 *
 *   tile.w[g] lane r = the 4 values of elements 4g..4g+3 of row r (signed bytes), built
 *   once per (16-row panel, block) by transposing the packed bytes of the 16 rows
 *   (dwords; 16x16 transposes) and unpacking them in place;
 *   one token: s = dpbusd(broadcast(activation dword g), w[g]) over the 4..8 groups of a
 *   sub-block, the activations packed as unsigned a + 128 and s started at -128 * (sum of
 *   the sub-block's values), so it ends exactly at sum(w * a); then one convert + fma with
 *   the sub-block scale vector (d * scale) for all 16 rows. Only Q2_K/Q4_K/Q5_K have a
 *   real mins term: an f32 fma per sub-block of the min with the token's activation sum
 *   (packed as f32: products and sums stay below 2^24, so exact). One fma applies the
 *   token's scale. The types whose codes carry an offset (Q3_K, Q6_K, the I-quants) hold
 *   the signed values, so they have no offset term at all.
 *
 * Register blocking: three panels (48 rows) x 4 tokens, 12 int32 sums. vpdpbusd zmm
 * issues on ports 0 and 5 (two per cycle) but only about one per cycle with a memory
 * operand (measured), so each activation dword is broadcast into a register once and used
 * by the three panels, and each tile vector by the 4 tokens.
 *
 * Tiles are reused for up to 256 tokens of the call (TOK_CHUNK, the model's micro-batch),
 * so the transpose is paid once per block per micro-batch. The activations come packed
 * (quant_gemm_pack: 8 tokens interleaved per block), built once per batch and input.
 * Integer sums are exact; the f32 combination differs from vec_dot's order (§4.7 allows
 * it): results agree with vec_dot to ~1e-6 relative, not bit for bit, which is why
 * model/matmul.c uses this kernel only for sequences that give an eval several tokens
 * (prefill), never for single-token decode. */
#include "quant/kernels.h"
#include "quant/iq_tables.h"
#include "quant/iq_avx512.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define PANEL QUANT_GEMM_ROWS /* rows per tile: one per lane */
#define TOK_CHUNK 256 /* tokens per tile build (the model's micro-batch): 256 measured 5-12% faster than 128 */

typedef int32_t i32u __attribute__((aligned(1), may_alias));
typedef float f32u __attribute__((aligned(1), may_alias));

typedef struct gemm_tile {
    __m512i w[64];  /* signed codes, see above */
    __m512i ws[16]; /* per sub-block: -128 * the sum of its codes (initial integer sums) */
    __m512 ds[16];  /* per sub-block: d * scale of each row */
    __m512 mf[16];  /* Q2_K/Q4_K/Q5_K, per sub-block: its min, as f32 (multiplies the bsum) */
    __m512 dm;      /* their factor (dmin; the term is subtracted) */
} gemm_tile;

/* r[i] lane j  ->  r[j] lane i (16 x 16 dwords). */
ALWAYS_INLINE void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    /* u[4q + m], 128-bit lane k: rows 4q..4q+3 of dword 4k + m */
    for (int q = 0; q < 4; q++) {
        u[4 * q + 0] = _mm512_unpacklo_epi64(t[4 * q], t[4 * q + 2]);
        u[4 * q + 1] = _mm512_unpackhi_epi64(t[4 * q], t[4 * q + 2]);
        u[4 * q + 2] = _mm512_unpacklo_epi64(t[4 * q + 1], t[4 * q + 3]);
        u[4 * q + 3] = _mm512_unpackhi_epi64(t[4 * q + 1], t[4 * q + 3]);
    }
    for (int m = 0; m < 4; m++) {
        __m512i a0 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0x88), a1 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0xdd);
        __m512i b0 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0x88), b1 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0xdd);
        r[m + 0] = _mm512_shuffle_i32x4(a0, b0, 0x88);
        r[m + 8] = _mm512_shuffle_i32x4(a0, b0, 0xdd);
        r[m + 4] = _mm512_shuffle_i32x4(a1, b1, 0x88);
        r[m + 12] = _mm512_shuffle_i32x4(a1, b1, 0xdd);
    }
}

/* Dwords [16k, 16k + 16) of the block at `x` (stride rb between rows) for 16 rows,
 * transposed: out[i] lane r = dword 16k + i of row r's block. Only the block's first
 * `bytes` bytes are read (masked loads), so nothing past the last block is touched. */
ALWAYS_INLINE void load_t(const uint8_t *x, size_t rb, int k, int bytes, __m512i out[16]) {
    int have = bytes - 64 * k;
    __mmask64 m = have >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << have) - 1);
    for (int r = 0; r < 16; r++) out[r] = _mm512_maskz_loadu_epi8(m, x + (size_t)r * rb + 64 * k);
    transpose16(out);
}

static inline __m512 fp16_lo(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
static inline __m512 fp16_hi(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16))); }
static inline __m512i byte_k(__m512i v, int k) { return _mm512_and_si512(_mm512_srli_epi32(v, 8 * k), _mm512_set1_epi32(0xff)); }

/* ---- tile builders, one per type ---- */

/* Q4_K / Q5_K (§3.4): d, dmin at 0, 12 scale bytes at 4, [Q5_K: qh[32] at 16], qs[128]. */
ALWAYS_INLINE void tile_q45_k(gemm_tile *T, const uint8_t *x, size_t rb, bool q5) {
    const int bytes = q5 ? 176 : 144;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m10 = _mm512_set1_epi8(0x10), m3f = _mm512_set1_epi32(0x3f3f3f3f);
    __m512i D[48];
    load_t(x, rb, 0, bytes, D);
    load_t(x, rb, 1, bytes, D + 16);
    load_t(x, rb, 2, bytes, D + 32);
    /* scales and mins, as quant_k4_scales does per row */
    __m512i u0 = D[1], u1 = D[2], u2 = D[3];
    __m512i s_lo = _mm512_and_si512(u0, m3f), m_lo = _mm512_and_si512(u1, m3f);
    __m512i s_hi = _mm512_or_si512(_mm512_and_si512(u2, _mm512_set1_epi32(0x0f0f0f0f)),
                                   _mm512_and_si512(_mm512_srli_epi32(u0, 2), _mm512_set1_epi32(0x30303030)));
    __m512i m_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), _mm512_set1_epi32(0x0f0f0f0f)),
                                   _mm512_and_si512(_mm512_srli_epi32(u1, 2), _mm512_set1_epi32(0x30303030)));
    __m512 d = fp16_lo(D[0]);
    T->dm = fp16_hi(D[0]);
    for (int j = 0; j < 8; j++) {
        __m512i s = byte_k(j < 4 ? s_lo : s_hi, j & 3), m = byte_k(j < 4 ? m_lo : m_hi, j & 3);
        T->ds[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(s));
        T->mf[j] = _mm512_cvtepi32_ps(m);
    }
    const __m512i *qs = D + (q5 ? 12 : 4), *qh = D + 4;
    for (int p = 0; p < 32; p++) {
        int c = p / 8, q = p % 8;
        __m512i P = qs[p];
        __m512i lo = _mm512_and_si512(P, m4), hi = _mm512_and_si512(_mm512_srli_epi32(P, 4), m4);
        if (q5) {
            /* element 64c + 4q + i: qh byte (4q + i) bit 2c; +32: bit 2c + 1; move to bit 4 */
            __m512i h = qh[q];
            __m512i hl = 2 * c <= 4 ? _mm512_slli_epi32(h, 4 - 2 * c) : _mm512_srli_epi32(h, 2 * c - 4);
            __m512i hh = 2 * c + 1 <= 4 ? _mm512_slli_epi32(h, 3 - 2 * c) : _mm512_srli_epi32(h, 2 * c - 3);
            lo = _mm512_ternarylogic_epi32(lo, hl, m10, 0xf8); /* lo | (hl & 0x10) */
            hi = _mm512_ternarylogic_epi32(hi, hh, m10, 0xf8);
        }
        T->w[16 * c + q] = lo;
        T->w[16 * c + 8 + q] = hi;
    }
}

/* Q6_K (§3.4): ql[128] at 0, qh[64] at 128, int8 scales[16] at 192, d at 208; the tile
 * holds the signed values q - 32 (the stored codes are q + 32). */
ALWAYS_INLINE void tile_q6_k(gemm_tile *T, const uint8_t *x, size_t rb) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30), k32 = _mm512_set1_epi8(32);
    __m512i D[64];
    for (int k = 0; k < 4; k++) load_t(x, rb, k, 210, D + 16 * k);
    const __m512i *ql = D, *qh = D + 32, *sc = D + 48;
    __m512 d = fp16_lo(D[52]);
    for (int k = 0; k < 4; k++) {
        __m512i v = sc[k];
        for (int i = 0; i < 4; i++) {
            __m512 s = _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * i), 24));
            T->ds[4 * k + i] = _mm512_mul_ps(d, s);
        }
    }
    for (int p = 0; p < 32; p++) {
        int h = p / 16, q = p % 16;
        __m512i P = ql[p], H = qh[8 * h + (q & 7)];
        /* low nibbles: qh bits 0-1 (q < 8) or 2-3; high nibbles: bits 4-5 or 6-7 */
        __m512i hl = q < 8 ? _mm512_slli_epi32(H, 4) : _mm512_slli_epi32(H, 2);
        __m512i hh = q < 8 ? H : _mm512_srli_epi32(H, 2);
        __m512i lo = _mm512_and_si512(P, m4), hi = _mm512_and_si512(_mm512_srli_epi32(P, 4), m4);
        T->w[32 * h + q] = _mm512_sub_epi8(_mm512_ternarylogic_epi32(lo, hl, m30, 0xf8), k32);
        T->w[32 * h + 16 + q] = _mm512_sub_epi8(_mm512_ternarylogic_epi32(hi, hh, m30, 0xf8), k32);
    }
}

/* Q2_K (§3.4): scales[16] (low nibble scale, high nibble min) at 0, qs[64] at 16 (element
 * 128h + 32s + l = bits 2s of byte 32h + l), d at 80, dmin at 82. */
ALWAYS_INLINE void tile_q2_k(gemm_tile *T, const uint8_t *x, size_t rb) {
    __m512i D[32];
    load_t(x, rb, 0, 84, D);
    load_t(x, rb, 1, 84, D + 16);
    __m512 d = fp16_lo(D[20]);
    T->dm = fp16_hi(D[20]);
    for (int j = 0; j < 16; j++) {
        __m512i v = byte_k(D[j / 4], j % 4);
        T->ds[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(0x0f))));
        T->mf[j] = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
    }
    const __m512i m3 = _mm512_set1_epi8(3);
    for (int p = 0; p < 16; p++) {
        __m512i P = D[4 + p];
        int h = p / 8, q = p % 8;
        for (int sh = 0; sh < 4; sh++)
            T->w[32 * h + 8 * sh + q] = _mm512_and_si512(sh ? _mm512_srli_epi32(P, 2 * sh) : P, m3);
    }
}

/* Q3_K (§3.4): hmask[32] at 0, qs[64] at 32, 12 scale bytes at 96 (16 signed 6-bit
 * scales), d at 108; value = low 2 bits + 4 * high bit - 4. */
ALWAYS_INLINE void tile_q3_k(gemm_tile *T, const uint8_t *x, size_t rb) {
    __m512i D[32];
    load_t(x, rb, 0, 110, D);
    load_t(x, rb, 1, 110, D + 16);
    __m512 d = fp16_lo(D[27]);
    __m512i B0 = D[24], B1 = D[25], B2 = D[26];
    for (int j = 0; j < 16; j++) {
        int jj = j % 8;
        __m512i lo = _mm512_and_si512(_mm512_srli_epi32(jj < 4 ? B0 : B1, 8 * (jj % 4) + (j < 8 ? 0 : 4)), _mm512_set1_epi32(0x0f));
        __m512i hi = _mm512_and_si512(_mm512_srli_epi32(B2, 8 * (j % 4) + 2 * (j / 4)), _mm512_set1_epi32(3));
        T->ds[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)),
                                                                        _mm512_set1_epi32(32))));
    }
    const __m512i m3 = _mm512_set1_epi8(3), m4 = _mm512_set1_epi8(4);
    for (int p = 0; p < 16; p++) {
        __m512i P = D[8 + p], H = D[p % 8];
        int h = p / 8, q = p % 8;
        for (int sh = 0; sh < 4; sh++) {
            __m512i lo = _mm512_and_si512(sh ? _mm512_srli_epi32(P, 2 * sh) : P, m3);
            int hb = 4 * h + sh; /* hmask bit, moved to bit 2 */
            __m512i hv = hb >= 2 ? _mm512_srli_epi32(H, hb - 2) : _mm512_slli_epi32(H, 2 - hb);
            T->w[32 * h + 8 * sh + q] = _mm512_sub_epi8(_mm512_ternarylogic_epi32(lo, hv, m4, 0xf8), m4);
        }
    }
}

/* Per-sub-block scale integers m_j (lanes = rows) and the row scales d: sets ds. */
ALWAYS_INLINE void iq_scales(gemm_tile *T, const int32_t m[8][16], const uint16_t dh[16], float k) {
    __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)dh)), _mm512_set1_ps(k));
    for (int j = 0; j < 8; j++) T->ds[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_loadu_si512(m[j])));
}

/* IQ2_XXS / IQ3_XXS (§3.5): d; IQ2_XXS: per 32-element sub-block 4 grid indices and a
 * word of signs and scale s; IQ3_XXS: 64 grid indices (4 values each), then per sub-block
 * that word. value = d * (2s + 1) / 8 (IQ2_XXS) or / 4 (IQ3_XXS) * grid * sign. */
ALWAYS_INLINE void tile_iq23_xxs(gemm_tile *T, const uint8_t *x, size_t rb, bool iq3) {
    int32_t m[8][16];
    uint16_t dh[16];
    __m512i R[4][16];
    iq_code_table C;
    iq_code_table_load(&C, iq3 ? quant_iq3xxs_codes : quant_iq2xxs_codes);
    for (int r = 0; r < 16; r++) {
        const uint8_t *blk = x + (size_t)r * rb;
        __m512i G[4];
        uint64_t sg[4];
        int32_t sc[8];
        if (iq3)
            iq3xxs_decode(blk, &C, G, sg, NULL, sc);
        else
            iq2xxs_decode(blk, &C, G, sg, NULL, sc);
        for (int c = 0; c < 4; c++)
            R[c][r] = _mm512_mask_sub_epi8(G[c], _load_mask64((__mmask64 *)&sg[c]), _mm512_setzero_si512(), G[c]);
        for (int j = 0; j < 8; j++) m[j][r] = sc[j];
        dh[r] = qk_rd16(blk);
    }
    for (int c = 0; c < 4; c++) {
        transpose16(R[c]);
        for (int i = 0; i < 16; i++) T->w[16 * c + i] = R[c][i];
    }
    iq_scales(T, m, dh, iq3 ? 0.25f : 0.125f);
}

/* IQ4_XS (§3.5): d, scales_h (2 bits x 8), scales_l (4 bits x 8), qs[128] nibbles into
 * the IQ4_NL value table; value = d * (ls - 32) * kvalue, tile code = kvalue. */
ALWAYS_INLINE void tile_iq4_xs(gemm_tile *T, const uint8_t *x, size_t rb) {
    __m512i D[48];
    load_t(x, rb, 0, 136, D);
    load_t(x, rb, 1, 136, D + 16);
    load_t(x, rb, 2, 136, D + 32);
    const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)quant_kvalues_iq4nl));
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 d = fp16_lo(D[0]);
    __m512i sh = _mm512_srli_epi32(D[0], 16), sl = D[1];
    for (int j = 0; j < 8; j++) {
        __m512i lo = _mm512_and_si512(_mm512_srli_epi32(sl, 4 * j), _mm512_set1_epi32(0x0f));
        __m512i hi = _mm512_and_si512(_mm512_srli_epi32(sh, 2 * j), _mm512_set1_epi32(3));
        __m512i ls = _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), _mm512_set1_epi32(32));
        T->ds[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(ls));
    }
    const __m512i *qs = D + 2;
    for (int p = 0; p < 32; p++) {
        int ib = p / 4, q = p % 4;
        __m512i P = qs[p];
        T->w[8 * ib + q] = _mm512_shuffle_epi8(lut, _mm512_and_si512(P, m4));
        T->w[8 * ib + 4 + q] = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi32(P, 4), m4));
    }
}

/* ws[j] = -128 * (sum of the codes of sub-block j), per row: the activations come packed
 * as unsigned bytes a + 128 (vpdpbusd multiplies unsigned by signed bytes), so each
 * integer sum starts from this and ends exactly at sum(code * a). */
ALWAYS_INLINE void code_sums(gemm_tile *T, int nsub) {
    const __m512i ones = _mm512_set1_epi8(1);
    const int gps = 64 / nsub;
    for (int j = 0; j < nsub; j++) {
        __m512i s = _mm512_setzero_si512();
        for (int g = 0; g < gps; g++) s = _mm512_dpbusd_epi32(s, ones, T->w[j * gps + g]);
        T->ws[j] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(s, 7));
    }
}

/* The dword at p in every lane, in a register. Why not the instruction's {1to16} memory
 * operand: on Cascade Lake vpdpbusd zmm issues on ports 0 and 5 (two per cycle) only with
 * register operands; a memory operand (broadcast or full) holds it near one per cycle
 * (measured). So each broadcast is loaded once and used by every panel of the tile set. */
static inline __m512i bcast_reg(const uint8_t *p) {
    __m512i v = _mm512_set1_epi32(*(const i32u *)p);
    __asm__("" : "+v"(v)); /* keeps it a register: no folding back into a memory operand */
    return v;
}
static inline __m512 bcast_reg_ps(const uint8_t *p) {
    __m512 v = _mm512_set1_ps(*(const f32u *)p);
    __asm__("" : "+v"(v));
    return v;
}

/* ---- the token loop: NP tiles (16 rows each) against 4 tokens of a packed group ---- */
/* Packed activations (quant_gemm_pack): per group of 8 tokens and block, f32 d[8], then
 * dword g of token u at 32 + 32g + 4u, then the f32 code sums of 16 and of 32 elements.
 * Registers: 4 NP int32 sums + 4 NP f32 block sums + NP codes + 1 broadcast (28 for NP = 3),
 * so the two vpdpbusd ports see 4 NP independent accumulators (latency ~5). */
ALWAYS_INLINE void tiles_tokens(const gemm_tile *T, int np, int nsub, bool mins, const uint8_t *P, int u0,
                                __m512 *acc, size_t acc_stride, const uint8_t *pf) {
    const int gps = 64 / nsub;
    __m512 bs[3][4];
    for (int p = 0; p < np; p++)
        for (int u = 0; u < 4; u++) bs[p][u] = _mm512_setzero_ps();
    const uint8_t *q = P + 32 + 4 * u0;
    for (int j = 0; j < nsub; j++) {
        /* the next token group's block (45 lines), a few lines per sub-block */
        if (pf)
            for (int l = j * 48 / nsub; l < (j + 1) * 48 / nsub; l++)
                _mm_prefetch((const char *)pf + 64 * l, _MM_HINT_T0);
        __m512i s[3][4];
        for (int p = 0; p < np; p++)
            for (int u = 0; u < 4; u++) s[p][u] = T[p].ws[j];
#pragma GCC unroll 8
        for (int g = 0; g < gps; g++, q += 32) {
            __m512i w[3];
            for (int p = 0; p < np; p++) w[p] = T[p].w[j * gps + g];
            for (int u = 0; u < 4; u++) {
                __m512i b = bcast_reg(q + 4 * u);
                for (int p = 0; p < np; p++) s[p][u] = _mm512_dpbusd_epi32(s[p][u], b, w[p]);
            }
        }
        for (int p = 0; p < np; p++)
            for (int u = 0; u < 4; u++) bs[p][u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[p][u]), T[p].ds[j], bs[p][u]);
    }
    /* the mins (Q2_K, Q4_K, Q5_K): sub-blocks of 16 elements pair with the sums of 16
     * activations, of 32 with those of 32; integer-valued f32 products and sums, exact */
    if (mins) {
        const uint8_t *bsum = P + (nsub == 16 ? QUANT_GEMM_PACK_BSUM16 : QUANT_GEMM_PACK_BSUM32) + 4 * u0;
        __m512 m[3][4];
        for (int p = 0; p < np; p++)
            for (int u = 0; u < 4; u++) m[p][u] = _mm512_setzero_ps();
        for (int i = 0; i < nsub; i++)
            for (int u = 0; u < 4; u++) {
                __m512 b = bcast_reg_ps(bsum + 32 * i + 4 * u);
                for (int p = 0; p < np; p++) m[p][u] = _mm512_fmadd_ps(T[p].mf[i], b, m[p][u]);
            }
        for (int p = 0; p < np; p++)
            for (int u = 0; u < 4; u++) bs[p][u] = _mm512_fnmadd_ps(m[p][u], T[p].dm, bs[p][u]);
    }
    for (int u = 0; u < 4; u++) {
        __m512 du = _mm512_set1_ps(*(const f32u *)(P + 4 * (u0 + u)));
        for (int p = 0; p < np; p++) acc[p * acc_stride + u] = _mm512_fmadd_ps(bs[p][u], du, acc[p * acc_stride + u]);
    }
}

/* NP panels (16 rows each, rb apart per row) against nt packed tokens; out[t * os + r]. */
ALWAYS_INLINE void panels(int np, int64_t n, const uint8_t *w, size_t rb, const uint8_t *packed, int64_t nt,
                          float *out, size_t os, int type) {
    gemm_tile T[3];
    __m512 acc[3 * TOK_CHUNK];
    const int bb = type == K2_TYPE_Q6_K ? 210 : type == K2_TYPE_Q5_K ? 176 : type == K2_TYPE_IQ2_XXS ? 66
                 : type == K2_TYPE_IQ3_XXS ? 98 : type == K2_TYPE_IQ4_XS ? 136 : type == K2_TYPE_Q2_K ? 84
                 : type == K2_TYPE_Q3_K ? 110 : 144;
    const int nsub = type == K2_TYPE_Q6_K || type == K2_TYPE_Q2_K || type == K2_TYPE_Q3_K ? 16 : 8;
    const bool mins = type == K2_TYPE_Q4_K || type == K2_TYPE_Q5_K || type == K2_TYPE_Q2_K;
    const int64_t nb = n / 256;
    const size_t group_bytes = (size_t)nb * QUANT_GEMM_PACK_BLOCK;
    for (int64_t t0 = 0; t0 < nt; t0 += TOK_CHUNK) {
        int64_t tc = nt - t0 < TOK_CHUNK ? nt - t0 : TOK_CHUNK;
        int64_t nh = (tc + 3) / 4; /* half groups of 4 tokens: a short last group runs 4, not 8 */
        for (int p = 0; p < np; p++)
            for (int64_t u = 0; u < 4 * nh; u++) acc[p * TOK_CHUNK + u] = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            for (int p = 0; p < np; p++) {
                const uint8_t *x = w + (size_t)(16 * p) * rb + (size_t)b * bb;
                switch (type) {
                case K2_TYPE_Q6_K: tile_q6_k(&T[p], x, rb); break;
                case K2_TYPE_Q2_K: tile_q2_k(&T[p], x, rb); break;
                case K2_TYPE_Q3_K: tile_q3_k(&T[p], x, rb); break;
                case K2_TYPE_IQ2_XXS: tile_iq23_xxs(&T[p], x, rb, false); break;
                case K2_TYPE_IQ3_XXS: tile_iq23_xxs(&T[p], x, rb, true); break;
                case K2_TYPE_IQ4_XS: tile_iq4_xs(&T[p], x, rb); break;
                default: tile_q45_k(&T[p], x, rb, type == K2_TYPE_Q5_K); break;
                }
                code_sums(&T[p], nsub);
            }
            const uint8_t *P = packed + (size_t)(t0 / 8) * group_bytes + (size_t)b * QUANT_GEMM_PACK_BLOCK;
            for (int64_t h = 0; h < nh; h++) {
                /* prefetch target: the next token group's block, after the last group the
                 * next block's first group (once per group: on its first half) */
                const uint8_t *pf = h % 2        ? NULL
                                    : h + 2 < nh ? P + (size_t)(h / 2 + 1) * group_bytes
                                    : b + 1 < nb ? P + QUANT_GEMM_PACK_BLOCK
                                                 : NULL;
                tiles_tokens(T, np, nsub, mins, P + (size_t)(h / 2) * group_bytes, 4 * (int)(h % 2), acc + 4 * h,
                             TOK_CHUNK, pf);
            }
        }
        for (int p = 0; p < np; p++)
            for (int64_t u = 0; u < tc; u++) _mm512_storeu_ps(out + (size_t)(t0 + u) * os + 16 * p, acc[p * TOK_CHUNK + u]);
    }
}

/* nr is a multiple of QUANT_GEMM_ROWS (callers run the rest with the row kernels). */
#define DEFINE_GEMM(name, TYPE)                                                                                      \
    static void gemm_##name(int64_t n, const void *w, size_t rb, int64_t nr, const void *packed, int64_t nt,        \
                            float *out, size_t os) {                                                                \
        int64_t r = 0;                                                                                               \
        for (; r + 3 * PANEL <= nr; r += 3 * PANEL)                                                                  \
            panels(3, n, (const uint8_t *)w + (size_t)r * rb, rb, packed, nt, out + r, os, TYPE);                   \
        if (nr - r == 2 * PANEL) panels(2, n, (const uint8_t *)w + (size_t)r * rb, rb, packed, nt, out + r, os, TYPE); \
        if (nr - r == PANEL) panels(1, n, (const uint8_t *)w + (size_t)r * rb, rb, packed, nt, out + r, os, TYPE);   \
    }

DEFINE_GEMM(q4_k, K2_TYPE_Q4_K)
DEFINE_GEMM(q5_k, K2_TYPE_Q5_K)
DEFINE_GEMM(q6_k, K2_TYPE_Q6_K)
DEFINE_GEMM(q2_k, K2_TYPE_Q2_K)
DEFINE_GEMM(q3_k, K2_TYPE_Q3_K)
DEFINE_GEMM(iq2_xxs, K2_TYPE_IQ2_XXS)
DEFINE_GEMM(iq3_xxs, K2_TYPE_IQ3_XXS)
DEFINE_GEMM(iq4_xs, K2_TYPE_IQ4_XS)

void quant_gemm_avx512(quant_kernel_table *t) {
    t->gemm[K2_TYPE_Q4_K] = gemm_q4_k;
    t->gemm[K2_TYPE_Q5_K] = gemm_q5_k;
    t->gemm[K2_TYPE_Q6_K] = gemm_q6_k;
    t->gemm[K2_TYPE_Q2_K] = gemm_q2_k;
    t->gemm[K2_TYPE_Q3_K] = gemm_q3_k;
    t->gemm[K2_TYPE_IQ2_XXS] = gemm_iq2_xxs;
    t->gemm[K2_TYPE_IQ3_XXS] = gemm_iq3_xxs;
    t->gemm[K2_TYPE_IQ4_XS] = gemm_iq4_xs;
}
#endif
