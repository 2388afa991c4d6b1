add_executable(membw ${CMAKE_CURRENT_LIST_DIR}/membw.c)
target_compile_options(membw PRIVATE -O3)
