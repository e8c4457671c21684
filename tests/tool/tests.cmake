# tests/tool/tests.cmake: tests of the `ema` command-line tool (tools/ema/).
# Included by tests/CMakeLists.txt (CMAKE_CURRENT_LIST_DIR is tests/tool).
#
# tool_fixture (public API only) writes the checkpoints and post-hoc snapshots
# the tests read. The tests are Python scripts run by Debian's python3 (/usr/bin
# first: python3-pandas and python3-numpy live there); each takes the ema
# binary as its first argument. A test whose oracle is missing (pandas, numpy,
# chromium) exits 77 and is reported as skipped.

add_executable(tool_fixture ${CMAKE_CURRENT_LIST_DIR}/tool_fixture.c)
target_link_libraries(tool_fixture PRIVATE ema_static m)
target_compile_options(tool_fixture PRIVATE ${EMA_WARNINGS})

# The tool's own helpers (tools/ema/cli.c, csv.c, temperatures.c), tested directly in C.
add_executable(test_tool_units ${CMAKE_CURRENT_LIST_DIR}/test_tool_units.c
  ${PROJECT_SOURCE_DIR}/tools/ema/cli.c ${PROJECT_SOURCE_DIR}/tools/ema/csv.c
  ${PROJECT_SOURCE_DIR}/tools/ema/temperatures.c)
target_include_directories(test_tool_units PRIVATE ${PROJECT_SOURCE_DIR}/tools/ema ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(test_tool_units PRIVATE ema_static m)
target_compile_options(test_tool_units PRIVATE ${EMA_WARNINGS})
target_compile_definitions(test_tool_units PRIVATE _POSIX_C_SOURCE=200809L)
add_test(NAME tool_units COMMAND test_tool_units)
set_tests_properties(tool_units PROPERTIES TIMEOUT 300 LABELS "tool")

find_program(EMA_TOOL_PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT EMA_TOOL_PYTHON3)
  find_program(EMA_TOOL_PYTHON3 NAMES python3)
endif()

if(NOT TARGET ema)
  message(STATUS "tests/tool: no ema target (EMA_BUILD_TOOLS=OFF?): tool tests not registered")
elseif(NOT EMA_TOOL_PYTHON3)
  message(STATUS "tests/tool: no python3 found: tool tests not registered")
else()
  set(EMA_TOOL_TESTS cli demo smooth inspect_extract inspect_scale escaping posthoc bench svg_render)
  foreach(t ${EMA_TOOL_TESTS})
    add_test(NAME tool_${t}
      COMMAND ${EMA_TOOL_PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/test_${t}.py $<TARGET_FILE:ema>
              --fixture $<TARGET_FILE:tool_fixture>
              --st-reader ${PROJECT_SOURCE_DIR}/tests/python
              --example $<$<TARGET_EXISTS:train_mlp>:$<TARGET_FILE:train_mlp>>
              --bench $<$<TARGET_EXISTS:bench_apply>:$<TARGET_FILE:bench_apply>>)
    set_tests_properties(tool_${t} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS "tool")
  endforeach()
  # chromium is heavy and not sanitizer-instrumented: no need to run it twice
  set_tests_properties(tool_svg_render PROPERTIES LABELS "tool;no-sanitize")
endif()

# The tool's fuzz target (tests/fuzz/fuzz_tool_cli.c): the command functions
# driven in-process with fuzzed argv and files. Its replay over
# tests/fuzz/corpus_tool runs in every build; the libFuzzer binary is built
# with EMA_FUZZ=ON and clang, over an instrumented copy of the library.
file(GLOB EMA_TOOL_CMD_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tools/ema/*.c)
list(REMOVE_ITEM EMA_TOOL_CMD_SOURCES ${PROJECT_SOURCE_DIR}/tools/ema/main.c)
set(EMA_TOOL_FUZZ_DIR ${PROJECT_SOURCE_DIR}/tests/fuzz)
function(ema_tool_fuzz_flags t)
  target_include_directories(${t} PRIVATE ${PROJECT_SOURCE_DIR}/tools/ema ${PROJECT_SOURCE_DIR}/examples)
  target_compile_options(${t} PRIVATE ${EMA_WARNINGS})
  target_compile_definitions(${t} PRIVATE _POSIX_C_SOURCE=200809L EMA_TOOL_BUILD_DIR="${CMAKE_BINARY_DIR}")
endfunction()
add_executable(fuzz_replay_tool_cli ${EMA_TOOL_FUZZ_DIR}/replay.c ${EMA_TOOL_FUZZ_DIR}/fuzz_tool_cli.c
  ${EMA_TOOL_CMD_SOURCES})
ema_tool_fuzz_flags(fuzz_replay_tool_cli)
target_link_libraries(fuzz_replay_tool_cli PRIVATE ema_static m)
add_test(NAME fuzz_replay_tool_cli COMMAND fuzz_replay_tool_cli ${EMA_TOOL_FUZZ_DIR}/corpus_tool)
set_tests_properties(fuzz_replay_tool_cli PROPERTIES TIMEOUT 300 LABELS "tool;fuzz")
if(EMA_FUZZ AND CMAKE_C_COMPILER_ID MATCHES "Clang")
  # the library's sources, instrumented too (the AVX2 kernels left out: their
  # flags are set in the top-level directory; dispatch then offers ref only)
  set(EMA_TOOL_FUZZ_LIB ${EMA_SOURCES})
  list(FILTER EMA_TOOL_FUZZ_LIB EXCLUDE REGEX "/kernels/x86/|/kernels/avx")
  add_executable(fuzz_tool_cli ${EMA_TOOL_FUZZ_DIR}/fuzz_tool_cli.c ${EMA_TOOL_CMD_SOURCES} ${EMA_TOOL_FUZZ_LIB})
  ema_tool_fuzz_flags(fuzz_tool_cli)
  target_include_directories(fuzz_tool_cli PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
  target_compile_definitions(fuzz_tool_cli PRIVATE EMA_STATIC_DEFINE EMA_BUILDING_LIBRARY)
  target_compile_options(fuzz_tool_cli PRIVATE -g -O1 -ffp-contract=off
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(fuzz_tool_cli PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_tool_cli PRIVATE Threads::Threads m)
endif()
