/*
 * posthoc_driver.c: a line-oriented front end to src/posthoc for the numpy
 * comparison (reference.py). Reads requests from stdin, one per line, and
 * answers each on one line of stdout, numbers printed with %.17g so that
 * they round-trip exactly:
 *
 *   gamma SIGMA_REL             -> gamma STATUS GAMMA
 *   sigma GAMMA                 -> sigma STATUS SIGMA_REL
 *   decay GAMMA T DT            -> decay STATUS DECAY
 *   inner TA GA TB GB           -> inner STATUS VALUE
 *   solve FLAGS MAX_COND T_R SIGMA_R N  T_1 SIGMA_1 ... T_N SIGMA_N
 *     -> solve 0 N_USED RESIDUAL COND COEF_SUM N  C_1 ... C_N
 *     -> solve STATUS MESSAGE...            (on failure)
 *
 * Snapshot and target profiles are given by sigma_rel and converted with
 * ema_power_gamma(), so the whole chain is compared. A failing conversion
 * answers "solve STATUS gamma conversion failed". Exit status 0, or 2 on a
 * malformed request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "posthoc/posthoc.h"

static int read_double(double *out) { return scanf("%lf", out) == 1; }

static int do_solve(void) {
  unsigned flags;
  double max_cond, t_r, sigma_r, g_r = 0.0;
  size_t n, i;
  double *t, *g, *c;
  ema_posthoc_info info;
  char err[512];
  ema_status st;
  int ok = 1;
  if (scanf("%u", &flags) != 1 || !read_double(&max_cond) || !read_double(&t_r) || !read_double(&sigma_r) ||
      scanf("%zu", &n) != 1 || n > 100000)
    return 0;
  t = malloc((n ? n : 1) * sizeof *t);
  g = malloc((n ? n : 1) * sizeof *g);
  c = malloc((n ? n : 1) * sizeof *c);
  if (!t || !g || !c) {
    free(t);
    free(g);
    free(c);
    return 0;
  }
  for (i = 0; i < n && ok; i++) {
    double s;
    if (!read_double(&t[i]) || !read_double(&s)) {
      ok = 0;
      break;
    }
    if (ema_power_gamma(s, &g[i]) != EMA_OK) ok = -1;
  }
  if (ok == 1 && ema_power_gamma(sigma_r, &g_r) != EMA_OK) ok = -1;
  if (ok == -1) {
    printf("solve %d gamma conversion failed\n", (int)EMA_E_INVALID_ARG);
  } else if (ok == 1) {
    st = ema_posthoc_solve(n, t, g, t_r, g_r, max_cond, flags, c, &info, err, sizeof err);
    if (st != EMA_OK) {
      printf("solve %d %s\n", (int)st, err);
    } else {
      printf("solve 0 %zu %.17g %.17g %.17g %zu", info.n_used, info.residual, info.cond, info.coef_sum, n);
      for (i = 0; i < n; i++) printf(" %.17g", c[i]);
      printf("\n");
    }
  }
  free(t);
  free(g);
  free(c);
  return ok != 0;
}

int main(void) {
  char cmd[32];
  while (scanf("%31s", cmd) == 1) {
    double a, b, c, d, out = 0.0;
    ema_status st;
    if (strcmp(cmd, "gamma") == 0) {
      if (!read_double(&a)) return 2;
      st = ema_power_gamma(a, &out);
      printf("gamma %d %.17g\n", (int)st, out);
    } else if (strcmp(cmd, "sigma") == 0) {
      if (!read_double(&a)) return 2;
      st = ema_power_sigma_rel(a, &out);
      printf("sigma %d %.17g\n", (int)st, out);
    } else if (strcmp(cmd, "decay") == 0) {
      long long t, dt;
      if (!read_double(&a) || scanf("%lld %lld", &t, &dt) != 2) return 2;
      st = ema_power_decay(a, (int64_t)t, (int64_t)dt, &out);
      printf("decay %d %.17g\n", (int)st, out);
    } else if (strcmp(cmd, "inner") == 0) {
      if (!read_double(&a) || !read_double(&b) || !read_double(&c) || !read_double(&d)) return 2;
      st = ema_power_inner(a, b, c, d, &out);
      printf("inner %d %.17g\n", (int)st, out);
    } else if (strcmp(cmd, "solve") == 0) {
      if (!do_solve()) return 2;
    } else {
      fprintf(stderr, "posthoc_driver: unknown request '%s'\n", cmd);
      return 2;
    }
    fflush(stdout);
  }
  return 0;
}
