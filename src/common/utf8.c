/*
 * src/common/utf8.c: strict UTF-8 validation (see utf8.h).
 */
#include "common/utf8.h"

size_t ema__utf8_seq(const unsigned char *s, size_t len) {
  if (len == 0) return 0;
  unsigned c = s[0];
  if (c < 0x80) return 1;
  size_t need;
  unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c == 0xE0) {
    need = 3;
    lo = 0xA0; /* no overlongs */
  } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
    need = 3;
  } else if (c == 0xED) {
    need = 3;
    hi = 0x9F; /* no surrogates */
  } else if (c == 0xF0) {
    need = 4;
    lo = 0x90; /* no overlongs */
  } else if (c >= 0xF1 && c <= 0xF3) {
    need = 4;
  } else if (c == 0xF4) {
    need = 4;
    hi = 0x8F; /* nothing above U+10FFFF */
  } else {
    return 0; /* C0, C1, F5..FF, stray continuation */
  }
  if (len < need) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < need; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  return need;
}

size_t ema__utf8_check(const unsigned char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    size_t k = ema__utf8_seq(s + i, len - i);
    if (k == 0) return i;
    i += k;
  }
  return len;
}

int ema__valid_utf8(const char *s, size_t n) { return ema__utf8_check((const unsigned char *)s, n) == n; }
