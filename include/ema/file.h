/*
 * ema/file.h: reading and writing safetensors files, libema's checkpoints
 * or any other writer's, and exporting averages from a checkpoint.
 * Conventions are those of ema/core.h.
 *
 * Since 0.1.0.
 */
#ifndef EMA_FILE_H
#define EMA_FILE_H

#include "ema/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Reading and writing safetensors files (since 0.1.0)                       */
/* ------------------------------------------------------------------------ */

/* Any safetensors file, libema's checkpoints or another writer's, opened
   with the same strict validation the checkpoint loader uses. The header is
   read and checked at open; tensor data is read on demand. One ema_file may
   be used by one thread at a time. Functions on a handle report the detail
   of a failure through ema_file_last_error(f); the functions without a
   handle (ema_file_open, ema_file_write, ema_file_write_stream,
   ema_extract_averages) write one sentence into the caller's err (when err
   is not NULL and errcap > 0). Messages are one line; strings that came
   from a file are shown escaped. */
typedef struct ema_file ema_file;

/* One tensor of a file. Pointers are owned by the ema_file and valid until
   ema_file_close. */
typedef struct ema_file_tensor {
  const char *name;       /* UTF-8, NUL-terminated */
  const char *dtype_name; /* the file's dtype string: "F32", "BF16", "U8", ... */
  int supported;          /* 1 when the dtype is one of ema_dtype */
  ema_dtype dtype;        /* that dtype (EMA_F32 when !supported) */
  int ndim;
  const int64_t *shape; /* ndim entries */
  uint64_t numel;       /* product of the shape */
  uint64_t nbytes;      /* bytes of data */
} ema_file_tensor;

/* Open path (borrowed). *out gets the file, or NULL on failure.
   Errors: EMA_E_INVALID_ARG, EMA_E_IO, EMA_E_FORMAT (the message names the
   byte offset at fault), EMA_E_NOMEM. */
EMA_API ema_status ema_file_open(ema_file **out, const char *path, char *err, size_t errcap);
EMA_API void ema_file_close(ema_file *f); /* NULL is a no-op */

/* The detail of the last failed call on f (one line, owned by f, valid
   until the next call on f); "" after a call that succeeded. Since 0.2.0. */
EMA_API const char *ema_file_last_error(const ema_file *f);

/* Number of tensors, in the file's header order; 0 for NULL. */
EMA_API size_t ema_file_count(const ema_file *f);
/* The i-th tensor. Errors: EMA_E_INVALID_ARG, EMA_E_NOT_FOUND (i out of
   range; the message says so). */
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
   EMA_E_NOT_FOUND, EMA_E_IO; detail in ema_file_last_error(f).
   Changed in 0.2.0: no err/errcap arguments. */
EMA_API ema_status ema_file_read(const ema_file *f, const char *name, uint64_t offset, void *dst, size_t len);

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
   EMA_E_NOMEM, EMA_E_IO. The message starts with the function's name. */
EMA_API ema_status ema_file_write(const char *path, const ema_file_entry *tensors, size_t n, const char *const *meta,
                                  size_t n_meta, char *err, size_t errcap);

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
   at path untouched; its message is kept, after "ema_file_write_stream: ". */
EMA_API ema_status ema_file_write_stream(const char *path, const ema_file_entry *tensors, size_t n,
                                         const char *const *meta, size_t n_meta, ema_file_producer produce, void *user,
                                         char *err, size_t errcap);

/* Turn a checkpoint written by ema_save into a plain inference file: every
   average "<n>/<ema>" is written as "<n>", rounded to the model tensor's
   dtype; COPY tensors are copied as they are; zero-debias accumulators are left
   out. The result loads into the model with any safetensors reader.
   ema_name selects the average (any average of a bank); NULL takes the
   checkpoint's own (metadata ema.name, else "ExponentialMovingAverage").
   Streams: memory stays bounded by a few MiB whatever the model's size.
   Errors: those of ema_file_open and ema_file_write, EMA_E_FORMAT when the
   checkpoint has no averages or an average does not match its tensor. */
EMA_API ema_status ema_extract_averages(const char *checkpoint, const char *out, const char *ema_name, char *err,
                                        size_t errcap);

#ifdef __cplusplus
}
#endif

#endif /* EMA_FILE_H */
