/*
 * src/common/utf8.h: the library's one strict UTF-8 validator (Unicode 15,
 * table 3-7: no overlongs, no surrogates, nothing above U+10FFFF). Tensor
 * names, EMA names and safetensors headers are all checked with it.
 * Private to the library.
 */
#ifndef EMA_COMMON_UTF8_H
#define EMA_COMMON_UTF8_H

#include <stddef.h>

/* Length (1..4) of the well-formed UTF-8 sequence starting at s[0] (of the
   len bytes available), or 0 when it is ill-formed (overlong, surrogate,
   above U+10FFFF, truncated, stray continuation byte) or len is 0. */
size_t ema__utf8_seq(const unsigned char *s, size_t len);

/* Offset of the first ill-formed byte in s[0..len), or len when all of it is
   well-formed UTF-8. */
size_t ema__utf8_check(const unsigned char *s, size_t len);

/* 1 when s[0..n) is well-formed UTF-8, else 0. */
int ema__valid_utf8(const char *s, size_t n);

#endif
