# tests/posthoc/tests.cmake: post-hoc EMA math (src/posthoc) against an
# independent numpy implementation. Included by tests/CMakeLists.txt.
# posthoc_driver is a small C front end that reads requests on stdin;
# reference.py generates random setups, runs the driver and compares
# (tolerances are documented at the top of reference.py). The test is
# skipped (status 77) when the Python it runs has no numpy; set
# EMA_POSTHOC_PYTHON to choose the interpreter (default: python3, /usr/bin
# first, where Debian's python3-numpy lives).

add_executable(posthoc_driver ${CMAKE_CURRENT_LIST_DIR}/posthoc_driver.c)
target_include_directories(posthoc_driver PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_link_libraries(posthoc_driver PRIVATE ema_static m)
target_compile_options(posthoc_driver PRIVATE ${EMA_WARNINGS} -ffp-contract=off)
target_compile_definitions(posthoc_driver PRIVATE _POSIX_C_SOURCE=200809L)

find_program(EMA_POSTHOC_PYTHON NAMES python3 HINTS /usr/bin)
if(EMA_POSTHOC_PYTHON)
  add_test(NAME posthoc_numpy
    COMMAND ${EMA_POSTHOC_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/reference.py
            $<TARGET_FILE:posthoc_driver>)
  set_tests_properties(posthoc_numpy PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
else()
  message(STATUS "posthoc: no python3 found, the numpy comparison test is not registered")
endif()
