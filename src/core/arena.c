/*
 * src/core/arena.c: the arenas: 64-byte-aligned blocks that never move, one
 * arena per member of the bank, so that each member's shadows are
 * contiguous across tensors, as in a context of its own (llm.c's one
 * allocation, many views).
 */
#include <stdlib.h>

#include "internal.h"

struct ema_block {
  ema_block *next;
  unsigned char *base;
  size_t cap, used;
};

#define EMA_BLOCK_MIN ((size_t)64 << 10)
#define EMA_BLOCK_GROW_MAX ((size_t)64 << 20)

/* Reserve bytes (already rounded) in the arena; returns NULL on failure. A
   block allocated for a call that later fails stays in the arena, empty,
   which is invisible to the caller. */
unsigned char *ema__arena_alloc(ema_ctx *ctx, size_t a, size_t bytes) {
  ema_block *b = ctx->blocks[a];
  if (bytes == 0) bytes = EMA_ALIGN; /* distinct, valid pointers for empty tensors */
  if (!b || b->cap - b->used < bytes) {
    size_t grow = ctx->arena_total[a];
    if (grow < EMA_BLOCK_MIN) grow = EMA_BLOCK_MIN;
    if (grow > EMA_BLOCK_GROW_MAX) grow = EMA_BLOCK_GROW_MAX;
    size_t cap = bytes > grow ? bytes : grow;
    ema_block *nb = (ema_block *)ema__malloc(sizeof *nb);
    if (!nb) return NULL;
    nb->base = (unsigned char *)ema__aligned_alloc(cap);
    if (!nb->base) {
      free(nb);
      return NULL;
    }
    nb->cap = cap;
    nb->used = 0;
    nb->next = ctx->blocks[a];
    ctx->blocks[a] = nb;
    ctx->arena_total[a] += cap;
    b = nb;
  }
  unsigned char *p = b->base + b->used;
  b->used += bytes;
  return p;
}

/* Free every block of every arena. */
void ema__arena_free(ema_ctx *ctx) {
  for (size_t a = 0; a < EMA_MAX_AVERAGES; a++) {
    while (ctx->blocks[a]) {
      ema_block *n = ctx->blocks[a]->next;
      ema__aligned_free(ctx->blocks[a]->base);
      free(ctx->blocks[a]);
      ctx->blocks[a] = n;
    }
  }
}
