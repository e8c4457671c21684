/*
 * tests/dist/mpi_dist.c: the sharded EMA under mpirun, through libema_mpi.
 * Every rank also runs the unsharded reference itself and compares its
 * boxes with it bit for bit. mpi_check.sh drives it:
 *   mpi_dist fresh DIR              train steps 1..5, check, save DIR
 *   mpi_dist resume SRC A B [DST]   load SRC (saved at step A), check, train
 *                                   A+1..B, check, save DST
 *   mpi_dist kill SRC A DST K       as resume to A+1, then save DST with rank
 *                                   1 killing itself (SIGKILL) at its K-th
 *                                   collective call of the save
 * Exit status 0 when every check held on this rank.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/model.h"
#include "ema/mpi.h"

static int failures;
#define EXPECT(c, ...)                                               \
  do {                                                               \
    if (!(c)) {                                                      \
      failures++;                                                    \
      fprintf(stderr, "rank %d: %s:%d: ", rank, __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                                  \
      fputc('\n', stderr);                                           \
    }                                                                \
  } while (0)

static int rank, calls, kill_at = -1;
static ema_comm *inner;

/* A comm that forwards to MPI and, on rank 1, dies at call kill_at. */
static void maybe_die(void) {
  if (rank == 1 && ++calls == kill_at) raise(SIGKILL);
}
static ema_status k_allgather(void *u, const void *s, size_t len, void *r) {
  (void)u;
  maybe_die();
  return inner->allgather(inner->user, s, len, r);
}
static ema_status k_broadcast(void *u, void *b, size_t len, int root) {
  (void)u;
  maybe_die();
  return inner->broadcast(inner->user, b, len, root);
}
static ema_status k_barrier(void *u) {
  (void)u;
  maybe_die();
  return inner->barrier(inner->user);
}

static void train(mrank *m, mrank *ref, uint32_t a, uint32_t b) {
  for (uint32_t s = a; s <= b; s++) {
    EXPECT(m_step(m, s) == 0 && m_step(ref, s) == 0, "step %u failed", s);
  }
  EXPECT(m_diff(m, ref) == 0, "after steps %u..%u: %ld elements differ from the unsharded run", a, b, m_diff(m, ref));
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int world;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  ema_comm *comm = NULL;
  EXPECT(ema_comm_from_mpi(&comm, MPI_COMM_WORLD) == EMA_OK, "ema_comm_from_mpi failed");
  EXPECT(comm && comm->rank == rank && comm->size == world, "rank or size wrong");
  EXPECT(ema_comm_from_mpi(NULL, MPI_COMM_WORLD) == EMA_E_INVALID_ARG, "NULL out accepted");
  mrank m, ref;
  mopts so = {0, 1}, ro = {0, 0};
  EXPECT(m_init(&m, world, rank, &so) == 0 && m_init(&ref, 1, 0, &ro) == 0, "init failed");
  const char *mode = argc > 2 ? argv[1] : "";
  if (strcmp(mode, "fresh") == 0) {
    train(&m, &ref, 1, 5);
    ema_status st = ema_save_sharded(m.ctx, argv[2], comm);
    EXPECT(st == EMA_OK, "save: %s", ema_last_error(m.ctx));
  } else if ((strcmp(mode, "resume") == 0 && argc >= 5) || (strcmp(mode, "kill") == 0 && argc == 6)) {
    uint32_t a = (uint32_t)atoi(argv[3]);
    int killing = strcmp(mode, "kill") == 0;
    uint32_t b = killing ? a + 1 : (uint32_t)atoi(argv[4]);
    for (uint32_t s = 1; s <= a; s++) m_step(&ref, s);
    ema_status st = ema_load_sharded(m.ctx, argv[2], comm);
    EXPECT(st == EMA_OK, "load: %s", ema_last_error(m.ctx));
    EXPECT(m_diff(&m, &ref) == 0, "after loading at %d ranks: differs from the unsharded run", world);
    train(&m, &ref, a + 1, b);
    const char *dst = killing ? argv[4] : argc > 5 ? argv[5] : NULL;
    if (killing) {
      kill_at = atoi(argv[5]);
      static ema_comm k;
      inner = comm;
      k = *comm;
      k.allgather = k_allgather;
      k.broadcast = k_broadcast;
      k.barrier = k_barrier;
      st = ema_save_sharded(m.ctx, dst, &k);
      EXPECT(0, "rank 1 should have died during the save (status %d)", (int)st);
    } else if (dst) {
      st = ema_save_sharded(m.ctx, dst, comm);
      EXPECT(st == EMA_OK, "save: %s", ema_last_error(m.ctx));
    }
  } else {
    EXPECT(0, "usage: mpi_dist fresh DIR | resume SRC A B [DST] | kill SRC A DST K");
  }
  m_free(&m);
  m_free(&ref);
  ema_comm_free(comm);
  ema_comm_free(NULL);
  MPI_Finalize();
  return failures ? 1 : 0;
}
