/*
 * src/core/decay.c: every decay of the library.
 *
 * TensorFlow's decay (ema_apply): a float32 decay, min(decay, (1+n)/(10+n))
 * with num_updates n, and 1 - d rounded to the shadow's precision.
 *
 * Schedules (ema_update): the decay of one update covering the training
 * steps (from, to], as the product of the per-step decays, in float64.
 *
 *   constant     d per step                       -> d^(to-from)
 *   inv_power    1 - (1 + t/inv_gamma)^-power,    clamped to [min_decay, decay],
 *                t = step - update_after_step - 1, 0 when t <= 0 (timm, diffusers)
 *   power        (1 - 1/s)^(gamma+1) per step s   -> (from/to)^(gamma+1) (Karras et al.)
 *   halflife     0.5^(1/h) per step               -> 0.5^((to-from)/h)
 *
 * Any step s <= update_after_step has decay 0 (the update copies the model).
 *
 * Power-function math (Karras et al. 2024; declared in ema/posthoc.h):
 * sigma_rel <-> gamma and the decay of an update; src/posthoc builds on it.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------------------ */
/* TensorFlow's decay (ema_apply)                                           */
/* ------------------------------------------------------------------------ */

ema_status ema_set_decay(ema_ctx *ctx, double decay) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  if (!ema__decay_ok(decay))
    return ema__fail(ctx, EMA_E_INVALID_ARG, "ema_set_decay: decay must be in [0, 1], got %g", decay);
  ctx->avg[0].sched.decay = decay;
  return EMA_OK;
}

ema_status ema_set_num_updates(ema_ctx *ctx, int64_t n) {
  if (!ctx) return EMA_E_INVALID_ARG;
  ema__clear_error(ctx);
  ctx->num_updates = n < 0 ? -1 : n;
  return EMA_OK;
}

double ema_decay(const ema_ctx *ctx) { return ctx ? ctx->avg[0].sched.decay : NAN; }

int64_t ema_num_updates(const ema_ctx *ctx) { return ctx ? ctx->num_updates : -1; }

/* TensorFlow: decay is a float32 tensor; num_updates is cast to float32 and
   min(decay, (1 + n) / (10 + n)) is evaluated in float32. */
float ema__effective_decay_f32(const ema_ctx *ctx, size_t k) {
  float d = (float)ctx->avg[k].sched.decay;
  if (ctx->num_updates >= 0) {
    float n = (float)ctx->num_updates;
    float r = (1.0f + n) / (10.0f + n);
    if (r < d) d = r;
  }
  return d;
}

double ema_effective_decay(const ema_ctx *ctx) {
  if (!ctx) return NAN;
  return (double)ema__effective_decay_f32(ctx, 0); /* unindexed decay functions address member 0 */
}

/* om = 1 - d, computed in float32 and then converted to the shadow's dtype
   (TensorFlow's assign_moving_average casts 1 - decay to the variable's
   dtype). */
ema_coef ema__coef_from_f32_om(float om, int pair) {
  ema_coef c;
  memset(&c, 0, sizeof c);
  switch (pair) {
    case EMA_PAIR_F64:
      c.d = (double)om;
      break;
    case EMA_PAIR_BF16_BF16:
      c.h = ema_f32_to_bf16(om);
      break;
    case EMA_PAIR_F16_F16:
      c.h = ema_f32_to_f16(om);
      break;
    default:
      c.f = om;
      break;
  }
  return c;
}

/* A float64 coefficient rounded once to the shadow's precision. */
ema_coef ema__coef_from_f64(double x, int pair) {
  ema_coef c;
  memset(&c, 0, sizeof c);
  switch (pair) {
    case EMA_PAIR_F64:
      c.d = x;
      break;
    case EMA_PAIR_BF16_BF16:
      c.h = ema_f32_to_bf16((float)x);
      break;
    case EMA_PAIR_F16_F16:
      c.h = ema_f32_to_f16((float)x);
      break;
    default:
      c.f = (float)x;
      break;
  }
  return c;
}

/* ------------------------------------------------------------------------ */
/* Schedules (ema_update)                                                    */
/* ------------------------------------------------------------------------ */

static const char *const kind_names[] = {"constant", "inv_power", "power", "halflife"};

const char *ema__schedule_name(ema_schedule_kind kind) {
  return (unsigned)kind < sizeof kind_names / sizeof kind_names[0] ? kind_names[kind] : NULL;
}

int ema__schedule_from_name(const char *name, ema_schedule_kind *kind) {
  for (unsigned i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++)
    if (strcmp(name, kind_names[i]) == 0) {
      *kind = (ema_schedule_kind)i;
      return 1;
    }
  return 0;
}

void ema_schedule_init(ema_schedule *s, ema_schedule_kind kind) {
  if (!s) return;
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->decay = 0.9999;
  s->min_decay = 0.0;
  s->inv_gamma = 1.0;
  s->power = 2.0 / 3.0;
  s->gamma = 0.0;
  s->sigma_rel = kind == EMA_SCHEDULE_POWER ? 0.10 : 0.0;
  s->halflife = 1000.0;
  s->update_after_step = 0;
}

/* Checks a schedule; returns NULL when valid, else what is wrong. */
const char *ema__schedule_problem(const ema_schedule *s) {
  if (!s) return "the schedule is NULL";
  if (!ema__schedule_name(s->kind)) return "unknown schedule kind";
  if (s->update_after_step < 0) return "update_after_step must be >= 0";
  switch (s->kind) {
    case EMA_SCHEDULE_CONSTANT:
      if (!(s->decay >= 0.0 && s->decay <= 1.0)) return "decay must be in [0, 1]";
      break;
    case EMA_SCHEDULE_INV_POWER:
      if (!(s->decay >= 0.0 && s->decay <= 1.0)) return "decay must be in [0, 1]";
      if (!(s->min_decay >= 0.0 && s->min_decay <= s->decay)) return "min_decay must be in [0, decay]";
      if (!(s->inv_gamma > 0.0) || !isfinite(s->inv_gamma)) return "inv_gamma must be > 0";
      if (!(s->power > 0.0) || !isfinite(s->power)) return "power must be > 0";
      break;
    case EMA_SCHEDULE_POWER:
      if (s->sigma_rel != 0.0) {
        if (!(s->sigma_rel > 0.0 && s->sigma_rel <= EMA_POWER_SIGMA_REL_MAX))
          return "sigma_rel must be in (0, 0.2887] (or 0 to use gamma)";
      } else if (!(s->gamma > -1.0) || !isfinite(s->gamma)) {
        return "gamma must be > -1";
      }
      break;
    case EMA_SCHEDULE_HALFLIFE:
      if (!(s->halflife > 0.0) || !isfinite(s->halflife)) return "halflife must be > 0 steps";
      break;
  }
  return NULL;
}

/* gamma of a power-function schedule (from sigma_rel when set). */
double ema__schedule_gamma(const ema_schedule *s) {
  double g = s->gamma;
  if (s->sigma_rel != 0.0 && ema_power_gamma(s->sigma_rel, &g) != EMA_OK) return NAN;
  return g;
}

static double inv_power_step(const ema_schedule *s, int64_t step) {
  int64_t t = step - s->update_after_step - 1;
  if (t <= 0) return 0.0;
  /* 1 - (1 + t/inv_gamma)^-power, without cancellation near 1 */
  double d = -expm1(-s->power * log1p((double)t / s->inv_gamma));
  if (d > s->decay) d = s->decay;
  if (d < s->min_decay) d = s->min_decay;
  return d;
}

ema_status ema_schedule_decay(const ema_schedule *s, int64_t from, int64_t to, double *decay) {
  if (!decay || ema__schedule_problem(s) || from < 0 || to <= from) return EMA_E_INVALID_ARG;
  int64_t dt = to - from;
  if (from < s->update_after_step) { /* step from+1 <= update_after_step: copy */
    *decay = 0.0;
    return EMA_OK;
  }
  double d = 0.0;
  switch (s->kind) {
    case EMA_SCHEDULE_CONSTANT:
      d = pow(s->decay, (double)dt);
      break;
    case EMA_SCHEDULE_HALFLIFE:
      d = exp2(-(double)dt / s->halflife);
      break;
    case EMA_SCHEDULE_POWER: {
      double g = ema__schedule_gamma(s);
      if (isnan(g)) return EMA_E_INVALID_ARG;
      /* (1 - dt/to)^(g+1) = (from/to)^(g+1): the per-step factors telescope */
      if (ema_power_decay(g, to, dt, &d) != EMA_OK) return EMA_E_INVALID_ARG;
      break;
    }
    case EMA_SCHEDULE_INV_POWER: {
      d = 1.0;
      for (int64_t step = from + 1; step <= to && d > 0.0; step++) d *= inv_power_step(s, step);
      break;
    }
  }
  *decay = d;
  return EMA_OK;
}

/* ------------------------------------------------------------------------ */
/* sigma_rel <-> gamma                                                       */
/* ------------------------------------------------------------------------ */

int ema__gamma_ok(double g) { return isfinite(g) && g > -1.0; }

ema_status ema_power_sigma_rel(double gamma, double *sigma_rel) {
  double s;
  if (sigma_rel == NULL || !ema__gamma_ok(gamma)) return EMA_E_INVALID_ARG;
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
  if (gamma == NULL || !(sigma_rel >= DBL_MIN) || !(sigma_rel <= EMA_POWER_SIGMA_REL_MAX)) return EMA_E_INVALID_ARG;
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
    if (f < 0.0)
      lo = g;
    else
      hi = g;
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

ema_status ema_power_decay(double gamma, int64_t t, int64_t dt, double *decay) {
  if (decay == NULL || !ema__gamma_ok(gamma) || t < 1 || dt < 1 || dt > t) return EMA_E_INVALID_ARG;
  /* t - dt is exact in integers; at dt == t the base is 0 and the decay 0. */
  *decay = pow((double)(t - dt) / (double)t, gamma + 1.0);
  return EMA_OK;
}
