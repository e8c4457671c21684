/*
 * src/dist/desc.h: what each rank tells the others at the start of a
 * sharded save (its registrations and EMA state), and the checks that the
 * ranks agree and their boxes tile every global tensor. Private.
 */
#ifndef EMA_DIST_DESC_H
#define EMA_DIST_DESC_H

#include "dist/dist.h"
#include "dist/wire.h"

typedef struct tdesc {
  const char *name; /* into the gathered block; name_len bytes */
  size_t name_len;
  int averaged, dtype, sdtype, ndim, sharded; /* averaged: the ema_policy */
  int64_t global[EMA_MAX_DIMS], off[EMA_MAX_DIMS], local[EMA_MAX_DIMS];
  uint64_t steps[EMA_MAX_AVERAGES], prods[EMA_MAX_AVERAGES];
} tdesc;

typedef struct rdesc {
  uint64_t count, n_avg, zero_debias, num_updates, last_step, state_hash;
  tdesc *t; /* count entries */
} rdesc;

void desc_build(const ema_ctx *ctx, wb *b);
/* 0, or -1 when the block is malformed or memory ran out. */
int desc_parse(const unsigned char *p, size_t len, rdesc *out);
void desc_free(rdesc *d, size_t n);
/* All ranks agree, and the boxes of each sharded tensor tile it. */
ema_status desc_check(const rdesc *all, size_t world, char *err, size_t cap);
/* Does rank r's file hold the chunk of role `role` of tensor i? */
int desc_owns(const rdesc *all, size_t r, size_t i, int role);

#endif
