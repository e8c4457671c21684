/*
 * src/dist/plan.c: the tensors a context saves, under ema_save's names:
 *   <n>                          the model values (model dtype)
 *   <n>/<ema>                    member k's average (shadow dtype)
 *   <n>/<ema>/biased             zero_debias: the biased accumulator
 *   <n>/<ema>/local_step         zero_debias: int64 scalar
 *   <n>/<ema>/decay_product      zero_debias: float64 scalar
 * (EMA_POLICY_COPY tensors: <n> only; EMA_POLICY_KEEP: <n> and the frozen
 * copy, in the model dtype, under every member's <n>/<ema>)
 * each with the box this rank holds of it (scalars and replicated tensors:
 * the whole of it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"

int dist_is_sum_key(const char *key) {
  return strcmp(key, DIST_SUM_KEY) == 0 || strcmp(key, "libema.checksum") == 0; /* and 0.1's */
}

const char *dist_role_name(int role) {
  static const char *const names[] = {"model", "average", "biased", "local_step", "decay_product"};
  return role >= 0 && role <= DR_PROD ? names[role] : "?";
}

static char *key_of(const char *name, const char *ename, const char *extra) {
  size_t n = strlen(name) + (ename ? strlen(ename) + 1 : 0) + (extra ? strlen(extra) + 1 : 0) + 1;
  char *s = (char *)ema__malloc(n);
  if (!s) return NULL;
  snprintf(s, n, "%s%s%s%s%s", name, ename ? "/" : "", ename ? ename : "", extra ? "/" : "", extra ? extra : "");
  return s;
}

static int add(dist_entry *e, size_t *n, ema_tensor *t, int role, size_t k, const char *ename) {
  static const char *const extra[] = {NULL, NULL, "biased", "local_step", "decay_product"};
  dist_entry *d = &e[*n];
  memset(d, 0, sizeof *d);
  d->key = key_of(t->name, role == DR_MODEL ? NULL : ename, extra[role]);
  if (!d->key) return -1;
  d->t = t;
  d->role = role;
  d->k = k;
  d->sharded = t->shard != NULL;
  int scalar = role == DR_STEPS || role == DR_PROD;
  d->ndim = scalar ? 0 : t->ndim;
  d->dtype = role == DR_MODEL ? t->dtype : role == DR_STEPS ? EMA_I64 : role == DR_PROD ? EMA_F64 : t->sdtype;
  for (int i = 0; i < d->ndim; i++) {
    d->local[i] = t->shape[i];
    d->global[i] = t->shard ? t->shard->global[i] : t->shape[i];
    d->offset[i] = t->shard ? t->shard->offset[i] : 0;
  }
  switch (role) {
    case DR_MODEL:
      d->data = t->data;
      break;
    case DR_AVG:
      d->data = t->average[k];
      break;
    case DR_BIASED:
      d->data = t->shadow[k];
      break;
    case DR_STEPS:
      d->data = &t->debias_steps[k];
      break;
    default:
      d->data = &t->debias_prod[k];
      break;
  }
  d->nbytes = (size_t)box_volume(d->ndim, d->local) * ema_dtype_size(d->dtype);
  (*n)++;
  return 0;
}

ema_status dist_plan(const ema_ctx *ctx, int for_model, const char *active_name, dist_entry **out, size_t *n) {
  size_t per = for_model ? 1 : 1 + ctx->n_avg * (ctx->zero_debias ? 4 : 1);
  dist_entry *e = (dist_entry *)ema__calloc(ctx->count * per + 1, sizeof *e);
  *out = NULL;
  *n = 0;
  if (!e) return EMA_E_NOMEM;
  size_t m = 0;
  int bad = 0;
  for (size_t i = 0; i < ctx->count && !bad; i++) {
    ema_tensor *t = &ctx->tensors[i];
    int copy = t->policy == EMA_POLICY_COPY, keep = t->policy == EMA_POLICY_KEEP;
    if (for_model) {
      bad = add(e, &m, t, copy ? DR_MODEL : DR_AVG, ctx->active, active_name);
      if (!bad && !copy) e[m - 1].data = t->data; /* lands in the model */
      continue;
    }
    bad = add(e, &m, t, DR_MODEL, 0, NULL);
    if (copy) continue;
    if (keep) { /* the frozen copy under every member's average key, as ema_save */
      for (size_t k = 0; k < ctx->n_avg && !bad; k++) bad = add(e, &m, t, DR_AVG, k, ctx->avg[k].name);
      continue;
    }
    for (size_t k = 0; k < ctx->n_avg && !bad; k++) {
      const char *en = ctx->avg[k].name;
      bad = add(e, &m, t, DR_AVG, k, en);
      if (!bad && ctx->zero_debias)
        bad = add(e, &m, t, DR_BIASED, k, en) || add(e, &m, t, DR_STEPS, k, en) || add(e, &m, t, DR_PROD, k, en);
    }
  }
  if (bad) {
    dist_plan_free(e, m);
    return EMA_E_NOMEM;
  }
  *out = e;
  *n = m;
  return EMA_OK;
}

void dist_plan_free(dist_entry *e, size_t n) {
  if (!e) return;
  for (size_t i = 0; i < n; i++) free(e[i].key);
  free(e);
}
