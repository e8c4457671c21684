/*
 * tests/dist/model.h: a small model sharded in every way the dist tests
 * need, shared by the thread and MPI tests. Tensors (global shapes):
 *   w  [10, 7]    f32   dim-0 shards (FSDP2), uneven, the last rank empty at 4
 *   h  [6, 8]     bf16  column boxes (tensor parallel), uneven
 *   g  [3, 5, 4]  f16   dim-1 boxes of a 3-D tensor
 *   z  [0, 3]     f32   dim-0 shards of an empty tensor
 *   b  [7]        f32   replicated, averaged (ema_track)
 *   n  [2]        i64   replicated, EMA_POLICY_COPY
 *   k  [3]        f32   replicated, EMA_POLICY_KEEP
 * Model values are a function of (tensor, global element, step), so every
 * rank, at any world size, and the unsharded reference see the same model.
 */
#ifndef EMA_TEST_DIST_MODEL_H
#define EMA_TEST_DIST_MODEL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ema/dist.h"

enum { M_TENSORS = 7 };

typedef struct mspec {
  const char *name;
  ema_dtype dtype;
  int ndim;
  int64_t shape[3];
  int split_dim; /* -1: replicated */
  int state;     /* 1: EMA_POLICY_COPY, 2: EMA_POLICY_KEEP */
} mspec;

static const mspec M_SPEC[M_TENSORS] = {
    {"w", EMA_F32, 2, {10, 7, 0}, 0, 0}, {"h", EMA_BF16, 2, {6, 8, 0}, 1, 0}, {"g", EMA_F16, 3, {3, 5, 4}, 1, 0},
    {"z", EMA_F32, 2, {0, 3, 0}, 0, 0},  {"b", EMA_F32, 1, {7, 0, 0}, -1, 0}, {"n", EMA_I64, 1, {2, 0, 0}, -1, 1},
    {"k", EMA_F32, 1, {3, 0, 0}, -1, 2},
};

/* Boundaries of rank r's part of n items over w ranks: uneven on purpose. */
static inline void m_split(int64_t n, int w, int r, int64_t *lo, int64_t *hi) {
  static const int64_t t4[5] = {0, 40, 70, 100, 100}, t3[4] = {0, 20, 90, 100}, t2[3] = {0, 60, 100};
  const int64_t *t = w == 4 ? t4 : w == 3 ? t3 : w == 2 ? t2 : NULL;
  if (!t) {
    *lo = n * r / w;
    *hi = n * (r + 1) / w;
    return;
  }
  *lo = n * t[r] / 100;
  *hi = n * t[r + 1] / 100;
}

typedef struct mrank {
  int world, rank;
  ema_ctx *ctx;
  void *data[M_TENSORS];
  int64_t off[M_TENSORS][3], local[M_TENSORS][3];
} mrank;

static inline uint32_t m_hash(uint32_t t, uint64_t g, uint32_t step) {
  uint64_t x = (g + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)t << 40) ^ ((uint64_t)step * 0xC2B2AE3D27D4EB4Full);
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 32;
  return (uint32_t)x;
}

/* Write the model values of step into rank m's boxes. */
static inline void m_fill(mrank *m, uint32_t step) {
  for (int t = 0; t < M_TENSORS; t++) {
    const mspec *s = &M_SPEC[t];
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= m->local[t][d];
    for (int64_t i = 0; i < n; i++) {
      int64_t rem = i, g = 0, idx[3] = {0, 0, 0};
      for (int d = s->ndim - 1; d >= 0; d--) {
        idx[d] = rem % m->local[t][d] + m->off[t][d];
        rem /= m->local[t][d];
      }
      for (int d = 0; d < s->ndim; d++) g = g * s->shape[d] + idx[d];
      uint32_t h = m_hash((uint32_t)t, (uint64_t)g, step);
      switch (s->dtype) {
        case EMA_F32:
          ((float *)m->data[t])[i] = (float)(h % 4000u) / 1000.0f - 2.0f;
          break;
        case EMA_BF16:
          ((uint16_t *)m->data[t])[i] = (uint16_t)(0x3F80u + h % 0x80u);
          break;
        case EMA_F16:
          ((uint16_t *)m->data[t])[i] = (uint16_t)(0x3C00u + h % 0x400u);
          break;
        case EMA_I64:
          ((int64_t *)m->data[t])[i] = (int64_t)(h % 100u) + step;
          break;
        default:
          break;
      }
    }
  }
}

/* Options of a run: a bank of two members, zero_debias or not. */
typedef struct mopts {
  int zero_debias;
  int sharded; /* 0: the unsharded reference (ema_track for everything) */
} mopts;

/* Create rank `rank` of `world` with the model at step 0. 0 or -1. */
static inline int m_init(mrank *m, int world, int rank, const mopts *o) {
  memset(m, 0, sizeof *m);
  m->world = world;
  m->rank = rank;
  if (ema_create(&m->ctx, 0.99) != EMA_OK) return -1;
  ema_set_num_updates(m->ctx, 0);
  if (o->zero_debias) ema_set_zero_debias(m->ctx, 1);
  ema_schedule sch;
  ema_schedule_init(&sch, EMA_SCHEDULE_CONSTANT);
  sch.decay = 0.9;
  if (ema_bank_add(m->ctx, "fast", &sch, NULL) != EMA_OK) return -1;
  for (int t = 0; t < M_TENSORS; t++) {
    const mspec *s = &M_SPEC[t];
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) {
      m->off[t][d] = 0;
      m->local[t][d] = s->shape[d];
      if (o->sharded && d == s->split_dim) {
        int64_t lo, hi;
        m_split(s->shape[d], world, rank, &lo, &hi);
        m->off[t][d] = lo;
        m->local[t][d] = hi - lo;
      }
      n *= m->local[t][d];
    }
    m->data[t] = calloc((size_t)(n ? n : 1), ema_dtype_size(s->dtype));
  }
  m_fill(m, 0);
  for (int t = 0; t < M_TENSORS; t++) {
    const mspec *s = &M_SPEC[t];
    ema_status st;
    if (s->state)
      st = ema_track_policy(m->ctx, s->name, m->data[t], s->dtype, s->ndim, s->shape,
                            s->state == 1 ? EMA_POLICY_COPY : EMA_POLICY_KEEP);
    else if (o->sharded && s->split_dim >= 0)
      st = ema_track_shard(m->ctx, s->name, m->data[t], s->dtype, s->ndim, s->shape, m->off[t], m->local[t]);
    else
      st = ema_track(m->ctx, s->name, m->data[t], s->dtype, s->ndim, s->shape);
    if (st != EMA_OK) return -1;
  }
  return 0;
}

/* One training step: new model values, then an EMA update. */
static inline int m_step(mrank *m, uint32_t step) {
  m_fill(m, step);
  ema_set_num_updates(m->ctx, step + 100); /* members 0 and 1 differ */
  return ema_apply(m->ctx) == EMA_OK ? 0 : -1;
}

static inline void m_free(mrank *m) {
  ema_free(m->ctx);
  for (int t = 0; t < M_TENSORS; t++) free(m->data[t]);
  memset(m, 0, sizeof *m);
}

/* Element i of rank m's box of tensor t, as an element of the full tensor
   of the unsharded reference. */
static inline int64_t m_global_index(const mrank *m, int t, int64_t i) {
  const mspec *s = &M_SPEC[t];
  int64_t rem = i, g = 0, idx[3] = {0, 0, 0};
  for (int d = s->ndim - 1; d >= 0; d--) {
    idx[d] = rem % m->local[t][d] + m->off[t][d];
    rem /= m->local[t][d];
  }
  for (int d = 0; d < s->ndim; d++) g = g * s->shape[d] + idx[d];
  return g;
}

/* Number of elements of rank m's box of tensor t that differ, bitwise,
   from the reference: model values and every member's average. */
static inline long m_diff(const mrank *m, const mrank *ref) {
  long bad = 0;
  for (int t = 0; t < M_TENSORS; t++) {
    const mspec *s = &M_SPEC[t];
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= m->local[t][d];
    for (size_t k = 0; k < (s->state ? 1u : 2u); k++) {
      ema_dtype da = s->dtype, dr = s->dtype;
      const unsigned char *a = s->state ? (const unsigned char *)m->data[t]
                                        : (const unsigned char *)ema_bank_average(m->ctx, s->name, k, &da);
      const unsigned char *r = s->state ? (const unsigned char *)ref->data[t]
                                        : (const unsigned char *)ema_bank_average(ref->ctx, s->name, k, &dr);
      size_t es = ema_dtype_size(da);
      if (da != dr || (n && (!a || !r))) return -1;
      for (int64_t i = 0; i < n; i++) {
        int64_t g = m_global_index(m, t, i);
        bad += memcmp(a + (size_t)i * es, r + (size_t)g * es, es) != 0;
        size_t ms = ema_dtype_size(s->dtype);
        bad += memcmp((const unsigned char *)m->data[t] + (size_t)i * ms,
                      (const unsigned char *)ref->data[t] + (size_t)g * ms, ms) != 0;
      }
    }
  }
  if (ema_num_updates(m->ctx) != ema_num_updates(ref->ctx)) bad++;
  return bad;
}

#endif
