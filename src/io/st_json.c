/*
 * src/io/st_json.c: strict parser for exactly the safetensors header grammar.
 *
 *   header   = "{" ws [ member *( ws "," ws member ) ] ws "}" *" "
 *   member   = string ws ":" ws ( tensor | metadata )   ; metadata iff key is "__metadata__"
 *   tensor   = "{" ws field ws "," ws field ws "," ws field ws "}"
 *              ; the fields "dtype" (string), "shape" (array of uint, at most
 *              ; ST_MAX_RANK) and "data_offsets" (array of 2 uint), each
 *              ; exactly once, in any order
 *   metadata = "{" ws [ string ws ":" ws string *( ws "," ws string ws ":" ws string ) ] ws "}"
 *   uint     = "0" / %x31-39 *DIGIT          ; at most 2^53
 *   ws       = *( %x20 / %x09 / %x0A / %x0D )
 *
 * Strings are JSON strings checked strictly (see safetensors.h). Not a
 * general JSON parser: anything outside this grammar is an error, so nesting
 * depth is fixed and the parser never recurses. Duplicate "__metadata__"
 * keys and duplicate fields inside a tensor entry are found here; duplicate
 * tensor names and metadata keys are found by the caller with a sort.
 * Every error names the file offset (base + position) and what was
 * expected there.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/st_internal.h"

typedef struct jp {
  const unsigned char *s;
  size_t len;
  size_t p;
  uint64_t base;
  char *err;
  size_t err_cap;
  st_header *h;
  size_t pool_used, pool_cap;
  size_t tensors_cap, dim_index_cap;
  size_t dims_n, dims_cap;
  size_t *dim_index; /* per tensor: index of its first dim in h->dims */
  size_t meta_cap, meta_off_cap;
} jp;

/* A short description of what is at position at: "end of header", "'x'"
   or "byte 0xNN". */
static void jp_found(const jp *j, size_t at, char *buf, size_t cap) {
  if (at >= j->len) {
    snprintf(buf, cap, "end of header");
    return;
  }
  unsigned c = j->s[at];
  if (c >= 0x21 && c < 0x7F)
    snprintf(buf, cap, "'%c'", (char)c);
  else
    snprintf(buf, cap, "byte 0x%02x", c);
}

static ema_status jp_fail(jp *j, size_t at, const char *fmt, ...) ST_PRINTF(3, 4);
static ema_status jp_fail(jp *j, size_t at, const char *fmt, ...) {
  char msg[384];
  va_list ap;
  va_start(ap, fmt);
  int r = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (r < 0) msg[0] = '\0';
  st_errf(j->err, j->err_cap, "invalid safetensors header at byte %llu: %s", (unsigned long long)(j->base + at), msg);
  return EMA_E_FORMAT;
}

/* Error "expected X, found Y" at the current position. */
static ema_status jp_expected(jp *j, const char *what) {
  char f[32];
  jp_found(j, j->p, f, sizeof f);
  return jp_fail(j, j->p, "expected %s, found %s", what, f);
}

static ema_status jp_nomem(jp *j) {
  st_errf(j->err, j->err_cap, "out of memory while parsing a safetensors header of %llu bytes",
          (unsigned long long)j->len);
  return EMA_E_NOMEM;
}

static void jp_ws(jp *j) {
  while (j->p < j->len) {
    unsigned char c = j->s[j->p];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    j->p++;
  }
}

static int jp_peek(const jp *j) { return j->p < j->len ? j->s[j->p] : -1; }

static int jp_hex4(const unsigned char *s, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned c = s[i], d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      return -1;
    v = v * 16 + d;
  }
  *out = v;
  return 0;
}

/* Parse the string at j->p (which must be '"') and decode it into the pool
   at pool_used, NUL-terminated, without committing it: *out points at it,
   *out_len is its length. jp_keep() commits it. */
/* cp (a Unicode scalar value) as UTF-8 into enc; returns the length. */
static size_t jp_utf8(unsigned cp, unsigned char enc[4]) {
  if (cp < 0x80) {
    enc[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    enc[0] = (unsigned char)(0xC0 | (cp >> 6));
    enc[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    enc[0] = (unsigned char)(0xE0 | (cp >> 12));
    enc[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    enc[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  enc[0] = (unsigned char)(0xF0 | (cp >> 18));
  enc[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
  enc[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
  enc[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

/* A \uXXXX escape (a surrogate pair as two) at j->p, decoded into enc. */
static ema_status jp_unicode(jp *j, unsigned char enc[4], size_t *k) {
  unsigned cp;
  if (j->p + 6 > j->len || jp_hex4(j->s + j->p + 2, &cp) != 0)
    return jp_fail(j, j->p, "invalid \\u escape: expected 4 hexadecimal digits");
  size_t esc_at = j->p;
  j->p += 6;
  if (cp >= 0xDC00 && cp <= 0xDFFF) return jp_fail(j, esc_at, "invalid \\u escape: lone low surrogate \\u%04X", cp);
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    unsigned lo;
    if (j->p + 6 > j->len || j->s[j->p] != '\\' || j->s[j->p + 1] != 'u' || jp_hex4(j->s + j->p + 2, &lo) != 0 ||
        lo < 0xDC00 || lo > 0xDFFF)
      return jp_fail(j, esc_at,
                     "invalid \\u escape: high surrogate \\u%04X is not followed by a "
                     "\\u escape of a low surrogate (DC00-DFFF)",
                     cp);
    j->p += 6;
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
  }
  if (cp == 0) return jp_fail(j, esc_at, "\\u0000 is not allowed in names, keys or values");
  *k = jp_utf8(cp, enc);
  return EMA_OK;
}

/* The escape sequence at j->p (a backslash), decoded into enc[0..*k). */
static ema_status jp_escape(jp *j, unsigned char enc[4], size_t *k) {
  if (j->p + 1 >= j->len) return jp_fail(j, j->p, "unterminated escape sequence at end of header");
  unsigned e = j->s[j->p + 1];
  unsigned char one = 0;
  switch (e) {
    case '"':
      one = '"';
      break;
    case '\\':
      one = '\\';
      break;
    case '/':
      one = '/';
      break;
    case 'b':
      one = '\b';
      break;
    case 'f':
      one = '\f';
      break;
    case 'n':
      one = '\n';
      break;
    case 'r':
      one = '\r';
      break;
    case 't':
      one = '\t';
      break;
    case 'u':
      return jp_unicode(j, enc, k);
    default: {
      char f[32];
      jp_found(j, j->p + 1, f, sizeof f);
      return jp_fail(j, j->p,
                     "invalid escape: expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t "
                     "\\uXXXX after the backslash, found %s",
                     f);
    }
  }
  enc[0] = one;
  *k = 1;
  j->p += 2;
  return EMA_OK;
}

static ema_status jp_string(jp *j, char **out, size_t *out_len) {
  if (jp_peek(j) != '"') return jp_expected(j, "'\"' (a string)");
  size_t start = j->p;
  j->p++;
  char *dst = j->h->pool + j->pool_used;
  size_t room = j->pool_cap - j->pool_used, o = 0;
  for (;;) {
    if (j->p >= j->len)
      return jp_fail(j, j->p, "unterminated string (it starts at byte %llu)", (unsigned long long)(j->base + start));
    unsigned c = j->s[j->p];
    if (c == '"') {
      j->p++;
      break;
    }
    unsigned char enc[4];
    size_t k = 0;
    if (c == '\\') {
      ema_status st = jp_escape(j, enc, &k);
      if (st != EMA_OK) return st;
      if (o + k >= room) return jp_nomem(j); /* cannot happen: decoded <= raw */
      memcpy(dst + o, enc, k);
      o += k;
      continue;
    }
    if (c < 0x20) return jp_fail(j, j->p, "raw control character 0x%02x in a string (must be escaped)", c);
    if (c < 0x80) {
      k = 1;
    } else {
      k = st_utf8_seq(j->s + j->p, j->len - j->p);
      if (k == 0)
        return jp_fail(j, j->p,
                       "invalid UTF-8 (byte 0x%02x starts no well-formed sequence: "
                       "overlong, surrogate, above U+10FFFF, truncated or stray)",
                       c);
    }
    if (o + k >= room) return jp_nomem(j); /* cannot happen: decoded <= raw */
    memcpy(dst + o, j->s + j->p, k);
    o += k;
    j->p += k;
  }
  dst[o] = '\0';
  *out = dst;
  *out_len = o;
  return EMA_OK;
}

static void jp_keep(jp *j, size_t len) { j->pool_used += len + 1; }

static int jp_is(const char *s, size_t len, const char *lit) { return strlen(lit) == len && memcmp(s, lit, len) == 0; }

/* Parse a non-negative integer at j->p. */
static ema_status jp_uint(jp *j, uint64_t *out) {
  size_t start = j->p;
  int c = jp_peek(j);
  if (c == '-') return jp_fail(j, start, "negative numbers are not allowed here");
  if (c < '0' || c > '9') return jp_expected(j, "a non-negative integer");
  if (c == '0' && j->p + 1 < j->len && j->s[j->p + 1] >= '0' && j->s[j->p + 1] <= '9')
    return jp_fail(j, start, "integer with a leading zero");
  uint64_t v = 0;
  while (j->p < j->len && j->s[j->p] >= '0' && j->s[j->p] <= '9') {
    uint64_t d = (uint64_t)(j->s[j->p] - '0');
    if (v > (ST_MAX_INT - d) / 10)
      return jp_fail(j, start, "integer above 2^53 (%llu)", (unsigned long long)ST_MAX_INT);
    v = v * 10 + d;
    j->p++;
  }
  c = jp_peek(j);
  if (c == '.' || c == 'e' || c == 'E')
    return jp_fail(j, j->p, "expected an integer: fractions and exponents are not allowed");
  *out = v;
  return EMA_OK;
}

/* New capacity for an array of elem-byte items that must hold need items:
   0 on success, -1 when it would not fit in size_t. */
static int jp_newcap(size_t cap, size_t need, size_t elem, size_t *out) {
  size_t n = cap ? cap : 8;
  while (n < need) {
    if (n > SIZE_MAX / 2 / elem) return -1;
    n *= 2;
  }
  *out = n;
  return 0;
}

/* Make array arr (with capacity cap) hold need items, or return EMA_E_NOMEM
   from the calling function. */
#define JP_RESERVE(j, arr, cap, need)                                               \
  do {                                                                              \
    if ((need) > (cap)) {                                                           \
      size_t ncap_;                                                                 \
      if (jp_newcap((cap), (need), sizeof *(arr), &ncap_) != 0) return jp_nomem(j); \
      void *q_ = ema__realloc((arr), ncap_ * sizeof *(arr));                        \
      if (!q_) return jp_nomem(j);                                                  \
      (arr) = q_;                                                                   \
      (cap) = ncap_;                                                                \
    }                                                                               \
  } while (0)

/* The value of "dtype" into t. */
static ema_status jp_dtype_value(jp *j, st_tensor *t) {
  ema_status st;
  size_t v_at = j->p;
  if (jp_peek(j) != '"') return jp_expected(j, "a dtype string such as \"F32\"");
  char *v;
  size_t vlen;
  if ((st = jp_string(j, &v, &vlen)) != EMA_OK) return st;
  int dt = st_dtype_from_name(v, vlen);
  if (dt < 0) {
    char q[128];
    st_quote(q, sizeof q, v, vlen);
    return jp_fail(j, v_at,
                   "unknown dtype %s (expected one of BOOL F4 F6_E2M3 F6_E3M2 "
                   "U8 I8 F8_E5M2 F8_E4M3 F8_E8M0 I16 U16 F16 BF16 I32 U32 F32 "
                   "C64 F64 I64 U64)",
                   q);
  }
  t->dtype = (st_dtype)dt;
  return EMA_OK;
}

/* The value of "shape" into t (dims in the header's pool). */
static ema_status jp_shape_value(jp *j, st_tensor *t) {
  ema_status st;
  st_header *h = j->h;
  if (jp_peek(j) != '[') return jp_expected(j, "'[' (the shape array)");
  j->p++;
  jp_ws(j);
  int nd = 0;
  if (jp_peek(j) != ']') {
    for (;;) {
      if (nd == ST_MAX_RANK) return jp_fail(j, j->p, "shape has more than %d dimensions", ST_MAX_RANK);
      uint64_t v;
      if ((st = jp_uint(j, &v)) != EMA_OK) return st;
      JP_RESERVE(j, h->dims, j->dims_cap, j->dims_n + 1);
      h->dims[j->dims_n++] = (int64_t)v;
      nd++;
      jp_ws(j);
      if (jp_peek(j) == ',') {
        j->p++;
        jp_ws(j);
        continue;
      }
      if (jp_peek(j) == ']') break;
      return jp_expected(j, "',' or ']' in the shape array");
    }
  }
  j->p++;
  t->ndim = nd;
  return EMA_OK;
}

/* The value of "data_offsets" into t. */
static ema_status jp_offsets_value(jp *j, st_tensor *t) {
  ema_status st;
  if (jp_peek(j) != '[') return jp_expected(j, "'[' (the data_offsets array)");
  size_t arr_at = j->p;
  j->p++;
  uint64_t v[2];
  for (int i = 0; i < 2; i++) {
    jp_ws(j);
    if (jp_peek(j) == ']') return jp_fail(j, arr_at, "data_offsets must hold exactly 2 integers, found %d", i);
    if ((st = jp_uint(j, &v[i])) != EMA_OK) return st;
    jp_ws(j);
    if (i == 0) {
      if (jp_peek(j) != ',') return jp_expected(j, "',' between the two data_offsets");
      j->p++;
    }
  }
  if (jp_peek(j) == ',') return jp_fail(j, arr_at, "data_offsets must hold exactly 2 integers, found more");
  if (jp_peek(j) != ']') return jp_expected(j, "']' after the two data_offsets");
  j->p++;
  t->begin = v[0];
  t->end = v[1];
  return EMA_OK;
}

static ema_status jp_tensor(jp *j, const char *name, size_t name_len, size_t key_at) {
  st_header *h = j->h;
  ema_status st;
  if (jp_peek(j) != '{') {
    char q[128];
    st_quote(q, sizeof q, name, name_len);
    char what[200];
    snprintf(what, sizeof what, "'{' (the entry of tensor %s)", q);
    return jp_expected(j, what);
  }
  size_t obj_at = j->p;
  j->p++;
  size_t idx = h->n_tensors;
  JP_RESERVE(j, h->tensors, j->tensors_cap, idx + 1);
  JP_RESERVE(j, j->dim_index, j->dim_index_cap, idx + 1);
  st_tensor *t = &h->tensors[idx];
  memset(t, 0, sizeof *t);
  t->name = name;
  t->name_len = name_len;
  t->key_offset = j->base + key_at;
  j->dim_index[idx] = j->dims_n;

  int seen_dtype = 0, seen_shape = 0, seen_offsets = 0;
  jp_ws(j);
  if (jp_peek(j) != '}') {
    for (;;) {
      size_t fkey_at = j->p;
      char *key;
      size_t klen;
      if ((st = jp_string(j, &key, &klen)) != EMA_OK) return st;
      /* field keys are not kept: the pool space is reused */
      int which = jp_is(key, klen, "dtype")          ? 1
                  : jp_is(key, klen, "shape")        ? 2
                  : jp_is(key, klen, "data_offsets") ? 3
                                                     : 0;
      if (which == 0) {
        char q[128];
        st_quote(q, sizeof q, key, klen);
        return jp_fail(j, fkey_at,
                       "unknown field %s in a tensor entry (expected \"dtype\", "
                       "\"shape\" or \"data_offsets\")",
                       q);
      }
      int *seen = which == 1 ? &seen_dtype : which == 2 ? &seen_shape : &seen_offsets;
      if (*seen)
        return jp_fail(j, fkey_at, "duplicate field \"%s\" in a tensor entry",
                       which == 1   ? "dtype"
                       : which == 2 ? "shape"
                                    : "data_offsets");
      *seen = 1;
      jp_ws(j);
      if (jp_peek(j) != ':') return jp_expected(j, "':'");
      j->p++;
      jp_ws(j);
      st = which == 1 ? jp_dtype_value(j, t) : which == 2 ? jp_shape_value(j, t) : jp_offsets_value(j, t);
      if (st != EMA_OK) return st;
      jp_ws(j);
      if (jp_peek(j) == ',') {
        j->p++;
        jp_ws(j);
        continue;
      }
      if (jp_peek(j) == '}') break;
      return jp_expected(j, "',' or '}' in a tensor entry");
    }
  }
  if (!seen_dtype || !seen_shape || !seen_offsets) {
    char q[128];
    st_quote(q, sizeof q, name, name_len);
    return jp_fail(j, j->p, "the entry of tensor %s (at byte %llu) lacks %s%s%s", q,
                   (unsigned long long)(j->base + obj_at), seen_dtype ? "" : "\"dtype\" ",
                   seen_shape ? "" : "\"shape\" ", seen_offsets ? "" : "\"data_offsets\"");
  }
  j->p++;
  h->n_tensors++;
  return EMA_OK;
}

static ema_status jp_metadata(jp *j) {
  st_header *h = j->h;
  ema_status st;
  if (jp_peek(j) != '{') return jp_expected(j, "'{' (the __metadata__ object of strings)");
  h->meta_offset = j->base + j->p;
  j->p++;
  jp_ws(j);
  if (jp_peek(j) == '}') {
    j->p++;
    return EMA_OK;
  }
  for (;;) {
    size_t key_at = j->p;
    char *k, *v;
    size_t klen, vlen;
    if ((st = jp_string(j, &k, &klen)) != EMA_OK) return st;
    jp_keep(j, klen);
    jp_ws(j);
    if (jp_peek(j) != ':') return jp_expected(j, "':'");
    j->p++;
    jp_ws(j);
    if (jp_peek(j) != '"') return jp_expected(j, "a string (__metadata__ values must be strings)");
    if ((st = jp_string(j, &v, &vlen)) != EMA_OK) return st;
    jp_keep(j, vlen);
    JP_RESERVE(j, h->meta, j->meta_cap, h->n_meta + 1);
    JP_RESERVE(j, h->meta_key_offsets, j->meta_off_cap, h->n_meta + 1);
    h->meta[h->n_meta].key = k;
    h->meta[h->n_meta].key_len = klen;
    h->meta[h->n_meta].value = v;
    h->meta[h->n_meta].value_len = vlen;
    h->meta_key_offsets[h->n_meta] = j->base + key_at;
    h->n_meta++;
    jp_ws(j);
    if (jp_peek(j) == ',') {
      j->p++;
      jp_ws(j);
      continue;
    }
    if (jp_peek(j) == '}') break;
    return jp_expected(j, "',' or '}' in __metadata__");
  }
  j->p++;
  return EMA_OK;
}

ema_status st_parse_header(const unsigned char *json, size_t len, uint64_t base, st_header *h, char *err,
                           size_t err_cap) {
  jp j;
  memset(&j, 0, sizeof j);
  j.s = json;
  j.len = len;
  j.base = base;
  j.err = err;
  j.err_cap = err_cap;
  j.h = h;
  ema_status st;
  if (len > SIZE_MAX - 1) return jp_nomem(&j);
  h->pool = ema__malloc(len + 1);
  if (!h->pool) return jp_nomem(&j);
  j.pool_cap = len + 1;

  if (jp_peek(&j) != '{') {
    st = jp_expected(&j, "'{' as the first byte of the header");
    goto out;
  }
  j.p++;
  jp_ws(&j);
  if (jp_peek(&j) != '}') {
    for (;;) {
      size_t key_at = j.p;
      char *key;
      size_t klen;
      if (jp_peek(&j) != '"') {
        st = jp_expected(&j, "'\"' (a tensor name or \"__metadata__\")");
        goto out;
      }
      if ((st = jp_string(&j, &key, &klen)) != EMA_OK) goto out;
      int is_meta = jp_is(key, klen, "__metadata__");
      if (!is_meta) jp_keep(&j, klen);
      jp_ws(&j);
      if (jp_peek(&j) != ':') {
        st = jp_expected(&j, "':'");
        goto out;
      }
      j.p++;
      jp_ws(&j);
      if (is_meta) {
        if (h->has_metadata) {
          st = jp_fail(&j, key_at, "duplicate key \"__metadata__\" (first at byte %llu)",
                       (unsigned long long)h->meta_offset);
          goto out;
        }
        h->has_metadata = 1;
        st = jp_metadata(&j);
      } else {
        st = jp_tensor(&j, key, klen, key_at);
      }
      if (st != EMA_OK) goto out;
      jp_ws(&j);
      if (jp_peek(&j) == ',') {
        j.p++;
        jp_ws(&j);
        continue;
      }
      if (jp_peek(&j) == '}') break;
      st = jp_expected(&j, "',' or '}' after a top-level entry");
      goto out;
    }
  }
  j.p++;
  while (j.p < j.len && j.s[j.p] == ' ') j.p++;
  if (j.p < j.len) {
    char f[32];
    jp_found(&j, j.p, f, sizeof f);
    st = jp_fail(&j, j.p, "found %s after the header object; only space padding may follow", f);
    goto out;
  }
  /* Point each tensor at its dims now that the dims array stopped moving. */
  for (size_t i = 0; i < h->n_tensors; i++) h->tensors[i].shape = h->tensors[i].ndim ? h->dims + j.dim_index[i] : NULL;
  st = EMA_OK;
out:
  free(j.dim_index);
  return st;
}

void st_header_free(st_header *h) {
  if (!h) return;
  free(h->tensors);
  free(h->meta);
  free(h->meta_key_offsets);
  free(h->pool);
  free(h->dims);
  memset(h, 0, sizeof *h);
}
