/*
 * cmd_posthoc.c: `ema posthoc`, post-hoc EMA synthesis (Karras et al. 2024,
 * "Analyzing and Improving the Training Dynamics of Diffusion Models"), thin
 * over ema_posthoc_synthesize (ema/posthoc.h), which checks the snapshots
 * and the targets, refuses a poor fit, and writes every output in one pass
 * over the snapshots.
 *
 *   ema posthoc (--sigma-rel X | --gamma G)... [--at-step T]... [--max-cond C]
 *               [--max-residual R] SNAPSHOT... -o OUT.safetensors...
 *
 * Each --sigma-rel or --gamma is one target, in order; -o is given once per
 * target, in the same order; --at-step once (for every target) or once per
 * target. The tool prints, per target, the coefficients, the relative
 * residual of the fit and the condition number.
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
    "ema posthoc (--sigma-rel X | --gamma G)... [--at-step T]... [--max-cond C]\n"
    "                   [--max-residual R] SNAPSHOT... -o OUT.safetensors...",
    "Post-hoc EMA (Karras et al. 2024): from snapshots of power-function EMAs taken during\n"
    "training, synthesise the power-function EMA of other widths sigma_rel, at step T, by a\n"
    "least-squares fit of its weight profile (coefficients normalised to sum to 1). Up to 8\n"
    "targets are synthesised in one pass over the snapshots.\n"
    "\n"
    "Each SNAPSHOT is a safetensors file whose __metadata__ has \"ema.t\" (the step, an\n"
    "integer >= 1) and \"ema.gamma\" (the exponent) or \"ema.sigma_rel\"; all snapshots hold the\n"
    "same tensors. Only snapshots with t <= T are used; T must be one snapshot's step (between\n"
    "snapshots no fit is good). Floating tensors are combined in double precision and written\n"
    "in their own dtype; integer tensors are copied from the latest snapshot used.\n"
    "\n"
    "Options:\n"
    "      --sigma-rel X    a target width, 0 < X <= 0.2887 (EDM2 uses 0.05 to 0.15)\n"
    "      --gamma G        a target exponent instead of a width, G > -0.5\n"
    "                       (each --sigma-rel or --gamma is one target, in order)\n"
    "      --at-step T      target step, a snapshot's (default: the largest ema.t); once for\n"
    "                       every target or once per target\n"
    "      --max-cond C     refuse fits whose Gram matrix has a condition number above C\n"
    "                       (default 1e12, the library's EMA_POSTHOC_DEFAULT_MAX_COND)\n"
    "      --max-residual R refuse fits whose relative residual is above R (default 0.05,\n"
    "                       EMA_POSTHOC_DEFAULT_MAX_RESIDUAL; 'inf' accepts any fit)\n"
    "  -o, --output FILE    the file to write, once per target in the targets' order; its\n"
    "                       metadata records ema.sigma_rel, ema.gamma, ema.t and the\n"
    "                       coefficients\n"
    "  -h, --help           show this help and exit\n"
    "\n"
    "Exit status: 0 success, 1 failure (unreadable or mismatched snapshots, T no snapshot's\n"
    "step, a poor or ill-conditioned fit), 2 usage error (also: fewer than two snapshots).\n",
    run_posthoc,
};

enum { OPT_SIGMA_REL = 1, OPT_GAMMA, OPT_AT_STEP, OPT_MAX_COND, OPT_MAX_RESIDUAL, OPT_OUTPUT };
enum { MAX_T = EMA_POSTHOC_MAX_TARGETS };

typedef struct posthoc_args {
  ema_posthoc_target tg[MAX_T];
  size_t n_tg, n_out, n_step;
  int64_t steps[MAX_T];
  ema_posthoc_options opts;
  const char **snaps;
  size_t n;
} posthoc_args;

static int add_target(const cli_command *cmd, const cli_parser *p, posthoc_args *a, int id) {
  double v;
  if (a->n_tg == MAX_T) return cli_usage_error(cmd, "at most %d targets per call", MAX_T), 0;
  if (!cli_double(p, &v)) return 0;
  ema_posthoc_target *t = &a->tg[a->n_tg];
  double g;
  if (id == OPT_SIGMA_REL && ema_power_gamma(v, &g) != EMA_OK)
    return cli_usage_error(cmd, "--sigma-rel %s: a width must be in (0, %.6f]", p->arg, EMA_POWER_SIGMA_REL_MAX), 0;
  if (id == OPT_GAMMA && !(v > -0.5)) return cli_usage_error(cmd, "--gamma %s: the exponent must be > -0.5", p->arg), 0;
  if (id == OPT_SIGMA_REL)
    t->sigma_rel = v;
  else
    t->gamma = v;
  a->n_tg++;
  return 1;
}

/* Parse the command line into a; 0 after a usage error (or help: *rc). */
static int parse_args(const cli_command *cmd, int argc, char **argv, posthoc_args *a, int *rc) {
  static const cli_option options[] = {{"sigma-rel", 0, 1, OPT_SIGMA_REL},
                                       {"gamma", 0, 1, OPT_GAMMA},
                                       {"at-step", 0, 1, OPT_AT_STEP},
                                       {"max-cond", 0, 1, OPT_MAX_COND},
                                       {"max-residual", 0, 1, OPT_MAX_RESIDUAL},
                                       {"output", 'o', 1, OPT_OUTPUT},
                                       {NULL, 0, 0, 0}};
  cli_parser p;
  cli_parser_init(&p, cmd, options, argc, argv);
  *rc = EXIT_USAGE;
  for (int id; (id = cli_next(&p)) != CLI_END;) {
    if (cli_stop(&p, id, rc)) return 0;
    switch (id) {
      case CLI_POSITIONAL:
        a->snaps[a->n++] = p.arg;
        break;
      case OPT_SIGMA_REL:
      case OPT_GAMMA:
        if (!add_target(cmd, &p, a, id)) return 0;
        break;
      case OPT_AT_STEP:
        if (a->n_step == MAX_T) return cli_usage_error(cmd, "--at-step given more than %d times", MAX_T), 0;
        if (!cli_int64(&p, 1, INT64_MAX, &a->steps[a->n_step])) return 0;
        a->n_step++;
        break;
      case OPT_MAX_COND:
        if (!cli_double(&p, &a->opts.max_cond)) return 0;
        if (a->opts.max_cond < 1) return cli_usage_error(cmd, "--max-cond %s: a condition number is >= 1", p.arg), 0;
        break;
      case OPT_MAX_RESIDUAL:
        if (!cli_parse_double(p.arg, 1, &a->opts.max_residual) || !(a->opts.max_residual > 0))
          return cli_usage_error(cmd, "--max-residual %s: needs a number > 0 (or 'inf')", p.arg), 0;
        break;
      case OPT_OUTPUT:
        if (a->n_out == MAX_T) return cli_usage_error(cmd, "-o given more than %d times", MAX_T), 0;
        a->tg[a->n_out++].output = p.arg;
        break;
    }
  }
  if (a->n_tg == 0) return cli_usage_error(cmd, "missing the target: --sigma-rel X (or --gamma G)"), 0;
  if (a->n_out == 0)
    return cli_usage_error(cmd, "missing -o OUT.safetensors: where to write the synthesised weights"), 0;
  if (a->n_out != a->n_tg)
    return cli_usage_error(cmd, "%zu targets but %zu outputs: give one -o per target, in order", a->n_tg, a->n_out), 0;
  if (a->n_step > 1 && a->n_step != a->n_tg)
    return cli_usage_error(cmd, "%zu targets but %zu --at-step: give one for all or one per target", a->n_tg,
                           a->n_step),
           0;
  if (a->n < 2)
    return cli_usage_error(cmd,
                           "post-hoc synthesis needs at least 2 snapshots (got %zu): a fit of one profile "
                           "cannot reach another",
                           a->n),
           0;
  for (size_t j = 0; j < a->n_tg; j++) a->tg[j].step = a->n_step ? a->steps[a->n_step == 1 ? 0 : j] : 0;
  return 1;
}

/* What one target came to: the coefficients and the fit. */
static void print_target(const posthoc_args *a, const ema_posthoc_target *t, double max_cond) {
  double sigma = t->sigma_rel;
  char p[300];
  if (sigma == 0 && ema_power_sigma_rel(t->gamma_used, &sigma) != EMA_OK) sigma = NAN;
  printf("target: sigma_rel %.6g (gamma %.6g) at step %lld, from %zu of %zu snapshots\n\n", sigma, t->gamma_used,
         (long long)t->step_used, t->info.n_used, a->n);
  size_t w = strlen("snapshot");
  for (size_t i = 0; i < a->n; i++)
    if (strlen(cli_escape(a->snaps[i], p, sizeof p)) > w) w = strlen(p);
  printf("%-*s  %10s  %10s  %9s  %s\n", (int)w, "snapshot", "t", "gamma", "sigma_rel", "coefficient");
  for (size_t i = 0; i < a->n; i++) {
    double sr = NAN;
    ema_power_sigma_rel(a->opts.snapshot_gamma[i], &sr);
    printf("%-*s  %10lld  %10.4f  %9.4f  ", (int)w, cli_escape(a->snaps[i], p, sizeof p),
           (long long)a->opts.snapshot_t[i], a->opts.snapshot_gamma[i], sr);
    if (a->opts.snapshot_t[i] > t->step_used)
      printf("- (after step %lld)\n", (long long)t->step_used);
    else
      printf("%+.6e\n", t->coef[i]);
  }
  printf("\nrelative residual of the profile fit: %.3e (refused above %.3g)\n", t->info.residual,
         a->opts.max_residual > 0 ? a->opts.max_residual : EMA_POSTHOC_DEFAULT_MAX_RESIDUAL);
  printf("condition number of the Gram matrix: %.3e (refused above %.3g)\n", t->info.cond,
         max_cond > 0 ? max_cond : EMA_POSTHOC_DEFAULT_MAX_COND);
  printf("sum of the least-squares coefficients before normalising: %.6f\n", t->info.coef_sum);
  printf("wrote %s\n\n", cli_escape(t->output, p, sizeof p));
}

static int run_posthoc(const cli_command *cmd, int argc, char **argv) {
  posthoc_args a;
  memset(&a, 0, sizeof a);
  ema_posthoc_options_init(&a.opts);
  a.snaps = (const char **)calloc((size_t)argc + 1, sizeof *a.snaps);
  double *coef = (double *)calloc(((size_t)argc + 1) * MAX_T, sizeof *coef);
  a.opts.snapshot_t = (int64_t *)calloc((size_t)argc + 1, sizeof *a.opts.snapshot_t);
  a.opts.snapshot_gamma = (double *)calloc((size_t)argc + 1, sizeof *a.opts.snapshot_gamma);
  int rc = EXIT_FAIL;
  if (!a.snaps || !coef || !a.opts.snapshot_t || !a.opts.snapshot_gamma) {
    cli_error("posthoc: out of memory");
  } else if (parse_args(cmd, argc, argv, &a, &rc)) {
    char err[1024];
    for (size_t j = 0; j < a.n_tg; j++) a.tg[j].coef = coef + j * ((size_t)argc + 1);
    if (ema_posthoc_synthesize(a.snaps, a.n, a.tg, a.n_tg, &a.opts, err, sizeof err) != EMA_OK) {
      rc = cli_error("posthoc: %s", err);
    } else {
      for (size_t j = 0; j < a.n_tg; j++) print_target(&a, &a.tg[j], a.opts.max_cond);
      rc = EXIT_OK;
    }
  }
  free(a.snaps);
  free(coef);
  free(a.opts.snapshot_t);
  free(a.opts.snapshot_gamma);
  return rc;
}
