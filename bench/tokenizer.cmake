# Tokenizer throughput benchmark (driven by bench/tokenizer_bench.py).
add_executable(tok_bench ${CMAKE_CURRENT_LIST_DIR}/tok_bench.c)
target_link_libraries(tok_bench PRIVATE k2lib)
