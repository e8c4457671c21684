/*
 * Timing helpers shared by the benchmarks (bench/common/timing.c).
 */
#ifndef EMA_BENCH_TIMING_H
#define EMA_BENCH_TIMING_H

/* Seconds on the monotonic clock. */
double bench_now(void);

/* qsort comparator for doubles (ascending), for medians. */
int bench_cmp_double(const void *a, const void *b);

#endif
