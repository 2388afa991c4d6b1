# The server reports the build's commit in system_fingerprint and llm_build_info.
execute_process(COMMAND git rev-parse HEAD WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}
                OUTPUT_VARIABLE K2_GIT_COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT K2_GIT_COMMIT)
  set(K2_GIT_COMMIT "0000000000")
endif()
set_source_files_properties(${CMAKE_SOURCE_DIR}/src/server/srv_main.c ${CMAKE_SOURCE_DIR}/src/server/srv_api.c
  PROPERTIES COMPILE_DEFINITIONS "K2_COMMIT=\"${K2_GIT_COMMIT}\"")
