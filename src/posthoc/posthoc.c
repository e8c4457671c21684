/*
 * posthoc.c: inner products of power-function EMA profiles (Karras et al.
 * 2024). sigma_rel, gamma and the decay of an update are core's
 * (src/core/decay.c); the least-squares fit is solve.c (with linalg.c);
 * synthesis from files synth.c. See ema/posthoc.h for the contract and
 * docs/posthoc.md for the mathematics.
 * Pure double-precision arithmetic: no global state, no printing.
 */
#include "posthoc/posthoc.h"

#include "core/internal.h"
#include "posthoc/solve.h"

#include <math.h>

ema_status ema_power_inner(double t_a, double gamma_a, double t_b, double gamma_b, double *out) {
  double v;
  if (out == NULL || !isfinite(t_a) || !isfinite(t_b) || !(t_a > 0.0) || !(t_b > 0.0) || !ema__gamma_ok(gamma_a) ||
      !ema__gamma_ok(gamma_b) || !(gamma_a + gamma_b > -1.0))
    return EMA_E_INVALID_ARG;
  v = ema__power_inner_unchecked(t_a, gamma_a, t_b, gamma_b);
  if (!isfinite(v)) return EMA_E_INVALID_ARG;
  *out = v;
  return EMA_OK;
}
