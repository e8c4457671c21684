/*
 * src/common/alloc.h: every allocation of the library goes through these, so
 * that tests can make the N-th allocation fail and check that the failed call
 * changed nothing (SQLite's failure injection). Private to the library.
 */
#ifndef EMA_COMMON_ALLOC_H
#define EMA_COMMON_ALLOC_H

#include <stddef.h>

/* Byte alignment of ema__aligned_alloc blocks (one cache line). */
#define EMA_ALIGN 64

/* malloc/calloc/realloc that may be made to fail; 0 bytes asks for 1 so that
   success always gives a distinct pointer. Free with free(). */
void *ema__malloc(size_t n);
void *ema__calloc(size_t n, size_t size);
void *ema__realloc(void *p, size_t n);
/* EMA_ALIGN-aligned block of n bytes rounded up to EMA_ALIGN (never 0);
   NULL on failure or overflow. Free with ema__aligned_free. */
void *ema__aligned_alloc(size_t n);
void ema__aligned_free(void *p);
/* A block of n bytes for a large buffer the caller fills at once (a
   checkpoint in memory): from 2 * EMA_BIG_ALIGN (4 MiB) on, aligned to
   EMA_BIG_ALIGN (2 MiB) and advised for transparent huge pages where the
   system has them, so that filling it takes one page fault per 2 MiB
   instead of per 4 KiB; smaller blocks are ema__malloc's. May be made to
   fail like the others. Free with free(). */
void *ema__malloc_big(size_t n);
#define EMA_BIG_ALIGN ((size_t)2 << 20)

/* Test hook: after ema__test_fail_alloc(n), the (n+1)-th allocation from now
   on and every later one fails, until reset with -1. Not thread-safe: tests
   only. */
void ema__test_fail_alloc(long n);

#endif
