/* gguf/: GGUF read/write, metadata access, shard sets. The API is public
 * (include/k2.h, "GGUF files"); this header only gathers the includes. */
#ifndef K2_GGUF_H
#define K2_GGUF_H

#include "base/base.h"
#include "quant/quant.h"

/* Bytes of one scalar metadata value of type t; 0 for strings, arrays and unknown types. */
uint64_t gguf_scalar_size(uint32_t t);

#endif
