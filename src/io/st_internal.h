/*
 * src/io/st_internal.h: helpers shared by the safetensors reader, writer and
 * header parser (src/io/st_*.c). Private to src/io.
 */
#ifndef EMA_IO_ST_INTERNAL_H
#define EMA_IO_ST_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

#if defined(__GNUC__) || defined(__clang__)
#define ST_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define ST_PRINTF(f, a)
#endif

#include "common/alloc.h" /* every allocation of src/io goes through it */

/* Format a message into err (when err && cap). Never fails. */
void st_errf(char *err, size_t cap, const char *fmt, ...) ST_PRINTF(3, 4);

/* strerror(e) into buf (thread-safe); returns buf. */
const char *st_strerror(int e, char *buf, size_t cap);

/* Render shape as "[2, 3]" into buf (truncated with "..." when long). */
void st_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);

/* Length (1..4) of the well-formed UTF-8 sequence starting at s[0] (of the
   len bytes available), or 0 when it is ill-formed (overlong, surrogate,
   above U+10FFFF, truncated, stray continuation byte). Unicode 15, table
   3-7. */
size_t st_utf8_seq(const unsigned char *s, size_t len);

/* Offset of the first ill-formed byte in s[0..len), or len when all of it is
   well-formed UTF-8. */
size_t st_utf8_check(const unsigned char *s, size_t len);

/* s[0..len) escaped by ema_escape (control, non-printable and ill-formed
   bytes as \xNN, at most 64 bytes then "..."), in single quotes, into dst
   (cap bytes, NUL-terminated). For messages only. */
void st_quote(char *dst, size_t cap, const char *s, size_t len);

/* Compare two byte strings like memcmp, shorter first on a common prefix
   (Rust's str ordering). */
int st_bytes_cmp(const char *a, size_t alen, const char *b, size_t blen);

/* Stable merge sort of idx[0..n) with cmp(a, b, ctx) < 0 meaning a before b.
   O(n log n) in every case (hostile inputs cannot make it quadratic).
   Returns 0, or -1 when the scratch allocation fails (idx unchanged). */
typedef int (*st_cmp_fn)(size_t a, size_t b, const void *ctx);
int st_msort(size_t *idx, size_t n, st_cmp_fn cmp, const void *ctx);

/* Checked arithmetic on uint64_t: 0 on success, -1 on overflow. */
int st_mul_u64(uint64_t a, uint64_t b, uint64_t *out);
int st_add_u64(uint64_t a, uint64_t b, uint64_t *out);

/* Product of the shape (left to right, as the reference's checked fold) and
   byte size for dtype. Returns 0; -1 when the count or the bit size
   overflows uint64_t; -2 when the bit size is not a whole number of bytes. */
int st_tensor_size(st_dtype dt, int ndim, const int64_t *shape, uint64_t *count, uint64_t *nbytes);

/* A prepared write (st_write.c): the header bytes and the tensors' order. */
typedef struct st_prep {
  unsigned char *head; /* 8-byte length, then the padded JSON header */
  size_t head_len;
  size_t *order;    /* input indices in file order */
  uint64_t *nbytes; /* bytes of each input tensor */
  uint64_t data_len;
} st_prep;

/* Validate the tensors and metadata and build the header (need_data: a
   tensor with bytes must have a data pointer). Frees nothing of the caller's;
   free p with st_prep_free whatever the result. */
ema_status st_prepare(const st_wtensor *t, size_t n, const st_wmeta *m, size_t nm, int need_data, st_prep *p, char *err,
                      size_t cap);
void st_prep_free(st_prep *p);

/* ------------------------------------------------------------------------ */
/* Header parser (st_json.c)                                                 */
/* ------------------------------------------------------------------------ */

/* Result of parsing a header. Strings live in pool, shapes in dims. */
typedef struct st_header {
  st_tensor *tensors;
  size_t n_tensors;
  st_meta *meta;
  size_t n_meta;
  int has_metadata;
  uint64_t meta_offset;       /* file offset of the "__metadata__" object */
  uint64_t *meta_key_offsets; /* file offset of each metadata key */
  char *pool;
  int64_t *dims;
} st_header;

/* Parse the JSON header json[0..len) (the bytes right after the 8-byte
   length; base is their file offset, 8, used in messages) into h, which the
   caller zeroes first and frees with st_header_free whatever the result.
   Checks the grammar only (see safetensors.h); duplicate tensor names and
   offsets are checked by the caller. EMA_E_FORMAT or EMA_E_NOMEM. */
ema_status st_parse_header(const unsigned char *json, size_t len, uint64_t base, st_header *h, char *err,
                           size_t err_cap);
void st_header_free(st_header *h);

/* Size of the message buffers of the reader and the validator. */
enum { ST_MSG = 1024 };

/* Validate a parsed header against a data section of data_len bytes
   (st_validate.c). On success *by_name gets the tensor indices sorted by
   name (the caller frees). Writes the message (without path) into msg, which
   holds ST_MSG bytes. EMA_E_FORMAT or EMA_E_NOMEM. */
ema_status st_validate(st_header *h, uint64_t data_len, size_t **by_name, char *msg);

#endif /* EMA_IO_ST_INTERNAL_H */
