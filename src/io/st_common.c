/*
 * src/io/st_common.c: safetensors dtype table, strict UTF-8 validation,
 * message helpers, checked arithmetic and a stable merge sort, shared by the
 * safetensors reader and writer.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/utf8.h"
#include "io/st_internal.h"

/* Names and sizes in bits, indexed by st_dtype (the reference's order). */
static const struct {
  const char *name;
  unsigned bits;
} st_dtypes[ST_DTYPE_COUNT] = {
    {"BOOL", 8},    {"F4", 4},      {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8},   {"I8", 8},    {"F8_E5M2", 8},
    {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"I16", 16},    {"U16", 16},    {"F16", 16}, {"BF16", 16}, {"I32", 32},
    {"U32", 32},    {"F32", 32},    {"C64", 64},    {"F64", 64},    {"I64", 64}, {"U64", 64},
};

const char *st_dtype_name(st_dtype dt) {
  if ((unsigned)dt >= (unsigned)ST_DTYPE_COUNT) return "?";
  return st_dtypes[dt].name;
}

unsigned st_dtype_bits(st_dtype dt) {
  if ((unsigned)dt >= (unsigned)ST_DTYPE_COUNT) return 0;
  return st_dtypes[dt].bits;
}

int st_dtype_from_name(const char *name, size_t len) {
  if (!name) return -1;
  for (int i = 0; i < (int)ST_DTYPE_COUNT; i++) {
    const char *s = st_dtypes[i].name;
    if (strlen(s) == len && memcmp(s, name, len) == 0) return i;
  }
  return -1;
}

int st_dtype_to_ema(st_dtype dt, ema_dtype *out) {
  ema_dtype e;
  switch (dt) {
    case ST_F32:
      e = EMA_F32;
      break;
    case ST_F64:
      e = EMA_F64;
      break;
    case ST_F16:
      e = EMA_F16;
      break;
    case ST_BF16:
      e = EMA_BF16;
      break;
    case ST_I32:
      e = EMA_I32;
      break;
    case ST_I64:
      e = EMA_I64;
      break;
    default:
      return 0;
  }
  if (out) *out = e;
  return 1;
}

int st_dtype_from_ema(ema_dtype dt) {
  switch (dt) {
    case EMA_F32:
      return ST_F32;
    case EMA_F64:
      return ST_F64;
    case EMA_F16:
      return ST_F16;
    case EMA_BF16:
      return ST_BF16;
    case EMA_I32:
      return ST_I32;
    case EMA_I64:
      return ST_I64;
  }
  return -1;
}

void st_errf(char *err, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ema__verrf(err, cap, fmt, ap);
  va_end(ap);
}

/* The validator is common/utf8.c's; these keep the io spelling. */
size_t st_utf8_seq(const unsigned char *s, size_t len) { return ema__utf8_seq(s, len); }

size_t st_utf8_check(const unsigned char *s, size_t len) { return ema__utf8_check(s, len); }

void st_quote(char *dst, size_t cap, const char *s, size_t len) {
  if (!dst || cap < 3) {
    if (dst && cap) dst[0] = '\0';
    return;
  }
  /* the library's one escaping (ema_escape), in single quotes */
  dst[0] = '\'';
  size_t n = ema_escape(s, len, dst + 1, cap - 2);
  dst[1 + n] = '\'';
  dst[2 + n] = '\0';
}

int st_bytes_cmp(const char *a, size_t alen, const char *b, size_t blen) {
  size_t m = alen < blen ? alen : blen;
  int c = m ? memcmp(a, b, m) : 0;
  if (c != 0) return c;
  return alen < blen ? -1 : alen > blen ? 1 : 0;
}

int st_msort(size_t *idx, size_t n, st_cmp_fn cmp, const void *ctx) {
  if (n < 2) return 0;
  if (n > SIZE_MAX / sizeof(size_t)) return -1;
  size_t *tmp = ema__malloc(n * sizeof(size_t));
  if (!tmp) return -1;
  size_t *src = idx, *dst = tmp;
  /* Insertion sort of runs of 16, then bottom-up merges. */
  const size_t run = 16;
  for (size_t lo = 0; lo < n; lo += run) {
    size_t hi = lo + run < n ? lo + run : n;
    for (size_t i = lo + 1; i < hi; i++) {
      size_t v = src[i], j = i;
      while (j > lo && cmp(v, src[j - 1], ctx) < 0) {
        src[j] = src[j - 1];
        j--;
      }
      src[j] = v;
    }
  }
  for (size_t width = run; width < n; width *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * width) {
      size_t mid = lo + width < n ? lo + width : n;
      size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) dst[k++] = cmp(src[j], src[i], ctx) < 0 ? src[j++] : src[i++];
      while (i < mid) dst[k++] = src[i++];
      while (j < hi) dst[k++] = src[j++];
    }
    size_t *t = src;
    src = dst;
    dst = t;
  }
  if (src != idx) memcpy(idx, src, n * sizeof(size_t));
  free(tmp);
  return 0;
}

int st_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
  if (a != 0 && b > UINT64_MAX / a) return -1;
  *out = a * b;
  return 0;
}

int st_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
  if (b > UINT64_MAX - a) return -1;
  *out = a + b;
  return 0;
}

int st_tensor_size(st_dtype dt, int ndim, const int64_t *shape, uint64_t *count, uint64_t *nbytes) {
  uint64_t c = 1;
  for (int i = 0; i < ndim; i++) {
    if (st_mul_u64(c, (uint64_t)shape[i], &c) != 0) return -1;
  }
  uint64_t bits;
  if (st_mul_u64(c, st_dtype_bits(dt), &bits) != 0) return -1;
  if (bits % 8 != 0) return -2;
  *count = c;
  *nbytes = bits / 8;
  return 0;
}

const char *st_strerror(int e, char *buf, size_t cap) {
  if (!buf || cap == 0) return "";
  buf[0] = '\0';
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
  const char *s = strerror_r(e, buf, cap);
  if (s != buf) snprintf(buf, cap, "%s", s);
#else
  if (strerror_r(e, buf, cap) != 0) snprintf(buf, cap, "error %d", e);
#endif
  return buf;
}

void st_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
  if (!buf || cap == 0) return;
  size_t o = 0;
  buf[0] = '\0';
  int r = snprintf(buf, cap, "[");
  if (r > 0) o = (size_t)r;
  for (int i = 0; i < ndim && o < cap; i++) {
    if (i == 8 && ndim > 9) {
      snprintf(buf + o, cap - o, ", ...]");
      return;
    }
    r = snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (r < 0) return;
    o += (size_t)r;
  }
  if (o < cap) snprintf(buf + o, cap - o, "]");
}
