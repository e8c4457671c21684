/*
 * Checkpoints: ema_save, ema_load, ema_load_averages_into_model.
 *
 * One safetensors file holds, for every registered tensor <n>:
 *   <n>                       the model values (model dtype)
 *   <n>/<ema>                 the average (shadow dtype; debiased with zero_debias)
 *   <n>/<ema>/biased          zero_debias only: the biased accumulator
 *   <n>/<ema>/local_step      zero_debias only: int64 scalar, updates so far
 * (<ema> is the EMA's name, "ExponentialMovingAverage" by default; the names
 * are TensorFlow's), plain state under its own name only, and the EMA state
 * in __metadata__ (keys in ckpt_meta_keys below).
 *
 * Loading validates everything (format, names, dtypes, shapes, metadata,
 * checksum) and reads every byte it needs into a staging buffer before it
 * writes anything into the caller's tensors or the context: a failed load
 * changes nothing.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "io/safetensors.h"
#include "io/st_internal.h"

#define CKPT_FORMAT_VERSION "1"

/* ------------------------------------------------------------------------ */
/* Content checksum: order-independent sum over tensors of                  */
/* mix(hash(name), hash(bytes)), so the writer's tensor order does not        */
/* matter. 64-bit multiply-rotate over 8-byte words, four lanes.              */
/* ------------------------------------------------------------------------ */

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

typedef struct hasher {
  uint64_t lane[4];
  unsigned char tail[32];
  size_t tail_len;
  uint64_t total;
} hasher;

static void hash_init(hasher *h) {
  h->lane[0] = P1;
  h->lane[1] = P2;
  h->lane[2] = P3;
  h->lane[3] = P1 ^ P2;
  h->tail_len = 0;
  h->total = 0;
}

static uint64_t load64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; /* little-endian on every host */
  return v;
}

static void hash_block(hasher *h, const unsigned char *p) {
  for (int i = 0; i < 4; i++) h->lane[i] = rotl64(h->lane[i] ^ (load64(p + 8 * i) * P2), 31) * P1;
}

static void hash_update(hasher *h, const void *data, size_t n) {
  const unsigned char *p = (const unsigned char *)data;
  h->total += n;
  if (h->tail_len) {
    size_t take = 32 - h->tail_len < n ? 32 - h->tail_len : n;
    memcpy(h->tail + h->tail_len, p, take);
    h->tail_len += take;
    p += take;
    n -= take;
    if (h->tail_len < 32) return;
    hash_block(h, h->tail);
    h->tail_len = 0;
  }
  for (; n >= 32; p += 32, n -= 32) hash_block(h, p);
  memcpy(h->tail, p, n);
  h->tail_len = n;
}

static uint64_t hash_final(const hasher *h) {
  uint64_t x = rotl64(h->lane[0], 1) + rotl64(h->lane[1], 7) + rotl64(h->lane[2], 12) + rotl64(h->lane[3], 18);
  x ^= h->total * P3;
  for (size_t i = 0; i < h->tail_len; i++) x = rotl64(x ^ (h->tail[i] * P3), 11) * P1;
  x ^= x >> 33;
  x *= P2;
  x ^= x >> 29;
  x *= P3;
  x ^= x >> 32;
  return x;
}

static uint64_t hash_bytes(const void *p, size_t n) {
  hasher h;
  hash_init(&h);
  hash_update(&h, p, n);
  return hash_final(&h);
}

static uint64_t tensor_digest(const char *name, uint64_t data_hash) {
  uint64_t x = hash_bytes(name, strlen(name)) ^ rotl64(data_hash, 17);
  x ^= x >> 31;
  x *= P1;
  x ^= x >> 29;
  return x;
}

/* ------------------------------------------------------------------------ */
/* Shared helpers                                                            */
/* ------------------------------------------------------------------------ */

static char *join3(const char *a, const char *b, const char *c) {
  size_t la = strlen(a), lb = strlen(b), lc = c ? strlen(c) : 0;
  char *s = (char *)ema__malloc(la + 1 + lb + (c ? 1 + lc : 0) + 1);
  if (!s) return NULL;
  memcpy(s, a, la);
  s[la] = '/';
  memcpy(s + la + 1, b, lb);
  if (c) {
    s[la + 1 + lb] = '/';
    memcpy(s + la + 2 + lb, c, lc);
    s[la + 2 + lb + lc] = '\0';
  } else {
    s[la + 1 + lb] = '\0';
  }
  return s;
}

/* The checkpoint keys of average `ename` of tensor `name`: "<name>/<ename>",
   and with zero_debias its accumulator and counters (the table at the top of
   this file). Returns how many were made (1 or 4), or 0 when memory ran out,
   with nothing left allocated. free() each key. */
static int state_keys(const char *name, const char *ename, int debias, char *keys[4]) {
  static const char *const extra[3] = {"biased", "local_step", "decay_product"};
  int n = debias ? 4 : 1;
  keys[0] = join3(name, ename, NULL);
  for (int j = 1; j < 4; j++) keys[j] = j < n ? join3(name, ename, extra[j - 1]) : NULL;
  for (int j = 0; j < n; j++)
    if (!keys[j]) {
      for (int i = 0; i < n; i++) free(keys[i]);
      return 0;
    }
  return n;
}

static ema_status io_fail(const ema_ctx *ctx, ema_status st, const char *fn, const char *err) {
  return ema__fail(ctx, st, "%s: %s", fn, err);
}

/* ------------------------------------------------------------------------ */
/* Save                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct save_plan {
  st_wtensor *w;
  size_t n;
  char **owned; /* names we allocated */
  size_t n_owned;
  int64_t *steps; /* per tensor and average */
  double *prods;
} save_plan;

static void plan_free(save_plan *p) {
  if (p->owned)
    for (size_t i = 0; i < p->n_owned; i++) free(p->owned[i]);
  free(p->owned);
  free(p->w);
  free(p->steps);
  free(p->prods);
}

static void plan_add(save_plan *p, const char *name, ema_dtype dt, const ema_tensor *t, const void *data, int scalar) {
  st_wtensor *w = &p->w[p->n++];
  w->name = name;
  w->dtype = (st_dtype)st_dtype_from_ema(dt);
  w->ndim = scalar ? 0 : t->ndim;
  w->shape = scalar ? NULL : t->shape;
  w->data = data;
}

/* Metadata: fixed keys plus a block per average of the bank. */
enum { META_FIXED = 9, META_PER_AVG = 10, META_CAP = META_FIXED + META_PER_AVG * EMA_MAX_AVERAGES };
typedef struct meta_buf {
  st_wmeta m[META_CAP];
  char keys[META_CAP][64];
  char vals[META_CAP][48];
  size_t n;
} meta_buf;

static void meta_add(meta_buf *mb, const char *key, const char *value) {
  st_wmeta *e = &mb->m[mb->n];
  snprintf(mb->keys[mb->n], sizeof mb->keys[0], "%s", key);
  e->key = mb->keys[mb->n];
  e->value = value;
  mb->n++;
}

static void meta_addf(meta_buf *mb, const char *key, const char *fmt, double v) {
  snprintf(mb->vals[mb->n], sizeof mb->vals[0], fmt, v);
  meta_add(mb, key, mb->vals[mb->n]);
}

static void meta_addi(meta_buf *mb, const char *key, int64_t v) {
  snprintf(mb->vals[mb->n], sizeof mb->vals[0], "%" PRId64, v);
  meta_add(mb, key, mb->vals[mb->n]);
}

static void meta_schedules(meta_buf *mb, const ema_ctx *ctx) {
  char key[64];
  meta_addi(mb, "ema.averages", (int64_t)ctx->n_avg);
  for (size_t k = 0; k < ctx->n_avg; k++) {
    const ema_schedule *s = &ctx->avg[k].sched;
#define AVG_KEY(field) (snprintf(key, sizeof key, "ema.average.%zu." field, k), key)
    meta_add(mb, AVG_KEY("name"), ctx->avg[k].name);
    meta_add(mb, AVG_KEY("schedule"), ema__schedule_name(s->kind));
    meta_addf(mb, AVG_KEY("decay"), "%.17g", s->decay);
    meta_addf(mb, AVG_KEY("min_decay"), "%.17g", s->min_decay);
    meta_addf(mb, AVG_KEY("inv_gamma"), "%.17g", s->inv_gamma);
    meta_addf(mb, AVG_KEY("power"), "%.17g", s->power);
    meta_addf(mb, AVG_KEY("gamma"), "%.17g", s->gamma);
    meta_addf(mb, AVG_KEY("sigma_rel"), "%.17g", s->sigma_rel);
    meta_addf(mb, AVG_KEY("halflife"), "%.17g", s->halflife);
    meta_addi(mb, AVG_KEY("update_after_step"), s->update_after_step);
#undef AVG_KEY
  }
}

static uint64_t plan_checksum(const save_plan *p) {
  uint64_t sum = 0;
  for (size_t i = 0; i < p->n; i++) {
    const st_wtensor *w = &p->w[i];
    size_t count = 1;
    for (int d = 0; d < w->ndim; d++) count *= (size_t)w->shape[d];
    size_t bytes = count * st_dtype_bits(w->dtype) / 8;
    sum += tensor_digest(w->name, hash_bytes(w->data ? w->data : "", w->data ? bytes : 0));
  }
  return sum;
}

ema_status ema_save(const ema_ctx *ctx, const char *path) {
  static const char *fn = "ema_save";
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!path || !*path) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: path is NULL or empty", fn);
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE,
                     "%s: the model holds the averages (swapped); call ema_swap() to swap back before saving", fn);
  save_plan p;
  memset(&p, 0, sizeof p);
  size_t per = 1 + ctx->n_avg * (ctx->zero_debias ? 4 : 1);
  p.w = (st_wtensor *)ema__calloc(ctx->count * per + 1, sizeof *p.w);
  p.owned = (char **)ema__calloc(ctx->count * per + 1, sizeof *p.owned);
  p.steps = (int64_t *)ema__calloc(ctx->count * ctx->n_avg + 1, sizeof *p.steps);
  p.prods = (double *)ema__calloc(ctx->count * ctx->n_avg + 1, sizeof *p.prods);
  meta_buf *mb = (meta_buf *)ema__calloc(1, sizeof *mb);
  if (!p.w || !p.owned || !p.steps || !p.prods || !mb) {
    plan_free(&p);
    free(mb);
    return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
  }
  ema_status st = EMA_OK;
  for (size_t i = 0; i < ctx->count && st == EMA_OK; i++) {
    const ema_tensor *t = &ctx->tensors[i];
    plan_add(&p, t->name, t->dtype, t, t->data, 0);
    if (t->pair < 0) continue;
    for (size_t k = 0; k < ctx->n_avg && st == EMA_OK; k++) {
      const char *ename = ctx->avg[k].name;
      char *names[4];
      int made = state_keys(t->name, ename, ctx->zero_debias, names);
      for (int j = 0; j < made; j++) p.owned[p.n_owned++] = names[j];
      if (!made) {
        st = ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
        break;
      }
      for (int j = 0; j < made; j++) {
        if (ema__find(ctx, names[j])) {
          st = ema__fail(ctx, EMA_E_INVALID_ARG,
                         "%s: tensor '%s' is registered under the name the average of '%s' is saved as; rename one "
                         "of them or pick another EMA name with ema_set_name()",
                         fn, names[j], t->name);
          break;
        }
      }
      if (st != EMA_OK) break;
      plan_add(&p, names[0], t->sdtype, t, t->average[k], 0);
      if (ctx->zero_debias) {
        p.steps[i * ctx->n_avg + k] = t->debias_steps[k];
        p.prods[i * ctx->n_avg + k] = t->debias_prod[k];
        plan_add(&p, names[1], t->sdtype, t, t->shadow[k], 0);
        plan_add(&p, names[2], EMA_I64, t, &p.steps[i * ctx->n_avg + k], 1);
        plan_add(&p, names[3], EMA_F64, t, &p.prods[i * ctx->n_avg + k], 1);
      }
    }
  }
  if (st == EMA_OK) {
    char csum[20];
    snprintf(csum, sizeof csum, "%016" PRIx64, plan_checksum(&p));
    meta_add(mb, "libema.format", CKPT_FORMAT_VERSION);
    meta_add(mb, "libema.version", EMA_VERSION_STRING);
    meta_add(mb, "libema.checksum", csum);
    meta_add(mb, "ema.name", ctx->avg[0].name);
    meta_addf(mb, "ema.decay", "%.17g", ctx->avg[0].sched.decay);
    meta_addi(mb, "ema.num_updates", ctx->num_updates);
    meta_addi(mb, "ema.zero_debias", ctx->zero_debias);
    meta_add(mb, "ema.schedule", ema__schedule_name(ctx->avg[0].sched.kind));
    meta_addi(mb, "ema.last_step", ctx->last_step);
    meta_schedules(mb, ctx);
    char err[EMA_ERR_CAP];
    st = st_write(path, p.w, p.n, mb->m, mb->n, err, sizeof err);
    if (st != EMA_OK) io_fail(ctx, st, fn, err);
  }
  plan_free(&p);
  free(mb);
  return st;
}

ema_status ema_snapshot(const ema_ctx *ctx, size_t k, const char *path) {
  static const char *fn = "ema_snapshot";
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!path || !*path) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: path is NULL or empty", fn);
  if (k >= ctx->n_avg) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: there is no average %zu", fn, k);
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "%s: the model holds the averages (swapped); call ema_swap() first", fn);
  st_wtensor *w = (st_wtensor *)ema__calloc(ctx->count + 1, sizeof *w);
  meta_buf *mb = (meta_buf *)ema__calloc(1, sizeof *mb);
  if (!w || !mb) {
    free(w);
    free(mb);
    return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
  }
  size_t n = 0;
  for (size_t i = 0; i < ctx->count; i++) {
    const ema_tensor *t = &ctx->tensors[i];
    if (t->pair < 0) continue;
    w[n].name = t->name;
    w[n].dtype = (st_dtype)st_dtype_from_ema(t->sdtype);
    w[n].ndim = t->ndim;
    w[n].shape = t->shape;
    w[n].data = t->average[k];
    n++;
  }
  const ema_schedule *s = &ctx->avg[k].sched;
  meta_add(mb, "libema.snapshot", "1");
  meta_add(mb, "libema.version", EMA_VERSION_STRING);
  meta_add(mb, "ema.name", ctx->avg[k].name);
  meta_add(mb, "ema.schedule", ema__schedule_name(s->kind));
  meta_addi(mb, "ema.t", ctx->last_step);
  if (s->kind == EMA_SCHEDULE_POWER) {
    double g = ema__schedule_gamma(s), sr = 0.0;
    ema_power_sigma_rel(g, &sr);
    meta_addf(mb, "ema.gamma", "%.17g", g);
    meta_addf(mb, "ema.sigma_rel", "%.17g", sr);
  }
  char err[EMA_ERR_CAP];
  ema_status st = st_write(path, w, n, mb->m, mb->n, err, sizeof err);
  free(w);
  free(mb);
  if (st != EMA_OK) return io_fail(ctx, st, fn, err);
  return EMA_OK;
}

/* ------------------------------------------------------------------------ */
/* Load                                                                      */
/* ------------------------------------------------------------------------ */

/* What to copy where once everything is validated and staged. */
typedef struct load_item {
  const st_tensor *src;
  ema_tensor *t;
  int dest; /* LD_* */
  size_t k; /* average of the bank */
  size_t staged;
} load_item;

enum { LD_MODEL, LD_SHADOW, LD_AVERAGE, LD_STEPS, LD_PROD, LD_MODEL_FROM_SHADOW };

typedef struct loader {
  ema_ctx *ctx;
  const char *fn;
  st_file *f;
  load_item *items;
  size_t n;
  unsigned char *stage;
  const char *ema_name; /* the file's EMA name, or the context's */
} loader;

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

/* Find key and check its dtype (one of two allowed) and shape. */
static ema_status expect(loader *L, const char *key, const ema_tensor *t, ema_dtype want, ema_dtype also,
                         int scalar, const st_tensor **out, const char *role) {
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
  *out = s;
  return EMA_OK;
}

static ema_status add_load(loader *L, const st_tensor *s, ema_tensor *t, int dest, size_t k) {
  load_item *it = &L->items[L->n++];
  it->src = s;
  it->t = t;
  it->dest = dest;
  it->k = k;
  return EMA_OK;
}

/* Open, check format and checksum. */
static ema_status loader_open(loader *L, const char *path) {
  char err[EMA_ERR_CAP];
  ema_status st = st_open(path, &L->f, err, sizeof err);
  if (st != EMA_OK) return io_fail(L->ctx, st, L->fn, err);
  const char *fmt = st_meta_get(L->f, "libema.format");
  if (fmt && strcmp(fmt, CKPT_FORMAT_VERSION) != 0)
    return ema__fail(L->ctx, EMA_E_FORMAT,
                     "%s: '%s' is a libema checkpoint of format version %s; this library reads version %s", L->fn,
                     path, fmt, CKPT_FORMAT_VERSION);
  L->ema_name = st_meta_get(L->f, "ema.name");
  if (!L->ema_name) L->ema_name = L->ctx->avg[0].name;
  const char *csum = st_meta_get(L->f, "libema.checksum");
  if (csum) {
    char *end = NULL;
    uint64_t want = strtoull(csum, &end, 16);
    if (strlen(csum) != 16 || *end)
      return ema__fail(L->ctx, EMA_E_FORMAT, "%s: '%s' has a malformed libema.checksum '%s'", L->fn, path, csum);
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = (unsigned char *)ema__malloc(CHUNK);
    if (!buf) return ema__fail(L->ctx, EMA_E_NOMEM, "%s: out of memory", L->fn);
    uint64_t sum = 0;
    for (size_t i = 0; i < L->f->n_tensors; i++) {
      const st_tensor *s = &L->f->tensors[i];
      hasher h;
      hash_init(&h);
      for (uint64_t off = 0; off < s->nbytes; off += CHUNK) {
        size_t len = s->nbytes - off < CHUNK ? (size_t)(s->nbytes - off) : CHUNK;
        st = st_read_range(L->f, s, off, buf, len, err, sizeof err);
        if (st != EMA_OK) {
          free(buf);
          return io_fail(L->ctx, st, L->fn, err);
        }
        hash_update(&h, buf, len);
      }
      sum += tensor_digest(s->name, hash_final(&h));
    }
    free(buf);
    if (sum != want)
      return ema__fail(L->ctx, EMA_E_FORMAT,
                       "%s: '%s' is corrupt: its data does not match the checksum written with it (%016" PRIx64
                       " != %s)",
                       L->fn, path, sum, csum);
  }
  return EMA_OK;
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
    if (st != EMA_OK) return io_fail(L->ctx, st, L->fn, err);
  }
  return EMA_OK;
}

static ema_status loader_begin(loader *L, ema_ctx *ctx, const char *path, const char *fn) {
  memset(L, 0, sizeof *L);
  L->ctx = ctx;
  L->fn = fn;
  if (!path || !*path) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: path is NULL or empty", fn);
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "%s: the model holds the averages (swapped); call ema_swap() first", fn);
  if (ctx->stored)
    return ema__fail(ctx, EMA_E_STATE,
                     "%s: a stored copy of the model is held; call ema_restore() first so it cannot undo the load",
                     fn);
  L->items = (load_item *)ema__calloc(ctx->count * (1 + 4 * ctx->n_avg) + 1, sizeof *L->items);
  if (!L->items) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
  return loader_open(L, path);
}

static int parse_i64(const char *s, int64_t *out) {
  char *end = NULL;
  if (!s || !*s) return 0;
  long long v = strtoll(s, &end, 10);
  if (*end) return 0;
  *out = (int64_t)v;
  return 1;
}

static int parse_f64(const char *s, double *out) {
  char *end = NULL;
  if (!s || !*s) return 0;
  *out = strtod(s, &end);
  return *end == '\0';
}

/* The bank's names and schedules as the file records them. A file without
   the per-average keys (another writer, or a single average) keeps the
   context's schedules. */
static ema_status read_schedules(loader *L, ema_avg *out, size_t *n_out) {
  ema_ctx *ctx = L->ctx;
  const char *na = st_meta_get(L->f, "ema.averages");
  int64_t n = 1;
  if (na && (!parse_i64(na, &n) || n < 1 || n > EMA_MAX_AVERAGES))
    return ema__fail(ctx, EMA_E_FORMAT, "%s: metadata ema.averages '%s' is not a count in [1, %d]", L->fn, na,
                     EMA_MAX_AVERAGES);
  if ((size_t)n != ctx->n_avg)
    return ema__fail(ctx, EMA_E_MISMATCH,
                     "%s: the checkpoint holds %lld averages per tensor but this context has %zu; add the same "
                     "averages with ema_add_average() before tracking",
                     L->fn, (long long)n, ctx->n_avg);
  memcpy(out, ctx->avg, sizeof ctx->avg);
  *n_out = (size_t)n;
  snprintf(out[0].name, sizeof out[0].name, "%s", L->ema_name);
  if (strlen(L->ema_name) == 0 || strlen(L->ema_name) > EMA_MAX_EMA_NAME)
    return ema__fail(ctx, EMA_E_FORMAT, "%s: metadata ema.name has an invalid length", L->fn);
  const char *d = st_meta_get(L->f, "ema.decay");
  if (d && (!parse_f64(d, &out[0].sched.decay) || !(out[0].sched.decay >= 0.0 && out[0].sched.decay <= 1.0)))
    return ema__fail(ctx, EMA_E_FORMAT, "%s: metadata ema.decay '%s' is not a decay in [0, 1]", L->fn, d);
  for (size_t k = 0; k < (size_t)n; k++) {
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
      return ema__fail(ctx, EMA_E_UNSUPPORTED, "%s: the checkpoint uses decay schedule '%s', unknown to this version",
                       L->fn, v);
    static const char *const fields[] = {"decay", "min_decay", "inv_gamma", "power", "gamma", "sigma_rel", "halflife"};
    double *dst[] = {&sc->decay, &sc->min_decay, &sc->inv_gamma, &sc->power, &sc->gamma, &sc->sigma_rel, &sc->halflife};
    for (size_t j = 0; j < sizeof fields / sizeof fields[0]; j++) {
      snprintf(key, sizeof key, "ema.average.%zu.%s", k, fields[j]);
      v = st_meta_get(L->f, key);
      if (v && !parse_f64(v, dst[j]))
        return ema__fail(ctx, EMA_E_FORMAT, "%s: metadata %s '%s' is not a number", L->fn, key, v);
    }
    if ((v = GET("update_after_step")) != NULL && !parse_i64(v, &sc->update_after_step))
      return ema__fail(ctx, EMA_E_FORMAT, "%s: metadata %s '%s' is not an integer", L->fn, key, v);
#undef GET
    const char *why = ema__schedule_problem(sc);
    if (why) return ema__fail(ctx, EMA_E_FORMAT, "%s: the schedule of average %zu is invalid: %s", L->fn, k, why);
    for (size_t j = 0; j < k; j++)
      if (strcmp(out[j].name, out[k].name) == 0)
        return ema__fail(ctx, EMA_E_FORMAT, "%s: two averages are called '%s'", L->fn, out[k].name);
  }
  return EMA_OK;
}

ema_status ema_load(ema_ctx *ctx, const char *path) {
  static const char *fn = "ema_load";
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  loader L;
  ema_status st = loader_begin(&L, ctx, path, fn);
  ema_avg avg[EMA_MAX_AVERAGES];
  size_t n_avg = 0;
  int64_t nupd = ctx->num_updates, last = ctx->last_step;
  if (st == EMA_OK) {
    const char *n = st_meta_get(L.f, "ema.num_updates"), *z = st_meta_get(L.f, "ema.zero_debias");
    const char *ls = st_meta_get(L.f, "ema.last_step"), *sch = st_meta_get(L.f, "ema.schedule");
    ema_schedule_kind kind;
    if (n && !parse_i64(n, &nupd))
      st = ema__fail(ctx, EMA_E_FORMAT, "%s: metadata ema.num_updates '%s' is not an integer", fn, n);
    else if (ls && (!parse_i64(ls, &last) || last < 0))
      st = ema__fail(ctx, EMA_E_FORMAT, "%s: metadata ema.last_step '%s' is not a step", fn, ls);
    else if (z && strcmp(z, ctx->zero_debias ? "1" : "0") != 0)
      st = ema__fail(ctx, EMA_E_MISMATCH,
                     "%s: the checkpoint was saved with zero_debias=%s but this context has zero_debias=%d; call "
                     "ema_set_zero_debias() before tracking",
                     fn, z, ctx->zero_debias);
    else if (sch && !ema__schedule_from_name(sch, &kind))
      st = ema__fail(ctx, EMA_E_UNSUPPORTED, "%s: the checkpoint uses decay schedule '%s', unknown to this version", fn,
                     sch);
    else
      st = read_schedules(&L, avg, &n_avg);
  }
  /* plan: every registered tensor must be there with its dtype and shape */
  for (size_t i = 0; i < ctx->count && st == EMA_OK; i++) {
    ema_tensor *t = &ctx->tensors[i];
    const st_tensor *s = NULL;
    st = expect(&L, t->name, t, t->dtype, t->dtype, 0, &s, "model values");
    if (st != EMA_OK) break;
    add_load(&L, s, t, LD_MODEL, 0);
    if (t->pair < 0) continue;
    for (size_t k = 0; k < n_avg && st == EMA_OK; k++) {
      char *names[4];
      int made = state_keys(t->name, avg[k].name, ctx->zero_debias, names);
      if (!made) {
        st = ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
      } else {
        st = expect(&L, names[0], t, t->sdtype, t->sdtype, 0, &s, "average");
        if (st == EMA_OK) add_load(&L, s, t, ctx->zero_debias ? LD_AVERAGE : LD_SHADOW, k);
        if (st == EMA_OK && ctx->zero_debias) {
          st = expect(&L, names[1], t, t->sdtype, t->sdtype, 0, &s, "zero-debias accumulator");
          if (st == EMA_OK) add_load(&L, s, t, LD_SHADOW, k);
          if (st == EMA_OK) st = expect(&L, names[2], t, EMA_I64, EMA_I64, 1, &s, "zero-debias step count");
          if (st == EMA_OK) add_load(&L, s, t, LD_STEPS, k);
          if (st == EMA_OK) st = expect(&L, names[3], t, EMA_F64, EMA_F64, 1, &s, "zero-debias decay product");
          if (st == EMA_OK) add_load(&L, s, t, LD_PROD, k);
        }
      }
      for (int j = 0; j < made; j++) free(names[j]);
    }
  }
  if (st == EMA_OK) st = loader_stage(&L);
  for (size_t i = 0; i < L.n && st == EMA_OK; i++) { /* validate staged counters */
    const unsigned char *src = L.stage + L.items[i].staged;
    if (L.items[i].dest == LD_STEPS) {
      int64_t k;
      memcpy(&k, src, 8);
      if (k < 0)
        st = ema__fail(ctx, EMA_E_FORMAT, "%s: tensor '%s' holds a negative step count", fn, L.items[i].src->name);
    } else if (L.items[i].dest == LD_PROD) {
      double p;
      memcpy(&p, src, 8);
      if (!(p >= 0.0 && p <= 1.0))
        st = ema__fail(ctx, EMA_E_FORMAT, "%s: tensor '%s' holds a decay product outside [0, 1]", fn,
                       L.items[i].src->name);
    }
  }
  if (st != EMA_OK) {
    loader_free(&L);
    return st;
  }
  /* commit: nothing below can fail */
  for (size_t i = 0; i < L.n; i++) {
    load_item *it = &L.items[i];
    const unsigned char *src = L.stage + it->staged;
    size_t bytes = (size_t)it->src->nbytes;
    switch (it->dest) {
      case LD_MODEL:
        if (bytes) memcpy(it->t->data, src, bytes);
        break;
      case LD_SHADOW:
        if (bytes) memcpy(it->t->shadow[it->k], src, bytes);
        break;
      case LD_AVERAGE:
        if (bytes) memcpy(it->t->average[it->k], src, bytes);
        break;
      case LD_STEPS: memcpy(&it->t->debias_steps[it->k], src, 8); break;
      case LD_PROD: memcpy(&it->t->debias_prod[it->k], src, 8); break;
    }
  }
  memcpy(ctx->avg, avg, sizeof avg);
  ctx->num_updates = nupd < 0 ? -1 : nupd;
  ctx->last_step = last;
  loader_free(&L);
  return EMA_OK;
}

ema_status ema_load_averages_into_model(ema_ctx *ctx, const char *path) {
  static const char *fn = "ema_load_averages_into_model";
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  loader L;
  ema_status st = loader_begin(&L, ctx, path, fn);
  /* the active average under the file's name for it */
  const char *active_name = ctx->avg[ctx->active].name;
  if (st == EMA_OK) {
    char key[64];
    snprintf(key, sizeof key, "ema.average.%zu.name", ctx->active);
    const char *v = st_meta_get(L.f, key);
    if (v)
      active_name = v;
    else if (ctx->active == 0)
      active_name = L.ema_name;
  }
  for (size_t i = 0; i < ctx->count && st == EMA_OK; i++) {
    ema_tensor *t = &ctx->tensors[i];
    const st_tensor *s = NULL;
    if (t->pair < 0) { /* plain state maps to itself */
      st = expect(&L, t->name, t, t->dtype, t->dtype, 0, &s, "plain state");
      if (st == EMA_OK) add_load(&L, s, t, LD_MODEL, 0);
      continue;
    }
    char *avg = join3(t->name, active_name, NULL);
    if (!avg) {
      st = ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
      break;
    }
    /* the average may be stored in the model's dtype or in float32 (the
       default shadow of f16/bf16 models), which is rounded on the way in */
    ema_dtype also = (t->dtype == EMA_F16 || t->dtype == EMA_BF16) ? EMA_F32 : t->dtype;
    st = expect(&L, avg, t, t->dtype, also, 0, &s, "average");
    free(avg);
    if (st == EMA_OK) {
      ema_dtype dt;
      st_dtype_to_ema(s->dtype, &dt);
      add_load(&L, s, t, dt == t->dtype ? LD_MODEL : LD_MODEL_FROM_SHADOW, 0);
    }
  }
  if (st == EMA_OK) st = loader_stage(&L);
  if (st != EMA_OK) {
    loader_free(&L);
    return st;
  }
  for (size_t i = 0; i < L.n; i++) {
    load_item *it = &L.items[i];
    const unsigned char *src = L.stage + it->staged;
    if (it->dest == LD_MODEL) {
      if (it->src->nbytes) memcpy(it->t->data, src, (size_t)it->src->nbytes);
    } else if (it->t->numel) {
      int pair = it->t->dtype == EMA_BF16 ? EMA_PAIR_BF16_F32 : EMA_PAIR_F16_F32;
      ctx->k->from_shadow[pair](it->t->data, src, it->t->numel);
    }
  }
  loader_free(&L);
  return EMA_OK;
}
