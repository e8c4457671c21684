/*
 * src/dist/digest.c: the content checksum of libema checkpoints (the same
 * function src/io/checkpoint.c writes as libema.checksum: a sum over tensors
 * of mix(hash(name), hash(bytes)), a 64-bit multiply-rotate hash over 8-byte
 * words in four lanes). Here it is streamed, so that consolidation writes
 * the checksum ema_save would write without holding a tensor in memory.
 * It must stay the same function as src/io's: test_dist_consolidate checks
 * consolidate's output against ema_save's byte for byte.
 */
#include <string.h>

#include "dist/dist.h"

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

void dh_init(dh_state *h) {
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

static void block(dh_state *h, const unsigned char *p) {
  for (int i = 0; i < 4; i++) h->lane[i] = rotl64(h->lane[i] ^ (load64(p + 8 * i) * P2), 31) * P1;
}

void dh_update(dh_state *h, const void *data, size_t n) {
  const unsigned char *p = (const unsigned char *)data;
  h->total += n;
  if (h->tail_len) {
    size_t take = 32 - h->tail_len < n ? 32 - h->tail_len : n;
    memcpy(h->tail + h->tail_len, p, take);
    h->tail_len += take;
    p += take;
    n -= take;
    if (h->tail_len < 32) return;
    block(h, h->tail);
    h->tail_len = 0;
  }
  for (; n >= 32; p += 32, n -= 32) block(h, p);
  if (n) memcpy(h->tail, p, n);
  h->tail_len = n;
}

uint64_t dh_final(const dh_state *h) {
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

uint64_t dh_bytes(const void *p, size_t n) {
  dh_state h;
  dh_init(&h);
  dh_update(&h, p, n);
  return dh_final(&h);
}

uint64_t dh_tensor(const char *name, uint64_t data_hash) {
  uint64_t x = dh_bytes(name, strlen(name)) ^ rotl64(data_hash, 17);
  x ^= x >> 31;
  x *= P1;
  x ^= x >> 29;
  return x;
}
