/*
 * src/common/alloc.c: allocation with failure injection (see alloc.h).
 */
#define _GNU_SOURCE /* madvise, MADV_HUGEPAGE */
#include "common/alloc.h"

#include <stdlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

static long fail_countdown = -1; /* test hook only; -1 = never fail */

void ema__test_fail_alloc(long n) { fail_countdown = n; }

static int should_fail(void) {
  if (fail_countdown < 0) return 0;
  if (fail_countdown == 0) return 1;
  fail_countdown--;
  return 0;
}

void *ema__malloc(size_t n) { return should_fail() ? NULL : malloc(n ? n : 1); }

void *ema__calloc(size_t n, size_t size) { return should_fail() ? NULL : calloc(n ? n : 1, size ? size : 1); }

void *ema__realloc(void *p, size_t n) { return should_fail() ? NULL : realloc(p, n ? n : 1); }

void *ema__aligned_alloc(size_t n) {
  if (should_fail()) return NULL;
  size_t rounded = (n + EMA_ALIGN - 1) / EMA_ALIGN * EMA_ALIGN;
  if (rounded < n) return NULL;
  return aligned_alloc(EMA_ALIGN, rounded ? rounded : EMA_ALIGN);
}

void ema__aligned_free(void *p) { free(p); }

void *ema__malloc_big(size_t n) {
  if (n < 2 * EMA_BIG_ALIGN) return ema__malloc(n);
  if (should_fail()) return NULL;
  void *p = NULL;
  if (posix_memalign(&p, EMA_BIG_ALIGN, n) != 0) return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  (void)madvise(p, n / EMA_BIG_ALIGN * EMA_BIG_ALIGN, MADV_HUGEPAGE); /* advice: a refusal changes nothing */
#endif
  return p;
}
