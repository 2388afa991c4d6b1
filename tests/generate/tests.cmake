# sample_tool: drives k2_sampler from JSON lines (tests/generate/test_sampling.py).
add_executable(sample_tool ${CMAKE_CURRENT_LIST_DIR}/sample_tool.c)
target_link_libraries(sample_tool PRIVATE k2test)
