/*
 * Decay schedules against their formulas, update_every independence and
 * exact zero-debias under a schedule. The bank is tests/core/test_bank.c;
 * snapshots and post-hoc synthesis end to end tests/posthoc/test_snapshots.c.
 */
#include <ema/ema.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static int close_rel(double a, double b, double tol) {
  return fabs(a - b) <= tol * fmax(fabs(a), fabs(b)) || (a == 0.0 && b == 0.0);
}

/* Independent per-step decays, written from the formulas. */
static double per_step(const ema_schedule *s, int64_t step) {
  if (step <= s->update_after_step) return 0.0;
  switch (s->kind) {
    case EMA_SCHEDULE_CONSTANT:
      return s->decay;
    case EMA_SCHEDULE_HALFLIFE:
      return pow(0.5, 1.0 / s->halflife);
    case EMA_SCHEDULE_POWER: {
      double g = s->gamma;
      if (s->sigma_rel > 0) ema_power_gamma(s->sigma_rel, &g);
      return pow(1.0 - 1.0 / (double)step, g + 1.0);
    }
    case EMA_SCHEDULE_INV_POWER: {
      double t = (double)(step - s->update_after_step - 1);
      if (t <= 0) return 0.0;
      double d = 1.0 - pow(1.0 + t / s->inv_gamma, -s->power);
      return fmin(fmax(d, s->min_decay), s->decay);
    }
  }
  return NAN;
}

static void test_formulas(void) {
  ema_schedule s[6];
  ema_schedule_init(&s[0], EMA_SCHEDULE_CONSTANT);
  s[0].decay = 0.999;
  ema_schedule_init(&s[1], EMA_SCHEDULE_INV_POWER);
  s[1].update_after_step = 5;
  ema_schedule_init(&s[2], EMA_SCHEDULE_INV_POWER);
  s[2].inv_gamma = 7.0;
  s[2].power = 0.75;
  s[2].min_decay = 0.3;
  s[2].decay = 0.995;
  ema_schedule_init(&s[3], EMA_SCHEDULE_POWER);
  s[3].sigma_rel = 0.05;
  ema_schedule_init(&s[4], EMA_SCHEDULE_POWER);
  s[4].sigma_rel = 0;
  s[4].gamma = 6.94;
  s[4].update_after_step = 3;
  ema_schedule_init(&s[5], EMA_SCHEDULE_HALFLIFE);
  s[5].halflife = 37.5;
  int bad = 0;
  for (int i = 0; i < 6; i++) {
    for (int64_t from = 0; from < 60; from += 3) {
      for (int64_t dt = 1; dt <= 9; dt += 4) {
        double got, want = 1.0;
        CHECK(ema_schedule_decay(&s[i], from, from + dt, &got) == EMA_OK);
        for (int64_t st = from + 1; st <= from + dt; st++) want *= per_step(&s[i], st);
        if (!close_rel(got, want, 1e-12)) {
          bad++;
          fprintf(stderr, "schedule %d (%lld, %lld]: %.17g vs %.17g\n", i, (long long)from, (long long)(from + dt), got,
                  want);
        }
      }
    }
  }
  CHECK(bad == 0);
  double d;
  /* the first inv_power update after update_after_step copies (t <= 0) */
  CHECK(ema_schedule_decay(&s[1], 5, 6, &d) == EMA_OK && d == 0.0);
  CHECK(ema_schedule_decay(&s[1], 6, 7, &d) == EMA_OK && close_rel(d, 1.0 - pow(2.0, -2.0 / 3.0), 1e-15));
  /* a half-life of h steps halves in h steps */
  s[5].halflife = 40;
  CHECK(ema_schedule_decay(&s[5], 100, 140, &d) == EMA_OK && close_rel(d, 0.5, 1e-15));
  /* power: the first update copies; (1 - dt/t)^(gamma+1) */
  CHECK(ema_schedule_decay(&s[3], 0, 1, &d) == EMA_OK && d == 0.0);
  double g;
  CHECK(ema_power_gamma(0.05, &g) == EMA_OK);
  CHECK(ema_schedule_decay(&s[3], 90, 100, &d) == EMA_OK && close_rel(d, pow(1.0 - 10.0 / 100.0, g + 1.0), 1e-14));
  /* bad arguments */
  CHECK(ema_schedule_decay(&s[0], 5, 5, &d) == EMA_E_INVALID_ARG);
  CHECK(ema_schedule_decay(&s[0], -1, 5, &d) == EMA_E_INVALID_ARG);
  CHECK(ema_schedule_decay(NULL, 0, 5, &d) == EMA_E_INVALID_ARG);
  ema_schedule b = s[0];
  b.decay = NAN;
  CHECK(ema_schedule_decay(&b, 0, 5, &d) == EMA_E_INVALID_ARG);
  b = s[3];
  b.sigma_rel = 0.5;
  CHECK(ema_schedule_decay(&b, 0, 5, &d) == EMA_E_INVALID_ARG);
  b = s[2];
  b.min_decay = 0.999; /* above decay */
  CHECK(ema_schedule_decay(&b, 0, 5, &d) == EMA_E_INVALID_ARG);
  b = s[5];
  b.halflife = 0;
  CHECK(ema_schedule_decay(&b, 0, 5, &d) == EMA_E_INVALID_ARG);
}

/* update_every k: the k-step decay makes the result independent of k when
   the model does not move between updates. */
static void test_update_every(void) {
  ema_schedule_kind kinds[4] = {EMA_SCHEDULE_CONSTANT, EMA_SCHEDULE_INV_POWER, EMA_SCHEDULE_POWER,
                                EMA_SCHEDULE_HALFLIFE};
  for (int i = 0; i < 4; i++) {
    double finals[3];
    int every[3] = {1, 4, 10};
    for (int e = 0; e < 3; e++) {
      ema_ctx *ctx = NULL;
      CHECK(ema_create(&ctx, 0.99) == EMA_OK);
      ema_schedule s;
      ema_schedule_init(&s, kinds[i]);
      s.decay = 0.99;
      s.halflife = 25;
      s.update_after_step = 3;
      CHECK_ST(ctx, ema_set_schedule(ctx, &s), EMA_OK);
      double w = 0.0;
      CHECK_ST(ctx, ema_track(ctx, "w", &w, EMA_F64, 0, NULL), EMA_OK);
      for (int64_t step = 1; step <= 200; step++) {
        w = step <= 100 ? 1.0 : 3.0; /* the model moves only at step boundaries of every k */
        if (step % every[e] == 0) CHECK_ST(ctx, ema_update(ctx, step), EMA_OK);
      }
      finals[e] = *(const double *)ema_average(ctx, "w", NULL);
      ema_free(ctx);
    }
    CHECK_MSG(close_rel(finals[0], finals[1], 1e-12) && close_rel(finals[0], finals[2], 1e-12),
              "kind %d: every 1: %.17g, every 4: %.17g, every 10: %.17g", i, finals[0], finals[1], finals[2]);
  }
}

/* update_after_step copies the model exactly, whatever its values. */
static void test_update_after_step(void) {
  ema_ctx *ctx = NULL;
  CHECK(ema_create(&ctx, 0.9) == EMA_OK);
  ema_schedule s;
  ema_schedule_init(&s, EMA_SCHEDULE_CONSTANT);
  s.decay = 0.9;
  s.update_after_step = 10;
  CHECK_ST(ctx, ema_set_schedule(ctx, &s), EMA_OK);
  float w[3] = {0, 0, 0};
  int64_t n = 3;
  CHECK_ST(ctx, ema_track(ctx, "w", w, EMA_F32, 1, &n), EMA_OK);
  const float *a = (const float *)ema_average(ctx, "w", NULL);
  for (int64_t step = 1; step <= 10; step++) {
    w[0] = (float)step * 1e30f;
    w[1] = step == 7 ? INFINITY : -(float)step / 3.0f;
    w[2] = 1e-40f * (float)step;
    CHECK_ST(ctx, ema_update(ctx, step), EMA_OK);
    CHECK(memcmp(a, w, sizeof w) == 0);
  }
  w[0] = w[1] = w[2] = 0.0f;
  CHECK_ST(ctx, ema_update(ctx, 11), EMA_OK);
  CHECK(a[1] != 0.0f); /* averaging now */
  CHECK(ema_last_step(ctx) == 11);
  CHECK_ST(ctx, ema_update(ctx, 11), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_update(ctx, 3), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK); /* a constant schedule may still use TensorFlow's update */
  ema_free(ctx);
}

/* Exact zero-debias: a constant input is recovered under any schedule; a
   varying one matches the weighted mean with weights from the schedule. */
static void test_exact_debias(void) {
  ema_schedule_kind kinds[3] = {EMA_SCHEDULE_INV_POWER, EMA_SCHEDULE_POWER, EMA_SCHEDULE_HALFLIFE};
  for (int i = 0; i < 3; i++) {
    ema_ctx *ctx = NULL;
    CHECK(ema_create(&ctx, 0.99) == EMA_OK);
    CHECK_ST(ctx, ema_set_zero_debias(ctx, 1), EMA_OK);
    ema_schedule s;
    ema_schedule_init(&s, kinds[i]);
    s.halflife = 10;
    CHECK_ST(ctx, ema_set_schedule(ctx, &s), EMA_OK);
    double v = 0, c = 0;
    CHECK_ST(ctx, ema_track(ctx, "v", &v, EMA_F64, 0, NULL), EMA_OK);
    CHECK_ST(ctx, ema_track(ctx, "c", &c, EMA_F64, 0, NULL), EMA_OK);
    const double *av = (const double *)ema_average(ctx, "v", NULL);
    const double *ac = (const double *)ema_average(ctx, "c", NULL);
    /* reference: weights w_i = (1 - d_i) * prod_{j>i} d_j */
    double num = 0, den = 0;
    int bad_c = 0, bad_v = 0;
    for (int64_t step = 1; step <= 300; step++) {
      v = sin((double)step * 0.37) * 5.0;
      c = 2.5;
      double d;
      ema_schedule_decay(&s, step - 1, step, &d);
      num = num * d + (1 - d) * v;
      den = den * d + (1 - d);
      CHECK_ST(ctx, ema_update(ctx, step), EMA_OK);
      bad_c += !close_rel(*ac, 2.5, 1.5e-15); /* a few ulps; TensorFlow's 1 - d^k is off by far more */
      bad_v += !close_rel(*av, num / den, 1e-12) && fabs(*av - num / den) > 1e-12;
    }
    CHECK_MSG(bad_c == 0, "kind %d: constant input not recovered %d times", i, bad_c);
    CHECK_MSG(bad_v == 0, "kind %d: weighted mean differs %d times", i, bad_v);
    ema_free(ctx);
  }
}

int main(void) {
  test_formulas();
  test_update_every();
  test_update_after_step();
  test_exact_debias();
  return check_report("test_schedule");
}
