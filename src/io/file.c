/*
 * src/io/file.c: public access to safetensors files (ema_file_*) over the
 * strict reader/writer in safetensors.h. The inference export is in
 * export.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "io/safetensors.h"
#include "io/st_internal.h"

struct ema_file {
  st_file *f;
  char err[EMA_ERR_CAP]; /* ema_file_last_error */
};

/* The handle's message (printf-style) and s. The buffer is logically
   mutable through a const handle, as a context's is. */
static ema_status file_fail(const ema_file *cf, ema_status s, const char *fmt, ...) ST_PRINTF(3, 4);
static ema_status file_fail(const ema_file *cf, ema_status s, const char *fmt, ...) {
  ema_file *f = (ema_file *)cf;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->err, sizeof f->err, fmt, ap);
  va_end(ap);
  return s;
}

static void file_clear(const ema_file *f) { ((ema_file *)f)->err[0] = '\0'; }

const char *ema_file_last_error(const ema_file *f) { return f ? f->err : "ema_file_last_error: NULL file"; }

ema_status ema_file_open(ema_file **out, const char *path, char *err, size_t errcap) {
  if (out) *out = NULL;
  if (!out || !path) {
    st_errf(err, errcap, "ema_file_open: out and path must not be NULL");
    return EMA_E_INVALID_ARG;
  }
  ema_file *ef = (ema_file *)ema__calloc(1, sizeof *ef);
  if (!ef) {
    st_errf(err, errcap, "ema_file_open: out of memory");
    return EMA_E_NOMEM;
  }
  ema_status st = st_open(path, &ef->f, err, errcap);
  if (st != EMA_OK) {
    free(ef);
    return st;
  }
  *out = ef;
  return EMA_OK;
}

void ema_file_close(ema_file *f) {
  if (!f) return;
  st_close(f->f);
  free(f);
}

size_t ema_file_count(const ema_file *f) { return f ? f->f->n_tensors : 0; }

static void fill_tensor(const st_tensor *s, ema_file_tensor *out) {
  out->name = s->name;
  out->dtype_name = st_dtype_name(s->dtype);
  out->supported = s->ema_supported;
  out->dtype = s->ema_supported ? s->ema : EMA_F32;
  out->ndim = s->ndim;
  out->shape = s->shape;
  out->numel = s->count;
  out->nbytes = s->nbytes;
}

ema_status ema_file_tensor_at(const ema_file *f, size_t i, ema_file_tensor *out) {
  if (!f) return EMA_E_INVALID_ARG;
  file_clear(f);
  if (!out) return file_fail(f, EMA_E_INVALID_ARG, "ema_file_tensor_at: out is NULL");
  if (i >= f->f->n_tensors)
    return file_fail(f, EMA_E_NOT_FOUND, "ema_file_tensor_at: index %zu is out of range (the file has %zu tensors)", i,
                     f->f->n_tensors);
  fill_tensor(&f->f->tensors[i], out);
  return EMA_OK;
}

/* name, escaped for a message (it is the caller's, but may have come from
   another file). */
static void quote_name(char *q, size_t cap, const char *name) { st_quote(q, cap, name, strlen(name)); }

ema_status ema_file_find(const ema_file *f, const char *name, ema_file_tensor *out) {
  if (!f) return EMA_E_INVALID_ARG;
  file_clear(f);
  if (!name || !out) return file_fail(f, EMA_E_INVALID_ARG, "ema_file_find: name and out must not be NULL");
  const st_tensor *s = st_find(f->f, name);
  if (!s) {
    char q[128];
    quote_name(q, sizeof q, name);
    return file_fail(f, EMA_E_NOT_FOUND, "ema_file_find: the file has no tensor %s", q);
  }
  fill_tensor(s, out);
  return EMA_OK;
}

size_t ema_file_metadata_count(const ema_file *f) { return f ? f->f->n_meta : 0; }

ema_status ema_file_metadata_at(const ema_file *f, size_t i, const char **key, const char **value) {
  if (!f) return EMA_E_INVALID_ARG;
  file_clear(f);
  if (i >= f->f->n_meta)
    return file_fail(f, EMA_E_NOT_FOUND, "ema_file_metadata_at: index %zu is out of range (%zu entries)", i,
                     f->f->n_meta);
  if (key) *key = f->f->meta[i].key;
  if (value) *value = f->f->meta[i].value;
  return EMA_OK;
}

const char *ema_file_metadata(const ema_file *f, const char *key) {
  if (!f || !key) return NULL;
  return st_meta_get(f->f, key);
}

ema_status ema_file_read(const ema_file *f, const char *name, uint64_t offset, void *dst, size_t len) {
  if (!f) return EMA_E_INVALID_ARG;
  file_clear(f);
  if (!name || (!dst && len)) return file_fail(f, EMA_E_INVALID_ARG, "ema_file_read: NULL argument");
  const st_tensor *s = st_find(f->f, name);
  if (!s) {
    char q[128];
    quote_name(q, sizeof q, name);
    return file_fail(f, EMA_E_NOT_FOUND, "ema_file_read: the file has no tensor %s", q);
  }
  if (len == 0 && offset <= s->nbytes) return EMA_OK;
  char err[EMA_ERR_CAP];
  ema_status st = st_read_range(f->f, s, offset, dst, len, err, sizeof err);
  if (st != EMA_OK) file_fail(f, st, "ema_file_read: %s", err);
  return st;
}

static ema_status file_write(const char *fn, const char *path, const ema_file_entry *tensors, size_t n,
                             const char *const *meta, size_t n_meta, ema_file_producer produce, void *user, char *err,
                             size_t errcap) {
  if (!path || (!tensors && n) || (!meta && n_meta)) {
    st_errf(err, errcap, "%s: NULL argument", fn);
    return EMA_E_INVALID_ARG;
  }
  st_wtensor *w = (st_wtensor *)ema__calloc(n + 1, sizeof *w);
  st_wmeta *m = (st_wmeta *)ema__calloc(n_meta + 1, sizeof *m);
  if (!w || !m) {
    free(w);
    free(m);
    st_errf(err, errcap, "%s: out of memory", fn);
    return EMA_E_NOMEM;
  }
  ema_status st = EMA_OK;
  for (size_t i = 0; i < n; i++) {
    int dt = st_dtype_from_ema(tensors[i].dtype);
    if (dt < 0 || tensors[i].ndim < 0 || tensors[i].ndim > EMA_MAX_DIMS) {
      char q[128];
      if (tensors[i].name)
        quote_name(q, sizeof q, tensors[i].name);
      else
        snprintf(q, sizeof q, "#%zu", i);
      st_errf(err, errcap, "%s: tensor %s has an unknown dtype or a bad ndim", fn, q);
      st = EMA_E_INVALID_ARG;
      break;
    }
    w[i].name = tensors[i].name;
    w[i].dtype = (st_dtype)dt;
    w[i].ndim = tensors[i].ndim;
    w[i].shape = tensors[i].shape;
    w[i].data = tensors[i].data;
  }
  for (size_t i = 0; i < n_meta; i++) {
    m[i].key = meta[2 * i];
    m[i].value = meta[2 * i + 1];
  }
  if (st == EMA_OK) {
    char e[EMA_ERR_CAP];
    e[0] = '\0';
    st = st_write_stream(path, w, n, m, n_meta, produce, user, e, sizeof e);
    if (st != EMA_OK) st_errf(err, errcap, "%s: %s", fn, e); /* a producer's message too */
  }
  free(w);
  free(m);
  return st;
}

ema_status ema_file_write_stream(const char *path, const ema_file_entry *tensors, size_t n, const char *const *meta,
                                 size_t n_meta, ema_file_producer produce, void *user, char *err, size_t errcap) {
  return file_write("ema_file_write_stream", path, tensors, n, meta, n_meta, produce, user, err, errcap);
}

ema_status ema_file_write(const char *path, const ema_file_entry *tensors, size_t n, const char *const *meta,
                          size_t n_meta, char *err, size_t errcap) {
  return file_write("ema_file_write", path, tensors, n, meta, n_meta, NULL, NULL, err, errcap);
}
