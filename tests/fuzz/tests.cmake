# tests/fuzz/tests.cmake: the safetensors fuzzer (libFuzzer, EMA_FUZZ=ON with
# clang), its replay driver and corpus checks (always built, run by ctest),
# and the Python interop test of the safetensors writer (tests/python).
# Included from tests/CMakeLists.txt.

set(EMA_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})
# Only the safetensors layer (src/io/st_*.c and the src/common it uses), not the
# checkpoint code built on it.
file(GLOB EMA_IO_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/io/st_*.c ${PROJECT_SOURCE_DIR}/src/common/*.c)

# Replay: every corpus file through LLVMFuzzerTestOneInput, no libFuzzer needed.
add_executable(fuzz_replay_safetensors ${EMA_FUZZ_DIR}/replay.c ${EMA_FUZZ_DIR}/fuzz_safetensors.c)
add_executable(fuzz_corpus_check ${EMA_FUZZ_DIR}/corpus_check.c)
foreach(t fuzz_replay_safetensors fuzz_corpus_check)
  target_include_directories(${t} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${t} PRIVATE ema_static)
  target_compile_options(${t} PRIVATE ${EMA_WARNINGS})
  target_compile_definitions(${t} PRIVATE _POSIX_C_SOURCE=200809L)
endforeach()
add_test(NAME fuzz_replay_safetensors COMMAND fuzz_replay_safetensors ${EMA_FUZZ_DIR}/corpus)
add_test(NAME fuzz_corpus_check COMMAND fuzz_corpus_check ${EMA_FUZZ_DIR}/corpus)
set_tests_properties(fuzz_replay_safetensors fuzz_corpus_check PROPERTIES TIMEOUT 300)

# libFuzzer target: only the io sources, instrumented.
if(EMA_FUZZ)
  if(CMAKE_C_COMPILER_ID MATCHES "Clang")
    add_executable(fuzz_safetensors ${EMA_FUZZ_DIR}/fuzz_safetensors.c ${EMA_IO_SOURCES})
    target_include_directories(fuzz_safetensors PRIVATE
      ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/include)
    target_compile_definitions(fuzz_safetensors PRIVATE _POSIX_C_SOURCE=200809L EMA_STATIC_DEFINE)
    target_compile_options(fuzz_safetensors PRIVATE ${EMA_WARNINGS} -g -O1
      -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
    target_link_options(fuzz_safetensors PRIVATE -fsanitize=fuzzer,address,undefined)
  else()
    message(WARNING "EMA_FUZZ=ON needs clang (CC=clang); fuzz_safetensors is not built")
  endif()
endif()

# Python interop: the C writer's files read by an independent Python reader,
# and files written by Python read by the C reader.
add_executable(st_pyhelper ${PROJECT_SOURCE_DIR}/tests/python/st_helper.c)
target_include_directories(st_pyhelper PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_link_libraries(st_pyhelper PRIVATE ema_static)
target_compile_options(st_pyhelper PRIVATE ${EMA_WARNINGS})
target_compile_definitions(st_pyhelper PRIVATE _POSIX_C_SOURCE=200809L)
if(EXISTS /usr/bin/python3)
  add_test(NAME python_st_reader
    COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/python/test_st_reader.py
            $<TARGET_FILE:st_pyhelper> ${CMAKE_CURRENT_BINARY_DIR}/st_python)
else()
  add_test(NAME python_st_reader COMMAND sh -c "echo 'no /usr/bin/python3'; exit 77")
endif()
set_tests_properties(python_st_reader PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)

# Checkpoint loaders and the file API (fuzz_ckpt.c, one binary per mode):
# replayed over corpus_ckpt/ by ctest; libFuzzer builds with EMA_FUZZ=ON link
# the whole library, built with -fsanitize=fuzzer-no-link by run_bounded.sh.
set(EMA_CKPT_FUZZERS fuzz_load_buffer=1 fuzz_load_file=2 fuzz_file=3)
foreach(spec ${EMA_CKPT_FUZZERS})
  string(REPLACE "=" ";" parts ${spec})
  list(GET parts 0 name)
  list(GET parts 1 mode)
  add_executable(replay_${name} ${EMA_FUZZ_DIR}/replay.c ${EMA_FUZZ_DIR}/fuzz_ckpt.c)
  target_include_directories(replay_${name} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(replay_${name} PRIVATE ema_static)
  target_compile_options(replay_${name} PRIVATE ${EMA_WARNINGS})
  target_compile_definitions(replay_${name} PRIVATE _POSIX_C_SOURCE=200809L FUZZ_MODE=${mode})
  add_test(NAME fuzz_replay_${name} COMMAND replay_${name} ${EMA_FUZZ_DIR}/corpus_ckpt)
  set_tests_properties(fuzz_replay_${name} PROPERTIES TIMEOUT 300)
  if(EMA_FUZZ AND CMAKE_C_COMPILER_ID MATCHES "Clang")
    add_executable(${name} ${EMA_FUZZ_DIR}/fuzz_ckpt.c)
    target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src)
    target_link_libraries(${name} PRIVATE ema_static)
    target_compile_definitions(${name} PRIVATE _POSIX_C_SOURCE=200809L FUZZ_MODE=${mode})
    target_compile_options(${name} PRIVATE ${EMA_WARNINGS} -g -O1
      -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  endif()
endforeach()
