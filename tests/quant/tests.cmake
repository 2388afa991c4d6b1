# k2-quant-tool: a helper the Python tests of tests/quant drive to run k2's C code
# (dequantization, activation quantizers, dot kernels) on data they prepare.
add_executable(k2-quant-tool ${CMAKE_CURRENT_SOURCE_DIR}/quant/quant_tool.c)
target_link_libraries(k2-quant-tool PRIVATE k2test)
