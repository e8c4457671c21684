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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
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

/* A context for a script over the model: kernels isa, threads, zero-debias
   and same-dtype half shadows as given, the workers used even for this small
   model. Needs check.h (included first). */
static ema_ctx *model_ctx(const char *isa, int threads, int debias, int same_half) {
  ema_ctx *ctx = NULL;
  CHECK(ema_create(&ctx, 0.97) == EMA_OK);
  ctx->k = ema_kernels_by_name(isa);
  ctx->parallel_min = (size_t)1 << 16;
  CHECK_ST(ctx, ema_set_threads(ctx, threads), EMA_OK);
  CHECK_ST(ctx, ema_set_zero_debias(ctx, debias), EMA_OK);
  CHECK_ST(ctx, ema_set_half_shadows(ctx, same_half), EMA_OK);
  return ctx;
}

/* Track every tensor of m as "t<i>". */
static void model_track(ema_ctx *ctx, model *m) {
  char name[16];
  for (int t = 0; t < NT; t++) {
    snprintf(name, sizeof name, "t%d", t);
    CHECK_ST(ctx, ema_track(ctx, name, m->data[t], m->dtype[t], 1, &m->numel[t]), EMA_OK);
  }
}

/* The bytes a run ends with, for comparing runs: the evaluation round trips
   (swap twice, store, copy_to), then for every tensor "t<i>" each member's
   average and the model as copy_to left it, then the model after restore.
   Needs check.h (included first). The caller frees the result. */
static unsigned char *model_final_bytes(ema_ctx *ctx, const model *m, size_t *len) {
  char name[16];
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK_ST(ctx, ema_store(ctx), EMA_OK);
  CHECK_ST(ctx, ema_copy_to(ctx), EMA_OK);
  size_t total = 0, n_avg = ema_bank_size(ctx);
  for (int t = 0; t < NT; t++) {
    ema_dtype sd;
    snprintf(name, sizeof name, "t%d", t);
    ema_average(ctx, name, &sd);
    total += (size_t)m->numel[t] * (n_avg * ema_dtype_size(sd) + 2 * ema_dtype_size(m->dtype[t]));
  }
  unsigned char *out = (unsigned char *)malloc(total + 1), *p = out;
  for (int t = 0; t < NT; t++) {
    ema_dtype sd;
    snprintf(name, sizeof name, "t%d", t);
    ema_average(ctx, name, &sd);
    size_t ab = (size_t)m->numel[t] * ema_dtype_size(sd), mb = (size_t)m->numel[t] * ema_dtype_size(m->dtype[t]);
    for (size_t k = 0; k < n_avg; k++) {
      memcpy(p, ema_bank_average(ctx, name, k, NULL), ab);
      p += ab;
    }
    memcpy(p, m->data[t], mb); /* averages rounded into the model by copy_to */
    p += mb;
  }
  CHECK_ST(ctx, ema_restore(ctx), EMA_OK);
  for (int t = 0; t < NT; t++) {
    size_t mb = (size_t)m->numel[t] * ema_dtype_size(m->dtype[t]);
    memcpy(p, m->data[t], mb);
    p += mb;
  }
  *len = (size_t)(p - out);
  return out;
}

#endif
