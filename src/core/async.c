/*
 * src/core/async.c: asynchronous updates (ema_apply_async, ema_update_async,
 * ema_wait) from staging buffers owned by the context.
 *
 * A call waits for the previous asynchronous update, lays out the staging
 * buffers (one block, a 64-byte-aligned slice per averaged tensor, from the
 * caller's allocator or ours), builds the same run items as the synchronous
 * update (update.c: same coefficients, same debias counters), copies the
 * parameters into staging with ema__run on the calling thread (the pool
 * helps) unless the caller filled staging, points the items at copies of
 * the tensors whose data is the staging slice, and hands them to one driver
 * thread per context, which runs ema__run in the caller's place (with the
 * pool's workers) and returns. The kernels and the chunking are the
 * synchronous ones, so the averages are bit-identical.
 *
 * Ownership between the two threads: while a job is in flight the driver
 * reads ctx->run_items, ctx->run_factors, ctx->coef_om, the views and the
 * staging, writes the shadows and may start ctx->pool. Every call that
 * touches any of these (or the averages) first waits (ema__async_settle or
 * ema__async_quiesce), and the hand-over goes through the mutex, so the
 * two never overlap. The driver never writes ctx->err: its message goes to
 * a->err and is copied by whoever collects the status.
 *
 * The only failure inside a job is the caller's ready callback returning
 * non-zero (the staging was not filled). The averages are then untouched;
 * the debias counters and last step that the call advanced are put back
 * when the failure is collected, so nothing of that update remains.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "run.h"

typedef struct ema_async ema_async;
struct ema_async {
  ema_ctx *ctx;
  pthread_t thread;
  int started; /* the driver runs (caller-side field) */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  /* under mu */
  int posted, busy, quit;
  size_t n; /* run items of the job (ctx->run_items) */
  ema_ready_fn ready;
  void *ready_user;
  ema_status status; /* of the last job, until collected */
  char err[EMA_ERR_CAP];
  /* caller side */
  const char *what; /* function that started the job */
  ema_staging_alloc_fn alloc;
  ema_staging_free_fn release;
  void *user;
  unsigned char *stage;
  size_t stage_cap;
  size_t meta_cap;     /* entries of the arrays below */
  size_t *offset;      /* per tensor: staging offset (averaged tensors) */
  ema_tensor *views;   /* per tensor: copy whose data is its staging slice */
  ema_run_item *items; /* the capture */
  int64_t *undo_steps; /* per tensor and member: debias counters before the job */
  double *undo_prod;
  int64_t undo_last_step;
};

/* ---- the driver thread ------------------------------------------------------------ */

static void *driver_main(void *arg) {
  ema_async *a = (ema_async *)arg;
  pthread_mutex_lock(&a->mu);
  for (;;) {
    while (!a->posted && !a->quit) pthread_cond_wait(&a->cv, &a->mu);
    if (!a->posted) break;
    a->posted = 0;
    size_t n = a->n;
    ema_ready_fn ready = a->ready;
    void *user = a->ready_user;
    pthread_mutex_unlock(&a->mu);
    ema_status st = EMA_OK;
    char err[EMA_ERR_CAP] = "";
    int r = ready ? ready(user) : 0;
    if (r != 0) {
      st = EMA_E_IO;
      snprintf(err, sizeof err, "the staging-ready callback returned %d", r);
    } else {
      ema__run(a->ctx, a->ctx->run_items, n);
    }
    pthread_mutex_lock(&a->mu);
    a->status = st;
    memcpy(a->err, err, sizeof err);
    a->busy = 0;
    pthread_cond_broadcast(&a->cv);
  }
  pthread_mutex_unlock(&a->mu);
  return NULL;
}

/* Wait for the job in flight; return its status (clearing it when take). */
static ema_status wait_job(ema_async *a, int take, char *err, size_t cap) {
  pthread_mutex_lock(&a->mu);
  while (a->busy) pthread_cond_wait(&a->cv, &a->mu);
  ema_status st = a->status;
  if (st != EMA_OK && err) snprintf(err, cap, "%s", a->err);
  if (take) a->status = EMA_OK;
  pthread_mutex_unlock(&a->mu);
  return st;
}

static int on_driver(const ema_async *a) { return a->started && pthread_equal(pthread_self(), a->thread); }

static void rollback(ema_ctx *ctx, ema_async *a) {
  for (size_t i = 0; i < ctx->count && i < a->meta_cap; i++) {
    memcpy(ctx->tensors[i].debias_steps, a->undo_steps + i * EMA_MAX_AVERAGES, sizeof ctx->tensors[i].debias_steps);
    memcpy(ctx->tensors[i].debias_prod, a->undo_prod + i * EMA_MAX_AVERAGES, sizeof ctx->tensors[i].debias_prod);
  }
  ctx->last_step = a->undo_last_step;
}

ema_status ema__async_settle(const ema_ctx *cctx, const char *fn) {
  ema_ctx *ctx = (ema_ctx *)cctx; /* the job is logically part of the call */
  ema_async *a = ctx->async;
  if (!a || !a->started) return EMA_OK;
  if (on_driver(a)) return EMA_E_STATE; /* from the ready callback: no message (ctx->err is the caller's) */
  char err[EMA_ERR_CAP];
  ema_status st = wait_job(a, 1, err, sizeof err);
  if (st == EMA_OK) return EMA_OK;
  rollback(ctx, a);
  return ema__fail(ctx, st, "%s: the asynchronous update started by %s failed (%s); it was not applied", fn, a->what,
                   err);
}

void ema__async_quiesce(const ema_ctx *ctx) {
  ema_async *a = ctx->async;
  if (a && a->started && !on_driver(a)) (void)wait_job(a, 0, NULL, 0);
}

void ema__async_free(ema_ctx *ctx) {
  ema_async *a = ctx->async;
  if (!a) return;
  if (a->started) {
    (void)wait_job(a, 0, NULL, 0);
    pthread_mutex_lock(&a->mu);
    a->quit = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
  }
  if (a->stage) {
    if (a->release)
      a->release(a->user, a->stage);
    else
      ema__aligned_free(a->stage);
  }
  free(a->offset);
  free(a->views);
  free(a->items);
  free(a->undo_steps);
  free(a->undo_prod);
  pthread_cond_destroy(&a->cv);
  pthread_mutex_destroy(&a->mu);
  free(a);
  ctx->async = NULL;
}

/* ---- resources ---------------------------------------------------------------------- */

static ema_status ensure_state(ema_ctx *ctx, const char *fn) {
  if (ctx->async) return EMA_OK;
  ema_async *a = (ema_async *)ema__calloc(1, sizeof *a);
  if (!a) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
  if (pthread_mutex_init(&a->mu, NULL) != 0) {
    free(a);
    return ema__fail(ctx, EMA_E_NOMEM, "%s: could not create a mutex", fn);
  }
  if (pthread_cond_init(&a->cv, NULL) != 0) {
    pthread_mutex_destroy(&a->mu);
    free(a);
    return ema__fail(ctx, EMA_E_NOMEM, "%s: could not create a condition variable", fn);
  }
  a->ctx = ctx;
  ctx->async = a;
  return EMA_OK;
}

/* Per-tensor arrays for ctx->count tensors; on failure the old ones stay. */
static ema_status ensure_meta(ema_ctx *ctx, ema_async *a, const char *fn) {
  size_t n = ctx->count;
  if (n <= a->meta_cap && a->offset) return EMA_OK;
  size_t cap = n < 8 ? 8 : n * 2;
  size_t *off = (size_t *)ema__calloc(cap, sizeof *off);
  ema_tensor *views = (ema_tensor *)ema__calloc(cap, sizeof *views);
  ema_run_item *items = (ema_run_item *)ema__calloc(cap, sizeof *items);
  int64_t *steps = (int64_t *)ema__calloc(cap * EMA_MAX_AVERAGES, sizeof *steps);
  double *prod = (double *)ema__calloc(cap * EMA_MAX_AVERAGES, sizeof *prod);
  if (!off || !views || !items || !steps || !prod) {
    free(off);
    free(views);
    free(items);
    free(steps);
    free(prod);
    return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory for the staging tables of %zu tensors", fn, n);
  }
  free(a->offset);
  free(a->views);
  free(a->items);
  free(a->undo_steps);
  free(a->undo_prod);
  a->offset = off;
  a->views = views;
  a->items = items;
  a->undo_steps = steps;
  a->undo_prod = prod;
  a->meta_cap = cap;
  return EMA_OK;
}

/* Staging for every averaged tensor, laid out in registration order. The
   block is reused while it is large enough, so the slices of tensors that
   did not change keep their addresses. */
static ema_status ensure_staging(ema_ctx *ctx, const char *fn) {
  ema_status st = ensure_state(ctx, fn);
  if (st != EMA_OK) return st;
  ema_async *a = ctx->async;
  st = ensure_meta(ctx, a, fn);
  if (st != EMA_OK) return st;
  size_t need = 0;
  for (size_t i = 0; i < ctx->count; i++) {
    const ema_tensor *t = &ctx->tensors[i];
    if (t->pair >= 0) need += ema__round_up(t->numel * t->msize);
  }
  if (!a->stage || need > a->stage_cap) {
    size_t bytes = need ? need : EMA_ALIGN;
    unsigned char *b = (unsigned char *)(a->alloc ? a->alloc(a->user, bytes) : ema__aligned_alloc(bytes));
    if (!b) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory allocating %zu bytes of staging", fn, bytes);
    if (a->stage) {
      if (a->release)
        a->release(a->user, a->stage);
      else
        ema__aligned_free(a->stage);
    }
    a->stage = b;
    a->stage_cap = bytes;
  }
  size_t off = 0;
  for (size_t i = 0; i < ctx->count; i++) {
    const ema_tensor *t = &ctx->tensors[i];
    a->offset[i] = off;
    if (t->pair >= 0) off += ema__round_up(t->numel * t->msize);
  }
  return EMA_OK;
}

static ema_status ensure_driver(ema_ctx *ctx, const char *fn) {
  ema_async *a = ctx->async;
  if (a->started) return EMA_OK;
  if (pthread_create(&a->thread, NULL, driver_main, a) != 0)
    return ema__fail(ctx, EMA_E_NOMEM, "%s: could not start the update thread", fn);
  a->started = 1;
  return EMA_OK;
}

/* ---- starting an update ---------------------------------------------------------------- */

static void capture(ema_ctx *ctx, ema_async *a) {
  size_t m = 0;
  for (size_t i = 0; i < ctx->count; i++) {
    ema_tensor *t = &ctx->tensors[i];
    if (t->pair < 0) continue;
    ema_run_item *it = &a->items[m++];
    memset(it, 0, sizeof *it);
    it->t = t;
    it->op = EMA_OP_MODEL_TO_SIDE;
    it->side = a->stage + a->offset[i];
  }
  ema__run(ctx, a->items, m);
}

static ema_status start(ema_ctx *ctx, const char *fn, int stepped, int64_t step, int staged, ema_ready_fn ready,
                        void *user) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  ema_status st = ema__async_settle(ctx, fn);
  if (st != EMA_OK) return st;
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "%s: the model holds the averages (swapped); call ema_swap() to swap back first",
                     fn);
  if ((st = ensure_staging(ctx, fn)) != EMA_OK || (st = ensure_driver(ctx, fn)) != EMA_OK) return st;
  ema_async *a = ctx->async;
  for (size_t i = 0; i < ctx->count; i++) {
    memcpy(a->undo_steps + i * EMA_MAX_AVERAGES, ctx->tensors[i].debias_steps, sizeof ctx->tensors[i].debias_steps);
    memcpy(a->undo_prod + i * EMA_MAX_AVERAGES, ctx->tensors[i].debias_prod, sizeof ctx->tensors[i].debias_prod);
  }
  a->undo_last_step = ctx->last_step;
  size_t n = 0;
  st = stepped ? ema__update_begin(ctx, step, fn, &n) : ema__apply_begin(ctx, fn, &n);
  if (st != EMA_OK) return st; /* nothing changed */
  if (!staged) capture(ctx, a);
  for (size_t j = 0; j < n; j++) {
    ema_run_item *it = &ctx->run_items[j];
    size_t i = (size_t)(it->t - ctx->tensors);
    a->views[i] = *it->t;
    a->views[i].data = a->stage + a->offset[i];
    it->t = &a->views[i];
  }
  a->what = fn;
  pthread_mutex_lock(&a->mu);
  a->n = n;
  a->ready = staged ? ready : NULL;
  a->ready_user = user;
  a->posted = 1;
  a->busy = 1;
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
  return EMA_OK;
}

ema_status ema_apply_async(ema_ctx *ctx) { return start(ctx, "ema_apply_async", 0, 0, 0, NULL, NULL); }

ema_status ema_update_async(ema_ctx *ctx, int64_t step) {
  return start(ctx, "ema_update_async", 1, step, 0, NULL, NULL);
}

ema_status ema_apply_async_staged(ema_ctx *ctx, ema_ready_fn ready, void *user) {
  return start(ctx, "ema_apply_async_staged", 0, 0, 1, ready, user);
}

ema_status ema_update_async_staged(ema_ctx *ctx, int64_t step, ema_ready_fn ready, void *user) {
  return start(ctx, "ema_update_async_staged", 1, step, 1, ready, user);
}

ema_status ema_wait(ema_ctx *ctx) {
  if (!ctx) return EMA_E_INVALID_ARG;
  if (ctx->async && on_driver(ctx->async)) return EMA_E_STATE;
  ema__clear_error(ctx);
  return ema__async_settle(ctx, "ema_wait");
}

/* ---- staging for the caller ------------------------------------------------------------ */

static ema_status staging_of(ema_ctx *ctx, size_t i, void **ptr, const char *fn) {
  const ema_tensor *t = &ctx->tensors[i];
  if (t->pair < 0)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: '%s' has policy %s, which is not averaged and has no staging", fn,
                     t->name, ema__policy_name(t->policy));
  ema_status st = ensure_staging(ctx, fn);
  if (st != EMA_OK) return st;
  *ptr = ctx->async->stage + ctx->async->offset[i];
  return EMA_OK;
}

ema_status ema_staging(ema_ctx *ctx, const char *name, void **ptr) {
  static const char *fn = "ema_staging";
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!name || !ptr) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: name and ptr must not be NULL", fn);
  ema_status st = ema__async_settle(ctx, fn);
  if (st != EMA_OK) return st;
  const ema_tensor *t = ema__find(ctx, name);
  if (!t) return ema__fail(ctx, EMA_E_NOT_FOUND, "%s: no tensor named '%s' is tracked", fn, name);
  return staging_of(ctx, (size_t)(t - ctx->tensors), ptr, fn);
}

ema_status ema_staging_at(ema_ctx *ctx, size_t i, void **ptr) {
  static const char *fn = "ema_staging_at";
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!ptr) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: ptr is NULL", fn);
  ema_status st = ema__async_settle(ctx, fn);
  if (st != EMA_OK) return st;
  if (i >= ctx->count)
    return ema__fail(ctx, EMA_E_NOT_FOUND, "%s: index %zu is out of range (%zu tensors)", fn, i, ctx->count);
  return staging_of(ctx, i, ptr, fn);
}

ema_status ema_set_staging_allocator(ema_ctx *ctx, ema_staging_alloc_fn alloc, ema_staging_free_fn release,
                                     void *user) {
  static const char *fn = "ema_set_staging_allocator";
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!alloc != !release)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: give both alloc and free, or neither (the default)", fn);
  ema_status st = ema__async_settle(ctx, fn);
  if (st == EMA_OK) st = ensure_state(ctx, fn);
  if (st != EMA_OK) return st;
  ema_async *a = ctx->async;
  if (a->stage) {
    if (a->release)
      a->release(a->user, a->stage);
    else
      ema__aligned_free(a->stage);
  }
  a->stage = NULL;
  a->stage_cap = 0;
  a->alloc = alloc;
  a->release = release;
  a->user = user;
  return EMA_OK;
}
