/*
 * src/common/err.h: the library's one message formatter. Every message
 * (a context's last error, a file handle's, a caller's err/errcap buffer)
 * is written by ema__errf / ema__verrf. Private to the library.
 */
#ifndef EMA_COMMON_ERR_H
#define EMA_COMMON_ERR_H

#include <stdarg.h>
#include <stddef.h>

#if defined(__GNUC__) || defined(__clang__)
#define EMA__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define EMA__PRINTF(f, a)
#endif

/* Format a message into buf of cap bytes, truncated and always
   NUL-terminated. A NULL buf or cap 0 is a no-op; a formatting error leaves
   "". Never fails, never allocates. */
void ema__errf(char *buf, size_t cap, const char *fmt, ...) EMA__PRINTF(3, 4);
void ema__verrf(char *buf, size_t cap, const char *fmt, va_list ap) EMA__PRINTF(3, 0);

#endif
