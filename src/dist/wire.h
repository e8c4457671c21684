/*
 * src/dist/wire.h: the little-endian byte blocks ranks exchange during a
 * sharded save (registrations, results). Private to src/dist.
 */
#ifndef EMA_DIST_WIRE_H
#define EMA_DIST_WIRE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

typedef struct wb {
  unsigned char *p;
  size_t len, cap;
  int ok;
} wb;

static inline void wb_put(wb *b, const void *s, size_t n) {
  if (!b->ok) return;
  if (b->len + n > b->cap) {
    size_t nc = b->cap ? b->cap * 2 : 256;
    while (nc < b->len + n) nc *= 2;
    unsigned char *np = (unsigned char *)ema__realloc(b->p, nc);
    if (!np) {
      b->ok = 0;
      return;
    }
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static inline void wb_u64(wb *b, uint64_t v) {
  unsigned char x[8];
  for (int i = 0; i < 8; i++) x[i] = (unsigned char)(v >> (8 * i));
  wb_put(b, x, 8);
}

static inline void wb_str(wb *b, const char *s) {
  size_t n = strlen(s);
  wb_u64(b, n);
  wb_put(b, s, n);
}

typedef struct rb {
  const unsigned char *p;
  size_t len, pos;
  int ok;
} rb;

static inline uint64_t rb_u64(rb *r) {
  if (!r->ok || r->len - r->pos < 8) {
    r->ok = 0;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | r->p[r->pos + (size_t)i];
  r->pos += 8;
  return v;
}

/* A string of the block (not NUL-terminated): its start and length. */
static inline const char *rb_str(rb *r, size_t *n) {
  uint64_t len = rb_u64(r);
  if (!r->ok || len > r->len - r->pos) {
    r->ok = 0;
    *n = 0;
    return "";
  }
  const char *s = (const char *)r->p + r->pos;
  r->pos += (size_t)len;
  *n = (size_t)len;
  return s;
}

#endif
