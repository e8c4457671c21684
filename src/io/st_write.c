/*
 * src/io/st_write.c: safetensors writer. Builds the header exactly as the
 * reference writer does (tensor order, compact JSON, serde_json escaping,
 * space padding to a multiple of 8) and the file image in memory
 * (st_serialize), through a sink (st_write_sink), or its data checksum. The
 * atomic file writing is in st_atomic.c.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "common/xxh64.h"
#include "io/st_internal.h"

/* ------------------------------------------------------------------------ */
/* Header construction                                                       */
/* ------------------------------------------------------------------------ */

typedef struct st_buf {
  unsigned char *p;
  size_t len, cap;
  int oom;
} st_buf;

static void sb_put(st_buf *b, const void *s, size_t n) {
  if (b->oom) return;
  if (n > b->cap - b->len) {
    size_t c = b->cap ? b->cap : 256;
    while (c - b->len < n) {
      if (c > SIZE_MAX / 2) {
        b->oom = 1;
        return;
      }
      c *= 2;
    }
    unsigned char *q = ema__realloc(b->p, c);
    if (!q) {
      b->oom = 1;
      return;
    }
    b->p = q;
    b->cap = c;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static void sb_lit(st_buf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_u64(st_buf *b, uint64_t v) {
  char d[24];
  int i = 24;
  do {
    d[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  sb_put(b, d + i, (size_t)(24 - i));
}

/* A JSON string, escaped as serde_json does. */
static void sb_str(st_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  sb_put(b, "\"", 1);
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    char u[7];
    switch (c) {
      case '"':
        esc = "\\\"";
        break;
      case '\\':
        esc = "\\\\";
        break;
      case '\b':
        esc = "\\b";
        break;
      case '\f':
        esc = "\\f";
        break;
      case '\n':
        esc = "\\n";
        break;
      case '\r':
        esc = "\\r";
        break;
      case '\t':
        esc = "\\t";
        break;
      default:
        if (c < 0x20) {
          memcpy(u, "\\u00", 4);
          u[4] = hex[c >> 4];
          u[5] = hex[c & 15];
          u[6] = '\0';
          esc = u;
        }
    }
    if (esc) {
      sb_put(b, s + i - run, run);
      run = 0;
      sb_lit(b, esc);
    } else {
      run++;
    }
  }
  sb_put(b, s + n - run, run);
  sb_put(b, "\"", 1);
}

void st_prep_free(st_prep *p) {
  free(p->head);
  free(p->order);
  free(p->nbytes);
  memset(p, 0, sizeof *p);
}

static int st_cmp_wname(size_t a, size_t b, const void *ctx) {
  const st_wtensor *t = ctx;
  return st_bytes_cmp(t[a].name, strlen(t[a].name), t[b].name, strlen(t[b].name));
}

/* The reference order: dtype alignment descending, then name. */
static int st_cmp_worder(size_t a, size_t b, const void *ctx) {
  const st_wtensor *t = ctx;
  if (t[a].dtype != t[b].dtype) return t[a].dtype > t[b].dtype ? -1 : 1;
  return st_cmp_wname(a, b, ctx);
}

static int st_cmp_wmeta(size_t a, size_t b, const void *ctx) {
  const st_wmeta *m = ctx;
  return st_bytes_cmp(m[a].key, strlen(m[a].key), m[b].key, strlen(m[b].key));
}

static ema_status st_bad(char *err, size_t cap, const char *what, const char *s, size_t i, const char *why) {
  char q[128];
  if (s)
    st_quote(q, sizeof q, s, strlen(s));
  else
    snprintf(q, sizeof q, "#%zu", i);
  st_errf(err, cap, "safetensors writer: %s %s: %s", what, q, why);
  return EMA_E_INVALID_ARG;
}

/* The header into b: 8 placeholder bytes for the length, then the JSON
   (metadata first, tensors in p->order with their data offsets). */
static void st_header_json(st_buf *b, const st_wtensor *t, size_t n, const st_wmeta *m, size_t nm, const st_prep *p) {
  sb_put(b, "\0\0\0\0\0\0\0\0{", 9);
  int first = 1;
  if (nm) {
    sb_lit(b, "\"__metadata__\":{");
    for (size_t i = 0; i < nm; i++) {
      if (i) sb_lit(b, ",");
      sb_str(b, m[i].key, strlen(m[i].key));
      sb_lit(b, ":");
      sb_str(b, m[i].value, strlen(m[i].value));
    }
    sb_lit(b, "}");
    first = 0;
  }
  uint64_t off = 0;
  for (size_t k = 0; k < n; k++) {
    const st_wtensor *w = &t[p->order[k]];
    if (!first) sb_lit(b, ",");
    first = 0;
    sb_str(b, w->name, strlen(w->name));
    sb_lit(b, ":{\"dtype\":");
    sb_str(b, st_dtype_name(w->dtype), strlen(st_dtype_name(w->dtype)));
    sb_lit(b, ",\"shape\":[");
    for (int d = 0; d < w->ndim; d++) {
      if (d) sb_lit(b, ",");
      sb_u64(b, (uint64_t)w->shape[d]);
    }
    sb_lit(b, "],\"data_offsets\":[");
    sb_u64(b, off);
    sb_lit(b, ",");
    off += p->nbytes[p->order[k]];
    sb_u64(b, off);
    sb_lit(b, "]}");
  }
  sb_lit(b, "}");
}

/* Tensor i of a write: name, dtype, shape and size; its byte count into
   p->nbytes[i], added to p->data_len. */
static ema_status st_check_tensor(const st_wtensor *w, size_t i, int need_data, st_prep *p, char *err, size_t cap) {
  if (!w->name) {
    return st_bad(err, cap, "tensor", NULL, i, "NULL name");
  }
  size_t len = strlen(w->name);
  if (st_utf8_check((const unsigned char *)w->name, len) != len) {
    return st_bad(err, cap, "tensor", w->name, i, "name is not valid UTF-8");
  }
  if (strcmp(w->name, "__metadata__") == 0) {
    return st_bad(err, cap, "tensor", w->name, i, "name is reserved for metadata");
  }
  if ((unsigned)w->dtype >= (unsigned)ST_DTYPE_COUNT) {
    return st_bad(err, cap, "tensor", w->name, i, "unknown dtype");
  }
  if (w->ndim < 0 || w->ndim > ST_MAX_RANK || (w->ndim > 0 && !w->shape)) {
    return st_bad(err, cap, "tensor", w->name, i, "ndim outside [0, 64] or NULL shape");
  }
  for (int d = 0; d < w->ndim; d++) {
    if (w->shape[d] < 0 || (uint64_t)w->shape[d] > ST_MAX_INT) {
      return st_bad(err, cap, "tensor", w->name, i, "a dimension is outside [0, 2^53]");
    }
  }
  uint64_t count;
  int r = st_tensor_size(w->dtype, w->ndim, w->shape, &count, &p->nbytes[i]);
  if (r == -1) {
    return st_bad(err, cap, "tensor", w->name, i, "size overflows 64 bits");
  }
  if (r == -2) {
    return st_bad(err, cap, "tensor", w->name, i, "not a whole number of bytes");
  }
  if (need_data && p->nbytes[i] > 0 && !w->data) {
    return st_bad(err, cap, "tensor", w->name, i, "NULL data");
  }
  if (st_add_u64(p->data_len, p->nbytes[i], &p->data_len) != 0 || p->data_len > ST_MAX_INT) {
    return st_bad(err, cap, "tensor", w->name, i, "the data would exceed 2^53 bytes");
  }
  return EMA_OK;
}

/* Metadata entry i of a write: non-NULL, valid UTF-8. */
static ema_status st_check_meta(const st_wmeta *m, size_t i, char *err, size_t cap) {
  if (!m->key || !m->value) return st_bad(err, cap, "metadata key", m->key, i, "NULL key or value");
  size_t kl = strlen(m->key), vl = strlen(m->value);
  if (st_utf8_check((const unsigned char *)m->key, kl) != kl ||
      st_utf8_check((const unsigned char *)m->value, vl) != vl)
    return st_bad(err, cap, "metadata key", m->key, i, "key or value is not valid UTF-8");
  return EMA_OK;
}

ema_status st_prepare(const st_wtensor *t, size_t n, const st_wmeta *m, size_t nm, int need_data, st_prep *p, char *err,
                      size_t cap) {
  memset(p, 0, sizeof *p);
  if ((n && !t) || (nm && !m)) {
    st_errf(err, cap, "safetensors writer: NULL tensor or metadata array");
    return EMA_E_INVALID_ARG;
  }
  size_t *names = NULL, *keys = NULL;
  st_buf b = {0};
  ema_status st = EMA_OK;
  if (n > SIZE_MAX / sizeof(uint64_t) || nm > SIZE_MAX / sizeof(size_t)) goto nomem;
  p->order = ema__malloc((n ? n : 1) * sizeof(size_t));
  p->nbytes = ema__malloc((n ? n : 1) * sizeof(uint64_t));
  names = ema__malloc((n ? n : 1) * sizeof(size_t));
  keys = ema__malloc((nm ? nm : 1) * sizeof(size_t));
  if (!p->order || !p->nbytes || !names || !keys) goto nomem;

  for (size_t i = 0; i < n; i++) {
    if ((st = st_check_tensor(&t[i], i, need_data, p, err, cap)) != EMA_OK) goto fail;
    p->order[i] = names[i] = i;
  }
  for (size_t i = 0; i < nm; i++) {
    if ((st = st_check_meta(&m[i], i, err, cap)) != EMA_OK) goto fail;
    keys[i] = i;
  }
  if (st_msort(names, n, st_cmp_wname, t) != 0 || st_msort(keys, nm, st_cmp_wmeta, m) != 0 ||
      st_msort(p->order, n, st_cmp_worder, t) != 0)
    goto nomem;
  for (size_t i = 0; i + 1 < n; i++) {
    if (st_cmp_wname(names[i], names[i + 1], t) == 0) {
      st = st_bad(err, cap, "tensor", t[names[i]].name, names[i], "name given twice");
      goto fail;
    }
  }
  for (size_t i = 0; i + 1 < nm; i++) {
    if (st_cmp_wmeta(keys[i], keys[i + 1], m) == 0) {
      st = st_bad(err, cap, "metadata key", m[keys[i]].key, keys[i], "given twice");
      goto fail;
    }
  }

  st_header_json(&b, t, n, m, nm, p);
  while (!b.oom && b.len % 8 != 0) sb_lit(&b, " ");
  if (b.oom) goto nomem;
  uint64_t hl = (uint64_t)b.len - 8;
  if (hl > ST_MAX_HEADER) {
    st_errf(err, cap, "safetensors writer: the header would be %llu bytes, over the cap of %u", (unsigned long long)hl,
            ST_MAX_HEADER);
    st = EMA_E_INVALID_ARG;
    goto fail;
  }
  for (int i = 0; i < 8; i++) b.p[i] = (unsigned char)(hl >> (8 * i));
  p->head = b.p;
  p->head_len = b.len;
  free(names);
  free(keys);
  return EMA_OK;
nomem:
  st_errf(err, cap, "safetensors writer: out of memory");
  st = EMA_E_NOMEM;
fail:
  free(b.p);
  free(names);
  free(keys);
  st_prep_free(p);
  return st;
}

ema_status st_serialize(const st_wtensor *tensors, size_t n, const st_wmeta *meta, size_t n_meta, unsigned char **out,
                        size_t *out_len, char *err, size_t err_cap) {
  if (!out || !out_len) {
    st_errf(err, err_cap, "st_serialize: NULL argument");
    return EMA_E_INVALID_ARG;
  }
  *out = NULL;
  *out_len = 0;
  st_prep p;
  ema_status st = st_prepare(tensors, n, meta, n_meta, 1, &p, err, err_cap);
  if (st != EMA_OK) return st;
  if (p.data_len > SIZE_MAX - p.head_len) {
    st_prep_free(&p);
    st_errf(err, err_cap, "st_serialize: the file would not fit in memory");
    return EMA_E_NOMEM;
  }
  size_t total = p.head_len + (size_t)p.data_len;
  unsigned char *buf = ema__malloc_big(total ? total : 1);
  if (!buf) {
    st_prep_free(&p);
    st_errf(err, err_cap, "st_serialize: out of memory for %zu bytes", total);
    return EMA_E_NOMEM;
  }
  memcpy(buf, p.head, p.head_len);
  size_t o = p.head_len;
  for (size_t k = 0; k < n; k++) {
    size_t nb = (size_t)p.nbytes[p.order[k]];
    if (nb) memcpy(buf + o, tensors[p.order[k]].data, nb);
    o += nb;
  }
  st_prep_free(&p);
  *out = buf;
  *out_len = total;
  return EMA_OK;
}

ema_status st_data_xxh64(const st_wtensor *tensors, size_t n, uint64_t *out, char *err, size_t err_cap) {
  st_prep p;
  ema_status st = st_prepare(tensors, n, NULL, 0, 1, &p, err, err_cap);
  if (st != EMA_OK) return st;
  ema__xxh64_state h;
  ema__xxh64_init(&h, 0);
  for (size_t k = 0; k < n; k++) {
    size_t nb = (size_t)p.nbytes[p.order[k]];
    if (nb) ema__xxh64_update(&h, tensors[p.order[k]].data, nb);
  }
  *out = ema__xxh64_digest(&h);
  st_prep_free(&p);
  return EMA_OK;
}

ema_status st_write_sink(const st_wtensor *tensors, size_t n, const st_wmeta *meta, size_t n_meta, st_sink sink,
                         void *user, char *err, size_t err_cap) {
  if (!sink) {
    st_errf(err, err_cap, "st_write_sink: NULL sink");
    return EMA_E_INVALID_ARG;
  }
  st_prep p;
  ema_status st = st_prepare(tensors, n, meta, n_meta, 1, &p, err, err_cap);
  if (st != EMA_OK) return st;
  st = sink(user, p.head, p.head_len, err, err_cap);
  for (size_t k = 0; k < n && st == EMA_OK; k++) {
    size_t nb = (size_t)p.nbytes[p.order[k]];
    if (nb) st = sink(user, tensors[p.order[k]].data, nb, err, err_cap);
  }
  st_prep_free(&p);
  return st;
}
