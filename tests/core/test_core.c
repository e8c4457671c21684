/*
 * Core behaviour: TensorFlow's documented semantics, every error path, the
 * state machine, swap/store/copy_to/restore, half-precision shadows and
 * allocation-failure injection (a failed call changes nothing).
 */
#include <ema/ema.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/internal.h"

static uint32_t fbits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float bitsf(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static ema_ctx *make(double decay) {
  ema_ctx *ctx = NULL;
  ema_status st = ema_create(&ctx, decay);
  CHECK(st == EMA_OK && ctx != NULL);
  return ctx;
}

static void test_version(void) {
  CHECK(ema_version_number() == EMA_VERSION_NUMBER);
  CHECK(strcmp(ema_version_string(), EMA_VERSION_STRING) == 0);
  CHECK(strcmp(ema_status_string(EMA_E_DTYPE), "dtype cannot be averaged") == 0);
  CHECK(strcmp(ema_status_string((ema_status)99), "unknown status") == 0);
  CHECK(ema_dtype_size(EMA_BF16) == 2 && ema_dtype_size(EMA_I64) == 8 && ema_dtype_size((ema_dtype)42) == 0);
  CHECK(strcmp(ema_dtype_name(EMA_F16), "f16") == 0);
  CHECK(ema_isa() != NULL && ema_isa()[0] != '\0');
  /* Frozen values of the contract. */
  CHECK(EMA_OK == 0 && EMA_E_INVALID_ARG == 1 && EMA_E_DTYPE == 2 && EMA_E_NOMEM == 3 && EMA_E_NOT_FOUND == 4);
  CHECK(EMA_E_EXISTS == 5 && EMA_E_STATE == 6 && EMA_E_IO == 7 && EMA_E_FORMAT == 8 && EMA_E_MISMATCH == 9);
  CHECK(EMA_F32 == 0 && EMA_F64 == 1 && EMA_F16 == 2 && EMA_BF16 == 3 && EMA_I32 == 4 && EMA_I64 == 5);
}

static void test_create_errors(void) {
  ema_ctx *ctx = (ema_ctx *)&ctx; /* garbage that must be overwritten */
  CHECK(ema_create(NULL, 0.5) == EMA_E_INVALID_ARG);
  CHECK(ema_create(&ctx, -0.01) == EMA_E_INVALID_ARG && ctx == NULL);
  CHECK(ema_create(&ctx, 1.01) == EMA_E_INVALID_ARG && ctx == NULL);
  CHECK(ema_create(&ctx, NAN) == EMA_E_INVALID_ARG && ctx == NULL);
  CHECK(ema_create(&ctx, INFINITY) == EMA_E_INVALID_ARG && ctx == NULL);
  CHECK(ema_create(&ctx, 0.0) == EMA_OK);
  ema_free(ctx);
  CHECK(ema_create(&ctx, 1.0) == EMA_OK);
  CHECK(strcmp(ema_last_error(ctx), "") == 0);
  CHECK(ema_set_decay(ctx, NAN) == EMA_E_INVALID_ARG);
  CHECK(strstr(ema_last_error(ctx), "decay") != NULL);
  CHECK(ema_set_decay(ctx, 2.0) == EMA_E_INVALID_ARG);
  CHECK(ema_effective_decay(ctx) == 1.0); /* unchanged by the failed calls */
  CHECK(ema_set_decay(ctx, 0.5) == EMA_OK && strcmp(ema_last_error(ctx), "") == 0);
  ema_free(ctx);
  ema_free(NULL);
  CHECK(ema_last_error(NULL) != NULL);
  /* NULL contexts everywhere */
  CHECK(ema_apply(NULL) == EMA_E_INVALID_ARG && ema_swap(NULL) == EMA_E_INVALID_ARG);
  CHECK(ema_store(NULL) == EMA_E_INVALID_ARG && ema_restore(NULL) == EMA_E_INVALID_ARG);
  CHECK(ema_copy_to(NULL) == EMA_E_INVALID_ARG && ema_set_name(NULL, "x") == EMA_E_INVALID_ARG);
  CHECK(ema_track(NULL, "x", NULL, EMA_F32, 0, NULL) == EMA_E_INVALID_ARG);
  CHECK(ema_set_num_updates(NULL, 1) == EMA_E_INVALID_ARG && ema_set_zero_debias(NULL, 1) == EMA_E_INVALID_ARG);
  CHECK(ema_average(NULL, "x", NULL) == NULL && isnan(ema_effective_decay(NULL)));
  CHECK(ema_count(NULL) == 0 && ema_is_swapped(NULL) == 0);
  CHECK(ema_save(NULL, "x") == EMA_E_INVALID_ARG && ema_load(NULL, "x") == EMA_E_INVALID_ARG);
}

static void test_track_errors(void) {
  ema_ctx *ctx = make(0.9);
  float x[6] = {1, 2, 3, 4, 5, 6};
  int64_t shape[2] = {2, 3};
  int64_t step = 7;
  CHECK_ST(ctx, ema_track(ctx, NULL, x, EMA_F32, 2, shape), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_track(ctx, "", x, EMA_F32, 2, shape), EMA_E_INVALID_ARG);
  char longname[EMA_MAX_NAME + 2];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  CHECK_ST(ctx, ema_track(ctx, longname, x, EMA_F32, 2, shape), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_track(ctx, "bad\xff", x, EMA_F32, 2, shape), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_track(ctx, "over\xc0\xaf", x, EMA_F32, 2, shape), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_track(ctx, "surrogate\xed\xa0\x80", x, EMA_F32, 2, shape), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_track(ctx, "__metadata__", x, EMA_F32, 2, shape), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_track(ctx, "global_step", &step, EMA_I64, 0, NULL), EMA_E_DTYPE);
  CHECK(strstr(ema_last_error(ctx), "global_step") && strstr(ema_last_error(ctx), "ema_track_state"));
  CHECK_ST(ctx, ema_track(ctx, "i32", x, EMA_I32, 2, shape), EMA_E_DTYPE);
  CHECK_ST(ctx, ema_track(ctx, "weird", x, (ema_dtype)17, 2, shape), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_track(ctx, "w", x, EMA_F32, -1, shape), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_track(ctx, "w", x, EMA_F32, EMA_MAX_DIMS + 1, shape), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_track(ctx, "w", x, EMA_F32, 2, NULL), EMA_E_INVALID_ARG);
  int64_t neg[2] = {2, -3};
  CHECK_ST(ctx, ema_track(ctx, "w", x, EMA_F32, 2, neg), EMA_E_INVALID_ARG);
  int64_t huge[3] = {INT64_MAX, INT64_MAX, 2};
  CHECK_ST(ctx, ema_track(ctx, "w", x, EMA_F32, 3, huge), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_track(ctx, "w", NULL, EMA_F32, 2, shape), EMA_E_INVALID_ARG);
  CHECK(ema_count(ctx) == 0);
  /* zero-size tensors may have NULL data; rank 0 may have NULL shape */
  int64_t zero[2] = {0, 5};
  CHECK_ST(ctx, ema_track(ctx, "empty", NULL, EMA_F32, 2, zero), EMA_OK);
  CHECK(ema_average(ctx, "empty", NULL) != NULL);
  CHECK_ST(ctx, ema_track(ctx, "w", x, EMA_F32, 2, shape), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "w", x, EMA_F32, 2, shape), EMA_E_EXISTS);
  CHECK_ST(ctx, ema_track_policy(ctx, "w", &step, EMA_I64, 0, NULL, EMA_POLICY_COPY), EMA_E_EXISTS);
  CHECK_ST(ctx, ema_track_policy(ctx, "global_step", &step, EMA_I64, 0, NULL, EMA_POLICY_COPY), EMA_OK);
  CHECK(ema_average(ctx, "global_step", NULL) == NULL); /* plain state has no average */
  CHECK(ema_count(ctx) == 3);
  CHECK_ST(ctx, ema_set_zero_debias(ctx, 1), EMA_E_STATE);
  CHECK_ST(ctx, ema_set_zero_debias(ctx, 0), EMA_OK); /* no change is fine */
  const char *name;
  void *data;
  ema_dtype dt;
  int nd, averaged;
  ema_policy policy;
  int64_t sh[EMA_MAX_DIMS];
  CHECK_ST(ctx, ema_tensor_info(ctx, 1, &name, &data, &dt, &nd, sh, &policy), EMA_OK);
  averaged = policy == EMA_POLICY_AVERAGE;
  CHECK(strcmp(name, "w") == 0 && data == x && dt == EMA_F32 && nd == 2 && sh[0] == 2 && sh[1] == 3 && averaged);
  CHECK_ST(ctx, ema_tensor_info(ctx, 2, NULL, NULL, &dt, NULL, NULL, &policy), EMA_OK);
  averaged = policy == EMA_POLICY_AVERAGE;
  CHECK(dt == EMA_I64 && !averaged);
  CHECK_ST(ctx, ema_tensor_info(ctx, 3, NULL, NULL, NULL, NULL, NULL, NULL), EMA_E_NOT_FOUND);
  /* the shadow is a copy of the values at track time */
  ema_dtype adt;
  const float *a = (const float *)ema_average(ctx, "w", &adt);
  CHECK(adt == EMA_F32 && memcmp(a, x, sizeof x) == 0 && (const void *)a != (const void *)x);
  CHECK(((uintptr_t)a % 64) == 0);
  ema_free(ctx);
}

/* TensorFlow's moving_averages tests: decay 0.25, the shadow starts at the
   variable's value, num_updates caps the decay. */
static void test_tf_quarter_decay(void) {
  ema_ctx *ctx = make(0.25);
  float v[2] = {10.0f, 11.0f};
  int64_t n = 2;
  CHECK_ST(ctx, ema_track(ctx, "var0", v, EMA_F32, 1, &n), EMA_OK);
  v[0] = 1.0f;
  v[1] = 2.0f;
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  const float *a = (const float *)ema_average(ctx, "var0", NULL);
  CHECK(a[0] == 3.25f && a[1] == 4.25f); /* 10*0.25 + 1*0.75, 11*0.25 + 2*0.75 */
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  CHECK(a[0] == 1.5625f && a[1] == 2.5625f);
  /* num_updates: min(0.25, (1+n)/(10+n)) */
  CHECK_ST(ctx, ema_set_num_updates(ctx, 1), EMA_OK);
  CHECK(ema_effective_decay(ctx) == (double)(2.0f / 11.0f));
  CHECK_ST(ctx, ema_set_num_updates(ctx, 1000), EMA_OK);
  CHECK(ema_effective_decay(ctx) == 0.25);
  CHECK_ST(ctx, ema_set_num_updates(ctx, -5), EMA_OK);
  CHECK(ema_effective_decay(ctx) == 0.25);
  CHECK_ST(ctx, ema_set_decay(ctx, 0.99), EMA_OK);
  CHECK_ST(ctx, ema_set_num_updates(ctx, 0), EMA_OK);
  CHECK(ema_effective_decay(ctx) == (double)(1.0f / 10.0f));
  CHECK(ema_effective_decay(ctx) == (double)0.1f); /* float32, not 0.1 */
  ema_free(ctx);
}

/* A long random run against an independent float32 evaluation of the
   formula, for a multi-dimensional tensor and a changing decay. */
static void test_random_against_formula(void) {
  ema_ctx *ctx = make(0.9);
  enum { N = 3 * 5 * 7 };
  float v[N], s[N];
  int64_t shape[3] = {3, 5, 7};
  uint64_t r = 12345;
  for (int i = 0; i < N; i++) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    v[i] = s[i] = (float)((double)(r >> 11) / 9007199254740992.0 - 0.5) * 10.0f;
  }
  CHECK_ST(ctx, ema_track(ctx, "t", v, EMA_F32, 3, shape), EMA_OK);
  const float *a = (const float *)ema_average(ctx, "t", NULL);
  int bad = 0;
  for (int step = 0; step < 200; step++) {
    double decay = 0.5 + 0.499 * (double)(step % 17) / 16.0;
    CHECK_ST(ctx, ema_set_decay(ctx, decay), EMA_OK);
    CHECK_ST(ctx, ema_set_num_updates(ctx, step % 3 ? step : -1), EMA_OK);
    float d = (float)decay;
    if (step % 3) {
      float nf = (float)step, rr = (1.0f + nf) / (10.0f + nf);
      if (rr < d) d = rr;
    }
    float om = 1.0f - d;
    for (int i = 0; i < N; i++) {
      r = r * 6364136223846793005ull + 1442695040888963407ull;
      v[i] += (float)((double)(r >> 11) / 9007199254740992.0 - 0.5);
      s[i] = s[i] - (s[i] - v[i]) * om;
    }
    CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
    bad += memcmp(a, s, sizeof s) != 0;
  }
  CHECK_MSG(bad == 0, "%d of 200 steps differ from the float32 formula", bad);
  ema_free(ctx);
}

/* float64 shadows: om = 1 - d in float32, widened (TensorFlow casts). */
static void test_f64(void) {
  ema_ctx *ctx = make(0.999);
  double v = 1.0;
  CHECK_ST(ctx, ema_track(ctx, "v", &v, EMA_F64, 0, NULL), EMA_OK);
  v = 2.0;
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  double om = (double)(1.0f - 0.999f);
  double want = 1.0 - (1.0 - 2.0) * om;
  CHECK(*(const double *)ema_average(ctx, "v", NULL) == want);
  ema_free(ctx);
}

/* TensorFlow zero_debias: biased starts at 0, the average is
   biased / (1 - (1-om)^k). A constant input is recovered exactly. */
static void test_zero_debias(void) {
  ema_ctx *ctx = make(0.25);
  CHECK_ST(ctx, ema_set_zero_debias(ctx, 1), EMA_OK);
  float v[2] = {1.0f, 2.0f};
  int64_t n = 2;
  CHECK_ST(ctx, ema_track(ctx, "t", v, EMA_F32, 1, &n), EMA_OK);
  const float *a = (const float *)ema_average(ctx, "t", NULL);
  CHECK(a[0] == 0.0f && a[1] == 0.0f); /* nothing averaged yet */
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  CHECK(a[0] == 1.0f && a[1] == 2.0f);
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  CHECK(a[0] == 1.0f && a[1] == 2.0f);
  ema_free(ctx);

  /* A varying input against an independent evaluation. */
  ctx = make(0.9);
  CHECK_ST(ctx, ema_set_zero_debias(ctx, 1), EMA_OK);
  CHECK_ST(ctx, ema_set_num_updates(ctx, 3), EMA_OK);
  float x = 0.0f, biased = 0.0f;
  CHECK_ST(ctx, ema_track(ctx, "x", &x, EMA_F32, 0, NULL), EMA_OK);
  a = (const float *)ema_average(ctx, "x", NULL);
  float d = 0.9f, nf = 3.0f, rr = (1.0f + nf) / (10.0f + nf);
  if (rr < d) d = rr;
  float om = 1.0f - d;
  int bad = 0;
  for (int k = 1; k <= 50; k++) {
    x = (float)k * 0.37f - 3.0f;
    biased = biased - (biased - x) * om;
    float want = biased / (1.0f - powf(1.0f - om, (float)k));
    CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
    bad += fbits(*a) != fbits(want);
  }
  CHECK(bad == 0);
  ema_free(ctx);
}

static void test_apply_some(void) {
  ema_ctx *ctx = make(0.5);
  float a = 0, b = 0, c = 0;
  int64_t st = 3;
  CHECK_ST(ctx, ema_track(ctx, "a", &a, EMA_F32, 0, NULL), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "b", &b, EMA_F32, 0, NULL), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "c", &c, EMA_F32, 0, NULL), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "step", &st, EMA_I64, 0, NULL, EMA_POLICY_COPY), EMA_OK);
  a = b = c = 4.0f;
  const char *bad1[] = {"a", "nope"};
  CHECK_ST(ctx, ema_apply_some(ctx, bad1, 2), EMA_E_NOT_FOUND);
  CHECK(strstr(ema_last_error(ctx), "nope") != NULL);
  const char *bad2[] = {"a", "b", "a"};
  CHECK_ST(ctx, ema_apply_some(ctx, bad2, 3), EMA_E_INVALID_ARG);
  const char *bad3[] = {"b", "step"};
  CHECK_ST(ctx, ema_apply_some(ctx, bad3, 2), EMA_E_DTYPE);
  const char *bad4[] = {"b", NULL};
  CHECK_ST(ctx, ema_apply_some(ctx, bad4, 2), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_apply_some(ctx, NULL, 1), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_apply_some(ctx, NULL, 0), EMA_OK);
  /* nothing moved */
  CHECK(*(const float *)ema_average(ctx, "a", NULL) == 0.0f);
  CHECK(*(const float *)ema_average(ctx, "b", NULL) == 0.0f);
  const char *ok[] = {"c", "a"};
  CHECK_ST(ctx, ema_apply_some(ctx, ok, 2), EMA_OK);
  CHECK(*(const float *)ema_average(ctx, "a", NULL) == 2.0f);
  CHECK(*(const float *)ema_average(ctx, "b", NULL) == 0.0f);
  CHECK(*(const float *)ema_average(ctx, "c", NULL) == 2.0f);
  /* marks were cleared: the same list works again */
  CHECK_ST(ctx, ema_apply_some(ctx, ok, 2), EMA_OK);
  CHECK(*(const float *)ema_average(ctx, "a", NULL) == 3.0f);
  CHECK(st == 3);
  ema_free(ctx);
}

static void test_names(void) {
  ema_ctx *ctx = make(0.5);
  char buf[64];
  CHECK_ST(ctx, ema_average_name(ctx, "w", buf, sizeof buf), EMA_OK);
  CHECK(strcmp(buf, "w/ExponentialMovingAverage") == 0);
  memset(buf, 'z', sizeof buf);
  CHECK_ST(ctx, ema_average_name(ctx, "w", buf, 26), EMA_E_INVALID_ARG);
  CHECK(buf[0] == 'z');
  CHECK_ST(ctx, ema_average_name(ctx, "w", buf, 27), EMA_OK);
  CHECK_ST(ctx, ema_set_name(ctx, "ema_fast"), EMA_OK);
  CHECK_ST(ctx, ema_average_name(ctx, "layer/1/w", buf, sizeof buf), EMA_OK);
  CHECK(strcmp(buf, "layer/1/w/ema_fast") == 0);
  CHECK_ST(ctx, ema_set_name(ctx, ""), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_set_name(ctx, NULL), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_set_name(ctx, "\xfe"), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_average_name(ctx, "w", buf, sizeof buf), EMA_OK);
  CHECK(strcmp(buf, "w/ema_fast") == 0);
  CHECK_ST(ctx, ema_average_name(ctx, NULL, buf, sizeof buf), EMA_E_INVALID_ARG);
  ema_free(ctx);
}

/* Values that must survive a swap round trip bit for bit. */
static const uint32_t special32[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x807FFFFFu, 0x7F800000u,
                                     0xFF800000u, 0x7FC00000u, 0x7FA00001u, 0xFFC12345u, 0x3F800000u,
                                     0x7F7FFFFFu, 0x00800000u, 0xC0490FDBu, 0x3EAAAAABu};
#define NSPECIAL (sizeof special32 / sizeof special32[0])

static void test_swap_roundtrip_f32(void) {
  ema_ctx *ctx = make(0.75);
  float m[NSPECIAL], orig[NSPECIAL];
  int64_t n = NSPECIAL;
  for (size_t i = 0; i < NSPECIAL; i++) m[i] = bitsf(special32[(i + 3) % NSPECIAL]);
  CHECK_ST(ctx, ema_track(ctx, "m", m, EMA_F32, 1, &n), EMA_OK);
  /* make the model and the average differ, with specials on both sides */
  for (size_t i = 0; i < NSPECIAL; i++) m[i] = bitsf(special32[i]);
  memcpy(orig, m, sizeof m);
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  float avg[NSPECIAL];
  memcpy(avg, ema_average(ctx, "m", NULL), sizeof avg);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK(ema_is_swapped(ctx));
  CHECK(memcmp(m, avg, sizeof m) == 0);
  CHECK(memcmp(ema_average(ctx, "m", NULL), orig, sizeof orig) == 0); /* in place: no extra memory */
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK(!ema_is_swapped(ctx));
  CHECK(memcmp(m, orig, sizeof m) == 0);
  CHECK(memcmp(ema_average(ctx, "m", NULL), avg, sizeof avg) == 0);
  ema_free(ctx);
}

/* Every dtype pair, including mixed ones that keep a side buffer. */
static void test_swap_all_pairs(void) {
  for (int same = 0; same < 2; same++) {
    ema_ctx *ctx = make(0.5);
    CHECK_ST(ctx, ema_set_half_shadows(ctx, same), EMA_OK);
    enum { N = 37 };
    uint16_t h[N], b[N], h0[N], b0[N];
    double d[N], d0[N];
    int64_t n = N;
    for (int i = 0; i < N; i++) {
      h[i] = (uint16_t)((unsigned)i * 1777u + 3u); /* includes subnormals, NaN, Inf patterns */
      b[i] = (uint16_t)((unsigned)i * 1733u + 11u);
      d[i] = i % 5 == 0 ? -0.0 : (double)i / 3.0;
    }
    h[0] = 0x7C00; /* +Inf f16 */
    h[1] = 0x7E01; /* NaN f16 */
    b[0] = 0x8000; /* -0 bf16 */
    b[1] = 0x0001; /* subnormal bf16 */
    CHECK_ST(ctx, ema_track(ctx, "h", h, EMA_F16, 1, &n), EMA_OK);
    CHECK_ST(ctx, ema_track(ctx, "b", b, EMA_BF16, 1, &n), EMA_OK);
    CHECK_ST(ctx, ema_track(ctx, "d", d, EMA_F64, 1, &n), EMA_OK);
    ema_dtype dt;
    ema_average(ctx, "h", &dt);
    CHECK(dt == (same ? EMA_F16 : EMA_F32));
    for (int i = 0; i < N; i++) {
      h[i] = (uint16_t)(h[i] ^ 0x0155u);
      b[i] = (uint16_t)(b[i] ^ 0x0131u);
      d[i] = d[i] * 2.0 + 1.0;
    }
    CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
    memcpy(h0, h, sizeof h);
    memcpy(b0, b, sizeof b);
    memcpy(d0, d, sizeof d);
    CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
    /* the model now holds the averages rounded to its dtype */
    const void *ah = ema_average(ctx, "h", NULL);
    if (!same) {
      const float *af = (const float *)ah;
      int bad = 0;
      for (int i = 0; i < N; i++) bad += h[i] != ema_f32_to_f16(af[i]);
      CHECK(bad == 0);
    } else {
      CHECK(memcmp(ah, h0, sizeof h0) == 0); /* exchanged in place */
    }
    CHECK_ST(ctx, ema_apply(ctx), EMA_E_STATE);
    CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
    CHECK(memcmp(h, h0, sizeof h) == 0);
    CHECK(memcmp(b, b0, sizeof b) == 0);
    CHECK(memcmp(d, d0, sizeof d) == 0);
    ema_free(ctx);
  }
}

static void test_state_machine(void) {
  ema_ctx *ctx = make(0.5);
  float w[3] = {1, 2, 3}, w2 = 5;
  int64_t n = 3;
  CHECK_ST(ctx, ema_track(ctx, "w", w, EMA_F32, 1, &n), EMA_OK);
  CHECK_ST(ctx, ema_restore(ctx), EMA_E_STATE);
  CHECK(strstr(ema_last_error(ctx), "ema_store") != NULL);
  w[0] = w[1] = w[2] = 9.0f;
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK); /* average 5, 5.5, 6 */
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  const char *names[] = {"w"};
  CHECK_ST(ctx, ema_apply(ctx), EMA_E_STATE);
  CHECK_ST(ctx, ema_apply_some(ctx, names, 1), EMA_E_STATE);
  CHECK_ST(ctx, ema_store(ctx), EMA_E_STATE);
  CHECK_ST(ctx, ema_copy_to(ctx), EMA_E_STATE);
  CHECK_ST(ctx, ema_restore(ctx), EMA_E_STATE);
  CHECK_ST(ctx, ema_track(ctx, "w2", &w2, EMA_F32, 0, NULL), EMA_E_STATE);
  CHECK_ST(ctx, ema_save(ctx, "/nonexistent/x.safetensors"), EMA_E_STATE);
  CHECK_ST(ctx, ema_load(ctx, "/nonexistent/x.safetensors"), EMA_E_STATE);
  CHECK(w[0] == 5.0f && w[1] == 5.5f && w[2] == 6.0f);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK(w[0] == 9.0f);
  /* store / copy_to / restore */
  CHECK_ST(ctx, ema_store(ctx), EMA_OK);
  CHECK_ST(ctx, ema_store(ctx), EMA_E_STATE); /* would overwrite the kept copy */
  CHECK_ST(ctx, ema_track(ctx, "w2", &w2, EMA_F32, 0, NULL), EMA_E_STATE);
  CHECK_ST(ctx, ema_copy_to(ctx), EMA_OK);
  CHECK(w[0] == 5.0f && w[1] == 5.5f && w[2] == 6.0f);
  CHECK_ST(ctx, ema_restore(ctx), EMA_OK);
  CHECK(w[0] == 9.0f && w[1] == 9.0f && w[2] == 9.0f);
  CHECK_ST(ctx, ema_restore(ctx), EMA_E_STATE); /* the copy was consumed */
  CHECK_ST(ctx, ema_track(ctx, "w2", &w2, EMA_F32, 0, NULL), EMA_OK);
  CHECK_ST(ctx, ema_store(ctx), EMA_OK); /* the buffer grows for the new tensor */
  w2 = -1.0f;
  CHECK_ST(ctx, ema_restore(ctx), EMA_OK);
  CHECK(w2 == 5.0f);
  ema_free(ctx);
}

/* bf16 parameters: a bf16 shadow stalls at decay 0.9999 (the update is
   below half an ulp), a float32 shadow keeps averaging. */
static void test_half_shadow_stall(void) {
  for (int same = 0; same < 2; same++) {
    ema_ctx *ctx = make(0.9999);
    CHECK_ST(ctx, ema_set_half_shadows(ctx, same), EMA_OK);
    uint16_t p = ema_f32_to_bf16(1.0f);
    CHECK_ST(ctx, ema_track(ctx, "p", &p, EMA_BF16, 0, NULL), EMA_OK);
    p = ema_f32_to_bf16(2.0f);
    for (int i = 0; i < 1000; i++) CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
    ema_dtype dt;
    const void *a = ema_average(ctx, "p", &dt);
    float v = dt == EMA_F32 ? *(const float *)a : ema_bf16_to_f32(*(const uint16_t *)a);
    if (same)
      CHECK_MSG(v == 1.0f, "bf16 shadow moved to %g", (double)v);
    else
      CHECK_MSG(v > 1.09f && v < 1.1f, "f32 shadow at %g, want about 1 + (1 - 0.9999^1000) = 1.095", (double)v);
    ema_free(ctx);
  }
}

/* Half-precision same-dtype update: each operation rounded, as Eigen does. */
static void test_half_same_formula(void) {
  ema_ctx *ctx = make(0.9);
  CHECK_ST(ctx, ema_set_half_shadows(ctx, 1), EMA_OK);
  uint16_t p = ema_f32_to_f16(0.3f);
  CHECK_ST(ctx, ema_track(ctx, "p", &p, EMA_F16, 0, NULL), EMA_OK);
  uint16_t s = p;
  const uint16_t *a = (const uint16_t *)ema_average(ctx, "p", NULL);
  float om = ema_f16_to_f32(ema_f32_to_f16(1.0f - 0.9f));
  int bad = 0;
  for (int i = 0; i < 40; i++) {
    p = ema_f32_to_f16((float)i * 0.11f);
    float diff = ema_f16_to_f32(ema_f32_to_f16(ema_f16_to_f32(s) - ema_f16_to_f32(p)));
    float prod = ema_f16_to_f32(ema_f32_to_f16(diff * om));
    s = ema_f32_to_f16(ema_f16_to_f32(s) - prod);
    CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
    bad += *a != s;
  }
  CHECK(bad == 0);
  ema_free(ctx);
}

/* Averages never move: the arena grows by blocks, not by realloc. */
static void test_stable_pointers(void) {
  ema_ctx *ctx = make(0.5);
  static float big[100000];
  int64_t n = 100000;
  for (int i = 0; i < 100000; i++) big[i] = (float)i;
  CHECK_ST(ctx, ema_track(ctx, "first", big, EMA_F32, 1, &n), EMA_OK);
  const float *first = (const float *)ema_average(ctx, "first", NULL);
  static float small[2000];
  int64_t one = 1;
  char name[32];
  for (int i = 0; i < 2000; i++) {
    snprintf(name, sizeof name, "t%d", i);
    small[i] = (float)i;
    CHECK_ST(ctx, ema_track(ctx, name, &small[i], EMA_F32, 1, &one), EMA_OK);
  }
  CHECK(ema_average(ctx, "first", NULL) == first);
  CHECK(first[99999] == 99999.0f);
  int bad = 0;
  for (int i = 0; i < 2000; i++) {
    snprintf(name, sizeof name, "t%d", i);
    const float *a = (const float *)ema_average(ctx, name, NULL);
    bad += !a || *a != (float)i;
  }
  CHECK(bad == 0);
  CHECK(ema_count(ctx) == 2001);
  ema_free(ctx);
}

/* Allocation N fails: the call reports EMA_E_NOMEM and nothing changed. */
static void test_alloc_failures(void) {
  ema_ctx *ctx = NULL;
  int saw_nomem = 0;
  for (long n = 0; n < 10; n++) {
    ema__test_fail_alloc(n);
    ema_status st = ema_create(&ctx, 0.5);
    ema__test_fail_alloc(-1);
    if (st == EMA_OK) break;
    CHECK(st == EMA_E_NOMEM && ctx == NULL);
    saw_nomem = 1;
  }
  CHECK(saw_nomem && ctx != NULL);
  float w[64];
  for (int i = 0; i < 64; i++) w[i] = (float)i;
  int64_t n64 = 64;
  char name[32];
  /* register many tensors, each under failure injection */
  for (int t = 0; t < 40; t++) {
    snprintf(name, sizeof name, "w%d", t);
    for (long n = 0;; n++) {
      size_t before = ema_count(ctx);
      ema__test_fail_alloc(n);
      ema_status st = ema_track(ctx, name, w, EMA_F32, 1, &n64);
      ema__test_fail_alloc(-1);
      if (st == EMA_OK) break;
      CHECK(st == EMA_E_NOMEM);
      CHECK(ema_count(ctx) == before && ema_average(ctx, name, NULL) == NULL);
      CHECK(strstr(ema_last_error(ctx), "memory") != NULL);
    }
  }
  /* every earlier tensor is still there and intact */
  int bad = 0;
  for (int t = 0; t < 40; t++) {
    snprintf(name, sizeof name, "w%d", t);
    const float *a = (const float *)ema_average(ctx, name, NULL);
    bad += !a || memcmp(a, w, sizeof w) != 0;
  }
  CHECK(bad == 0);
  /* store and swap (mixed dtype needs a side buffer) */
  uint16_t hb[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  int64_t n8 = 8;
  CHECK_ST(ctx, ema_track(ctx, "hb", hb, EMA_BF16, 1, &n8), EMA_OK);
  ema__test_fail_alloc(0);
  CHECK_ST(ctx, ema_swap(ctx), EMA_E_NOMEM);
  CHECK(!ema_is_swapped(ctx) && hb[0] == 1);
  CHECK_ST(ctx, ema_store(ctx), EMA_E_NOMEM);
  ema__test_fail_alloc(-1);
  CHECK_ST(ctx, ema_restore(ctx), EMA_E_STATE); /* the failed store kept nothing */
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK(hb[0] == 1 && hb[7] == 8);
  ema_free(ctx);
}

static void test_retarget_untrack(void) {
  ema_ctx *ctx = make(0.5);
  float a[2] = {1, 2}, b[2] = {3, 4}, moved[2] = {0, 0};
  int64_t n = 2, step = 3;
  CHECK(ema_decay(ctx) == 0.5 && ema_num_updates(ctx) == -1);
  CHECK_ST(ctx, ema_set_num_updates(ctx, 7), EMA_OK);
  CHECK(ema_num_updates(ctx) == 7 && ema_decay(ctx) == 0.5);
  CHECK_ST(ctx, ema_set_num_updates(ctx, -1), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "a", a, EMA_F32, 1, &n), EMA_OK);
  CHECK_ST(ctx, ema_track(ctx, "b", b, EMA_F32, 1, &n), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "step", &step, EMA_I64, 0, NULL, EMA_POLICY_COPY), EMA_OK);
  const float *avg_b = (const float *)ema_average(ctx, "b", NULL);
  /* the framework moved "a": the average follows the new memory */
  moved[0] = 9;
  moved[1] = 9;
  CHECK_ST(ctx, ema_retarget(ctx, "a", moved), EMA_OK);
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  const float *avg_a = (const float *)ema_average(ctx, "a", NULL);
  CHECK(avg_a[0] == 5.0f && avg_a[1] == 5.5f); /* from 1, 2 towards 9 */
  CHECK_ST(ctx, ema_retarget(ctx, "nope", moved), EMA_E_NOT_FOUND);
  CHECK_ST(ctx, ema_retarget(ctx, "a", NULL), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK_ST(ctx, ema_retarget(ctx, "a", a), EMA_E_STATE);
  CHECK_ST(ctx, ema_untrack(ctx, "a"), EMA_E_STATE);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  /* untrack: gone from every call; the others keep their names and pointers */
  CHECK_ST(ctx, ema_untrack(ctx, "a"), EMA_OK);
  CHECK(ema_count(ctx) == 2 && ema_average(ctx, "a", NULL) == NULL);
  CHECK(ema_average(ctx, "b", NULL) == avg_b);
  const char *names[] = {"a"};
  CHECK_ST(ctx, ema_apply_some(ctx, names, 1), EMA_E_NOT_FOUND);
  CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
  CHECK(moved[0] == 9.0f);
  CHECK_ST(ctx, ema_untrack(ctx, "step"), EMA_OK);
  CHECK_ST(ctx, ema_untrack(ctx, "step"), EMA_E_NOT_FOUND);
  CHECK_ST(ctx, ema_track(ctx, "a", a, EMA_F32, 1, &n), EMA_OK); /* the name is free again */
  CHECK(ema_count(ctx) == 2);
  ema_free(ctx);
}

int main(void) {
  test_version();
  test_retarget_untrack();
  test_create_errors();
  test_track_errors();
  test_tf_quarter_decay();
  test_random_against_formula();
  test_f64();
  test_zero_debias();
  test_apply_some();
  test_names();
  test_swap_roundtrip_f32();
  test_swap_all_pairs();
  test_state_machine();
  test_half_shadow_stall();
  test_half_same_formula();
  test_stable_pointers();
  test_alloc_failures();
  return check_report("test_core");
}
