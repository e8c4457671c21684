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

/* The header of the checkpoint ckpt[0..len) as a NUL-terminated string (free
   it), or NULL when its length runs past len. */
static char *head_text(const void *ckpt, size_t len) {
  uint64_t n = 0;
  if (len < 8) return NULL;
  memcpy(&n, ckpt, 8);
  char *text = n <= len - 8 ? (char *)calloc(1, (size_t)n + 1) : NULL;
  if (text) memcpy(text, (const char *)ckpt + 8, (size_t)n);
  return text;
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
  /* the state streamed: the same bytes; a writer that stops fails it */
  grow g = {NULL, 0, 0, 0, -1};
  CHECK_ST(a, ema_save_state_writer(a, 0, grow_writer, &g), EMA_OK);
  CHECK(g.len == slen && memcmp(g.p, st, slen) == 0 && g.calls >= 2);
  for (long at = 0; at < g.calls; at++) {
    grow h = {NULL, 0, 0, 0, at};
    CHECK_ST(a, ema_save_state_writer(a, 0, grow_writer, &h), EMA_E_IO);
    CHECK(strstr(ema_last_error(a), "ema_save_state_writer") && !strchr(ema_last_error(a), '\n'));
    free(h.p);
  }
  CHECK(ema_save_state_writer(a, 0, NULL, NULL) == EMA_E_INVALID_ARG);
  CHECK(ema_save_state_writer(a, 2, grow_writer, &g) == EMA_E_INVALID_ARG && g.len == slen);
  /* without the checksum: no libema.xxh64, the same tensors, and it loads */
  grow ns = {NULL, 0, 0, 0, -1};
  CHECK_ST(a, ema_save_state_writer(a, EMA_SAVE_NO_CHECKSUM, grow_writer, &ns), EMA_OK);
  uint64_t nh = 0, sh = 0;
  memcpy(&nh, ns.p, 8);
  memcpy(&sh, st, 8);
  char *nhead = head_text(ns.p, ns.len);
  CHECK(nhead != NULL && ns.len - 8 - nh == slen - 8 - sh &&
        memcmp(ns.p + 8 + nh, (const char *)st + 8 + sh, (size_t)(slen - 8 - sh)) == 0);
  CHECK(nhead && !strstr(nhead, "libema.xxh64") && strstr(nhead, "libema.format"));
  free(nhead);
  CHECK_ST(c, ema_load_state_buffer(c, ns.p, ns.len), EMA_OK);
  free(ns.p);
  free(g.p);
  /* the header names no model tensor ("w", "h", "b", "step") as a key */
  uint64_t hlen = 0;
  memcpy(&hlen, st, 8);
  CHECK(hlen < slen);
  char *head = head_text(st, slen);
  CHECK(head != NULL);
  if (head) CHECK(!strstr(head, "\"w\":") && strstr(head, "\"w/"));
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

/* The state in parts: the data section cut anywhere. A cut inside a tensor
   is refused (nothing changed); the cuts between tensors are exactly those
   accepted, and parts in separate blocks load what the one buffer loads.
   The checksum covers the parts; a bad head, a NULL and every allocation
   failure change nothing. */
static void test_state_parts(int debias) {
  legacy_model ma, mb, mc;
  ema_ctx *a = legacy_build(&ma, debias, 5), *b = legacy_build(&mb, debias, 2), *c = legacy_build(&mc, debias, 2);
  CHECK(a && b && c);
  if (!a || !b || !c) return;
  void *st = NULL, *b0 = NULL;
  size_t slen = 0, b0len = 0;
  CHECK_ST(a, ema_save_state_buffer(a, &st, &slen), EMA_OK);
  CHECK_ST(b, ema_save_state_buffer(b, &b0, &b0len), EMA_OK); /* to put b back */
  uint64_t hlen = 0;
  memcpy(&hlen, st, 8);
  const unsigned char *data = (const unsigned char *)st + 8 + hlen;
  size_t head_len = 8 + (size_t)hlen, dlen = slen - head_len;
  CHECK_ST(c, ema_load_state_buffer(c, st, slen), EMA_OK); /* the reference */
  snap want, before;
  take(&want, c, &mb);
  take(&before, b, &mb);
  size_t *cuts = (size_t *)calloc(dlen + 1, sizeof *cuts), n_cuts = 0;
  int bad = 0;
  for (size_t cut = 0; cut <= dlen && cuts; cut++) {
    ema_bytes parts[2] = {{data, cut}, {data + cut, dlen - cut}};
    ema_status r = ema_load_state_parts(b, st, head_len, parts, 2);
    if (r == EMA_OK) {
      if (!same(&want, b, &mb)) bad++;
      cuts[n_cuts++] = cut;
      CHECK_ST(b, ema_load_state_buffer(b, b0, b0len), EMA_OK);
    } else if (r != EMA_E_INVALID_ARG || !strstr(ema_last_error(b), "does not lie within one part") ||
               !same(&before, b, &mb)) {
      bad++;
    }
  }
  CHECK_MSG(bad == 0, "%d of %zu cuts not handled cleanly", bad, dlen + 1);
  /* the header's tensors, counted by their "data_offsets": one cut more */
  size_t n_tensors = 0;
  char *text = head_text(st, slen);
  CHECK(text != NULL);
  for (const char *q = text; q && (q = strstr(q, "\"data_offsets\"")) != NULL; q++) n_tensors++;
  free(text);
  CHECK_MSG(n_cuts == n_tensors + 1, "%zu cuts accepted, %zu expected", n_cuts, n_tensors + 1);
  printf("figures: debias=%d: %zu cuts of %zu data bytes: %zu accepted (between tensors), the rest refused\n", debias,
         dlen + 1, dlen, n_cuts);
  /* one block per tensor, apart in memory, with an empty part among them */
  ema_bytes *parts = (ema_bytes *)calloc(n_cuts + 1, sizeof *parts);
  size_t np = 0;
  for (size_t i = 0; parts && i + 1 < n_cuts; i++) {
    size_t len = cuts[i + 1] - cuts[i];
    void *blk = malloc(len);
    CHECK(blk != NULL);
    if (!blk) break;
    memcpy(blk, data + cuts[i], len);
    parts[np++] = (ema_bytes){blk, len};
    if (i == 0) parts[np++] = (ema_bytes){NULL, 0};
  }
  /* a flipped byte: the checksum over the parts catches it */
  unsigned char *last = (unsigned char *)(uintptr_t)parts[np - 1].data;
  last[0] ^= 1;
  CHECK(ema_load_state_parts(b, st, head_len, parts, np) == EMA_E_FORMAT && same(&before, b, &mb));
  CHECK(strstr(ema_last_error(b), "checksum") != NULL);
  last[0] ^= 1;
  /* a part missing: the data is shorter than the header says */
  CHECK(ema_load_state_parts(b, st, head_len, parts, np - 1) == EMA_E_FORMAT && same(&before, b, &mb));
  /* bad arguments */
  CHECK(ema_load_state_parts(b, st, head_len - 1, parts, np) == EMA_E_INVALID_ARG && same(&before, b, &mb));
  CHECK(ema_load_state_parts(b, st, head_len + 1, parts, np) == EMA_E_INVALID_ARG && same(&before, b, &mb));
  CHECK(ema_load_state_parts(b, st, 7, parts, np) == EMA_E_INVALID_ARG && same(&before, b, &mb));
  CHECK(ema_load_state_parts(b, NULL, head_len, parts, np) == EMA_E_INVALID_ARG);
  CHECK(ema_load_state_parts(b, st, head_len, NULL, np) == EMA_E_INVALID_ARG);
  CHECK(ema_load_state_parts(NULL, st, head_len, parts, np) == EMA_E_INVALID_ARG);
  parts[1] = (ema_bytes){NULL, 4};
  CHECK(ema_load_state_parts(b, st, head_len, parts, np) == EMA_E_INVALID_ARG && same(&before, b, &mb));
  parts[1] = (ema_bytes){NULL, 0};
  /* every allocation failure: EMA_E_NOMEM, nothing changed; then it loads */
  long n_fail = 0;
  for (long k = 0; k < 1000; k++) {
    ema__test_fail_alloc(k);
    ema_status r = ema_load_state_parts(b, st, head_len, parts, np);
    ema__test_fail_alloc(-1);
    if (r == EMA_OK) break;
    CHECK_MSG(r == EMA_E_NOMEM && same(&before, b, &mb), "allocation %ld: %d %s", k, (int)r, ema_last_error(b));
    n_fail++;
  }
  CHECK(n_fail >= 3 && same(&want, b, &mb));
  printf(
      "figures: debias=%d: %zu parts in separate blocks load as the buffer; %ld allocation failures changed nothing\n",
      debias, np, n_fail);
  for (size_t i = 0; i < np; i++) free((void *)(uintptr_t)parts[i].data);
  free(parts);
  free(cuts);
  free(want.s);
  free(before.s);
  ema_buffer_free(st);
  ema_buffer_free(b0);
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
  test_state_parts(0);
  test_state_parts(1);
  test_save_alloc_failures();
  io_rmdir();
  return check_report("test_memory");
}
