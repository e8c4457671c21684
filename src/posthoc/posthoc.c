/*
 * posthoc.c: power-function EMA profiles and post-hoc EMA synthesis
 * (Karras et al. 2024). See posthoc.h for the mathematics and the contract.
 * Pure double-precision arithmetic: no global state, no printing.
 */
#include "posthoc/posthoc.h"

#include "common/err.h"
#include "core/internal.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static void set_err(char *err, size_t errcap, const char *fmt, ...) EMA__PRINTF(3, 4);

/* Write a message into err (when there is room): common/err.c's formatter. */
static void set_err(char *err, size_t errcap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ema__verrf(err, errcap, fmt, ap);
  va_end(ap);
}

/* Inner product of two profiles, arguments already validated. Written with
   the earlier time first, (t_lo/t_hi)^g_hi / t_hi, which is the formula of
   posthoc.h for either order and makes the result exactly symmetric. */
static double inner_unchecked(double ta, double ga, double tb, double gb) {
  double t_lo = ta < tb ? ta : tb, t_hi = ta < tb ? tb : ta, g_hi = ta < tb ? gb : ga;
  return (ga + 1.0) * (gb + 1.0) * pow(t_lo / t_hi, g_hi) / ((ga + gb + 1.0) * t_hi);
}

/* ------------------------------------------------------------------------ */
/* Inner products (sigma_rel <-> gamma and the decay are core's: decay.c)    */
/* ------------------------------------------------------------------------ */

ema_status ema_power_inner(double t_a, double gamma_a, double t_b, double gamma_b, double *out) {
  double v;
  if (out == NULL || !isfinite(t_a) || !isfinite(t_b) || !(t_a > 0.0) || !(t_b > 0.0) ||
      !ema__gamma_ok(gamma_a) || !ema__gamma_ok(gamma_b) || !(gamma_a + gamma_b > -1.0))
    return EMA_E_INVALID_ARG;
  v = inner_unchecked(t_a, gamma_a, t_b, gamma_b);
  if (!isfinite(v)) return EMA_E_INVALID_ARG;
  *out = v;
  return EMA_OK;
}

/* ------------------------------------------------------------------------ */
/* Symmetric eigenvalue bounds                                               */
/* ------------------------------------------------------------------------ */

/* Reduce the symmetric n x n matrix a (row-major, both triangles valid) to
   tridiagonal form by Householder reflections; the diagonal goes to d[0..n-1]
   and the off-diagonal to e[0..n-2]. a is destroyed; v and q are scratch of
   n doubles each. About 4/3 n^3 flops. */
static void tridiagonalize(double *a, size_t n, double *d, double *e, double *v, double *q) {
  size_t k, i, j;
  for (k = 0; k + 2 < n; k++) {
    /* x = a[k+1..n-1][k] (= row k, by symmetry, which is contiguous). */
    const double *x = a + k * n;
    double scale = 0.0, norm2 = 0.0, alpha, vnorm2 = 0.0, beta, kk = 0.0;
    d[k] = a[k * n + k];
    for (i = k + 1; i < n; i++) scale += fabs(x[i]);
    if (scale == 0.0) {
      e[k] = 0.0;
      continue;
    }
    /* v = x/scale - alpha e1 with alpha = -sign(x1) ||x/scale||: no
       cancellation in v1; the reflected column is alpha*scale e1. */
    for (i = k + 1; i < n; i++) {
      v[i] = x[i] / scale;
      norm2 += v[i] * v[i];
    }
    alpha = v[k + 1] > 0.0 ? -sqrt(norm2) : sqrt(norm2);
    e[k] = alpha * scale;
    v[k + 1] -= alpha;
    for (i = k + 1; i < n; i++) vnorm2 += v[i] * v[i];
    if (vnorm2 == 0.0) continue;
    beta = 2.0 / vnorm2;
    /* A22 <- H A22 H with H = I - beta v v': q = beta A22 v,
       q -= (beta/2)(v'q) v, A22 -= v q' + q v'. */
    for (i = k + 1; i < n; i++) {
      const double *row = a + i * n;
      double s = 0.0;
      for (j = k + 1; j < n; j++) s += row[j] * v[j];
      q[i] = beta * s;
    }
    for (i = k + 1; i < n; i++) kk += v[i] * q[i];
    kk *= 0.5 * beta;
    for (i = k + 1; i < n; i++) q[i] -= kk * v[i];
    for (i = k + 1; i < n; i++) {
      double *row = a + i * n, vi = v[i], qi = q[i];
      for (j = k + 1; j < n; j++) row[j] -= vi * q[j] + qi * v[j];
    }
  }
  if (n >= 2) {
    d[n - 2] = a[(n - 2) * n + (n - 2)];
    e[n - 2] = a[(n - 1) * n + (n - 2)];
  }
  if (n >= 1) d[n - 1] = a[(n - 1) * n + (n - 1)];
}

/* Number of eigenvalues of the tridiagonal (d, e) smaller than x (Sturm
   sequence via the LDL' pivots of T - x I). */
static size_t sturm_count(const double *d, const double *e, size_t n, double x, double pivmin) {
  size_t i, count = 0;
  double q = d[0] - x;
  if (fabs(q) < pivmin) q = -pivmin;
  if (q < 0.0) count++;
  for (i = 1; i < n; i++) {
    q = d[i] - x - e[i - 1] * e[i - 1] / q;
    if (fabs(q) < pivmin) q = -pivmin;
    if (q < 0.0) count++;
  }
  return count;
}

/* The k-th smallest eigenvalue (k = 1..n) of the tridiagonal (d, e) by
   bisection from the Gershgorin interval, to about eps * ||T||. */
static double tridiag_eigenvalue(const double *d, const double *e, size_t n, size_t k) {
  double lo = d[0], hi = d[0], tnorm, pivmin, tol;
  size_t i;
  int it;
  for (i = 0; i < n; i++) {
    double r = (i > 0 ? fabs(e[i - 1]) : 0.0) + (i + 1 < n ? fabs(e[i]) : 0.0);
    if (d[i] - r < lo) lo = d[i] - r;
    if (d[i] + r > hi) hi = d[i] + r;
  }
  tnorm = fmax(fabs(lo), fabs(hi));
  pivmin = DBL_MIN * fmax(1.0, tnorm);
  for (i = 0; i + 1 < n; i++) pivmin = fmax(pivmin, DBL_MIN * e[i] * e[i]);
  tol = 2.0 * DBL_EPSILON * tnorm;
  lo -= tol;
  hi += tol;
  for (it = 0; it < 400; it++) {
    double mid = 0.5 * (lo + hi);
    if (hi - lo <= 2.0 * DBL_EPSILON * fmax(fabs(lo), fabs(hi)) || mid <= lo || mid >= hi) break;
    if (sturm_count(d, e, n, mid, pivmin) >= k) hi = mid; else lo = mid;
  }
  return 0.5 * (lo + hi);
}

/* ------------------------------------------------------------------------ */
/* Post-hoc synthesis                                                        */
/* ------------------------------------------------------------------------ */

ema_status ema_posthoc_solve(size_t n, const double *t, const double *gamma, double t_r,
                             double gamma_r, double max_cond, unsigned flags, double *coef,
                             ema_posthoc_info *info, char *err, size_t errcap) {
  size_t i, j, m, first = 0;
  size_t *idx = NULL;
  double *a = NULL, *w = NULL, *b = NULL, *x = NULL, *sc = NULL, *d = NULL, *e = NULL;
  double lmin, lmax, cond, crr, rr, xax, xb, sum, residual, tmin;
  ema_status st = EMA_E_INVALID_ARG;

  set_err(err, errcap, "%s", "");
  if (n == 0) {
    set_err(err, errcap, "post-hoc synthesis needs snapshots, got none");
    return EMA_E_INVALID_ARG;
  }
  if (t == NULL || gamma == NULL || coef == NULL) {
    set_err(err, errcap, "post-hoc synthesis: the %s array is NULL",
            t == NULL ? "snapshot time" : gamma == NULL ? "snapshot gamma" : "coefficient");
    return EMA_E_INVALID_ARG;
  }
  if ((flags & ~EMA_POSTHOC_NORMALIZE) != 0) {
    set_err(err, errcap, "post-hoc synthesis: unknown flags 0x%x", flags & ~EMA_POSTHOC_NORMALIZE);
    return EMA_E_INVALID_ARG;
  }
  if (max_cond == 0.0) max_cond = EMA_POSTHOC_DEFAULT_MAX_COND;
  if (!(max_cond >= 1.0)) {
    set_err(err, errcap, "post-hoc synthesis: the condition-number threshold %g is not >= 1",
            max_cond);
    return EMA_E_INVALID_ARG;
  }
  if (!isfinite(t_r) || !(t_r > 0.0)) {
    set_err(err, errcap, "post-hoc synthesis: the target time %g is not a positive finite number",
            t_r);
    return EMA_E_INVALID_ARG;
  }
  if (!isfinite(gamma_r) || !(gamma_r > -0.5)) {
    set_err(err, errcap, "post-hoc synthesis: the target gamma %g is not a finite number > -0.5",
            gamma_r);
    return EMA_E_INVALID_ARG;
  }
  /* Validate every snapshot, count those at or before t_r. */
  m = 0;
  tmin = (double)INFINITY;
  for (i = 0; i < n; i++) {
    if (!isfinite(t[i]) || !(t[i] > 0.0)) {
      set_err(err, errcap, "post-hoc synthesis: snapshot %zu has time %g, not a positive finite "
              "number", i, t[i]);
      return EMA_E_INVALID_ARG;
    }
    if (!isfinite(gamma[i]) || !(gamma[i] > -0.5)) {
      set_err(err, errcap, "post-hoc synthesis: snapshot %zu has gamma %g, not a finite number > "
              "-0.5", i, gamma[i]);
      return EMA_E_INVALID_ARG;
    }
    if (t[i] < tmin) tmin = t[i];
    if (t[i] <= t_r) {
      if (m == 0) first = i;
      m++;
    }
  }
  if (m == 0) {
    set_err(err, errcap, "post-hoc synthesis: the target time %.17g precedes every snapshot (the "
            "earliest is at %.17g); only snapshots taken at or before the target can be combined",
            t_r, tmin);
    return EMA_E_INVALID_ARG;
  }
  if (m < EMA_POSTHOC_MIN_SNAPSHOTS) {
    set_err(err, errcap, "post-hoc synthesis: only %zu snapshot (t = %.17g, gamma = %.15g) is at "
            "or before the target time %.17g; at least %d are needed", m, t[first], gamma[first],
            t_r, EMA_POSTHOC_MIN_SNAPSHOTS);
    return EMA_E_INVALID_ARG;
  }
  if (m > EMA_POSTHOC_MAX_SNAPSHOTS) {
    set_err(err, errcap, "post-hoc synthesis: %zu snapshots are at or before the target time; at "
            "most %d are supported (use fewer, e.g. every other one)", m,
            EMA_POSTHOC_MAX_SNAPSHOTS);
    return EMA_E_INVALID_ARG;
  }

  idx = malloc(m * sizeof *idx);
  a = malloc(m * m * sizeof *a);
  w = malloc(m * m * sizeof *w);
  b = malloc(m * sizeof *b);
  x = malloc(m * sizeof *x);
  sc = malloc(m * sizeof *sc);
  d = malloc(m * sizeof *d);
  e = malloc(m * sizeof *e);
  if (!idx || !a || !w || !b || !x || !sc || !d || !e) {
    set_err(err, errcap, "post-hoc synthesis: out of memory for %zu snapshots (%zu bytes of work "
            "memory)", m, 2 * m * m * sizeof(double));
    st = EMA_E_NOMEM;
    goto done;
  }
  for (i = 0, j = 0; i < n; i++)
    if (t[i] <= t_r) idx[j++] = i;

  /* Identical snapshots make A exactly singular: name them. */
  for (i = 0; i < m; i++)
    for (j = i + 1; j < m; j++)
      if (t[idx[i]] == t[idx[j]] && gamma[idx[i]] == gamma[idx[j]]) {
        set_err(err, errcap, "post-hoc synthesis: snapshots %zu and %zu are identical (t = %.17g, "
                "gamma = %.15g), which makes the system singular; give each snapshot once",
                idx[i], idx[j], t[idx[i]], gamma[idx[i]]);
        goto done;
      }

  /* Gram matrix and right-hand side with times in units of t_r, so every
     time is in (0, 1] and every entry finite. */
  for (i = 0; i < m; i++) {
    sc[i] = t[idx[i]] / t_r;
    if (!(sc[i] > 0.0)) sc[i] = DBL_MIN; /* underflow of a huge time ratio */
  }
  for (i = 0; i < m; i++) {
    double ti = sc[i], gi = gamma[idx[i]];
    for (j = 0; j <= i; j++) {
      double v = inner_unchecked(ti, gi, sc[j], gamma[idx[j]]);
      a[i * m + j] = v;
      a[j * m + i] = v;
    }
    b[i] = inner_unchecked(ti, gi, 1.0, gamma_r);
  }
  crr = (gamma_r + 1.0) * (gamma_r + 1.0) / (2.0 * gamma_r + 1.0); /* <p_r,p_r> * t_r */
  for (i = 0; i < m * m; i++)
    if (!isfinite(a[i])) {
      set_err(err, errcap, "post-hoc synthesis: inner products overflow (snapshot times span a "
              "ratio of %g); drop the earliest snapshots", t_r / tmin);
      goto done;
    }

  /* Condition number from the extreme eigenvalues. */
  memcpy(w, a, m * m * sizeof *w);
  tridiagonalize(w, m, d, e, x, sc);
  lmin = tridiag_eigenvalue(d, e, m, 1);
  lmax = tridiag_eigenvalue(d, e, m, m);
  cond = lmin > 0.0 ? lmax / lmin : (double)INFINITY;
  if (!(lmin > 0.0)) {
    set_err(err, errcap, "post-hoc synthesis: the Gram matrix of the %zu snapshots is singular "
            "(smallest eigenvalue %.3g, largest %.3g): some snapshot profiles are linear "
            "combinations of others (duplicates or near-duplicates)", m, lmin, lmax);
    goto done;
  }
  if (cond > max_cond) {
    set_err(err, errcap, "post-hoc synthesis: the Gram matrix of the %zu snapshots is too "
            "ill-conditioned (condition number %.3g > threshold %.3g); the coefficients would be "
            "dominated by rounding: use fewer or more distinct snapshots", m, cond, max_cond);
    goto done;
  }

  /* Cholesky of the equilibrated matrix S = D A D, D = diag(1/sqrt(A_ii)),
     in the lower triangle of w; solve S y = D b, x = D y. */
  for (i = 0; i < m; i++) sc[i] = 1.0 / sqrt(a[i * m + i]);
  for (i = 0; i < m; i++)
    for (j = 0; j <= i; j++) w[i * m + j] = a[i * m + j] * sc[i] * sc[j];
  for (j = 0; j < m; j++) {
    double s = w[j * m + j];
    size_t k;
    for (k = 0; k < j; k++) s -= w[j * m + k] * w[j * m + k];
    if (!(s > 0.0)) {
      set_err(err, errcap, "post-hoc synthesis: the Gram matrix of the %zu snapshots is not "
              "numerically positive definite (condition number about %.3g); use fewer or more "
              "distinct snapshots", m, cond);
      goto done;
    }
    s = sqrt(s);
    w[j * m + j] = s;
    for (i = j + 1; i < m; i++) {
      double v = w[i * m + j];
      for (k = 0; k < j; k++) v -= w[i * m + k] * w[j * m + k];
      w[i * m + j] = v / s;
    }
  }
  for (i = 0; i < m; i++) { /* forward: L z = D b */
    double s = b[i] * sc[i];
    for (j = 0; j < i; j++) s -= w[i * m + j] * x[j];
    x[i] = s / w[i * m + i];
  }
  for (i = m; i-- > 0;) { /* backward: L' y = z */
    double s = x[i];
    for (j = i + 1; j < m; j++) s -= w[j * m + i] * x[j];
    x[i] = s / w[i * m + i];
  }
  sum = 0.0;
  for (i = 0; i < m; i++) {
    x[i] *= sc[i];
    sum += x[i];
  }
  if (!isfinite(sum)) {
    set_err(err, errcap, "post-hoc synthesis: the solution is not finite (condition number %.3g)",
            cond);
    goto done;
  }
  if (flags & EMA_POSTHOC_NORMALIZE) {
    if (!(sum > 0.0)) {
      set_err(err, errcap, "post-hoc synthesis: the coefficients sum to %.3g, so they cannot be "
              "rescaled to sum to 1; the snapshots cannot represent this target", sum);
      goto done;
    }
    for (i = 0; i < m; i++) x[i] /= sum;
  }

  /* Residual <r,r> = x'Ax - 2 x'b + <p_r,p_r>, all in units of 1/t_r. */
  xax = 0.0;
  xb = 0.0;
  for (i = 0; i < m; i++) {
    double s = 0.0;
    for (j = 0; j < m; j++) s += a[i * m + j] * x[j];
    xax += x[i] * s;
    xb += x[i] * b[i];
  }
  rr = xax - 2.0 * xb + crr;
  residual = sqrt(fmax(0.0, rr) / crr);

  /* Commit. */
  for (i = 0; i < n; i++) coef[i] = 0.0;
  for (i = 0; i < m; i++) coef[idx[i]] = x[i];
  if (info != NULL) {
    info->n_used = m;
    info->residual = residual;
    info->cond = cond;
    info->coef_sum = sum;
  }
  st = EMA_OK;

done:
  free(idx);
  free(a);
  free(w);
  free(b);
  free(x);
  free(sc);
  free(d);
  free(e);
  return st;
}
