# Benchmarks (bench/), included by the top-level CMakeLists.txt when
# EMA_BUILD_TOOLS is on. bench_apply links the static library through the
# public header only. It is built with optimization but never -march=native:
# the triad reference in it is baseline x86-64 C (SSE2 autovectorized on
# x86-64), and libema picks its own kernels at run time.
#
# The ctest smoke test only checks that the benchmark runs (shrunk layouts);
# speed claims live in bench/RESULTS.md, never in a test.

add_executable(bench_apply ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_apply.c)
target_link_libraries(bench_apply PRIVATE ema_static Threads::Threads)
target_compile_options(bench_apply PRIVATE ${EMA_WARNINGS} -O3)

if(EMA_BUILD_TESTS)
  add_test(NAME bench_smoke COMMAND bench_apply --quick)
  set_tests_properties(bench_smoke PROPERTIES TIMEOUT 120 LABELS "bench")
endif()

# bench_bank: K averages in one pass against K separate contexts.
add_executable(bench_bank ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_bank.c)
target_link_libraries(bench_bank PRIVATE ema_static)
target_compile_options(bench_bank PRIVATE ${EMA_WARNINGS} -O3)
target_compile_definitions(bench_bank PRIVATE _POSIX_C_SOURCE=200809L)
if(EMA_BUILD_TESTS)
  add_test(NAME bench_bank_smoke COMMAND bench_bank --quick)
  set_tests_properties(bench_bank_smoke PROPERTIES TIMEOUT 120 LABELS "bench")
endif()
