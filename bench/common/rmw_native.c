/*
 * The reference the benchmarks hold ema_apply to: the same update,
 * s = s - (s - v) * om in place over the shadow, as the plain loop a user
 * would write, compiled with -O3 -march=native (bench.cmake; only this file
 * gets those flags, and -ffp-contract=off so it does the same three
 * operations as the library: the speed limit is the memory, not the math).
 */
#include "rmw_native.h"

void rmw_native_f32(float *restrict s, const float *restrict v, size_t n, float om) {
  for (size_t i = 0; i < n; i++) s[i] = s[i] - (s[i] - v[i]) * om;
}
