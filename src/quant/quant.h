/* quant/: the tensor type table, dequantization, activation quantizers and
 * dot-product kernels (spec/quant-types.md). */
#ifndef K2_QUANT_H
#define K2_QUANT_H

#include "base/base.h"

typedef struct quant_type_info {
    const char *name;
    int64_t block_size;   /* elements per block; 0 = removed id */
    int64_t block_bytes;  /* bytes per block */
    bool in_files;        /* may be stored in GGUF files (false for activation-only Q8_1/Q8_K) */
} quant_type_info;

/* NULL for ids >= K2_TYPE_COUNT. Removed ids return an entry with block_size 0. */
const quant_type_info *quant_type_info_get(uint32_t type);

/* ---- scalar conversions (§2) ---- */

/* Exact fp16 -> f32 (§2.1); NaN payloads are kept. */
float quant_fp16_to_f32(uint16_t h);
/* Exact bf16 -> f32 (§2.3). */
float quant_bf16_to_f32(uint16_t h);
/* MXFP4 block exponent: 2^(e-128) (§2.4). */
float quant_e8m0_to_f32_half(uint8_t e);

/* ---- dequantization (§3) ---- */

/* Row-wise scalar reference dequantization; n must be a multiple of the block size.
 * Bit-identical to gguf.quants.dequantize. Handles F32, F16, BF16, Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0, Q8_1, Q2_K..Q6_K, Q8_K, all IQ types, TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0,
 * Q2_0. Returns false for types without a dequantizer (the integer types, F64). */
bool quant_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Block-format helpers shared by the dequantizers and the dot kernels. */
/* §3.4.2: scale and min of sub-block j (0..7) from the 12-byte Q4_K/Q5_K packing. */
void quant_get_scale_min_k4(int j, const uint8_t *scales12, uint8_t *sc, uint8_t *m);
/* §3.4 Q3_K: the 16 signed scales (-32..31) from its 12-byte packing. */
void quant_q3_k_scales(const uint8_t *scales12, int8_t *sc);

/* ---- activation quantizers (§2.2-2.3, §4.2-4.4) ---- */

/* f32 -> fp16, round to nearest even (§2.2); f32 -> bf16 (§2.3). */
uint16_t quant_f32_to_fp16(float f);
uint16_t quant_f32_to_bf16(float f);

/* Each converts n f32 values (a whole number of blocks of the target type) into a row of
 * that type at y (k2_type_row_bytes(type, n) bytes, no alignment needed).
 * Q8_0/Q8_1 use the x86 rule of §4.2 (id = 127/amax, round half to even), which is what
 * llama.cpp on x86 does; the _ref variants use the portable reference rule (id = 1/d,
 * roundf). Q8_1 adds s = fp16(sum(qs) * d) (§4.3). Q8_K follows §4.4 (f32 d, possibly
 * negative; bsums; all-zero blocks give d = 0, zero codes and zero bsums). */
void quant_quantize_row_q8_0(const float *x, void *y, int64_t n);
void quant_quantize_row_q8_0_ref(const float *x, void *y, int64_t n);
void quant_quantize_row_q8_1(const float *x, void *y, int64_t n);
void quant_quantize_row_q8_1_ref(const float *x, void *y, int64_t n);
void quant_quantize_row_q8_k(const float *x, void *y, int64_t n);
void quant_quantize_row_bf16(const float *x, void *y, int64_t n);
void quant_quantize_row_f16(const float *x, void *y, int64_t n);
void quant_quantize_row_f32(const float *x, void *y, int64_t n);
/* By target type (F32, F16, BF16, Q8_0, Q8_1, Q8_K); false for any other type. */
bool quant_quantize_row(uint32_t type, const float *x, void *y, int64_t n);

/* ---- dot-product kernels and dispatch (§4.1, §4.5) ---- */

/* Converts an f32 activation row of n elements into the activation type. */
typedef void (*quant_quantize_fn)(const float *x, void *y, int64_t n);
/* *s = dot(one weight row w, one activation row a) over n elements; w and a need no
 * alignment; n is a whole number of blocks of both types. */
typedef void (*quant_vec_dot_fn)(int64_t n, float *s, const void *w, const void *a);
/* Many rows against many activation rows: out[t * out_stride + r] = dot(w row r, a row t)
 * for r < n_rows, t < n_tok; rows row_bytes / act_row_bytes apart. */
typedef void (*quant_matmul_fn)(int64_t n, const void *w, size_t row_bytes, int64_t n_rows, const void *a,
                                size_t act_row_bytes, int64_t n_tok, float *out, size_t out_stride);

/* Panel GEMM: out[t * out_stride + r] = dot(w row r, token t) for r < n_rows (a multiple of
 * QUANT_GEMM_ROWS), t < n_tok, from activations packed by quant_gemm_pack. Same integer
 * sums as vec_dot; the f32 combination runs in another order, so results agree with
 * vec_dot to ~1e-6 relative, not bit for bit. */
typedef void (*quant_gemm_fn)(int64_t n, const void *w, size_t row_bytes, int64_t n_rows, const void *packed,
                              int64_t n_tok, float *out, size_t out_stride);
#define QUANT_GEMM_ROWS 16
/* The GEMM runs up to three panels per set of tiles (each broadcast activation feeds
 * three weight vectors); row ranges in multiples of this run every panel at full speed. */
#define QUANT_GEMM_ROWS_SET 48
/* Packed Q8_K activations for the GEMM: per group of 8 tokens (the last one padded with
 * zero tokens) and per 256-element block, QUANT_GEMM_PACK_BLOCK bytes: f32 d of each token,
 * then qs dword g of token u at 32 + 32g + 4u as unsigned bytes (a + 128: the kernels
 * multiply them, unsigned, with signed weight values), then the sums of 16 activations
 * (the Q8_K bsums) as f32, sum i of token u at QUANT_GEMM_PACK_BSUM16 + 32i + 4u, then the
 * sums of 32 as f32 at QUANT_GEMM_PACK_BSUM32 + 32i + 4u. The sums are small integers,
 * exact in f32; the kernels multiply them with the sub-block mins of Q2_K/Q4_K/Q5_K in f32.
 * Groups are n/256 blocks long. */
#define QUANT_GEMM_PACK_BSUM16 2080
#define QUANT_GEMM_PACK_BSUM32 2592
#define QUANT_GEMM_PACK_BLOCK 2848
size_t quant_gemm_pack_bytes(int64_t n, int64_t n_tok);
/* Packs Q8_K rows of tokens [8 * g0, min(8 * g1, n_tok)) (act = token 0, act_row_bytes
 * apart) into groups g0..g1-1 of `packed` (the whole buffer, quant_gemm_pack_bytes). */
void quant_gemm_pack(int64_t n, const void *act, size_t act_row_bytes, int64_t n_tok, int64_t g0, int64_t g1,
                     void *packed);

typedef enum quant_cpu_level {
    QUANT_CPU_SCALAR = 0,  /* portable C, the §4.5 float order */
    QUANT_CPU_AVX2 = 1,    /* AVX2 + FMA + F16C */
    QUANT_CPU_AVX512 = 2,  /* AVX-512 F/BW/VL + VNNI (own kernels only where measured faster
                              than AVX2: Q2_K..Q6_K, Q8_0, IQ4_XS, IQ3_S, IQ1_M) */
    QUANT_CPU_LEVELS = 3
} quant_cpu_level;

typedef struct quant_type_traits {
    uint32_t type;                 /* the weight type */
    uint32_t vec_dot_type;         /* its activation type (§4.1) */
    quant_quantize_fn quantize_act;/* f32 row -> vec_dot_type row; SIMD versions (Q8_0, Q8_K) write
                                      exactly the bytes of the scalar quant_quantize_row_* */
    quant_vec_dot_fn vec_dot;      /* NULL when k2 has no kernel for this type */
    quant_cpu_level level;         /* level of the kernel in vec_dot (may be below the requested one) */
    quant_matmul_fn matmul;        /* multi-row kernel of that same level, or NULL (then quant_matmul
                                      loops over vec_dot); bit-identical to vec_dot per (row, token) */
    quant_gemm_fn gemm;            /* panel GEMM for batches of tokens, or NULL (see quant_gemm_fn) */
} quant_type_traits;

/* Traits at the active CPU level: the best level the CPU supports, lowered by the env
 * var K2_CPU=scalar|avx2|avx512 (read once). NULL for ids out of range or removed.
 * Thread-safe. Weight types with kernels: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * IQ4_NL, MXFP4, Q2_K..Q6_K, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
 * IQ4_XS, TQ1_0, TQ2_0. */
const quant_type_traits *quant_traits(uint32_t type);
/* Traits at an explicit level (clamped to what the CPU supports); for tests/benchmarks. */
const quant_type_traits *quant_traits_at(uint32_t type, quant_cpu_level level);
/* The active level, and the best level this CPU supports. */
quant_cpu_level quant_cpu_level_active(void);
quant_cpu_level quant_cpu_level_supported(void);
const char *quant_cpu_level_name(quant_cpu_level level);

/* out[r] = dot(weight row r, act_q) for r in [0, n_rows): w holds n_rows rows of
 * n_cols elements of wtype, row_bytes apart (>= k2_type_row_bytes(wtype, n_cols));
 * act_q is one activation row already converted with quant_traits(wtype)->quantize_act
 * (k2_type_row_bytes(vec_dot_type, n_cols) bytes). Single-threaded; callers split rows
 * across threads. Returns false (out untouched) when wtype has no kernel or n_cols is
 * not a whole number of blocks. */
bool quant_matvec(uint32_t wtype, const void *w, size_t row_bytes, int64_t n_rows, int64_t n_cols,
                  const void *act_q, float *out);

/* out[t * n_rows + r] = dot(weight row r, activation row t) for r < n_rows, t < n_tok:
 * act_q holds n_tok activation rows (quantize_act of quant_traits(wtype)), act_row_bytes
 * apart (>= k2_type_row_bytes(vec_dot_type, n_cols)). For prefill / batched decode: the
 * multi-token kernels load and unpack each weight block once for up to 4 tokens (AVX2:
 * Q4_K, Q5_K, Q6_K, Q8_0, IQ3_XXS, IQ3_S, IQ4_XS; AVX-512: Q2_K..Q6_K, Q8_0, IQ4_XS,
 * IQ3_S, IQ1_M); other types loop over vec_dot with the weight row kept in L1. Every result is bit-identical to quant_traits(wtype)->vec_dot on the same pair
 * (same integer sums, same f32 operation order). Single-threaded. Returns false (out
 * untouched) when wtype has no kernel, n_cols is not a whole number of blocks, or a
 * stride is too small. */
bool quant_matmul(uint32_t wtype, const void *w, size_t row_bytes, int64_t n_rows, int64_t n_cols,
                  const void *act_q, size_t act_row_bytes, int64_t n_tok, float *out);
/* quant_matmul through the panel GEMM where the type has one at that level (rows beyond the
 * last whole panel use the row kernels); false also when there is no GEMM. For tests and
 * benchmarks; results agree with vec_dot within float rounding, not bit for bit. */
bool quant_gemm_at(quant_cpu_level level, uint32_t wtype, const void *w, size_t row_bytes, int64_t n_rows,
                   int64_t n_cols, const void *act_q, size_t act_row_bytes, int64_t n_tok, float *out);
/* The same at an explicit CPU level (clamped like quant_traits_at); for tests/benchmarks. */
bool quant_matmul_at(quant_cpu_level level, uint32_t wtype, const void *w, size_t row_bytes, int64_t n_rows,
                     int64_t n_cols, const void *act_q, size_t act_row_bytes, int64_t n_tok, float *out);

#endif
