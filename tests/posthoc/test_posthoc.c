/*
 * test_posthoc.c: power-function EMA math and post-hoc synthesis
 * (src/posthoc): sigma_rel <-> gamma round trips, the decay rule against the
 * profile it is meant to realise, inner products against numerical
 * quadrature, and the synthesis solver (exact cases, the EDM2 setup,
 * an end-to-end run on a weight trajectory, and every refusal).
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "posthoc/posthoc.h"

/* ------------------------------------------------------------------------ */
/* sigma_rel <-> gamma                                                       */
/* ------------------------------------------------------------------------ */

/* Cubic of the issue: g^3 + 7g^2 + (16 - s^-2) g + (12 - s^-2). */
static double cubic(double g, double s) {
  double k = 1.0 / (s * s);
  return ((g + 7.0) * g + (16.0 - k)) * g + (12.0 - k);
}

static void test_sigma_gamma(void) {
  double g = -1.0, s = -1.0, x;
  int i;

  /* The EDM2 examples, values checked against numpy.roots on the cubic. */
  CHECK(ema_power_gamma(0.05, &g) == EMA_OK);
  CHECK_MSG(fabs(g - 16.972198602303447) < 1e-12, "gamma(0.05) = %.17g", g);
  CHECK(ema_power_gamma(0.10, &g) == EMA_OK);
  CHECK_MSG(fabs(g - 6.937203937601809) < 1e-12, "gamma(0.10) = %.17g", g);
  CHECK(ema_power_gamma(0.07, &g) == EMA_OK);
  CHECK_MSG(fabs(g - 11.244939447857924) < 1e-12, "gamma(0.07) = %.17g", g);

  /* gamma = 0 is the running mean, sigma_rel = sqrt(1/12). */
  CHECK(ema_power_sigma_rel(0.0, &s) == EMA_OK);
  CHECK(fabs(s - sqrt(1.0 / 12.0)) <= 1e-16);
  CHECK(ema_power_gamma(EMA_POWER_SIGMA_REL_MAX, &g) == EMA_OK);
  CHECK_MSG(g >= 0.0 && g < 1e-14, "gamma(max) = %g", g);
  CHECK(ema_power_gamma(nextafter(EMA_POWER_SIGMA_REL_MAX, 0.0), &g) == EMA_OK && g >= 0.0);

  /* sigma -> gamma -> sigma over the whole range, log and linear grids;
     the gamma is the root of the cubic and the only one >= 0 (f rises). */
  for (i = 0; i <= 400; i++) {
    double sig = i <= 200 ? pow(10.0, -8.0 + 7.0 * i / 200.0) : EMA_POWER_SIGMA_REL_MAX * (i - 200) / 200.0;
    double back = 0.0;
    if (sig <= 0.0) continue;
    CHECK(ema_power_gamma(sig, &g) == EMA_OK);
    CHECK(ema_power_sigma_rel(g, &back) == EMA_OK);
    CHECK_MSG(fabs(back - sig) <= 8e-16 * sig, "sigma %.17g -> gamma %.17g -> %.17g", sig, g, back);
    CHECK(g >= 0.0);
    if (sig > 1e-4) { /* the cubic itself, relative to its largest term */
      double scale = g * g * g + 7 * g * g + (16 + 1 / (sig * sig)) * (g + 1) + 12;
      CHECK_MSG(fabs(cubic(g, sig)) <= 1e-13 * scale, "cubic(%g) = %g", g, cubic(g, sig));
      CHECK(cubic(g + 1e-6 * (1.0 + g), sig) > 0.0);
    }
  }
  /* gamma -> sigma -> gamma for gamma in [0, 1e6]. */
  for (i = 0; i <= 300; i++) {
    double gam = i == 0 ? 0.0 : pow(10.0, -4.0 + 10.0 * i / 300.0), back = -1.0;
    CHECK(ema_power_sigma_rel(gam, &s) == EMA_OK);
    CHECK(ema_power_gamma(s, &back) == EMA_OK);
    CHECK_MSG(fabs(back - gam) <= 1e-12 * (1.0 + gam), "gamma %.17g -> %.17g", gam, back);
  }
  /* sigma_rel is defined for gamma in (-1, 0) too, and stays finite for
     huge gamma (~1/gamma). */
  CHECK(ema_power_sigma_rel(-0.382, &s) == EMA_OK && s > EMA_POWER_SIGMA_REL_MAX && s < 0.3003);
  CHECK(ema_power_sigma_rel(1e200, &s) == EMA_OK && fabs(s * 1e200 - 1.0) < 1e-12);
  CHECK(ema_power_gamma(1e-300, &g) == EMA_OK && fabs(g * 1e-300 - 1.0) < 1e-12);

  /* Refusals leave the output alone. */
  x = 42.0;
  CHECK(ema_power_gamma(0.0, &x) == EMA_E_INVALID_ARG && x == 42.0);
  CHECK(ema_power_gamma(-0.1, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_gamma(0.2888, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_gamma(nextafter(EMA_POWER_SIGMA_REL_MAX, 1.0), &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_gamma(NAN, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_gamma(INFINITY, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_gamma(DBL_MIN / 4.0, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_gamma(0.1, NULL) == EMA_E_INVALID_ARG);
  CHECK(ema_power_sigma_rel(-1.0, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_sigma_rel(-2.0, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_sigma_rel(NAN, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_sigma_rel(INFINITY, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_sigma_rel(1.0, NULL) == EMA_E_INVALID_ARG);
  CHECK(x == 42.0);
}

/* ------------------------------------------------------------------------ */
/* Decay                                                                     */
/* ------------------------------------------------------------------------ */

/* Run the tracked EMA for T steps, one update every dt steps, on unit
   impulses (by linearity: c[tau] is the weight of the value sampled at
   update tau), and compare with the integral of the profile over the
   interval each update covers. */
static void check_discrete_profile(double g, int T, int dt) {
  double *c = calloc((size_t)T + 1, sizeof *c), sum = 0.0, maxerr = 0.0;
  int t, tau;
  if (c == NULL) {
    CHECK(c != NULL);
    return;
  }
  for (t = dt; t <= T; t += dt) {
    double d = -1.0;
    CHECK(ema_power_decay(g, t, dt, &d) == EMA_OK);
    for (tau = dt; tau < t; tau += dt) c[tau] = c[tau] - (c[tau] - 0.0) * (1.0 - d);
    c[t] = 0.0 - (0.0 - 1.0) * (1.0 - d);
  }
  for (tau = dt; tau <= T; tau += dt) {
    double want = (pow(tau, g + 1.0) - pow(tau - dt, g + 1.0)) / pow(T - T % dt, g + 1.0);
    double err = fabs(c[tau] - want);
    if (err > maxerr) maxerr = err;
    sum += c[tau];
  }
  CHECK_MSG(maxerr < 1e-13, "gamma %g dt %d: weight error %g", g, dt, maxerr);
  CHECK_MSG(fabs(sum - 1.0) < 1e-12, "gamma %g dt %d: weights sum to %.17g", g, dt, sum);
  free(c);
}

static void test_decay(void) {
  double d = -1.0, prev = -1.0, g10 = 0.0;
  int64_t t;
  CHECK(ema_power_decay(0.0, 10, 1, &d) == EMA_OK && fabs(d - 0.9) < 1e-16);
  CHECK(ema_power_decay(1.0, 10, 1, &d) == EMA_OK && fabs(d - 0.81) < 1e-15);
  CHECK(ema_power_decay(1.0, 10, 5, &d) == EMA_OK && fabs(d - 0.25) < 1e-16);
  /* First update (dt == t): decay exactly 0, the average becomes a copy. */
  CHECK(ema_power_decay(16.97, 1, 1, &d) == EMA_OK && d == 0.0);
  CHECK(ema_power_decay(16.97, 256, 256, &d) == EMA_OK && d == 0.0);
  CHECK(ema_power_decay(-0.5, 3, 3, &d) == EMA_OK && d == 0.0);
  /* Grows towards 1 with t. */
  CHECK(ema_power_gamma(0.10, &g10) == EMA_OK);
  for (t = 1; t <= 100000; t = t * 3 / 2 + 1) {
    CHECK(ema_power_decay(g10, t, 1, &d) == EMA_OK && d >= 0.0 && d < 1.0 && d >= prev);
    prev = d;
  }
  CHECK(ema_power_decay(g10, INT64_C(1) << 40, 1, &d) == EMA_OK && d < 1.0 && d > 0.999999);
  CHECK(ema_power_decay(g10, INT64_MAX, 1, &d) == EMA_OK && d <= 1.0 && d > 0.999999);
  /* Refusals. */
  d = 7.0;
  CHECK(ema_power_decay(1.0, 0, 1, &d) == EMA_E_INVALID_ARG);
  CHECK(ema_power_decay(1.0, -5, 1, &d) == EMA_E_INVALID_ARG);
  CHECK(ema_power_decay(1.0, 10, 0, &d) == EMA_E_INVALID_ARG);
  CHECK(ema_power_decay(1.0, 10, 11, &d) == EMA_E_INVALID_ARG);
  CHECK(ema_power_decay(-1.0, 10, 1, &d) == EMA_E_INVALID_ARG);
  CHECK(ema_power_decay(NAN, 10, 1, &d) == EMA_E_INVALID_ARG);
  CHECK(ema_power_decay(INFINITY, 10, 1, &d) == EMA_E_INVALID_ARG);
  CHECK(ema_power_decay(1.0, 10, 1, NULL) == EMA_E_INVALID_ARG);
  CHECK(d == 7.0);
  /* The discrete rule realises the profile exactly. */
  check_discrete_profile(0.0, 300, 1);
  check_discrete_profile(g10, 300, 1);
  check_discrete_profile(16.972198602303447, 400, 1);
  check_discrete_profile(6.937203937601809, 400, 4);
  check_discrete_profile(-0.3, 200, 3);
}

/* ------------------------------------------------------------------------ */
/* Inner products                                                            */
/* ------------------------------------------------------------------------ */

static double profile(double t, double g, double tau) {
  return tau > t ? 0.0 : (g + 1.0) * pow(tau, g) / pow(t, g + 1.0);
}

/* integral over [0, min(ta,tb)] of p_a p_b by composite Simpson after the
   substitution tau = m u^q, q = 2.5 / (ga+gb+1), which turns the
   tau^(ga+gb) singularity or kink at 0 into a tame u^1.5. */
static double quad_inner(double ta, double ga, double tb, double gb) {
  const int n = 20000; /* even */
  double m = ta < tb ? ta : tb, h = 1.0 / n, s = 0.0, q = 2.5 / (ga + gb + 1.0);
  int i;
  for (i = 0; i <= n; i++) {
    double u = i * h, tau = m * pow(u, q), jac = m * q * pow(u, q - 1.0);
    double f = (i == 0) ? 0.0 : profile(ta, ga, tau) * profile(tb, gb, tau) * jac;
    s += f * (i == 0 || i == n ? 1.0 : (i % 2 ? 4.0 : 2.0));
  }
  return s * h / 3.0;
}

static void test_inner(void) {
  static const double cases[][4] = {
      {1.0, 0.0, 1.0, 0.0},
      {1.0, 0.0, 2.0, 0.0},
      {3.0, 6.937203937601809, 3.0, 16.972198602303447},
      {1000.0, 6.937203937601809, 700.0, 16.972198602303447},
      {700.0, 6.937203937601809, 1000.0, 16.972198602303447},
      {0.25, 2.5, 0.5, 0.5},
      {5.0, -0.3, 2.0, 0.6},
      {2.0, -0.3, 5.0, 0.6},
      {1.0, -0.4, 1.0, -0.4},
      {8.0, 11.24, 64.0, 1.0},
      {1e6, 16.97, 9.9e5, 6.94},
  };
  size_t i;
  double v, w, x;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const double *c = cases[i];
    double q = quad_inner(c[0], c[1], c[2], c[3]);
    CHECK(ema_power_inner(c[0], c[1], c[2], c[3], &v) == EMA_OK);
    CHECK_MSG(fabs(v - q) <= 1e-9 * fabs(q), "<p(%g,%g),p(%g,%g)> = %.17g, quadrature %.17g", c[0], c[1], c[2], c[3], v,
              q);
    CHECK(ema_power_inner(c[2], c[3], c[0], c[1], &w) == EMA_OK);
    CHECK_MSG(v == w, "not symmetric: %.17g vs %.17g", v, w);
    /* Scaling both times by 10 divides the product by 10. */
    CHECK(ema_power_inner(10 * c[0], c[1], 10 * c[2], c[3], &w) == EMA_OK);
    CHECK(fabs(10 * w - v) <= 1e-14 * v);
  }
  /* Squared norm (g+1)^2 / ((2g+1) t). */
  CHECK(ema_power_inner(4.0, 6.5, 4.0, 6.5, &v) == EMA_OK);
  CHECK(fabs(v - 7.5 * 7.5 / (14.0 * 4.0)) <= 1e-15 * v);
  /* Refusals. */
  x = 3.0;
  CHECK(ema_power_inner(1.0, -0.5, 1.0, -0.5, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_inner(1.0, -0.7, 1.0, -0.4, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_inner(1.0, -0.7, 1.0, -0.2, &x) == EMA_OK && x != 3.0);
  x = 3.0;
  CHECK(ema_power_inner(1.0, -1.0, 1.0, 5.0, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_inner(0.0, 1.0, 1.0, 1.0, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_inner(1.0, 1.0, -1.0, 1.0, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_inner(INFINITY, 1.0, 1.0, 1.0, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_inner(1.0, NAN, 1.0, 1.0, &x) == EMA_E_INVALID_ARG);
  CHECK(ema_power_inner(1e-310, 1.0, 1e-310, 1.0, &x) == EMA_E_INVALID_ARG); /* overflows */
  CHECK(ema_power_inner(1.0, 1.0, 1.0, 1.0, NULL) == EMA_E_INVALID_ARG);
  CHECK(x == 3.0);
}

/* ------------------------------------------------------------------------ */
/* Synthesis                                                                 */
/* ------------------------------------------------------------------------ */

/* The EDM2 layout: n snapshots of each of two gammas at t = T k / n. */
static size_t edm2_layout(double T, size_t n, double g1, double g2, double *t, double *g) {
  size_t k, m = 0;
  for (k = 1; k <= n; k++) {
    t[m] = T * (double)k / (double)n;
    g[m++] = g1;
    t[m] = T * (double)k / (double)n;
    g[m++] = g2;
  }
  return m;
}

static void test_solve_exact(void) {
  double t[64], g[64], coef[64], g05 = 0, g10 = 0, maxoff;
  size_t n, i, k;
  char err[256];
  ema_posthoc_info info;
  CHECK(ema_power_gamma(0.05, &g05) == EMA_OK);
  CHECK(ema_power_gamma(0.10, &g10) == EMA_OK);
  n = edm2_layout(1e6, 16, g05, g10, t, g);

  /* Target = the last snapshot of gamma(0.10): coefficient 1 on it. */
  memset(&info, 0, sizeof info);
  CHECK(ema_posthoc_solve(n, t, g, 1e6, g10, 0.0, 0, coef, &info, err, sizeof err) == EMA_OK);
  CHECK(err[0] == '\0');
  CHECK(info.n_used == n);
  maxoff = 0.0;
  for (i = 0; i < n; i++)
    if (i != n - 1 && fabs(coef[i]) > maxoff) maxoff = fabs(coef[i]);
  CHECK_MSG(fabs(coef[n - 1] - 1.0) < 1e-10 && maxoff < 1e-10, "coef on the target snapshot %.17g, largest other %g",
            coef[n - 1], maxoff);
  CHECK_MSG(info.residual < 1e-7, "residual %g", info.residual);
  CHECK(fabs(info.coef_sum - 1.0) < 1e-10);
  printf("exact snapshot (32 snapshots): coef %.15f, max other %.2e, residual %.2e, cond %.3e\n", coef[n - 1], maxoff,
         info.residual, info.cond);

  /* Target = an intermediate snapshot (gamma(0.05) at k = 8): later
     snapshots are not used and get exactly 0. */
  k = 2 * 7; /* t = 8/16 T, gamma 0.05 */
  CHECK(ema_posthoc_solve(n, t, g, t[k], g[k], 0.0, 0, coef, &info, err, sizeof err) == EMA_OK);
  CHECK(info.n_used == 16);
  maxoff = 0.0;
  for (i = 0; i < n; i++) {
    if (t[i] > t[k])
      CHECK(coef[i] == 0.0);
    else if (i != k && fabs(coef[i]) > maxoff)
      maxoff = fabs(coef[i]);
  }
  CHECK_MSG(fabs(coef[k] - 1.0) < 1e-10 && maxoff < 1e-10, "coef %.17g, other %g", coef[k], maxoff);
  CHECK(info.residual < 1e-7);

  /* Order does not matter: reverse the snapshots. */
  {
    double tr[64], gr[64], cr[64], c0[64];
    CHECK(ema_posthoc_solve(n, t, g, 1e6, 9.0, 0.0, 0, c0, NULL, NULL, 0) == EMA_OK);
    for (i = 0; i < n; i++) {
      tr[i] = t[n - 1 - i];
      gr[i] = g[n - 1 - i];
    }
    CHECK(ema_posthoc_solve(n, tr, gr, 1e6, 9.0, 0.0, 0, cr, NULL, NULL, 0) == EMA_OK);
    maxoff = 0.0;
    for (i = 0; i < n; i++) maxoff = fmax(maxoff, fabs(cr[n - 1 - i] - c0[i]));
    CHECK_MSG(maxoff < 1e-9, "reversed order changes coefficients by %g", maxoff);
  }

  /* Two snapshots of the same gamma at different times: a target equal to
     one of them is exact; the time unit does not matter. */
  {
    double t2[2] = {500.0, 1000.0}, g2[2] = {3.0, 3.0}, c2[2], c3[2];
    double t3[2] = {0.5, 1.0};
    CHECK(ema_posthoc_solve(2, t2, g2, 1000.0, 3.0, 0.0, 0, c2, &info, NULL, 0) == EMA_OK);
    CHECK(fabs(c2[1] - 1.0) < 1e-13 && fabs(c2[0]) < 1e-13 && info.residual < 1e-7);
    CHECK(ema_posthoc_solve(2, t2, g2, 1000.0, 5.0, 0.0, 0, c2, &info, NULL, 0) == EMA_OK);
    CHECK(ema_posthoc_solve(2, t3, g2, 1.0, 5.0, 0.0, 0, c3, &info, NULL, 0) == EMA_OK);
    CHECK(fabs(c2[0] - c3[0]) < 1e-12 && fabs(c2[1] - c3[1]) < 1e-12);
  }
}

static void test_solve_edm2(void) {
  static double t[1024], g[1024], coef[1024];
  double g05 = 0, g07 = 0, g10 = 0, prev_res = 1.0;
  size_t n, i, per;
  ema_posthoc_info info, ninfo;
  char err[256];
  CHECK(ema_power_gamma(0.05, &g05) == EMA_OK);
  CHECK(ema_power_gamma(0.07, &g07) == EMA_OK);
  CHECK(ema_power_gamma(0.10, &g10) == EMA_OK);
  for (per = 2; per <= 512; per *= 2) {
    double sum = 0.0;
    n = edm2_layout(2147483648.0, per, g05, g10, t, g);
    CHECK(ema_posthoc_solve(n, t, g, 2147483648.0, g07, 0.0, 0, coef, &info, err, sizeof err) == EMA_OK);
    CHECK_MSG(info.residual < prev_res, "residual %g does not shrink with more snapshots", info.residual);
    prev_res = info.residual;
    CHECK(info.n_used == n);
    for (i = 0; i < n; i++) sum += coef[i];
    CHECK(fabs(sum - info.coef_sum) < 1e-12);
    /* Normalised: sums to 1, residual a little above the optimum. */
    CHECK(ema_posthoc_solve(n, t, g, 2147483648.0, g07, 0.0, EMA_POSTHOC_NORMALIZE, coef, &ninfo, err, sizeof err) ==
          EMA_OK);
    sum = 0.0;
    for (i = 0; i < n; i++) sum += coef[i];
    CHECK(fabs(sum - 1.0) < 1e-13);
    /* (up to the ~1e-16 / residual rounding of the residual itself) */
    CHECK(ninfo.residual >= info.residual * (1.0 - 1e-4) - 1e-7);
    CHECK(ninfo.cond == info.cond && ninfo.coef_sum == info.coef_sum);
    printf(
        "EDM2 sigma_rel 0.05+0.10 -> 0.07, %4zu snapshots: residual %.3e (normalised %.3e), "
        "cond %.3e, sum %.9f\n",
        n, info.residual, ninfo.residual, info.cond, info.coef_sum);
  }
  /* 256 snapshots of each (the EDM2 run): small residual, cond well below
     the threshold. */
  n = edm2_layout(2147483648.0, 256, g05, g10, t, g);
  CHECK(ema_posthoc_solve(n, t, g, 2147483648.0, g07, 0.0, 0, coef, &info, err, sizeof err) == EMA_OK);
  CHECK_MSG(info.residual < 5e-5, "residual %g", info.residual);
  CHECK_MSG(info.cond > 1e8 && info.cond < 1e10, "cond %g", info.cond);
  /* Sweep of targets over the range between and beyond the tracked ones. */
  n = edm2_layout(1.0, 64, g05, g10, t, g);
  for (i = 0; i < 10; i++) {
    double sig = 0.02 + 0.02 * (double)i, gr = 0.0;
    CHECK(ema_power_gamma(sig, &gr) == EMA_OK);
    CHECK(ema_posthoc_solve(n, t, g, 1.0, gr, 0.0, 0, coef, &info, err, sizeof err) == EMA_OK);
    printf("  128 snapshots -> sigma_rel %.2f: residual %.3e\n", sig, info.residual);
    if (sig >= 0.04 && sig <= 0.12) CHECK_MSG(info.residual < 2e-3, "%g: %g", sig, info.residual);
  }
}

/* Tiny deterministic generator for the weight trajectory. */
static double lcg_uniform(unsigned long long *state) {
  *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(*state >> 11) / 9007199254740992.0 - 0.5;
}

/* End to end: track three power-function EMAs of a scalar weight trajectory
   with ema_power_decay, snapshot two of them every S steps, synthesise the
   third at the end and compare it with the one tracked directly. The
   difference must respect the Cauchy-Schwarz bound of posthoc.h. */
static void run_end_to_end(int T, int S, int dt) {
  double gam[3], s[3] = {0, 0, 0}, wv = 0.0, walk = 0.0, wnorm2 = 0.0, syn = 0.0, bound, pnorm;
  double *ts = malloc(sizeof(double) * (size_t)(2 * (T / S))), *gs, *vs, *coef;
  size_t m = 0, i;
  int t, j;
  unsigned long long rng = 12345;
  ema_posthoc_info info;
  char err[256];
  gs = malloc(sizeof(double) * (size_t)(2 * (T / S)));
  vs = malloc(sizeof(double) * (size_t)(2 * (T / S)));
  coef = malloc(sizeof(double) * (size_t)(2 * (T / S)));
  if (!ts || !gs || !vs || !coef) {
    CHECK(0);
    goto out;
  }
  CHECK(ema_power_gamma(0.05, &gam[0]) == EMA_OK);
  CHECK(ema_power_gamma(0.10, &gam[1]) == EMA_OK);
  CHECK(ema_power_gamma(0.07, &gam[2]) == EMA_OK);
  for (t = dt; t <= T; t += dt) {
    /* A drifting, oscillating, noisy weight, sampled at each update; it
       stands for the weight over the dt steps (t-dt, t]. */
    walk += 0.02 * lcg_uniform(&rng);
    wv = 0.3 * sin(t / 170.0) + 1e-4 * t + walk + 0.2 * lcg_uniform(&rng);
    wnorm2 += (double)dt * wv * wv;
    for (j = 0; j < 3; j++) {
      double d = 0.0;
      CHECK(ema_power_decay(gam[j], t, dt, &d) == EMA_OK);
      s[j] = s[j] - (s[j] - wv) * (1.0 - d);
    }
    if (t % S == 0)
      for (j = 0; j < 2; j++) {
        ts[m] = t;
        gs[m] = gam[j];
        vs[m++] = s[j];
      }
  }
  CHECK(ema_posthoc_solve(m, ts, gs, (double)T, gam[2], 0.0, 0, coef, &info, err, sizeof err) == EMA_OK);
  for (i = 0; i < m; i++) syn += coef[i] * vs[i];
  pnorm = (gam[2] + 1.0) / sqrt((2.0 * gam[2] + 1.0) * T);
  bound = info.residual * pnorm * sqrt(wnorm2);
  CHECK_MSG(fabs(syn - s[2]) <= bound * (1.0 + 1e-6) + 1e-12,
            "synthesised %.15g, tracked %.15g, "
            "error %g above the bound %g",
            syn, s[2], fabs(syn - s[2]), bound);
  CHECK_MSG(fabs(syn - s[2]) < 1e-3, "synthesised %.15g, tracked %.15g", syn, s[2]);
  printf(
      "end to end (T %d, snapshot every %d, update every %d, %zu snapshots): tracked %.10f, "
      "synthesised %.10f, error %.2e (bound %.2e, residual %.2e)\n",
      T, S, dt, m, s[2], syn, fabs(syn - s[2]), bound, info.residual);
out:
  free(ts);
  free(gs);
  free(vs);
  free(coef);
}

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static void test_solve_errors(void) {
  double t[8] = {100, 200, 300, 400, 100, 200, 300, 400};
  double g[8] = {16.97, 16.97, 16.97, 16.97, 6.94, 6.94, 6.94, 6.94};
  double coef[8], keep[8];
  char err[512], small[16];
  size_t i;
  ema_posthoc_info info;
  for (i = 0; i < 8; i++) keep[i] = coef[i] = -7.0;
  memset(&info, 0x5a, sizeof info);

#define REFUSED(call, text)                                                   \
  do {                                                                        \
    err[0] = 'x';                                                             \
    err[1] = '\0';                                                            \
    CHECK_MSG((call) == EMA_E_INVALID_ARG, "%s accepted", #call);             \
    CHECK_MSG(contains(err, text), "message \"%s\" lacks \"%s\"", err, text); \
    CHECK(memcmp(coef, keep, sizeof coef) == 0);                              \
  } while (0)

  /* Target before every snapshot. */
  REFUSED(ema_posthoc_solve(8, t, g, 50.0, 10.0, 0, 0, coef, &info, err, sizeof err), "precedes every snapshot");
  CHECK(contains(err, "100"));
  printf("t_r before all: %s\n", err);
  /* A single snapshot, and a single usable one. */
  REFUSED(ema_posthoc_solve(1, t, g, 100.0, 16.97, 0, 0, coef, &info, err, sizeof err), "only 1 snapshot");
  REFUSED(ema_posthoc_solve(4, t, g, 150.0, 10.0, 0, 0, coef, &info, err, sizeof err), "only 1 snapshot");
  printf("single snapshot: %s\n", err);
  /* No snapshots, NULL arrays. */
  REFUSED(ema_posthoc_solve(0, t, g, 150.0, 10.0, 0, 0, coef, &info, err, sizeof err), "none");
  REFUSED(ema_posthoc_solve(8, NULL, g, 400.0, 10.0, 0, 0, coef, &info, err, sizeof err), "NULL");
  REFUSED(ema_posthoc_solve(8, t, NULL, 400.0, 10.0, 0, 0, coef, &info, err, sizeof err), "NULL");
  CHECK(ema_posthoc_solve(8, t, g, 400.0, 10.0, 0, 0, NULL, &info, err, sizeof err) == EMA_E_INVALID_ARG);
  /* Duplicates: exact, then near (ill-conditioned). */
  {
    double td[4] = {100, 200, 200, 300}, gd[4] = {7, 7, 7, 7};
    REFUSED(ema_posthoc_solve(4, td, gd, 300.0, 10.0, 0, 0, coef, &info, err, sizeof err),
            "snapshots 1 and 2 are identical");
    printf("duplicate: %s\n", err);
    td[2] = 200.0 * (1.0 + 1e-13); /* cond ~ 1/1e-13: profiles jump at t */
    REFUSED(ema_posthoc_solve(4, td, gd, 300.0, 10.0, 0, 0, coef, &info, err, sizeof err), "ill-conditioned");
    printf("near duplicate: %s\n", err);
    td[2] = 200.0 * (1.0 + 1e-15);
    REFUSED(ema_posthoc_solve(4, td, gd, 300.0, 10.0, 0, 0, coef, &info, err, sizeof err), "Gram matrix");
    /* A threshold of +inf keeps only the singularity checks. */
    td[2] = 200.0 * (1.0 + 1e-14);
    CHECK(ema_posthoc_solve(4, td, gd, 300.0, 10.0, INFINITY, 0, coef, &info, err, sizeof err) == EMA_OK);
    CHECK_MSG(info.cond > 1e12, "cond %g", info.cond);
    for (i = 0; i < 8; i++) coef[i] = keep[i];
    memset(&info, 0x5a, sizeof info);
  }
  /* A lower threshold refuses a well-posed system, naming both numbers. */
  REFUSED(ema_posthoc_solve(8, t, g, 400.0, 10.0, 10.0, 0, coef, &info, err, sizeof err), "threshold 10");
  printf("threshold: %s\n", err);
  /* Bad values. */
  REFUSED(ema_posthoc_solve(8, t, g, 0.0, 10.0, 0, 0, coef, &info, err, sizeof err), "target time");
  REFUSED(ema_posthoc_solve(8, t, g, NAN, 10.0, 0, 0, coef, &info, err, sizeof err), "target time");
  REFUSED(ema_posthoc_solve(8, t, g, 400.0, -0.5, 0, 0, coef, &info, err, sizeof err), "target gamma");
  REFUSED(ema_posthoc_solve(8, t, g, 400.0, INFINITY, 0, 0, coef, &info, err, sizeof err), "target gamma");
  REFUSED(ema_posthoc_solve(8, t, g, 400.0, 10.0, 0.5, 0, coef, &info, err, sizeof err), "threshold");
  REFUSED(ema_posthoc_solve(8, t, g, 400.0, 10.0, NAN, 0, coef, &info, err, sizeof err), "threshold");
  REFUSED(ema_posthoc_solve(8, t, g, 400.0, 10.0, 0, 2u, coef, &info, err, sizeof err), "unknown flags");
  {
    double tb[3] = {100, -200, 300}, gb[3] = {1, 1, -0.6};
    REFUSED(ema_posthoc_solve(3, tb, g, 400.0, 10.0, 0, 0, coef, &info, err, sizeof err), "snapshot 1 has time -200");
    tb[1] = 200;
    REFUSED(ema_posthoc_solve(3, tb, gb, 400.0, 10.0, 0, 0, coef, &info, err, sizeof err), "snapshot 2 has gamma -0.6");
  }
  /* Too many usable snapshots. */
  {
    size_t big = EMA_POSTHOC_MAX_SNAPSHOTS + 1;
    double *tt = malloc(big * sizeof *tt), *gg = malloc(big * sizeof *gg);
    double *cc = malloc(big * sizeof *cc);
    if (tt && gg && cc) {
      for (i = 0; i < big; i++) {
        tt[i] = (double)(i + 1);
        gg[i] = 7.0;
      }
      CHECK(ema_posthoc_solve(big, tt, gg, 1e9, 7.0, 0, 0, cc, NULL, err, sizeof err) == EMA_E_INVALID_ARG);
      CHECK(contains(err, "at most 2048"));
    }
    free(tt);
    free(gg);
    free(cc);
  }
  /* info untouched on failure; a short err buffer is truncated, NUL ended;
     NULL err is fine. */
  {
    ema_posthoc_info probe;
    memset(&probe, 0x5a, sizeof probe);
    CHECK(memcmp(&info, &probe, sizeof info) == 0);
  }
  CHECK(ema_posthoc_solve(8, t, g, 50.0, 10.0, 0, 0, coef, NULL, small, sizeof small) == EMA_E_INVALID_ARG);
  CHECK(strlen(small) == sizeof small - 1);
  CHECK(ema_posthoc_solve(8, t, g, 50.0, 10.0, 0, 0, coef, NULL, NULL, 0) == EMA_E_INVALID_ARG);
  CHECK(ema_posthoc_solve(8, t, g, 50.0, 10.0, 0, 0, coef, NULL, small, 0) == EMA_E_INVALID_ARG);
  /* Success clears err. */
  CHECK(ema_posthoc_solve(8, t, g, 400.0, 10.0, 0, 0, coef, NULL, err, sizeof err) == EMA_OK);
  CHECK(err[0] == '\0');
#undef REFUSED
}

int main(void) {
  test_sigma_gamma();
  test_decay();
  test_inner();
  test_solve_exact();
  test_solve_edm2();
  run_end_to_end(20000, 500, 1);
  run_end_to_end(20000, 500, 4);
  run_end_to_end(4000, 100, 1);
  test_solve_errors();
  return check_report("test_posthoc");
}
