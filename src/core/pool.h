/* Worker pool owned by a context (see pool.c). Internal. */
#ifndef EMA_CORE_POOL_H
#define EMA_CORE_POOL_H

#include <stddef.h>

#include "ema/core.h"

typedef struct ema_pool ema_pool;

/* Start nthreads - 1 workers (nthreads >= 2). EMA_E_NOMEM when memory or a
   thread cannot be had; *out is NULL then. */
ema_status ema__pool_create(ema_pool **out, int nthreads);
void ema__pool_free(ema_pool *pool); /* NULL is a no-op; joins the workers */

/* Run fn(arg, c) once for every chunk c in [0, nchunks) (nchunks < 2^32):
   the caller and the workers claim chunks one at a time from a shared
   counter until none is left, so a thread that is slowed (preempted by
   another process, say) delays only the chunk it holds. Returns when every
   chunk is done. Which thread runs which chunk, and in what order, varies
   from run to run: fn must give the same result whatever the order. Not
   reentrant: one run at a time per pool (the context's rule). */
void ema__pool_run(ema_pool *pool, size_t nchunks, void (*fn)(void *arg, size_t chunk), void *arg);

#endif
