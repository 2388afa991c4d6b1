# tok_batch: a helper the Python differential tests drive (hex lines in, ids or text out).
add_executable(tok_batch ${CMAKE_CURRENT_LIST_DIR}/tok_batch.c)
target_link_libraries(tok_batch PRIVATE k2test)
