/*
 * src/dist/box.c: boxes of a C-ordered tensor: volume, intersection, and the
 * contiguous runs an intersection is made of in two enclosing boxes.
 */
#include "dist/dist.h"

uint64_t box_volume(int ndim, const int64_t *shape) {
  uint64_t v = 1;
  for (int i = 0; i < ndim; i++) v *= (uint64_t)shape[i];
  return v;
}

int box_intersect(int ndim, const int64_t *aoff, const int64_t *ashape, const int64_t *boff, const int64_t *bshape,
                  int64_t *off, int64_t *shape) {
  for (int i = 0; i < ndim; i++) {
    int64_t lo = aoff[i] > boff[i] ? aoff[i] : boff[i];
    int64_t ahi = aoff[i] + ashape[i], bhi = boff[i] + bshape[i];
    int64_t hi = ahi < bhi ? ahi : bhi;
    if (hi <= lo) return 0;
    off[i] = lo;
    shape[i] = hi - lo;
  }
  return 1;
}

/* Linear element index of global position pos inside box (boff, bshape). */
static uint64_t linear(int ndim, const int64_t *pos, const int64_t *boff, const int64_t *bshape) {
  uint64_t x = 0;
  for (int i = 0; i < ndim; i++) x = x * (uint64_t)bshape[i] + (uint64_t)(pos[i] - boff[i]);
  return x;
}

ema_status box_runs(int ndim, const int64_t *ioff, const int64_t *ishape, const int64_t *soff, const int64_t *sshape,
                    const int64_t *doff, const int64_t *dshape, size_t esize, box_run_fn fn, void *user) {
  if (box_volume(ndim, ishape) == 0) return EMA_OK;
  if (ndim == 0) return fn(user, 0, 0, esize);
  /* dims k+1.. are whole in the intersection and both boxes: a run spans
     dimension k and everything after it */
  int k = ndim - 1;
  while (k > 0 && ishape[k] == sshape[k] && ishape[k] == dshape[k]) k--;
  uint64_t run = (uint64_t)ishape[k];
  for (int i = k + 1; i < ndim; i++) run *= (uint64_t)ishape[i];
  int64_t pos[EMA_MAX_DIMS];
  for (int i = 0; i < ndim; i++) pos[i] = ioff[i];
  for (;;) {
    ema_status st =
        fn(user, linear(ndim, pos, soff, sshape) * esize, linear(ndim, pos, doff, dshape) * esize, run * esize);
    if (st != EMA_OK) return st;
    int i = k - 1; /* odometer over dims 0..k-1 */
    while (i >= 0 && ++pos[i] == ioff[i] + ishape[i]) {
      pos[i] = ioff[i];
      i--;
    }
    if (i < 0) return EMA_OK;
  }
}
