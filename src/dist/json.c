/*
 * src/dist/json.c: JSON reader and writer for manifests (see json.h).
 */
#include "dist/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "io/st_internal.h"

#define DJ_MAX_DEPTH 32

typedef struct dj_parser {
  const unsigned char *s;
  size_t len, pos;
  char *err;
  size_t cap;
} dj_parser;

static int fail(dj_parser *P, const char *what) {
  st_errf(P->err, P->cap, "JSON error at byte %zu: %s", P->pos, what);
  return -1;
}

static void skip_ws(dj_parser *P) {
  while (P->pos < P->len) {
    unsigned char c = P->s[P->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    P->pos++;
  }
}

static int hex4(dj_parser *P, unsigned *out) {
  if (P->len - P->pos < 4) return fail(P, "truncated \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned char c = P->s[P->pos++];
    unsigned d = (c >= '0' && c <= '9')   ? (unsigned)(c - '0')
                 : (c >= 'a' && c <= 'f') ? (unsigned)(c - 'a' + 10)
                 : (c >= 'A' && c <= 'F') ? (unsigned)(c - 'A' + 10)
                                          : 16u;
    if (d == 16) return fail(P, "bad hex digit in \\u escape");
    v = v * 16 + d;
  }
  *out = v;
  return 0;
}

static size_t put_utf8(char *d, unsigned cp) {
  if (cp < 0x80) {
    d[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    d[0] = (char)(0xC0 | (cp >> 6));
    d[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    d[0] = (char)(0xE0 | (cp >> 12));
    d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    d[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  d[0] = (char)(0xF0 | (cp >> 18));
  d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  d[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  d[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

static int escape(dj_parser *P, char *dst, size_t *o) {
  unsigned char c = P->s[P->pos++];
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  const char *f = c ? strchr(from, c) : NULL;
  if (f) {
    dst[(*o)++] = to[f - from];
    return 0;
  }
  if (c != 'u') return fail(P, "unknown escape");
  unsigned cp;
  if (hex4(P, &cp)) return -1;
  if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(P, "lone low surrogate");
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    unsigned lo;
    if (P->len - P->pos < 2 || P->s[P->pos] != '\\' || P->s[P->pos + 1] != 'u')
      return fail(P, "high surrogate without its pair");
    P->pos += 2;
    if (hex4(P, &lo)) return -1;
    if (lo < 0xDC00 || lo > 0xDFFF) return fail(P, "high surrogate without its pair");
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
  }
  if (cp == 0) return fail(P, "U+0000 in a string");
  *o += put_utf8(dst + *o, cp);
  return 0;
}

static int parse_string(dj_parser *P, char **out, size_t *out_len) {
  P->pos++; /* opening quote */
  size_t start = P->pos, end = start;
  while (end < P->len && P->s[end] != '"') end += (P->s[end] == '\\') ? 2 : 1;
  if (end >= P->len) return fail(P, "unterminated string");
  char *d = (char *)ema__malloc(end - start + 1);
  if (!d) return fail(P, "out of memory");
  size_t o = 0;
  while (P->pos < end) {
    unsigned char c = P->s[P->pos];
    if (c < 0x20) {
      free(d);
      return fail(P, "control character in a string");
    }
    if (c == '\\') {
      P->pos++;
      if (escape(P, d, &o)) {
        free(d);
        return -1;
      }
      continue;
    }
    size_t n = st_utf8_seq(P->s + P->pos, end - P->pos);
    if (!n) {
      free(d);
      return fail(P, "invalid UTF-8");
    }
    memcpy(d + o, P->s + P->pos, n);
    o += n;
    P->pos += n;
  }
  P->pos = end + 1;
  d[o] = '\0';
  *out = d;
  *out_len = o;
  return 0;
}

static int parse_number(dj_parser *P, dj_val *v) {
  size_t start = P->pos;
  if (P->s[P->pos] == '-') P->pos++;
  size_t digits = P->pos;
  while (P->pos < P->len && P->s[P->pos] >= '0' && P->s[P->pos] <= '9') P->pos++;
  if (P->pos == digits) return fail(P, "bad number");
  if (P->s[digits] == '0' && P->pos - digits > 1) return fail(P, "leading zero in a number");
  if (P->pos < P->len && P->s[P->pos] == '.') {
    P->pos++;
    size_t f = P->pos;
    while (P->pos < P->len && P->s[P->pos] >= '0' && P->s[P->pos] <= '9') P->pos++;
    if (P->pos == f) return fail(P, "bad fraction");
  }
  if (P->pos < P->len && (P->s[P->pos] == 'e' || P->s[P->pos] == 'E')) {
    P->pos++;
    if (P->pos < P->len && (P->s[P->pos] == '+' || P->s[P->pos] == '-')) P->pos++;
    size_t e = P->pos;
    while (P->pos < P->len && P->s[P->pos] >= '0' && P->s[P->pos] <= '9') P->pos++;
    if (P->pos == e) return fail(P, "bad exponent");
  }
  size_t n = P->pos - start;
  v->str = (char *)ema__malloc(n + 1);
  if (!v->str) return fail(P, "out of memory");
  memcpy(v->str, P->s + start, n);
  v->str[n] = '\0';
  v->len = n;
  v->type = DJ_NUM;
  return 0;
}

static int parse_value(dj_parser *P, dj_val *v, int depth);

static int grow(dj_parser *P, dj_val *v, size_t *cap, int obj) {
  if (v->n < *cap) return 0;
  size_t nc = *cap ? *cap * 2 : 4;
  dj_val *ni = (dj_val *)ema__realloc(v->items, nc * sizeof *ni);
  if (!ni) return fail(P, "out of memory");
  v->items = ni;
  if (obj) {
    char **nk = (char **)ema__realloc(v->keys, nc * sizeof *nk);
    if (!nk) return fail(P, "out of memory");
    v->keys = nk;
  }
  *cap = nc;
  return 0;
}

static int parse_container(dj_parser *P, dj_val *v, int depth, int obj) {
  if (depth >= DJ_MAX_DEPTH) return fail(P, "nesting too deep");
  v->type = obj ? DJ_OBJ : DJ_ARR;
  unsigned char close = obj ? '}' : ']';
  size_t cap = 0;
  P->pos++;
  skip_ws(P);
  if (P->pos < P->len && P->s[P->pos] == close) {
    P->pos++;
    return 0;
  }
  for (;;) {
    if (grow(P, v, &cap, obj)) return -1;
    dj_val *item = &v->items[v->n];
    memset(item, 0, sizeof *item);
    if (obj) {
      skip_ws(P);
      if (P->pos >= P->len || P->s[P->pos] != '"') return fail(P, "expected a key");
      char *key;
      size_t klen;
      if (parse_string(P, &key, &klen)) return -1;
      for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->keys[i], key) == 0) {
          free(key);
          return fail(P, "duplicate key");
        }
      v->keys[v->n] = key;
      skip_ws(P);
      if (P->pos >= P->len || P->s[P->pos] != ':') {
        v->n++;
        return fail(P, "expected ':'");
      }
      P->pos++;
    }
    v->n++;
    if (parse_value(P, item, depth + 1)) return -1;
    skip_ws(P);
    if (P->pos >= P->len) return fail(P, "unterminated container");
    if (P->s[P->pos] == ',') {
      P->pos++;
      continue;
    }
    if (P->s[P->pos] == close) {
      P->pos++;
      return 0;
    }
    return fail(P, obj ? "expected ',' or '}'" : "expected ',' or ']'");
  }
}

static int parse_value(dj_parser *P, dj_val *v, int depth) {
  skip_ws(P);
  if (P->pos >= P->len) return fail(P, "unexpected end");
  unsigned char c = P->s[P->pos];
  if (c == '{' || c == '[') return parse_container(P, v, depth, c == '{');
  if (c == '"') {
    v->type = DJ_STR;
    return parse_string(P, &v->str, &v->len);
  }
  if (c == '-' || (c >= '0' && c <= '9')) return parse_number(P, v);
  static const char *const words[3] = {"null", "true", "false"};
  for (int i = 0; i < 3; i++) {
    size_t n = strlen(words[i]);
    if (P->len - P->pos >= n && memcmp(P->s + P->pos, words[i], n) == 0) {
      P->pos += n;
      v->type = i == 0 ? DJ_NULL : DJ_BOOL;
      v->boolean = i == 1;
      return 0;
    }
  }
  return fail(P, "unexpected character");
}

int dj_parse(const char *text, size_t len, dj_val *out, char *err, size_t cap) {
  memset(out, 0, sizeof *out);
  dj_parser P = {(const unsigned char *)text, len, 0, err, cap};
  if (parse_value(&P, out, 0)) return -1;
  skip_ws(&P);
  if (P.pos != len) return fail(&P, "trailing bytes after the value");
  return 0;
}

void dj_free(dj_val *v) {
  if (!v) return;
  for (size_t i = 0; i < v->n; i++) {
    dj_free(&v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->str);
  memset(v, 0, sizeof *v);
}

const dj_val *dj_get(const dj_val *v, const char *key) {
  if (!v || v->type != DJ_OBJ) return NULL;
  for (size_t i = 0; i < v->n; i++)
    if (strcmp(v->keys[i], key) == 0) return &v->items[i];
  return NULL;
}

int dj_int(const dj_val *v, int64_t lo, int64_t hi, int64_t *out) {
  if (!v || v->type != DJ_NUM) return -1;
  const char *s = v->str;
  int neg = *s == '-';
  if (neg) s++;
  uint64_t x = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1; /* fraction or exponent */
    if (x > (UINT64_MAX - 9) / 10) return -1;
    x = x * 10 + (uint64_t)(*s - '0');
  }
  if (x > (uint64_t)INT64_MAX) return -1;
  int64_t r = neg ? -(int64_t)x : (int64_t)x;
  if (r < lo || r > hi) return -1;
  *out = r;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Writer                                                                    */
/* ------------------------------------------------------------------------ */

void dj_buf_init(dj_buf *b) {
  memset(b, 0, sizeof *b);
  b->ok = 1;
}

void dj_buf_free(dj_buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

static void append(dj_buf *b, const char *s, size_t n) {
  if (!b->ok) return;
  if (b->len + n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + n + 1) nc *= 2;
    char *np = (char *)ema__realloc(b->p, nc);
    if (!np) {
      b->ok = 0;
      return;
    }
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void dj_raw(dj_buf *b, const char *s) { append(b, s, strlen(s)); }

void dj_printf(dj_buf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof tmp) {
    b->ok = 0;
    return;
  }
  append(b, tmp, (size_t)n);
}

void dj_str(dj_buf *b, const char *s) {
  append(b, "\"", 1);
  for (const char *p = s; *p; p++) {
    unsigned char c = (unsigned char)*p;
    const char *e = NULL;
    char u[8];
    switch (c) {
      case '"':
        e = "\\\"";
        break;
      case '\\':
        e = "\\\\";
        break;
      case '\b':
        e = "\\b";
        break;
      case '\f':
        e = "\\f";
        break;
      case '\n':
        e = "\\n";
        break;
      case '\r':
        e = "\\r";
        break;
      case '\t':
        e = "\\t";
        break;
      default:
        if (c < 0x20) {
          snprintf(u, sizeof u, "\\u%04x", c);
          e = u;
        }
    }
    if (e)
      append(b, e, strlen(e));
    else
      append(b, p, 1);
  }
  append(b, "\"", 1);
}

void dj_ints(dj_buf *b, int n, const int64_t *v) {
  append(b, "[", 1);
  for (int i = 0; i < n; i++) dj_printf(b, i ? ",%lld" : "%lld", (long long)v[i]);
  append(b, "]", 1);
}
