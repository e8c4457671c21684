# Kernel tests (tests/kernels/): every ISA table against the scalar reference,
# the conversions, and the threaded runs across ISAs and thread counts. Each
# test_*.c here is one ctest test, built like the unit tests (static library,
# internal headers from src/).
file(GLOB EMA_KERNEL_TEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/test_*.c)
foreach(src ${EMA_KERNEL_TEST_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE ema_static m)
  target_compile_options(${name} PRIVATE ${EMA_WARNINGS} -ffp-contract=off)
  target_compile_definitions(${name} PRIVATE _POSIX_C_SOURCE=200809L)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT 600 LABELS kernels)
endforeach()
