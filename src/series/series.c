/*
 * src/series/series.c: EMA of a time series with pandas ewm(...).mean()
 * semantics (batch and streaming), the seeds' textbook recursion with and
 * without bias correction, and the synthetic temperature year.
 *
 * The pandas algorithm (pandas/_libs/window/aggregations.pyx, ewm, with
 * normalize=True) keeps two numbers: the running mean `weighted` and the
 * total weight `old_wt` of the values already in it. For each new value:
 * if a mean exists and the value is present (or missing values still count,
 * ignore_na=False), the old weight decays by (1-alpha), or by
 * (1-alpha)^((t_i - t_{i-1})/halflife) with time stamps; a present value then
 * enters with weight 1 (adjust) or alpha (no adjust), and with adjust the
 * weights accumulate, without it they are renormalized to 1. A value equal to
 * the mean leaves the mean alone (pandas does this to keep constant series
 * exact). Before the first present value there is no mean (NaN). This file
 * implements that description step by step in the same floating-point order.
 */
#include "series/series.h"

#include "common/err.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Everything a step needs that does not change along the series. */
typedef struct ewm_params {
  double old_wt_factor; /* 1 - alpha */
  double new_wt;        /* 1 with adjust, alpha without */
  double halflife;      /* with time stamps: the half-life in their unit */
  uint64_t minp;        /* max(min_periods, 1) */
  int adjust;
  int ignore_na;
  int use_deltas; /* time stamps given */
} ewm_params;

/* What a step changes. */
typedef struct ewm_state {
  double weighted; /* running mean; NaN until the first present value */
  double old_wt;   /* weight of the values in the mean */
  double last_time;
  uint64_t nobs;  /* present values seen */
  uint64_t count; /* values seen */
} ewm_state;

struct ema_ewm_stream {
  ewm_params params;
  ewm_state state;
};

/* Write a formatted message to err (if any), truncated and terminated:
   common/err.c's formatter. */
static void set_err(char *err, size_t errcap, const char *fmt, ...) EMA__PRINTF(3, 4);
static void set_err(char *err, size_t errcap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ema__verrf(err, errcap, fmt, ap);
  va_end(ap);
}

static void clear_err(char *err, size_t errcap) {
  if (err != NULL && errcap > 0) {
    err[0] = '\0';
  }
}

static const char *kind_name(ema_ewm_kind kind) {
  switch (kind) {
    case EMA_EWM_COM:
      return "com";
    case EMA_EWM_SPAN:
      return "span";
    case EMA_EWM_HALFLIFE:
      return "halflife";
    case EMA_EWM_ALPHA:
      return "alpha";
  }
  return "?";
}

void ema_ewm_opts_init(ema_ewm_opts *opts) {
  if (opts == NULL) {
    return;
  }
  memset(opts, 0, sizeof *opts);
  opts->kind = EMA_EWM_COM;
  opts->value = NAN;
  opts->adjust = 1;
  opts->ignore_na = 0;
  opts->min_periods = 0;
}

ema_status ema_ewm_opts_set_beta(ema_ewm_opts *opts, double beta, char *err, size_t errcap) {
  if (opts == NULL) {
    set_err(err, errcap, "ema_ewm_opts_set_beta: opts is NULL");
    return EMA_E_INVALID_ARG;
  }
  if (!(beta >= 0.0 && beta < 1.0)) {
    set_err(err, errcap, "beta must satisfy: 0 <= beta < 1 (got %g)", beta);
    return EMA_E_INVALID_ARG;
  }
  opts->kind = EMA_EWM_ALPHA;
  opts->value = 1.0 - beta;
  clear_err(err, errcap);
  return EMA_OK;
}

/* Validate opts and derive the step parameters (no side effect on failure). */
static ema_status make_params(const ema_ewm_opts *opts, int have_times, ewm_params *p, double *alpha_out, char *err,
                              size_t errcap) {
  if (opts == NULL) {
    set_err(err, errcap, "ewm options are NULL (initialize them with ema_ewm_opts_init)");
    return EMA_E_INVALID_ARG;
  }
  for (size_t i = 0; i < sizeof opts->reserved / sizeof opts->reserved[0]; i++) {
    if (opts->reserved[i] != 0) {
      set_err(err, errcap,
              "ewm options have a non-zero reserved field; initialize them with "
              "ema_ewm_opts_init");
      return EMA_E_INVALID_ARG;
    }
  }
  ema_ewm_kind kind = opts->kind;
  double v = opts->value;
  if (kind != EMA_EWM_COM && kind != EMA_EWM_SPAN && kind != EMA_EWM_HALFLIFE && kind != EMA_EWM_ALPHA) {
    set_err(err, errcap, "unknown ewm decay kind %d (use com, span, halflife or alpha)", (int)kind);
    return EMA_E_INVALID_ARG;
  }
  if (isnan(v)) {
    set_err(err, errcap, "Must pass one of com, span, halflife, or alpha (%s is NaN)", kind_name(kind));
    return EMA_E_INVALID_ARG;
  }
  double com = 0.0;
  switch (kind) {
    case EMA_EWM_COM:
      if (v < 0.0) {
        set_err(err, errcap, "com must satisfy: com >= 0 (got %g)", v);
        return EMA_E_INVALID_ARG;
      }
      com = v;
      break;
    case EMA_EWM_SPAN:
      if (v < 1.0) {
        set_err(err, errcap, "span must satisfy: span >= 1 (got %g)", v);
        return EMA_E_INVALID_ARG;
      }
      com = (v - 1.0) / 2.0;
      break;
    case EMA_EWM_HALFLIFE:
      if (v <= 0.0) {
        set_err(err, errcap, "halflife must satisfy: halflife > 0 (got %g)", v);
        return EMA_E_INVALID_ARG;
      }
      if (have_times) {
        com = 1.0; /* pandas: the half-life acts through the time deltas */
      } else {
        double decay = 1.0 - exp(log(0.5) / v);
        com = 1.0 / decay - 1.0;
      }
      break;
    case EMA_EWM_ALPHA:
      if (v <= 0.0 || v > 1.0) {
        set_err(err, errcap, "alpha must satisfy: 0 < alpha <= 1 (got %g)", v);
        return EMA_E_INVALID_ARG;
      }
      com = (1.0 - v) / v;
      break;
  }
  if (have_times && kind != EMA_EWM_HALFLIFE) {
    set_err(err, errcap,
            "with times the decay must be given as a halflife in the times' unit "
            "(got %s)",
            kind_name(kind));
    return EMA_E_INVALID_ARG;
  }
  if (have_times && !opts->adjust) {
    set_err(err, errcap, "times is not supported with adjust=False");
    return EMA_E_INVALID_ARG;
  }
  double alpha = 1.0 / (1.0 + com);
  if (p != NULL) {
    p->old_wt_factor = 1.0 - alpha;
    p->new_wt = opts->adjust ? 1.0 : alpha;
    p->halflife = v;
    p->minp = opts->min_periods > 1 ? (uint64_t)opts->min_periods : 1u;
    p->adjust = opts->adjust != 0;
    p->ignore_na = opts->ignore_na != 0;
    p->use_deltas = have_times != 0;
  }
  if (alpha_out != NULL) {
    *alpha_out = alpha;
  }
  clear_err(err, errcap);
  return EMA_OK;
}

ema_status ema_ewm_check(const ema_ewm_opts *opts, int have_times, double *alpha, char *err, size_t errcap) {
  return make_params(opts, have_times, NULL, alpha, err, errcap);
}

static void state_init(ewm_state *s) {
  s->weighted = NAN;
  s->old_wt = 1.0;
  s->last_time = 0.0;
  s->nobs = 0;
  s->count = 0;
}

/* One value through the pandas recurrence; delta is the elapsed time since
   the previous value divided by the half-life (only read with use_deltas). */
static double ewm_step(const ewm_params *p, ewm_state *s, double cur, double delta) {
  int is_observation = isfinite(cur) != 0;
  s->nobs += (uint64_t)is_observation;
  s->count++;
  if (!isnan(s->weighted)) {
    if (is_observation || !p->ignore_na) {
      if (p->use_deltas) {
        s->old_wt *= pow(p->old_wt_factor, delta);
      } else {
        s->old_wt *= p->old_wt_factor;
      }
      if (is_observation) {
        if (s->weighted != cur) {
          s->weighted = s->old_wt * s->weighted + p->new_wt * cur;
          s->weighted /= (s->old_wt + p->new_wt);
        }
        if (p->adjust) {
          s->old_wt += p->new_wt;
        } else {
          s->old_wt = 1.0;
        }
      }
    }
  } else if (is_observation) {
    s->weighted = cur;
  }
  return s->nobs >= p->minp ? s->weighted : NAN;
}

/* Check time stamps: finite and non-decreasing, also after *prev if given. */
static ema_status check_times(const double *times, size_t n, const double *prev, char *err, size_t errcap) {
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(times[i])) {
      set_err(err, errcap, "times[%zu] is not finite (%g); time stamps must be finite", i, times[i]);
      return EMA_E_INVALID_ARG;
    }
    if (i > 0 && times[i] < times[i - 1]) {
      set_err(err, errcap, "times must be non-decreasing: times[%zu] = %.17g < times[%zu] = %.17g", i, times[i], i - 1,
              times[i - 1]);
      return EMA_E_INVALID_ARG;
    }
  }
  if (prev != NULL && n > 0 && times[0] < *prev) {
    set_err(err, errcap,
            "times must be non-decreasing: times[0] = %.17g is before the last time "
            "pushed, %.17g",
            times[0], *prev);
    return EMA_E_INVALID_ARG;
  }
  return EMA_OK;
}

/* Run a chunk through the recurrence (everything already validated). */
static void run_chunk(const ewm_params *p, ewm_state *s, const double *x, size_t n, const double *times, double *out) {
  for (size_t i = 0; i < n; i++) {
    double delta = 0.0;
    double cur = x[i];
    if (p->use_deltas) {
      if (s->count > 0) {
        delta = (times[i] - s->last_time) / p->halflife;
      }
      s->last_time = times[i];
    }
    out[i] = ewm_step(p, s, cur, delta);
  }
}

ema_status ema_ewm_mean(const ema_ewm_opts *opts, const double *x, size_t n, const double *times, double *out,
                        char *err, size_t errcap) {
  ewm_params p;
  ema_status st = make_params(opts, times != NULL, &p, NULL, err, errcap);
  if (st != EMA_OK) {
    return st;
  }
  if (n == 0) {
    return EMA_OK;
  }
  if (x == NULL || out == NULL) {
    set_err(err, errcap, "ema_ewm_mean: %s is NULL with n = %zu", x == NULL ? "x" : "out", n);
    return EMA_E_INVALID_ARG;
  }
  if (times != NULL) {
    st = check_times(times, n, NULL, err, errcap);
    if (st != EMA_OK) {
      return st;
    }
  }
  ewm_state s;
  state_init(&s);
  run_chunk(&p, &s, x, n, times, out);
  return EMA_OK;
}

ema_status ema_ewm_stream_create(ema_ewm_stream **out, const ema_ewm_opts *opts, int with_times, char *err,
                                 size_t errcap) {
  if (out == NULL) {
    set_err(err, errcap, "ema_ewm_stream_create: out is NULL");
    return EMA_E_INVALID_ARG;
  }
  *out = NULL;
  ewm_params p;
  ema_status st = make_params(opts, with_times, &p, NULL, err, errcap);
  if (st != EMA_OK) {
    return st;
  }
  ema_ewm_stream *s = malloc(sizeof *s);
  if (s == NULL) {
    set_err(err, errcap, "out of memory creating an ewm stream");
    return EMA_E_NOMEM;
  }
  s->params = p;
  state_init(&s->state);
  *out = s;
  return EMA_OK;
}

ema_status ema_ewm_stream_push(ema_ewm_stream *stream, const double *x, size_t n, const double *times, double *out,
                               char *err, size_t errcap) {
  if (stream == NULL) {
    set_err(err, errcap, "ema_ewm_stream_push: stream is NULL");
    return EMA_E_INVALID_ARG;
  }
  if (n == 0) {
    clear_err(err, errcap);
    return EMA_OK;
  }
  if (x == NULL || out == NULL) {
    set_err(err, errcap, "ema_ewm_stream_push: %s is NULL with n = %zu", x == NULL ? "x" : "out", n);
    return EMA_E_INVALID_ARG;
  }
  if (stream->params.use_deltas) {
    if (times == NULL) {
      set_err(err, errcap,
              "ema_ewm_stream_push: the stream was created with times, "
              "but times is NULL");
      return EMA_E_INVALID_ARG;
    }
    ema_status st = check_times(times, n, stream->state.count > 0 ? &stream->state.last_time : NULL, err, errcap);
    if (st != EMA_OK) {
      return st;
    }
  } else if (times != NULL) {
    set_err(err, errcap,
            "ema_ewm_stream_push: times given to a stream created without "
            "times");
    return EMA_E_INVALID_ARG;
  }
  run_chunk(&stream->params, &stream->state, x, n, times, out);
  clear_err(err, errcap);
  return EMA_OK;
}

uint64_t ema_ewm_stream_count(const ema_ewm_stream *stream) { return stream == NULL ? 0 : stream->state.count; }

uint64_t ema_ewm_stream_observations(const ema_ewm_stream *stream) { return stream == NULL ? 0 : stream->state.nobs; }

void ema_ewm_stream_reset(ema_ewm_stream *stream) {
  if (stream != NULL) {
    state_init(&stream->state);
  }
}

void ema_ewm_stream_free(ema_ewm_stream *stream) { free(stream); }

ema_status ema_series_beta(const double *x, size_t n, double beta, int bias_correction, double *out, char *err,
                           size_t errcap) {
  if (!(beta >= 0.0 && beta < 1.0)) {
    set_err(err, errcap, "beta must satisfy: 0 <= beta < 1 (got %g)", beta);
    return EMA_E_INVALID_ARG;
  }
  if (n > 0 && (x == NULL || out == NULL)) {
    set_err(err, errcap, "ema_series_beta: %s is NULL with n = %zu", x == NULL ? "x" : "out", n);
    return EMA_E_INVALID_ARG;
  }
  double v = 0.0;
  double beta_t = 1.0; /* beta^t */
  for (size_t i = 0; i < n; i++) {
    v = beta * v + (1.0 - beta) * x[i];
    beta_t *= beta;
    out[i] = bias_correction ? v / (1.0 - beta_t) : v;
  }
  clear_err(err, errcap);
  return EMA_OK;
}
