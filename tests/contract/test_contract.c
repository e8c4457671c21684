/*
 * Written only against the v0 contract of ARCHITECTURE.md, as an external
 * check would be: public header, shared library, no internals.
 */
#include <ema/ema.h>

#include <stdio.h>
#include <string.h>

#include "../check.h"

static unsigned bits(float f) {
  unsigned u;
  memcpy(&u, &f, 4);
  return u;
}

int main(void) {
  ema_ctx *ctx = NULL;
  float w = 0.0f;
  CHECK(ema_create(&ctx, 0.99) == EMA_OK);
  CHECK(ema_track(ctx, "w", &w, EMA_F32, 0, NULL) == EMA_OK);
  const float *a = (const float *)ema_average(ctx, "w", NULL);
  w = 1.0f;
  CHECK(ema_set_num_updates(ctx, 1) == EMA_OK);
  CHECK(ema_apply(ctx) == EMA_OK);
  CHECK(bits(*a) == bits(0.8181818f));
  CHECK(ema_apply(ctx) == EMA_OK);
  CHECK(bits(*a) == bits(0.96694213f));
  CHECK(ema_apply(ctx) == EMA_OK);
  CHECK(bits(*a) == bits(0.99398947f));
  CHECK(ema_set_num_updates(ctx, 100) == EMA_OK);
  w = 10.0f;
  CHECK(ema_apply(ctx) == EMA_OK);
  CHECK(bits(*a) == bits(1.7308447f));

  char buf[64];
  CHECK(ema_average_name(ctx, "w", buf, sizeof buf) == EMA_OK && strcmp(buf, "w/ExponentialMovingAverage") == 0);
  CHECK(ema_set_name(ctx, "avg") == EMA_OK);
  CHECK(ema_average_name(ctx, "w", buf, sizeof buf) == EMA_OK && strcmp(buf, "w/avg") == 0);
  ema_dtype dt = EMA_I64;
  CHECK(ema_average(ctx, "w", &dt) == a && dt == EMA_F32);
  CHECK(ema_average(ctx, "nope", NULL) == NULL);

  long long step = 0;
  CHECK(ema_track(ctx, "global_step", &step, EMA_I64, 0, NULL) == EMA_E_DTYPE);
  CHECK(strlen(ema_last_error(ctx)) > 0);
  CHECK(ema_track(ctx, "w", &w, EMA_F32, 0, NULL) == EMA_E_EXISTS);
  CHECK(ema_set_decay(ctx, 1.5) == EMA_E_INVALID_ARG);
  CHECK(ema_set_zero_debias(ctx, 1) == EMA_E_STATE);
  const char *names[] = {"w", "missing"};
  float before = *a;
  CHECK(ema_apply_some(ctx, names, 2) == EMA_E_NOT_FOUND && *a == before);
  CHECK(ema_apply_some(ctx, names, 1) == EMA_OK && *a != before);

  float avg = *a;
  CHECK(ema_restore(ctx) == EMA_E_STATE);
  CHECK(ema_swap(ctx) == EMA_OK && w == avg);
  CHECK(ema_apply(ctx) == EMA_E_STATE);
  CHECK(ema_save(ctx, "unused.safetensors") == EMA_E_STATE);
  CHECK(ema_swap(ctx) == EMA_OK && w == 10.0f && *a == avg);
  CHECK(ema_store(ctx) == EMA_OK && ema_copy_to(ctx) == EMA_OK && w == avg);
  CHECK(ema_restore(ctx) == EMA_OK && w == 10.0f);
  CHECK(ema_effective_decay(ctx) == (double)((1.0f + 100.0f) / (10.0f + 100.0f)));
  CHECK(strcmp(ema_status_string(EMA_OK), "ok") == 0);
  ema_free(ctx);
  ema_free(NULL);

  /* zero_debias before tracking */
  CHECK(ema_create(&ctx, 0.25) == EMA_OK);
  CHECK(ema_set_zero_debias(ctx, 1) == EMA_OK);
  float v[2] = {1.0f, 2.0f};
  int64_t n2 = 2;
  CHECK(ema_track(ctx, "v", v, EMA_F32, 1, &n2) == EMA_OK);
  CHECK(ema_apply(ctx) == EMA_OK);
  a = (const float *)ema_average(ctx, "v", NULL);
  CHECK(a[0] == 1.0f && a[1] == 2.0f);
  ema_free(ctx);
  CHECK(ema_version_number() == EMA_VERSION_NUMBER);
  return check_report("test_contract");
}
