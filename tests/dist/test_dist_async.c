/*
 * Sharded saves and loads wait for an asynchronous update in flight: a
 * sharded checkpoint written right after ema_update_async holds the averages
 * of that update, bit for bit the synchronous run's (world size 1, comm NULL).
 */
#include <ema/dist.h>
#include <ema/ema.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#define N 4096
#define ROWS 64

static void fill(float *w, int step) {
  for (int i = 0; i < N; i++) w[i] = (float)((i * 37 + step * 11) % 101) * 0.01f;
}

static ema_ctx *make(float *w) {
  ema_ctx *c = NULL;
  int64_t g[2] = {ROWS, N / ROWS}, off[2] = {0, 0};
  CHECK(ema_create(&c, 0.9) == EMA_OK);
  CHECK_ST(c, ema_set_threads(c, 2), EMA_OK);
  CHECK_ST(c, ema_track_shard(c, "w", w, EMA_F32, 2, g, off, g), EMA_OK);
  return c;
}

int main(void) {
  char dir_sync[256], dir_async[256];
  snprintf(dir_sync, sizeof dir_sync, "/tmp/ema_dist_async_s_%d", (int)getpid());
  snprintf(dir_async, sizeof dir_async, "/tmp/ema_dist_async_a_%d", (int)getpid());
  static float ws[N], wa[N], wl[N];
  fill(ws, 0);
  fill(wa, 0);
  ema_ctx *s = make(ws), *a = make(wa);
  for (int step = 1; step <= 6; step++) {
    fill(ws, step);
    fill(wa, step);
    CHECK_ST(s, ema_update(s, step), EMA_OK);
    CHECK_ST(a, ema_update_async(a, step), EMA_OK);
    if (step < 6) CHECK_ST(a, ema_wait(a), EMA_OK);
  }
  /* no ema_wait: the sharded save must wait for step 6 itself */
  fill(wa, 99); /* the trainer moves on; the average of step 6 must not see it */
  CHECK_ST(s, ema_save_sharded(s, dir_sync, NULL), EMA_OK);
  CHECK_ST(a, ema_save_sharded(a, dir_async, NULL), EMA_OK);
  CHECK(memcmp(ema_average(s, "w", NULL), ema_average(a, "w", NULL), sizeof ws) == 0);
  /* and a sharded load into a context with an update in flight waits too */
  fill(wl, 0);
  ema_ctx *l = make(wl);
  CHECK_ST(l, ema_update_async(l, 1), EMA_OK);
  CHECK_ST(l, ema_load_sharded(l, dir_async, NULL), EMA_OK);
  CHECK(ema_last_step(l) == 6);
  CHECK(memcmp(ema_average(l, "w", NULL), ema_average(s, "w", NULL), sizeof ws) == 0);
  ema_free(l);
  ema_free(a);
  ema_free(s);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", dir_sync, dir_async);
  if (system(cmd) != 0) fprintf(stderr, "could not remove the test folders\n");
  return check_report("test_dist_async");
}
