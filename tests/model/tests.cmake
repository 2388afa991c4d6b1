# make_variants: writes tiny deepseek2 variant models (random weights) with k2's GGUF writer;
# test_variants.py runs it into a temporary directory and compares k2 with the NumPy oracle.
add_executable(make_variants ${CMAKE_CURRENT_LIST_DIR}/make_variants.c)
target_link_libraries(make_variants PRIVATE k2test m)
set_target_properties(make_variants PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
