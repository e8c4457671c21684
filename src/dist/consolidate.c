/*
 * src/dist/consolidate.c: ema_consolidate and ema_consolidate_hf. One
 * process streams the chunks of a sharded checkpoint into unsharded files
 * through st_write_stream (1 MiB at a time): for each window of a global
 * tensor it finds the chunks that hold it and reads their byte ranges.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dist/manifest.h"
#include "io/st_internal.h"

#define WINDOW ((size_t)1 << 20)

typedef struct cons {
  manifest m;
  const char *dir;
  st_file **files;
  const mf_tensor **src; /* per output tensor */
  int *pair;             /* per output tensor: f32 -> half conversion pair, or -1 */
  unsigned char *scratch;
  ema_progress_fn progress;
  void *user;
  uint64_t done, total;
  char *err;
  size_t cap;
} cons;

/* Bytes [p, p + len) of global tensor t into dst. */
static ema_status fill(cons *C, const mf_tensor *t, uint64_t p, unsigned char *dst, size_t len) {
  size_t es = st_dtype_bits(t->dtype) / 8;
  size_t last = 0;
  while (len) {
    uint64_t e = p / es, rem = e;
    int64_t idx[EMA_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
      idx[d] = (int64_t)(rem % (uint64_t)t->shape[d]);
      rem /= (uint64_t)t->shape[d];
    }
    const mf_chunk *c = NULL;
    for (size_t n = 0; n < t->n_chunks && !c; n++) {
      size_t i = (last + n) % t->n_chunks;
      int in = 1;
      for (int d = 0; d < t->ndim && in; d++)
        in = idx[d] >= t->chunks[i].off[d] && idx[d] < t->chunks[i].off[d] + t->chunks[i].shape[d];
      if (in) c = &t->chunks[last = i];
    }
    if (!c) {
      char q[96];
      ema_escape(t->name, strlen(t->name), q, sizeof q);
      return st_errf(C->err, C->cap, "no chunk of '%s' holds element %" PRIu64, q, e), EMA_E_FORMAT;
    }
    int k = t->ndim - 1; /* dims after k are whole in the chunk: a run spans them */
    while (k > 0 && c->shape[k] == t->shape[k]) k--;
    uint64_t inner = 1, trail = 0, lin = 0;
    for (int d = k + 1; d < t->ndim; d++) inner *= (uint64_t)t->shape[d];
    for (int d = k + 1; d < t->ndim; d++) trail = trail * (uint64_t)t->shape[d] + (uint64_t)idx[d];
    for (int d = 0; d < t->ndim; d++) lin = lin * (uint64_t)c->shape[d] + (uint64_t)(idx[d] - c->off[d]);
    uint64_t run = t->ndim ? (uint64_t)(c->off[k] + c->shape[k] - idx[k]) * inner - trail : 1;
    uint64_t skip = p % es, avail = run * es - skip;
    size_t take = avail < len ? (size_t)avail : len;
    ema_status st = EMA_OK;
    if (!C->files[c->file]) st = mf_open_file(&C->m, C->dir, c->file, &C->files[c->file], C->err, C->cap);
    if (st == EMA_OK)
      st = st_read_range(C->files[c->file], st_find(C->files[c->file], t->name), lin * es + skip, dst, take, C->err,
                         C->cap);
    if (st != EMA_OK) return st;
    p += take;
    dst += take;
    len -= take;
  }
  return EMA_OK;
}

static void tick(cons *C, size_t n) {
  C->done += n;
  if (C->progress) C->progress(C->user, C->done, C->total);
}

static ema_status produce(void *user, size_t i, uint64_t off, void *dst, size_t len, char *err, size_t cap) {
  cons *C = (cons *)user;
  (void)err;
  (void)cap;
  ema_status st;
  if (C->pair && C->pair[i] >= 0) { /* f32 average -> the model's half dtype */
    if (off % 2 || len % 2) return st_errf(C->err, C->cap, "unaligned window"), EMA_E_INVALID_ARG;
    st = fill(C, C->src[i], off * 2, C->scratch, len * 2);
    if (st == EMA_OK) ema_kernels_best()->from_shadow[C->pair[i]](dst, C->scratch, len / 2);
  } else {
    st = fill(C, C->src[i], off, (unsigned char *)dst, len);
  }
  if (st == EMA_OK) tick(C, len);
  return st;
}

/* The writer's file order (safetensors.h): dtype alignment descending,
   then name bytewise. */
static int file_order(size_t a, size_t b, const void *ctx) {
  const st_wtensor *w = (const st_wtensor *)ctx;
  if (w[a].dtype != w[b].dtype) return w[a].dtype > w[b].dtype ? -1 : 1;
  return st_bytes_cmp(w[a].name, strlen(w[a].name), w[b].name, strlen(w[b].name));
}

/* libema.xxh64 of the file ema_save would write: XXH64 of the data
   section, the tensors' bytes in file order. The first pass. */
static ema_status checksum(cons *C, const st_wtensor *w, size_t n, uint64_t *out) {
  size_t *order = (size_t *)ema__calloc(n + 1, sizeof *order);
  if (!order) return st_errf(C->err, C->cap, "out of memory"), EMA_E_NOMEM;
  for (size_t i = 0; i < n; i++) order[i] = i;
  if (st_msort(order, n, file_order, w)) {
    free(order);
    return st_errf(C->err, C->cap, "out of memory"), EMA_E_NOMEM;
  }
  ema__xxh64_state h;
  ema__xxh64_init(&h, 0);
  ema_status st = EMA_OK;
  for (size_t i = 0; i < n && st == EMA_OK; i++) {
    const mf_tensor *t = C->src[order[i]];
    for (uint64_t off = 0; off < t->nbytes && st == EMA_OK; off += WINDOW) {
      size_t len = t->nbytes - off < WINDOW ? (size_t)(t->nbytes - off) : WINDOW;
      st = fill(C, t, off, C->scratch, len);
      if (st == EMA_OK) {
        ema__xxh64_update(&h, C->scratch, len);
        tick(C, len);
      }
    }
  }
  free(order);
  *out = ema__xxh64_digest(&h);
  return st;
}

static ema_status begin(cons *C, const char *dir, ema_progress_fn progress, void *user, char *err, size_t cap) {
  memset(C, 0, sizeof *C);
  C->dir = dir;
  C->progress = progress;
  C->user = user;
  C->err = err;
  C->cap = cap;
  if (!dir || !*dir) return st_errf(err, cap, "dir is NULL or empty"), EMA_E_INVALID_ARG;
  ema_status st = mf_load(dir, &C->m, err, cap);
  if (st != EMA_OK) return st;
  C->files = (st_file **)ema__calloc(C->m.n_files, sizeof *C->files);
  C->src = (const mf_tensor **)ema__calloc(C->m.n_tensors + 1, sizeof *C->src);
  C->scratch = (unsigned char *)ema__malloc(2 * WINDOW);
  if (!C->files || !C->src || !C->scratch) return st_errf(err, cap, "out of memory"), EMA_E_NOMEM;
  for (size_t i = 0; i < C->m.n_files; i++) { /* every file belongs to this checkpoint */
    st = mf_open_file(&C->m, dir, i, &C->files[i], err, cap);
    if (st != EMA_OK) return st;
  }
  return EMA_OK;
}

static void end(cons *C) {
  for (size_t i = 0; C->files && i < C->m.n_files; i++) st_close(C->files[i]);
  free(C->files);
  free(C->src);
  free(C->pair);
  free(C->scratch);
  mf_free(&C->m);
}

ema_status ema_consolidate(const char *dir, const char *out, ema_progress_fn progress, void *user, char *err,
                           size_t errcap) {
  cons C;
  ema_status st = begin(&C, dir, progress, user, err, errcap);
  if (st == EMA_OK && (!out || !*out)) st = (st_errf(err, errcap, "out is NULL or empty"), EMA_E_INVALID_ARG);
  size_t n = C.m.n_tensors, nm = C.m.state ? C.m.state->n : 0;
  st_wtensor *w = (st_wtensor *)ema__calloc(n + 1, sizeof *w);
  st_wmeta *meta = (st_wmeta *)ema__calloc(nm + 1, sizeof *meta);
  if (st == EMA_OK && (!w || !meta)) st = (st_errf(err, errcap, "out of memory"), EMA_E_NOMEM);
  uint64_t sum = 0;
  for (size_t i = 0; st == EMA_OK && i < n; i++) {
    const mf_tensor *t = &C.m.tensors[i];
    w[i] = (st_wtensor){t->name, t->dtype, t->ndim, t->shape, NULL};
    C.src[i] = t;
    C.total += 2 * t->nbytes;
  }
  if (st == EMA_OK) st = checksum(&C, w, n, &sum);
  char csum[20];
  snprintf(csum, sizeof csum, "%016" PRIx64, sum);
  for (size_t i = 0; st == EMA_OK && i < nm; i++) {
    meta[i].key = C.m.state->keys[i];
    meta[i].value = strcmp(meta[i].key, DIST_SUM_KEY) == 0 ? csum : C.m.state->items[i].str;
  }
  if (st == EMA_OK) st = st_write_stream(out, w, n, meta, nm, produce, &C, err, errcap);
  free(w);
  free(meta);
  end(&C);
  return st;
}

/* ---- Hugging Face layout -------------------------------------------------- */

static const mf_tensor *average_of(const manifest *m, const char *name) {
  for (size_t i = 0; i < m->n_tensors; i++) {
    const mf_tensor *t = &m->tensors[i];
    if (t->role == DR_AVG && t->member == 0 && strcmp(t->of, name) == 0) return t;
  }
  return NULL;
}

static int by_name(size_t a, size_t b, const void *ctx) {
  const st_wtensor *w = (const st_wtensor *)ctx;
  return strcmp(w[a].name, w[b].name);
}

static ema_status hf_plan(cons *C, st_wtensor *w, size_t *n, uint64_t *sizes) {
  *n = 0;
  C->pair = (int *)ema__calloc(C->m.n_tensors + 1, sizeof *C->pair);
  if (!C->pair) return st_errf(C->err, C->cap, "out of memory"), EMA_E_NOMEM;
  for (size_t i = 0; i < C->m.n_tensors; i++) {
    const mf_tensor *t = &C->m.tensors[i];
    if (t->role != DR_MODEL) continue;
    const mf_tensor *a = average_of(&C->m, t->name);
    const mf_tensor *s = a ? a : t;
    int pair = -1;
    if (s->dtype != t->dtype) {
      char q[96];
      ema_escape(t->name, strlen(t->name), q, sizeof q);
      if (s->edtype != EMA_F32 || (t->edtype != EMA_F16 && t->edtype != EMA_BF16))
        return st_errf(C->err, C->cap, "the average of '%s' is %s but the model is %s", q, st_dtype_name(s->dtype),
                       st_dtype_name(t->dtype)),
               EMA_E_FORMAT;
      pair = t->edtype == EMA_BF16 ? EMA_PAIR_BF16_F32 : EMA_PAIR_F16_F32;
    }
    w[*n] = (st_wtensor){t->name, t->dtype, t->ndim, t->shape, NULL};
    C->src[*n] = s;
    C->pair[*n] = pair;
    sizes[*n] = t->nbytes;
    C->total += t->nbytes;
    (*n)++;
  }
  if (*n == 0) return st_errf(C->err, C->cap, "the checkpoint holds no tensors"), EMA_E_FORMAT;
  return EMA_OK;
}

/* Write the files [a, b) of order as file `name`. */
static ema_status hf_file(cons *C, const char *outdir, const char *name, const st_wtensor *w, const size_t *order,
                          size_t a, size_t b) {
  st_wtensor *sub = (st_wtensor *)ema__calloc(b - a + 1, sizeof *sub);
  const mf_tensor **src = (const mf_tensor **)ema__calloc(b - a + 1, sizeof *src);
  int *pair = (int *)ema__calloc(b - a + 1, sizeof *pair);
  char *path = fs_join(outdir, name);
  ema_status st = sub && src && pair && path ? EMA_OK : EMA_E_NOMEM;
  if (st != EMA_OK) st_errf(C->err, C->cap, "out of memory");
  for (size_t i = a; st == EMA_OK && i < b; i++) {
    sub[i - a] = w[order[i]];
    src[i - a] = C->src[order[i]];
    pair[i - a] = C->pair[order[i]];
  }
  const mf_tensor **keep_src = C->src;
  int *keep_pair = C->pair;
  C->src = src;
  C->pair = pair;
  static const st_wmeta fmt = {"format", "pt"};
  if (st == EMA_OK) st = st_write_stream(path, sub, b - a, &fmt, 1, produce, C, C->err, C->cap);
  C->src = keep_src;
  C->pair = keep_pair;
  free(sub);
  free(src);
  free(pair);
  free(path);
  return st;
}

ema_status ema_consolidate_hf(const char *dir, const char *outdir, uint64_t max_shard_size, ema_progress_fn progress,
                              void *user, char *err, size_t errcap) {
  cons C;
  ema_status st = begin(&C, dir, progress, user, err, errcap);
  if (!max_shard_size) max_shard_size = 5000000000ull;
  if (st == EMA_OK && (!outdir || !*outdir)) st = (st_errf(err, errcap, "outdir is NULL or empty"), EMA_E_INVALID_ARG);
  if (st == EMA_OK && mkdir(outdir, 0755) && errno != EEXIST)
    st = (st_errf(err, errcap, "cannot create '%s'", outdir), EMA_E_IO);
  size_t n = 0, cap = C.m.n_tensors + 1;
  st_wtensor *w = (st_wtensor *)ema__calloc(cap, sizeof *w);
  uint64_t *sizes = (uint64_t *)ema__calloc(cap, sizeof *sizes);
  size_t *order = (size_t *)ema__calloc(cap, sizeof *order), *first = (size_t *)ema__calloc(cap + 1, sizeof *first);
  if (st == EMA_OK && (!w || !sizes || !order || !first)) st = (st_errf(err, errcap, "out of memory"), EMA_E_NOMEM);
  if (st == EMA_OK) st = hf_plan(&C, w, &n, sizes);
  for (size_t i = 0; i < n; i++) order[i] = i;
  if (st == EMA_OK && st_msort(order, n, by_name, w)) st = EMA_E_NOMEM;
  size_t files = 0;
  uint64_t cur = 0, total = 0;
  for (size_t i = 0; st == EMA_OK && i < n; i++) { /* greedy, in name order */
    uint64_t sz = sizes[order[i]];
    if (i == 0 || (cur > 0 && cur + sz > max_shard_size)) {
      first[files++] = i;
      cur = 0;
    }
    cur += sz;
    total += sz;
  }
  first[files] = n;
  dj_buf idx;
  dj_buf_init(&idx);
  dj_printf(&idx, "{\n  \"metadata\": {\n    \"total_size\": %" PRIu64 "\n  },\n  \"weight_map\": {", total);
  for (size_t f = 0; st == EMA_OK && f < files; f++) {
    char name[64];
    if (files == 1)
      snprintf(name, sizeof name, "model.safetensors");
    else
      snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", f + 1, files);
    st = hf_file(&C, outdir, name, w, order, first[f], first[f + 1]);
    for (size_t i = first[f]; i < first[f + 1]; i++) {
      dj_raw(&idx, i ? ",\n    " : "\n    ");
      dj_str(&idx, w[order[i]].name);
      dj_raw(&idx, ": ");
      dj_str(&idx, name);
    }
  }
  dj_raw(&idx, "\n  }\n}\n");
  if (st == EMA_OK && files > 1) {
    if (!idx.ok)
      st = (st_errf(err, errcap, "out of memory"), EMA_E_NOMEM);
    else
      st = fs_write_atomic(outdir, "model.safetensors.index.json", idx.p, idx.len, err, errcap);
  }
  dj_buf_free(&idx);
  free(w);
  free(sizes);
  free(order);
  free(first);
  end(&C);
  return st;
}
