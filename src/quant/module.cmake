# Per-file ISA flags for the SIMD kernels of src/quant; dispatch.c picks them at run time
# (__builtin_cpu_supports), so the rest of the library stays baseline x86-64.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/dot_avx2.c
    PROPERTIES COMPILE_OPTIONS "-O3;-mavx2;-mfma;-mf16c")
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/dot_avx512.c ${CMAKE_CURRENT_LIST_DIR}/gemm_avx512.c
    PROPERTIES COMPILE_OPTIONS "-O3;-mavx2;-mfma;-mf16c;-mbmi2;-mavx512f;-mavx512bw;-mavx512vl;-mavx512vnni")
endif()
# clang with ASan and UBSan together spends over ten minutes optimising the GEMM's unrolled
# tile loops (either sanitizer alone: seconds), so the fuzz build keeps ASan only there.
if(CMAKE_C_COMPILER_ID MATCHES "Clang" AND CMAKE_BUILD_TYPE STREQUAL "Sanitize")
  set_property(SOURCE ${CMAKE_CURRENT_LIST_DIR}/gemm_avx512.c APPEND PROPERTY COMPILE_OPTIONS "-fno-sanitize=undefined")
endif()
