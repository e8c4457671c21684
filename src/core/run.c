/*
 * One pass over many tensors: the work of an apply, swap, store, copy_to or
 * restore is a list of items (tensor + what to do with it), laid end to end
 * by bytes moved ("cost"), not by tensors, and cut into chunks of
 * EMA_CHUNK_BYTES that the caller and the pool's workers claim one at a time
 * (pool.c): a thread slowed by another process delays only its own chunk.
 * 10,000 small tensors cost one fork/join, like one big tensor. Chunk
 * boundaries fall on 16-element boundaries of each tensor, so two threads
 * never write the same cache line of a shadow, and they depend only on the
 * items, never on the number of threads.
 *
 * Every operation is elementwise, so the result does not depend on how the
 * items are split: bitwise identical for any number of threads.
 */
#include "run.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "pool.h"

/* Below this many bytes, a run stays on the calling thread: waking a
   sleeping worker costs 10-50 us on a loaded VM, and a second thread adds
   as little as 20% bandwidth there, so the break-even is near 10 MB moved
   (bench/RESULTS.md). */
#define EMA_PARALLEL_MIN_BYTES ((size_t)16 << 20)
#define EMA_SPLIT_ELEMS 16
/* Bytes moved per claimed chunk: small enough that a preempted thread
   holds little work (about 20 us of memory traffic) and that the last
   chunks even out the threads, large enough that claiming (one atomic
   compare-and-swap and a binary search over the items) is noise. */
#define EMA_CHUNK_BYTES ((size_t)256 << 10)

static size_t cost_per_elem(const ema_run_item *it) {
  size_t m = it->t->msize, s = it->t->ssize;
  switch (it->op) {
    case EMA_OP_UPDATE:
      return m + (size_t)it->n_avg * (2 * s + (it->debias ? 2 * s : 0));
    case EMA_OP_SWAP:
      return 4 * m;
    case EMA_OP_SWAP_IN_MIXED:
      return 3 * m + s;
    case EMA_OP_COPY_TO:
      return s + m;
    default:
      return 2 * m; /* plain copies */
  }
}

/* Parameter bytes per chunk of a bank update (see update_range). */
#define EMA_BANK_CHUNK_BYTES ((size_t)128 << 10)

static void update_range(const ema_kernels *k, const ema_run_item *it, size_t e0, size_t e1) {
  const ema_tensor *t = it->t;
  size_t m = t->msize, s = t->ssize;
  /* A bank goes chunk by chunk: each 128 KiB of parameters is read from
     memory once and stays in L2 while every average's shadow (each in its
     own arena, contiguous across tensors) streams past it. This measured
     faster than one fused kernel over all K + 1 streams (about half the
     bandwidth) and than 8-64 KiB chunks at 2 threads (bench/RESULTS.md,
     bank section). */
  size_t chunk = it->n_avg == 1 ? e1 - e0 : EMA_BANK_CHUNK_BYTES / m;
  for (size_t c0 = e0; c0 < e1; c0 += chunk) {
    size_t n = e1 - c0 < chunk ? e1 - c0 : chunk;
    const unsigned char *data = (const unsigned char *)t->data + c0 * m;
    for (int a = 0; a < it->n_avg; a++) {
      unsigned char *shadow = (unsigned char *)t->shadow[a] + c0 * s;
      if (it->copy_mask & (1u << a))
        k->to_shadow[t->pair](shadow, data, n);
      else
        k->update[t->pair](shadow, data, n, it->om[a]);
      if (it->debias) k->div[t->pair]((unsigned char *)t->average[a] + c0 * s, shadow, n, it->factor[a]);
    }
  }
}

static void run_range(const ema_kernels *k, const ema_run_item *it, size_t e0, size_t e1) {
  const ema_tensor *t = it->t;
  size_t n = e1 - e0;
  if (n == 0) return;
  if (it->op == EMA_OP_UPDATE) {
    update_range(k, it, e0, e1);
    return;
  }
  size_t m = t->msize, s = t->ssize;
  unsigned char *data = (unsigned char *)t->data + e0 * m;
  unsigned char *avg = (unsigned char *)t->average[it->k] + e0 * s;
  unsigned char *side = it->side ? it->side + e0 * m : NULL;
  switch (it->op) {
    case EMA_OP_SWAP:
      k->swap(data, avg, n * m);
      break;
    case EMA_OP_SWAP_IN_MIXED:
      memcpy(side, data, n * m);
      k->from_shadow[t->pair](data, avg, n);
      break;
    case EMA_OP_COPY_TO:
      k->from_shadow[t->pair](data, avg, n);
      break;
    case EMA_OP_MODEL_TO_SIDE:
      memcpy(side, data, n * m);
      break;
    case EMA_OP_SIDE_TO_MODEL:
      memcpy(data, side, n * m);
      break;
  }
}

typedef struct run_job {
  const ema_kernels *k;
  ema_run_item *items;
  size_t n;
  size_t total;
  size_t chunk; /* cost bytes per chunk */
} run_job;

/* First element of item it at or after cost offset b (monotone in b). */
static size_t elem_at(const ema_run_item *it, size_t b) {
  if (b <= it->begin) return 0;
  size_t e = (b - it->begin) / it->cost;
  e = (e + EMA_SPLIT_ELEMS - 1) / EMA_SPLIT_ELEMS * EMA_SPLIT_ELEMS;
  return e < it->t->numel ? e : it->t->numel;
}

/* Run the elements whose cost offsets fall in [b0, b1): consecutive spans
   tile the work exactly (elem_at is monotone), whatever their number. */
static void run_span(const run_job *job, size_t b0, size_t b1) {
  /* first item whose cost range ends after b0 */
  size_t lo = 0, hi = job->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const ema_run_item *it = &job->items[mid];
    if (it->begin + it->t->numel * it->cost <= b0)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (size_t i = lo; i < job->n; i++) {
    const ema_run_item *it = &job->items[i];
    if (it->begin >= b1) break;
    /* a tensor wholly inside the span (most of them) needs no division */
    size_t numel = it->t->numel, end = it->begin + numel * it->cost;
    size_t e0 = elem_at(it, b0), e1 = b1 >= end ? numel : elem_at(it, b1);
    if (e0 < e1) run_range(job->k, it, e0, e1);
  }
}

static void run_chunk(void *arg, size_t c) {
  const run_job *job = (const run_job *)arg;
  size_t b0 = c * job->chunk;
  size_t b1 = job->total - b0 > job->chunk ? b0 + job->chunk : job->total;
  run_span(job, b0, b1);
}

size_t ema__parallel_min_default(void) { return EMA_PARALLEL_MIN_BYTES; }

int ema__default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  if (n > 8) n = 8; /* memory-bound: more threads than channels buy nothing */
  return (int)n;
}

void ema__run(ema_ctx *ctx, ema_run_item *items, size_t n) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    items[i].begin = total;
    items[i].cost = cost_per_elem(&items[i]);
    total += items[i].t->numel * items[i].cost;
  }
  run_job job = {ctx->k, items, n, total, EMA_CHUNK_BYTES};
  if (ctx->threads > 1 && total >= ctx->parallel_min && !ctx->pool && !ctx->pool_failed) {
    /* Lazily start the workers; if that fails, run on one thread: the
       results are the same, only slower. */
    if (ema__pool_create(&ctx->pool, ctx->threads) != EMA_OK) ctx->pool_failed = 1;
  }
  if (ctx->pool && total >= ctx->parallel_min) {
    /* chunk boundaries depend on the items only, never on the threads */
    if (total / job.chunk >= UINT32_MAX) job.chunk = total / (UINT32_MAX - 1) + 1;
    ema__pool_run(ctx->pool, (total + job.chunk - 1) / job.chunk, run_chunk, &job);
  } else {
    run_span(&job, 0, total);
  }
}
