/* The model of the legacy checkpoint fixtures (tests/io/data/legacy_*.st):
   the same tensors, bank and training as tests/io/make_legacy.c ran against
   the 0.1 library (commit 4646e0a) when it wrote them. test_legacy.c builds
   it again and compares what the old files hold with what this version
   computes, bit for bit. */
#ifndef EMA_TEST_LEGACY_MODEL_H
#define EMA_TEST_LEGACY_MODEL_H

#include <stdint.h>
#include <string.h>

#include "ema/ema.h"

typedef struct legacy_model {
  float w[6];
  uint16_t h[4]; /* bf16 */
  double b[3];
  int64_t step[1];
} legacy_model;

static const int64_t legacy_shape_w[2] = {2, 3}, legacy_shape_h[1] = {4}, legacy_shape_b[1] = {3},
                     legacy_shape_s[1] = {1};

static void legacy_fill(legacy_model *m, int t) {
  for (int i = 0; i < 6; i++) m->w[i] = (float)(0.25 * i + 0.125 * t);
  for (int i = 0; i < 4; i++) {
    float f = (float)(1.0 + 0.5 * i - 0.0625 * t);
    uint32_t u;
    memcpy(&u, &f, 4);
    m->h[i] = (uint16_t)(u >> 16);
  }
  for (int i = 0; i < 3; i++) m->b[i] = -1.0 + 0.1 * i * t;
  m->step[0] = t;
}

/* debias: 0 for legacy_plain.st (a second average of the bank), 1 for
   legacy_debias.st (zero_debias); both train `steps` steps with ema_update
   (the fixtures: 5). NULL on failure. */
static ema_ctx *legacy_build(legacy_model *m, int debias, int steps) {
  ema_ctx *ctx = NULL;
  if (ema_create(&ctx, 0.9) != EMA_OK) return NULL;
  legacy_fill(m, 0);
  int ok = 1;
  if (debias) {
    ok = ema_set_zero_debias(ctx, 1) == EMA_OK;
  } else {
    ema_schedule s;
    ema_schedule_init(&s, EMA_SCHEDULE_HALFLIFE);
    s.halflife = 3;
    ok = ema_bank_add(ctx, "slow", &s, NULL) == EMA_OK;
  }
  ok = ok && ema_track(ctx, "w", m->w, EMA_F32, 2, legacy_shape_w) == EMA_OK;
  ok = ok && ema_track(ctx, "h", m->h, EMA_BF16, 1, legacy_shape_h) == EMA_OK;
  ok = ok && ema_track(ctx, "b", m->b, EMA_F64, 1, legacy_shape_b) == EMA_OK;
  ok = ok && ema_track_policy(ctx, "step", m->step, EMA_I64, 1, legacy_shape_s, EMA_POLICY_COPY) == EMA_OK;
  for (int t = 1; ok && t <= steps; t++) {
    legacy_fill(m, t);
    if (debias) {
      ok = ema_update(ctx, t) == EMA_OK;
    } else {
      ok = ema_set_num_updates(ctx, t) == EMA_OK && ema_update(ctx, t) == EMA_OK;
    }
  }
  if (!ok) {
    ema_free(ctx);
    return NULL;
  }
  return ctx;
}

#endif
