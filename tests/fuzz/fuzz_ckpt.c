/*
 * tests/fuzz/fuzz_ckpt.c: libFuzzer targets for the checkpoint loaders and
 * the file API, built once per mode (FUZZ_MODE):
 *   1 fuzz_load_buffer   ema_load_buffer + ema_load_averages_into_model_buffer
 *                        + ema_load_state_parts (the data section cut into
 *                        1-8 parts, each its own exact-size block: the
 *                        configuration byte's bits 5-7 say how many)
 *   2 fuzz_load_file     ema_load + ema_load_averages_into_model from a file
 *   3 fuzz_file          ema_file_open, every accessor, windowed ema_file_read,
 *                        ema_extract_averages (file in, file out)
 * and linked into a replay driver (replay.c) for ctest.
 *
 * Input: one configuration byte, then a whole checkpoint file. The byte picks
 * the context the file is loaded into (bit 0: zero_debias, bit 1: a bank of
 * two, bit 2: active member 1, bit 3: f16 shadows in the model dtype, bit 4:
 * a KEEP tensor), so one corpus explores every layout the loader plans for.
 *
 * Property oracle (a violation aborts):
 *  - a failed call changed nothing: the model's bytes, every average of every
 *    member, decay, num_updates and the last step are byte for byte as before
 *    (and a failed extract left no output file);
 *  - its status is one the function documents and its message is one line,
 *    non-empty, with no control bytes (strings from the file are escaped);
 *  - a successful ema_load round-trips: the context saved to a buffer and
 *    loaded into a twin gives the same bytes.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ema/ema.h"

#ifndef FUZZ_MODE
#define FUZZ_MODE 1
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Each mode uses some of the helpers below. */
#define FUZZ_MAYBE_UNUSED __attribute__((unused))

#define FUZZ_ASSERT(c)                                                             \
  do {                                                                             \
    if (!(c)) {                                                                    \
      fprintf(stderr, "fuzz_ckpt: property failed: %s (line %d)\n", #c, __LINE__); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

typedef struct model {
  float w[6];
  uint16_t h[4]; /* bf16 */
  uint16_t g[3]; /* f16 */
  double b[3];
  int64_t step[2];
  float frozen[2]; /* KEEP, with cfg bit 4 */
} model;

static const int64_t sw[2] = {2, 3}, sh[1] = {4}, sg[1] = {3}, sb[1] = {3}, ss[1] = {2}, sk[1] = {2};

static ema_ctx *build(model *m, unsigned cfg) {
  memset(m, 0, sizeof *m); /* padding too: snapshots compare bytes */
  for (int i = 0; i < 6; i++) m->w[i] = (float)i * 0.5f - 1.0f;
  for (int i = 0; i < 4; i++) m->h[i] = (uint16_t)(0x3F80 + i);
  for (int i = 0; i < 3; i++) m->g[i] = (uint16_t)(0x3C00 + 7 * i);
  for (int i = 0; i < 3; i++) m->b[i] = 0.25 * i;
  m->step[0] = 3;
  m->step[1] = -4;
  ema_ctx *ctx = NULL;
  if (ema_create(&ctx, 0.9) != EMA_OK) return NULL;
  int ok = ema_set_zero_debias(ctx, (int)(cfg & 1u)) == EMA_OK &&
           ema_set_half_shadows(ctx, (int)((cfg >> 3) & 1u)) == EMA_OK;
  if (cfg & 2u) {
    ema_schedule s;
    ema_schedule_init(&s, EMA_SCHEDULE_CONSTANT);
    s.decay = 0.5;
    ok = ok && ema_bank_add(ctx, "fast", &s, NULL) == EMA_OK;
  }
  ok = ok && ema_track(ctx, "w", m->w, EMA_F32, 2, sw) == EMA_OK;
  ok = ok && ema_track(ctx, "h", m->h, EMA_BF16, 1, sh) == EMA_OK;
  ok = ok && ema_track(ctx, "g", m->g, EMA_F16, 1, sg) == EMA_OK;
  ok = ok && ema_track(ctx, "b", m->b, EMA_F64, 1, sb) == EMA_OK;
  ok = ok && ema_track_policy(ctx, "step", m->step, EMA_I64, 1, ss, EMA_POLICY_COPY) == EMA_OK;
  m->frozen[0] = 1.5f;
  m->frozen[1] = -2.5f;
  if (ok && (cfg & 16u)) ok = ema_track_policy(ctx, "frozen", m->frozen, EMA_F32, 1, sk, EMA_POLICY_KEEP) == EMA_OK;
  if (ok && (cfg & 4u) && (cfg & 2u)) ok = ema_bank_set_active(ctx, 1) == EMA_OK;
  if (!ok) {
    ema_free(ctx);
    return NULL;
  }
  return ctx;
}

/* Everything a load may change, as bytes. */
typedef struct snap {
  model m;
  unsigned char avg[2][6 * 4 + 4 * 4 + 3 * 4 + 3 * 8 + 2 * 4];
  double decay;
  int64_t nupd, last;
} snap;

static void take(snap *s, const ema_ctx *ctx, const model *m) {
  static const char *const names[5] = {"w", "h", "g", "b", "frozen"};
  memset(s, 0, sizeof *s);
  memcpy(&s->m, m, sizeof *m);
  for (size_t k = 0; k < ema_bank_size(ctx) && k < 2; k++) {
    size_t off = 0;
    for (int i = 0; i < 5; i++) {
      ema_dtype dt = EMA_F32;
      const void *a = ema_bank_average(ctx, names[i], k, &dt);
      size_t n = (i == 0 ? 6 : i == 1 ? 4 : i == 4 ? 2 : 3) * ema_dtype_size(dt);
      if (a && off + n <= sizeof s->avg[k]) memcpy(s->avg[k] + off, a, n);
      off += n;
    }
  }
  s->decay = ema_decay(ctx);
  s->nupd = ema_num_updates(ctx);
  s->last = ema_last_step(ctx);
}

static void one_line(const char *msg) {
  FUZZ_ASSERT(msg && msg[0] != '\0');
  for (const unsigned char *p = (const unsigned char *)msg; *p; p++) FUZZ_ASSERT(*p >= 0x20 && *p != 0x7F);
}

static int load_status_ok(ema_status st) {
  return st == EMA_E_FORMAT || st == EMA_E_MISMATCH || st == EMA_E_NOMEM || st == EMA_E_UNSUPPORTED || st == EMA_E_IO ||
         st == EMA_E_INVALID_ARG;
}

/* Call load on a fresh context; check the oracle. */
FUZZ_MAYBE_UNUSED static void check_load(unsigned cfg,
                                         ema_status (*load)(ema_ctx *, const void *, size_t, const char *),
                                         const void *buf, size_t len, const char *path, int resume) {
  model m;
  ema_ctx *ctx = build(&m, cfg);
  if (!ctx) return;
  snap before, after;
  take(&before, ctx, &m);
  ema_status st = load(ctx, buf, len, path);
  take(&after, ctx, &m);
  if (st != EMA_OK) {
    FUZZ_ASSERT(load_status_ok(st));
    one_line(ema_last_error(ctx));
    FUZZ_ASSERT(memcmp(&before, &after, sizeof before) == 0);
  } else if (resume) {
    void *out = NULL;
    size_t n = 0;
    if (ema_save_buffer(ctx, &out, &n) == EMA_OK) {
      model m2;
      ema_ctx *twin = build(&m2, cfg);
      if (twin) {
        FUZZ_ASSERT(ema_load_buffer(twin, out, n) == EMA_OK);
        snap t;
        take(&t, twin, &m2);
        FUZZ_ASSERT(memcmp(&t, &after, sizeof t) == 0);
        ema_free(twin);
      }
      ema_buffer_free(out);
    }
  }
  ema_free(ctx);
}

FUZZ_MAYBE_UNUSED static ema_status do_load_buffer(ema_ctx *c, const void *b, size_t n, const char *p) {
  (void)p;
  return ema_load_buffer(c, b, n);
}
FUZZ_MAYBE_UNUSED static ema_status do_into_buffer(ema_ctx *c, const void *b, size_t n, const char *p) {
  (void)p;
  return ema_load_averages_into_model_buffer(c, b, n);
}
FUZZ_MAYBE_UNUSED static ema_status do_load_file(ema_ctx *c, const void *b, size_t n, const char *p) {
  (void)b, (void)n;
  return ema_load(c, p);
}
FUZZ_MAYBE_UNUSED static ema_status do_into_file(ema_ctx *c, const void *b, size_t n, const char *p) {
  (void)b, (void)n;
  return ema_load_averages_into_model(c, p);
}

static unsigned parts_cfg; /* the configuration byte, for do_load_state_parts */

/* The head (length and header) of buf and its data section cut into equal
   parts, each copied into a block of its own; a length that runs past the
   end makes the whole input the head (refused there). */
FUZZ_MAYBE_UNUSED static ema_status do_load_state_parts(ema_ctx *c, const void *b, size_t n, const char *p) {
  (void)p;
  const unsigned char *in = (const unsigned char *)b;
  uint64_t hlen = 0;
  if (n >= 8) memcpy(&hlen, in, 8);
  size_t head = n >= 8 && hlen <= n - 8 ? (size_t)(8 + hlen) : n, data = n - head;
  size_t k = 1 + (parts_cfg >> 5), each = (data + k - 1) / k;
  ema_bytes parts[8] = {{NULL, 0}};
  size_t np = 0;
  for (size_t off = 0; off < data && np < k; off += each) {
    size_t len = data - off < each ? data - off : each;
    void *blk = malloc(len);
    if (!blk) break;
    memcpy(blk, in + head + off, len);
    parts[np++] = (ema_bytes){blk, len};
  }
  ema_status st = ema_load_state_parts(c, in, head, parts, np);
  for (size_t i = 0; i < np; i++) free((void *)(uintptr_t)parts[i].data);
  return st;
}

static char tmp_in[64], tmp_out[64];

FUZZ_MAYBE_UNUSED static void tmp_paths(void) {
  if (tmp_in[0]) return;
  const char *d = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(tmp_in, sizeof tmp_in, "%s/fuzz_ckpt_%ld.st", d, (long)getpid());
  snprintf(tmp_out, sizeof tmp_out, "%s/fuzz_ckpt_%ld.out", d, (long)getpid());
}

FUZZ_MAYBE_UNUSED static int write_file(const char *path, const void *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  int ok = fwrite(buf, 1, len, f) == len;
  return fclose(f) == 0 && ok;
}

/* Every accessor of an opened file, and windowed reads of every tensor. */
FUZZ_MAYBE_UNUSED static void walk_file(ema_file *f) {
  size_t n = ema_file_count(f);
  unsigned char win[256];
  for (size_t i = 0; i < n; i++) {
    ema_file_tensor t, u;
    FUZZ_ASSERT(ema_file_tensor_at(f, i, &t) == EMA_OK);
    FUZZ_ASSERT(ema_file_find(f, t.name, &u) == EMA_OK && u.nbytes == t.nbytes);
    for (uint64_t off = 0; off < t.nbytes; off += sizeof win) {
      size_t len = t.nbytes - off < sizeof win ? (size_t)(t.nbytes - off) : sizeof win;
      FUZZ_ASSERT(ema_file_read(f, t.name, off, win, len) == EMA_OK);
    }
    FUZZ_ASSERT(ema_file_read(f, t.name, t.nbytes, win, 1) == EMA_E_INVALID_ARG);
    one_line(ema_file_last_error(f));
  }
  ema_file_tensor t;
  FUZZ_ASSERT(ema_file_tensor_at(f, n, &t) == EMA_E_NOT_FOUND);
  one_line(ema_file_last_error(f));
  for (size_t i = 0; i < ema_file_metadata_count(f); i++) {
    const char *k = NULL, *v = NULL;
    FUZZ_ASSERT(ema_file_metadata_at(f, i, &k, &v) == EMA_OK && k && v);
    FUZZ_ASSERT(ema_file_metadata(f, k) != NULL);
  }
}

FUZZ_MAYBE_UNUSED static void fuzz_file(const uint8_t *buf, size_t len) {
  tmp_paths();
  if (!write_file(tmp_in, buf, len)) return;
  char err[512];
  ema_file *f = NULL;
  ema_status st = ema_file_open(&f, tmp_in, err, sizeof err);
  if (st == EMA_OK) {
    walk_file(f);
    ema_file_close(f);
  } else {
    FUZZ_ASSERT(f == NULL && (st == EMA_E_FORMAT || st == EMA_E_NOMEM || st == EMA_E_IO));
    one_line(err);
  }
  unlink(tmp_out);
  st = ema_extract_averages(tmp_in, tmp_out, NULL, err, sizeof err);
  struct stat out_sb;
  if (st != EMA_OK) {
    one_line(err);
    FUZZ_ASSERT(stat(tmp_out, &out_sb) != 0); /* nothing written */
  } else {
    ema_file *g = NULL;
    FUZZ_ASSERT(ema_file_open(&g, tmp_out, err, sizeof err) == EMA_OK);
    ema_file_close(g);
  }
  unlink(tmp_out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  unsigned cfg = data[0];
  const uint8_t *buf = data + 1;
  size_t len = size - 1;
  /* an exact-size copy: ASan sees any read past the end */
  uint8_t *own = (uint8_t *)malloc(len ? len : 1);
  if (!own) return 0;
  if (len) memcpy(own, buf, len);
#if FUZZ_MODE == 1
  check_load(cfg, do_load_buffer, own, len, NULL, 1);
  check_load(cfg, do_into_buffer, own, len, NULL, 0);
  parts_cfg = cfg;
  check_load(cfg, do_load_state_parts, own, len, NULL, 1);
#elif FUZZ_MODE == 2
  tmp_paths();
  if (write_file(tmp_in, own, len)) {
    check_load(cfg, do_load_file, NULL, 0, tmp_in, 1);
    check_load(cfg, do_into_file, NULL, 0, tmp_in, 0);
  }
#else
  (void)cfg;
  fuzz_file(own, len);
#endif
  free(own);
  return 0;
}

#ifdef FUZZ_SEEDS
/* The seeds of corpus_ckpt/: for every configuration byte that builds a
   context, that context after two updates, saved (cc -DFUZZ_SEEDS
   tests/fuzz/fuzz_ckpt.c -Iinclude libema.a -lm -lpthread; ./a.out DIR). */
int main(int argc, char **argv) {
  if (argc != 2) return 2;
  for (unsigned cfg = 0; cfg < 32; cfg++) {
    if ((cfg & 4u) && !(cfg & 2u)) continue;
    model m;
    ema_ctx *ctx = build(&m, cfg);
    if (!ctx) return 1;
    for (int t = 1; t <= 2; t++) {
      m.w[t] += 1.0f;
      m.b[0] -= 0.5;
      if (ema_update(ctx, t) != EMA_OK) return 1;
    }
    void *buf = NULL;
    size_t len = 0;
    if (ema_save_buffer(ctx, &buf, &len) != EMA_OK) return 1;
    char path[512];
    snprintf(path, sizeof path, "%s/seed_cfg%02u.bin", argv[1], cfg);
    FILE *f = fopen(path, "wb");
    unsigned char c = (unsigned char)cfg;
    if (!f || fwrite(&c, 1, 1, f) != 1 || fwrite(buf, 1, len, f) != len || fclose(f) != 0) return 1;
    ema_buffer_free(buf);
    ema_free(ctx);
  }
  return 0;
}
#endif
