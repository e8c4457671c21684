/*
 * tests/unit/test_safetensors.c: tests of the internal safetensors layer
 * (src/io): the reference implementation's test vectors byte for byte,
 * round trips of every dtype (rank 0, zero-size, awkward names), the
 * hostile-input suite (every violation is EMA_E_FORMAT with a message that
 * names the byte offset), writer argument checks, and atomic writes under
 * injected failures (the previous file survives byte for byte, no temporary
 * file is left behind).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "check.h"
#include "io/safetensors.h"

static char tmpdir[64];
static char errbuf[1024];

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* [le64 len(json)][json][dlen bytes of 0xAB]; *len gets the total. */
static unsigned char *mkfile(const char *json, size_t jlen, size_t dlen, size_t *len) {
  unsigned char *b = malloc(8 + jlen + dlen + 1);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)jlen >> (8 * i));
  memcpy(b + 8, json, jlen);
  memset(b + 8 + jlen, 0xAB, dlen);
  *len = 8 + jlen + dlen;
  return b;
}

static ema_status open_json_n(const char *json, size_t jlen, size_t dlen) {
  size_t len;
  unsigned char *b = mkfile(json, jlen, dlen, &len);
  st_file *f = (st_file *)&len; /* must be set to NULL on failure */
  errbuf[0] = '\0';
  ema_status st = st_open_mem(b, len, &f, errbuf, sizeof errbuf);
  if (st != EMA_OK) {
    CHECK(f == NULL);
    CHECK_MSG(errbuf[0] != '\0', "empty message for %s", json);
  }
  st_close(f);
  free(b);
  return st;
}

static ema_status open_json(const char *json, size_t dlen) { return open_json_n(json, strlen(json), dlen); }

#define EXPECT_OK(json, dlen)                                         \
  do {                                                                \
    ema_status s_ = open_json((json), (dlen));                        \
    CHECK_MSG(s_ == EMA_OK, "%s -> %d: %s", (json), (int)s_, errbuf); \
  } while (0)

/* EMA_E_FORMAT and a message containing needle. */
#define EXPECT_FORMAT(json, dlen, needle)                                                                              \
  do {                                                                                                                 \
    ema_status s_ = open_json((json), (dlen));                                                                         \
    CHECK_MSG(s_ == EMA_E_FORMAT && strstr(errbuf, (needle)) != NULL, "%s -> %d: %s (want FORMAT and \"%s\")", (json), \
              (int)s_, errbuf, (needle));                                                                              \
  } while (0)

/* EMA_E_FORMAT naming the file offset of the first occurrence of mark in
   json (8 + its index). */
#define EXPECT_FORMAT_AT(json, dlen, mark)                                                                             \
  do {                                                                                                                 \
    const char *j_ = (json);                                                                                           \
    const char *m_ = strstr(j_, (mark));                                                                               \
    char at_[64];                                                                                                      \
    snprintf(at_, sizeof at_, "at byte %d", m_ ? (int)(m_ - j_) + 8 : -1);                                             \
    ema_status s_ = open_json(j_, (dlen));                                                                             \
    CHECK_MSG(s_ == EMA_E_FORMAT && strstr(errbuf, at_) != NULL, "%s -> %d: %s (want FORMAT %s)", j_, (int)s_, errbuf, \
              at_);                                                                                                    \
  } while (0)

/* 1 when needle[0..n) occurs in hay[0..len). */
static int has_bytes(const unsigned char *hay, size_t len, const char *needle, size_t n) {
  for (size_t i = 0; n <= len && i <= len - n; i++)
    if (memcmp(hay + i, needle, n) == 0) return 1;
  return 0;
}

static unsigned char *read_whole(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return NULL;
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)n + 1);
  *len = fread(b, 1, (size_t)n, fp);
  fclose(fp);
  return b;
}

static int write_whole(const char *path, const void *b, size_t n) {
  FILE *fp = fopen(path, "wb");
  if (!fp) return -1;
  size_t w = fwrite(b, 1, n, fp);
  return fclose(fp) == 0 && w == n ? 0 : -1;
}

/* Number of entries in tmpdir whose names contain ".tmp-". */
static int count_temps(void) {
  DIR *d = opendir(tmpdir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL)
    if (strstr(e->d_name, ".tmp-")) n++;
  if (d) closedir(d);
  return n;
}

static void path_in_tmp(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", tmpdir, name); }

/* ------------------------------------------------------------------------ */
/* dtype table                                                               */
/* ------------------------------------------------------------------------ */

static void test_dtypes(void) {
  for (int i = 0; i < (int)ST_DTYPE_COUNT; i++) {
    const char *n = st_dtype_name((st_dtype)i);
    CHECK(st_dtype_from_name(n, strlen(n)) == i);
    CHECK(st_dtype_bits((st_dtype)i) > 0);
  }
  CHECK(st_dtype_from_name("f32", 3) == -1);
  CHECK(st_dtype_from_name("F3", 2) == -1);
  CHECK(st_dtype_from_name("F322", 4) == -1);
  CHECK(strcmp(st_dtype_name(ST_DTYPE_COUNT), "?") == 0);
  CHECK(st_dtype_bits(ST_F4) == 4 && st_dtype_bits(ST_F6_E2M3) == 6 && st_dtype_bits(ST_C64) == 64);
  ema_dtype e;
  CHECK(st_dtype_to_ema(ST_F32, &e) == 1 && e == EMA_F32);
  CHECK(st_dtype_to_ema(ST_F64, &e) == 1 && e == EMA_F64);
  CHECK(st_dtype_to_ema(ST_F16, &e) == 1 && e == EMA_F16);
  CHECK(st_dtype_to_ema(ST_BF16, &e) == 1 && e == EMA_BF16);
  CHECK(st_dtype_to_ema(ST_I32, &e) == 1 && e == EMA_I32);
  CHECK(st_dtype_to_ema(ST_I64, &e) == 1 && e == EMA_I64);
  CHECK(st_dtype_to_ema(ST_U8, &e) == 0 && st_dtype_to_ema(ST_BOOL, &e) == 0);
  for (int d = EMA_F32; d <= EMA_I64; d++) {
    int s = st_dtype_from_ema((ema_dtype)d);
    CHECK(s >= 0 && st_dtype_to_ema((st_dtype)s, &e) == 1 && (int)e == d);
  }
  CHECK(st_dtype_from_ema((ema_dtype)42) == -1);
  /* the reference's alignment order */
  CHECK(ST_U64 > ST_I64 && ST_I64 > ST_F64 && ST_F64 > ST_C64 && ST_C64 > ST_F32 && ST_F32 > ST_U32 &&
        ST_U32 > ST_I32 && ST_I32 > ST_BF16 && ST_BF16 > ST_F16 && ST_F16 > ST_U16 && ST_U16 > ST_I16 &&
        ST_I16 > ST_F8_E8M0 && ST_U8 > ST_F6_E3M2 && ST_F4 > ST_BOOL);
}

/* ------------------------------------------------------------------------ */
/* Byte-exact agreement with the reference writer's own test vectors         */
/* ------------------------------------------------------------------------ */

static void test_reference_vectors(void) {
  float v[6] = {0, 1, 2, 3, 4, 5};
  unsigned char *out;
  size_t len;

  /* tensor.rs test_serialization: "attn.0", F32 [1,2,3]: 64-byte header. */
  int64_t s1[3] = {1, 2, 3};
  st_wtensor t1 = {"attn.0", ST_F32, 3, s1, v};
  CHECK(st_serialize(&t1, 1, NULL, 0, &out, &len, errbuf, sizeof errbuf) == EMA_OK);
  const char *h1 = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
  CHECK(len == 8 + 64 + 24 && out[0] == 64 && out[1] == 0);
  CHECK(memcmp(out + 8, h1, 64) == 0 && memcmp(out + 72, v, 24) == 0);
  free(out);

  /* test_serialization_forced_alignement: "attn0", [1,1,2,3]: 65 bytes of
     JSON padded with 7 spaces to 72. */
  int64_t s2[4] = {1, 1, 2, 3};
  st_wtensor t2 = {"attn0", ST_F32, 4, s2, v};
  CHECK(st_serialize(&t2, 1, NULL, 0, &out, &len, errbuf, sizeof errbuf) == EMA_OK);
  const char *h2 =
      "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}"
      "       ";
  CHECK(len == 8 + 72 + 24 && out[0] == 72);
  CHECK(memcmp(out + 8, h2, 72) == 0 && memcmp(out + 80, v, 24) == 0);
  free(out);

  /* test_empty: no tensors -> "{}" and 6 spaces; with framework=pt. */
  CHECK(st_serialize(NULL, 0, NULL, 0, &out, &len, errbuf, sizeof errbuf) == EMA_OK);
  CHECK(len == 16 && out[0] == 8 && memcmp(out + 8, "{}      ", 8) == 0);
  free(out);
  st_wmeta m = {"framework", "pt"};
  CHECK(st_serialize(NULL, 0, &m, 1, &out, &len, errbuf, sizeof errbuf) == EMA_OK);
  CHECK(len == 48 && out[0] == 40 && memcmp(out + 8, "{\"__metadata__\":{\"framework\":\"pt\"}}     ", 40) == 0);
  st_file *f;
  CHECK(st_open_mem(out, len, &f, errbuf, sizeof errbuf) == EMA_OK);
  CHECK(f && f->n_tensors == 0 && f->n_meta == 1 && f->has_metadata);
  CHECK(f && strcmp(st_meta_get(f, "framework"), "pt") == 0 && !st_meta_get(f, "x"));
  st_close(f);
  free(out);

  /* The doc example of the reference reader: I32 [2,2] at [0,16]. */
  const char *doc = "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
  EXPECT_OK(doc, 16);
}

/* ------------------------------------------------------------------------ */
/* Round trips                                                               */
/* ------------------------------------------------------------------------ */

static void fill(unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed * 131u + i * 7u + (i >> 8));
}

/* Check f holds exactly tensors w[0..n) and metadata m[0..nm). */
static void check_file(const st_file *f, const st_wtensor *w, size_t n, const st_wmeta *m, size_t nm) {
  CHECK(f->n_tensors == n && f->n_meta == nm && f->has_metadata == (nm > 0));
  CHECK(f->data_start % 8 == 0 && f->data_start == 8 + f->header_len);
  CHECK(f->file_size == f->data_start + f->data_len);
  for (size_t i = 0; i < n; i++) {
    const st_tensor *t = st_find(f, w[i].name);
    CHECK_MSG(t != NULL, "tensor %zu (%s) not found", i, w[i].name);
    if (!t) continue;
    CHECK(t->dtype == w[i].dtype && t->ndim == w[i].ndim);
    CHECK(strlen(t->name) == t->name_len && strcmp(t->name, w[i].name) == 0);
    uint64_t count = 1;
    for (int d = 0; d < t->ndim; d++) {
      CHECK(t->shape[d] == w[i].shape[d]);
      count *= (uint64_t)w[i].shape[d];
    }
    CHECK(t->count == count);
    CHECK(t->nbytes == count * st_dtype_bits(t->dtype) / 8);
    CHECK(t->end - t->begin == t->nbytes);
    /* aligned to the element size, as the reference writer guarantees */
    unsigned esz = st_dtype_bits(t->dtype) / 8;
    if (esz) CHECK((f->data_start + t->begin) % esz == 0);
    ema_dtype e;
    CHECK(t->ema_supported == st_dtype_to_ema(t->dtype, &e));
    if (t->ema_supported) CHECK(t->ema == e);
    unsigned char *buf = malloc(t->nbytes + 1);
    CHECK(st_read(f, t, buf, t->nbytes, errbuf, sizeof errbuf) == EMA_OK);
    CHECK(t->nbytes == 0 || memcmp(buf, w[i].data, t->nbytes) == 0);
    /* streamed in chunks of 3 bytes */
    memset(buf, 0, t->nbytes);
    for (uint64_t o = 0; o < t->nbytes; o += 3) {
      size_t c = t->nbytes - o < 3 ? (size_t)(t->nbytes - o) : 3;
      CHECK(st_read_range(f, t, o, buf + o, c, errbuf, sizeof errbuf) == EMA_OK);
    }
    CHECK(t->nbytes == 0 || memcmp(buf, w[i].data, t->nbytes) == 0);
    free(buf);
  }
  for (size_t i = 0; i < nm; i++) {
    CHECK(strcmp(f->meta[i].key, m[i].key) == 0 && strcmp(f->meta[i].value, m[i].value) == 0);
    CHECK(f->meta[i].key_len == strlen(m[i].key) && f->meta[i].value_len == strlen(m[i].value));
    const char *v = st_meta_get(f, m[i].key);
    CHECK(v && strcmp(v, m[i].value) == 0);
  }
  /* header order is the reference writer's: dtype descending, then name */
  for (size_t i = 0; i + 1 < f->n_tensors; i++) {
    const st_tensor *a = &f->tensors[i], *b = &f->tensors[i + 1];
    CHECK(a->dtype > b->dtype || (a->dtype == b->dtype && strcmp(a->name, b->name) < 0));
    CHECK(a->end == b->begin);
  }
  CHECK(st_find(f, "no such tensor") == NULL);
  CHECK(st_find_n(f, "", 0) == NULL || st_find_n(f, "", 0)->name_len == 0);
}

static void test_round_trips(void) {
  /* every dtype, several shapes each: rank 0, zero-size, rank 1..4 */
  enum { NT = ST_DTYPE_COUNT * 5 };
  static const int64_t shapes[5][4] = {{0}, {0}, {8}, {2, 4}, {2, 1, 2, 2}};
  static const int ndims[5] = {0, 1, 1, 2, 4};
  st_wtensor w[NT];
  char names[NT][32];
  unsigned char *data[NT];
  size_t n = 0;
  for (int dt = 0; dt < (int)ST_DTYPE_COUNT; dt++) {
    for (int s = 0; s < 5; s++) {
      uint64_t count = 1;
      for (int d = 0; d < ndims[s]; d++) count *= (uint64_t)shapes[s][d];
      uint64_t bits = count * st_dtype_bits((st_dtype)dt);
      if (bits % 8 != 0) continue; /* F4/F6 rank 0: not a whole byte */
      snprintf(names[n], sizeof names[n], "%s/s%d", st_dtype_name((st_dtype)dt), s);
      data[n] = malloc(bits / 8 + 1);
      fill(data[n], bits / 8, (unsigned)n);
      w[n] = (st_wtensor){names[n], (st_dtype)dt, ndims[s], ndims[s] ? shapes[s] : NULL, bits ? data[n] : NULL};
      n++;
    }
  }
  st_wmeta m[3] = {{"format", "pt"}, {"ema/decay", "0.99"}, {"", "empty key"}};
  unsigned char *img;
  size_t len;
  CHECK(st_serialize(w, n, m, 3, &img, &len, errbuf, sizeof errbuf) == EMA_OK);
  st_file *f = NULL;
  CHECK_MSG(st_open_mem(img, len, &f, errbuf, sizeof errbuf) == EMA_OK, "%s", errbuf);
  if (f) check_file(f, w, n, m, 3);
  st_close(f);

  /* the same through the atomic file writer and the pread reader */
  char path[128];
  path_in_tmp(path, sizeof path, "all.safetensors");
  CHECK_MSG(st_write(path, w, n, m, 3, errbuf, sizeof errbuf) == EMA_OK, "%s", errbuf);
  size_t flen;
  unsigned char *fb = read_whole(path, &flen);
  CHECK(fb && flen == len && memcmp(fb, img, len) == 0);
  free(fb);
  f = NULL;
  CHECK_MSG(st_open(path, &f, errbuf, sizeof errbuf) == EMA_OK, "%s", errbuf);
  if (f) check_file(f, w, n, m, 3);
  /* read errors */
  if (f && f->n_tensors) {
    const st_tensor *t = st_find(f, "F64/s2");
    unsigned char buf[64];
    CHECK(t && st_read(f, t, buf, 63, errbuf, sizeof errbuf) == EMA_E_INVALID_ARG);
    CHECK(t && st_read_range(f, t, 60, buf, 5, errbuf, sizeof errbuf) == EMA_E_INVALID_ARG);
    CHECK(t && st_read_range(f, t, 65, buf, 0, errbuf, sizeof errbuf) == EMA_E_INVALID_ARG);
    CHECK(t && st_read_range(f, t, 64, buf, 0, errbuf, sizeof errbuf) == EMA_OK);
    st_tensor fake = *t;
    CHECK(st_read(f, &fake, buf, 64, errbuf, sizeof errbuf) == EMA_E_INVALID_ARG);
    CHECK(st_read(f, NULL, buf, 64, errbuf, sizeof errbuf) == EMA_E_INVALID_ARG);
  }
  st_close(f);
  free(img);
  for (size_t i = 0; i < n; i++) free(data[i]);

  /* awkward names: '/', non-ASCII, quotes, backslashes, control characters */
  const char *odd[] = {
      "layer/0/weight",
      "w/ExponentialMovingAverage",
      "gr\xc3\xb6\xc3\x9f\x65/\xe5\x8f\x98\xe9\x87\x8f/\xf0\x9f\x98\x80",
      "quote\"and\\backslash",
      "ctl\x01\x02\x1f\x7f|\b\f\n\r\t",
      "",
      "/",
      "__metadata",
      "__metadata__ ",
  };
  enum { NO = sizeof odd / sizeof odd[0] };
  st_wtensor ow[NO];
  float vals[NO][3];
  int64_t three = 3;
  for (size_t i = 0; i < NO; i++) {
    for (int k = 0; k < 3; k++) vals[i][k] = (float)i + (float)k / 4.0f;
    ow[i] = (st_wtensor){odd[i], ST_F32, 1, &three, vals[i]};
  }
  st_wmeta om[2] = {{"k\"\\\x01\n\xc3\xa9", "v\t\x1f\xe2\x82\xac/\"\\"}, {"plain", ""}};
  CHECK(st_serialize(ow, NO, om, 2, &img, &len, errbuf, sizeof errbuf) == EMA_OK);
  /* serde_json's escaping: \u001f lowercase, '/' and non-ASCII raw, DEL raw */
  const char *ctl = "\"ctl\\u0001\\u0002\\u001f\x7f|\\b\\f\\n\\r\\t\"";
  CHECK(has_bytes(img, len, ctl, strlen(ctl)));
  const char *qb = "\"quote\\\"and\\\\backslash\"";
  CHECK(has_bytes(img, len, qb, strlen(qb)));
  f = NULL;
  CHECK_MSG(st_open_mem(img, len, &f, errbuf, sizeof errbuf) == EMA_OK, "%s", errbuf);
  if (f) check_file(f, ow, NO, om, 2);
  st_close(f);
  free(img);

  /* order: dtype alignment descending, then name bytewise */
  double d1[1] = {1};
  float f1[1] = {2};
  uint16_t h1[1] = {3};
  int8_t i1[1] = {4};
  int64_t one = 1;
  st_wtensor ord[6] = {
      {"b", ST_F16, 1, &one, h1}, {"a", ST_I8, 1, &one, i1},  {"z", ST_F64, 1, &one, d1},
      {"c", ST_F32, 1, &one, f1}, {"B", ST_F32, 1, &one, f1}, {"\xc3\xa9", ST_F32, 1, &one, f1},
  };
  CHECK(st_serialize(ord, 6, NULL, 0, &img, &len, errbuf, sizeof errbuf) == EMA_OK);
  f = NULL;
  CHECK(st_open_mem(img, len, &f, errbuf, sizeof errbuf) == EMA_OK);
  const char *want[6] = {"z", "B", "c", "\xc3\xa9", "b", "a"};
  for (int i = 0; f && i < 6; i++) CHECK(strcmp(f->tensors[i].name, want[i]) == 0);
  st_close(f);
  free(img);
}

/* Readers must accept what other writers produce: whitespace between
   tokens, any key order, escaped keys, zero-size tensors sharing an offset. */
static void test_reader_accepts(void) {
  EXPECT_OK("{}", 0);
  EXPECT_OK("{}  ", 0);
  EXPECT_OK("{ }", 0);
  EXPECT_OK("{\"__metadata__\":{}}", 0);
  EXPECT_OK(
      "{\t\"a\" :\n{ \"shape\" : [ 2 ] ,\r\"data_offsets\" : [ 0 , 8 ] , \"dtype\" : "
      "\"F32\" } }",
      8);
  EXPECT_OK("{\"a\":{\"dt\\u0079pe\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4);
  EXPECT_OK(
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
      "\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
      1);
  /* any header order: offsets decide the data order */
  EXPECT_OK(
      "{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]},"
      "\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}",
      5);
  /* the integer bound itself is fine */
  EXPECT_OK("{\"a\":{\"dtype\":\"F32\",\"shape\":[9007199254740992,0],\"data_offsets\":[0,0]}}", 0);
  /* escapes decode: names "\u00e9", "\ud83d\ude00", "a\/b" */
  const char *esc =
      "{\"\\u00e9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
      "\"\\ud83d\\ude00\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
      "\"a\\/b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}";
  size_t len;
  unsigned char *b = mkfile(esc, strlen(esc), 3, &len);
  st_file *f = NULL;
  CHECK(st_open_mem(b, len, &f, errbuf, sizeof errbuf) == EMA_OK);
  CHECK(f && st_find(f, "\xc3\xa9") && st_find(f, "\xf0\x9f\x98\x80") && st_find(f, "a/b"));
  st_close(f);
  free(b);
  /* 64 dimensions are fine, 65 are not */
  char big[1024];
  int o = snprintf(big, sizeof big, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1");
  for (int i = 1; i < 64; i++) o += snprintf(big + o, sizeof big - (size_t)o, ",1");
  snprintf(big + o, sizeof big - (size_t)o, "],\"data_offsets\":[0,1]}}");
  EXPECT_OK(big, 1);
  o = snprintf(big, sizeof big, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1");
  for (int i = 1; i < 65; i++) o += snprintf(big + o, sizeof big - (size_t)o, ",1");
  snprintf(big + o, sizeof big - (size_t)o, "],\"data_offsets\":[0,1]}}");
  EXPECT_FORMAT(big, 1, "more than 64 dimensions");
}

/* ------------------------------------------------------------------------ */
/* Hostile input                                                             */
/* ------------------------------------------------------------------------ */

#define T1(shape, offs) "{\"t\":{\"dtype\":\"F32\",\"shape\":" shape ",\"data_offsets\":" offs "}}"

static void test_truncation(void) {
  /* a small valid file, truncated at every byte */
  float v[3] = {1, 2, 3};
  int64_t s = 3;
  st_wtensor w[2] = {{"a", ST_F32, 1, &s, v}, {"b", ST_U8, 0, NULL, v}};
  st_wmeta m = {"k", "v"};
  unsigned char *img;
  size_t len;
  CHECK(st_serialize(w, 2, &m, 1, &img, &len, errbuf, sizeof errbuf) == EMA_OK);
  int bad = 0;
  for (size_t cut = 0; cut < len; cut++) {
    st_file *f = (st_file *)img;
    ema_status st = st_open_mem(img, cut, &f, errbuf, sizeof errbuf);
    if (st != EMA_E_FORMAT || f != NULL) {
      bad++;
      fprintf(stderr, "truncated at %zu: status %d\n", cut, (int)st);
    }
    st_close(f);
  }
  CHECK(bad == 0);
  /* the same through files, at a few points */
  char path[128];
  path_in_tmp(path, sizeof path, "trunc.safetensors");
  size_t cuts[] = {0, 1, 7, 8, 9, len / 2, len - 17, len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    CHECK(write_whole(path, img, cuts[i]) == 0);
    st_file *f = NULL;
    ema_status st = st_open(path, &f, errbuf, sizeof errbuf);
    CHECK_MSG(st == EMA_E_FORMAT && f == NULL, "cut %zu: %d %s", cuts[i], (int)st, errbuf);
    CHECK(strstr(errbuf, path) != NULL);
    st_close(f);
  }
  /* one trailing byte too many */
  unsigned char *more = malloc(len + 1);
  memcpy(more, img, len);
  more[len] = 0;
  st_file *f = NULL;
  CHECK(st_open_mem(more, len + 1, &f, errbuf, sizeof errbuf) == EMA_E_FORMAT);
  CHECK(strstr(errbuf, "1 bytes follow the last tensor") != NULL);
  CHECK(write_whole(path, more, len + 1) == 0);
  CHECK(st_open(path, &f, errbuf, sizeof errbuf) == EMA_E_FORMAT && f == NULL);
  free(more);
  free(img);
  unlink(path);
}

static void test_header_length(void) {
  unsigned char b[64];
  memset(b, ' ', sizeof b);
  memcpy(b + 8, "{}", 2);
  st_file *f = NULL;
  /* shorter than the length field */
  CHECK(st_open_mem(b, 7, &f, errbuf, sizeof errbuf) == EMA_E_FORMAT && !f);
  CHECK(st_open_mem(b, 0, &f, errbuf, sizeof errbuf) == EMA_E_FORMAT && !f);
  CHECK(st_open_mem(NULL, 0, &f, errbuf, sizeof errbuf) == EMA_E_FORMAT && !f);
  /* N = 0: empty header */
  memset(b, 0, 8);
  CHECK(st_open_mem(b, 8, &f, errbuf, sizeof errbuf) == EMA_E_FORMAT && !f);
  /* N beyond the file */
  b[0] = 57;
  CHECK(st_open_mem(b, 64, &f, errbuf, sizeof errbuf) == EMA_E_FORMAT && !f);
  CHECK(strstr(errbuf, "runs past the end") != NULL);
  b[0] = 56;
  CHECK(st_open_mem(b, 64, &f, errbuf, sizeof errbuf) == EMA_OK && f);
  st_close(f);
  f = NULL;
  /* N at the cap: only "past the end"; over the cap: "exceeds the cap" */
  uint64_t n = ST_MAX_HEADER;
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(n >> (8 * i));
  CHECK(st_open_mem(b, 64, &f, errbuf, sizeof errbuf) == EMA_E_FORMAT && !f);
  CHECK(strstr(errbuf, "runs past the end") != NULL);
  n = ST_MAX_HEADER + 1u;
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(n >> (8 * i));
  CHECK(st_open_mem(b, 64, &f, errbuf, sizeof errbuf) == EMA_E_FORMAT && !f);
  CHECK(strstr(errbuf, "exceeds the cap") != NULL);
  memset(b, 0xFF, 8); /* 2^64 - 1: no overflow in 8 + N */
  CHECK(st_open_mem(b, 64, &f, errbuf, sizeof errbuf) == EMA_E_FORMAT && !f);
  memset(b, 0, 8);
  b[7] = 0x80;
  CHECK(st_open_mem(b, 64, &f, errbuf, sizeof errbuf) == EMA_E_FORMAT && !f);
}

static void test_offsets(void) {
  const char *two =
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[%d,%d]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%d,%d]}}";
  char j[512];
#define TWO(a0, a1, b0, b1) (snprintf(j, sizeof j, two, a0, a1, b0, b1), j)
  EXPECT_OK(TWO(0, 8, 8, 12), 12);
  EXPECT_OK(TWO(4, 12, 0, 4), 12);
  EXPECT_FORMAT(TWO(0, 8, 9, 13), 13, "a hole of 1 bytes");     /* gap */
  EXPECT_FORMAT(TWO(4, 12, 8, 12), 12, "a hole of 4 bytes");    /* not from 0 */
  EXPECT_FORMAT(TWO(0, 8, 4, 8), 8, "overlapping");             /* overlap */
  EXPECT_FORMAT(TWO(0, 8, 0, 4), 8, "overlapping");             /* same start */
  EXPECT_FORMAT(TWO(0, 8, 8, 16), 16, "takes 4 bytes");         /* size mismatch */
  EXPECT_FORMAT(TWO(0, 8, 12, 8), 12, "end before they begin"); /* end < begin */
  EXPECT_FORMAT(TWO(0, 8, 8, 12), 13, "1 bytes follow the last tensor");
  EXPECT_FORMAT(TWO(0, 8, 8, 12), 11, "truncated");
  EXPECT_FORMAT(TWO(0, 8, 8, 12), 100, "88 bytes follow the last tensor");
#undef TWO
  /* element count and byte size overflow 64 bits */
  EXPECT_FORMAT(T1("[4294967296,4294967296,2]", "[0,0]"), 0, "overflows 64 bits");
  EXPECT_FORMAT(T1("[9007199254740992,9007199254740992]", "[0,0]"), 0, "overflows 64 bits");
  EXPECT_FORMAT(T1("[4611686018427387904]", "[0,0]"), 0, "integer above 2^53");
  EXPECT_FORMAT(
      "{\"t\":{\"dtype\":\"F64\",\"shape\":[4503599627370496,64],"
      "\"data_offsets\":[0,0]}}",
      0, "overflows 64 bits");
  /* product with a zero at the end still overflows first (reference fold) */
  EXPECT_FORMAT(T1("[9007199254740992,9007199254740992,0]", "[0,0]"), 0, "overflows");
  EXPECT_OK(T1("[0,9007199254740992,9007199254740992]", "[0,0]"), 0);
  /* sub-byte dtypes must fill whole bytes */
  EXPECT_OK("{\"t\":{\"dtype\":\"F4\",\"shape\":[4],\"data_offsets\":[0,2]}}", 2);
  EXPECT_FORMAT("{\"t\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, "not a whole number of bytes");
  EXPECT_OK("{\"t\":{\"dtype\":\"F6_E3M2\",\"shape\":[4],\"data_offsets\":[0,3]}}", 3);
  EXPECT_FORMAT("{\"t\":{\"dtype\":\"F6_E2M3\",\"shape\":[2,3],\"data_offsets\":[0,4]}}", 5,
                "not a whole number of bytes");
  EXPECT_FORMAT(T1("[2]", "[0,9007199254740993]"), 8, "above 2^53");
}

static void test_grammar(void) {
  /* duplicate keys at every level */
  EXPECT_FORMAT(
      "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
      "\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
      2, "duplicate tensor name 't' (first at byte 9)");
  EXPECT_FORMAT(
      "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
      "\"\\u0074\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
      2, "duplicate tensor name");
  EXPECT_FORMAT_AT("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "\"__metadata__\":{}}");
  EXPECT_FORMAT("{\"__metadata__\":{\"k\":\"1\",\"j\":\"2\",\"k\":\"3\"}}", 0, "duplicate __metadata__ key 'k'");
  EXPECT_FORMAT_AT("{\"t\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                   "\"dtype\":\"U8\",\"shape");
  EXPECT_FORMAT("{\"t\":{\"shape\":[1],\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                "duplicate field \"shape\"");
  EXPECT_FORMAT(
      "{\"t\":{\"data_offsets\":[0,1],\"shape\":[1],\"dtype\":\"U8\",\"data_offsets\":"
      "[0,1]}}",
      1, "duplicate field \"data_offsets\"");

  /* integers */
  EXPECT_FORMAT_AT(T1("[01]", "[0,4]"), 4, "01");
  EXPECT_FORMAT(T1("[00]", "[0,0]"), 0, "leading zero");
  EXPECT_FORMAT(T1("[1]", "[00,4]"), 4, "leading zero");
  EXPECT_FORMAT_AT(T1("[-1]", "[0,4]"), 4, "-1");
  EXPECT_FORMAT(T1("[1]", "[-0,4]"), 4, "negative");
  EXPECT_FORMAT(T1("[+1]", "[0,4]"), 4, "expected a non-negative integer");
  EXPECT_FORMAT(T1("[1.0]", "[0,4]"), 4, "fractions and exponents");
  EXPECT_FORMAT(T1("[1.5]", "[0,4]"), 4, "fractions and exponents");
  EXPECT_FORMAT(T1("[1e0]", "[0,4]"), 4, "fractions and exponents");
  EXPECT_FORMAT(T1("[1E2]", "[0,400]"), 400, "fractions and exponents");
  EXPECT_FORMAT(T1("[1]", "[0,4.0]"), 4, "fractions and exponents");
  EXPECT_FORMAT(T1("[.5]", "[0,4]"), 4, "expected a non-negative integer");
  EXPECT_FORMAT(T1("[9007199254740993]", "[0,0]"), 0, "above 2^53");
  EXPECT_FORMAT(T1("[99999999999999999999999999]", "[0,0]"), 0, "above 2^53");
  EXPECT_FORMAT(T1("[\"1\"]", "[0,4]"), 4, "expected a non-negative integer");
  EXPECT_FORMAT(T1("[true]", "[0,4]"), 4, "expected a non-negative integer");
  EXPECT_FORMAT(T1("[null]", "[0,4]"), 4, "expected a non-negative integer");
  EXPECT_FORMAT(T1("[NaN]", "[0,4]"), 4, "expected a non-negative integer");
  EXPECT_FORMAT(T1("[Infinity]", "[0,4]"), 4, "expected a non-negative integer");

  /* deep nesting and wrong shapes of values */
  EXPECT_FORMAT(T1("[[1]]", "[0,4]"), 4, "expected a non-negative integer");
  EXPECT_FORMAT(T1("[1]", "[[0,4]]"), 4, "expected a non-negative integer");
  EXPECT_FORMAT(T1("{}", "[0,4]"), 4, "expected '['");
  EXPECT_FORMAT(T1("1", "[0,4]"), 4, "expected '['");
  EXPECT_FORMAT(T1("[1]", "{\"a\":0}"), 4, "expected '['");
  EXPECT_FORMAT("{\"t\":{\"dtype\":{\"F32\":1},\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "expected a dtype string");
  EXPECT_FORMAT("{\"t\":[{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}]}", 4, "expected '{'");
  EXPECT_FORMAT("{\"t\":{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}}", 4, "unknown field 't'");
  EXPECT_FORMAT("{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0, "values must be strings");
  EXPECT_FORMAT("{\"__metadata__\":[]}", 0, "expected '{'");
  EXPECT_FORMAT("[]", 0, "expected '{' as the first byte");
  EXPECT_FORMAT("{\"t\":1}", 0, "expected '{'");
  EXPECT_FORMAT("{\"t\":\"x\"}", 0, "expected '{'");
  EXPECT_FORMAT("{\"t\":null}", 0, "expected '{'");

  /* non-string metadata */
  EXPECT_FORMAT("{\"__metadata__\":{\"a\":1}}", 0, "values must be strings");
  EXPECT_FORMAT("{\"__metadata__\":{\"a\":null}}", 0, "values must be strings");
  EXPECT_FORMAT("{\"__metadata__\":{\"a\":true}}", 0, "values must be strings");
  EXPECT_FORMAT("{\"__metadata__\":{\"a\":[\"x\"]}}", 0, "values must be strings");
  EXPECT_FORMAT("{\"__metadata__\":null}", 0, "expected '{'");
  EXPECT_FORMAT("{\"__metadata__\":\"x\"}", 0, "expected '{'");
  EXPECT_FORMAT("{\"__metadata__\":{1:\"x\"}}", 0, "expected '\"'");

  /* missing and extra fields */
  EXPECT_FORMAT("{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "lacks \"dtype\"");
  EXPECT_FORMAT("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "lacks \"shape\"");
  EXPECT_FORMAT("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "lacks \"data_offsets\"");
  EXPECT_FORMAT("{\"t\":{}}", 0, "lacks \"dtype\" \"shape\" \"data_offsets\"");
  EXPECT_FORMAT_AT("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4, "\"extra\"");
  EXPECT_FORMAT("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"offsets\":[0,4]}}", 4, "unknown field 'offsets'");
  EXPECT_FORMAT("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"Dtype\":\"F32\"}}", 4,
                "unknown field 'Dtype'");
  EXPECT_FORMAT(T1("[1]", "[0]"), 4, "expected ','");
  EXPECT_FORMAT(T1("[1]", "[]"), 4, "exactly 2 integers, found 0");
  EXPECT_FORMAT(T1("[1]", "[0,4,4]"), 4, "exactly 2 integers, found more");
  EXPECT_FORMAT(T1("[1,]", "[0,4]"), 4, "expected a non-negative integer");
  EXPECT_FORMAT(T1("[1 1]", "[0,4]"), 4, "expected ',' or ']'");

  /* wrong dtype strings */
  EXPECT_FORMAT("{\"t\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype 'f32'");
  EXPECT_FORMAT("{\"t\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16, "unknown dtype");
  EXPECT_FORMAT("{\"t\":{\"dtype\":\"\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype ''");
  EXPECT_FORMAT("{\"t\":{\"dtype\":\"float32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype");
  EXPECT_FORMAT("{\"t\":{\"dtype\":\"F32 \",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype");
  EXPECT_FORMAT("{\"t\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "expected a dtype string");
  EXPECT_FORMAT("{\"t\":{\"dtype\":null,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "expected a dtype string");

  /* structure, trailing garbage and padding */
  EXPECT_FORMAT(" {}", 0, "first byte");
  EXPECT_FORMAT("\n{}", 0, "first byte");
  EXPECT_FORMAT("{}x", 0, "only space padding");
  EXPECT_FORMAT("{}\n", 0, "only space padding");
  EXPECT_FORMAT("{}\t", 0, "only space padding");
  EXPECT_FORMAT("{}  {}", 0, "at byte 12");
  EXPECT_FORMAT("{}       }", 0, "at byte 17");
  EXPECT_FORMAT("{", 0, "end of header");
  EXPECT_FORMAT("{\"t\"", 0, "expected ':'");
  EXPECT_FORMAT("{\"t\":", 0, "end of header");
  EXPECT_FORMAT("{\"t\" 1}", 0, "expected ':'");
  EXPECT_FORMAT("{,}", 0, "expected '\"'");
  EXPECT_FORMAT(T1("[1]", "[0,4]") "x", 4, "only space padding");
  EXPECT_FORMAT("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4, "expected '\"'");
  EXPECT_FORMAT("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],}}", 4, "expected '\"'");
  EXPECT_FORMAT("{\"t\":{\"dtype\":\"F32\" \"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                "expected ',' or '}' in a tensor entry");
  EXPECT_FORMAT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]} \"b\":1}", 4,
                "expected ',' or '}' after a top-level entry");
  EXPECT_FORMAT("{'t':{}}", 0, "expected '\"'");
  EXPECT_FORMAT("{t:{}}", 0, "expected '\"'");
  EXPECT_FORMAT("{\"__metadata__\":{\"a\":\"b\" \"c\":\"d\"}}", 0, "expected ',' or '}' in __metadata__");
  EXPECT_FORMAT("{\"__metadata__\":{\"a\" \"b\"}}", 0, "expected ':'");
  EXPECT_FORMAT("{\"__metadata__\":{\"a\":\"b\",}}", 0, "expected '\"'");
  {
    /* a NUL byte in the middle of the header */
    const char j[] = "{}\0  ";
    ema_status s = open_json_n(j, sizeof j - 1, 0);
    CHECK(s == EMA_E_FORMAT && strstr(errbuf, "byte 0x00") != NULL);
  }
}

static void test_strings(void) {
  /* invalid UTF-8, in names, metadata keys and values */
  static const char *bad_utf8[] = {
      "\xc0\x80",         /* overlong NUL */
      "\xc1\xbf",         /* overlong */
      "\xe0\x80\x80",     /* overlong 3-byte */
      "\xe0\x9f\xbf",     /* overlong 3-byte */
      "\xf0\x80\x80\x80", /* overlong 4-byte */
      "\xf0\x8f\xbf\xbf", /* overlong 4-byte */
      "\xed\xa0\x80",     /* surrogate D800 */
      "\xed\xbf\xbf",     /* surrogate DFFF */
      "\xf4\x90\x80\x80", /* U+110000 */
      "\xf5\x80\x80\x80", /* F5 */
      "\xff",             /* FF */
      "\xfe",             /* FE */
      "\x80",             /* stray continuation */
      "\xbf",             /* stray continuation */
      "\xc3",             /* truncated 2-byte */
      "\xe2\x82",         /* truncated 3-byte */
      "\xf0\x9f\x98",     /* truncated 4-byte */
      "\xc3\x28",         /* bad continuation */
      "\xe2\x28\xa1",     /* bad continuation */
  };
  char j[256];
  for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
    snprintf(j, sizeof j, "{\"a%sb\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", bad_utf8[i]);
    EXPECT_FORMAT_AT(j, 1, bad_utf8[i]);
    snprintf(j, sizeof j, "{\"__metadata__\":{\"k\":\"%s\"}}", bad_utf8[i]);
    EXPECT_FORMAT(j, 0, "invalid UTF-8");
    snprintf(j, sizeof j, "{\"__metadata__\":{\"%s\":\"v\"}}", bad_utf8[i]);
    EXPECT_FORMAT(j, 0, "invalid UTF-8");
    snprintf(j, sizeof j, "{\"t\":{\"dtype\":\"F3%s\",\"shape\":[1],\"data_offsets\":[0,4]}}", bad_utf8[i]);
    EXPECT_FORMAT(j, 4, "invalid UTF-8");
  }
  /* the edges that are valid */
  static const char *good_utf8[] = {
      "\xc2\x80",     "\xdf\xbf",         "\xe0\xa0\x80",     "\xed\x9f\xbf", "\xee\x80\x80",
      "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf", "\x7f",
  };
  for (size_t i = 0; i < sizeof good_utf8 / sizeof good_utf8[0]; i++) {
    snprintf(j, sizeof j, "{\"a%sb\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", good_utf8[i]);
    EXPECT_OK(j, 1);
  }
  /* escapes */
  static const struct {
    const char *s, *why;
  } bad_esc[] = {
      {"\\x41", "invalid escape"},
      {"\\a", "invalid escape"},
      {"\\'", "invalid escape"},
      {"\\U0041", "invalid escape"},
      {"\\u", "4 hexadecimal digits"},
      {"\\u12", "4 hexadecimal digits"},
      {"\\u12G4", "4 hexadecimal digits"},
      {"\\u-123", "4 hexadecimal digits"},
      {"\\ud800", "high surrogate"},
      {"\\udbff", "high surrogate"},
      {"\\ud800x", "high surrogate"},
      {"\\ud800\\u0041", "high surrogate"},
      {"\\ud800\\ud800", "high surrogate"},
      {"\\ud800\\n", "high surrogate"},
      {"\\udc00", "lone low surrogate"},
      {"\\udfff\\ud800", "lone low surrogate"},
      {"\\u0000", "\\u0000 is not allowed"},
  };
  for (size_t i = 0; i < sizeof bad_esc / sizeof bad_esc[0]; i++) {
    snprintf(j, sizeof j, "{\"a%sb\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", bad_esc[i].s);
    EXPECT_FORMAT_AT(j, 1, bad_esc[i].s);
    EXPECT_FORMAT(j, 1, bad_esc[i].why);
    snprintf(j, sizeof j, "{\"__metadata__\":{\"k\":\"%s\"}}", bad_esc[i].s);
    EXPECT_FORMAT(j, 0, bad_esc[i].why);
  }
  EXPECT_FORMAT("{\"a\\", 0, "unterminated escape");
  EXPECT_FORMAT("{\"abc", 0, "unterminated string (it starts at byte 9)");
  EXPECT_FORMAT("{\"__metadata__\":{\"k\":\"abc}}", 0, "unterminated string");
  /* raw control characters */
  for (int c = 1; c < 0x20; c++) {
    snprintf(j, sizeof j, "{\"a%cb\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", c);
    EXPECT_FORMAT(j, 1, "raw control character");
    snprintf(j, sizeof j, "{\"__metadata__\":{\"k\":\"%c\"}}", c);
    EXPECT_FORMAT(j, 0, "raw control character");
  }
  /* every valid escape decodes */
  const char *ok =
      "{\"__metadata__\":{\"k\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20ac"
      "\\uD83D\\uDE00\\uffff\"}}";
  size_t len;
  unsigned char *b = mkfile(ok, strlen(ok), 0, &len);
  st_file *f = NULL;
  CHECK_MSG(st_open_mem(b, len, &f, errbuf, sizeof errbuf) == EMA_OK, "%s", errbuf);
  const char *want = "\"\\/\b\f\n\r\tA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbf";
  CHECK(f && f->n_meta == 1 && strcmp(f->meta[0].value, want) == 0 && f->meta[0].value_len == strlen(want));
  st_close(f);
  free(b);
}

/* Random byte mutations of a valid file: every outcome is OK or FORMAT, a
   file that opens is self-consistent, and nothing crashes or leaks. */
static void test_mutations(void) {
  float v[4] = {1, 2, 3, 4};
  int64_t s2[2] = {2, 2}, s1 = 3;
  st_wtensor w[3] = {{"w/a", ST_F32, 2, s2, v}, {"b", ST_I8, 1, &s1, v}, {"c", ST_BF16, 0, NULL, v}};
  st_wmeta m[2] = {{"decay", "0.99"}, {"n", "7"}};
  unsigned char *img;
  size_t len;
  CHECK(st_serialize(w, 3, m, 2, &img, &len, errbuf, sizeof errbuf) == EMA_OK);
  unsigned char *mut = malloc(len);
  uint64_t rng = 0x9E3779B97F4A7C15u;
  int ok = 0, fmt = 0, other = 0;
  for (int it = 0; it < 20000; it++) {
    memcpy(mut, img, len);
    int flips = 1 + (int)(rng % 3);
    for (int k = 0; k < flips; k++) {
      rng = rng * 6364136223846793005u + 1442695040888963407u;
      size_t at = (size_t)(rng >> 33) % len;
      unsigned char val = (unsigned char)(rng >> 20);
      static const char special[] = "{}[]\",:0123456789-.eE\\u \x80\xff";
      if ((rng >> 8) & 1) val = (unsigned char)special[(rng >> 12) % (sizeof special - 1)];
      mut[at] = val;
    }
    size_t mlen = len - (size_t)((rng >> 40) % 3 == 0 ? (rng >> 44) % 8 : 0);
    st_file *f = NULL;
    ema_status st = st_open_mem(mut, mlen, &f, errbuf, sizeof errbuf);
    if (st == EMA_OK) {
      ok++;
      uint64_t sum = 0;
      for (size_t i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        CHECK(st_find_n(f, t->name, t->name_len) == t);
        sum += t->nbytes;
        unsigned char buf[64];
        if (t->nbytes <= sizeof buf) CHECK(st_read(f, t, buf, sizeof buf, NULL, 0) == EMA_OK);
      }
      CHECK(sum == f->data_len && f->data_start + f->data_len == mlen);
    } else if (st == EMA_E_FORMAT) {
      fmt++;
      CHECK(f == NULL);
    } else {
      other++;
    }
    st_close(f);
  }
  CHECK(other == 0);
  CHECK(ok > 0 && fmt > 0);
  free(mut);
  free(img);
}

/* ------------------------------------------------------------------------ */
/* File-level errors                                                         */
/* ------------------------------------------------------------------------ */

static void test_open_errors(void) {
  st_file *f = (st_file *)errbuf;
  char path[128];
  path_in_tmp(path, sizeof path, "does-not-exist.safetensors");
  CHECK(st_open(path, &f, errbuf, sizeof errbuf) == EMA_E_IO && f == NULL);
  CHECK(strstr(errbuf, path) && strstr(errbuf, "No such file"));
  CHECK(st_open(tmpdir, &f, errbuf, sizeof errbuf) == EMA_E_IO && f == NULL);
  CHECK(strstr(errbuf, "not a regular file") != NULL);
  path_in_tmp(path, sizeof path, "fifo");
  if (mkfifo(path, 0600) == 0) {
    CHECK(st_open(path, &f, errbuf, sizeof errbuf) == EMA_E_IO && f == NULL);
    unlink(path);
  }
  CHECK(st_open(NULL, &f, errbuf, sizeof errbuf) == EMA_E_INVALID_ARG);
  CHECK(st_open(path, NULL, errbuf, sizeof errbuf) == EMA_E_INVALID_ARG);
  CHECK(st_open_mem("x", 1, NULL, errbuf, sizeof errbuf) == EMA_E_INVALID_ARG);
  CHECK(st_open_mem(NULL, 5, &f, errbuf, sizeof errbuf) == EMA_E_INVALID_ARG);
  /* NULL / zero-capacity error buffers are fine */
  CHECK(st_open_mem("x", 1, &f, NULL, 0) == EMA_E_FORMAT);
  CHECK(st_open_mem("x", 1, &f, errbuf, 0) == EMA_E_FORMAT);
  char tiny[4];
  CHECK(st_open_mem("x", 1, &f, tiny, sizeof tiny) == EMA_E_FORMAT && strlen(tiny) == 3);
  st_close(NULL);
  CHECK(st_find(NULL, "x") == NULL && st_meta_get(NULL, "x") == NULL);
}

/* ------------------------------------------------------------------------ */
/* Writer                                                                    */
/* ------------------------------------------------------------------------ */

static void test_writer_args(void) {
  float v[4] = {0};
  int64_t s = 4, neg = -1, huge = (int64_t)ST_MAX_INT + 1;
  int64_t big2[2] = {(int64_t)ST_MAX_INT, 2};
  unsigned char *img = NULL;
  size_t len;
#define BAD(tensors, n, meta, nm, needle)                                                                              \
  do {                                                                                                                 \
    ema_status s_ = st_serialize((tensors), (n), (meta), (nm), &img, &len, errbuf, sizeof errbuf);                     \
    CHECK_MSG(s_ == EMA_E_INVALID_ARG && img == NULL && strstr(errbuf, (needle)) != NULL, "%d: %s (want %s)", (int)s_, \
              errbuf, (needle));                                                                                       \
  } while (0)
  st_wtensor dup[2] = {{"a", ST_F32, 1, &s, v}, {"a", ST_F16, 1, &s, v}};
  BAD(dup, 2, NULL, 0, "given twice");
  st_wtensor md = {"__metadata__", ST_F32, 1, &s, v};
  BAD(&md, 1, NULL, 0, "reserved");
  st_wtensor badu = {"a\xc0\x80", ST_F32, 1, &s, v};
  BAD(&badu, 1, NULL, 0, "not valid UTF-8");
  st_wtensor nul = {NULL, ST_F32, 1, &s, v};
  BAD(&nul, 1, NULL, 0, "NULL name");
  st_wtensor ng = {"a", ST_F32, 1, &neg, v};
  BAD(&ng, 1, NULL, 0, "outside [0, 2^53]");
  st_wtensor hg = {"a", ST_F32, 1, &huge, v};
  BAD(&hg, 1, NULL, 0, "outside [0, 2^53]");
  st_wtensor b2 = {"a", ST_F32, 2, big2, v};
  BAD(&b2, 1, NULL, 0, "2^53 bytes");
  int64_t big3[3] = {(int64_t)1 << 32, (int64_t)1 << 32, 2};
  st_wtensor b3 = {"a", ST_U8, 3, big3, v};
  BAD(&b3, 1, NULL, 0, "overflows 64 bits");
  st_wtensor nd = {"a", ST_F32, 65, &s, v};
  BAD(&nd, 1, NULL, 0, "ndim");
  st_wtensor ns = {"a", ST_F32, 1, NULL, v};
  BAD(&ns, 1, NULL, 0, "NULL shape");
  st_wtensor nodata = {"a", ST_F32, 1, &s, NULL};
  BAD(&nodata, 1, NULL, 0, "NULL data");
  int64_t three = 3;
  st_wtensor f4 = {"a", ST_F4, 1, &three, v};
  BAD(&f4, 1, NULL, 0, "whole number of bytes");
  st_wtensor bdt = {"a", ST_DTYPE_COUNT, 1, &s, v};
  BAD(&bdt, 1, NULL, 0, "unknown dtype");
  st_wmeta dm[2] = {{"k", "1"}, {"k", "2"}};
  BAD(NULL, 0, dm, 2, "given twice");
  st_wmeta bm = {"k", "\xff"};
  BAD(NULL, 0, &bm, 1, "not valid UTF-8");
  st_wmeta nm = {"k", NULL};
  BAD(NULL, 0, &nm, 1, "NULL key or value");
  BAD(NULL, 2, NULL, 0, "NULL tensor");
#undef BAD
  /* zero-size tensors may have NULL data; "__metadata__" is fine as a key */
  int64_t zero = 0;
  st_wtensor z = {"z", ST_F64, 1, &zero, NULL};
  st_wmeta mm = {"__metadata__", "x"};
  CHECK(st_serialize(&z, 1, &mm, 1, &img, &len, errbuf, sizeof errbuf) == EMA_OK);
  free(img);
  CHECK(st_serialize(&z, 1, NULL, 0, NULL, &len, errbuf, sizeof errbuf) == EMA_E_INVALID_ARG);
  CHECK(st_write(NULL, &z, 1, NULL, 0, errbuf, sizeof errbuf) == EMA_E_INVALID_ARG);
  CHECK(st_write("", &z, 1, NULL, 0, errbuf, sizeof errbuf) == EMA_E_INVALID_ARG);
  char path[128];
  path_in_tmp(path, sizeof path, "");
  CHECK(st_write(path, &z, 1, NULL, 0, errbuf, sizeof errbuf) == EMA_E_INVALID_ARG);
  path_in_tmp(path, sizeof path, "..");
  CHECK(st_write(path, &z, 1, NULL, 0, errbuf, sizeof errbuf) == EMA_E_INVALID_ARG);
  path_in_tmp(path, sizeof path, "no/such/dir/x.safetensors");
  CHECK(st_write(path, &z, 1, NULL, 0, errbuf, sizeof errbuf) == EMA_E_IO);
  CHECK(strstr(errbuf, path) && strstr(errbuf, "No such file"));
  CHECK(count_temps() == 0);
}

/* Write "old" to path, then try to overwrite it with "new" under the fault;
   the old bytes must survive and no temporary file may stay. */
static void expect_survives(const char *path, const unsigned char *old, size_t old_len, const st_wtensor *w, size_t n,
                            st_fault fault, uint64_t arg, const char *needle) {
  st_test_inject(fault, arg);
  ema_status st = st_write(path, w, n, NULL, 0, errbuf, sizeof errbuf);
  st_test_inject(ST_FAULT_NONE, 0);
  CHECK_MSG(st == EMA_E_IO, "fault %d at %llu: status %d", (int)fault, (unsigned long long)arg, (int)st);
  CHECK_MSG(strstr(errbuf, path) && strstr(errbuf, needle), "fault %d: %s (want %s)", (int)fault, errbuf, needle);
  size_t len;
  unsigned char *now = read_whole(path, &len);
  CHECK_MSG(now && len == old_len && memcmp(now, old, len) == 0, "fault %d at %llu: the previous file changed",
            (int)fault, (unsigned long long)arg);
  free(now);
  CHECK_MSG(count_temps() == 0, "fault %d at %llu: temporary file left", (int)fault, (unsigned long long)arg);
}

static void test_atomic(void) {
  char path[128];
  path_in_tmp(path, sizeof path, "ckpt.safetensors");
  /* the previous checkpoint */
  float old_v[3] = {1, 2, 3};
  int64_t s3 = 3;
  st_wtensor old_w = {"w", ST_F32, 1, &s3, old_v};
  CHECK(st_write(path, &old_w, 1, NULL, 0, errbuf, sizeof errbuf) == EMA_OK);
  size_t old_len;
  unsigned char *old = read_whole(path, &old_len);
  CHECK(old != NULL);

  /* the new one: big (direct writes) and small (buffered) tensors */
  enum { BIG = 300000 };
  float *big = malloc(BIG * sizeof(float));
  for (int i = 0; i < BIG; i++) big[i] = (float)i;
  int64_t sb = BIG, s1 = 1;
  double d = 42;
  st_wtensor w[3] = {{"big", ST_F32, 1, &sb, big}, {"small", ST_F64, 1, &s1, &d}, {"w", ST_F32, 1, &s3, old_v}};
  unsigned char *img;
  size_t len;
  CHECK(st_serialize(w, 3, NULL, 0, &img, &len, errbuf, sizeof errbuf) == EMA_OK);

  /* a write failure at many points */
  uint64_t points[] = {0, 1, 7, 8, 9, 100, 4096, 65535, 65536, 65537, len / 2, len - 1};
  for (size_t i = 0; i < sizeof points / sizeof points[0]; i++)
    expect_survives(path, old, old_len, w, 3, ST_FAULT_WRITE, points[i], "No space left");
  for (uint64_t at = 0; at < len; at += 99991)
    expect_survives(path, old, old_len, w, 3, ST_FAULT_WRITE, at, "No space left");
  expect_survives(path, old, old_len, w, 3, ST_FAULT_FSYNC, 0, "fsync");
  expect_survives(path, old, old_len, w, 3, ST_FAULT_RENAME, 0, "rename");
  expect_survives(path, old, old_len, w, 3, ST_FAULT_OPEN_TEMP, 0, "temporary file");

  /* an invalid argument leaves the file alone too */
  st_wtensor dup[2] = {old_w, old_w};
  CHECK(st_write(path, dup, 2, NULL, 0, errbuf, sizeof errbuf) == EMA_E_INVALID_ARG);
  size_t now_len;
  unsigned char *now = read_whole(path, &now_len);
  CHECK(now && now_len == old_len && memcmp(now, old, old_len) == 0);
  free(now);

  /* short writes and EINTR everywhere: the file is still complete */
  st_test_inject(ST_FAULT_SHORT, 4093);
  CHECK_MSG(st_write(path, w, 3, NULL, 0, errbuf, sizeof errbuf) == EMA_OK, "%s", errbuf);
  CHECK(st_test_bytes_written() == len);
  st_test_inject(ST_FAULT_NONE, 0);
  now = read_whole(path, &now_len);
  CHECK(now && now_len == len && memcmp(now, img, len) == 0);
  free(now);
  st_test_inject(ST_FAULT_SHORT, 1);
  CHECK(st_write(path, &old_w, 1, NULL, 0, errbuf, sizeof errbuf) == EMA_OK);
  st_test_inject(ST_FAULT_NONE, 0);
  now = read_whole(path, &now_len);
  CHECK(now && now_len == old_len && memcmp(now, old, old_len) == 0);
  free(now);

  /* a failed directory fsync happens after the rename: reported, new file in place */
  st_test_inject(ST_FAULT_DIRSYNC, 0);
  CHECK(st_write(path, w, 3, NULL, 0, errbuf, sizeof errbuf) == EMA_E_IO);
  st_test_inject(ST_FAULT_NONE, 0);
  CHECK(strstr(errbuf, "in place") != NULL);
  now = read_whole(path, &now_len);
  CHECK(now && now_len == len && memcmp(now, img, len) == 0);
  free(now);
  CHECK(count_temps() == 0);

  /* a new file: mode 0644 less the umask (issue 11: a replaced file keeps
     its mode, so the file is removed before each of these writes) */
  mode_t um = umask(022);
  unlink(path);
  CHECK(st_write(path, &old_w, 1, NULL, 0, errbuf, sizeof errbuf) == EMA_OK);
  struct stat sb2;
  CHECK(stat(path, &sb2) == 0 && (sb2.st_mode & 0777) == 0644);
  umask(077);
  unlink(path);
  CHECK(st_write(path, &old_w, 1, NULL, 0, errbuf, sizeof errbuf) == EMA_OK);
  CHECK(stat(path, &sb2) == 0 && (sb2.st_mode & 0777) == 0600);
  /* a replaced file keeps its mode, whatever the umask */
  umask(022);
  CHECK(chmod(path, 0640) == 0);
  CHECK(st_write(path, &old_w, 1, NULL, 0, errbuf, sizeof errbuf) == EMA_OK);
  CHECK(stat(path, &sb2) == 0 && (sb2.st_mode & 0777) == 0640);
  umask(um);

  /* middle-sized pieces: gathered, flushed, gathered again */
  enum { MID = 40000 };
  unsigned char *mid = malloc(3 * MID);
  for (int i = 0; i < 3 * MID; i++) mid[i] = (unsigned char)(i * 13);
  int64_t sm = MID;
  st_wtensor mw[3] = {
      {"m0", ST_U8, 1, &sm, mid}, {"m1", ST_U8, 1, &sm, mid + MID}, {"m2", ST_U8, 1, &sm, mid + 2 * MID}};
  unsigned char *mimg;
  size_t mlen;
  CHECK(st_serialize(mw, 3, NULL, 0, &mimg, &mlen, errbuf, sizeof errbuf) == EMA_OK);
  CHECK(st_write(path, mw, 3, NULL, 0, errbuf, sizeof errbuf) == EMA_OK);
  now = read_whole(path, &now_len);
  CHECK(now && now_len == mlen && memcmp(now, mimg, mlen) == 0);
  free(now);
  free(mimg);
  free(mid);

  /* the file shrinks after st_open: st_read reports EMA_E_IO, no crash */
  CHECK(st_write(path, w, 3, NULL, 0, errbuf, sizeof errbuf) == EMA_OK);
  st_file *sf = NULL;
  CHECK(st_open(path, &sf, errbuf, sizeof errbuf) == EMA_OK && sf);
  CHECK(truncate(path, (off_t)(len - 100)) == 0);
  const st_tensor *bt = sf ? st_find(sf, "big") : NULL;
  float *bbuf = malloc(BIG * sizeof(float));
  if (bt) {
    ema_status rs = st_read(sf, bt, bbuf, BIG * sizeof(float), errbuf, sizeof errbuf);
    CHECK_MSG(rs == EMA_E_IO && strstr(errbuf, "unexpected end of file") && strstr(errbuf, path), "%d %s", (int)rs,
              errbuf);
  }
  free(bbuf);
  st_close(sf);

  /* a path without a directory part goes to the current directory */
  char cwd[512];
  if (getcwd(cwd, sizeof cwd) && chdir(tmpdir) == 0) {
    CHECK(st_write("rel.safetensors", &old_w, 1, NULL, 0, errbuf, sizeof errbuf) == EMA_OK);
    st_file *f = NULL;
    CHECK(st_open("rel.safetensors", &f, errbuf, sizeof errbuf) == EMA_OK && f);
    st_close(f);
    unlink("rel.safetensors");
    CHECK(chdir(cwd) == 0);
  }
  free(big);
  free(img);
  free(old);
  unlink(path);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/test_safetensors_XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  test_dtypes();
  test_reference_vectors();
  test_round_trips();
  test_reader_accepts();
  test_truncation();
  test_header_length();
  test_offsets();
  test_grammar();
  test_strings();
  test_mutations();
  test_open_errors();
  test_writer_args();
  test_atomic();
  /* leave nothing behind */
  char path[128];
  path_in_tmp(path, sizeof path, "all.safetensors");
  unlink(path);
  CHECK(count_temps() == 0);
  CHECK_MSG(rmdir(tmpdir) == 0, "%s not empty: %s", tmpdir, strerror(errno));
  return check_report("test_safetensors");
}
