/*
 * src/common/xxh64.h: XXH64, the 64-bit xxHash (Yann Collet), exactly as its
 * specification defines it (xxHash's doc/xxhash_spec.md, "XXH64
 * algorithm"): same output as the reference library and `xxhsum -H64` for
 * every input and seed. Written here from the specification; no code of the
 * reference is used. Little-endian reads on every host.
 *
 * One-shot (ema__xxh64) or streaming (init, update any number of times,
 * digest; the digest does not change the state). Thread-safe: no globals.
 */
#ifndef EMA_COMMON_XXH64_H
#define EMA_COMMON_XXH64_H

#include <stddef.h>
#include <stdint.h>

typedef struct ema__xxh64_state {
  uint64_t acc[4];
  uint64_t total;        /* bytes consumed so far */
  unsigned char buf[32]; /* a partial stripe */
  size_t buf_len;
  uint64_t seed;
} ema__xxh64_state;

uint64_t ema__xxh64(const void *data, size_t len, uint64_t seed);
void ema__xxh64_init(ema__xxh64_state *s, uint64_t seed);
void ema__xxh64_update(ema__xxh64_state *s, const void *data, size_t len);
uint64_t ema__xxh64_digest(const ema__xxh64_state *s);

#endif /* EMA_COMMON_XXH64_H */
