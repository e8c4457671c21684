/* Worker pool owned by a context (see pool.c). Internal. */
#ifndef EMA_CORE_POOL_H
#define EMA_CORE_POOL_H

#include "ema/core.h"

typedef struct ema_pool ema_pool;

/* Start nthreads - 1 workers (nthreads >= 2). EMA_E_NOMEM when memory or a
   thread cannot be had; *out is NULL then. */
ema_status ema__pool_create(ema_pool **out, int nthreads);
void ema__pool_free(ema_pool *pool); /* NULL is a no-op; joins the workers */
/* Run fn(arg, part, nparts) for every part; the caller runs part 0. */
void ema__pool_run(ema_pool *pool, void (*fn)(void *arg, int part, int nparts), void *arg);

#endif
