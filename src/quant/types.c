/* The ggml type table, spec/quant-types.md §1. Removed ids keep block size 0. */
#include "quant/quant.h"

static const quant_type_info TYPES[K2_TYPE_COUNT] = {
    [0] = {"F32", 1, 4, true},       [1] = {"F16", 1, 2, true},
    [2] = {"Q4_0", 32, 18, true},    [3] = {"Q4_1", 32, 20, true},
    [4] = {"Q4_2", 0, 0, false},     [5] = {"Q4_3", 0, 0, false},
    [6] = {"Q5_0", 32, 22, true},    [7] = {"Q5_1", 32, 24, true},
    [8] = {"Q8_0", 32, 34, true},    [9] = {"Q8_1", 32, 36, false},
    [10] = {"Q2_K", 256, 84, true},  [11] = {"Q3_K", 256, 110, true},
    [12] = {"Q4_K", 256, 144, true}, [13] = {"Q5_K", 256, 176, true},
    [14] = {"Q6_K", 256, 210, true}, [15] = {"Q8_K", 256, 292, false},
    [16] = {"IQ2_XXS", 256, 66, true}, [17] = {"IQ2_XS", 256, 74, true},
    [18] = {"IQ3_XXS", 256, 98, true}, [19] = {"IQ1_S", 256, 50, true},
    [20] = {"IQ4_NL", 32, 18, true},   [21] = {"IQ3_S", 256, 110, true},
    [22] = {"IQ2_S", 256, 82, true},   [23] = {"IQ4_XS", 256, 136, true},
    [24] = {"I8", 1, 1, true},       [25] = {"I16", 1, 2, true},
    [26] = {"I32", 1, 4, true},      [27] = {"I64", 1, 8, true},
    [28] = {"F64", 1, 8, true},      [29] = {"IQ1_M", 256, 56, true},
    [30] = {"BF16", 1, 2, true},
    [31] = {"Q4_0_4_4", 0, 0, false}, [32] = {"Q4_0_4_8", 0, 0, false},
    [33] = {"Q4_0_8_8", 0, 0, false},
    [34] = {"TQ1_0", 256, 54, true}, [35] = {"TQ2_0", 256, 66, true},
    [36] = {"IQ4_NL_4_4", 0, 0, false}, [37] = {"IQ4_NL_4_8", 0, 0, false},
    [38] = {"IQ4_NL_8_8", 0, 0, false},
    [39] = {"MXFP4", 32, 17, true},  [40] = {"NVFP4", 64, 36, true},
    [41] = {"Q1_0", 128, 18, true},  [42] = {"Q2_0", 64, 18, true},
};

const quant_type_info *quant_type_info_get(uint32_t type) {
    return type < K2_TYPE_COUNT ? &TYPES[type] : NULL;
}

const char *k2_type_name(uint32_t type) {
    const quant_type_info *t = quant_type_info_get(type);
    return t && t->block_size ? t->name : NULL;
}

int64_t k2_type_block_size(uint32_t type) {
    const quant_type_info *t = quant_type_info_get(type);
    return t ? t->block_size : 0;
}

int64_t k2_type_block_bytes(uint32_t type) {
    const quant_type_info *t = quant_type_info_get(type);
    return t ? t->block_bytes : 0;
}

bool k2_type_is_valid(uint32_t type) {
    const quant_type_info *t = quant_type_info_get(type);
    return t && t->block_size > 0;
}

int64_t k2_type_row_bytes(uint32_t type, int64_t n) {
    const quant_type_info *t = quant_type_info_get(type);
    if (!t || t->block_size <= 0 || n < 0 || n % t->block_size) return -1;
    int64_t bytes;
    if (__builtin_mul_overflow(n / t->block_size, t->block_bytes, &bytes)) return -1;
    return bytes;
}

k2_status k2_dequantize(uint32_t type, const void *src, float *dst, int64_t n, k2_error *err) {
    const quant_type_info *t = quant_type_info_get(type);
    if (!t || t->block_size <= 0) return k2_err(err, K2_EINVAL, "tensor type id %u is unknown or removed", type);
    if (n < 0 || n % t->block_size)
        return k2_err(err, K2_EINVAL, "%lld elements is not a whole number of %s blocks of %lld", (long long)n, t->name, (long long)t->block_size);
    if (!quant_dequantize_row(type, src, dst, n))
        return k2_err(err, K2_EUNSUPPORTED, "dequantization of %s is not supported", t->name);
    return K2_OK;
}
