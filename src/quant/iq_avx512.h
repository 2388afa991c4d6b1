/* Vector decoding of the IQ2_XXS / IQ3_XXS grids and sign/scale words (§3.5) for the
 * AVX-512 row kernels and GEMM tile builder; include only from files compiled with the
 * AVX-512 flags (module.cmake).
 *
 * Why: the grid entries used to be read with one scalar load per index (plus an index
 * load and the vector assembly), and the sign bytes were built with pdep and a parity
 * cascade per sub-block: ~270 instructions per IQ2_XXS block, so the row kernels ran at
 * ~2 GB/s, far below memory speed. Here the grid values are coded: each entry of either
 * grid becomes one 16-bit word of value codes (IQ2_XXS: 8 x 2 bits over {8, 25, 43};
 * IQ3_XXS: 4 x 3 bits over {4, 12, ..., 52, 62}), the 256-word code table lives in 8 zmm
 * registers, and 32 indices are looked up at once with 4 two-table word permutes; each
 * code word is then spread over its entry's bytes with a word permute and a variable
 * shift, and the codes become values through one byte shuffle. Sign bytes (7 bits + the
 * parity bit) and scales of 8 sub-blocks are computed in one ymm. */
#ifndef K2_QUANT_IQ_AVX512_H
#define K2_QUANT_IQ_AVX512_H

#include <immintrin.h>
#include <stdint.h>

/* Code words, index = grid index (filled by quant_iq_codes_init). IQ2_XXS: bits 2m of the
 * low byte = code of element 2m, bits 8 + 2m = code of element 2m + 1 (m = 0..3), so a
 * right shift by 2i leaves elements 2i and 2i + 1 in the low bits of the two bytes.
 * IQ3_XXS: bits 0-2 / 4-6 of the low byte = elements 0 / 2, bits 8-10 / 12-14 = 1 / 3. */
extern uint16_t quant_iq2xxs_codes[256];
extern uint16_t quant_iq3xxs_codes[256];
/* Builds both tables from the grids; idempotent, called under the dispatcher's once. */
void quant_iq_codes_init(void);

typedef struct iq_code_table {
    __m512i t[8]; /* entries 32k .. 32k + 31 */
} iq_code_table;

static inline void iq_code_table_load(iq_code_table *T, const uint16_t *codes) {
    for (int k = 0; k < 8; k++) T->t[k] = _mm512_loadu_si512(codes + 32 * k);
}

/* The code words of 32 word indices (each 0..255). Bits 6 and 7 pick the 64-entry
 * quarter (masks by vpmovw2m, which runs on port 0, not the busy port 5). */
static inline __m512i iq_codes32(const iq_code_table *T, __m512i idx) {
    __m512i r0 = _mm512_permutex2var_epi16(T->t[0], idx, T->t[1]);
    __m512i r1 = _mm512_permutex2var_epi16(T->t[2], idx, T->t[3]);
    __m512i r2 = _mm512_permutex2var_epi16(T->t[4], idx, T->t[5]);
    __m512i r3 = _mm512_permutex2var_epi16(T->t[6], idx, T->t[7]);
    __mmask32 b6 = _mm512_movepi16_mask(_mm512_slli_epi16(idx, 9));
    __mmask32 b7 = _mm512_movepi16_mask(_mm512_slli_epi16(idx, 8));
    return _mm512_mask_blend_epi16(b7, _mm512_mask_blend_epi16(b6, r0, r1), _mm512_mask_blend_epi16(b6, r2, r3));
}

/* From the sign/scale words of 8 consecutive sub-blocks (dword i = sub-block i: 4 x 7 sign
 * bits, scale s in bits 28-31): the sign bytes, 8 per sub-block pair c as the 64-bit
 * element mask sg[c] (bit 8g + k = sign of element k of group g; bit 7 of a byte = the
 * parity of its 7 bits), and the scale integers 2s + 1 of the 8 sub-blocks. */
static inline void iq_signs_scales_raw(__m256i sw, uint64_t sg[4], int32_t sc[8]) {
    /* pdep(sw, 0x7f7f7f7f) per dword: field g (bits 7g..7g+6) to byte g */
    __m256i t1 = _mm256_slli_epi32(sw, 1), t2 = _mm256_slli_epi32(sw, 2), t3 = _mm256_slli_epi32(sw, 3);
    __m256i lo = _mm256_ternarylogic_epi32(_mm256_set1_epi32(0x000000ff), sw, t1, 0xca);
    __m256i hi = _mm256_ternarylogic_epi32(_mm256_set1_epi32(0x00ff0000), t2, t3, 0xca);
    __m256i v = _mm256_and_si256(_mm256_ternarylogic_epi32(_mm256_set1_epi32(0x0000ffff), lo, hi, 0xca),
                                 _mm256_set1_epi32(0x7f7f7f7f));
    /* bit 0 of each byte = parity of the byte (bit 7 is 0; bits that cross bytes in the
     * dword shifts only reach bits above 0) */
    __m256i p = _mm256_xor_si256(v, _mm256_srli_epi32(v, 4));
    p = _mm256_xor_si256(p, _mm256_srli_epi32(p, 2));
    p = _mm256_xor_si256(p, _mm256_srli_epi32(p, 1));
    __m256i par7 = _mm256_slli_epi32(p, 7), bit7 = _mm256_set1_epi32((int)0x80808080u);
    _mm256_storeu_si256((__m256i *)(void *)sg, _mm256_ternarylogic_epi32(v, par7, bit7, 0xf8)); /* v | (par7 & bit7) */
    /* (sw >> 27) | 1 = 2s + 1 */
    _mm256_storeu_si256((__m256i *)(void *)sc, _mm256_or_si256(_mm256_srli_epi32(sw, 27), _mm256_set1_epi32(1)));
    /* Through memory on purpose: the sign masks are then loaded straight into mask
     * registers and the scales broadcast by loads; register moves (vpextrq, kmovq from a
     * general register, vpermd) would compete for the two vector ports (0 and 5 while
     * 512-bit code runs), which bound these kernels. */
    __asm__ volatile("" ::: "memory");
}

/* The same, with the scales as dword vectors per sub-block pair c (lanes 0-7: sub-block
 * 2c, lanes 8-15: 2c + 1), for dpwssd on a dpbusd result's low words. */
static inline void iq_signs_scales(__m256i sw, uint64_t sg[4], __m512i SC[4]) {
    int32_t sc[8];
    iq_signs_scales_raw(sw, sg, sc);
    for (int c = 0; c < 4; c++) SC[c] = _mm512_mask_set1_epi32(_mm512_set1_epi32(sc[2 * c]), 0xff00, sc[2 * c + 1]);
}

/* IQ2_XXS block x (66 bytes): the grid magnitudes of sub-block pair c in G[c] (element
 * order), their signs and scales as iq_signs_scales gives them, or with sc_raw the 8
 * scale integers there instead (SC untouched). */
static inline void iq2xxs_decode(const uint8_t *x, const iq_code_table *T, __m512i G[4], uint64_t sg[4], __m512i SC[4],
                                 int32_t *sc_raw) {
    __m512i z = _mm512_loadu_si512(x + 2); /* lane c: idx(2c) x4, sw(2c), idx(2c+1) x4, sw(2c+1) */
    const __m512i ictl = _mm512_broadcast_i32x4(
        _mm_setr_epi8(0, -128, 1, -128, 2, -128, 3, -128, 8, -128, 9, -128, 10, -128, 11, -128));
    __m512i codes = iq_codes32(T, _mm512_shuffle_epi8(z, ictl)); /* word 8c + k: entry k of pair c */
    __m256i sw = _mm512_castsi512_si256(
        _mm512_permutexvar_epi32(_mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15), z));
    if (sc_raw)
        iq_signs_scales_raw(sw, sg, sc_raw);
    else
        iq_signs_scales(sw, sg, SC);
    const __m512i shifts = _mm512_set1_epi64(0x0006000400020000LL);
    const __m512i m3 = _mm512_set1_epi16(0x0303);
    const __m512i vals = _mm512_broadcast_i32x4(_mm_setr_epi8(8, 25, 43, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
    /* word 4k + i <- entry k */
    const __m512i rep = _mm512_set_epi16(7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4, 3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1,
                                         1, 0, 0, 0, 0);
    for (int c = 0; c < 4; c++) {
        __m512i e = _mm512_permutexvar_epi16(_mm512_add_epi16(rep, _mm512_set1_epi16((short)(8 * c))), codes);
        G[c] = _mm512_shuffle_epi8(vals, _mm512_and_si512(_mm512_srlv_epi16(e, shifts), m3));
    }
}

/* IQ3_XXS block x (98 bytes): as iq2xxs_decode. */
static inline void iq3xxs_decode(const uint8_t *x, const iq_code_table *T, __m512i G[4], uint64_t sg[4], __m512i SC[4],
                                 int32_t *sc_raw) {
    /* word 16c' + k: entry k of pair 2h + c' */
    __m512i codes[2] = {iq_codes32(T, _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(x + 2)))),
                        iq_codes32(T, _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(x + 34))))};
    __m256i sw = _mm256_loadu_si256((const __m256i *)(const void *)(x + 66));
    if (sc_raw)
        iq_signs_scales_raw(sw, sg, sc_raw);
    else
        iq_signs_scales(sw, sg, SC);
    const __m512i shifts = _mm512_set1_epi32(0x00040000);
    const __m512i m7 = _mm512_set1_epi16(0x0707);
    const __m512i vals = _mm512_broadcast_i32x4(_mm_setr_epi8(4, 12, 20, 28, 36, 44, 52, 62, 0, 0, 0, 0, 0, 0, 0, 0));
    /* word 2k + i <- entry k */
    const __m512i rep = _mm512_set_epi16(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8, 7, 7, 6, 6, 5, 5, 4, 4,
                                         3, 3, 2, 2, 1, 1, 0, 0);
    for (int c = 0; c < 4; c++) {
        __m512i r = c & 1 ? _mm512_add_epi16(rep, _mm512_set1_epi16(16)) : rep;
        __m512i e = _mm512_permutexvar_epi16(r, codes[c >> 1]);
        G[c] = _mm512_shuffle_epi8(vals, _mm512_and_si512(_mm512_srlv_epi16(e, shifts), m7));
    }
}

#endif
