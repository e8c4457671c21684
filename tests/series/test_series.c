/*
 * tests/unit/test_series.c: hand-checkable tests of src/series: pandas ewm
 * mean (adjust, ignore_na, missing values, min_periods, time stamps), the
 * seeds' bias-corrected recursion, the streaming form, every refused
 * parameter. The comparison against
 * pandas itself over thousands of random cases is tests/series/.
 */
#include "series/series.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static int close_rel(double got, double want, double tol) {
  if (isnan(want)) {
    return isnan(got);
  }
  if (isnan(got)) {
    return 0;
  }
  double scale = fabs(want) > 1.0 ? fabs(want) : 1.0;
  return fabs(got - want) <= tol * scale;
}

/* Compare out[0..n) with want[0..n) (NaN matches NaN). */
static void check_series(const char *what, const double *got, const double *want, size_t n, double tol) {
  for (size_t i = 0; i < n; i++) {
    CHECK_MSG(close_rel(got[i], want[i], tol), "%s: [%zu] got %.17g want %.17g", what, i, got[i], want[i]);
  }
}

static ema_ewm_opts opts_of(ema_ewm_kind kind, double value, int adjust, int ignore_na, size_t min_periods) {
  ema_ewm_opts o;
  ema_ewm_opts_init(&o);
  o.kind = kind;
  o.value = value;
  o.adjust = adjust;
  o.ignore_na = ignore_na;
  o.min_periods = min_periods;
  return o;
}

/* pandas' own docstring example, [0, 1, 2, NaN, 4] with com = 0.5, so
   alpha = 2/3 and 1 - alpha = 1/3; every value is a small fraction. */
static void test_pandas_docstring_example(void) {
  const double x[5] = {0, 1, 2, NAN, 4};
  double out[5];
  ema_ewm_opts o = opts_of(EMA_EWM_COM, 0.5, 1, 0, 0);

  /* adjust: y2 = (2 + 1/3 + 0/9) / (1 + 1/3 + 1/9) = 21/13; y4 keeps the
     absolute positions: (4 + 2/9 + 1/27 + 0) / (1 + 1/9 + 1/27 + 1/81) = 345/94 */
  const double adj[5] = {0, 0.75, 21.0 / 13, 21.0 / 13, 345.0 / 94};
  CHECK(ema_ewm_mean(&o, x, 5, NULL, out, NULL, 0) == EMA_OK);
  check_series("com=0.5 adjust", out, adj, 5, 1e-15);

  /* alpha given directly: the same thing */
  o = opts_of(EMA_EWM_ALPHA, 2.0 / 3, 1, 0, 0);
  CHECK(ema_ewm_mean(&o, x, 5, NULL, out, NULL, 0) == EMA_OK);
  check_series("alpha=2/3 adjust", out, adj, 5, 1e-15);

  /* ignore_na: the NaN does not age x0..x2: (4 + 2/3 + 1/9 + 0) /
     (1 + 1/3 + 1/9 + 1/27) = 129/40 */
  o = opts_of(EMA_EWM_COM, 0.5, 1, 1, 0);
  const double ign[5] = {0, 0.75, 21.0 / 13, 21.0 / 13, 129.0 / 40};
  CHECK(ema_ewm_mean(&o, x, 5, NULL, out, NULL, 0) == EMA_OK);
  check_series("com=0.5 adjust ignore_na", out, ign, 5, 1e-15);

  /* no adjust: y1 = 2/3, y2 = 1/3 * 2/3 + 2/3 * 2 = 14/9; y4: the previous
     mean has weight (1/3)^2 against 2/3: (14/81 + 8/3) / (1/9 + 2/3) = 230/63 */
  o = opts_of(EMA_EWM_COM, 0.5, 0, 0, 0);
  const double noadj[5] = {0, 2.0 / 3, 14.0 / 9, 14.0 / 9, 230.0 / 63};
  CHECK(ema_ewm_mean(&o, x, 5, NULL, out, NULL, 0) == EMA_OK);
  check_series("com=0.5 no adjust", out, noadj, 5, 1e-15);

  /* no adjust, ignore_na: y4 = 1/3 * 14/9 + 2/3 * 4 = 86/27 */
  o = opts_of(EMA_EWM_COM, 0.5, 0, 1, 0);
  const double noadj_ign[5] = {0, 2.0 / 3, 14.0 / 9, 14.0 / 9, 86.0 / 27};
  CHECK(ema_ewm_mean(&o, x, 5, NULL, out, NULL, 0) == EMA_OK);
  check_series("com=0.5 no adjust ignore_na", out, noadj_ign, 5, 1e-15);

  /* times (days 0, 2, 9, 14, 16) with a half-life of 4 days: x1 = 1 against
     x0 = 0 aged 2 days, weight 0.5^(1/2): y1 = 1 / (1 + sqrt(0.5)) */
  const double t[5] = {0, 2, 9, 14, 16};
  o = opts_of(EMA_EWM_HALFLIFE, 4.0, 1, 0, 0);
  CHECK(ema_ewm_mean(&o, x, 5, t, out, NULL, 0) == EMA_OK);
  /* weights 0.5^(age / 4 days) */
  double h74 = pow(0.5, 7.0 / 4), h94 = pow(0.5, 9.0 / 4), h144 = pow(0.5, 14.0 / 4);
  double y2 = (2 + h74 * 1) / (1 + h74 + h94);
  double y4 = (4 + h74 * 2 + h144 * 1) / (1 + h74 + h144 + pow(0.5, 4));
  const double tw[5] = {0, 1 / (1 + sqrt(0.5)), y2, y2, y4};
  check_series("halflife=4 days, times", out, tw, 5, 1e-14);
  /* what pandas 1.5.3 prints, repr() digits */
  CHECK(close_rel(out[1], 0.585786437626905, 1e-15));
  CHECK(close_rel(out[2], 1.52388878049859, 1e-15));
  CHECK(close_rel(out[4], 3.2336858398518338, 1e-15));
}

/* A year of temperature-like data without randomness: a seasonal cosine
   plus a fast irregular wobble (the tool's noisy synthetic year lives in
   tools/ema/temperatures.c now). */
static void seasonal_series(double *x, size_t n) {
  for (size_t d = 0; d < n; d++)
    x[d] = 11.0 - 7.0 * cos(6.283185307179586 * ((double)d - 15.0) / 365.0) +
           3.0 * sin(0.37 * (double)d) * cos(1.3 * (double)d);
}

/* The seeds: v_t = beta v_{t-1} + (1-beta) theta_t from v_0 = 0, corrected
   by 1/(1 - beta^t). Unrolled, v_t = (1-beta) sum_{i=1..t} beta^(t-i) theta_i,
   and 1 - beta^t = (1-beta) sum_{k=0..t-1} beta^k, so the corrected value is
   sum beta^(t-i) theta_i / sum beta^(t-i): exactly pandas' adjust=True mean
   with weights (1-alpha)^age, alpha = 1 - beta. Without correction the
   curve starts at (1-beta) theta_1, far below the data. */
static void test_seed_bias_correction(void) {
  enum { N = 365 };
  double temp[N], corrected[N], raw[N], pandas_adj[N], pandas_noadj[N];
  seasonal_series(temp, N);
  const double betas[3] = {0.5, 0.9, 0.98};
  for (size_t b = 0; b < 3; b++) {
    double beta = betas[b];
    CHECK(ema_series_beta(temp, N, beta, 1, corrected, NULL, 0) == EMA_OK);
    CHECK(ema_series_beta(temp, N, beta, 0, raw, NULL, 0) == EMA_OK);
    ema_ewm_opts o;
    ema_ewm_opts_init(&o);
    CHECK(ema_ewm_opts_set_beta(&o, beta, NULL, 0) == EMA_OK);
    CHECK(o.kind == EMA_EWM_ALPHA && o.value == 1.0 - beta);
    CHECK(ema_ewm_mean(&o, temp, N, NULL, pandas_adj, NULL, 0) == EMA_OK);
    check_series("bias-corrected == adjust=True", corrected, pandas_adj, N, 1e-12);

    /* uncorrected: starts at (1-beta) * theta_1; corrected starts at theta_1 */
    CHECK(close_rel(raw[0], (1 - beta) * temp[0], 1e-15));
    CHECK(corrected[0] == temp[0]);
    /* by hand for t = 2: (beta(1-beta)x1 + (1-beta)x2) / (1 - beta^2) */
    CHECK(close_rel(corrected[1], (beta * temp[0] + temp[1]) / (1 + beta), 1e-14));

    /* no adjust is the plain recursion started at the first value */
    o.adjust = 0;
    CHECK(ema_ewm_mean(&o, temp, N, NULL, pandas_noadj, NULL, 0) == EMA_OK);
    double y = temp[0];
    for (size_t i = 0; i < N; i++) {
      if (i > 0) {
        y = beta * y + (1 - beta) * temp[i];
      }
      CHECK_MSG(close_rel(pandas_noadj[i], y, 1e-12), "beta %g no adjust [%zu]: %.17g vs %.17g", beta, i,
                pandas_noadj[i], y);
    }
    /* the corrected and uncorrected curves meet once beta^t is negligible */
    CHECK(fabs(raw[N - 1] - corrected[N - 1]) <= 1e-9 * fabs(corrected[N - 1]) + 1e-12 || beta == 0.98);
  }
  /* beta = 0.98: after 365 days 0.98^365 = 6e-4 still shows */
  CHECK(ema_series_beta(temp, N, 0.98, 0, raw, NULL, 0) == EMA_OK);
  CHECK(ema_series_beta(temp, N, 0.98, 1, corrected, NULL, 0) == EMA_OK);
  CHECK(close_rel(raw[N - 1], corrected[N - 1] * (1 - pow(0.98, N)), 1e-12));

  /* beta = 0 copies the data; in place works */
  double copy[N];
  memcpy(copy, temp, sizeof copy);
  CHECK(ema_series_beta(copy, N, 0.0, 1, copy, NULL, 0) == EMA_OK);
  CHECK(memcmp(copy, temp, sizeof copy) == 0);
  CHECK(ema_series_beta(NULL, 0, 0.5, 1, NULL, NULL, 0) == EMA_OK);
}

static void test_missing_values(void) {
  double out[8];
  /* [1, NaN, NaN, 3], alpha = 1/2 */
  const double x[4] = {1, NAN, NAN, 3};
  struct {
    int adjust, ignore_na;
    double last;
  } cases[4] = {
      {1, 0, (3 + 0.125) / 1.125}, /* x0 aged three steps: weight 1/8 */
      {1, 1, (3 + 0.5) / 1.5},     /* x0 aged one step */
      {0, 0, (0.125 * 1 + 0.5 * 3) / (0.125 + 0.5)},
      {0, 1, 0.5 * 1 + 0.5 * 3},
  };
  for (size_t c = 0; c < 4; c++) {
    ema_ewm_opts o = opts_of(EMA_EWM_ALPHA, 0.5, cases[c].adjust, cases[c].ignore_na, 0);
    CHECK(ema_ewm_mean(&o, x, 4, NULL, out, NULL, 0) == EMA_OK);
    const double want[4] = {1, 1, 1, cases[c].last};
    check_series("[1,NaN,NaN,3]", out, want, 4, 1e-15);
  }

  /* leading NaN: nothing until the first value, which is taken as is */
  const double lead[5] = {NAN, NAN, 5, NAN, 7};
  ema_ewm_opts o = opts_of(EMA_EWM_ALPHA, 0.5, 1, 0, 0);
  CHECK(ema_ewm_mean(&o, lead, 5, NULL, out, NULL, 0) == EMA_OK);
  const double lead_want[5] = {NAN, NAN, 5, 5, (7 + 0.25 * 5) / 1.25};
  check_series("leading NaN", out, lead_want, 5, 1e-15);

  /* all missing, infinities included (pandas turns them into NaN) */
  const double none[4] = {NAN, INFINITY, -INFINITY, NAN};
  CHECK(ema_ewm_mean(&o, none, 4, NULL, out, NULL, 0) == EMA_OK);
  for (size_t i = 0; i < 4; i++) {
    CHECK(isnan(out[i]));
  }
  const double inf_mid[3] = {2, INFINITY, 4};
  const double two_nan_mid[3] = {2, NAN, 4};
  double out2[3];
  CHECK(ema_ewm_mean(&o, inf_mid, 3, NULL, out, NULL, 0) == EMA_OK);
  CHECK(ema_ewm_mean(&o, two_nan_mid, 3, NULL, out2, NULL, 0) == EMA_OK);
  CHECK(memcmp(out, out2, sizeof out2) == 0);

  /* alpha = 1: the last present value, carried over gaps */
  o = opts_of(EMA_EWM_ALPHA, 1.0, 1, 0, 0);
  const double a1[5] = {NAN, 1, NAN, 3, 4};
  const double a1_want[5] = {NAN, 1, 1, 3, 4};
  CHECK(ema_ewm_mean(&o, a1, 5, NULL, out, NULL, 0) == EMA_OK);
  check_series("alpha=1", out, a1_want, 5, 0);

  /* com = +inf (alpha 0): adjust gives the running plain mean */
  o = opts_of(EMA_EWM_COM, INFINITY, 1, 0, 0);
  const double m[4] = {1, 2, NAN, 6};
  const double m_want[4] = {1, 1.5, 1.5, 3};
  CHECK(ema_ewm_mean(&o, m, 4, NULL, out, NULL, 0) == EMA_OK);
  check_series("com=inf", out, m_want, 4, 1e-15);
  o.kind = EMA_EWM_SPAN;
  CHECK(ema_ewm_mean(&o, m, 4, NULL, out, NULL, 0) == EMA_OK);
  check_series("span=inf", out, m_want, 4, 1e-15);
  o.kind = EMA_EWM_HALFLIFE;
  CHECK(ema_ewm_mean(&o, m, 4, NULL, out, NULL, 0) == EMA_OK);
  check_series("halflife=inf", out, m_want, 4, 1e-15);

  /* a constant series stays exactly constant (pandas skips the update when
     the value equals the mean) */
  double c[8];
  for (size_t i = 0; i < 8; i++) {
    c[i] = i == 3 ? NAN : 0.1;
  }
  o = opts_of(EMA_EWM_SPAN, 3.7, 1, 0, 0);
  CHECK(ema_ewm_mean(&o, c, 8, NULL, out, NULL, 0) == EMA_OK);
  for (size_t i = 0; i < 8; i++) {
    CHECK(out[i] == 0.1);
  }

  /* in place */
  double inplace[4] = {1, NAN, NAN, 3};
  o = opts_of(EMA_EWM_ALPHA, 0.5, 1, 0, 0);
  CHECK(ema_ewm_mean(&o, inplace, 4, NULL, inplace, NULL, 0) == EMA_OK);
  CHECK(close_rel(inplace[3], (3 + 0.125) / 1.125, 1e-15) && inplace[1] == 1);

  /* length 0 and 1 */
  CHECK(ema_ewm_mean(&o, NULL, 0, NULL, NULL, NULL, 0) == EMA_OK);
  const double one = 42;
  CHECK(ema_ewm_mean(&o, &one, 1, NULL, out, NULL, 0) == EMA_OK && out[0] == 42);
}

static void test_min_periods(void) {
  const double x[6] = {NAN, 1, NAN, 2, 3, NAN};
  double out[6], ref[6];
  ema_ewm_opts o = opts_of(EMA_EWM_ALPHA, 0.5, 1, 0, 0);
  CHECK(ema_ewm_mean(&o, x, 6, NULL, ref, NULL, 0) == EMA_OK);
  /* 0 acts as 1 */
  o.min_periods = 1;
  CHECK(ema_ewm_mean(&o, x, 6, NULL, out, NULL, 0) == EMA_OK);
  CHECK(memcmp(out, ref, sizeof out) == 0);
  CHECK(isnan(ref[0]) && ref[1] == 1 && ref[2] == 1);
  /* 2: NaN until the second present value (index 3); the NaN at the end
     still carries the mean */
  o.min_periods = 2;
  CHECK(ema_ewm_mean(&o, x, 6, NULL, out, NULL, 0) == EMA_OK);
  CHECK(isnan(out[0]) && isnan(out[1]) && isnan(out[2]));
  CHECK(out[3] == ref[3] && out[4] == ref[4] && out[5] == ref[5]);
  /* min_periods counts present values, not positions */
  o.min_periods = 3;
  CHECK(ema_ewm_mean(&o, x, 6, NULL, out, NULL, 0) == EMA_OK);
  CHECK(isnan(out[3]) && out[4] == ref[4] && out[5] == ref[5]);
  /* more than there are: all NaN */
  o.min_periods = 4;
  CHECK(ema_ewm_mean(&o, x, 6, NULL, out, NULL, 0) == EMA_OK);
  for (size_t i = 0; i < 6; i++) {
    CHECK(isnan(out[i]));
  }
  /* the hidden mean keeps running while it is not shown */
  o.min_periods = 3;
  o.ignore_na = 1;
  o.adjust = 0;
  const double y[4] = {4, 8, NAN, 2};
  CHECK(ema_ewm_mean(&o, y, 4, NULL, out, NULL, 0) == EMA_OK);
  CHECK(isnan(out[0]) && isnan(out[1]) && isnan(out[2]) && out[3] == 4);
}

static void test_times(void) {
  double out[6], ref[6];
  const double x[6] = {1, 2, NAN, 4, 5, 6};
  /* equally spaced stamps one half-life... */
  const double t_even[6] = {0, 10, 20, 30, 40, 50};
  ema_ewm_opts o = opts_of(EMA_EWM_HALFLIFE, 10, 1, 0, 0);
  CHECK(ema_ewm_mean(&o, x, 6, t_even, out, NULL, 0) == EMA_OK);
  /* ... equal alpha = 1/2 without stamps */
  ema_ewm_opts a = opts_of(EMA_EWM_ALPHA, 0.5, 1, 0, 0);
  CHECK(ema_ewm_mean(&a, x, 6, NULL, ref, NULL, 0) == EMA_OK);
  check_series("times one half-life apart", out, ref, 6, 1e-15);

  /* repeated stamps: no decay between them; two values at the same time
     weigh as a plain mean */
  const double t_rep[3] = {5, 5, 5};
  const double xr[3] = {1, 2, 6};
  CHECK(ema_ewm_mean(&o, xr, 3, t_rep, out, NULL, 0) == EMA_OK);
  const double rep_want[3] = {1, 1.5, 3};
  check_series("repeated times", out, rep_want, 3, 1e-15);

  /* pandas with ignore_na and times: the missing value's step is dropped
     (only t3 - t2 ages the old weight) */
  const double t_gap[3] = {0, 10, 20};
  const double xg[3] = {0, NAN, 1};
  o.ignore_na = 1;
  CHECK(ema_ewm_mean(&o, xg, 3, t_gap, out, NULL, 0) == EMA_OK);
  CHECK(close_rel(out[2], 1 / 1.5, 1e-15));
  o.ignore_na = 0;
  CHECK(ema_ewm_mean(&o, xg, 3, t_gap, out, NULL, 0) == EMA_OK);
  CHECK(close_rel(out[2], 1 / 1.25, 1e-15));

  /* alpha reported by ema_ewm_check */
  double alpha = 0;
  CHECK(ema_ewm_check(&o, 1, &alpha, NULL, 0) == EMA_OK && alpha == 0.5);
  ema_ewm_opts s = opts_of(EMA_EWM_SPAN, 3, 1, 0, 0);
  CHECK(ema_ewm_check(&s, 0, &alpha, NULL, 0) == EMA_OK && alpha == 0.5);
  s = opts_of(EMA_EWM_HALFLIFE, 1, 1, 0, 0);
  CHECK(ema_ewm_check(&s, 0, &alpha, NULL, 0) == EMA_OK && close_rel(alpha, 0.5, 1e-15));
}

/* Expect EMA_E_INVALID_ARG, an error text containing `needle`, and `out`
   untouched (it was filled with the sentinel -7). */
static void expect_refused(const char *what, ema_status st, const char *err, const char *needle, const double *out,
                           size_t n) {
  CHECK_MSG(st == EMA_E_INVALID_ARG, "%s: status %d", what, (int)st);
  CHECK_MSG(strstr(err, needle) != NULL, "%s: error \"%s\" lacks \"%s\"", what, err, needle);
  for (size_t i = 0; i < n; i++) {
    CHECK_MSG(out[i] == -7.0, "%s: out[%zu] was written", what, i);
  }
}

static void test_invalid_parameters(void) {
  const double x[3] = {1, 2, 3};
  double out[3] = {-7, -7, -7};
  char err[256];
  const double t_ok[3] = {0, 1, 2};
  struct {
    ema_ewm_kind kind;
    double value;
    const char *needle;
  } bad[] = {
      {EMA_EWM_COM, -1e-300, "com must satisfy: com >= 0"},
      {EMA_EWM_COM, -INFINITY, "com must satisfy"},
      {EMA_EWM_SPAN, 0.999, "span must satisfy: span >= 1"},
      {EMA_EWM_SPAN, -3, "span must satisfy"},
      {EMA_EWM_HALFLIFE, 0, "halflife must satisfy: halflife > 0"},
      {EMA_EWM_HALFLIFE, -2, "halflife must satisfy"},
      {EMA_EWM_ALPHA, 0, "alpha must satisfy: 0 < alpha <= 1"},
      {EMA_EWM_ALPHA, -0.5, "alpha must satisfy"},
      {EMA_EWM_ALPHA, 1.0000001, "alpha must satisfy"},
      {EMA_EWM_ALPHA, INFINITY, "alpha must satisfy"},
      {EMA_EWM_COM, NAN, "Must pass one of com, span, halflife, or alpha"},
      {EMA_EWM_ALPHA, NAN, "Must pass one of"},
      {(ema_ewm_kind)7, 1.0, "unknown ewm decay kind 7"},
  };
  for (size_t i = 0; i < N_OF(bad); i++) {
    ema_ewm_opts o = opts_of(bad[i].kind, bad[i].value, 1, 0, 0);
    strcpy(err, "untouched");
    expect_refused(bad[i].needle, ema_ewm_mean(&o, x, 3, NULL, out, err, sizeof err), err, bad[i].needle, out, 3);
    strcpy(err, "untouched");
    expect_refused("check", ema_ewm_check(&o, 0, NULL, err, sizeof err), err, bad[i].needle, out, 0);
    ema_ewm_stream *s = (ema_ewm_stream *)&o; /* must be overwritten with NULL */
    CHECK(ema_ewm_stream_create(&s, &o, 0, NULL, 0) == EMA_E_INVALID_ARG && s == NULL);
  }
  /* the boundaries themselves are fine */
  ema_ewm_opts good[] = {opts_of(EMA_EWM_COM, 0, 1, 0, 0), opts_of(EMA_EWM_SPAN, 1, 1, 0, 0),
                         opts_of(EMA_EWM_ALPHA, 1, 0, 0, 0), opts_of(EMA_EWM_HALFLIFE, 1e-300, 1, 0, 0),
                         opts_of(EMA_EWM_ALPHA, 5e-324, 1, 1, 9)};
  for (size_t i = 0; i < N_OF(good); i++) {
    double o2[3];
    CHECK_MSG(ema_ewm_mean(&good[i], x, 3, NULL, o2, err, sizeof err) == EMA_OK, "good %zu: %s", i, err);
    CHECK(err[0] == '\0');
  }

  ema_ewm_opts o = opts_of(EMA_EWM_ALPHA, 0.5, 1, 0, 0);
  /* NULL pointers */
  strcpy(err, "untouched");
  expect_refused("NULL opts", ema_ewm_mean(NULL, x, 3, NULL, out, err, sizeof err), err, "options are NULL", out, 3);
  expect_refused("NULL x", ema_ewm_mean(&o, NULL, 3, NULL, out, err, sizeof err), err, "x is NULL", out, 3);
  expect_refused("NULL out", ema_ewm_mean(&o, x, 3, NULL, NULL, err, sizeof err), err, "out is NULL", out, 0);
  expect_refused("check NULL", ema_ewm_check(NULL, 0, NULL, err, sizeof err), err, "options are NULL", out, 0);
  /* reserved words */
  o.reserved[2] = 1;
  expect_refused("reserved", ema_ewm_mean(&o, x, 3, NULL, out, err, sizeof err), err, "reserved", out, 3);
  o.reserved[2] = 0;

  /* times: only a half-life, only with adjust, finite, non-decreasing */
  expect_refused("times + alpha", ema_ewm_mean(&o, x, 3, t_ok, out, err, sizeof err), err,
                 "halflife in the times' unit", out, 3);
  ema_ewm_opts h = opts_of(EMA_EWM_HALFLIFE, 1, 0, 0, 0);
  expect_refused("times + no adjust", ema_ewm_mean(&h, x, 3, t_ok, out, err, sizeof err), err,
                 "times is not supported with adjust=False", out, 3);
  h.adjust = 1;
  const double t_down[3] = {0, 2, 1};
  expect_refused("times decreasing", ema_ewm_mean(&h, x, 3, t_down, out, err, sizeof err), err,
                 "times must be non-decreasing: times[2]", out, 3);
  const double t_nan[3] = {0, NAN, 1};
  expect_refused("times NaN", ema_ewm_mean(&h, x, 3, t_nan, out, err, sizeof err), err, "times[1] is not finite", out,
                 3);
  const double t_inf[3] = {0, 1, INFINITY};
  expect_refused("times inf", ema_ewm_mean(&h, x, 3, t_inf, out, err, sizeof err), err, "times[2] is not finite", out,
                 3);
  h.value = 0;
  expect_refused("times halflife 0", ema_ewm_mean(&h, x, 3, t_ok, out, err, sizeof err), err, "halflife must satisfy",
                 out, 3);

  /* beta */
  ema_ewm_opts before = opts_of(EMA_EWM_COM, 3, 1, 0, 0), b = before;
  const double bad_beta[] = {1.0, -0.01, NAN, INFINITY, 1.5};
  for (size_t i = 0; i < N_OF(bad_beta); i++) {
    expect_refused("set_beta", ema_ewm_opts_set_beta(&b, bad_beta[i], err, sizeof err), err,
                   "beta must satisfy: 0 <= beta < 1", out, 0);
    CHECK(memcmp(&b, &before, sizeof b) == 0);
    expect_refused("series_beta", ema_series_beta(x, 3, bad_beta[i], 1, out, err, sizeof err), err, "beta must satisfy",
                   out, 3);
  }
  expect_refused("set_beta NULL", ema_ewm_opts_set_beta(NULL, 0.5, err, sizeof err), err, "opts is NULL", out, 0);
  expect_refused("series_beta NULL", ema_series_beta(NULL, 3, 0.5, 1, out, err, sizeof err), err, "x is NULL", out, 3);

  /* err buffer: truncated and terminated; NULL and 0 are fine */
  char small[8];
  memset(small, 'x', sizeof small);
  CHECK(ema_ewm_mean(NULL, x, 3, NULL, out, small, sizeof small) == EMA_E_INVALID_ARG);
  CHECK(small[7] == '\0' && strlen(small) == 7);
  CHECK(ema_ewm_mean(NULL, x, 3, NULL, out, NULL, 100) == EMA_E_INVALID_ARG);
  small[0] = 'q';
  CHECK(ema_ewm_mean(NULL, x, 3, NULL, out, small, 0) == EMA_E_INVALID_ARG && small[0] == 'q');

  /* defaults */
  ema_ewm_opts d;
  memset(&d, 0x5a, sizeof d);
  ema_ewm_opts_init(&d);
  CHECK(d.kind == EMA_EWM_COM && isnan(d.value) && d.adjust == 1 && d.ignore_na == 0 && d.min_periods == 0);
  for (size_t i = 0; i < N_OF(d.reserved); i++) {
    CHECK(d.reserved[i] == 0);
  }
  ema_ewm_opts_init(NULL);
}

/* Deterministic xorshift for the stream test's chunk sizes. */
static uint64_t next_rand(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void test_stream(void) {
  enum { N = 500 };
  double x[N], t[N], batch[N], streamed[N];
  uint64_t r = 88172645463325252u;
  double now = 0;
  for (size_t i = 0; i < N; i++) {
    uint64_t u = next_rand(&r);
    x[i] = (u % 7 == 0) ? NAN : (double)(u % 1000) / 10.0;
    now += (double)(next_rand(&r) % 4); /* repeated stamps included */
    t[i] = now;
  }
  for (int with_times = 0; with_times <= 1; with_times++) {
    for (int variant = 0; variant < 4; variant++) {
      ema_ewm_opts o =
          opts_of(with_times ? EMA_EWM_HALFLIFE : EMA_EWM_SPAN, 7.5, with_times ? 1 : variant & 1, variant >> 1, 3);
      const double *tt = with_times ? t : NULL;
      CHECK(ema_ewm_mean(&o, x, N, tt, batch, NULL, 0) == EMA_OK);
      ema_ewm_stream *s = NULL;
      CHECK(ema_ewm_stream_create(&s, &o, with_times, NULL, 0) == EMA_OK && s != NULL);
      for (int round = 0; round < 2; round++) {
        size_t pos = 0;
        while (pos < N) {
          size_t len = (size_t)(next_rand(&r) % 40);
          if (len > N - pos) {
            len = N - pos;
          }
          CHECK(ema_ewm_stream_push(s, x + pos, len, tt ? tt + pos : NULL, streamed + pos, NULL, 0) == EMA_OK);
          pos += len;
        }
        CHECK(memcmp(batch, streamed, sizeof batch) == 0);
        CHECK(ema_ewm_stream_count(s) == N);
        ema_ewm_stream_reset(s);
        CHECK(ema_ewm_stream_count(s) == 0 && ema_ewm_stream_observations(s) == 0);
      }
      ema_ewm_stream_free(s);
    }
  }

  /* a failed push changes nothing */
  ema_ewm_opts o = opts_of(EMA_EWM_HALFLIFE, 2, 1, 0, 0);
  ema_ewm_stream *s = NULL;
  char err[200];
  CHECK(ema_ewm_stream_create(&s, &o, 1, err, sizeof err) == EMA_OK);
  double out[3] = {-7, -7, -7};
  const double xs[3] = {1, NAN, 3}, t1[3] = {0, 1, 5}, t_back[3] = {4, 6, 7};
  CHECK(ema_ewm_stream_push(s, xs, 3, t1, out, err, sizeof err) == EMA_OK);
  CHECK(ema_ewm_stream_count(s) == 3 && ema_ewm_stream_observations(s) == 2);
  double keep[3];
  memcpy(keep, out, sizeof keep);
  expect_refused("push back in time", ema_ewm_stream_push(s, xs, 3, t_back, out, err, sizeof err), err,
                 "before the last time pushed", out, 0);
  CHECK(memcmp(keep, out, sizeof keep) == 0 && ema_ewm_stream_count(s) == 3);
  double o1;
  expect_refused("push no times", ema_ewm_stream_push(s, xs, 1, NULL, &o1, err, sizeof err), err, "times is NULL", out,
                 0);
  CHECK(ema_ewm_stream_push(s, xs, 0, NULL, NULL, NULL, 0) == EMA_OK);
  /* continuing equals the batch over everything */
  const double xa[4] = {1, NAN, 3, 8}, ta[4] = {0, 1, 5, 5};
  double all[4], last;
  CHECK(ema_ewm_stream_push(s, xa + 3, 1, ta + 3, &last, NULL, 0) == EMA_OK);
  CHECK(ema_ewm_mean(&o, xa, 4, ta, all, NULL, 0) == EMA_OK && all[3] == last);
  ema_ewm_stream_free(s);
  ema_ewm_stream_free(NULL);

  o = opts_of(EMA_EWM_COM, 1, 1, 0, 0);
  CHECK(ema_ewm_stream_create(&s, &o, 0, NULL, 0) == EMA_OK);
  expect_refused("push times to a stream without", ema_ewm_stream_push(s, xs, 3, t1, out, err, sizeof err), err,
                 "created without times", out, 0);
  expect_refused("push NULL x", ema_ewm_stream_push(s, NULL, 3, NULL, out, err, sizeof err), err, "x is NULL", out, 0);
  expect_refused("push NULL stream", ema_ewm_stream_push(NULL, xs, 3, NULL, out, err, sizeof err), err,
                 "stream is NULL", out, 0);
  CHECK(ema_ewm_stream_count(NULL) == 0 && ema_ewm_stream_observations(NULL) == 0);
  ema_ewm_stream_reset(NULL);
  ema_ewm_stream_free(s);
  CHECK(ema_ewm_stream_create(NULL, &o, 0, err, sizeof err) == EMA_E_INVALID_ARG);
  s = (ema_ewm_stream *)&o;
  CHECK(ema_ewm_stream_create(&s, NULL, 0, err, sizeof err) == EMA_E_INVALID_ARG && s == NULL);
  CHECK(ema_ewm_stream_create(&s, &o, 1, err, sizeof err) == EMA_E_INVALID_ARG && s == NULL);
}

int main(void) {
  test_pandas_docstring_example();
  test_seed_bias_correction();
  test_missing_values();
  test_min_periods();
  test_times();
  test_invalid_parameters();
  test_stream();
  return check_report("test_series");
}
