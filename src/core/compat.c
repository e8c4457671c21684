/*
 * src/core/compat.c: the 0.1 spellings of renamed functions, kept as thin
 * exported wrappers until they are removed before 1.0 (ema/core.h, section
 * "Deprecated names"). Each one only calls its new name.
 */
#include "internal.h"

ema_status ema_track_state(ema_ctx *ctx, const char *name, void *data, ema_dtype dtype, int ndim,
                           const int64_t *shape) {
  return ema_track_policy(ctx, name, data, dtype, ndim, shape, EMA_POLICY_COPY);
}

ema_status ema_add_average(ema_ctx *ctx, const char *name, const ema_schedule *s, size_t *index) {
  return ema_bank_add(ctx, name, s, index);
}

size_t ema_average_count(const ema_ctx *ctx) { return ema_bank_size(ctx); }

const char *ema_average_label(const ema_ctx *ctx, size_t k) { return ema_bank_name(ctx, k); }

const void *ema_average_of(const ema_ctx *ctx, const char *name, size_t k, ema_dtype *dtype) {
  return ema_bank_average(ctx, name, k, dtype);
}

ema_status ema_set_active_average(ema_ctx *ctx, size_t k) { return ema_bank_set_active(ctx, k); }

double ema_get_decay(const ema_ctx *ctx) { return ema_decay(ctx); }

int64_t ema_get_num_updates(const ema_ctx *ctx) { return ema_num_updates(ctx); }
