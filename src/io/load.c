/*
 * src/io/load.c: ema_load and ema_load_averages_into_model over one loader
 * (load.h): open and check, plan, stage, commit.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/load.h"
#include "io/st_internal.h"

static void loader_free(loader *L) {
  st_close(L->f);
  free(L->items);
  ema__aligned_free(L->stage);
}

static int same_shape(const st_tensor *s, const ema_tensor *t) {
  if (s->ndim != t->ndim) return 0;
  for (int i = 0; i < t->ndim; i++)
    if (s->shape[i] != t->shape[i]) return 0;
  return 1;
}

ema_status load_expect(loader *L, const char *key, ema_tensor *t, ema_dtype want, ema_dtype also, int scalar,
                       int dest, size_t k, const char *role) {
  const st_tensor *s = st_find(L->f, key);
  if (!s)
    return ema__fail(L->ctx, EMA_E_MISMATCH, "%s: the checkpoint has no tensor '%s' (%s of '%s')", L->fn, key, role,
                     t->name);
  ema_dtype dt;
  if (!st_dtype_to_ema(s->dtype, &dt) || (dt != want && dt != also))
    return ema__fail(L->ctx, EMA_E_MISMATCH, "%s: tensor '%s' is %s in the checkpoint but %s is needed", L->fn, key,
                     st_dtype_name(s->dtype), ema_dtype_name(want));
  if (scalar ? s->ndim != 0 : !same_shape(s, t)) {
    char a[256], b[256];
    st_shape_str(a, sizeof a, s->ndim, s->shape);
    st_shape_str(b, sizeof b, scalar ? 0 : t->ndim, t->shape);
    return ema__fail(L->ctx, EMA_E_MISMATCH, "%s: tensor '%s' has shape %s in the checkpoint but %s is registered",
                     L->fn, key, a, b);
  }
  load_item *it = &L->items[L->n++];
  it->src = s;
  it->t = t;
  it->dest = dest;
  it->k = k;
  return EMA_OK;
}

/* Verify the 0.1 checksum over the whole data section. */
static ema_status verify_checksum(loader *L, const char *csum) {
  char err[EMA_ERR_CAP];
  char *end = NULL;
  uint64_t want = strtoull(csum, &end, 16);
  if (strlen(csum) != 16 || *end)
    return ema__fail(L->ctx, EMA_E_FORMAT, "%s: '%s' has a malformed libema.checksum '%s'", L->fn, L->what, csum);
  enum { CHUNK = 1 << 20 };
  unsigned char *buf = (unsigned char *)ema__malloc(CHUNK);
  if (!buf) return ema__fail(L->ctx, EMA_E_NOMEM, "%s: out of memory", L->fn);
  uint64_t sum = 0;
  for (size_t i = 0; i < L->f->n_tensors; i++) {
    const st_tensor *s = &L->f->tensors[i];
    ckpt_legacy_hash h;
    ckpt_legacy_init(&h);
    for (uint64_t off = 0; off < s->nbytes; off += CHUNK) {
      size_t len = s->nbytes - off < CHUNK ? (size_t)(s->nbytes - off) : CHUNK;
      ema_status st = st_read_range(L->f, s, off, buf, len, err, sizeof err);
      if (st != EMA_OK) {
        free(buf);
        return ckpt_fail(L->ctx, st, L->fn, err);
      }
      ckpt_legacy_update(&h, buf, len);
    }
    sum += ckpt_legacy_term(s->name, &h);
  }
  free(buf);
  if (sum != want)
    return ema__fail(L->ctx, EMA_E_FORMAT,
                     "%s: '%s' is corrupt: its data does not match the checksum written with it (%016" PRIx64
                     " != %s)",
                     L->fn, L->what, sum, csum);
  return EMA_OK;
}

/* Open, check format and checksum. */
static ema_status loader_open(loader *L, const char *path) {
  char err[EMA_ERR_CAP];
  ema_status st = st_open(path, &L->f, err, sizeof err);
  if (st != EMA_OK) return ckpt_fail(L->ctx, st, L->fn, err);
  const char *fmt = st_meta_get(L->f, "libema.format");
  if (fmt && strcmp(fmt, CKPT_FORMAT_VERSION) != 0)
    return ema__fail(L->ctx, EMA_E_FORMAT,
                     "%s: '%s' is a libema checkpoint of format version %s; this library reads version %s", L->fn,
                     path, fmt, CKPT_FORMAT_VERSION);
  L->ema_name = st_meta_get(L->f, "ema.name");
  if (!L->ema_name) L->ema_name = L->ctx->avg[0].name;
  const char *csum = st_meta_get(L->f, "libema.checksum");
  return csum ? verify_checksum(L, csum) : EMA_OK;
}

/* Read every planned tensor into one staging buffer. */
static ema_status loader_stage(loader *L) {
  size_t total = 0;
  for (size_t i = 0; i < L->n; i++) {
    L->items[i].staged = total;
    total += (size_t)((L->items[i].src->nbytes + EMA_ALIGN - 1) / EMA_ALIGN * EMA_ALIGN);
  }
  L->stage = (unsigned char *)ema__aligned_alloc(total ? total : EMA_ALIGN);
  if (!L->stage)
    return ema__fail(L->ctx, EMA_E_NOMEM, "%s: out of memory staging %zu bytes of checkpoint data", L->fn, total);
  char err[EMA_ERR_CAP];
  for (size_t i = 0; i < L->n; i++) {
    const st_tensor *s = L->items[i].src;
    ema_status st = st_read(L->f, s, L->stage + L->items[i].staged, (size_t)s->nbytes, err, sizeof err);
    if (st != EMA_OK) return ckpt_fail(L->ctx, st, L->fn, err);
  }
  return EMA_OK;
}

ema_status load_run(ema_ctx *ctx, const char *path, const char *fn, const load_ops *ops) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!path || !*path) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: path is NULL or empty", fn);
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "%s: the model holds the averages (swapped); call ema_swap() first", fn);
  if (ctx->stored)
    return ema__fail(ctx, EMA_E_STATE,
                     "%s: a stored copy of the model is held; call ema_restore() first so it cannot undo the load",
                     fn);
  loader *L = (loader *)ema__calloc(1, sizeof *L);
  if (!L) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
  L->ctx = ctx;
  L->fn = fn;
  L->what = path;
  L->items = (load_item *)ema__calloc(ctx->count * (1 + 4 * ctx->n_avg) + 1, sizeof *L->items);
  ema_status st = L->items ? EMA_OK : ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
  if (st == EMA_OK) st = loader_open(L, path);
  if (st == EMA_OK) st = ops->plan(L);
  if (st == EMA_OK) st = loader_stage(L);
  if (st == EMA_OK && ops->check) st = ops->check(L);
  if (st == EMA_OK) ops->commit(L); /* nothing below can fail */
  loader_free(L);
  free(L);
  return st;
}

/* ------------------------------------------------------------------------ */
/* ema_load                                                                  */
/* ------------------------------------------------------------------------ */

/* Every registered tensor must be there with its dtype and shape. */
static ema_status resume_plan(loader *L) {
  ema_ctx *ctx = L->ctx;
  ema_status st = load_read_state(L);
  for (size_t i = 0; i < ctx->count && st == EMA_OK; i++) {
    ema_tensor *t = &ctx->tensors[i];
    st = load_expect(L, t->name, t, t->dtype, t->dtype, 0, LD_MODEL, 0, "model values");
    if (t->pair < 0) continue;
    for (size_t k = 0; k < L->n_avg && st == EMA_OK; k++) {
      char *names[4];
      int made = ckpt_state_keys(t->name, L->avg[k].name, ctx->zero_debias, names);
      if (!made) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", L->fn);
      int debias = ctx->zero_debias;
      st = load_expect(L, names[0], t, t->sdtype, t->sdtype, 0, debias ? LD_AVERAGE : LD_SHADOW, k, "average");
      if (st == EMA_OK && debias)
        st = load_expect(L, names[1], t, t->sdtype, t->sdtype, 0, LD_SHADOW, k, "zero-debias accumulator");
      if (st == EMA_OK && debias)
        st = load_expect(L, names[2], t, EMA_I64, EMA_I64, 1, LD_STEPS, k, "zero-debias step count");
      if (st == EMA_OK && debias)
        st = load_expect(L, names[3], t, EMA_F64, EMA_F64, 1, LD_PROD, k, "zero-debias decay product");
      for (int j = 0; j < made; j++) free(names[j]);
    }
  }
  return st;
}

/* The staged zero-debias counters. */
static ema_status resume_check(loader *L) {
  for (size_t i = 0; i < L->n; i++) {
    const unsigned char *src = L->stage + L->items[i].staged;
    if (L->items[i].dest == LD_STEPS) {
      int64_t k;
      memcpy(&k, src, 8);
      if (k < 0)
        return ema__fail(L->ctx, EMA_E_FORMAT, "%s: tensor '%s' holds a negative step count", L->fn,
                         L->items[i].src->name);
    } else if (L->items[i].dest == LD_PROD) {
      double p;
      memcpy(&p, src, 8);
      if (!(p >= 0.0 && p <= 1.0))
        return ema__fail(L->ctx, EMA_E_FORMAT, "%s: tensor '%s' holds a decay product outside [0, 1]", L->fn,
                         L->items[i].src->name);
    }
  }
  return EMA_OK;
}

static void resume_commit(loader *L) {
  for (size_t i = 0; i < L->n; i++) {
    load_item *it = &L->items[i];
    const unsigned char *src = L->stage + it->staged;
    size_t bytes = (size_t)it->src->nbytes;
    void *dst = NULL;
    switch (it->dest) {
      case LD_MODEL: dst = it->t->data; break;
      case LD_SHADOW: dst = it->t->shadow[it->k]; break;
      case LD_AVERAGE: dst = it->t->average[it->k]; break;
      case LD_STEPS: dst = &it->t->debias_steps[it->k]; break;
      case LD_PROD: dst = &it->t->debias_prod[it->k]; break;
    }
    if (bytes) memcpy(dst, src, bytes);
  }
  ema_ctx *ctx = L->ctx;
  memcpy(ctx->avg, L->avg, sizeof L->avg);
  ctx->num_updates = L->num_updates < 0 ? -1 : L->num_updates;
  ctx->last_step = L->last_step;
}

ema_status ema_load(ema_ctx *ctx, const char *path) {
  static const load_ops ops = {resume_plan, resume_check, resume_commit};
  return load_run(ctx, path, "ema_load", &ops);
}

/* ------------------------------------------------------------------------ */
/* ema_load_averages_into_model                                              */
/* ------------------------------------------------------------------------ */

static ema_status into_model_plan(loader *L) {
  ema_ctx *ctx = L->ctx;
  /* the active average under the file's name for it */
  const char *active_name = ctx->avg[ctx->active].name;
  char key[64];
  snprintf(key, sizeof key, "ema.average.%zu.name", ctx->active);
  const char *v = st_meta_get(L->f, key);
  if (v)
    active_name = v;
  else if (ctx->active == 0)
    active_name = L->ema_name;
  for (size_t i = 0; i < ctx->count; i++) {
    ema_tensor *t = &ctx->tensors[i];
    ema_status st;
    if (t->pair < 0) { /* plain state maps to itself */
      st = load_expect(L, t->name, t, t->dtype, t->dtype, 0, LD_MODEL, 0, "plain state");
      if (st != EMA_OK) return st;
      continue;
    }
    char *avg = ckpt_join3(t->name, active_name, NULL);
    if (!avg) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", L->fn);
    /* the average may be stored in the model's dtype or in float32 (the
       default shadow of f16/bf16 models), which is rounded on the way in */
    ema_dtype also = (t->dtype == EMA_F16 || t->dtype == EMA_BF16) ? EMA_F32 : t->dtype;
    st = load_expect(L, avg, t, t->dtype, also, 0, LD_MODEL, 0, "average");
    free(avg);
    if (st != EMA_OK) return st;
    load_item *it = &L->items[L->n - 1];
    if (it->src->dtype != (st_dtype)st_dtype_from_ema(t->dtype)) it->dest = LD_MODEL_FROM_SHADOW;
  }
  return EMA_OK;
}

static void into_model_commit(loader *L) {
  for (size_t i = 0; i < L->n; i++) {
    load_item *it = &L->items[i];
    const unsigned char *src = L->stage + it->staged;
    if (it->dest == LD_MODEL) {
      if (it->src->nbytes) memcpy(it->t->data, src, (size_t)it->src->nbytes);
    } else if (it->t->numel) {
      int pair = it->t->dtype == EMA_BF16 ? EMA_PAIR_BF16_F32 : EMA_PAIR_F16_F32;
      L->ctx->k->from_shadow[pair](it->t->data, src, it->t->numel);
    }
  }
}

ema_status ema_load_averages_into_model(ema_ctx *ctx, const char *path) {
  static const load_ops ops = {into_model_plan, NULL, into_model_commit};
  return load_run(ctx, path, "ema_load_averages_into_model", &ops);
}
