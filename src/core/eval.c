/*
 * src/core/eval.c: reading averages and evaluating with them: ema_average,
 * ema_bank_average, ema_average_name, ema_swap, ema_store, ema_copy_to and
 * ema_restore. AVERAGE and KEEP tensors take part; COPY tensors follow the
 * model and are left alone.
 */
#include <string.h>

#include "internal.h"
#include "run.h"

/* ------------------------------------------------------------------------ */
/* Averages                                                                 */
/* ------------------------------------------------------------------------ */

const void *ema_average(const ema_ctx *ctx, const char *name, ema_dtype *dtype) {
  if (!ctx || !name) return NULL;
  ema__async_quiesce(ctx);
  const ema_tensor *t = ema__find(ctx, name);
  if (!t || t->policy == EMA_POLICY_COPY) return NULL;
  if (dtype) *dtype = t->sdtype;
  return t->average[ctx->active];
}

const void *ema_bank_average(const ema_ctx *ctx, const char *name, size_t k, ema_dtype *dtype) {
  if (!ctx || !name || k >= ctx->n_avg) return NULL;
  ema__async_quiesce(ctx);
  const ema_tensor *t = ema__find(ctx, name);
  if (!t || t->policy == EMA_POLICY_COPY) return NULL;
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
/* Swap, store, copy_to, restore                                            */
/* ------------------------------------------------------------------------ */

static int is_mixed(int pair) { return pair == EMA_PAIR_BF16_F32 || pair == EMA_PAIR_F16_F32; }

static size_t model_bytes(const ema_tensor *t) { return t->numel * ema_dtype_size(t->dtype); }

/* Bytes needed to hold the model values of the selected averaged tensors,
   each at a 64-byte-aligned offset. mixed_only selects mixed-dtype pairs. */
static size_t side_bytes(const ema_ctx *ctx, int mixed_only) {
  size_t total = 0;
  for (size_t i = 0; i < ctx->count; i++) {
    const ema_tensor *t = &ctx->tensors[i];
    if (t->policy == EMA_POLICY_COPY || (mixed_only && !is_mixed(t->pair))) continue;
    total += ema__round_up(model_bytes(t));
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
  ema_status ast = ema__async_settle(ctx, "ema_swap");
  if (ast != EMA_OK) return ast;
  if (!ctx->swapped) {
    ema_status st = ensure_buffer(ctx, &ctx->swap_buf, &ctx->swap_cap, side_bytes(ctx, 1), "ema_swap");
    if (st != EMA_OK) return st;
  }
  size_t off = 0, n = 0;
  for (size_t i = 0; i < ctx->count; i++) {
    ema_tensor *t = &ctx->tensors[i];
    if (t->policy == EMA_POLICY_COPY) continue;
    if (is_mixed(t->pair)) {
      add_item(ctx, t, ctx->swapped ? EMA_OP_SIDE_TO_MODEL : EMA_OP_SWAP_IN_MIXED, ctx->swap_buf + off, &n);
      off += ema__round_up(model_bytes(t));
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
  ema_status ast = ema__async_settle(ctx, "ema_store");
  if (ast != EMA_OK) return ast;
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
    if (t->policy == EMA_POLICY_COPY) continue;
    add_item(ctx, t, EMA_OP_MODEL_TO_SIDE, ctx->store_buf + off, &n);
    off += ema__round_up(model_bytes(t));
  }
  ema__run(ctx, ctx->run_items, n);
  ctx->stored = 1;
  return EMA_OK;
}

ema_status ema_copy_to(ema_ctx *ctx) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  ema_status ast = ema__async_settle(ctx, "ema_copy_to");
  if (ast != EMA_OK) return ast;
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "ema_copy_to: the model holds the averages (swapped); call ema_swap() first");
  size_t n = 0;
  for (size_t i = 0; i < ctx->count; i++) {
    ema_tensor *t = &ctx->tensors[i];
    if (t->policy == EMA_POLICY_AVERAGE)
      add_item(ctx, t, EMA_OP_COPY_TO, NULL, &n);
    else if (t->policy == EMA_POLICY_KEEP) /* the frozen copy is in the model dtype: a plain copy */
      add_item(ctx, t, EMA_OP_SIDE_TO_MODEL, (unsigned char *)t->average[ctx->active], &n);
  }
  ema__run(ctx, ctx->run_items, n);
  return EMA_OK;
}

ema_status ema_restore(ema_ctx *ctx) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  ema_status ast = ema__async_settle(ctx, "ema_restore");
  if (ast != EMA_OK) return ast;
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "ema_restore: the context is swapped; call ema_swap() to swap back instead");
  if (!ctx->stored) return ema__fail(ctx, EMA_E_STATE, "ema_restore: nothing is stored; call ema_store() first");
  size_t off = 0, n = 0;
  for (size_t i = 0; i < ctx->count; i++) {
    ema_tensor *t = &ctx->tensors[i];
    if (t->policy == EMA_POLICY_COPY) continue;
    add_item(ctx, t, EMA_OP_SIDE_TO_MODEL, ctx->store_buf + off, &n);
    off += ema__round_up(model_bytes(t));
  }
  ema__run(ctx, ctx->run_items, n);
  ctx->stored = 0;
  return EMA_OK;
}
