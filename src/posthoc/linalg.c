/*
 * linalg.c: extreme eigenvalues of a symmetric matrix (Householder
 * tridiagonalisation, then Sturm-sequence bisection), for the condition
 * number ema_posthoc_solve reports. See linalg.h.
 */
#include "posthoc/linalg.h"

#include <float.h>
#include <math.h>

/* ------------------------------------------------------------------------ */
/* Symmetric eigenvalue bounds                                               */
/* ------------------------------------------------------------------------ */

/* Reduce the symmetric n x n matrix a (row-major, both triangles valid) to
   tridiagonal form by Householder reflections; the diagonal goes to d[0..n-1]
   and the off-diagonal to e[0..n-2]. a is destroyed; v and q are scratch of
   n doubles each. About 4/3 n^3 flops. */
void ema__tridiagonalize(double *a, size_t n, double *d, double *e, double *v, double *q) {
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
double ema__tridiag_eigenvalue(const double *d, const double *e, size_t n, size_t k) {
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
    if (sturm_count(d, e, n, mid, pivmin) >= k)
      hi = mid;
    else
      lo = mid;
  }
  return 0.5 * (lo + hi);
}
