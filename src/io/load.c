/*
 * src/io/load.c: ema_load and ema_load_averages_into_model over one loader
 * (load.h): open and check, plan, stage, commit.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xxh64.h"
#include "io/load.h"
#include "io/st_internal.h"

static void loader_free(loader *L) {
  free(L->fpol);
  st_close(L->f);
  free(L->items);
  ema__aligned_free(L->stage);
}

static int same_shape(const st_tensor *s, const ema_tensor *t) {
  if (s->ndim != t->ndim) return 0;
  for (int i = 0; i < t->ndim; i++)
    if (s->shape[i] != t->shape[i]) return 0;
  return 1;
}

ema_status load_expect(loader *L, const char *key, ema_tensor *t, ema_dtype want, ema_dtype also, int scalar, int dest,
                       size_t k, const char *role) {
  const st_tensor *s = st_find(L->f, key);
  ema_dtype dt;
  int dtype_ok = s && st_dtype_to_ema(s->dtype, &dt) && (dt == want || dt == also);
  if (dtype_ok && (scalar ? s->ndim == 0 : same_shape(s, t))) {
    load_item *it = &L->items[L->n++];
    it->src = s;
    it->t = t;
    it->dest = dest;
    it->k = k;
    return EMA_OK;
  }
  /* what is wrong, the names quoted (the key holds the file's average name) */
  char q[CKPT_QUOTE_CAP], tq[CKPT_QUOTE_CAP];
  ckpt_quote(q, sizeof q, key);
  ckpt_quote(tq, sizeof tq, t->name);
  if (!s)
    return ema__fail(L->ctx, EMA_E_MISMATCH, "%s: the checkpoint has no tensor %s (%s of %s)", L->fn, q, role, tq);
  if (!dtype_ok)
    return ema__fail(L->ctx, EMA_E_MISMATCH, "%s: tensor %s is %s in the checkpoint but %s is needed", L->fn, q,
                     st_dtype_name(s->dtype), ema_dtype_name(want));
  char a[256], b[256];
  st_shape_str(a, sizeof a, s->ndim, s->shape);
  st_shape_str(b, sizeof b, scalar ? 0 : t->ndim, t->shape);
  return ema__fail(L->ctx, EMA_E_MISMATCH, "%s: tensor %s has shape %s in the checkpoint but %s is registered", L->fn,
                   q, a, b);
}

/* The checksums a file records: libema.xxh64 (XXH64 of the data section,
   this version's) and libema.checksum (0.1's). Either may be absent. */
typedef struct load_sums {
  int have_xxh, have_legacy;
  uint64_t xxh, legacy;
  ema__xxh64_state h;
  uint64_t legacy_sum;
} load_sums;

static ema_status parse_sum(loader *L, const char *key, int *have, uint64_t *out) {
  const char *v = st_meta_get(L->f, key);
  if (!v) return EMA_OK;
  char *end = NULL;
  if (strlen(v) != 16 || !isxdigit((unsigned char)v[0]) || v[0] == '+' || v[0] == '-')
    end = NULL;
  else
    *out = strtoull(v, &end, 16);
  if (!end || *end) {
    char q[CKPT_QUOTE_CAP];
    ckpt_quote(q, sizeof q, v);
    return ema__fail(L->ctx, EMA_E_FORMAT, "%s: %s has a malformed %s %s", L->fn, L->what, key, q);
  }
  *have = 1;
  return EMA_OK;
}

/* Open, check the format version and the checksums' syntax. */
static ema_status loader_open(loader *L, const char *path, load_sums *sums) {
  (void)path;
  char err[EMA_ERR_CAP];
  ema_status st;
  if (L->parts) {
    uint64_t data_len = 0;
    for (size_t i = 0; i < L->n_parts; i++) data_len += L->parts[i].len; /* checked by the caller */
    st = st_open_head(L->buf, L->buf_len, data_len, &L->f, err, sizeof err);
  } else {
    st = L->buf ? st_open_mem(L->buf, L->buf_len, &L->f, err, sizeof err) : st_open(path, &L->f, err, sizeof err);
  }
  if (st != EMA_OK) return ckpt_fail(L->ctx, st, L->fn, err);
  const char *fmt = st_meta_get(L->f, "libema.format");
  if (fmt && strcmp(fmt, CKPT_FORMAT_VERSION) != 0) {
    char q[CKPT_QUOTE_CAP];
    ckpt_quote(q, sizeof q, fmt);
    return ema__fail(L->ctx, EMA_E_FORMAT,
                     "%s: %s is a libema checkpoint of format version %s; this library reads version %s", L->fn,
                     L->what, q, CKPT_FORMAT_VERSION);
  }
  L->ema_name = st_meta_get(L->f, "ema.name");
  if (!L->ema_name) L->ema_name = L->ctx->avg[0].name;
  memset(sums, 0, sizeof *sums);
  ema__xxh64_init(&sums->h, 0);
  st = parse_sum(L, "libema.xxh64", &sums->have_xxh, &sums->xxh);
  if (st == EMA_OK) st = parse_sum(L, "libema.checksum", &sums->have_legacy, &sums->legacy);
  if (st == EMA_OK) st = load_read_policies(L);
  return st;
}

/* Read file tensor s once: into its staging place when a planned item
   needs it (dst), else through scratch; hash exactly the bytes read. */
static ema_status read_hashed(loader *L, const st_tensor *s, unsigned char *dst, unsigned char *scratch,
                              size_t scratch_cap, load_sums *sums) {
  char err[EMA_ERR_CAP];
  ckpt_legacy_hash lh;
  ckpt_legacy_init(&lh);
  for (uint64_t off = 0; off < s->nbytes; off += scratch_cap) {
    size_t len = s->nbytes - off < scratch_cap ? (size_t)(s->nbytes - off) : scratch_cap;
    unsigned char *to = dst ? dst + off : scratch;
    ema_status st = st_read_range(L->f, s, off, to, len, err, sizeof err);
    if (st != EMA_OK) return ckpt_fail(L->ctx, st, L->fn, err);
    ema__xxh64_update(&sums->h, to, len);
    if (sums->have_legacy) ckpt_legacy_update(&lh, to, len);
  }
  if (sums->have_legacy) sums->legacy_sum += ckpt_legacy_term(s->name, &lh);
  return EMA_OK;
}

/* Where each file tensor's bytes are in a checkpoint held in memory (one
   buffer, or parts): at[i] for file tensor i. A tensor that straddles two
   parts is refused. */
static ema_status locate_in_memory(loader *L, const size_t *order, const unsigned char **at) {
  if (!L->parts) {
    const unsigned char *data = (const unsigned char *)L->buf + L->f->data_start;
    for (size_t i = 0; i < L->f->n_tensors; i++) at[i] = data + L->f->tensors[i].begin;
    return EMA_OK;
  }
  size_t p = 0;
  uint64_t start = 0; /* data offset of parts[p] */
  for (size_t k = 0; k < L->f->n_tensors; k++) {
    const st_tensor *s = &L->f->tensors[order[k]];
    if (s->nbytes == 0) continue; /* no bytes: at[] stays NULL, nothing is copied */
    while (p < L->n_parts && s->begin >= start + L->parts[p].len) {
      start += L->parts[p].len;
      p++;
    }
    if (p == L->n_parts || s->begin + s->nbytes > start + L->parts[p].len) {
      char q[CKPT_QUOTE_CAP];
      ckpt_quote(q, sizeof q, s->name);
      return ema__fail(L->ctx, EMA_E_INVALID_ARG,
                       "%s: tensor %s (data bytes %" PRIu64 "-%" PRIu64 ") does not lie within one part", L->fn, q,
                       s->begin, s->begin + s->nbytes);
    }
    at[order[k]] = (const unsigned char *)L->parts[p].data + (s->begin - start);
  }
  return EMA_OK;
}

/* A checkpoint in memory is its own staging (the caller's buffer or parts
   are borrowed, unchanged, for the call): hash every byte in place, in file
   order, when the metadata holds a checksum, and point the planned items at
   their bytes. */
static ema_status stage_in_place(loader *L, const size_t *order, load_sums *sums) {
  const unsigned char **at = (const unsigned char **)ema__calloc(L->f->n_tensors + 1, sizeof *at);
  if (!at) return ema__fail(L->ctx, EMA_E_NOMEM, "%s: out of memory", L->fn);
  ema_status st = locate_in_memory(L, order, at);
  for (size_t k = 0; k < L->f->n_tensors && st == EMA_OK && (sums->have_xxh || sums->have_legacy); k++) {
    const st_tensor *s = &L->f->tensors[order[k]];
    size_t nb = (size_t)s->nbytes;
    if (nb) ema__xxh64_update(&sums->h, at[order[k]], nb);
    if (sums->have_legacy) {
      ckpt_legacy_hash lh;
      ckpt_legacy_init(&lh);
      if (nb) ckpt_legacy_update(&lh, at[order[k]], nb);
      sums->legacy_sum += ckpt_legacy_term(s->name, &lh);
    }
  }
  for (size_t i = 0; i < L->n && st == EMA_OK; i++) L->items[i].from = at[L->items[i].src - L->f->tensors];
  free(at);
  return st; /* no staging buffer: L->stage stays NULL */
}

static int by_offset(size_t a, size_t b, const void *ctx) {
  const st_tensor *t = (const st_tensor *)ctx;
  return t[a].begin < t[b].begin ? -1 : t[a].begin > t[b].begin ? 1 : 0;
}

/* Where each file tensor is staged (SIZE_MAX: not needed), and the
   staging buffer. */
static ema_status plan_staging(loader *L, size_t *place) {
  size_t total = 0;
  for (size_t i = 0; i < L->f->n_tensors; i++) place[i] = SIZE_MAX;
  for (size_t i = 0; i < L->n; i++) {
    size_t fi = (size_t)(L->items[i].src - L->f->tensors);
    if (place[fi] == SIZE_MAX) {
      place[fi] = total;
      total += (size_t)((L->items[i].src->nbytes + EMA_ALIGN - 1) / EMA_ALIGN * EMA_ALIGN);
    }
    L->items[i].staged = place[fi];
  }
  L->stage = (unsigned char *)ema__aligned_alloc(total ? total : EMA_ALIGN);
  if (!L->stage)
    return ema__fail(L->ctx, EMA_E_NOMEM, "%s: out of memory staging %zu bytes of checkpoint data", L->fn, total);
  return EMA_OK;
}

/* Read the data section once, in file order, staging what the plan needs
   and hashing every byte as it was read; then check the checksums against
   those bytes, and that the file did not change underneath. */
static ema_status loader_stage(loader *L, load_sums *sums, int in_place) {
  enum { SCRATCH = 1 << 20 };
  size_t nt = L->f->n_tensors;
  in_place = in_place && L->buf;
  size_t *place = (size_t *)ema__calloc(nt + 1, sizeof *place);
  size_t *order = (size_t *)ema__calloc(nt + 1, sizeof *order);
  unsigned char *scratch = in_place ? NULL : (unsigned char *)ema__malloc(SCRATCH);
  ema_status st =
      place && order && (scratch || in_place) ? EMA_OK : ema__fail(L->ctx, EMA_E_NOMEM, "%s: out of memory", L->fn);
  if (st == EMA_OK && !in_place) st = plan_staging(L, place);
  for (size_t i = 0; i < nt && order; i++) order[i] = i;
  if (st == EMA_OK && st_msort(order, nt, by_offset, L->f->tensors) != 0)
    st = ema__fail(L->ctx, EMA_E_NOMEM, "%s: out of memory", L->fn);
  if (st == EMA_OK && in_place) {
    st = stage_in_place(L, order, sums);
    nt = 0; /* nothing to read */
  }
  for (size_t k = 0; k < nt && st == EMA_OK; k++) {
    size_t i = order[k];
    unsigned char *dst = place[i] == SIZE_MAX ? NULL : L->stage + place[i];
    st = read_hashed(L, &L->f->tensors[i], dst, scratch, SCRATCH, sums);
  }
  free(place);
  free(order);
  free(scratch);
  if (st != EMA_OK) return st;
  if (!in_place)
    for (size_t i = 0; i < L->n; i++) L->items[i].from = L->stage + L->items[i].staged;
  uint64_t got = ema__xxh64_digest(&sums->h);
  if (sums->have_xxh && got != sums->xxh)
    return ema__fail(L->ctx, EMA_E_FORMAT,
                     "%s: %s is corrupt: its data does not match the checksum (XXH64) written with it (%016" PRIx64
                     " != %016" PRIx64 ")",
                     L->fn, L->what, got, sums->xxh);
  if (sums->have_legacy && sums->legacy_sum != sums->legacy)
    return ema__fail(L->ctx, EMA_E_FORMAT,
                     "%s: %s is corrupt: its data does not match the 0.1 checksum written with it (%016" PRIx64
                     " != %016" PRIx64 ")",
                     L->fn, L->what, sums->legacy_sum, sums->legacy);
  char err[EMA_ERR_CAP];
  st = st_check_unchanged(L->f, err, sizeof err);
  return st == EMA_OK ? EMA_OK : ckpt_fail(L->ctx, st, L->fn, err);
}

ema_status load_run(ema_ctx *ctx, const load_src *src, const char *fn, const load_ops *ops) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  const char *path = src->path;
  if (!src->buf && (!path || !*path)) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: path is NULL or empty", fn);
  ema_status ast = ema__async_settle(ctx, fn);
  if (ast != EMA_OK) return ast;
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "%s: the model holds the averages (swapped); call ema_swap() first", fn);
  if (ctx->stored)
    return ema__fail(ctx, EMA_E_STATE,
                     "%s: a stored copy of the model is held; call ema_restore() first so it cannot undo the load", fn);
  loader *L = (loader *)ema__calloc(1, sizeof *L);
  if (!L) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
  L->ctx = ctx;
  L->fn = fn;
  char what[EMA_ERR_CAP / 2];
  if (path)
    snprintf(what, sizeof what, "'%s'", path);
  else
    snprintf(what, sizeof what, "the buffer");
  L->what = what;
  L->buf = path ? NULL : src->buf;
  L->buf_len = src->len;
  L->parts = src->parts;
  L->n_parts = src->n_parts;
  L->state_only = src->state_only;
  L->items = (load_item *)ema__calloc(ctx->count * (1 + 4 * ctx->n_avg) + 1, sizeof *L->items);
  ema_status st = L->items ? EMA_OK : ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
  load_sums sums;
  if (st == EMA_OK) st = loader_open(L, path, &sums);
  if (st == EMA_OK) st = ops->plan(L);
  if (st == EMA_OK) st = loader_stage(L, &sums, ops->in_place);
  if (st == EMA_OK && ops->check) st = ops->check(L);
  if (st == EMA_OK) ops->commit(L); /* nothing below can fail */
  loader_free(L);
  free(L);
  return st;
}

/* ------------------------------------------------------------------------ */
/* ema_load                                                                  */
/* ------------------------------------------------------------------------ */

/* A KEEP tensor: its frozen copy under every member's key, in the model
   dtype; member 0's is loaded, the others must hold the same bytes
   (resume_check). */
static ema_status resume_keep(loader *L, ema_tensor *t) {
  for (size_t k = 0; k < L->n_avg; k++) {
    char *key = ckpt_join3(t->name, L->avg[k].name, NULL);
    if (!key) return ema__fail(L->ctx, EMA_E_NOMEM, "%s: out of memory", L->fn);
    ema_status st = load_expect(L, key, t, t->dtype, t->dtype, 0, k == 0 ? LD_KEEP : LD_KEEP_SAME, k, "frozen copy");
    free(key);
    if (st != EMA_OK) return st;
  }
  return EMA_OK;
}

/* Every registered tensor must be there with its policy, dtype and shape. */
static ema_status resume_plan(loader *L) {
  ema_ctx *ctx = L->ctx;
  ema_status st = load_read_state(L);
  for (size_t i = 0; i < ctx->count && st == EMA_OK; i++) {
    ema_tensor *t = &ctx->tensors[i];
    char *probe = ckpt_join3(t->name, L->avg[0].name, NULL);
    if (!probe) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", L->fn);
    st = load_check_policy(L, i, probe);
    free(probe);
    if (st == EMA_OK && !L->state_only)
      st = load_expect(L, t->name, t, t->dtype, t->dtype, 0, LD_MODEL, 0, "model values");
    if (st == EMA_OK && t->policy == EMA_POLICY_KEEP) st = resume_keep(L, t);
    if (t->policy != EMA_POLICY_AVERAGE) continue;
    for (size_t k = 0; k < L->n_avg && st == EMA_OK; k++) {
      char *names[4];
      int made = ckpt_state_keys(t->name, L->avg[k].name, ctx->zero_debias, names);
      if (!made) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", L->fn);
      int debias = ctx->zero_debias;
      st = load_expect(L, names[0], t, t->sdtype, t->sdtype, 0, debias ? LD_AVERAGE : LD_SHADOW, k, "average");
      if (st == EMA_OK && debias)
        st = load_expect(L, names[1], t, t->sdtype, t->sdtype, 0, LD_SHADOW, k, "zero-debias accumulator");
      if (st == EMA_OK && debias)
        st = load_expect(L, names[2], t, EMA_I64, EMA_I64, 1, LD_STEPS, k, "zero-debias step count");
      if (st == EMA_OK && debias)
        st = load_expect(L, names[3], t, EMA_F64, EMA_F64, 1, LD_PROD, k, "zero-debias decay product");
      for (int j = 0; j < made; j++) free(names[j]);
    }
  }
  return st;
}

/* The staged zero-debias counters and KEEP copies. */
static ema_status resume_check(loader *L) {
  char q[CKPT_QUOTE_CAP];
  const load_item *keep0 = NULL;
  for (size_t i = 0; i < L->n; i++) {
    const load_item *it = &L->items[i];
    const char *bad = NULL;
    if (it->dest == LD_KEEP) keep0 = it;
    if (it->dest == LD_KEEP_SAME && keep0 && keep0->t == it->t &&
        memcmp(keep0->from, it->from, (size_t)keep0->src->nbytes) != 0)
      bad = "the frozen copies of a KEEP tensor differ (%s)";
    if (it->dest == LD_STEPS) {
      int64_t k;
      memcpy(&k, it->from, 8);
      if (k < 0) bad = "tensor %s holds a negative step count";
    } else if (it->dest == LD_PROD) {
      double p;
      memcpy(&p, it->from, 8);
      if (!(p >= 0.0 && p <= 1.0)) bad = "tensor %s holds a decay product outside [0, 1]";
    }
    if (bad) {
      char msg[EMA_ERR_CAP];
      ckpt_quote(q, sizeof q, it->src->name);
      snprintf(msg, sizeof msg, bad, q);
      return ema__fail(L->ctx, EMA_E_FORMAT, "%s: %s", L->fn, msg);
    }
  }
  return EMA_OK;
}

static void resume_commit(loader *L) {
  for (size_t i = 0; i < L->n; i++) {
    load_item *it = &L->items[i];
    const unsigned char *src = it->from;
    size_t bytes = (size_t)it->src->nbytes;
    void *dst = NULL;
    switch (it->dest) {
      case LD_MODEL:
        dst = it->t->data;
        break;
      case LD_SHADOW:
        dst = it->t->shadow[it->k];
        break;
      case LD_AVERAGE:
        dst = it->t->average[it->k];
        break;
      case LD_STEPS:
        dst = &it->t->debias_steps[it->k];
        break;
      case LD_PROD:
        dst = &it->t->debias_prod[it->k];
        break;
      case LD_KEEP:
        dst = it->t->average[0];
        break; /* shared by every member */
      default:
        bytes = 0;
        break; /* LD_KEEP_SAME: checked only */
    }
    if (bytes) memmove(dst, src, bytes); /* a caller's part may be the very average it restores */
  }
  ema_ctx *ctx = L->ctx;
  memcpy(ctx->avg, L->avg, sizeof L->avg);
  ctx->num_updates = L->num_updates < 0 ? -1 : L->num_updates;
  ctx->last_step = L->last_step;
}

static const load_ops resume_ops = {resume_plan, resume_check, resume_commit, 1};

ema_status ema_load(ema_ctx *ctx, const char *path) {
  load_src src = {path, NULL, 0, 0, NULL, 0};
  return load_run(ctx, &src, "ema_load", &resume_ops);
}

ema_status ema_load_buffer(ema_ctx *ctx, const void *buf, size_t len) {
  if (ctx && !buf) {
    ema__clear_error(ctx);
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_load_buffer: buf is NULL");
  }
  load_src src = {NULL, buf, len, 0, NULL, 0};
  return load_run(ctx, &src, "ema_load_buffer", &resume_ops);
}

ema_status ema_load_state_buffer(ema_ctx *ctx, const void *buf, size_t len) {
  if (ctx && !buf) {
    ema__clear_error(ctx);
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_load_state_buffer: buf is NULL");
  }
  load_src src = {NULL, buf, len, 1, NULL, 0};
  return load_run(ctx, &src, "ema_load_state_buffer", &resume_ops);
}

ema_status ema_load_state_parts(ema_ctx *ctx, const void *head, size_t head_len, const ema_bytes *parts,
                                size_t n_parts) {
  static const char *fn = "ema_load_state_parts";
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!head) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: head is NULL", fn);
  if (!parts && n_parts) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: parts is NULL", fn);
  uint64_t total = 0;
  for (size_t i = 0; i < n_parts; i++) {
    if (!parts[i].data && parts[i].len)
      return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: part %zu is NULL with %zu bytes", fn, i, parts[i].len);
    if (parts[i].len > UINT64_MAX - total)
      return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: the parts add up to more than 2^64 bytes", fn);
    total += parts[i].len;
  }
  static const ema_bytes none = {NULL, 0};
  load_src src = {NULL, head, head_len, 1, parts ? parts : &none, n_parts};
  return load_run(ctx, &src, fn, &resume_ops);
}

/* ------------------------------------------------------------------------ */
/* ema_load_averages_into_model                                              */
/* ------------------------------------------------------------------------ */

static ema_status into_model_plan(loader *L) {
  ema_ctx *ctx = L->ctx;
  /* the active average under the file's name for it */
  const char *active_name = ctx->avg[ctx->active].name;
  char key[64];
  snprintf(key, sizeof key, "ema.average.%zu.name", ctx->active);
  const char *v = st_meta_get(L->f, key);
  if (v)
    active_name = v;
  else if (ctx->active == 0)
    active_name = L->ema_name;
  for (size_t i = 0; i < ctx->count; i++) {
    ema_tensor *t = &ctx->tensors[i];
    ema_status st;
    char *probe = ckpt_join3(t->name, active_name, NULL);
    if (!probe) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", L->fn);
    st = load_check_policy(L, i, probe);
    free(probe);
    if (st != EMA_OK) return st;
    if (t->policy == EMA_POLICY_COPY) { /* COPY tensors map to themselves */
      st = load_expect(L, t->name, t, t->dtype, t->dtype, 0, LD_MODEL, 0, "COPY tensor");
      if (st != EMA_OK) return st;
      continue;
    }
    char *avg = ckpt_join3(t->name, active_name, NULL);
    if (!avg) return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", L->fn);
    /* the average may be stored in the model's dtype or in float32 (the
       default shadow of f16/bf16 models), which is rounded on the way in */
    ema_dtype also = (t->dtype == EMA_F16 || t->dtype == EMA_BF16) ? EMA_F32 : t->dtype;
    st = load_expect(L, avg, t, t->dtype, also, 0, LD_MODEL, 0, "average");
    free(avg);
    if (st != EMA_OK) return st;
    load_item *it = &L->items[L->n - 1];
    if (it->src->dtype != (st_dtype)st_dtype_from_ema(t->dtype)) it->dest = LD_MODEL_FROM_SHADOW;
  }
  return EMA_OK;
}

static void into_model_commit(loader *L) {
  for (size_t i = 0; i < L->n; i++) {
    load_item *it = &L->items[i];
    const unsigned char *src = it->from;
    if (it->dest == LD_MODEL) {
      if (it->src->nbytes) memcpy(it->t->data, src, (size_t)it->src->nbytes);
    } else if (it->t->numel) {
      int pair = it->t->dtype == EMA_BF16 ? EMA_PAIR_BF16_F32 : EMA_PAIR_F16_F32;
      L->ctx->k->from_shadow[pair](it->t->data, src, it->t->numel);
    }
  }
}

static const load_ops into_model_ops = {into_model_plan, NULL, into_model_commit, 0};

ema_status ema_load_averages_into_model(ema_ctx *ctx, const char *path) {
  load_src src = {path, NULL, 0, 0, NULL, 0};
  return load_run(ctx, &src, "ema_load_averages_into_model", &into_model_ops);
}

ema_status ema_load_averages_into_model_buffer(ema_ctx *ctx, const void *buf, size_t len) {
  if (ctx && !buf) {
    ema__clear_error(ctx);
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_load_averages_into_model_buffer: buf is NULL");
  }
  load_src src = {NULL, buf, len, 0, NULL, 0};
  return load_run(ctx, &src, "ema_load_averages_into_model_buffer", &into_model_ops);
}
