/*
 * src/dist/shardfile.c: one rank's shard file. A safetensors file with the
 * rank's chunks under ema_save's names and, in __metadata__, the EMA state
 * (as ema_save writes it, without libema.xxh64: the manifest holds one
 * checksum per chunk), the checkpoint id, and torch.distributed.checkpoint's
 * DCP_SHARDING_INFO ({"<name>": {"saved_offsets": [...]}}) with DCP_VERSION.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dist/manifest.h"
#include "dist/shardfile.h"
#include "io/st_internal.h"

ema_status sf_write(const char *dir, const char *name, const dist_entry *const *e, size_t n, const dj_val *state,
                    const char *id, int rank, int world, uint64_t *bytes, char *err, size_t cap) {
  st_wtensor *w = (st_wtensor *)ema__calloc(n + 1, sizeof *w);
  size_t nm = (state ? state->n : 0) + 5;
  st_wmeta *meta = (st_wmeta *)ema__calloc(nm, sizeof *meta);
  char *path = fs_join(dir, name);
  dj_buf info;
  dj_buf_init(&info);
  dj_raw(&info, "{");
  for (size_t i = 0; i < n; i++) {
    if (w) {
      w[i].name = e[i]->key;
      w[i].dtype = (st_dtype)st_dtype_from_ema(e[i]->dtype);
      w[i].ndim = e[i]->ndim;
      w[i].shape = e[i]->local;
      w[i].data = e[i]->data;
    }
    if (i) dj_raw(&info, ",");
    dj_str(&info, e[i]->key);
    dj_raw(&info, ":{\"saved_offsets\":");
    dj_ints(&info, e[i]->ndim, e[i]->offset);
    dj_raw(&info, "}");
  }
  dj_raw(&info, "}");
  ema_status st = EMA_OK;
  if (!w || !meta || !path || !info.ok) {
    st_errf(err, cap, "out of memory");
    st = EMA_E_NOMEM;
  }
  char where[32];
  snprintf(where, sizeof where, "%d/%d", rank, world);
  size_t m = 0;
  for (size_t i = 0; st == EMA_OK && state && i < state->n; i++) {
    if (dist_is_sum_key(state->keys[i])) continue; /* the manifest has the chunks' */
    meta[m].key = state->keys[i];
    meta[m++].value = state->items[i].str;
  }
  if (st == EMA_OK) {
    meta[m].key = "libema.checkpoint_id";
    meta[m++].value = id;
    meta[m].key = "libema.shard";
    meta[m++].value = where;
    meta[m].key = "DCP_VERSION";
    meta[m++].value = "1.0";
    meta[m].key = "DCP_SHARDING_INFO";
    meta[m++].value = info.p;
    st = st_write(path, w, n, meta, m, err, cap);
  }
  struct stat sb;
  if (st == EMA_OK) {
    if (stat(path, &sb)) {
      st_errf(err, cap, "'%s' vanished after it was written", path);
      st = EMA_E_IO;
    } else {
      *bytes = (uint64_t)sb.st_size;
    }
  }
  free(w);
  free(meta);
  free(path);
  dj_buf_free(&info);
  return st;
}

#define BAD(...) (st_errf(err, cap, __VA_ARGS__), EMA_E_FORMAT)

static int same_ints(const dj_val *v, int n, const int64_t *want) {
  if (!v || v->type != DJ_ARR || v->n != (size_t)n) return 0;
  for (int i = 0; i < n; i++) {
    int64_t x;
    if (dj_int(&v->items[i], 0, INT64_MAX, &x) || x != want[i]) return 0;
  }
  return 1;
}

/* Every chunk of m in file i is in f with its dtype, shape and offsets. */
static ema_status check_chunks(const manifest *m, size_t i, const st_file *f, const dj_val *info, const char *path,
                               char *err, size_t cap) {
  for (size_t j = 0; j < m->n_tensors; j++) {
    const mf_tensor *t = &m->tensors[j];
    char q[96];
    ema_escape(t->name, strlen(t->name), q, sizeof q);
    for (size_t c = 0; c < t->n_chunks; c++) {
      const mf_chunk *k = &t->chunks[c];
      if (k->file != i) continue;
      const st_tensor *s = st_find(f, t->name);
      if (!s) return BAD("'%s' has no tensor '%s', which the manifest puts there", path, q);
      if (s->dtype != t->dtype || s->ndim != t->ndim ||
          (t->ndim && memcmp(s->shape, k->shape, (size_t)t->ndim * sizeof(int64_t))))
        return BAD("'%s': tensor '%s' does not have the dtype and shape the manifest gives its chunk", path, q);
      if (!same_ints(dj_get(dj_get(info, t->name), "saved_offsets"), t->ndim, k->off))
        return BAD("'%s': the DCP_SHARDING_INFO offsets of '%s' are not the manifest's", path, q);
    }
  }
  return EMA_OK;
}

ema_status mf_open_file(const manifest *m, const char *dir, size_t i, st_file **out, char *err, size_t cap) {
  *out = NULL;
  char *path = fs_join(dir, m->files[i].name);
  if (!path) return st_errf(err, cap, "out of memory"), EMA_E_NOMEM;
  struct stat sb;
  ema_status st = EMA_OK;
  if (lstat(path, &sb) || !S_ISREG(sb.st_mode)) {
    st_errf(err, cap, "shard file '%s' is missing or not a regular file", path);
    st = EMA_E_FORMAT;
  }
  st_file *f = NULL;
  if (st == EMA_OK) st = st_open(path, &f, err, cap);
  if (st == EMA_OK && f->file_size != m->files[i].bytes) {
    st = BAD("shard file '%s' has %llu bytes, the manifest says %llu: it is from another checkpoint", path,
             (unsigned long long)f->file_size, (unsigned long long)m->files[i].bytes);
  }
  const char *id = f ? st_meta_get(f, "libema.checkpoint_id") : NULL;
  if (st == EMA_OK && (!id || strcmp(id, m->id) != 0)) {
    char q[96];
    ema_escape(id ? id : "(none)", id ? strlen(id) : 6, q, sizeof q);
    st = BAD("shard file '%s' belongs to checkpoint '%s', not to the manifest's %s", path, q, m->id);
  }
  const char *text = f ? st_meta_get(f, "DCP_SHARDING_INFO") : NULL;
  dj_val info;
  memset(&info, 0, sizeof info);
  if (st == EMA_OK) {
    char jerr[200];
    if (!text || dj_parse(text, strlen(text), &info, jerr, sizeof jerr))
      st = BAD("shard file '%s' has no valid DCP_SHARDING_INFO", path);
  }
  if (st == EMA_OK) st = check_chunks(m, i, f, &info, path, err, cap);
  dj_free(&info);
  free(path);
  if (st != EMA_OK) {
    st_close(f);
    return st;
  }
  *out = f;
  return EMA_OK;
}
