/*
 * convert.c: ema_convert, element conversions between the floating dtypes
 * for programs outside the library (the tool, post-hoc synthesis). The half
 * conversions are the kernel table's (src/kernels), so they equal the
 * reference kernels bit for bit; float64 to a half format goes through a
 * float32 rounded to odd, which makes the two roundings one (see below).
 */
#include "internal.h"

#include <string.h>

enum { CHUNK = 512 }; /* elements converted through a float32 stack buffer */

/* Round a double to a float32 "to odd": truncate towards zero and set the
   last bit when the value was inexact. A float32 has at least 13 more
   fraction bits than f16 and bf16 in their ranges, so rounding that value to
   nearest-even in a half format gives the double's own nearest-even
   rounding: one rounding, not two. NaN and infinities pass as C casts them. */
static float f64_to_f32_odd(double d) {
  float f = (float)d;
  if ((double)f == d || d != d) return f;
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  double af = f < 0 ? -(double)f : (double)f, ad = d < 0 ? -d : d;
  if (af > ad) u--; /* rounded away from zero: step back towards zero */
  u |= 1u;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* The kernel pair whose to_shadow widens a half to float32 (and whose
   from_shadow narrows a float32 to it). */
static ema_pair half_pair(ema_dtype d) { return d == EMA_F16 ? EMA_PAIR_F16_F32 : EMA_PAIR_BF16_F32; }

/* n elements of src (any floating dtype) as float32: exact for halves and
   float32; float64 is rounded to nearest (round_odd == 0) or to odd. */
static void to_f32(float *dst, const void *src, ema_dtype sd, size_t n, int round_odd, const ema_kernels *k) {
  if (sd == EMA_F32) {
    memcpy(dst, src, n * sizeof(float));
  } else if (sd == EMA_F64) {
    const double *s = (const double *)src;
    for (size_t i = 0; i < n; i++) dst[i] = round_odd ? f64_to_f32_odd(s[i]) : (float)s[i];
  } else {
    k->to_shadow[half_pair(sd)](dst, src, n);
  }
}

ema_status ema_convert(void *dst, ema_dtype dst_dtype, const void *src, ema_dtype src_dtype, size_t n) {
  if (ema_dtype_size(dst_dtype) == 0 || ema_dtype_size(src_dtype) == 0) return EMA_E_INVALID_ARG;
  if (n > 0 && (dst == NULL || src == NULL)) return EMA_E_INVALID_ARG;
  if (dst_dtype == src_dtype) {
    if (n > 0 && dst != src) memmove(dst, src, n * ema_dtype_size(dst_dtype));
    return EMA_OK;
  }
  if (!ema__is_float_dtype(dst_dtype) || !ema__is_float_dtype(src_dtype)) return EMA_E_DTYPE;
  const ema_kernels *k = ema_kernels_best();
  unsigned char *d = (unsigned char *)dst;
  const unsigned char *s = (const unsigned char *)src;
  size_t dsz = ema_dtype_size(dst_dtype), ssz = ema_dtype_size(src_dtype);
  float buf[CHUNK];
  for (size_t i = 0; i < n; i += CHUNK) {
    size_t m = n - i < CHUNK ? n - i : CHUNK;
    const void *sp = s + i * ssz;
    void *dp = d + i * dsz;
    if (dst_dtype == EMA_F64) {
      double *o = (double *)dp;
      if (src_dtype == EMA_F32) {
        const float *f = (const float *)sp;
        for (size_t j = 0; j < m; j++) o[j] = (double)f[j];
      } else {
        to_f32(buf, sp, src_dtype, m, 0, k);
        for (size_t j = 0; j < m; j++) o[j] = (double)buf[j];
      }
    } else if (dst_dtype == EMA_F32) {
      to_f32((float *)dp, sp, src_dtype, m, 0, k);
    } else {
      to_f32(buf, sp, src_dtype, m, 1, k);
      k->from_shadow[half_pair(dst_dtype)](dp, buf, m);
    }
  }
  return EMA_OK;
}
