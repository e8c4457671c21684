/*
 * Every kernel table this machine can run ("ref", "avx2", "avx512"; one the build or
 * the CPU lacks is skipped with a note) against the scalar reference
 * ema_kernels_ref, bit for bit:
 *  - every pair and every kernel (update, div, to_shadow, from_shadow),
 *    every length 0..300, the destination and the source each misaligned by
 *    0..3 elements, on values mixing specials (quiet and signaling NaNs with
 *    payloads, +-Inf, +-0, subnormals of each format, huge and tiny values,
 *    rounding ties), random bit patterns, realistic values, and parameters
 *    close to their shadow (tiny and subnormal differences). Bytes around the
 *    destination are compared too, and the source must be left untouched;
 *  - every coefficient of a list (0, 1, Inf, subnormal, negative, usual
 *    1 - decay values) at selected lengths;
 *  - exhaustive conversions: all 65536 bf16/f16 patterns widened, floats of
 *    every exponent with boundary mantissas and a stride through all 2^32
 *    patterns narrowed; half-shadow update and div over all 65536 shadow
 *    patterns; f32 and f64 updates over the cross product of the specials;
 *  - a long run (30011 elements) of every kernel;
 *  - swap against the expected exchange, all lengths 0..300 and byte offsets;
 *  - dispatch: ema_kernels_by_name, and EMA_ISA=ref|avx2|avx512|bogus in
 *    forked children (each child makes the process-wide choice once); the
 *    ISA tables derive from ref (what an ISA does not implement is ref's).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "kernels/kernels.h"

/* ---- deterministic random numbers (splitmix64) ------------------------------ */

static uint64_t rng_state = 0x5EEDC0FFEE123457ull;

static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static unsigned rnd_below(unsigned n) { return (unsigned)(rnd() % n); }

/* ---- element kinds and pairs ------------------------------------------------- */

typedef enum kind { K_F32, K_F64, K_BF16, K_F16 } kind;

static size_t kind_size(kind k) { return k == K_F64 ? 8 : k == K_F32 ? 4 : 2; }

static uint64_t get_elem(kind k, const unsigned char *base, size_t i) {
  uint64_t x = 0;
  if (k == K_F64) {
    memcpy(&x, base + i * 8, 8);
  } else if (k == K_F32) {
    uint32_t u;
    memcpy(&u, base + i * 4, 4);
    x = u;
  } else {
    uint16_t h;
    memcpy(&h, base + i * 2, 2);
    x = h;
  }
  return x;
}

static void put_elem(kind k, unsigned char *base, size_t i, uint64_t x) {
  if (k == K_F64) {
    memcpy(base + i * 8, &x, 8);
  } else if (k == K_F32) {
    uint32_t u = (uint32_t)x;
    memcpy(base + i * 4, &u, 4);
  } else {
    uint16_t h = (uint16_t)x;
    memcpy(base + i * 2, &h, 2);
  }
}

typedef struct pair_info {
  const char *name;
  kind param, shadow;
} pair_info;

static const pair_info pairs[EMA_PAIR_COUNT] = {
    {"f32", K_F32, K_F32},      {"f64", K_F64, K_F64},          {"bf16->f32", K_BF16, K_F32},
    {"f16->f32", K_F16, K_F32}, {"bf16->bf16", K_BF16, K_BF16}, {"f16->f16", K_F16, K_F16},
};

enum { KN_UPDATE, KN_DIV, KN_TO, KN_FROM, KN_COUNT };
static const char *const kernel_names[KN_COUNT] = {"update", "div", "to_shadow", "from_shadow"};

/* Destination and source kinds of a kernel on a pair. */
static kind dst_kind(int p, int kern) { return kern == KN_FROM ? pairs[p].param : pairs[p].shadow; }
static kind src_kind(int p, int kern) {
  return (kern == KN_UPDATE || kern == KN_TO) ? pairs[p].param : pairs[p].shadow;
}

static void invoke(const ema_kernels *k, int p, int kern, void *a, const void *b, size_t n, ema_coef c) {
  switch (kern) {
    case KN_UPDATE:
      k->update[p](a, b, n, c);
      break;
    case KN_DIV:
      k->div[p](a, b, n, c);
      break;
    case KN_TO:
      k->to_shadow[p](a, b, n);
      break;
    default:
      k->from_shadow[p](a, b, n);
      break;
  }
}

/* ---- values -------------------------------------------------------------------- */

static const uint32_t special_f32[] = {
    0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u,              /* +-0, +-Inf */
    0x7FC00000u, 0xFFC00000u, 0x7FC12345u, 0xFFD5A5A5u, 0x7FFFFFFFu, /* quiet NaNs */
    0x7F800001u, 0xFF800001u, 0x7FA00000u, 0x7FBFFFFFu, 0xFF812345u, /* signaling */
    0x7F802000u, 0x7F810000u,                                        /* sNaN, lowest f16 / bf16 payload bit */
    0x00000001u, 0x80000001u, 0x007FFFFFu, 0x00400000u,              /* f32 subnormals */
    0x00800000u, 0x80800000u, 0x7F7FFFFFu, 0xFF7FFFFFu,              /* min normal, max */
    0x7F7F8000u, 0x7F7F7FFFu,                                        /* bf16 overflow tie and just below */
    0x3F800000u, 0xBF800000u, 0x3F808000u, 0x3F818000u, 0x3F800001u, /* 1, bf16 ties */
    0x3F801000u, 0x3F803000u,                                        /* f16 ties at 1 */
    0x477FE000u, 0x477FEFFFu, 0x477FF000u, 0x47800000u, 0xC77FF000u, /* f16 overflow */
    0x33800000u, 0x33000000u, 0x33000001u, 0x33C00000u,              /* f16 subnormal edge */
    0x38800000u, 0x387FFFFFu, 0x387FC000u, 0x387FE000u,              /* f16 normal edge */
    0x7E967699u, 0x0DA24260u, 0x3DCCCCCDu, 0x38D1B717u,              /* 1e38 1e-30 .1 1e-4 */
};

static const uint64_t special_f64[] = {
    0x0000000000000000ull, 0x8000000000000000ull, 0x7FF0000000000000ull, 0xFFF0000000000000ull, 0x7FF8000000000000ull,
    0xFFF8000000000000ull, 0x7FF8000000012345ull, 0x7FF0000000000001ull, 0xFFF4000000000000ull, 0x7FF7FFFFFFFFFFFFull,
    0x0000000000000001ull, 0x800FFFFFFFFFFFFFull, 0x0010000000000000ull, 0x7FEFFFFFFFFFFFFFull, 0x3FF0000000000000ull,
    0xBFF0000000000000ull, 0x3FF0000000000001ull, 0x3FB999999999999Aull, 0x3F1A36E2EB1C432Dull, 0x7E37E43C8800759Cull,
    0x01A56E1FC2F8F359ull,
};

static const uint16_t special_bf16[] = {
    0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0xFFC0, 0x7FC5, 0xFFFF, 0x7F81, 0xFF81, 0x7FA0, 0x7FBF, 0x0001,
    0x8001, 0x007F, 0x0080, 0x8080, 0x7F7F, 0xFF7F, 0x3F80, 0xBF80, 0x3F81, 0x3DCD, 0x38D2, 0x477F,
};

static const uint16_t special_f16[] = {
    0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE00, 0x7E55, 0xFFFF, 0x7C01, 0xFC01, 0x7D00, 0x7DFF, 0x0001,
    0x8001, 0x03FF, 0x83FF, 0x0400, 0x8400, 0x7BFF, 0xFBFF, 0x3C00, 0xBC00, 0x3C01, 0x2E66, 0x068E, 0x0200,
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t special(kind k, unsigned i) {
  switch (k) {
    case K_F32:
      return special_f32[i % COUNT(special_f32)];
    case K_F64:
      return special_f64[i % COUNT(special_f64)];
    case K_BF16:
      return special_bf16[i % COUNT(special_bf16)];
    default:
      return special_f16[i % COUNT(special_f16)];
  }
}

static unsigned special_count(kind k) {
  switch (k) {
    case K_F32:
      return (unsigned)COUNT(special_f32);
    case K_F64:
      return (unsigned)COUNT(special_f64);
    case K_BF16:
      return (unsigned)COUNT(special_bf16);
    default:
      return (unsigned)COUNT(special_f16);
  }
}

/* A double as the bit pattern of kind k (rounded to nearest even). */
static uint64_t from_double(kind k, double x) {
  switch (k) {
    case K_F64:
      return ema_f64_bits(x);
    case K_F32:
      return ema_f32_bits((float)x);
    case K_BF16:
      return ema_f32_to_bf16((float)x);
    default:
      return ema_f32_to_f16((float)x);
  }
}

/* Widen a bit pattern of kind k to double (NaN payloads do not matter here). */
static double to_double(kind k, uint64_t x) {
  switch (k) {
    case K_F64: {
      double d;
      memcpy(&d, &x, sizeof d);
      return d;
    }
    case K_F32:
      return (double)ema_bits_f32((uint32_t)x);
    case K_BF16:
      return (double)ema_bf16_to_f32((uint16_t)x);
    default:
      return (double)ema_f16_to_f32((uint16_t)x);
  }
}

/* A random value of kind k: specials, raw bits, or a signed (1+u)*2^e with
   e from a range that stresses the float32 range, the float16 range, or
   ordinary magnitudes. */
static uint64_t gen(kind k) {
  unsigned r = rnd_below(16);
  if (r < 3) return special(k, rnd_below(special_count(k)));
  if (r < 5 || ((k == K_BF16 || k == K_F16) && r < 9)) return rnd();
  int e;
  switch (rnd_below(3)) {
    case 0:
      e = (int)rnd_below(41) - 20;
      break;
    case 1:
      e = (k == K_F64) ? (int)rnd_below(2100) - 1075 : (int)rnd_below(276) - 150;
      break;
    default:
      e = (int)rnd_below(49) - 30;
      break;
  }
  double x = ldexp(1.0 + (double)(rnd() >> 11) * 0x1p-53, e);
  if (rnd() & 1) x = -x;
  return from_double(k, x);
}

/* A value of kind k close to a (given as kind ka): the same value, a few
   units in the last place away, or with a low bit flipped. */
static uint64_t gen_near(kind k, kind ka, uint64_t a) {
  uint64_t x = (k == ka) ? a : from_double(k, to_double(ka, a));
  switch (rnd_below(3)) {
    case 0:
      return x;
    case 1:
      return x + (uint64_t)((int64_t)rnd_below(7) - 3);
    default:
      return x ^ (1ull << rnd_below(4));
  }
}

/* Fill count elements of a (kind ka) and b (kind kb); half of the b are
   near their a, so that differences are tiny, subnormal or zero. */
static void fill_pair(kind ka, unsigned char *a, kind kb, unsigned char *b, size_t count) {
  for (size_t i = 0; i < count; i++) {
    uint64_t x = gen(ka);
    put_elem(ka, a, i, x);
    put_elem(kb, b, i, (rnd() & 1) ? gen_near(kb, ka, x) : gen(kb));
  }
}

static void fill_bytes(unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)rnd();
}

/* Coefficients in the shadow's precision (never NaN: the core never passes one). */
static const double update_coefs[] = {0.0,     1.0,   0.5,   0.1, 0.01, 1e-3,     1e-4,
                                      0x1p-15, 1e-30, 1e-40, 2.0, -0.5, INFINITY, 1.0 - 0.9999};
static const double div_coefs[] = {1.0, 0.5, 0.9, 1e-4, 3.0, 0.0, -0.0, 1e-40, INFINITY, 0.999, 0.01};

static ema_coef make_coef(kind k, double x) {
  ema_coef c;
  memset(&c, 0, sizeof c);
  switch (k) {
    case K_F32:
      c.f = (float)x;
      break;
    case K_F64:
      c.d = x;
      break;
    default:
      c.h = (uint16_t)from_double(k, x);
      break;
  }
  return c;
}

static ema_coef coef_for(int p, int kern, unsigned i) {
  kind k = pairs[p].shadow;
  if (kern == KN_DIV) return make_coef(k, div_coefs[i % COUNT(div_coefs)]);
  return make_coef(k, update_coefs[i % COUNT(update_coefs)]);
}

static unsigned coef_count(int kern) {
  return kern == KN_DIV ? (unsigned)COUNT(div_coefs) : (unsigned)COUNT(update_coefs);
}

/* ---- one comparison ------------------------------------------------------------
   Buffers hold GUARD bytes, then room for MAXN + 4 elements of 8 bytes, then
   GUARD bytes. The kernel runs at GUARD + offset elements. */

#define GUARD 64
#define MAXN 300
#define BUFSZ (GUARD + (MAXN + 4) * 8 + GUARD)

static int reported = 0;

static void record(int ok) {
  if (ok)
    check_passed_++;
  else
    check_failed_++;
}

typedef struct bufs {
  unsigned char *a0, *b0; /* inputs as filled */
  unsigned char *a1, *a2; /* destination for the kernel under test / for ref */
  unsigned char *b1;      /* source handed to both */
  size_t size;
} bufs;

static void bufs_init(bufs *B, size_t size) {
  B->size = size;
  B->a0 = malloc(size);
  B->b0 = malloc(size);
  B->a1 = malloc(size);
  B->a2 = malloc(size);
  B->b1 = malloc(size);
  if (!B->a0 || !B->b0 || !B->a1 || !B->a2 || !B->b1) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
}

static void bufs_free(bufs *B) {
  free(B->a0);
  free(B->b0);
  free(B->a1);
  free(B->a2);
  free(B->b1);
}

/* Run kernel kern of pair p on n elements at element offsets oa (dest) and
   ob (source) from B->a0/B->b0 + GUARD, with k and with ref; compare. When
   in_place, the source is the destination itself (div only). */
static void compare_run(const ema_kernels *k, int p, int kern, const bufs *B, size_t n, size_t oa, size_t ob,
                        ema_coef c, int in_place) {
  const kind ka = dst_kind(p, kern), kb = src_kind(p, kern);
  const size_t sa = kind_size(ka), sb = kind_size(kb);
  memcpy(B->a1, B->a0, B->size);
  memcpy(B->a2, B->a0, B->size);
  memcpy(B->b1, B->b0, B->size);
  unsigned char *a1 = B->a1 + GUARD + oa * sa, *a2 = B->a2 + GUARD + oa * sa;
  const unsigned char *b = B->b1 + GUARD + ob * sb;
  invoke(k, p, kern, a1, in_place ? a1 : b, n, c);
  invoke(&ema_kernels_ref, p, kern, a2, in_place ? a2 : b, n, c);
  int ok_a = memcmp(B->a1, B->a2, B->size) == 0;
  int ok_b = memcmp(B->b1, B->b0, B->size) == 0;
  record(ok_a && ok_b);
  if ((!ok_a || !ok_b) && reported++ < 20) {
    uint64_t cbits;
    memcpy(&cbits, &c, sizeof cbits);
    fprintf(stderr, "%s %s %s: n=%zu dest+%zu src+%zu coef bits %016llx%s: ", k->name, pairs[p].name,
            kernel_names[kern], n, oa, ob, (unsigned long long)cbits, in_place ? " in place" : "");
    if (!ok_b) fprintf(stderr, "source modified\n");
    for (size_t i = 0; !ok_a && i < B->size; i++) {
      if (B->a1[i] == B->a2[i]) continue;
      if (i < GUARD + oa * sa || i >= GUARD + (oa + n) * sa) {
        fprintf(stderr, "wrote outside the destination (byte %zu)\n", i);
      } else {
        size_t e = (i - GUARD - oa * sa) / sa;
        unsigned char *a0 = B->a0 + GUARD + oa * sa;
        fprintf(stderr, "element %zu: dest %llx src %llx -> %llx, ref %llx\n", e,
                (unsigned long long)get_elem(ka, a0, e),
                (unsigned long long)get_elem(kb, in_place ? a0 : B->b0 + GUARD + ob * sb, e),
                (unsigned long long)get_elem(ka, a1, e), (unsigned long long)get_elem(ka, a2, e));
      }
      break;
    }
  }
}

/* ---- the sweeps ------------------------------------------------------------------ */

/* Every pair, kernel, length 0..MAXN and offset pair 0..3 x 0..3. */
static void test_lengths(const ema_kernels *k, bufs *B) {
  for (int p = 0; p < EMA_PAIR_COUNT; p++) {
    for (int kern = 0; kern < KN_COUNT; kern++) {
      const kind ka = dst_kind(p, kern), kb = src_kind(p, kern);
      for (size_t n = 0; n <= MAXN; n++) {
        fill_bytes(B->a0, B->size);
        fill_bytes(B->b0, B->size);
        fill_pair(ka, B->a0 + GUARD, kb, B->b0 + GUARD, MAXN + 4);
        for (size_t oa = 0; oa < 4; oa++)
          for (size_t ob = 0; ob < 4; ob++) {
            ema_coef c = coef_for(p, kern, (unsigned)(n * 16 + oa * 4 + ob));
            compare_run(k, p, kern, B, n, oa, ob, c, 0);
          }
        if (kern == KN_DIV) compare_run(k, p, kern, B, n, 1, 1, coef_for(p, kern, (unsigned)n), 1);
      }
    }
  }
}

/* Every coefficient at lengths around the vector width. */
static void test_coefs(const ema_kernels *k, bufs *B) {
  static const size_t lens[] = {1, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 255, 300};
  static const size_t offs[][2] = {{0, 0}, {1, 3}, {3, 2}};
  for (int p = 0; p < EMA_PAIR_COUNT; p++)
    for (int kern = KN_UPDATE; kern <= KN_DIV; kern++)
      for (size_t li = 0; li < COUNT(lens); li++) {
        fill_bytes(B->a0, B->size);
        fill_bytes(B->b0, B->size);
        fill_pair(dst_kind(p, kern), B->a0 + GUARD, src_kind(p, kern), B->b0 + GUARD, MAXN + 4);
        for (unsigned ci = 0; ci < coef_count(kern); ci++)
          for (size_t o = 0; o < COUNT(offs); o++)
            compare_run(k, p, kern, B, lens[li], offs[o][0], offs[o][1], coef_for(p, kern, ci), 0);
      }
}

/* A long run of every kernel, to exercise the main loops. */
static void test_long(const ema_kernels *k) {
  const size_t n = 30011;
  bufs B;
  bufs_init(&B, GUARD + (n + 4) * 8 + GUARD);
  for (int p = 0; p < EMA_PAIR_COUNT; p++)
    for (int kern = 0; kern < KN_COUNT; kern++) {
      fill_bytes(B.a0, B.size);
      fill_bytes(B.b0, B.size);
      fill_pair(dst_kind(p, kern), B.a0 + GUARD, src_kind(p, kern), B.b0 + GUARD, n + 4);
      compare_run(k, p, kern, &B, n, 1, 2, coef_for(p, kern, (unsigned)p + 6), 0);
    }
  bufs_free(&B);
}

/* Runs kern of pair p over prepared arrays (n elements in B->a0/b0 at GUARD)
   with offsets 0/0 and 1/3 (the arrays are shifted for the latter). */
static void run_prepared(const ema_kernels *k, int p, int kern, bufs *B, size_t n, ema_coef c) {
  compare_run(k, p, kern, B, n, 0, 0, c, 0);
  const size_t sa = kind_size(dst_kind(p, kern)), sb = kind_size(src_kind(p, kern));
  memmove(B->a0 + GUARD + 1 * sa, B->a0 + GUARD, n * sa);
  memmove(B->b0 + GUARD + 3 * sb, B->b0 + GUARD, n * sb);
  compare_run(k, p, kern, B, n, 1, 3, c, 0);
}

/* Exhaustive and structured conversion and half-shadow tests. */
static void test_exhaustive(const ema_kernels *k) {
  const size_t N = 65536;
  bufs B;
  bufs_init(&B, GUARD + (N + 4) * 8 + GUARD);
  ema_coef none;
  memset(&none, 0, sizeof none);

  /* all 65536 bf16 / f16 patterns widened */
  for (int p = EMA_PAIR_BF16_F32; p <= EMA_PAIR_F16_F32; p++) {
    fill_bytes(B.a0, B.size);
    for (size_t i = 0; i < N; i++) put_elem(K_BF16, B.b0 + GUARD, i, i);
    run_prepared(k, p, KN_TO, &B, N, none);
  }

  /* floats narrowed: every sign and exponent with boundary mantissas, then
     a stride through all 2^32 patterns, 65536 at a time */
  for (int p = EMA_PAIR_BF16_F32; p <= EMA_PAIR_F16_F32; p++) {
    size_t m = 0;
    fill_bytes(B.a0, B.size);
    for (uint32_t se = 0; se < 512; se++)
      for (uint32_t bit = 0; bit < 23; bit++) {
        uint32_t base = se << 23, one = 1u << bit;
        put_elem(K_F32, B.b0 + GUARD, m++, base | one);
        put_elem(K_F32, B.b0 + GUARD, m++, base | (one - 1u));
        put_elem(K_F32, B.b0 + GUARD, m++, base | (one + 1u));
        put_elem(K_F32, B.b0 + GUARD, m++, base | (one | (one >> 1)));
        put_elem(K_F32, B.b0 + GUARD, m++, base | (0x7FFFFFu ^ one));
      }
    run_prepared(k, p, KN_FROM, &B, m, none);
    uint64_t x = 0;
    while (x < (1ull << 32)) {
      for (m = 0; m < N && x < (1ull << 32); m++, x += 1021) put_elem(K_F32, B.b0 + GUARD, m, x);
      compare_run(k, p, KN_FROM, &B, m, 0, 0, none, 0);
    }
  }

  /* half shadows: every shadow pattern, parameters random or near */
  for (int p = EMA_PAIR_BF16_BF16; p <= EMA_PAIR_F16_F16; p++) {
    kind h = pairs[p].shadow;
    for (int kern = KN_UPDATE; kern <= KN_DIV; kern++)
      for (unsigned ci = 0; ci < coef_count(kern); ci++) {
        fill_bytes(B.a0, B.size);
        fill_bytes(B.b0, B.size);
        for (size_t i = 0; i < N; i++) {
          put_elem(h, B.a0 + GUARD, i, i);
          put_elem(h, B.b0 + GUARD, i, (rnd() & 1) ? gen_near(h, h, i) : gen(h));
        }
        run_prepared(k, p, kern, &B, N, coef_for(p, kern, ci));
      }
  }

  /* float shadows: every special shadow against every special parameter */
  for (int p = EMA_PAIR_F32; p <= EMA_PAIR_F16_F32; p++) {
    kind ks = pairs[p].shadow, kv = pairs[p].param;
    size_t m = 0;
    fill_bytes(B.a0, B.size);
    for (unsigned i = 0; i < special_count(ks); i++)
      for (unsigned j = 0; j < special_count(kv); j++, m++) {
        put_elem(ks, B.a0 + GUARD, m, special(ks, i));
        put_elem(kv, B.b0 + GUARD, m, special(kv, j));
      }
    for (unsigned ci = 0; ci < coef_count(KN_UPDATE); ci++) {
      run_prepared(k, p, KN_UPDATE, &B, m, coef_for(p, KN_UPDATE, ci));
      /* run_prepared shifted the arrays by 1 and 3: shift them back */
      memmove(B.a0 + GUARD, B.a0 + GUARD + kind_size(ks), m * kind_size(ks));
      memmove(B.b0 + GUARD, B.b0 + GUARD + 3 * kind_size(kv), m * kind_size(kv));
    }
  }
  bufs_free(&B);
}

/* swap against the expected exchange. */
static void test_swap(const ema_kernels *k) {
  unsigned char a[BUFSZ], b[BUFSZ], a0[BUFSZ], b0[BUFSZ];
  int bad = 0;
  for (size_t n = 0; n <= MAXN; n++) {
    fill_bytes(a0, sizeof a0);
    fill_bytes(b0, sizeof b0);
    for (size_t oa = 0; oa < 8; oa++)
      for (size_t ob = 0; ob < 8; ob++) {
        memcpy(a, a0, sizeof a);
        memcpy(b, b0, sizeof b);
        k->swap(a + GUARD + oa, b + GUARD + ob, n);
        int ok = memcmp(a, a0, GUARD + oa) == 0 && memcmp(b, b0, GUARD + ob) == 0 &&
                 memcmp(a + GUARD + oa, b0 + GUARD + ob, n) == 0 && memcmp(b + GUARD + ob, a0 + GUARD + oa, n) == 0 &&
                 memcmp(a + GUARD + oa + n, a0 + GUARD + oa + n, BUFSZ - GUARD - oa - n) == 0 &&
                 memcmp(b + GUARD + ob + n, b0 + GUARD + ob + n, BUFSZ - GUARD - ob - n) == 0;
        record(ok);
        if (!ok && bad++ < 5) fprintf(stderr, "%s swap: n=%zu +%zu +%zu wrong\n", k->name, n, oa, ob);
      }
  }
}

/* ---- dispatch ------------------------------------------------------------------------ */

/* In a child: set EMA_ISA, make the process-wide choice, compare. */
static void check_forced(const char *want, const char *expect) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    setenv("EMA_ISA", want, 1);
    const char *got = ema_kernels_chosen_name();
    int ok = strcmp(got, expect) == 0 && strcmp(ema_kernels_best()->name, got) == 0;
    if (!ok) fprintf(stderr, "EMA_ISA=%s chose %s, want %s\n", want, got, expect);
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "EMA_ISA=%s", want);
}

/* Tables derive from ref: a kernel an ISA does not implement is ref's own
   function (the same-dtype conversions are plain copies everywhere), and
   what it implements is its own. */
static void check_derived(const char *isa) {
  const ema_kernels *k = ema_kernels_by_name(isa), *r = &ema_kernels_ref;
  if (!k) return;
  CHECK(k != r && strcmp(k->name, isa) == 0);
  static const int same[] = {EMA_PAIR_F32, EMA_PAIR_F64, EMA_PAIR_BF16_BF16, EMA_PAIR_F16_F16};
  for (size_t i = 0; i < COUNT(same); i++) {
    CHECK_MSG(k->to_shadow[same[i]] == r->to_shadow[same[i]], "%s to_shadow[%d] is ref's", isa, same[i]);
    CHECK_MSG(k->from_shadow[same[i]] == r->from_shadow[same[i]], "%s from_shadow[%d] is ref's", isa, same[i]);
  }
  for (int p = 0; p < EMA_PAIR_COUNT; p++) CHECK_MSG(k->update[p] != r->update[p], "%s update[%d] is its own", isa, p);
  CHECK(k->swap != r->swap);
  CHECK(k->to_shadow[EMA_PAIR_BF16_F32] != r->to_shadow[EMA_PAIR_BF16_F32]);
  CHECK(ema_kernels_by_name(isa) == k); /* one table per process */
}

static void test_dispatch(void) {
  CHECK(ema_kernels_by_name("ref") == &ema_kernels_ref);
  CHECK(ema_kernels_by_name("no-such-isa") == NULL);
  CHECK(ema_kernels_by_name(NULL) == NULL);
  /* The default order (dispatch.c): avx2 first, avx512 only when forced
     (it measured no faster on these machines, bench/RESULTS.md), ref last. */
  const char *best = ema_kernels_by_name("avx2") ? "avx2" : ema_kernels_by_name("avx512") ? "avx512" : "ref";
  check_forced("ref", "ref");
  check_forced("avx2", ema_kernels_by_name("avx2") ? "avx2" : best);
  check_forced("avx512", ema_kernels_by_name("avx512") ? "avx512" : best);
  check_forced("bogus", best);
  check_forced("", best);
  check_derived("avx2");
  check_derived("avx512");
}

int main(void) {
  static const char *const isas[] = {"ref", "avx2", "avx512"};
  test_dispatch(); /* first: forks before this process has made its choice */
  bufs B;
  bufs_init(&B, BUFSZ);
  for (size_t i = 0; i < COUNT(isas); i++) {
    const ema_kernels *k = ema_kernels_by_name(isas[i]);
    if (!k) {
      printf("test_kernels: %s not built or not supported here, skipped\n", isas[i]);
      continue;
    }
    int before = check_failed_;
    test_lengths(k, &B);
    test_coefs(k, &B);
    test_long(k);
    test_exhaustive(k);
    test_swap(k);
    printf("test_kernels: %s %s\n", isas[i], check_failed_ == before ? "matches ref" : "DIFFERS from ref");
  }
  bufs_free(&B);
  return check_report("test_kernels");
}
