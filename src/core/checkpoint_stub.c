/* Checkpoints are not built yet: clear errors until src/io lands. */
#include "internal.h"

ema_status ema_save(const ema_ctx *ctx, const char *path) {
  (void)path;
  if (!ctx) return EMA_E_INVALID_ARG;
  if (ctx->swapped) return ema__fail(ctx, EMA_E_STATE, "ema_save: swapped; call ema_swap() first");
  return ema__fail(ctx, EMA_E_UNSUPPORTED, "ema_save: checkpoints are not built yet in this version");
}
ema_status ema_load(ema_ctx *ctx, const char *path) {
  (void)path;
  if (!ctx) return EMA_E_INVALID_ARG;
  if (ctx->swapped) return ema__fail(ctx, EMA_E_STATE, "ema_load: swapped; call ema_swap() first");
  return ema__fail(ctx, EMA_E_UNSUPPORTED, "ema_load: checkpoints are not built yet in this version");
}
ema_status ema_load_averages_into_model(ema_ctx *ctx, const char *path) {
  (void)path;
  if (!ctx) return EMA_E_INVALID_ARG;
  return ema__fail(ctx, EMA_E_UNSUPPORTED,
                   "ema_load_averages_into_model: checkpoints are not built yet in this version");
}
