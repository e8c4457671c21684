/*
 * src/io/st_validate.c: validation of a parsed safetensors header, as the
 * reference implementation does it (names unique, metadata keys unique,
 * offsets contiguous from 0, sizes consistent with shapes and dtypes,
 * nothing after the last tensor). Used by st_read.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/st_internal.h"

static int st_cmp_name(size_t a, size_t b, const void *ctx) {
  const st_tensor *t = ctx;
  return st_bytes_cmp(t[a].name, t[a].name_len, t[b].name, t[b].name_len);
}

static int st_cmp_meta(size_t a, size_t b, const void *ctx) {
  const st_meta *m = ctx;
  return st_bytes_cmp(m[a].key, m[a].key_len, m[b].key, m[b].key_len);
}

/* The reference sorts by (begin, end); ties keep header order. */
static int st_cmp_off(size_t a, size_t b, const void *ctx) {
  const st_tensor *t = ctx;
  if (t[a].begin != t[b].begin) return t[a].begin < t[b].begin ? -1 : 1;
  if (t[a].end != t[b].end) return t[a].end < t[b].end ? -1 : 1;
  return 0;
}

static size_t *st_iota(size_t n) {
  size_t *v = ema__malloc((n ? n : 1) * sizeof(size_t));
  if (v)
    for (size_t i = 0; i < n; i++) v[i] = i;
  return v;
}

/* Validate a parsed header against a data section of data_len bytes. On
   success *by_name gets the name index (caller frees). Writes the message
   (without path) into msg. */
/* No tensor name and no metadata key twice (names, mk: sorted indices). */
static ema_status st_check_dups(const st_header *h, const size_t *names, const size_t *mk, char *msg) {
  char q[128];
  size_t n = h->n_tensors;
  for (size_t i = 0; i + 1 < n; i++) {
    const st_tensor *a = &h->tensors[names[i]], *b = &h->tensors[names[i + 1]];
    if (st_cmp_name(names[i], names[i + 1], h->tensors) == 0) {
      st_quote(q, sizeof q, b->name, b->name_len);
      snprintf(msg, ST_MSG,
               "invalid safetensors header at byte %llu: duplicate tensor name %s (first at "
               "byte %llu)",
               (unsigned long long)b->key_offset, q, (unsigned long long)a->key_offset);
      return EMA_E_FORMAT;
    }
  }
  for (size_t i = 0; i + 1 < h->n_meta; i++) {
    if (st_cmp_meta(mk[i], mk[i + 1], h->meta) == 0) {
      const st_meta *b = &h->meta[mk[i + 1]];
      st_quote(q, sizeof q, b->key, b->key_len);
      snprintf(msg, ST_MSG,
               "invalid safetensors header at byte %llu: duplicate __metadata__ key %s (first "
               "at byte %llu)",
               (unsigned long long)h->meta_key_offsets[mk[i + 1]], q, (unsigned long long)h->meta_key_offsets[mk[i]]);
      return EMA_E_FORMAT;
    }
  }

  return EMA_OK;
}

/* Tensor t, next in offset order after bytes [0, *start): contiguous, its
   size consistent with its shape and dtype. Advances *start. */
static ema_status st_check_offsets(st_tensor *t, uint64_t *start, char *msg) {
  char q[128], sh[128];
  st_quote(q, sizeof q, t->name, t->name_len);
  st_shape_str(sh, sizeof sh, t->ndim, t->shape);
  if (t->begin != *start || t->end < t->begin) {
    if (t->end < t->begin)
      snprintf(msg, ST_MSG,
               "invalid safetensors header: tensor %s (entry at byte %llu) has data_offsets "
               "[%llu, %llu] that end before they begin",
               q, (unsigned long long)t->key_offset, (unsigned long long)t->begin, (unsigned long long)t->end);
    else if (t->begin > *start)
      snprintf(msg, ST_MSG,
               "invalid safetensors header: tensor %s (entry at byte %llu) has data_offsets "
               "[%llu, %llu] but the tensors before it end at %llu: a hole of %llu bytes "
               "(offsets must be contiguous from 0)",
               q, (unsigned long long)t->key_offset, (unsigned long long)t->begin, (unsigned long long)t->end,
               (unsigned long long)*start, (unsigned long long)(t->begin - *start));
    else
      snprintf(msg, ST_MSG,
               "invalid safetensors header: tensor %s (entry at byte %llu) has data_offsets "
               "[%llu, %llu] overlapping the tensor before it, which ends at %llu",
               q, (unsigned long long)t->key_offset, (unsigned long long)t->begin, (unsigned long long)t->end,
               (unsigned long long)*start);
    return EMA_E_FORMAT;
  }
  *start = t->end;
  int r = st_tensor_size(t->dtype, t->ndim, t->shape, &t->count, &t->nbytes);
  if (r == -1) {
    snprintf(msg, ST_MSG,
             "invalid safetensors header: tensor %s (entry at byte %llu): the size of shape "
             "%s of dtype %s overflows 64 bits",
             q, (unsigned long long)t->key_offset, sh, st_dtype_name(t->dtype));
    return EMA_E_FORMAT;
  }
  if (r == -2) {
    snprintf(msg, ST_MSG,
             "invalid safetensors header: tensor %s (entry at byte %llu): shape %s of dtype "
             "%s is not a whole number of bytes",
             q, (unsigned long long)t->key_offset, sh, st_dtype_name(t->dtype));
    return EMA_E_FORMAT;
  }
  if (t->end - t->begin != t->nbytes) {
    snprintf(msg, ST_MSG,
             "invalid safetensors header: tensor %s (entry at byte %llu) has data_offsets "
             "[%llu, %llu] (%llu bytes) but shape %s of dtype %s takes %llu bytes",
             q, (unsigned long long)t->key_offset, (unsigned long long)t->begin, (unsigned long long)t->end,
             (unsigned long long)(t->end - t->begin), sh, st_dtype_name(t->dtype), (unsigned long long)t->nbytes);
    return EMA_E_FORMAT;
  }
  t->ema_supported = st_dtype_to_ema(t->dtype, &t->ema);
  if (!t->ema_supported) t->ema = EMA_F32;
  return EMA_OK;
}

ema_status st_validate(st_header *h, uint64_t data_len, size_t **by_name, char *msg) {
  size_t n = h->n_tensors;
  size_t *names = NULL, *off = NULL, *mk = NULL;
  ema_status st = EMA_OK;

  if (!(names = st_iota(n)) || !(off = st_iota(n)) || !(mk = st_iota(h->n_meta)) ||
      st_msort(names, n, st_cmp_name, h->tensors) != 0 || st_msort(off, n, st_cmp_off, h->tensors) != 0 ||
      st_msort(mk, h->n_meta, st_cmp_meta, h->meta) != 0) {
    snprintf(msg, ST_MSG, "out of memory while validating a header of %zu tensors", n);
    st = EMA_E_NOMEM;
    goto out;
  }
  st = st_check_dups(h, names, mk, msg);
  uint64_t start = 0;
  for (size_t k = 0; k < n && st == EMA_OK; k++) st = st_check_offsets(&h->tensors[off[k]], &start, msg);
  if (st != EMA_OK) goto out;

  if (start != data_len) {
    if (data_len > start)
      snprintf(msg, ST_MSG,
               "invalid safetensors file: %llu bytes follow the last tensor (the tensors cover "
               "%llu data bytes, the file has %llu)",
               (unsigned long long)(data_len - start), (unsigned long long)start, (unsigned long long)data_len);
    else
      snprintf(msg, ST_MSG,
               "invalid safetensors file: truncated: the tensors need %llu data bytes, the "
               "file has %llu",
               (unsigned long long)start, (unsigned long long)data_len);
    st = EMA_E_FORMAT;
    goto out;
  }
out:
  free(off);
  free(mk);
  if (st == EMA_OK)
    *by_name = names;
  else
    free(names);
  return st;
}
