# Helper executables for the GGUF Python interop tests.
add_executable(gguf_write_sample ${CMAKE_CURRENT_LIST_DIR}/gguf_write_sample.c)
target_link_libraries(gguf_write_sample PRIVATE k2lib)
