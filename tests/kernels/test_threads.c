/*
 * Results must not depend on the ISA or the number of threads: the same
 * model (many tensors of odd sizes, every dtype pair, zero-debias on and off)
 * is averaged with every available kernel set and 1..7 threads, and every
 * byte of averages and model values is compared with the scalar reference
 * on one thread. Large enough (> 1 MiB a call, many chunks) to use the
 * worker pool.
 *
 * The pool itself: every chunk runs exactly once for any chunk count and
 * 2..7 threads, also after the workers have gone to sleep; and claiming is
 * dynamic: a thread stalled inside its chunk keeps only that chunk (the
 * others take all the rest), whether it is a worker or the caller.
 */
#include <ema/ema.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "test_model.h"
#include "core/internal.h"
#include "core/pool.h"

/* Run a fixed script; return the concatenated averages + model bytes. */
static unsigned char *run_script(const char *isa, int threads, int debias, int same_half, int bank, size_t *len) {
  model m;
  make_model(&m, 0);
  ema_ctx *ctx = model_ctx(isa, threads, debias, same_half);
  if (bank) { /* two more averages: the one-pass bank kernels */
    ema_schedule s;
    ema_schedule_init(&s, EMA_SCHEDULE_CONSTANT);
    s.decay = 0.99;
    CHECK_ST(ctx, ema_bank_add(ctx, "slow", &s, NULL), EMA_OK);
    s.decay = 0.5;
    CHECK_ST(ctx, ema_bank_add(ctx, "fast", &s, NULL), EMA_OK);
  }
  model_track(ctx, &m);
  for (int step = 1; step <= 6; step++) {
    for (int t = 0; t < NT; t++) fill(&m, t, step);
    CHECK_ST(ctx, ema_set_num_updates(ctx, step * 3), EMA_OK);
    if (step == 4) {
      const char *some[] = {"t1", "t7", "t30"};
      CHECK_ST(ctx, ema_apply_some(ctx, some, 3), EMA_OK);
    } else {
      CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
    }
  }
  CHECK(threads == 1 || ctx->pool != NULL); /* the runs were large enough to use the workers */
  /* evaluation round trips through every path */
  unsigned char *out = model_final_bytes(ctx, &m, len);
  ema_free(ctx);
  free_model(&m);
  return out;
}

/* ---- the pool ----------------------------------------------------------------- */

enum { MAXCHUNKS = 1000 };

typedef struct pool_job {
  _Atomic int done[MAXCHUNKS];
  _Atomic int by_caller, by_workers;
  _Atomic int stall_left; /* chunks that still stall (0 or 1) */
  int stall_caller;       /* 1: the caller stalls, 0: a worker does, -1: no stall, no wait */
  pthread_t caller;
} pool_job;

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
  nanosleep(&ts, NULL);
}

static void sleep_ms(long ms) { sleep_us(ms * 1000); }

static void count_chunk(void *arg, size_t c) {
  pool_job *j = (pool_job *)arg;
  int mine = pthread_equal(pthread_self(), j->caller);
  atomic_fetch_add(&j->done[c], 1);
  atomic_fetch_add(mine ? &j->by_caller : &j->by_workers, 1);
  if (mine == j->stall_caller && atomic_exchange(&j->stall_left, 0))
    sleep_ms(150);
  else if (j->stall_caller >= 0)
    sleep_us(100); /* a chunk of work: the caller gets its turn */
}

static void pool_job_init(pool_job *j, int stall, int stall_caller) {
  for (int c = 0; c < MAXCHUNKS; c++) atomic_init(&j->done[c], 0);
  atomic_init(&j->by_caller, 0);
  atomic_init(&j->by_workers, 0);
  atomic_init(&j->stall_left, stall);
  j->stall_caller = stall_caller;
  j->caller = pthread_self();
}

static void test_pool(void) {
  static const size_t counts[] = {0, 1, 2, 3, 17, 64, MAXCHUNKS};
  static pool_job j;
  for (int threads = 2; threads <= 7; threads++) {
    ema_pool *pool = NULL;
    CHECK(ema__pool_create(&pool, threads) == EMA_OK && pool != NULL);
    if (!pool) continue;
    for (int rep = 0; rep < 12; rep++) {
      size_t n = counts[(size_t)rep % (sizeof counts / sizeof counts[0])];
      if (rep % 4 == 3) sleep_ms(20); /* the workers go to sleep in the kernel */
      pool_job_init(&j, 0, -1);
      ema__pool_run(pool, n, count_chunk, &j);
      int once = 1;
      for (size_t c = 0; c < MAXCHUNKS; c++) once &= atomic_load(&j.done[c]) == (c < n ? 1 : 0);
      CHECK_MSG(once, "%d threads, %zu chunks: not every chunk ran exactly once", threads, n);
    }
    /* a stalled worker keeps one chunk; the caller does the rest */
    pool_job_init(&j, 1, 0);
    ema__pool_run(pool, 200, count_chunk, &j);
    CHECK_MSG(atomic_load(&j.by_caller) + atomic_load(&j.by_workers) == 200 &&
                  (threads > 2 || atomic_load(&j.by_workers) <= 1),
              "%d threads, stalled worker: caller %d, workers %d chunks", threads, atomic_load(&j.by_caller),
              atomic_load(&j.by_workers));
    /* a stalled caller keeps one chunk; the workers do the rest */
    pool_job_init(&j, 1, 1);
    ema__pool_run(pool, 200, count_chunk, &j);
    CHECK_MSG(atomic_load(&j.by_caller) <= 1 && atomic_load(&j.by_caller) + atomic_load(&j.by_workers) == 200,
              "%d threads, stalled caller: caller %d, workers %d chunks", threads, atomic_load(&j.by_caller),
              atomic_load(&j.by_workers));
    ema__pool_free(pool);
  }
}

int main(void) {
  static const char *const isas[] = {"ref", "avx2", "avx512", "neon"};
  const char *quick = getenv("EMA_TEST_QUICK"); /* ThreadSanitizer (make test-tsan): a smaller matrix */
  int q = quick && *quick && *quick != '0';
  test_pool();
  for (int cfg = 0; cfg < 8; cfg++) {
    int debias = cfg & 1, same = (cfg >> 1) & 1, bank = cfg >> 2;
    if (q && cfg != 1 && cfg != 6) continue;
    {
      size_t ref_len;
      unsigned char *ref = run_script("ref", 1, debias, same, bank, &ref_len);
      for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (!ema_kernels_by_name(isas[i])) {
          if (cfg == 0) printf("skip %s: not available on this machine\n", isas[i]);
          continue;
        }
        for (int threads = 1; threads <= 7; threads++) {
          if (q && threads != 2 && threads != 5) continue;
          size_t len;
          unsigned char *got = run_script(isas[i], threads, debias, same, bank, &len);
          CHECK_MSG(len == ref_len && memcmp(got, ref, len) == 0,
                    "isa %s, %d threads, zero_debias %d, half shadows %d, bank %d differ from ref on 1 thread", isas[i],
                    threads, debias, same, bank);
          free(got);
        }
      }
      free(ref);
    }
  }
  /* thread settings */
  ema_ctx *ctx = NULL;
  CHECK(ema_create(&ctx, 0.5) == EMA_OK);
  CHECK(ema_threads(ctx) >= 1);
  CHECK_ST(ctx, ema_set_threads(ctx, -1), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_set_threads(ctx, EMA_MAX_THREADS + 1), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_set_threads(ctx, 3), EMA_OK);
  CHECK(ema_threads(ctx) == 3);
  CHECK_ST(ctx, ema_set_threads(ctx, 1), EMA_OK);
  CHECK(ema_threads(ctx) == 1 && ctx->pool == NULL); /* no worker left behind */
  CHECK_ST(ctx, ema_set_threads(ctx, 0), EMA_OK);
  CHECK(ema_threads(ctx) >= 1);
  ema_free(ctx);
  return check_report("test_threads");
}
