/*
 * ema/dist.h: sharded tensors, the communication interface and sharded
 * checkpoints (experimental, since 0.2.0). Not included by ema/ema.h.
 *
 * A sharded model keeps, on each rank, a box of every global tensor (FSDP2
 * and ZeRO-3 hold dim-0 slices, tensor parallelism any box). Each rank
 * averages its own box: ema_apply, ema_update, ema_swap, ema_copy_to and the
 * rest of ema/core.h act on the local boxes and communicate nothing. Only a
 * sharded save and load talk to the other ranks, through an ema_comm the
 * caller provides (ema/mpi.h builds one over MPI; the Python binding one
 * over torch.distributed). comm == NULL means a world of one rank.
 *
 * A sharded checkpoint is a directory (docs/distributed.md):
 *   DIR/manifest.json                       written last, by rank 0: the commit
 *   DIR/shard-RRRRR-of-WWWWW.<id>.safetensors   one per rank, atomically
 * Each shard file holds the rank's chunks under the names ema_save uses
 * (<n>, <n>/<ema>, ...), the EMA state in __metadata__, and the sharding
 * info of torch.distributed.checkpoint's Hugging Face layout
 * (DCP_SHARDING_INFO: {"<n>": {"saved_offsets": [...]}, ...}). The manifest
 * records the format version, the checkpoint id, the step, the world size,
 * every tensor's global shape, dtype and chunks (file, offsets, shape,
 * checksum) and the EMA state. A save writes its shard files under a new id
 * and replaces the manifest only once every rank has written its file, so a
 * save that dies anywhere leaves the previous checkpoint of DIR loadable (a
 * first save that dies leaves no manifest at all); files of older ids are
 * removed after the new manifest is in place.
 */
#ifndef EMA_DIST_H
#define EMA_DIST_H

#include "ema/file.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Communication interface                                                   */
/* ------------------------------------------------------------------------ */

/* What a sharded save and load need from a communication library. A caller
   may fill one in over anything (MPI, NCCL, gloo, sockets). Every function
   is collective: every rank calls it, in the same order, with the same len.
   Each returns EMA_OK, or another status to report a failure (the sharded
   call then fails with it on that rank; a rank that never returns, or
   dies, is the communication library's business: MPI aborts the job).
   The struct is borrowed by the calls that take it. */
typedef struct ema_comm {
  int rank;   /* 0 .. size-1 */
  int size;   /* >= 1 */
  void *user; /* passed to every function below */
  /* Every rank sends len bytes; recv (size * len bytes) gets rank r's block
     at r * len, on every rank. */
  ema_status (*allgather)(void *user, const void *send, size_t len, void *recv);
  /* buf (len bytes) of rank root is copied into buf on every rank. */
  ema_status (*broadcast)(void *user, void *buf, size_t len, int root);
  /* Returns once every rank called it. */
  ema_status (*barrier)(void *user);
  void *reserved[4]; /* NULL */
} ema_comm;

/* ------------------------------------------------------------------------ */
/* Sharded tensors                                                           */
/* ------------------------------------------------------------------------ */

/* Register the box of a global tensor this rank holds, to average (as
   ema_track): global_shape (ndim entries), offsets of the box in it, and
   local_shape, the box's shape, which data (borrowed, C-contiguous) has.
   The box must lie inside the global shape (offsets[i] + local_shape[i] <=
   global_shape[i]); empty boxes (a local_shape entry 0) are fine. With
   offsets all 0 and local_shape == global_shape it is an ordinary ema_track.
   Every rank registers every tensor with the same global shape and dtype;
   the boxes of all ranks must tile the global tensor (checked at save).
   Tensors registered with ema_track/ema_track_policy in the same context are
   replicated: every rank holds all of them, rank 0 saves them.
   Errors: those of ema_track, EMA_E_INVALID_ARG for a box outside the
   global shape or NULL shapes with ndim > 0. */
EMA_API ema_status ema_track_shard(ema_ctx *ctx, const char *name, void *data, ema_dtype dtype, int ndim,
                                   const int64_t *global_shape, const int64_t *offsets, const int64_t *local_shape);

/* The global shape and offsets of tensor name (each EMA_MAX_DIMS entries;
   NULL to skip); *sharded gets 1 for ema_track_shard tensors, 0 for
   replicated ones (offsets 0, global shape = shape). Errors:
   EMA_E_INVALID_ARG, EMA_E_NOT_FOUND. */
EMA_API ema_status ema_shard_info(const ema_ctx *ctx, const char *name, int *sharded, int64_t *global_shape,
                                  int64_t *offsets);

/* ------------------------------------------------------------------------ */
/* Sharded checkpoints                                                       */
/* ------------------------------------------------------------------------ */

/* Collective: every rank of comm calls it with the same dir. Writes the
   checkpoint described at the top of this header; dir is created by rank 0
   when missing (its parent must exist). The ranks first exchange their
   registrations and check that they agree (names, dtypes, global shapes,
   EMA state) and that the boxes tile each global tensor exactly; a
   disagreement fails on every rank with EMA_E_MISMATCH and writes nothing.
   Returns the same status on every rank (detail in ema_last_error).
   Errors: EMA_E_INVALID_ARG, EMA_E_STATE (swapped), EMA_E_MISMATCH,
   EMA_E_IO, EMA_E_NOMEM, or a status a comm function returned. */
EMA_API ema_status ema_save_sharded(const ema_ctx *ctx, const char *dir, const ema_comm *comm);

/* Collective. Loads the checkpoint in dir into this rank's boxes, at any
   world size and any layout of boxes (resharding): each rank reads only the
   byte ranges of the chunks that overlap its boxes (pread; never whole
   files), and the EMA state. Validates the manifest strictly first:
   overlapping or missing chunks, a global shape or dtype other than the
   registered one, a shard file of another checkpoint or whose header does
   not match the manifest, a file name that leaves dir, a chunk whose
   checksum fails: EMA_E_FORMAT or EMA_E_MISMATCH, and nothing changed on
   any rank. Returns the same status on every rank. */
EMA_API ema_status ema_load_sharded(ema_ctx *ctx, const char *dir, const ema_comm *comm);

/* Collective. As ema_load_averages_into_model: the active average of each
   averaged tensor lands in the rank's model box (rounded to the model's
   dtype), replicated state in its own tensor. */
EMA_API ema_status ema_load_sharded_averages_into_model(ema_ctx *ctx, const char *dir, const ema_comm *comm);

/* ------------------------------------------------------------------------ */
/* Consolidation (one process, memory bounded by a few MiB)                 */
/* ------------------------------------------------------------------------ */

/* Called during consolidation with the bytes written so far and in all. */
typedef void (*ema_progress_fn)(void *user, uint64_t done, uint64_t total);

/* Write the sharded checkpoint in dir as one unsharded checkpoint at out:
   the tensors, names and EMA state ema_save of the same model, unsharded,
   writes, bit for bit. Streams chunk by chunk. progress may be NULL.
   Errors: EMA_E_INVALID_ARG, EMA_E_IO, EMA_E_FORMAT, EMA_E_MISMATCH,
   EMA_E_NOMEM; out is untouched on failure. */
EMA_API ema_status ema_consolidate(const char *dir, const char *out, ema_progress_fn progress, void *user, char *err,
                                   size_t errcap);

/* Write the averages of the sharded checkpoint in dir as model weights in
   Hugging Face's layout in outdir (created when missing): every average
   "<n>/<ema>" as "<n>" in the model's dtype, replicated state as it is.
   When everything fits max_shard_size bytes (0: 5 GB, Hugging Face's
   default) one outdir/model.safetensors; otherwise
   outdir/model-0000i-of-0000n.safetensors and model.safetensors.index.json
   ({"metadata": {"total_size": ...}, "weight_map": {...}}). Tensors are
   placed in name order, a new file started when the next would not fit. */
EMA_API ema_status ema_consolidate_hf(const char *dir, const char *outdir, uint64_t max_shard_size,
                                      ema_progress_fn progress, void *user, char *err, size_t errcap);

#ifdef __cplusplus
}
#endif

#endif /* EMA_DIST_H */
