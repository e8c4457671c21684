/*
 * src/core/registry.c: the tensor registry: the name index (open
 * addressing), track with its policies, tensor_info, retarget and untrack.
 * Shadows and frozen copies live in the arenas (arena.c).
 *
 * Every public function validates its whole input first and only then
 * changes state, so that a failed call leaves everything as it was.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "run.h"

/* Give back the registry's memory: names, tensors, index and every arena. */
void ema__registry_free(ema_ctx *ctx) {
  for (size_t i = 0; i < ctx->count; i++) {
    free(ctx->tensors[i].name);
    free(ctx->tensors[i].shard);
  }
  free(ctx->tensors);
  free(ctx->index);
  ema__arena_free(ctx);
}

/* ------------------------------------------------------------------------ */
/* Name index                                                               */
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
/* Tracking                                                                 */
/* ------------------------------------------------------------------------ */

static int shadow_pair(ema_dtype d, int half_same, ema_dtype *sdtype) {
  switch (d) {
    case EMA_F32:
      *sdtype = EMA_F32;
      return EMA_PAIR_F32;
    case EMA_F64:
      *sdtype = EMA_F64;
      return EMA_PAIR_F64;
    case EMA_BF16:
      *sdtype = half_same ? EMA_BF16 : EMA_F32;
      return half_same ? EMA_PAIR_BF16_BF16 : EMA_PAIR_BF16_F32;
    case EMA_F16:
      *sdtype = half_same ? EMA_F16 : EMA_F32;
      return half_same ? EMA_PAIR_F16_F16 : EMA_PAIR_F16_F32;
    default:
      return -1;
  }
}

/* The arguments of one ema_track / ema_track_policy call, once checked. */
typedef struct track_args {
  const char *fn, *name;
  size_t name_len, numel;
  void *data;
  ema_dtype dtype;
  int ndim;
  const int64_t *shape;
  ema_policy policy;
} track_args;

static ema_status check_track_name(ema_ctx *ctx, track_args *a) {
  const char *fn = a->fn, *name = a->name;
  if (!name) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: name is NULL", fn);
  a->name_len = strlen(name);
  if (a->name_len == 0 || a->name_len > EMA_MAX_NAME)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: a tensor name must be 1 to %d bytes long (got %zu)", fn, EMA_MAX_NAME,
                     a->name_len);
  if (!ema__valid_utf8(name, a->name_len))
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor name is not valid UTF-8 (checkpoints store names as JSON)",
                     fn);
  if (strcmp(name, "__metadata__") == 0)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: '__metadata__' is reserved by the safetensors format", fn);
  return EMA_OK;
}

static ema_status check_track_kind(ema_ctx *ctx, const track_args *a) {
  const char *fn = a->fn, *name = a->name;
  if (ema_dtype_size(a->dtype) == 0)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor '%s' has unknown dtype value %d", fn, name, (int)a->dtype);
  if (!ema__policy_name(a->policy))
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor '%s' has unknown policy value %d", fn, name, (int)a->policy);
  if (a->policy == EMA_POLICY_AVERAGE && !ema__is_float_dtype(a->dtype))
    return ema__fail(ctx, EMA_E_DTYPE,
                     "%s: tensor '%s' has integer dtype %s, which cannot be averaged (averaging a step counter such "
                     "as global_step is the classic mistake); register it with ema_track_policy(..., "
                     "EMA_POLICY_COPY) (ema_track_state in 0.1) to save and restore it as it is",
                     fn, name, ema_dtype_name(a->dtype));
  return EMA_OK;
}

/* Element count with overflow checks: the largest buffer we make is two
   shadows of 8 bytes per element, so keep numel * 16 within size_t. */
static ema_status check_track_shape(ema_ctx *ctx, track_args *a) {
  const char *fn = a->fn, *name = a->name;
  if (a->ndim < 0 || a->ndim > EMA_MAX_DIMS)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor '%s' has ndim %d; it must be in [0, %d]", fn, name, a->ndim,
                     EMA_MAX_DIMS);
  if (a->ndim > 0 && !a->shape)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor '%s' has ndim %d but shape is NULL", fn, name, a->ndim);
  size_t numel = 1;
  for (int i = 0; i < a->ndim; i++) {
    if (a->shape[i] < 0)
      return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor '%s' has negative dimension %d (%lld)", fn, name, i,
                       (long long)a->shape[i]);
    uint64_t d = (uint64_t)a->shape[i];
    if (d != 0 && numel > (SIZE_MAX / 16) / d)
      return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor '%s' is too large: its element count overflows", fn, name);
    numel *= (size_t)d;
  }
  if (numel > 0 && !a->data)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: tensor '%s' has %zu elements but data is NULL", fn, name, numel);
  a->numel = numel;
  return EMA_OK;
}

static ema_status check_track(ema_ctx *ctx, track_args *a) {
  ema_status st = check_track_name(ctx, a);
  if (st == EMA_OK) st = check_track_kind(ctx, a);
  if (st == EMA_OK) st = check_track_shape(ctx, a);
  if (st != EMA_OK) return st;
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "%s: cannot register '%s' while swapped; call ema_swap() to swap back first",
                     a->fn, a->name);
  if (ctx->stored)
    return ema__fail(ctx, EMA_E_STATE, "%s: cannot register '%s' while a stored copy is held; call ema_restore() first",
                     a->fn, a->name);
  if (ema__find(ctx, a->name))
    return ema__fail(ctx, EMA_E_EXISTS, "%s: tensor '%s' is already registered", a->fn, a->name);
  return EMA_OK;
}

/* Room for one more tensor in the registry and its scratch arrays. Growing
   moves the same contents to more room: nothing observable changes. */
static ema_status grow_registry(ema_ctx *ctx, const char *fn) {
  if (ctx->count < ctx->cap) return EMA_OK;
  size_t ncap = ctx->cap ? ctx->cap * 2 : 16;
  ema_tensor *nt = (ema_tensor *)ema__realloc(ctx->tensors, ncap * sizeof *nt);
  if (!nt) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory growing the registry", fn);
  ctx->tensors = nt;
  ema_run_item *ni = (ema_run_item *)ema__realloc(ctx->run_items, ncap * sizeof *ni);
  if (!ni) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory growing the registry", fn);
  ctx->run_items = ni;
  ema_coef *nf = (ema_coef *)ema__realloc(ctx->run_factors, ncap * EMA_MAX_AVERAGES * sizeof *nf);
  if (!nf) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory growing the registry", fn);
  ctx->run_factors = nf;
  ctx->cap = ncap;
  return EMA_OK;
}

/* Bytes of one member's values of t in its arena: the shadow, and with
   zero_debias the debiased average after it. */
size_t ema__member_bytes(const ema_ctx *ctx, size_t numel, ema_dtype sdtype) {
  size_t sbytes = ema__round_up(numel * ema_dtype_size(sdtype));
  if (!sbytes) sbytes = EMA_ALIGN; /* distinct, valid pointers for empty tensors */
  return ctx->zero_debias ? 2 * sbytes : sbytes;
}

/* Reserve the arena memory of a new tensor: one block per member for an
   averaged tensor (each in that member's arena), one frozen copy for KEEP,
   nothing for COPY. On failure nothing is reserved that anyone can see. */
static ema_status alloc_values(ema_ctx *ctx, const track_args *a, ema_dtype sdtype, unsigned char **vals) {
  size_t n = a->policy == EMA_POLICY_AVERAGE ? ctx->n_avg : a->policy == EMA_POLICY_KEEP ? 1 : 0;
  size_t bytes = a->policy == EMA_POLICY_AVERAGE ? ema__member_bytes(ctx, a->numel, sdtype)
                                                 : ema__round_up(a->numel * ema_dtype_size(a->dtype));
  for (size_t k = 0; k < n; k++) {
    vals[k] = ema__arena_alloc(ctx, k, bytes);
    if (!vals[k])
      return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory allocating the %s of '%s' (%zu bytes)", a->fn,
                       a->policy == EMA_POLICY_AVERAGE ? "shadow" : "frozen copy", a->name, bytes);
  }
  return EMA_OK;
}

void ema__init_member(ema_ctx *ctx, ema_tensor *t, size_t k, unsigned char *block) {
  if (t->policy == EMA_POLICY_COPY) return;
  if (t->policy == EMA_POLICY_KEEP) { /* every member shares the one frozen copy */
    t->shadow[k] = t->average[k] = t->shadow[0];
    return;
  }
  size_t half = ema__member_bytes(ctx, t->numel, t->sdtype) / (ctx->zero_debias ? 2 : 1);
  t->shadow[k] = block;
  t->average[k] = ctx->zero_debias ? block + half : block;
  t->debias_steps[k] = 0;
  t->debias_prod[k] = 1.0;
  if (ctx->zero_debias)
    memset(block, 0, 2 * half); /* +0.0 in every float format */
  else if (t->numel)
    ctx->k->to_shadow[t->pair](block, t->data, t->numel);
}

static void commit_tensor(ema_ctx *ctx, const track_args *a, char *name_copy, ema_dtype sdtype, int pair,
                          unsigned char **vals) {
  ema_tensor *t = &ctx->tensors[ctx->count];
  memset(t, 0, sizeof *t);
  t->name = name_copy;
  t->name_len = a->name_len;
  t->data = a->data;
  t->dtype = a->dtype;
  t->sdtype = sdtype;
  t->msize = (unsigned char)ema_dtype_size(a->dtype);
  t->ssize = (unsigned char)ema_dtype_size(sdtype);
  t->pair = pair;
  t->policy = a->policy;
  t->ndim = a->ndim;
  for (int i = 0; i < a->ndim; i++) t->shape[i] = a->shape[i];
  t->numel = a->numel;
  if (a->policy == EMA_POLICY_KEEP) {
    t->shadow[0] = vals[0];
    if (t->numel) memcpy(vals[0], t->data, t->numel * t->msize);
  }
  for (size_t k = 0; k < ctx->n_avg; k++) ema__init_member(ctx, t, k, vals[k]);
  if (a->policy == EMA_POLICY_AVERAGE) ctx->n_averaged++;
  index_insert(ctx->index, ctx->index_cap, name_copy, ctx->count + 1);
  ctx->count++;
}

/* Register a tensor: check everything, allocate everything, then commit. */
static ema_status track(ema_ctx *ctx, track_args *a) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  ema_status st = ema__async_settle(ctx, a->fn);
  if (st == EMA_OK) st = check_track(ctx, a);
  if (st == EMA_OK) st = grow_registry(ctx, a->fn);
  if (st != EMA_OK) return st;
  size_t *nindex = NULL, ncap_index = ctx->index_cap;
  if ((ctx->count + 1) * 2 > ctx->index_cap) {
    ncap_index = ctx->index_cap ? ctx->index_cap * 2 : 32;
    nindex = (size_t *)ema__calloc(ncap_index, sizeof *nindex);
    if (!nindex) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory growing the name index", a->fn);
  }
  char *name_copy = (char *)ema__malloc(a->name_len + 1);
  if (!name_copy) {
    free(nindex);
    return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory copying the name", a->fn);
  }
  memcpy(name_copy, a->name, a->name_len + 1);
  ema_dtype sdtype = a->dtype;
  int pair = a->policy == EMA_POLICY_AVERAGE ? shadow_pair(a->dtype, ctx->half_same, &sdtype) : -1;
  unsigned char *vals[EMA_MAX_AVERAGES] = {NULL};
  st = alloc_values(ctx, a, sdtype, vals);
  if (st != EMA_OK) {
    free(name_copy);
    free(nindex);
    return st;
  }
  if (nindex) {
    for (size_t i = 0; i < ctx->count; i++) index_insert(nindex, ncap_index, ctx->tensors[i].name, i + 1);
    free(ctx->index);
    ctx->index = nindex;
    ctx->index_cap = ncap_index;
  }
  commit_tensor(ctx, a, name_copy, sdtype, pair, vals);
  return EMA_OK;
}

ema_status ema_track(ema_ctx *ctx, const char *name, void *data, ema_dtype dtype, int ndim, const int64_t *shape) {
  track_args a = {"ema_track", name, 0, 0, data, dtype, ndim, shape, EMA_POLICY_AVERAGE};
  return track(ctx, &a);
}

ema_status ema_track_policy(ema_ctx *ctx, const char *name, void *data, ema_dtype dtype, int ndim, const int64_t *shape,
                            ema_policy policy) {
  track_args a = {"ema_track_policy", name, 0, 0, data, dtype, ndim, shape, policy};
  return track(ctx, &a);
}

const char *ema__policy_name(ema_policy p) {
  switch (p) {
    case EMA_POLICY_AVERAGE:
      return "average";
    case EMA_POLICY_COPY:
      return "copy";
    case EMA_POLICY_KEEP:
      return "keep";
  }
  return NULL;
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
  if (policy) *policy = t->policy;
  return EMA_OK;
}

/* ------------------------------------------------------------------------ */
/* Retarget, untrack                                                        */
/* ------------------------------------------------------------------------ */

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
  ema_status st = ema__async_settle(ctx, "ema_retarget");
  if (st == EMA_OK) st = refuse_busy(ctx, "ema_retarget");
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
  ema_status st = ema__async_settle(ctx, "ema_untrack");
  if (st == EMA_OK) st = refuse_busy(ctx, "ema_untrack");
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
