/*
 * bench_async: what the EMA costs a training step, synchronous against
 * asynchronous, around a compute-bound step (a cache-resident single-
 * precision matrix multiply on the calling thread standing in for the
 * trainer's GEMMs), with GPT-2-small-sized parameters (148 tensors, 124M
 * float32). Modes, interleaved round by round in one run:
 *   none   the compute step alone
 *   sync   compute, then ema_apply (on ema_threads, the caller included)
 *   async  compute, then ema_apply_async: the capture (a copy of the
 *          parameters into staging) on the caller, the update on the
 *          context's thread, overlapping the next compute step
 *   staged ema_apply_async_staged with nothing captured (as when device-to-
 *          host copies fill the staging): only the update, off the
 *          critical path; what remains is its interference with compute
 * and reports the median step time of each, the ratios to none, and the
 * median time of the EMA call itself (for async: the capture, which stays
 * on the critical path by design: 8 of the 20 bytes an f32 parameter costs).
 *
 *   bench_async [--layout gpt2|small|...] [--threads N] [--steps S] [--rounds R]
 *               [--compute-ms MS] [--quick]
 */
#include <ema/ema.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/timing.h"

#include "common/layouts.h"

#define TRY(ctx, call)                                                      \
  do {                                                                      \
    ema_status st_ = (call);                                                \
    if (st_ != EMA_OK) {                                                    \
      fprintf(stderr, "bench_async: %s: %s\n", #call, ema_last_error(ctx)); \
      exit(1);                                                              \
    }                                                                       \
  } while (0)

enum { N = 128 };
static float ga[N * N], gb[N * N], gc[N * N];

/* One 128x128x128 multiply-accumulate (4 MFLOP), in L2. */
static void gemm_once(void) {
  for (int i = 0; i < N; i++)
    for (int k = 0; k < N; k++) {
      float x = ga[i * N + k];
      for (int j = 0; j < N; j++) gc[i * N + j] += x * gb[k * N + j];
    }
}

static void compute(int reps) {
  for (int r = 0; r < reps; r++) gemm_once();
}

/* The trainer's optimizer step touching every parameter (a small change). */
static void touch(float **p, const size_t *n, size_t count, int step) {
  for (size_t t = 0; t < count; t++) p[t][(size_t)step % n[t]] += 1e-3f;
}

int main(int argc, char **argv) {
  const char *lname = "gpt2";
  int threads = 1, steps = 6, rounds = 2, quick = 0;
  double compute_ms = 400;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--layout") && i + 1 < argc)
      lname = argv[++i];
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
      steps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
      rounds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--compute-ms") && i + 1 < argc)
      compute_ms = atof(argv[++i]);
    else if (!strcmp(argv[i], "--quick"))
      quick = 1;
    else {
      fprintf(stderr,
              "usage: bench_async [--layout L] [--threads N] [--steps S] [--rounds R] [--compute-ms MS] [--quick]\n");
      return 2;
    }
  }
  if (quick) {
    steps = 2;
    rounds = 1;
    compute_ms = 5;
  }
  const layout_def *def = find_layout(lname);
  if (!def) {
    fprintf(stderr, "bench_async: no layout '%s'\n", lname);
    return 2;
  }
  layout l = make_layout(def, quick);
  size_t count = l.count, total = layout_numel(&l);
  float **p = (float **)calloc(count, sizeof *p);
  size_t *n = (size_t *)calloc(count, sizeof *n);
  ema_ctx *ctx = NULL;
  TRY(ctx, ema_create(&ctx, 0.999));
  TRY(ctx, ema_set_threads(ctx, threads));
  for (size_t t = 0; t < count; t++) {
    n[t] = shape_numel(&l.shapes[t]);
    p[t] = (float *)malloc(n[t] * sizeof(float) + 4);
    for (size_t i = 0; i < n[t]; i++) p[t][i] = (float)(i % 97) * 0.01f;
    char name[32];
    snprintf(name, sizeof name, "p%zu", t);
    int64_t dim = (int64_t)n[t];
    TRY(ctx, ema_track(ctx, name, p[t], EMA_F32, 1, &dim));
  }
  for (int i = 0; i < N * N; i++) ga[i] = gb[i] = (float)(i % 13) * 0.1f;
  /* calibrate the compute step */
  double t0 = bench_now();
  compute(20);
  int reps = (int)(compute_ms / ((bench_now() - t0) * 1e3 / 20));
  if (reps < 1) reps = 1;
  TRY(ctx, ema_apply_async(ctx)); /* staging and the thread exist before timing */
  TRY(ctx, ema_wait(ctx));
  static const char *const names[4] = {"none", "sync", "async", "staged"};
  double *times[4], *calls[4];
  size_t nt[4] = {0, 0, 0, 0};
  for (int m = 0; m < 4; m++) times[m] = (double *)calloc((size_t)(steps * rounds), sizeof(double));
  for (int m = 0; m < 4; m++) calls[m] = (double *)calloc((size_t)(steps * rounds), sizeof(double));
  int step = 0;
  for (int r = 0; r < rounds; r++)
    for (int m = 0; m < 4; m++) {
      for (int s = 0; s < steps; s++) {
        double a = bench_now();
        compute(reps);
        touch(p, n, count, step++);
        double c = bench_now();
        if (m == 1) TRY(ctx, ema_apply(ctx));
        if (m == 2) TRY(ctx, ema_apply_async(ctx));
        if (m == 3) TRY(ctx, ema_apply_async_staged(ctx, NULL, NULL));
        calls[m][nt[m]] = bench_now() - c;
        times[m][nt[m]++] = bench_now() - a;
      }
      TRY(ctx, ema_wait(ctx)); /* the last async update belongs to this mode */
    }
  double med[4], cmed[4];
  for (int m = 0; m < 4; m++) {
    qsort(times[m], nt[m], sizeof(double), bench_cmp_double);
    qsort(calls[m], nt[m], sizeof(double), bench_cmp_double);
    med[m] = times[m][nt[m] / 2];
    cmed[m] = calls[m][nt[m] / 2];
  }
  printf("bench_async: layout %s (%zu tensors, %zu float32), ema threads %d, isa %s, compute %d x 4 MFLOP\n", lname,
         count, total, threads, ema_isa(), reps);
  for (int m = 0; m < 4; m++)
    printf("  %-6s median step %8.2f ms  ratio to none %.3f  (the EMA call itself: %.2f ms)\n", names[m], med[m] * 1e3,
           med[m] / med[0], cmed[m] * 1e3);
  ema_free(ctx);
  for (size_t t = 0; t < count; t++) free(p[t]);
  free(p);
  free(n);
  for (int m = 0; m < 4; m++) free(times[m]);
  for (int m = 0; m < 4; m++) free(calls[m]);
  free(l.shapes);
  return 0;
}
