/*
 * tests/fuzz/fuzz_safetensors.c: libFuzzer target for the safetensors reader
 * (src/io). Built with -fsanitize=fuzzer,address,undefined when EMA_FUZZ=ON
 * (clang), and linked into the replay driver (replay.c) for ctest.
 *
 * Input: either a whole file, or, when the first byte is '{', a header
 * followed by an optional NUL byte and the data section; the 8-byte length
 * is then made up here, so the fuzzer can mutate the JSON freely without
 * keeping a length field right.
 *
 * Properties checked (a violation aborts):
 *  - st_open_mem returns EMA_OK, EMA_E_FORMAT or EMA_E_NOMEM, nothing else,
 *    with a message, and NULL on failure;
 *  - an accepted file is self-consistent: every tensor is found by name,
 *    its bytes lie inside the data section and read back identical, the
 *    sizes add up to the data section;
 *  - writing an accepted file back (st_serialize) succeeds, reads back to the
 *    same tensors and metadata, and writing that again gives the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c) \
  do {                 \
    if (!(c)) abort(); \
  } while (0)

/* The same tensors, metadata and bytes in a and b (tensors in any order). */
static void same_content(const st_file *a, const unsigned char *abuf, const st_file *b, const unsigned char *bbuf) {
  FUZZ_ASSERT(a->n_tensors == b->n_tensors && a->n_meta == b->n_meta);
  for (size_t i = 0; i < a->n_tensors; i++) {
    const st_tensor *x = &a->tensors[i];
    const st_tensor *y = st_find_n(b, x->name, x->name_len);
    FUZZ_ASSERT(y != NULL);
    FUZZ_ASSERT(x->dtype == y->dtype && x->ndim == y->ndim && x->nbytes == y->nbytes);
    for (int d = 0; d < x->ndim; d++) FUZZ_ASSERT(x->shape[d] == y->shape[d]);
    FUZZ_ASSERT(x->nbytes == 0 ||
                memcmp(abuf + a->data_start + x->begin, bbuf + b->data_start + y->begin, x->nbytes) == 0);
  }
  for (size_t i = 0; i < a->n_meta; i++) {
    FUZZ_ASSERT(a->meta[i].key_len == b->meta[i].key_len && a->meta[i].value_len == b->meta[i].value_len);
    FUZZ_ASSERT(memcmp(a->meta[i].key, b->meta[i].key, a->meta[i].key_len) == 0);
    FUZZ_ASSERT(memcmp(a->meta[i].value, b->meta[i].value, a->meta[i].value_len) == 0);
  }
}

static void check_accepted(const st_file *f, const unsigned char *buf, size_t len) {
  uint64_t sum = 0;
  FUZZ_ASSERT(f->data_start == 8 + f->header_len && f->file_size == len);
  FUZZ_ASSERT(f->data_start + f->data_len == len);
  for (size_t i = 0; i < f->n_tensors; i++) {
    const st_tensor *t = &f->tensors[i];
    FUZZ_ASSERT(st_find_n(f, t->name, t->name_len) == t);
    FUZZ_ASSERT(strlen(t->name) == t->name_len);
    FUZZ_ASSERT(t->ndim >= 0 && t->ndim <= ST_MAX_RANK);
    FUZZ_ASSERT(t->end - t->begin == t->nbytes && t->end <= f->data_len);
    sum += t->nbytes;
    unsigned char *tmp = malloc(t->nbytes ? (size_t)t->nbytes : 1);
    FUZZ_ASSERT(tmp != NULL);
    FUZZ_ASSERT(st_read(f, t, tmp, (size_t)t->nbytes, NULL, 0) == EMA_OK);
    FUZZ_ASSERT(t->nbytes == 0 || memcmp(tmp, buf + f->data_start + t->begin, t->nbytes) == 0);
    if (t->nbytes > 1) {
      FUZZ_ASSERT(st_read_range(f, t, 1, tmp, (size_t)t->nbytes - 1, NULL, 0) == EMA_OK);
      FUZZ_ASSERT(memcmp(tmp, buf + f->data_start + t->begin + 1, t->nbytes - 1) == 0);
    }
    FUZZ_ASSERT(st_read_range(f, t, t->nbytes, tmp, 1, NULL, 0) == EMA_E_INVALID_ARG);
    free(tmp);
  }
  FUZZ_ASSERT(sum == f->data_len);
  for (size_t i = 0; i < f->n_meta; i++) {
    FUZZ_ASSERT(strlen(f->meta[i].key) == f->meta[i].key_len);
    FUZZ_ASSERT(strlen(f->meta[i].value) == f->meta[i].value_len);
  }

  /* write it back */
  size_t nt = f->n_tensors, nm = f->n_meta;
  st_wtensor *w = malloc((nt ? nt : 1) * sizeof *w);
  st_wmeta *m = malloc((nm ? nm : 1) * sizeof *m);
  FUZZ_ASSERT(w && m);
  for (size_t i = 0; i < nt; i++) {
    const st_tensor *t = &f->tensors[i];
    w[i] = (st_wtensor){t->name, t->dtype, t->ndim, t->shape, buf + f->data_start + t->begin};
  }
  for (size_t i = 0; i < nm; i++) m[i] = (st_wmeta){f->meta[i].key, f->meta[i].value};
  unsigned char *out = NULL, *out2 = NULL;
  size_t out_len = 0, out2_len = 0;
  ema_status st = st_serialize(w, nt, m, nm, &out, &out_len, NULL, 0);
  if (st == EMA_E_NOMEM) goto done;
  /* only a header within 8 bytes of the cap may grow past it (padding) */
  if (st == EMA_E_INVALID_ARG && f->header_len > ST_MAX_HEADER - 8) goto done;
  FUZZ_ASSERT(st == EMA_OK);
  st_file *g = NULL;
  st = st_open_mem(out, out_len, &g, NULL, 0);
  if (st == EMA_E_NOMEM) goto done;
  FUZZ_ASSERT(st == EMA_OK && g != NULL);
  FUZZ_ASSERT(g->data_start % 8 == 0 && g->data_len == f->data_len);
  same_content(f, buf, g, out);
  /* the writer is canonical: the second generation equals the first */
  for (size_t i = 0; i < nt; i++) {
    const st_tensor *t = &g->tensors[i];
    w[i] = (st_wtensor){t->name, t->dtype, t->ndim, t->shape, out + g->data_start + t->begin};
  }
  for (size_t i = 0; i < nm; i++) m[i] = (st_wmeta){g->meta[i].key, g->meta[i].value};
  st = st_serialize(w, nt, m, nm, &out2, &out2_len, NULL, 0);
  if (st == EMA_OK)
    FUZZ_ASSERT(out2_len == out_len && memcmp(out, out2, out_len) == 0);
  else
    FUZZ_ASSERT(st == EMA_E_NOMEM);
  st_close(g);
done:
  free(out);
  free(out2);
  free(w);
  free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  unsigned char *own = NULL;
  const unsigned char *buf = data;
  size_t len = size;
  if (size > 0 && data[0] == '{') {
    /* header mode: "<json>[\0<data>]" */
    const unsigned char *nul = memchr(data, 0, size);
    size_t hl = nul ? (size_t)(nul - data) : size;
    size_t dl = nul ? size - hl - 1 : 0;
    own = malloc(8 + hl + dl + 1);
    if (!own) return 0;
    for (int i = 0; i < 8; i++) own[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(own + 8, data, hl);
    if (dl) memcpy(own + 8 + hl, nul + 1, dl);
    buf = own;
    len = 8 + hl + dl;
  }
  char err[256];
  err[0] = '\0';
  st_file *f = (st_file *)err; /* must come back NULL on failure */
  ema_status st = st_open_mem(buf, len, &f, err, sizeof err);
  if (st == EMA_OK) {
    FUZZ_ASSERT(f != NULL);
    check_accepted(f, buf, len);
    st_close(f);
  } else {
    FUZZ_ASSERT(st == EMA_E_FORMAT || st == EMA_E_NOMEM);
    FUZZ_ASSERT(f == NULL && err[0] != '\0' && strlen(err) < sizeof err);
  }
  free(own);
  return 0;
}
