/*
 * ema/mpi.h: the MPI adapter of ema/dist.h (library libema_mpi, pkg-config
 * libema_mpi, CMake find_package(ema COMPONENTS mpi) -> ema::ema_mpi). Built
 * when Open MPI (Debian: openmpi-bin, libopenmpi-dev) is found. The core
 * library never links MPI; only this adapter does.
 *
 *   MPI_Init(&argc, &argv);
 *   ema_comm *comm;
 *   ema_comm_from_mpi(&comm, MPI_COMM_WORLD);
 *   ... ema_save_sharded(ctx, "ckpt", comm); ema_load_sharded(ctx, "ckpt", comm);
 *   ema_comm_free(comm);
 *   MPI_Finalize();
 *
 * Since 0.2.0 (experimental).
 */
#ifndef EMA_MPI_H
#define EMA_MPI_H

#include <mpi.h>

#include "ema/dist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A communicator for the sharded calls over comm: rank and size are comm's;
   the adapter works on its own duplicate of comm (MPI_Comm_dup, collective,
   so every rank of comm calls this), with MPI_ERRORS_RETURN, so that a
   failed MPI call becomes EMA_E_IO instead of aborting. Blocks exchanged by
   allgather are at most INT_MAX bytes (they hold registrations, not
   tensors). Call after MPI_Init, free before MPI_Finalize.
   Errors: EMA_E_INVALID_ARG (NULL out, MPI not initialized, MPI_COMM_NULL),
   EMA_E_NOMEM, EMA_E_IO (an MPI call failed). */
EMA_API ema_status ema_comm_from_mpi(ema_comm **out, MPI_Comm comm);

/* Free a communicator from ema_comm_from_mpi (collective: frees the
   duplicate). NULL is a no-op. */
EMA_API void ema_comm_free(ema_comm *comm);

#ifdef __cplusplus
}
#endif

#endif /* EMA_MPI_H */
