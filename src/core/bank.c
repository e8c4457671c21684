/*
 * src/core/bank.c: the bank: its members (member 0 is the context's own),
 * their schedules and the active member. A member may be added at any time;
 * a late member starts from the model's current values.
 */
#include <string.h>

#include "internal.h"

ema_status ema_set_schedule(ema_ctx *ctx, const ema_schedule *s) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  const char *why = ema__schedule_problem(s);
  if (why) return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_set_schedule: %s", why);
  ctx->avg[0].sched = *s;
  return EMA_OK;
}

static ema_status check_member(ema_ctx *ctx, const char *name, const ema_schedule *s) {
  if (!name) return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_bank_add: name is NULL");
  size_t n = strlen(name);
  if (n == 0 || n > EMA_MAX_EMA_NAME || !ema__valid_utf8(name, n))
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_bank_add: the name must be 1 to %d bytes of UTF-8", EMA_MAX_EMA_NAME);
  const char *why = ema__schedule_problem(s);
  if (why) return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_bank_add: %s", why);
  if (ctx->n_avg == EMA_MAX_AVERAGES)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_bank_add: a context holds at most %d averages", EMA_MAX_AVERAGES);
  for (size_t k = 0; k < ctx->n_avg; k++)
    if (strcmp(ctx->avg[k].name, name) == 0)
      return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_bank_add: an average is already called '%s'", name);
  /* the new member starts from the model's values: they must be the training values */
  if (ctx->n_averaged > 0 && ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE,
                     "ema_bank_add: the model holds the averages (swapped); call ema_swap() to swap back first");
  if (ctx->n_averaged > 0 && ctx->stored)
    return ema__fail(ctx, EMA_E_STATE,
                     "ema_bank_add: a stored copy of the model is held (the model may hold averages); call "
                     "ema_restore() first");
  return EMA_OK;
}

ema_status ema_bank_add(ema_ctx *ctx, const char *name, const ema_schedule *s, size_t *index) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  ema_status st = ema__async_settle(ctx, "ema_bank_add");
  if (st == EMA_OK) st = check_member(ctx, name, s);
  if (st != EMA_OK) return st;
  size_t k = ctx->n_avg, total = 0;
  /* One region of the new member's own arena for the shadows of every
     averaged tensor tracked so far, carved in registration order. */
  for (size_t i = 0; i < ctx->count; i++) {
    const ema_tensor *t = &ctx->tensors[i];
    if (t->policy == EMA_POLICY_AVERAGE) total += ema__member_bytes(ctx, t->numel, t->sdtype);
  }
  unsigned char *region = NULL;
  if (total) {
    region = ema__arena_alloc(ctx, k, total);
    if (!region)
      return ema__fail(ctx, EMA_E_NOMEM, "ema_bank_add: out of memory allocating %zu bytes of shadows for '%s'", total,
                       name);
  }
  size_t off = 0;
  for (size_t i = 0; i < ctx->count; i++) {
    ema_tensor *t = &ctx->tensors[i];
    ema__init_member(ctx, t, k, t->policy == EMA_POLICY_AVERAGE ? region + off : NULL);
    if (t->policy == EMA_POLICY_AVERAGE) off += ema__member_bytes(ctx, t->numel, t->sdtype);
  }
  ema_avg *a = &ctx->avg[k];
  memcpy(a->name, name, strlen(name) + 1);
  a->sched = *s;
  if (index) *index = k;
  ctx->n_avg++;
  return EMA_OK;
}

size_t ema_bank_size(const ema_ctx *ctx) { return ctx ? ctx->n_avg : 0; }

const char *ema_bank_name(const ema_ctx *ctx, size_t k) { return ctx && k < ctx->n_avg ? ctx->avg[k].name : NULL; }

int64_t ema_last_step(const ema_ctx *ctx) { return ctx ? ctx->last_step : 0; }

ema_status ema_bank_set_active(ema_ctx *ctx, size_t k) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (k >= ctx->n_avg)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_bank_set_active: there are %zu averages, not %zu", ctx->n_avg, k + 1);
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "ema_bank_set_active: swapped; call ema_swap() to swap back first");
  ctx->active = k;
  return EMA_OK;
}

size_t ema_bank_active(const ema_ctx *ctx) { return ctx ? ctx->active : 0; }
