/* One pass over a list of tensors, cut into chunks by bytes moved that the
   caller and the workers claim dynamically (run.c, pool.c). */
#ifndef EMA_CORE_RUN_H
#define EMA_CORE_RUN_H

#include "internal.h"

typedef enum ema_op {
  EMA_OP_UPDATE,        /* shadow update (+ zero-debias read-out) */
  EMA_OP_SWAP,          /* exchange model and average bytes (same dtype) */
  EMA_OP_SWAP_IN_MIXED, /* model -> side buffer, average -> model (rounded) */
  EMA_OP_COPY_TO,       /* average -> model (rounded) */
  EMA_OP_MODEL_TO_SIDE, /* model -> side buffer */
  EMA_OP_SIDE_TO_MODEL  /* side buffer -> model */
} ema_op;

typedef struct ema_run_item {
  ema_tensor *t;
  int op;
  int debias;
  int n_avg;              /* EMA_OP_UPDATE: averages to update (0..n_avg-1) */
  unsigned copy_mask;     /* EMA_OP_UPDATE: averages whose decay is 0: copy the model */
  int k;                  /* other ops: the average they use */
  const ema_coef *om;     /* EMA_OP_UPDATE: 1 - d per average (a row of ctx->coef_om) */
  const ema_coef *factor; /* EMA_OP_UPDATE with debias: divisor per average */
  unsigned char *side;    /* side buffer of this tensor (model dtype), or NULL */
  size_t begin;           /* filled by ema__run: cost offset of the item */
  size_t cost;            /* filled by ema__run: bytes moved per element */
} ema_run_item;

/* Run the items (n may be 0). ctx->run_items is a scratch array of
   ctx->count entries the caller may use for items. */
void ema__run(ema_ctx *ctx, ema_run_item *items, size_t n);
int ema__default_threads(void);
size_t ema__parallel_min_default(void); /* bytes; tests may lower ctx->parallel_min */

#endif
