/*
 * ema/series.h: EMA of data series (experimental: names and signatures may
 * still change before 1.0).
 */
#ifndef EMA_SERIES_H
#define EMA_SERIES_H

#include "ema/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Exponential moving averages of a time series, with the semantics of
 * pandas' Series.ewm(...).mean(), plus the seeds' textbook recursion and a
 * built-in synthetic year of daily temperatures (src/series/).
 *
 * Conventions of this module:
 *  - Every function that can fail returns an ema_status: EMA_OK, or
 *    EMA_E_INVALID_ARG for a bad parameter, EMA_E_NOMEM when an allocation
 *    fails. A call that fails writes nothing to its outputs (parameters and
 *    every time stamp are validated before the first result is written).
 *  - err/errcap: optional caller buffer for one English sentence that says
 *    what was wrong (the wording follows pandas' ValueError texts). err may be
 *    NULL (then errcap is ignored); the text is truncated to errcap-1 bytes and
 *    always NUL-terminated when errcap > 0. On success err receives "".
 *  - All arrays are borrowed: read (or written) during the call only, never
 *    kept. out may be the same pointer as x (in place); otherwise out must not
 *    overlap x or times.
 *  - Values that are NaN or +-infinity are "missing" (pandas turns infinities
 *    into NaN before it averages). They are never averaged.
 *  - Arithmetic is IEEE double in the same order as pandas' Cython kernel
 *    (pandas/_libs/window/aggregations.pyx, function ewm), so results agree
 *    with pandas to the last bit or within a few ulps.
 *  - Thread-safety: no global state. Functions may be called from several
 *    threads at once; one ema_ewm_stream may be used by one thread at a time.
 *
 * Since 0.1.0.
 */

/* ------------------------------------------------------------------------ */
/* pandas ewm(...).mean()                                                    */
/* ------------------------------------------------------------------------ */

/* How ema_ewm_opts.value specifies the decay; exactly one is used, as pandas
   takes exactly one of com=, span=, halflife=, alpha=. Values are frozen.
   Each is turned into a centre of mass c, and the smoothing factor is
   alpha = 1/(1+c), computed in the same steps as pandas. */
typedef enum ema_ewm_kind {
  EMA_EWM_COM = 0,      /* c = value; value >= 0 */
  EMA_EWM_SPAN = 1,     /* c = (value-1)/2; value >= 1 */
  EMA_EWM_HALFLIFE = 2, /* c = 1/(1-exp(log(0.5)/value)) - 1; value > 0. With
                           time stamps: the half-life in the times' unit */
  EMA_EWM_ALPHA = 3     /* c = (1-value)/value; 0 < value <= 1 */
} ema_ewm_kind;

/* Options of ema_ewm_mean() and ema_ewm_stream_create(). Always start from
   ema_ewm_opts_init(), then set fields: future versions give meaning to the
   reserved words, and a non-zero reserved word is refused today.
   +infinity is accepted where pandas accepts it (com, span, halflife):
   alpha is then 0 and adjust=1 gives the running plain mean. NaN is refused
   (pandas silently returns NaN-riddled results for it). */
typedef struct ema_ewm_opts {
  ema_ewm_kind kind;    /* default EMA_EWM_COM */
  double value;         /* default NaN: "not set", refused until set */
  int adjust;           /* default 1: pandas adjust=True (weights (1-alpha)^i,
                           divided by their sum: the bias-corrected average);
                           0: y_0 = x_0, y_t = (1-alpha) y_{t-1} + alpha x_t */
  int ignore_na;        /* default 0: missing values still age the older
                           weights (absolute positions); 1: missing values are
                           skipped as if absent (relative positions) */
  size_t min_periods;   /* default 0; results stay NaN until this many
                           non-missing values were seen. 0 acts as 1 (pandas:
                           max(min_periods, 1)), so a result is NaN until the
                           first non-missing value whatever min_periods is */
  uint64_t reserved[4]; /* must be 0 (ema_ewm_opts_init does it) */
} ema_ewm_opts;

/* Fill *opts with the defaults above. NULL is a no-op. Thread-safe. */
EMA_API void ema_ewm_opts_init(ema_ewm_opts *opts);

/* The seeds' parametrization: decay beta, i.e. alpha = 1 - beta computed in
   double, exactly as pandas' ewm(alpha=1-beta). Sets opts->kind to
   EMA_EWM_ALPHA and opts->value to 1-beta; other fields are kept.
   beta must be in [0, 1) (beta = 1 would never move). Returns
   EMA_E_INVALID_ARG for a NULL opts or a beta outside [0, 1), leaving *opts
   unchanged. Thread-safe. */
EMA_API ema_status ema_ewm_opts_set_beta(ema_ewm_opts *opts, double beta, char *err, size_t errcap);

/* Validate opts as ema_ewm_mean() would (have_times: whether time stamps will
   be given) and, on success, store in *alpha (when alpha is not NULL) the
   smoothing factor 1/(1+c) pandas uses. With time stamps this is 0.5: each
   half-life of elapsed time halves the weight. The rules, with pandas' words:
   - value must not be NaN ("Must pass one of com, span, halflife, or alpha"
     when it was never set);
   - com >= 0, span >= 1, halflife > 0, 0 < alpha <= 1;
   - kind must be one of the four, reserved words 0;
   - with time stamps: kind must be EMA_EWM_HALFLIFE (pandas' "halflife must
     be a timedelta convertible object"; the mixed form of pandas where times
     come with com/span/alpha is not offered) and adjust must be 1 (pandas:
     "times is not supported with adjust=False").
   Returns EMA_OK or EMA_E_INVALID_ARG (also for a NULL opts). Thread-safe. */
EMA_API ema_status ema_ewm_check(const ema_ewm_opts *opts, int have_times, double *alpha, char *err, size_t errcap);

/* Exponentially weighted mean of x[0..n), what pandas gives for
   pd.Series(x).ewm(<kind>=value, adjust=, ignore_na=, min_periods=,
   times=).mean(); out[i] is the mean over x[0..i].
   - opts: borrowed; validated by ema_ewm_check(opts, times != NULL, ...).
   - x: n values (NaN and infinities are missing); may be NULL when n is 0.
   - times: NULL for equally spaced points, or n time stamps in any unit
     (seconds, days, nanoseconds as pandas uses) with opts->value the
     half-life in that unit. They must be finite and non-decreasing (equal
     stamps are allowed: no decay between them). pandas takes datetime64[ns]
     and converts the nanosecond counts to double before dividing their
     differences by the half-life; pass those doubles to get its bits.
     Note what pandas does with ignore_na=1 and times: a missing value's time
     step is skipped and only the step from the previous stamp is applied.
   - out: n doubles written; out[i] is NaN while fewer than
     max(min_periods, 1) non-missing values were seen in x[0..i]; after
     that, missing x[i] repeat the previous mean.
   Returns EMA_OK, or EMA_E_INVALID_ARG (bad opts, NULL x/out with n > 0,
   bad time stamps; err names the first bad index). n == 0 succeeds without
   touching anything. Thread-safe. */
EMA_API ema_status ema_ewm_mean(const ema_ewm_opts *opts, const double *x, size_t n, const double *times, double *out,
                                char *err, size_t errcap);

/* Streaming form for inputs that do not fit in memory: feed the series in
   chunks of any size; the concatenated outputs equal, bit for bit, one
   ema_ewm_mean() over the concatenated inputs. The stream is opaque; it holds
   O(1) state. */
typedef struct ema_ewm_stream ema_ewm_stream;

/* Create a stream. opts is copied (validated as ema_ewm_check(opts,
   with_times, ...)); with_times says whether every push gives time stamps.
   On success *out receives the stream; on failure *out is set to NULL when
   out is not NULL. Returns EMA_E_INVALID_ARG (NULL out or opts, bad opts) or
   EMA_E_NOMEM. Thread-safe. */
EMA_API ema_status ema_ewm_stream_create(ema_ewm_stream **out, const ema_ewm_opts *opts, int with_times, char *err,
                                         size_t errcap);

/* Push x[0..n) (and their time stamps, NULL unless the stream was created
   with_times) and write the n means into out, as ema_ewm_mean() describes.
   Time stamps must be finite and non-decreasing across pushes too. A failed
   push (NULL stream, NULL x/out/times with n > 0, bad stamps) changes neither
   the stream nor out. n == 0 is a no-op. */
EMA_API ema_status ema_ewm_stream_push(ema_ewm_stream *stream, const double *x, size_t n, const double *times,
                                       double *out, char *err, size_t errcap);

/* Number of values pushed so far, and how many of them were non-missing.
   NULL stream gives 0. */
EMA_API uint64_t ema_ewm_stream_count(const ema_ewm_stream *stream);
EMA_API uint64_t ema_ewm_stream_observations(const ema_ewm_stream *stream);

/* Forget everything pushed: the stream is as just created. NULL is a no-op. */
EMA_API void ema_ewm_stream_reset(ema_ewm_stream *stream);

/* Free the stream. NULL is a no-op. */
EMA_API void ema_ewm_stream_free(ema_ewm_stream *stream);

/* ------------------------------------------------------------------------ */
/* The seeds' recursion                                                     */
/* ------------------------------------------------------------------------ */

/* The textbook EMA of the seeds (Ng's course): v_0 = 0,
   v_t = beta * v_{t-1} + (1 - beta) * x_t for t = 1..n, and
   out[t-1] = v_t, or with bias_correction != 0 out[t-1] = v_t / (1 - beta^t)
   (beta^t kept as a running product). Without correction the curve starts
   near 0 and lags (the seeds' purple line); with it, it equals pandas'
   adjust=True mean with alpha = 1 - beta for a series without missing values,
   up to rounding. No missing-value handling: a NaN poisons everything after
   it (use ema_ewm_mean() for real data).
   beta must be in [0, 1); x may be NULL and out is untouched when n is 0;
   out may equal x. Returns EMA_OK or EMA_E_INVALID_ARG. Thread-safe. */
EMA_API ema_status ema_series_beta(const double *x, size_t n, double beta, int bias_correction, double *out, char *err,
                                   size_t errcap);

#ifdef __cplusplus
}
#endif

#endif /* EMA_SERIES_H */
