/*
 * src/dist/shard.c: ema_track_shard and ema_shard_info. A shard is an
 * ordinary tracked tensor (its local box, averaged by the core like any
 * other) plus the box's place in the global tensor, kept in
 * ema_tensor.shard; the core frees it with the tensor.
 */
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"

ema_status ema_track_shard(ema_ctx *ctx, const char *name, void *data, ema_dtype dtype, int ndim,
                           const int64_t *global_shape, const int64_t *offsets, const int64_t *local_shape) {
  static const char *fn = "ema_track_shard";
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (ndim < 0 || ndim > EMA_MAX_DIMS)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: ndim %d is outside [0, %d]", fn, ndim, EMA_MAX_DIMS);
  if (ndim > 0 && (!global_shape || !offsets || !local_shape))
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: global_shape, offsets and local_shape are needed for ndim %d", fn,
                     ndim);
  for (int i = 0; i < ndim; i++) {
    if (global_shape[i] < 0 || offsets[i] < 0 || local_shape[i] < 0 || offsets[i] > global_shape[i] ||
        local_shape[i] > global_shape[i] - offsets[i])
      return ema__fail(ctx, EMA_E_INVALID_ARG,
                       "%s: the box of '%s' leaves the global tensor in dimension %d (offset %lld, size %lld, "
                       "global %lld)",
                       fn, name ? name : "(null)", i, (long long)offsets[i], (long long)local_shape[i],
                       (long long)global_shape[i]);
  }
  struct ema_shard *sh = (struct ema_shard *)ema__calloc(1, sizeof *sh);
  if (!sh) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
  for (int i = 0; i < ndim; i++) {
    sh->global[i] = global_shape[i];
    sh->offset[i] = offsets[i];
  }
  ema_status st = ema_track(ctx, name, data, dtype, ndim, local_shape);
  if (st != EMA_OK) {
    free(sh);
    return st; /* ema_track's message */
  }
  ema__find(ctx, name)->shard = sh;
  return EMA_OK;
}

ema_status ema_shard_info(const ema_ctx *ctx, const char *name, int *sharded, int64_t *global_shape, int64_t *offsets) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!name) return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_shard_info: name is NULL");
  const ema_tensor *t = ema__find(ctx, name);
  if (!t) return ema__fail(ctx, EMA_E_NOT_FOUND, "ema_shard_info: no tensor named '%s' is tracked", name);
  if (sharded) *sharded = t->shard != NULL;
  for (int i = 0; i < EMA_MAX_DIMS; i++) {
    int in = i < t->ndim;
    if (global_shape) global_shape[i] = !in ? 0 : t->shard ? t->shard->global[i] : t->shape[i];
    if (offsets) offsets[i] = in && t->shard ? t->shard->offset[i] : 0;
  }
  return EMA_OK;
}
