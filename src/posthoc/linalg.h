/*
 * linalg.h: the symmetric eigenvalue bounds of ema_posthoc_solve (linalg.c).
 * Private to src/posthoc.
 */
#ifndef EMA_POSTHOC_LINALG_H
#define EMA_POSTHOC_LINALG_H

#include <stddef.h>

/* Reduce the symmetric n x n matrix a (row-major, both triangles valid) to
   tridiagonal form by Householder reflections; the diagonal goes to d[0..n-1]
   and the off-diagonal to e[0..n-2]. a is destroyed; v and q are scratch of
   n doubles each. About 4/3 n^3 flops. */
void ema__tridiagonalize(double *a, size_t n, double *d, double *e, double *v, double *q);

/* The k-th smallest eigenvalue (k = 1..n) of the symmetric tridiagonal
   matrix (d, e), by Sturm-sequence bisection to about full precision. */
double ema__tridiag_eigenvalue(const double *d, const double *e, size_t n, size_t k);

#endif
