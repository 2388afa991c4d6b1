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

/* Row-wise scalar reference dequantization; n must be a multiple of the block size.
 * Returns false for types without a dequantizer. */
bool quant_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

#endif
