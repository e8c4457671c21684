/*
 * Asynchronous updates (ema_apply_async, ema_update_async, ema_wait, the
 * staged variants, the staging allocator).
 *
 * The matrix: the same model (41 tensors of odd sizes, every dtype pair,
 * zero-debias on and off, same-dtype half shadows on and off, a bank of 3)
 * goes through a fixed script of TensorFlow applies or scheduled updates
 * (k-step decays, update_after_step, power and half-life members) with the
 * synchronous calls on the reference kernels and one thread, and with the
 * asynchronous calls (capture, and caller-filled staging) on every ISA and
 * 1..7 threads; every byte of the averages and of the model after
 * swap/copy_to/restore must be equal. After each asynchronous call returns,
 * the test overwrites the parameters at once (the next step's values, or
 * garbage after the last), so an update that read the live parameters
 * instead of its staging would differ.
 *
 * Then: failures reported by ema_wait and by the next call with nothing
 * applied; staging allocation failures changing nothing; the ready callback
 * (filling staging on the update thread, refusing re-entry); a custom
 * allocator; bad arguments and refusals.
 */
#include <ema/ema.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "test_model.h"
#include "core/internal.h"

static size_t nbytes(const model *m, int t) { return (size_t)m->numel[t] * ema_dtype_size(m->dtype[t]); }

enum { SYNC = 0, ASYNC = 1, STAGED = 2 };

static void add_bank(ema_ctx *ctx, int stepped) {
  ema_schedule s;
  ema_schedule_init(&s, stepped ? EMA_SCHEDULE_POWER : EMA_SCHEDULE_CONSTANT);
  s.decay = 0.99;
  CHECK_ST(ctx, ema_bank_add(ctx, "slow", &s, NULL), EMA_OK);
  ema_schedule_init(&s, stepped ? EMA_SCHEDULE_HALFLIFE : EMA_SCHEDULE_CONSTANT);
  s.decay = 0.5;
  s.halflife = 3;
  CHECK_ST(ctx, ema_bank_add(ctx, "fast", &s, NULL), EMA_OK);
}

static void fill_staging(ema_ctx *ctx, const model *m) {
  for (int t = 0; t < NT; t++) {
    void *p = NULL;
    CHECK_ST(ctx, ema_staging_at(ctx, (size_t)t, &p), EMA_OK);
    if (p && nbytes(m, t)) memcpy(p, m->data[t], nbytes(m, t));
  }
}

static ema_status one_update(ema_ctx *ctx, model *m, int mode, int stepped, int64_t step) {
  if (mode == STAGED) fill_staging(ctx, m);
  if (mode == SYNC) return stepped ? ema_update(ctx, step) : ema_apply(ctx);
  if (mode == ASYNC) return stepped ? ema_update_async(ctx, step) : ema_apply_async(ctx);
  return stepped ? ema_update_async_staged(ctx, step, NULL, NULL) : ema_apply_async_staged(ctx, NULL, NULL);
}

/* Scribble over the parameters while an update may run, wait, put them back. */
static void scribble_and_wait(ema_ctx *ctx, model *m, int implicit) {
  void *keep[NT];
  for (int t = 0; t < NT; t++) {
    keep[t] = malloc(nbytes(m, t) + 1);
    memcpy(keep[t], m->data[t], nbytes(m, t));
    memset(m->data[t], 0x7f, nbytes(m, t));
  }
  if (!implicit) CHECK_ST(ctx, ema_wait(ctx), EMA_OK);
  ema_dtype sd;
  CHECK(ema_average(ctx, "t7", &sd) != NULL); /* waits */
  for (int t = 0; t < NT; t++) {
    memcpy(m->data[t], keep[t], nbytes(m, t));
    free(keep[t]);
  }
}

/* Run a fixed script; return the concatenated averages + model bytes. */
static unsigned char *run_script(const char *isa, int threads, int cfg, int stepped, int mode, size_t *len) {
  int debias = cfg & 1, same_half = (cfg >> 1) & 1, bank = cfg >> 2;
  model m;
  make_model(&m, 0);
  ema_ctx *ctx = model_ctx(isa, threads, debias, same_half);
  if (stepped) {
    ema_schedule s;
    ema_schedule_init(&s, EMA_SCHEDULE_INV_POWER);
    s.update_after_step = 2; /* the first update copies the model */
    CHECK_ST(ctx, ema_set_schedule(ctx, &s), EMA_OK);
  }
  if (bank) add_bank(ctx, stepped);
  model_track(ctx, &m);
  static const int64_t steps[6] = {2, 3, 5, 8, 9, 12};
  for (int s = 0; s < 6; s++) {
    for (int t = 0; t < NT; t++) fill(&m, t, s + 1); /* while the previous update runs */
    CHECK_ST(ctx, ema_set_num_updates(ctx, s * 3), EMA_OK);
    CHECK_ST(ctx, one_update(ctx, &m, mode, stepped, steps[s]), EMA_OK);
  }
  if (mode != SYNC) scribble_and_wait(ctx, &m, cfg % 2);
  CHECK(ema_last_step(ctx) == (stepped ? 12 : 0));
  unsigned char *out = model_final_bytes(ctx, &m, len);
  ema_free(ctx);
  free_model(&m);
  return out;
}

static void test_matrix(int quick) {
  static const char *const isas[] = {"ref", "avx2", "avx512", "neon"};
  for (int cfg = 0; cfg < 8; cfg++) {
    if (quick && cfg != 1 && cfg != 6) continue;
    for (int stepped = 0; stepped < 2; stepped++) {
      size_t ref_len;
      unsigned char *ref = run_script("ref", 1, cfg, stepped, SYNC, &ref_len);
      for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (!ema_kernels_by_name(isas[i]) || (quick && i > 0 && (cfg != 6 || stepped))) continue;
        for (int threads = 1; threads <= 7; threads++) {
          if (quick && threads != 2 && (threads != 5 || i > 0)) continue;
          for (int mode = ASYNC; mode <= STAGED; mode++) {
            size_t len;
            unsigned char *got = run_script(isas[i], threads, cfg, stepped, mode, &len);
            int same = len == ref_len && memcmp(got, ref, len) == 0;
            size_t at = 0;
            const char *again = "-";
            if (!same) { /* where, and whether the same run differs again (always) or not (a race) */
              while (at < len && at < ref_len && got[at] == ref[at]) at++;
              size_t again_len = 0;
              unsigned char *g2 = run_script(isas[i], threads, cfg, stepped, mode, &again_len);
              again = again_len == ref_len && memcmp(g2, ref, again_len) == 0 ? "equal" : "differs too";
              free(g2);
            }
            CHECK_MSG(same,
                      "isa %s, %d threads, cfg %d, stepped %d, mode %d differ from the synchronous update (first "
                      "at byte %zu of %zu; run again: %s)",
                      isas[i], threads, cfg, stepped, mode, at, ref_len, again);
            free(got);
          }
        }
      }
      free(ref);
    }
  }
}

/* ---- failures -------------------------------------------------------------------------- */

static ema_ctx *small_ctx(model *m, int debias) {
  make_model(m, 1);
  ema_ctx *ctx = NULL;
  CHECK(ema_create(&ctx, 0.9) == EMA_OK);
  CHECK_ST(ctx, ema_set_threads(ctx, 2), EMA_OK);
  ctx->parallel_min = 1024;
  CHECK_ST(ctx, ema_set_zero_debias(ctx, debias), EMA_OK);
  model_track(ctx, m);
  return ctx;
}

static int averages_equal(ema_ctx *a, ema_ctx *b, const model *m) {
  char name[16];
  int same = 1;
  for (int t = 0; t < NT; t++) {
    ema_dtype sd;
    snprintf(name, sizeof name, "t%d", t);
    const void *x = ema_average(a, name, &sd), *y = ema_average(b, name, NULL);
    same &= memcmp(x, y, (size_t)m->numel[t] * ema_dtype_size(sd)) == 0;
  }
  return same;
}

typedef struct ready_arg {
  ema_ctx *ctx;
  model *m;
  int ret;
  int calls;
  ema_status reentry; /* what ema_wait gave inside the callback */
  void *stage[NT];    /* ready_fill: staging pointers, asked for beforehand */
} ready_arg;

static int ready_cb(void *user) {
  ready_arg *r = (ready_arg *)user;
  r->calls++;
  r->reentry = ema_wait(r->ctx);
  return r->ret;
}

/* Fills the staging itself, on the update thread (a copy that completes late). */
static int ready_fill(void *user) {
  ready_arg *r = (ready_arg *)user;
  r->calls++;
  for (int t = 0; t < NT; t++)
    if (nbytes(r->m, t)) memcpy(r->stage[t], r->m->data[t], nbytes(r->m, t));
  return 0;
}

static void test_failure(void) {
  for (int debias = 0; debias < 2; debias++) {
    model m, m2;
    ema_ctx *ctx = small_ctx(&m, debias), *ref = small_ctx(&m2, debias);
    for (int t = 0; t < NT; t++) fill(&m, t, 1);
    for (int t = 0; t < NT; t++) memcpy(m2.data[t], m.data[t], nbytes(&m, t));
    fill_staging(ctx, &m);
    ready_arg r = {ctx, &m, 7, 0, EMA_OK, {NULL}};
    CHECK_ST(ctx, ema_update_async_staged(ctx, 4, ready_cb, &r), EMA_OK);
    CHECK_ST(ctx, ema_wait(ctx), EMA_E_IO);
    CHECK(strstr(ema_last_error(ctx), "returned 7") && strstr(ema_last_error(ctx), "ema_update_async_staged"));
    CHECK(r.calls == 1 && r.reentry == EMA_E_STATE);
    CHECK_ST(ctx, ema_wait(ctx), EMA_OK); /* reported once */
    CHECK(ema_last_step(ctx) == 0 && averages_equal(ctx, ref, &m));
    /* the same step again succeeds and matches a context that never failed */
    r.ret = 0;
    CHECK_ST(ctx, ema_update_async_staged(ctx, 4, ready_cb, &r), EMA_OK);
    CHECK_ST(ctx, ema_wait(ctx), EMA_OK);
    CHECK_ST(ref, ema_update(ref, 4), EMA_OK);
    CHECK(ema_last_step(ctx) == 4 && averages_equal(ctx, ref, &m));
    /* reported by the next call, which then does nothing else */
    r.ret = -1;
    CHECK_ST(ctx, ema_apply_async_staged(ctx, ready_cb, &r), EMA_OK);
    CHECK_ST(ctx, ema_apply(ctx), EMA_E_IO);
    CHECK(strstr(ema_last_error(ctx), "ema_apply: the asynchronous update started by ema_apply_async_staged") != NULL);
    CHECK(averages_equal(ctx, ref, &m));
    CHECK_ST(ctx, ema_apply(ctx), EMA_OK);
    CHECK_ST(ref, ema_apply(ref), EMA_OK);
    CHECK(averages_equal(ctx, ref, &m));
    /* a callback that fills the staging itself on the update thread */
    for (int t = 0; t < NT; t++) fill(&m, t, 2);
    for (int t = 0; t < NT; t++) memcpy(m2.data[t], m.data[t], nbytes(&m, t));
    ready_arg f = {ctx, &m, 0, 0, EMA_OK, {NULL}};
    for (int t = 0; t < NT; t++) CHECK_ST(ctx, ema_staging_at(ctx, (size_t)t, &f.stage[t]), EMA_OK);
    CHECK_ST(ctx, ema_apply_async_staged(ctx, ready_fill, &f), EMA_OK);
    CHECK_ST(ctx, ema_wait(ctx), EMA_OK);
    CHECK_ST(ref, ema_apply(ref), EMA_OK);
    CHECK(f.calls == 1 && averages_equal(ctx, ref, &m));
    ema_free(ctx);
    ema_free(ref);
    free_model(&m);
    free_model(&m2);
  }
}

/* Allocation failures while starting: EMA_E_NOMEM, nothing changed. */
static void test_nomem(void) {
  int failed = 0;
  for (long n = 0; n < 40; n++) {
    model m, m2;
    ema_ctx *ctx = small_ctx(&m, 1), *ref = small_ctx(&m2, 1);
    for (int t = 0; t < NT; t++) fill(&m, t, 1);
    for (int t = 0; t < NT; t++) memcpy(m2.data[t], m.data[t], nbytes(&m, t));
    ema__test_fail_alloc(n);
    ema_status st = ema_update_async(ctx, 3);
    ema__test_fail_alloc(-1);
    CHECK(st == EMA_OK || st == EMA_E_NOMEM);
    if (st == EMA_E_NOMEM) {
      failed++;
      CHECK(ema_last_step(ctx) == 0 && averages_equal(ctx, ref, &m));
      CHECK_ST(ctx, ema_update_async(ctx, 3), EMA_OK);
    }
    CHECK_ST(ctx, ema_wait(ctx), EMA_OK);
    CHECK_ST(ref, ema_update(ref, 3), EMA_OK);
    CHECK_MSG(averages_equal(ctx, ref, &m), "allocation %ld failed", n);
    ema_free(ctx);
    ema_free(ref);
    free_model(&m);
    free_model(&m2);
    if (st == EMA_OK) break;
  }
  CHECK(failed >= 3); /* state, tables, staging */
}

/* ---- a caller's allocator --------------------------------------------------------------- */

typedef struct counting_alloc {
  int allocs, frees;
  size_t bytes;
  unsigned char *last;
} counting_alloc;

static void *c_alloc(void *user, size_t bytes) {
  counting_alloc *c = (counting_alloc *)user;
  unsigned char *p = (unsigned char *)malloc(bytes + 16 + 8);
  if (!p) return NULL;
  c->allocs++;
  c->bytes = bytes;
  c->last = p + 8 + 3; /* deliberately not aligned */
  return c->last;
}

static void c_free(void *user, void *block) {
  counting_alloc *c = (counting_alloc *)user;
  c->frees++;
  free((unsigned char *)block - 11);
}

static void test_allocator(void) {
  model m, m2;
  ema_ctx *ctx = small_ctx(&m, 0), *ref = small_ctx(&m2, 0);
  counting_alloc c = {0, 0, 0, NULL};
  CHECK_ST(ctx, ema_set_staging_allocator(ctx, c_alloc, NULL, &c), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_set_staging_allocator(ctx, c_alloc, c_free, &c), EMA_OK);
  for (int s = 1; s <= 3; s++) {
    for (int t = 0; t < NT; t++) fill(&m, t, s);
    for (int t = 0; t < NT; t++) memcpy(m2.data[t], m.data[t], nbytes(&m, t));
    CHECK_ST(ctx, ema_apply_async(ctx), EMA_OK);
    for (int t = 0; t < NT; t++) memset(m.data[t], 0x55, nbytes(&m, t)); /* at once */
    CHECK_ST(ref, ema_apply(ref), EMA_OK);
    CHECK(averages_equal(ctx, ref, &m)); /* ema_average waits */
  }
  CHECK(c.allocs == 1 && c.frees == 0);
  void *p = NULL;
  CHECK_ST(ctx, ema_staging(ctx, "t7", &p), EMA_OK);
  CHECK(p && (unsigned char *)p >= c.last && (unsigned char *)p < c.last + c.bytes);
  CHECK(c.allocs == 1);
  /* the staging grows with a new tensor: a new block, the old one given back */
  int64_t big = 400000;
  float *extra = (float *)calloc((size_t)big, sizeof *extra);
  CHECK_ST(ctx, ema_track(ctx, "extra", extra, EMA_F32, 1, &big), EMA_OK);
  CHECK_ST(ctx, ema_apply_async(ctx), EMA_OK);
  CHECK(c.allocs == 2 && c.frees == 1);
  /* back to the default: the caller's block is given back at once */
  CHECK_ST(ctx, ema_set_staging_allocator(ctx, NULL, NULL, NULL), EMA_OK);
  CHECK(c.frees == 2);
  CHECK_ST(ctx, ema_apply_async(ctx), EMA_OK);
  CHECK_ST(ctx, ema_set_staging_allocator(ctx, c_alloc, c_free, &c), EMA_OK);
  CHECK_ST(ctx, ema_update_async(ctx, 1), EMA_OK);
  ema_free(ctx); /* waits, then gives the block back */
  CHECK(c.allocs == 3 && c.frees == 3);
  ema_free(ref);
  free(extra);
  free_model(&m);
  free_model(&m2);
}

/* ---- arguments and refusals ----------------------------------------------------------------- */

static void test_args(void) {
  CHECK(ema_apply_async(NULL) == EMA_E_INVALID_ARG && ema_update_async(NULL, 1) == EMA_E_INVALID_ARG);
  CHECK(ema_wait(NULL) == EMA_E_INVALID_ARG && ema_apply_async_staged(NULL, NULL, NULL) == EMA_E_INVALID_ARG);
  CHECK(ema_staging(NULL, "a", NULL) == EMA_E_INVALID_ARG &&
        ema_set_staging_allocator(NULL, NULL, NULL, NULL) == EMA_E_INVALID_ARG);
  ema_ctx *ctx = NULL;
  CHECK(ema_create(&ctx, 0.5) == EMA_OK);
  CHECK_ST(ctx, ema_wait(ctx), EMA_OK);        /* nothing in flight */
  CHECK_ST(ctx, ema_apply_async(ctx), EMA_OK); /* nothing tracked: a no-op update */
  float w[4] = {1, 2, 3, 4}, st[4] = {0}, kp[2] = {5, 6};
  int64_t four = 4, two = 2;
  CHECK_ST(ctx, ema_track(ctx, "w", w, EMA_F32, 1, &four), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "bn", st, EMA_F32, 1, &four, EMA_POLICY_COPY), EMA_OK);
  CHECK_ST(ctx, ema_track_policy(ctx, "k", kp, EMA_F32, 1, &two, EMA_POLICY_KEEP), EMA_OK);
  void *p = NULL;
  CHECK_ST(ctx, ema_staging(ctx, "bn", &p), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_staging(ctx, "k", &p), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_staging(ctx, "nope", &p), EMA_E_NOT_FOUND);
  CHECK_ST(ctx, ema_staging(ctx, "w", NULL), EMA_E_INVALID_ARG);
  CHECK_ST(ctx, ema_staging_at(ctx, 3, &p), EMA_E_NOT_FOUND);
  CHECK_ST(ctx, ema_staging_at(ctx, 0, &p), EMA_OK);
  CHECK(p != NULL);
  /* the update for step 1 uses the values at the call */
  CHECK_ST(ctx, ema_apply_async(ctx), EMA_OK);
  w[0] = 1000.0f;
  const float *avg = (const float *)ema_average(ctx, "w", NULL);
  CHECK(avg[0] == 1.0f && avg[1] == 2.0f);
  CHECK_ST(ctx, ema_update_async(ctx, 0), EMA_E_INVALID_ARG); /* bad step: nothing started */
  CHECK(ema_last_step(ctx) == 0);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK_ST(ctx, ema_apply_async(ctx), EMA_E_STATE);
  CHECK_ST(ctx, ema_update_async_staged(ctx, 1, NULL, NULL), EMA_E_STATE);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK(w[0] == 1000.0f);
  /* every waiting call sees the finished update: track right after a start */
  CHECK_ST(ctx, ema_update_async(ctx, 2), EMA_OK);
  float w2[4] = {7, 7, 7, 7};
  CHECK_ST(ctx, ema_track(ctx, "w2", w2, EMA_F32, 1, &four), EMA_OK);
  CHECK_ST(ctx, ema_set_threads(ctx, 3), EMA_OK);
  CHECK_ST(ctx, ema_update_async(ctx, 3), EMA_OK);
  CHECK_ST(ctx, ema_untrack(ctx, "w2"), EMA_OK);
  CHECK_ST(ctx, ema_update_async(ctx, 4), EMA_OK);
  CHECK(ema_last_step(ctx) == 4);
  ema_free(ctx); /* with an update in flight */
}

/* Calls that read the averages wait for the update in flight. */
static void test_waits(void) {
  model m, m2;
  ema_ctx *ctx = small_ctx(&m, 1), *ref = small_ctx(&m2, 1);
  for (int t = 0; t < NT; t++) fill(&m, t, 1);
  for (int t = 0; t < NT; t++) memcpy(m2.data[t], m.data[t], nbytes(&m, t));
  CHECK_ST(ctx, ema_update_async(ctx, 5), EMA_OK);
  CHECK_ST(ref, ema_update(ref, 5), EMA_OK);
  void *a = NULL, *b = NULL;
  size_t na = 0, nb = 0;
  CHECK_ST(ctx, ema_save_buffer(ctx, &a, &na), EMA_OK); /* right after the start */
  CHECK_ST(ref, ema_save_buffer(ref, &b, &nb), EMA_OK);
  CHECK(na == nb && na > 0 && memcmp(a, b, na) == 0);
  /* a load waits too: load the synchronous checkpoint over an update in flight */
  CHECK_ST(ctx, ema_update_async(ctx, 6), EMA_OK);
  CHECK_ST(ctx, ema_load_buffer(ctx, b, nb), EMA_OK);
  CHECK(ema_last_step(ctx) == 5 && averages_equal(ctx, ref, &m));
  /* swap right after a start: the model receives the finished averages */
  CHECK_ST(ctx, ema_update_async(ctx, 7), EMA_OK);
  CHECK_ST(ref, ema_update(ref, 7), EMA_OK);
  CHECK_ST(ctx, ema_swap(ctx), EMA_OK);
  CHECK_ST(ref, ema_swap(ref), EMA_OK);
  int same = 1;
  for (int t = 0; t < NT; t++) same &= memcmp(m.data[t], m2.data[t], nbytes(&m, t)) == 0;
  CHECK(same);
  ema_buffer_free(a);
  ema_buffer_free(b);
  ema_free(ctx);
  ema_free(ref);
  free_model(&m);
  free_model(&m2);
}

int main(void) {
  const char *q = getenv("EMA_TEST_QUICK"); /* the ThreadSanitizer run: a smaller matrix */
  test_args();
  test_failure();
  test_waits();
  test_nomem();
  test_allocator();
  test_matrix(q && *q && *q != '0');
  return check_report("test_async");
}
