/*
 * The scalar conversions of src/kernels (ema_bf16_to_f32, ema_f32_to_bf16,
 * ema_f16_to_f32, ema_f32_to_f16) against oracles that share no code with
 * them:
 *  - widening: all 65536 bf16 and f16 bit patterns, each value built from
 *    its fields with ldexp (the f16 subnormals, the Inf, the NaNs with their
 *    expected quiet payload) and compared bit for bit;
 *  - narrowing: every half value round-trips exactly; every midpoint between
 *    consecutive half values goes to the even one, and the floats just above
 *    and below it go up and down; overflow thresholds (65504, 65519.99...,
 *    65520 for f16; the same for bf16) and subnormal boundaries;
 *  - a stride through all 2^32 float bit patterns checked against a
 *    round-to-nearest-even found by binary search in the widened table, and
 *    (where the compiler has it, e.g. x86-64 GCC 12) against _Float16.
 * NaN rules checked: f16 -> f32 and f32 -> f16/bf16 make a NaN quiet and keep
 * its sign and top payload bits (as F16C does); bf16 -> f32 is an exact
 * shift and keeps a signaling NaN signaling.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "kernels/kernels.h"

/* f16 and bf16 values of every bit pattern, built from the fields. */
static float f16_value[65536];
static float bf16_value[65536];

static float from_fields(uint32_t sign, uint32_t exp, uint32_t mant, int mant_bits, int exp_bias, uint32_t exp_max) {
  double v;
  if (exp == exp_max) {
    v = mant ? (double)NAN : (double)INFINITY;
  } else if (exp == 0) {
    v = ldexp((double)mant, 1 - exp_bias - mant_bits);
  } else {
    v = ldexp((double)(mant | (1u << mant_bits)), (int)exp - exp_bias - mant_bits);
  }
  float f = (float)v; /* exact: every half value is a float */
  return sign ? -f : f;
}

static void build_tables(void) {
  for (uint32_t h = 0; h < 65536; h++) {
    f16_value[h] = from_fields(h >> 15, (h >> 10) & 0x1Fu, h & 0x3FFu, 10, 15, 0x1Fu);
    bf16_value[h] = from_fields(h >> 15, (h >> 7) & 0xFFu, h & 0x7Fu, 7, 127, 0xFFu);
  }
}

static int f16_is_nan(uint32_t h) { return (h & 0x7C00u) == 0x7C00u && (h & 0x3FFu); }
static int bf16_is_nan(uint32_t h) { return (h & 0x7F80u) == 0x7F80u && (h & 0x7Fu); }

/* ---- widening ---------------------------------------------------------------- */

static void test_widen(void) {
  int bad16 = 0, badb = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    uint32_t got = ema_f32_bits(ema_f16_to_f32((uint16_t)h));
    uint32_t want;
    if (f16_is_nan(h)) /* quiet, sign and payload kept */
      want = ((h & 0x8000u) << 16) | 0x7FC00000u | ((h & 0x3FFu) << 13);
    else
      want = ema_f32_bits(f16_value[h]);
    if (got != want && bad16++ < 5)
      fprintf(stderr, "f16 %04x -> %08x, want %08x\n", (unsigned)h, (unsigned)got, (unsigned)want);

    got = ema_f32_bits(ema_bf16_to_f32((uint16_t)h));
    if (bf16_is_nan(h)) {
      want = h << 16; /* exact widening: even a signaling NaN stays as it is */
      if (!isnan(ema_bits_f32(got)) && badb++ < 5)
        fprintf(stderr, "bf16 %04x -> %08x is not NaN\n", (unsigned)h, (unsigned)got);
    } else {
      want = ema_f32_bits(bf16_value[h]);
    }
    if (got != want && badb++ < 5)
      fprintf(stderr, "bf16 %04x -> %08x, want %08x\n", (unsigned)h, (unsigned)got, (unsigned)want);
  }
  CHECK_MSG(bad16 == 0, "%d f16 -> f32 mismatches", bad16);
  CHECK_MSG(badb == 0, "%d bf16 -> f32 mismatches", badb);
}

/* ---- narrowing: the oracle ------------------------------------------------------ */

typedef struct half_fmt {
  const char *name;
  const float *value;        /* table of all 65536 values */
  uint32_t inf;              /* bit pattern of +Inf */
  uint32_t quiet;            /* quiet bit */
  int shift;                 /* f32 mantissa bits below the half's payload */
  uint16_t (*narrow)(float); /* function under test */
} half_fmt;

static const half_fmt fmt_f16 = {"f16", f16_value, 0x7C00u, 0x0200u, 13, ema_f32_to_f16};
static const half_fmt fmt_bf16 = {"bf16", bf16_value, 0x7F80u, 0x0040u, 16, ema_f32_to_bf16};

/* Round-to-nearest-even of x to the format, found from the value table:
   the largest positive pattern not above |x|, then the nearer of it and the
   next one, the even one on a tie. Past the largest finite value the next
   one is Inf, which stands for max + ulp (its "even" neighbour). */
static uint32_t oracle(const half_fmt *fm, float x) {
  uint32_t u = ema_f32_bits(x), sign = (u >> 16) & 0x8000u;
  if (isnan(x)) return sign | fm->inf | fm->quiet | (((u & 0x7FFFFFu) >> fm->shift) & (fm->quiet * 2u - 1u));
  double a = fabs((double)x);
  uint32_t lo = 0, hi = fm->inf; /* value[lo] <= a < value[hi] unless a >= max */
  if (a >= (double)fm->value[fm->inf]) return sign | fm->inf;
  while (hi - lo > 1) {
    uint32_t mid = (lo + hi) / 2;
    if ((double)fm->value[mid] <= a)
      lo = mid;
    else
      hi = mid;
  }
  double vlo = (double)fm->value[lo], vhi;
  if (hi == fm->inf) /* max + ulp, the ulp of max being max - its predecessor */
    vhi = vlo + (vlo - (double)fm->value[lo - 1]);
  else
    vhi = (double)fm->value[hi];
  double dlo = a - vlo, dhi = vhi - a;
  uint32_t r = (dlo < dhi) ? lo : (dhi < dlo) ? hi : ((lo & 1u) ? hi : lo);
  return sign | r;
}

static int check_narrow(const half_fmt *fm, float x, uint32_t want, int *bad) {
  uint32_t got = fm->narrow(x);
  if (got != want) {
    if ((*bad)++ < 8)
      fprintf(stderr, "%s(%08x = %.9g) -> %04x, want %04x\n", fm->name, (unsigned)ema_f32_bits(x), (double)x,
              (unsigned)got, (unsigned)want);
    return 0;
  }
  return 1;
}

/* Every half value, both neighbours' midpoint, and the floats either side. */
static void test_narrow_table(const half_fmt *fm) {
  int bad = 0, bad_oracle = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    int nan = (h & 0x7FFFu) > fm->inf;
    /* a NaN as the float with the same sign and payload, signaling ones too */
    float x = nan ? ema_bits_f32(((h & 0x8000u) << 16) | 0x7F800000u | ((h & (fm->quiet * 2u - 1u)) << fm->shift))
                  : fm->value[h];
    check_narrow(fm, x, nan ? (h | fm->quiet) : h, &bad); /* round trip */
    if (!nan && oracle(fm, x) != h && bad_oracle++ < 4)
      fprintf(stderr, "%s oracle broken at %04x\n", fm->name, (unsigned)h);
  }
  for (uint32_t h = 0; h < fm->inf; h++) { /* positive finite h and its successor */
    for (uint32_t sign = 0; sign <= 0x8000u; sign += 0x8000u) {
      double lo = (double)fm->value[h];
      double hi = (h + 1 == fm->inf) ? lo + (lo - (double)fm->value[h - 1]) : (double)fm->value[h + 1];
      float mid = (float)((lo + hi) / 2); /* exact: needs one more bit than the half */
      uint32_t even = (h & 1u) ? h + 1 : h;
      float s = sign ? -1.0f : 1.0f;
      check_narrow(fm, s * mid, sign | even, &bad);
      check_narrow(fm, s * nextafterf(mid, 0.0f), sign | h, &bad);
      check_narrow(fm, s * nextafterf(mid, INFINITY), sign | (h + 1), &bad);
    }
  }
  CHECK_MSG(bad == 0, "%s: %d round-trip/midpoint mismatches", fm->name, bad);
  CHECK_MSG(bad_oracle == 0, "%s: oracle disagrees with the table", fm->name);
}

static void test_narrow_edges(void) {
  int bad = 0;
  const half_fmt *h = &fmt_f16, *b = &fmt_bf16;
  /* f16 overflow */
  check_narrow(h, 65504.0f, 0x7BFFu, &bad);
  check_narrow(h, 65519.99f, 0x7BFFu, &bad);
  check_narrow(h, nextafterf(65520.0f, 0.0f), 0x7BFFu, &bad);
  check_narrow(h, 65520.0f, 0x7C00u, &bad);
  check_narrow(h, -65520.0f, 0xFC00u, &bad);
  check_narrow(h, 1e30f, 0x7C00u, &bad);
  check_narrow(h, INFINITY, 0x7C00u, &bad);
  check_narrow(h, -INFINITY, 0xFC00u, &bad);
  /* f16 subnormal boundaries */
  check_narrow(h, ldexpf(1.0f, -14), 0x0400u, &bad); /* smallest normal */
  check_narrow(h, nextafterf(ldexpf(1.0f, -14), 0.0f), 0x0400u, &bad);
  check_narrow(h, ldexpf(1023.0f, -24), 0x03FFu, &bad); /* largest subnormal */
  check_narrow(h, ldexpf(1023.5f, -24), 0x0400u, &bad); /* tie -> even */
  check_narrow(h, ldexpf(1.0f, -24), 0x0001u, &bad);    /* smallest subnormal */
  check_narrow(h, ldexpf(1.5f, -24), 0x0002u, &bad);    /* tie -> even */
  check_narrow(h, ldexpf(2.5f, -24), 0x0002u, &bad);    /* tie -> even */
  check_narrow(h, ldexpf(1.0f, -25), 0x0000u, &bad);    /* tie -> 0 */
  check_narrow(h, nextafterf(ldexpf(1.0f, -25), 1.0f), 0x0001u, &bad);
  check_narrow(h, -ldexpf(1.0f, -25), 0x8000u, &bad);
  check_narrow(h, -nextafterf(ldexpf(1.0f, -25), 1.0f), 0x8001u, &bad);
  check_narrow(h, ldexpf(1.0f, -26), 0x0000u, &bad);
  check_narrow(h, ema_bits_f32(0x00000001u), 0x0000u, &bad); /* f32 subnormals */
  check_narrow(h, ema_bits_f32(0x807FFFFFu), 0x8000u, &bad);
  check_narrow(h, -0.0f, 0x8000u, &bad);
  /* bf16 overflow and subnormals */
  check_narrow(b, ema_bits_f32(0x7F7F7FFFu), 0x7F7Fu, &bad);
  check_narrow(b, ema_bits_f32(0x7F7F8000u), 0x7F80u, &bad); /* tie, odd -> Inf */
  check_narrow(b, ema_bits_f32(0x7F7FFFFFu), 0x7F80u, &bad); /* FLT_MAX */
  check_narrow(b, ema_bits_f32(0xFF7F8000u), 0xFF80u, &bad);
  check_narrow(b, ema_bits_f32(0x00008000u), 0x0000u, &bad); /* tie -> 0 */
  check_narrow(b, ema_bits_f32(0x00008001u), 0x0001u, &bad);
  check_narrow(b, ema_bits_f32(0x00018000u), 0x0002u, &bad); /* tie -> even */
  check_narrow(b, ema_bits_f32(0x007FFFFFu), 0x0080u, &bad); /* to smallest normal */
  check_narrow(b, ema_bits_f32(0x80000001u), 0x8000u, &bad);
  /* NaNs: sign and top payload kept, made quiet */
  check_narrow(h, ema_bits_f32(0x7F800001u), 0x7E00u, &bad); /* signaling, low payload */
  check_narrow(h, ema_bits_f32(0xFF800001u), 0xFE00u, &bad);
  check_narrow(h, ema_bits_f32(0x7FA00000u), 0x7F00u, &bad);
  check_narrow(h, ema_bits_f32(0x7FC02000u), 0x7E01u, &bad);
  check_narrow(h, ema_bits_f32(0x7FFFFFFFu), 0x7FFFu, &bad);
  check_narrow(b, ema_bits_f32(0x7F800001u), 0x7FC0u, &bad);
  check_narrow(b, ema_bits_f32(0xFF810000u), 0xFFC1u, &bad);
  check_narrow(b, ema_bits_f32(0x7FC00000u), 0x7FC0u, &bad);
  check_narrow(b, ema_bits_f32(0x7FFFFFFFu), 0x7FFFu, &bad);
  CHECK_MSG(bad == 0, "%d edge mismatches", bad);
}

/* A stride through every float bit pattern (the stride is odd, so the low
   bits vary too), against the oracle and, where available, _Float16. */
static void test_narrow_sweep(void) {
  const uint64_t step = 1021; /* about 4.2 million floats */
  int bad16 = 0, badb = 0;
  long long n = 0;
  for (uint64_t k = 0; k < (1ull << 32); k += step) {
    float x = ema_bits_f32((uint32_t)k);
    check_narrow(&fmt_f16, x, oracle(&fmt_f16, x), &bad16);
    check_narrow(&fmt_bf16, x, oracle(&fmt_bf16, x), &badb);
    n++;
  }
  CHECK_MSG(bad16 == 0, "f16 sweep: %d of %lld mismatches", bad16, n);
  CHECK_MSG(badb == 0, "bf16 sweep: %d of %lld mismatches", badb, n);
}

#if defined(__FLT16_MAX__)
/* The compiler's own conversions (libgcc soft-fp on x86-64 without
   AVX512-FP16): another independent implementation, NaNs included. */
static void test_float16_type(void) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    uint16_t hb = (uint16_t)h;
    _Float16 t;
    memcpy(&t, &hb, sizeof t);
    float want = (float)t;
    if (ema_f32_bits(ema_f16_to_f32(hb)) != ema_f32_bits(want) && bad++ < 5)
      fprintf(stderr, "_Float16 widen %04x: %08x vs %08x\n", (unsigned)h, (unsigned)ema_f32_bits(ema_f16_to_f32(hb)),
              (unsigned)ema_f32_bits(want));
  }
  for (uint64_t k = 0; k < (1ull << 32); k += 2039) {
    float x = ema_bits_f32((uint32_t)k);
    _Float16 t = (_Float16)x;
    uint16_t want;
    memcpy(&want, &t, sizeof want);
    check_narrow(&fmt_f16, x, want, &bad);
  }
  CHECK_MSG(bad == 0, "%d mismatches against _Float16", bad);
}
#endif

int main(void) {
  build_tables();
  test_widen();
  test_narrow_table(&fmt_f16);
  test_narrow_table(&fmt_bf16);
  test_narrow_edges();
  test_narrow_sweep();
#if defined(__FLT16_MAX__)
  test_float16_type();
#else
  printf("test_convert: no _Float16 in this compiler, that comparison skipped\n");
#endif
  return check_report("test_convert");
}
