/*
 * src/io/load_meta.c: reading the EMA state of a checkpoint's __metadata__
 * for ema_load (decay, num_updates, last step, zero_debias, the bank's names
 * and schedules). Everything is parsed into the loader; nothing reaches the
 * context before the commit.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/load.h"

/* Plain decimal integers only ("-"? digits), in int64_t's range: no sign
   "+", spaces, hex or out-of-range values (strtoll would clamp those). */
static int parse_i64(const char *s, int64_t *out) {
  const char *d = s && *s == '-' ? s + 1 : s;
  if (!d || !*d || strspn(d, "0123456789") != strlen(d)) return 0;
  errno = 0;
  char *end = NULL;
  long long v = strtoll(s, &end, 10);
  if (errno == ERANGE || *end) return 0;
  *out = (int64_t)v;
  return 1;
}

/* Decimal numbers only, as "%.17g" writes them: -?digits(.digits)?
   ([eE][+-]?digits)?, finite. No hex floats, inf, nan or spaces, which
   strtod would also take. */
static int parse_f64(const char *s, double *out) {
  if (!s) return 0;
  const char *p = s + (*s == '-');
  size_t n = strspn(p, "0123456789");
  if (n == 0) return 0;
  p += n;
  if (*p == '.') {
    n = strspn(p + 1, "0123456789");
    if (n == 0) return 0;
    p += 1 + n;
  }
  if (*p == 'e' || *p == 'E') {
    p += 1 + (p[1] == '+' || p[1] == '-');
    n = strspn(p, "0123456789");
    if (n == 0) return 0;
    p += n;
  }
  if (*p) return 0;
  errno = 0;
  double v = strtod(s, NULL);
  if (!isfinite(v)) return 0;
  *out = v;
  return 1;
}

/* The metadata value v, escaped, for a message. */
#define Q(v) (ckpt_quote(qbuf, sizeof qbuf, (v)), qbuf)

/* The ema.average.<k>.* keys of average k into out[k]. */
static ema_status read_average(loader *L, ema_avg *out, size_t k) {
  char qbuf[CKPT_QUOTE_CAP];
  ema_ctx *ctx = L->ctx;
  char key[64];
  const char *v;
  ema_schedule *sc = &out[k].sched;
#define GET(field) (snprintf(key, sizeof key, "ema.average.%zu." field, k), st_meta_get(L->f, key))
  if ((v = GET("name")) != NULL) {
    if (!*v || strlen(v) > EMA_MAX_EMA_NAME)
      return ema__fail(ctx, EMA_E_FORMAT, "%s: metadata %s has an invalid length", L->fn, key);
    snprintf(out[k].name, sizeof out[k].name, "%s", v);
  }
  if ((v = GET("schedule")) != NULL && !ema__schedule_from_name(v, &sc->kind))
    return ema__fail(ctx, EMA_E_UNSUPPORTED, "%s: the checkpoint uses decay schedule %s, unknown to this version",
                     L->fn, Q(v));
  static const char *const fields[] = {"decay", "min_decay", "inv_gamma", "power", "gamma", "sigma_rel", "halflife"};
  double *dst[] = {&sc->decay, &sc->min_decay, &sc->inv_gamma, &sc->power, &sc->gamma, &sc->sigma_rel, &sc->halflife};
  for (size_t j = 0; j < sizeof fields / sizeof fields[0]; j++) {
    snprintf(key, sizeof key, "ema.average.%zu.%s", k, fields[j]);
    v = st_meta_get(L->f, key);
    if (v && !parse_f64(v, dst[j]))
      return ema__fail(ctx, EMA_E_FORMAT, "%s: metadata %s %s is not a number", L->fn, key, Q(v));
  }
  if ((v = GET("update_after_step")) != NULL && !parse_i64(v, &sc->update_after_step))
    return ema__fail(ctx, EMA_E_FORMAT, "%s: metadata %s %s is not an integer in range", L->fn, key, Q(v));
#undef GET
  const char *why = ema__schedule_problem(sc);
  if (why) return ema__fail(ctx, EMA_E_FORMAT, "%s: the schedule of average %zu is invalid: %s", L->fn, k, why);
  for (size_t j = 0; j < k; j++)
    if (strcmp(out[j].name, out[k].name) == 0)
      return ema__fail(ctx, EMA_E_FORMAT, "%s: two averages are called %s", L->fn, Q(out[k].name));
  return EMA_OK;
}

/* The bank's names and schedules as the file records them. A file without
   the per-average keys (another writer, or a single average) keeps the
   context's schedules. */
static ema_status read_schedules(loader *L) {
  char qbuf[CKPT_QUOTE_CAP];
  ema_ctx *ctx = L->ctx;
  ema_avg *out = L->avg;
  const char *na = st_meta_get(L->f, "ema.averages");
  int64_t n = 1;
  if (na && (!parse_i64(na, &n) || n < 1 || n > EMA_MAX_AVERAGES))
    return ema__fail(ctx, EMA_E_FORMAT, "%s: metadata ema.averages %s is not a count in [1, %d]", L->fn, Q(na),
                     EMA_MAX_AVERAGES);
  if ((size_t)n != ctx->n_avg)
    return ema__fail(ctx, EMA_E_MISMATCH,
                     "%s: the checkpoint's bank has %lld members but this context's has %zu; add the same "
                     "members with ema_bank_add()",
                     L->fn, (long long)n, ctx->n_avg);
  memcpy(out, ctx->avg, sizeof ctx->avg);
  L->n_avg = (size_t)n;
  snprintf(out[0].name, sizeof out[0].name, "%s", L->ema_name);
  if (strlen(L->ema_name) == 0 || strlen(L->ema_name) > EMA_MAX_EMA_NAME)
    return ema__fail(ctx, EMA_E_FORMAT, "%s: metadata ema.name has an invalid length", L->fn);
  const char *d = st_meta_get(L->f, "ema.decay");
  if (d && (!parse_f64(d, &out[0].sched.decay) || !(out[0].sched.decay >= 0.0 && out[0].sched.decay <= 1.0)))
    return ema__fail(ctx, EMA_E_FORMAT, "%s: metadata ema.decay %s is not a decay in [0, 1]", L->fn, Q(d));
  for (size_t k = 0; k < (size_t)n; k++) {
    ema_status st = read_average(L, out, k);
    if (st != EMA_OK) return st;
  }
  return EMA_OK;
}

ema_status load_read_state(loader *L) {
  char qbuf[CKPT_QUOTE_CAP];
  ema_ctx *ctx = L->ctx;
  const char *fn = L->fn;
  L->num_updates = ctx->num_updates;
  L->last_step = ctx->last_step;
  const char *n = st_meta_get(L->f, "ema.num_updates"), *z = st_meta_get(L->f, "ema.zero_debias");
  const char *ls = st_meta_get(L->f, "ema.last_step"), *sch = st_meta_get(L->f, "ema.schedule");
  ema_schedule_kind kind;
  if (n && !parse_i64(n, &L->num_updates))
    return ema__fail(ctx, EMA_E_FORMAT, "%s: metadata ema.num_updates %s is not an integer in range", fn, Q(n));
  if (ls && (!parse_i64(ls, &L->last_step) || L->last_step < 0))
    return ema__fail(ctx, EMA_E_FORMAT, "%s: metadata ema.last_step %s is not a step", fn, Q(ls));
  if (z && strcmp(z, ctx->zero_debias ? "1" : "0") != 0)
    return ema__fail(ctx, EMA_E_MISMATCH,
                     "%s: the checkpoint was saved with zero_debias=%s but this context has zero_debias=%d; call "
                     "ema_set_zero_debias() before tracking",
                     fn, Q(z), ctx->zero_debias);
  if (sch && !ema__schedule_from_name(sch, &kind))
    return ema__fail(ctx, EMA_E_UNSUPPORTED, "%s: the checkpoint uses decay schedule %s, unknown to this version", fn,
                     Q(sch));
  return read_schedules(L);
}

ema_status load_read_policies(loader *L) {
  ema_ctx *ctx = L->ctx;
  char qbuf[CKPT_QUOTE_CAP];
  size_t pl = sizeof CKPT_POLICY_PREFIX - 1;
  L->fpol = (signed char *)ema__malloc(ctx->count + 1);
  if (!L->fpol) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", L->fn);
  memset(L->fpol, -1, ctx->count + 1);
  for (size_t i = 0; i < L->f->n_meta; i++) {
    const st_meta *m = &L->f->meta[i];
    if (m->key_len < pl || memcmp(m->key, CKPT_POLICY_PREFIX, pl) != 0) continue;
    signed char pol;
    if (strcmp(m->value, "copy") == 0)
      pol = EMA_POLICY_COPY;
    else if (strcmp(m->value, "keep") == 0)
      pol = EMA_POLICY_KEEP;
    else if (strcmp(m->value, "average") == 0)
      pol = EMA_POLICY_AVERAGE;
    else {
      char kq[CKPT_QUOTE_CAP];
      ckpt_quote(kq, sizeof kq, m->key);
      return ema__fail(ctx, EMA_E_FORMAT, "%s: metadata %s has unknown policy %s", L->fn, kq, Q(m->value));
    }
    const ema_tensor *t = ema__find(ctx, m->key + pl);
    if (t) L->fpol[t - ctx->tensors] = pol; /* tensors not registered are ignored */
  }
  return EMA_OK;
}

ema_status load_check_policy(loader *L, size_t i, const char *avg_key) {
  const ema_tensor *t = &L->ctx->tensors[i];
  ema_policy fp = L->fpol[i] >= 0 ? (ema_policy)L->fpol[i]
                                  : (avg_key && st_find(L->f, avg_key) ? EMA_POLICY_AVERAGE : EMA_POLICY_COPY);
  /* unrecorded and registered AVERAGE: the missing average is reported by
     the plan, naming the key it looked for */
  if (fp == t->policy || (L->fpol[i] < 0 && t->policy == EMA_POLICY_AVERAGE)) return EMA_OK;
  char qbuf[CKPT_QUOTE_CAP];
  return ema__fail(L->ctx, EMA_E_MISMATCH,
                   "%s: tensor %s was saved with policy %s but is registered with policy %s; register it with "
                   "ema_track_policy(..., %s) to load this checkpoint",
                   L->fn, Q(t->name), ema__policy_name(fp), ema__policy_name(t->policy),
                   fp == EMA_POLICY_KEEP   ? "EMA_POLICY_KEEP"
                   : fp == EMA_POLICY_COPY ? "EMA_POLICY_COPY"
                                           : "EMA_POLICY_AVERAGE");
}
