/*
 * A persistent worker pool owned by one context.
 *
 * ema__pool_run(fn, arg) runs fn(arg, part, nparts) for every part in
 * [0, nparts): the calling thread takes part 0 and the workers the others,
 * then it waits for all of them. Workers sleep on a condition variable
 * between runs, so an idle pool costs nothing inside a busy process (a
 * PyTorch trainer with its own OpenMP threads, say). One run is one
 * fork/join, whatever the number of tensors.
 */
#include "pool.h"

#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

struct ema_pool {
  int nthreads; /* including the caller */
  pthread_t *threads;
  pthread_mutex_t mu;
  pthread_cond_t wake, done;
  unsigned long generation;
  int pending; /* workers still running the current generation */
  int quit;
  void (*fn)(void *, int, int);
  void *arg;
};

typedef struct worker_arg {
  ema_pool *pool;
  int part;
} worker_arg;

static void *worker_main(void *p) {
  worker_arg *wa = (worker_arg *)p;
  ema_pool *pool = wa->pool;
  int part = wa->part;
  free(wa);
  unsigned long seen = 0;
  pthread_mutex_lock(&pool->mu);
  for (;;) {
    while (!pool->quit && pool->generation == seen) pthread_cond_wait(&pool->wake, &pool->mu);
    if (pool->quit) break;
    seen = pool->generation;
    void (*fn)(void *, int, int) = pool->fn;
    void *arg = pool->arg;
    pthread_mutex_unlock(&pool->mu);
    fn(arg, part, pool->nthreads);
    pthread_mutex_lock(&pool->mu);
    if (--pool->pending == 0) pthread_cond_signal(&pool->done);
  }
  pthread_mutex_unlock(&pool->mu);
  return NULL;
}

void ema__pool_free(ema_pool *pool) {
  if (!pool) return;
  pthread_mutex_lock(&pool->mu);
  pool->quit = 1;
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->mu);
  for (int i = 0; i < pool->nthreads - 1; i++) pthread_join(pool->threads[i], NULL);
  pthread_cond_destroy(&pool->wake);
  pthread_cond_destroy(&pool->done);
  pthread_mutex_destroy(&pool->mu);
  free(pool->threads);
  free(pool);
}

ema_status ema__pool_create(ema_pool **out, int nthreads) {
  *out = NULL;
  if (nthreads < 2) return EMA_E_INVALID_ARG;
  ema_pool *pool = (ema_pool *)ema__calloc(1, sizeof *pool);
  if (!pool) return EMA_E_NOMEM;
  pool->threads = (pthread_t *)ema__calloc((size_t)(nthreads - 1), sizeof *pool->threads);
  if (!pool->threads) {
    free(pool);
    return EMA_E_NOMEM;
  }
  if (pthread_mutex_init(&pool->mu, NULL) != 0) goto fail_mu;
  if (pthread_cond_init(&pool->wake, NULL) != 0) goto fail_wake;
  if (pthread_cond_init(&pool->done, NULL) != 0) goto fail_done;
  pool->nthreads = 1;
  for (int i = 1; i < nthreads; i++) {
    worker_arg *wa = (worker_arg *)ema__malloc(sizeof *wa);
    if (!wa) {
      ema__pool_free(pool);
      return EMA_E_NOMEM;
    }
    wa->pool = pool;
    wa->part = i;
    if (pthread_create(&pool->threads[i - 1], NULL, worker_main, wa) != 0) {
      free(wa);
      ema__pool_free(pool);
      return EMA_E_NOMEM;
    }
    pool->nthreads = i + 1;
  }
  *out = pool;
  return EMA_OK;
fail_done:
  pthread_cond_destroy(&pool->wake);
fail_wake:
  pthread_mutex_destroy(&pool->mu);
fail_mu:
  free(pool->threads);
  free(pool);
  return EMA_E_NOMEM;
}


void ema__pool_run(ema_pool *pool, void (*fn)(void *, int, int), void *arg) {
  if (!pool || pool->nthreads < 2) {
    fn(arg, 0, 1);
    return;
  }
  pthread_mutex_lock(&pool->mu);
  pool->fn = fn;
  pool->arg = arg;
  pool->pending = pool->nthreads - 1;
  pool->generation++;
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->mu);
  fn(arg, 0, pool->nthreads);
  pthread_mutex_lock(&pool->mu);
  while (pool->pending > 0) pthread_cond_wait(&pool->done, &pool->mu);
  pthread_mutex_unlock(&pool->mu);
}
