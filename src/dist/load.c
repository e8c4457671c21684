/*
 * src/dist/load.c: ema_load_sharded and ema_load_sharded_averages_into_model.
 * Every rank reads the manifest, matches its registrations to it, reads the
 * byte ranges of the chunks that overlap its boxes into a staging buffer
 * (verifying the checksum of every chunk it reads whole), reads the EMA
 * state through ema_load on a skeleton context, and only when every rank
 * succeeded copies everything into place.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/manifest.h"
#include "io/st_internal.h"

typedef struct loader {
  ema_ctx *ctx;
  const char *fn, *dir;
  const ema_comm *comm;
  int for_model;
  manifest m;
  dist_entry *e;
  const mf_tensor **mt; /* per entry */
  size_t *staged;       /* per entry: offset in stage */
  size_t n;
  st_file **files;
  unsigned char *stage;
  ema_ctx *skel; /* the state, read by ema_load */
  char err[EMA_ERR_CAP];
} loader;

#define FAIL(s, ...) (st_errf(L->err, sizeof L->err, __VA_ARGS__), (s))

static const char *active_name(loader *L) {
  char key[64];
  snprintf(key, sizeof key, "ema.average.%zu.name", L->ctx->active);
  const dj_val *v = dj_get(L->m.state, key);
  if (!v && L->ctx->active == 0) v = dj_get(L->m.state, "ema.name");
  return v ? v->str : L->ctx->avg[L->ctx->active].name;
}

/* Each registered tensor's policy is the one the checkpoint records
   (ema_save's "ema.policy.<name>"; absent: average). */
static ema_status check_policies(loader *L) {
  for (size_t i = 0; i < L->ctx->count; i++) {
    const ema_tensor *t = &L->ctx->tensors[i];
    char key[EMA_MAX_NAME + 16];
    snprintf(key, sizeof key, "ema.policy.%s", t->name);
    const dj_val *v = dj_get(L->m.state, key);
    const char *saved = v ? v->str : ema__policy_name(EMA_POLICY_AVERAGE);
    if (strcmp(saved, ema__policy_name(t->policy)) != 0) {
      char q[96];
      ema_escape(saved, strlen(saved), q, sizeof q);
      return FAIL(EMA_E_MISMATCH, "tensor '%s' was saved with policy '%s' but is registered with policy %s", t->name, q,
                  ema__policy_name(t->policy));
    }
  }
  return EMA_OK;
}

static ema_status match(loader *L) {
  ema_status st = check_policies(L);
  if (st != EMA_OK) return st;
  size_t total = 0;
  for (size_t j = 0; j < L->n; j++) {
    dist_entry *e = &L->e[j];
    const mf_tensor *t = mf_find(&L->m, e->key);
    if (!t)
      return FAIL(EMA_E_MISMATCH, "the checkpoint has no tensor '%s' (%s of '%s')", e->key, dist_role_name(e->role),
                  e->t->name);
    if (t->ndim != e->ndim || memcmp(t->shape, e->global, (size_t)e->ndim * sizeof(int64_t))) {
      char a[128], b[128];
      st_shape_str(a, sizeof a, t->ndim, t->shape);
      st_shape_str(b, sizeof b, e->ndim, e->global);
      return FAIL(EMA_E_MISMATCH, "tensor '%s' has global shape %s in the checkpoint but %s is registered", e->key, a,
                  b);
    }
    ema_dtype want = e->dtype;
    int half = e->t->dtype == EMA_F16 || e->t->dtype == EMA_BF16;
    int ok = t->edtype == want ||
             (L->for_model && e->role == DR_AVG && (t->edtype == e->t->dtype || (half && t->edtype == EMA_F32)));
    if (!ok)
      return FAIL(EMA_E_MISMATCH, "tensor '%s' is %s in the checkpoint but %s is needed", e->key,
                  st_dtype_name(t->dtype), ema_dtype_name(want));
    e->dtype = t->edtype;
    e->nbytes = (size_t)box_volume(e->ndim, e->local) * ema_dtype_size(e->dtype);
    L->mt[j] = t;
    L->staged[j] = total;
    total += (e->nbytes + EMA_ALIGN - 1) / EMA_ALIGN * EMA_ALIGN;
  }
  L->stage = (unsigned char *)ema__aligned_alloc(total ? total : EMA_ALIGN);
  if (!L->stage) return FAIL(EMA_E_NOMEM, "out of memory staging %zu bytes", total);
  return EMA_OK;
}

typedef struct reader {
  loader *L;
  const st_file *f;
  const st_tensor *s;
  unsigned char *dst;
  ema__xxh64_state h;
} reader;

static ema_status read_run(void *user, uint64_t src, uint64_t dst, uint64_t len) {
  reader *R = (reader *)user;
  ema_status st = st_read_range(R->f, R->s, src, R->dst + dst, (size_t)len, R->L->err, sizeof R->L->err);
  if (st == EMA_OK) ema__xxh64_update(&R->h, R->dst + dst, (size_t)len);
  return st;
}

static ema_status read_entry(loader *L, size_t j) {
  const dist_entry *e = &L->e[j];
  const mf_tensor *t = L->mt[j];
  size_t es = ema_dtype_size(e->dtype);
  for (size_t c = 0; c < t->n_chunks; c++) {
    const mf_chunk *k = &t->chunks[c];
    int64_t io[EMA_MAX_DIMS], is[EMA_MAX_DIMS];
    if (!box_intersect(e->ndim, e->offset, e->local, k->off, k->shape, io, is)) continue;
    ema_status st = EMA_OK;
    if (!L->files[k->file]) st = mf_open_file(&L->m, L->dir, k->file, &L->files[k->file], L->err, sizeof L->err);
    if (st != EMA_OK) return st;
    reader R;
    R.L = L;
    R.f = L->files[k->file];
    R.s = st_find(L->files[k->file], t->name);
    R.dst = L->stage + L->staged[j];
    ema__xxh64_init(&R.h, 0);
    st = box_runs(e->ndim, io, is, k->off, k->shape, e->offset, e->local, es, read_run, &R);
    if (st != EMA_OK) return st;
    int whole = !memcmp(io, k->off, (size_t)e->ndim * 8) && !memcmp(is, k->shape, (size_t)e->ndim * 8);
    if (whole && ema__xxh64_digest(&R.h) != k->checksum)
      return FAIL(EMA_E_FORMAT, "chunk %zu of '%s' in '%s' is corrupt: its bytes do not match the manifest's checksum",
                  c, t->name, L->m.files[k->file].name);
  }
  if (e->role == DR_STEPS) {
    int64_t v;
    memcpy(&v, L->stage + L->staged[j], 8);
    if (v < 0) return FAIL(EMA_E_FORMAT, "tensor '%s' holds a negative step count", e->key);
  } else if (e->role == DR_PROD) {
    double p;
    memcpy(&p, L->stage + L->staged[j], 8);
    if (!(p >= 0.0 && p <= 1.0)) return FAIL(EMA_E_FORMAT, "tensor '%s' holds a decay product outside [0, 1]", e->key);
  }
  return EMA_OK;
}

/* The manifest's copy of the EMA state must be rank 0's file's; then the
   EMA state (not for averages_into_model): ema_load of rank 0's shard file (its metadata only) into
   a skeleton context with this context's bank. */
static ema_status read_state(loader *L) {
  ema_status st = EMA_OK;
  if (!L->files[0]) st = mf_open_file(&L->m, L->dir, 0, &L->files[0], L->err, sizeof L->err);
  if (st != EMA_OK) return st;
  const dj_val *s = L->m.state;
  for (size_t i = 0; i < s->n; i++) {
    if (dist_is_sum_key(s->keys[i])) continue;
    const char *v = st_meta_get(L->files[0], s->keys[i]);
    if (!v || strcmp(v, s->items[i].str) != 0) {
      char q[96];
      ema_escape(s->keys[i], strlen(s->keys[i]), q, sizeof q);
      return FAIL(EMA_E_FORMAT, "state entry '%s' of the manifest is not the one of its shard file", q);
    }
  }
  if (L->for_model) return EMA_OK;
  ema_ctx *k = NULL;
  if (ema_create(&k, 0.5) != EMA_OK) return FAIL(EMA_E_NOMEM, "out of memory");
  L->skel = k;
  k->n_avg = L->ctx->n_avg;
  memcpy(k->avg, L->ctx->avg, sizeof k->avg);
  k->zero_debias = L->ctx->zero_debias;
  k->num_updates = L->ctx->num_updates;
  k->last_step = L->ctx->last_step;
  char *path = fs_join(L->dir, L->m.files[0].name);
  if (!path) return FAIL(EMA_E_NOMEM, "out of memory");
  st = ema_load(k, path);
  free(path);
  if (st != EMA_OK) return FAIL(st, "%s", ema_last_error(k));
  return EMA_OK;
}

/* The frozen copies of a KEEP tensor (one per member, one memory) agree. */
static ema_status check_keep(loader *L) {
  for (size_t j = 0; j < L->n; j++) {
    const dist_entry *e = &L->e[j];
    if (L->for_model || e->t->policy != EMA_POLICY_KEEP || e->role != DR_AVG || e->k == 0) continue;
    size_t first = j - e->k; /* member 0's entry of the same tensor */
    if (e->nbytes && memcmp(L->stage + L->staged[j], L->stage + L->staged[first], e->nbytes))
      return FAIL(EMA_E_FORMAT, "the frozen copies of KEEP tensor '%s' differ between members", e->t->name);
  }
  return EMA_OK;
}

static void commit(loader *L) {
  ema_ctx *ctx = L->ctx;
  for (size_t j = 0; j < L->n; j++) {
    dist_entry *e = &L->e[j];
    const unsigned char *src = L->stage + L->staged[j];
    ema_tensor *t = e->t;
    if (L->for_model && e->role == DR_AVG && e->dtype != t->dtype) {
      int pair = t->dtype == EMA_BF16 ? EMA_PAIR_BF16_F32 : EMA_PAIR_F16_F32;
      if (t->numel) ctx->k->from_shadow[pair](t->data, src, t->numel);
    } else if (e->nbytes) {
      memcpy(e->data, src, e->nbytes);
    }
  }
  if (L->skel) {
    memcpy(ctx->avg, L->skel->avg, sizeof ctx->avg);
    ctx->num_updates = L->skel->num_updates;
    ctx->last_step = L->skel->last_step;
  }
}

static ema_status run(loader *L) {
  ema_ctx *ctx = L->ctx;
  if (!L->dir || !*L->dir) return FAIL(EMA_E_INVALID_ARG, "dir is NULL or empty");
  if (ctx->swapped) return FAIL(EMA_E_STATE, "the model holds the averages (swapped); call ema_swap() first");
  if (ctx->stored)
    return FAIL(EMA_E_STATE, "a stored copy of the model is held; call ema_restore() first so it cannot undo the load");
  ema_status st = mf_load(L->dir, &L->m, L->err, sizeof L->err);
  if (st != EMA_OK) return st;
  if (dist_plan(ctx, L->for_model, L->for_model ? active_name(L) : NULL, &L->e, &L->n) != EMA_OK)
    return FAIL(EMA_E_NOMEM, "out of memory");
  L->mt = (const mf_tensor **)ema__calloc(L->n + 1, sizeof *L->mt);
  L->staged = (size_t *)ema__calloc(L->n + 1, sizeof *L->staged);
  L->files = (st_file **)ema__calloc(L->m.n_files, sizeof *L->files);
  if (!L->mt || !L->staged || !L->files) return FAIL(EMA_E_NOMEM, "out of memory");
  st = match(L);
  for (size_t j = 0; j < L->n && st == EMA_OK; j++) st = read_entry(L, j);
  if (st == EMA_OK) st = check_keep(L);
  if (st == EMA_OK) st = read_state(L);
  return st;
}

static ema_status load(ema_ctx *ctx, const char *dir, const ema_comm *comm, int for_model, const char *fn) {
  if (!ctx) return EMA_E_INVALID_ARG;
  /* wait for an asynchronous update in flight; a failure of it stays for the
     next local call, so that no rank leaves the collective steps alone */
  ema__async_quiesce(ctx);
  ema__clear_error(ctx);
  ema_status st = dc_check(ctx, comm, fn);
  if (st != EMA_OK) return st;
  loader *L = (loader *)ema__calloc(1, sizeof *L);
  if (!L) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
  L->ctx = ctx;
  L->fn = fn;
  L->dir = dir;
  L->comm = comm;
  L->for_model = for_model;
  st = run(L);
  int bad;
  ema_status all = dc_agree(comm, st, &bad);
  if (all == EMA_OK)
    commit(L);
  else if (st == EMA_OK)
    st_errf(L->err, sizeof L->err, "rank %d failed (%s); see its error; nothing was changed", bad,
            ema_status_string(all));
  for (size_t i = 0; L->files && i < L->m.n_files; i++) st_close(L->files[i]);
  free(L->files);
  free(L->mt);
  free(L->staged);
  dist_plan_free(L->e, L->n);
  ema__aligned_free(L->stage);
  ema_free(L->skel);
  mf_free(&L->m);
  if (all != EMA_OK) st = ema__fail(ctx, st != EMA_OK ? st : all, "%s: %s", fn, L->err);
  free(L);
  return st;
}

ema_status ema_load_sharded(ema_ctx *ctx, const char *dir, const ema_comm *comm) {
  return load(ctx, dir, comm, 0, "ema_load_sharded");
}

ema_status ema_load_sharded_averages_into_model(ema_ctx *ctx, const char *dir, const ema_comm *comm) {
  return load(ctx, dir, comm, 1, "ema_load_sharded_averages_into_model");
}
