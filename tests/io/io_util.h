/* Helpers shared by the io tests: a scratch directory, whole-file reads and
   writes, and byte snapshots of a context's tensors (the oracle of "a
   failed call changed nothing"). */
#ifndef EMA_TEST_IO_UTIL_H
#define EMA_TEST_IO_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ema/ema.h"

static char io_dir[256];

static inline void io_mkdir(const char *tag) {
  snprintf(io_dir, sizeof io_dir, "/tmp/ema_%s_%ld", tag, (long)getpid());
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", io_dir, io_dir);
  if (system(cmd) != 0) abort();
}

static inline void io_rmdir(void) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", io_dir);
  if (system(cmd) != 0) abort();
}

static inline const char *io_path(const char *name) {
  static char buf[4][512];
  static int at = 0;
  at = (at + 1) % 4;
  snprintf(buf[at], sizeof buf[at], "%s/%s", io_dir, name);
  return buf[at];
}

static inline unsigned char *io_slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = (unsigned char *)malloc((size_t)n + 1);
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    b = NULL;
  }
  fclose(f);
  *len = (size_t)n;
  return b;
}

static inline void io_spit(const char *path, const void *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(buf, 1, len, f) != len) abort();
  fclose(f);
}

/* Every byte a load may change: model values and all averages of every
   member, and the decay / num_updates / last step. *len gets the size. */
static inline unsigned char *io_snapshot(const ema_ctx *ctx, const char *const *names, size_t n, const size_t *bytes,
                                         size_t *len) {
  size_t total = 3 * sizeof(double);
  size_t members = ema_bank_size(ctx);
  for (size_t i = 0; i < n; i++) total += bytes[i] * members;
  unsigned char *out = (unsigned char *)malloc(total), *p = out;
  if (!out) abort();
  double state[3] = {ema_decay(ctx), (double)ema_num_updates(ctx), (double)ema_last_step(ctx)};
  memcpy(p, state, sizeof state);
  p += sizeof state;
  for (size_t i = 0; i < n; i++) {
    ema_dtype dt;
    for (size_t k = 0; k < members; k++) {
      const void *a = ema_bank_average(ctx, names[i], k, &dt);
      if (a)
        memcpy(p, a, bytes[i]);
      else
        memset(p, 0xEE, bytes[i]);
      p += bytes[i];
    }
  }
  *len = total;
  return out;
}

#endif
