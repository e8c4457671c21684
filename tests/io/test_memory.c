/* In-memory checkpoints: ema_save_buffer and ema_save_writer produce exactly
   the bytes ema_save writes; ema_load_buffer and
   ema_load_averages_into_model_buffer do what the file loads do, with the
   same all-or-nothing guarantee: every truncation of a buffer, every
   allocation failure and every writer failure leaves the context and the
   model as they were. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/internal.h"
#include "io_util.h"
#include "legacy_model.h"

static const char *const avg_names[3] = {"w", "h", "b"};
static const size_t avg_bytes[3] = {24, 16, 24};

typedef struct snap {
  legacy_model m;
  unsigned char *s;
  size_t len;
} snap;

static void take(snap *x, const ema_ctx *ctx, const legacy_model *m) {
  x->m = *m;
  x->s = io_snapshot(ctx, avg_names, 3, avg_bytes, &x->len);
}

static int same(const snap *x, const ema_ctx *ctx, const legacy_model *m) {
  size_t len;
  unsigned char *s = io_snapshot(ctx, avg_names, 3, avg_bytes, &len);
  int ok = len == x->len && memcmp(s, x->s, len) == 0 && memcmp(&x->m, m, sizeof *m) == 0;
  free(s);
  return ok;
}

typedef struct grow {
  unsigned char *p;
  size_t len, cap;
  long calls, fail_at; /* fail_at: the call that returns nonzero (-1: none) */
} grow;

static int grow_writer(void *user, const void *data, size_t len) {
  grow *g = (grow *)user;
  if (g->calls++ == g->fail_at) return 5;
  if (g->len + len > g->cap) {
    g->cap = 2 * (g->len + len);
    g->p = (unsigned char *)realloc(g->p, g->cap);
    if (!g->p) abort();
  }
  memcpy(g->p + g->len, data, len);
  g->len += len;
  return 0;
}

static void test_same_bytes(int debias) {
  legacy_model m;
  ema_ctx *ctx = legacy_build(&m, debias, 4);
  CHECK(ctx != NULL);
  if (!ctx) return;
  CHECK_ST(ctx, ema_save(ctx, io_path("a.st")), EMA_OK);
  size_t flen = 0, blen = 0;
  unsigned char *file = io_slurp(io_path("a.st"), &flen);
  void *buf = NULL;
  CHECK_ST(ctx, ema_save_buffer(ctx, &buf, &blen), EMA_OK);
  CHECK(buf && blen == flen && memcmp(buf, file, flen) == 0);
  grow g = {NULL, 0, 0, 0, -1};
  CHECK_ST(ctx, ema_save_writer(ctx, grow_writer, &g), EMA_OK);
  CHECK(g.len == flen && memcmp(g.p, file, flen) == 0);
  CHECK(g.calls >= 2);
  /* a writer that stops at each call: EMA_E_IO, one-line message */
  printf("figures: debias=%d: writer stopped at each of %ld calls: EMA_E_IO\n", debias, g.calls);
  for (long at = 0; at < g.calls; at++) {
    grow h = {NULL, 0, 0, 0, at};
    CHECK_ST(ctx, ema_save_writer(ctx, grow_writer, &h), EMA_E_IO);
    CHECK(strstr(ema_last_error(ctx), "ema_save_writer") && !strchr(ema_last_error(ctx), '\n'));
    free(h.p);
  }
  CHECK(ema_save_writer(ctx, NULL, NULL) == EMA_E_INVALID_ARG);
  CHECK(ema_save_buffer(ctx, NULL, &blen) == EMA_E_INVALID_ARG);
  ema_buffer_free(NULL);
  free(g.p);
  free(file);
  ema_buffer_free(buf);
  ema_free(ctx);
}

static void test_load_buffer(int debias) {
  legacy_model ma, mb, mc;
  ema_ctx *a = legacy_build(&ma, debias, 5), *b = legacy_build(&mb, debias, 2), *c = legacy_build(&mc, debias, 2);
  CHECK(a && b && c);
  if (!a || !b || !c) return;
  void *buf = NULL;
  size_t len = 0;
  CHECK_ST(a, ema_save_buffer(a, &buf, &len), EMA_OK);
  CHECK_ST(a, ema_save(a, io_path("b.st")), EMA_OK);
  /* every truncation is refused and changes nothing */
  snap before;
  take(&before, b, &mb);
  int bad = 0;
  for (size_t n = 0; n < len; n++) {
    ema_status st = ema_load_buffer(b, buf, n);
    if (st != EMA_E_FORMAT || !same(&before, b, &mb) || strchr(ema_last_error(b), '\n')) bad++;
    st = ema_load_averages_into_model_buffer(b, buf, n);
    if (st != EMA_E_FORMAT || !same(&before, b, &mb)) bad++;
  }
  CHECK_MSG(bad == 0, "%d truncations not refused cleanly (of %zu)", bad, len);
  printf("figures: debias=%d: %zu truncations x 2 loaders refused, nothing changed\n", debias, len);
  /* allocation failures: every one leaves b unchanged, then it succeeds */
  long n_fail = 0;
  for (long k = 0;; k++) {
    ema__test_fail_alloc(k);
    ema_status st = ema_load_buffer(b, buf, len);
    ema__test_fail_alloc(-1);
    if (st == EMA_OK) break;
    CHECK_MSG(st == EMA_E_NOMEM && same(&before, b, &mb), "allocation %ld: %d %s", k, (int)st, ema_last_error(b));
    n_fail++;
    if (k > 1000) break;
  }
  CHECK(n_fail >= 3);
  printf("figures: debias=%d: ema_load_buffer: %ld allocation failures, each EMA_E_NOMEM, nothing changed\n", debias,
         n_fail);
  /* ... and the result is what the file load gives */
  CHECK_ST(c, ema_load(c, io_path("b.st")), EMA_OK);
  snap fromfile;
  take(&fromfile, c, &mc);
  CHECK(same(&fromfile, b, &mb));
  /* averages into the model, from memory and from the file, agree */
  CHECK_ST(b, ema_load_averages_into_model_buffer(b, buf, len), EMA_OK);
  CHECK_ST(c, ema_load_averages_into_model(c, io_path("b.st")), EMA_OK);
  CHECK(memcmp(&mb, &mc, sizeof mb) == 0);
  CHECK(memcmp(mb.w, ema_average(a, "w", NULL), sizeof mb.w) == 0);
  CHECK(ema_load_buffer(b, NULL, 5) == EMA_E_INVALID_ARG);
  CHECK(ema_load_buffer(NULL, buf, len) == EMA_E_INVALID_ARG);
  free(before.s);
  free(fromfile.s);
  ema_buffer_free(buf);
  ema_free(a);
  ema_free(b);
  ema_free(c);
}

/* The state alone: no model tensor in it; loading it into another context
   brings the averages and EMA state of a full load, and leaves that
   context's model values as they were; truncations change nothing. */
static void test_state_buffer(int debias) {
  legacy_model ma, mb, mc;
  ema_ctx *a = legacy_build(&ma, debias, 5), *b = legacy_build(&mb, debias, 2), *c = legacy_build(&mc, debias, 2);
  CHECK(a && b && c);
  if (!a || !b || !c) return;
  void *st = NULL, *full = NULL;
  size_t slen = 0, flen = 0;
  CHECK_ST(a, ema_save_state_buffer(a, &st, &slen), EMA_OK);
  CHECK_ST(a, ema_save_buffer(a, &full, &flen), EMA_OK);
  CHECK(st && slen > 0 && slen < flen);
  /* the header names no model tensor ("w", "h", "b", "step") as a key */
  uint64_t hlen = 0;
  memcpy(&hlen, st, 8);
  CHECK(hlen < slen);
  char *head = (char *)calloc(1, (size_t)hlen + 1);
  CHECK(head != NULL);
  if (head && hlen < slen) {
    memcpy(head, (const char *)st + 8, (size_t)hlen);
    CHECK(!strstr(head, "\"w\":") && strstr(head, "\"w/"));
  }
  free(head);
  snap before;
  take(&before, b, &mb);
  int bad = 0;
  for (size_t n = 0; n < slen; n++)
    if (ema_load_state_buffer(b, st, n) != EMA_E_FORMAT || !same(&before, b, &mb)) bad++;
  CHECK_MSG(bad == 0, "%d truncations of the state buffer not refused cleanly (of %zu)", bad, slen);
  CHECK(ema_load_buffer(b, st, slen) == EMA_E_MISMATCH && same(&before, b, &mb)); /* not a checkpoint */
  legacy_model keep = mb;
  CHECK_ST(b, ema_load_state_buffer(b, st, slen), EMA_OK);
  CHECK(memcmp(&keep, &mb, sizeof mb) == 0); /* the model is untouched */
  CHECK_ST(c, ema_load_buffer(c, full, flen), EMA_OK);
  mc = mb; /* c's model got a's values: compare the EMA side only */
  snap fromfull;
  take(&fromfull, c, &mc);
  CHECK(same(&fromfull, b, &mb));
  CHECK(ema_num_updates(b) == ema_num_updates(c) && ema_last_step(b) == ema_last_step(c));
  CHECK_ST(b, ema_load_state_buffer(b, full, flen), EMA_OK); /* a whole checkpoint: its state only */
  CHECK(memcmp(&keep, &mb, sizeof mb) == 0);
  CHECK(ema_load_state_buffer(b, NULL, 5) == EMA_E_INVALID_ARG);
  CHECK(ema_save_state_buffer(b, NULL, &slen) == EMA_E_INVALID_ARG);
  free(before.s);
  free(fromfull.s);
  ema_buffer_free(st);
  ema_buffer_free(full);
  ema_free(a);
  ema_free(b);
  ema_free(c);
}

static void test_save_alloc_failures(void) {
  legacy_model m;
  ema_ctx *ctx = legacy_build(&m, 1, 3);
  CHECK(ctx != NULL);
  if (!ctx) return;
  long fails = 0;
  for (long k = 0; k < 1000; k++) {
    void *buf = (void *)&fails;
    size_t len = 99;
    ema__test_fail_alloc(k);
    ema_status st = ema_save_buffer(ctx, &buf, &len);
    ema__test_fail_alloc(-1);
    if (st == EMA_OK) {
      ema_buffer_free(buf);
      break;
    }
    CHECK_MSG(st == EMA_E_NOMEM && buf == NULL && len == 0, "allocation %ld: %d", k, (int)st);
    fails++;
  }
  CHECK(fails >= 3);
  printf("figures: ema_save_buffer: %ld allocation failures, each EMA_E_NOMEM with *buf NULL\n", fails);
  ema_free(ctx);
}

int main(void) {
  io_mkdir("memory");
  test_same_bytes(0);
  test_same_bytes(1);
  test_load_buffer(0);
  test_load_buffer(1);
  test_state_buffer(0);
  test_state_buffer(1);
  test_save_alloc_failures();
  io_rmdir();
  return check_report("test_memory");
}
