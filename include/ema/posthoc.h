/*
 * ema/posthoc.h: power-function EMA math and post-hoc synthesis
 * (experimental: names and signatures may still change before 1.0).
 */
#ifndef EMA_POSTHOC_H
#define EMA_POSTHOC_H

#include "ema/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Power-function EMA profiles and post-hoc EMA synthesis (src/posthoc/;
 * Karras et al. 2024, the EDM2 paper, section 3 and appendix C). The
 * mathematics (profiles, sigma_rel, the exactness of the discrete update,
 * the least-squares fit and its error bound) is in docs/posthoc.md; this
 * header keeps the contract of each function.
 *
 * A power-function EMA of exponent gamma (> -1) read at step t averages the
 * training weights w(tau), 0 <= tau <= t, with the profile
 * p_{t,gamma}(tau) = (gamma+1) tau^gamma / t^(gamma+1); its relative width
 * sigma_rel is the standard deviation of tau/t under that profile.
 *
 * The math functions are pure double-precision arithmetic: no context, no
 * global state, no printing; thread-safe and reentrant.
 * ema_posthoc_synthesize reads snapshot files and writes the results.
 *
 * Experimental: names and signatures may still change before 1.0.
 * Since 0.1.0 unless noted.
 */

/* Largest sigma_rel that ema_power_gamma() accepts: sqrt(1/12), rounded to
   the nearest double (the value of sqrt(1.0 / 12.0)). It maps to gamma = 0. */
#define EMA_POWER_SIGMA_REL_MAX 0.28867513459481287

/* Default refusal threshold of ema_posthoc_solve() on the 2-norm condition
   number of the Gram matrix. With it, the coefficients keep at least about
   four correct digits (relative error ~ cond * 1e-16). The standard EDM2
   setup (sigma_rel 0.05 and 0.10, 256 snapshots of each) has cond ~ 5e8. */
#define EMA_POSTHOC_DEFAULT_MAX_COND 1e12

/* Bounds on the number of snapshots that enter one fit (those at or before
   the target time). The Gram matrix takes n^2 doubles and the eigenvalue
   and Cholesky steps O(n^3) time: 512 snapshots take ~0.06 s, 1024 ~0.5 s,
   2048 ~6 s and 64 MiB (one x86-64 core). */
#define EMA_POSTHOC_MIN_SNAPSHOTS 2
#define EMA_POSTHOC_MAX_SNAPSHOTS 2048

/* Flags of ema_posthoc_solve(). */
/* Rescale the least-squares coefficients so that they sum to 1, as the EDM2
   reference code does. A weighted sum of averages whose weights sum to 1 is
   itself an average: a parameter that never moved keeps its value exactly.
   Recommended when the coefficients are applied to weights. The residual
   then reported is that of the rescaled coefficients (slightly larger). */
#define EMA_POSTHOC_NORMALIZE 1u

/* ------------------------------------------------------------------------ */
/* Power-function profiles                                                   */
/* ------------------------------------------------------------------------ */

/* sigma_rel of the power-function profile of exponent gamma:
   sqrt((gamma+1) / ((gamma+2)^2 (gamma+3))), evaluated without overflow for
   any finite gamma.
   - gamma: finite and > -1 (the profile is not normalisable at or below -1).
     Note that for -1 < gamma < 0 sigma_rel is not monotone (it peaks at
     0.30028 near gamma = -0.382), so such values cannot be mapped back by
     ema_power_gamma(); use gamma directly for them.
   - sigma_rel: out; receives the value on success, untouched on failure.
   Errors: EMA_E_INVALID_ARG for a NULL sigma_rel, a NaN, infinite or
   too small gamma. */
EMA_API ema_status ema_power_sigma_rel(double gamma, double *sigma_rel);

/* gamma of the power-function profile with the given sigma_rel: the largest
   real root of g^3 + 7g^2 + (16 - sigma_rel^-2) g + (12 - sigma_rel^-2) = 0,
   which for the accepted range is the unique root in [0, inf). It is found
   by safeguarded Newton iteration on the equivalent, overflow-free equation
   (g+2) sqrt((g+3)/(g+1)) sigma_rel = 1 on the bracket [0, 1/sigma_rel], to
   within a few ulps (ema_power_sigma_rel(*gamma) gives back sigma_rel to
   about 1e-15 relative).
   - sigma_rel: in (0, EMA_POWER_SIGMA_REL_MAX]; at the upper bound gamma is
     0. Values above it (up to ~0.30028) correspond to two gammas in (-1, 0)
     and are refused as ambiguous; subnormal values are refused.
   - gamma: out; receives the value on success, untouched on failure.
   Examples: sigma_rel 0.05 -> 16.9721986..., 0.10 -> 6.9372039...,
   0.07 -> 11.2449394....
   Errors: EMA_E_INVALID_ARG for a NULL gamma or sigma_rel outside the
   range (NaN included). */
EMA_API ema_status ema_power_gamma(double sigma_rel, double *gamma);

/* Decay d of the power-function EMA update that covers the dt steps
   (t-dt, t] and ends at step t: d = (1 - dt/t)^(gamma+1), computed as
   pow((t-dt)/t, gamma+1) with t-dt evaluated exactly in integers. The
   update is then s <- s - (s - w) (1 - d).
   - gamma: finite and > -1.
   - t: the step the update ends at, counted from 1 (the first training
     step is t = 1); t >= 1.
   - dt: steps covered by this update (1 for an update every step, k for an
     update every k-th step, or the batch size when t counts samples);
     1 <= dt <= t.
   Edge cases: when dt == t (the first update) d is exactly 0, so the
   average becomes a copy of the current weights; that is what starts the
   profile and no separate initialisation is needed. d is in [0, 1] and
   grows towards 1 as t grows; it rounds to exactly 1 only when
   (gamma+1) dt / t is below double resolution (about 1e-16, e.g. t beyond
   2^53), where the update would not change a float32 or float64 shadow
   anyway. Because the rule is exact for any sequence
   of dt (see the top of this file), the average does not depend on how
   often it is updated, except through how the weights are sampled.
   - decay: out; receives d on success, untouched on failure.
   Errors: EMA_E_INVALID_ARG for a NULL decay, a bad gamma, t < 1,
   dt < 1 or dt > t. */
EMA_API ema_status ema_power_decay(double gamma, int64_t t, int64_t dt, double *decay);

/* Inner product <p_a, p_b> = integral over [0, inf) of p_a(tau) p_b(tau) of
   the profiles p_a = p_{t_a,gamma_a} and p_b = p_{t_b,gamma_b}:
       (ga+1)(gb+1) (t_a/t_b)^e / ((ga+gb+1) max(t_a, t_b)),
   with e = gb when t_a < t_b and e = -ga otherwise (EDM2 eq. 151). Symmetric
   in (a, b); scales as 1/t when both times are multiplied by the same
   factor. <p, p> = (g+1)^2 / ((2g+1) t) is the squared L2 norm.
   - t_a, t_b: finite and > 0 (any unit: steps, samples, fractions of
     training), the same unit for both.
   - gamma_a, gamma_b: finite, > -1, with gamma_a + gamma_b > -1 (otherwise
     the product is not integrable near 0).
   - out: receives the value on success, untouched on failure.
   Errors: EMA_E_INVALID_ARG for a NULL out, an argument out of range, or a
   result that overflows (times so small that 1/t overflows). */
EMA_API ema_status ema_power_inner(double t_a, double gamma_a, double t_b, double gamma_b, double *out);

/* ------------------------------------------------------------------------ */
/* Post-hoc synthesis                                                        */
/* ------------------------------------------------------------------------ */

/* Numbers describing a successful fit. */
typedef struct ema_posthoc_info {
  size_t n_used;   /* snapshots that entered the fit: those with t[i] <= t_r */
  double residual; /* relative L2 residual ||sum_i x_i p_i - p_r|| / ||p_r|| of
                      the returned coefficients, from the inner products as
                      sqrt(max(0, x'Ax - 2x'b + <p_r,p_r>) / <p_r,p_r>). 0 is
                      a perfect fit, 1 is no better than all-zero
                      coefficients. Rounding limits it to about 1e-8 at best
                      (the subtraction loses half the digits), so values
                      below ~1e-7 mean "exact". */
  double cond;     /* 2-norm condition number lambda_max / lambda_min of the
                      Gram matrix A of the used snapshots (it is symmetric
                      positive definite), the quantity numpy.linalg.cond(A)
                      estimates. Independent of the time unit. */
  double coef_sum; /* sum of the least-squares coefficients before any
                      EMA_POSTHOC_NORMALIZE rescaling; close to 1 for a good
                      fit */
} ema_posthoc_info;

/* Solve for the coefficients that synthesise the power-function EMA of
   exponent gamma_r at time t_r from n snapshots, snapshot i being a
   power-function EMA of exponent gamma[i] read at time t[i].

   Selection: exactly the snapshots with t[i] <= t_r enter the fit (a later
   snapshot has seen weights from after t_r); the others get coefficient 0.
   At least EMA_POSTHOC_MIN_SNAPSHOTS (2) and at most
   EMA_POSTHOC_MAX_SNAPSHOTS must qualify. The order of the snapshots does
   not matter and they may mix gammas and times freely.

   Method (docs/posthoc.md), all in double precision: times are divided by t_r (which changes
   neither the coefficients nor the condition number, and keeps every inner
   product finite); the Gram matrix A_ij = <p_i,p_j> and b_i = <p_i,p_r> of
   the used snapshots are built with ema_power_inner()'s formula; the
   extreme eigenvalues of A are computed (Householder tridiagonalisation,
   then Sturm-sequence bisection) to get its 2-norm condition number; the
   call is refused when it exceeds max_cond; otherwise A x = b is solved by
   Cholesky factorisation of the diagonally equilibrated matrix.

   - n: number of snapshots; t, gamma: borrowed arrays of n values.
     t[i] finite and > 0; gamma[i] finite and > -0.5 (the profile must be
     square-integrable; in practice gamma >= 0, see ema_power_gamma()).
     Identical snapshots (same t and gamma) make A singular and are refused
     with a message naming them; take each snapshot once.
   - t_r: target time, finite and > 0, same unit as t. Usually the time of
     the last snapshot.
   - gamma_r: target exponent, finite and > -0.5. For a target sigma_rel,
     convert it with ema_power_gamma() first.
   - max_cond: refusal threshold on the condition number; 0 selects
     EMA_POSTHOC_DEFAULT_MAX_COND (1e12). Must be >= 1 otherwise; +INFINITY
     turns the check off (a singular or indefinite matrix is still refused).
   - flags: 0 or EMA_POSTHOC_NORMALIZE.
   - coef: out, array of n doubles: coef[i] multiplies snapshot i. Written
     only on success; unused snapshots get exactly 0.
   - info: out, may be NULL; written only on success.
   - err, errcap: out, may be NULL / 0. On failure, one NUL-terminated
     sentence (truncated to errcap bytes) saying why, with the numbers
     involved (e.g. the condition number and the threshold); on success an
     empty string.
   Returns EMA_OK; EMA_E_INVALID_ARG for a NULL t, gamma or coef with n > 0,
   an argument out of range, n == 0, a target time before every snapshot,
   fewer than 2 or more than EMA_POSTHOC_MAX_SNAPSHOTS usable snapshots,
   identical snapshots, a Gram matrix that is singular or more ill-
   conditioned than max_cond, or (with EMA_POSTHOC_NORMALIZE) coefficients
   whose sum is not positive; EMA_E_NOMEM when the work memory (about
   2 n_used^2 doubles) cannot be allocated. A failed call writes nothing
   but err. */
EMA_API ema_status ema_posthoc_solve(size_t n, const double *t, const double *gamma, double t_r, double gamma_r,
                                     double max_cond, unsigned flags, double *coef, ema_posthoc_info *info, char *err,
                                     size_t errcap);

/* ------------------------------------------------------------------------ */
/* Post-hoc synthesis from snapshot files (experimental, since 0.2.0)        */
/* ------------------------------------------------------------------------ */

/* Default refusal threshold of ema_posthoc_synthesize() on the relative
   residual of a target's profile fit (ema_posthoc_info.residual): the
   synthesised average's weight profile may differ from the target's by at
   most 5% of its L2 norm. For the usual EDM2 setup (snapshots of sigma_rel
   0.05 and 0.10 every S steps) widths from about 0.03 to 0.2 at a snapshot's
   step fit within 0.03; a step between two snapshots fits at about 0.9. */
#define EMA_POSTHOC_DEFAULT_MAX_RESIDUAL 0.05

/* Most targets one ema_posthoc_synthesize() call takes (EDM2 reconstructs
   up to 8 widths per pass over its snapshots). */
#define EMA_POSTHOC_MAX_TARGETS 8

/* One average to synthesise. Set the inputs (zero the struct first); the
   outputs are written on success only. */
typedef struct ema_posthoc_target {
  /* inputs */
  double sigma_rel;   /* > 0: the target's width, in (0, EMA_POWER_SIGMA_REL_MAX],
                         converted with ema_power_gamma(); 0: use gamma */
  double gamma;       /* the target's exponent when sigma_rel is 0; > -0.5 */
  int64_t step;       /* the step to synthesise at: must be the ema.t of one of
                         the snapshots; 0 selects the largest ema.t */
  const char *output; /* the safetensors file to write (borrowed, UTF-8) */
  double *coef;       /* optional (NULL): n_snapshots doubles receiving the
                         coefficient of each snapshot (0 for those unused) */
  /* outputs */
  double gamma_used;     /* the exponent synthesised */
  int64_t step_used;     /* the step synthesised at */
  ema_posthoc_info info; /* residual, condition number, snapshots used */
} ema_posthoc_target;

/* Options of ema_posthoc_synthesize(); start from ema_posthoc_options_init. */
typedef struct ema_posthoc_options {
  double max_cond;        /* refuse a Gram matrix with a larger condition number;
                             0: EMA_POSTHOC_DEFAULT_MAX_COND; +INFINITY: no check */
  double max_residual;    /* refuse a fit with a larger relative residual;
                             0: EMA_POSTHOC_DEFAULT_MAX_RESIDUAL; +INFINITY: no check */
  unsigned flags;         /* flags of ema_posthoc_solve; init sets EMA_POSTHOC_NORMALIZE */
  int64_t *snapshot_t;    /* optional (NULL): n_snapshots entries receiving each
                             snapshot's ema.t (written on success) */
  double *snapshot_gamma; /* optional (NULL): each snapshot's exponent */
  uint64_t reserved[8];   /* must be 0 */
} ema_posthoc_options;

/* Defaults: max_cond 0, max_residual 0 (the defaults above), flags
   EMA_POSTHOC_NORMALIZE, no optional outputs, reserved zeroed. NULL is a
   no-op. Since 0.2.0. */
EMA_API void ema_posthoc_options_init(ema_posthoc_options *opts);

/* Synthesise n_targets power-function EMAs from n_snapshots snapshot files
   and write one safetensors file per target, reading the snapshots once.

   Snapshots: safetensors files (e.g. written by ema_snapshot) whose
   __metadata__ has "ema.t" (the step, an integer >= 1) and "ema.gamma" or
   "ema.sigma_rel" (ema.gamma wins when both are there); all hold the same
   tensors (names, dtypes, shapes). Paths are borrowed.

   Per target, before anything is written: the step must be one snapshot's
   ema.t (a step between snapshots cannot be reached by a good fit, and is
   refused, as EDM2 does; a step before every snapshot likewise); the
   snapshots with ema.t <= step enter the least-squares fit of
   ema_posthoc_solve (opts->flags, opts->max_cond); a fit whose relative
   residual exceeds opts->max_residual is refused.

   Output of each target: every floating tensor is sum_i coef_i snapshot_i,
   accumulated in double (in snapshot order, so the result does not depend
   on the other targets of the call) and rounded once to the tensor's dtype
   (ema_convert); integer tensors are copied from the latest snapshot used.
   Metadata: format "pt", ema.sigma_rel ("nan" for a gamma target whose
   width is undefined), ema.gamma, ema.t, ema.posthoc.coefficients,
   ema.posthoc.snapshot_t, ema.posthoc.snapshot_gamma, ema.posthoc.residual,
   ema.posthoc.cond. Each file is written atomically (ema_file_write_stream).

   One pass: the outputs are written together (a thread per target beyond
   the first, all in this call); each window of each snapshot is read once
   and combined into every target. Memory: per target the writer's 1 MiB
   buffer and 64 Ki double accumulators (512 KiB), plus one 512 KiB window
   and its 512 KiB of doubles, whatever the model's size. Open files: the snapshots with a
   non-zero coefficient for some target, all at once.

   Errors (err gets one sentence; strings from the files are escaped):
   EMA_E_INVALID_ARG (NULL arrays, n_snapshots < 2, n_targets 0 or above
   EMA_POSTHOC_MAX_TARGETS, a bad target or option, a refused step, fit,
   condition number or residual, an output path given twice, opts->reserved
   not zero); EMA_E_FORMAT (a snapshot's metadata missing or malformed,
   snapshots that do not hold the same tensors, a dtype outside ema_dtype)
   and the errors of ema_file_open; EMA_E_IO, EMA_E_NOMEM. A failure found
   before writing (every refusal above) writes nothing; a failure while
   writing (a read or write error) leaves each output either complete or as
   it was, and the call returns the first error.
   Thread-safe (nothing shared between calls). Experimental, since 0.2.0. */
EMA_API ema_status ema_posthoc_synthesize(const char *const *snapshots, size_t n_snapshots, ema_posthoc_target *targets,
                                          size_t n_targets, const ema_posthoc_options *opts, char *err, size_t errcap);

#ifdef __cplusplus
}
#endif

#endif /* EMA_POSTHOC_H */
