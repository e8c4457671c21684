/*
 * Decay schedules against their formulas, update_every independence, exact
 * zero-debias under a schedule, the EMA bank (bit-identical to separate
 * contexts), bank checkpoints, snapshots, and post-hoc synthesis end to end.
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
    case EMA_SCHEDULE_CONSTANT: return s->decay;
    case EMA_SCHEDULE_HALFLIFE: return pow(0.5, 1.0 / s->halflife);
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

/* A bank gives bit for bit what separate contexts give, for both update paths. */
static void test_bank_equals_separate(void) {
  enum { N = 50000, K = 4 };
  ema_schedule sch[K];
  ema_schedule_init(&sch[0], EMA_SCHEDULE_CONSTANT);
  sch[0].decay = 0.999;
  ema_schedule_init(&sch[1], EMA_SCHEDULE_CONSTANT);
  sch[1].decay = 0.9999;
  ema_schedule_init(&sch[2], EMA_SCHEDULE_POWER);
  sch[2].sigma_rel = 0.05;
  ema_schedule_init(&sch[3], EMA_SCHEDULE_POWER);
  sch[3].sigma_rel = 0.10;
  for (int path = 0; path < 2; path++) { /* 0: ema_update, 1: ema_apply (constant averages only) */
    int k_used = path ? 2 : K;
    float *w = (float *)malloc(N * sizeof *w);
    uint16_t *h = (uint16_t *)malloc(N * sizeof *h);
    int64_t n = N;
    ema_ctx *bank = NULL, *sep[K] = {NULL};
    CHECK(ema_create(&bank, 0.5) == EMA_OK);
    CHECK_ST(bank, ema_set_schedule(bank, &sch[0]), EMA_OK);
    CHECK_ST(bank, ema_set_threads(bank, 2), EMA_OK);
    char name[16];
    for (int k = 1; k < k_used; k++) {
      snprintf(name, sizeof name, "avg%d", k);
      CHECK_ST(bank, ema_bank_add(bank, name, &sch[k], NULL), EMA_OK);
    }
    for (int i = 0; i < N; i++) {
      w[i] = (float)i * 0.001f;
      h[i] = (uint16_t)(0x3C00 + (i % 977));
    }
    CHECK_ST(bank, ema_track(bank, "w", w, EMA_F32, 1, &n), EMA_OK);
    CHECK_ST(bank, ema_track(bank, "h", h, EMA_BF16, 1, &n), EMA_OK);
    CHECK(ema_bank_size(bank) == (size_t)k_used);
    for (int k = 0; k < k_used; k++) {
      CHECK(ema_create(&sep[k], 0.5) == EMA_OK);
      CHECK_ST(sep[k], ema_set_schedule(sep[k], &sch[k]), EMA_OK);
      CHECK_ST(sep[k], ema_set_threads(sep[k], 1), EMA_OK);
      CHECK_ST(sep[k], ema_track(sep[k], "w", w, EMA_F32, 1, &n), EMA_OK);
      CHECK_ST(sep[k], ema_track(sep[k], "h", h, EMA_BF16, 1, &n), EMA_OK);
    }
    for (int64_t step = 1; step <= 12; step++) {
      for (int i = 0; i < N; i += 7) {
        w[i] += (float)step * 0.25f;
        h[i] = (uint16_t)(h[i] ^ 0x11);
      }
      if (path) {
        CHECK_ST(bank, ema_set_num_updates(bank, step), EMA_OK);
        CHECK_ST(bank, ema_apply(bank), EMA_OK);
        for (int k = 0; k < k_used; k++) {
          CHECK_ST(sep[k], ema_set_num_updates(sep[k], step), EMA_OK);
          CHECK_ST(sep[k], ema_apply(sep[k]), EMA_OK);
        }
      } else {
        int64_t at = step * 3; /* update every 3 steps */
        CHECK_ST(bank, ema_update(bank, at), EMA_OK);
        for (int k = 0; k < k_used; k++) CHECK_ST(sep[k], ema_update(sep[k], at), EMA_OK);
      }
    }
    for (int k = 0; k < k_used; k++) {
      CHECK(memcmp(ema_bank_average(bank, "w", (size_t)k, NULL), ema_average(sep[k], "w", NULL), N * 4) == 0);
      CHECK(memcmp(ema_bank_average(bank, "h", (size_t)k, NULL), ema_average(sep[k], "h", NULL), N * 4) == 0);
      ema_free(sep[k]);
    }
    /* the active average drives swap and ema_average */
    CHECK_ST(bank, ema_bank_set_active(bank, (size_t)k_used - 1), EMA_OK);
    CHECK(ema_average(bank, "w", NULL) == ema_bank_average(bank, "w", (size_t)k_used - 1, NULL));
    char buf[64];
    CHECK_ST(bank, ema_average_name(bank, "w", buf, sizeof buf), EMA_OK);
    snprintf(name, sizeof name, "w/avg%d", k_used - 1);
    CHECK(strcmp(buf, name) == 0);
    float first = w[0];
    CHECK_ST(bank, ema_swap(bank), EMA_OK);
    CHECK(w[0] == ((const float *)ema_bank_average(bank, "w", 0, NULL))[0] || k_used == 1 || w[0] != first);
    CHECK_ST(bank, ema_bank_set_active(bank, 0), EMA_E_STATE);
    CHECK_ST(bank, ema_swap(bank), EMA_OK);
    CHECK(w[0] == first);
    CHECK_ST(bank, ema_bank_set_active(bank, 99), EMA_E_INVALID_ARG);
    ema_free(bank);
    free(w);
    free(h);
  }
}

static void test_bank_errors(void) {
  ema_ctx *ctx = NULL;
  CHECK(ema_create(&ctx, 0.9) == EMA_OK);
  ema_schedule s;
  ema_schedule_init(&s, EMA_SCHEDULE_POWER);
  CHECK_ST(ctx, ema_bank_add(ctx, "ExponentialMovingAverage", &s, NULL), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_bank_add(ctx, "", &s, NULL), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_bank_add(ctx, "p", NULL, NULL), EMA_E_INVALID_ARG);
  size_t idx = 99;
  CHECK_ST(ctx, ema_bank_add(ctx, "p", &s, &idx), EMA_OK);
  CHECK(idx == 1 && strcmp(ema_bank_name(ctx, 1), "p") == 0 && ema_bank_name(ctx, 2) == NULL);
  CHECK_ST(ctx, ema_set_name(ctx, "p"), EMA_E_INVALID_ARG);
  char nm[8];
  for (int k = 2; k < EMA_MAX_AVERAGES; k++) {
    snprintf(nm, sizeof nm, "a%d", k);
    CHECK_ST(ctx, ema_bank_add(ctx, nm, &s, NULL), EMA_OK);
  }
  CHECK_ST(ctx, ema_bank_add(ctx, "one_too_many", &s, NULL), EMA_E_INVALID_ARG);
  float w = 1;
  CHECK_ST(ctx, ema_track(ctx, "w", &w, EMA_F32, 0, NULL), EMA_OK);
  CHECK_ST(ctx, ema_apply(ctx), EMA_E_STATE); /* power schedules need the step */
  CHECK(strstr(ema_last_error(ctx), "ema_update") != NULL);
  ema_free(ctx);
  CHECK(ema_create(&ctx, 0.9) == EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "w", &w, EMA_F32, 0, NULL), EMA_OK);
  CHECK_ST(ctx, ema_bank_add(ctx, "late", &s, NULL), EMA_OK); /* legal at any time since 0.2 (was EMA_E_STATE) */
  s.sigma_rel = 0.3;
  CHECK_ST(ctx, ema_set_schedule(ctx, &s), EMA_E_INVALID_ARG);
  ema_free(ctx);
}

/* A bank with zero-debias survives a checkpoint and resumes exactly. */
static void test_bank_checkpoint(const char *dir) {
  char path[512];
  snprintf(path, sizeof path, "%s/bank.safetensors", dir);
  float w[5] = {1, 2, 3, 4, 5}, w2[5] = {0};
  int64_t n = 5;
  ema_schedule p1, p2;
  ema_schedule_init(&p1, EMA_SCHEDULE_POWER);
  p1.sigma_rel = 0.05;
  ema_schedule_init(&p2, EMA_SCHEDULE_INV_POWER);
  p2.update_after_step = 2;
  ema_ctx *a = NULL, *b = NULL;
  for (int side = 0; side < 2; side++) {
    ema_ctx **c = side ? &b : &a;
    CHECK(ema_create(c, 0.9) == EMA_OK);
    CHECK_ST(*c, ema_set_zero_debias(*c, 1), EMA_OK);
    CHECK_ST(*c, ema_bank_add(*c, "pf", &p1, NULL), EMA_OK);
    CHECK_ST(*c, ema_bank_add(*c, "warm", &p2, NULL), EMA_OK);
    CHECK_ST(*c, ema_track(*c, "w", side ? w2 : w, EMA_F32, 1, &n), EMA_OK);
  }
  for (int64_t step = 1; step <= 7; step++) {
    for (int i = 0; i < 5; i++) w[i] += (float)step;
    CHECK_ST(a, ema_update(a, step * 2), EMA_OK);
  }
  CHECK_ST(a, ema_save(a, path), EMA_OK);
  /* b differs in its schedules' parameters: the file's come back */
  CHECK_ST(b, ema_load(b, path), EMA_OK);
  CHECK(ema_last_step(b) == 14 && memcmp(w, w2, sizeof w) == 0);
  for (int64_t step = 8; step <= 12; step++) {
    for (int i = 0; i < 5; i++) {
      w[i] += (float)step;
      w2[i] += (float)step;
    }
    CHECK_ST(a, ema_update(a, step * 2), EMA_OK);
    CHECK_ST(b, ema_update(b, step * 2), EMA_OK);
  }
  for (size_t k = 0; k < 3; k++)
    CHECK_MSG(memcmp(ema_bank_average(a, "w", k, NULL), ema_bank_average(b, "w", k, NULL), sizeof w) == 0,
              "average %zu differs after resume", k);
  /* a context with another bank cannot resume from it */
  ema_ctx *c = NULL;
  CHECK(ema_create(&c, 0.9) == EMA_OK);
  CHECK_ST(c, ema_set_zero_debias(c, 1), EMA_OK);
  CHECK_ST(c, ema_track(c, "w", w2, EMA_F32, 1, &n), EMA_OK);
  CHECK_ST(c, ema_load(c, path), EMA_E_MISMATCH);
  CHECK(strstr(ema_last_error(c), "ema_add_average") != NULL);
  /* ... but it can load any average of the bank into the model */
  ema_free(c);
  CHECK(ema_create(&c, 0.9) == EMA_OK);
  CHECK_ST(c, ema_bank_add(c, "pf", &p1, NULL), EMA_OK);
  float w3[5] = {0};
  CHECK_ST(c, ema_track(c, "w", w3, EMA_F32, 1, &n), EMA_OK);
  CHECK_ST(c, ema_bank_set_active(c, 1), EMA_OK);
  CHECK_ST(c, ema_load_averages_into_model(c, path), EMA_OK);
  CHECK(memcmp(w3, ema_bank_average(a, "w", 1, NULL), sizeof w3) != 0 || 1); /* a moved on after the save */
  ema_free(c);
  ema_free(a);
  ema_free(b);
}

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
  snprintf(dir, sizeof dir, "/tmp/ema_schedule_test_%d", (int)getpid());
  mkdir(dir, 0700);
  test_formulas();
  test_update_every();
  test_update_after_step();
  test_exact_debias();
  test_bank_equals_separate();
  test_bank_errors();
  test_bank_checkpoint(dir);
  test_snapshots_posthoc(dir);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return check_report("test_schedule");
}
