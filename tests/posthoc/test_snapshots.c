/*
 * Snapshots of a power-function bank and post-hoc synthesis from them, end
 * to end against an average tracked directly.
 */
#include <ema/ema.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

/* Snapshots of two power-function averages, then post-hoc synthesis of a
   third sigma_rel that was also tracked directly. */
static void test_snapshots_posthoc(const char *dir) {
  enum { N = 64, STEPS = 2000, EVERY = 50 };
  float w[N];
  int64_t n = N;
  ema_schedule s05, s10, s07;
  ema_schedule_init(&s05, EMA_SCHEDULE_POWER);
  s05.sigma_rel = 0.05;
  ema_schedule_init(&s10, EMA_SCHEDULE_POWER);
  s10.sigma_rel = 0.10;
  ema_schedule_init(&s07, EMA_SCHEDULE_POWER);
  s07.sigma_rel = 0.07;
  ema_ctx *ctx = NULL;
  CHECK(ema_create(&ctx, 0.9) == EMA_OK);
  CHECK_ST(ctx, ema_set_schedule(ctx, &s05), EMA_OK);
  CHECK_ST(ctx, ema_bank_add(ctx, "s10", &s10, NULL), EMA_OK);
  CHECK_ST(ctx, ema_bank_add(ctx, "s07", &s07, NULL), EMA_OK);
  for (int i = 0; i < N; i++) w[i] = 0;
  CHECK_ST(ctx, ema_track(ctx, "w", w, EMA_F32, 1, &n), EMA_OK);
  double t[2 * (STEPS / EVERY)], gam[2 * (STEPS / EVERY)];
  static float snaps[2 * (STEPS / EVERY)][N];
  size_t ns = 0;
  uint64_t r = 1;
  for (int64_t step = 1; step <= STEPS; step++) {
    for (int i = 0; i < N; i++) {
      r = r * 6364136223846793005ull + 1442695040888963407ull;
      w[i] = (float)(sin((double)step * 0.002 * (i + 1)) + (double)(r >> 40) / 16777216.0 - 0.5);
    }
    CHECK_ST(ctx, ema_update(ctx, step), EMA_OK);
    if (step % EVERY == 0) {
      for (size_t k = 0; k < 2; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/snap_%zu_%06lld.safetensors", dir, k, (long long)step);
        CHECK_ST(ctx, ema_snapshot(ctx, k, path), EMA_OK);
        ema_file *f = NULL;
        char err[256];
        CHECK(ema_file_open(&f, path, err, sizeof err) == EMA_OK);
        if (!f) continue;
        CHECK(atoll(ema_file_metadata(f, "ema.t")) == step);
        t[ns] = (double)step;
        gam[ns] = atof(ema_file_metadata(f, "ema.gamma"));
        CHECK(ema_file_read(f, "w", 0, snaps[ns], sizeof snaps[ns]) == EMA_OK);
        CHECK(memcmp(snaps[ns], ema_bank_average(ctx, "w", k, NULL), sizeof snaps[ns]) == 0);
        ns++;
        ema_file_close(f);
      }
    }
  }
  double g07, coef[2 * (STEPS / EVERY)];
  CHECK(ema_power_gamma(0.07, &g07) == EMA_OK);
  ema_posthoc_info info;
  char err[256];
  CHECK(ema_posthoc_solve(ns, t, gam, (double)STEPS, g07, EMA_POSTHOC_DEFAULT_MAX_COND, EMA_POSTHOC_NORMALIZE, coef,
                          &info, err, sizeof err) == EMA_OK);
  const float *direct = (const float *)ema_bank_average(ctx, "w", 2, NULL);
  const float *s05_avg = (const float *)ema_bank_average(ctx, "w", 0, NULL);
  double worst = 0, scale = 0, apart = 0;
  for (int i = 0; i < N; i++) {
    double acc = 0;
    for (size_t j = 0; j < ns; j++) acc += coef[j] * snaps[j][i];
    worst = fmax(worst, fabs(acc - direct[i]));
    scale = fmax(scale, fabs(direct[i]));
    apart = fmax(apart, fabs((double)s05_avg[i] - direct[i]));
  }
  /* within the profile fit's residual, and much closer than a neighbouring sigma_rel */
  CHECK_MSG(worst <= 2.0 * info.residual * scale + 1e-6,
            "post-hoc sigma_rel 0.07 differs from the tracked one by %g (scale %g, residual %g)", worst, scale,
            info.residual);
  CHECK_MSG(apart > 5.0 * worst, "sigma_rel 0.05 and 0.07 differ by only %g", apart);
  printf("post-hoc sigma_rel 0.07 from %zu snapshots: max |diff| %.3g (scale %.3g), residual %.3g, cond %.3g\n", ns,
         worst, scale, info.residual, info.cond);
  CHECK_ST(ctx, ema_snapshot(ctx, 7, "/tmp/x"), EMA_E_INVALID_ARG);
  ema_free(ctx);
}

int main(void) {
  char dir[256];
  snprintf(dir, sizeof dir, "/tmp/ema_snapshots_test_%d", (int)getpid());
  mkdir(dir, 0700);
  test_snapshots_posthoc(dir);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return check_report("test_snapshots");
}
