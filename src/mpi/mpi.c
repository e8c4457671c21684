/*
 * src/mpi/mpi.c: ema_comm over MPI (ema/mpi.h). The only code of libema
 * that includes mpi.h; built into libema_mpi.
 */
#include <limits.h>
#include <stdlib.h>

#include "ema/mpi.h"

typedef struct mpi_comm {
  ema_comm c; /* first: an ema_comm * is a mpi_comm * */
  MPI_Comm comm;
} mpi_comm;

static ema_status mpi_allgather(void *user, const void *send, size_t len, void *recv) {
  mpi_comm *m = (mpi_comm *)user;
  if (len > INT_MAX) return EMA_E_INVALID_ARG;
  int rc = MPI_Allgather(send, (int)len, MPI_BYTE, recv, (int)len, MPI_BYTE, m->comm);
  return rc == MPI_SUCCESS ? EMA_OK : EMA_E_IO;
}

static ema_status mpi_broadcast(void *user, void *buf, size_t len, int root) {
  mpi_comm *m = (mpi_comm *)user;
  unsigned char *p = (unsigned char *)buf;
  while (len) { /* in pieces MPI's int count can hold */
    int n = len > (size_t)INT_MAX ? INT_MAX : (int)len;
    if (MPI_Bcast(p, n, MPI_BYTE, root, m->comm) != MPI_SUCCESS) return EMA_E_IO;
    p += n;
    len -= (size_t)n;
  }
  return EMA_OK;
}

static ema_status mpi_barrier(void *user) {
  mpi_comm *m = (mpi_comm *)user;
  return MPI_Barrier(m->comm) == MPI_SUCCESS ? EMA_OK : EMA_E_IO;
}

ema_status ema_comm_from_mpi(ema_comm **out, MPI_Comm comm) {
  if (!out) return EMA_E_INVALID_ARG;
  *out = NULL;
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (!init || fin || comm == MPI_COMM_NULL) return EMA_E_INVALID_ARG;
  mpi_comm *m = (mpi_comm *)calloc(1, sizeof *m);
  if (!m) return EMA_E_NOMEM;
  if (MPI_Comm_dup(comm, &m->comm) != MPI_SUCCESS) {
    free(m);
    return EMA_E_IO;
  }
  MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
  if (MPI_Comm_rank(m->comm, &m->c.rank) != MPI_SUCCESS || MPI_Comm_size(m->comm, &m->c.size) != MPI_SUCCESS) {
    MPI_Comm_free(&m->comm);
    free(m);
    return EMA_E_IO;
  }
  m->c.user = m;
  m->c.allgather = mpi_allgather;
  m->c.broadcast = mpi_broadcast;
  m->c.barrier = mpi_barrier;
  *out = &m->c;
  return EMA_OK;
}

void ema_comm_free(ema_comm *comm) {
  if (!comm) return;
  mpi_comm *m = (mpi_comm *)comm;
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Comm_free(&m->comm);
  free(m);
}
