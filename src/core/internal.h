/*
 * Internal view of the context, shared by src/core and src/io (checkpoints).
 * Nothing here is part of the public API.
 */
#ifndef EMA_CORE_INTERNAL_H
#define EMA_CORE_INTERNAL_H

#include "common/alloc.h"
#include "common/err.h"
#include "common/utf8.h"
#include "ema/core.h"
#include "kernels/kernels.h"

#include <stdarg.h>

#define EMA_MAX_EMA_NAME 255
/* Name of member 0 unless ema_set_name or the options give another. */
#define EMA__DEFAULT_NAME "ExponentialMovingAverage"
#define EMA_ERR_CAP 512

/* One registered tensor. Shadows live in the arena; data is the caller's. */
typedef struct ema_tensor {
  /* hot: read by every update, first so that they share a cache line */
  void *data; /* borrowed */
  size_t numel;
  int pair;                   /* ema_pair, or -1 for EMA_POLICY_COPY and EMA_POLICY_KEEP */
  ema_dtype dtype;            /* model dtype */
  ema_dtype sdtype;           /* shadow dtype (== dtype for COPY and KEEP) */
  unsigned char msize, ssize; /* bytes per element of the model and of the shadow */
  int mark;                   /* scratch flag for ema_apply_some validation */
  ema_policy policy;          /* AVERAGE, COPY (no shadow, no average) or KEEP (see below) */
  /* per member k of the bank (EMA_MAX_AVERAGES, ctx->n_avg used); for KEEP,
     shadow[k] == average[k] == one frozen copy in the model dtype (in
     member 0's arena), shared by every member; NULL for COPY: */
  void *shadow[EMA_MAX_AVERAGES];         /* s, or the biased accumulator with zero_debias; arena */
  void *average[EMA_MAX_AVERAGES];        /* == shadow, or the debiased average with zero_debias; arena */
  int64_t debias_steps[EMA_MAX_AVERAGES]; /* k of TensorFlow's zero_debias */
  double debias_prod[EMA_MAX_AVERAGES];   /* prod of the decays so far (exact zero-debias) */
  /* cold */
  char *name;
  size_t name_len;
  int ndim;
  int64_t shape[EMA_MAX_DIMS];
  struct ema_shard *shard; /* src/dist: box of a global tensor (one malloc); NULL when unsharded */
} ema_tensor;

typedef struct ema_block ema_block;
typedef struct ema_pool ema_pool;
struct ema_run_item;

/* One average of the bank. Average 0 is the context's own. */
typedef struct ema_avg {
  char name[EMA_MAX_EMA_NAME + 1];
  ema_schedule sched; /* sched.decay is the decay of ema_apply for this average */
} ema_avg;

struct ema_ctx {
  ema_avg avg[EMA_MAX_AVERAGES];
  size_t n_avg;
  size_t active;       /* average used by swap, copy_to, ema_average */
  int64_t last_step;   /* step of the last ema_update, 0 before any */
  int64_t num_updates; /* < 0: off */
  int zero_debias;
  int half_same; /* same-dtype shadows for f16/bf16 tensors tracked from now on */

  ema_tensor *tensors;
  size_t count, cap;
  size_t *index; /* open addressing: tensor index + 1, 0 = empty */
  size_t index_cap;
  size_t n_averaged;

  /* One arena per average of the bank, so that each average's shadows are
     contiguous across tensors, as in a context of its own. Blocks never
     move once allocated. */
  ema_block *blocks[EMA_MAX_AVERAGES];
  size_t arena_total[EMA_MAX_AVERAGES];

  int swapped;
  int stored;
  unsigned char *store_buf; /* ema_store copy of model values */
  size_t store_cap;
  unsigned char *swap_buf; /* model values of mixed-dtype tensors while swapped */
  size_t swap_cap;

  const ema_kernels *k;
  int threads;                                        /* threads an apply may use, the caller included */
  ema_pool *pool;                                     /* started on the first large run */
  int pool_failed;                                    /* the pool could not be started: run on one thread */
  size_t parallel_min;                                /* runs moving fewer bytes stay on the calling thread */
  struct ema_run_item *run_items;                     /* scratch, cap entries */
  ema_coef *run_factors;                              /* scratch, cap * EMA_MAX_AVERAGES zero-debias divisors */
  ema_coef coef_om[EMA_PAIR_COUNT][EMA_MAX_AVERAGES]; /* 1 - d of the current update, per pair */
  struct ema_async *async;                            /* async.c: staging, driver thread; NULL until used */
  char err[EMA_ERR_CAP];
};

/* Errors: set the context's message (printf-style) and return s. The message
   buffer is logically mutable even through a const context. */
ema_status ema__fail(const ema_ctx *ctx, ema_status s, const char *fmt, ...) EMA__PRINTF(3, 4);
void ema__clear_error(const ema_ctx *ctx);

/* Lookup by name; NULL when absent. */
ema_tensor *ema__find(const ema_ctx *ctx, const char *name);

/* TensorFlow's effective decay of average k for ema_apply, in float32. */
float ema__effective_decay_f32(const ema_ctx *ctx, size_t k);
/* 1 - d as a coefficient of the pair's shadow precision: from TensorFlow's
   float32 decay (ema_apply) or from a float64 decay (ema_update). */
ema_coef ema__coef_from_f32_om(float om, int pair);
ema_coef ema__coef_from_f64(double x, int pair);
/* Name of the schedule kind in checkpoints ("constant", ...); NULL if bad. */
const char *ema__schedule_name(ema_schedule_kind kind);
int ema__schedule_from_name(const char *name, ema_schedule_kind *kind);
const char *ema__schedule_problem(const ema_schedule *s); /* NULL when valid */
double ema__schedule_gamma(const ema_schedule *s);        /* power-function gamma */

/* Reserve bytes (a multiple of EMA_ALIGN; 0 gives EMA_ALIGN) in member a's
   arena; NULL when memory runs out. Blocks never move. */
unsigned char *ema__arena_alloc(ema_ctx *ctx, size_t a, size_t bytes);
/* Free every block of every arena (ema_free). */
void ema__arena_free(ema_ctx *ctx);
/* Arena bytes of one member's values of an averaged tensor: its shadow and,
   with zero_debias, the debiased average after it; each 64-byte aligned. */
size_t ema__member_bytes(const ema_ctx *ctx, size_t numel, ema_dtype sdtype);

/* Name of a policy in checkpoints ("average", "copy", "keep"); NULL if bad. */
const char *ema__policy_name(ema_policy p);
/* Point member k of tensor t at its values: block (member_bytes, in member
   k's arena) for an averaged tensor, initialised from the model (0 with
   zero_debias) with fresh debias counters; the shared frozen copy for KEEP
   (block unused); nothing for COPY. */
void ema__init_member(ema_ctx *ctx, ema_tensor *t, size_t k, unsigned char *block);

/* n rounded up to a multiple of EMA_ALIGN. */
static inline size_t ema__round_up(size_t n) { return (n + EMA_ALIGN - 1) / EMA_ALIGN * EMA_ALIGN; }
/* A decay in [0, 1] (false for NaN). */
static inline int ema__decay_ok(double d) { return d >= 0.0 && d <= 1.0; }
/* A power-function exponent usable for a weight profile: finite and > -1. */
int ema__gamma_ok(double g);
/* Free the registry's memory (names, tensors, index, arenas); ema_free. */
void ema__registry_free(ema_ctx *ctx);

/* Asynchronous updates (async.c). settle: wait for the update in flight and
   collect its failure (then set as ctx's message, naming fn); every call
   that observes or changes the averages starts with it. quiesce: only wait
   (the failure stays for the next call); for calls that return no status. */
ema_status ema__async_settle(const ema_ctx *ctx, const char *fn);
void ema__async_quiesce(const ema_ctx *ctx);
void ema__async_free(ema_ctx *ctx); /* ema_free: wait, stop the thread, free staging */
/* The synchronous updates without their run (update.c): validate, advance
   the debias counters (and last_step), build *n items in ctx->run_items. */
ema_status ema__apply_begin(ema_ctx *ctx, const char *fn, size_t *n);
ema_status ema__update_begin(ema_ctx *ctx, int64_t step, const char *fn, size_t *n);

/* Checks shared by track and load (UTF-8: common/utf8.h). */
int ema__is_float_dtype(ema_dtype d);

#endif
