/*
 * src/io/st_read.c: safetensors reader: opens a file (or a buffer), checks
 * the 8-byte length, parses the header (st_json.c), validates it as the
 * reference implementation does (st_validate.c) and reads tensor bytes on
 * demand with pread; st_check_unchanged tells whether the file changed since
 * it was opened.
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
#include <unistd.h>

#include "io/st_internal.h"

struct st_file_impl {
  int fd;                   /* -1 for memory files */
  const unsigned char *mem; /* memory files: the whole file */
  char *path;               /* for messages; NULL for memory files */
  struct stat sb;           /* the file as opened (st_check_unchanged) */
  st_header h;
  size_t *by_name; /* tensor indices sorted by name */
};

typedef struct st_file_full {
  st_file pub;
  struct st_file_impl impl;
} st_file_full;

static _Thread_local void (*st_test_read_hook)(void *);
static _Thread_local void *st_test_read_user;

void st_test_after_read(void (*fn)(void *user), void *user) {
  st_test_read_hook = fn;
  st_test_read_user = user;
}

static uint64_t st_le64(const unsigned char *b) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
  return v;
}

/* Parse and validate (st_validate.c); on success fill a new st_file_full. */
static ema_status st_build(const unsigned char *hdr, uint64_t n, uint64_t file_size, char *msg, st_file_full **out) {
  st_file_full *f = ema__calloc(1, sizeof *f);
  if (!f) {
    snprintf(msg, ST_MSG, "out of memory");
    return EMA_E_NOMEM;
  }
  f->impl.fd = -1;
  ema_status st = st_parse_header(hdr, (size_t)n, 8, &f->impl.h, msg, ST_MSG);
  if (st == EMA_OK) st = st_validate(&f->impl.h, file_size - 8 - n, &f->impl.by_name, msg);
  if (st != EMA_OK) {
    st_header_free(&f->impl.h);
    free(f);
    return st;
  }
  st_header *h = &f->impl.h;
  f->pub.n_tensors = h->n_tensors;
  f->pub.tensors = h->tensors;
  f->pub.n_meta = h->n_meta;
  f->pub.meta = h->meta;
  f->pub.has_metadata = h->has_metadata;
  f->pub.header_len = n;
  f->pub.data_start = 8 + n;
  f->pub.data_len = file_size - 8 - n;
  f->pub.file_size = file_size;
  f->pub.impl = &f->impl;
  *out = f;
  return EMA_OK;
}

/* The checks on the 8-byte length, shared by both entry points. */
static ema_status st_check_len(uint64_t size, const unsigned char *first8, uint64_t *n, char *msg) {
  if (size < 8) {
    snprintf(msg, ST_MSG, "invalid safetensors file: %llu bytes, too short for the 8-byte header length",
             (unsigned long long)size);
    return EMA_E_FORMAT;
  }
  *n = st_le64(first8);
  if (*n > ST_MAX_HEADER) {
    snprintf(msg, ST_MSG,
             "invalid safetensors file: header length %llu (bytes 0-7) exceeds the cap of %u "
             "bytes",
             (unsigned long long)*n, ST_MAX_HEADER);
    return EMA_E_FORMAT;
  }
  if (*n > size - 8) {
    snprintf(msg, ST_MSG,
             "invalid safetensors file: header length %llu (bytes 0-7) runs past the end of "
             "the file (%llu bytes follow the length)",
             (unsigned long long)*n, (unsigned long long)(size - 8));
    return EMA_E_FORMAT;
  }
  return EMA_OK;
}

/* Validate the length and header at b for a file of size bytes and make the
   st_file, whose data is read from mem (NULL: the caller keeps it, never
   read). head_len > 0: b holds exactly the length and header, head_len
   bytes. */
static ema_status st_open_bytes(const unsigned char *b, uint64_t size, size_t head_len, const unsigned char *mem,
                                st_file **out, char *err, size_t err_cap) {
  char msg[ST_MSG];
  msg[0] = '\0';
  uint64_t n = 0;
  ema_status st = st_check_len(size, b, &n, msg);
  if (st == EMA_OK && head_len && head_len - 8 != n) {
    st_errf(err, err_cap, "the head holds %zu bytes, not the 8-byte length and the %llu-byte header it announces",
            head_len, (unsigned long long)n);
    return EMA_E_INVALID_ARG;
  }
  st_file_full *f = NULL;
  if (st == EMA_OK) st = st_build(b + 8, n, size, msg, &f);
  if (st != EMA_OK) {
    st_errf(err, err_cap, "%s", msg);
    return st;
  }
  f->impl.mem = mem;
  *out = &f->pub;
  return EMA_OK;
}

ema_status st_open_mem(const void *buf, size_t len, st_file **out, char *err, size_t err_cap) {
  if (out) *out = NULL;
  if (!out || (!buf && len > 0)) {
    st_errf(err, err_cap, "st_open_mem: NULL argument");
    return EMA_E_INVALID_ARG;
  }
  return st_open_bytes(buf, len, 0, buf, out, err, err_cap);
}

ema_status st_open_head(const void *head, size_t head_len, uint64_t data_len, st_file **out, char *err,
                        size_t err_cap) {
  if (out) *out = NULL;
  if (!out || !head) {
    st_errf(err, err_cap, "st_open_head: NULL argument");
    return EMA_E_INVALID_ARG;
  }
  if (data_len > UINT64_MAX - head_len) {
    st_errf(err, err_cap, "invalid safetensors file: its data section of %llu bytes is too large",
            (unsigned long long)data_len);
    return EMA_E_FORMAT;
  }
  if (head_len < 8) {
    st_errf(err, err_cap, "the head holds %zu bytes, not the 8-byte length and the header it announces", head_len);
    return EMA_E_INVALID_ARG;
  }
  /* the data is the caller's, in parts: never read through st_read */
  return st_open_bytes(head, (uint64_t)head_len + data_len, head_len, NULL, out, err, err_cap);
}

/* pread exactly len bytes at off; 0, or -1 with errno (0 on early EOF). */
static int st_pread_all(int fd, void *dst, size_t len, uint64_t off) {
  unsigned char *p = dst;
  while (len > 0) {
    size_t chunk = len < ((size_t)1 << 30) ? len : ((size_t)1 << 30);
    ssize_t r = pread(fd, p, chunk, (off_t)off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) {
      errno = 0;
      return -1;
    }
    p += r;
    len -= (size_t)r;
    off += (uint64_t)r;
  }
  return 0;
}

static ema_status st_io_error(char *err, size_t err_cap, const char *path, const char *what, uint64_t off) {
  char eb[128];
  if (errno == 0)
    st_errf(err, err_cap,
            "%s: unexpected end of file at byte %llu while %s (the file shrank after it was "
            "opened?)",
            path, (unsigned long long)off, what);
  else
    st_errf(err, err_cap, "%s: %s: %s", path, what, st_strerror(errno, eb, sizeof eb));
  return EMA_E_IO;
}

ema_status st_open(const char *path, st_file **out, char *err, size_t err_cap) {
  if (out) *out = NULL;
  if (!path || !out) {
    st_errf(err, err_cap, "st_open: NULL argument");
    return EMA_E_INVALID_ARG;
  }
  char eb[128], msg[ST_MSG];
  /* O_NONBLOCK: opening a FIFO must not hang; it is refused below anyway. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    st_errf(err, err_cap, "%s: cannot open: %s", path, st_strerror(errno, eb, sizeof eb));
    return EMA_E_IO;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    st_errf(err, err_cap, "%s: cannot stat: %s", path, st_strerror(errno, eb, sizeof eb));
    close(fd);
    return EMA_E_IO;
  }
  if (!S_ISREG(sb.st_mode)) {
    st_errf(err, err_cap, "%s: not a regular file", path);
    close(fd);
    return EMA_E_IO;
  }
  uint64_t size = (uint64_t)sb.st_size, n = 0;
  unsigned char first8[8] = {0};
  ema_status st = EMA_OK;
  if (size >= 8 && st_pread_all(fd, first8, 8, 0) != 0) {
    st = st_io_error(err, err_cap, path, "reading the header length", 0);
    close(fd);
    return st;
  }
  st = st_check_len(size, first8, &n, msg);
  if (st != EMA_OK) {
    st_errf(err, err_cap, "%s: %s", path, msg);
    close(fd);
    return st;
  }
  unsigned char *hdr = ema__malloc(n ? (size_t)n : 1);
  char *pcopy = ema__malloc(strlen(path) + 1);
  if (!hdr || !pcopy) {
    st_errf(err, err_cap, "%s: out of memory for a header of %llu bytes", path, (unsigned long long)n);
    free(hdr);
    free(pcopy);
    close(fd);
    return EMA_E_NOMEM;
  }
  memcpy(pcopy, path, strlen(path) + 1);
  if (st_pread_all(fd, hdr, (size_t)n, 8) != 0) {
    st = st_io_error(err, err_cap, path, "reading the header", 8);
    free(hdr);
    free(pcopy);
    close(fd);
    return st;
  }
  st_file_full *f = NULL;
  st = st_build(hdr, n, size, msg, &f);
  free(hdr);
  if (st != EMA_OK) {
    st_errf(err, err_cap, "%s: %s", path, msg);
    free(pcopy);
    close(fd);
    return st;
  }
  f->impl.fd = fd;
  f->impl.path = pcopy;
  f->impl.sb = sb;
  *out = &f->pub;
  return EMA_OK;
}

void st_close(st_file *f) {
  if (!f) return;
  st_file_full *ff = (st_file_full *)f;
  if (ff->impl.fd >= 0) close(ff->impl.fd);
  free(ff->impl.path);
  free(ff->impl.by_name);
  st_header_free(&ff->impl.h);
  free(ff);
}

const st_tensor *st_find_n(const st_file *f, const char *name, size_t len) {
  if (!f || !f->impl || (!name && len)) return NULL;
  const st_tensor *t = f->tensors;
  const size_t *idx = f->impl->by_name;
  size_t lo = 0, hi = f->n_tensors;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const st_tensor *m = &t[idx[mid]];
    int c = st_bytes_cmp(m->name, m->name_len, name, len);
    if (c == 0) return m;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

const st_tensor *st_find(const st_file *f, const char *name) {
  if (!name) return NULL;
  return st_find_n(f, name, strlen(name));
}

const char *st_meta_get(const st_file *f, const char *key) {
  if (!f || !key) return NULL;
  size_t len = strlen(key);
  for (size_t i = 0; i < f->n_meta; i++)
    if (st_bytes_cmp(f->meta[i].key, f->meta[i].key_len, key, len) == 0) return f->meta[i].value;
  return NULL;
}

ema_status st_read_range(const st_file *f, const st_tensor *t, uint64_t offset, void *dst, size_t len, char *err,
                         size_t err_cap) {
  if (!f || !f->impl || !t || (!dst && len)) {
    st_errf(err, err_cap, "st_read: NULL argument");
    return EMA_E_INVALID_ARG;
  }
  uintptr_t base = (uintptr_t)f->tensors, tp = (uintptr_t)t;
  if (tp < base || (tp - base) % sizeof(st_tensor) != 0 || (tp - base) / sizeof(st_tensor) >= f->n_tensors) {
    st_errf(err, err_cap, "st_read: the tensor does not belong to this file");
    return EMA_E_INVALID_ARG;
  }
  if (offset > t->nbytes || len > t->nbytes - offset) {
    char q[128];
    st_quote(q, sizeof q, t->name, t->name_len);
    st_errf(err, err_cap, "st_read: bytes [%llu, %llu) are outside tensor %s of %llu bytes", (unsigned long long)offset,
            (unsigned long long)offset + len, q, (unsigned long long)t->nbytes);
    return EMA_E_INVALID_ARG;
  }
  if (len == 0) return EMA_OK;
  uint64_t at = f->data_start + t->begin + offset;
  const struct st_file_impl *im = f->impl;
  if (im->fd < 0) {
    if (!im->mem) {
      st_errf(err, err_cap, "st_read: this file's data is held by its caller (st_open_head)");
      return EMA_E_INVALID_ARG;
    }
    memcpy(dst, im->mem + at, len);
    return EMA_OK;
  }
  if (st_pread_all(im->fd, dst, len, at) != 0) {
    char q[128], what[200];
    st_quote(q, sizeof q, t->name, t->name_len);
    snprintf(what, sizeof what, "reading tensor %s", q);
    return st_io_error(err, err_cap, im->path, what, at);
  }
  if (st_test_read_hook) {
    void (*fn)(void *) = st_test_read_hook;
    st_test_read_hook = NULL;
    fn(st_test_read_user);
  }
  return EMA_OK;
}

static int st_same_time(struct timespec a, struct timespec b) { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; }

ema_status st_check_unchanged(const st_file *f, char *err, size_t err_cap) {
  if (!f || !f->impl) {
    st_errf(err, err_cap, "st_check_unchanged: NULL argument");
    return EMA_E_INVALID_ARG;
  }
  const struct st_file_impl *im = f->impl;
  if (im->fd < 0) return EMA_OK;
  char eb[128];
  struct stat now, named;
  if (fstat(im->fd, &now) != 0) {
    st_errf(err, err_cap, "%s: cannot stat: %s", im->path, st_strerror(errno, eb, sizeof eb));
    return EMA_E_IO;
  }
  const char *what = NULL;
  if (now.st_size != im->sb.st_size)
    what = "its size";
  else if (!st_same_time(now.st_mtim, im->sb.st_mtim) || !st_same_time(now.st_ctim, im->sb.st_ctim))
    what = "its modification time";
  else if (stat(im->path, &named) != 0 || named.st_ino != im->sb.st_ino || named.st_dev != im->sb.st_dev)
    what = "the file at that path (replaced or removed)";
  if (what) {
    st_errf(err, err_cap, "%s: the file changed while it was being read (%s changed); nothing was loaded", im->path,
            what);
    return EMA_E_IO;
  }
  return EMA_OK;
}

ema_status st_read(const st_file *f, const st_tensor *t, void *dst, size_t cap, char *err, size_t err_cap) {
  if (t && cap < t->nbytes) {
    char q[128];
    st_quote(q, sizeof q, t->name, t->name_len);
    st_errf(err, err_cap, "st_read: tensor %s needs %llu bytes, the buffer holds %zu", q, (unsigned long long)t->nbytes,
            cap);
    return EMA_E_INVALID_ARG;
  }
  return st_read_range(f, t, 0, dst, t ? (size_t)t->nbytes : 0, err, err_cap);
}
