/*
 * src/dist/manifest.c: parse, validate and render DIR/manifest.json.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/manifest.h"
#include "io/st_internal.h"

#define BAD(...) (st_errf(err, cap, __VA_ARGS__), EMA_E_FORMAT)

static int hex16(const char *s, uint64_t *out) {
  if (!s || strlen(s) != 16) return 0;
  uint64_t v = 0;
  for (int i = 0; i < 16; i++) {
    char c = s[i];
    unsigned d = (c >= '0' && c <= '9') ? (unsigned)(c - '0') : (c >= 'a' && c <= 'f') ? (unsigned)(c - 'a' + 10) : 16u;
    if (d == 16) return 0;
    v = v * 16 + d;
  }
  if (out) *out = v;
  return 1;
}

static const char *str_of(const dj_val *v) { return v && v->type == DJ_STR ? v->str : NULL; }

static int ints_of(const dj_val *v, int64_t *out, int max, int *n) {
  if (!v || v->type != DJ_ARR || v->n > (size_t)max) return -1;
  for (size_t i = 0; i < v->n; i++)
    if (dj_int(&v->items[i], 0, (int64_t)ST_MAX_INT, &out[i])) return -1;
  *n = (int)v->n;
  return 0;
}

static int role_of(const char *s) {
  for (int r = DR_MODEL; r <= DR_PROD; r++)
    if (s && strcmp(s, dist_role_name(r)) == 0) return r;
  return -1;
}

static ema_status parse_files(manifest *m, const dj_val *files, char *err, size_t cap) {
  if (!files || files->type != DJ_ARR || files->n != (size_t)m->world)
    return BAD("\"files\" must list one file per rank (%lld)", (long long)m->world);
  m->files = (mf_file *)ema__calloc(files->n + 1, sizeof *m->files);
  if (!m->files) return st_errf(err, cap, "out of memory"), EMA_E_NOMEM;
  m->n_files = files->n;
  for (size_t i = 0; i < files->n; i++) {
    const dj_val *f = &files->items[i];
    const char *name = str_of(dj_get(f, "name"));
    int64_t rank, bytes;
    if (!name || !fs_safe_name(name)) {
      char q[96];
      ema_escape(name, name ? strlen(name) : 0, q, sizeof q);
      return BAD("file %zu has name '%s', which is not a plain file name inside the checkpoint's directory", i, q);
    }
    if (dj_int(dj_get(f, "rank"), 0, m->world - 1, &rank) || rank != (int64_t)i ||
        dj_int(dj_get(f, "bytes"), 0, INT64_MAX, &bytes))
      return BAD("file %zu needs \"rank\": %zu and a \"bytes\" count", i, i);
    for (size_t j = 0; j < i; j++)
      if (strcmp(m->files[j].name, name) == 0) return BAD("file %zu is listed twice", i);
    m->files[i].name = name;
    m->files[i].bytes = (uint64_t)bytes;
  }
  return EMA_OK;
}

static ema_status check_cover(const mf_tensor *t, char *err, size_t cap) {
  char q[96];
  ema_escape(t->name, strlen(t->name), q, sizeof q);
  uint64_t vol = 0;
  int64_t o[EMA_MAX_DIMS], s[EMA_MAX_DIMS];
  for (size_t a = 0; a < t->n_chunks; a++) {
    const mf_chunk *c = &t->chunks[a];
    vol += box_volume(t->ndim, c->shape);
    for (size_t b = 0; b < a; b++)
      if (box_intersect(t->ndim, c->off, c->shape, t->chunks[b].off, t->chunks[b].shape, o, s))
        return BAD("tensor '%s': chunks %zu and %zu overlap", q, b, a);
  }
  if (vol != t->nbytes / (st_dtype_bits(t->dtype) / 8))
    return BAD("tensor '%s': its chunks cover %" PRIu64 " of its elements, not all of them (missing chunks)", q, vol);
  return EMA_OK;
}

static ema_status parse_chunk(manifest *m, mf_tensor *t, const dj_val *v, mf_chunk *c, char *err, size_t cap) {
  char q[96];
  ema_escape(t->name, strlen(t->name), q, sizeof q);
  int64_t file;
  int n1 = -1, n2 = -1;
  if (dj_int(dj_get(v, "file"), 0, (int64_t)m->n_files - 1, &file))
    return BAD("tensor '%s': a chunk names no file of the manifest", q);
  c->file = (size_t)file;
  if (ints_of(dj_get(v, "offsets"), c->off, EMA_MAX_DIMS, &n1) ||
      ints_of(dj_get(v, "shape"), c->shape, EMA_MAX_DIMS, &n2) || n1 != t->ndim || n2 != t->ndim)
    return BAD("tensor '%s': a chunk needs \"offsets\" and \"shape\" of %d entries", q, t->ndim);
  for (int d = 0; d < t->ndim; d++)
    if (c->shape[d] == 0 || c->off[d] > t->shape[d] || c->shape[d] > t->shape[d] - c->off[d])
      return BAD("tensor '%s': a chunk is empty or leaves the global shape in dimension %d", q, d);
  if (!hex16(str_of(dj_get(v, "xxh64")), &c->checksum))
    return BAD("tensor '%s': a chunk has no 16-digit hex \"xxh64\"", q);
  return EMA_OK;
}

static ema_status parse_tensor(manifest *m, const dj_val *v, mf_tensor *t, char *err, size_t cap) {
  t->name = str_of(dj_get(v, "name"));
  t->of = str_of(dj_get(v, "of"));
  if (!t->name || !*t->name || !t->of || !*t->of) return BAD("a tensor lacks \"name\" or \"of\"");
  char q[96];
  ema_escape(t->name, strlen(t->name), q, sizeof q);
  t->role = role_of(str_of(dj_get(v, "role")));
  int64_t member;
  if (t->role < 0 || dj_int(dj_get(v, "member"), 0, EMA_MAX_AVERAGES - 1, &member))
    return BAD("tensor '%s' has no known \"role\" or \"member\"", q);
  t->member = (size_t)member;
  const char *dt = str_of(dj_get(v, "dtype"));
  int sd = dt ? st_dtype_from_name(dt, strlen(dt)) : -1;
  if (sd < 0 || !st_dtype_to_ema((st_dtype)sd, &t->edtype)) return BAD("tensor '%s' has no supported dtype", q);
  t->dtype = (st_dtype)sd;
  if (ints_of(dj_get(v, "shape"), t->shape, EMA_MAX_DIMS, &t->ndim))
    return BAD("tensor '%s' has no valid global \"shape\" (at most %d dimensions)", q, EMA_MAX_DIMS);
  uint64_t count;
  if (st_tensor_size(t->dtype, t->ndim, t->shape, &count, &t->nbytes)) return BAD("tensor '%s' is too large", q);
  const dj_val *ch = dj_get(v, "chunks");
  if (!ch || ch->type != DJ_ARR) return BAD("tensor '%s' has no \"chunks\" array", q);
  t->chunks = (mf_chunk *)ema__calloc(ch->n + 1, sizeof *t->chunks);
  if (!t->chunks) return st_errf(err, cap, "out of memory"), EMA_E_NOMEM;
  t->n_chunks = ch->n;
  for (size_t i = 0; i < ch->n; i++) {
    ema_status st = parse_chunk(m, t, &ch->items[i], &t->chunks[i], err, cap);
    if (st != EMA_OK) return st;
  }
  return check_cover(t, err, cap);
}

static int by_name(size_t a, size_t b, const void *ctx) {
  const manifest *m = (const manifest *)ctx;
  return strcmp(m->tensors[a].name, m->tensors[b].name);
}

static ema_status parse_body(manifest *m, char *err, size_t cap) {
  const dj_val *r = &m->root;
  int64_t ver;
  const char *fmt = str_of(dj_get(r, "format")), *id = str_of(dj_get(r, "checkpoint_id"));
  if (r->type != DJ_OBJ || !fmt || strcmp(fmt, DIST_FORMAT) != 0)
    return BAD("not a libema sharded checkpoint manifest");
  if (dj_int(dj_get(r, "format_version"), 0, INT64_MAX, &ver) || ver != DIST_FORMAT_VERSION)
    return BAD("the manifest's format_version is not %d, the one this library reads", DIST_FORMAT_VERSION);
  if (!hex16(id, NULL)) return BAD("the manifest has no 16-digit hex \"checkpoint_id\"");
  memcpy(m->id, id, DIST_ID_LEN + 1);
  if (dj_int(dj_get(r, "world_size"), 1, 1 << 24, &m->world) || dj_int(dj_get(r, "step"), 0, INT64_MAX, &m->step))
    return BAD("the manifest needs \"world_size\" >= 1 and \"step\" >= 0");
  ema_status st = parse_files(m, dj_get(r, "files"), err, cap);
  if (st != EMA_OK) return st;
  m->state = dj_get(r, "state");
  if (!m->state || m->state->type != DJ_OBJ) return BAD("the manifest has no \"state\" object");
  for (size_t i = 0; i < m->state->n; i++)
    if (m->state->items[i].type != DJ_STR) {
      char q[96];
      ema_escape(m->state->keys[i], strlen(m->state->keys[i]), q, sizeof q);
      return BAD("state entry '%s' is not a string", q);
    }
  const dj_val *ts = dj_get(r, "tensors");
  if (!ts || ts->type != DJ_ARR) return BAD("the manifest has no \"tensors\" array");
  m->tensors = (mf_tensor *)ema__calloc(ts->n + 1, sizeof *m->tensors);
  m->order = (size_t *)ema__calloc(ts->n + 1, sizeof *m->order);
  if (!m->tensors || !m->order) return st_errf(err, cap, "out of memory"), EMA_E_NOMEM;
  m->n_tensors = ts->n;
  for (size_t i = 0; i < ts->n; i++) {
    st = parse_tensor(m, &ts->items[i], &m->tensors[i], err, cap);
    if (st != EMA_OK) return st;
    m->order[i] = i;
  }
  if (st_msort(m->order, m->n_tensors, by_name, m)) return st_errf(err, cap, "out of memory"), EMA_E_NOMEM;
  for (size_t i = 1; i < m->n_tensors; i++)
    if (!strcmp(m->tensors[m->order[i]].name, m->tensors[m->order[i - 1]].name)) {
      char q[96];
      ema_escape(m->tensors[m->order[i]].name, strlen(m->tensors[m->order[i]].name), q, sizeof q);
      return BAD("tensor '%s' is listed twice", q);
    }
  return EMA_OK;
}

ema_status mf_load(const char *dir, manifest *m, char *err, size_t cap) {
  memset(m, 0, sizeof *m);
  char *text;
  size_t len;
  ema_status st = fs_read_all(dir, DIST_MANIFEST, MF_MAX_BYTES, &text, &len, err, cap);
  if (st != EMA_OK) return st;
  char jerr[256];
  if (dj_parse(text, len, &m->root, jerr, sizeof jerr)) {
    free(text);
    return BAD("%s/%s: %s", dir, DIST_MANIFEST, jerr);
  }
  free(text);
  char why[EMA_ERR_CAP];
  st = parse_body(m, why, sizeof why);
  if (st != EMA_OK) st_errf(err, cap, "%s/%s: %s", dir, DIST_MANIFEST, why);
  return st;
}

void mf_free(manifest *m) {
  if (!m) return;
  for (size_t i = 0; m->tensors && i < m->n_tensors; i++) free(m->tensors[i].chunks);
  free(m->tensors);
  free(m->files);
  free(m->order);
  dj_free(&m->root);
  memset(m, 0, sizeof *m);
}

const mf_tensor *mf_find(const manifest *m, const char *name) {
  size_t lo = 0, hi = m->n_tensors;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(m->tensors[m->order[mid]].name, name);
    if (c == 0) return &m->tensors[m->order[mid]];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

void mf_render(const manifest *m, dj_buf *b) {
  dj_printf(b, "{\n  \"format\": \"%s\",\n  \"format_version\": %d,\n  \"checkpoint_id\": \"%s\",\n", DIST_FORMAT,
            DIST_FORMAT_VERSION, m->id);
  dj_printf(b, "  \"library_version\": \"%s\",\n", EMA_VERSION_STRING);
  dj_printf(b, "  \"step\": %lld,\n  \"world_size\": %lld,\n  \"files\": [", (long long)m->step, (long long)m->world);
  for (size_t i = 0; i < m->n_files; i++) {
    dj_raw(b, i ? ",\n    {\"name\": " : "\n    {\"name\": ");
    dj_str(b, m->files[i].name);
    dj_printf(b, ", \"rank\": %zu, \"bytes\": %" PRIu64 "}", i, m->files[i].bytes);
  }
  dj_raw(b, "\n  ],\n  \"state\": {");
  for (size_t i = 0; m->state && i < m->state->n; i++) {
    dj_raw(b, i ? ",\n    " : "\n    ");
    dj_str(b, m->state->keys[i]);
    dj_raw(b, ": ");
    dj_str(b, m->state->items[i].str);
  }
  dj_raw(b, "\n  },\n  \"tensors\": [");
  for (size_t i = 0; i < m->n_tensors; i++) {
    const mf_tensor *t = &m->tensors[i];
    dj_raw(b, i ? ",\n    {\"name\": " : "\n    {\"name\": ");
    dj_str(b, t->name);
    dj_raw(b, ", \"of\": ");
    dj_str(b, t->of);
    dj_printf(b, ", \"role\": \"%s\", \"member\": %zu, \"dtype\": \"%s\", \"shape\": ", dist_role_name(t->role),
              t->member, st_dtype_name(t->dtype));
    dj_ints(b, t->ndim, t->shape);
    dj_raw(b, ",\n     \"chunks\": [");
    for (size_t c = 0; c < t->n_chunks; c++) {
      const mf_chunk *k = &t->chunks[c];
      dj_printf(b, "%s{\"file\": %zu, \"offsets\": ", c ? ", " : "", k->file);
      dj_ints(b, t->ndim, k->off);
      dj_raw(b, ", \"shape\": ");
      dj_ints(b, t->ndim, k->shape);
      dj_printf(b, ", \"xxh64\": \"%016" PRIx64 "\"}", k->checksum);
    }
    dj_raw(b, "]}");
  }
  dj_raw(b, "\n  ]\n}\n");
}
