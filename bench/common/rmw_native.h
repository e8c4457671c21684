/* In-place read-modify-write reference loop (rmw_native.c, -O3 -march=native). */
#ifndef EMA_BENCH_RMW_NATIVE_H
#define EMA_BENCH_RMW_NATIVE_H

#include <stddef.h>

/* s[i] = s[i] - (s[i] - v[i]) * om for i < n. */
void rmw_native_f32(float *restrict s, const float *restrict v, size_t n, float om);

#endif
