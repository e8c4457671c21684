/*
 * A persistent worker pool owned by one context, with dynamic work claiming.
 *
 * ema__pool_run(nchunks, fn, arg) publishes a run: fn, arg, nchunks and a
 * ticket word (run number << 32 | next chunk). The caller and every worker
 * that has woken claim chunks from the ticket with a compare-and-swap until
 * none is left, so a thread that another process preempts delays only the
 * chunk it holds: the others take the rest. The caller waits only for the
 * workers that have joined the run (the `active` count), not for ones that
 * are still asleep or descheduled: a worker that arrives after the last
 * chunk was claimed finds nothing and goes back to sleep.
 *
 * Waiting is passive: a worker spins for a few microseconds on the run
 * number (cheap back-to-back runs) and then sleeps in the kernel (futex on
 * Linux, a condition variable elsewhere), so an idle pool costs nothing
 * inside a busy process (a PyTorch trainer with its own OpenMP threads).
 * Wake-ups are only issued when someone sleeps (sleepers / waiting flags).
 * The caller starts claiming right after publishing, so a worker's wake-up
 * latency costs at most the chunks the caller does meanwhile, not a stall.
 *
 * Why a claim cannot touch a finished run: the ticket only grows (the run
 * number is its high half), so a compare-and-swap that succeeds proves the
 * run was still open; a worker counts itself in `active` before it claims,
 * and the caller, once it has seen the ticket exhausted, waits for
 * `active` to reach 0. A worker that joins later can only fail its claim.
 * All atomics are sequentially consistent except fn/arg/nchunks, which are
 * published by the ticket store and read after the ticket is loaded.
 */
#define _DEFAULT_SOURCE 1 /* syscall() */

#include "pool.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* Polls of the run number before a worker sleeps (a few microseconds). */
#define EMA_POOL_SPIN 4096

typedef void (*chunk_fn)(void *, size_t);

struct ema_pool {
  int nthreads; /* including the caller */
  pthread_t *threads;
  _Atomic uint64_t ticket;   /* run << 32 | next unclaimed chunk */
  _Atomic uint32_t run;      /* current run number; workers wait on it */
  _Atomic uint32_t active;   /* workers inside the current run */
  _Atomic uint32_t sleepers; /* workers asleep (or about to sleep) on run */
  _Atomic uint32_t waiting;  /* the caller sleeps (or is about to) on active */
  _Atomic uint32_t quit;
  _Atomic uint32_t nchunks;
  _Atomic(chunk_fn) fn;
  _Atomic(void *) arg;
  uint32_t last_run; /* caller only */
#if !defined(__linux__)
  pthread_mutex_t mu;
  pthread_cond_t cv;
#endif
};

/* ---- sleeping on a 32-bit word ----------------------------------------- */

#if defined(__linux__)
static void word_wait(ema_pool *p, _Atomic uint32_t *w, uint32_t v) {
  (void)p;
  syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}
static void word_wake(ema_pool *p, _Atomic uint32_t *w) {
  (void)p;
  syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}
#else
static void word_wait(ema_pool *p, _Atomic uint32_t *w, uint32_t v) {
  pthread_mutex_lock(&p->mu);
  while (atomic_load(w) == v) pthread_cond_wait(&p->cv, &p->mu);
  pthread_mutex_unlock(&p->mu);
}
static void word_wake(ema_pool *p, _Atomic uint32_t *w) {
  (void)w;
  pthread_mutex_lock(&p->mu);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}
#endif

/* ---- claiming -------------------------------------------------------------- */

static int claim(ema_pool *p, uint32_t run, size_t *chunk) {
  uint64_t t = atomic_load(&p->ticket);
  for (;;) {
    if ((uint32_t)(t >> 32) != run) return 0;
    uint32_t c = (uint32_t)t;
    if (c >= atomic_load_explicit(&p->nchunks, memory_order_relaxed)) return 0;
    if (atomic_compare_exchange_weak(&p->ticket, &t, t + 1)) {
      *chunk = c;
      return 1;
    }
  }
}

static void do_chunks(ema_pool *p, uint32_t run) {
  size_t c;
  while (claim(p, run, &c)) {
    chunk_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
    fn(atomic_load_explicit(&p->arg, memory_order_relaxed), c);
  }
}

/* Wait until p->run differs from seen (or quit); return it. */
static uint32_t wait_run(ema_pool *p, uint32_t seen) {
  for (int i = 0; i < EMA_POOL_SPIN; i++) {
    uint32_t r = atomic_load_explicit(&p->run, memory_order_relaxed);
    if (r != seen || atomic_load_explicit(&p->quit, memory_order_relaxed)) return atomic_load(&p->run);
  }
  for (;;) {
    atomic_fetch_add(&p->sleepers, 1);
    uint32_t r = atomic_load(&p->run);
    if (r == seen && !atomic_load(&p->quit)) word_wait(p, &p->run, seen);
    atomic_fetch_sub(&p->sleepers, 1);
    r = atomic_load(&p->run);
    if (r != seen || atomic_load(&p->quit)) return r;
  }
}

static void *worker_main(void *arg) {
  ema_pool *p = (ema_pool *)arg;
  uint32_t seen = 0;
  for (;;) {
    seen = wait_run(p, seen);
    if (atomic_load(&p->quit)) break;
    atomic_fetch_add(&p->active, 1);
    do_chunks(p, seen);
    if (atomic_fetch_sub(&p->active, 1) == 1 && atomic_load(&p->waiting)) word_wake(p, &p->active);
  }
  return NULL;
}

/* The caller's wait for the workers that joined the run. */
static void wait_idle(ema_pool *p) {
  for (int i = 0; i < EMA_POOL_SPIN; i++)
    if (atomic_load(&p->active) == 0) return;
  atomic_store(&p->waiting, 1);
  for (uint32_t a; (a = atomic_load(&p->active)) != 0;) word_wait(p, &p->active, a);
  atomic_store(&p->waiting, 0);
}

void ema__pool_run(ema_pool *p, size_t nchunks, void (*fn)(void *, size_t), void *arg) {
  if (!p || p->nthreads < 2 || nchunks < 2) {
    for (size_t c = 0; c < nchunks; c++) fn(arg, c);
    return;
  }
  uint32_t run = ++p->last_run;
  if (run == 0) run = ++p->last_run; /* 0 is the workers' initial "seen" */
  atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
  atomic_store_explicit(&p->arg, arg, memory_order_relaxed);
  atomic_store_explicit(&p->nchunks, (uint32_t)nchunks, memory_order_relaxed);
  atomic_store(&p->ticket, (uint64_t)run << 32);
  atomic_store(&p->run, run);
  if (atomic_load(&p->sleepers)) word_wake(p, &p->run);
  do_chunks(p, run);
  wait_idle(p);
}

/* ---- life cycle ---------------------------------------------------------------- */

void ema__pool_free(ema_pool *p) {
  if (!p) return;
  atomic_store(&p->quit, 1);
  atomic_fetch_add(&p->run, 1);
  word_wake(p, &p->run);
  for (int i = 0; i < p->nthreads - 1; i++) pthread_join(p->threads[i], NULL);
#if !defined(__linux__)
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
#endif
  free(p->threads);
  free(p);
}

ema_status ema__pool_create(ema_pool **out, int nthreads) {
  *out = NULL;
  if (nthreads < 2) return EMA_E_INVALID_ARG;
  ema_pool *p = (ema_pool *)ema__calloc(1, sizeof *p);
  if (!p) return EMA_E_NOMEM;
  p->threads = (pthread_t *)ema__calloc((size_t)(nthreads - 1), sizeof *p->threads);
  if (!p->threads) {
    free(p);
    return EMA_E_NOMEM;
  }
#if !defined(__linux__)
  if (pthread_mutex_init(&p->mu, NULL) != 0) goto fail;
  if (pthread_cond_init(&p->cv, NULL) != 0) {
    pthread_mutex_destroy(&p->mu);
    goto fail;
  }
#endif
  atomic_init(&p->fn, (chunk_fn)NULL);
  atomic_init(&p->arg, NULL);
  p->nthreads = 1;
  for (int i = 1; i < nthreads; i++) {
    if (pthread_create(&p->threads[i - 1], NULL, worker_main, p) != 0) {
      ema__pool_free(p);
      return EMA_E_NOMEM;
    }
    p->nthreads = i + 1;
  }
  *out = p;
  return EMA_OK;
#if !defined(__linux__)
fail:
  free(p->threads);
  free(p);
  return EMA_E_NOMEM;
#endif
}
