/*
 * The context: tensor registry, shadow arena, decay, updates, averages.
 *
 * Every public function validates its whole input first and only then
 * changes state, so that a failed call leaves everything as it was.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>

#include "pool.h"
#include "run.h"
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Version, statuses, dtypes                                                 */
/* ------------------------------------------------------------------------ */

unsigned ema_version_number(void) { return EMA_VERSION_NUMBER; }
const char *ema_version_string(void) { return EMA_VERSION_STRING; }

#define EMA__STATUS_TEXT(name, value, text) \
  case name: return text;
const char *ema_status_string(ema_status s) {
  switch (s) { EMA_STATUS_MAP(EMA__STATUS_TEXT) }
  return "unknown status";
}

#define EMA__STATUS_NAME(name, value, text) \
  case name: return #name;
const char *ema_status_name(ema_status s) {
  switch (s) { EMA_STATUS_MAP(EMA__STATUS_NAME) }
  return NULL;
}

size_t ema_dtype_size(ema_dtype d) {
  switch (d) {
    case EMA_F32: return 4;
    case EMA_F64: return 8;
    case EMA_F16: return 2;
    case EMA_BF16: return 2;
    case EMA_I32: return 4;
    case EMA_I64: return 8;
  }
  return 0;
}

const char *ema_dtype_name(ema_dtype d) {
  switch (d) {
    case EMA_F32: return "f32";
    case EMA_F64: return "f64";
    case EMA_F16: return "f16";
    case EMA_BF16: return "bf16";
    case EMA_I32: return "i32";
    case EMA_I64: return "i64";
  }
  return "?";
}

int ema__is_float_dtype(ema_dtype d) { return d == EMA_F32 || d == EMA_F64 || d == EMA_F16 || d == EMA_BF16; }

const char *ema_isa(void) { return ema_kernels_best()->name; }

/* ------------------------------------------------------------------------ */
/* Arenas: 64-byte-aligned blocks that never move, one arena per average     */
/* ------------------------------------------------------------------------ */

struct ema_block {
  ema_block *next;
  unsigned char *base;
  size_t cap, used;
};

#define EMA_BLOCK_MIN ((size_t)64 << 10)
#define EMA_BLOCK_GROW_MAX ((size_t)64 << 20)

static size_t round_up(size_t n) { return (n + EMA_ALIGN - 1) / EMA_ALIGN * EMA_ALIGN; }

/* Reserve bytes (already rounded) in the arena; returns NULL on failure. A
   block allocated for a call that later fails stays in the arena, empty,
   which is invisible to the caller. */
static unsigned char *arena_alloc(ema_ctx *ctx, size_t a, size_t bytes) {
  ema_block *b = ctx->blocks[a];
  if (bytes == 0) bytes = EMA_ALIGN; /* distinct, valid pointers for empty tensors */
  if (!b || b->cap - b->used < bytes) {
    size_t grow = ctx->arena_total[a];
    if (grow < EMA_BLOCK_MIN) grow = EMA_BLOCK_MIN;
    if (grow > EMA_BLOCK_GROW_MAX) grow = EMA_BLOCK_GROW_MAX;
    size_t cap = bytes > grow ? bytes : grow;
    ema_block *nb = (ema_block *)ema__malloc(sizeof *nb);
    if (!nb) return NULL;
    nb->base = (unsigned char *)ema__aligned_alloc(cap);
    if (!nb->base) {
      free(nb);
      return NULL;
    }
    nb->cap = cap;
    nb->used = 0;
    nb->next = ctx->blocks[a];
    ctx->blocks[a] = nb;
    ctx->arena_total[a] += cap;
    b = nb;
  }
  unsigned char *p = b->base + b->used;
  b->used += bytes;
  return p;
}

/* ------------------------------------------------------------------------ */
/* Name index                                                                */
/* ------------------------------------------------------------------------ */

static size_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return (size_t)(h ^ (h >> 32));
}

ema_tensor *ema__find(const ema_ctx *ctx, const char *name) {
  if (!ctx->index_cap) return NULL;
  size_t mask = ctx->index_cap - 1;
  for (size_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
    size_t slot = ctx->index[i];
    if (!slot) return NULL;
    if (strcmp(ctx->tensors[slot - 1].name, name) == 0) return &ctx->tensors[slot - 1];
  }
}

static void index_insert(size_t *index, size_t cap, const char *name, size_t slot) {
  size_t mask = cap - 1;
  size_t i = hash_name(name) & mask;
  while (index[i]) i = (i + 1) & mask;
  index[i] = slot;
}

/* ------------------------------------------------------------------------ */
/* Create / free / errors                                                    */
/* ------------------------------------------------------------------------ */

static int decay_ok(double d) { return d >= 0.0 && d <= 1.0; } /* false for NaN */

ema_status ema_create(ema_ctx **out, double decay) {
  if (out) *out = NULL;
  if (!out) return EMA_E_INVALID_ARG;
  if (!decay_ok(decay)) return EMA_E_INVALID_ARG;
  ema_ctx *ctx = (ema_ctx *)ema__calloc(1, sizeof *ctx);
  if (!ctx) return EMA_E_NOMEM;
  ema_schedule_init(&ctx->avg[0].sched, EMA_SCHEDULE_CONSTANT);
  ctx->avg[0].sched.decay = decay;
  strcpy(ctx->avg[0].name, "ExponentialMovingAverage");
  ctx->n_avg = 1;
  ctx->num_updates = -1;
  ctx->k = ema_kernels_best();
  ctx->threads = ema__default_threads();
  ctx->parallel_min = ema__parallel_min_default();
  *out = ctx;
  return EMA_OK;
}

void ema_free(ema_ctx *ctx) {
  if (!ctx) return;
  ema__pool_free(ctx->pool);
  free(ctx->run_items);
  free(ctx->run_factors);
  for (size_t i = 0; i < ctx->count; i++) {
    free(ctx->tensors[i].name);
    free(ctx->tensors[i].shard);
  }
  free(ctx->tensors);
  free(ctx->index);
  for (size_t a = 0; a < EMA_MAX_AVERAGES; a++) {
    while (ctx->blocks[a]) {
      ema_block *n = ctx->blocks[a]->next;
      ema__aligned_free(ctx->blocks[a]->base);
      free(ctx->blocks[a]);
      ctx->blocks[a] = n;
    }
  }
  ema__aligned_free(ctx->store_buf);
  ema__aligned_free(ctx->swap_buf);
  free(ctx);
}

const char *ema_last_error(const ema_ctx *ctx) {
  if (!ctx) return "the context is NULL (ema_create failed or was not called)";
  return ctx->err;
}

ema_status ema__fail(const ema_ctx *cctx, ema_status s, const char *fmt, ...) {
  if (cctx) {
    ema_ctx *ctx = (ema_ctx *)cctx; /* the message buffer is logically mutable */
    va_list ap;
    va_start(ap, fmt);
    ema__verrf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
  }
  return s;
}

void ema__clear_error(const ema_ctx *cctx) {
  if (cctx) ((ema_ctx *)cctx)->err[0] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Tracking                                                                  */
/* ------------------------------------------------------------------------ */

static int shadow_pair(ema_dtype d, int half_same, ema_dtype *sdtype) {
  switch (d) {
    case EMA_F32: *sdtype = EMA_F32; return EMA_PAIR_F32;
    case EMA_F64: *sdtype = EMA_F64; return EMA_PAIR_F64;
    case EMA_BF16:
      *sdtype = half_same ? EMA_BF16 : EMA_F32;
      return half_same ? EMA_PAIR_BF16_BF16 : EMA_PAIR_BF16_F32;
    case EMA_F16:
      *sdtype = half_same ? EMA_F16 : EMA_F32;
      return half_same ? EMA_PAIR_F16_F16 : EMA_PAIR_F16_F32;
    default: return -1;
  }
}

static ema_status track(ema_ctx *ctx, const char *fn, const char *name, void *data, ema_dtype dtype, int ndim,
                        const int64_t *shape, ema_policy policy) {
  int averaged = policy == EMA_POLICY_AVERAGE;
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!name) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: name is NULL", fn);
  size_t name_len = strlen(name);
  if (name_len == 0 || name_len > EMA_MAX_NAME)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: a tensor name must be 1 to %d bytes long (got %zu)", fn,
                     EMA_MAX_NAME, name_len);
  if (!ema__valid_utf8(name, name_len))
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor name is not valid UTF-8 (checkpoints store names as JSON)",
                     fn);
  if (strcmp(name, "__metadata__") == 0)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: '__metadata__' is reserved by the safetensors format", fn);
  if (ema_dtype_size(dtype) == 0)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor '%s' has unknown dtype value %d", fn, name, (int)dtype);
  if (policy != EMA_POLICY_AVERAGE && policy != EMA_POLICY_COPY)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor '%s' has unknown policy value %d", fn, name, (int)policy);
  if (averaged && !ema__is_float_dtype(dtype))
    return ema__fail(ctx, EMA_E_DTYPE,
                     "%s: tensor '%s' has integer dtype %s, which cannot be averaged (averaging a step counter such "
                     "as global_step is the classic mistake); register it with ema_track_policy(..., "
                     "EMA_POLICY_COPY) (ema_track_state in 0.1) to save and restore it as it is",
                     fn, name, ema_dtype_name(dtype));
  if (ndim < 0 || ndim > EMA_MAX_DIMS)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor '%s' has ndim %d; it must be in [0, %d]", fn, name, ndim,
                     EMA_MAX_DIMS);
  if (ndim > 0 && !shape)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor '%s' has ndim %d but shape is NULL", fn, name, ndim);
  /* Element count with overflow checks: the largest buffer we make is two
     shadows of 8 bytes per element, so keep numel * 16 within size_t. */
  size_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor '%s' has negative dimension %d (%lld)", fn, name, i,
                       (long long)shape[i]);
    uint64_t d = (uint64_t)shape[i];
    if (d != 0 && numel > (SIZE_MAX / 16) / d)
      return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor '%s' is too large: its element count overflows", fn, name);
    numel *= (size_t)d;
  }
  if (numel > 0 && !data)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor '%s' has %zu elements but data is NULL", fn, name, numel);
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "%s: cannot register '%s' while swapped; call ema_swap() to swap back first", fn,
                     name);
  if (ctx->stored)
    return ema__fail(ctx, EMA_E_STATE, "%s: cannot register '%s' while a stored copy is held; call ema_restore() first",
                     fn, name);
  if (ema__find(ctx, name)) return ema__fail(ctx, EMA_E_EXISTS, "%s: tensor '%s' is already registered", fn, name);

  ema_dtype sdtype = dtype;
  int pair = averaged ? shadow_pair(dtype, ctx->half_same, &sdtype) : -1;

  /* Allocate everything first. */
  if (ctx->count == ctx->cap) {
    size_t ncap = ctx->cap ? ctx->cap * 2 : 16;
    ema_tensor *nt = (ema_tensor *)ema__realloc(ctx->tensors, ncap * sizeof *nt);
    if (!nt) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory growing the registry", fn);
    ctx->tensors = nt; /* same contents, more room: nothing observable changed */
    ema_run_item *ni = (ema_run_item *)ema__realloc(ctx->run_items, ncap * sizeof *ni);
    if (!ni) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory growing the registry", fn);
    ctx->run_items = ni;
    ema_coef *nf = (ema_coef *)ema__realloc(ctx->run_factors, ncap * EMA_MAX_AVERAGES * sizeof *nf);
    if (!nf) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory growing the registry", fn);
    ctx->run_factors = nf;
    ctx->cap = ncap;
  }
  size_t *nindex = NULL;
  size_t ncap_index = ctx->index_cap;
  if ((ctx->count + 1) * 2 > ctx->index_cap) {
    ncap_index = ctx->index_cap ? ctx->index_cap * 2 : 32;
    nindex = (size_t *)ema__calloc(ncap_index, sizeof *nindex);
    if (!nindex) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory growing the name index", fn);
  }
  char *name_copy = (char *)ema__malloc(name_len + 1);
  if (!name_copy) {
    free(nindex);
    return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory copying the name", fn);
  }
  memcpy(name_copy, name, name_len + 1);
  size_t sbytes = round_up(numel * ema_dtype_size(sdtype));
  if (!sbytes) sbytes = EMA_ALIGN; /* distinct, valid pointers for empty tensors */
  size_t per_avg = ctx->zero_debias ? 2 * sbytes : sbytes;
  unsigned char *shadows[EMA_MAX_AVERAGES] = {NULL};
  if (averaged) {
    /* each average's shadow in that average's own arena */
    for (size_t a = 0; a < ctx->n_avg; a++) {
      shadows[a] = arena_alloc(ctx, a, per_avg);
      if (!shadows[a]) {
        free(name_copy);
        free(nindex);
        return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory allocating the shadow of '%s' (%zu bytes)", fn,
                         name, per_avg);
      }
    }
  }

  /* Commit. */
  if (nindex) {
    for (size_t i = 0; i < ctx->count; i++) index_insert(nindex, ncap_index, ctx->tensors[i].name, i + 1);
    free(ctx->index);
    ctx->index = nindex;
    ctx->index_cap = ncap_index;
  }
  ema_tensor *t = &ctx->tensors[ctx->count];
  memset(t, 0, sizeof *t);
  t->name = name_copy;
  t->name_len = name_len;
  t->data = data;
  t->dtype = dtype;
  t->sdtype = sdtype;
  t->msize = (unsigned char)ema_dtype_size(dtype);
  t->ssize = (unsigned char)ema_dtype_size(sdtype);
  t->pair = pair;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  t->numel = numel;
  if (averaged) {
    for (size_t a = 0; a < ctx->n_avg; a++) {
      unsigned char *sh = shadows[a];
      t->shadow[a] = sh;
      t->average[a] = ctx->zero_debias ? sh + sbytes : sh;
      t->debias_prod[a] = 1.0;
      if (ctx->zero_debias) {
        memset(sh, 0, 2 * sbytes); /* +0.0 in every float format */
      } else if (numel) {
        ctx->k->to_shadow[pair](sh, data, numel);
      }
    }
    ctx->n_averaged++;
  }
  index_insert(ctx->index, ctx->index_cap, name_copy, ctx->count + 1);
  ctx->count++;
  return EMA_OK;
}

ema_status ema_track(ema_ctx *ctx, const char *name, void *data, ema_dtype dtype, int ndim, const int64_t *shape) {
  return track(ctx, "ema_track", name, data, dtype, ndim, shape, EMA_POLICY_AVERAGE);
}

ema_status ema_track_policy(ema_ctx *ctx, const char *name, void *data, ema_dtype dtype, int ndim,
                            const int64_t *shape, ema_policy policy) {
  return track(ctx, "ema_track_policy", name, data, dtype, ndim, shape, policy);
}

size_t ema_count(const ema_ctx *ctx) { return ctx ? ctx->count : 0; }

ema_status ema_tensor_info(const ema_ctx *ctx, size_t i, const char **name, void **data, ema_dtype *dtype, int *ndim,
                           int64_t *shape, ema_policy *policy) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (i >= ctx->count)
    return ema__fail(ctx, EMA_E_NOT_FOUND, "ema_tensor_info: index %zu is out of range (%zu tensors)", i, ctx->count);
  const ema_tensor *t = &ctx->tensors[i];
  if (name) *name = t->name;
  if (data) *data = t->data;
  if (dtype) *dtype = t->dtype;
  if (ndim) *ndim = t->ndim;
  if (shape)
    for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
  if (policy) *policy = t->pair >= 0 ? EMA_POLICY_AVERAGE : EMA_POLICY_COPY;
  return EMA_OK;
}

ema_status ema_set_half_shadows(ema_ctx *ctx, int same_dtype) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  ctx->half_same = same_dtype ? 1 : 0;
  return EMA_OK;
}

/* ------------------------------------------------------------------------ */
/* Decay                                                                     */
/* ------------------------------------------------------------------------ */

ema_status ema_set_decay(ema_ctx *ctx, double decay) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!decay_ok(decay))
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_set_decay: decay must be in [0, 1], got %g", decay);
  ctx->avg[0].sched.decay = decay;
  return EMA_OK;
}

ema_status ema_set_num_updates(ema_ctx *ctx, int64_t n) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  ctx->num_updates = n < 0 ? -1 : n;
  return EMA_OK;
}

ema_status ema_set_zero_debias(ema_ctx *ctx, int on) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (ctx->n_averaged > 0 && (on != 0) != (ctx->zero_debias != 0))
    return ema__fail(ctx, EMA_E_STATE,
                     "ema_set_zero_debias: must be called before the first ema_track() (%zu tensors are tracked)",
                     ctx->n_averaged);
  ctx->zero_debias = on ? 1 : 0;
  return EMA_OK;
}

ema_status ema_set_name(ema_ctx *ctx, const char *name) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!name) return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_set_name: name is NULL");
  size_t n = strlen(name);
  if (n == 0 || n > EMA_MAX_EMA_NAME)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_set_name: the name must be 1 to %d bytes long (got %zu)",
                     EMA_MAX_EMA_NAME, n);
  if (!ema__valid_utf8(name, n)) return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_set_name: the name is not valid UTF-8");
  for (size_t k = 1; k < ctx->n_avg; k++)
    if (strcmp(ctx->avg[k].name, name) == 0)
      return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_set_name: average %zu is already called '%s'", k, name);
  memcpy(ctx->avg[0].name, name, n + 1);
  return EMA_OK;
}

/* TensorFlow: decay is a float32 tensor; num_updates is cast to float32 and
   min(decay, (1 + n) / (10 + n)) is evaluated in float32. */
float ema__effective_decay_f32(const ema_ctx *ctx, size_t k) {
  float d = (float)ctx->avg[k].sched.decay;
  if (ctx->num_updates >= 0) {
    float n = (float)ctx->num_updates;
    float r = (1.0f + n) / (10.0f + n);
    if (r < d) d = r;
  }
  return d;
}

double ema_effective_decay(const ema_ctx *ctx) {
  if (!ctx) return NAN;
  return (double)ema__effective_decay_f32(ctx, ctx->active);
}

/* om = 1 - d, computed in float32 and then converted to the shadow's dtype
   (TensorFlow's assign_moving_average casts 1 - decay to the variable's
   dtype). */
ema_coef ema__coef_from_f32_om(float om, int pair) {
  ema_coef c;
  memset(&c, 0, sizeof c);
  switch (pair) {
    case EMA_PAIR_F64: c.d = (double)om; break;
    case EMA_PAIR_BF16_BF16: c.h = ema_f32_to_bf16(om); break;
    case EMA_PAIR_F16_F16: c.h = ema_f32_to_f16(om); break;
    default: c.f = om; break;
  }
  return c;
}

/* A float64 coefficient rounded once to the shadow's precision. */
ema_coef ema__coef_from_f64(double x, int pair) {
  ema_coef c;
  memset(&c, 0, sizeof c);
  switch (pair) {
    case EMA_PAIR_F64: c.d = x; break;
    case EMA_PAIR_BF16_BF16: c.h = ema_f32_to_bf16((float)x); break;
    case EMA_PAIR_F16_F16: c.h = ema_f32_to_f16((float)x); break;
    default: c.f = (float)x; break;
  }
  return c;
}

/* ------------------------------------------------------------------------ */
/* Updates                                                                   */
/* ------------------------------------------------------------------------ */

/* Zero-debias factor 1 - (1 - om)^k in the shadow's precision, as
   TensorFlow's _zero_debias computes it (k converted to that precision). */
static ema_coef debias_factor(int pair, ema_coef om, int64_t k) {
  ema_coef f;
  memset(&f, 0, sizeof f);
  switch (pair) {
    case EMA_PAIR_F64: f.d = 1.0 - pow(1.0 - om.d, (double)k); break;
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
    default: f.f = 1.0f - powf(1.0f - om.f, (float)k); break;
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

ema_status ema_apply(ema_ctx *ctx) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE,
                     "ema_apply: the model holds the averages (swapped); call ema_swap() to swap back first");
  ema_status rc = require_constant(ctx, "ema_apply");
  if (rc != EMA_OK) return rc;
  float d[EMA_MAX_AVERAGES];
  tf_coefs(ctx, d);
  size_t n = 0;
  for (size_t i = 0; i < ctx->count; i++)
    if (ctx->tensors[i].pair >= 0) add_update(ctx, &ctx->tensors[i], d, &n);
  ema__run(ctx, ctx->run_items, n);
  return EMA_OK;
}

ema_status ema_apply_some(ema_ctx *ctx, const char *const *names, size_t n) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (n == 0) return EMA_OK;
  if (!names) return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_apply_some: names is NULL with n = %zu", n);
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
    } else if (t->pair < 0) {
      st = ema__fail(ctx, EMA_E_DTYPE,
                     "ema_apply_some: '%s' is plain state (ema_track_policy with EMA_POLICY_COPY), which is never "
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
/* Averages                                                                  */
/* ------------------------------------------------------------------------ */

const void *ema_average(const ema_ctx *ctx, const char *name, ema_dtype *dtype) {
  if (!ctx || !name) return NULL;
  const ema_tensor *t = ema__find(ctx, name);
  if (!t || t->pair < 0) return NULL;
  if (dtype) *dtype = t->sdtype;
  return t->average[ctx->active];
}

const void *ema_bank_average(const ema_ctx *ctx, const char *name, size_t k, ema_dtype *dtype) {
  if (!ctx || !name || k >= ctx->n_avg) return NULL;
  const ema_tensor *t = ema__find(ctx, name);
  if (!t || t->pair < 0) return NULL;
  if (dtype) *dtype = t->sdtype;
  return t->average[k];
}

ema_status ema_average_name(const ema_ctx *ctx, const char *name, char *buf, size_t cap) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!name || !buf) return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_average_name: name and buf must not be NULL");
  const char *ename = ctx->avg[ctx->active].name;
  size_t a = strlen(name), b = strlen(ename);
  if (a + 1 + b + 1 > cap)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_average_name: buffer of %zu bytes is too small; %zu are needed", cap,
                     a + b + 2);
  memcpy(buf, name, a);
  buf[a] = '/';
  memcpy(buf + a + 1, ename, b + 1);
  return EMA_OK;
}

/* ------------------------------------------------------------------------ */
/* Swap, store, copy_to, restore                                             */
/* ------------------------------------------------------------------------ */

static int is_mixed(int pair) { return pair == EMA_PAIR_BF16_F32 || pair == EMA_PAIR_F16_F32; }

static size_t model_bytes(const ema_tensor *t) { return t->numel * ema_dtype_size(t->dtype); }

/* Bytes needed to hold the model values of the selected averaged tensors,
   each at a 64-byte-aligned offset. mixed_only selects mixed-dtype pairs. */
static size_t side_bytes(const ema_ctx *ctx, int mixed_only) {
  size_t total = 0;
  for (size_t i = 0; i < ctx->count; i++) {
    const ema_tensor *t = &ctx->tensors[i];
    if (t->pair < 0 || (mixed_only && !is_mixed(t->pair))) continue;
    total += round_up(model_bytes(t));
  }
  return total;
}

static ema_status ensure_buffer(ema_ctx *ctx, unsigned char **buf, size_t *cap, size_t need, const char *fn) {
  if (need <= *cap && *buf) return EMA_OK;
  unsigned char *nb = (unsigned char *)ema__aligned_alloc(need ? need : EMA_ALIGN);
  if (!nb) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory allocating %zu bytes", fn, need);
  ema__aligned_free(*buf);
  *buf = nb;
  *cap = need;
  return EMA_OK;
}

static ema_run_item *add_item(ema_ctx *ctx, ema_tensor *t, int op, unsigned char *side, size_t *n) {
  ema_run_item *it = &ctx->run_items[(*n)++];
  memset(it, 0, sizeof *it); /* small now: pointers, no coefficient arrays */
  it->t = t;
  it->op = op;
  it->side = side;
  it->k = (int)ctx->active;
  return it;
}

ema_status ema_swap(ema_ctx *ctx) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!ctx->swapped) {
    ema_status st = ensure_buffer(ctx, &ctx->swap_buf, &ctx->swap_cap, side_bytes(ctx, 1), "ema_swap");
    if (st != EMA_OK) return st;
  }
  size_t off = 0, n = 0;
  for (size_t i = 0; i < ctx->count; i++) {
    ema_tensor *t = &ctx->tensors[i];
    if (t->pair < 0) continue;
    if (is_mixed(t->pair)) {
      add_item(ctx, t, ctx->swapped ? EMA_OP_SIDE_TO_MODEL : EMA_OP_SWAP_IN_MIXED, ctx->swap_buf + off, &n);
      off += round_up(model_bytes(t));
    } else {
      add_item(ctx, t, EMA_OP_SWAP, NULL, &n);
    }
  }
  ema__run(ctx, ctx->run_items, n);
  ctx->swapped = !ctx->swapped;
  return EMA_OK;
}

int ema_is_swapped(const ema_ctx *ctx) { return ctx ? ctx->swapped : 0; }

ema_status ema_store(ema_ctx *ctx) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "ema_store: the model holds the averages (swapped); call ema_swap() first");
  if (ctx->stored)
    return ema__fail(ctx, EMA_E_STATE,
                     "ema_store: a stored copy is already held; call ema_restore() before storing again");
  ema_status st = ensure_buffer(ctx, &ctx->store_buf, &ctx->store_cap, side_bytes(ctx, 0), "ema_store");
  if (st != EMA_OK) return st;
  size_t off = 0, n = 0;
  for (size_t i = 0; i < ctx->count; i++) {
    ema_tensor *t = &ctx->tensors[i];
    if (t->pair < 0) continue;
    add_item(ctx, t, EMA_OP_MODEL_TO_SIDE, ctx->store_buf + off, &n);
    off += round_up(model_bytes(t));
  }
  ema__run(ctx, ctx->run_items, n);
  ctx->stored = 1;
  return EMA_OK;
}

ema_status ema_copy_to(ema_ctx *ctx) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "ema_copy_to: the model holds the averages (swapped); call ema_swap() first");
  size_t n = 0;
  for (size_t i = 0; i < ctx->count; i++)
    if (ctx->tensors[i].pair >= 0) add_item(ctx, &ctx->tensors[i], EMA_OP_COPY_TO, NULL, &n);
  ema__run(ctx, ctx->run_items, n);
  return EMA_OK;
}

ema_status ema_restore(ema_ctx *ctx) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "ema_restore: the context is swapped; call ema_swap() to swap back instead");
  if (!ctx->stored) return ema__fail(ctx, EMA_E_STATE, "ema_restore: nothing is stored; call ema_store() first");
  size_t off = 0, n = 0;
  for (size_t i = 0; i < ctx->count; i++) {
    ema_tensor *t = &ctx->tensors[i];
    if (t->pair < 0) continue;
    add_item(ctx, t, EMA_OP_SIDE_TO_MODEL, ctx->store_buf + off, &n);
    off += round_up(model_bytes(t));
  }
  ema__run(ctx, ctx->run_items, n);
  ctx->stored = 0;
  return EMA_OK;
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */

ema_status ema_set_threads(ema_ctx *ctx, int n) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (n < 0 || n > EMA_MAX_THREADS)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_set_threads: %d threads asked; use 0 (default) or 1 to %d", n,
                     EMA_MAX_THREADS);
  int want = n == 0 ? ema__default_threads() : n;
  if (want == ctx->threads) return EMA_OK;
  ema_pool *np = NULL;
  if (want > 1) {
    ema_status st = ema__pool_create(&np, want);
    if (st != EMA_OK) return ema__fail(ctx, st, "ema_set_threads: could not start %d worker threads", want - 1);
  }
  ema__pool_free(ctx->pool);
  ctx->pool = np;
  ctx->pool_failed = 0;
  ctx->threads = want;
  return EMA_OK;
}

int ema_threads(const ema_ctx *ctx) { return ctx ? ctx->threads : 0; }

/* ------------------------------------------------------------------------ */
/* Schedules, banks, step-driven updates                                     */
/* ------------------------------------------------------------------------ */

ema_status ema_set_schedule(ema_ctx *ctx, const ema_schedule *s) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  const char *why = ema__schedule_problem(s);
  if (why) return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_set_schedule: %s", why);
  ctx->avg[0].sched = *s;
  return EMA_OK;
}

ema_status ema_bank_add(ema_ctx *ctx, const char *name, const ema_schedule *s, size_t *index) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!name) return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_bank_add: name is NULL");
  size_t n = strlen(name);
  if (n == 0 || n > EMA_MAX_EMA_NAME || !ema__valid_utf8(name, n))
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_bank_add: the name must be 1 to %d bytes of UTF-8",
                     EMA_MAX_EMA_NAME);
  const char *why = ema__schedule_problem(s);
  if (why) return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_bank_add: %s", why);
  if (ctx->n_averaged > 0)
    return ema__fail(ctx, EMA_E_STATE, "ema_bank_add: must be called before the first ema_track()");
  if (ctx->n_avg == EMA_MAX_AVERAGES)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_bank_add: a context holds at most %d averages",
                     EMA_MAX_AVERAGES);
  for (size_t k = 0; k < ctx->n_avg; k++)
    if (strcmp(ctx->avg[k].name, name) == 0)
      return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_bank_add: an average is already called '%s'", name);
  ema_avg *a = &ctx->avg[ctx->n_avg];
  memcpy(a->name, name, n + 1);
  a->sched = *s;
  if (index) *index = ctx->n_avg;
  ctx->n_avg++;
  return EMA_OK;
}

size_t ema_bank_size(const ema_ctx *ctx) { return ctx ? ctx->n_avg : 0; }

const char *ema_bank_name(const ema_ctx *ctx, size_t k) {
  return ctx && k < ctx->n_avg ? ctx->avg[k].name : NULL;
}

int64_t ema_last_step(const ema_ctx *ctx) { return ctx ? ctx->last_step : 0; }

ema_status ema_bank_set_active(ema_ctx *ctx, size_t k) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (k >= ctx->n_avg)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_bank_set_active: there are %zu averages, not %zu", ctx->n_avg,
                     k + 1);
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "ema_bank_set_active: swapped; call ema_swap() to swap back first");
  ctx->active = k;
  return EMA_OK;
}

size_t ema_bank_active(const ema_ctx *ctx) { return ctx ? ctx->active : 0; }

ema_status ema_update(ema_ctx *ctx, int64_t step) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE,
                     "ema_update: the model holds the averages (swapped); call ema_swap() to swap back first");
  if (step <= ctx->last_step || step < 1)
    return ema__fail(ctx, EMA_E_INVALID_ARG,
                     "ema_update: step %lld must be >= 1 and larger than the previous update's step %lld",
                     (long long)step, (long long)ctx->last_step);
  double d[EMA_MAX_AVERAGES];
  for (size_t a = 0; a < ctx->n_avg; a++) {
    if (ema_schedule_decay(&ctx->avg[a].sched, ctx->last_step, step, &d[a]) != EMA_OK)
      return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_update: the schedule of average '%s' is invalid",
                       ctx->avg[a].name);
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
  ema__run(ctx, ctx->run_items, n);
  ctx->last_step = step;
  return EMA_OK;
}

/* ------------------------------------------------------------------------ */
/* Getters, retarget, untrack                                                */
/* ------------------------------------------------------------------------ */

double ema_decay(const ema_ctx *ctx) { return ctx ? ctx->avg[0].sched.decay : NAN; }

int64_t ema_num_updates(const ema_ctx *ctx) { return ctx ? ctx->num_updates : -1; }

static ema_status refuse_busy(ema_ctx *ctx, const char *fn) {
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "%s: the context is swapped; call ema_swap() to swap back first", fn);
  if (ctx->stored)
    return ema__fail(ctx, EMA_E_STATE, "%s: a stored copy of the model is held; call ema_restore() first", fn);
  return EMA_OK;
}

ema_status ema_retarget(ema_ctx *ctx, const char *name, void *data) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!name) return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_retarget: name is NULL");
  ema_tensor *t = ema__find(ctx, name);
  if (!t) return ema__fail(ctx, EMA_E_NOT_FOUND, "ema_retarget: no tensor named '%s' is tracked", name);
  if (!data && t->numel)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_retarget: tensor '%s' has %zu elements but data is NULL", name,
                     t->numel);
  ema_status st = refuse_busy(ctx, "ema_retarget");
  if (st != EMA_OK) return st;
  t->data = data;
  return EMA_OK;
}

ema_status ema_untrack(ema_ctx *ctx, const char *name) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!name) return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_untrack: name is NULL");
  ema_tensor *t = ema__find(ctx, name);
  if (!t) return ema__fail(ctx, EMA_E_NOT_FOUND, "ema_untrack: no tensor named '%s' is tracked", name);
  ema_status st = refuse_busy(ctx, "ema_untrack");
  if (st != EMA_OK) return st;
  size_t i = (size_t)(t - ctx->tensors);
  if (t->pair >= 0) ctx->n_averaged--;
  free(t->name);
  free(t->shard);
  memmove(&ctx->tensors[i], &ctx->tensors[i + 1], (ctx->count - i - 1) * sizeof *t);
  ctx->count--;
  /* rebuild the index in place: same capacity, new slots */
  memset(ctx->index, 0, ctx->index_cap * sizeof *ctx->index);
  for (size_t j = 0; j < ctx->count; j++) index_insert(ctx->index, ctx->index_cap, ctx->tensors[j].name, j + 1);
  return EMA_OK;
}
