/*
 * src/io/ckpt_common.c: key names, metadata building and the 0.1 checksum,
 * shared by save, load and export.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/ckpt.h"
#include "io/st_internal.h"

char *ckpt_join3(const char *a, const char *b, const char *c) {
  size_t la = strlen(a), lb = strlen(b), lc = c ? strlen(c) : 0;
  char *s = (char *)ema__malloc(la + 1 + lb + (c ? 1 + lc : 0) + 1);
  if (!s) return NULL;
  memcpy(s, a, la);
  s[la] = '/';
  memcpy(s + la + 1, b, lb);
  if (c) {
    s[la + 1 + lb] = '/';
    memcpy(s + la + 2 + lb, c, lc);
    s[la + 2 + lb + lc] = '\0';
  } else {
    s[la + 1 + lb] = '\0';
  }
  return s;
}

int ckpt_state_keys(const char *name, const char *ename, int debias, char *keys[4]) {
  static const char *const extra[3] = {"biased", "local_step", "decay_product"};
  int n = debias ? 4 : 1;
  keys[0] = ckpt_join3(name, ename, NULL);
  for (int j = 1; j < 4; j++) keys[j] = j < n ? ckpt_join3(name, ename, extra[j - 1]) : NULL;
  for (int j = 0; j < n; j++)
    if (!keys[j]) {
      for (int i = 0; i < n; i++) free(keys[i]);
      return 0;
    }
  return n;
}

void ckpt_quote(char *dst, size_t cap, const char *s) { st_quote(dst, cap, s, s ? strlen(s) : 0); } /* ema_escape */

ema_status ckpt_fail(const ema_ctx *ctx, ema_status st, const char *fn, const char *err) {
  return ema__fail(ctx, st, "%s: %s", fn, err);
}

void ckpt_meta_add(ckpt_meta *mb, const char *key, const char *value) {
  st_wmeta *e = &mb->m[mb->n];
  snprintf(mb->keys[mb->n], sizeof mb->keys[0], "%s", key);
  e->key = mb->keys[mb->n];
  e->value = value;
  mb->n++;
}

void ckpt_meta_addf(ckpt_meta *mb, const char *key, double v) {
  snprintf(mb->vals[mb->n], sizeof mb->vals[0], "%.17g", v);
  ckpt_meta_add(mb, key, mb->vals[mb->n]);
}

void ckpt_meta_addi(ckpt_meta *mb, const char *key, int64_t v) {
  snprintf(mb->vals[mb->n], sizeof mb->vals[0], "%" PRId64, v);
  ckpt_meta_add(mb, key, mb->vals[mb->n]);
}

void ckpt_meta_schedules(ckpt_meta *mb, const ema_ctx *ctx) {
  char key[64];
  ckpt_meta_addi(mb, "ema.averages", (int64_t)ctx->n_avg);
  for (size_t k = 0; k < ctx->n_avg; k++) {
    const ema_schedule *s = &ctx->avg[k].sched;
#define AVG_KEY(field) (snprintf(key, sizeof key, "ema.average.%zu." field, k), key)
    ckpt_meta_add(mb, AVG_KEY("name"), ctx->avg[k].name);
    ckpt_meta_add(mb, AVG_KEY("schedule"), ema__schedule_name(s->kind));
    ckpt_meta_addf(mb, AVG_KEY("decay"), s->decay);
    ckpt_meta_addf(mb, AVG_KEY("min_decay"), s->min_decay);
    ckpt_meta_addf(mb, AVG_KEY("inv_gamma"), s->inv_gamma);
    ckpt_meta_addf(mb, AVG_KEY("power"), s->power);
    ckpt_meta_addf(mb, AVG_KEY("gamma"), s->gamma);
    ckpt_meta_addf(mb, AVG_KEY("sigma_rel"), s->sigma_rel);
    ckpt_meta_addf(mb, AVG_KEY("halflife"), s->halflife);
    ckpt_meta_addi(mb, AVG_KEY("update_after_step"), s->update_after_step);
#undef AVG_KEY
  }
}

/* ------------------------------------------------------------------------ */
/* The 0.1 checksum: XXH64's primes, but not XXH64. 64-bit multiply-rotate   */
/* over 8-byte words in four lanes, then a sum over tensors of               */
/* mix(hash(name), hash(bytes)).                                              */
/* ------------------------------------------------------------------------ */

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

void ckpt_legacy_init(ckpt_legacy_hash *h) {
  h->lane[0] = P1;
  h->lane[1] = P2;
  h->lane[2] = P3;
  h->lane[3] = P1 ^ P2;
  h->tail_len = 0;
  h->total = 0;
}

static uint64_t load64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static void legacy_block(ckpt_legacy_hash *h, const unsigned char *p) {
  for (int i = 0; i < 4; i++) h->lane[i] = rotl64(h->lane[i] ^ (load64(p + 8 * i) * P2), 31) * P1;
}

void ckpt_legacy_update(ckpt_legacy_hash *h, const void *data, size_t n) {
  const unsigned char *p = (const unsigned char *)data;
  h->total += n;
  if (h->tail_len) {
    size_t take = 32 - h->tail_len < n ? 32 - h->tail_len : n;
    memcpy(h->tail + h->tail_len, p, take);
    h->tail_len += take;
    p += take;
    n -= take;
    if (h->tail_len < 32) return;
    legacy_block(h, h->tail);
    h->tail_len = 0;
  }
  for (; n >= 32; p += 32, n -= 32) legacy_block(h, p);
  memcpy(h->tail, p, n);
  h->tail_len = n;
}

static uint64_t legacy_final(const ckpt_legacy_hash *h) {
  uint64_t x = rotl64(h->lane[0], 1) + rotl64(h->lane[1], 7) + rotl64(h->lane[2], 12) + rotl64(h->lane[3], 18);
  x ^= h->total * P3;
  for (size_t i = 0; i < h->tail_len; i++) x = rotl64(x ^ (h->tail[i] * P3), 11) * P1;
  x ^= x >> 33;
  x *= P2;
  x ^= x >> 29;
  x *= P3;
  x ^= x >> 32;
  return x;
}

uint64_t ckpt_legacy_term(const char *name, const ckpt_legacy_hash *data) {
  ckpt_legacy_hash h;
  ckpt_legacy_init(&h);
  ckpt_legacy_update(&h, name, strlen(name));
  uint64_t x = legacy_final(&h) ^ rotl64(legacy_final(data), 17);
  x ^= x >> 31;
  x *= P1;
  x ^= x >> 29;
  return x;
}
