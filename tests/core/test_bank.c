/*
 * The EMA bank: bit for bit what separate contexts give, its errors, and
 * bank checkpoints that resume exactly.
 */
#include <ema/ema.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

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
  float saved_pf[5];
  memcpy(saved_pf, ema_bank_average(a, "w", 1, NULL), sizeof saved_pf);
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
  CHECK(strstr(ema_last_error(c), "ema_bank_add") != NULL);
  /* ... but it can load any average of the bank into the model */
  ema_free(c);
  CHECK(ema_create(&c, 0.9) == EMA_OK);
  CHECK_ST(c, ema_bank_add(c, "pf", &p1, NULL), EMA_OK);
  float w3[5] = {0};
  CHECK_ST(c, ema_track(c, "w", w3, EMA_F32, 1, &n), EMA_OK);
  CHECK_ST(c, ema_bank_set_active(c, 1), EMA_OK);
  CHECK_ST(c, ema_load_averages_into_model(c, path), EMA_OK);
  CHECK(memcmp(w3, saved_pf, sizeof w3) == 0); /* member "pf" as saved (a moved on since) */
  ema_free(c);
  ema_free(a);
  ema_free(b);
}
int main(void) {
  char dir[256];
  snprintf(dir, sizeof dir, "/tmp/ema_bank_test_%d", (int)getpid());
  mkdir(dir, 0700);
  test_bank_equals_separate();
  test_bank_errors();
  test_bank_checkpoint(dir);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return check_report("test_bank");
}
