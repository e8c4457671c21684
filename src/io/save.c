/*
 * src/io/save.c: ema_save. A save plan lists every tensor of the checkpoint
 * (model values, averages, zero-debias counters) with borrowed pointers into
 * the context; the metadata records the EMA state; st_write writes them
 * atomically.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/ckpt.h"

typedef struct save_plan {
  st_wtensor *w;
  size_t n;
  char **owned; /* names we allocated */
  size_t n_owned;
  int64_t *steps; /* per tensor and average */
  double *prods;
  ckpt_meta *meta;
  st_wmeta *all_meta; /* meta's entries, then "ema.policy.<name>" of COPY and KEEP tensors */
  size_t n_meta;
} save_plan;

static void plan_free(save_plan *p) {
  if (p->owned)
    for (size_t i = 0; i < p->n_owned; i++) free(p->owned[i]);
  free(p->owned);
  free(p->w);
  free(p->steps);
  free(p->prods);
  free(p->meta);
  free(p->all_meta);
}

static void plan_add(save_plan *p, const char *name, ema_dtype dt, const ema_tensor *t, const void *data, int scalar) {
  st_wtensor *w = &p->w[p->n++];
  w->name = name;
  w->dtype = (st_dtype)st_dtype_from_ema(dt);
  w->ndim = scalar ? 0 : t->ndim;
  w->shape = scalar ? NULL : t->shape;
  w->data = data;
}

/* The average k of tensor i: its keys, checked against registered names. */
static ema_status plan_average(save_plan *p, const ema_ctx *ctx, size_t i, size_t k, const char *fn) {
  const ema_tensor *t = &ctx->tensors[i];
  char *names[4];
  int made = ckpt_state_keys(t->name, ctx->avg[k].name, ctx->zero_debias, names);
  if (!made) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
  for (int j = 0; j < made; j++) p->owned[p->n_owned++] = names[j];
  for (int j = 0; j < made; j++)
    if (ema__find(ctx, names[j]))
      return ema__fail(ctx, EMA_E_INVALID_ARG,
                       "%s: tensor '%s' is registered under the name the average of '%s' is saved as; rename one "
                       "of them or pick another EMA name with ema_set_name()",
                       fn, names[j], t->name);
  plan_add(p, names[0], t->sdtype, t, t->average[k], 0);
  if (ctx->zero_debias) {
    size_t at = i * ctx->n_avg + k;
    p->steps[at] = t->debias_steps[k];
    p->prods[at] = t->debias_prod[k];
    plan_add(p, names[1], t->sdtype, t, t->shadow[k], 0);
    plan_add(p, names[2], EMA_I64, t, &p->steps[at], 1);
    plan_add(p, names[3], EMA_F64, t, &p->prods[at], 1);
  }
  return EMA_OK;
}

/* What a plan holds (plan_build's mode, bits). */
enum { PLAN_STATE_ONLY = 1, PLAN_NO_CHECKSUM = 2 };

static ema_status plan_metadata(save_plan *p, const ema_ctx *ctx, char csum[20], const char *fn, int mode) {
  ckpt_meta *mb = p->meta;
  ckpt_meta_add(mb, "libema.format", CKPT_FORMAT_VERSION);
  ckpt_meta_add(mb, "libema.version", EMA_VERSION_STRING);
  if (!(mode & PLAN_NO_CHECKSUM)) {
    char err[EMA_ERR_CAP];
    uint64_t sum = 0;
    ema_status st = st_data_xxh64(p->w, p->n, &sum, err, sizeof err);
    if (st != EMA_OK) return ckpt_fail(ctx, st, fn, err);
    snprintf(csum, 20, "%016" PRIx64, sum);
    ckpt_meta_add(mb, "libema.xxh64", csum);
  }
  ckpt_meta_add(mb, "ema.name", ctx->avg[0].name);
  ckpt_meta_addf(mb, "ema.decay", ctx->avg[0].sched.decay);
  ckpt_meta_addi(mb, "ema.num_updates", ctx->num_updates);
  ckpt_meta_addi(mb, "ema.zero_debias", ctx->zero_debias);
  ckpt_meta_add(mb, "ema.schedule", ema__schedule_name(ctx->avg[0].sched.kind));
  ckpt_meta_addi(mb, "ema.last_step", ctx->last_step);
  ckpt_meta_schedules(mb, ctx);
  return EMA_OK;
}

/* A KEEP tensor's frozen copy, in the model dtype, under every member's
   average key (what ema_load_averages_into_model and extract read), and
   its policy record. */
static ema_status plan_keep(save_plan *p, const ema_ctx *ctx, const ema_tensor *t, const char *fn) {
  for (size_t k = 0; k < ctx->n_avg; k++) {
    char *key = ckpt_join3(t->name, ctx->avg[k].name, NULL);
    if (!key) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
    p->owned[p->n_owned++] = key;
    if (ema__find(ctx, key))
      return ema__fail(ctx, EMA_E_INVALID_ARG,
                       "%s: tensor '%s' is registered under the name the frozen copy of '%s' is saved as; rename one "
                       "of them",
                       fn, key, t->name);
    plan_add(p, key, t->dtype, t, t->average[k], 0);
  }
  return EMA_OK;
}

/* "ema.policy.<name>" = "copy" / "keep" for every tensor that is not
   averaged (AVERAGE is the default and is not written). */
static ema_status plan_policies(save_plan *p, const ema_ctx *ctx, const char *fn) {
  size_t n_pol = 0;
  for (size_t i = 0; i < ctx->count; i++) n_pol += ctx->tensors[i].policy != EMA_POLICY_AVERAGE;
  p->all_meta = (st_wmeta *)ema__calloc(p->meta->n + n_pol + 1, sizeof *p->all_meta);
  if (!p->all_meta) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
  memcpy(p->all_meta, p->meta->m, p->meta->n * sizeof *p->all_meta);
  p->n_meta = p->meta->n;
  for (size_t i = 0; i < ctx->count; i++) {
    const ema_tensor *t = &ctx->tensors[i];
    if (t->policy == EMA_POLICY_AVERAGE) continue;
    size_t len = strlen(t->name);
    char *key = (char *)ema__malloc(sizeof CKPT_POLICY_PREFIX + len);
    if (!key) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
    memcpy(key, CKPT_POLICY_PREFIX, sizeof CKPT_POLICY_PREFIX - 1);
    memcpy(key + sizeof CKPT_POLICY_PREFIX - 1, t->name, len + 1);
    p->owned[p->n_owned++] = key;
    p->all_meta[p->n_meta++] = (st_wmeta){key, ema__policy_name(t->policy)};
  }
  return EMA_OK;
}

/* Build the plan of ctx's checkpoint (the checks every save makes); mode
   PLAN_STATE_ONLY leaves the model tensors out (ema_save_state_buffer),
   PLAN_NO_CHECKSUM the checksum. */
static ema_status plan_build(save_plan *p, const ema_ctx *ctx, const char *fn, char csum[20], int mode) {
  int state_only = mode & PLAN_STATE_ONLY;
  memset(p, 0, sizeof *p);
  ema_status ast = ema__async_settle(ctx, fn);
  if (ast != EMA_OK) return ast;
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE,
                     "%s: the model holds the averages (swapped); call ema_swap() to swap back before saving", fn);
  size_t per = 1 + ctx->n_avg * (ctx->zero_debias ? 4 : 1);
  p->w = (st_wtensor *)ema__calloc(ctx->count * per + 1, sizeof *p->w);
  p->owned = (char **)ema__calloc(ctx->count * (per + 1) + 1, sizeof *p->owned);
  p->steps = (int64_t *)ema__calloc(ctx->count * ctx->n_avg + 1, sizeof *p->steps);
  p->prods = (double *)ema__calloc(ctx->count * ctx->n_avg + 1, sizeof *p->prods);
  p->meta = (ckpt_meta *)ema__calloc(1, sizeof *p->meta);
  if (!p->w || !p->owned || !p->steps || !p->prods || !p->meta)
    return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
  for (size_t i = 0; i < ctx->count; i++) {
    const ema_tensor *t = &ctx->tensors[i];
    if (!state_only) plan_add(p, t->name, t->dtype, t, t->data, 0);
    if (t->policy == EMA_POLICY_KEEP) {
      ema_status st = plan_keep(p, ctx, t, fn);
      if (st != EMA_OK) return st;
    }
    if (t->policy != EMA_POLICY_AVERAGE) continue;
    for (size_t k = 0; k < ctx->n_avg; k++) {
      ema_status st = plan_average(p, ctx, i, k, fn);
      if (st != EMA_OK) return st;
    }
  }
  ema_status st = plan_metadata(p, ctx, csum, fn, mode);
  return st == EMA_OK ? plan_policies(p, ctx, fn) : st;
}

ema_status ema_save(const ema_ctx *ctx, const char *path) {
  static const char *fn = "ema_save";
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!path || !*path) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: path is NULL or empty", fn);
  save_plan p;
  char csum[20];
  ema_status st = plan_build(&p, ctx, fn, csum, 0);
  if (st == EMA_OK) {
    char err[EMA_ERR_CAP];
    st = st_write(path, p.w, p.n, p.all_meta, p.n_meta, err, sizeof err);
    if (st != EMA_OK) ckpt_fail(ctx, st, fn, err);
  }
  plan_free(&p);
  return st;
}

static ema_status save_buffer(const ema_ctx *ctx, void **buf, size_t *len, const char *fn, int state_only) {
  if (buf) *buf = NULL;
  if (len) *len = 0;
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!buf || !len) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: buf and len must not be NULL", fn);
  save_plan p;
  char csum[20];
  ema_status st = plan_build(&p, ctx, fn, csum, state_only ? PLAN_STATE_ONLY : 0);
  if (st == EMA_OK) {
    char err[EMA_ERR_CAP];
    unsigned char *out = NULL;
    size_t n = 0;
    st = st_serialize(p.w, p.n, p.all_meta, p.n_meta, &out, &n, err, sizeof err);
    if (st != EMA_OK) {
      ckpt_fail(ctx, st, fn, err);
    } else {
      *buf = out;
      *len = n;
    }
  }
  plan_free(&p);
  return st;
}

ema_status ema_save_buffer(const ema_ctx *ctx, void **buf, size_t *len) {
  return save_buffer(ctx, buf, len, "ema_save_buffer", 0);
}

ema_status ema_save_state_buffer(const ema_ctx *ctx, void **buf, size_t *len) {
  return save_buffer(ctx, buf, len, "ema_save_state_buffer", 1);
}

void ema_buffer_free(void *buf) { free(buf); }

typedef struct writer_sink {
  ema_writer fn;
  void *user;
} writer_sink;

static ema_status to_writer(void *user, const void *data, size_t len, char *err, size_t cap) {
  writer_sink *w = (writer_sink *)user;
  int r = w->fn(w->user, data, len);
  if (r == 0) return EMA_OK;
  snprintf(err, cap, "the writer callback returned %d; what it was given so far is not a checkpoint", r);
  return EMA_E_IO;
}

static ema_status save_writer(const ema_ctx *ctx, ema_writer fn, void *user, const char *name, int mode) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!fn) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: the writer callback is NULL", name);
  save_plan p;
  char csum[20];
  ema_status st = plan_build(&p, ctx, name, csum, mode);
  if (st == EMA_OK) {
    char err[EMA_ERR_CAP];
    writer_sink w = {fn, user};
    st = st_write_sink(p.w, p.n, p.all_meta, p.n_meta, to_writer, &w, err, sizeof err);
    if (st != EMA_OK) ckpt_fail(ctx, st, name, err);
  }
  plan_free(&p);
  return st;
}

ema_status ema_save_writer(const ema_ctx *ctx, ema_writer fn, void *user) {
  return save_writer(ctx, fn, user, "ema_save_writer", 0);
}

ema_status ema_save_state_writer(const ema_ctx *ctx, unsigned flags, ema_writer fn, void *user) {
  static const char *name = "ema_save_state_writer";
  if (ctx && (flags & ~(unsigned)EMA_SAVE_NO_CHECKSUM)) {
    ema__clear_error(ctx);
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: unknown flags 0x%x", name, flags & ~(unsigned)EMA_SAVE_NO_CHECKSUM);
  }
  return save_writer(ctx, fn, user, name, PLAN_STATE_ONLY | (flags & EMA_SAVE_NO_CHECKSUM ? PLAN_NO_CHECKSUM : 0));
}
