/*
 * Scalar reference kernels: the oracle every optimized kernel is tested
 * against. Compiled with -ffp-contract=off so that s - (s - v) * om is never
 * fused into an FMA: that order, unfused, is what reproduces TensorFlow.
 */
#include "kernels.h"

#include <string.h>

/* Exact widening. A signaling NaN stays signaling here (as in PyTorch and
   TensorFlow); the first arithmetic operation on it makes it quiet. */
float ema_bf16_to_f32(uint16_t h) { return ema_bits_f32((uint32_t)h << 16); }

uint16_t ema_f32_to_bf16(float f) {
  uint32_t u = ema_f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) /* NaN: keep sign and top payload, make it quiet */
    return (uint16_t)((u >> 16) | 0x0040u);
  u += 0x7FFFu + ((u >> 16) & 1u); /* round to nearest even; overflow carries into Inf */
  return (uint16_t)(u >> 16);
}

float ema_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t mant = h & 0x3FFu;
  if (exp == 0x1Fu) /* Inf or NaN; a NaN comes out quiet, as F16C does */
    return ema_bits_f32(sign | 0x7F800000u | (mant << 13) | (mant ? 0x00400000u : 0u));
  if (exp == 0) {
    if (mant == 0) return ema_bits_f32(sign);
    /* subnormal: normalize */
    uint32_t e = 113; /* 127 - 15 + 1 */
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      e--;
    }
    mant &= 0x3FFu;
    return ema_bits_f32(sign | (e << 23) | (mant << 13));
  }
  return ema_bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t ema_f32_to_f16(float f) {
  uint32_t u = ema_f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) /* NaN: sign and top 10 payload bits kept, made quiet (as F16C) */
    return (uint16_t)(sign | 0x7E00u | ((a >> 13) & 0x03FFu));
  if (a >= 0x477FF000u) /* rounds to >= 65520: Inf (Inf stays Inf) */
    return (uint16_t)(sign | 0x7C00u);
  if (a >= 0x38800000u) { /* normal in f16 (>= 2^-14) */
    uint32_t r = a + 0x0FFFu + ((a >> 13) & 1u) - (112u << 23);
    return (uint16_t)(sign | (r >> 13));
  }
  if (a < 0x33000000u) /* < 2^-25: rounds to zero (2^-25 exactly is a tie to 0) */
    return sign;
  /* subnormal in f16: value = m * 2^-24 with m < 1024 */
  {
    uint32_t e = a >> 23;                     /* biased f32 exponent, 102..112 */
    uint32_t m = (a & 0x7FFFFFu) | 0x800000u; /* 24-bit significand */
    uint32_t shift = 126u - e;                /* bits to drop: 14..24 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
  }
}

/* ---- update: s = s - (s - v) * om ---------------------------------------- */

static void update_f32(void *s_, const void *v_, size_t n, ema_coef om) {
  float *s = (float *)s_;
  const float *v = (const float *)v_;
  for (size_t i = 0; i < n; i++) s[i] = s[i] - (s[i] - v[i]) * om.f;
}

static void update_f64(void *s_, const void *v_, size_t n, ema_coef om) {
  double *s = (double *)s_;
  const double *v = (const double *)v_;
  for (size_t i = 0; i < n; i++) s[i] = s[i] - (s[i] - v[i]) * om.d;
}

static void update_bf16_f32(void *s_, const void *v_, size_t n, ema_coef om) {
  float *s = (float *)s_;
  const uint16_t *v = (const uint16_t *)v_;
  for (size_t i = 0; i < n; i++) s[i] = s[i] - (s[i] - ema_bf16_to_f32(v[i])) * om.f;
}

static void update_f16_f32(void *s_, const void *v_, size_t n, ema_coef om) {
  float *s = (float *)s_;
  const uint16_t *v = (const uint16_t *)v_;
  for (size_t i = 0; i < n; i++) s[i] = s[i] - (s[i] - ema_f16_to_f32(v[i])) * om.f;
}

static void update_bf16_bf16(void *s_, const void *v_, size_t n, ema_coef om) {
  uint16_t *s = (uint16_t *)s_;
  const uint16_t *v = (const uint16_t *)v_;
  float o = ema_bf16_to_f32(om.h);
  for (size_t i = 0; i < n; i++) {
    float sf = ema_bf16_to_f32(s[i]);
    float diff = ema_bf16_to_f32(ema_f32_to_bf16(sf - ema_bf16_to_f32(v[i])));
    float prod = ema_bf16_to_f32(ema_f32_to_bf16(diff * o));
    s[i] = ema_f32_to_bf16(sf - prod);
  }
}

static void update_f16_f16(void *s_, const void *v_, size_t n, ema_coef om) {
  uint16_t *s = (uint16_t *)s_;
  const uint16_t *v = (const uint16_t *)v_;
  float o = ema_f16_to_f32(om.h);
  for (size_t i = 0; i < n; i++) {
    float sf = ema_f16_to_f32(s[i]);
    float diff = ema_f16_to_f32(ema_f32_to_f16(sf - ema_f16_to_f32(v[i])));
    float prod = ema_f16_to_f32(ema_f32_to_f16(diff * o));
    s[i] = ema_f32_to_f16(sf - prod);
  }
}

/* ---- zero-debias read-out: a = b / f ------------------------------------- */

static void div_f32(void *a_, const void *b_, size_t n, ema_coef f) {
  float *a = (float *)a_;
  const float *b = (const float *)b_;
  for (size_t i = 0; i < n; i++) a[i] = b[i] / f.f;
}

static void div_f64(void *a_, const void *b_, size_t n, ema_coef f) {
  double *a = (double *)a_;
  const double *b = (const double *)b_;
  for (size_t i = 0; i < n; i++) a[i] = b[i] / f.d;
}

static void div_bf16(void *a_, const void *b_, size_t n, ema_coef f) {
  uint16_t *a = (uint16_t *)a_;
  const uint16_t *b = (const uint16_t *)b_;
  float d = ema_bf16_to_f32(f.h);
  for (size_t i = 0; i < n; i++) a[i] = ema_f32_to_bf16(ema_bf16_to_f32(b[i]) / d);
}

static void div_f16(void *a_, const void *b_, size_t n, ema_coef f) {
  uint16_t *a = (uint16_t *)a_;
  const uint16_t *b = (const uint16_t *)b_;
  float d = ema_f16_to_f32(f.h);
  for (size_t i = 0; i < n; i++) a[i] = ema_f32_to_f16(ema_f16_to_f32(b[i]) / d);
}

/* ---- conversions ---------------------------------------------------------- */

static void copy4(void *d, const void *s, size_t n) {
  if (n) memcpy(d, s, n * 4);
}
static void copy8(void *d, const void *s, size_t n) {
  if (n) memcpy(d, s, n * 8);
}
static void copy2(void *d, const void *s, size_t n) {
  if (n) memcpy(d, s, n * 2);
}

static void bf16_to_f32(void *d_, const void *s_, size_t n) {
  float *d = (float *)d_;
  const uint16_t *s = (const uint16_t *)s_;
  for (size_t i = 0; i < n; i++) d[i] = ema_bf16_to_f32(s[i]);
}

static void f16_to_f32(void *d_, const void *s_, size_t n) {
  float *d = (float *)d_;
  const uint16_t *s = (const uint16_t *)s_;
  for (size_t i = 0; i < n; i++) d[i] = ema_f16_to_f32(s[i]);
}

static void f32_to_bf16(void *d_, const void *s_, size_t n) {
  uint16_t *d = (uint16_t *)d_;
  const float *s = (const float *)s_;
  for (size_t i = 0; i < n; i++) d[i] = ema_f32_to_bf16(s[i]);
}

static void f32_to_f16(void *d_, const void *s_, size_t n) {
  uint16_t *d = (uint16_t *)d_;
  const float *s = (const float *)s_;
  for (size_t i = 0; i < n; i++) d[i] = ema_f32_to_f16(s[i]);
}

static void swap_bytes(void *a_, void *b_, size_t nbytes) {
  unsigned char *a = (unsigned char *)a_, *b = (unsigned char *)b_;
  for (size_t i = 0; i < nbytes; i++) {
    unsigned char t = a[i];
    a[i] = b[i];
    b[i] = t;
  }
}

const ema_kernels ema_kernels_ref = {
    "ref",
    {update_f32, update_f64, update_bf16_f32, update_f16_f32, update_bf16_bf16, update_f16_f16},
    {div_f32, div_f64, div_f32, div_f32, div_bf16, div_f16},
    {copy4, copy8, bf16_to_f32, f16_to_f32, copy2, copy2},
    {copy4, copy8, f32_to_bf16, f32_to_f16, copy2, copy2},
    swap_bytes,
};
