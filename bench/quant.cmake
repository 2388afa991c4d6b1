# Quant kernel throughput (GB/s of weight bytes per type and CPU level): quant_bench.
add_executable(quant_bench ${CMAKE_CURRENT_LIST_DIR}/quant_bench.c)
target_link_libraries(quant_bench PRIVATE k2lib m)
target_include_directories(quant_bench PRIVATE ${PROJECT_SOURCE_DIR}/src)
