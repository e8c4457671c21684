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
