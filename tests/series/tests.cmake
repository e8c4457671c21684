# tests/series/tests.cmake: conformance of src/series with pandas' ewm().mean().
# Included by tests/CMakeLists.txt (so CMAKE_CURRENT_LIST_DIR is tests/series).
# ewm_filter is the C side; pandas_conformance.py drives it and compares with
# Debian's python3-pandas. Without pandas (or without Python) the test is
# skipped (exit code 77), not failed.
add_executable(series_ewm_filter ${CMAKE_CURRENT_LIST_DIR}/ewm_filter.c)
target_include_directories(series_ewm_filter PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_link_libraries(series_ewm_filter PRIVATE ema_static m)
target_compile_options(series_ewm_filter PRIVATE ${EMA_WARNINGS} -ffp-contract=off)
target_compile_definitions(series_ewm_filter PRIVATE _POSIX_C_SOURCE=200809L)

# Debian's interpreter first: that is where python3-pandas lives.
find_program(EMA_SERIES_PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT EMA_SERIES_PYTHON3)
  find_program(EMA_SERIES_PYTHON3 NAMES python3)
endif()
if(EMA_SERIES_PYTHON3)
  add_test(NAME series_pandas_conformance
    COMMAND ${EMA_SERIES_PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/pandas_conformance.py
            $<TARGET_FILE:series_ewm_filter>)
else()
  add_test(NAME series_pandas_conformance
    COMMAND series_ewm_filter --skip "no python3 found at configure time")
endif()
set_tests_properties(series_pandas_conformance PROPERTIES
  SKIP_RETURN_CODE 77 TIMEOUT 600 LABELS "series;python")
