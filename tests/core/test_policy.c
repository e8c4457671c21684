/*
 * Per-tensor policies: AVERAGE (ema_track), COPY (follows the model) and
 * KEEP (frozen at registration). apply/update never touch COPY or KEEP;
 * swap, copy_to, store and restore put KEEP's frozen values into the model.
 */
#include <ema/ema.h>

#include <stdint.h>
#include <string.h>

#include "check.h"
#include "core/internal.h"

static ema_ctx *make(double decay) {
  ema_ctx *ctx = NULL;
  CHECK(ema_create(&ctx, decay) == EMA_OK && ctx);
  return ctx;
}

static void test_dtypes(void) {
  ema_ctx *ctx = make(0.5);
  int32_t i32[2] = {1, 2};
  int64_t i64 = 3, two = 2;
  float f = 1.0f;
  CHECK_ST(ctx, ema_track_policy(ctx, "a", i32, EMA_I32, 1, &two, EMA_POLICY_AVERAGE), EMA_E_DTYPE);
  CHECK_ST(ctx, ema_track_policy(ctx, "a", i32, EMA_I32, 1, &two, EMA_POLICY_KEEP), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "b", &i64, EMA_I64, 0, NULL, EMA_POLICY_COPY), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "c", &f, EMA_F32, 0, NULL, EMA_POLICY_KEEP), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "c", &f, EMA_F32, 0, NULL, EMA_POLICY_AVERAGE), EMA_E_EXISTS);
  CHECK_ST(ctx, ema_track_policy(ctx, "d", &f, EMA_F32, 0, NULL, (ema_policy)7), EMA_E_INVALID_ARG);
  CHECK(strstr(ema_last_error(ctx), "policy") != NULL);
  CHECK(ema_count(ctx) == 3);
  ema_policy p = EMA_POLICY_AVERAGE;
  ema_dtype dt = EMA_F64;
  CHECK_ST(ctx, ema_tensor_info(ctx, 0, NULL, NULL, &dt, NULL, NULL, &p), EMA_OK);
  CHECK(p == EMA_POLICY_KEEP && dt == EMA_I32);
  CHECK_ST(ctx, ema_tensor_info(ctx, 1, NULL, NULL, NULL, NULL, NULL, &p), EMA_OK);
  CHECK(p == EMA_POLICY_COPY);
  /* a KEEP average is a copy in the model dtype, not the model's memory */
  const int32_t *ka = (const int32_t *)ema_average(ctx, "a", &dt);
  CHECK(ka && dt == EMA_I32 && (const void *)ka != (const void *)i32 && ka[0] == 1 && ka[1] == 2);
  CHECK(ema_average(ctx, "b", NULL) == NULL); /* COPY has no average of its own */
  /* internal representation the checkpoint code relies on */
  const ema_tensor *t = ema__find(ctx, "a");
  CHECK(t->pair == -1 && t->policy == EMA_POLICY_KEEP && t->sdtype == t->dtype && t->shadow[0] == t->average[0]);
  t = ema__find(ctx, "b");
  CHECK(t->pair == -1 && t->policy == EMA_POLICY_COPY && t->shadow[0] == NULL);
  ema_free(ctx);
}

/* A small model: an averaged w, a COPY counter, a KEEP f32 and a KEEP f16. */
typedef struct model {
  float w[4];
  int64_t step;
  float frozen[3];
  uint16_t half[2];
} model;

static ema_ctx *track_model(model *m, int debias, size_t extra_members) {
  ema_ctx *ctx = make(0.5);
  CHECK_ST(ctx, ema_set_zero_debias(ctx, debias), EMA_OK);
  ema_schedule s;
  ema_schedule_init(&s, EMA_SCHEDULE_CONSTANT);
  s.decay = 0.25;
  char nm[8] = "m0";
  for (size_t k = 0; k < extra_members; k++) {
    nm[1] = (char)('1' + k);
    CHECK_ST(ctx, ema_bank_add(ctx, nm, &s, NULL), EMA_OK);
  }
  int64_t n4 = 4, n3 = 3, n2 = 2;
  for (int i = 0; i < 4; i++) m->w[i] = (float)i;
  m->step = 1;
  m->frozen[0] = 1.5f, m->frozen[1] = -2.0f, m->frozen[2] = 0.25f;
  m->half[0] = 0x3C00, m->half[1] = 0xC000; /* 1.0, -2.0 */
  CHECK_ST(ctx, ema_track(ctx, "w", m->w, EMA_F32, 1, &n4), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "step", &m->step, EMA_I64, 0, NULL, EMA_POLICY_COPY), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "frozen", m->frozen, EMA_F32, 1, &n3, EMA_POLICY_KEEP), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "half", m->half, EMA_F16, 1, &n2, EMA_POLICY_KEEP), EMA_OK);
  return ctx;
}

static const float frozen0[3] = {1.5f, -2.0f, 0.25f};
static const uint16_t half0[2] = {0x3C00, 0xC000};

/* The model trains: every value moves. */
static void train(model *m, float by) {
  for (int i = 0; i < 4; i++) m->w[i] += by;
  m->step++;
  for (int i = 0; i < 3; i++) m->frozen[i] += by;
  m->half[0] = 0x4400, m->half[1] = 0x4500;
}

static void test_updates_leave_copy_and_keep(int debias) {
  model m;
  ema_ctx *ctx = track_model(&m, debias, 1);
  train(&m, 1.0f);
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  CHECK_ST(ctx, ema_update(ctx, 5), EMA_OK);
  CHECK(m.step == 2 && m.frozen[0] == 2.5f && m.half[0] == 0x4400); /* the model is the caller's */
  for (size_t k = 0; k < 2; k++) {
    CHECK(memcmp(ema_bank_average(ctx, "frozen", k, NULL), frozen0, sizeof frozen0) == 0);
    CHECK(memcmp(ema_bank_average(ctx, "half", k, NULL), half0, sizeof half0) == 0);
  }
  CHECK(ema_bank_average(ctx, "frozen", 0, NULL) == ema_bank_average(ctx, "frozen", 1, NULL));
  /* the averaged tensor did move */
  CHECK(((const float *)ema_average(ctx, "w", NULL))[3] != 3.0f);
  /* apply_some refuses COPY and KEEP names and updates nothing */
  unsigned char before[16];
  memcpy(before, ema_average(ctx, "w", NULL), sizeof before);
  const char *keep_names[] = {"w", "frozen"};
  CHECK_ST(ctx, ema_apply_some(ctx, keep_names, 2), EMA_E_INVALID_ARG);
  CHECK(strstr(ema_last_error(ctx), "KEEP") != NULL);
  const char *copy_names[] = {"w", "step"};
  CHECK_ST(ctx, ema_apply_some(ctx, copy_names, 2), EMA_E_DTYPE);
  CHECK(memcmp(before, ema_average(ctx, "w", NULL), sizeof before) == 0);
  const char *ok_names[] = {"w"};
  CHECK_ST(ctx, ema_apply_some(ctx, ok_names, 1), EMA_OK); /* names were unmarked after the failures */
  ema_free(ctx);
}

static void test_evaluation_includes_keep(void) {
  model m;
  ema_ctx *ctx = track_model(&m, 0, 0);
  train(&m, 1.0f);
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  model trained = m;
  /* swap puts the frozen values in, a second swap gives the trained ones back bit for bit */
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK(memcmp(m.frozen, frozen0, sizeof frozen0) == 0 && memcmp(m.half, half0, sizeof half0) == 0);
  CHECK(m.step == trained.step); /* COPY follows the model: untouched */
  CHECK(m.w[3] != trained.w[3]); /* the average went in */
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK(memcmp(&m, &trained, sizeof m) == 0);
  CHECK(memcmp(ema_average(ctx, "frozen", NULL), frozen0, sizeof frozen0) == 0);
  /* store, copy_to, restore */
  CHECK_ST(ctx, ema_store(ctx), EMA_OK);
  CHECK_ST(ctx, ema_copy_to(ctx), EMA_OK);
  CHECK(memcmp(m.frozen, frozen0, sizeof frozen0) == 0 && memcmp(m.half, half0, sizeof half0) == 0);
  CHECK(m.step == trained.step);
  m.frozen[1] = 99.0f; /* evaluation code scribbles on the model */
  CHECK_ST(ctx, ema_restore(ctx), EMA_OK);
  CHECK(memcmp(&m, &trained, sizeof m) == 0);
  ema_free(ctx);
}

static void test_keep_with_debias_and_alloc_failure(void) {
  model m;
  ema_ctx *ctx = track_model(&m, 1, 0);
  /* zero_debias starts averages at 0, but a KEEP tensor is its frozen values */
  CHECK(memcmp(ema_average(ctx, "frozen", NULL), frozen0, sizeof frozen0) == 0);
  CHECK(((const float *)ema_average(ctx, "w", NULL))[1] == 0.0f);
  /* a failed KEEP registration changes nothing */
  double big[3] = {1, 2, 3};
  int64_t n3 = 3;
  size_t count = ema_count(ctx);
  int failed_once = 0;
  for (long n = 0; n < 8; n++) {
    ema__test_fail_alloc(n);
    ema_status st = ema_track_policy(ctx, "big", big, EMA_F64, 1, &n3, EMA_POLICY_KEEP);
    ema__test_fail_alloc(-1);
    if (st == EMA_OK) break;
    failed_once = 1;
    CHECK(st == EMA_E_NOMEM && ema_count(ctx) == count && ema__find(ctx, "big") == NULL);
  }
  CHECK(failed_once && ema_count(ctx) == count + 1);
  big[0] = 7;
  CHECK(((const double *)ema_average(ctx, "big", NULL))[0] == 1.0);
  ema_free(ctx);
}

int main(void) {
  test_dtypes();
  test_updates_leave_copy_and_keep(0);
  test_updates_leave_copy_and_keep(1);
  test_evaluation_includes_keep();
  test_keep_with_debias_and_alloc_failure();
  return check_report("test_policy");
}
