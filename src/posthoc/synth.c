/*
 * synth.c: ema_posthoc_synthesize, post-hoc synthesis from snapshot files
 * (see ema/posthoc.h): the checks of the snapshots and of every target, and
 * the fits, all before anything is written; synth_write.c then writes the
 * outputs in one pass.
 */
#include "posthoc/synth.h"

#include "common/err.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *FN = "ema_posthoc_synthesize";

const char *ema__sy_escape(const char *s, char *buf, size_t cap) {
  ema_escape(s, strlen(s), buf, cap);
  return buf;
}

void ema_posthoc_options_init(ema_posthoc_options *opts) {
  if (!opts) return;
  memset(opts, 0, sizeof *opts);
  opts->flags = EMA_POSTHOC_NORMALIZE;
}

/* A whole-string decimal number / integer (no hex, no trailing text). */
static int parse_double(const char *s, double *out) {
  char *end;
  if (!*s || strchr(s, 'x') || strchr(s, 'X')) return 0;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || !isfinite(v)) return 0;
  *out = v;
  return 1;
}
static int parse_step(const char *s, int64_t *out) {
  char *end;
  if (*s < '0' || *s > '9') return 0;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (*end || errno == ERANGE || v < 1) return 0;
  *out = (int64_t)v;
  return 1;
}

/* ema.t and the exponent of an open snapshot. */
static ema_status read_meta(const ema_file *f, sy_snap *s, char *err, size_t errcap) {
  const char *t = ema_file_metadata(f, "ema.t"), *g = ema_file_metadata(f, "ema.gamma");
  const char *sr = ema_file_metadata(f, "ema.sigma_rel");
  char q[300];
  const char *p = s->path;
  if (!t)
    return ema__errf(err, errcap, "%s: no \"ema.t\" in the metadata: not a post-hoc EMA snapshot", p), EMA_E_FORMAT;
  if (!parse_step(t, &s->t))
    return ema__errf(err, errcap, "%s: metadata ema.t is '%s', not an integer step >= 1", p,
                     ema__sy_escape(t, q, sizeof q)),
           EMA_E_FORMAT;
  if (g) {
    if (!parse_double(g, &s->gamma) || !(s->gamma > -0.5))
      return ema__errf(err, errcap, "%s: metadata ema.gamma is '%s', not a number > -0.5", p,
                       ema__sy_escape(g, q, sizeof q)),
             EMA_E_FORMAT;
  } else if (sr) {
    double sigma;
    if (!parse_double(sr, &sigma) || ema_power_gamma(sigma, &s->gamma) != EMA_OK)
      return ema__errf(err, errcap, "%s: metadata ema.sigma_rel is '%s', not a width in (0, %.4f]", p,
                       ema__sy_escape(sr, q, sizeof q), EMA_POWER_SIGMA_REL_MAX),
             EMA_E_FORMAT;
  } else {
    return ema__errf(err, errcap, "%s: neither \"ema.gamma\" nor \"ema.sigma_rel\" in the metadata", p), EMA_E_FORMAT;
  }
  return EMA_OK;
}

static int same_shape(const ema_file_tensor *a, const ema_file_tensor *b) {
  return a->ndim == b->ndim && (a->ndim == 0 || memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof *a->shape) == 0);
}

static void shape_text(char *buf, size_t cap, const ema_file_tensor *t) {
  size_t n = (size_t)snprintf(buf, cap, "[");
  for (int d = 0; d < t->ndim && n < cap; d++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
  if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* f (at path) holds exactly the tensors of ref (at ref_path). A count
   mismatch with every ref tensor present means f has an extra one. */
static ema_status check_tensors(const ema_file *ref, const char *ref_path, const ema_file *f, const char *path,
                                char *err, size_t errcap) {
  char nm[300], s1[256], s2[256];
  const char *p = path, *rp = ref_path;
  for (size_t i = 0; i < ema_file_count(ref); i++) {
    ema_file_tensor a, b;
    ema_file_tensor_at(ref, i, &a);
    ema__sy_escape(a.name, nm, sizeof nm);
    if (ema_file_find(f, a.name, &b) != EMA_OK)
      return ema__errf(err, errcap, "%s has no tensor '%s', which %s has; snapshots must hold the same tensors", p, nm,
                       rp),
             EMA_E_FORMAT;
    if (strcmp(a.dtype_name, b.dtype_name) != 0)
      return ema__errf(err, errcap, "tensor '%s' is %s in %s but %s in %s; snapshots must agree", nm, b.dtype_name, p,
                       a.dtype_name, rp),
             EMA_E_FORMAT;
    if (!same_shape(&a, &b)) {
      shape_text(s1, sizeof s1, &b);
      shape_text(s2, sizeof s2, &a);
      return ema__errf(err, errcap, "tensor '%s' has shape %s in %s but %s in %s; snapshots must agree", nm, s1, p, s2,
                       rp),
             EMA_E_FORMAT;
    }
  }
  for (size_t i = 0; ema_file_count(f) != ema_file_count(ref) && i < ema_file_count(f); i++) {
    ema_file_tensor b, a;
    ema_file_tensor_at(f, i, &b);
    if (ema_file_find(ref, b.name, &a) != EMA_OK)
      return ema__errf(err, errcap, "%s has a tensor '%s' that %s lacks; snapshots must hold the same tensors", p,
                       ema__sy_escape(b.name, nm, sizeof nm), rp),
             EMA_E_FORMAT;
  }
  return EMA_OK;
}

/* Open every snapshot once (one at a time), read its metadata and check
   its tensors against the first, which stays open as job->ref. */
static ema_status read_snapshots(sy_job *job, char *err, size_t errcap) {
  ema_status st = ema_file_open(&job->ref, job->snaps[0].path, err, errcap);
  if (st == EMA_OK) st = read_meta(job->ref, &job->snaps[0], err, errcap);
  for (size_t i = 1; i < job->n && st == EMA_OK; i++) {
    ema_file *f = NULL;
    st = ema_file_open(&f, job->snaps[i].path, err, errcap);
    if (st != EMA_OK) break;
    st = read_meta(f, &job->snaps[i], err, errcap);
    if (st == EMA_OK) st = check_tensors(job->ref, job->snaps[0].path, f, job->snaps[i].path, err, errcap);
    ema_file_close(f);
  }
  return st;
}

/* The step a target asks for: a snapshot's own. */
static ema_status resolve_step(const sy_job *job, size_t j, int64_t *step, char *err, size_t errcap) {
  int64_t want = job->tg[j].in->step, t_min = job->snaps[0].t, t_max = job->snaps[0].t, below = 0, above = 0;
  for (size_t i = 1; i < job->n; i++) {
    if (job->snaps[i].t < t_min) t_min = job->snaps[i].t;
    if (job->snaps[i].t > t_max) t_max = job->snaps[i].t;
  }
  if (want == 0) want = t_max;
  if (want < 0)
    return ema__errf(err, errcap, "%s: target %zu: step %lld is negative", FN, j, (long long)want), EMA_E_INVALID_ARG;
  if (want < t_min)
    return ema__errf(
               err, errcap,
               "target step %lld precedes every snapshot (the earliest is at step %lld): nothing to synthesise from",
               (long long)want, (long long)t_min),
           EMA_E_INVALID_ARG;
  for (size_t i = 0; i < job->n; i++) {
    if (job->snaps[i].t == want) return *step = want, EMA_OK;
    if (job->snaps[i].t < want && job->snaps[i].t > below) below = job->snaps[i].t;
    if (job->snaps[i].t > want && (above == 0 || job->snaps[i].t < above)) above = job->snaps[i].t;
  }
  if (above)
    ema__errf(err, errcap,
              "target step %lld is no snapshot's step (the nearest are %lld and %lld): a fit there is poor; "
              "synthesise at a snapshot's step",
              (long long)want, (long long)below, (long long)above);
  else
    ema__errf(err, errcap, "target step %lld is after the last snapshot (step %lld): synthesise at a snapshot's step",
              (long long)want, (long long)below);
  return EMA_E_INVALID_ARG;
}

/* Exponent, step and fit of target j; refusals before anything is written. */
static ema_status plan_target(sy_job *job, size_t j, const ema_posthoc_options *o, const double *t, const double *g,
                              char *err, size_t errcap) {
  sy_target *tg = &job->tg[j];
  ema_posthoc_target *in = tg->in;
  double gamma = in->gamma;
  int64_t step;
  if (in->sigma_rel != 0 ? ema_power_gamma(in->sigma_rel, &gamma) != EMA_OK : !(isfinite(gamma) && gamma > -0.5))
    return ema__errf(err, errcap, "%s: target %zu: sigma_rel %g / gamma %g out of range", FN, j, in->sigma_rel,
                     in->gamma),
           EMA_E_INVALID_ARG;
  ema_status st = resolve_step(job, j, &step, err, errcap);
  if (st != EMA_OK) return st;
  char why[512];
  ema_posthoc_info info;
  st = ema_posthoc_solve(job->n, t, g, (double)step, gamma, o->max_cond, o->flags, tg->coef, &info, why, sizeof why);
  if (st != EMA_OK) return ema__errf(err, errcap, "%s", why), st;
  double max_res = o->max_residual == 0 ? EMA_POSTHOC_DEFAULT_MAX_RESIDUAL : o->max_residual;
  if (!(info.residual <= max_res))
    return ema__errf(err, errcap,
                     "the fit of gamma %.6g at step %lld is poor: relative residual %.3g above the threshold %.3g "
                     "(snapshots of other widths or more snapshots would help; the threshold is settable)",
                     gamma, (long long)step, info.residual, max_res),
           EMA_E_INVALID_ARG;
  int have = 0;
  for (size_t i = 0; i < job->n; i++)
    if (job->snaps[i].t <= step && (!have || job->snaps[i].t > job->snaps[tg->latest].t)) {
      tg->latest = i;
      have = 1;
    }
  tg->gamma = gamma;
  tg->step = step;
  tg->info = info;
  return EMA_OK;
}

static ema_status check_args(const char *const *snapshots, size_t n, const ema_posthoc_target *targets, size_t nt,
                             const ema_posthoc_options *o, char *err, size_t errcap) {
  if (!snapshots || !targets || !o)
    return ema__errf(err, errcap, "%s: NULL snapshots, targets or options", FN), EMA_E_INVALID_ARG;
  if (n < EMA_POSTHOC_MIN_SNAPSHOTS)
    return ema__errf(err, errcap, "post-hoc synthesis needs at least 2 snapshots (got %zu)", n), EMA_E_INVALID_ARG;
  if (nt == 0 || nt > EMA_POSTHOC_MAX_TARGETS)
    return ema__errf(err, errcap, "%s: %zu targets; 1 to %d per call", FN, nt, EMA_POSTHOC_MAX_TARGETS),
           EMA_E_INVALID_ARG;
  for (size_t r = 0; r < sizeof o->reserved / sizeof o->reserved[0]; r++)
    if (o->reserved[r]) return ema__errf(err, errcap, "%s: options.reserved must be 0", FN), EMA_E_INVALID_ARG;
  if (!(o->max_residual >= 0)) return ema__errf(err, errcap, "%s: max_residual must be >= 0", FN), EMA_E_INVALID_ARG;
  for (size_t i = 0; i < n; i++)
    if (!snapshots[i]) return ema__errf(err, errcap, "%s: snapshot path %zu is NULL", FN, i), EMA_E_INVALID_ARG;
  for (size_t j = 0; j < nt; j++) {
    if (!targets[j].output)
      return ema__errf(err, errcap, "%s: target %zu has no output path", FN, j), EMA_E_INVALID_ARG;
    for (size_t k = 0; k < j; k++)
      if (strcmp(targets[k].output, targets[j].output) == 0)
        return ema__errf(err, errcap, "%s: output %s is given to two targets", FN, targets[j].output),
               EMA_E_INVALID_ARG;
    for (size_t i = 0; i < n; i++)
      if (strcmp(snapshots[i], targets[j].output) == 0)
        return ema__errf(err, errcap, "%s: output %s is also a snapshot", FN, targets[j].output), EMA_E_INVALID_ARG;
  }
  return EMA_OK;
}

/* The output tensors: those of the first snapshot, in its order. */
static ema_status make_entries(sy_job *job, char *err, size_t errcap) {
  job->ne = ema_file_count(job->ref);
  job->entries = (ema_file_entry *)calloc(job->ne ? job->ne : 1, sizeof *job->entries);
  if (!job->entries) return ema__errf(err, errcap, "%s: out of memory", FN), EMA_E_NOMEM;
  for (size_t k = 0; k < job->ne; k++) {
    ema_file_tensor ti;
    char nm[300];
    ema_file_tensor_at(job->ref, k, &ti);
    if (!ti.supported)
      return ema__errf(err, errcap, "%s: tensor '%s' has dtype %s, which post-hoc synthesis cannot combine or write",
                       job->snaps[0].path, ema__sy_escape(ti.name, nm, sizeof nm), ti.dtype_name),
             EMA_E_FORMAT;
    job->entries[k].name = ti.name;
    job->entries[k].dtype = ti.dtype;
    job->entries[k].ndim = ti.ndim;
    job->entries[k].shape = ti.shape;
    job->entries[k].data = NULL;
  }
  return EMA_OK;
}

static ema_status plan(sy_job *job, const ema_posthoc_options *o, char *err, size_t errcap) {
  double *t = (double *)malloc(job->n * sizeof *t), *g = (double *)malloc(job->n * sizeof *g);
  ema_status st = t && g ? read_snapshots(job, err, errcap) : EMA_E_NOMEM;
  if (st == EMA_E_NOMEM && (!t || !g)) ema__errf(err, errcap, "%s: out of memory", FN);
  for (size_t i = 0; st == EMA_OK && i < job->n; i++) {
    t[i] = (double)job->snaps[i].t;
    g[i] = job->snaps[i].gamma;
  }
  for (size_t j = 0; st == EMA_OK && j < job->nt; j++) st = plan_target(job, j, o, t, g, err, errcap);
  if (st == EMA_OK) st = make_entries(job, err, errcap);
  free(t);
  free(g);
  return st;
}

static void job_free(sy_job *job) {
  if (job->snaps)
    for (size_t i = 0; i < job->n; i++) ema_file_close(job->snaps[i].f);
  ema_file_close(job->ref);
  if (job->tg)
    for (size_t j = 0; j < job->nt; j++) {
      free(job->tg[j].coef);
      free(job->tg[j].acc);
    }
  free(job->tg);
  free(job->snaps);
  free(job->entries);
}

ema_status ema_posthoc_synthesize(const char *const *snapshots, size_t n_snapshots, ema_posthoc_target *targets,
                                  size_t n_targets, const ema_posthoc_options *opts, char *err, size_t errcap) {
  ema_posthoc_options defaults;
  if (!opts) ema_posthoc_options_init(&defaults);
  const ema_posthoc_options *o = opts ? opts : &defaults;
  ema__errf(err, errcap, "%s", "");
  ema_status st = check_args(snapshots, n_snapshots, targets, n_targets, o, err, errcap);
  if (st != EMA_OK) return st;
  sy_job job;
  memset(&job, 0, sizeof job);
  job.n = n_snapshots;
  job.nt = n_targets;
  job.snaps = (sy_snap *)calloc(n_snapshots, sizeof *job.snaps);
  job.tg = (sy_target *)calloc(n_targets, sizeof *job.tg);
  int ok = job.snaps && job.tg;
  for (size_t j = 0; ok && j < n_targets; j++) {
    job.tg[j].job = &job;
    job.tg[j].in = &targets[j];
    job.tg[j].coef = (double *)calloc(n_snapshots, sizeof(double));
    job.tg[j].acc = (double *)malloc(SY_SUB * sizeof(double));
    ok = job.tg[j].coef && job.tg[j].acc;
  }
  if (!ok) {
    job_free(&job);
    return ema__errf(err, errcap, "%s: out of memory", FN), EMA_E_NOMEM;
  }
  for (size_t i = 0; i < n_snapshots; i++) job.snaps[i].path = snapshots[i];
  st = plan(&job, o, err, errcap);
  if (st == EMA_OK) st = ema__sy_write_all(&job, err, errcap);
  if (st == EMA_OK) {
    for (size_t j = 0; j < n_targets; j++) {
      if (targets[j].coef) memcpy(targets[j].coef, job.tg[j].coef, n_snapshots * sizeof(double));
      targets[j].gamma_used = job.tg[j].gamma;
      targets[j].step_used = job.tg[j].step;
      targets[j].info = job.tg[j].info;
    }
    for (size_t i = 0; i < n_snapshots; i++) {
      if (o->snapshot_t) o->snapshot_t[i] = job.snaps[i].t;
      if (o->snapshot_gamma) o->snapshot_gamma[i] = job.snaps[i].gamma;
    }
  }
  job_free(&job);
  return st;
}
