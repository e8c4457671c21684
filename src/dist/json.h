/*
 * src/dist/json.h: the small JSON reader and writer of the sharded
 * checkpoint manifest and of DCP_SHARDING_INFO. Private to src/dist.
 *
 * Reader: RFC 8259 with the strictness of the safetensors header parser:
 * strict UTF-8, no duplicate keys, no NUL in strings, depth at most 32,
 * numbers kept as text (integers are read exactly with dj_int). A parse
 * failure names the byte offset.
 */
#ifndef EMA_DIST_JSON_H
#define EMA_DIST_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum dj_type { DJ_NULL, DJ_BOOL, DJ_NUM, DJ_STR, DJ_ARR, DJ_OBJ } dj_type;

typedef struct dj_val {
  dj_type type;
  int boolean;
  char *str;            /* DJ_STR (decoded, NUL-terminated), DJ_NUM (the number's text) */
  size_t len;           /* bytes of str */
  struct dj_val *items; /* DJ_ARR, DJ_OBJ: n children */
  char **keys;          /* DJ_OBJ: n keys, decoded */
  size_t n;
} dj_val;

/* Parse text[0..len) into *out (free with dj_free, whatever the result).
   Returns 0, or -1 with a sentence in err. */
int dj_parse(const char *text, size_t len, dj_val *out, char *err, size_t cap);
void dj_free(dj_val *v);

/* Member key of an object, or NULL (also when v is not an object). */
const dj_val *dj_get(const dj_val *v, const char *key);
/* An integer value in [lo, hi] into *out: 0, or -1 when v is not one. */
int dj_int(const dj_val *v, int64_t lo, int64_t hi, int64_t *out);

/* Growing output buffer for writing JSON. Errors stick: once an
   allocation fails, ok is 0 and further appends do nothing. */
typedef struct dj_buf {
  char *p;
  size_t len, cap;
  int ok;
} dj_buf;

void dj_buf_init(dj_buf *b);
void dj_buf_free(dj_buf *b);
void dj_raw(dj_buf *b, const char *s);
void dj_printf(dj_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* s as a JSON string, quoted and escaped (serde_json's escapes). */
void dj_str(dj_buf *b, const char *s);
/* [a, b, c] */
void dj_ints(dj_buf *b, int n, const int64_t *v);

#endif
