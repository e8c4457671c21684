/*
 * src/dist/desc.c: registrations exchanged at the start of a sharded save.
 */
#include <stdio.h>
#include <string.h>

#include "dist/desc.h"
#include "io/st_internal.h"

static uint64_t state_hash(const ema_ctx *ctx) {
  ema__xxh64_state h;
  ema__xxh64_init(&h, 0);
  for (size_t k = 0; k < ctx->n_avg; k++) {
    const ema_schedule *s = &ctx->avg[k].sched;
    double v[7] = {s->decay, s->min_decay, s->inv_gamma, s->power, s->gamma, s->sigma_rel, s->halflife};
    int64_t w[2] = {(int64_t)s->kind, s->update_after_step};
    ema__xxh64_update(&h, ctx->avg[k].name, strlen(ctx->avg[k].name) + 1);
    ema__xxh64_update(&h, v, sizeof v);
    ema__xxh64_update(&h, w, sizeof w);
  }
  return ema__xxh64_digest(&h);
}

void desc_build(const ema_ctx *ctx, wb *b) {
  wb_u64(b, ctx->count);
  wb_u64(b, ctx->n_avg);
  wb_u64(b, (uint64_t)ctx->zero_debias);
  wb_u64(b, (uint64_t)ctx->num_updates);
  wb_u64(b, (uint64_t)ctx->last_step);
  wb_u64(b, state_hash(ctx));
  for (size_t i = 0; i < ctx->count; i++) {
    const ema_tensor *t = &ctx->tensors[i];
    wb_str(b, t->name);
    uint64_t head[5] = {(uint64_t)t->policy, (uint64_t)t->dtype, (uint64_t)t->sdtype, (uint64_t)t->ndim,
                        t->shard != NULL};
    for (int j = 0; j < 5; j++) wb_u64(b, head[j]);
    for (int d = 0; d < t->ndim; d++) {
      wb_u64(b, (uint64_t)(t->shard ? t->shard->global[d] : t->shape[d]));
      wb_u64(b, (uint64_t)(t->shard ? t->shard->offset[d] : 0));
      wb_u64(b, (uint64_t)t->shape[d]);
    }
    for (size_t k = 0; k < ctx->n_avg; k++) {
      uint64_t bits;
      memcpy(&bits, &t->debias_prod[k], 8);
      wb_u64(b, (uint64_t)t->debias_steps[k]);
      wb_u64(b, bits);
    }
  }
}

int desc_parse(const unsigned char *p, size_t len, rdesc *out) {
  rb r = {p, len, 0, 1};
  memset(out, 0, sizeof *out);
  out->count = rb_u64(&r);
  out->n_avg = rb_u64(&r);
  out->zero_debias = rb_u64(&r);
  out->num_updates = rb_u64(&r);
  out->last_step = rb_u64(&r);
  out->state_hash = rb_u64(&r);
  if (!r.ok || out->n_avg > EMA_MAX_AVERAGES || out->count > len) return -1;
  out->t = (tdesc *)ema__calloc(out->count + 1, sizeof *out->t);
  if (!out->t) return -1;
  for (size_t i = 0; i < out->count && r.ok; i++) {
    tdesc *t = &out->t[i];
    t->name = rb_str(&r, &t->name_len);
    t->averaged = (int)rb_u64(&r);
    t->dtype = (int)rb_u64(&r);
    t->sdtype = (int)rb_u64(&r);
    t->ndim = (int)rb_u64(&r);
    t->sharded = (int)rb_u64(&r);
    if (t->ndim < 0 || t->ndim > EMA_MAX_DIMS) return -1;
    for (int d = 0; d < t->ndim; d++) {
      t->global[d] = (int64_t)rb_u64(&r);
      t->off[d] = (int64_t)rb_u64(&r);
      t->local[d] = (int64_t)rb_u64(&r);
    }
    for (size_t k = 0; k < out->n_avg; k++) {
      t->steps[k] = rb_u64(&r);
      t->prods[k] = rb_u64(&r);
    }
  }
  return r.ok && r.pos == len ? 0 : -1;
}

void desc_free(rdesc *d, size_t n) {
  if (!d) return;
  for (size_t i = 0; i < n; i++) free(d[i].t);
}

#define MISMATCH(...) (st_errf(err, cap, __VA_ARGS__), EMA_E_MISMATCH)

static ema_status check_tiling(const rdesc *all, size_t world, size_t i, char *err, size_t cap) {
  const tdesc *t0 = &all[0].t[i];
  uint64_t vol = 0;
  int64_t o[EMA_MAX_DIMS], s[EMA_MAX_DIMS];
  for (size_t r = 0; r < world; r++) {
    const tdesc *a = &all[r].t[i];
    vol += box_volume(a->ndim, a->local);
    for (size_t q = 0; q < r; q++) {
      const tdesc *b = &all[q].t[i];
      if (box_intersect(a->ndim, a->off, a->local, b->off, b->local, o, s))
        return MISMATCH("the boxes of '%.*s' on ranks %zu and %zu overlap", (int)t0->name_len, t0->name, q, r);
    }
  }
  if (vol != box_volume(t0->ndim, t0->global))
    return MISMATCH("the boxes of '%.*s' on the %zu ranks cover %llu of its %llu elements", (int)t0->name_len, t0->name,
                    world, (unsigned long long)vol, (unsigned long long)box_volume(t0->ndim, t0->global));
  return EMA_OK;
}

ema_status desc_check(const rdesc *all, size_t world, char *err, size_t cap) {
  const rdesc *d0 = &all[0];
  for (size_t r = 1; r < world; r++) {
    const rdesc *d = &all[r];
    if (d->count != d0->count)
      return MISMATCH("rank %zu registered %llu tensors, rank 0 %llu", r, (unsigned long long)d->count,
                      (unsigned long long)d0->count);
    if (d->n_avg != d0->n_avg || d->zero_debias != d0->zero_debias || d->num_updates != d0->num_updates ||
        d->last_step != d0->last_step || d->state_hash != d0->state_hash)
      return MISMATCH("rank %zu's EMA state (bank, decays, zero_debias, num_updates or step) differs from rank 0's", r);
    for (size_t i = 0; i < d0->count; i++) {
      const tdesc *a = &d->t[i], *b = &d0->t[i];
      if (a->name_len != b->name_len || memcmp(a->name, b->name, a->name_len))
        return MISMATCH("rank %zu registered '%.*s' as tensor %zu, rank 0 '%.*s' (register in the same order)", r,
                        (int)a->name_len, a->name, i, (int)b->name_len, b->name);
      if (a->averaged != b->averaged || a->dtype != b->dtype || a->sdtype != b->sdtype || a->ndim != b->ndim ||
          a->sharded != b->sharded || memcmp(a->global, b->global, sizeof a->global))
        return MISMATCH("tensor '%.*s' has another kind, dtype or global shape on rank %zu than on rank 0",
                        (int)a->name_len, a->name, r);
      if (memcmp(a->steps, b->steps, sizeof a->steps) || memcmp(a->prods, b->prods, sizeof a->prods))
        return MISMATCH("the zero-debias counters of '%.*s' differ between rank %zu and rank 0", (int)a->name_len,
                        a->name, r);
    }
  }
  for (size_t i = 0; i < d0->count; i++)
    if (d0->t[i].sharded) {
      ema_status st = check_tiling(all, world, i, err, cap);
      if (st != EMA_OK) return st;
    }
  return EMA_OK;
}

int desc_owns(const rdesc *all, size_t r, size_t i, int role) {
  const tdesc *t = &all[r].t[i];
  if (role == DR_STEPS || role == DR_PROD || !t->sharded)
    return r == 0 && (role >= DR_STEPS || box_volume(t->ndim, t->local) > 0);
  return box_volume(t->ndim, t->local) > 0;
}
