/*
 * No order traps: ema_options + ema_create_with carry what must be known
 * before tracking, ema_bank_add is legal at any time (a late member equals a
 * context of its own created at that moment, bit for bit), and
 * ema_set_half_shadows applies to tensors tracked after it.
 */
#include <ema/ema.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "core/internal.h"

static void test_options(void) {
  ema_options o;
  memset(&o, 0x5a, sizeof o);
  ema_options_init(&o);
  CHECK(o.decay == 0.9999 && o.zero_debias == 0 && o.same_dtype_half_shadows == 0 && o.name == NULL);
  for (size_t i = 0; i < 8; i++) CHECK(o.reserved[i] == 0);
  ema_options_init(NULL); /* no-op */
  ema_ctx *ctx = (ema_ctx *)&o;
  CHECK(ema_create_with(&ctx, NULL) == EMA_E_INVALID_ARG && ctx == NULL);
  CHECK(ema_create_with(NULL, &o) == EMA_E_INVALID_ARG);
  o.reserved[7] = 1;
  CHECK(ema_create_with(&ctx, &o) == EMA_E_INVALID_ARG && ctx == NULL);
  o.reserved[7] = 0;
  o.decay = NAN;
  CHECK(ema_create_with(&ctx, &o) == EMA_E_INVALID_ARG && ctx == NULL);
  o.decay = 1.5;
  CHECK(ema_create_with(&ctx, &o) == EMA_E_INVALID_ARG);
  o.decay = 0.5;
  o.name = "";
  CHECK(ema_create_with(&ctx, &o) == EMA_E_INVALID_ARG);
  o.name = "bad\xff";
  CHECK(ema_create_with(&ctx, &o) == EMA_E_INVALID_ARG);
  ema__test_fail_alloc(0);
  o.name = "Mine";
  CHECK(ema_create_with(&ctx, &o) == EMA_E_NOMEM && ctx == NULL);
  ema__test_fail_alloc(-1);
  /* every option takes effect */
  o.zero_debias = 1;
  o.same_dtype_half_shadows = 1;
  char name[8] = "Mine";
  o.name = name;
  CHECK(ema_create_with(&ctx, &o) == EMA_OK && ctx);
  name[0] = 'X'; /* copied */
  CHECK(strcmp(ema_bank_name(ctx, 0), "Mine") == 0 && ema_decay(ctx) == 0.5);
  char buf[32];
  CHECK_ST(ctx, ema_average_name(ctx, "w", buf, sizeof buf), EMA_OK);
  CHECK(strcmp(buf, "w/Mine") == 0);
  float w = 4.0f;
  uint16_t h = 0x3C00;
  CHECK_ST(ctx, ema_track(ctx, "w", &w, EMA_F32, 0, NULL), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "h", &h, EMA_BF16, 0, NULL), EMA_OK);
  CHECK(*(const float *)ema_average(ctx, "w", NULL) == 0.0f); /* zero_debias: starts at 0 */
  ema_dtype sd;
  CHECK(ema_average(ctx, "h", &sd) && sd == EMA_BF16);     /* same-dtype half shadows */
  CHECK_ST(ctx, ema_set_zero_debias(ctx, 0), EMA_E_STATE); /* v0 meaning kept */
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  CHECK(*(const float *)ema_average(ctx, "w", NULL) == 4.0f); /* debiased after one step */
  ema_free(ctx);
  /* ema_create is ema_create_with with the defaults and a decay */
  CHECK(ema_create(&ctx, 0.25) == EMA_OK);
  CHECK(ema_decay(ctx) == 0.25 && strcmp(ema_bank_name(ctx, 0), "ExponentialMovingAverage") == 0);
  ema_free(ctx);
}

static void test_half_shadows_apply_to_later_tensors(void) {
  ema_ctx *ctx = NULL;
  CHECK(ema_create(&ctx, 0.5) == EMA_OK);
  uint16_t a = 0x3F80, b = 0x3F80;
  ema_dtype sd;
  CHECK_ST(ctx, ema_track(ctx, "a", &a, EMA_BF16, 0, NULL), EMA_OK);
  CHECK_ST(ctx, ema_set_half_shadows(ctx, 1), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "b", &b, EMA_BF16, 0, NULL), EMA_OK);
  CHECK(ema_average(ctx, "a", &sd) && sd == EMA_F32);
  CHECK(ema_average(ctx, "b", &sd) && sd == EMA_BF16);
  CHECK(ema_set_half_shadows(NULL, 1) == EMA_E_INVALID_ARG);
  ema_free(ctx);
}

/* A model of several dtypes and policies. */
typedef struct model {
  float w[37];
  double d[5];
  uint16_t bf[9];
  int64_t step;
  float frozen[2];
} model;

static void fill(model *m, int t) {
  for (int i = 0; i < 37; i++) m->w[i] = (float)sin(0.3 * i + t) * 3.0f;
  for (int i = 0; i < 5; i++) m->d[i] = cos(0.7 * i + t);
  for (int i = 0; i < 9; i++) m->bf[i] = (uint16_t)(0x3F00 + (i * 7 + t * 13) % 200);
  m->step = t;
  m->frozen[0] = (float)t;
  m->frozen[1] = -1.0f;
}

static ema_ctx *track(model *m, int debias, double decay) {
  ema_ctx *ctx = NULL;
  ema_options o;
  ema_options_init(&o);
  o.decay = decay;
  o.zero_debias = debias;
  CHECK(ema_create_with(&ctx, &o) == EMA_OK);
  int64_t n37 = 37, n5 = 5, n9 = 9, n2 = 2;
  CHECK_ST(ctx, ema_track(ctx, "w", m->w, EMA_F32, 1, &n37), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "step", &m->step, EMA_I64, 0, NULL, EMA_POLICY_COPY), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "d", m->d, EMA_F64, 1, &n5), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "frozen", m->frozen, EMA_F32, 1, &n2, EMA_POLICY_KEEP), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "bf", m->bf, EMA_BF16, 1, &n9), EMA_OK);
  return ctx;
}

/* Same averages of w, d and bf (and of the KEEP tensor when with_keep). */
static int same_average(const ema_ctx *a, size_t ka, const ema_ctx *b, size_t kb, int with_keep) {
  static const struct {
    const char *name;
    size_t bytes;
  } t[] = {{"w", 37 * 4}, {"d", 5 * 8}, {"bf", 9 * 4}, {"frozen", 8}};
  for (size_t i = 0; i < (with_keep ? 4u : 3u); i++) {
    const void *x = ema_bank_average(a, t[i].name, ka, NULL), *y = ema_bank_average(b, t[i].name, kb, NULL);
    if (!x || !y || memcmp(x, y, t[i].bytes) != 0) return 0;
  }
  return 1;
}

/* ema_apply: member "late" added after 5 applies equals a context created then. */
static void test_late_member_apply(int debias) {
  model m, twin_model;
  fill(&m, 0);
  ema_ctx *ctx = track(&m, debias, 0.9);
  for (int t = 1; t <= 5; t++) {
    fill(&m, t);
    CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  }
  ema_schedule s;
  ema_schedule_init(&s, EMA_SCHEDULE_CONSTANT);
  s.decay = 0.75;
  size_t k = 0;
  CHECK_ST(ctx, ema_bank_add(ctx, "late", &s, &k), EMA_OK);
  CHECK(k == 1 && ema_bank_size(ctx) == 2);
  twin_model = m;
  ema_ctx *twin = track(&twin_model, debias, 0.75);
  CHECK(same_average(ctx, 1, twin, 0, 0)); /* starts from the current model values (or 0) */
  /* the KEEP tensor keeps the values of its registration, for every member */
  CHECK(((const float *)ema_bank_average(ctx, "frozen", 1, NULL))[0] == 0.0f);
  if (!debias) CHECK(memcmp(ema_bank_average(ctx, "w", 1, NULL), m.w, sizeof m.w) == 0);
  for (int t = 6; t <= 12; t++) {
    fill(&m, t);
    fill(&twin_model, t);
    CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
    CHECK_ST(twin, ema_apply(twin), EMA_OK);
  }
  CHECK_MSG(same_average(ctx, 1, twin, 0, 0), "late member differs from its twin (debias %d)", debias);
  /* member 0 went on undisturbed: compare with a context that never had a bank */
  ema_free(twin);
  fill(&twin_model, 0);
  twin = track(&twin_model, debias, 0.9);
  for (int t = 1; t <= 12; t++) {
    fill(&twin_model, t);
    CHECK_ST(twin, ema_apply(twin), EMA_OK);
  }
  CHECK(same_average(ctx, 0, twin, 0, 1));
  ema_free(twin);
  ema_free(ctx);
}

/* ema_update: a half-life member added at step 40 equals a context whose
   tensors were tracked at step 40, updated at the same steps minus 40 (a
   half-life decay depends only on the steps an update covers). */
static void test_late_member_update(int debias) {
  model m, tm;
  fill(&m, 0);
  ema_ctx *ctx = track(&m, debias, 0.99);
  for (int t = 10; t <= 40; t += 10) {
    fill(&m, t);
    CHECK_ST(ctx, ema_update(ctx, t), EMA_OK);
  }
  ema_schedule p;
  ema_schedule_init(&p, EMA_SCHEDULE_HALFLIFE);
  p.halflife = 25;
  CHECK_ST(ctx, ema_bank_add(ctx, "hl", &p, NULL), EMA_OK);
  tm = m;
  ema_ctx *twin = track(&tm, debias, 0.99);
  CHECK_ST(twin, ema_set_schedule(twin, &p), EMA_OK);
  for (int t = 45; t <= 90; t += 15) {
    fill(&m, t);
    fill(&tm, t);
    CHECK_ST(ctx, ema_update(ctx, t), EMA_OK);
    CHECK_ST(twin, ema_update(twin, t - 40), EMA_OK);
  }
  CHECK_MSG(same_average(ctx, 1, twin, 0, 0), "late update member differs from its twin (debias %d)", debias);
  ema_free(twin);
  ema_free(ctx);
}

static void test_late_member_refusals(void) {
  model m;
  fill(&m, 0);
  ema_ctx *ctx = track(&m, 0, 0.9);
  ema_schedule s;
  ema_schedule_init(&s, EMA_SCHEDULE_CONSTANT);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK_ST(ctx, ema_bank_add(ctx, "x", &s, NULL), EMA_E_STATE);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK_ST(ctx, ema_store(ctx), EMA_OK);
  CHECK_ST(ctx, ema_bank_add(ctx, "x", &s, NULL), EMA_E_STATE);
  CHECK_ST(ctx, ema_restore(ctx), EMA_OK);
  CHECK(ema_bank_size(ctx) == 1);
  /* allocation failure: nothing changes, a retry works */
  ema__test_fail_alloc(0);
  CHECK_ST(ctx, ema_bank_add(ctx, "x", &s, NULL), EMA_E_NOMEM);
  ema__test_fail_alloc(-1);
  CHECK(ema_bank_size(ctx) == 1 && ema_bank_name(ctx, 1) == NULL);
  CHECK_ST(ctx, ema_bank_add(ctx, "x", &s, NULL), EMA_OK);
  CHECK(ema_bank_size(ctx) == 2 && memcmp(ema_bank_average(ctx, "w", 1, NULL), m.w, sizeof m.w) == 0);
  /* KEEP shares its frozen copy with the new member */
  CHECK(ema_bank_average(ctx, "frozen", 1, NULL) == ema_bank_average(ctx, "frozen", 0, NULL));
  CHECK(ema_bank_average(ctx, "step", 1, NULL) == NULL);
  ema_free(ctx);
}

int main(void) {
  test_options();
  test_half_shadows_apply_to_later_tensors();
  test_late_member_apply(0);
  test_late_member_apply(1);
  test_late_member_update(0);
  test_late_member_update(1);
  test_late_member_refusals();
  return check_report("test_options");
}
