/*
 * src/core/ctx.c: the context itself: version, status and dtype tables,
 * create (options) and free, errors, the options that may also be changed
 * later (zero_debias, half shadows, name) and threads. The rest of the
 * context lives by job in registry.c, decay.c, update.c, eval.c and bank.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "pool.h"
#include "run.h"

/* ------------------------------------------------------------------------ */
/* Version, statuses, dtypes                                                */
/* ------------------------------------------------------------------------ */

unsigned ema_version_number(void) { return EMA_VERSION_NUMBER; }
const char *ema_version_string(void) { return EMA_VERSION_STRING; }

#define EMA__STATUS_TEXT(name, value, text) \
  case name:                                \
    return text;
const char *ema_status_string(ema_status s) {
  switch (s) { EMA_STATUS_MAP(EMA__STATUS_TEXT) }
  return "unknown status";
}

#define EMA__STATUS_NAME(name, value, text) \
  case name:                                \
    return #name;
const char *ema_status_name(ema_status s) {
  switch (s) { EMA_STATUS_MAP(EMA__STATUS_NAME) }
  return NULL;
}

size_t ema_dtype_size(ema_dtype d) {
  switch (d) {
    case EMA_F32:
      return 4;
    case EMA_F64:
      return 8;
    case EMA_F16:
      return 2;
    case EMA_BF16:
      return 2;
    case EMA_I32:
      return 4;
    case EMA_I64:
      return 8;
  }
  return 0;
}

const char *ema_dtype_name(ema_dtype d) {
  switch (d) {
    case EMA_F32:
      return "f32";
    case EMA_F64:
      return "f64";
    case EMA_F16:
      return "f16";
    case EMA_BF16:
      return "bf16";
    case EMA_I32:
      return "i32";
    case EMA_I64:
      return "i64";
  }
  return "?";
}

int ema__is_float_dtype(ema_dtype d) { return d == EMA_F32 || d == EMA_F64 || d == EMA_F16 || d == EMA_BF16; }

const char *ema_isa(void) { return ema_kernels_best()->name; }

/* ------------------------------------------------------------------------ */
/* Create, free, errors                                                     */
/* ------------------------------------------------------------------------ */

void ema_options_init(ema_options *o) {
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->decay = 0.9999;
}

/* NULL when opts can create a context, else what is wrong. */
static const char *options_problem(const ema_options *o) {
  if (!ema__decay_ok(o->decay)) return "decay must be in [0, 1]";
  for (size_t i = 0; i < sizeof o->reserved / sizeof o->reserved[0]; i++)
    if (o->reserved[i] != 0) return "a reserved field is not 0 (start from ema_options_init)";
  if (o->name) {
    size_t n = strlen(o->name);
    if (n == 0 || n > EMA_MAX_EMA_NAME || !ema__valid_utf8(o->name, n)) return "name must be 1 to 255 bytes of UTF-8";
  }
  return NULL;
}

ema_status ema_create_with(ema_ctx **out, const ema_options *opts) {
  if (out) *out = NULL;
  if (!out || !opts || options_problem(opts)) return EMA_E_INVALID_ARG;
  ema_ctx *ctx = (ema_ctx *)ema__calloc(1, sizeof *ctx);
  if (!ctx) return EMA_E_NOMEM;
  ema_schedule_init(&ctx->avg[0].sched, EMA_SCHEDULE_CONSTANT);
  ctx->avg[0].sched.decay = opts->decay;
  const char *name = opts->name ? opts->name : EMA__DEFAULT_NAME;
  memcpy(ctx->avg[0].name, name, strlen(name) + 1);
  ctx->n_avg = 1;
  ctx->num_updates = -1;
  ctx->zero_debias = opts->zero_debias ? 1 : 0;
  ctx->half_same = opts->same_dtype_half_shadows ? 1 : 0;
  ctx->k = ema_kernels_best();
  ctx->threads = ema__default_threads();
  ctx->parallel_min = ema__parallel_min_default();
  *out = ctx;
  return EMA_OK;
}

ema_status ema_create(ema_ctx **out, double decay) {
  ema_options o;
  ema_options_init(&o);
  o.decay = decay;
  return ema_create_with(out, &o);
}

void ema_free(ema_ctx *ctx) {
  if (!ctx) return;
  ema__async_free(ctx); /* waits for an update in flight */
  ema__pool_free(ctx->pool);
  free(ctx->run_items);
  free(ctx->run_factors);
  ema__registry_free(ctx);
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
/* Options that may change later                                            */
/* ------------------------------------------------------------------------ */

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

ema_status ema_set_half_shadows(ema_ctx *ctx, int same_dtype) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  ctx->half_same = same_dtype ? 1 : 0;
  return EMA_OK;
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                  */
/* ------------------------------------------------------------------------ */

ema_status ema_set_threads(ema_ctx *ctx, int n) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (n < 0 || n > EMA_MAX_THREADS)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_set_threads: %d threads asked; use 0 (default) or 1 to %d", n,
                     EMA_MAX_THREADS);
  ema_status ast = ema__async_settle(ctx, "ema_set_threads");
  if (ast != EMA_OK) return ast;
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
