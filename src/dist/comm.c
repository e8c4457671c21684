/*
 * src/dist/comm.c: the collective steps of a sharded save and load, over an
 * ema_comm (ema/dist.h) or, for comm == NULL, a world of one rank.
 */
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"

ema_status dc_check(const ema_ctx *ctx, const ema_comm *c, const char *fn) {
  if (!c) return EMA_OK;
  if (c->size < 1 || c->rank < 0 || c->rank >= c->size)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: the communicator has rank %d of size %d", fn, c->rank, c->size);
  if (!c->allgather || !c->broadcast || !c->barrier)
    return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: the communicator lacks allgather, broadcast or barrier", fn);
  return EMA_OK;
}

int dc_rank(const ema_comm *c) { return c ? c->rank : 0; }
int dc_size(const ema_comm *c) { return c ? c->size : 1; }

ema_status dc_bcast(const ema_comm *c, void *buf, size_t len, int root) {
  if (!c || c->size == 1 || len == 0) return EMA_OK;
  return c->broadcast(c->user, buf, len, root);
}

static ema_status allgather(const ema_comm *c, const void *send, size_t len, void *recv) {
  if (!c || c->size == 1) {
    if (len) memcpy(recv, send, len);
    return EMA_OK;
  }
  return c->allgather(c->user, send, len, recv);
}

/* The exchanges below allocate before they communicate; a rank that runs
   out of memory for those few words per rank cannot take part, and returns
   EMA_E_NOMEM while the others wait in the communication library (a
   limitation: the words are 4 to 8 bytes per rank). */
ema_status dc_allgatherv(const ema_comm *c, const void *send, size_t len, unsigned char **all, size_t **off,
                         size_t **lens) {
  size_t n = (size_t)dc_size(c);
  *all = NULL;
  *off = *lens = NULL;
  uint64_t mine = len, *sizes = (uint64_t *)ema__calloc(n, sizeof *sizes);
  size_t *o = (size_t *)ema__calloc(n, sizeof *o), *l = (size_t *)ema__calloc(n, sizeof *l);
  if (!sizes || !o || !l) {
    free(sizes);
    free(o);
    free(l);
    return EMA_E_NOMEM;
  }
  ema_status st = allgather(c, &mine, sizeof mine, sizes);
  size_t max = 0, total = 0;
  for (size_t r = 0; st == EMA_OK && r < n; r++) {
    if (sizes[r] == UINT64_MAX)
      st = EMA_E_NOMEM; /* that rank could not build its block */
    else if (sizes[r] > max)
      max = (size_t)sizes[r];
  }
  unsigned char *pad = NULL, *buf = NULL;
  if (st == EMA_OK) {
    pad = (unsigned char *)ema__calloc(max ? max : 1, 1);
    buf = (unsigned char *)ema__malloc(n * max + 1);
    if (!pad || !buf) st = EMA_E_NOMEM;
  }
  if (st == EMA_OK) {
    if (len) memcpy(pad, send, len);
    st = allgather(c, pad, max, buf);
  }
  if (st == EMA_OK) {
    for (size_t r = 0; r < n; r++) { /* squeeze the padding out */
      memmove(buf + total, buf + r * max, (size_t)sizes[r]);
      o[r] = total;
      l[r] = (size_t)sizes[r];
      total += (size_t)sizes[r];
    }
    *all = buf;
    *off = o;
    *lens = l;
    buf = NULL;
    o = l = NULL;
  }
  free(pad);
  free(buf);
  free(sizes);
  free(o);
  free(l);
  return st;
}

ema_status dc_agree(const ema_comm *c, ema_status mine, int *bad) {
  size_t n = (size_t)dc_size(c);
  int32_t word = (int32_t)mine, *all = (int32_t *)ema__malloc(n * sizeof *all);
  *bad = -1;
  if (!all) {
    *bad = dc_rank(c);
    return EMA_E_NOMEM;
  }
  ema_status st = allgather(c, &word, sizeof word, all);
  if (st == EMA_OK)
    for (size_t r = 0; r < n; r++)
      if (all[r] != (int32_t)EMA_OK) {
        *bad = (int)r;
        st = (ema_status)all[r];
        break;
      }
  free(all);
  return st;
}
