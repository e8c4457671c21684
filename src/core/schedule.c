/*
 * Decay schedules: the decay of one update covering the training steps
 * (from, to], as the product of the per-step decays, in float64.
 *
 *   constant     d per step                       -> d^(to-from)
 *   inv_power    1 - (1 + t/inv_gamma)^-power,    clamped to [min_decay, decay],
 *                t = step - update_after_step - 1, 0 when t <= 0 (timm, diffusers)
 *   power        (1 - 1/s)^(gamma+1) per step s   -> (from/to)^(gamma+1) (Karras et al.)
 *   halflife     0.5^(1/h) per step               -> 0.5^((to-from)/h)
 *
 * Any step s <= update_after_step has decay 0 (the update copies the model).
 */
#include <math.h>
#include <string.h>

#include "internal.h"

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
    case EMA_SCHEDULE_CONSTANT: d = pow(s->decay, (double)dt); break;
    case EMA_SCHEDULE_HALFLIFE: d = exp2(-(double)dt / s->halflife); break;
    case EMA_SCHEDULE_POWER: {
      double g = ema__schedule_gamma(s);
      if (isnan(g)) return EMA_E_INVALID_ARG;
      /* (1 - dt/to)^(g+1) = (from/to)^(g+1): the per-step factors telescope */
      d = from == 0 ? 0.0 : pow((double)from / (double)to, g + 1.0);
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
