/*
 * src/common/err.c: the one message formatter (see err.h).
 */
#include "common/err.h"

#include <stdio.h>

void ema__verrf(char *buf, size_t cap, const char *fmt, va_list ap) {
  if (!buf || cap == 0) return;
  if (vsnprintf(buf, cap, fmt, ap) < 0) buf[0] = '\0';
}

void ema__errf(char *buf, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ema__verrf(buf, cap, fmt, ap);
  va_end(ap);
}
