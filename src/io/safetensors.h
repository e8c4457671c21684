/*
 * src/io/safetensors.h: internal safetensors reader and writer.
 *
 * Not part of the public API: nothing here is exported from the shared
 * library (hidden visibility). The checkpoint functions (ema_save, ema_load)
 * and the `ema` tool are built on it.
 *
 * File format (https://github.com/huggingface/safetensors):
 *   8 bytes   N, little-endian uint64: length of the JSON header
 *   N bytes   JSON header, UTF-8
 *   rest      tensor data, little-endian, C order, tensors back to back
 *
 * What the reader accepts: exactly the reference implementation's rules
 * (huggingface/safetensors, safetensors/src/tensor.rs, read_metadata and
 * Metadata::validate), made stricter where the reference leaves room for
 * ambiguity. Every violation is EMA_E_FORMAT with a message naming the byte
 * offset in the file and what was expected.
 *   - N <= ST_MAX_HEADER (the reference's MAX_HEADER_SIZE, 100,000,000) and
 *     8 + N <= file size.
 *   - The header is one JSON object that starts at the first header byte
 *     ('{', as the reference plans to require); after its closing brace only
 *     spaces (0x20) may follow: the reference writer pads with spaces.
 *   - Each key is a tensor name mapping to an object with exactly the keys
 *     "dtype" (a known dtype string), "shape" (array of at most ST_MAX_RANK
 *     integers) and "data_offsets" (array of exactly 2 integers). The
 *     optional key "__metadata__" maps to an object whose values are all
 *     strings. Nothing else: no unknown fields (the reference ignores them),
 *     no null "__metadata__", no other nesting.
 *   - Duplicate keys are refused at every level (the reference silently
 *     keeps the last one).
 *   - Integers are plain decimal digits: no sign, fraction, exponent or
 *     leading zero, and at most ST_MAX_INT = 2^53, the largest integer every
 *     JSON implementation represents exactly (RFC 8259, section 6). The
 *     reference takes anything up to 2^64-1; no real file comes near 2^53.
 *   - Strings are strict UTF-8 (no overlongs, surrogates or code points
 *     above U+10FFFF), have no raw control characters, use only the JSON
 *     escapes, and \u escapes decode to valid Unicode (surrogates only in
 *     proper pairs). U+0000 is refused (decoded or escaped): names are C
 *     strings here, and "a\u0000b" would otherwise alias "a".
 *   - Whitespace between tokens is JSON whitespace (space, tab, LF, CR).
 *   - Validation, as the reference: tensors sorted by data_offsets (begin,
 *     then end) must be contiguous from 0 with no hole or overlap; the
 *     element count is the product of the shape, computed left to right with
 *     overflow checks (as the reference's checked fold); the size in bits is
 *     count * dtype bits with an overflow check, and must be a whole number
 *     of bytes; end - begin must equal that size; the data section must end
 *     exactly at the last end (no trailing bytes).
 *
 * What the writer produces: what the reference writer (tensor.rs, prepare
 * and serialize) produces for the same input, byte for byte up to the order
 * of the "__metadata__" entries (the reference's HashMap order is random;
 * ours is the caller's):
 *   - tensors sorted by dtype alignment, largest first (the reference's
 *     Dtype enum order, st_dtype below, descending), then by name (bytewise);
 *   - compact JSON: {"__metadata__":{...},"name":{"dtype":"F32",
 *     "shape":[2,3],"data_offsets":[0,24]},...}, "__metadata__" first and
 *     only when there is metadata; strings escaped as serde_json does
 *     (\" \\ \b \f \n \r \t, other bytes below 0x20 as \u00XX, everything
 *     else, '/' and non-ASCII included, as is);
 *   - the header padded with spaces to a multiple of 8 bytes, so the data
 *     starts at a multiple of 8 and every tensor of the dtype order above is
 *     aligned to its element size.
 * The file is written atomically: a temporary file in the target's
 * directory, fsync, rename over the target, fsync of the directory.
 *
 * Errors: every function that can fail returns an ema_status and, when err
 * is not NULL and err_cap > 0, writes one NUL-terminated sentence into err
 * (truncated to err_cap). Nothing here prints, aborts or keeps global state,
 * except the thread-local fault injection used by the tests (st_test_*).
 * Thread safety: different st_file objects may be used from different
 * threads; one st_file by one thread at a time.
 */
#ifndef EMA_IO_SAFETENSORS_H
#define EMA_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "ema/file.h"

/* The reference implementation's MAX_HEADER_SIZE. */
#define ST_MAX_HEADER 100000000u
/* Largest integer accepted in a header (2^53). */
#define ST_MAX_INT 9007199254740992u
/* Largest rank accepted (the reference has no bound; numpy 2 and PyTorch
   stop at 64). Bounds the memory a hostile header can make us allocate. */
#define ST_MAX_RANK 64

/* safetensors dtypes, in the reference's Dtype enum order, which is
   "increasing alignment order": the writer sorts by this value, largest
   first. The values are internal, not a file format. */
typedef enum st_dtype {
  ST_BOOL = 0,
  ST_F4,
  ST_F6_E2M3,
  ST_F6_E3M2,
  ST_U8,
  ST_I8,
  ST_F8_E5M2,
  ST_F8_E4M3,
  ST_F8_E8M0,
  ST_I16,
  ST_U16,
  ST_F16,
  ST_BF16,
  ST_I32,
  ST_U32,
  ST_F32,
  ST_C64,
  ST_F64,
  ST_I64,
  ST_U64,
  ST_DTYPE_COUNT
} st_dtype;

/* The dtype's name in files ("F32", "BF16", ...); "?" when out of range. */
const char *st_dtype_name(st_dtype dt);
/* Size of one element in bits (4 for F4, 6 for F6_*); 0 when out of range. */
unsigned st_dtype_bits(st_dtype dt);
/* The st_dtype called name[0..len), or -1 when there is none. */
int st_dtype_from_name(const char *name, size_t len);
/* Map to libema's dtype: returns 1 and sets *out for F32 F64 F16 BF16 I32
   I64, 0 for every other dtype (readable, but not supported by libema). */
int st_dtype_to_ema(st_dtype dt, ema_dtype *out);
/* Map from libema's dtype; -1 for a value outside ema_dtype. */
int st_dtype_from_ema(ema_dtype dt);

/* ------------------------------------------------------------------------ */
/* Reader                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct st_tensor {
  const char *name; /* NUL-terminated UTF-8 (no NUL inside); owned by the st_file */
  size_t name_len;  /* bytes, without the NUL */
  st_dtype dtype;
  int ema_supported;    /* 1 when dtype maps to an ema_dtype */
  ema_dtype ema;        /* that ema_dtype; EMA_F32 when !ema_supported */
  int ndim;             /* 0..ST_MAX_RANK */
  const int64_t *shape; /* ndim entries, each in [0, ST_MAX_INT]; owned by the st_file */
  uint64_t count;       /* number of elements */
  uint64_t nbytes;      /* bytes of data = end - begin */
  uint64_t begin, end;  /* data_offsets: relative to data_start */
  uint64_t key_offset;  /* file offset of the name's opening quote (for messages) */
} st_tensor;

typedef struct st_meta {
  const char *key; /* NUL-terminated UTF-8; owned by the st_file */
  size_t key_len;
  const char *value; /* NUL-terminated UTF-8; owned by the st_file */
  size_t value_len;
} st_meta;

typedef struct st_file_impl st_file_impl;

typedef struct st_file {
  size_t n_tensors;
  const st_tensor *tensors; /* in header (file) order */
  size_t n_meta;
  const st_meta *meta; /* "__metadata__" entries in header order */
  int has_metadata;    /* 1 when the header had a "__metadata__" key */
  uint64_t header_len; /* N */
  uint64_t data_start; /* 8 + N: file offset of the data section */
  uint64_t data_len;   /* bytes of data = the last end */
  uint64_t file_size;  /* data_start + data_len */
  st_file_impl *impl;  /* private */
} st_file;

/* Open and validate the safetensors file at path (borrowed). Reads the
   8-byte length and the header only; tensor data is read on demand with
   st_read(). The file stays open until st_close. On success *out gets a new
   st_file; on failure *out is NULL.
   Errors: EMA_E_INVALID_ARG (NULL path or out), EMA_E_IO (open, stat or read
   failed, not a regular file), EMA_E_FORMAT (any violation listed at the top
   of this header), EMA_E_NOMEM. */
ema_status st_open(const char *path, st_file **out, char *err, size_t err_cap);

/* The same over a whole file held in memory. buf is borrowed and must stay
   valid and unchanged until st_close. Used by the fuzzer and the tests. */
ema_status st_open_mem(const void *buf, size_t len, st_file **out, char *err, size_t err_cap);

/* Open the length and header of a file held in memory, head[0..head_len)
   (exactly 8 + N bytes), whose data section of data_len bytes the caller
   keeps elsewhere (ema_load_state_parts): the header is validated against
   that size as st_open_mem would. st_read refuses such a file. */
ema_status st_open_head(const void *head, size_t head_len, uint64_t data_len, st_file **out, char *err, size_t err_cap);

/* Close and free. NULL is a no-op. */
void st_close(st_file *f);

/* The tensor called name (NUL-terminated), or NULL. O(log n). */
const st_tensor *st_find(const st_file *f, const char *name);
/* Same with an explicit length (name need not be NUL-terminated). */
const st_tensor *st_find_n(const st_file *f, const char *name, size_t len);

/* The metadata value for key, or NULL when absent. O(n). */
const char *st_meta_get(const st_file *f, const char *key);

/* Copy all of tensor t's bytes (little-endian, as stored) into dst, which
   holds cap >= t->nbytes bytes. t must come from f. Reads with pread in
   chunks straight into dst: memory stays bounded by the caller's buffer.
   Errors: EMA_E_INVALID_ARG (NULL, foreign t, cap too small), EMA_E_IO (read
   failed or the file shrank since st_open). */
ema_status st_read(const st_file *f, const st_tensor *t, void *dst, size_t cap, char *err, size_t err_cap);

/* Copy bytes [offset, offset + len) of tensor t into dst; for streaming a
   large tensor through a small buffer. Same errors as st_read, and
   EMA_E_INVALID_ARG when the range is not inside the tensor. */
ema_status st_read_range(const st_file *f, const st_tensor *t, uint64_t offset, void *dst, size_t len, char *err,
                         size_t err_cap);

/* EMA_OK when the file is still the one st_open opened, unchanged: same
   size, modification and status-change times (fstat of the open file), and
   the path still names that file (same device and inode). EMA_E_IO, with a
   message saying what changed, otherwise. Always EMA_OK for memory files.
   A loader calls it after reading everything it needs. */
ema_status st_check_unchanged(const st_file *f, char *err, size_t err_cap);

/* ------------------------------------------------------------------------ */
/* Writer                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct st_wtensor {
  const char *name; /* borrowed; NUL-terminated UTF-8, not "__metadata__" */
  st_dtype dtype;
  int ndim;             /* 0..ST_MAX_RANK */
  const int64_t *shape; /* borrowed; ndim entries in [0, ST_MAX_INT]; NULL when ndim == 0 */
  const void *data;     /* borrowed; count * bits / 8 bytes; NULL allowed when that is 0 */
} st_wtensor;

typedef struct st_wmeta {
  const char *key;   /* borrowed; NUL-terminated UTF-8 */
  const char *value; /* borrowed; NUL-terminated UTF-8 */
} st_wmeta;

/* Write a safetensors file at path holding the n tensors and the n_meta
   metadata entries (no "__metadata__" key at all when n_meta is 0),
   atomically (st_atomic.c): the data goes to an unnamed temporary file
   (O_TMPFILE) in path's directory where the file system supports it, else to
   a named one ".<name>.tmp-<host>-<pid>-<nonce>" created with O_EXCL; mode
   0644 less the umask, or the mode (and owner, where permitted) of the
   regular file being replaced; written in full (short writes and EINTR
   handled), fsync'ed, named (linkat) and renamed over path, and the
   directory is fsync'ed. Before that, named temporary files of the same
   name left by a process of this host that is gone are removed. On any
   failure before the rename the temporary file is removed and path is left
   exactly as it was. (If path is a symbolic link, the link itself is
   replaced.)
   Errors: EMA_E_INVALID_ARG (NULL arguments, invalid or duplicate names or
   keys, bad shapes, a sub-byte tensor that is not a whole number of bytes,
   a header over ST_MAX_HEADER), EMA_E_NOMEM, EMA_E_IO (the message names the
   path and strerror; when only the final directory fsync fails the new file
   is already in place, and the message says so). */
ema_status st_write(const char *path, const st_wtensor *tensors, size_t n, const st_wmeta *meta, size_t n_meta,
                    char *err, size_t err_cap);

/* Like st_write, but the tensor data comes from produce() instead of the
   data pointers (which are ignored): for each tensor in file order, produce
   is called with the tensor's index in `tensors`, a byte offset and a buffer
   of len <= 1 MiB bytes to fill, in increasing offsets. Memory stays bounded
   by that buffer. A status other than EMA_OK from produce (with a message
   it wrote into err) aborts the write: the temporary file is removed and
   path is untouched. With produce NULL this is st_write. */
typedef ema_status (*st_producer)(void *user, size_t index, uint64_t offset, void *dst, size_t len, char *err,
                                  size_t err_cap);
ema_status st_write_stream(const char *path, const st_wtensor *tensors, size_t n, const st_wmeta *meta, size_t n_meta,
                           st_producer produce, void *user, char *err, size_t err_cap);

/* The same file image built in memory: *out (free() it) gets *out_len
   bytes. Same validation and errors as st_write, without EMA_E_IO. */
ema_status st_serialize(const st_wtensor *tensors, size_t n, const st_wmeta *meta, size_t n_meta, unsigned char **out,
                        size_t *out_len, char *err, size_t err_cap);

/* XXH64 (seed 0) of the data section the writer would produce for these
   tensors: their bytes in file order. Same validation as st_serialize. */
ema_status st_data_xxh64(const st_wtensor *tensors, size_t n, uint64_t *out, char *err, size_t err_cap);

/* The same file image handed to sink in pieces, in file order (header, then
   each tensor's bytes); a status other than EMA_OK from sink (with its
   message in err) stops the write. Same validation as st_serialize. */
typedef ema_status (*st_sink)(void *user, const void *data, size_t len, char *err, size_t err_cap);
ema_status st_write_sink(const st_wtensor *tensors, size_t n, const st_wmeta *meta, size_t n_meta, st_sink sink,
                         void *user, char *err, size_t err_cap);

/* ------------------------------------------------------------------------ */
/* Fault injection for tests (thread-local: affects only the calling thread) */
/* ------------------------------------------------------------------------ */

typedef enum st_fault {
  ST_FAULT_NONE = 0, /* disarm */
  ST_FAULT_WRITE,    /* write() fails with ENOSPC once arg bytes were written */
  ST_FAULT_SHORT,    /* every write() writes at most arg (>= 1) bytes, and every
                        other call first fails with EINTR: exercises the retry loop */
  ST_FAULT_FSYNC,    /* fsync() of the temporary file fails with EIO */
  ST_FAULT_RENAME,   /* rename() fails with EXDEV */
  ST_FAULT_DIRSYNC,  /* fsync() of the directory fails with EIO */
  ST_FAULT_OPEN_TEMP /* creating the temporary file fails with EACCES */
} st_fault;

/* Arm a fault for the next st_write calls on this thread. ST_FAULT_WRITE,
   FSYNC, RENAME, DIRSYNC and OPEN_TEMP fire once and disarm themselves;
   ST_FAULT_SHORT stays until disarmed with ST_FAULT_NONE. */
void st_test_inject(st_fault fault, uint64_t arg);

/* Call fn(user) once, right after the next successful read of tensor data
   from a file (st_read_range) on this thread: lets a test change the file
   in the middle of a load. NULL disarms. */
void st_test_after_read(void (*fn)(void *user), void *user);

/* With on != 0, st_write uses a named temporary file even where O_TMPFILE
   works (the fallback path, for tests); 0 restores the default. */
void st_test_named_temp(int on);

/* Bytes st_write handed to write() successfully since the last
   st_test_inject call on this thread. */
uint64_t st_test_bytes_written(void);

#endif /* EMA_IO_SAFETENSORS_H */
