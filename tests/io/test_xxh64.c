/* XXH64 (src/common/xxh64.c) against the xxHash reference test vectors: the
   sanity buffer of xxHash's tests (byte i = top byte of PRIME32 * PRIME64^i)
   at the lengths and seeds the reference checks, and well-known strings. The
   values were cross-checked against the reference library (libxxhash 0.8.1).
   Streaming in every split must give the one-shot value. */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "common/xxh64.h"

#define PRIME32 2654435761u
#define PRIME64 11400714785074694797ull

static unsigned char sanity[2367];

static void fill_sanity(void) {
  uint64_t g = PRIME32;
  for (size_t i = 0; i < sizeof sanity; i++) {
    sanity[i] = (unsigned char)(g >> 56);
    g *= PRIME64;
  }
}

static void test_vectors(void) {
  static const struct {
    size_t len;
    uint64_t seed, want;
  } v[] = {
      {0, 0, 0xEF46DB3751D8E999ull},          {1, 0, 0xE934A84ADB052768ull},
      {1, PRIME32, 0x5014607643A9B4C3ull},    {14, 0, 0x8282DCC4994E35C8ull},
      {14, PRIME32, 0xC3BD6BF63DEB6DF0ull},   {222, 0, 0xB641AE8CB691C174ull},
      {222, PRIME32, 0x20CB8AB7AE10C14Aull},  {2367, 0, 0xA82418DDEC0EA581ull},
      {2367, PRIME32, 0xA36A93C18052673Aull},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    uint64_t got = ema__xxh64(sanity, v[i].len, v[i].seed);
    CHECK_MSG(got == v[i].want, "len %zu seed %llu: %016llx", v[i].len, (unsigned long long)v[i].seed,
              (unsigned long long)got);
  }
  static const struct {
    const char *s;
    uint64_t want;
  } t[] = {{"", 0xEF46DB3751D8E999ull},
           {"a", 0xD24EC4F1A98C6E5Bull},
           {"abc", 0x44BC2CF5AD770999ull},
           {"Nobody inspects the spammish repetition", 0xFBCEA83C8A378BF1ull}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    CHECK_MSG(ema__xxh64(t[i].s, strlen(t[i].s), 0) == t[i].want, "'%s'", t[i].s);
}

static void test_streaming(void) {
  /* every length up to 100 fed one byte at a time, and the long vector in two
     pieces at every split point */
  for (size_t n = 0; n <= 100; n++) {
    ema__xxh64_state s;
    ema__xxh64_init(&s, 7);
    for (size_t i = 0; i < n; i++) ema__xxh64_update(&s, sanity + i, 1);
    CHECK_MSG(ema__xxh64_digest(&s) == ema__xxh64(sanity, n, 7), "n %zu", n);
  }
  int bad = 0;
  for (size_t cut = 0; cut <= sizeof sanity; cut++) {
    ema__xxh64_state s;
    ema__xxh64_init(&s, PRIME32);
    ema__xxh64_update(&s, sanity, cut);
    uint64_t mid = ema__xxh64_digest(&s); /* digest does not disturb the state */
    ema__xxh64_update(&s, sanity + cut, sizeof sanity - cut);
    if (ema__xxh64_digest(&s) != 0xA36A93C18052673Aull || mid != ema__xxh64(sanity, cut, PRIME32)) bad++;
  }
  CHECK_MSG(bad == 0, "%d split points differ", bad);
}

int main(void) {
  fill_sanity();
  test_vectors();
  test_streaming();
  return check_report("test_xxh64");
}
