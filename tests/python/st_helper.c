/*
 * tests/python/st_helper.c: C side of the Python interop test
 * (test_st_reader.py) of the safetensors layer.
 *
 *   st_pyhelper write DIR   writes DIR/<case>.safetensors with st_write and,
 *                           for each, DIR/<case>.manifest describing what was
 *                           written (the inputs, not the file);
 *   st_pyhelper dump FILE   reads FILE with st_open/st_read and prints the
 *                           same manifest format on stdout (exit 3 and
 *                           "error <status> <message>" when refused).
 *
 * Manifest lines (every string hex-encoded, "-" when empty, so no escaping
 * rule is shared with the JSON code under test):
 *   meta <hex key> <hex value>
 *   tensor <hex name> <DTYPE> <ndim> <dim>... <hex data>
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

static void put_hex(FILE *fp, const void *p, size_t n) {
  const unsigned char *b = p;
  if (n == 0) {
    fputc('-', fp);
    return;
  }
  for (size_t i = 0; i < n; i++) fprintf(fp, "%02x", b[i]);
}

static void manifest_line_meta(FILE *fp, const char *k, size_t kl, const char *v, size_t vl) {
  fputs("meta ", fp);
  put_hex(fp, k, kl);
  fputc(' ', fp);
  put_hex(fp, v, vl);
  fputc('\n', fp);
}

static void manifest_line_tensor(FILE *fp, const char *name, size_t nl, st_dtype dt, int ndim, const int64_t *shape,
                                 const void *data, size_t nbytes) {
  fputs("tensor ", fp);
  put_hex(fp, name, nl);
  fprintf(fp, " %s %d", st_dtype_name(dt), ndim);
  for (int d = 0; d < ndim; d++) fprintf(fp, " %lld", (long long)shape[d]);
  fputc(' ', fp);
  put_hex(fp, data, nbytes);
  fputc('\n', fp);
}

/* xorshift bytes */
static void fill(unsigned char *p, size_t n, uint64_t *s) {
  for (size_t i = 0; i < n; i++) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    p[i] = (unsigned char)(*s >> 24);
  }
}

typedef struct wcase {
  const char *name;
  st_wtensor t[128];
  size_t n;
  st_wmeta m[8];
  size_t nm;
} wcase;

static int write_case(const char *dir, const wcase *c) {
  char path[4096], err[1024];
  snprintf(path, sizeof path, "%s/%s.safetensors", dir, c->name);
  if (st_write(path, c->t, c->n, c->m, c->nm, err, sizeof err) != EMA_OK) {
    fprintf(stderr, "st_write %s: %s\n", path, err);
    return 1;
  }
  snprintf(path, sizeof path, "%s/%s.manifest", dir, c->name);
  FILE *fp = fopen(path, "w");
  if (!fp) {
    perror(path);
    return 1;
  }
  for (size_t i = 0; i < c->nm; i++)
    manifest_line_meta(fp, c->m[i].key, strlen(c->m[i].key), c->m[i].value, strlen(c->m[i].value));
  for (size_t i = 0; i < c->n; i++) {
    const st_wtensor *w = &c->t[i];
    uint64_t bits = st_dtype_bits(w->dtype);
    for (int d = 0; d < w->ndim; d++) bits *= (uint64_t)w->shape[d];
    manifest_line_tensor(fp, w->name, strlen(w->name), w->dtype, w->ndim, w->shape, w->data, (size_t)(bits / 8));
  }
  return fclose(fp) == 0 ? 0 : 1;
}

static int cmd_write(const char *dir) {
  static unsigned char pool[1 << 22];
  size_t used = 0;
  uint64_t seed = 0x2545F4914F6CDD1Du;
  int rc = 0;
  static const int64_t shapes[4][3] = {{0}, {0}, {4}, {2, 3}};
  static const int ndims[4] = {0, 1, 1, 2};
  static char names[ST_DTYPE_COUNT * 4][32];
  size_t nn = 0;

  wcase c;
  memset(&c, 0, sizeof c);
  c.name = "all_dtypes";
  for (int dt = 0; dt < (int)ST_DTYPE_COUNT; dt++) {
    for (int s = 0; s < 4; s++) {
      uint64_t bits = st_dtype_bits((st_dtype)dt);
      for (int d = 0; d < ndims[s]; d++) bits *= (uint64_t)shapes[s][d];
      if (bits % 8) continue;
      snprintf(names[nn], sizeof names[nn], "%s.%d", st_dtype_name((st_dtype)dt), s);
      fill(pool + used, bits / 8, &seed);
      c.t[c.n++] = (st_wtensor){names[nn++], (st_dtype)dt, ndims[s], shapes[s], pool + used};
      used += bits / 8;
    }
  }
  c.m[c.nm++] = (st_wmeta){"format", "pt"};
  rc |= write_case(dir, &c);

  /* special float values, bit patterns preserved */
  memset(&c, 0, sizeof c);
  c.name = "floats";
  static const uint32_t f32[] = {0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00001,
                                 0x00000001, 0x807fffff, 0x3f800000, 0x7f7fffff};
  static const uint64_t f64[] = {0x8000000000000000u, 0x7ff0000000000000u, 0x7ff8000000000123u, 0x0000000000000001u,
                                 0x3ff0000000000000u};
  static const uint16_t h16[] = {0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e01, 0x0001, 0x3c00};
  static const uint16_t b16[] = {0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc1, 0x0001, 0x3f80};
  static const int64_t n9 = 9, n5 = 5, n7 = 7;
  c.t[c.n++] = (st_wtensor){"f32", ST_F32, 1, &n9, f32};
  c.t[c.n++] = (st_wtensor){"f64", ST_F64, 1, &n5, f64};
  c.t[c.n++] = (st_wtensor){"f16", ST_F16, 1, &n7, h16};
  c.t[c.n++] = (st_wtensor){"bf16", ST_BF16, 1, &n7, b16};
  rc |= write_case(dir, &c);

  /* awkward names and metadata */
  memset(&c, 0, sizeof c);
  c.name = "names";
  static const char *odd[] = {
      "layer/0/weight",
      "w/ExponentialMovingAverage",
      "",
      "gr\xc3\xb6\xc3\x9f\x65/\xe5\x8f\x98\xe9\x87\x8f/\xf0\x9f\x98\x80",
      "quote\"and\\backslash",
      "ctl\x01\x02\x1f\x7f|\b\f\n\r\t",
      "__metadata",
      "\xf4\x8f\xbf\xbf",
  };
  static const int64_t two = 2;
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    fill(pool + used, 8, &seed);
    c.t[c.n++] = (st_wtensor){odd[i], i % 2 ? ST_F32 : ST_I32, 1, &two, pool + used};
    used += 8;
  }
  c.m[c.nm++] = (st_wmeta){"k\"\\\x01\n\xc3\xa9", "v\t\x1f\xe2\x82\xac/\"\\"};
  c.m[c.nm++] = (st_wmeta){"empty", ""};
  c.m[c.nm++] = (st_wmeta){"", "empty key"};
  c.m[c.nm++] = (st_wmeta){"__metadata__", "not special inside"};
  rc |= write_case(dir, &c);

  /* a checkpoint-shaped file */
  memset(&c, 0, sizeof c);
  c.name = "checkpoint";
  static const int64_t s3[1] = {3};
  static const float w[3] = {0.25f, -1.5f, 3.0f}, a[3] = {0.2f, -1.25f, 2.5f};
  static const int64_t step = 1234567890123;
  c.t[c.n++] = (st_wtensor){"w", ST_F32, 1, s3, w};
  c.t[c.n++] = (st_wtensor){"w/ExponentialMovingAverage", ST_F32, 1, s3, a};
  c.t[c.n++] = (st_wtensor){"global_step", ST_I64, 0, NULL, &step};
  c.m[c.nm++] = (st_wmeta){"ema.decay", "0.99"};
  c.m[c.nm++] = (st_wmeta){"ema.num_updates", "100"};
  rc |= write_case(dir, &c);

  /* empty file, and a large tensor (written straight, not buffered) */
  memset(&c, 0, sizeof c);
  c.name = "empty";
  rc |= write_case(dir, &c);
  memset(&c, 0, sizeof c);
  c.name = "large";
  static const int64_t big[2] = {512, 513};
  fill(pool + used, 512 * 513 * 4, &seed);
  c.t[c.n++] = (st_wtensor){"big", ST_F32, 2, big, pool + used};
  used += 512 * 513 * 4;
  fill(pool + used, 3, &seed);
  c.t[c.n++] = (st_wtensor){"tail", ST_U8, 1, s3, pool + used};
  rc |= write_case(dir, &c);
  return rc;
}

static int cmd_dump(const char *path) {
  char err[1024];
  st_file *f = NULL;
  ema_status st = st_open(path, &f, err, sizeof err);
  if (st != EMA_OK) {
    printf("error %d %s\n", (int)st, err);
    return 3;
  }
  for (size_t i = 0; i < f->n_meta; i++)
    manifest_line_meta(stdout, f->meta[i].key, f->meta[i].key_len, f->meta[i].value, f->meta[i].value_len);
  int rc = 0;
  for (size_t i = 0; i < f->n_tensors; i++) {
    const st_tensor *t = &f->tensors[i];
    unsigned char *buf = malloc(t->nbytes ? (size_t)t->nbytes : 1);
    if (!buf || st_read(f, t, buf, (size_t)t->nbytes, err, sizeof err) != EMA_OK) {
      printf("error read %s\n", err);
      rc = 3;
      free(buf);
      break;
    }
    manifest_line_tensor(stdout, t->name, t->name_len, t->dtype, t->ndim, t->shape, buf, (size_t)t->nbytes);
    free(buf);
  }
  st_close(f);
  return rc;
}

/* A small libema checkpoint (bf16 and f32 tensors, a bank of two, plain
   state) at path, for the Python side to verify its libema.xxh64. */
static int cmd_ckpt(const char *path) {
  static float w[40];
  static uint16_t h[9];
  static int64_t step[1] = {7};
  for (int i = 0; i < 40; i++) w[i] = (float)i * 0.37f - 3.0f;
  for (int i = 0; i < 9; i++) h[i] = (uint16_t)(0x3F80 + 3 * i);
  const int64_t sw[2] = {5, 8}, sh[1] = {9}, ss[1] = {1};
  ema_ctx *ctx = NULL;
  ema_schedule s;
  ema_schedule_init(&s, EMA_SCHEDULE_CONSTANT);
  s.decay = 0.5;
  int ok = ema_create(&ctx, 0.9) == EMA_OK && ema_bank_add(ctx, "fast", &s, NULL) == EMA_OK &&
           ema_track(ctx, "w", w, EMA_F32, 2, sw) == EMA_OK && ema_track(ctx, "h", h, EMA_BF16, 1, sh) == EMA_OK &&
           ema_track_policy(ctx, "step", step, EMA_I64, 1, ss, EMA_POLICY_COPY) == EMA_OK;
  for (int i = 0; i < 40; i++) w[i] += 1.0f;
  ok = ok && ema_update(ctx, 1) == EMA_OK && ema_save(ctx, path) == EMA_OK;
  if (!ok) fprintf(stderr, "ckpt: %s\n", ctx ? ema_last_error(ctx) : "no context");
  ema_free(ctx);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "ckpt") == 0) return cmd_ckpt(argv[2]);
  if (argc == 3 && strcmp(argv[1], "write") == 0) return cmd_write(argv[2]);
  if (argc == 3 && strcmp(argv[1], "dump") == 0) return cmd_dump(argv[2]);
  fprintf(stderr, "usage: %s write DIR | dump FILE\n", argv[0]);
  return 2;
}
