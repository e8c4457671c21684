/*
 * src/common/escape.c: ema_escape, the one way a string that came from a
 * file (or a caller) is shown in a message: printable ASCII and well-formed,
 * printable UTF-8 as is; control bytes, DEL, C1 controls and ill-formed
 * UTF-8 as \xNN; the backslash as \\. See ema/core.h.
 */
#include "ema/core.h"

#include <string.h>

#include "common/utf8.h"

#define EMA_ESCAPE_SHOWN 64 /* source bytes shown before "..." */

static const char hexdig[] = "0123456789ABCDEF";

/* Render the unit starting at s[0] (avail bytes) into out (at least 16
   bytes); *used gets the source bytes it covers. Returns its length. */
static size_t render_unit(const unsigned char *s, size_t avail, char *out, size_t *used) {
  unsigned c = s[0];
  if (c == '\\') {
    out[0] = '\\';
    out[1] = '\\';
    *used = 1;
    return 2;
  }
  if (c >= 0x20 && c < 0x7F) {
    out[0] = (char)c;
    *used = 1;
    return 1;
  }
  size_t k = c >= 0x80 ? ema__utf8_seq(s, avail) : 0;
  int c1_control = k == 2 && c == 0xC2 && s[1] < 0xA0; /* U+0080..U+009F */
  if (k > 1 && !c1_control) {
    memcpy(out, s, k);
    *used = k;
    return k;
  }
  size_t n = c1_control ? 2 : 1, o = 0; /* escape the bytes of a C1 control together */
  for (size_t i = 0; i < n; i++) {
    out[o++] = '\\';
    out[o++] = 'x';
    out[o++] = hexdig[s[i] >> 4];
    out[o++] = hexdig[s[i] & 15];
  }
  *used = n;
  return o;
}

size_t ema_escape(const char *s, size_t n, char *buf, size_t cap) {
  if (!buf || cap == 0) return 0;
  const unsigned char *u = (const unsigned char *)s;
  if (!u) n = 0;
  size_t o = 0, i = 0;
  char unit[16];
  while (i < n) {
    size_t used;
    size_t len = render_unit(u + i, n - i, unit, &used);
    if (i + used > EMA_ESCAPE_SHOWN) break; /* at most 64 source bytes */
    if (o + len > cap - 1) {
      buf[o] = '\0'; /* a unit is written whole or not at all */
      return o;
    }
    memcpy(buf + o, unit, len);
    o += len;
    i += used;
  }
  if (i < n && o + 3 <= cap - 1) {
    memcpy(buf + o, "...", 3);
    o += 3;
  }
  buf[o] = '\0';
  return o;
}
