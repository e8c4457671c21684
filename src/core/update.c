/*
 * src/core/update.c: the two updates. ema_apply / ema_apply_some are
 * TensorFlow's (float32 decay with the num_updates warm-up, caller-owned
 * step counter); ema_update(ctx, step) is the step-driven update of the
 * schedules (float64 decays, k-step decays). Both build a list of run items
 * and hand it to ema__run (run.c). COPY and KEEP tensors are never touched.
 */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "run.h"

/* ------------------------------------------------------------------------ */
/* TensorFlow updates                                                       */
/* ------------------------------------------------------------------------ */

/* Zero-debias factor 1 - (1 - om)^k in the shadow's precision, as
   TensorFlow's _zero_debias computes it (k converted to that precision). */
static ema_coef debias_factor(int pair, ema_coef om, int64_t k) {
  ema_coef f;
  memset(&f, 0, sizeof f);
  switch (pair) {
    case EMA_PAIR_F64:
      f.d = 1.0 - pow(1.0 - om.d, (double)k);
      break;
    case EMA_PAIR_BF16_BF16: {
      float base = ema_bf16_to_f32(ema_f32_to_bf16(1.0f - ema_bf16_to_f32(om.h)));
      float kk = ema_bf16_to_f32(ema_f32_to_bf16((float)k));
      float p = ema_bf16_to_f32(ema_f32_to_bf16(powf(base, kk)));
      f.h = ema_f32_to_bf16(1.0f - p);
      break;
    }
    case EMA_PAIR_F16_F16: {
      float base = ema_f16_to_f32(ema_f32_to_f16(1.0f - ema_f16_to_f32(om.h)));
      float kk = ema_f16_to_f32(ema_f32_to_f16((float)k));
      float p = ema_f16_to_f32(ema_f32_to_f16(powf(base, kk)));
      f.h = ema_f32_to_f16(1.0f - p);
      break;
    }
    default:
      f.f = 1.0f - powf(1.0f - om.f, (float)k);
      break;
  }
  return f;
}

/* TensorFlow's coefficients of every average for every pair, once per call. */
static void tf_coefs(ema_ctx *ctx, float *d) {
  for (size_t a = 0; a < ctx->n_avg; a++) {
    d[a] = ema__effective_decay_f32(ctx, a);
    for (int p = 0; p < EMA_PAIR_COUNT; p++) ctx->coef_om[p][a] = ema__coef_from_f32_om(1.0f - d[a], p);
  }
}

static ema_run_item *new_update_item(ema_ctx *ctx, ema_tensor *t, size_t *n) {
  size_t i = (*n)++;
  ema_run_item *it = &ctx->run_items[i];
  it->t = t;
  it->op = EMA_OP_UPDATE;
  it->debias = ctx->zero_debias;
  it->n_avg = (int)ctx->n_avg;
  it->copy_mask = 0;
  it->k = 0;
  it->om = ctx->coef_om[t->pair];
  it->factor = ctx->run_factors + i * EMA_MAX_AVERAGES;
  it->side = NULL;
  return it;
}

/* TensorFlow's update of every average (ema_apply, ema_apply_some). */
static void add_update(ema_ctx *ctx, ema_tensor *t, const float *d, size_t *n) {
  ema_run_item *it = new_update_item(ctx, t, n);
  if (!ctx->zero_debias) return;
  ema_coef *factor = ctx->run_factors + (size_t)(it - ctx->run_items) * EMA_MAX_AVERAGES;
  for (size_t a = 0; a < ctx->n_avg; a++) {
    t->debias_prod[a] *= (double)d[a];
    t->debias_steps[a]++;
    factor[a] = debias_factor(t->pair, it->om[a], t->debias_steps[a]);
  }
}

/* ema_apply is TensorFlow's arithmetic: every average must have a constant
   decay (changed between calls if the caller likes). */
static ema_status require_constant(ema_ctx *ctx, const char *fn) {
  for (size_t a = 0; a < ctx->n_avg; a++)
    if (ctx->avg[a].sched.kind != EMA_SCHEDULE_CONSTANT)
      return ema__fail(ctx, EMA_E_STATE,
                       "%s: average '%s' follows a %s schedule, which needs the training step: call ema_update(ctx, "
                       "step) instead",
                       fn, ctx->avg[a].name, ema__schedule_name(ctx->avg[a].sched.kind));
  return EMA_OK;
}

ema_status ema__apply_begin(ema_ctx *ctx, const char *fn, size_t *n) {
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "%s: the model holds the averages (swapped); call ema_swap() to swap back first",
                     fn);
  ema_status rc = require_constant(ctx, fn);
  if (rc != EMA_OK) return rc;
  float d[EMA_MAX_AVERAGES];
  tf_coefs(ctx, d);
  *n = 0;
  for (size_t i = 0; i < ctx->count; i++)
    if (ctx->tensors[i].pair >= 0) add_update(ctx, &ctx->tensors[i], d, n);
  return EMA_OK;
}

ema_status ema_apply(ema_ctx *ctx) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  size_t n = 0;
  ema_status rc = ema__async_settle(ctx, "ema_apply");
  if (rc == EMA_OK) rc = ema__apply_begin(ctx, "ema_apply", &n);
  if (rc != EMA_OK) return rc;
  ema__run(ctx, ctx->run_items, n);
  return EMA_OK;
}

ema_status ema_apply_some(ema_ctx *ctx, const char *const *names, size_t n) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (n == 0) return EMA_OK;
  if (!names) return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_apply_some: names is NULL with n = %zu", n);
  ema_status ast = ema__async_settle(ctx, "ema_apply_some");
  if (ast != EMA_OK) return ast;
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE,
                     "ema_apply_some: the model holds the averages (swapped); call ema_swap() to swap back first");
  ema_status rc = require_constant(ctx, "ema_apply_some");
  if (rc != EMA_OK) return rc;
  /* Validate every name before updating anything. */
  ema_status st = EMA_OK;
  size_t i;
  for (i = 0; i < n; i++) {
    ema_tensor *t = names[i] ? ema__find(ctx, names[i]) : NULL;
    if (!names[i]) {
      st = ema__fail(ctx, EMA_E_INVALID_ARG, "ema_apply_some: names[%zu] is NULL; nothing was updated", i);
    } else if (!t) {
      st = ema__fail(ctx, EMA_E_NOT_FOUND, "ema_apply_some: no tensor named '%s' is tracked; nothing was updated",
                     names[i]);
    } else if (t->policy == EMA_POLICY_KEEP) {
      st = ema__fail(ctx, EMA_E_INVALID_ARG,
                     "ema_apply_some: '%s' has policy KEEP (frozen at registration), which is never updated; "
                     "nothing was updated",
                     names[i]);
    } else if (t->pair < 0) {
      st = ema__fail(ctx, EMA_E_DTYPE,
                     "ema_apply_some: '%s' is a COPY tensor (ema_track_policy with EMA_POLICY_COPY), which is never "
                     "averaged; nothing was updated",
                     names[i]);
    } else if (t->mark) {
      st = ema__fail(ctx, EMA_E_INVALID_ARG, "ema_apply_some: '%s' is listed twice; nothing was updated", names[i]);
    } else {
      t->mark = 1;
      continue;
    }
    break;
  }
  for (size_t j = 0; j < i; j++) ema__find(ctx, names[j])->mark = 0;
  if (st != EMA_OK) return st;
  float d[EMA_MAX_AVERAGES];
  tf_coefs(ctx, d);
  size_t m = 0;
  for (i = 0; i < n; i++) add_update(ctx, ema__find(ctx, names[i]), d, &m);
  ema__run(ctx, ctx->run_items, m);
  return EMA_OK;
}

/* ------------------------------------------------------------------------ */
/* Step-driven updates                                                      */
/* ------------------------------------------------------------------------ */

ema_status ema__update_begin(ema_ctx *ctx, int64_t step, const char *fn, size_t *nitems) {
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "%s: the model holds the averages (swapped); call ema_swap() to swap back first",
                     fn);
  if (step <= ctx->last_step || step < 1)
    return ema__fail(ctx, EMA_E_INVALID_ARG,
                     "%s: step %lld must be >= 1 and larger than the previous update's step %lld", fn, (long long)step,
                     (long long)ctx->last_step);
  double d[EMA_MAX_AVERAGES];
  for (size_t a = 0; a < ctx->n_avg; a++) {
    if (ema_schedule_decay(&ctx->avg[a].sched, ctx->last_step, step, &d[a]) != EMA_OK)
      return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: the schedule of average '%s' is invalid", fn, ctx->avg[a].name);
  }
  unsigned copy_mask = 0;
  for (size_t a = 0; a < ctx->n_avg; a++) {
    if (d[a] == 0.0) copy_mask |= 1u << a;
    for (int p = 0; p < EMA_PAIR_COUNT; p++) ctx->coef_om[p][a] = ema__coef_from_f64(1.0 - d[a], p);
  }
  size_t n = 0;
  for (size_t i = 0; i < ctx->count; i++) {
    ema_tensor *t = &ctx->tensors[i];
    if (t->pair < 0) continue;
    ema_run_item *it = new_update_item(ctx, t, &n);
    it->copy_mask = copy_mask;
    if (!ctx->zero_debias) continue;
    ema_coef *factor = ctx->run_factors + (n - 1) * EMA_MAX_AVERAGES;
    for (size_t a = 0; a < ctx->n_avg; a++) {
      t->debias_steps[a]++;
      t->debias_prod[a] *= d[a];
      /* exact zero-debias: divide by the accumulated weight 1 - prod(d) */
      factor[a] = ema__coef_from_f64(1.0 - t->debias_prod[a], t->pair);
    }
  }
  ctx->last_step = step;
  *nitems = n;
  return EMA_OK;
}

ema_status ema_update(ema_ctx *ctx, int64_t step) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  size_t n = 0;
  ema_status rc = ema__async_settle(ctx, "ema_update");
  if (rc == EMA_OK) rc = ema__update_begin(ctx, step, "ema_update", &n);
  if (rc != EMA_OK) return rc;
  ema__run(ctx, ctx->run_items, n);
  return EMA_OK;
}
