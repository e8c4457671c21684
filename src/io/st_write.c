/*
 * src/io/st_write.c: safetensors writer. Builds the header exactly as the
 * reference writer does (tensor order, compact JSON, serde_json escaping,
 * space padding to a multiple of 8) and writes the file atomically:
 * temporary file with O_EXCL in the target's directory, full writes with
 * EINTR and short-write handling, fsync, rename, directory fsync. Also the
 * thread-local fault injection the tests use to prove the old file survives.
 */
#ifndef _POSIX_C_SOURCE
#  define _POSIX_C_SOURCE 200809L
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
/* Fault injection (tests only; thread-local, so threads never interfere)    */
/* ------------------------------------------------------------------------ */

static _Thread_local struct {
  st_fault fault;
  uint64_t arg;
  uint64_t written;
  unsigned flip;
} st_tl;

void st_test_inject(st_fault fault, uint64_t arg) {
  st_tl.fault = fault;
  st_tl.arg = arg;
  st_tl.written = 0;
  st_tl.flip = 0;
}

uint64_t st_test_bytes_written(void) { return st_tl.written; }

/* Fire a one-shot fault: 1 (and errno set) when fault is armed. */
static int st_fire(st_fault fault, int err) {
  if (st_tl.fault != fault) return 0;
  st_tl.fault = ST_FAULT_NONE;
  errno = err;
  return 1;
}

static ssize_t st_sys_write(int fd, const void *buf, size_t len) {
  if (st_tl.fault == ST_FAULT_WRITE) {
    if (st_tl.written >= st_tl.arg) {
      st_tl.fault = ST_FAULT_NONE;
      errno = ENOSPC;
      return -1;
    }
    if (len > st_tl.arg - st_tl.written) len = (size_t)(st_tl.arg - st_tl.written);
  } else if (st_tl.fault == ST_FAULT_SHORT) {
    if ((st_tl.flip++ & 1u) == 0) {
      errno = EINTR;
      return -1;
    }
    uint64_t most = st_tl.arg ? st_tl.arg : 1;
    if (len > most) len = (size_t)most;
  }
  ssize_t r = write(fd, buf, len);
  if (r > 0) st_tl.written += (uint64_t)r;
  return r;
}

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
    case '"': esc = "\\\""; break;
    case '\\': esc = "\\\\"; break;
    case '\b': esc = "\\b"; break;
    case '\f': esc = "\\f"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    case '\t': esc = "\\t"; break;
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

typedef struct st_prep {
  unsigned char *head;   /* 8-byte length, then the padded JSON header */
  size_t head_len;
  size_t *order;         /* input indices in file order */
  uint64_t *nbytes;      /* bytes of each input tensor */
  uint64_t data_len;
} st_prep;

static void st_prep_free(st_prep *p) {
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

static ema_status st_bad(char *err, size_t cap, const char *what, const char *s, size_t i,
                         const char *why) {
  char q[128];
  if (s)
    st_quote(q, sizeof q, s, strlen(s));
  else
    snprintf(q, sizeof q, "#%zu", i);
  st_errf(err, cap, "safetensors writer: %s %s: %s", what, q, why);
  return EMA_E_INVALID_ARG;
}

static ema_status st_prepare(const st_wtensor *t, size_t n, const st_wmeta *m, size_t nm, int need_data,
                             st_prep *p, char *err, size_t cap) {
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
    const st_wtensor *w = &t[i];
    if (!w->name) {
      st = st_bad(err, cap, "tensor", NULL, i, "NULL name");
      goto fail;
    }
    size_t len = strlen(w->name);
    if (st_utf8_check((const unsigned char *)w->name, len) != len) {
      st = st_bad(err, cap, "tensor", w->name, i, "name is not valid UTF-8");
      goto fail;
    }
    if (strcmp(w->name, "__metadata__") == 0) {
      st = st_bad(err, cap, "tensor", w->name, i, "name is reserved for metadata");
      goto fail;
    }
    if ((unsigned)w->dtype >= (unsigned)ST_DTYPE_COUNT) {
      st = st_bad(err, cap, "tensor", w->name, i, "unknown dtype");
      goto fail;
    }
    if (w->ndim < 0 || w->ndim > ST_MAX_RANK || (w->ndim > 0 && !w->shape)) {
      st = st_bad(err, cap, "tensor", w->name, i, "ndim outside [0, 64] or NULL shape");
      goto fail;
    }
    for (int d = 0; d < w->ndim; d++) {
      if (w->shape[d] < 0 || (uint64_t)w->shape[d] > ST_MAX_INT) {
        st = st_bad(err, cap, "tensor", w->name, i, "a dimension is outside [0, 2^53]");
        goto fail;
      }
    }
    uint64_t count;
    int r = st_tensor_size(w->dtype, w->ndim, w->shape, &count, &p->nbytes[i]);
    if (r == -1) {
      st = st_bad(err, cap, "tensor", w->name, i, "size overflows 64 bits");
      goto fail;
    }
    if (r == -2) {
      st = st_bad(err, cap, "tensor", w->name, i, "not a whole number of bytes");
      goto fail;
    }
    if (need_data && p->nbytes[i] > 0 && !w->data) {
      st = st_bad(err, cap, "tensor", w->name, i, "NULL data");
      goto fail;
    }
    if (st_add_u64(p->data_len, p->nbytes[i], &p->data_len) != 0 ||
        p->data_len > ST_MAX_INT) {
      st = st_bad(err, cap, "tensor", w->name, i, "the data would exceed 2^53 bytes");
      goto fail;
    }
    p->order[i] = names[i] = i;
  }
  for (size_t i = 0; i < nm; i++) {
    if (!m[i].key || !m[i].value) {
      st = st_bad(err, cap, "metadata key", m[i].key, i, "NULL key or value");
      goto fail;
    }
    size_t kl = strlen(m[i].key), vl = strlen(m[i].value);
    if (st_utf8_check((const unsigned char *)m[i].key, kl) != kl ||
        st_utf8_check((const unsigned char *)m[i].value, vl) != vl) {
      st = st_bad(err, cap, "metadata key", m[i].key, i, "key or value is not valid UTF-8");
      goto fail;
    }
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

  /* The header: 8 placeholder bytes for the length, then the JSON. */
  sb_put(&b, "\0\0\0\0\0\0\0\0{", 9);
  int first = 1;
  if (nm) {
    sb_lit(&b, "\"__metadata__\":{");
    for (size_t i = 0; i < nm; i++) {
      if (i) sb_lit(&b, ",");
      sb_str(&b, m[i].key, strlen(m[i].key));
      sb_lit(&b, ":");
      sb_str(&b, m[i].value, strlen(m[i].value));
    }
    sb_lit(&b, "}");
    first = 0;
  }
  uint64_t off = 0;
  for (size_t k = 0; k < n; k++) {
    const st_wtensor *w = &t[p->order[k]];
    if (!first) sb_lit(&b, ",");
    first = 0;
    sb_str(&b, w->name, strlen(w->name));
    sb_lit(&b, ":{\"dtype\":");
    sb_str(&b, st_dtype_name(w->dtype), strlen(st_dtype_name(w->dtype)));
    sb_lit(&b, ",\"shape\":[");
    for (int d = 0; d < w->ndim; d++) {
      if (d) sb_lit(&b, ",");
      sb_u64(&b, (uint64_t)w->shape[d]);
    }
    sb_lit(&b, "],\"data_offsets\":[");
    sb_u64(&b, off);
    sb_lit(&b, ",");
    off += p->nbytes[p->order[k]];
    sb_u64(&b, off);
    sb_lit(&b, "]}");
  }
  sb_lit(&b, "}");
  while (!b.oom && b.len % 8 != 0) sb_lit(&b, " ");
  if (b.oom) goto nomem;
  uint64_t hl = (uint64_t)b.len - 8;
  if (hl > ST_MAX_HEADER) {
    st_errf(err, cap, "safetensors writer: the header would be %llu bytes, over the cap of %u",
            (unsigned long long)hl, ST_MAX_HEADER);
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

ema_status st_serialize(const st_wtensor *tensors, size_t n, const st_wmeta *meta, size_t n_meta,
                        unsigned char **out, size_t *out_len, char *err, size_t err_cap) {
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
  unsigned char *buf = ema__malloc(total ? total : 1);
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

/* ------------------------------------------------------------------------ */
/* Atomic file writing                                                       */
/* ------------------------------------------------------------------------ */

typedef struct st_out {
  int fd;
  unsigned char *buf;
  size_t len, cap;
} st_out;

/* Write all of p[0..n) to fd; 0, or -1 with errno. */
static int st_write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
    ssize_t r = st_sys_write(fd, p, chunk);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) {
      errno = EIO;
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int st_out_flush(st_out *o) {
  if (o->len == 0) return 0;
  int r = st_write_all(o->fd, o->buf, o->len);
  o->len = 0;
  return r;
}

/* Buffered write: small pieces are gathered, big ones go straight out. */
static int st_out_put(st_out *o, const void *p, size_t n) {
  if (n <= o->cap - o->len) {
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return 0;
  }
  if (st_out_flush(o) != 0) return -1;
  if (n < o->cap) {
    memcpy(o->buf, p, n);
    o->len = n;
    return 0;
  }
  return st_write_all(o->fd, p, n);
}

ema_status st_write(const char *path, const st_wtensor *tensors, size_t n, const st_wmeta *meta,
                    size_t n_meta, char *err, size_t err_cap) {
  return st_write_stream(path, tensors, n, meta, n_meta, NULL, NULL, err, err_cap);
}

/* Chunk of tensor data requested from a producer at a time. */
#define ST_PRODUCE_CHUNK ((size_t)1 << 20)

ema_status st_write_stream(const char *path, const st_wtensor *tensors, size_t n, const st_wmeta *meta,
                           size_t n_meta, st_producer produce, void *user, char *err, size_t err_cap) {
  unsigned char *chunk = NULL;
  if (!path || !*path) {
    st_errf(err, err_cap, "st_write: NULL or empty path");
    return EMA_E_INVALID_ARG;
  }
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
    st_errf(err, err_cap, "%s: not a file name", path);
    return EMA_E_INVALID_ARG;
  }
  st_prep p;
  ema_status st = st_prepare(tensors, n, meta, n_meta, produce == NULL, &p, err, err_cap);
  if (st != EMA_OK) return st;

  char eb[128];
  char *dir = NULL, *tmp = NULL;
  unsigned char *obuf = NULL;
  int dfd = -1, fd = -1, created = 0;
  size_t dlen = slash ? (size_t)(slash - path) : 1;
  if (slash == path) dlen = 1; /* "/name" */
  dir = ema__malloc(dlen + 1);
  size_t blen = strlen(base) < 128 ? strlen(base) : 128;
  size_t tcap = blen + 64;
  tmp = ema__malloc(tcap);
  size_t ocap = (size_t)1 << 16;
  obuf = ema__malloc(ocap);
  if (!dir || !tmp || !obuf) {
    st_errf(err, err_cap, "%s: out of memory", path);
    st = EMA_E_NOMEM;
    goto done;
  }
  if (slash)
    memcpy(dir, path, dlen);
  else
    dir[0] = '.';
  dir[dlen] = '\0';

  /* The directory first: if it cannot be opened nothing has changed yet. */
  dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    st_errf(err, err_cap, "%s: cannot open directory '%s': %s", path, dir,
            st_strerror(errno, eb, sizeof eb));
    st = EMA_E_IO;
    goto done;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t nonce = (uint64_t)ts.tv_nsec * 2654435761u ^ (uint64_t)(uintptr_t)&ts ^
                   ((uint64_t)ts.tv_sec << 20);
  for (int attempt = 0; attempt < 100; attempt++) {
    nonce = nonce * 6364136223846793005u + 1442695040888963407u;
    snprintf(tmp, tcap, ".%.*s.tmp-%ld-%08llx", (int)blen, base, (long)getpid(),
             (unsigned long long)(nonce >> 32));
    if (st_fire(ST_FAULT_OPEN_TEMP, EACCES)) {
      fd = -1;
      break;
    }
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0 || errno != EEXIST) break;
  }
  if (fd < 0) {
    st_errf(err, err_cap, "%s: cannot create a temporary file in '%s': %s", path, dir,
            st_strerror(errno, eb, sizeof eb));
    st = EMA_E_IO;
    goto done;
  }
  created = 1;

  st_out o = {fd, obuf, 0, ocap};
  int bad = st_out_put(&o, p.head, p.head_len);
  if (produce && !bad) {
    chunk = ema__malloc(ST_PRODUCE_CHUNK);
    if (!chunk) {
      st_errf(err, err_cap, "%s: out of memory", path);
      st = EMA_E_NOMEM;
      goto done;
    }
  }
  for (size_t k = 0; k < n && !bad; k++) {
    size_t nb = (size_t)p.nbytes[p.order[k]];
    if (!produce) {
      if (nb) bad = st_out_put(&o, tensors[p.order[k]].data, nb);
      continue;
    }
    for (size_t off = 0; off < nb && !bad; off += ST_PRODUCE_CHUNK) {
      size_t len = nb - off < ST_PRODUCE_CHUNK ? nb - off : ST_PRODUCE_CHUNK;
      st = produce(user, p.order[k], off, chunk, len, err, err_cap);
      if (st != EMA_OK) goto done; /* the producer wrote the message */
      bad = st_out_put(&o, chunk, len);
    }
  }
  if (!bad) bad = st_out_flush(&o);
  if (bad) {
    st_errf(err, err_cap, "%s: cannot write the temporary file '%s/%s': %s", path, dir, tmp,
            st_strerror(errno, eb, sizeof eb));
    st = EMA_E_IO;
    goto done;
  }
  if (st_fire(ST_FAULT_FSYNC, EIO) || fsync(fd) != 0) {
    st_errf(err, err_cap, "%s: cannot fsync the temporary file '%s/%s': %s", path, dir, tmp,
            st_strerror(errno, eb, sizeof eb));
    st = EMA_E_IO;
    goto done;
  }
  int cr = close(fd);
  fd = -1;
  if (cr != 0) {
    st_errf(err, err_cap, "%s: cannot close the temporary file '%s/%s': %s", path, dir, tmp,
            st_strerror(errno, eb, sizeof eb));
    st = EMA_E_IO;
    goto done;
  }
  if (st_fire(ST_FAULT_RENAME, EXDEV) || renameat(dfd, tmp, dfd, base) != 0) {
    st_errf(err, err_cap, "%s: cannot rename the temporary file '%s' over it: %s", path, tmp,
            st_strerror(errno, eb, sizeof eb));
    st = EMA_E_IO;
    goto done;
  }
  created = 0;
  /* Make the rename durable. EINVAL: this file system cannot sync directories. */
  if (st_fire(ST_FAULT_DIRSYNC, EIO) || (fsync(dfd) != 0 && errno != EINVAL)) {
    st_errf(err, err_cap,
            "%s: the new file is in place but fsync of directory '%s' failed, so the rename "
            "may not survive a crash: %s",
            path, dir, st_strerror(errno, eb, sizeof eb));
    st = EMA_E_IO;
    goto done;
  }
  st = EMA_OK;
done:
  if (fd >= 0) close(fd);
  if (created) unlinkat(dfd, tmp, 0);
  if (dfd >= 0) close(dfd);
  free(dir);
  free(tmp);
  free(obuf);
  free(chunk);
  st_prep_free(&p);
  return st;
}
