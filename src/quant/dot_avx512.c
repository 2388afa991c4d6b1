/* AVX-512 (F/BW/VL + VNNI) dot-product kernels (compiled with per-file ISA flags, see
 * module.cmake; only called after a run-time CPU check). */
#include "quant/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

void quant_kernels_avx512(quant_kernel_table *t) {
    (void)t;
}
#endif
