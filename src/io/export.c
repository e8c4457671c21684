/*
 * src/io/export.c: files made from a context or a checkpoint for other
 * uses: ema_snapshot (one average of the bank, for post-hoc synthesis) and
 * ema_extract_averages (a checkpoint turned into an inference file).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/ckpt.h"
#include "io/st_internal.h"
#include "ema/posthoc.h"

ema_status ema_snapshot(const ema_ctx *ctx, size_t k, const char *path) {
  static const char *fn = "ema_snapshot";
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!path || !*path) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: path is NULL or empty", fn);
  if (k >= ctx->n_avg) return ema__fail(ctx, EMA_E_INVALID_ARG, "%s: there is no average %zu", fn, k);
  ema_status ast = ema__async_settle(ctx, fn);
  if (ast != EMA_OK) return ast;
  if (ctx->swapped)
    return ema__fail(ctx, EMA_E_STATE, "%s: the model holds the averages (swapped); call ema_swap() first", fn);
  st_wtensor *w = (st_wtensor *)ema__calloc(ctx->count + 1, sizeof *w);
  ckpt_meta *mb = (ckpt_meta *)ema__calloc(1, sizeof *mb);
  if (!w || !mb) {
    free(w);
    free(mb);
    return ema__fail(ctx, EMA_E_NOMEM, "%s: out of memory", fn);
  }
  size_t n = 0;
  for (size_t i = 0; i < ctx->count; i++) {
    const ema_tensor *t = &ctx->tensors[i];
    if (t->pair < 0) continue;
    w[n].name = t->name;
    w[n].dtype = (st_dtype)st_dtype_from_ema(t->sdtype);
    w[n].ndim = t->ndim;
    w[n].shape = t->shape;
    w[n].data = t->average[k];
    n++;
  }
  const ema_schedule *s = &ctx->avg[k].sched;
  ckpt_meta_add(mb, "libema.snapshot", "1");
  ckpt_meta_add(mb, "libema.version", EMA_VERSION_STRING);
  ckpt_meta_add(mb, "ema.name", ctx->avg[k].name);
  ckpt_meta_add(mb, "ema.schedule", ema__schedule_name(s->kind));
  ckpt_meta_addi(mb, "ema.t", ctx->last_step);
  if (s->kind == EMA_SCHEDULE_POWER) {
    double g = ema__schedule_gamma(s), sr = 0.0;
    ema_power_sigma_rel(g, &sr);
    ckpt_meta_addf(mb, "ema.gamma", g);
    ckpt_meta_addf(mb, "ema.sigma_rel", sr);
  }
  char err[EMA_ERR_CAP];
  ema_status st = st_write(path, w, n, mb->m, mb->n, err, sizeof err);
  free(w);
  free(mb);
  if (st != EMA_OK) return ckpt_fail(ctx, st, fn, err);
  return EMA_OK;
}

/* ------------------------------------------------------------------------ */
/* Inference export                                                          */
/* ------------------------------------------------------------------------ */

typedef struct extract_src {
  const st_file *f;
  const st_tensor **src; /* per output tensor: where its bytes come from */
  int *conv;             /* 1: float32 average rounded to the model's f16/bf16 */
  float *buf;            /* conversion buffer */
  st_wtensor *w;         /* the output tensors */
  size_t nw, n_avg;
  const char *name; /* the average's name */
  size_t nl;
  char *probe; /* "<tensor>/<name>" */
  size_t probe_cap;
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

static void extract_out(extract_src *x, const st_tensor *from, const st_tensor *as, int conv) {
  x->src[x->nw] = from;
  x->conv[x->nw] = conv;
  x->w[x->nw].name = as->name;
  x->w[x->nw].dtype = as->dtype;
  x->w[x->nw].ndim = as->ndim;
  x->w[x->nw].shape = as->shape;
  x->nw++;
}

/* Where file tensor s goes in the output: as the average of its model
   tensor, as a COPY tensor, or nowhere. */
static ema_status extract_one(extract_src *x, const st_tensor *s, char *err, size_t errcap) {
  const st_file *f = x->f;
  size_t nl = x->nl;
  if (s->name_len + 2 + nl > x->probe_cap) {
    free(x->probe);
    x->probe_cap = 2 * (s->name_len + nl + 2);
    x->probe = (char *)ema__malloc(x->probe_cap);
    if (!x->probe) {
      x->probe_cap = 0;
      st_errf(err, errcap, "ema_extract_averages: out of memory");
      return EMA_E_NOMEM;
    }
  }
  /* "<n>/<name>" and "<n>/<name>/..." belong to the model tensor <n> */
  const char *mark = NULL;
  for (const char *q = strchr(s->name, '/'); q; q = strchr(q + 1, '/'))
    if (strncmp(q + 1, x->name, nl) == 0 && (q[1 + nl] == '\0' || q[1 + nl] == '/') &&
        st_find_n(f, s->name, (size_t)(q - s->name)))
      mark = q;
  if (mark) {
    if (mark[1 + nl] == '/') return EMA_OK; /* zero-debias accumulators */
    const st_tensor *model = st_find_n(f, s->name, (size_t)(mark - s->name));
    int same = model->ndim == s->ndim;
    for (int d = 0; same && d < s->ndim; d++) same = model->shape[d] == s->shape[d];
    int conv = s->dtype == ST_F32 && (model->dtype == ST_F16 || model->dtype == ST_BF16);
    if (!same || (s->dtype != model->dtype && !conv)) {
      char a[CKPT_QUOTE_CAP], m[CKPT_QUOTE_CAP];
      ckpt_quote(a, sizeof a, s->name);
      ckpt_quote(m, sizeof m, model->name);
      st_errf(err, errcap, "ema_extract_averages: the average %s does not match the shape or dtype of %s", a, m);
      return EMA_E_FORMAT;
    }
    extract_out(x, s, model, conv ? (model->dtype == ST_BF16 ? 1 : 2) : 0);
    x->n_avg++;
    return EMA_OK;
  }
  /* a model tensor with an average is replaced by it; others are COPY tensors */
  snprintf(x->probe, x->probe_cap, "%s/%s", s->name, x->name);
  if (!st_find(f, x->probe)) extract_out(x, s, s, 0);
  return EMA_OK;
}

ema_status ema_extract_averages(const char *checkpoint, const char *out, const char *ema_name, char *err,
                                size_t errcap) {
  if (!checkpoint || !out) {
    st_errf(err, errcap, "ema_extract_averages: checkpoint and out must not be NULL");
    return EMA_E_INVALID_ARG;
  }
  st_file *f = NULL;
  char e[EMA_ERR_CAP];
  ema_status st = st_open(checkpoint, &f, e, sizeof e);
  if (st != EMA_OK) {
    st_errf(err, errcap, "ema_extract_averages: %s", e);
    return st;
  }
  extract_src x;
  memset(&x, 0, sizeof x);
  x.f = f;
  /* an explicit name selects that average (of a bank); else the checkpoint's */
  x.name = ema_name ? ema_name : st_meta_get(f, "ema.name");
  if (!x.name) x.name = EMA__DEFAULT_NAME;
  x.nl = strlen(x.name);
  x.w = (st_wtensor *)ema__calloc(f->n_tensors + 1, sizeof *x.w);
  x.src = (const st_tensor **)ema__calloc(f->n_tensors + 1, sizeof *x.src);
  x.conv = (int *)ema__calloc(f->n_tensors + 1, sizeof *x.conv);
  x.buf = (float *)ema__malloc(EXTRACT_CONV_CHUNK * 2);
  if (!x.w || !x.src || !x.conv || !x.buf) {
    st_errf(err, errcap, "ema_extract_averages: out of memory");
    st = EMA_E_NOMEM;
  }
  for (size_t i = 0; i < f->n_tensors && st == EMA_OK; i++) st = extract_one(&x, &f->tensors[i], err, errcap);
  if (st == EMA_OK && x.n_avg == 0) {
    char q[CKPT_QUOTE_CAP];
    ckpt_quote(q, sizeof q, x.name);
    st_errf(err, errcap, "ema_extract_averages: '%s' holds no averages named */%s", checkpoint, q);
    st = EMA_E_FORMAT;
  }
  if (st == EMA_OK) {
    st_wmeta meta[] = {{"format", "pt"}, {"libema.extracted_from", "averages"}, {"ema.name", x.name}};
    st = st_write_stream(out, x.w, x.nw, meta, 3, extract_produce, &x, err, errcap);
  }
  free(x.probe);
  free(x.w);
  free(x.src);
  free(x.conv);
  free(x.buf);
  st_close(f);
  return st;
}
