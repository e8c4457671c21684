/*
 * posthoc.c: power-function EMA profiles (Karras et al. 2024): sigma_rel and
 * gamma, the decay of an update, inner products. The least-squares fit is
 * solve.c (with linalg.c); synthesis from files synth.c. See ema/posthoc.h
 * for the contract and docs/posthoc.md for the mathematics.
 * Pure double-precision arithmetic: no global state, no printing.
 */
#include "posthoc/posthoc.h"

#include "posthoc/solve.h"

#include <float.h>
#include <math.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* A profile exponent usable for a weight profile: finite and > -1. */
static int gamma_ok(double g) { return isfinite(g) && g > -1.0; }

/* ------------------------------------------------------------------------ */
/* sigma_rel <-> gamma                                                       */
/* ------------------------------------------------------------------------ */

ema_status ema_power_sigma_rel(double gamma, double *sigma_rel) {
  double s;
  if (sigma_rel == NULL || !gamma_ok(gamma)) return EMA_E_INVALID_ARG;
  /* sqrt((g+1)/((g+2)^2 (g+3))) written so that nothing overflows. */
  s = sqrt((gamma + 1.0) / (gamma + 3.0)) / (gamma + 2.0);
  if (!(s > 0.0)) return EMA_E_INVALID_ARG; /* gamma + 1 rounded to 0 */
  *sigma_rel = s;
  return EMA_OK;
}

/* G(g) = (g+2) sqrt((g+3)/(g+1)) sigma - 1: strictly increasing for g >= 0,
   zero at the wanted gamma. *dg receives G'(g). */
static double gamma_equation(double g, double sigma, double *dg) {
  double q = sqrt((g + 3.0) / (g + 1.0));
  /* d/dg ln((g+2) sqrt((g+3)/(g+1))) = 1/(g+2) - 1/((g+1)(g+3)) */
  *dg = sigma * q * (1.0 - (g + 2.0) / ((g + 1.0) * (g + 3.0)));
  return (g + 2.0) * q * sigma - 1.0;
}

ema_status ema_power_gamma(double sigma_rel, double *gamma) {
  double lo, hi, g, f, df;
  int it;
  if (gamma == NULL || !(sigma_rel >= DBL_MIN) || !(sigma_rel <= EMA_POWER_SIGMA_REL_MAX))
    return EMA_E_INVALID_ARG;
  /* Bracket: G(0) = 2 sqrt(3) sigma - 1 <= 0 for sigma <= sqrt(1/12), and
     G(1/sigma) > (1/sigma) sigma - 1 = 0 because both other factors exceed 1. */
  lo = 0.0;
  hi = 1.0 / sigma_rel;
  f = gamma_equation(lo, sigma_rel, &df);
  if (f >= 0.0 || sigma_rel == EMA_POWER_SIGMA_REL_MAX) { /* the top of the range: gamma is 0 */
    *gamma = 0.0;
    return EMA_OK;
  }
  /* Start from the large-gamma asymptote gamma ~ 1/sigma - 3. */
  g = hi - 3.0;
  if (!(g > lo)) g = 0.5 * (lo + hi);
  for (it = 0; it < 200; it++) {
    double next;
    f = gamma_equation(g, sigma_rel, &df);
    if (f == 0.0) break;
    if (f < 0.0) lo = g; else hi = g;
    next = g - f / df;
    /* Fall back to bisection when Newton leaves the bracket. */
    if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
    if (fabs(next - g) <= 2.0 * DBL_EPSILON * fabs(next) || hi - lo <= 2.0 * DBL_EPSILON * hi) {
      g = next;
      break;
    }
    g = next;
  }
  *gamma = g;
  return EMA_OK;
}

/* ------------------------------------------------------------------------ */
/* Decay and inner products                                                  */
/* ------------------------------------------------------------------------ */

ema_status ema_power_decay(double gamma, int64_t t, int64_t dt, double *decay) {
  if (decay == NULL || !gamma_ok(gamma) || t < 1 || dt < 1 || dt > t) return EMA_E_INVALID_ARG;
  /* t - dt is exact in integers; at dt == t the base is 0 and the decay 0. */
  *decay = pow((double)(t - dt) / (double)t, gamma + 1.0);
  return EMA_OK;
}

ema_status ema_power_inner(double t_a, double gamma_a, double t_b, double gamma_b, double *out) {
  double v;
  if (out == NULL || !isfinite(t_a) || !isfinite(t_b) || !(t_a > 0.0) || !(t_b > 0.0) ||
      !gamma_ok(gamma_a) || !gamma_ok(gamma_b) || !(gamma_a + gamma_b > -1.0))
    return EMA_E_INVALID_ARG;
  v = ema__power_inner_unchecked(t_a, gamma_a, t_b, gamma_b);
  if (!isfinite(v)) return EMA_E_INVALID_ARG;
  *out = v;
  return EMA_OK;
}
