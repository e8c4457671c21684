/* A program outside the project, built against the installed libema. */
#include <ema/ema.h>

#include <stdio.h>

int main(void) {
  if (ema_version_number() != EMA_VERSION_NUMBER) {
    fprintf(stderr, "header %d, library %u\n", EMA_VERSION_NUMBER, ema_version_number());
    return 1;
  }
  ema_ctx *ctx = NULL;
  float w = 0.0f;
  if (ema_create(&ctx, 0.99) != EMA_OK) return 1;
  if (ema_track(ctx, "w", &w, EMA_F32, 0, NULL) != EMA_OK) return 1;
  w = 1.0f;
  ema_set_num_updates(ctx, 1);
  ema_apply(ctx);
  float a = *(const float *)ema_average(ctx, "w", NULL);
  ema_free(ctx);
  if (a != 0.8181818f) {
    fprintf(stderr, "average %.9g\n", (double)a);
    return 1;
  }
  printf("consumer ok: libema %s, kernels %s\n", ema_version_string(), ema_isa());
  return 0;
}
