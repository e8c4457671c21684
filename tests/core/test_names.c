/*
 * The 0.2 names (bank, getters, ema_track_policy, ema_tensor_info's policy)
 * and the 0.1 spellings kept in src/core/compat.c, which must behave exactly
 * like the names they forward to.
 */
#include <ema/ema.h>

#include <math.h>
#include <string.h>

#include "check.h"

static void test_bank_names(void) {
  ema_ctx *ctx = NULL;
  CHECK(ema_create(&ctx, 0.5) == EMA_OK);
  ema_schedule s;
  ema_schedule_init(&s, EMA_SCHEDULE_CONSTANT);
  s.decay = 0.9;
  size_t k = 99;
  CHECK_ST(ctx, ema_bank_add(ctx, "slow", &s, &k), EMA_OK);
  CHECK(k == 1);
  CHECK_ST(ctx, ema_add_average(ctx, "old_spelling", &s, &k), EMA_OK); /* compat */
  CHECK(k == 2);
  CHECK(ema_bank_size(ctx) == 3 && ema_average_count(ctx) == 3);
  CHECK(strcmp(ema_bank_name(ctx, 1), "slow") == 0 && ema_average_label(ctx, 2) == ema_bank_name(ctx, 2));
  CHECK(ema_bank_name(ctx, 3) == NULL && ema_average_label(ctx, 3) == NULL);
  CHECK(strcmp(ema_bank_name(ctx, 0), "ExponentialMovingAverage") == 0);
  float w[3] = {1, 2, 3};
  int64_t n = 3;
  CHECK_ST(ctx, ema_track(ctx, "w", w, EMA_F32, 1, &n), EMA_OK);
  CHECK(ema_bank_average(ctx, "w", 1, NULL) == ema_average_of(ctx, "w", 1, NULL));
  CHECK(ema_bank_average(ctx, "w", 3, NULL) == NULL && ema_average_of(ctx, "w", 3, NULL) == NULL);
  CHECK(ema_bank_active(ctx) == 0);
  CHECK_ST(ctx, ema_bank_set_active(ctx, 2), EMA_OK);
  /* unindexed decay functions address member 0, whatever member is active */
  CHECK(ema_effective_decay(ctx) == 0.5 && ema_decay(ctx) == 0.5);
  CHECK(ema_bank_active(ctx) == 2 && ema_average(ctx, "w", NULL) == ema_bank_average(ctx, "w", 2, NULL));
  CHECK_ST(ctx, ema_set_active_average(ctx, 1), EMA_OK); /* compat */
  CHECK(ema_bank_active(ctx) == 1);
  CHECK_ST(ctx, ema_bank_set_active(ctx, 3), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_set_active_average(ctx, 3), EMA_E_INVALID_ARG);
  CHECK(ema_bank_active(ctx) == 1);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK_ST(ctx, ema_bank_set_active(ctx, 0), EMA_E_STATE);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK(ema_bank_size(NULL) == 0 && ema_bank_active(NULL) == 0 && ema_bank_name(NULL, 0) == NULL);
  ema_free(ctx);
}

static void test_getters(void) {
  ema_ctx *ctx = NULL;
  CHECK(ema_create(&ctx, 0.25) == EMA_OK);
  CHECK(ema_decay(ctx) == 0.25 && ema_get_decay(ctx) == 0.25);
  CHECK(ema_num_updates(ctx) == -1 && ema_get_num_updates(ctx) == -1);
  CHECK_ST(ctx, ema_set_num_updates(ctx, 12), EMA_OK);
  CHECK_ST(ctx, ema_set_decay(ctx, 0.75), EMA_OK);
  CHECK(ema_num_updates(ctx) == 12 && ema_get_num_updates(ctx) == 12);
  CHECK(ema_decay(ctx) == 0.75 && ema_get_decay(ctx) == 0.75);
  CHECK(isnan(ema_decay(NULL)) && isnan(ema_get_decay(NULL)));
  CHECK(ema_num_updates(NULL) == -1 && ema_get_num_updates(NULL) == -1);
  ema_free(ctx);
}

static void test_policy_copy(void) {
  ema_ctx *ctx = NULL;
  CHECK(ema_create(&ctx, 0.5) == EMA_OK);
  int64_t step = 7, counts[2] = {1, 2}, two = 2;
  float w = 1.0f, bn[2] = {3, 4};
  CHECK_ST(ctx, ema_track(ctx, "w", &w, EMA_F32, 0, NULL), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "step", &step, EMA_I64, 0, NULL, EMA_POLICY_COPY), EMA_OK);
  CHECK_ST(ctx, ema_track_state(ctx, "counts", counts, EMA_I64, 1, &two), EMA_OK); /* compat */
  CHECK_ST(ctx, ema_track_policy(ctx, "bn", bn, EMA_F32, 1, &two, EMA_POLICY_COPY), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "i", &step, EMA_I64, 0, NULL, EMA_POLICY_AVERAGE), EMA_E_DTYPE);
  CHECK(strstr(ema_last_error(ctx), "EMA_POLICY_COPY") != NULL);
  CHECK_ST(ctx, ema_track_policy(ctx, "p", &w, EMA_F32, 0, NULL, (ema_policy)3), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_track_policy(ctx, "p", &w, EMA_F32, 0, NULL, (ema_policy)-1), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_track_policy(ctx, "step", &w, EMA_F32, 0, NULL, EMA_POLICY_AVERAGE), EMA_E_EXISTS);
  CHECK(ema_count(ctx) == 4);
  ema_policy want[4] = {EMA_POLICY_AVERAGE, EMA_POLICY_COPY, EMA_POLICY_COPY, EMA_POLICY_COPY};
  for (size_t i = 0; i < 4; i++) {
    ema_policy p = (ema_policy)99;
    CHECK_ST(ctx, ema_tensor_info(ctx, i, NULL, NULL, NULL, NULL, NULL, &p), EMA_OK);
    CHECK(p == want[i]);
  }
  /* a COPY tensor is never averaged: apply leaves the model alone, it has no average */
  bn[0] = 5;
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  CHECK(bn[0] == 5 && ema_average(ctx, "bn", NULL) == NULL);
  const char *names[] = {"bn"};
  CHECK_ST(ctx, ema_apply_some(ctx, names, 1), EMA_E_DTYPE);
  ema_free(ctx);
}

int main(void) {
  test_bank_names();
  test_getters();
  test_policy_copy();
  return check_report("test_names");
}
