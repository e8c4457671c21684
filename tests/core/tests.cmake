# tests/core: one ctest test per test_*.c, linked against the static library
# with access to the internal headers (src/), as tests/unit.
file(GLOB EMA_CORE_TEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/test_*.c)
foreach(src ${EMA_CORE_TEST_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ema_static m)
  target_compile_options(${name} PRIVATE ${EMA_WARNINGS} -ffp-contract=off)
  target_compile_definitions(${name} PRIVATE _POSIX_C_SOURCE=200809L)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS core TIMEOUT 600)
endforeach()
