/*
 * src/dist/manifest.h: DIR/manifest.json, the commit marker of a sharded
 * checkpoint (docs/distributed.md shows one). Private to src/dist.
 */
#ifndef EMA_DIST_MANIFEST_H
#define EMA_DIST_MANIFEST_H

#include "dist/dist.h"
#include "dist/json.h"

#define MF_MAX_BYTES ((size_t)256 << 20)

typedef struct mf_chunk {
  size_t file; /* index into files */
  int64_t off[EMA_MAX_DIMS], shape[EMA_MAX_DIMS];
  uint64_t checksum; /* "xxh64": XXH64 of the chunk's bytes */
} mf_chunk;

typedef struct mf_tensor {
  const char *name; /* the key, as ema_save names it */
  const char *of;   /* the registered tensor it belongs to */
  int role;         /* DR_* */
  size_t member;    /* bank member of averages and their extras */
  st_dtype dtype;
  ema_dtype edtype;
  int ndim;
  int64_t shape[EMA_MAX_DIMS]; /* global */
  uint64_t nbytes;             /* global */
  mf_chunk *chunks;
  size_t n_chunks;
} mf_tensor;

typedef struct mf_file {
  const char *name; /* inside the checkpoint's directory */
  uint64_t bytes;
} mf_file;

typedef struct manifest {
  char id[DIST_ID_LEN + 1];
  int64_t world, step;
  mf_file *files;
  size_t n_files;
  mf_tensor *tensors;
  size_t n_tensors;
  size_t *order;       /* tensors sorted by name, for mf_find */
  const dj_val *state; /* object of strings: the checkpoint's __metadata__ as ema_save writes it */
  dj_val root;         /* owns every string above */
} manifest;

/* Read and validate dir/manifest.json (everything listed in ema/dist.h's
   ema_load_sharded: chunks inside the global shape, no overlap, no gap,
   safe file names, known dtypes and roles). EMA_E_IO when it is missing or
   unreadable, EMA_E_FORMAT when it is not valid. Free with mf_free. */
ema_status mf_load(const char *dir, manifest *m, char *err, size_t cap);
void mf_free(manifest *m);
const mf_tensor *mf_find(const manifest *m, const char *name);

/* Render a manifest (m->root and m->order unused) into b. */
void mf_render(const manifest *m, dj_buf *b);

/* Open file i of m (in dir) and check that it belongs to m: its size, its
   libema.checkpoint_id, and for every chunk of m in it, a tensor of that
   name, dtype and shape whose DCP_SHARDING_INFO offsets are the chunk's. */
ema_status mf_open_file(const manifest *m, const char *dir, size_t i, st_file **out, char *err, size_t cap);

#endif
