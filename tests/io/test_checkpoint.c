/*
 * Checkpoints: round trips for every dtype, exact resume, the seeds' "right
 * restore", and every failure (missing tensor, other dtype/shape, corrupt or
 * truncated file, I/O failure, allocation failure, SIGKILL during a save)
 * leaving the model, the context and the previous file untouched.
 */
#include <ema/ema.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "core/internal.h"
#include "io/safetensors.h"

static char dir[256];

static const char *tmp_path(const char *name) {
  static char buf[4][512];
  static int k = 0;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = (unsigned char *)malloc((size_t)n + 1);
  *len = fread(buf, 1, (size_t)n, f);
  fclose(f);
  return buf;
}

static void spit(const char *path, const unsigned char *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  fwrite(buf, 1, len, f);
  fclose(f);
}

/* A model with every dtype, rank 0, zero-size, odd names. */
typedef struct model {
  float w[2][3];
  double d[5];
  uint16_t h[7]; /* f16 */
  uint16_t b[4]; /* bf16 */
  float scalar;
  float empty[1];
  int64_t step;
  int32_t counts[3];
} model;

static void fill(model *m, float base) {
  for (int i = 0; i < 6; i++) m->w[i / 3][i % 3] = base + (float)i * 0.5f;
  for (int i = 0; i < 5; i++) m->d[i] = (double)base * 1.25 + i;
  for (int i = 0; i < 7; i++) m->h[i] = ema_f32_to_f16(base - (float)i);
  for (int i = 0; i < 4; i++) m->b[i] = ema_f32_to_bf16(base * (float)(i + 1));
  m->scalar = -base;
  m->step = (int64_t)base;
  for (int i = 0; i < 3; i++) m->counts[i] = (int32_t)base * 10 + i;
}

static ema_ctx *track_model(model *m, int debias, int same_half) {
  ema_ctx *ctx = NULL;
  CHECK(ema_create(&ctx, 0.9) == EMA_OK);
  CHECK_ST(ctx, ema_set_zero_debias(ctx, debias), EMA_OK);
  CHECK_ST(ctx, ema_set_half_shadows(ctx, same_half), EMA_OK);
  int64_t s23[2] = {2, 3}, s5 = 5, s7 = 7, s4 = 4, s0[2] = {3, 0}, s3 = 3;
  CHECK_ST(ctx, ema_track(ctx, "layer1/weight", m->w, EMA_F32, 2, s23), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "d\xc3\xa9j\xc3\xa0/vu", m->d, EMA_F64, 1, &s5), EMA_OK); /* "déjà/vu" */
  CHECK_ST(ctx, ema_track(ctx, "half \"quoted\"", m->h, EMA_F16, 1, &s7), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "bf", m->b, EMA_BF16, 1, &s4), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "scalar", &m->scalar, EMA_F32, 0, NULL), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "empty", m->empty, EMA_F32, 2, s0), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "global_step", &m->step, EMA_I64, 0, NULL, EMA_POLICY_COPY), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "counts", m->counts, EMA_I32, 1, &s3, EMA_POLICY_COPY), EMA_OK);
  return ctx;
}

static void train(ema_ctx *ctx, model *m, int from, int to) {
  for (int step = from; step < to; step++) {
    fill(m, (float)step * 0.37f + 1.0f);
    CHECK_ST(ctx, ema_set_num_updates(ctx, step), EMA_OK);
    CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  }
}

/* Bytes of every average, in registration order. */
static size_t averages(const ema_ctx *ctx, unsigned char *out) {
  size_t off = 0;
  for (size_t i = 0; i < ema_count(ctx); i++) {
    const char *name;
    int nd;
    ema_policy policy;
    int64_t shape[EMA_MAX_DIMS];
    ema_tensor_info(ctx, i, &name, NULL, NULL, &nd, shape, &policy);
    if (policy != EMA_POLICY_AVERAGE) continue;
    ema_dtype sd;
    const void *a = ema_average(ctx, name, &sd);
    size_t n = 1;
    for (int d = 0; d < nd; d++) n *= (size_t)shape[d];
    memcpy(out + off, a, n * ema_dtype_size(sd));
    off += n * ema_dtype_size(sd);
  }
  return off;
}

static void test_resume_exact(int debias, int same_half) {
  model a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  fill(&a, 0.0f);
  fill(&b, 0.0f);
  /* A trains 20 steps without stopping */
  ema_ctx *ca = track_model(&a, debias, same_half);
  train(ca, &a, 1, 21);
  /* B trains 10, saves, a fresh process loads and trains 10 more */
  ema_ctx *cb = track_model(&b, debias, same_half);
  CHECK_ST(cb, ema_set_decay(cb, 0.9), EMA_OK);
  train(cb, &b, 1, 11);
  char path[512];
  snprintf(path, sizeof path, "%s", tmp_path("resume.safetensors"));
  CHECK_ST(cb, ema_save(cb, path), EMA_OK);
  ema_free(cb);
  model c;
  memset(&c, 0, sizeof c);
  ema_ctx *cc = track_model(&c, debias, same_half);
  CHECK_ST(cc, ema_set_decay(cc, 0.5), EMA_OK); /* the file's decay wins */
  CHECK_ST(cc, ema_load(cc, path), EMA_OK);
  CHECK(ema_effective_decay(cc) == (double)((1.0f + 10.0f) / (10.0f + 10.0f))); /* n = 10 came back */
  CHECK(c.step == b.step && c.counts[2] == b.counts[2]);                        /* plain state */
  CHECK(memcmp(&c, &b, sizeof c) == 0);                                         /* every model value */
  train(cc, &c, 11, 21);
  static unsigned char ua[4096], uc[4096];
  size_t la = averages(ca, ua), lc = averages(cc, uc);
  CHECK_MSG(la == lc && memcmp(ua, uc, la) == 0, "resumed run differs (zero_debias %d, half %d)", debias, same_half);
  CHECK(memcmp(&a, &c, sizeof a) == 0);
  ema_free(ca);
  ema_free(cc);
}

/* The seeds' story: the plain restore gives the raw weights; restoring the
   averages into the model (variables_to_restore) gives the averaged ones. */
static void test_right_restore(void) {
  model m;
  memset(&m, 0, sizeof m);
  fill(&m, 0.0f);
  ema_ctx *ctx = track_model(&m, 0, 0);
  train(ctx, &m, 1, 8);
  char path[512];
  snprintf(path, sizeof path, "%s", tmp_path("restore.safetensors"));
  CHECK_ST(ctx, ema_save(ctx, path), EMA_OK);
  model raw = m;
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  model averaged = m; /* the model as evaluated with the averages */
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  ema_free(ctx);

  model e;
  memset(&e, 0, sizeof e);
  ema_ctx *ev = track_model(&e, 0, 0);
  CHECK_ST(ev, ema_load_averages_into_model(ev, path), EMA_OK);
  CHECK(memcmp(e.w, averaged.w, sizeof e.w) == 0);
  CHECK(memcmp(e.d, averaged.d, sizeof e.d) == 0);
  CHECK(memcmp(e.h, averaged.h, sizeof e.h) == 0); /* float32 average rounded to f16 */
  CHECK(memcmp(e.b, averaged.b, sizeof e.b) == 0);
  CHECK(e.scalar == averaged.scalar);
  CHECK(e.step == raw.step && memcmp(e.counts, raw.counts, sizeof e.counts) == 0); /* plain state */
  CHECK(memcmp(e.w, raw.w, sizeof e.w) != 0);
  /* the plain restore (resume) gives the raw weights */
  CHECK_ST(ev, ema_load(ev, path), EMA_OK);
  CHECK(memcmp(&e, &raw, sizeof e) == 0);
  ema_free(ev);

  /* same-dtype half shadows load into the model without rounding */
  memset(&e, 0, sizeof e);
  ev = track_model(&e, 0, 1);
  CHECK_ST(ev, ema_load_averages_into_model(ev, path), EMA_OK);
  CHECK(memcmp(e.h, averaged.h, sizeof e.h) == 0);
  /* ... but resuming needs the same shadow dtype */
  CHECK_ST(ev, ema_load(ev, path), EMA_E_MISMATCH);
  ema_free(ev);
}

/* Every failing load leaves model and context as they were. */
static void expect_load_fails(ema_ctx *ctx, model *m, const char *path, ema_status want, const char *needle,
                              int averages_only) {
  model before = *m;
  static unsigned char a0[4096], a1[4096];
  size_t l0 = averages(ctx, a0);
  double d0 = ema_effective_decay(ctx);
  ema_status st = averages_only ? ema_load_averages_into_model(ctx, path) : ema_load(ctx, path);
  CHECK_MSG(st == want, "load of %s: got %d (%s), want %d", path, (int)st, ema_last_error(ctx), (int)want);
  if (needle) CHECK_MSG(strstr(ema_last_error(ctx), needle) != NULL, "'%s' not in '%s'", needle, ema_last_error(ctx));
  CHECK(memcmp(&before, m, sizeof before) == 0);
  size_t l1 = averages(ctx, a1);
  CHECK(l0 == l1 && memcmp(a0, a1, l0) == 0);
  CHECK(ema_effective_decay(ctx) == d0);
}

static void test_bad_files(void) {
  model m;
  memset(&m, 0, sizeof m);
  fill(&m, 0.0f);
  ema_ctx *ctx = track_model(&m, 0, 0);
  train(ctx, &m, 1, 5);
  char good[512];
  snprintf(good, sizeof good, "%s", tmp_path("good.safetensors"));
  CHECK_ST(ctx, ema_save(ctx, good), EMA_OK);
  size_t len;
  unsigned char *img = slurp(good, &len);
  CHECK(img != NULL && len > 100);
  train(ctx, &m, 5, 7); /* the context moves on: a failed load must not rewind it */

  for (int averages_only = 0; averages_only < 2; averages_only++) {
    expect_load_fails(ctx, &m, tmp_path("missing.safetensors"), EMA_E_IO, "missing.safetensors", averages_only);
    /* truncated at many points */
    char t[512];
    snprintf(t, sizeof t, "%s", tmp_path("trunc.safetensors"));
    for (size_t cut = 0; cut < len; cut += (cut < 64 ? 1 : 37)) {
      spit(t, img, cut);
      expect_load_fails(ctx, &m, t, EMA_E_FORMAT, NULL, averages_only);
    }
    /* a flipped bit in the data: only the checksum can tell */
    unsigned char *bad = (unsigned char *)malloc(len);
    memcpy(bad, img, len);
    bad[len - 3] ^= 0x10;
    spit(t, bad, len);
    expect_load_fails(ctx, &m, t, EMA_E_FORMAT, "checksum", averages_only);
    free(bad);
  }
  /* a context with another tensor set */
  model o;
  memset(&o, 0, sizeof o);
  ema_ctx *other = NULL;
  CHECK(ema_create(&other, 0.9) == EMA_OK);
  int64_t s6 = 6, s23[2] = {3, 2};
  float extra = 1.0f;
  CHECK_ST(other, ema_track(other, "layer1/weight", o.w, EMA_F32, 1, &s6), EMA_OK); /* other shape */
  expect_load_fails(other, &o, good, EMA_E_MISMATCH, "shape", 0);
  ema_free(other);
  CHECK(ema_create(&other, 0.9) == EMA_OK);
  CHECK_ST(other, ema_track(other, "layer1/weight", o.w, EMA_F32, 2, s23), EMA_OK);
  expect_load_fails(other, &o, good, EMA_E_MISMATCH, "shape", 1);
  ema_free(other);
  CHECK(ema_create(&other, 0.9) == EMA_OK);
  CHECK_ST(other, ema_track(other, "layer1/weight", o.d, EMA_F64, 2, (int64_t[]){2, 3}), EMA_OK); /* other dtype */
  expect_load_fails(other, &o, good, EMA_E_MISMATCH, "F32", 0);
  ema_free(other);
  CHECK(ema_create(&other, 0.9) == EMA_OK);
  CHECK_ST(other, ema_track(other, "layer1/weight", o.w, EMA_F32, 2, (int64_t[]){2, 3}), EMA_OK);
  CHECK_ST(other, ema_track(other, "not_in_file", &extra, EMA_F32, 0, NULL), EMA_OK);
  expect_load_fails(other, &o, good, EMA_E_MISMATCH, "not_in_file", 0);
  expect_load_fails(other, &o, good, EMA_E_MISMATCH, "not_in_file", 1);
  ema_free(other);
  CHECK(ema_create(&other, 0.9) == EMA_OK);
  CHECK_ST(other, ema_set_zero_debias(other, 1), EMA_OK);
  CHECK_ST(other, ema_track(other, "layer1/weight", o.w, EMA_F32, 2, (int64_t[]){2, 3}), EMA_OK);
  expect_load_fails(other, &o, good, EMA_E_MISMATCH, "zero_debias", 0);
  ema_free(other);

  /* allocation failures during a load */
  for (long n = 0;; n++) {
    model before = m;
    ema__test_fail_alloc(n);
    ema_status st = ema_load(ctx, good);
    ema__test_fail_alloc(-1);
    if (st == EMA_OK) break;
    CHECK_MSG(st == EMA_E_NOMEM, "alloc failure %ld gave %d: %s", n, (int)st, ema_last_error(ctx));
    CHECK(memcmp(&before, &m, sizeof m) == 0);
  }
  free(img);
  ema_free(ctx);
}

static void test_save_failures(void) {
  model m;
  memset(&m, 0, sizeof m);
  fill(&m, 0.0f);
  ema_ctx *ctx = track_model(&m, 1, 0);
  train(ctx, &m, 1, 4);
  char path[512];
  snprintf(path, sizeof path, "%s", tmp_path("keep.safetensors"));
  CHECK_ST(ctx, ema_save(ctx, path), EMA_OK);
  size_t len0;
  unsigned char *old = slurp(path, &len0);
  train(ctx, &m, 4, 6);
  /* a disk that fills up after n bytes, at many n */
  for (uint64_t n = 0; n < len0; n += 61) {
    st_test_inject(ST_FAULT_WRITE, n);
    CHECK_ST(ctx, ema_save(ctx, path), EMA_E_IO);
    st_test_inject(ST_FAULT_NONE, 0);
    size_t len1;
    unsigned char *now = slurp(path, &len1);
    CHECK(now && len1 == len0 && memcmp(now, old, len0) == 0);
    free(now);
  }
  st_test_inject(ST_FAULT_FSYNC, 0);
  CHECK_ST(ctx, ema_save(ctx, path), EMA_E_IO);
  st_test_inject(ST_FAULT_RENAME, 0);
  CHECK_ST(ctx, ema_save(ctx, path), EMA_E_IO);
  st_test_inject(ST_FAULT_NONE, 0);
  CHECK(strstr(ema_last_error(ctx), "keep.safetensors") != NULL);
  size_t len1;
  unsigned char *now = slurp(path, &len1);
  CHECK(now && len1 == len0 && memcmp(now, old, len0) == 0);
  free(now);
  free(old);
  CHECK_ST(ctx, ema_save(ctx, "/nonexistent-dir/x.safetensors"), EMA_E_IO);
  CHECK_ST(ctx, ema_save(ctx, NULL), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_load(ctx, NULL), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK_ST(ctx, ema_save(ctx, path), EMA_E_STATE);
  CHECK_ST(ctx, ema_load(ctx, path), EMA_E_STATE);
  CHECK_ST(ctx, ema_load_averages_into_model(ctx, path), EMA_E_STATE);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK_ST(ctx, ema_store(ctx), EMA_OK);
  CHECK_ST(ctx, ema_load(ctx, path), EMA_E_STATE);
  CHECK_ST(ctx, ema_restore(ctx), EMA_OK);
  CHECK_ST(ctx, ema_load(ctx, path), EMA_OK);
  ema_free(ctx);

  /* a registered name that collides with an average's name */
  float a = 1, b = 2;
  CHECK(ema_create(&ctx, 0.9) == EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "w", &a, EMA_F32, 0, NULL), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "w/ExponentialMovingAverage", &b, EMA_F32, 0, NULL), EMA_OK);
  CHECK_ST(ctx, ema_save(ctx, tmp_path("clash.safetensors")), EMA_E_INVALID_ARG);
  CHECK(strstr(ema_last_error(ctx), "ema_set_name") != NULL);
  CHECK_ST(ctx, ema_set_name(ctx, "ema"), EMA_OK);
  CHECK_ST(ctx, ema_save(ctx, tmp_path("clash.safetensors")), EMA_OK);
  ema_free(ctx);
}

/* The metadata and names are what the header documents. */
static void test_file_layout(void) {
  model m;
  memset(&m, 0, sizeof m);
  fill(&m, 0.0f);
  ema_ctx *ctx = track_model(&m, 1, 0);
  train(ctx, &m, 1, 3);
  char path[512];
  snprintf(path, sizeof path, "%s", tmp_path("layout.safetensors"));
  CHECK_ST(ctx, ema_save(ctx, path), EMA_OK);
  st_file *f = NULL;
  char err[256];
  CHECK(st_open(path, &f, err, sizeof err) == EMA_OK);
  if (f) {
    CHECK(st_find(f, "layer1/weight") != NULL);
    CHECK(st_find(f, "layer1/weight/ExponentialMovingAverage") != NULL);
    CHECK(st_find(f, "layer1/weight/ExponentialMovingAverage/biased") != NULL);
    const st_tensor *ls = st_find(f, "layer1/weight/ExponentialMovingAverage/local_step");
    CHECK(ls && ls->dtype == ST_I64 && ls->ndim == 0);
    const st_tensor *bf = st_find(f, "bf/ExponentialMovingAverage");
    CHECK(bf && bf->dtype == ST_F32); /* float32 shadow of a bf16 model */
    CHECK(st_find(f, "global_step") != NULL && st_find(f, "global_step/ExponentialMovingAverage") == NULL);
    CHECK(strcmp(st_meta_get(f, "ema.decay"), "0.90000000000000002") == 0);
    CHECK(strcmp(st_meta_get(f, "ema.num_updates"), "2") == 0);
    CHECK(strcmp(st_meta_get(f, "ema.zero_debias"), "1") == 0);
    CHECK(strcmp(st_meta_get(f, "ema.name"), "ExponentialMovingAverage") == 0);
    CHECK(strcmp(st_meta_get(f, "libema.version"), EMA_VERSION_STRING) == 0);
    CHECK(f->data_start % 8 == 0);
    st_close(f);
  }
  ema_free(ctx);
}

/* The public file API and the inference export. */
static void test_file_api_and_extract(void) {
  model m;
  memset(&m, 0, sizeof m);
  fill(&m, 0.0f);
  ema_ctx *ctx = track_model(&m, 1, 0);
  train(ctx, &m, 1, 6);
  char path[512], out[512], err[512];
  snprintf(path, sizeof path, "%s", tmp_path("api.safetensors"));
  snprintf(out, sizeof out, "%s", tmp_path("api_infer.safetensors"));
  CHECK_ST(ctx, ema_save(ctx, path), EMA_OK);
  model raw = m;
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  model averaged = m;
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);

  ema_file *f = NULL;
  CHECK(ema_file_open(&f, path, err, sizeof err) == EMA_OK);
  CHECK(ema_file_count(f) == 8 + 6 * 4); /* 8 model tensors, 6 averages with biased, local_step, decay_product */
  CHECK(strcmp(ema_file_metadata(f, "ema.zero_debias"), "1") == 0);
  CHECK(ema_file_metadata(f, "nope") == NULL);
  CHECK(ema_file_metadata_count(f) >= 7);
  const char *k, *v;
  CHECK(ema_file_metadata_at(f, 0, &k, &v) == EMA_OK && k && v);
  CHECK(ema_file_metadata_at(f, 99, &k, &v) == EMA_E_NOT_FOUND);
  ema_file_tensor t;
  CHECK(ema_file_find(f, "bf", &t) == EMA_OK && t.dtype == EMA_BF16 && strcmp(t.dtype_name, "BF16") == 0);
  CHECK(t.ndim == 1 && t.shape[0] == 4 && t.numel == 4 && t.nbytes == 8 && t.supported);
  CHECK(ema_file_find(f, "nope", &t) == EMA_E_NOT_FOUND);
  CHECK(ema_file_tensor_at(f, 999, &t) == EMA_E_NOT_FOUND);
  float w[6];
  CHECK(ema_file_read(f, "layer1/weight", 0, w, sizeof w) == EMA_OK);
  CHECK(memcmp(w, raw.w, sizeof w) == 0);
  CHECK(ema_file_read(f, "layer1/weight", 8, w, 8) == EMA_OK && w[0] == raw.w[0][2]);
  CHECK(ema_file_read(f, "layer1/weight", 20, w, 8) == EMA_E_INVALID_ARG);
  CHECK(ema_file_read(f, "nope", 0, w, 4) == EMA_E_NOT_FOUND);
  ema_file_close(f);
  ema_file_close(NULL);
  CHECK(ema_file_open(&f, tmp_path("none.safetensors"), err, sizeof err) == EMA_E_IO && f == NULL);

  CHECK_MSG(ema_extract_averages(path, out, NULL, err, sizeof err) == EMA_OK, "%s", err);
  CHECK(ema_file_open(&f, out, err, sizeof err) == EMA_OK);
  CHECK(ema_file_count(f) == 8);
  CHECK(ema_file_read(f, "layer1/weight", 0, w, sizeof w) == EMA_OK);
  CHECK(memcmp(w, averaged.w, sizeof w) == 0);
  uint16_t b[4];
  CHECK(ema_file_find(f, "bf", &t) == EMA_OK && t.dtype == EMA_BF16); /* rounded back to the model dtype */
  CHECK(ema_file_read(f, "bf", 0, b, sizeof b) == EMA_OK && memcmp(b, averaged.b, sizeof b) == 0);
  int64_t step;
  CHECK(ema_file_read(f, "global_step", 0, &step, 8) == EMA_OK && step == raw.step);
  CHECK(ema_file_find(f, "layer1/weight/ExponentialMovingAverage/biased", &t) == EMA_E_NOT_FOUND);
  ema_file_close(f);
  /* a file without averages cannot be extracted */
  CHECK(ema_extract_averages(out, tmp_path("x.safetensors"), NULL, err, sizeof err) == EMA_E_FORMAT);
  /* ema_file_write round trip */
  int64_t shp[2] = {2, 3};
  ema_file_entry e[2] = {{"a", EMA_F32, 2, shp, raw.w}, {"b/c", EMA_I64, 0, NULL, &raw.step}};
  const char *meta[2] = {"k", "v"};
  CHECK(ema_file_write(out, e, 2, meta, 1, err, sizeof err) == EMA_OK);
  CHECK(ema_file_open(&f, out, err, sizeof err) == EMA_OK);
  CHECK(ema_file_count(f) == 2 && strcmp(ema_file_metadata(f, "k"), "v") == 0);
  ema_file_close(f);
  ema_file_entry dup[2] = {{"a", EMA_F32, 2, shp, raw.w}, {"a", EMA_F32, 2, shp, raw.w}};
  CHECK(ema_file_write(out, dup, 2, NULL, 0, err, sizeof err) == EMA_E_INVALID_ARG);
  ema_free(ctx);
}

/* A producer that writes i-th byte = (offset + i) * 7, and fails at a
   chosen offset. */
static ema_status ramp_producer(void *user, size_t index, uint64_t offset, void *dst, size_t len, char *err,
                                size_t errcap) {
  uint64_t fail_at = *(const uint64_t *)user;
  (void)index;
  if (offset >= fail_at) {
    snprintf(err, errcap, "producer gave up at %llu", (unsigned long long)offset);
    return EMA_E_IO;
  }
  for (size_t i = 0; i < len; i++) ((unsigned char *)dst)[i] = (unsigned char)((offset + i) * 7u);
  return EMA_OK;
}

static void test_write_stream(void) {
  char path[512], err[256];
  snprintf(path, sizeof path, "%s", tmp_path("stream.safetensors"));
  int64_t shape[1] = {3 << 20}; /* 12 MiB of float32: several 1 MiB chunks */
  ema_file_entry e[1] = {{"big", EMA_F32, 1, shape, NULL}};
  uint64_t never = UINT64_MAX, midway = 5u << 20;
  CHECK_MSG(ema_file_write_stream(path, e, 1, NULL, 0, ramp_producer, &never, err, sizeof err) == EMA_OK, "%s", err);
  size_t len0;
  unsigned char *img = slurp(path, &len0);
  CHECK(img && len0 > (12u << 20));
  ema_file *f = NULL;
  CHECK(ema_file_open(&f, path, err, sizeof err) == EMA_OK);
  unsigned char probe[16];
  CHECK(ema_file_read(f, "big", (7u << 20) + 3, probe, sizeof probe) == EMA_OK);
  CHECK(probe[0] == (unsigned char)(((7u << 20) + 3) * 7u) && probe[15] == (unsigned char)(((7u << 20) + 18) * 7u));
  ema_file_close(f);
  /* a failing producer aborts and the previous file stays */
  CHECK(ema_file_write_stream(path, e, 1, NULL, 0, ramp_producer, &midway, err, sizeof err) == EMA_E_IO);
  CHECK(strstr(err, "gave up") != NULL);
  size_t len1;
  unsigned char *now = slurp(path, &len1);
  CHECK(now && len1 == len0 && memcmp(now, img, len0) == 0);
  free(now);
  free(img);
}

/* Extract streams tensors larger than its 1 MiB chunks, converting float32
   averages of a bf16 model chunk by chunk. */
static void test_extract_large(void) {
  enum { N = 1500007 };
  uint16_t *b = (uint16_t *)malloc(N * sizeof *b);
  float *f = (float *)malloc(N * sizeof *f);
  int64_t n = N;
  for (int i = 0; i < N; i++) {
    b[i] = ema_f32_to_bf16((float)i * 1e-3f);
    f[i] = (float)i;
  }
  ema_ctx *ctx = NULL;
  CHECK(ema_create(&ctx, 0.7) == EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "b", b, EMA_BF16, 1, &n), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "f", f, EMA_F32, 1, &n), EMA_OK);
  for (int i = 0; i < N; i++) {
    b[i] = ema_f32_to_bf16(-(float)i * 1e-3f);
    f[i] = (float)(N - i);
  }
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  char path[512], out[512], err[256];
  snprintf(path, sizeof path, "%s", tmp_path("large.safetensors"));
  snprintf(out, sizeof out, "%s", tmp_path("large_out.safetensors"));
  CHECK_ST(ctx, ema_save(ctx, path), EMA_OK);
  CHECK_MSG(ema_extract_averages(path, out, NULL, err, sizeof err) == EMA_OK, "%s", err);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK); /* the model holds the rounded averages */
  ema_file *ef = NULL;
  CHECK(ema_file_open(&ef, out, err, sizeof err) == EMA_OK);
  uint16_t *rb = (uint16_t *)malloc(N * sizeof *rb);
  float *rf = (float *)malloc(N * sizeof *rf);
  CHECK(ema_file_read(ef, "b", 0, rb, N * sizeof *rb) == EMA_OK);
  CHECK(ema_file_read(ef, "f", 0, rf, N * sizeof *rf) == EMA_OK);
  CHECK(memcmp(rb, b, N * sizeof *b) == 0);
  CHECK(memcmp(rf, f, N * sizeof *f) == 0);
  ema_file_close(ef);
  ema_free(ctx);
  free(b);
  free(f);
  free(rb);
  free(rf);
}

/* SIGKILL a child at random moments while it saves over the same file
   again and again: the file must always load, as the old or the new one. */
static void test_kill_during_save(void) {
  char path[512];
  snprintf(path, sizeof path, "%s", tmp_path("killed.safetensors"));
  enum { N = 1 << 20 };
  float *w = (float *)calloc(N, sizeof *w);
  int64_t n = N;
  ema_ctx *ctx = NULL;
  CHECK(ema_create(&ctx, 0.9) == EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "w", w, EMA_F32, 1, &n), EMA_OK);
  CHECK_ST(ctx, ema_save(ctx, path), EMA_OK);
  srand(7);
  int loads = 0;
  for (int round = 0; round < 30; round++) {
    pid_t pid = fork();
    if (pid == 0) {
      for (int k = 1;; k++) {
        for (int i = 0; i < N; i += 4096) w[i] = (float)k;
        ema_apply(ctx);
        ema_save(ctx, path);
      }
    }
    struct timespec ts = {0, (long)(rand() % 40000) * 1000L};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    float *r = (float *)calloc(N, sizeof *r);
    ema_ctx *rc = NULL;
    CHECK(ema_create(&rc, 0.9) == EMA_OK);
    CHECK_ST(rc, ema_track(rc, "w", r, EMA_F32, 1, &n), EMA_OK);
    ema_status st = ema_load(rc, path);
    CHECK_MSG(st == EMA_OK, "round %d: the checkpoint does not load after SIGKILL: %s", round, ema_last_error(rc));
    loads += st == EMA_OK;
    ema_free(rc);
    free(r);
  }
  CHECK(loads == 30);
  ema_free(ctx);
  free(w);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/ema_ckpt_test_%d", (int)getpid());
  mkdir(dir, 0700);
  for (int debias = 0; debias < 2; debias++)
    for (int same = 0; same < 2; same++) test_resume_exact(debias, same);
  test_right_restore();
  test_bad_files();
  test_save_failures();
  test_file_layout();
  test_file_api_and_extract();
  test_extract_large();
  test_write_stream();
  test_kill_during_save();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return check_report("test_checkpoint");
}
