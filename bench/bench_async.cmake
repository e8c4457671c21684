# bench_async: step time with no EMA, ema_apply and ema_apply_async around a
# compute-bound step (included by bench/bench.cmake).
add_executable(bench_async ${CMAKE_CURRENT_SOURCE_DIR}/bench/bench_async.c)
target_link_libraries(bench_async PRIVATE ema_static ema_bench_common)
target_compile_options(bench_async PRIVATE ${EMA_WARNINGS} -O3)
target_compile_definitions(bench_async PRIVATE _POSIX_C_SOURCE=200809L)
if(EMA_BUILD_TESTS)
  add_test(NAME bench_async_smoke COMMAND bench_async --quick)
  set_tests_properties(bench_async_smoke PROPERTIES TIMEOUT 120 LABELS "bench")
endif()
