/*
 * libema: exponential moving averages of deep-learning model weights.
 *
 * ema/core.h: the context, its tensors, decays and schedules, updates, the
 * bank, evaluation, checkpoints and threads. This header is the manual for
 * them. Every function is documented where it
 * is declared: what it returns, who owns each pointer, what NULL means and
 * whether it may be called from several threads.
 *
 * Conventions that hold for the whole API unless a function says otherwise:
 *  - Errors. Functions return an ema_status; EMA_OK (0) means success. A
 *    call that fails changes nothing: the context, the caller's tensors and
 *    files on disk are exactly as they were before the call. The reason is
 *    in ema_last_error(ctx), one sentence a user can act on. Every function
 *    that takes a context returns EMA_E_INVALID_ARG for a NULL ctx (there is
 *    then no message); each function lists its other errors. Strings that
 *    came from a file are shown escaped in messages (see ema_escape).
 *  - Ownership. "borrowed" pointers stay owned by the caller and must stay
 *    valid for as long as the documentation says; "copied" arguments are
 *    copied before the call returns and may be freed right after it.
 *    Pointers the library returns are owned by the library (by the context
 *    for context functions, static for the others): never free them.
 *  - Memory. A function allocates nothing unless its "Memory:" note says
 *    so; what a context allocates is given back by ema_free().
 *  - Threads. One context may be used by one thread at a time: calls on
 *    the same context must not overlap (use a lock if several threads share
 *    one). Different contexts are independent and may be used from
 *    different threads concurrently. Functions marked "Thread-safe" take no
 *    context (or only read static tables) and may be called from any thread
 *    at any time.
 *  - Experimental functions are marked "Experimental": their names and
 *    behaviour may still change before 1.0. Deprecated names are in the
 *    last section, each with its replacement.
 *  - The library never prints, never calls exit() or abort() on bad input.
 *
 * Since 0.1.0 unless noted.
 */
#ifndef EMA_CORE_H
#define EMA_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Export macro and version                                                  */
/* ------------------------------------------------------------------------ */

#if defined(EMA_STATIC_DEFINE)
#define EMA_API
#elif defined(_WIN32)
#if defined(EMA_BUILDING_LIBRARY)
#define EMA_API __declspec(dllexport)
#else
#define EMA_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define EMA_API __attribute__((visibility("default")))
#else
#define EMA_API
#endif

#define EMA_VERSION_MAJOR 0
#define EMA_VERSION_MINOR 2
#define EMA_VERSION_PATCH 0
/* MAJOR*10000 + MINOR*100 + PATCH, as ZSTD_VERSION_NUMBER. */
#define EMA_VERSION_NUMBER (EMA_VERSION_MAJOR * 10000 + EMA_VERSION_MINOR * 100 + EMA_VERSION_PATCH)
#define EMA_VERSION_STRING "0.2.0"

/* Runtime twins of the macros above: compare them with the macros to check
   that the header you compiled against matches the library you linked.
   Thread-safe; never fail. */
EMA_API unsigned ema_version_number(void);
EMA_API const char *ema_version_string(void); /* static text, e.g. "0.2.0" */

/* ------------------------------------------------------------------------ */
/* Status codes and dtypes (values are frozen: never renumbered or reused)   */
/* ------------------------------------------------------------------------ */

/* The status table: X(name, value, text) for every status, in value order.
   It generates the ema_status enum, ema_status_string() and ema_status_name();
   a program may expand it too (libuv's UV_ERRNO_MAP). Values are frozen. */
#define EMA_STATUS_MAP(X)                                                   \
  X(EMA_OK, 0, "ok")                                                        \
  /* NULL where not allowed, decay outside [0,1], bad shape/option */       \
  X(EMA_E_INVALID_ARG, 1, "invalid argument")                               \
  /* a dtype that cannot be averaged (integer, bool) */                     \
  X(EMA_E_DTYPE, 2, "dtype cannot be averaged")                             \
  /* an allocation failed; nothing was changed */                           \
  X(EMA_E_NOMEM, 3, "out of memory")                                        \
  /* no tensor (or bank member) of that name, or an index out of range */   \
  X(EMA_E_NOT_FOUND, 4, "no tensor of that name, or an index out of range") \
  /* that name is already registered */                                     \
  X(EMA_E_EXISTS, 5, "name already registered")                             \
  /* not allowed now (apply/save while swapped, restore without store) */   \
  X(EMA_E_STATE, 6, "not allowed in the current state")                     \
  /* open/read/write/fsync/rename failed */                                 \
  X(EMA_E_IO, 7, "input/output error")                                      \
  /* not a valid checkpoint: truncated, corrupt, hostile */                 \
  X(EMA_E_FORMAT, 8, "not a valid checkpoint")                              \
  /* checkpoint lacks a tensor or has another dtype/shape */                \
  X(EMA_E_MISMATCH, 9, "checkpoint does not match the registered tensors")  \
  /* a feature this build of the library does not provide */                \
  X(EMA_E_UNSUPPORTED, 10, "not supported by this build")

#define EMA__STATUS_ENUMERATOR(name, value, text) name = value,
typedef enum ema_status { EMA_STATUS_MAP(EMA__STATUS_ENUMERATOR) } ema_status;
#undef EMA__STATUS_ENUMERATOR

typedef enum ema_dtype {
  EMA_F32 = 0,  /* IEEE binary32 */
  EMA_F64 = 1,  /* IEEE binary64 */
  EMA_F16 = 2,  /* IEEE binary16, stored as uint16_t bit patterns */
  EMA_BF16 = 3, /* bfloat16 (upper half of a binary32), stored as uint16_t */
  EMA_I32 = 4,  /* int32: never averaged */
  EMA_I64 = 5   /* int64: never averaged */
} ema_dtype;

/* Largest number of dimensions of a tracked tensor. */
#define EMA_MAX_DIMS 8
/* Longest tensor name accepted, in bytes, without the terminating NUL. */
#define EMA_MAX_NAME 1024

/* Static English text for a status ("invalid argument", ...); never NULL.
   Unknown values give "unknown status". Thread-safe. */
EMA_API const char *ema_status_string(ema_status s);

/* Static name of a status as spelled in this header ("EMA_E_IO"), or NULL for
   a value outside the table: bindings loop over 0, 1, ... until NULL to learn
   every status. Thread-safe. Since 0.2.0. */
EMA_API const char *ema_status_name(ema_status s);

/* Render s[0..n) for a message: printable ASCII and well-formed, printable
   UTF-8 as is; control bytes, DEL, C1 controls (U+0080..U+009F) and bytes
   of ill-formed UTF-8 as \xNN (uppercase hex); the backslash as \\. At most
   64 source bytes are shown (never a character cut in two); when s is
   longer, "..." follows. The output goes to buf (cap bytes, borrowed):
   at most cap - 1 bytes and a terminating NUL, always; an escape or
   character that does not fit is left out whole, and so is everything after
   it. s is borrowed and may hold NUL bytes (shown as \x00); NULL s is the
   empty string. Returns the bytes written, NUL excluded (0 when buf is NULL
   or cap is 0, and then nothing is written). Never fails, never allocates.
   Thread-safe. Since 0.2.0. */
EMA_API size_t ema_escape(const char *s, size_t n, char *buf, size_t cap);

/* Size in bytes of one element of dtype, or 0 for a value outside the enum.
   Thread-safe. */
EMA_API size_t ema_dtype_size(ema_dtype dtype);

/* Short lowercase name of dtype ("f32", "bf16", ...), or "?" for a value
   outside the enum. Static text. Thread-safe. */
EMA_API const char *ema_dtype_name(ema_dtype dtype);

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct ema_ctx ema_ctx; /* opaque; one thread at a time */

/* Create a context with a constant decay in [0, 1] (NaN is refused): the
   same as ema_create_with() with ema_options_init()'s defaults and this
   decay. On success *out receives the new context; on failure *out is set
   to NULL when out is not NULL. Returns EMA_E_INVALID_ARG for a NULL out or
   a bad decay, EMA_E_NOMEM when memory runs out. Defaults: num_updates off,
   zero_debias off, name "ExponentialMovingAverage", float32 shadows for
   f16/bf16 parameters, threads as ema_set_threads(ctx, 0).
   Memory: the context itself (about 4 KiB); worker threads start later.
   Thread-safe. */
EMA_API ema_status ema_create(ema_ctx **out, double decay);

/* Options of ema_create_with(): what must be known before the first tensor
   is tracked. Always start from ema_options_init(), then set fields: future
   versions give meaning to the reserved words, and a non-zero reserved word
   is refused today. Since 0.2.0. */
typedef struct ema_options {
  double decay;                /* member 0's decay, in [0, 1]; default 0.9999 */
  int zero_debias;             /* TensorFlow's zero_debias (see ema_set_zero_debias); default 0 */
  int same_dtype_half_shadows; /* f16/bf16 shadows in their own dtype (see ema_set_half_shadows); default 0 */
  const char *name;            /* member 0's name, copied; NULL = "ExponentialMovingAverage" */
  uint64_t reserved[8];        /* must be 0 (ema_options_init does it) */
} ema_options;

/* Fill *o with the defaults above. NULL is a no-op. Thread-safe. Since 0.2.0. */
EMA_API void ema_options_init(ema_options *o);

/* Create a context from options (borrowed; o->name is copied). On success
   *out receives the new context; on failure *out is set to NULL when out is
   not NULL. Returns EMA_E_INVALID_ARG for a NULL out or opts, a decay
   outside [0, 1] or NaN, a name that is empty, longer than 255 bytes or not
   UTF-8, or a non-zero reserved word; EMA_E_NOMEM when memory runs out.
   There is no context to hold a message on failure: the status says it.
   Memory: as ema_create(). Thread-safe (creates a new, independent
   context). Since 0.2.0. */
EMA_API ema_status ema_create_with(ema_ctx **out, const ema_options *opts);

/* Free the context, its shadows and every buffer it owns, and stop its
   worker threads. Tracked tensors stay the caller's and are not touched (if
   the context is swapped, the model holds the averages at this point: call
   ema_swap() first to get the training values back). Every pointer the
   context gave out (averages, names, messages) dies with it. NULL is a
   no-op. */
EMA_API void ema_free(ema_ctx *ctx);

/* Detail of the last failed call on ctx, one sentence; "" when the last call
   succeeded or nothing failed yet. The text is owned by ctx and valid until
   the next call on ctx. A NULL ctx gives a static text that says so.
   Never fails. */
EMA_API const char *ema_last_error(const ema_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */
/* ------------------------------------------------------------------------ */

/* Register a tensor to average.
   - name: copied; 1..EMA_MAX_NAME bytes of UTF-8 without NUL; unique in ctx.
   - data: borrowed; the caller's C-contiguous values of ndim dims of shape
     (copied). data must stay valid and at the same address until ema_free
     (or until ema_retarget points the tensor elsewhere, or ema_untrack).
     NULL is allowed only when the tensor has zero elements.
   - dtype: EMA_F32, EMA_F64, EMA_F16 or EMA_BF16. Integer dtypes fail with
     EMA_E_DTYPE: averaging a step counter or an index makes no sense (the
     classic trap is a trainable global_step averaged by mistake); carry such
     tensors with ema_track_policy(..., EMA_POLICY_COPY).
   - ndim in [0, EMA_MAX_DIMS]; shape[i] >= 0 (zero-size tensors are fine);
     shape may be NULL when ndim is 0.
   The shadow is created now as a copy of the current values (TensorFlow:
   "shadow variables are initialized with the same initial values as the
   trained variables"). With zero_debias on, the shadow starts at 0 instead
   and the average reads 0 until the first update.
   f16/bf16 tensors get float32 shadows unless ema_set_half_shadows() (or
   ema_options.same_dtype_half_shadows) asked for same-dtype shadows.
   Memory: for every member of the bank, one shadow of numel elements of
   the shadow dtype (two with zero_debias: the biased accumulator and the
   average), rounded up to 64 bytes, in that member's arena (blocks of at
   least 64 KiB, growing with the arena up to 64 MiB per block); the name;
   the registry and name index grow by doubling.
   Errors: EMA_E_INVALID_ARG (NULL or bad name, '__metadata__', unknown
   dtype, bad ndim or shape, NULL data for a non-empty tensor), EMA_E_DTYPE
   (integer dtype), EMA_E_EXISTS (name taken), EMA_E_NOMEM, EMA_E_STATE
   (while swapped or while a stored copy is held). */
EMA_API ema_status ema_track(ema_ctx *ctx, const char *name, void *data, ema_dtype dtype, int ndim,
                             const int64_t *shape);

/* What the library does with a registered tensor (its "policy"). Values are
   frozen.
   - EMA_POLICY_AVERAGE: averaged (ema_track); floating dtypes only.
   - EMA_POLICY_COPY: follows the model: never averaged, no shadow; its
     average is the model tensor itself (ema_average() gives NULL for it);
     saved and restored under its own name only (BatchNorm statistics,
     integer buffers, a step counter; TensorFlow's variables_to_restore()
     maps such variables to themselves; 0.1's "plain state"). Any dtype.
     swap, copy_to, store and restore leave it alone. timm's
     exclude_buffers and ema-pytorch's param_or_buffer_names_no_ema are
     this policy.
   - EMA_POLICY_KEEP: frozen at registration: the context keeps one copy of
     the values in the model dtype (any dtype), shared by every member of
     the bank and never updated; ema_average() and ema_bank_average() give
     it. ema_swap, ema_copy_to and ema_store/ema_restore treat it as an
     average: they put the frozen values into the model (and back).
     Checkpoints save it under its own name and as an average under every
     member's suffix, with the policy in the metadata. Memory: one copy of
     the tensor, rounded up to 64 bytes.
   ema_apply, ema_apply_some and ema_update never touch COPY or KEEP
   tensors. Since 0.2.0. */
typedef enum ema_policy { EMA_POLICY_AVERAGE = 0, EMA_POLICY_COPY = 1, EMA_POLICY_KEEP = 2 } ema_policy;

/* Register a tensor with a policy (see ema_policy). EMA_POLICY_AVERAGE is
   ema_track(). Same rules for name, data and shape as ema_track(); names
   share one namespace whatever the policy.
   Errors: those of ema_track(); EMA_E_INVALID_ARG for a policy outside the
   enum; EMA_E_DTYPE for an integer dtype with EMA_POLICY_AVERAGE (COPY and
   KEEP take every dtype).
   Memory: AVERAGE as ema_track(); COPY only the name and registry entry;
   KEEP one copy of the tensor in member 0's arena, rounded up to 64
   bytes.
   Since 0.2.0 (EMA_POLICY_COPY was ema_track_state() in 0.1). */
EMA_API ema_status ema_track_policy(ema_ctx *ctx, const char *name, void *data, ema_dtype dtype, int ndim,
                                    const int64_t *shape, ema_policy policy);

/* Number of registered tensors (every policy), 0 for NULL. Never fails. */
EMA_API size_t ema_count(const ema_ctx *ctx);

/* Facts about the i-th registered tensor, in registration order, for tools
   and bindings. Any output pointer may be NULL. *name stays valid until
   ema_free (or ema_untrack); *data is the caller's borrowed pointer;
   *policy is the tensor's policy; *shape must hold EMA_MAX_DIMS.
   Errors: EMA_E_INVALID_ARG (NULL ctx), EMA_E_NOT_FOUND (i out of range).
   Changed in 0.2.0: the last argument was `int *averaged` (1 for averaged
   tensors): test `policy == EMA_POLICY_AVERAGE` instead. */
EMA_API ema_status ema_tensor_info(const ema_ctx *ctx, size_t i, const char **name, void **data, ema_dtype *dtype,
                                   int *ndim, int64_t *shape, ema_policy *policy);

/* Point the registered tensor `name` at new memory of the same dtype and
   shape (borrowed, as in ema_track), keeping its averages: for a framework
   that moved or reallocated a parameter (PyTorch's param.data = ...).
   Errors: EMA_E_INVALID_ARG (NULL name; NULL data for a non-empty tensor),
   EMA_E_NOT_FOUND, EMA_E_STATE (while swapped or while a stored copy is
   held: both refer to the old memory). */
EMA_API ema_status ema_retarget(ema_ctx *ctx, const char *name, void *data);

/* Forget the registered tensor `name` (any policy): it is no longer
   updated, saved or loaded, and its average pointer and name (from
   ema_tensor_info) must no longer be used. Its name is freed now; its
   shadow memory is given back at ema_free. Names of other tensors and
   their average pointers are unaffected; indices of ema_tensor_info after
   it move down by one.
   Errors: EMA_E_INVALID_ARG (NULL name), EMA_E_NOT_FOUND, EMA_E_STATE
   (while swapped or stored). */
EMA_API ema_status ema_untrack(ema_ctx *ctx, const char *name);

/* Shadow dtype for f16/bf16 tensors tracked after this call (tensors
   already tracked keep theirs; ema_options.same_dtype_half_shadows sets it
   at creation): 0 (default) keeps float32 shadows, which keep averaging at
   decay 0.9999 where a bf16 shadow stalls; 1 keeps shadows of the
   parameter's own dtype with every operation rounded to that dtype, as
   TensorFlow does. Errors: EMA_E_INVALID_ARG (NULL ctx). */
EMA_API ema_status ema_set_half_shadows(ema_ctx *ctx, int same_dtype);

/* ------------------------------------------------------------------------ */
/* Decay                                                                     */
/* ------------------------------------------------------------------------ */

/* Set member 0's decay, used from the next apply on (a dynamic decay); the
   other members keep their schedules. decay must be in [0, 1]; NaN is
   refused. Errors: EMA_E_INVALID_ARG. */
EMA_API ema_status ema_set_decay(ema_ctx *ctx, double decay);

/* Set TensorFlow's num_updates (its global_step). With n >= 0 the effective
   decay is min(decay, (1+n)/(10+n)) evaluated in float32 exactly as
   TensorFlow does (n is first converted to float32), for every member
   updated by ema_apply. n < 0 turns the warm-up off. The library never
   increments n: the caller owns the step. Errors: only a NULL ctx. */
EMA_API ema_status ema_set_num_updates(ema_ctx *ctx, int64_t n);

/* Turn TensorFlow's zero_debias on or off. Allowed only before the first
   ema_track() of an averaged tensor (EMA_E_STATE after, unless the setting
   does not change); ema_options.zero_debias sets it at creation instead.
   With it on, each tensor keeps a biased accumulator b starting at 0 and a
   counter k, and the average is b / (1 - (1-om)^k), all in the shadow's
   precision, with om = 1 - d; this is Ng's bias correction, exact for a
   constant decay. Memory: tensors tracked afterwards get two shadows per
   member instead of one. Errors: EMA_E_STATE. */
EMA_API ema_status ema_set_zero_debias(ema_ctx *ctx, int on);

/* Set the EMA's name, the name of member 0 (copied; default
   "ExponentialMovingAverage"); it is the suffix of every average in
   checkpoints: "<tensor>/<name>". 1..255 bytes of UTF-8. A pointer from
   ema_bank_name(ctx, 0) now reads the new name.
   Errors: EMA_E_INVALID_ARG (NULL, empty, too long, not UTF-8, or the name
   of another member). */
EMA_API ema_status ema_set_name(ema_ctx *ctx, const char *name);

/* The decay of member 0 as set (ema_create, ema_set_decay, a loaded
   checkpoint), before any warm-up; NaN for NULL. Since 0.2.0 (was
   ema_get_decay). */
EMA_API double ema_decay(const ema_ctx *ctx);

/* num_updates as set, -1 when off (and for NULL). Since 0.2.0 (was
   ema_get_num_updates). */
EMA_API int64_t ema_num_updates(const ema_ctx *ctx);

/* The decay d the next apply will use for member 0 (like every unindexed
   decay function: ema_set_decay, ema_decay), after the num_updates warm-up,
   converted exactly from float32 to double. NaN for a NULL ctx. Changed in
   0.2.0: it read the active member. */
EMA_API double ema_effective_decay(const ema_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Decay schedules, step-driven updates, banks of averages (since 0.1.0)     */
/* ------------------------------------------------------------------------ */

/* ema_apply() is TensorFlow's update: a constant (or caller-changed) decay
   with the optional num_updates warm-up, in TensorFlow's float32 arithmetic.
   ema_update(ctx, step) is the step-driven update of the schedules below:
   the library knows the training step of every update, so an update that
   covers k steps (update_every k) uses the k-step decay, the product of the
   k per-step decays, and the curve does not depend on k. Decays are computed
   in float64 and 1 - d is then rounded to the shadow's precision. */
typedef enum ema_schedule_kind {
  /* d = decay per step (k steps: decay^k). */
  EMA_SCHEDULE_CONSTANT = 0,
  /* timm ModelEmaV3 / diffusers EMAModel / ema-pytorch warm-up: with
     t = step - update_after_step - 1, the per-step decay is 0 when t <= 0,
     else clamp(1 - (1 + t/inv_gamma)^(-power), min_decay, decay). */
  EMA_SCHEDULE_INV_POWER = 1,
  /* Power-function EMA (Karras et al. 2024): an update covering dt steps
     ending at step t has decay (1 - dt/t)^(gamma+1); gamma from sigma_rel
     when sigma_rel > 0 (see ema_power_gamma). */
  EMA_SCHEDULE_POWER = 2,
  /* Half-life of h steps: per-step decay 0.5^(1/h). */
  EMA_SCHEDULE_HALFLIFE = 3
} ema_schedule_kind;

typedef struct ema_schedule {
  ema_schedule_kind kind;
  double decay;              /* CONSTANT: the decay; INV_POWER: the largest decay. In [0, 1]. */
  double min_decay;          /* INV_POWER: the smallest decay once warm-up starts (default 0) */
  double inv_gamma;          /* INV_POWER: > 0 (default 1) */
  double power;              /* INV_POWER: > 0 (default 2/3) */
  double gamma;              /* POWER: > -1, used when sigma_rel is 0 */
  double sigma_rel;          /* POWER: in (0, 0.2887); 0 = use gamma */
  double halflife;           /* HALFLIFE: steps, > 0 */
  int64_t update_after_step; /* every kind: steps <= this copy the model (decay 0); default 0 */
} ema_schedule;

/* Fill *s with the defaults of kind: decay 0.9999, min_decay 0, inv_gamma 1,
   power 2/3, gamma 0 with sigma_rel 0.10 for EMA_SCHEDULE_POWER (sigma_rel
   0 for the others), halflife 1000, update_after_step 0. NULL is a no-op.
   Thread-safe. */
EMA_API void ema_schedule_init(ema_schedule *s, ema_schedule_kind kind);

/* The decay of one update covering the steps (from_step, to_step], i.e. the
   product of the per-step decays of steps from_step+1 .. to_step (0 when any
   of them is <= update_after_step). 0 <= from_step < to_step. *decay is
   written only on success.
   Errors: EMA_E_INVALID_ARG for a NULL or bad schedule, NULL decay or bad
   steps. Thread-safe. */
EMA_API ema_status ema_schedule_decay(const ema_schedule *s, int64_t from_step, int64_t to_step, double *decay);

/* Power-function math (Karras et al. 2024) behind EMA_SCHEDULE_POWER; it
   is core's, and src/posthoc builds on it. The full contract (edge cases,
   accuracy) is written out in ema/posthoc.h, which declares the same three
   functions. All three are pure, thread-safe and never allocate; the output
   is written only on success. Experimental.
   - ema_power_sigma_rel: sigma_rel of exponent gamma (finite, > -1),
     sqrt((g+1) / ((g+2)^2 (g+3))).
   - ema_power_gamma: the gamma >= 0 of sigma_rel in
     (0, EMA_POWER_SIGMA_REL_MAX] (Newton iteration, a few ulps).
   - ema_power_decay: decay (1 - dt/t)^(gamma+1) of an update covering the
     dt steps (t-dt, t]; 1 <= dt <= t; 0 when dt == t.
   Errors: EMA_E_INVALID_ARG for a NULL output or an argument out of range. */
#ifndef EMA_POWER_SIGMA_REL_MAX
#define EMA_POWER_SIGMA_REL_MAX 0.28867513459481287 /* sqrt(1/12): gamma 0 */
#endif
EMA_API ema_status ema_power_sigma_rel(double gamma, double *sigma_rel);
EMA_API ema_status ema_power_gamma(double sigma_rel, double *gamma);
EMA_API ema_status ema_power_decay(double gamma, int64_t t, int64_t dt, double *decay);

/* Use schedule s (copied) for member 0, from the next update on. Its decay
   field becomes member 0's decay (ema_set_decay changes it). A schedule
   other than EMA_SCHEDULE_CONSTANT needs ema_update(ctx, step): ema_apply
   then fails with EMA_E_STATE. Errors: EMA_E_INVALID_ARG (NULL or bad
   schedule). */
EMA_API ema_status ema_set_schedule(ema_ctx *ctx, const ema_schedule *s);

/* A bank: add another member (average) of the same tensors, with its own
   name (copied; the suffix of its tensors in checkpoints, "<tensor>/<name>")
   and schedule (copied). Every update then reads each parameter once and
   updates every member. Legal at any time (since 0.2.0; 0.1 required it
   before the first ema_track): a member added after tensors are tracked
   starts from the current model values (from 0 with zero_debias), with its
   own debias counters, as if those tensors had been tracked into a context
   of its own at this moment; KEEP tensors share their frozen copy with it.
   At most EMA_MAX_AVERAGES members; member 0 is the context's own.
   *index (may be NULL) gets the new member's index.
   Memory: one shadow per averaged tensor (two with zero_debias), in the
   member's own arena, allocated now.
   Errors: EMA_E_INVALID_ARG (bad name or schedule, name taken, too many),
   EMA_E_STATE (swapped or a stored copy held while tensors are tracked:
   the model may not hold the training values), EMA_E_NOMEM. */
#define EMA_MAX_AVERAGES 8
EMA_API ema_status ema_bank_add(ema_ctx *ctx, const char *name, const ema_schedule *s, size_t *index);

/* Number of members of the bank (1 + those added); 0 for NULL. Never fails. */
EMA_API size_t ema_bank_size(const ema_ctx *ctx);

/* Name of member k (owned by ctx, valid until ema_free or the next
   ema_set_name for k == 0), NULL when k is out of range. */
EMA_API const char *ema_bank_name(const ema_ctx *ctx, size_t k);

/* One update of every average at training step `step` (>= 1, larger than the
   step of the previous ema_update), covering the steps since then; each
   average uses its schedule (a step <= update_after_step copies the model).
   With zero_debias, the average is the biased accumulator divided by the
   exact accumulated weight 1 - prod(d_i), kept in float64, which is right
   under any schedule (TensorFlow's 1 - d^k is exact only for a constant d).
   COPY and KEEP tensors are not touched. Uses the context's threads;
   allocates nothing.
   Errors: EMA_E_INVALID_ARG (step not increasing), EMA_E_STATE (swapped). */
EMA_API ema_status ema_update(ema_ctx *ctx, int64_t step);

/* Step of the last ema_update (0 before any, and for NULL). */
EMA_API int64_t ema_last_step(const ema_ctx *ctx);

/* Like ema_average(), for member k of the bank (same ownership and
   lifetime); NULL also when k is out of range. */
EMA_API const void *ema_bank_average(const ema_ctx *ctx, const char *name, size_t k, ema_dtype *dtype);

/* Which member ema_swap, ema_copy_to, ema_average, ema_average_name and
   ema_load_averages_into_model use (default 0).
   Errors: EMA_E_INVALID_ARG (k out of range), EMA_E_STATE (swapped). */
EMA_API ema_status ema_bank_set_active(ema_ctx *ctx, size_t k);

/* The active member (see ema_bank_set_active); 0 for NULL. Since 0.2.0. */
EMA_API size_t ema_bank_active(const ema_ctx *ctx);

/* Write average k of every averaged tensor, under the tensor's own name and
   in the shadow's dtype, to a safetensors snapshot file (atomically), with
   __metadata__ "ema.t" (the step of the last ema_update), "ema.gamma" and
   "ema.sigma_rel" (power-function averages), "ema.name" and
   "libema.snapshot". Snapshots of two power-function averages taken every S
   steps are what `ema posthoc` synthesises any sigma_rel from. path is
   borrowed. Memory: a table of the tensors and the metadata while it
   writes; the tensors stream from the context to the file.
   Experimental (with post-hoc synthesis).
   Errors: EMA_E_INVALID_ARG, EMA_E_STATE (swapped), EMA_E_IO, EMA_E_NOMEM. */
EMA_API ema_status ema_snapshot(const ema_ctx *ctx, size_t k, const char *path);

/* ------------------------------------------------------------------------ */
/* Updates                                                                   */
/* ------------------------------------------------------------------------ */

/* Update every averaged tensor once, in every member of the bank:
   s = s - (s - v) * (1 - d), evaluated in that order in the shadow's
   precision, without fused multiply-add, which is what TensorFlow does bit
   for bit. COPY and KEEP tensors are not touched. Uses the context's
   threads (ema_set_threads); allocates nothing.
   Errors: EMA_E_STATE while swapped, or when a member follows a schedule
   other than EMA_SCHEDULE_CONSTANT (use ema_update). */
EMA_API ema_status ema_apply(ema_ctx *ctx);

/* Update only the named averaged tensors (TensorFlow's apply(var_list)).
   names: borrowed array of n names. Any bad name fails the whole call and
   updates nothing. n == 0 is a successful no-op (names may then be NULL).
   Allocates nothing.
   Errors: EMA_E_INVALID_ARG (NULL names with n > 0, a NULL entry, a name
   given twice, a KEEP tensor), EMA_E_NOT_FOUND (a name not registered),
   EMA_E_DTYPE (a COPY tensor), EMA_E_STATE (as ema_apply). */
EMA_API ema_status ema_apply_some(ema_ctx *ctx, const char *const *names, size_t n);

/* ------------------------------------------------------------------------ */
/* Averages                                                                  */
/* ------------------------------------------------------------------------ */

/* The average of the named tensor (the debiased one when zero_debias is on),
   in its shadow dtype, which *dtype receives when dtype is not NULL. The
   pointer is owned by ctx and stays valid (same address) until ema_free; the
   values it points to change with every apply. While the context is swapped
   the model's training values live there instead (see ema_swap).
   For a KEEP tensor: its frozen copy, in the model dtype. NULL for a NULL
   ctx or name, for a name that is not tracked, and for a COPY tensor (whose
   average is the model tensor itself). Never fails otherwise; sets no
   message. */
EMA_API const void *ema_average(const ema_ctx *ctx, const char *name, ema_dtype *dtype);

/* Write "<name>/<ema name>" (e.g. "w/ExponentialMovingAverage"), NUL
   terminated, into buf of cap bytes, with the name of the active average
   (ema_bank_set_active; average 0 by default). The name need not be
   tracked.
   buf is borrowed. Errors: EMA_E_INVALID_ARG for NULL arguments or when
   buf is too small (then buf is left unchanged). */
EMA_API ema_status ema_average_name(const ema_ctx *ctx, const char *name, char *buf, size_t cap);

/* ------------------------------------------------------------------------ */
/* Evaluating with the averages                                              */
/* ------------------------------------------------------------------------ */

/* Exchange model values and averages in place: afterwards every averaged
   model tensor holds its average (rounded to the model dtype) and the context
   keeps the training values; calling ema_swap() again undoes it bit for bit
   (-0.0, subnormals, Inf and NaN payloads included). Same-dtype shadows are
   exchanged with no extra memory; f16/bf16 models with float32 shadows keep
   the model's values in a side buffer allocated on first use.
   KEEP tensors take part (the model gets the frozen values); COPY tensors
   do not. The active member (ema_bank_set_active) is used.
   While swapped, apply, store, copy_to, restore, track, load and save fail
   with EMA_E_STATE: they would mix averages and training values.
   Memory: on the first swap with f16/bf16 tensors with float32 shadows, a
   side buffer of their model bytes (each rounded up to 64), kept and reused
   until ema_free. Uses the context's threads.
   Errors: EMA_E_NOMEM (the side buffer; nothing swapped). */
EMA_API ema_status ema_swap(ema_ctx *ctx);

/* 1 while swapped, 0 otherwise (and for NULL). */
EMA_API int ema_is_swapped(const ema_ctx *ctx);

/* Keep a copy of the model values of every AVERAGE and KEEP tensor in the
   context (COPY tensors follow the model and are not stored).
   Memory: one buffer of their model bytes (each rounded up to 64),
   allocated on the first store and reused (grown when tensors were added)
   until ema_free.
   Errors: EMA_E_STATE while swapped or while a stored copy is already held
   (storing again would overwrite it and could lose the training values),
   EMA_E_NOMEM. */
EMA_API ema_status ema_store(ema_ctx *ctx);

/* Write the averages of the active member into the model tensors (rounded
   to the model dtype), and the frozen values into KEEP tensors; COPY
   tensors are left alone. Typical use: ema_store, ema_copy_to, evaluate,
   ema_restore. Allocates nothing. Errors: EMA_E_STATE while swapped. */
EMA_API ema_status ema_copy_to(ema_ctx *ctx);

/* Put the values kept by ema_store back into the model and drop the copy
   (its buffer is kept for the next store). Allocates nothing.
   Errors: EMA_E_STATE without a stored copy or while swapped. */
EMA_API ema_status ema_restore(ema_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                               */
/* ------------------------------------------------------------------------ */

/* A checkpoint is one safetensors file (docs/checkpoints.md has the layout):
   each model tensor under its own name, its averages under
   ema_average_name() of each member of the bank ("<name>/<member name>"),
   zero-debias counters beside them, COPY tensors under their own name only, and
   the EMA state in __metadata__ (decay, num_updates, last step, zero_debias,
   every member's name and schedule, format and library version) with
   "libema.xxh64": XXH64 (seed 0) of the file's data section, every byte
   after the header, which any xxHash tool can verify.

   Saving validates everything (not swapped; no registered tensor named like
   an average's key) before the first byte is written.
   Memory: the header (about 150 bytes per key) and, for the buffer form, the
   whole checkpoint; the file and writer forms stream the tensors from the
   context without copying them.

   Loading is all or nothing: it validates the file (strict safetensors
   rules, format version, every tensor the context needs with its dtype and
   shape, every metadata value parsed and range-checked, the checksum over
   exactly the bytes it loads, the file unchanged while it was read), and
   reads everything it needs into one staging buffer before it changes
   anything. A failed load leaves every model tensor, average and setting as
   it was. Memory: the staging buffer holds the bytes loaded (the model and
   all averages for ema_load), plus 1 MiB.
   Files with 0.1's checksum ("libema.checksum") load and are verified.

   Errors of every save and load: EMA_E_INVALID_ARG (NULL or empty
   arguments, a registered name colliding with an average's key),
   EMA_E_STATE (swapped; for loads also a stored copy is held),
   EMA_E_NOMEM, EMA_E_IO (open, read, write, fsync or rename failed; the
   file changed while it was read), EMA_E_FORMAT (not a valid checkpoint:
   truncated, corrupt, hostile, checksum mismatch, bad metadata),
   EMA_E_MISMATCH (a tensor missing or of another dtype or shape, another
   bank size or zero_debias), EMA_E_UNSUPPORTED (a schedule unknown to this
   version). The detail is in ema_last_error(ctx), one line, strings from
   the file escaped. Thread-safety: as every call on a context. */

/* Save to path (borrowed), atomically: a new file beside it, fsync, rename
   over path, fsync of the directory. A crash never leaves a torn file and
   never destroys the previous checkpoint; a replaced file keeps its mode
   (and its owner where the process may set it). See docs/checkpoints.md for
   how temporary files are kept from outliving a crash. */
EMA_API ema_status ema_save(const ema_ctx *ctx, const char *path);

/* Save the same bytes ema_save would write into a new buffer: *buf (free
   it with ema_buffer_free) gets *len bytes. On failure *buf is NULL and *len
   0. Since 0.2.0. */
EMA_API ema_status ema_save_buffer(const ema_ctx *ctx, void **buf, size_t *len);
EMA_API void ema_buffer_free(void *buf); /* NULL is a no-op. Since 0.2.0. */

/* The EMA state alone into a new buffer (free it with ema_buffer_free): what
   ema_save_buffer writes without the model tensors (the averages, the
   zero-debias tensors, KEEP's frozen copies, the metadata; its XXH64 covers
   these tensors). Not a checkpoint ema_load takes: for ema_load_state_buffer
   (the Python binding's state_dict). Since 0.2.0. */
EMA_API ema_status ema_save_state_buffer(const ema_ctx *ctx, void **buf, size_t *len);

/* Receives the checkpoint in pieces, in order: return 0 to go on, anything
   else to stop the save (it then fails with EMA_E_IO). data is valid only
   during the call. */
typedef int (*ema_writer)(void *user, const void *data, size_t len);

/* Save the same bytes ema_save would write through fn(user, ...), streamed
   from the context (no copy of the tensors). Everything is validated before
   the first call; if fn stops the save, what it was given is a prefix, not
   a checkpoint. Since 0.2.0. */
EMA_API ema_status ema_save_writer(const ema_ctx *ctx, ema_writer fn, void *user);

/* ema_save_state_writer's flags. EMA_SAVE_NO_CHECKSUM leaves libema.xxh64
   out of the metadata and saves the pass over the data that computes it:
   for a reader in the same process (a Python state dict), which has no
   bytes at rest to verify. The loads take a state without it. */
#define EMA_SAVE_NO_CHECKSUM 1u

/* ema_save_state_buffer's bytes through fn(user, ...), streamed from the
   context as ema_save_writer streams a checkpoint: a caller that puts each
   tensor of the state in memory of its own (the Python binding, for large
   tensors) copies every byte once and never holds the whole state in one
   block. flags: 0 or EMA_SAVE_NO_CHECKSUM; any other bit is
   EMA_E_INVALID_ARG. Since 0.2.0. */
EMA_API ema_status ema_save_state_writer(const ema_ctx *ctx, unsigned flags, ema_writer fn, void *user);

/* Resume from a checkpoint written by ema_save: model tensors, averages and
   EMA state all come back so that training continues exactly. The whole
   file is validated (format, names, dtypes, shapes, metadata, checksum)
   before anything is written: a failed load changes nothing. path is
   borrowed. Memory: a staging buffer as large as the tensor data it reads
   (about the size of the file), freed before it returns.
   Errors: those listed above for every load. */
EMA_API ema_status ema_load(ema_ctx *ctx, const char *path);

/* The same from a checkpoint in memory: buf[0..len) is borrowed for the call
   only and must not change during it (it is its own staging: hashed in
   place and copied from once validated, no staging buffer). Same validation
   and guarantees as ema_load. Since 0.2.0. */
EMA_API ema_status ema_load_buffer(ema_ctx *ctx, const void *buf, size_t len);

/* ema_load_buffer of the EMA state alone (ema_save_state_buffer's bytes, or a
   whole checkpoint): the averages and EMA state come back; the model tensors
   are neither needed nor changed. Same validation and guarantees. Since 0.2.0. */
EMA_API ema_status ema_load_state_buffer(ema_ctx *ctx, const void *buf, size_t len);

/* One piece of a checkpoint in memory: len bytes at data. */
typedef struct ema_bytes {
  const void *data;
  size_t len;
} ema_bytes;

/* ema_load_state_buffer of a checkpoint held in pieces, so that a caller
   whose tensors are separate blocks (a Python state dict) need not copy them
   into one buffer first: head[0..head_len) is the checkpoint's 8-byte length
   and header (exactly 8 + N bytes), and its data section is parts[0..n_parts)
   back to back. Every tensor's bytes must lie within one part (a part may
   hold several). Everything is borrowed for the call only and must not
   change during it; nothing is copied until the whole checkpoint is
   validated (checksum included, when its metadata holds one). Same
   validation and guarantees as ema_load_state_buffer.
   Errors: those of ema_load_state_buffer; EMA_E_INVALID_ARG when head is
   NULL, parts is NULL with n_parts > 0, a part is NULL with len > 0,
   head_len is not 8 + the header length it starts with, or a tensor
   straddles two parts. Since 0.2.0. */
EMA_API ema_status ema_load_state_parts(ema_ctx *ctx, const void *head, size_t head_len, const ema_bytes *parts,
                                        size_t n_parts);

/* TensorFlow's variables_to_restore(): each average of the active member in
   the file lands in its model tensor (rounded to the model dtype when the
   average is float32 and the model f16/bf16); COPY tensors land under their
   own name. The context's averages and state are not changed. Validation,
   memory and errors as ema_load(). */
EMA_API ema_status ema_load_averages_into_model(ema_ctx *ctx, const char *path);

/* The same from a checkpoint in memory (borrowed for the call). Since 0.2.0. */
EMA_API ema_status ema_load_averages_into_model_buffer(ema_ctx *ctx, const void *buf, size_t len);

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */

#define EMA_MAX_THREADS 256

/* Number of threads ema_apply (and swap, store, copy_to, restore) may use,
   the calling thread included. 0 restores the default: the number of online
   CPUs, at most 8. 1 runs everything on the calling thread and starts no
   thread. Workers belong to the context, sleep between calls, and are
   started here (or lazily by the first call that moves at least 16 MiB);
   the work of one call is split among them by bytes, across tensors, so many
   small tensors cost one fork/join. Results are bitwise identical for every
   thread count. Memory: one thread (the system's default stack) and a
   small control block per worker.
   Errors: EMA_E_INVALID_ARG (n < 0 or > EMA_MAX_THREADS), EMA_E_NOMEM
   (threads could not be started; the previous setting stays). */
EMA_API ema_status ema_set_threads(ema_ctx *ctx, int n);

/* Threads the context uses (see ema_set_threads); 0 for NULL. */
EMA_API int ema_threads(const ema_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Asynchronous updates (since 0.2.0)                                        */
/* ------------------------------------------------------------------------ */

/* The EMA off the critical path. ema_apply_async(ctx) is ema_apply and
   ema_update_async(ctx, step) is ema_update, except that they return as
   soon as the parameters are captured: the call copies every averaged
   tensor into staging buffers owned by the context (a copy at memory speed,
   on the context's threads), advances the EMA's state (debias counters,
   ema_last_step) and hands the update from staging to a thread of the
   context, which runs it with the context's workers in place of the
   caller; the trainer may change its parameters as soon as the call
   returns. The averages equal those of the synchronous call bit for bit
   (every dtype pair, schedule, bank, thread count and ISA).
   Threads: the update thread plays the caller's part, so an update uses
   ema_threads(ctx) threads besides the trainer's: ema_set_threads(ctx, 1)
   keeps it to one core.
   Memory: on the first use, the staging (the model bytes of every AVERAGE
   tensor, each rounded up to 64, in one block from the staging allocator)
   and per-tensor tables (about 600 bytes a tensor); one thread, started
   on the first asynchronous call and stopped by ema_free. The block is
   reused, and reallocated only when tracked tensors need more.
   Errors of the two calls: those of ema_apply / ema_update (nothing is
   started then), EMA_E_NOMEM (staging or the thread; nothing changed), and
   the failure of the previous asynchronous update, if it was not collected
   yet (then nothing else is done).

   Every other call waits or is refused:
   - waits for the update in flight, then runs (and returns the update's
     failure instead, when it failed and was not yet collected, doing
     nothing else): ema_apply, ema_apply_some, ema_update, the async calls
     themselves, ema_wait, ema_swap, ema_store, ema_copy_to, ema_restore,
     ema_save, ema_save_buffer, ema_save_writer, ema_load, ema_load_buffer,
     ema_load_averages_into_model(_buffer), ema_snapshot, ema_track,
     ema_track_policy, ema_untrack, ema_retarget, ema_bank_add,
     ema_set_threads, ema_staging, ema_staging_at,
     ema_set_staging_allocator;
   - waits, leaving a failure for the next call: ema_average,
     ema_bank_average (a pointer they return may be read once they
     returned; a pointer kept from before must not be read while an update
     is in flight), ema_free;
   - runs at once, without waiting (they do not touch the averages or
     anything the update reads): getters (ema_count, ema_tensor_info,
     ema_decay, ema_last_step, ema_bank_size, ...), ema_set_decay,
     ema_set_num_updates, ema_set_schedule, ema_set_name,
     ema_bank_set_active, ema_set_half_shadows, ema_set_zero_debias
     (they take effect from the next update), ema_last_error;
   - refused with EMA_E_STATE: ema_wait (and any waiting call) made from
     inside the ready callback, on the update thread, which would wait for
     itself; ema_wait sets no message then. The callback must not call
     libema on the context otherwise (other calls would race with the
     caller's thread on the error message).
   Sharded saves and loads (ema/dist.h) wait but leave a failure of the
   update for the next call, so that every rank takes part in their
   collective steps; the averages they see are then the ones before the
   failed update (a failed update applies nothing). */

/* Start the asynchronous twin of ema_apply (see above). */
EMA_API ema_status ema_apply_async(ema_ctx *ctx);

/* Start the asynchronous twin of ema_update(ctx, step) (see above). */
EMA_API ema_status ema_update_async(ema_ctx *ctx, int64_t step);

/* Wait for the asynchronous update in flight (none: returns at once) and
   return its status: EMA_OK, or its failure with the detail in
   ema_last_error(ctx). A failed update applied nothing: the averages,
   debias counters and last step are as before it was started. A failure
   is reported once, by this call or by the next call that waits. */
EMA_API ema_status ema_wait(ema_ctx *ctx);

/* Called on the update thread before an update from caller-filled staging
   reads it (wait there for a device-to-host copy, e.g. an event). Return 0
   when the staging holds the values; anything else abandons the update,
   which is then reported by ema_wait as EMA_E_IO. It must not call libema
   on the context. */
typedef int (*ema_ready_fn)(void *user);

/* Like ema_apply_async / ema_update_async, but the caller has filled the
   staging of every AVERAGE tensor (ema_staging) with the parameters, in
   the model dtype, or will have when ready(user) returns; nothing is
   captured. ready may be NULL (the staging is filled already). */
EMA_API ema_status ema_apply_async_staged(ema_ctx *ctx, ema_ready_fn ready, void *user);
EMA_API ema_status ema_update_async_staged(ema_ctx *ctx, int64_t step, ema_ready_fn ready, void *user);

/* The staging buffer of an AVERAGE tensor, by name or by registration index
   (as ema_tensor_info): numel elements of the model dtype, owned by ctx.
   Waits first (fill it only after this returned), allocates the staging
   on first use. *ptr stays valid until the next ema_track,
   ema_track_policy, ema_untrack, ema_set_staging_allocator or ema_free
   (the slices of unchanged tensors usually keep their address; ask again).
   Errors: EMA_E_INVALID_ARG (NULL name or ptr; a COPY or KEEP tensor, which
   has no staging), EMA_E_NOT_FOUND, EMA_E_NOMEM. */
EMA_API ema_status ema_staging(ema_ctx *ctx, const char *name, void **ptr);
EMA_API ema_status ema_staging_at(ema_ctx *ctx, size_t i, void **ptr);

/* Where staging memory comes from (pinned host memory for device copies):
   alloc(user, bytes) returns a block (NULL when it cannot: EMA_E_NOMEM),
   release(user, block) gives it back; any alignment works, 64 bytes is
   fastest. Both NULL restores the library's allocator. Waits first, then
   gives the current staging back (with the allocator that made it); the
   next use allocates with the new one. user is borrowed until ema_free or
   the next call. Errors: EMA_E_INVALID_ARG (only one of alloc and release). */
typedef void *(*ema_staging_alloc_fn)(void *user, size_t bytes);
typedef void (*ema_staging_free_fn)(void *user, void *block);
EMA_API ema_status ema_set_staging_allocator(ema_ctx *ctx, ema_staging_alloc_fn alloc, ema_staging_free_fn release,
                                             void *user);

/* ------------------------------------------------------------------------ */
/* Diagnostics                                                               */
/* ------------------------------------------------------------------------ */

/* Name of the kernel set this process uses ("ref", "avx2", ...), chosen once
   from the CPU and OS, or forced with the environment variable EMA_ISA.
   Static text. Thread-safe. */
EMA_API const char *ema_isa(void);

/* Convert n elements of src (dtype src_dtype) into dst (dtype dst_dtype),
   in host byte order (little-endian on every platform libema supports, as
   in safetensors files), with the library's own conversions: f16 and bf16
   to and from float32 are those of the update kernels, bit for bit
   (round to nearest even, overflow to infinity, NaN kept NaN and made
   quiet; bf16 -> f32 is an exact shift that keeps a signaling NaN
   signaling); widening is exact; float64 to f32, f16 or bf16 is rounded
   once, to nearest even, directly from the double (as numpy's astype).
   Any pair of EMA_F32, EMA_F64, EMA_F16, EMA_BF16; for equal dtypes (any
   dtype, integers included) a copy. dst and src are borrowed and must not
   overlap unless they are the same pointer with the same dtype.
   Errors: EMA_E_INVALID_ARG (NULL dst or src with n > 0, a dtype outside
   the enum), EMA_E_DTYPE (an integer dtype with a different other one);
   nothing is written on failure. Thread-safe. Since 0.2.0. */
EMA_API ema_status ema_convert(void *dst, ema_dtype dst_dtype, const void *src, ema_dtype src_dtype, size_t n);

/* ------------------------------------------------------------------------ */
/* Deprecated names (0.1 spellings; each calls its new name)                 */
/* ------------------------------------------------------------------------ */

/* deprecated: removed before 1.0, use ema_track_policy(..., EMA_POLICY_COPY) */
EMA_API ema_status ema_track_state(ema_ctx *ctx, const char *name, void *data, ema_dtype dtype, int ndim,
                                   const int64_t *shape);
/* deprecated: removed before 1.0, use ema_bank_add */
EMA_API ema_status ema_add_average(ema_ctx *ctx, const char *name, const ema_schedule *s, size_t *index);
/* deprecated: removed before 1.0, use ema_bank_size */
EMA_API size_t ema_average_count(const ema_ctx *ctx);
/* deprecated: removed before 1.0, use ema_bank_name */
EMA_API const char *ema_average_label(const ema_ctx *ctx, size_t k);
/* deprecated: removed before 1.0, use ema_bank_average */
EMA_API const void *ema_average_of(const ema_ctx *ctx, const char *name, size_t k, ema_dtype *dtype);
/* deprecated: removed before 1.0, use ema_bank_set_active */
EMA_API ema_status ema_set_active_average(ema_ctx *ctx, size_t k);
/* deprecated: removed before 1.0, use ema_decay */
EMA_API double ema_get_decay(const ema_ctx *ctx);
/* deprecated: removed before 1.0, use ema_num_updates */
EMA_API int64_t ema_get_num_updates(const ema_ctx *ctx);

#ifdef __cplusplus
}
#endif

#endif /* EMA_CORE_H */
