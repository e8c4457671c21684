# Benchmarks (bench/), included by the top-level CMakeLists.txt when
# EMA_BUILD_TOOLS is on. They link the static library through the public
# headers only; bench/common/ holds what they share (layouts, the native
# reference loop). bench_apply is built with optimization but never
# -march=native: the triad reference in it is baseline x86-64 C (SSE2
# autovectorized on x86-64), and libema picks its own kernels at run time.
# bench_ratio's reference loop alone (common/rmw_native.c) is built for this
# CPU, as issue 14 asks.
#
# The ctest smoke test only checks that the benchmark runs (shrunk layouts);
# speed claims live in bench/RESULTS.md, never in a test.

add_library(ema_bench_common STATIC ${CMAKE_CURRENT_SOURCE_DIR}/bench/common/layouts.c
  ${CMAKE_CURRENT_SOURCE_DIR}/bench/common/timing.c)
target_include_directories(ema_bench_common PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/bench)
target_compile_options(ema_bench_common PRIVATE ${EMA_WARNINGS} -O3)
target_compile_definitions(ema_bench_common PRIVATE _POSIX_C_SOURCE=200809L)

add_executable(bench_apply ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_apply.c)
target_link_libraries(bench_apply PRIVATE ema_static ema_bench_common Threads::Threads)
target_compile_options(bench_apply PRIVATE ${EMA_WARNINGS} -O3)

if(EMA_BUILD_TESTS)
  add_test(NAME bench_smoke COMMAND bench_apply --quick)
  set_tests_properties(bench_smoke PROPERTIES TIMEOUT 120 LABELS "bench")
endif()

# bench_bank: K averages in one pass against K separate contexts.
add_executable(bench_bank ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_bank.c)
target_link_libraries(bench_bank PRIVATE ema_static ema_bench_common)
target_compile_options(bench_bank PRIVATE ${EMA_WARNINGS} -O3)
target_compile_definitions(bench_bank PRIVATE _POSIX_C_SOURCE=200809L)
if(EMA_BUILD_TESTS)
  add_test(NAME bench_bank_smoke COMMAND bench_bank --quick)
  set_tests_properties(bench_bank_smoke PROPERTIES TIMEOUT 120 LABELS "bench")
endif()

# bench_ratio: ema_apply against an in-place loop compiled with -O3
# -march=native (common/rmw_native.c: the only file built for this CPU, and
# never part of the library), optionally next to a host OpenMP loop. OpenMP
# (libgomp with GCC) is used by this benchmark only, never by the library.
find_package(OpenMP COMPONENTS C)
if(OpenMP_C_FOUND)
  add_executable(bench_ratio ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_ratio.c
    ${CMAKE_CURRENT_SOURCE_DIR}/bench/common/rmw_native.c)
  set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/bench/common/rmw_native.c
    PROPERTIES COMPILE_OPTIONS "-march=native;-ffp-contract=off")
  target_link_libraries(bench_ratio PRIVATE ema_static ema_bench_common OpenMP::OpenMP_C Threads::Threads)
  target_compile_options(bench_ratio PRIVATE ${EMA_WARNINGS} -O3)
  if(EMA_BUILD_TESTS)
    add_test(NAME bench_ratio_smoke COMMAND bench_ratio --quick --neighbor omp --layout small)
    set_tests_properties(bench_ratio_smoke PROPERTIES TIMEOUT 120 LABELS "bench")
  endif()
endif()
include(${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_async.cmake)
