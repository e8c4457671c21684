/*
 * bench_bank: an EMA bank of K averages updated in one pass, against K
 * separate contexts updated one after the other, on the same parameters, in
 * the same run (ratios, not absolute times, are what this reports).
 *
 *   bench_bank [--params N] [--tensors T] [--k K] [--threads 1,2] [--reps R] [--quick]
 *
 * Bytes moved per float32 parameter: one pass reads the parameter once and
 * each average's shadow once and writes it once: 4 + 8K; K separate updates
 * move 12K. The memory-traffic bound on the ratio is therefore
 * (4 + 8K) / 12K (0.78 for K = 3).
 */
#include <ema/ema.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/timing.h"

#define TRY(ctx, call)                                                     \
  do {                                                                     \
    ema_status st_ = (call);                                               \
    if (st_ != EMA_OK) {                                                   \
      fprintf(stderr, "bench_bank: %s: %s\n", #call, ema_last_error(ctx)); \
      exit(1);                                                             \
    }                                                                      \
  } while (0)

int main(int argc, char **argv) {
  size_t params = 25557032, tensors = 161; /* ResNet-50's parameter count, in 161 tensors */
  int k = 3, reps = 11;
  int threads[8] = {1, 2}, n_threads = 2;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--params") && i + 1 < argc)
      params = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--tensors") && i + 1 < argc)
      tensors = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--k") && i + 1 < argc)
      k = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--quick")) {
      params = 1 << 20;
      reps = 3;
    } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      n_threads = 0;
      for (char *p = strtok(argv[++i], ","); p && n_threads < 8; p = strtok(NULL, ",")) threads[n_threads++] = atoi(p);
    } else {
      fprintf(stderr, "usage: bench_bank [--params N] [--tensors T] [--k K] [--threads 1,2] [--reps R] [--quick]\n");
      return 2;
    }
  }
  if (k < 2 || k > EMA_MAX_AVERAGES || tensors < 1 || params < tensors || reps < 1) {
    fprintf(stderr, "bench_bank: bad arguments\n");
    return 2;
  }
  float *w = (float *)malloc(params * sizeof *w);
  if (!w) return 1;
  for (size_t i = 0; i < params; i++) w[i] = (float)(i % 1000) * 1e-3f;
  ema_schedule sch[EMA_MAX_AVERAGES];
  for (int j = 0; j < k; j++) {
    ema_schedule_init(&sch[j], j % 2 ? EMA_SCHEDULE_POWER : EMA_SCHEDULE_CONSTANT);
    sch[j].decay = j == 0 ? 0.999 : 0.9999;
    sch[j].sigma_rel = j == 1 ? 0.05 : 0.10;
  }
  printf("libema %s, kernels %s; %zu float32 params in %zu tensors, K = %d averages; median of %d\n",
         ema_version_string(), ema_isa(), params, tensors, k, reps);
  printf("threads  bank ms  separate ms  ratio  traffic bound\n");
  for (int ti = 0; ti < n_threads; ti++) {
    ema_ctx *bank = NULL, *sep[EMA_MAX_AVERAGES] = {NULL};
    TRY(bank, ema_create(&bank, 0.999));
    TRY(bank, ema_set_schedule(bank, &sch[0]));
    TRY(bank, ema_set_threads(bank, threads[ti]));
    for (int j = 1; j < k; j++) {
      char name[16];
      snprintf(name, sizeof name, "avg%d", j);
      TRY(bank, ema_bank_add(bank, name, &sch[j], NULL));
    }
    for (int j = 0; j < k; j++) {
      TRY(sep[j], ema_create(&sep[j], 0.999));
      TRY(sep[j], ema_set_schedule(sep[j], &sch[j]));
      TRY(sep[j], ema_set_threads(sep[j], threads[ti]));
    }
    size_t per = params / tensors;
    for (size_t t = 0; t < tensors; t++) {
      char name[32];
      snprintf(name, sizeof name, "t%zu", t);
      int64_t n = (int64_t)(t + 1 == tensors ? params - per * t : per);
      TRY(bank, ema_track(bank, name, w + per * t, EMA_F32, 1, &n));
      for (int j = 0; j < k; j++) TRY(sep[j], ema_track(sep[j], name, w + per * t, EMA_F32, 1, &n));
    }
    double *tb = (double *)malloc((size_t)reps * sizeof *tb), *ts = (double *)malloc((size_t)reps * sizeof *ts);
    int64_t step = 1;
    for (int r = -2; r < reps; r++, step++) { /* two warm-up rounds */
      double t0 = bench_now();
      TRY(bank, ema_update(bank, step));
      double t1 = bench_now();
      for (int j = 0; j < k; j++) TRY(sep[j], ema_update(sep[j], step));
      double t2 = bench_now();
      if (r >= 0) {
        tb[r] = t1 - t0;
        ts[r] = t2 - t1;
      }
    }
    /* the bank must agree with the separate contexts bit for bit */
    for (int j = 0; j < k; j++)
      if (memcmp(ema_bank_average(bank, "t0", (size_t)j, NULL), ema_average(sep[j], "t0", NULL), per * 4) != 0) {
        fprintf(stderr, "bench_bank: average %d of the bank differs from its separate context\n", j);
        return 1;
      }
    double *ratio = (double *)malloc((size_t)reps * sizeof *ratio);
    for (int r = 0; r < reps; r++) ratio[r] = tb[r] / ts[r];
    qsort(tb, (size_t)reps, sizeof *tb, bench_cmp_double);
    qsort(ts, (size_t)reps, sizeof *ts, bench_cmp_double);
    qsort(ratio, (size_t)reps, sizeof *ratio, bench_cmp_double);
    printf("%7d  %7.2f  %11.2f  %5.3f  %5.3f\n", threads[ti], 1e3 * tb[reps / 2], 1e3 * ts[reps / 2], ratio[reps / 2],
           (4.0 + 8.0 * k) / (12.0 * k));
    free(tb);
    free(ts);
    free(ratio);
    ema_free(bank);
    for (int j = 0; j < k; j++) ema_free(sep[j]);
  }
  printf("ratio = median over repetitions of bank time / separate time, measured back to back\n");
  free(w);
  return 0;
}
