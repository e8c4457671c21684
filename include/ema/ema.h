/*
 * libema: exponential moving averages of deep-learning model weights.
 *
 * This header is the reference manual. Every function is documented where it
 * is declared: what it returns, who owns each pointer, what NULL means and
 * whether it may be called from several threads.
 *
 * Conventions that hold for the whole API unless a function says otherwise:
 *  - Functions return an ema_status. EMA_OK (0) means success.
 *  - A call that fails changes nothing: the context, the caller's tensors and
 *    files on disk are exactly as they were before the call. The reason is in
 *    ema_last_error(ctx), one sentence a user can act on.
 *  - "borrowed" pointers stay owned by the caller and must stay valid for as
 *    long as the documentation says; "copied" arguments are copied before the
 *    call returns and may be freed right after it.
 *  - One context may be used by one thread at a time. Different contexts are
 *    independent and may be used from different threads concurrently.
 *  - The library never prints, never calls exit() or abort() on bad input.
 *
 * Since 0.1.0 unless noted.
 */
#ifndef EMA_EMA_H
#define EMA_EMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Export macro and version                                                  */
/* ------------------------------------------------------------------------ */

#if defined(EMA_STATIC_DEFINE)
#  define EMA_API
#elif defined(_WIN32)
#  if defined(EMA_BUILDING_LIBRARY)
#    define EMA_API __declspec(dllexport)
#  else
#    define EMA_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) || defined(__clang__)
#  define EMA_API __attribute__((visibility("default")))
#else
#  define EMA_API
#endif

#define EMA_VERSION_MAJOR 0
#define EMA_VERSION_MINOR 1
#define EMA_VERSION_PATCH 0
/* MAJOR*10000 + MINOR*100 + PATCH, as ZSTD_VERSION_NUMBER. */
#define EMA_VERSION_NUMBER \
  (EMA_VERSION_MAJOR * 10000 + EMA_VERSION_MINOR * 100 + EMA_VERSION_PATCH)
#define EMA_VERSION_STRING "0.1.0"

/* Runtime twins of the macros above: compare them with the macros to check
   that the header you compiled against matches the library you linked.
   Thread-safe; never fail. */
EMA_API unsigned    ema_version_number(void);
EMA_API const char *ema_version_string(void); /* static text, e.g. "0.1.0" */

/* ------------------------------------------------------------------------ */
/* Status codes and dtypes (values are frozen: never renumbered or reused)   */
/* ------------------------------------------------------------------------ */

typedef enum ema_status {
  EMA_OK = 0,
  EMA_E_INVALID_ARG = 1, /* NULL where not allowed, decay outside [0,1], bad shape/option */
  EMA_E_DTYPE = 2,       /* a dtype that cannot be averaged (integer, bool) */
  EMA_E_NOMEM = 3,       /* an allocation failed; nothing was changed */
  EMA_E_NOT_FOUND = 4,   /* no tensor of that name */
  EMA_E_EXISTS = 5,      /* that name is already registered */
  EMA_E_STATE = 6,       /* not allowed now (apply/save while swapped, restore without store) */
  EMA_E_IO = 7,          /* open/read/write/fsync/rename failed */
  EMA_E_FORMAT = 8,      /* not a valid checkpoint: truncated, corrupt, hostile */
  EMA_E_MISMATCH = 9,    /* checkpoint lacks a tensor or has another dtype/shape */
  EMA_E_UNSUPPORTED = 10 /* a feature this build of the library does not provide */
} ema_status;

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

/* Create a context with a constant decay in [0, 1] (NaN is refused).
   On success *out receives the new context; on failure *out is set to NULL
   when out is not NULL. Returns EMA_E_INVALID_ARG for a NULL out or a bad
   decay, EMA_E_NOMEM when memory runs out. Defaults: num_updates off,
   zero_debias off, name "ExponentialMovingAverage", float32 shadows for
   f16/bf16 parameters. */
EMA_API ema_status ema_create(ema_ctx **out, double decay);

/* Free the context, its shadows and every buffer it owns. Tracked tensors
   stay the caller's and are not touched (if the context is swapped, the
   model holds the averages at this point: call ema_swap() first to get the
   training values back). NULL is a no-op. */
EMA_API void ema_free(ema_ctx *ctx);

/* Detail of the last failed call on ctx, one sentence; "" when the last call
   succeeded or nothing failed yet. The text is owned by ctx and valid until
   the next call on ctx. A NULL ctx gives a static text that says so. */
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
     tensors with ema_track_state().
   - ndim in [0, EMA_MAX_DIMS]; shape[i] >= 0 (zero-size tensors are fine);
     shape may be NULL when ndim is 0.
   The shadow is created now as a copy of the current values (TensorFlow:
   "shadow variables are initialized with the same initial values as the
   trained variables"). With zero_debias on, the shadow starts at 0 instead
   and the average reads 0 until the first update.
   f16/bf16 tensors get float32 shadows unless ema_set_half_shadows() asked
   for same-dtype shadows.
   Errors: EMA_E_INVALID_ARG, EMA_E_DTYPE, EMA_E_EXISTS, EMA_E_NOMEM,
   EMA_E_STATE (while swapped). */
EMA_API ema_status ema_track(ema_ctx *ctx, const char *name, void *data, ema_dtype dtype,
                             int ndim, const int64_t *shape);

/* Register plain state: a tensor of any dtype (integers included) that is
   never averaged, only saved and restored under its own name (TensorFlow's
   variables_to_restore() maps such variables to themselves). Same rules for
   name, data and shape as ema_track(). Names share one namespace with
   ema_track(). Since 0.1.0. */
EMA_API ema_status ema_track_state(ema_ctx *ctx, const char *name, void *data, ema_dtype dtype,
                                   int ndim, const int64_t *shape);

/* Number of registered tensors (averaged and plain state), 0 for NULL. */
EMA_API size_t ema_count(const ema_ctx *ctx);

/* Facts about the i-th registered tensor, in registration order, for tools
   and bindings. Any output pointer may be NULL. *name stays valid until
   ema_free; *data is the caller's borrowed pointer; *averaged is 1 for
   ema_track() tensors and 0 for plain state; *shape must hold EMA_MAX_DIMS.
   Errors: EMA_E_INVALID_ARG (NULL ctx), EMA_E_NOT_FOUND (i out of range). */
EMA_API ema_status ema_tensor_info(const ema_ctx *ctx, size_t i, const char **name, void **data,
                                   ema_dtype *dtype, int *ndim, int64_t *shape, int *averaged);

/* Point the registered tensor `name` at new memory of the same dtype and
   shape (borrowed, as in ema_track), keeping its averages: for a framework
   that moved or reallocated a parameter (PyTorch's param.data = ...).
   Errors: EMA_E_INVALID_ARG (NULL data for a non-empty tensor),
   EMA_E_NOT_FOUND, EMA_E_STATE (while swapped or while a stored copy is
   held: both refer to the old memory). */
EMA_API ema_status ema_retarget(ema_ctx *ctx, const char *name, void *data);

/* Forget the registered tensor `name` (averaged or plain state): it is no
   longer updated, saved or loaded, and its average pointer must no longer
   be used. Its shadow memory is given back at ema_free. Names of other
   tensors and their average pointers are unaffected.
   Errors: EMA_E_NOT_FOUND, EMA_E_STATE (while swapped or stored). */
EMA_API ema_status ema_untrack(ema_ctx *ctx, const char *name);

/* Shadow policy for f16/bf16 tensors tracked after this call: 0 (default)
   keeps float32 shadows, which keep averaging at decay 0.9999 where a bf16
   shadow stalls; 1 keeps shadows of the parameter's own dtype with every
   operation rounded to that dtype, as TensorFlow does. */
EMA_API ema_status ema_set_half_shadows(ema_ctx *ctx, int same_dtype);

/* ------------------------------------------------------------------------ */
/* Decay                                                                     */
/* ------------------------------------------------------------------------ */

/* Set the decay used from the next apply on (a dynamic decay). decay must be
   in [0, 1]; NaN is refused with EMA_E_INVALID_ARG. */
EMA_API ema_status ema_set_decay(ema_ctx *ctx, double decay);

/* Set TensorFlow's num_updates (its global_step). With n >= 0 the effective
   decay is min(decay, (1+n)/(10+n)) evaluated in float32 exactly as
   TensorFlow does (n is first converted to float32). n < 0 turns the
   warm-up off. The library never increments n: the caller owns the step. */
EMA_API ema_status ema_set_num_updates(ema_ctx *ctx, int64_t n);

/* Turn TensorFlow's zero_debias on or off. Allowed only before the first
   ema_track() of an averaged tensor (EMA_E_STATE after). With it on, each
   tensor keeps a biased accumulator b starting at 0 and a counter k, and the
   average is b / (1 - (1-om)^k), all in the shadow's precision, with
   om = 1 - d; this is Ng's bias correction, exact for a constant decay. */
EMA_API ema_status ema_set_zero_debias(ema_ctx *ctx, int on);

/* Set the EMA's name (copied; default "ExponentialMovingAverage"); it is the
   suffix of every average in checkpoints: "<tensor>/<name>". 1..255 bytes,
   no NUL. */
EMA_API ema_status ema_set_name(ema_ctx *ctx, const char *name);

/* The decay as set (ema_create, ema_set_decay, a loaded checkpoint), before
   any warm-up; NaN for NULL. */
EMA_API double ema_get_decay(const ema_ctx *ctx);

/* num_updates as set, -1 when off (and for NULL). */
EMA_API int64_t ema_get_num_updates(const ema_ctx *ctx);

/* The decay d the next apply will use, after the num_updates warm-up,
   converted exactly from float32 to double. NaN for a NULL ctx. */
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
   power 2/3, gamma 6.94 (sigma_rel 0.10 is set instead), halflife 1000,
   update_after_step 0. */
EMA_API void ema_schedule_init(ema_schedule *s, ema_schedule_kind kind);

/* The decay of one update covering the steps (from_step, to_step], i.e. the
   product of the per-step decays of steps from_step+1 .. to_step (0 when any
   of them is <= update_after_step). 0 <= from_step < to_step.
   Errors: EMA_E_INVALID_ARG for a bad schedule or steps. Thread-safe. */
EMA_API ema_status ema_schedule_decay(const ema_schedule *s, int64_t from_step, int64_t to_step, double *decay);

/* Use schedule s (copied) for the context's first average. Its decay field
   becomes the context's decay (ema_set_decay changes it). */
EMA_API ema_status ema_set_schedule(ema_ctx *ctx, const ema_schedule *s);

/* A bank: add another average of the same tensors, with its own name
   (copied; the suffix of its tensors in checkpoints, "<tensor>/<name>") and
   schedule (copied). Every update then reads each parameter once and updates
   every average. Allowed only before the first ema_track() of an averaged
   tensor. At most EMA_MAX_AVERAGES averages; average 0 is the context's own.
   *index (may be NULL) gets the new average's index.
   Errors: EMA_E_INVALID_ARG (bad name or schedule, name taken, too many),
   EMA_E_STATE (tensors already tracked). */
#define EMA_MAX_AVERAGES 8
EMA_API ema_status ema_add_average(ema_ctx *ctx, const char *name, const ema_schedule *s, size_t *index);

/* Number of averages (1 + those added); 0 for NULL. */
EMA_API size_t ema_average_count(const ema_ctx *ctx);

/* Name of average k (owned by ctx), NULL when k is out of range. */
EMA_API const char *ema_average_label(const ema_ctx *ctx, size_t k);

/* One update of every average at training step `step` (>= 1, larger than the
   step of the previous ema_update), covering the steps since then; each
   average uses its schedule (a step <= update_after_step copies the model).
   With zero_debias, the average is the biased accumulator divided by the
   exact accumulated weight 1 - prod(d_i), kept in float64, which is right
   under any schedule (TensorFlow's 1 - d^k is exact only for a constant d).
   Errors: EMA_E_INVALID_ARG (step not increasing), EMA_E_STATE (swapped). */
EMA_API ema_status ema_update(ema_ctx *ctx, int64_t step);

/* Step of the last ema_update (0 before any). */
EMA_API int64_t ema_last_step(const ema_ctx *ctx);

/* Like ema_average(), for average k of the bank. */
EMA_API const void *ema_average_of(const ema_ctx *ctx, const char *name, size_t k, ema_dtype *dtype);

/* Which average ema_swap, ema_copy_to, ema_average and
   ema_load_averages_into_model use (default 0). EMA_E_STATE while swapped. */
EMA_API ema_status ema_set_active_average(ema_ctx *ctx, size_t k);

/* Write average k of every averaged tensor, under the tensor's own name and
   in the shadow's dtype, to a safetensors snapshot file (atomically), with
   __metadata__ "ema.t" (the step of the last ema_update), "ema.gamma" and
   "ema.sigma_rel" (power-function averages), "ema.name" and
   "libema.snapshot". Snapshots of two power-function averages taken every S
   steps are what `ema posthoc` synthesises any sigma_rel from.
   Errors: EMA_E_INVALID_ARG, EMA_E_STATE (swapped), EMA_E_IO, EMA_E_NOMEM. */
EMA_API ema_status ema_snapshot(const ema_ctx *ctx, size_t k, const char *path);

/* ------------------------------------------------------------------------ */
/* Updates                                                                   */
/* ------------------------------------------------------------------------ */

/* Update every averaged tensor once: s = s - (s - v) * (1 - d), evaluated in
   that order in the shadow's precision, without fused multiply-add, which is
   what TensorFlow does bit for bit. Plain state is not touched.
   Errors: EMA_E_STATE while swapped. */
EMA_API ema_status ema_apply(ema_ctx *ctx);

/* Update only the named averaged tensors (TensorFlow's apply(var_list)).
   names: borrowed array of n names. An unknown name, a name given twice or a
   plain-state name fails the whole call and updates nothing.
   n == 0 is a successful no-op (names may then be NULL). */
EMA_API ema_status ema_apply_some(ema_ctx *ctx, const char *const *names, size_t n);

/* ------------------------------------------------------------------------ */
/* Averages                                                                  */
/* ------------------------------------------------------------------------ */

/* The average of the named tensor (the debiased one when zero_debias is on),
   in its shadow dtype, which *dtype receives when dtype is not NULL. The
   pointer is owned by ctx and stays valid (same address) until ema_free; the
   values it points to change with every apply. While the context is swapped
   the model's training values live there instead (see ema_swap).
   NULL for a NULL ctx or name, for a name that is not tracked, and for plain
   state. */
EMA_API const void *ema_average(const ema_ctx *ctx, const char *name, ema_dtype *dtype);

/* Write "<name>/<ema name>" (e.g. "w/ExponentialMovingAverage"), NUL
   terminated, into buf of cap bytes, with the name of the active average
   (ema_set_active_average; average 0 by default). The name need not be
   tracked.
   Errors: EMA_E_INVALID_ARG for NULL arguments or when buf is too small
   (then buf is left unchanged). */
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
   While swapped, apply, store, copy_to, restore, track, load and save fail
   with EMA_E_STATE: they would mix averages and training values. */
EMA_API ema_status ema_swap(ema_ctx *ctx);

/* 1 while swapped, 0 otherwise (and for NULL). */
EMA_API int ema_is_swapped(const ema_ctx *ctx);

/* Keep a copy of every averaged model tensor's values in the context.
   EMA_E_STATE while swapped or while a stored copy is already held (storing
   again would overwrite it and could lose the training values). */
EMA_API ema_status ema_store(ema_ctx *ctx);

/* Write the averages into the model tensors (rounded to the model dtype).
   Typical use: ema_store, ema_copy_to, evaluate, ema_restore.
   EMA_E_STATE while swapped. */
EMA_API ema_status ema_copy_to(ema_ctx *ctx);

/* Put the values kept by ema_store back into the model and drop the copy.
   EMA_E_STATE without a stored copy or while swapped. */
EMA_API ema_status ema_restore(ema_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                               */
/* ------------------------------------------------------------------------ */

/* Save one safetensors file holding each model tensor under its own name,
   its average under ema_average_name(), and the EMA state in __metadata__.
   Written atomically. path is borrowed. EMA_E_STATE while swapped. */
EMA_API ema_status ema_save(const ema_ctx *ctx, const char *path);

/* Resume from a checkpoint written by ema_save: model tensors, averages and
   EMA state all come back so that training continues exactly. */
EMA_API ema_status ema_load(ema_ctx *ctx, const char *path);

/* TensorFlow's variables_to_restore(): each average in the file lands in its
   model tensor; plain state lands under its own name. */
EMA_API ema_status ema_load_averages_into_model(ema_ctx *ctx, const char *path);

/* ------------------------------------------------------------------------ */
/* Reading and writing safetensors files (since 0.1.0)                       */
/* ------------------------------------------------------------------------ */

/* Any safetensors file, libema's checkpoints or another writer's, opened
   with the same strict validation the checkpoint loader uses. The header is
   read and checked at open; tensor data is read on demand. One ema_file may
   be used by one thread at a time. Functions that can fail write one
   sentence into err (when err is not NULL and errcap > 0). */
typedef struct ema_file ema_file;

/* One tensor of a file. Pointers are owned by the ema_file and valid until
   ema_file_close. */
typedef struct ema_file_tensor {
  const char *name;       /* UTF-8, NUL-terminated */
  const char *dtype_name; /* the file's dtype string: "F32", "BF16", "U8", ... */
  int supported;          /* 1 when the dtype is one of ema_dtype */
  ema_dtype dtype;        /* that dtype (EMA_F32 when !supported) */
  int ndim;
  const int64_t *shape;   /* ndim entries */
  uint64_t numel;         /* product of the shape */
  uint64_t nbytes;        /* bytes of data */
} ema_file_tensor;

/* Open path (borrowed). *out gets the file, or NULL on failure.
   Errors: EMA_E_INVALID_ARG, EMA_E_IO, EMA_E_FORMAT (the message names the
   byte offset at fault), EMA_E_NOMEM. */
EMA_API ema_status ema_file_open(ema_file **out, const char *path, char *err, size_t errcap);
EMA_API void ema_file_close(ema_file *f); /* NULL is a no-op */

/* Number of tensors, in the file's header order; 0 for NULL. */
EMA_API size_t ema_file_count(const ema_file *f);
/* The i-th tensor. Errors: EMA_E_INVALID_ARG, EMA_E_NOT_FOUND (i too big). */
EMA_API ema_status ema_file_tensor_at(const ema_file *f, size_t i, ema_file_tensor *out);
/* The tensor called name. Errors: EMA_E_INVALID_ARG, EMA_E_NOT_FOUND. */
EMA_API ema_status ema_file_find(const ema_file *f, const char *name, ema_file_tensor *out);

/* __metadata__: number of entries, the i-th entry, or the value of key
   (NULL when absent). Strings are owned by f. */
EMA_API size_t ema_file_metadata_count(const ema_file *f);
EMA_API ema_status ema_file_metadata_at(const ema_file *f, size_t i, const char **key, const char **value);
EMA_API const char *ema_file_metadata(const ema_file *f, const char *key);

/* Copy bytes [offset, offset + len) of the tensor called name (as stored:
   little-endian, C order) into dst. Use offset 0 and len = nbytes for the
   whole tensor, or a window to stream a large tensor with bounded memory.
   Errors: EMA_E_INVALID_ARG (NULL, range outside the tensor),
   EMA_E_NOT_FOUND, EMA_E_IO. */
EMA_API ema_status ema_file_read(const ema_file *f, const char *name, uint64_t offset, void *dst, size_t len,
                                 char *err, size_t errcap);

/* One tensor to write: borrowed pointers, C-contiguous little-endian data. */
typedef struct ema_file_entry {
  const char *name;
  ema_dtype dtype;
  int ndim;
  const int64_t *shape;
  const void *data;
} ema_file_entry;

/* Write a safetensors file atomically (temporary file in the same
   directory, fsync, rename, fsync of the directory): a failure leaves any
   previous file at path untouched. meta is n_meta (key, value) pairs of
   UTF-8 strings laid out as meta[2*i], meta[2*i+1]; NULL when n_meta is 0.
   Errors: EMA_E_INVALID_ARG (bad or duplicate names, bad shapes),
   EMA_E_NOMEM, EMA_E_IO. */
EMA_API ema_status ema_file_write(const char *path, const ema_file_entry *tensors, size_t n,
                                  const char *const *meta, size_t n_meta, char *err, size_t errcap);

/* Produces the bytes of tensor `index` (into tensors[] of
   ema_file_write_stream) from byte `offset`, len bytes (at most 1 MiB) into
   dst. Return EMA_OK, or a status and a sentence in err to abort. */
typedef ema_status (*ema_file_producer)(void *user, size_t index, uint64_t offset, void *dst, size_t len, char *err,
                                        size_t errcap);

/* Like ema_file_write, with the data streamed from produce() instead of the
   entries' data pointers (ignored): tensors are produced one at a time, in
   the file's order (not necessarily the caller's), each in increasing
   offsets, so memory stays bounded by a 1 MiB buffer whatever the file's
   size. An error from produce aborts the write and leaves any previous file
   at path untouched. */
EMA_API ema_status ema_file_write_stream(const char *path, const ema_file_entry *tensors, size_t n,
                                         const char *const *meta, size_t n_meta, ema_file_producer produce,
                                         void *user, char *err, size_t errcap);

/* Turn a checkpoint written by ema_save into a plain inference file: every
   average "<n>/<ema>" is written as "<n>", rounded to the model tensor's
   dtype; plain state is copied as it is; zero-debias accumulators are left
   out. The result loads into the model with any safetensors reader.
   ema_name selects the average (any average of a bank); NULL takes the
   checkpoint's own (metadata ema.name, else "ExponentialMovingAverage").
   Streams: memory stays bounded by a few MiB whatever the model's size.
   Errors: those of ema_file_open and ema_file_write, EMA_E_FORMAT when the
   checkpoint has no averages or an average does not match its tensor. */
EMA_API ema_status ema_extract_averages(const char *checkpoint, const char *out, const char *ema_name, char *err,
                                        size_t errcap);

/* ======================================================================== */
/* Time series: EMA of a data series with pandas ewm semantics (since 0.1.0)  */
/* ======================================================================== */

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
  ema_ewm_kind kind;  /* default EMA_EWM_COM */
  double value;       /* default NaN: "not set", refused until set */
  int adjust;         /* default 1: pandas adjust=True (weights (1-alpha)^i,
                         divided by their sum: the bias-corrected average);
                         0: y_0 = x_0, y_t = (1-alpha) y_{t-1} + alpha x_t */
  int ignore_na;      /* default 0: missing values still age the older
                         weights (absolute positions); 1: missing values are
                         skipped as if absent (relative positions) */
  size_t min_periods; /* default 0; results stay NaN until this many
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
EMA_API ema_status ema_ewm_opts_set_beta(ema_ewm_opts *opts, double beta, char *err,
                                         size_t errcap);

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
EMA_API ema_status ema_ewm_check(const ema_ewm_opts *opts, int have_times, double *alpha,
                                 char *err, size_t errcap);

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
EMA_API ema_status ema_ewm_mean(const ema_ewm_opts *opts, const double *x, size_t n,
                                const double *times, double *out, char *err, size_t errcap);

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
EMA_API ema_status ema_ewm_stream_create(ema_ewm_stream **out, const ema_ewm_opts *opts,
                                         int with_times, char *err, size_t errcap);

/* Push x[0..n) (and their time stamps, NULL unless the stream was created
   with_times) and write the n means into out, as ema_ewm_mean() describes.
   Time stamps must be finite and non-decreasing across pushes too. A failed
   push (NULL stream, NULL x/out/times with n > 0, bad stamps) changes neither
   the stream nor out. n == 0 is a no-op. */
EMA_API ema_status ema_ewm_stream_push(ema_ewm_stream *stream, const double *x, size_t n,
                                       const double *times, double *out, char *err,
                                       size_t errcap);

/* Number of values pushed so far, and how many of them were non-missing.
   NULL stream gives 0. */
EMA_API uint64_t ema_ewm_stream_count(const ema_ewm_stream *stream);
EMA_API uint64_t ema_ewm_stream_observations(const ema_ewm_stream *stream);

/* Forget everything pushed: the stream is as just created. NULL is a no-op. */
EMA_API void ema_ewm_stream_reset(ema_ewm_stream *stream);

/* Free the stream. NULL is a no-op. */
EMA_API void ema_ewm_stream_free(ema_ewm_stream *stream);

/* ------------------------------------------------------------------------ */
/* The seeds' recursion and a synthetic data set                             */
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
EMA_API ema_status ema_series_beta(const double *x, size_t n, double beta,
                                   int bias_correction, double *out, char *err,
                                   size_t errcap);

/* A deterministic synthetic record of daily mean temperatures in degrees
   Celsius, shaped like the London year in the seeds' figure: a seasonal
   sinusoid (mean 11.0, amplitude 7.0, coldest around 15 January = day 0 is
   1 January, period 365 days), plus day-to-day weather that persists (an
   AR(1) process, coefficient 0.7, standard deviation about 2.5) plus
   independent noise (standard deviation about 1.0). Writes out[0..n_days);
   n_days may exceed 365 (the seasons repeat). The same seed gives the same
   values on every run; the noise comes from the library's own generator
   (splitmix64), never from rand(). Values depend on the platform's cos()
   only through the seasonal term. out may be NULL when n_days is 0.
   Returns EMA_OK or EMA_E_INVALID_ARG (NULL out with n_days > 0).
   Thread-safe. */
EMA_API ema_status ema_series_synthetic_temperatures(double *out, size_t n_days,
                                                     uint64_t seed);

/* ======================================================================== */
/* Power-function EMA and post-hoc synthesis (since 0.1.0)                    */
/* ======================================================================== */

/*
 * Power-function EMA and post-hoc EMA synthesis (src/posthoc/; Karras et al.
 * 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models",
 * the EDM2 paper, section 3 and appendix C).
 *
 * This is the numerical core used by the `ema posthoc` tool, the EMA bank
 * and the Python binding. Everything here is pure arithmetic in IEEE double
 * precision: no context, no global state, no printing, no abort. Every
 * function is thread-safe and reentrant.
 *
 * Background, in the notation used below.
 *
 *   A power-function EMA with exponent gamma (> -1), read at time t > 0, is
 *   the weighted average of the training weights w(tau), 0 <= tau <= t, with
 *   the weight profile
 *
 *       p_{t,gamma}(tau) = (gamma+1) tau^gamma / t^(gamma+1)   on [0, t],
 *                          0                                   elsewhere,
 *
 *   whose integral is 1. Its width relative to t, "sigma_rel", is the
 *   standard deviation of tau/t under p:
 *
 *       sigma_rel = sqrt((gamma+1) / ((gamma+2)^2 (gamma+3))).
 *
 *   sigma_rel is strictly decreasing in gamma for gamma >= 0, from
 *   sqrt(1/12) ~= 0.288675 (gamma = 0, the plain running mean) towards 0.
 *   EDM2 tracks sigma_rel 0.05 (gamma ~= 16.97) and 0.10 (gamma ~= 6.94).
 *
 *   Tracked during training with one update per dt steps, the average
 *   obeys s <- d s + (1-d) w with d = (1 - dt/t)^(gamma+1) for the update
 *   ending at step t. That discrete rule is exact, not an approximation:
 *   after it, the weight that step tau's value carries in s_t is
 *   (tau^(g+1) - (tau-dt)^(g+1)) / t^(g+1), the integral of p_{t,gamma}
 *   over the interval (tau-dt, tau] that the update covers. So a snapshot
 *   s_t is exactly the integral of p_{t,gamma} against the piecewise
 *   constant weight trajectory.
 *
 *   Post-hoc synthesis: given snapshots s_i of profiles p_i = p_{t_i,g_i}
 *   (typically two gammas, every S steps), the average of another profile
 *   p_r = p_{t_r,g_r} is approximated by sum_i x_i s_i, with x the least-
 *   squares fit of p_r by the p_i in L2([0, inf)): A x = b with
 *   A_ij = <p_i, p_j>, b_i = <p_i, p_r>. The error of the synthesised
 *   average is then bounded (Cauchy-Schwarz) by
 *
 *       |sum_i x_i s_i - s_r| <= residual * ||p_r|| * ||w||_{L2[0,t_r]},
 *
 *   with residual the relative L2 residual reported by ema_posthoc_solve
 *   and ||p_r|| = (g_r+1) / sqrt((2 g_r + 1) t_r).
 *
 * Since 0.1.0.
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
EMA_API ema_status ema_power_inner(double t_a, double gamma_a, double t_b, double gamma_b,
                                   double *out);

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

   Method, all in double precision: times are divided by t_r (which changes
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
EMA_API ema_status ema_posthoc_solve(size_t n, const double *t, const double *gamma,
                                     double t_r, double gamma_r, double max_cond,
                                     unsigned flags, double *coef, ema_posthoc_info *info,
                                     char *err, size_t errcap);

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */

#define EMA_MAX_THREADS 256

/* Number of threads ema_apply (and swap, store, copy_to, restore) may use,
   the calling thread included. 0 restores the default: the number of online
   CPUs, at most 8. 1 runs everything on the calling thread and starts no
   thread. Workers belong to the context, sleep between calls, and are
   started here (or lazily by the first call that moves at least 1 MiB);
   the work of one call is split among them by bytes, across tensors, so many
   small tensors cost one fork/join. Results are bitwise identical for every
   thread count. Errors: EMA_E_INVALID_ARG (n < 0 or > EMA_MAX_THREADS),
   EMA_E_NOMEM (threads could not be started; the previous setting stays). */
EMA_API ema_status ema_set_threads(ema_ctx *ctx, int n);

/* Threads the context uses (see ema_set_threads); 0 for NULL. */
EMA_API int ema_threads(const ema_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Diagnostics                                                               */
/* ------------------------------------------------------------------------ */

/* Name of the kernel set this process uses ("ref", "avx2", ...), chosen once
   from the CPU and OS, or forced with the environment variable EMA_ISA.
   Static text. Thread-safe. */
EMA_API const char *ema_isa(void);

#ifdef __cplusplus
}
#endif

#endif /* EMA_EMA_H */
