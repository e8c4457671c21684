/*
 * cmd_posthoc.c: `ema posthoc`, post-hoc EMA synthesis (Karras et al. 2024,
 * "Analyzing and Improving the Training Dynamics of Diffusion Models").
 *
 *   ema posthoc (--sigma-rel X | --gamma G) [--at-step T] [--max-cond C]
 *               SNAPSHOT... -o OUT.safetensors
 *
 * Each snapshot is a safetensors file of power-function EMA weights whose
 * __metadata__ holds "ema.t" (the training step it was taken at, a positive
 * integer) and "ema.gamma" (its exponent) or "ema.sigma_rel" (converted with
 * ema_power_gamma; ema.gamma wins when both are there). Every snapshot must
 * hold the same tensors (names, dtypes, shapes).
 *
 * The snapshots with t <= T (T defaults to the largest t) enter a least-
 * squares fit of the target profile by the snapshots' profiles
 * (ema_posthoc_solve with EMA_POSTHOC_NORMALIZE: the coefficients sum to 1);
 * the coefficients, the relative residual of the fit and the condition
 * number are printed; an ill-conditioned fit is refused with the solver's
 * message. Then, tensor by tensor, the output is sum_i coef_i * snapshot_i,
 * accumulated in double precision from windows of each snapshot (so reading
 * needs one accumulator of the current tensor, not whole snapshots), and
 * rounded to the tensor's dtype. Integer tensors (a step counter) are copied
 * from the latest snapshot used.
 *
 * Memory: the output is written with ema_file_write_stream, which asks for
 * each tensor's bytes in chunks of at most 1 MiB; each chunk is combined
 * from the same window of every snapshot, so memory stays bounded by a few
 * MiB whatever the model's size. Open files: one at a time while checking;
 * the snapshots with a non-zero coefficient while synthesising.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

static int run_posthoc(const cli_command *cmd, int argc, char **argv);

const cli_command cmd_posthoc = {
    "posthoc",
    "synthesise the EMA of any sigma_rel from power-function EMA snapshots",
    "ema posthoc (--sigma-rel X | --gamma G) [--at-step T] [--max-cond C] SNAPSHOT...\n"
    "                   -o OUT.safetensors",
    "Post-hoc EMA (Karras et al. 2024): from snapshots of power-function EMAs taken during\n"
    "training, synthesise the power-function EMA of another width sigma_rel, at step T, by a\n"
    "least-squares fit of its weight profile (coefficients normalised to sum to 1).\n"
    "\n"
    "Each SNAPSHOT is a safetensors file whose __metadata__ has \"ema.t\" (the step, an\n"
    "integer >= 1) and \"ema.gamma\" (the exponent) or \"ema.sigma_rel\"; all snapshots hold the\n"
    "same tensors. Only snapshots with t <= T are used. Floating tensors are combined in\n"
    "double precision and written in their own dtype; integer tensors are copied from the\n"
    "latest snapshot used.\n"
    "\n"
    "Options:\n"
    "      --sigma-rel X   target width, 0 < X <= 0.2887 (EDM2 uses 0.05 to 0.15)\n"
    "      --gamma G       target exponent instead of --sigma-rel, G > -0.5\n"
    "      --at-step T     target step (default: the largest ema.t of the snapshots)\n"
    "      --max-cond C    refuse fits whose Gram matrix has a condition number above C\n"
    "                      (default 1e12, the library's EMA_POSTHOC_DEFAULT_MAX_COND)\n"
    "  -o, --output FILE   the file to write (required); its metadata records ema.sigma_rel,\n"
    "                      ema.gamma, ema.t and the coefficients\n"
    "  -h, --help          show this help and exit\n"
    "\n"
    "Exit status: 0 success, 1 failure (unreadable or mismatched snapshots, T before every\n"
    "snapshot, an ill-conditioned fit), 2 usage error (also: fewer than two snapshots).\n",
    run_posthoc,
};

enum { OPT_SIGMA_REL = 1, OPT_GAMMA, OPT_AT_STEP, OPT_MAX_COND, OPT_OUTPUT };

typedef struct snapshot {
  const char *path;
  int64_t t;
  double gamma;
  double coef;
} snapshot;

static int is_float(ema_dtype d) { return d == EMA_F32 || d == EMA_F64 || d == EMA_F16 || d == EMA_BF16; }

/* What the producer needs to combine one chunk of one output tensor. */
typedef struct combine_job {
  const snapshot *snaps;
  size_t n;
  ema_file **used;     /* open snapshots (NULL: not used) */
  size_t latest;       /* integer tensors are copied from it */
  int64_t at_step;
  const ema_file_entry *entries;
  double *acc;         /* one chunk's elements */
  unsigned char *window;
  progress bar;
  double done_bytes;
} combine_job;

/* ema_file_write_stream producer: bytes [offset, offset+len) of output
   tensor k are sum_i coef_i * snapshot_i over the same window, in double. */
static ema_status combine_chunk(void *user, size_t k, uint64_t offset, void *dst, size_t len, char *err,
                                size_t errcap) {
  combine_job *job = (combine_job *)user;
  const ema_file_entry *e = &job->entries[k];
  size_t esz = ema_dtype_size(e->dtype), m = len / esz;
  if (!is_float(e->dtype)) { /* integers: copied from the latest snapshot used */
    ema_status st = ema_file_read(job->used[job->latest], e->name, offset, dst, len);
    if (st != EMA_OK)
      snprintf(err, errcap, "%s: %s", job->snaps[job->latest].path, ema_file_last_error(job->used[job->latest]));
    return st;
  }
  for (size_t j = 0; j < m; j++) job->acc[j] = 0;
  for (size_t i = 0; i < job->n; i++) {
    if (!job->used[i] || job->snaps[i].t > job->at_step || job->snaps[i].coef == 0) continue;
    ema_status st = ema_file_read(job->used[i], e->name, offset, job->window, len);
    if (st != EMA_OK) {
      snprintf(err, errcap, "%s: at byte %llu of the tensor: %s", job->snaps[i].path, (unsigned long long)offset,
               ema_file_last_error(job->used[i]));
      return st;
    }
    for (size_t j = 0; j < m; j++) job->acc[j] += job->snaps[i].coef * cli_load_element(job->window, e->dtype, j);
    job->done_bytes += (double)len;
    progress_update(&job->bar, job->done_bytes);
  }
  for (size_t j = 0; j < m; j++) cli_store_element(dst, e->dtype, j, job->acc[j]);
  return EMA_OK;
}

static int same_shape(const ema_file_tensor *a, const ema_file_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return 0;
  return 1;
}

/* Read t and gamma from a snapshot's metadata. */
static int read_snapshot_meta(const ema_file *f, snapshot *s) {
  const char *t = ema_file_metadata(f, "ema.t"), *g = ema_file_metadata(f, "ema.gamma");
  const char *sr = ema_file_metadata(f, "ema.sigma_rel");
  if (!t) return cli_error("%s: no \"ema.t\" in the metadata: not a post-hoc EMA snapshot", s->path), 0;
  if (!cli_parse_int64(t, &s->t) || s->t < 1)
    return cli_error("%s: metadata ema.t is '%s', not an integer step >= 1", s->path, t), 0;
  if (g) {
    if (!cli_parse_double(g, 0, &s->gamma) || !(s->gamma > -0.5))
      return cli_error("%s: metadata ema.gamma is '%s', not a number > -0.5", s->path, g), 0;
  } else if (sr) {
    double sigma;
    if (!cli_parse_double(sr, 0, &sigma) || ema_power_gamma(sigma, &s->gamma) != EMA_OK)
      return cli_error("%s: metadata ema.sigma_rel is '%s', not a width in (0, %.4f]", s->path, sr,
                       EMA_POWER_SIGMA_REL_MAX),
             0;
  } else {
    return cli_error("%s: neither \"ema.gamma\" nor \"ema.sigma_rel\" in the metadata", s->path), 0;
  }
  return 1;
}

/* Every tensor of ref is in f with the same dtype and shape, and f has no
   other tensor. */
static int check_tensors(const ema_file *ref, const char *ref_path, const ema_file *f, const char *path) {
  char s1[256], s2[256];
  for (size_t i = 0; i < ema_file_count(ref); i++) {
    ema_file_tensor a, b;
    ema_file_tensor_at(ref, i, &a);
    if (ema_file_find(f, a.name, &b) != EMA_OK)
      return cli_error("%s has no tensor '%s', which %s has; snapshots must hold the same tensors", path, a.name,
                       ref_path),
             0;
    if (strcmp(a.dtype_name, b.dtype_name) != 0)
      return cli_error("tensor '%s' is %s in %s but %s in %s; snapshots must agree", a.name, b.dtype_name, path,
                       a.dtype_name, ref_path),
             0;
    if (!same_shape(&a, &b)) {
      cli_format_shape(s1, sizeof s1, b.ndim, b.shape);
      cli_format_shape(s2, sizeof s2, a.ndim, a.shape);
      return cli_error("tensor '%s' has shape %s in %s but %s in %s; snapshots must agree", a.name, s1, path, s2,
                       ref_path),
             0;
    }
  }
  if (ema_file_count(f) != ema_file_count(ref)) {
    for (size_t i = 0; i < ema_file_count(f); i++) {
      ema_file_tensor b, a;
      ema_file_tensor_at(f, i, &b);
      if (ema_file_find(ref, b.name, &a) != EMA_OK)
        return cli_error("%s has a tensor '%s' that %s lacks; snapshots must hold the same tensors", path, b.name,
                         ref_path),
               0;
    }
  }
  return 1;
}

/* A list of numbers as JSON-style text "[a, b, ...]" (heap). */
static char *number_list(const snapshot *s, size_t n, int which) {
  size_t cap = 32 * n + 8, len = 0;
  char *buf = (char *)malloc(cap);
  if (!buf) return NULL;
  len += (size_t)snprintf(buf, cap, "[");
  for (size_t i = 0; i < n; i++) {
    char num[40];
    if (which == 0)
      snprintf(num, sizeof num, "%lld", (long long)s[i].t);
    else
      cli_format_double(num, sizeof num, which == 1 ? s[i].gamma : s[i].coef);
    len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", num);
  }
  snprintf(buf + len, cap - len, "]");
  return buf;
}

static int run_posthoc(const cli_command *cmd, int argc, char **argv) {
  static const cli_option options[] = {{"sigma-rel", 0, 1, OPT_SIGMA_REL}, {"gamma", 0, 1, OPT_GAMMA},
                                       {"at-step", 0, 1, OPT_AT_STEP},     {"max-cond", 0, 1, OPT_MAX_COND},
                                       {"output", 'o', 1, OPT_OUTPUT},     {NULL, 0, 0, 0}};
  double sigma_rel = NAN, gamma_r = NAN, max_cond = 0;
  int64_t at_step = 0;
  int have_step = 0;
  const char *out = NULL;
  snapshot *snaps = (snapshot *)calloc((size_t)argc + 1, sizeof *snaps);
  size_t n = 0;
  if (!snaps) return cli_error("posthoc: out of memory");
  cli_parser p;
  cli_parser_init(&p, cmd, options, argc, argv);
  int rc = EXIT_FAIL;
  for (int id; (id = cli_next(&p)) != CLI_END;) {
    switch (id) {
      case CLI_BAD:
        free(snaps);
        return EXIT_USAGE;
      case CLI_HELP:
        free(snaps);
        return cli_print_help(cmd);
      case CLI_POSITIONAL:
        snaps[n++].path = p.arg;
        break;
      case OPT_SIGMA_REL:
        if (!cli_double(&p, &sigma_rel)) goto usage;
        if (ema_power_gamma(sigma_rel, &gamma_r) != EMA_OK) {
          cli_usage_error(cmd, "--sigma-rel %s: a width must be in (0, %.6f]", p.arg, EMA_POWER_SIGMA_REL_MAX);
          goto usage;
        }
        break;
      case OPT_GAMMA:
        if (!cli_double(&p, &gamma_r)) goto usage;
        if (!(gamma_r > -0.5)) {
          cli_usage_error(cmd, "--gamma %s: the exponent must be > -0.5", p.arg);
          goto usage;
        }
        sigma_rel = NAN;
        if (ema_power_sigma_rel(gamma_r, &sigma_rel) != EMA_OK) sigma_rel = NAN;
        break;
      case OPT_AT_STEP:
        if (!cli_int64(&p, 1, INT64_MAX, &at_step)) goto usage;
        have_step = 1;
        break;
      case OPT_MAX_COND:
        if (!cli_double(&p, &max_cond)) goto usage;
        if (max_cond < 1) {
          cli_usage_error(cmd, "--max-cond %s: a condition number is >= 1", p.arg);
          goto usage;
        }
        break;
      case OPT_OUTPUT:
        out = p.arg;
        break;
    }
  }
  if (isnan(gamma_r)) {
    cli_usage_error(cmd, "missing the target: --sigma-rel X (or --gamma G)");
    goto usage;
  }
  if (!out) {
    cli_usage_error(cmd, "missing -o OUT.safetensors: where to write the synthesised weights");
    goto usage;
  }
  if (n < 2) {
    cli_usage_error(cmd,
                    "post-hoc synthesis needs at least 2 snapshots (got %zu): a fit of one profile "
                    "cannot reach another",
                    n);
    goto usage;
  }

  /* 1. metadata and tensors of every snapshot, one open file at a time */
  char err[1024];
  ema_file *ref = NULL, **used = NULL;
  ema_file_entry *entries = NULL;
  unsigned char *window = NULL;
  double *acc = NULL, *t = NULL, *g = NULL, *coef = NULL;
  char *meta_coef = NULL, *meta_t = NULL, *meta_g = NULL;
  size_t nt = 0;
  if (ema_file_open(&ref, snaps[0].path, err, sizeof err) != EMA_OK) {
    cli_error("%s", err);
    goto done;
  }
  if (!read_snapshot_meta(ref, &snaps[0])) goto done;
  for (size_t i = 1; i < n; i++) {
    ema_file *f = NULL;
    if (ema_file_open(&f, snaps[i].path, err, sizeof err) != EMA_OK) {
      cli_error("%s", err);
      goto done;
    }
    int ok = read_snapshot_meta(f, &snaps[i]) && check_tensors(ref, snaps[0].path, f, snaps[i].path);
    ema_file_close(f);
    if (!ok) goto done;
  }
  int64_t t_min = snaps[0].t, t_max = snaps[0].t;
  for (size_t i = 1; i < n; i++) {
    if (snaps[i].t < t_min) t_min = snaps[i].t;
    if (snaps[i].t > t_max) t_max = snaps[i].t;
  }
  if (!have_step) at_step = t_max;
  if (at_step < t_min) {
    cli_error("--at-step %lld precedes every snapshot (the earliest is at step %lld): nothing to synthesise from",
              (long long)at_step, (long long)t_min);
    goto done;
  }

  /* 2. the fit */
  t = (double *)malloc(n * sizeof *t);
  g = (double *)malloc(n * sizeof *g);
  coef = (double *)malloc(n * sizeof *coef);
  if (!t || !g || !coef) goto nomem;
  for (size_t i = 0; i < n; i++) {
    t[i] = (double)snaps[i].t;
    g[i] = snaps[i].gamma;
  }
  ema_posthoc_info info;
  if (ema_posthoc_solve(n, t, g, (double)at_step, gamma_r, max_cond, EMA_POSTHOC_NORMALIZE, coef, &info, err,
                        sizeof err) != EMA_OK) {
    cli_error("posthoc: %s", err);
    goto done;
  }
  for (size_t i = 0; i < n; i++) snaps[i].coef = coef[i];
  printf("target: sigma_rel %.6g (gamma %.6g) at step %lld, from %zu of %zu snapshots\n\n", sigma_rel, gamma_r,
         (long long)at_step, info.n_used, n);
  size_t w = strlen("snapshot");
  for (size_t i = 0; i < n; i++)
    if (strlen(snaps[i].path) > w) w = strlen(snaps[i].path);
  printf("%-*s  %10s  %10s  %9s  %s\n", (int)w, "snapshot", "t", "gamma", "sigma_rel", "coefficient");
  for (size_t i = 0; i < n; i++) {
    double sr = NAN;
    ema_power_sigma_rel(snaps[i].gamma, &sr);
    printf("%-*s  %10lld  %10.4f  %9.4f  ", (int)w, snaps[i].path, (long long)snaps[i].t, snaps[i].gamma, sr);
    if (snaps[i].t > at_step)
      printf("- (after step %lld)\n", (long long)at_step);
    else
      printf("%+.6e\n", snaps[i].coef);
  }
  printf("\nrelative residual of the profile fit: %.3e\n", info.residual);
  printf("condition number of the Gram matrix: %.3e (refused above %.3g)\n", info.cond,
         max_cond > 0 ? max_cond : EMA_POSTHOC_DEFAULT_MAX_COND);
  printf("sum of the least-squares coefficients before normalising: %.6f\n", info.coef_sum);
  fflush(stdout);

  /* 3. synthesis, tensor by tensor */
  nt = ema_file_count(ref);
  used = (ema_file **)calloc(n, sizeof *used);
  entries = (ema_file_entry *)calloc(nt ? nt : 1, sizeof *entries);
  if (!used || !entries) goto nomem;
  size_t latest = 0; /* the latest snapshot used: integer tensors come from it */
  int have_latest = 0;
  for (size_t i = 0; i < n; i++) {
    if (snaps[i].t > at_step) continue;
    if (!have_latest || snaps[i].t > snaps[latest].t) latest = i;
    have_latest = 1;
    if (snaps[i].coef == 0 && i != latest) continue;
    if (ema_file_open(&used[i], snaps[i].path, err, sizeof err) != EMA_OK) {
      cli_error("%s", err);
      goto done;
    }
  }
  if (!used[latest] && ema_file_open(&used[latest], snaps[latest].path, err, sizeof err) != EMA_OK) {
    cli_error("%s", err);
    goto done;
  }
  double total = 0;
  for (size_t k = 0; k < nt; k++) {
    ema_file_tensor ti;
    ema_file_tensor_at(ref, k, &ti);
    if (!ti.supported) {
      cli_error("%s: tensor '%s' has dtype %s, which ema posthoc cannot combine or write", snaps[0].path, ti.name,
                ti.dtype_name);
      goto done;
    }
    entries[k].name = ti.name;
    entries[k].dtype = ti.dtype;
    entries[k].ndim = ti.ndim;
    entries[k].shape = ti.shape;
    entries[k].data = NULL; /* produced by combine_chunk */
    total += (double)ti.nbytes * (double)info.n_used;
  }
  /* the producer's largest request is 1 MiB: 512 Ki elements of 2 bytes */
  acc = (double *)malloc(((size_t)1 << 19) * sizeof *acc);
  window = (unsigned char *)malloc((size_t)1 << 20);
  if (!acc || !window) goto nomem;
  combine_job job = {snaps, n, used, latest, at_step, entries, acc, window, {0}, 0.0};
  progress_begin(&job.bar, "combining", total);

  /* 4. the output, with what it is in its metadata */
  char s_sigma[40], s_gamma[40], s_t[32], s_res[40], s_cond[40];
  if (isnan(sigma_rel))
    snprintf(s_sigma, sizeof s_sigma, "nan");
  else
    cli_format_double(s_sigma, sizeof s_sigma, sigma_rel);
  cli_format_double(s_gamma, sizeof s_gamma, gamma_r);
  snprintf(s_t, sizeof s_t, "%lld", (long long)at_step);
  cli_format_double(s_res, sizeof s_res, info.residual);
  cli_format_double(s_cond, sizeof s_cond, info.cond);
  meta_coef = number_list(snaps, n, 2);
  meta_t = number_list(snaps, n, 0);
  meta_g = number_list(snaps, n, 1);
  if (!meta_coef || !meta_t || !meta_g) goto nomem;
  /* clang-format off */
  const char *meta[] = {
      "format", "pt",
      "ema.sigma_rel", s_sigma,
      "ema.gamma", s_gamma,
      "ema.t", s_t,
      "ema.posthoc.coefficients", meta_coef,
      "ema.posthoc.snapshot_t", meta_t,
      "ema.posthoc.snapshot_gamma", meta_g,
      "ema.posthoc.residual", s_res,
      "ema.posthoc.cond", s_cond,
  };
  /* clang-format on */
  ema_status wst = ema_file_write_stream(out, entries, nt, meta, sizeof meta / sizeof meta[0] / 2, combine_chunk, &job,
                                         err, sizeof err);
  progress_done(&job.bar);
  if (wst != EMA_OK) {
    cli_error("%s", err);
    goto done;
  }
  printf("wrote %s: %zu tensors\n", out, nt);
  rc = EXIT_OK;
  goto done;
nomem:
  cli_error("posthoc: out of memory");
done:
  ema_file_close(ref);
  if (used)
    for (size_t i = 0; i < n; i++) ema_file_close(used[i]);
  free(used);
  free(window);
  free(entries);
  free(acc);
  free(t);
  free(g);
  free(coef);
  free(meta_coef);
  free(meta_t);
  free(meta_g);
  free(snaps);
  return rc;
usage:
  free(snaps);
  return EXIT_USAGE;
}
