/*
 * tests/dist/thread_comm.h: an ema_comm over threads of one process, so the
 * sharded save and load can be tested at any world size without MPI. Each
 * thread is one rank; collectives meet at a barrier.
 */
#ifndef EMA_TEST_THREAD_COMM_H
#define EMA_TEST_THREAD_COMM_H

#include <pthread.h>
#include <string.h>

#include "ema/dist.h"

#define TC_MAX 8

typedef struct tc_world {
  int size;
  pthread_barrier_t bar;
  const void *slot[TC_MAX];
  ema_comm comm[TC_MAX];
} tc_world;

static ema_status tc_barrier(void *user);

typedef struct tc_user {
  tc_world *w;
  int rank;
} tc_user;

static tc_user tc_users[TC_MAX];

static ema_status tc_barrier(void *user) {
  tc_user *u = (tc_user *)user;
  pthread_barrier_wait(&u->w->bar);
  return EMA_OK;
}

static ema_status tc_allgather(void *user, const void *send, size_t len, void *recv) {
  tc_user *u = (tc_user *)user;
  u->w->slot[u->rank] = send;
  pthread_barrier_wait(&u->w->bar);
  for (int r = 0; r < u->w->size; r++) memcpy((char *)recv + (size_t)r * len, u->w->slot[r], len);
  pthread_barrier_wait(&u->w->bar);
  return EMA_OK;
}

static ema_status tc_broadcast(void *user, void *buf, size_t len, int root) {
  tc_user *u = (tc_user *)user;
  if (u->rank == root) u->w->slot[root] = buf;
  pthread_barrier_wait(&u->w->bar);
  if (u->rank != root) memcpy(buf, u->w->slot[root], len);
  pthread_barrier_wait(&u->w->bar);
  return EMA_OK;
}

static void tc_init(tc_world *w, int size) {
  memset(w, 0, sizeof *w);
  w->size = size;
  pthread_barrier_init(&w->bar, NULL, (unsigned)size);
  for (int r = 0; r < size; r++) {
    tc_users[r].w = w;
    tc_users[r].rank = r;
    ema_comm *c = &w->comm[r];
    c->rank = r;
    c->size = size;
    c->user = &tc_users[r];
    c->allgather = tc_allgather;
    c->broadcast = tc_broadcast;
    c->barrier = tc_barrier;
  }
}

static void tc_destroy(tc_world *w) { pthread_barrier_destroy(&w->bar); }

/* Run fn(rank, arg) on size threads, one per rank; returns when all did. */
static void tc_run(int size, void *(*fn)(void *), void **args) {
  pthread_t th[TC_MAX];
  for (int r = 0; r < size; r++) pthread_create(&th[r], NULL, fn, args[r]);
  for (int r = 0; r < size; r++) pthread_join(th[r], NULL);
}

#endif
