/*
 * Public access to safetensors files (ema_file_*) and the inference export
 * of a checkpoint (ema_extract_averages), over the strict reader/writer in
 * safetensors.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "io/safetensors.h"
#include "io/st_internal.h"

struct ema_file {
  st_file *f;
};

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
  if (!f || !out) return EMA_E_INVALID_ARG;
  if (i >= f->f->n_tensors) return EMA_E_NOT_FOUND;
  fill_tensor(&f->f->tensors[i], out);
  return EMA_OK;
}

ema_status ema_file_find(const ema_file *f, const char *name, ema_file_tensor *out) {
  if (!f || !name || !out) return EMA_E_INVALID_ARG;
  const st_tensor *s = st_find(f->f, name);
  if (!s) return EMA_E_NOT_FOUND;
  fill_tensor(s, out);
  return EMA_OK;
}

size_t ema_file_metadata_count(const ema_file *f) { return f ? f->f->n_meta : 0; }

ema_status ema_file_metadata_at(const ema_file *f, size_t i, const char **key, const char **value) {
  if (!f) return EMA_E_INVALID_ARG;
  if (i >= f->f->n_meta) return EMA_E_NOT_FOUND;
  if (key) *key = f->f->meta[i].key;
  if (value) *value = f->f->meta[i].value;
  return EMA_OK;
}

const char *ema_file_metadata(const ema_file *f, const char *key) {
  if (!f || !key) return NULL;
  return st_meta_get(f->f, key);
}

ema_status ema_file_read(const ema_file *f, const char *name, uint64_t offset, void *dst, size_t len, char *err,
                         size_t errcap) {
  if (!f || !name || (!dst && len)) {
    st_errf(err, errcap, "ema_file_read: NULL argument");
    return EMA_E_INVALID_ARG;
  }
  const st_tensor *s = st_find(f->f, name);
  if (!s) {
    st_errf(err, errcap, "ema_file_read: the file has no tensor '%s'", name);
    return EMA_E_NOT_FOUND;
  }
  if (len == 0 && offset <= s->nbytes) return EMA_OK;
  return st_read_range(f->f, s, offset, dst, len, err, errcap);
}

ema_status ema_file_write_stream(const char *path, const ema_file_entry *tensors, size_t n, const char *const *meta,
                                 size_t n_meta, ema_file_producer produce, void *user, char *err, size_t errcap) {
  if (!path || (!tensors && n) || (!meta && n_meta)) {
    st_errf(err, errcap, "ema_file_write: NULL argument");
    return EMA_E_INVALID_ARG;
  }
  st_wtensor *w = (st_wtensor *)ema__calloc(n + 1, sizeof *w);
  st_wmeta *m = (st_wmeta *)ema__calloc(n_meta + 1, sizeof *m);
  if (!w || !m) {
    free(w);
    free(m);
    st_errf(err, errcap, "ema_file_write: out of memory");
    return EMA_E_NOMEM;
  }
  ema_status st = EMA_OK;
  for (size_t i = 0; i < n; i++) {
    int dt = st_dtype_from_ema(tensors[i].dtype);
    if (dt < 0 || tensors[i].ndim < 0 || tensors[i].ndim > EMA_MAX_DIMS) {
      st_errf(err, errcap, "ema_file_write: tensor '%s' has an unknown dtype or a bad ndim",
              tensors[i].name ? tensors[i].name : "(null)");
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
  if (st == EMA_OK) st = st_write_stream(path, w, n, m, n_meta, produce, user, err, errcap);
  free(w);
  free(m);
  return st;
}

ema_status ema_file_write(const char *path, const ema_file_entry *tensors, size_t n, const char *const *meta,
                          size_t n_meta, char *err, size_t errcap) {
  return ema_file_write_stream(path, tensors, n, meta, n_meta, NULL, NULL, err, errcap);
}

/* ------------------------------------------------------------------------ */
/* Inference export                                                          */
/* ------------------------------------------------------------------------ */

typedef struct extract_src {
  const st_file *f;
  const st_tensor **src; /* per output tensor: where its bytes come from */
  int *conv;             /* 1: float32 average rounded to the model's f16/bf16 */
  float *buf;            /* conversion buffer */
} extract_src;

#define EXTRACT_CONV_CHUNK ((size_t)1 << 20) /* output bytes; the producer's largest request */

static ema_status extract_produce(void *user, size_t index, uint64_t offset, void *dst, size_t len, char *err,
                                  size_t errcap) {
  extract_src *x = (extract_src *)user;
  const st_tensor *s = x->src[index];
  if (!x->conv[index]) return st_read_range(x->f, s, offset, dst, len, err, errcap);
  /* 2-byte outputs from 4-byte float32 averages */
  ema_status st = st_read_range(x->f, s, offset * 2, x->buf, len * 2, err, errcap);
  if (st != EMA_OK) return st;
  const ema_kernels *k = ema_kernels_best();
  k->from_shadow[x->conv[index] == 1 ? EMA_PAIR_BF16_F32 : EMA_PAIR_F16_F32](dst, x->buf, len / 2);
  return EMA_OK;
}

ema_status ema_extract_averages(const char *checkpoint, const char *out, const char *ema_name, char *err,
                                size_t errcap) {
  if (!checkpoint || !out) {
    st_errf(err, errcap, "ema_extract_averages: checkpoint and out must not be NULL");
    return EMA_E_INVALID_ARG;
  }
  st_file *f = NULL;
  ema_status st = st_open(checkpoint, &f, err, errcap);
  if (st != EMA_OK) return st;
  /* an explicit name selects that average (of a bank); else the checkpoint's */
  const char *name = ema_name ? ema_name : st_meta_get(f, "ema.name");
  if (!name) name = EMA__DEFAULT_NAME;
  size_t nl = strlen(name);
  extract_src x;
  memset(&x, 0, sizeof x);
  x.f = f;
  char *probe = NULL;
  st_wtensor *w = (st_wtensor *)ema__calloc(f->n_tensors + 1, sizeof *w);
  x.src = (const st_tensor **)ema__calloc(f->n_tensors + 1, sizeof *x.src);
  x.conv = (int *)ema__calloc(f->n_tensors + 1, sizeof *x.conv);
  x.buf = (float *)ema__malloc(EXTRACT_CONV_CHUNK * 2);
  size_t nw = 0, n_avg = 0, probe_cap = 0;
  if (!w || !x.src || !x.conv || !x.buf) {
    st_errf(err, errcap, "ema_extract_averages: out of memory");
    st = EMA_E_NOMEM;
    goto done;
  }
  for (size_t i = 0; i < f->n_tensors && st == EMA_OK; i++) {
    const st_tensor *s = &f->tensors[i];
    /* "<n>/<name>" and "<n>/<name>/..." belong to the model tensor <n> */
    if (s->name_len + 2 + nl > probe_cap) {
      free(probe);
      probe_cap = 2 * (s->name_len + nl + 2);
      probe = (char *)ema__malloc(probe_cap);
      if (!probe) {
        st_errf(err, errcap, "ema_extract_averages: out of memory");
        st = EMA_E_NOMEM;
        break;
      }
    }
    const char *mark = NULL;
    for (const char *q = strstr(s->name, "/"); q; q = strstr(q + 1, "/"))
      if (strncmp(q + 1, name, nl) == 0 && (q[1 + nl] == '\0' || q[1 + nl] == '/') &&
          st_find_n(f, s->name, (size_t)(q - s->name)))
        mark = q;
    if (mark) {
      if (mark[1 + nl] == '/') continue; /* zero-debias accumulators */
      const st_tensor *model = st_find_n(f, s->name, (size_t)(mark - s->name));
      int same = model->ndim == s->ndim;
      for (int d = 0; same && d < s->ndim; d++) same = model->shape[d] == s->shape[d];
      int conv = s->dtype == ST_F32 && (model->dtype == ST_F16 || model->dtype == ST_BF16);
      if (!same || (s->dtype != model->dtype && !conv)) {
        st_errf(err, errcap, "ema_extract_averages: the average '%s' does not match the shape or dtype of '%s'",
                s->name, model->name);
        st = EMA_E_FORMAT;
        break;
      }
      x.src[nw] = s;
      x.conv[nw] = conv ? (model->dtype == ST_BF16 ? 1 : 2) : 0;
      w[nw].name = model->name;
      w[nw].dtype = model->dtype;
      w[nw].ndim = model->ndim;
      w[nw].shape = model->shape;
      nw++;
      n_avg++;
      continue;
    }
    /* a model tensor with an average is replaced by it; others are plain state */
    snprintf(probe, probe_cap, "%s/%s", s->name, name);
    if (st_find(f, probe)) continue;
    x.src[nw] = s;
    w[nw].name = s->name;
    w[nw].dtype = s->dtype;
    w[nw].ndim = s->ndim;
    w[nw].shape = s->shape;
    nw++;
  }
  if (st == EMA_OK && n_avg == 0) {
    st_errf(err, errcap, "ema_extract_averages: '%s' holds no averages named '*/%s'", checkpoint, name);
    st = EMA_E_FORMAT;
  }
  if (st == EMA_OK) {
    st_wmeta meta[] = {{"format", "pt"}, {"libema.extracted_from", "averages"}, {"ema.name", name}};
    st = st_write_stream(out, w, nw, meta, 3, extract_produce, &x, err, errcap);
  }
done:
  free(probe);
  free(w);
  free(x.src);
  free(x.conv);
  free(x.buf);
  st_close(f);
  return st;
}
