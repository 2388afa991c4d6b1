# AVX2 attention kernels (chosen at run time after a CPU check). No -mfma and no FP
# contraction: the kernels must give the same bits as the portable C loops.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/attn_avx2.c
    PROPERTIES COMPILE_OPTIONS "-O3;-mavx2;-mf16c;-ffp-contract=off")
endif()
# AVX-512 + FMA attention loops for fast mode only (they round differently).
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/attn_avx512.c
    PROPERTIES COMPILE_OPTIONS "-O3;-mavx2;-mfma;-mf16c;-mavx512f")
endif()
