/*
 * src/dist/save.c: ema_save_sharded. The protocol (every step ends with the
 * ranks agreeing on a status, so they fail or go on together):
 *   1. exchange registrations; check agreement and tiling (desc.c);
 *   2. rank 0 creates dir, draws a checkpoint id and renders the EMA state
 *      (ema_save's __metadata__, from a skeleton context); broadcast;
 *   3. each rank writes shard-RRRRR-of-WWWWW.<id>.safetensors atomically;
 *   4. results (file size, chunk checksums) are gathered; rank 0 writes
 *      manifest.json atomically: the commit; then removes shard files of
 *      older ids. A failure before the commit removes the new shard files
 *      and leaves the previous manifest, and so the previous checkpoint.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dist/desc.h"
#include "dist/manifest.h"
#include "dist/shardfile.h"
#include "io/st_internal.h"

typedef struct saver {
  const ema_ctx *ctx;
  const ema_comm *comm;
  const char *dir;
  int rank, world;
  dist_entry *e;
  size_t n;
  rdesc *all;
  size_t n_all;
  char id[DIST_ID_LEN + 1];
  dj_val state;
  unsigned char *blk; /* the gathered registrations (names point into it) */
  char file[96];
  int wrote;
  char err[EMA_ERR_CAP];
} saver;

static const char *fn = "ema_save_sharded";

/* Agree on st; the failing rank keeps its message, the others name it. */
static ema_status agree(saver *S, ema_status st) {
  int bad;
  ema_status all = dc_agree(S->comm, st, &bad);
  if (all == EMA_OK) return EMA_OK;
  if (st != EMA_OK) return st; /* S->err has it */
  if (bad < 0)
    st_errf(S->err, sizeof S->err, "the communicator failed (%s)", ema_status_string(all));
  else
    st_errf(S->err, sizeof S->err, "rank %d failed (%s); see its error", bad, ema_status_string(all));
  return all;
}

static void shard_name(char *out, size_t cap, int rank, int world, const char *id) {
  snprintf(out, cap, "shard-%05d-of-%05d.%s.safetensors", rank, world, id);
}

static ema_status exchange(saver *S) {
  wb b = {NULL, 0, 0, 1};
  desc_build(S->ctx, &b);
  size_t *off = NULL, *len = NULL;
  ema_status st = b.ok ? EMA_OK : EMA_E_NOMEM;
  if (st != EMA_OK) st_errf(S->err, sizeof S->err, "out of memory");
  st = agree(S, st);
  if (st == EMA_OK) st = dc_allgatherv(S->comm, b.p, b.len, &S->blk, &off, &len);
  free(b.p);
  if (st == EMA_OK) {
    S->all = (rdesc *)ema__calloc((size_t)S->world, sizeof *S->all);
    if (!S->all) st = EMA_E_NOMEM;
    for (int r = 0; st == EMA_OK && r < S->world; r++, S->n_all++)
      if (desc_parse(S->blk + off[r], len[r], &S->all[r])) {
        st_errf(S->err, sizeof S->err, "the registrations of rank %d could not be read", r);
        st = EMA_E_NOMEM;
      }
    if (st == EMA_OK) st = desc_check(S->all, (size_t)S->world, S->err, sizeof S->err);
  } else if (st == EMA_E_NOMEM) {
    st_errf(S->err, sizeof S->err, "out of memory exchanging registrations");
  }
  free(off);
  free(len);
  return agree(S, st);
}

/* ema_save's __metadata__ for this context, from a skeleton: a context with
   the same EMA state and the same tensors at zero size, saved by ema_save
   itself to a temporary file of dir, whose metadata is read back. */
static ema_status state_text(saver *S, dj_buf *out) {
  const ema_ctx *c = S->ctx;
  ema_ctx *k = NULL;
  ema_status st = ema_create(&k, c->avg[0].sched.decay);
  if (st != EMA_OK) return st_errf(S->err, sizeof S->err, "out of memory"), st;
  k->n_avg = c->n_avg;
  memcpy(k->avg, c->avg, sizeof c->avg);
  k->num_updates = c->num_updates;
  k->last_step = c->last_step;
  k->zero_debias = c->zero_debias;
  int64_t zero = 0;
  for (size_t i = 0; i < c->count && st == EMA_OK; i++) {
    const ema_tensor *t = &c->tensors[i];
    k->half_same = t->sdtype == t->dtype;
    st = t->pair >= 0 ? ema_track(k, t->name, NULL, t->dtype, 1, &zero)
                      : ema_track_policy(k, t->name, NULL, t->dtype, 1, &zero, t->policy);
  }
  char name[64], *path = NULL;
  snprintf(name, sizeof name, ".state-%s.safetensors", S->id);
  if (st == EMA_OK) path = fs_join(S->dir, name);
  if (st == EMA_OK && !path) st = EMA_E_NOMEM;
  if (st == EMA_OK) st = ema_save(k, path);
  if (st != EMA_OK) st_errf(S->err, sizeof S->err, "%s", ema_last_error(k));
  st_file *f = NULL;
  if (st == EMA_OK) st = st_open(path, &f, S->err, sizeof S->err);
  if (path) unlink(path);
  dj_raw(out, "{");
  for (size_t i = 0; st == EMA_OK && i < f->n_meta; i++) {
    if (i) dj_raw(out, ",");
    dj_str(out, f->meta[i].key);
    dj_raw(out, ":");
    /* the checksum covers every tensor: consolidation computes it */
    dj_str(out, dist_is_sum_key(f->meta[i].key) ? "" : f->meta[i].value);
  }
  dj_raw(out, "}");
  if (st == EMA_OK && !out->ok) st = EMA_E_NOMEM;
  st_close(f);
  free(path);
  ema_free(k);
  return st;
}

/* Rank 0 prepares dir, the id and the state; everyone gets them. */
static ema_status prepare(saver *S) {
  ema_status st = EMA_OK;
  dj_buf text;
  dj_buf_init(&text);
  if (S->rank == 0) {
    if (mkdir(S->dir, 0755) && errno != EEXIST) {
      char b[128];
      st_errf(S->err, sizeof S->err, "cannot create '%s': %s", S->dir, st_strerror(errno, b, sizeof b));
      st = EMA_E_IO;
    }
    fs_new_id(S->id);
    if (st == EMA_OK) st = state_text(S, &text);
  }
  st = agree(S, st);
  uint64_t n = text.len;
  if (st == EMA_OK) st = dc_bcast(S->comm, S->id, sizeof S->id, 0);
  if (st == EMA_OK) st = dc_bcast(S->comm, &n, sizeof n, 0);
  char *buf = S->rank == 0 ? text.p : (char *)ema__malloc((size_t)n + 1);
  if (st == EMA_OK && !buf) st = EMA_E_NOMEM;
  /* every rank has n: a rank that could not allocate says so first */
  if (st == EMA_OK || st == EMA_E_NOMEM) st = agree(S, st);
  if (st == EMA_OK) st = dc_bcast(S->comm, buf, (size_t)n, 0);
  char jerr[128];
  if (st == EMA_OK && dj_parse(buf, (size_t)n, &S->state, jerr, sizeof jerr)) {
    st_errf(S->err, sizeof S->err, "the state from rank 0 is not valid: %s", jerr);
    st = EMA_E_FORMAT;
  }
  if (buf != text.p) free(buf);
  dj_buf_free(&text);
  S->id[DIST_ID_LEN] = '\0';
  return agree(S, st);
}

static ema_status write_mine(saver *S, wb *res) {
  const dist_entry **mine = (const dist_entry **)ema__calloc(S->n + 1, sizeof *mine);
  if (!mine) return st_errf(S->err, sizeof S->err, "out of memory"), EMA_E_NOMEM;
  size_t m = 0;
  for (size_t j = 0, ti = 0; j < S->n; j++) {
    if (j && S->e[j].t != S->e[j - 1].t) ti++;
    if (desc_owns(S->all, (size_t)S->rank, ti, S->e[j].role)) mine[m++] = &S->e[j];
  }
  shard_name(S->file, sizeof S->file, S->rank, S->world, S->id);
  uint64_t bytes = 0;
  ema_status st =
      sf_write(S->dir, S->file, mine, m, &S->state, S->id, S->rank, S->world, &bytes, S->err, sizeof S->err);
  S->wrote = st == EMA_OK;
  wb_u64(res, bytes);
  wb_u64(res, m);
  for (size_t i = 0; i < m; i++) wb_u64(res, ema__xxh64(mine[i]->data, mine[i]->nbytes, 0));
  free(mine);
  if (st == EMA_OK && !res->ok) st = EMA_E_NOMEM;
  return st;
}

/* The manifest from the gathered results: every entry's chunks. */
static ema_status build_manifest(saver *S, const unsigned char *blk, const size_t *off, const size_t *len, manifest *m,
                                 char (*names)[96]) {
  memcpy(m->id, S->id, sizeof m->id);
  m->world = S->world;
  m->step = S->ctx->last_step > 0 ? S->ctx->last_step : S->ctx->num_updates > 0 ? S->ctx->num_updates : 0;
  m->state = &S->state;
  m->n_files = (size_t)S->world;
  m->files = (mf_file *)ema__calloc(m->n_files, sizeof *m->files);
  rb *cur = (rb *)ema__calloc(m->n_files, sizeof *cur);
  m->tensors = (mf_tensor *)ema__calloc(S->n + 1, sizeof *m->tensors);
  mf_chunk *chunks = (mf_chunk *)ema__calloc(S->n * m->n_files + 1, sizeof *chunks);
  if (!m->files || !cur || !m->tensors || !chunks) {
    free(cur);
    free(chunks);
    return st_errf(S->err, sizeof S->err, "out of memory"), EMA_E_NOMEM;
  }
  m->tensors[0].chunks = chunks; /* the block, freed through it */
  for (size_t r = 0; r < m->n_files; r++) {
    shard_name(names[r], sizeof names[r], (int)r, S->world, S->id);
    cur[r] = (rb){blk + off[r], len[r], 0, 1};
    m->files[r].name = names[r];
    m->files[r].bytes = rb_u64(&cur[r]);
    rb_u64(&cur[r]); /* count */
  }
  for (size_t j = 0, ti = 0; j < S->n; j++) {
    const dist_entry *e = &S->e[j];
    if (j && e->t != S->e[j - 1].t) ti++;
    mf_tensor *t = &m->tensors[m->n_tensors++];
    t->name = e->key;
    t->of = e->t->name;
    t->role = e->role;
    t->member = e->k;
    t->dtype = (st_dtype)st_dtype_from_ema(e->dtype);
    t->ndim = e->ndim;
    memcpy(t->shape, e->global, sizeof t->shape);
    t->chunks = chunks + j * m->n_files;
    for (size_t r = 0; r < m->n_files; r++) {
      if (!desc_owns(S->all, r, ti, e->role)) continue;
      mf_chunk *c = &t->chunks[t->n_chunks++];
      const tdesc *d = &S->all[r].t[ti];
      c->file = r;
      for (int x = 0; x < t->ndim; x++) {
        c->off[x] = d->off[x];
        c->shape[x] = d->local[x];
      }
      c->checksum = rb_u64(&cur[r]);
    }
  }
  int ok = 1;
  for (size_t r = 0; r < m->n_files; r++) ok &= cur[r].ok && cur[r].pos == cur[r].len;
  free(cur);
  if (!ok) return st_errf(S->err, sizeof S->err, "the ranks' results do not match their registrations"), EMA_E_FORMAT;
  return EMA_OK;
}

static int digits(const char *s, size_t n, int hex) {
  for (size_t i = 0; i < n; i++)
    if (!(s[i] >= '0' && s[i] <= '9') && !(hex && s[i] >= 'a' && s[i] <= 'f')) return 0;
  return 1;
}

/* "shard-RRRRR-of-WWWWW.<id>.safetensors" or ".state-<id>.safetensors", the
   names this file writes, and nothing else (another writer's files stay). */
static int is_ours(const char *n) {
  size_t len = strlen(n);
  if (len == 49 && !strncmp(n, "shard-", 6) && digits(n + 6, 5, 0) && !strncmp(n + 11, "-of-", 4) &&
      digits(n + 15, 5, 0) && n[20] == '.' && digits(n + 21, DIST_ID_LEN, 1) && !strcmp(n + 37, ".safetensors"))
    return 1;
  return len == 35 && !strncmp(n, ".state-", 7) && digits(n + 7, DIST_ID_LEN, 1) && !strcmp(n + 23, ".safetensors");
}

/* After the commit: remove shard files the new manifest does not name. */
static void collect_garbage(saver *S, const manifest *m) {
  DIR *d = opendir(S->dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (!is_ours(de->d_name)) continue;
    int keep = 0;
    for (size_t r = 0; r < m->n_files && !keep; r++) keep = strcmp(m->files[r].name, de->d_name) == 0;
    if (!keep) {
      char *p = fs_join(S->dir, de->d_name);
      if (p) unlink(p);
      free(p);
    }
  }
  closedir(d);
}

static ema_status commit(saver *S) {
  wb res = {NULL, 0, 0, 1};
  ema_status st = agree(S, write_mine(S, &res));
  unsigned char *blk = NULL;
  size_t *off = NULL, *len = NULL;
  if (st == EMA_OK) st = agree(S, dc_allgatherv(S->comm, res.p, res.len, &blk, &off, &len));
  free(res.p);
  if (st == EMA_OK && S->rank == 0) {
    manifest m;
    memset(&m, 0, sizeof m);
    char(*names)[96] = (char(*)[96])ema__calloc((size_t)S->world, 96);
    st = names ? build_manifest(S, blk, off, len, &m, names) : EMA_E_NOMEM;
    dj_buf b;
    dj_buf_init(&b);
    if (st == EMA_OK) mf_render(&m, &b);
    if (st == EMA_OK && !b.ok) st = EMA_E_NOMEM;
    if (st == EMA_OK) st = fs_write_atomic(S->dir, DIST_MANIFEST, b.p, b.len, S->err, sizeof S->err);
    if (st == EMA_OK) collect_garbage(S, &m);
    if (st == EMA_E_NOMEM) st_errf(S->err, sizeof S->err, "out of memory writing the manifest");
    dj_buf_free(&b);
    if (m.tensors) free(m.tensors[0].chunks);
    free(m.tensors);
    free(m.files);
    free(names);
  }
  free(blk);
  free(off);
  free(len);
  /* rank 0's verdict on the commit */
  int32_t word = (int32_t)st;
  ema_status cs = dc_bcast(S->comm, &word, sizeof word, 0);
  if (cs != EMA_OK) return cs;
  if (S->rank != 0 && word != EMA_OK && st == EMA_OK)
    st_errf(S->err, sizeof S->err, "rank 0 could not write the manifest (%s)", ema_status_string((ema_status)word));
  return st == EMA_OK ? (ema_status)word : st;
}

ema_status ema_save_sharded(const ema_ctx *ctx, const char *dir, const ema_comm *comm) {
  if (!ctx) return EMA_E_INVALID_ARG;
  /* wait for an asynchronous update in flight (as ema_load_sharded does) */
  ema__async_quiesce(ctx);
  ema__clear_error(ctx);
  ema_status st = dc_check(ctx, comm, fn);
  if (st != EMA_OK) return st;
  saver S;
  memset(&S, 0, sizeof S);
  S.ctx = ctx;
  S.comm = comm;
  S.dir = dir;
  S.rank = dc_rank(comm);
  S.world = dc_size(comm);
  if (!dir || !*dir) {
    st = EMA_E_INVALID_ARG;
    st_errf(S.err, sizeof S.err, "dir is NULL or empty");
  } else if (ctx->swapped) {
    st = EMA_E_STATE;
    st_errf(S.err, sizeof S.err, "the model holds the averages (swapped); call ema_swap() first");
  } else if (dist_plan(ctx, 0, NULL, &S.e, &S.n) != EMA_OK) {
    st = EMA_E_NOMEM;
    st_errf(S.err, sizeof S.err, "out of memory");
  }
  st = agree(&S, st);
  if (st == EMA_OK) st = exchange(&S);
  if (st == EMA_OK) st = prepare(&S);
  if (st == EMA_OK) st = commit(&S);
  if (st != EMA_OK && S.wrote) { /* not committed: the new file is garbage */
    char *p = fs_join(dir, S.file);
    if (p) unlink(p);
    free(p);
  }
  dist_plan_free(S.e, S.n);
  desc_free(S.all, S.n_all);
  free(S.all);
  free(S.blk);
  dj_free(&S.state);
  if (st != EMA_OK) return ema__fail(ctx, st, "%s: %s", fn, S.err);
  return EMA_OK;
}
