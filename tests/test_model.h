/*
 * tests/test_model.h: the test model that the threaded and asynchronous
 * tests share: NT tensors of odd sizes (one empty, one of 300,000 elements)
 * cycling through every floating dtype, filled from a fixed linear
 * congruential generator, so that every run and every test sees the same
 * bytes. Header-only, for tests.
 */
#ifndef EMA_TEST_MODEL_H
#define EMA_TEST_MODEL_H

#include <ema/ema.h>

#include <stdint.h>
#include <stdlib.h>

#include "kernels/kernels.h"

enum { NT = 41 };

typedef struct model {
  void *data[NT];
  ema_dtype dtype[NT];
  int64_t numel[NT];
} model;

static uint64_t rng;
static uint32_t next32(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(rng >> 32);
}
static float randf(void) { return (float)next32() / 4294967296.0f * 4.0f - 2.0f; }

/* Fill tensor t with values that depend on salt (0 at creation, the step after). */
static void fill(model *m, int t, int salt) {
  for (int64_t i = 0; i < m->numel[t]; i++) {
    float x = randf() + (float)salt * 0.01f;
    switch (m->dtype[t]) {
      case EMA_F32:
        ((float *)m->data[t])[i] = x;
        break;
      case EMA_F64:
        ((double *)m->data[t])[i] = (double)x * 1.000001;
        break;
      case EMA_F16:
        ((uint16_t *)m->data[t])[i] = ema_f32_to_f16(x);
        break;
      case EMA_BF16:
        ((uint16_t *)m->data[t])[i] = ema_f32_to_bf16(x);
        break;
      default:
        break;
    }
  }
}

/* The model; small divides every size by 16 (for the slower test builds). */
static void make_model(model *m, int small) {
  static const ema_dtype dts[4] = {EMA_F32, EMA_BF16, EMA_F64, EMA_F16};
  rng = 42;
  for (int t = 0; t < NT; t++) {
    m->dtype[t] = dts[t % 4];
    m->numel[t] = t == 7 ? 300000 : (int64_t)(next32() % 20000) + (t % 5 == 0 ? 0 : 1);
    if (small) m->numel[t] /= 16;
    if (t == 3) m->numel[t] = 0;
    m->data[t] = malloc((size_t)m->numel[t] * 8 + 8);
    fill(m, t, 0);
  }
}

static void free_model(model *m) {
  for (int t = 0; t < NT; t++) free(m->data[t]);
}

#endif
