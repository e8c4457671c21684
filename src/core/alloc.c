/*
 * Allocation and error helpers. Every allocation of the library goes through
 * ema__malloc & co. so that tests can make the N-th allocation fail and check
 * that the failed call changed nothing (SQLite's failure injection).
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

ema_status ema__fail(const ema_ctx *cctx, ema_status s, const char *fmt, ...) {
  if (cctx) {
    ema_ctx *ctx = (ema_ctx *)cctx; /* the message buffer is logically mutable */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
  }
  return s;
}

void ema__clear_error(const ema_ctx *cctx) {
  if (cctx) ((ema_ctx *)cctx)->err[0] = '\0';
}
