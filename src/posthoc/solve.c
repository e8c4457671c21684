/*
 * solve.c: ema_posthoc_solve, the least-squares fit of a target profile by
 * the snapshots' profiles (see ema/posthoc.h for the contract and
 * docs/posthoc.md for the method): checks, the Gram matrix in units of the
 * target time, its condition number (linalg.c), a Cholesky solve of the
 * equilibrated system, the residual. Pure double-precision arithmetic.
 */
#include "posthoc/posthoc.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "posthoc/linalg.h"
#include "posthoc/solve.h"

double ema__power_inner_unchecked(double ta, double ga, double tb, double gb) {
  double t_lo = ta < tb ? ta : tb, t_hi = ta < tb ? tb : ta, g_hi = ta < tb ? gb : ga;
  return (ga + 1.0) * (gb + 1.0) * pow(t_lo / t_hi, g_hi) / ((ga + gb + 1.0) * t_hi);
}

/* The work of one fit over the m snapshots used. */
typedef struct fit {
  size_t m;
  size_t *idx;           /* the snapshots used, in input order */
  double *a, *w, *b, *x; /* Gram matrix, its copy/factor, right-hand side, solution */
  double *sc, *d, *e;    /* scaled times / equilibration, tridiagonal form */
  double crr;            /* <p_r,p_r> * t_r */
  double cond, sum;
} fit;

/* The scalar arguments; *max_cond gets the default for 0. */
static ema_status check_scalars(size_t n, const double *t, const double *gamma, double t_r, double gamma_r,
                                double *max_cond, unsigned flags, const double *coef, char *err, size_t errcap) {
  if (n == 0) return ema__errf(err, errcap, "post-hoc synthesis needs snapshots, got none"), EMA_E_INVALID_ARG;
  if (t == NULL || gamma == NULL || coef == NULL)
    return ema__errf(err, errcap, "post-hoc synthesis: the %s array is NULL",
                     t == NULL       ? "snapshot time"
                     : gamma == NULL ? "snapshot gamma"
                                     : "coefficient"),
           EMA_E_INVALID_ARG;
  if ((flags & ~EMA_POSTHOC_NORMALIZE) != 0)
    return ema__errf(err, errcap, "post-hoc synthesis: unknown flags 0x%x", flags & ~EMA_POSTHOC_NORMALIZE),
           EMA_E_INVALID_ARG;
  if (*max_cond == 0.0) *max_cond = EMA_POSTHOC_DEFAULT_MAX_COND;
  if (!(*max_cond >= 1.0))
    return ema__errf(err, errcap, "post-hoc synthesis: the condition-number threshold %g is not >= 1", *max_cond),
           EMA_E_INVALID_ARG;
  if (!isfinite(t_r) || !(t_r > 0.0))
    return ema__errf(err, errcap, "post-hoc synthesis: the target time %g is not a positive finite number", t_r),
           EMA_E_INVALID_ARG;
  if (!isfinite(gamma_r) || !(gamma_r > -0.5))
    return ema__errf(err, errcap, "post-hoc synthesis: the target gamma %g is not a finite number > -0.5", gamma_r),
           EMA_E_INVALID_ARG;
  return EMA_OK;
}

/* Validate every snapshot and count those at or before t_r (*m; *tmin the
   earliest time). */
static ema_status check_snapshots(size_t n, const double *t, const double *gamma, double t_r, size_t *m, double *tmin,
                                  char *err, size_t errcap) {
  size_t first = 0;
  *m = 0;
  *tmin = (double)INFINITY;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(t[i]) || !(t[i] > 0.0))
      return ema__errf(err, errcap, "post-hoc synthesis: snapshot %zu has time %g, not a positive finite number", i,
                       t[i]),
             EMA_E_INVALID_ARG;
    if (!isfinite(gamma[i]) || !(gamma[i] > -0.5))
      return ema__errf(err, errcap, "post-hoc synthesis: snapshot %zu has gamma %g, not a finite number > -0.5", i,
                       gamma[i]),
             EMA_E_INVALID_ARG;
    if (t[i] < *tmin) *tmin = t[i];
    if (t[i] <= t_r) {
      if (*m == 0) first = i;
      (*m)++;
    }
  }
  if (*m == 0)
    return ema__errf(err, errcap,
                     "post-hoc synthesis: the target time %.17g precedes every snapshot (the earliest is at %.17g); "
                     "only snapshots taken at or before the target can be combined",
                     t_r, *tmin),
           EMA_E_INVALID_ARG;
  if (*m < EMA_POSTHOC_MIN_SNAPSHOTS)
    return ema__errf(err, errcap,
                     "post-hoc synthesis: only %zu snapshot (t = %.17g, gamma = %.15g) is at or before the target "
                     "time %.17g; at least %d are needed",
                     *m, t[first], gamma[first], t_r, EMA_POSTHOC_MIN_SNAPSHOTS),
           EMA_E_INVALID_ARG;
  if (*m > EMA_POSTHOC_MAX_SNAPSHOTS)
    return ema__errf(err, errcap,
                     "post-hoc synthesis: %zu snapshots are at or before the target time; at most %d are supported "
                     "(use fewer, e.g. every other one)",
                     *m, EMA_POSTHOC_MAX_SNAPSHOTS),
           EMA_E_INVALID_ARG;
  return EMA_OK;
}

static void fit_free(fit *f) {
  free(f->idx);
  free(f->a);
  free(f->w);
  free(f->b);
  free(f->x);
  free(f->sc);
  free(f->d);
  free(f->e);
}

static ema_status fit_alloc(fit *f, size_t m, char *err, size_t errcap) {
  memset(f, 0, sizeof *f);
  f->m = m;
  f->idx = malloc(m * sizeof *f->idx);
  f->a = malloc(m * m * sizeof *f->a);
  f->w = malloc(m * m * sizeof *f->w);
  f->b = malloc(m * sizeof *f->b);
  f->x = malloc(m * sizeof *f->x);
  f->sc = malloc(m * sizeof *f->sc);
  f->d = malloc(m * sizeof *f->d);
  f->e = malloc(m * sizeof *f->e);
  if (f->idx && f->a && f->w && f->b && f->x && f->sc && f->d && f->e) return EMA_OK;
  ema__errf(err, errcap, "post-hoc synthesis: out of memory for %zu snapshots (%zu bytes of work memory)", m,
            2 * m * m * sizeof(double));
  return EMA_E_NOMEM;
}

/* Gram matrix and right-hand side with times in units of t_r, so every
   time is in (0, 1] and every entry finite; identical snapshots named. */
static int build_gram(fit *f, const double *t, const double *gamma, double t_r, double gamma_r, double tmin, char *err,
                      size_t errcap) {
  size_t m = f->m, i, j;
  /* Identical snapshots make A exactly singular: name them. */
  for (i = 0; i < m; i++)
    for (j = i + 1; j < m; j++)
      if (t[f->idx[i]] == t[f->idx[j]] && gamma[f->idx[i]] == gamma[f->idx[j]])
        return ema__errf(err, errcap,
                         "post-hoc synthesis: snapshots %zu and %zu are identical (t = %.17g, gamma = %.15g), which "
                         "makes the system singular; give each snapshot once",
                         f->idx[i], f->idx[j], t[f->idx[i]], gamma[f->idx[i]]),
               0;
  for (i = 0; i < m; i++) {
    f->sc[i] = t[f->idx[i]] / t_r;
    if (!(f->sc[i] > 0.0)) f->sc[i] = DBL_MIN; /* underflow of a huge time ratio */
  }
  for (i = 0; i < m; i++) {
    double ti = f->sc[i], gi = gamma[f->idx[i]];
    for (j = 0; j <= i; j++) {
      double v = ema__power_inner_unchecked(ti, gi, f->sc[j], gamma[f->idx[j]]);
      f->a[i * m + j] = v;
      f->a[j * m + i] = v;
    }
    f->b[i] = ema__power_inner_unchecked(ti, gi, 1.0, gamma_r);
  }
  f->crr = (gamma_r + 1.0) * (gamma_r + 1.0) / (2.0 * gamma_r + 1.0); /* <p_r,p_r> * t_r */
  for (i = 0; i < m * m; i++)
    if (!isfinite(f->a[i]))
      return ema__errf(err, errcap,
                       "post-hoc synthesis: inner products overflow (snapshot times span a ratio of %g); drop the "
                       "earliest snapshots",
                       t_r / tmin),
             0;
  return 1;
}

/* Condition number from the extreme eigenvalues; refused above max_cond. */
static int check_condition(fit *f, double max_cond, char *err, size_t errcap) {
  size_t m = f->m;
  memcpy(f->w, f->a, m * m * sizeof *f->w);
  ema__tridiagonalize(f->w, m, f->d, f->e, f->x, f->sc);
  double lmin = ema__tridiag_eigenvalue(f->d, f->e, m, 1), lmax = ema__tridiag_eigenvalue(f->d, f->e, m, m);
  f->cond = lmin > 0.0 ? lmax / lmin : (double)INFINITY;
  if (!(lmin > 0.0))
    return ema__errf(err, errcap,
                     "post-hoc synthesis: the Gram matrix of the %zu snapshots is singular (smallest eigenvalue "
                     "%.3g, largest %.3g): some snapshot profiles are linear combinations of others (duplicates or "
                     "near-duplicates)",
                     m, lmin, lmax),
           0;
  if (f->cond > max_cond)
    return ema__errf(err, errcap,
                     "post-hoc synthesis: the Gram matrix of the %zu snapshots is too ill-conditioned (condition "
                     "number %.3g > threshold %.3g); the coefficients would be dominated by rounding: use fewer or "
                     "more distinct snapshots",
                     m, f->cond, max_cond),
           0;
  return 1;
}

/* Cholesky of the equilibrated matrix S = D A D, D = diag(1/sqrt(A_ii)), in
   the lower triangle of w; solve S y = D b, x = D y; f->sum = sum of x. */
static int cholesky_solve(fit *f, char *err, size_t errcap) {
  size_t m = f->m, i, j;
  double *w = f->w, *x = f->x, *sc = f->sc;
  for (i = 0; i < m; i++) sc[i] = 1.0 / sqrt(f->a[i * m + i]);
  for (i = 0; i < m; i++)
    for (j = 0; j <= i; j++) w[i * m + j] = f->a[i * m + j] * sc[i] * sc[j];
  for (j = 0; j < m; j++) {
    double s = w[j * m + j];
    size_t k;
    for (k = 0; k < j; k++) s -= w[j * m + k] * w[j * m + k];
    if (!(s > 0.0))
      return ema__errf(err, errcap,
                       "post-hoc synthesis: the Gram matrix of the %zu snapshots is not numerically positive "
                       "definite (condition number about %.3g); use fewer or more distinct snapshots",
                       m, f->cond),
             0;
    s = sqrt(s);
    w[j * m + j] = s;
    for (i = j + 1; i < m; i++) {
      double v = w[i * m + j];
      for (k = 0; k < j; k++) v -= w[i * m + k] * w[j * m + k];
      w[i * m + j] = v / s;
    }
  }
  for (i = 0; i < m; i++) { /* forward: L z = D b */
    double s = f->b[i] * sc[i];
    for (j = 0; j < i; j++) s -= w[i * m + j] * x[j];
    x[i] = s / w[i * m + i];
  }
  for (i = m; i-- > 0;) { /* backward: L' y = z */
    double s = x[i];
    for (j = i + 1; j < m; j++) s -= w[j * m + i] * x[j];
    x[i] = s / w[i * m + i];
  }
  f->sum = 0.0;
  for (i = 0; i < m; i++) {
    x[i] *= sc[i];
    f->sum += x[i];
  }
  if (!isfinite(f->sum))
    return ema__errf(err, errcap, "post-hoc synthesis: the solution is not finite (condition number %.3g)", f->cond), 0;
  return 1;
}

/* Residual sqrt(<r,r> / <p_r,p_r>), <r,r> = x'Ax - 2 x'b + <p_r,p_r>, all in
   units of 1/t_r. */
static double residual_of(const fit *f) {
  size_t m = f->m;
  double xax = 0.0, xb = 0.0;
  for (size_t i = 0; i < m; i++) {
    double s = 0.0;
    for (size_t j = 0; j < m; j++) s += f->a[i * m + j] * f->x[j];
    xax += f->x[i] * s;
    xb += f->x[i] * f->b[i];
  }
  double rr = xax - 2.0 * xb + f->crr;
  return sqrt(fmax(0.0, rr) / f->crr);
}

ema_status ema_posthoc_solve(size_t n, const double *t, const double *gamma, double t_r, double gamma_r,
                             double max_cond, unsigned flags, double *coef, ema_posthoc_info *info, char *err,
                             size_t errcap) {
  size_t m;
  double tmin;
  ema__errf(err, errcap, "%s", "");
  ema_status st = check_scalars(n, t, gamma, t_r, gamma_r, &max_cond, flags, coef, err, errcap);
  if (st == EMA_OK) st = check_snapshots(n, t, gamma, t_r, &m, &tmin, err, errcap);
  if (st != EMA_OK) return st;
  fit f;
  if ((st = fit_alloc(&f, m, err, errcap)) != EMA_OK) {
    fit_free(&f);
    return st;
  }
  for (size_t i = 0, j = 0; i < n; i++)
    if (t[i] <= t_r) f.idx[j++] = i;
  st = EMA_E_INVALID_ARG;
  if (build_gram(&f, t, gamma, t_r, gamma_r, tmin, err, errcap) && check_condition(&f, max_cond, err, errcap) &&
      cholesky_solve(&f, err, errcap)) {
    if (flags & EMA_POSTHOC_NORMALIZE) {
      if (!(f.sum > 0.0)) {
        ema__errf(err, errcap,
                  "post-hoc synthesis: the coefficients sum to %.3g, so they cannot be rescaled to sum to 1; the "
                  "snapshots cannot represent this target",
                  f.sum);
        fit_free(&f);
        return EMA_E_INVALID_ARG;
      }
      for (size_t i = 0; i < m; i++) f.x[i] /= f.sum;
    }
    double residual = residual_of(&f);
    /* Commit. */
    for (size_t i = 0; i < n; i++) coef[i] = 0.0;
    for (size_t i = 0; i < m; i++) coef[f.idx[i]] = f.x[i];
    if (info != NULL) {
      info->n_used = m;
      info->residual = residual;
      info->cond = f.cond;
      info->coef_sum = f.sum;
    }
    st = EMA_OK;
  }
  fit_free(&f);
  return st;
}
