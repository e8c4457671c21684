/*
 * tests/dist/dist_fixture.c DIR: writes DIR/ck (the test model trained 5
 * steps, saved sharded by 3 ranks, as threads) and DIR/ref.safetensors
 * (ema_save of the same run, unsharded), for consolidate_cli.sh.
 */
#include <stdio.h>

#include "dist/model.h"
#include "dist/thread_comm.h"

static tc_world W;
static mrank M[3];
static const char *where;
static ema_status st[3];

static void *rank_main(void *arg) {
  int r = (int)(intptr_t)arg;
  mopts o = {0, 1};
  if (m_init(&M[r], 3, r, &o)) st[r] = EMA_E_NOMEM;
  for (uint32_t s = 1; s <= 5; s++) m_step(&M[r], s);
  if (st[r] == EMA_OK) st[r] = ema_save_sharded(M[r].ctx, where, &W.comm[r]);
  if (st[r] != EMA_OK) fprintf(stderr, "rank %d: %s\n", r, ema_last_error(M[r].ctx));
  m_free(&M[r]);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  char ck[512], ref[512];
  snprintf(ck, sizeof ck, "%s/ck", argv[1]);
  snprintf(ref, sizeof ref, "%s/ref.safetensors", argv[1]);
  where = ck;
  tc_init(&W, 3);
  void *args[3] = {(void *)0, (void *)1, (void *)2};
  tc_run(3, rank_main, args);
  tc_destroy(&W);
  mrank u;
  mopts o = {0, 0};
  if (m_init(&u, 1, 0, &o)) return 1;
  for (uint32_t s = 1; s <= 5; s++) m_step(&u, s);
  ema_status s = ema_save(u.ctx, ref);
  m_free(&u);
  return st[0] == EMA_OK && st[1] == EMA_OK && st[2] == EMA_OK && s == EMA_OK ? 0 : 1;
}
