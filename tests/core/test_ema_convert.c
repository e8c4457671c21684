/*
 * ema_convert (include/ema/core.h) against the reference kernels
 * (ema_kernels_ref) for every pair of the floating dtypes, and the float64
 * -> half pairs against an oracle that shares no code with the library:
 * the nearest-even neighbour found by binary search among all finite half
 * values (ties to the even pattern; the overflow threshold is the midpoint
 * between the largest finite value and the next power of two). The inputs
 * include every 16-bit pattern, a stride through all 2^32 float patterns,
 * and for float64 the exact midpoints between consecutive half values and
 * the doubles just beside them (where a float32 detour would round twice).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ema/ema.h"
#include "kernels/kernels.h"

/* The bit patterns of two floats or two doubles are equal. */
static int same_f32(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }
static int same_f64(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* A half format: fraction bits, bias, pattern of +Inf. */
typedef struct half_fmt {
  ema_dtype dtype;
  int mbits, bias;
  uint16_t inf;
  ema_pair pair;
} half_fmt;
static const half_fmt F16 = {EMA_F16, 10, 15, 0x7C00u, EMA_PAIR_F16_F32};
static const half_fmt BF16 = {EMA_BF16, 7, 127, 0x7F80u, EMA_PAIR_BF16_F32};

/* Value of a non-negative finite pattern (or of the +Inf pattern, taken as
   the next power of two for the overflow midpoint), from the fields. */
static double half_value(const half_fmt *h, uint16_t bits) {
  unsigned e = (unsigned)bits >> h->mbits, m = bits & ((1u << h->mbits) - 1u);
  if (bits == h->inf) return ldexp(1.0, (int)(h->inf >> h->mbits) - h->bias);
  if (e == 0) return ldexp((double)m, 1 - h->bias - h->mbits);
  return ldexp((double)(m | (1u << h->mbits)), (int)e - h->bias - h->mbits);
}

/* Oracle: d rounded to the half format, nearest even, non-NaN d. */
static uint16_t oracle_round(const half_fmt *h, double d) {
  uint16_t sign = signbit(d) ? 0x8000u : 0u;
  double a = fabs(d);
  if (a >= half_value(h, h->inf)) return (uint16_t)(sign | h->inf);
  unsigned lo = 0, hi = h->inf; /* value(lo) <= a < value(hi) */
  while (hi - lo > 1) {
    unsigned mid = (lo + hi) / 2;
    if (half_value(h, (uint16_t)mid) <= a)
      lo = mid;
    else
      hi = mid;
  }
  double vl = half_value(h, (uint16_t)lo), vh = half_value(h, (uint16_t)hi);
  unsigned r;
  if (a - vl < vh - a)
    r = lo;
  else if (a - vl > vh - a)
    r = hi;
  else
    r = (lo & 1u) ? hi : lo;
  return (uint16_t)(sign | r);
}

static const ema_dtype floats[4] = {EMA_F32, EMA_F64, EMA_F16, EMA_BF16};

/* Every 16-bit pattern, widened and converted to the other half format. */
static void test_from_half(const half_fmt *h, const half_fmt *other) {
  static uint16_t src[65536], got16[65536], want16[65536];
  static float got32[65536], want32[65536];
  static double got64[65536];
  for (uint32_t i = 0; i < 65536; i++) src[i] = (uint16_t)i;
  CHECK(ema_convert(got32, EMA_F32, src, h->dtype, 65536) == EMA_OK);
  ema_kernels_ref.to_shadow[h->pair](want32, src, 65536);
  int bad = 0;
  for (uint32_t i = 0; i < 65536; i++) bad += !same_f32(got32[i], want32[i]);
  CHECK_MSG(bad == 0, "%s -> f32: %d patterns differ from ref", ema_dtype_name(h->dtype), bad);

  CHECK(ema_convert(got64, EMA_F64, src, h->dtype, 65536) == EMA_OK);
  bad = 0;
  for (uint32_t i = 0; i < 65536; i++) bad += !same_f64(got64[i], (double)want32[i]);
  CHECK_MSG(bad == 0, "%s -> f64: %d patterns differ from ref widened", ema_dtype_name(h->dtype), bad);

  CHECK(ema_convert(got16, other->dtype, src, h->dtype, 65536) == EMA_OK);
  ema_kernels_ref.from_shadow[other->pair](want16, want32, 65536);
  bad = 0;
  for (uint32_t i = 0; i < 65536; i++) bad += got16[i] != want16[i];
  CHECK_MSG(bad == 0, "%s -> %s: %d patterns differ from ref through f32", ema_dtype_name(h->dtype),
            ema_dtype_name(other->dtype), bad);
}

/* A stride through all float patterns: to each half (ref), to f64 (exact). */
static void test_from_f32(void) {
  enum { N = 1 << 20 };
  float *src = malloc(N * sizeof *src);
  double *got64 = malloc(N * sizeof *got64);
  uint16_t *got = malloc(N * sizeof *got), *want = malloc(N * sizeof *want);
  CHECK(src && got64 && got && want);
  if (!src || !got64 || !got || !want) goto out;
  for (uint32_t i = 0; i < N; i++) {
    uint32_t u = i * 4099u + (i & 7u);
    memcpy(&src[i], &u, sizeof u);
  }
  const half_fmt *hs[2] = {&F16, &BF16};
  for (int k = 0; k < 2; k++) {
    CHECK(ema_convert(got, hs[k]->dtype, src, EMA_F32, N) == EMA_OK);
    ema_kernels_ref.from_shadow[hs[k]->pair](want, src, N);
    int bad = 0;
    for (uint32_t i = 0; i < N; i++) bad += got[i] != want[i];
    CHECK_MSG(bad == 0, "f32 -> %s: %d differ from ref", ema_dtype_name(hs[k]->dtype), bad);
  }
  CHECK(ema_convert(got64, EMA_F64, src, EMA_F32, N) == EMA_OK);
  int bad = 0;
  for (uint32_t i = 0; i < N; i++) bad += !same_f64(got64[i], (double)src[i]);
  CHECK(bad == 0);
out:
  free(src);
  free(got64);
  free(got);
  free(want);
}

/* float64 sources: midpoints and their neighbours, random doubles, specials. */
static size_t make_doubles(const half_fmt *h, double *d, size_t cap) {
  size_t n = 0;
  uint64_t s = 0x9E3779B97F4A7C15ull;
  for (unsigned b = 0; b < h->inf && n + 6 <= cap; b += (b < 64 || b > h->inf - 64u) ? 1u : 7u) {
    double mid = 0.5 * (half_value(h, (uint16_t)b) + half_value(h, (uint16_t)(b + 1)));
    double v[3] = {mid, nextafter(mid, INFINITY), nextafter(mid, 0)};
    for (int j = 0; j < 3; j++) {
      d[n++] = v[j];
      d[n++] = -v[j];
    }
  }
  while (n < cap - 16) { /* random doubles with exponents around the format's range */
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    int e = (int)((s >> 33) % (unsigned)(2 * h->bias + 40)) - h->bias - 24;
    double m = 1.0 + (double)(s >> 12) * 0x1p-52;
    d[n++] = ((s >> 11) & 1) ? -ldexp(m, e) : ldexp(m, e);
  }
  const double specials[] = {0.0,      -0.0,      INFINITY, -INFINITY,    1e300,   -1e300,
                             4.9e-324, -4.9e-324, 65504.0,  65519.999999, 65520.0, 3.3895313892515355e38};
  for (size_t j = 0; j < sizeof specials / sizeof specials[0] && n < cap; j++) d[n++] = specials[j];
  return n;
}

static void test_from_f64(const half_fmt *h) {
  enum { CAP = 1 << 19 };
  double *src = malloc(CAP * sizeof *src);
  uint16_t *got = malloc(CAP * sizeof *got);
  float *got32 = malloc(CAP * sizeof *got32);
  CHECK(src && got && got32);
  if (!src || !got || !got32) goto out;
  size_t n = make_doubles(h, src, CAP);
  CHECK(ema_convert(got, h->dtype, src, EMA_F64, n) == EMA_OK);
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    uint16_t want = oracle_round(h, src[i]);
    if (got[i] != want && bad++ < 5)
      fprintf(stderr, "f64 %a -> %s %04x, want %04x\n", src[i], ema_dtype_name(h->dtype), got[i], want);
  }
  CHECK_MSG(bad == 0, "f64 -> %s: %zu of %zu differ from the oracle", ema_dtype_name(h->dtype), bad, n);
  CHECK(ema_convert(got32, EMA_F32, src, EMA_F64, n) == EMA_OK);
  bad = 0;
  for (size_t i = 0; i < n; i++) bad += !same_f32(got32[i], (float)src[i]);
  CHECK(bad == 0);
  /* NaN: stays NaN with its sign */
  double nan2[2] = {NAN, -NAN};
  uint16_t hn[2];
  CHECK(ema_convert(hn, h->dtype, nan2, EMA_F64, 2) == EMA_OK);
  CHECK((hn[0] & 0x7FFFu) > h->inf && (hn[1] & 0x8000u) && (hn[1] & 0x7FFFu) > h->inf);
out:
  free(src);
  free(got);
  free(got32);
}

/* Same dtype: a copy for every dtype; integers with another dtype: refused,
   nothing written; bad arguments. */
static void test_rules(void) {
  for (int a = EMA_F32; a <= EMA_I64; a++) {
    unsigned char src[64], dst[64];
    for (int i = 0; i < 64; i++) src[i] = (unsigned char)(i * 37 + 1);
    memset(dst, 0xAB, sizeof dst);
    CHECK(ema_convert(dst, (ema_dtype)a, src, (ema_dtype)a, 64 / ema_dtype_size((ema_dtype)a)) == EMA_OK);
    CHECK(memcmp(dst, src, 64) == 0);
    for (int b = EMA_F32; b <= EMA_I64; b++) {
      if (a == b || (a < EMA_I32 && b < EMA_I32)) continue;
      memset(dst, 0xAB, sizeof dst);
      CHECK(ema_convert(dst, (ema_dtype)b, src, (ema_dtype)a, 4) == EMA_E_DTYPE);
      CHECK(dst[0] == 0xAB && dst[63] == 0xAB);
    }
  }
  float f = 1;
  CHECK(ema_convert(NULL, EMA_F16, &f, EMA_F32, 1) == EMA_E_INVALID_ARG);
  CHECK(ema_convert(&f, EMA_F32, NULL, EMA_F16, 1) == EMA_E_INVALID_ARG);
  CHECK(ema_convert(NULL, EMA_F16, NULL, EMA_F32, 0) == EMA_OK);
  CHECK(ema_convert(&f, (ema_dtype)6, &f, EMA_F32, 1) == EMA_E_INVALID_ARG);
  CHECK(ema_convert(&f, EMA_F32, &f, (ema_dtype)-1, 1) == EMA_E_INVALID_ARG);
  /* every floating pair is accepted */
  for (int a = 0; a < 4; a++)
    for (int b = 0; b < 4; b++) {
      double in[2] = {0}, out[2];
      CHECK(ema_convert(out, floats[b], in, floats[a], 1) == EMA_OK);
    }
}

int main(void) {
  test_from_half(&F16, &BF16);
  test_from_half(&BF16, &F16);
  test_from_f32();
  test_from_f64(&F16);
  test_from_f64(&BF16);
  test_rules();
  return check_report("test_ema_convert");
}
